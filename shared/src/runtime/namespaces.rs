//! Namespaces: which ones a spec asks for, the rootless user namespace (the invoking user is
//! root inside), and the loopback interface of a new network namespace.

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

/// Enters a new user namespace in which the calling (unprivileged) user is root, alone.
/// Must run while the process has a single thread.
pub fn enter_rootless_userns() -> Result<()> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
        .context("creating a user namespace (are unprivileged user namespaces enabled?)")?;
    std::fs::write("/proc/self/setgroups", "deny").context("writing /proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).context("writing /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).context("writing /proc/self/gid_map")?;
    Ok(())
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
}
