//! Every field of `config.json` the runtime spec defines, and what img-run does with it:
//! applied, handed whole to the code that reads it, or refused by name. The runtime spec says
//! "Runtimes MUST generate an error when invalid or unsupported values are encountered", so a
//! field img-run does not apply is an error naming it, never silence. Properties the spec does
//! not define are ignored, as it also requires, but reported to the caller for a warning.
//!
//! In front of the table, [`read`] deserializes the config into the `oci-spec` crate's runtime
//! types, so a value of the wrong type or outside what the spec allows (an unknown namespace
//! or rlimit type, a negative uid) is an error naming its path; and every field oci-spec
//! parsed as set must be one the table knows.

use anyhow::{Result, anyhow, bail};
use serde::de::DeserializeOwned;
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

/// Properties oci-spec reads that the runtime spec does not define (its deprecated top-level
/// id mappings): ignored with a warning, like any other undefined property.
const NOT_IN_SPEC: &[&str] = &["uidMappings", "gidMappings"];

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

/// Reads a `config.json` strictly: first into oci-spec's types (an error naming the path of a
/// malformed value), then against the table ([`check`]), then oci-spec's reading against the
/// table again, so that a field oci-spec knows and the table forgot is an error rather than a
/// warning. Returns the paths of properties the spec does not define.
///
/// Where runc reads a config that oci-spec's types refuse, `config` is first completed as runc
/// reads it (see [`lenient`]).
pub fn read(config: &mut Value) -> Result<Vec<String>> {
    lenient(config);
    let parsed: oci_spec::runtime::Spec = typed(config)?;
    match config.get("ociVersion") {
        None => bail!("config.json: ociVersion: missing (the runtime spec requires it)"),
        Some(Value::String(v)) if v.is_empty() => bail!("config.json: ociVersion: empty"),
        Some(_) => {}
    }
    let unknown = check(config)?;
    let seen = serde_json::to_value(&parsed)?;
    let mut forgotten = Vec::new();
    walk("", "", &seen, &mut forgotten)?;
    if let Some(path) = forgotten.iter().find(|p| !NOT_IN_SPEC.contains(&p.as_str())) {
        bail!("config.json: {path} is read by oci-spec but missing from img-run's field table");
    }
    Ok(unknown)
}

/// Deserializes a config (into oci-spec's types or ours) with errors naming the field's path,
/// as in config.json: process.user.uid: invalid value: integer `-1`, expected u32. serde's
/// "unknown variant" is said with the field's name ("unknown type `x`, expected one of …").
pub fn typed<T: DeserializeOwned>(config: &Value) -> Result<T> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.inner().to_string();
        let field = path.rsplit('.').next().unwrap_or_default();
        let field = field.split('[').next().unwrap_or_default();
        if let Some(rest) = message.strip_prefix("unknown variant ")
            && !field.is_empty()
        {
            message = format!("unknown {field} {rest}");
        }
        match path.as_str() {
            "." => anyhow!("config.json: {message}"),
            _ => anyhow!("config.json: {path}: {message}"),
        }
    })
}

