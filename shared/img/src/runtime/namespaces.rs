//! Namespaces: which ones a spec asks for, the rootless user namespace (the invoking user is
//! root inside, its subordinate ids of /etc/subuid and /etc/subgid the other ids), and the
//! loopback interface of a new network namespace.

use std::io;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;

use super::spec::{IdMapping, Spec};

/// The clone flag of a namespace type as config.json names it.
fn flag(kind: &str) -> Result<CloneFlags> {
    Ok(match kind {
        "mount" => CloneFlags::CLONE_NEWNS,
        "pid" => CloneFlags::CLONE_NEWPID,
        "user" => CloneFlags::CLONE_NEWUSER,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "network" => CloneFlags::CLONE_NEWNET,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        "time" => bail!("config.json: linux.namespaces: time namespaces are not supported by img-run"),
        other => bail!("config.json: linux.namespaces: unknown namespace type {other:?}"),
    })
}

/// Checks `linux.namespaces`: known types, each at most once (the spec says a runtime MUST
/// refuse a duplicate), and joins by path only for the types img-run can join.
pub fn check(spec: &Spec) -> Result<()> {
    let mut seen = CloneFlags::empty();
    for ns in &spec.linux.namespaces {
        let f = flag(&ns.kind)?;
        if seen.contains(f) {
            bail!("config.json: linux.namespaces lists the {} namespace twice", ns.kind);
        }
        seen |= f;
        if let Some(path) = &ns.path
            && matches!(ns.kind.as_str(), "mount" | "user")
        {
            bail!(
                "config.json: linux.namespaces: joining an existing {} namespace ({path}) is not supported by img-run",
                ns.kind
            );
        }
    }
    Ok(())
}

/// The namespaces to create, other than pid and user (made by the parent before it forks).
/// A namespace given by `path` is joined instead ([`join`]).
pub fn child_flags(spec: &Spec) -> Result<CloneFlags> {
    check(spec)?;
    let mut flags = CloneFlags::CLONE_NEWNS;
    for ns in spec.linux.namespaces.iter().filter(|n| n.path.is_none()) {
        flags |= flag(&ns.kind)? & !(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUSER);
    }
    Ok(flags)
}

/// The namespaces given by `path`, of the kinds that `which` selects, opened (before any is
/// joined: a path may be in /proc of a process whose namespaces we are about to leave).
pub fn open_joins(spec: &Spec, which: impl Fn(&str) -> bool) -> Result<Vec<(CloneFlags, OwnedFd, String)>> {
    let mut out = Vec::new();
    for ns in spec.linux.namespaces.iter().filter(|n| which(&n.kind)) {
        if let Some(path) = &ns.path {
            let file = std::fs::File::open(path).with_context(|| {
                format!("config.json: linux.namespaces: opening the {} namespace {path}", ns.kind)
            })?;
            out.push((flag(&ns.kind)?, OwnedFd::from(file), path.clone()));
        }
    }
    Ok(out)
}

/// Joins namespaces opened by [`open_joins`]; setns checks each is of the type named.
pub fn join(opened: Vec<(CloneFlags, OwnedFd, String)>) -> Result<()> {
    for (flag, fd, path) in opened {
        nix::sched::setns(&fd, flag).with_context(|| format!("joining the namespace {path}"))?;
    }
    Ok(())
}

/// The ids a rootless container has: container uids `0..uids` and gids `0..gids`, 0 being the
/// invoking user's own and the rest (when the user has subordinate ranges) the ranges of
/// /etc/subuid and /etc/subgid, as podman maps them.
#[derive(Clone, Debug, PartialEq)]
pub struct RootlessIds {
    pub uids: u32,
    pub gids: u32,
    /// Why only the invoking user is mapped, when that is so: what to configure for more.
    pub single_because: Option<String>,
}

impl RootlessIds {
    /// Whether supplementary groups can be set: only the single mapping denies setgroups.
    pub fn can_setgroups(&self) -> bool {
        self.single_because.is_none()
    }

    /// Checks that a container uid and gid are mapped; the error says what to configure.
    pub fn check(&self, what: &str, kind: &str, id: u32) -> Result<()> {
        let (count, file) =
            if kind == "uid" { (self.uids, "/etc/subuid") } else { (self.gids, "/etc/subgid") };
        if id < count {
            return Ok(());
        }
        match &self.single_because {
            Some(why) => {
                bail!("{what}: {kind} {id} is not mapped in this rootless container, only 0 is: {why}")
            }
            None => bail!(
                "{what}: {kind} {id} is not mapped in this rootless container: {file} gives it ids 0 to {}",
                count - 1
            ),
        }
    }
}

/// A user's ranges in an /etc/subuid-style file (`name-or-uid:start:count` lines).
fn subordinate_ranges(file: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    file.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            if f.len() != 3 || !(Some(f[0]) == name || f[0] == id.to_string()) {
                return None;
            }
            let (start, count) = (f[1].parse::<u32>().ok()?, f[2].parse::<u32>().ok()?);
            (count > 0 && start.checked_add(count).is_some()).then_some((start, count))
        })
        .collect()
}

