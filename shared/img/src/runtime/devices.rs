//! Device nodes beyond /dev's standard ones (`linux.devices` of a spec): made with mknod in
//! the container's /dev, or bound from the host in a user namespace (where mknod is refused),
//! as runc does. docker's `--device` and `--privileged` (every host device) fill the list;
//! whether the container may open them is for the device rules ([`super::device_rules`]).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::sys::stat::{Mode, SFlag, major, makedev, minor, mknod};

use super::device_rules::{DeviceRule, Rule};
use super::spec::Device;

/// The device at `host` (symlinks followed), to appear at `path` in the container.
pub fn from_host(host: &Path, path: &str) -> Result<Device> {
    let meta = fs::metadata(host).with_context(|| format!("device {}", host.display()))?;
    let kind = if meta.file_type().is_char_device() {
        "c"
    } else if meta.file_type().is_block_device() {
        "b"
    } else {
        bail!("{} is not a device", host.display());
    };
    Ok(Device {
        path: path.to_string(),
        kind: kind.to_string(),
        major: major(meta.rdev()) as i64,
        minor: minor(meta.rdev()) as i64,
        file_mode: Some(meta.mode() & 0o7777),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
    })
}

/// docker's `--device HOST[:CONTAINER[:PERMISSIONS]]`: the node, and the rule allowing it
/// with its permissions (`rwm` unless given; docker also reads `HOST:PERMISSIONS`).
pub fn parse_option(text: &str) -> Result<(Device, DeviceRule)> {
    let parts: Vec<&str> = text.split(':').collect();
    let is_access = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, path, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, a] if is_access(a) => (*h, *h, *a),
        [h, p] => (*h, *p, "rwm"),
        [h, p, a] => (*h, if p.is_empty() { *h } else { *p }, *a),
        _ => bail!("--device {text}: expected HOST[:CONTAINER[:PERMISSIONS]]"),
    };
    if !host.starts_with('/') || !path.starts_with('/') {
        bail!("--device {text}: expected HOST[:CONTAINER[:PERMISSIONS]] with absolute paths");
    }
    let device = from_host(Path::new(host), path).with_context(|| format!("--device {text}"))?;
    let rule = DeviceRule::new(true, &device.kind, Some(device.major), Some(device.minor), access);
    Rule::from_spec(&rule)
        .map_err(|_| anyhow::anyhow!("--device {text}: invalid permissions {access:?} (r, w, m)"))?;
    Ok((device, rule))
}

/// Every device under the host's /dev, as `--privileged` gives them (not pts, shm, mqueue).
pub fn all_host_devices() -> Vec<Device> {
    let mut out = Vec::new();
    collect(Path::new("/dev"), &mut out);
    out
}

fn collect(dir: &Path, out: &mut Vec<Device>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let skip =
                ["/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd"].iter().any(|s| path == Path::new(s));
            if !skip {
                collect(&path, out);
            }
        } else if (kind.is_char_device() || kind.is_block_device())
            && let Ok(d) = from_host(&path, &path.to_string_lossy())
        {
            out.push(d);
        }
    }
}

/// Makes `device` at `path` (its place in the container, after pivot_root), replacing
/// whatever is there.
pub fn make(device: &Device, path: &Path) -> Result<()> {
    let kind = match device.kind.as_str() {
        "c" | "u" => SFlag::S_IFCHR,
        "b" => SFlag::S_IFBLK,
        "p" => SFlag::S_IFIFO,
        other => bail!("device {}: unknown type {other:?}", device.path),
    };
    let _ = fs::remove_file(path);
    let dev = makedev(device.major as u64, device.minor as u64);
    mknod(path, kind, Mode::empty(), dev).with_context(|| format!("creating device {}", device.path))?;
    let mode = device.file_mode.unwrap_or(0o666) & 0o7777;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", device.path))?;
    std::os::unix::fs::chown(path, Some(device.uid.unwrap_or(0)), Some(device.gid.unwrap_or(0)))
        .with_context(|| format!("chown {}", device.path))?;
    Ok(())
}