/// Completes what runc reads (as Go's zero values) and oci-spec's types require: a process
/// without `user` (or with `"user": null`) runs as uid 0 under runc, and under img-run.
fn lenient(config: &mut Value) {
    if let Some(process) = config.get_mut("process").and_then(Value::as_object_mut)
        && process.get("user").is_none_or(Value::is_null)
    {
        process.insert("user".to_string(), Value::Object(Default::default()));
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

    /// Every field runtime-spec 1.2's config.json defines, set (solaris, windows, vm and zos
    /// only as far as oci-spec needs to read them: the table refuses them whole). Not
    /// `linux.intelRdt.enableCMT`/`enableMBM`: oci-spec 0.10 spells them `enableCmt`/`enableMbm`
    /// and drops the spec's spelling; the table refuses `linux.intelRdt` whole from the raw JSON.
    fn kitchen_sink() -> Value {
        let ids = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        let hook = json!([{"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}]);
        let caps = json!(["CAP_CHOWN"]);
        let throttle = json!([{"major": 8, "minor": 0, "rate": 1}]);
        json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [{"destination": "/a", "type": "bind", "source": "/b", "options": ["rbind"],
                "uidMappings": ids, "gidMappings": ids}],
            "process": {
                "terminal": true, "consoleSize": {"height": 24, "width": 80},
                "user": {"uid": 1, "gid": 1, "umask": 18, "additionalGids": [2], "username": "u"},
                "args": ["sh"], "commandLine": "sh", "env": ["PATH=/bin"], "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "inheritable": caps,
                    "permitted": caps, "ambient": caps},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}],
                "noNewPrivileges": true, "apparmorProfile": "p", "oomScoreAdj": 1,
                "selinuxLabel": "l", "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 1},
                "scheduler": {"policy": "SCHED_OTHER", "nice": 1, "priority": 1,
                    "flags": ["SCHED_RESET_ON_FORK"], "runtime": 1, "deadline": 1, "period": 1},
                "execCPUAffinity": {"initial": "0", "final": "0"}
            },
            "hostname": "h", "domainname": "d",
            "hooks": {"prestart": hook, "createRuntime": hook, "createContainer": hook,
                "startContainer": hook, "poststart": hook, "poststop": hook},
            "annotations": {"a": "b"},
            "linux": {
                "namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}],
                "uidMappings": ids, "gidMappings": ids,
                "timeOffsets": {"monotonic": {"secs": 1, "nanosecs": 1}},
                "devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3,
                    "fileMode": 438, "uid": 0, "gid": 0}],
                "netDevices": {"eth0": {"name": "eth1"}},
                "cgroupsPath": "/c", "rootfsPropagation": "private",
                "resources": {
                    "devices": [{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
                    "memory": {"limit": 1, "reservation": 1, "swap": 1, "kernel": 1, "kernelTCP": 1,
                        "swappiness": 1, "disableOOMKiller": true, "useHierarchy": true,
                        "checkBeforeUpdate": true},
                    "cpu": {"shares": 1, "quota": 1, "burst": 1, "period": 1, "realtimeRuntime": 1,
                        "realtimePeriod": 1, "cpus": "0", "mems": "0", "idle": 1},
                    "pids": {"limit": 1},
                    "blockIO": {"weight": 1, "leafWeight": 1,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 1, "leafWeight": 1}],
                        "throttleReadBpsDevice": throttle, "throttleWriteBpsDevice": throttle,
                        "throttleReadIOPSDevice": throttle, "throttleWriteIOPSDevice": throttle},
                    "hugepageLimits": [{"pageSize": "2MB", "limit": 1}],
                    "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
                    "rdma": {"mlx5_1": {"hcaHandles": 1, "hcaObjects": 1}},
                    "unified": {"memory.max": "1"}
                },
                "intelRdt": {"closID": "c", "schemata": ["L3:0=f"], "l3CacheSchema": "L3:0=f",
                    "memBwSchema": "MB:0=100", "enableMonitoring": true},
                "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
                "sysctl": {"net.ipv4.ip_forward": "1"},
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                    "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                    "listenerPath": "/l", "listenerMetadata": "m",
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1,
                        "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_EQ"}]}]},
                "maskedPaths": ["/m"], "readonlyPaths": ["/r"], "mountLabel": "l",
                "personality": {"domain": "LINUX", "flags": []}
            },
            "solaris": {"milestone": "m"},
            "windows": {"layerFolders": ["C:\\l"]},
            "vm": {"kernel": {"path": "/k"}},
            "zos": {"namespaces": [{"type": "pid"}]}
        })
    }

    /// Every path of a JSON document, objects and arrays included (`mounts[].options`).
    fn paths(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    out.push(p.clone());
                    paths(&p, child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| paths(&format!("{prefix}[]"), i, out)),
            _ => {}
        }
    }

    #[test]
    fn the_table_classifies_every_field_oci_spec_reads() {
        let sink = kitchen_sink();
        let parsed: oci_spec::runtime::Spec = typed(&sink).unwrap();
        let seen = serde_json::to_value(&parsed).unwrap();
        // oci-spec keeps every field of the kitchen sink, so each one is checked below.
        let (mut want, mut got) = (Vec::new(), Vec::new());
        paths("", &sink, &mut want);
        paths("", &seen, &mut got);
        want.sort();
        want.dedup();
        got.sort();
        got.dedup();
        assert_eq!(got, want);
        // A field the table forgot would only be warned about (Unknown): it must be classified.
        // Below a field read whole or refused nothing is looked at.
        let mut stop: Vec<String> = Vec::new();
        for path in &got {
            if stop.iter().any(|s| path.starts_with(&format!("{s}.")) || path.starts_with(&format!("{s}[]")))
            {
                continue;
            }
            match classify(path) {
                Field::Applied => {}
                Field::Whole | Field::Refused => stop.push(path.clone()),
                Field::Unknown => panic!("oci-spec reads {path}, which fields.rs does not classify"),
            }
        }
        // And reading it whole refuses the first field img-run does not apply.
        let mut v = sink;
        let e = read(&mut v).unwrap_err().to_string();
        assert!(e.ends_with("is not supported by img-run"), "{e}");
    }

    fn read_err(v: Value) -> String {
        let mut v = v;
        read(&mut v).unwrap_err().to_string()
    }

    #[test]
    fn malformed_values_are_named_by_path() {
        let base = || json!({"ociVersion": "1.0.2", "process": {"cwd": "/", "args": ["sh"]}});
        let mut v = base();
        v["process"]["user"] = json!({"uid": -1});
        assert_eq!(read_err(v), "config.json: process.user.uid: invalid value: integer `-1`, expected u32");
        let mut v = base();
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_FOO", "hard": 1, "soft": 1}]);
        assert!(read_err(v).starts_with("config.json: process.rlimits[0].type: unknown type `RLIMIT_FOO`"));
        let mut v = base();
        v["linux"] = json!({"namespaces": [{"type": "pid"}, {"type": "vpn"}]});
        assert!(read_err(v).starts_with("config.json: linux.namespaces[1].type: unknown type `vpn`"));
        let mut v = base();
        v["process"]["terminal"] = json!("yes");
        assert!(read_err(v).starts_with("config.json: process.terminal: invalid type: string"));
        let mut v = base();
        v["mounts"] = json!([{"type": "tmpfs"}]);
        assert!(read_err(v).starts_with("config.json: mounts[0]: missing field `destination`"));
        let mut v = base();
        v.as_object_mut().unwrap().remove("ociVersion");
        assert_eq!(read_err(v), "config.json: ociVersion: missing (the runtime spec requires it)");
        assert!(read_err(json!("x")).starts_with("config.json: invalid type: string"));
        // What runc reads although oci-spec's types require more: a process without user.
        let mut v = base();
        assert!(read(&mut v).unwrap().is_empty());
        v["process"]["user"] = Value::Null;
        assert!(read(&mut v).unwrap().is_empty());
        let spec: super::super::Spec = typed(&v).unwrap();
        assert_eq!(spec.process.user.uid, 0);
        // oci-spec's top-level id mappings are not the spec's: warned about, not refused.
        let mut v = base();
        v["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
        assert_eq!(read(&mut v).unwrap(), ["uidMappings"]);
    }

    #[test]
    fn undefined_properties_are_listed() {
        let v = json!({"process": {"argz": []}, "hooks": {"poststop": [{"path": "/x", "pth": 1}]}});
        assert_eq!(check(&v).unwrap(), ["hooks.poststop[0].pth", "process.argz"]);
    }
}
