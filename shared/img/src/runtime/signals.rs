//! Signals: img-run forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the
//! container's process and waits for it; `--init` runs a small reaper as PID 1 that does the
//! same inside the container and reaps orphaned zombies.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

pub const FORWARDED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// The signals img-run and the init wait for synchronously.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set
}

/// Blocks the handled signals (so they queue for [`wait`]); returns the previous mask.
pub fn block() -> Result<SigSet> {
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled()), Some(&mut old)).context("blocking signals")?;
    Ok(old)
}

/// Restores a mask saved by [`block`] (in a child, before it execs). The handled signals are
/// unblocked whatever the mask said: img-run may have blocked them early, and a container
/// must not start with them blocked.
pub fn restore(old: &SigSet) -> Result<()> {
    let mut mask = *old;
    for s in handled().iter() {
        mask.remove(s);
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None).context("restoring the signal mask")
}

/// Gives every signal its default action, as a container's process must start with: exec
/// keeps a signal that img-run inherited as ignored (`nohup`, a job started with `&` by a
/// non-interactive shell, a supervisor that ignores SIGHUP) ignored in the container. There a
/// shell cannot even trap it (POSIX: a signal ignored on entry stays ignored) and the kernel
/// drops it for the PID 1 of a namespace, so img-run's forwarding of it was lost.
pub fn reset_dispositions() {
    /// The kernel's `struct sigaction` (x86-64 and arm64 layout): all zero is SIG_DFL, no
    /// flags, an empty mask.
    #[repr(C)]
    #[derive(Default)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let action = KernelSigaction::default();
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct of the kernel's layout and size 8 mask.
        // The raw call, not the C library's: it refuses the two real-time signals it keeps
        // for itself, which an invoker may have left ignored all the same.
        unsafe {
            libc::syscall(libc::SYS_rt_sigaction, signo, &action as *const KernelSigaction, 0usize, 8usize);
        }
    }
}

/// A SIGINT, SIGTERM, SIGHUP or SIGQUIT that arrived while they were blocked (while img-run
/// prepared the container: it then cleans up and stops instead of starting it).
pub fn pending_stop() -> Option<Signal> {
    // SAFETY: sigpending fills a sigset_t we own.
    let pending = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigpending(&mut set);
        set
    };
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT]
        .into_iter()
        // SAFETY: sigismember reads the set we own.
        .find(|s| unsafe { libc::sigismember(&pending, *s as i32) } == 1)
}

/// docker's exit status of a process: its code, or 128+N when killed by signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// The handled signals as a descriptor for poll (they must be blocked, see [`block`]).
pub fn signal_fd() -> Result<SignalFd> {
    SignalFd::with_flags(&handled(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")
}

/// What [`forward_pending`] read from the signal descriptor.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// A SIGWINCH: the caller's terminal changed size.
    pub winch: bool,
    /// A SIGHUP: the caller's terminal hung up (or someone says it did).
    pub hangup: bool,
    /// A SIGTERM: img-run is asked to stop the container.
    pub terminate: bool,
}

/// What arrived on the signal descriptor: forwarded to `child`, except SIGCHLD (the caller
/// checks on its child) and SIGWINCH; what the caller may act on besides is returned.
pub fn forward_pending(sfd: &mut SignalFd, child: Pid) -> Received {
    let mut got = Received::default();
    while let Ok(Some(info)) = sfd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => {}
            Ok(Signal::SIGWINCH) => got.winch = true,
            Ok(sig) => {
                got.hangup |= sig == Signal::SIGHUP;
                got.terminate |= sig == Signal::SIGTERM;
                let _ = kill(child, sig);
            }
            Err(_) => {}
        }
    }
    got
}

/// The exit status of `child` if it has ended.
pub fn try_wait(child: Pid) -> Result<Option<i32>> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => Ok(None),
        Ok(status) => Ok(exit_code(status)),
        Err(e) => Err(e).context("waiting for the container"),
    }
}

/// The `--init` reaper, PID 1 of the container: forwards signals to `child`, reaps every
/// zombie, and exits with `child`'s status when it ends.
pub fn init_loop(child: Pid) -> ! {
    let set = handled();
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if status.pid() == Some(child)
                        && let Some(code) = exit_code(status)
                    {
                        // SAFETY: _exit ends the process without running destructors
                        // copied from img-run.
                        unsafe { libc::_exit(code) };
                    }
                }
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Ok(Signal::SIGWINCH) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(child, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_as_docker_reports_them() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)), Some(137));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
