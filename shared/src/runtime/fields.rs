//! Every field of `config.json` the runtime spec defines, and what img-run does with it:
//! applied, handed whole to the code that reads it, or refused by name. The runtime spec says
//! "Runtimes MUST generate an error when invalid or unsupported values are encountered", so a
//! field img-run does not apply is an error naming it, never silence. Properties the spec does
//! not define are ignored, as it also requires, but reported to the caller for a warning.

use anyhow::{Result, bail};
use serde_json::Value;

/// What img-run does with one field, by its path (`process.user.uid`, `mounts[].options`).
enum Field {
    /// Read and applied; an object or array of objects is checked field by field below it.
    Applied,
    /// Read whole by the code that applies it (seccomp, device rules, sysctl, annotations).
    Whole,
    /// Defined by the spec, not applied: an error when set to anything but an empty value.
    Refused,
    /// Not defined by the spec.
    Unknown,
}

const APPLIED: &[&str] = &[
    "ociVersion",
    "hostname",
    "domainname",
    "process",
    "process.terminal",
    "process.user",
    "process.user.uid",
    "process.user.gid",
    "process.user.umask",
    "process.user.additionalGids",
    "process.args",
    "process.env",
    "process.cwd",
    "process.capabilities",
    "process.capabilities.bounding",
    "process.capabilities.effective",
    "process.capabilities.inheritable",
    "process.capabilities.permitted",
    "process.capabilities.ambient",
    "process.rlimits",
    "process.rlimits[].type",
    "process.rlimits[].hard",
    "process.rlimits[].soft",
    "process.noNewPrivileges",
    "process.oomScoreAdj",
    "process.apparmorProfile",
    "root",
    "root.path",
    "root.readonly",
    "mounts",
    "mounts[].destination",
    "mounts[].type",
    "mounts[].source",
    "mounts[].options",
    "hooks",
    "hooks.prestart",
    "hooks.createRuntime",
    "hooks.createContainer",
    "hooks.startContainer",
    "hooks.poststart",
    "hooks.poststop",
    "hooks.*[].path",
    "hooks.*[].args",
    "hooks.*[].env",
    "hooks.*[].timeout",
    "linux",
    "linux.namespaces",
    "linux.namespaces[].type",
    "linux.namespaces[].path",
    "linux.uidMappings",
    "linux.uidMappings[].containerID",
    "linux.uidMappings[].hostID",
    "linux.uidMappings[].size",
    "linux.gidMappings",
    "linux.gidMappings[].containerID",
    "linux.gidMappings[].hostID",
    "linux.gidMappings[].size",
    "linux.devices",
    "linux.devices[].path",
    "linux.devices[].type",
    "linux.devices[].major",
    "linux.devices[].minor",
    "linux.devices[].fileMode",
    "linux.devices[].uid",
    "linux.devices[].gid",
    "linux.cgroupsPath",
    "linux.resources",
    "linux.resources.memory",
    "linux.resources.memory.limit",
    "linux.resources.memory.swap",
    "linux.resources.pids",
    "linux.resources.pids.limit",
    "linux.resources.cpu",
    "linux.resources.cpu.quota",
    "linux.resources.cpu.period",
    "linux.resources.cpu.shares",
    "linux.rootfsPropagation",
    "linux.maskedPaths",
    "linux.readonlyPaths",
];

const WHOLE: &[&str] = &["annotations", "linux.sysctl", "linux.seccomp", "linux.resources.devices"];

const REFUSED: &[&str] = &[
    "process.consoleSize",
    "process.commandLine",
    "process.user.username",
    "process.selinuxLabel",
    "process.ioPriority",
    "process.scheduler",
    "process.execCPUAffinity",
    "mounts[].uidMappings",
    "mounts[].gidMappings",
    "linux.timeOffsets",
    "linux.mountLabel",
    "linux.intelRdt",
    "linux.personality",
    "linux.memoryPolicy",
    "linux.netDevices",
    "linux.resources.memory.reservation",
    "linux.resources.memory.kernel",
    "linux.resources.memory.kernelTCP",
    "linux.resources.memory.swappiness",
    "linux.resources.memory.disableOOMKiller",
    "linux.resources.memory.useHierarchy",
    "linux.resources.memory.checkBeforeUpdate",
    "linux.resources.cpu.realtimeRuntime",
    "linux.resources.cpu.realtimePeriod",
    "linux.resources.cpu.cpus",
    "linux.resources.cpu.mems",
    "linux.resources.cpu.idle",
    "linux.resources.cpu.burst",
    "linux.resources.blockIO",
    "linux.resources.hugepageLimits",
    "linux.resources.network",
    "linux.resources.rdma",
    "linux.resources.unified",
    "solaris",
    "windows",
    "vm",
    "zos",
];

