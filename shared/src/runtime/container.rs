//! One container's life: img-run (the parent) makes the cgroup and, when not root, a user
//! namespace; forks the child into new namespaces; the child builds the filesystem, switches
//! identity and execs the command (or, with `--init`, forks it under a reaper). The parent
//! forwards signals, relays the pty and returns the container's exit status.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::{ForkResult, Pid, fork};

use super::cgroup::Cgroup;
use super::mounts::{self, Rootfs};
use super::namespaces;
use super::process::{self, Failure};
use super::pty;
use super::signals;
use super::spec::Spec;

/// Everything needed to run one container.
pub struct Container {
    /// The container's id (cgroup names, default hostname).
    pub id: String,
    pub spec: Spec,
    pub rootfs: Rootfs,
    /// Where relative bind sources are found (the bundle directory).
    pub bundle: PathBuf,
    /// docker's `-u user[:group]`, resolved in the container; else the spec's numeric ids.
    pub user: Option<String>,
    /// docker's `--group-add`: more groups (gids, or names in the container's /etc/group).
    pub group_add: Vec<String>,
    /// A reaper as PID 1 (`--init`).
    pub init: bool,
    /// A pseudo-terminal (`-t`).
    pub tty: bool,
    /// Keep stdin attached (`-i`); without it the container reads /dev/null.
    pub interactive: bool,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The command ran; its exit status (128+N if killed by signal N).
    Exited(i32),
    /// The command never started: 125 (img-run failed), 126 or 127.
    Failed(Failure),
}

/// Runs the container to completion. The calling process must be single-threaded; it is left
/// with the forwarded signals blocked and, when not root, inside the container's user
/// namespace (img-run exits right after; img-build calls this in a child of its own).
pub fn run(c: &Container) -> Result<Outcome> {
    let rootless = !nix::unistd::geteuid().is_root();
    let flags = namespaces::child_flags(&c.spec)?;
    if c.spec.hostname.is_some() && !c.spec.has_namespace("uts") {
        bail!("a hostname needs a private UTS namespace");
    }
    if c.spec.has_namespace("user") || !c.spec.linux.uid_mappings.is_empty() {
        check_user_mappings(&c.spec, rootless)?;
    }
    if rootless
        && c.spec
            .linux
            .resources
            .as_ref()
            .is_some_and(|r| r.memory.is_some() || r.pids.is_some() || r.cpu.is_some())
    {
        bail!("resource limits need root: cgroups are not delegated to this user");
    }
    let seccomp = match &c.spec.linux.seccomp {
        Some(s) => Some(s.program(crate::store::root().ok().map(|r| r.join("seccomp")).as_deref())?),
        None => None,
    };
    let mut cgroup = Cgroup::create(&c.id, c.spec.linux.resources.as_ref())?;
    if rootless {
        namespaces::enter_rootless_userns()?;
    }
    if c.spec.has_namespace("pid") {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID).context("creating a PID namespace")?;
    }
    let devnull = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let pty_socks = if c.tty {
        Some(
            socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .context("socketpair")?,
        )
    } else {
        None
    };
    let old_mask = signals::block()?;
    let mut sfd = signals::signal_fd()?;

    // SAFETY: img-run is single-threaded here; the child only runs our own code and leaves
    // with exec or _exit.
    let child = match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(err_read);
            let setup = ChildSetup {
                flags,
                rootless,
                old_mask: &old_mask,
                devnull: &devnull,
                pty_sock: pty_socks.as_ref().map(|p| &p.1),
                cgroup: cgroup.as_ref(),
                seccomp: seccomp.as_ref(),
                winsize: if c.tty { pty::winsize(std::io::stdin().as_fd()) } else { None },
            };
            let failure = child_main(c, &setup, &err_write);
            report(&err_write, &failure);
            // SAFETY: leave without running img-run's destructors (the cgroup's, say).
            unsafe { libc::_exit(failure.code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_write);
    drop(devnull);
    let master = match pty_socks {
        Some((ours, theirs)) => {
            drop(theirs);
            pty::recv_fd(ours.as_fd())?
        }
        None => None,
    };
    let mut message = Vec::new();
    std::fs::File::from(err_read).read_to_end(&mut message).context("reading the container's start-up")?;
    if !message.is_empty() {
        let _ = nix::sys::wait::waitpid(child, None);
        if let Some(cg) = cgroup.as_mut() {
            cg.remove();
        }
        return Ok(Outcome::Failed(parse_report(&message)));
    }

    let raw = if master.is_some() { pty::RawMode::enter() } else { None };
    let mut relay = master.map(|m| pty::Relay::new(m, c.interactive));
    if let Some(r) = &relay {
        pty::copy_winsize(std::io::stdin().as_fd(), r.master());
    }
    let code = supervise(child, &mut sfd, relay.as_mut());
    if let Some(r) = relay.as_mut() {
        r.drain();
    }
    drop(raw);
    drop(cgroup);
    Ok(Outcome::Exited(code?))
}

