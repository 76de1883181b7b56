//! `linux.sysctl`: kernel parameters of the container's own namespaces, checked as runc does
//! (only those a namespace of the container makes its own) and written to /proc/sys once the
//! namespaces exist. A parameter of the host's kernel as a whole is refused by name.

use anyhow::{Context, Result, bail};

use super::spec::Spec;

/// IPC-namespaced parameters outside `fs.mqueue.`.
const IPC: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The namespace a parameter belongs to, if any.
fn namespace_of(key: &str) -> Option<&'static str> {
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if key.starts_with("net.") {
        Some("network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some("uts")
    } else {
        None
    }
}

/// The file under /proc/sys of a parameter (dots or slashes as separators).
fn file_of(key: &str) -> Result<String> {
    let rel = key.replace('.', "/");
    if key.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "..") {
        bail!("config.json: linux.sysctl: {key:?} is not a parameter name");
    }
    Ok(format!("/proc/sys/{rel}"))
}

/// Refuses what [`apply`] would not be allowed to write: parameters of no namespace, or of
/// one the container does not have.
pub fn check(spec: &Spec) -> Result<()> {
    for key in spec.linux.sysctl.keys() {
        file_of(key)?;
        match namespace_of(key) {
            None => {
                bail!("config.json: linux.sysctl: {key} is not namespaced: it would change the host's kernel")
            }
            Some(ns) if !spec.has_namespace(ns) => {
                bail!("config.json: linux.sysctl: {key} needs a {ns} namespace of the container's own")
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Writes the parameters; runs in the container's namespaces with /proc still the host's.
pub fn apply(spec: &Spec) -> Result<()> {
    for (key, value) in &spec.linux.sysctl {
        std::fs::write(file_of(key)?, value)
            .with_context(|| format!("config.json: linux.sysctl: setting {key}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_parameters_only() {
        let mut spec = Spec::docker_default();
        spec.linux.sysctl.insert("kernel.shmmax".into(), "1".into());
        spec.linux.sysctl.insert("fs.mqueue.msg_max".into(), "1".into());
        assert!(check(&spec).is_ok());
        spec.linux.sysctl.insert("net.ipv4.ip_forward".into(), "1".into());
        assert!(check(&spec).unwrap_err().to_string().contains("needs a network namespace"));
        spec.set_namespace("network", true);
        assert!(check(&spec).is_ok());
        spec.linux.sysctl.insert("vm.swappiness".into(), "1".into());
        assert!(check(&spec).unwrap_err().to_string().contains("vm.swappiness is not namespaced"));
        assert!(file_of("net..x").is_err() && file_of("net/../../x").is_err());
        assert_eq!(file_of("kernel.shmmax").unwrap(), "/proc/sys/kernel/shmmax");
    }
}
