//! What stages that run side by side share about the build's progress: whether it is being
//! stopped, and the helper processes running RUN steps now, so that a failure in one stage
//! can kill the containers of the others.
//!
//! A helper is stopped by killing its children: the container's first process, whose death
//! ends its whole PID namespace. The helper then sees its container end, removes the cgroups it
//! made and exits. A helper that has no child yet, or has not ended a while after, is killed
//! itself (the container's first process has SIGKILL as its parent-death signal).

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use rustix::process::{PidfdFlags, pidfd_open, pidfd_send_signal};

/// How long a helper whose container was killed may take to clean up and end.
const GRACE: Duration = Duration::from_secs(2);

/// The error of a stage stopped because another one failed (the build reports that one).
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped: another stage failed")
    }
}

impl std::error::Error for Cancelled {}

#[derive(Default)]
pub struct Jobs {
    state: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    /// When the build began to stop.
    cancelled: Option<Instant>,
    /// Helpers started and not yet reaped: a pid here names our child, never a reused pid.
    helpers: HashSet<u32>,
}

impl Jobs {
    pub fn new() -> Jobs {
        Jobs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cancelled(&self) -> bool {
        self.lock().cancelled.is_some()
    }

    /// An error if the build is being stopped: a stage checks between its steps.
    pub fn check(&self) -> Result<()> {
        if self.cancelled() {
            return Err(Cancelled.into());
        }
        Ok(())
    }

    /// Starts a helper, unless the build is being stopped (checked under the same lock that
    /// [`Jobs::cancel`] takes, so no helper starts after the kill and escapes it).
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child> {
        let mut state = self.lock();
        if state.cancelled.is_some() {
            return Err(Cancelled.into());
        }
        let child = cmd.spawn().context("starting the RUN step's helper")?;
        state.helpers.insert(child.id());
        Ok(child)
    }

    /// Waits for a helper started by [`Jobs::spawn`]. It is reaped only once it is out of the
    /// set, so [`Jobs::cancel`] can never signal a pid the system gave to someone else.
    pub fn wait(&self, child: &mut Child) -> Result<ExitStatus> {
        let id = child.id();
        let pid = rustix::process::Pid::from_child(child);
        let ended = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => self.wait_stopping(&pidfd),
            Err(e) => Err(std::io::Error::from(e)).context("pidfd_open"),
        };
        let ended = ended.and_then(|()| {
            loop {
                // Ended, not reaped: the pid stays ours until the set forgets it.
                match waitid(Id::Pid(nix_pid(id)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                    Ok(_) => return Ok(()),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).context("waiting for the RUN step"),
                }
            }
        });
        self.lock().helpers.remove(&id);
        ended?;
        child.wait().context("waiting for the RUN step")
    }

    /// Waits until the helper has ended; once the build is stopping and the grace time is over,
    /// kills it.
    fn wait_stopping(&self, pidfd: &impl AsFd) -> Result<()> {
        loop {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("waiting for the RUN step"),
            }
            if self.lock().cancelled.is_some_and(|t| t.elapsed() > GRACE) {
                let _ = pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
            }
        }
    }

    /// Stops the build: no stage starts a step or a helper any more, and the running helpers'
    /// containers are killed.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled.get_or_insert_with(Instant::now);
        for &helper in &state.helpers {
            stop(helper);
        }
    }
}

fn nix_pid(id: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(id as i32)
}

/// Kills a helper's children (its container), or the helper when it has none yet.
fn stop(helper: u32) {
    let children =
        std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children")).unwrap_or_default();
    let mut killed = false;
    for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        killed |= kill_child(helper, pid);
    }
    if !killed {
        let _ = kill(nix_pid(helper), Signal::SIGKILL);
    }
}

/// Kills `pid` if it is the child of `parent`. The pidfd holds on to the process it was
/// opened for: if that one is the child now, the signal reaches it, and never a process that
/// got its pid after it ended.
fn kill_child(parent: u32, pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return false };
    let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else { return false };
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).unwrap_or_default();
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses, the last `)` ends it.
    let ppid =
        stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
    ppid == Some(parent) && pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use super::*;

    /// Runs `cmd` as a helper and cancels the build while it runs; its exit status.
    fn cancelled_while_running(cmd: &mut Command) -> ExitStatus {
        let jobs = Jobs::new();
        let mut child = jobs.spawn(cmd).unwrap();
        let status = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                jobs.cancel();
            });
            jobs.wait(&mut child).unwrap()
        });
        assert!(jobs.check().is_err());
        assert!(jobs.spawn(&mut Command::new("true")).unwrap_err().is::<Cancelled>());
        status
    }

    #[test]
    fn cancel_kills_a_helpers_children_and_lets_it_end() {
        // As a helper with its container: the child is killed, the helper sees it and ends.
        let status = cancelled_while_running(Command::new("sh").args(["-c", "sleep 30; exit $?"]));
        assert_eq!(status.code(), Some(137), "{status:?}");
    }

    #[test]
    fn cancel_kills_a_helper_without_children() {
        let status = cancelled_while_running(Command::new("sleep").arg("30"));
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    #[test]
    fn a_helper_that_does_not_end_is_killed_after_the_grace_time() {
        // Its child is killed, but it goes on (it ignores its child's end).
        let status = cancelled_while_running(Command::new("sh").args(["-c", "sleep 30; exec sleep 30"]));
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}
