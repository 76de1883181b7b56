//! Forking the container's first process, straight into its cgroup where the kernel can.
//!
//! Moving a process between cgroups (writing `cgroup.procs`) takes the kernel's global
//! threadgroup lock for writing, which waits for an RCU grace period: 10–20 ms on these
//! machines, more than everything else img-run does to start a container. `clone3` with
//! `CLONE_INTO_CGROUP` places the child in a cgroup v2 directory as it is created, under the
//! same lock taken only for reading, so nothing waits. Where that is not possible (no v2
//! cgroup, an older kernel, a user namespace without rights on the tree's root) it is a plain
//! fork and the child joins by writing `cgroup.procs` as before.

use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// The kernel's `struct clone_args` (version 2, with `cgroup`), from `linux/sched.h`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// How the fork went: which side we are on, and whether the child is already in the cgroup.
pub struct Forked {
    pub result: ForkResult,
    pub in_cgroup: bool,
}

/// Forks; with `cgroup` (a cgroup v2 directory opened for reading), the child starts in it
/// when the kernel allows, else outside it (`in_cgroup` says which).
///
/// # Safety
/// As for [`nix::unistd::fork`]: the calling process must be single-threaded, and the child
/// must only run code that is safe after a fork (it leaves with exec or `_exit`).
pub unsafe fn fork_into(cgroup: Option<BorrowedFd>) -> Result<Forked> {
    if let Some(dir) = cgroup {
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 with a valid, fully initialised clone_args of the size given and no
        // CLONE_VM or stack: like fork, the child gets a copy of this address space and
        // returns here with 0. The caller upholds fork's preconditions. (glibc's cached thread
        // id in the child is stale; glibc ≥ 2.34 asks the kernel whenever a thread signals
        // itself, and the child's own forks refresh it.)
        let ret = unsafe {
            libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
        };
        match ret {
            0 => return Ok(Forked { result: ForkResult::Child, in_cgroup: true }),
            pid if pid > 0 => {
                let child = Pid::from_raw(pid as i32);
                return Ok(Forked { result: ForkResult::Parent { child }, in_cgroup: true });
            }
            _ => match Errno::last() {
                // No clone3 or no CLONE_INTO_CGROUP (before 5.7), filtered by a seccomp
                // profile, or no right to move into that cgroup from where we are: fork, and
                // the child joins the slow way.
                Errno::ENOSYS
                | Errno::EINVAL
                | Errno::E2BIG
                | Errno::EPERM
                | Errno::EACCES
                | Errno::EBUSY => {}
                e => return Err(e).context("clone3 into the container's cgroup"),
            },
        }
    }
    // SAFETY: the caller upholds fork's preconditions.
    let result = unsafe { nix::unistd::fork() }.context("fork")?;
    Ok(Forked { result, in_cgroup: false })
}
