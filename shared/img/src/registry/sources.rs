//! Where a layout's blobs are known to exist in registries (pulled from there, or pushed
//! there), so a push to another repository of the same registry can mount them instead of
//! uploading them. Kept in `.img/sources/<alg>-<hex>`, one `registry repository` line each;
//! a stale line only costs a mount attempt that falls back to an upload.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layout::Layout;

fn path(layout: &Layout, digest: &Digest) -> Option<PathBuf> {
    let dir = layout.private_dir("sources").ok()?;
    Some(dir.join(format!("{}-{}", digest.algorithm().name(), digest.hex())))
}

/// Notes that `registry/repository` holds the blob. Best effort: a failure loses a hint only.
pub fn remember(layout: &Layout, digest: &Digest, registry: &str, repository: &str) {
    let Some(path) = path(layout, digest) else { return };
    let line = format!("{registry} {repository}");
    if read(&path).is_some_and(|t| t.lines().any(|l| l == line)) {
        return;
    }
    // One small O_APPEND write: concurrent writers do not interleave. Never through a symlink
    // planted in the layout (it could name any file of the host), never into a FIFO.
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    if let Ok(mut f) = opened.and_then(regular) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// A repository of `registry`, other than `except`, known to hold the blob (the latest noted).
pub fn known_repository(layout: &Layout, digest: &Digest, registry: &str, except: &str) -> Option<String> {
    let text = read(&path(layout, digest)?)?;
    text.lines()
        .rev()
        .filter_map(|l| l.split_once(' '))
        .find(|(r, repo)| *r == registry && *repo != except && !repo.is_empty())
        .map(|(_, repo)| repo.to_string())
}

/// The most one blob's notes may hold (a line per repository it was seen in).
const MAX_NOTES: u64 = 1 << 20;

/// The notes of a blob, read as the layout reads its files: a regular file, not followed
/// through a symlink, bounded.
fn read(path: &Path) -> Option<String> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path);
    let mut text = String::new();
    regular(file.ok()?).ok()?.take(MAX_NOTES).read_to_string(&mut text).ok()?;
    Some(text)
}

fn regular(file: File) -> std::io::Result<File> {
    if file.metadata()?.is_file() { Ok(file) } else { Err(std::io::ErrorKind::InvalidInput.into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_other_repository() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let d = Digest::of(b"x");
        assert_eq!(known_repository(&layout, &d, "r:5000", "a"), None);
        remember(&layout, &d, "r:5000", "a");
        remember(&layout, &d, "other:1", "b");
        remember(&layout, &d, "r:5000", "c");
        remember(&layout, &d, "r:5000", "a");
        assert_eq!(known_repository(&layout, &d, "r:5000", "a").as_deref(), Some("c"));
        assert_eq!(known_repository(&layout, &d, "r:5000", "c").as_deref(), Some("a"));
        assert_eq!(known_repository(&layout, &d, "other:1", "b"), None);
    }
}
