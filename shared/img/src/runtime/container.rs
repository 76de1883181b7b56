//! One container's life: img-run (the parent) makes the cgroup and, when not root, a user
//! namespace; forks the child into new namespaces; the child builds the filesystem, switches
//! identity and execs the command (or, with `--init`, forks it under a reaper). The parent
//! forwards signals, relays the pty and returns the container's exit status.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::{ForkResult, Pid, fork};

use super::cgroup::Cgroup;
use super::fork;
use super::hooks;
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
    let wants_userns = c.spec.has_namespace("user") || !c.spec.linux.uid_mappings.is_empty();
    // As root, a user namespace of the spec's mappings (img-run enters it, as rootless).
    let mapped = wants_userns && !rootless;
    check_fields(&c.spec, rootless || mapped)?;
    if wants_userns {
        check_user_mappings(&c.spec, rootless)?;
    }
    if (rootless || mapped)
        && c.spec
            .linux
            .resources
            .as_ref()
            .is_some_and(|r| r.memory.is_some() || r.pids.is_some() || r.cpu.is_some())
    {
        if mapped {
            bail!("config.json: linux.resources with a user namespace is not supported by img-run");
        }
        bail!("resource limits need root: cgroups are not delegated to this user");
    }
    let seccomp = match &c.spec.linux.seccomp {
        Some(s) => Some(s.program(crate::store::root().ok().map(|r| r.join("seccomp")).as_deref())?),
        None => None,
    };
    // Device rules (checked in any case) need a cgroup of our own, which a rootless run
    // cannot have (nothing is delegated; runc skips them too): its user namespace cannot make
    // device nodes, and the host nodes it binds stay guarded by their permissions.
    let resources = c.spec.linux.resources.as_ref();
    let mut device_rules = super::device_rules::effective(resources.map_or(&[], |r| &r.devices))?;
    if rootless {
        device_rules.clear();
    }
    let mut cgroup = match c.spec.linux.cgroups_path.as_deref().filter(|p| !p.is_empty()) {
        Some(path) => Some(Cgroup::create_at(path, resources, &device_rules)?),
        None => Cgroup::create(&c.id, resources, &device_rules, !mapped)?,
    };
    // Rootless: the invoking user is root, and its subordinate ids the others (when it has
    // them, the tool allows it and the spec gives no mappings of its own).
    let rootless_ids = if rootless {
        let own_maps = !c.spec.linux.uid_mappings.is_empty() || !c.spec.linux.gid_mappings.is_empty();
        Some(namespaces::enter_rootless_userns(own_maps)?)
    } else {
        None
    };
    if mapped {
        // The child joins the cgroup from inside the user namespace, as the mapped root.
        if let Some(cg) = &cgroup {
            let host = |m: &[super::spec::IdMapping]| {
                m.iter().find(|m| m.container_id == 0).map(|m| m.host_id).unwrap_or(0)
            };
            cg.let_join(host(&c.spec.linux.uid_mappings), host(&c.spec.linux.gid_mappings))?;
        }
        namespaces::enter_mapped_userns(&c.spec.linux.uid_mappings, &c.spec.linux.gid_mappings)?;
    }
    let hooks = c.spec.hooks.clone().unwrap_or_default();
    let runtime_hooks = !(hooks.prestart.is_empty()
        && hooks.create_runtime.is_empty()
        && hooks.poststart.is_empty()
        && hooks.poststop.is_empty());
    // img-run's own PID namespace, for the hooks it runs once the container is forked.
    let own_pidns = if runtime_hooks && !rootless {
        Some(std::fs::File::open("/proc/self/ns/pid").context("opening /proc/self/ns/pid")?)
    } else {
        None
    };
    // The child stops for the createRuntime and prestart hooks, and learns its pid from us.
    let sync = if c.spec.hooks.is_some() {
        Some(
            socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .context("socketpair")?,
        )
    } else {
        None
    };
    if c.spec.has_namespace("pid") {
        let join = namespaces::open_joins(&c.spec, |k| k == "pid")?;
        if join.is_empty() {
            nix::sched::unshare(CloneFlags::CLONE_NEWPID).context("creating a PID namespace")?;
        } else {
            namespaces::join(join)?;
        }
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

    let target = cgroup.as_ref().and_then(Cgroup::fork_target);
    // SAFETY: img-run is single-threaded here; the child only runs our own code and leaves
    // with exec or _exit.
    let forked = unsafe { fork::fork_into(target.as_ref().map(|f| f.as_fd())) }?;
    drop(target);
    let child = match forked.result {
        ForkResult::Child => {
            drop(err_read);
            let setup = ChildSetup {
                flags,
                rootless_ids: rootless_ids.as_ref(),
                userns: rootless || mapped,
                old_mask: &old_mask,
                devnull: &devnull,
                pty_sock: pty_socks.as_ref().map(|p| &p.1),
                sync: sync.as_ref().map(|p| &p.1),
                cgroup: cgroup.as_ref(),
                in_cgroup: forked.in_cgroup,
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
    if let Some(ns) = &own_pidns {
        // Hooks are the runtime's: not in the container's PID namespace.
        nix::sched::setns(ns, CloneFlags::CLONE_NEWPID).context("returning to img-run's PID namespace")?;
    }
    // As the spec says (and runc does): a pid while the container has one, none once stopped.
    let state = |status: &str| {
        let pid = (status != "stopped").then_some(child.as_raw());
        hooks::state(&c.spec, &c.id, status, pid, &c.bundle)
    };
    if let Some((ours, theirs)) = sync {
        drop(theirs);
        if let Err(e) = sync_hooks(ours, &hooks, &state("creating"), child) {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            if let Some(cg) = cgroup.as_mut() {
                cg.remove();
            }
            return Ok(Outcome::Failed(Failure::runtime(e)));
        }
    }
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

    hooks::run_warn("poststart", &hooks.poststart, &state("running"));
    let raw = if master.is_some() { pty::RawMode::enter() } else { None };
    let mut relay = master.map(|m| pty::Relay::new(m, c.interactive));
    if let Some(m) = relay.as_ref().and_then(pty::Relay::master) {
        pty::copy_winsize(std::io::stdin().as_fd(), m);
    }
    let code = supervise(child, &mut sfd, relay.as_mut());
    if let Some(r) = relay.as_mut() {
        r.drain();
    }
    drop(raw);
    drop(cgroup);
    hooks::run_warn("poststop", &hooks.poststop, &state("stopped"));
    Ok(Outcome::Exited(code?))
}

/// The parent's side of the hooks' stop: when the child has made its namespaces, run
/// createRuntime and prestart, then tell it its pid (seen from here) to go on.
fn sync_hooks(sock: OwnedFd, h: &super::spec::Hooks, state: &str, child: Pid) -> Result<()> {
    let mut sock = std::os::unix::net::UnixStream::from(sock);
    let mut byte = [0u8; 1];
    // EOF: the child failed before its namespaces were made; its report says why.
    if sock.read(&mut byte).context("waiting for the container's namespaces")? == 0 {
        return Ok(());
    }
    // As runc: prestart (deprecated) first, then createRuntime.
    hooks::run("prestart", &h.prestart, state)?;
    hooks::run("createRuntime", &h.create_runtime, state)?;
    writeln!(sock, "{}", child.as_raw()).context("resuming the container")?;
    Ok(())
}

/// The child's side: stop until the parent's hooks ran; its pid as the parent sees it.
fn wait_for_hooks(sock: &OwnedFd) -> Result<i32> {
    let mut sock = std::os::unix::net::UnixStream::from(sock.try_clone().context("dup")?);
    sock.write_all(b"1").context("telling img-run the namespaces are made")?;
    // One line: the child holds a copy of img-run's end too, so no EOF comes.
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(sock), &mut reply)
        .context("waiting for img-run's hooks")?;
    reply.trim().parse().context("img-run's hooks failed")
}

/// How long a container with a terminal has to end once that terminal hung up or img-run was
/// told to stop (SIGHUP, SIGTERM) before it is killed. An interactive shell as the
/// container's PID 1 ignores both signals (the kernel drops a signal the PID 1 of a namespace
/// has no handler for), so without this the container would outlive its terminal.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Waits for the container, forwarding signals and relaying its pty. With a pty, as docker
/// and runc do: when the caller's terminal hangs up (SIGHUP, or its input ends) the
/// container's pty is hung up too and the container gets SIGHUP; then, as after a SIGTERM,
/// it is killed if it has not ended within [`STOP_GRACE`].
fn supervise(child: Pid, sfd: &mut SignalFd, mut relay: Option<&mut pty::Relay>) -> Result<i32> {
    let mut deadline: Option<Instant> = None;
    loop {
        if let Some(code) = signals::try_wait(child)? {
            return Ok(code);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // The container's PID 1: its PID namespace goes with it (and whatever is left in
            // its cgroup is killed when the cgroup is removed).
            let _ = kill(child, Signal::SIGKILL);
            deadline = None;
        }
        let timeout = match deadline {
            Some(d) => {
                PollTimeout::try_from(d.saturating_duration_since(Instant::now())).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let signal_ready;
        let (mut output_ready, mut input_ready) = (false, false);
        {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            let stdin = std::io::stdin();
            if let Some(r) = relay.as_deref() {
                if let Some(m) = r.master().filter(|_| r.output_open) {
                    fds.push(PollFd::new(m, PollFlags::POLLIN));
                }
                if r.input_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            signal_ready = ready(0);
            if let Some(r) = relay.as_deref() {
                let mut i = 1;
                if r.master().is_some() && r.output_open {
                    output_ready = ready(i);
                    i += 1;
                }
                if r.input_open {
                    input_ready = ready(i);
                }
            }
        }
        let mut stop = false;
        let mut hangup = false;
        if signal_ready {
            let got = signals::forward_pending(sfd, child);
            if got.winch
                && let Some(m) = relay.as_deref().and_then(pty::Relay::master)
            {
                pty::copy_winsize(std::io::stdin().as_fd(), m);
            }
            stop = got.terminate;
            hangup = got.hangup;
        }
        if let Some(r) = relay.as_deref_mut() {
            if output_ready {
                r.pump_output();
            }
            // With -i the input is the caller's terminal (in raw mode): it ends only when the
            // terminal hangs up.
            if input_ready && !hangup && r.pump_input() == pty::Input::Ended {
                let _ = kill(child, Signal::SIGHUP);
                hangup = true;
            }
            if hangup {
                r.hang_up();
            }
            if (hangup || stop) && deadline.is_none() {
                deadline = Some(Instant::now() + STOP_GRACE);
            }
        }
    }
}

/// The fields of config.json that are applied here or further on, checked before anything
/// is made; those img-run does not apply are refused by name.
fn check_fields(spec: &Spec, userns: bool) -> Result<()> {
    if spec.domainname.is_some() && !spec.has_namespace("uts") {
        bail!("config.json: domainname needs a private UTS namespace");
    }
    super::sysctl::check(spec)?;
    if let Some(p) = &spec.linux.rootfs_propagation {
        mounts::root_propagation(p)?;
    }
    if userns && spec.linux.cgroups_path.as_deref().is_some_and(|p| !p.is_empty()) {
        bail!("config.json: linux.cgroupsPath needs root outside a user namespace (nothing is delegated)");
    }
    hooks::check(spec)?;
    if let Some(h) = &spec.hooks
        && userns
    {
        // In a user namespace (rootless, or the spec's), img-run lives in the container's user
        // and PID namespaces: it cannot run a hook in the runtime's.
        let runtime_side = ["prestart", "createRuntime", "poststart", "poststop"];
        if let Some((name, _)) =
            hooks::lists(h).iter().find(|(n, l)| runtime_side.contains(n) && !l.is_empty())
        {
            bail!(
                "config.json: hooks.{name}: not supported with a user namespace or rootless (they run in the runtime's namespaces)"
            );
        }
    }
    if let Some(oom) = spec.process.oom_score_adj
        && !(-1000..=1000).contains(&oom)
    {
        bail!("config.json: process.oomScoreAdj {oom} is out of range (-1000 to 1000)");
    }
    if let Some(profile) = spec.process.apparmor_profile.as_deref().filter(|p| !p.is_empty()) {
        super::apparmor::prepare(profile)?;
    }
    Ok(())
}

/// What the container side does with the process's own settings while /proc is the host's:
/// its OOM score adjustment and AppArmor profile (taking effect at exec).
fn apply_process_attrs(spec: &Spec) -> Result<()> {
    if let Some(oom) = spec.process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", oom.to_string())
            .context("config.json: process.oomScoreAdj: writing /proc/self/oom_score_adj")?;
    }
    if let Some(profile) = spec.process.apparmor_profile.as_deref().filter(|p| !p.is_empty()) {
        super::apparmor::apply_on_exec(profile)?;
    }
    Ok(())
}

/// A spec may ask for a user namespace. Rootless, img-run always makes one mapping the
/// invoking user to root, so the spec's mappings must say the same; as root, it makes one with
/// the spec's mappings, which must then be given (for users and groups) and map root.
fn check_user_mappings(spec: &Spec, rootless: bool) -> Result<()> {
    if !rootless {
        let (u, g) = (&spec.linux.uid_mappings, &spec.linux.gid_mappings);
        if !spec.has_namespace("user") {
            bail!("config.json: linux.uidMappings needs a user namespace in linux.namespaces");
        }
        if u.is_empty() || g.is_empty() {
            bail!(
                "config.json: a user namespace needs linux.uidMappings and linux.gidMappings when run as root"
            );
        }
        let maps_root = |m: &[super::spec::IdMapping]| m.iter().any(|m| m.container_id == 0 && m.size > 0);
        if !maps_root(u) || !maps_root(g) {
            bail!("config.json: the user namespace's mappings must map root (container id 0)");
        }
        return Ok(());
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
    // The single rootless mapping denies setgroups; subordinate ids allow it.
    let no_setgroups = setup.rootless_ids.is_some_and(|ids| !ids.can_setgroups());
    if !c.init {
        return process::exec(&process, no_setgroups, setup.seccomp);
    }
    // --init: this process stays as PID 1 and reaps; its child becomes the command.
    if let Err(e) = signals::block() {
        return Failure::runtime(e);
    }
    // SAFETY: still single-threaded; the child execs or _exits.
    match unsafe { fork() } {
        Err(e) => Failure::runtime(anyhow::Error::from(e).context("fork for --init")),
        Ok(ForkResult::Child) => match signals::restore(setup.old_mask) {
            Ok(()) => process::exec(&process, no_setgroups, setup.seccomp),
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
    /// Rootless: which container ids are mapped.
    rootless_ids: Option<&'a namespaces::RootlessIds>,
    /// In a user namespace (rootless, or the spec's): no mknod, host devices are bound.
    userns: bool,
    old_mask: &'a nix::sys::signal::SigSet,
    devnull: &'a std::fs::File,
    pty_sock: Option<&'a OwnedFd>,
    /// To stop for the runtime's hooks (when config.json has hooks).
    sync: Option<&'a OwnedFd>,
    cgroup: Option<&'a Cgroup>,
    /// Forked straight into the cgroup's v2 directory.
    in_cgroup: bool,
    seccomp: Option<&'a super::seccomp::Program>,
    winsize: Option<libc::winsize>,
}

/// Namespaces, cgroup, filesystem, hostname, user and terminal: everything before exec.
fn prepare(c: &Container, s: &ChildSetup) -> Result<super::spec::Process> {
    let flags = s.flags;
    signals::restore(s.old_mask)?;
    // SAFETY: prctl with integer arguments: die with img-run.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if let Some(cg) = s.cgroup {
        cg.join_self(s.in_cgroup)?;
    }
    // As runc: the namespaces given by path are joined first, then the others made.
    namespaces::join(namespaces::open_joins(&c.spec, |k| k != "pid")?)?;
    nix::sched::unshare(flags).context("creating namespaces")?;
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        namespaces::loopback_up()?;
    }
    super::sysctl::apply(&c.spec)?;
    apply_process_attrs(&c.spec)?;
    let hooks = c.spec.hooks.clone().unwrap_or_default();
    let mut state = String::new();
    if let Some(sock) = s.sync {
        let pid = wait_for_hooks(sock)?;
        let creating = hooks::state(&c.spec, &c.id, "creating", Some(pid), &c.bundle);
        hooks::run("createContainer", &hooks.create_container, &creating)?;
        state = hooks::state(&c.spec, &c.id, "created", Some(pid), &c.bundle);
    }
    let cx = mounts::Isolation {
        userns: s.userns,
        netns: c.spec.has_namespace("network"),
        cgroupns: c.spec.has_namespace("cgroup"),
    };
    mounts::setup(&c.spec, &c.rootfs, &c.bundle, cx)?;
    if let Some(h) = &c.spec.hostname {
        nix::unistd::sethostname(h).context("setting the hostname")?;
    }
    if let Some(d) = &c.spec.domainname {
        let name = std::ffi::CString::new(d.as_str()).context("config.json: domainname")?;
        // SAFETY: setdomainname reads `len` bytes of a valid buffer.
        if unsafe { libc::setdomainname(name.as_ptr(), d.len()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setting the domain name");
        }
    }
    let mut process = c.spec.process.clone();
    process::resolve_user(&mut process, c.user.as_deref(), &c.group_add, s.rootless_ids)?;
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
    if !hooks.start_container.is_empty() {
        hooks::run("startContainer", &hooks.start_container, &state)?;
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
