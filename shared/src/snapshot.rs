//! Per-layer snapshots for fast runs: each layer of an image extracted once, whiteouts in
//! overlayfs form, into `<store>/snapshots/<algorithm>-<hex of its diff_id>`, so overlayfs can
//! stack them as lower directories. The second run of an image extracts nothing.
//!
//! A snapshot is extracted into a temporary directory beside it and renamed into place, so a
//! crash or a concurrent run never leaves a half-extracted snapshot under the final name.
//!
//! Snapshots are a cache: [`Snapshots::collect`] (run by `img-rm`) removes those of layers no
//! image uses any more. Whoever uses snapshots holds `.lock` shared ([`Snapshots::hold`]: img-run
//! for its container's life, img-build for a build), and collection takes it exclusively
//! without waiting, so a snapshot under a running container is never removed.

use std::collections::BTreeSet;
use std::fs::File;
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

/// What [`Snapshots::collect`] removed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Freed {
    pub snapshots: usize,
    /// The size of the files in them.
    pub bytes: u64,
}

impl Snapshots {
    /// The snapshots of a store (`<root>/snapshots`), created if missing.
    pub fn open(store_root: &Path) -> Result<Snapshots> {
        let dir = store_root.join("snapshots");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Snapshots { dir })
    }

    /// The snapshots of a store, if it has any.
    pub fn existing(store_root: &Path) -> Option<Snapshots> {
        let dir = store_root.join("snapshots");
        dir.is_dir().then_some(Snapshots { dir })
    }

    /// Marks the snapshots as in use until the returned file is dropped.
    pub fn hold(&self) -> Result<File> {
        let lock = crate::lockfile::open(&self.lock_path())?;
        lock.lock_shared().context("locking the snapshots")?;
        Ok(lock)
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    /// Removes the snapshots of layers whose diff_id is not in `keep`, and extractions a crash
    /// left behind. `None` if snapshots are in use (a container runs, a build goes on): then
    /// nothing is removed.
    pub fn collect(&self, keep: &BTreeSet<Digest>) -> Result<Option<Freed>> {
        let lock = crate::lockfile::open(&self.lock_path())?;
        if !crate::lockfile::try_exclusive(&lock, &self.lock_path())? {
            return Ok(None);
        }
        let mut freed = Freed::default();
        for entry in
            std::fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Work directories left by a crash (none is in use: we hold the lock), and
            // snapshots of layers nobody keeps; anything else is not ours to remove.
            let unused = if name.starts_with(".extracting-") || name.starts_with("build-") {
                true
            } else {
                let digest =
                    name.split_once('-').and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok());
                digest.is_some_and(|d| !keep.contains(&d))
            };
            if unused {
                let bytes = tree_bytes(&entry.path());
                crate::layer::apply::remove_dir_tree(&entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
                freed.snapshots += 1;
                freed.bytes += bytes;
            }
        }
        Ok(Some(freed))
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

/// What [`collect_unused`] did.
#[derive(Clone, Copy, Debug)]
pub enum Collection {
    /// The store has no snapshots.
    NoSnapshots,
    /// A container or a build is using them: none removed.
    InUse,
    Freed(Freed),
}

/// Removes the store's snapshots of layers that neither `layout` nor the store's default
/// layout uses (an image of a third layout that lost its snapshots gets them extracted again
/// on its next run).
pub fn collect_unused(layout: &Layout) -> Result<Collection> {
    let Some(snapshots) = Snapshots::existing(&crate::store::root()?) else {
        return Ok(Collection::NoSnapshots);
    };
    let mut keep = BTreeSet::new();
    let default = crate::store::default_layout()?;
    let mut layouts = vec![layout.clone()];
    if default.join("oci-layout").is_file() && std::path::absolute(&default)? != layout.root() {
        layouts.push(Layout::open(&default)?);
    }
    for l in &layouts {
        let index = l.read_index()?;
        let reachable = crate::graph::reachable(l, index.entries())
            .with_context(|| format!("{}: snapshots not collected", l.root().display()))?;
        keep.extend(reachable.diff_ids(l));
    }
    Ok(snapshots.collect(&keep)?.map_or(Collection::InUse, Collection::Freed))
}

/// The size of the regular files under `path` (symlinks not followed).
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.filter_map(Result::ok).map(|e| tree_bytes(&e.path())).sum()
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
