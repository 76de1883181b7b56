//! The layout handle ([`Layout`]): opening a layout, creating one (safely against concurrent
//! creators), where its files are, and its own directories, refused when they are not what
//! they must be.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::Value;

use super::confined::{make_dir, not_ours, open_dir, open_regular, read_capped, stat_kind, sync_dir};
use super::temp_file::TempFile;
use super::{
    ALGORITHMS, EMPTY_INDEX, INDEX_FILE, LAYOUT_VERSION, LAYOUT_VERSION_FILE, MAX_LAYOUT_VERSION_BYTES,
    PRIVATE_DIR,
};
use crate::digest::{Algorithm, Digest};

/// An OCI image layout on disk, its directory opened once.
#[derive(Clone, Debug)]
pub struct Layout {
    pub(super) root: PathBuf,
    /// The layout's directory, opened once: what is inside is reached from here.
    pub(super) dir: Arc<OwnedFd>,
}

impl Layout {
    /// Opens an existing layout; the error says what is missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Layout> {
        let root = absolute(root.as_ref())?;
        let not_a_layout = || anyhow!("{}: not an OCI image layout (no oci-layout file)", root.display());
        let layout = match Layout::at(&root) {
            Ok(l) => l,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(not_a_layout()),
            Err(e) => bail!("{}: {}", root.display(), io::Error::from(e)),
        };
        let version = root.join(LAYOUT_VERSION_FILE);
        let Some(file) = open_regular(layout.fd(), LAYOUT_VERSION_FILE, &version.display())? else {
            return Err(not_a_layout());
        };
        let text = read_capped(file, MAX_LAYOUT_VERSION_BYTES, &version.display(), "oci-layout")?;
        let parsed: Value = serde_json::from_slice(&text)
            .with_context(|| format!("{}: malformed oci-layout file", root.display()))?;
        match parsed.get("imageLayoutVersion").and_then(Value::as_str) {
            Some(v) if v.starts_with("1.") => Ok(layout),
            other => bail!("{}: unsupported image layout version {other:?}", root.display()),
        }
    }

    /// Opens a layout, creating an empty one (and its parent directories) if there is none.
    pub fn open_or_create(root: impl AsRef<Path>) -> Result<Layout> {
        let root = absolute(root.as_ref())?;
        if fs::symlink_metadata(root.join(LAYOUT_VERSION_FILE)).is_ok() {
            return Layout::open(&root);
        }
        // What a layout being created (now, by another process, or by one that was killed)
        // holds; anything else is someone else's directory. `oci-layout` is on the list because
        // another creator may finish between our two looks (it is checked again under the lock).
        let ours = |name: &std::ffi::OsStr| {
            [PRIVATE_DIR, "blobs", INDEX_FILE, LAYOUT_VERSION_FILE].iter().any(|n| name == *n)
        };
        let foreign = |root: &Path| -> Result<bool> {
            Ok(root.exists() && fs::read_dir(root)?.any(|e| e.is_ok_and(|e| !ours(&e.file_name()))))
        };
        if foreign(&root)? {
            bail!("{}: exists, is not empty and is not an OCI image layout", root.display());
        }
        fs::create_dir_all(&root).with_context(|| format!("creating layout {}", root.display()))?;
        let layout = Layout::at(&root).map_err(|e| anyhow!("{}: {}", root.display(), io::Error::from(e)))?;
        // Creation happens under the index lock, so concurrent creators wait for each other
        // instead of seeing a half-made layout as a foreign directory.
        let _lock = layout.lock_index()?;
        if layout.holds(LAYOUT_VERSION_FILE) {
            return Layout::open(&layout.root);
        }
        if foreign(&layout.root)? {
            bail!("{}: exists, is not empty and is not an OCI image layout", layout.root.display());
        }
        layout.blob_dir_made(Algorithm::Sha256)?;
        // index.json first, oci-layout last: a layout is only recognised once it is complete.
        if !layout.holds(INDEX_FILE) {
            layout.write_atomically(INDEX_FILE, EMPTY_INDEX.as_bytes())?;
        }
        layout.write_atomically(LAYOUT_VERSION_FILE, LAYOUT_VERSION.as_bytes())?;
        Ok(layout)
    }

    /// The layout at `root`, its directory opened (following symlinks in `root` itself: that
    /// path is the user's choice).
    fn at(root: &Path) -> rustix::io::Result<Layout> {
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Layout { root: root.to_path_buf(), dir: Arc::new(fd) })
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Whether the layout's directory has an entry `name`, of whatever kind.
    pub(super) fn holds(&self, name: &str) -> bool {
        stat_kind(self.fd(), name).is_some()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// Where a blob is, for messages and peers. Reading through this path follows whatever
    /// symlink the layout holds there: open blobs with [`Layout::open_blob`] instead.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().name()).join(digest.hex())
    }

    /// Our private directory inside the layout, created on demand. Refused if it (or `.img`) is
    /// not a directory of the layout.
    pub fn private_dir(&self, sub: &str) -> Result<PathBuf> {
        self.private(sub)?;
        Ok(self.root.join(PRIVATE_DIR).join(sub))
    }

    /// `.img/<sub>` (`.img` itself for ""), created on demand, opened.
    pub(super) fn private(&self, sub: &str) -> Result<OwnedFd> {
        let img = make_dir(self.fd(), PRIVATE_DIR, &self.root.join(PRIVATE_DIR))?;
        if sub.is_empty() {
            return Ok(img);
        }
        make_dir(img.as_fd(), sub, &self.root.join(PRIVATE_DIR).join(sub))
    }

    /// Refuses a layout whose own directories and lock files are not what they must be:
    /// `.img`, `.img/tmp`, `.img/partial`, `.img/sources` and `blobs/<alg>` real directories of
    /// the layout, lock files regular files. Called before anything is changed (a ref, garbage
    /// collection), so that a symlink there fails the whole operation, not its second half.
    pub(crate) fn check_own_files(&self) -> Result<()> {
        let img_path = self.root.join(PRIVATE_DIR);
        if let Some(img) = open_dir(self.fd(), PRIVATE_DIR, &img_path)? {
            for sub in ["tmp", "partial", "sources"] {
                open_dir(img.as_fd(), sub, &img_path.join(sub))?;
            }
            for lock in ["index.lock", "gc.lock"] {
                match stat_kind(img.as_fd(), lock) {
                    Some(kind) if kind != FileType::RegularFile => {
                        return Err(not_ours(&img_path.join(lock).display(), kind, "regular file"));
                    }
                    _ => {}
                }
            }
        }
        for alg in ALGORITHMS {
            self.blob_dir(alg)?;
        }
        Ok(())
    }

    /// Writes a small file of the layout's directory by temp file + fsync + rename, then syncs
    /// the directory. (The rename replaces whatever entry is there, a symlink included; it never
    /// writes through one.)
    pub(super) fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut tmp = TempFile::new(self, "write-")?;
        tmp.write_all(bytes)?;
        tmp.file.set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.file.sync_all()?;
        tmp.persist(self.fd(), name)
            .map_err(|e| anyhow!("writing {}: {e}", self.root.join(name).display()))?;
        sync_dir(self.fd());
        Ok(())
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}: invalid path", path.display()))
}
