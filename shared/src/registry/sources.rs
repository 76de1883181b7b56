//! Where a layout's blobs are known to exist in registries (pulled from there, or pushed
//! there), so a push to another repository of the same registry can mount them instead of
//! uploading them. Kept in `.img/sources/<alg>-<hex>`, one `registry repository` line each;
//! a stale line only costs a mount attempt that falls back to an upload.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

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
    if fs::read_to_string(&path).is_ok_and(|t| t.lines().any(|l| l == line)) {
        return;
    }
    // One small O_APPEND write: concurrent writers do not interleave.
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// A repository of `registry`, other than `except`, known to hold the blob (the latest noted).
pub fn known_repository(layout: &Layout, digest: &Digest, registry: &str, except: &str) -> Option<String> {
    let text = fs::read_to_string(path(layout, digest)?).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| l.split_once(' '))
        .find(|(r, repo)| *r == registry && *repo != except && !repo.is_empty())
        .map(|(_, repo)| repo.to_string())
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
