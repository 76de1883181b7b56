//! The subset of the OCI runtime spec's `config.json` that img-run reads (what img-unpack and
//! umoci write), and the docker-like default used for containers run from an image.
//!
//! Reading is strict about what the spec defines: the config is first read with the `oci-spec`
//! crate's types, then every field is either applied or refused with an error naming it
//! ([`super::fields::read`]); properties the spec does not define are ignored as it requires,
//! with a warning. Missing fields take the spec's defaults. These types, not oci-spec's, are
//! what the runtime applies: they carry img-run's exact semantics (see docs/decisions.md).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::capabilities;

/// docker's PATH for images that set none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths docker hides from containers.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths docker makes read-only in containers.
pub const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub oci_version: String,
    #[serde(default)]
    pub process: Process,
    #[serde(default)]
    pub root: Root,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub linux: Linux,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `hooks`: programs run at points of the container's life, with its state on stdin.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default)]
    pub prestart: Vec<Hook>,
    #[serde(default)]
    pub create_runtime: Vec<Hook>,
    #[serde(default)]
    pub create_container: Vec<Hook>,
    #[serde(default)]
    pub start_container: Vec<Hook>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hook {
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds; more than zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default = "root_dir")]
    pub cwd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
}

fn root_dir() -> String {
    "/".to_string()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// Capability names as the spec spells them (`CAP_CHOWN`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Root {
    #[serde(default = "rootfs_dir")]
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

impl Default for Root {
    fn default() -> Self {
        Root { path: rootfs_dir(), readonly: false }
    }
}

fn rootfs_dir() -> String {
    "rootfs".to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub options: Vec<String>,
}

impl Mount {
    pub fn new(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.to_string(),
            kind: kind.to_string(),
            source: source.to_string(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A bind mount (by type, or by a `bind`/`rbind` option as runc also accepts).
    pub fn is_bind(&self) -> bool {
        self.kind == "bind" || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(default)]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_propagation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctl: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<super::seccomp::Seccomp>,
}

/// A device node the container gets (`linux.devices`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub path: String,
    /// `c`, `b`, `u` (unbuffered character) or `p` (FIFO).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<super::device_rules::DeviceRule>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pids {
    pub limit: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
}

impl Spec {
    /// Reads `config.json` of a bundle.
    pub fn load(bundle: &Path) -> Result<Spec> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // A bundle is untrusted: its config.json may be a FIFO (which would block) or huge.
        const MAX_CONFIG: u64 = 16 << 20;
        let path = bundle.join("config.json");
        let shown = path.display();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .with_context(|| format!("reading {shown}"))?;
        if !file.metadata()?.is_file() {
            anyhow::bail!("{shown} is not a regular file");
        }
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG + 1).read_to_end(&mut bytes).with_context(|| format!("reading {shown}"))?;
        if bytes.len() as u64 > MAX_CONFIG {
            anyhow::bail!("{shown} is larger than {} MiB", MAX_CONFIG >> 20);
        }
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: malformed runtime config", path.display()))?;
        for unknown in super::fields::read(&mut value)? {
            eprintln!(
                "img-run: warning: config.json: ignoring {unknown}, which the runtime spec does not define"
            );
        }
        super::fields::typed(&value)
    }

    /// Whether the spec asks for a namespace of this type (`pid`, `network`, …).
    pub fn has_namespace(&self, kind: &str) -> bool {
        self.linux.namespaces.iter().any(|n| n.kind == kind)
    }

    pub fn set_namespace(&mut self, kind: &str, on: bool) {
        self.linux.namespaces.retain(|n| n.kind != kind);
        if on {
            self.linux.namespaces.push(Namespace { kind: kind.to_string(), path: None });
        }
    }

    pub fn resources_mut(&mut self) -> &mut Resources {
        self.linux.resources.get_or_insert_with(Resources::default)
    }

    /// What docker gives a container: its namespaces (host network), mounts, capabilities,
    /// masked and read-only paths, device rules. The process fields are for the caller to
    /// fill in.
    pub fn docker_default() -> Spec {
        let caps: Vec<String> = capabilities::DOCKER_DEFAULT.iter().map(|c| c.to_string()).collect();
        let seccomp = Some(super::seccomp::docker_default(&caps));
        Spec {
            oci_version: "1.0.2".to_string(),
            process: Process {
                terminal: false,
                user: User::default(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: root_dir(),
                capabilities: Some(Capabilities {
                    bounding: caps.clone(),
                    effective: caps.clone(),
                    inheritable: Vec::new(),
                    permitted: caps,
                    ambient: Vec::new(),
                }),
                rlimits: Vec::new(),
                oom_score_adj: None,
                // As docker: its default profile where the host has AppArmor.
                apparmor_profile: super::apparmor::default_for_host(),
                // As docker: setuid programs (sudo, su) work unless asked otherwise.
                no_new_privileges: false,
            },
            root: Root::default(),
            hostname: None,
            domainname: None,
            hooks: None,
            annotations: Default::default(),
            mounts: vec![
                Mount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                Mount::new("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
                Mount::new(
                    "/dev/pts",
                    "devpts",
                    "devpts",
                    &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                ),
                Mount::new("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
                Mount::new("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
                Mount::new(
                    "/dev/shm",
                    "tmpfs",
                    "shm",
                    &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
                ),
            ],
            linux: Linux {
                namespaces: ["pid", "ipc", "uts", "mount"]
                    .iter()
                    .map(|k| Namespace { kind: k.to_string(), path: None })
                    .collect(),
                masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                resources: Some(Resources {
                    devices: super::device_rules::docker_default(),
                    ..Resources::default()
                }),
                seccomp,
                ..Linux::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_umoci_config() {
        let json = r#"{"ociVersion":"1.0.0","process":{"terminal":true,"user":{"uid":0,"gid":0},
            "args":["sh"],"env":["PATH=/bin"],"cwd":"/","capabilities":{"bounding":["CAP_KILL"]},
            "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}],"noNewPrivileges":true},
            "root":{"path":"rootfs"},"hostname":"h","mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
            "linux":{"namespaces":[{"type":"pid"},{"type":"network"}],"maskedPaths":["/proc/kcore"],
            "resources":{"devices":[{"allow":false,"access":"rwm"}]},"unknown":1}}"#;
        let spec: Spec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.process.args, ["sh"]);
        assert!(spec.has_namespace("network") && !spec.has_namespace("uts"));
        assert_eq!(spec.process.rlimits[0].soft, 1024);
        assert_eq!(spec.mounts[0].kind, "proc");
        assert!(!spec.root.readonly);
    }

    #[test]
    fn docker_default_has_docker_capabilities() {
        let spec = Spec::docker_default();
        let caps = spec.process.capabilities.clone().unwrap();
        assert_eq!(capabilities::mask(&caps.bounding).unwrap(), 0xa80425fb);
        assert!(caps.inheritable.is_empty() && caps.ambient.is_empty());
        assert!(!spec.has_namespace("network"));
    }
}
