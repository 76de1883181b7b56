//! OCI runtime bundles: the `config.json` a runtime (runc, crun, img-run) needs to run a
//! container of an image, made from the image config as docker and umoci do: args from
//! Entrypoint + Cmd, the environment, working directory and user (names resolved through the
//! rootfs' own /etc/passwd and /etc/group), the usual namespaces and mounts, docker's default
//! capabilities, masked and read-only /proc paths, rlimits, a hostname and the image's
//! annotations.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::document::{ImageConfig, Manifest};
use crate::layer::root::Root;

/// The runtime spec version written.
pub const OCI_VERSION: &str = "1.0.2";

// One list of docker's defaults for both runtimes: what we write for runc and what img-run uses.
pub use crate::runtime::capabilities::DOCKER_DEFAULT as DEFAULT_CAPABILITIES;
pub use crate::runtime::spec::{DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS};

/// How the bundle is meant to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// For a runtime started by an unprivileged user: a user namespace mapping that user to
    /// root, no network namespace, /sys bind-mounted (as `runc spec --rootless`).
    pub rootless: bool,
    /// The container's hostname (default: `img`).
    pub hostname: Option<String>,
}

/// The user a process runs as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From /etc/passwd, for `HOME`.
    /// From /etc/passwd, else `/`.
    pub home: String,
}

/// The runtime `config.json` for an image whose rootfs is at `rootfs` (read for /etc/passwd
/// and /etc/group, inside the root).
pub fn runtime_config(
    config: &ImageConfig,
    manifest: &Manifest,
    rootfs: &Path,
    opts: &Options,
) -> Result<Value> {
    let run = config.config.clone().unwrap_or_default();
    let root = Root::open(rootfs).with_context(|| format!("opening {}", rootfs.display()))?;
    let user = resolve_user(run.user.as_deref().unwrap_or(""), &root)?;

    let mut args: Vec<String> = run.entrypoint.clone().unwrap_or_default();
    args.extend(run.cmd.clone().unwrap_or_default());
    if args.is_empty() {
        args.push("sh".into());
    }
    let mut env: Vec<String> = run.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = run.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("the image's WorkingDir {cwd:?} is not absolute");
    }

    let mut user_json = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        user_json["additionalGids"] = json!(user.additional_gids);
    }
    let caps = json!(DEFAULT_CAPABILITIES);
    let mut namespaces = vec!["pid", "ipc", "uts", "mount"];
    if !opts.rootless {
        namespaces.insert(1, "network");
    } else {
        namespaces.push("user");
    }
    let namespaces: Vec<Value> = namespaces.into_iter().map(|t| json!({"type": t})).collect();

    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    if opts.rootless {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    } else {
        linux["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    }

    Ok(json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": false,
            "user": user_json,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": opts.hostname.clone().unwrap_or_else(|| "img".into()),
        "mounts": mounts(opts.rootless),
        "annotations": annotations(config, manifest),
        "linux": linux,
    }))
}

/// Writes `config.json` into a bundle directory.
pub fn write(bundle: &Path, config: &Value) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(config).context("serialising config.json")?;
    bytes.push(b'\n');
    let path = bundle.join("config.json");
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn mounts(rootless: bool) -> Value {
    let sys = if rootless {
        json!({"destination": "/sys", "type": "none", "source": "/sys",
               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]})
    };
    let mut pts = vec!["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"];
    if !rootless {
        pts.push("gid=5");
    }
    let mut all = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        sys,
    ];
    if !rootless {
        all.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    }
    Value::Array(all)
}

/// The image-spec's conversion: labels, then `org.opencontainers.image.*` from config fields,
/// then the manifest's annotations.
fn annotations(config: &ImageConfig, manifest: &Manifest) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let run = config.config.clone().unwrap_or_default();
    out.extend(run.labels.unwrap_or_default());
    let key = |k: &str| format!("org.opencontainers.image.{k}");
    out.insert(key("os"), config.os.clone());
    out.insert(key("architecture"), config.architecture.clone());
    if let Some(v) = &config.variant {
        out.insert(key("variant"), v.clone());
    }
    if let Some(c) = &config.created {
        out.insert(key("created"), c.clone());
    }
    if let Some(s) = run.stop_signal {
        out.insert(key("stopSignal"), s);
    }
    out.extend(manifest.annotations.clone());
    out
}

/// Resolves docker's `user[:group]` through the rootfs' /etc/passwd and /etc/group, with the
/// same rules img-run applies inside the container.
pub fn resolve_user(spec: &str, rootfs: &Root) -> Result<User> {
    let passwd = read_text(rootfs, "/etc/passwd")?;
    let group = read_text(rootfs, "/etc/group")?;
    let u = crate::runtime::user::resolve(spec, &passwd, &group)?;
    Ok(User { uid: u.uid, gid: u.gid, additional_gids: u.groups, home: u.home })
}

fn read_text(rootfs: &Root, path: &str) -> Result<String> {
    match rootfs.read(path, crate::runtime::user::MAX_ACCOUNTS_FILE) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading the image's {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:root,app\naudio:x:29:app\n",
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn resolves_users_like_docker() {
        let (_dir, root) = rootfs();
        let app = resolve_user("app", &root).unwrap();
        assert_eq!((app.uid, app.gid, app.additional_gids.clone()), (1000, 1000, vec![10, 29]));
        assert_eq!(app.home, "/home/app");
        assert_eq!(resolve_user("1000", &root).unwrap(), app);
        let explicit = resolve_user("app:wheel", &root).unwrap();
        assert_eq!((explicit.gid, explicit.additional_gids.len()), (10, 0));
        assert_eq!(resolve_user("", &root).unwrap().additional_gids, vec![10]);
        let numeric = resolve_user("4242:77", &root).unwrap();
        assert_eq!((numeric.uid, numeric.gid, numeric.home.as_str()), (4242, 77, "/"));
        assert!(resolve_user("nobody", &root).is_err());
        assert!(resolve_user("app:nogroup", &root).is_err());
    }
}
