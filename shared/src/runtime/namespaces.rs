//! Namespaces: which ones a spec asks for, the rootless user namespace (the invoking user is
//! root inside), and the loopback interface of a new network namespace.

use std::io;

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;

use super::spec::Spec;

/// The namespaces to create, other than pid and user (made by the parent before it forks).
pub fn child_flags(spec: &Spec) -> Result<CloneFlags> {
    let mut flags = CloneFlags::CLONE_NEWNS;
    for ns in &spec.linux.namespaces {
        if let Some(path) = &ns.path {
            bail!("joining an existing {} namespace ({path}) is not supported", ns.kind);
        }
        flags |= match ns.kind.as_str() {
            "mount" | "pid" | "user" => CloneFlags::empty(),
            "uts" => CloneFlags::CLONE_NEWUTS,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            "network" => CloneFlags::CLONE_NEWNET,
            "cgroup" => CloneFlags::CLONE_NEWCGROUP,
            "time" => bail!("time namespaces are not supported"),
            other => bail!("unknown namespace type {other:?}"),
        };
    }
    Ok(flags)
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
        assert!(child_flags(&spec).is_err());
        assert_eq!(std::mem::size_of::<IfreqFlags>(), 40);
    }
}
