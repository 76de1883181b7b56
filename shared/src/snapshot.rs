//! Per-layer snapshots for fast runs: each layer of an image extracted once, whiteouts in
//! overlayfs form, into `<store>/snapshots/<algorithm>-<hex of its diff_id>`, so overlayfs can
//! stack them as lower directories. The second run of an image extracts nothing.
//!
//! A snapshot is extracted into a temporary directory beside it and renamed into place, so a
//! crash or a concurrent run never leaves a half-extracted snapshot under the final name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::digest::Digest;
use crate::document::Descriptor;
use crate::layer::apply::{Applier, Options, Owners, Whiteouts};
use crate::layer::unpack;
use crate::layout::Layout;

pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// The snapshots of a store (`<root>/snapshots`), created if missing.
    pub fn open(store_root: &Path) -> Result<Snapshots> {
        let dir = store_root.join("snapshots");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Snapshots { dir })
    }

    /// The snapshot directory itself (work directories beside the snapshots belong here, on
    /// the same filesystem, so finished ones can be renamed into place).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(format!("{}-{}", diff_id.algorithm().name(), diff_id.hex()))
    }

    /// The snapshot of one layer, extracting it first if it is not there yet.
    pub fn ensure(&self, layout: &Layout, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf> {
        let path = self.path(diff_id);
        if path.is_dir() {
            return Ok(path);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".extracting-")
            .tempdir_in(&self.dir)
            .with_context(|| format!("creating a directory in {}", self.dir.display()))?;
        let opts = Options { whiteouts: Whiteouts::Overlay, owners: Owners::for_current_user() };
        let mut applier = Applier::new(tmp.path(), opts)?;
        unpack::apply_layers(
            layout,
            std::slice::from_ref(layer),
            std::slice::from_ref(diff_id),
            &mut applier,
        )?;
        applier.finish()?;
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Someone else extracted the same layer meanwhile: theirs is as good as ours.
            if !path.is_dir() {
                return Err(e).with_context(|| format!("moving a snapshot to {}", path.display()));
            }
        }
        Ok(path)
    }
}

/// Unpacks every layer into one directory, whiteouts applied as deletions: the rootfs where
/// overlayfs is not available.
pub fn unpack_copy(layout: &Layout, layers: &[Descriptor], diff_ids: &[Digest], dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let opts = Options { whiteouts: Whiteouts::Delete, owners: Owners::for_current_user() };
    let mut applier = Applier::new(dest, opts)?;
    unpack::apply_layers(layout, layers, diff_ids, &mut applier)?;
    applier.finish()
}

/// Whether this kernel offers overlayfs.
pub fn overlay_supported() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")))
}
