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
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::digest::Digest;
use crate::document::Descriptor;
use crate::layer::apply::{Applier, Options, Owners, Whiteouts};
use crate::layer::unpack;
use crate::layout::Layout;
use crate::layout::confined::{list_dir, make_dir, not_ours, open_dir, stat_kind};

/// The snapshot directory, `<store>/snapshots`: it must be a real directory of the store, never
/// a symlink (collection would remove what is wherever that points).
pub struct Snapshots {
    dir: PathBuf,
    fd: OwnedFd,
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
        std::fs::create_dir_all(store_root).with_context(|| format!("creating {}", store_root.display()))?;
        let root = open_store(store_root)?;
        let dir = store_root.join("snapshots");
        let fd = make_dir(root.as_fd(), "snapshots", &dir)?;
        Ok(Snapshots { dir, fd })
    }

    /// The snapshots of a store, if it has any.
    pub fn existing(store_root: &Path) -> Result<Option<Snapshots>> {
        let root = match open_store(store_root) {
            Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => {
                return Ok(None);
            }
            r => r?,
        };
        let dir = store_root.join("snapshots");
        Ok(open_dir(root.as_fd(), "snapshots", &dir)?.map(|fd| Snapshots { dir, fd }))
    }

    /// Marks the snapshots as in use until the returned file is dropped.
    pub fn hold(&self) -> Result<File> {
        let lock = crate::layout::lock::open_in(self.fd.as_fd(), ".lock", &self.lock_path())?;
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
        let lock = crate::layout::lock::open_in(self.fd.as_fd(), ".lock", &self.lock_path())?;
        if !crate::layout::lock::try_exclusive(&lock, &self.lock_path())? {
            return Ok(None);
        }
        let mut freed = Freed::default();
        let names = list_dir(self.fd.as_fd()).with_context(|| format!("reading {}", self.dir.display()))?;
        for raw in names {
            let name = String::from_utf8_lossy(&raw).into_owned();
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
                let bytes = remove_tree(self.fd.as_fd(), &raw)
                    .with_context(|| format!("removing {}", self.dir.join(&name).display()))?;
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
        let name = format!("{}-{}", diff_id.algorithm().name(), diff_id.hex());
        match stat_kind(self.fd.as_fd(), &name) {
            Some(FileType::Directory) => return Ok(path),
            Some(kind) => return Err(not_ours(&path.display(), kind, "directory")),
            None => {}
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
        let tmp_name = tmp.file_name().expect("a temp dir has a name").to_string_lossy().into_owned();
        if let Err(e) =
            rustix::fs::renameat(self.fd.as_fd(), tmp_name.as_str(), self.fd.as_fd(), name.as_str())
        {
            let _ = remove_tree(self.fd.as_fd(), tmp_name.as_bytes());
            // Someone else extracted the same layer meanwhile: theirs is as good as ours.
            if stat_kind(self.fd.as_fd(), &name) != Some(FileType::Directory) {
                return Err(io::Error::from(e))
                    .with_context(|| format!("moving a snapshot to {}", path.display()));
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
    let Some(snapshots) = Snapshots::existing(&crate::store::root()?)? else {
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
        let reachable = crate::layout::graph::reachable(l, index.entries())
            .with_context(|| format!("{}: snapshots not collected", l.root().display()))?;
        keep.extend(reachable.diff_ids(l));
    }
    Ok(snapshots.collect(&keep)?.map_or(Collection::InUse, Collection::Freed))
}

/// The store's root directory, opened (the path is the user's: symlinks in it are followed).
fn open_store(store_root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(store_root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| anyhow::Error::new(io::Error::from(e)).context(store_root.display().to_string()))
}

/// Removes `name` in `dir` and everything under it, never following a symlink (a symlink is
/// removed itself), making directories writable on the way (a tree extracted without root may
/// have read-only ones). Returns the size of the regular files removed.
fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> Result<u64> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(io::Error::from(e).into()),
    };
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::Directory {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from)?;
        return Ok(if kind == FileType::RegularFile { st.st_size as u64 } else { 0 });
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(io::Error::from)?;
    let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700));
    let mut bytes = 0;
    for child in list_dir(fd.as_fd())? {
        bytes += remove_tree(fd.as_fd(), &child)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io::Error::from)?;
    Ok(bytes)
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
