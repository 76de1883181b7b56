//! img-run on a real terminal: a pty whose slave is img-run's controlling terminal, as a
//! terminal window's is. Closing the window (the master) or SIGTERM must end the container
//! and clean up after it, whatever the container's process does with the signal.

mod run_common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use run_common::*;

/// img-run in a session of its own whose controlling terminal is a fresh pty; the test holds
/// the master, as a terminal emulator does.
struct Terminal {
    master: Option<OwnedFd>,
    child: Child,
    seen: Vec<u8>,
}

impl Terminal {
    fn start(env: &Env, args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (0, 0);
        let ws = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty fills two descriptors we then own.
        let rc =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptors from openpty, each owned once.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = || Stdio::from(slave.try_clone().unwrap());
        let mut cmd = env.store.command("img-run");
        cmd.args(args).stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: between fork and exec only async-signal-safe calls: setsid and ioctl.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // Only img-run holds the slave now: closing the master hangs its terminal up.
        drop(slave);
        Terminal { master: Some(master), child, seen: Vec::new() }
    }

    /// Reads what the terminal shows until it contains `text`; panics after 30 s.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&self.seen).contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} on the terminal: {:?}", self.text());
            self.read_some(Duration::from_millis(200));
        }
    }

    /// One read of the master if it has something within `wait` (without a reader thread: a
    /// read blocked in another thread would keep the master open after `hang_up`).
    fn read_some(&mut self, wait: Duration) {
        let Some(m) = &self.master else { return };
        let mut fds = [libc::pollfd { fd: m.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: poll on one pollfd we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, wait.as_millis() as i32) };
        if n <= 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read into a buffer we own from a descriptor we own.
        let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            self.seen.extend_from_slice(&buf[..n as usize]);
        } else {
            // EIO: img-run closed its side.
            std::thread::sleep(wait);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).replace('\r', "")
    }

    fn type_line(&self, line: &str) {
        let m = self.master.as_ref().unwrap();
        let bytes = format!("{line}\r");
        // SAFETY: writing a buffer we own to a descriptor we own.
        let n = unsafe { libc::write(m.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    /// Closes the terminal, as closing its window does.
    fn hang_up(&mut self) {
        self.master = None;
    }

    /// img-run's exit status if it ends within `limit` (it is killed otherwise).
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            // Keep draining while the terminal is open, so img-run never blocks writing.
            self.read_some(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

/// Processes whose command line is exactly `args` (a container's, seen from the host).
fn processes_running(args: &[&str]) -> Vec<String> {
    let want = args.iter().map(|a| format!("{a}\0")).collect::<String>();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && cmdline == want.as_bytes()
        {
            found.push(name);
        }
    }
    found
}

/// Waits until the container runs `args` (a job the shell forked may not have exec'd yet).
fn wait_until_running(args: &[&str], term: &Terminal) {
    let started = Instant::now();
    while processes_running(args).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "{args:?} did not start: {}", term.text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing of the container is left: no process, no container directory, no mount.
fn assert_cleaned_up(env: &Env, sleeper: &[&str]) {
    assert_eq!(processes_running(sleeper), Vec::<String>::new(), "the container's process is still running");
    let containers = env.store.path().join("containers");
    let left: Vec<_> =
        std::fs::read_dir(&containers).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "container directories left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let store = env.store.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&store), "mounts left under the store: {mounts}");
}

/// A shell waiting at its prompt with a job in the background: closing the terminal ends the
/// shell (its terminal hung up), its PID namespace with it, and img-run cleans up.
#[test]
fn closing_the_terminal_ends_the_container() {
    let env = Env::new();
    let sleeper = ["sleep", "4243"];
    let mut term = Terminal::start(&env, &["-it", "bb:1", "sh"]);
    term.wait_for("# ");
    // The shell echoes what is typed; only the shell's own output has the sum worked out.
    term.type_line("sleep 4243 & echo started-$((40+2))");
    term.wait_for("started-42");
    wait_until_running(&sleeper, &term);
    term.hang_up();
    let status = term.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "img-run still running 20 s after its terminal was closed");
    assert_cleaned_up(&env, &sleeper);
}

/// A container's PID 1 that no SIGHUP reaches (the kernel drops signals PID 1 has no handler
/// for) is killed once the grace period is over.
#[test]
fn closing_the_terminal_kills_a_container_that_ignores_it() {
    let env = Env::new();
    let sleeper = ["sleep", "4244"];
    let mut term = Terminal::start(&env, &["-it", "bb:1", "sh"]);
    term.wait_for("# ");
    term.type_line("echo started-$((40+2)); exec sleep 4244");
    term.wait_for("started-42");
    wait_until_running(&sleeper, &term);
    term.hang_up();
    let status = term.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "img-run still running 20 s after its terminal was closed");
    assert_eq!(status.unwrap().code(), Some(137), "killed after the grace period");
    assert_cleaned_up(&env, &sleeper);
}

/// SIGTERM to img-run with a terminal: forwarded, and the run ends even though an
/// interactive shell ignores it.
#[test]
fn sigterm_ends_an_interactive_run() {
    let env = Env::new();
    let sleeper = ["sleep", "4245"];
    let mut term = Terminal::start(&env, &["-it", "bb:1", "sh"]);
    term.wait_for("# ");
    term.type_line("sleep 4245 & echo started-$((40+2))");
    term.wait_for("started-42");
    wait_until_running(&sleeper, &term);
    // SAFETY: kill has no memory-safety preconditions; img-run is our unreaped child.
    unsafe { libc::kill(term.child.id() as i32, libc::SIGTERM) };
    let status = term.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "img-run still running 20 s after SIGTERM");
    assert_eq!(status.unwrap().code(), Some(137), "killed after the grace period");
    assert_cleaned_up(&env, &sleeper);
}