fn classify(path: &str) -> Field {
    // Hook lists share one shape: `hooks.poststop[].path` is `hooks.*[].path`.
    let generic = match path.strip_prefix("hooks.").and_then(|r| r.split_once("[]")) {
        Some((_, rest)) => format!("hooks.*[]{rest}"),
        None => path.to_string(),
    };
    if APPLIED.contains(&generic.as_str()) {
        Field::Applied
    } else if WHOLE.contains(&path) {
        Field::Whole
    } else if REFUSED.contains(&path) {
        Field::Refused
    } else {
        Field::Unknown
    }
}

/// Whether a refused field is set to something (runc's own `spec` writes some as empty; a
/// `false` such as `disableOOMKiller: false` asks for nothing either).
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Checks every field of a `config.json`: an error naming the first field img-run would not
/// apply; else the paths of properties the spec does not define.
pub fn check(config: &Value) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    walk("", "", config, &mut unknown)?;
    Ok(unknown)
}

/// `path` is the field's class (`mounts[].options`), `shown` its name in errors (`mounts[2].options`).
fn walk(path: &str, shown: &str, value: &Value, unknown: &mut Vec<String>) -> Result<()> {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let join = |p: &str| if p.is_empty() { key.clone() } else { format!("{p}.{key}") };
                let (child, child_shown) = (join(path), join(shown));
                match classify(&child) {
                    Field::Applied => walk(&child, &child_shown, v, unknown)?,
                    Field::Whole => {}
                    Field::Refused if is_set(v) => {
                        bail!("config.json: {child_shown} is not supported by img-run")
                    }
                    Field::Refused => {}
                    Field::Unknown => unknown.push(child_shown),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate().filter(|(_, i)| i.is_object()) {
                walk(&format!("{path}[]"), &format!("{shown}[{i}]"), item, unknown)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applied_fields_pass_refused_ones_are_named() {
        let ok = json!({"ociVersion": "1.0.2", "process": {"args": ["sh"], "user": {"uid": 0},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}], "selinuxLabel": ""},
            "hooks": {"poststop": [{"path": "/bin/true", "timeout": 3}]},
            "linux": {"seccomp": {"anything": 1}, "resources": {"devices": [{"allow": false}]},
                "sysctl": {"kernel.shmmax": "1"}}, "annotations": {"a": "b"}});
        assert!(check(&ok).unwrap().is_empty());
        let unset = json!({"linux": {"resources": {"memory": {"disableOOMKiller": false}, "blockIO": {}}}});
        assert!(check(&unset).unwrap().is_empty());
        let bad = json!({"linux": {"resources": {"cpu": {"cpus": "0-1"}}}});
        let e = check(&bad).unwrap_err().to_string();
        assert_eq!(e, "config.json: linux.resources.cpu.cpus is not supported by img-run");
        let bad = json!({"linux": {"intelRdt": {"closID": "x"}}});
        assert!(check(&bad).unwrap_err().to_string().contains("linux.intelRdt"));
        let bad = json!({"mounts": [{"destination": "/a", "uidMappings": [{"size": 1}]}]});
        assert!(check(&bad).unwrap_err().to_string().contains("mounts[0].uidMappings"));
    }

    #[test]
    fn undefined_properties_are_listed() {
        let v = json!({"process": {"argz": []}, "hooks": {"poststop": [{"path": "/x", "pth": 1}]}});
        assert_eq!(check(&v).unwrap(), ["hooks.poststop[0].pth", "process.argz"]);
    }
}