/// The `newuidmap`/`newgidmap` arguments after the pid: container 0 is `own`, then the ranges
/// one after another from container id 1. Returns them and how many ids are mapped.
fn helper_args(own: u32, ranges: &[(u32, u32)]) -> (Vec<String>, u32) {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut next: u32 = 1;
    for &(start, count) in ranges {
        let Some(end) = next.checked_add(count) else { break };
        args.extend([next.to_string(), start.to_string(), count.to_string()]);
        next = end;
    }
    (args, next)
}

/// A setuid helper in $PATH, else in /usr/bin.
fn find_helper(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

static SUBORDINATE_IDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets this process's rootless containers map the invoking user's subordinate ids. img-run
/// does; img-build does not (yet): it reads a RUN step's changes from outside the user
/// namespace, where a file of a subordinate id is neither readable as the user's nor recorded
/// with its container owner.
pub fn allow_subordinate_ids() {
    SUBORDINATE_IDS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Enters a new user namespace in which the calling (unprivileged) user is root. Unless the
/// spec gives mappings of its own (`own_maps`), when [`allow_subordinate_ids`] was called and
/// /etc/subuid and /etc/subgid give the user ranges and the setuid helpers
/// `newuidmap`/`newgidmap` are installed, container ids 1.. are the user's subordinate ids,
/// written by the helpers from outside; otherwise the user is alone. Must run while the
/// process has a single thread.
pub fn enter_rootless_userns(own_maps: bool) -> Result<RootlessIds> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let name = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name);
    let user = name.clone().unwrap_or_else(|| uid.to_string());
    let plan = if own_maps {
        Err("config.json gives the mappings (linux.uidMappings)".to_string())
    } else if !SUBORDINATE_IDS.load(std::sync::atomic::Ordering::Relaxed) {
        Err("this tool maps only the invoking user when rootless (img-run maps /etc/subuid's ranges)"
            .to_string())
    } else {
        subordinate_plan(name.as_deref(), uid.as_raw(), gid.as_raw())
    };
    let (uid_args, gid_args, newuidmap, newgidmap) = match plan {
        Ok(p) => p,
        Err(why) => {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
                .context("creating a user namespace (are unprivileged user namespaces enabled?)")?;
            std::fs::write("/proc/self/setgroups", "deny").context("writing /proc/self/setgroups")?;
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
                .context("writing /proc/self/uid_map")?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
                .context("writing /proc/self/gid_map")?;
            return Ok(RootlessIds { uids: 1, gids: 1, single_because: Some(why.replace("USER", &user)) });
        }
    };
    let ((uid_args, uids), (gid_args, gids)) = (uid_args, gid_args);
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let parent = std::process::id().to_string();
    // SAFETY: single-threaded; the helper waits for the namespace, runs the two setuid
    // helpers and _exits without returning into the caller.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(go_write);
            let mut byte = [0u8; 1];
            let ready = nix::unistd::read(&go_read, &mut byte).is_ok_and(|n| n == 1);
            let map = |helper: &std::path::Path, args: &[String]| {
                std::process::Command::new(helper)
                    .arg(&parent)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let ok = ready && map(&newuidmap, &uid_args) && map(&newgidmap, &gid_args);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_read);
            let made = nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
                .context("creating a user namespace (are unprivileged user namespaces enabled?)");
            if made.is_ok() {
                let _ = nix::unistd::write(&go_write, b"1");
            }
            drop(go_write);
            let status = nix::sys::wait::waitpid(child, None).context("waiting for newuidmap/newgidmap")?;
            made?;
            if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) {
                bail!(
                    "newuidmap/newgidmap could not map {user}'s ranges of /etc/subuid and /etc/subgid (see their message above)"
                );
            }
        }
    }
    Ok(RootlessIds { uids, gids, single_because: None })
}

type Plan = ((Vec<String>, u32), (Vec<String>, u32), std::path::PathBuf, std::path::PathBuf);

/// The helpers' arguments for the user's subordinate ranges, or why there are none (`USER`
/// stands for the user's name).
fn subordinate_plan(name: Option<&str>, uid: u32, gid: u32) -> std::result::Result<Plan, String> {
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let uid_ranges = subordinate_ranges(&read("/etc/subuid"), name, uid);
    if uid_ranges.is_empty() {
        return Err("/etc/subuid has no range for USER (add e.g. \"USER:100000:65536\" to it and to /etc/subgid, as for podman)".to_string());
    }
    // /etc/subgid is keyed by the user's name (or uid) too, as newgidmap checks it.
    let gid_ranges = subordinate_ranges(&read("/etc/subgid"), name, uid);
    if gid_ranges.is_empty() {
        return Err("/etc/subgid has no range for USER (add e.g. \"USER:100000:65536\", as in /etc/subuid)"
            .to_string());
    }
    let (Some(newuidmap), Some(newgidmap)) = (find_helper("newuidmap"), find_helper("newgidmap")) else {
        return Err("newuidmap/newgidmap are not installed (Debian package uidmap)".to_string());
    };
    Ok((helper_args(uid, &uid_ranges), helper_args(gid, &gid_ranges), newuidmap, newgidmap))
}

