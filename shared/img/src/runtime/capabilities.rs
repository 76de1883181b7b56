//! Linux capabilities: names, docker's default set with `--cap-add`/`--cap-drop`, and
//! applying the five sets (bounding, effective, permitted, inheritable, ambient) to the process.

use anyhow::{Context, Result, bail};

/// Capability names by number (`CAP_` prefix left off).
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set (moby's `DefaultCapabilities`).
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The number of a capability named `CAP_X`, `X`, or in lower case.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The canonical spelling, `CAP_X`, of a capability name; an error if there is no such one.
pub fn canonical(name: &str) -> Result<String> {
    match number(name) {
        Some(n) => Ok(format!("CAP_{}", NAMES[n as usize])),
        None => bail!("unknown capability {name:?}"),
    }
}

/// The bit mask of a list of names.
pub fn mask(names: &[String]) -> Result<u64> {
    names.iter().try_fold(0u64, |m, n| match number(n) {
        Some(bit) => Ok(m | (1 << bit)),
        None => bail!("unknown capability {n:?}"),
    })
}

/// Docker's rule: start from `base`; `--cap-add ALL` gives every capability, `--cap-drop ALL`
/// starts from none; then adds, then drops (a capability both added and dropped is dropped,
/// unless the drop is `ALL`, which only clears what came before).
pub fn adjust(base: &[String], add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let is_all = |v: &String| v.eq_ignore_ascii_case("ALL");
    let mut set: Vec<String> = if drop.iter().any(is_all) { Vec::new() } else { base.to_vec() };
    if add.iter().any(is_all) {
        set = grantable();
    } else {
        for a in add {
            let a = canonical(a)?;
            if !set.contains(&a) {
                set.push(a);
            }
        }
    }
    for d in drop.iter().filter(|d| !is_all(d)) {
        let d = canonical(d)?;
        set.retain(|c| *c != d);
    }
    Ok(set)
}

/// Every capability this process can give a container (`ALL`): those in its own bounding
/// set, which the kernel knows and nothing above us dropped (a VM's init may lack some).
pub fn grantable() -> Vec<String> {
    (0..NAMES.len())
        // SAFETY: prctl with integer arguments only.
        .filter(|&i| unsafe { libc::prctl(libc::PR_CAPBSET_READ, i as libc::c_ulong, 0, 0, 0) } == 1)
        .map(|i| format!("CAP_{}", NAMES[i]))
        .collect()
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops every capability not in `keep` from the bounding set. Needs CAP_SETPCAP, so this
/// comes before the user switch.
pub fn limit_bounding(keep: u64) -> Result<()> {
    for cap in 0..=last_cap() {
        if keep & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("dropping CAP_{} from the bounding set", NAMES[cap as usize]));
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Sets the effective, permitted and inheritable sets, then the ambient set.
pub fn set(effective: u64, permitted: u64, inheritable: u64, ambient: u64) -> Result<()> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: effective as u32, permitted: permitted as u32, inheritable: inheritable as u32 },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: capset with a v3 header and two data words, as the kernel expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting capabilities");
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
    }
    // The kernel allows an ambient capability only if it is also permitted and inheritable;
    // configs (runc's own default among them) list others, which runc skips with a warning.
    let ambient = ambient & permitted & inheritable;
    for cap in 0..=last_cap() {
        if ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("raising ambient CAP_{}", NAMES[cap as usize]));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_masks() {
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("net_admin"), Some(12));
        assert_eq!(number("NOPE"), None);
        assert_eq!(mask(&v(&DOCKER_DEFAULT)).unwrap(), 0xa80425fb);
    }

    #[test]
    fn add_and_drop_as_docker_does() {
        let base = v(&DOCKER_DEFAULT);
        let s = adjust(&base, &v(&["sys_admin"]), &v(&["CHOWN"])).unwrap();
        assert!(s.contains(&"CAP_SYS_ADMIN".to_string()) && !s.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(adjust(&base, &v(&["NET_ADMIN"]), &v(&["ALL"])).unwrap(), ["CAP_NET_ADMIN"]);
        assert_eq!(adjust(&base, &v(&["ALL"]), &[]).unwrap(), grantable());
        assert!(grantable().len() > 30 && grantable().iter().all(|c| number(c).is_some()));
        assert!(adjust(&base, &v(&["BOGUS"]), &[]).is_err());
    }
}
