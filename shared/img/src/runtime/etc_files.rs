//! /etc/hosts, /etc/resolv.conf and /etc/hostname as docker provides them: files in the
//! container's directory, bound over the image's. img-run's containers and img-build's RUN
//! steps both get them.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::spec::{Mount, Spec};

/// An extra line of /etc/hosts (docker's `--add-host`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub ip: IpAddr,
}

impl HostEntry {
    /// The entry as a line of /etc/hosts.
    pub fn line(&self) -> String {
        format!("{}\t{}\n", self.ip, self.host)
    }
}

/// Writes the three files into `dir` and binds them over the image's (read-only for build
/// steps, which must not change them). With `network_none` the container sees only
/// loopback, so it gets none of the host's names or resolvers.
pub fn add_etc_files(
    spec: &mut Spec,
    dir: &Path,
    hostname: &str,
    network_none: bool,
    read_only: bool,
    extra_hosts: &[HostEntry],
) -> Result<()> {
    let mut hosts = if network_none {
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    } else {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()
        })
    };
    if !hosts.ends_with('\n') && !hosts.is_empty() {
        hosts.push('\n');
    }
    for h in extra_hosts {
        hosts.push_str(&h.line());
    }
    let resolv = if network_none {
        String::new()
    } else {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    };
    for (name, content) in [("hosts", hosts), ("resolv.conf", resolv), ("hostname", format!("{hostname}\n"))]
    {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        let options: &[&str] = if read_only { &["rbind", "rprivate", "ro"] } else { &["rbind", "rprivate"] };
        spec.mounts.push(Mount::new(&format!("/etc/{name}"), "bind", &path.to_string_lossy(), options));
    }
    Ok(())
}
