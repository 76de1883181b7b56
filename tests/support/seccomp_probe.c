/* A probe for tests/run_seccomp.rs: makes each system call named on the command line, with
 * arguments chosen so that a kernel that lets the call through answers something other than
 * EPERM (success, or EFAULT/EINVAL for a bad pointer), and prints `name=ERRNO` (0 on success)
 * per line. Built static with gcc by the test, so it runs in any image. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static long call(const char *name) {
    if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "unshare_uts")) return unshare(CLONE_NEWUTS);
    /* KEYCTL_GET_KEYRING_ID of the session keyring, without creating it. */
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "img-probe", "x", 1, -2);
    /* An unknown command: EINVAL (or EPERM from the kernel itself without CAP_BPF). */
    if (!strcmp(name, "bpf")) return syscall(SYS_bpf, 0xffff, NULL, 0);
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    /* No attributes: EFAULT. */
    if (!strcmp(name, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    if (!strcmp(name, "io_uring_setup")) return syscall(SYS_io_uring_setup, 1, NULL);
    /* No target: EFAULT before any permission check. */
    if (!strcmp(name, "mount")) return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
    /* No arguments: EINVAL. */
    if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(name, "setns")) return syscall(SYS_setns, -1, 0);
    if (!strcmp(name, "mkdir")) return mkdir("/tmp/img-probe-dir", 0755);
    if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
    if (!strcmp(name, "personality_query")) return personality(0xffffffff);
    if (!strcmp(name, "personality_linux32")) return personality(PER_LINUX32);
    if (!strcmp(name, "personality_norandom")) return personality(ADDR_NO_RANDOMIZE);
    /* nr_N: syscall number N with zero arguments. */
    if (!strncmp(name, "nr_", 3)) return syscall(atol(name + 3), 0, 0, 0, 0, 0);
    if (!strcmp(name, "fork")) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        return pid;
    }
    errno = 0;
    fprintf(stderr, "probe: unknown call %s\n", name);
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = call(argv[i]);
        printf("%s=%d\n", argv[i], r < 0 ? errno : 0);
    }
    return 0;
}
