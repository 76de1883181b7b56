//! What the image's layers hold, read as overlayfs would show them: a file, whether a path is
//! there, a user through /etc/passwd and /etc/group. Each layer snapshot is a root: its
//! symlinks resolve inside it, never to the host's files.

use std::path::PathBuf;

use anyhow::Result;
use img::layer::root::Root;
use rustix::fs::{FileType, OFlags};

/// A file in the image's layers (topmost first), as overlayfs would show it. Each layer is a
/// root: its symlinks resolve inside it, never to the host's files.
fn read_in_layers(lower: &[PathBuf], rel: &str) -> Option<String> {
    for l in lower {
        let root = Root::open(l).ok()?;
        match entry_kind(&root, rel.as_bytes()) {
            Some(FileType::CharacterDevice) => return None, // a whiteout
            Some(FileType::RegularFile) => {
                let text = root.read(rel, img::runtime::user::MAX_ACCOUNTS_FILE).ok()?;
                return String::from_utf8(text).ok();
            }
            _ => {}
        }
    }
    None
}

/// What `rel` is in `root` (its last component not followed), if it is there.
fn entry_kind(root: &Root, rel: &[u8]) -> Option<FileType> {
    let fd = root.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW).ok()?;
    rustix::fs::fstat(&fd).ok().map(|st| FileType::from_raw_mode(st.st_mode))
}

/// A user (`name`, `uid`, `name:group`, …) resolved through the layers' /etc/passwd and /etc/group.
pub(super) fn user_in_layers(lower: &[PathBuf], spec: &str) -> Result<img::runtime::user::ExecUser> {
    let passwd = read_in_layers(lower, "etc/passwd").unwrap_or_default();
    let group = read_in_layers(lower, "etc/group").unwrap_or_default();
    img::runtime::user::resolve(spec, &passwd, &group)
}

/// Whether a path exists in the image's layers (topmost first), as overlayfs would show it. A
/// symlink on the way counts as there: docker would follow it, and it is not ours to replace.
pub(super) fn present_in_layers(lower: &[PathBuf], rel: &str) -> bool {
    let Ok(roots) = lower.iter().map(|l| Root::open(l)).collect::<std::io::Result<Vec<Root>>>() else {
        return false;
    };
    let mut layers: &[Root] = &roots;
    let mut prefix = String::new();
    for part in rel.split('/') {
        prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
        // The topmost layer with an entry here decides what it is.
        let Some((i, kind)) =
            layers.iter().enumerate().find_map(|(i, l)| entry_kind(l, prefix.as_bytes()).map(|k| (i, k)))
        else {
            return false;
        };
        match kind {
            FileType::Symlink => return true,
            FileType::Directory => {}
            _ => return false, // a file, or a whiteout
        }
        // An opaque directory hides what lower layers have under it.
        let opaque = is_opaque(&layers[i], prefix.as_bytes());
        layers = if opaque { &layers[i..=i] } else { &layers[i..] };
    }
    true
}

/// Whether the directory `rel` of a layer snapshot carries overlayfs' opaque mark.
fn is_opaque(root: &Root, rel: &[u8]) -> bool {
    let Ok(fd) = root.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) else {
        return false;
    };
    let mut buf = [0u8; 8];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|k| rustix::fs::fgetxattr(&fd, *k, &mut buf).is_ok())
}
