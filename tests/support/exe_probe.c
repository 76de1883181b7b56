/*
 * The "dynamic loader" of the image in tests/run_exe_escape.rs (CVE-2019-5736's attack).
 *
 * The image's entrypoint is /proc/self/exe, so the kernel execs whatever binary the runtime's
 * process was running when it execed the container's command. That binary is dynamically
 * linked, and the kernel loads its ELF interpreter (/lib64/ld-linux-x86-64.so.2) from the
 * *container's* root: this program. It runs as the container's process with the runtime's
 * binary as its /proc/self/exe (or, given an argument, looks at that path instead, such as
 * /proc/1/exe), and prints one line:
 *
 *   dev=D ino=I seals=S reopen=R write=W
 *
 * D and I are st_dev and st_ino of the binary, S the result of F_GET_SEALS on it (negative:
 * -errno), R the result of reopening it for writing through /proc/self/fd/N ("ok" or -errno),
 * and W that of writing its first byte back unchanged (so the host's file keeps its bytes
 * even when the write succeeds), or "skipped" when the reopen failed.
 *
 * Built by the test with `gcc -nostdlib -static -fno-pie -no-pie`: no libc, raw x86_64
 * system calls, because a libc's static start-up would take the auxiliary vector the kernel
 * made for the runtime's binary as its own.
 */

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_fstat 5
#define SYS_nanosleep 35
#define SYS_fork 57
#define SYS_execve 59
#define SYS_pread64 17
#define SYS_pwrite64 18
#define SYS_fcntl 72
#define SYS_exit_group 231

#define O_RDONLY 0
#define O_WRONLY 1
#define F_GET_SEALS 1034
#define ETXTBSY 26

static long sys(long n, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

static char out[256];
static int len;

static void put(const char *s)
{
	while (*s && len < (int)sizeof(out) - 1)
		out[len++] = *s++;
}

/* Writes u in decimal at buf, NUL-terminated; returns the number of digits. */
static int decimal(char *buf, unsigned long u)
{
	char digits[24];
	int n = 0, i = 0;
	do {
		digits[n++] = '0' + u % 10;
		u /= 10;
	} while (u);
	while (n)
		buf[i++] = digits[--n];
	buf[i] = 0;
	return i;
}

static void put_num(long v)
{
	char buf[24];
	if (v < 0)
		put("-");
	decimal(buf, v < 0 ? -(unsigned long)v : (unsigned long)v);
	put(buf);
}

static void put_result(long r)
{
	if (r >= 0)
		put("ok");
	else
		put_num(r);
}

static void finish(int status)
{
	put("\n");
	sys(SYS_write, 1, (long)out, len, 0);
	sys(SYS_exit_group, status, 0, 0, 0);
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/*
 * Reports on the binary open as fd: its identity and seals, then reopens it for writing
 * (retrying for up to 20 s while the kernel says ETXTBSY, if wait_busy) and writes its first
 * byte back.
 */
static void report(long fd, int wait_busy)
{
	unsigned long st[18]; /* struct stat: st_dev, st_ino first */
	long r = sys(SYS_fstat, fd, (long)st, 0, 0);
	put("dev=");
	put_num(r < 0 ? r : (long)st[0]);
	put(" ino=");
	put_num(r < 0 ? r : (long)st[1]);
	put(" seals=");
	put_num(sys(SYS_fcntl, fd, F_GET_SEALS, 0, 0));

	char path[40] = "/proc/self/fd/";
	decimal(path + 14, fd);
	long wfd = sys(SYS_open, (long)path, O_WRONLY, 0, 0);
	for (int i = 0; wait_busy && wfd == -ETXTBSY && i < 400; i++) {
		long pause[2] = {0, 50000000}; /* 50 ms */
		sys(SYS_nanosleep, (long)pause, 0, 0, 0);
		wfd = sys(SYS_open, (long)path, O_WRONLY, 0, 0);
	}
	put(" reopen=");
	put_result(wfd);
	put(" write=");
	if (wfd < 0) {
		put("skipped");
	} else {
		char first;
		long got = sys(SYS_pread64, fd, (long)&first, 1, 0);
		put_result(got == 1 ? sys(SYS_pwrite64, wfd, (long)&first, 1, 0) : got);
	}
	finish(0);
}

/*
 * Called from _start with the initial stack: argc, argv, NULL, envp. The modes:
 *   (none)       report on /proc/self/exe;
 *   PATH         report on PATH (such as /proc/1/exe);
 *   outlive      open /proc/self/exe and leave it to a child that outlives this process:
 *                the child execs this program (so it no longer runs the binary itself) as
 *   reopen N     which waits until nothing executes the binary open as fd N (the runtime
 *                has exited) and reports on it: CVE-2019-5736's rewrite of the runtime.
 */
void probe_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	if (argc > 2 && same(argv[1], "reopen")) {
		long fd = 0;
		for (const char *d = argv[2]; *d; d++)
			fd = fd * 10 + (*d - '0');
		report(fd, 1);
	}
	int outlive = argc > 1 && same(argv[1], "outlive");
	const char *target = argc > 1 && !outlive ? argv[1] : "/proc/self/exe";
	long fd = sys(SYS_open, (long)target, O_RDONLY, 0, 0);
	if (fd < 0) {
		put("open=");
		put_num(fd);
		finish(1);
	}
	if (!outlive)
		report(fd, 0);
	if (sys(SYS_fork, 0, 0, 0, 0) != 0)
		sys(SYS_exit_group, 0, 0, 0, 0);
	char number[24];
	decimal(number, fd);
	char *args[] = {"probe", "reopen", number, 0};
	char *env[] = {0};
	long r = sys(SYS_execve, (long)"/lib64/ld-linux-x86-64.so.2", (long)args, (long)env, 0);
	put("execve=");
	put_num(r);
	finish(1);
}

__asm__(".globl _start\n"
	"_start:\n"
	"  xor %rbp, %rbp\n"
	"  mov %rsp, %rdi\n"
	"  and $-16, %rsp\n"
	"  call probe_main\n"
	"  hlt\n");