/// Waits for the container, forwarding signals and relaying its pty.
fn supervise(child: Pid, sfd: &mut SignalFd, mut relay: Option<&mut pty::Relay>) -> Result<i32> {
    loop {
        if let Some(code) = signals::try_wait(child)? {
            return Ok(code);
        }
        let signal_ready;
        let (mut output_ready, mut input_ready) = (false, false);
        {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            let stdin = std::io::stdin();
            if let Some(r) = relay.as_deref() {
                if r.output_open {
                    fds.push(PollFd::new(r.master(), PollFlags::POLLIN));
                }
                if r.input_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            signal_ready = ready(0);
            if let Some(r) = relay.as_deref() {
                let mut i = 1;
                if r.output_open {
                    output_ready = ready(i);
                    i += 1;
                }
                if r.input_open {
                    input_ready = ready(i);
                }
            }
        }
        if signal_ready
            && signals::forward_pending(sfd, child)
            && let Some(r) = relay.as_deref()
        {
            pty::copy_winsize(std::io::stdin().as_fd(), r.master());
        }
        if let Some(r) = relay.as_deref_mut() {
            if output_ready {
                r.pump_output();
            }
            if input_ready {
                r.pump_input();
            }
        }
    }
}

/// A spec may ask for a user namespace. Rootless, img-run always makes one mapping the
/// invoking user to root, so the spec's mappings must say the same; as root, mapping ranges of
/// host ids is not supported (and is not silently skipped).
fn check_user_mappings(spec: &Spec, rootless: bool) -> Result<()> {
    if !rootless {
        bail!(
            "config.json asks for a user namespace: not supported when running as root (run as the user instead)"
        );
    }
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let only_self = |maps: &[super::spec::IdMapping], id: u32| {
        maps.is_empty()
            || (maps.len() == 1 && maps[0].container_id == 0 && maps[0].host_id == id && maps[0].size == 1)
    };
    if !only_self(&spec.linux.uid_mappings, uid) || !only_self(&spec.linux.gid_mappings, gid) {
        bail!("config.json maps other ids than the invoking user's ({uid}:{gid}) to root: not supported");
    }
    Ok(())
}

/// Sends a start-up failure to img-run: the exit status, a newline, the message.
fn report(pipe: &OwnedFd, f: &Failure) {
    let mut w = std::fs::File::from(pipe.try_clone().expect("dup of the error pipe"));
    let _ = write!(w, "{}\n{}", f.code, f.message);
}

fn parse_report(bytes: &[u8]) -> Failure {
    let text = String::from_utf8_lossy(bytes);
    let (code, message) = text.split_once('\n').unwrap_or(("125", &text));
    Failure { code: code.trim().parse().unwrap_or(125), message: message.to_string() }
}

/// The container side, from fork to exec. Returns only on failure.
fn child_main(c: &Container, setup: &ChildSetup, err_pipe: &OwnedFd) -> Failure {
    let process = match prepare(c, setup) {
        Ok(p) => p,
        Err(e) => return Failure::runtime(e),
    };
    if !c.init {
        return process::exec(&process, setup.rootless, setup.seccomp);
    }
    // --init: this process stays as PID 1 and reaps; its child becomes the command.
    if let Err(e) = signals::block() {
        return Failure::runtime(e);
    }
    // SAFETY: still single-threaded; the child execs or _exits.
    match unsafe { fork() } {
        Err(e) => Failure::runtime(anyhow::Error::from(e).context("fork for --init")),
        Ok(ForkResult::Child) => match signals::restore(setup.old_mask) {
            Ok(()) => process::exec(&process, setup.rootless, setup.seccomp),
            Err(e) => Failure::runtime(e),
        },
        Ok(ForkResult::Parent { child }) => {
            let _ = err_pipe;
            init_become_reaper(child)
        }
    }
}

/// What the parent hands the child besides the container.
struct ChildSetup<'a> {
    flags: CloneFlags,
    rootless: bool,
    old_mask: &'a nix::sys::signal::SigSet,
    devnull: &'a std::fs::File,
    pty_sock: Option<&'a OwnedFd>,
    cgroup: Option<&'a Cgroup>,
    seccomp: Option<&'a super::seccomp::Program>,
    winsize: Option<libc::winsize>,
}

/// Namespaces, cgroup, filesystem, hostname, user and terminal: everything before exec.
fn prepare(c: &Container, s: &ChildSetup) -> Result<super::spec::Process> {
    let (flags, rootless) = (s.flags, s.rootless);
    signals::restore(s.old_mask)?;
    // SAFETY: prctl with integer arguments: die with img-run.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if let Some(cg) = s.cgroup {
        cg.join_self()?;
    }
    nix::sched::unshare(flags).context("creating namespaces")?;
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        namespaces::loopback_up()?;
    }
    let cx = mounts::Isolation { userns: rootless, netns: flags.contains(CloneFlags::CLONE_NEWNET) };
    mounts::setup(&c.spec, &c.rootfs, &c.bundle, cx)?;
    if let Some(h) = &c.spec.hostname {
        nix::unistd::sethostname(h).context("setting the hostname")?;
    }
    let mut process = c.spec.process.clone();
    process::resolve_user(&mut process, c.user.as_deref(), &c.group_add, rootless)?;
    process::make_cwd(&process.cwd)?;
    match s.pty_sock {
        Some(sock) => {
            let (master, slave) = pty::open_pair()?;
            // The caller's size before the command starts (img-run follows SIGWINCH later).
            if let Some(ws) = &s.winsize {
                pty::set_winsize(master.as_fd(), ws);
            }
            pty::bind_console(master.as_fd())?;
            pty::send_fd(sock.as_fd(), master.as_fd())?;
            drop(master);
            pty::attach(slave)?;
        }
        None if !c.interactive => {
            nix::unistd::dup2_stdin(s.devnull).context("stdin from /dev/null")?;
        }
        None => {}
    }
    if c.spec.root.readonly {
        mounts::readonly_root()?;
    }
    Ok(process)
}

/// The `--init` PID 1: closes everything it does not need and reaps until the command ends.
fn init_become_reaper(child: Pid) -> ! {
    // SAFETY: prctl/close_range with integer arguments. The reaper must not be dumpable (its
    // /proc/1/exe is img-run's binary on the host) and holds no descriptor but stdio.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    signals::init_loop(child)
}