/// As root: enters a new user namespace with the spec's id mappings, written from outside it
/// by a helper forked first (a process inside may only map its own id), and becomes its root.
/// Must run while the process has a single thread.
pub fn enter_mapped_userns(uids: &[IdMapping], gids: &[IdMapping]) -> Result<()> {
    let map = |m: &[IdMapping]| -> String {
        m.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
    };
    let (uid_map, gid_map) = (map(uids), map(gids));
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let parent = std::process::id();
    // SAFETY: single-threaded; the helper only writes two files and _exits.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(go_write);
            let mut byte = [0u8; 1];
            let ready = nix::unistd::read(&go_read, &mut byte).is_ok_and(|n| n == 1);
            let ok = ready
                && std::fs::write(format!("/proc/{parent}/uid_map"), &uid_map).is_ok()
                && std::fs::write(format!("/proc/{parent}/gid_map"), &gid_map).is_ok();
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_read);
            let made = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).context("creating a user namespace");
            if made.is_ok() {
                let _ = nix::unistd::write(&go_write, b"1");
            }
            drop(go_write);
            let status = nix::sys::wait::waitpid(child, None).context("waiting for the id mapper")?;
            made?;
            if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) {
                bail!(
                    "config.json: writing the user namespace's uidMappings/gidMappings failed (overlapping or invalid ranges?)"
                );
            }
        }
    }
    // Root of the namespace, so that what img-run creates (mount points) is owned by a mapped id.
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).context("setgid(0) in the user namespace")?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).context("setuid(0) in the user namespace")?;
    Ok(())
}

#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Brings `lo` up in the current network namespace.
pub fn loopback_up() -> Result<()> {
    // SAFETY: a plain socket for interface ioctls, closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error()).context("socket for bringing lo up");
    }
    let mut req = IfreqFlags { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq of the right size.
    let result = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req as *mut IfreqFlags) != 0 {
            Err(io::Error::last_os_error())
        } else {
            req.flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req as *const IfreqFlags) != 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(sock) };
    result.context("bringing lo up")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_spec() {
        let mut spec = Spec::docker_default();
        let f = child_flags(&spec).unwrap();
        assert!(f.contains(CloneFlags::CLONE_NEWUTS) && !f.contains(CloneFlags::CLONE_NEWNET));
        spec.set_namespace("network", true);
        assert!(child_flags(&spec).unwrap().contains(CloneFlags::CLONE_NEWNET));
        spec.linux.namespaces[0].path = Some("/proc/1/ns/pid".into());
        assert!(child_flags(&spec).is_ok());
        let mount = spec.linux.namespaces.iter().position(|n| n.kind == "mount").unwrap();
        spec.linux.namespaces[mount].path = Some("/proc/1/ns/mnt".into());
        assert!(child_flags(&spec).unwrap_err().to_string().contains("mount namespace"));
        spec.linux.namespaces[mount].path = None;
        spec.linux.namespaces.push(spec.linux.namespaces[mount].clone());
        let e = child_flags(&spec).unwrap_err().to_string();
        assert_eq!(e, "config.json: linux.namespaces lists the mount namespace twice");
        assert_eq!(std::mem::size_of::<IfreqFlags>(), 40);
    }

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let file = "# comment\nalice:100000:65536\n1001:200000:10\nalice:300000:5\nbad:1:x\nbob:0:0\n";
        assert_eq!(subordinate_ranges(file, Some("alice"), 1000), vec![(100000, 65536), (300000, 5)]);
        assert_eq!(subordinate_ranges(file, Some("carol"), 1001), vec![(200000, 10)]);
        assert!(subordinate_ranges(file, Some("bob"), 7).is_empty());
        let (args, n) = helper_args(1000, &[(100000, 65536), (300000, 5)]);
        assert_eq!(args.join(" "), "0 1000 1 1 100000 65536 65537 300000 5");
        assert_eq!(n, 65542);
    }

    #[test]
    fn unmapped_ids_say_what_to_configure() {
        let single = RootlessIds {
            uids: 1,
            gids: 1,
            single_because: Some("/etc/subuid has no range for nobody".into()),
        };
        assert!(single.check("-u", "uid", 0).is_ok());
        let e = single.check("user \"1000\"", "uid", 1000).unwrap_err().to_string();
        assert!(
            e.contains("uid 1000 is not mapped") && e.contains("/etc/subuid has no range for nobody"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let full = RootlessIds { uids: 65537, gids: 65537, single_because: None };
        assert!(full.check("-u", "uid", 65536).is_ok() && full.can_setgroups());
        let e = full.check("-u", "gid", 70000).unwrap_err().to_string();
        assert_eq!(
            e,
            "-u: gid 70000 is not mapped in this rootless container: /etc/subgid gives it ids 0 to 65536"
        );
    }
}
