//! What stages that run side by side share about the build's progress: whether it is being
//! stopped, and the helper processes running RUN steps now, so that a failure in one stage
//! can kill the containers of the others.
//!
//! A helper is killed with SIGKILL; the container's first process dies with it (the runtime
//! sets its parent-death signal), and with that first process its whole PID namespace.

use std::collections::HashSet;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

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
    cancelled: bool,
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
        self.lock().cancelled
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
        if state.cancelled {
            return Err(Cancelled.into());
        }
        let child = cmd.spawn().context("starting the RUN step's helper")?;
        state.helpers.insert(child.id());
        Ok(child)
    }

    /// Waits for a helper started by [`Jobs::spawn`]. It is reaped only once it is out of the
    /// set, so [`Jobs::cancel`] can never signal a pid the system gave to someone else.
    pub fn wait(&self, child: &mut Child) -> Result<ExitStatus> {
        let pid = Pid::from_raw(child.id() as i32);
        loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    self.lock().helpers.remove(&child.id());
                    return Err(e).context("waiting for the RUN step");
                }
            }
        }
        self.lock().helpers.remove(&child.id());
        child.wait().context("waiting for the RUN step")
    }

    /// Stops the build: no stage starts a step or a helper any more, and the running helpers
    /// (with their containers) are killed.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        for &pid in &state.helpers {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_kills_running_helpers_and_refuses_new_ones() {
        let jobs = Jobs::new();
        let mut child = jobs.spawn(Command::new("sleep").arg("30")).unwrap();
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                jobs.cancel();
            });
            let status = jobs.wait(&mut child).unwrap();
            assert!(!status.success());
        });
        assert!(started.elapsed().as_secs() < 10);
        assert!(jobs.check().is_err());
        assert!(jobs.spawn(&mut Command::new("true")).unwrap_err().is::<Cancelled>());
    }
}
