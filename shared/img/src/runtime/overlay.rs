//! A container's root as an overlay: layer snapshots as the read-only lower directories
//! (topmost first) under a writable upper directory, all in the container's own directory.
//! img-run's containers and img-build's RUN steps set up their roots this way; the mount
//! itself is the runtime's ([`super::mounts`]), in the container's mount namespace.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::mounts::Rootfs;
use crate::digest::Digest;
use crate::document::Descriptor;
use crate::layout::Layout;
use crate::snapshot::Snapshots;

/// The directories of an overlay root.
#[derive(Clone, Debug)]
pub struct OverlayDirs {
    /// Read-only layers, topmost first.
    pub lower: Vec<PathBuf>,
    /// Where the container's changes go.
    pub upper: PathBuf,
    /// overlayfs' own scratch space, on the upper directory's filesystem.
    pub work: PathBuf,
    /// The mount point.
    pub target: PathBuf,
}

impl OverlayDirs {
    /// Makes `upper`, `work` and `rootfs` (the mount point) in `dir`, over the `lower`
    /// directories (topmost first). With no layer at all, an empty `dir/empty` is the one
    /// lower directory: overlayfs needs at least one.
    pub fn create(dir: &Path, mut lower: Vec<PathBuf>) -> Result<OverlayDirs> {
        let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        let empty = lower.is_empty().then(|| dir.join("empty"));
        for d in [&upper, &work, &target].into_iter().chain(&empty) {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        lower.extend(empty);
        Ok(OverlayDirs { lower, upper, work, target })
    }

    /// The root, its upper directory kept after the run (the overlay is synced as it is
    /// unmounted).
    pub fn rootfs(&self) -> Rootfs {
        let OverlayDirs { lower, upper, work, target } = self.clone();
        Rootfs::Overlay { lower, upper, work, target }
    }

    /// The root, its upper directory thrown away after the run (mounted `volatile`).
    pub fn scratch_rootfs(&self) -> Rootfs {
        let OverlayDirs { lower, upper, work, target } = self.clone();
        Rootfs::ScratchOverlay { lower, upper, work, target }
    }
}

/// The snapshots of an image's layers (given bottom first, with their diff_ids), each
/// extracted on first use, as lower directories: topmost first.
pub fn snapshot_lowers<'a>(
    snapshots: &Snapshots,
    layout: &Layout,
    layers: impl IntoIterator<Item = (&'a Descriptor, &'a Digest)>,
) -> Result<Vec<PathBuf>> {
    let mut lower = Vec::new();
    for (layer, diff_id) in layers {
        lower.push(snapshots.ensure(layout, layer, diff_id)?);
    }
    lower.reverse();
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_without_layers_gets_one_empty_lower_directory() {
        let d = tempfile::tempdir().unwrap();
        let dirs = OverlayDirs::create(d.path(), Vec::new()).unwrap();
        assert_eq!(dirs.lower, [d.path().join("empty")]);
        for p in [&dirs.lower[0], &dirs.upper, &dirs.work, &dirs.target] {
            assert!(p.is_dir(), "{}", p.display());
        }
        let layer = d.path().join("elsewhere");
        let dirs = OverlayDirs::create(&d.path().join("c"), vec![layer.clone()]).unwrap();
        assert_eq!(dirs.lower, std::slice::from_ref(&layer));
        assert!(!layer.exists(), "layers are not made, only used");
    }
}
