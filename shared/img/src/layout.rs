//! The OCI image layout store: `oci-layout`, `index.json` and `blobs/<alg>/<hex>`.
//!
//! Every write is crash-safe. A blob is written to a temp file inside the layout (same
//! filesystem), hashed while written, verified, synced and renamed into place, so `blobs/` never
//! holds a partial or wrong blob. `index.json` is rewritten to a temp file and renamed under an
//! exclusive lock, so concurrent writers never lose each other's refs.
//!
//! Our bookkeeping lives in `.img/` inside the layout (locks, temp files, partial downloads);
//! other tools ignore it.
//!
//! A layout is untrusted input (one given with `--layout` may come from anywhere), and so is
//! everything in it. The layout's directory is opened once; every file inside it is reached
//! from that descriptor with `*at` calls that never follow a symlink, and every file read must be
//! a regular file (opened `O_NONBLOCK`, so a FIFO cannot block us). A symlink where one of the
//! layout's own directories or files belongs is refused, never followed: it could lead reads,
//! writes, lock files and garbage collection anywhere on the host. Documents read whole are
//! capped in size (see [`crate::document::MAX_MANIFEST_BYTES`] and the others).
//!
//! Locking protocol (flock, released when the guard drops):
//! - `.img/index.lock`, exclusive, around every read-modify-write of `index.json`;
//! - `.img/gc.lock`, shared by every writer from its first blob to its ref update, exclusive
//!   for garbage collection, so GC never sweeps a blob that a ref is about to point at.
//!   A process must not collect garbage while it holds a writer lock (flock would deadlock).

use std::fmt::Display;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::{Map, Value};

use crate::digest::{Algorithm, Digest, Expected, HashingWriter};
use crate::document::{self, Descriptor, REF_NAME_ANNOTATION};
use crate::media_type::Kind;
use crate::refs;

const LAYOUT_VERSION_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// `oci-layout` holds one small JSON object.
const MAX_LAYOUT_VERSION_BYTES: u64 = 64 << 10;
const INDEX_FILE: &str = "index.json";
const EMPTY_INDEX: &str = r#"{"schemaVersion":2,"manifests":[]}"#;
const PRIVATE_DIR: &str = ".img";
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    /// The layout's directory, opened once: what is inside is reached from here.
    dir: Arc<OwnedFd>,
}

/// A lock held until dropped.
#[must_use = "the lock is released when this is dropped"]
pub struct LockGuard {
    _file: File,
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

    fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Whether the layout's directory has an entry `name`, of whatever kind.
    fn holds(&self, name: &str) -> bool {
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
    fn private(&self, sub: &str) -> Result<OwnedFd> {
        let img = make_dir(self.fd(), PRIVATE_DIR, &self.root.join(PRIVATE_DIR))?;
        if sub.is_empty() {
            return Ok(img);
        }
        make_dir(img.as_fd(), sub, &self.root.join(PRIVATE_DIR).join(sub))
    }

    /// `blobs/<alg>`, if it is there.
    fn blob_dir(&self, alg: Algorithm) -> Result<Option<OwnedFd>> {
        let blobs = self.root.join("blobs");
        let Some(dir) = open_dir(self.fd(), "blobs", &blobs)? else { return Ok(None) };
        open_dir(dir.as_fd(), alg.name(), &blobs.join(alg.name()))
    }

    /// `blobs/<alg>`, created if need be (other tools may leave out `blobs/sha256` of a layout
    /// without blobs; sha512 has none).
    fn blob_dir_made(&self, alg: Algorithm) -> Result<OwnedFd> {
        let blobs = self.root.join("blobs");
        let dir = make_dir(self.fd(), "blobs", &blobs)?;
        make_dir(dir.as_fd(), alg.name(), &blobs.join(alg.name()))
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

    pub fn has_blob(&self, digest: &Digest) -> bool {
        let Ok(Some(dir)) = self.blob_dir(digest.algorithm()) else { return false };
        stat_kind(dir.as_fd(), digest.hex()) == Some(FileType::RegularFile)
    }

    /// Opens a blob for reading. It must be a regular file of the layout: a symlink (which
    /// could name any file of the host), a FIFO (which would block) or a device is refused.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let missing = || anyhow!("blob {digest} is missing from {}", self.root.display());
        let dir = self.blob_dir(digest.algorithm())?.ok_or_else(missing)?;
        open_regular(dir.as_fd(), digest.hex(), &format_args!("blob {digest}"))?.ok_or_else(missing)
    }

    /// Reads a whole blob and checks it against its digest, for documents of any kind
    /// (capped at the largest document cap, [`document::MAX_CONFIG_BYTES`]). Prefer
    /// [`Layout::read_document`] when the descriptor is at hand.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read_verified(digest, None, document::MAX_CONFIG_BYTES, "documents")
    }

    /// Reads the document a descriptor names (an index, a manifest or a config) and checks it
    /// against its digest. Its size is capped by its kind, and checked first from the
    /// descriptor, then from the file, before anything is read.
    pub fn read_document(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let (cap, what) = match desc.kind() {
            Kind::Index | Kind::Manifest => (document::MAX_MANIFEST_BYTES, "manifests and indexes"),
            Kind::Blob => (document::MAX_CONFIG_BYTES, "configs"),
        };
        self.read_verified(&desc.digest, Some(desc.size), cap, what)
    }

    fn read_verified(&self, digest: &Digest, declared: Option<u64>, cap: u64, what: &str) -> Result<Vec<u8>> {
        if let Some(size) = declared
            && size > cap
        {
            bail!(
                "blob {digest}: its descriptor says {size} bytes, over the {} cap on {what}",
                size_name(cap)
            );
        }
        let file = self.open_blob(digest)?;
        let bytes = read_capped(file, cap, &format_args!("blob {digest}"), what)?;
        let mut hasher = crate::digest::Hasher::new(digest.algorithm());
        hasher.update(&bytes);
        let actual = hasher.finish();
        if &actual != digest {
            bail!("blob {digest} is corrupt: its content hashes to {actual}");
        }
        Ok(bytes)
    }

    /// Stores bytes as a blob and returns their sha256 digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut w = self.blob_writer(Expected::new(&digest, bytes.len() as u64))?;
            w.write_all(bytes)?;
            w.commit()?;
        }
        Ok(digest)
    }

    /// Stores a document (manifest, index, config) and returns its descriptor.
    pub fn put_document(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        self.put_bytes(bytes)?;
        Ok(Descriptor::of(media_type, bytes))
    }

    /// Copies a stream into the store, verifying it against what is expected.
    pub fn put_blob(&self, mut reader: impl Read, expected: Expected) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer(expected)?;
        io::copy(&mut reader, &mut w)?;
        w.commit()
    }

    /// A writer for a new blob; nothing appears under `blobs/` unless `commit` succeeds.
    pub fn blob_writer(&self, expected: Expected) -> Result<BlobWriter> {
        // The lock first: GC removes every temp file it finds while it holds the GC lock, so a
        // temp file made before waiting for that lock could vanish under the writer.
        let lock = self.lock_for_writing()?;
        let tmp = TempFile::new(self, "blob-")?;
        Ok(BlobWriter { layout: self.clone(), inner: HashingWriter::new(tmp, expected), _lock: lock })
    }

    /// Every blob in the layout, with its size (0 for one that is not a regular file: removing
    /// it frees nothing). Entries whose names are not digests are skipped. A `blobs/<alg>`
    /// that is not a directory of the layout is refused.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        let blobs = self.root.join("blobs");
        let Some(dir) = open_dir(self.fd(), "blobs", &blobs)? else { return Ok(out) };
        for alg in list_dir(dir.as_fd()).with_context(|| format!("reading {}", blobs.display()))? {
            let Ok(alg) = String::from_utf8(alg) else { continue };
            let known = ALGORITHMS.iter().any(|a| a.name() == alg);
            if !known && stat_kind(dir.as_fd(), &alg) != Some(FileType::Directory) {
                continue;
            }
            let Some(alg_dir) = open_dir(dir.as_fd(), &alg, &blobs.join(&alg))? else { continue };
            let names = list_dir(alg_dir.as_fd())
                .with_context(|| format!("reading {}", blobs.join(&alg).display()))?;
            for name in names {
                let Ok(name) = String::from_utf8(name) else { continue };
                let Ok(digest) = format!("{alg}:{name}").parse::<Digest>() else { continue };
                let Ok(st) = rustix::fs::statat(alg_dir.as_fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                else {
                    continue;
                };
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {}
                    FileType::RegularFile => out.push((digest, st.st_size as u64)),
                    _ => out.push((digest, 0)),
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a blob (the directory entry: a symlink there is removed, not what it names); a
    /// blob already gone is not an error.
    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        let Some(dir) = self.blob_dir(digest.algorithm())? else { return Ok(()) };
        match rustix::fs::unlinkat(dir.as_fd(), digest.hex(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(anyhow!("removing blob {digest}: {}", io::Error::from(e))),
        }
    }

    /// Reads `index.json`. A missing file reads as empty; a corrupt one is an error, and so is
    /// one that is not a regular file of the layout or is over [`document::MAX_INDEX_JSON_BYTES`].
    pub fn read_index(&self) -> Result<IndexFile> {
        let path = self.index_path();
        let bytes = match open_regular(self.fd(), INDEX_FILE, &path.display())? {
            Some(file) => read_capped(file, document::MAX_INDEX_JSON_BYTES, &path.display(), "index.json")?,
            None => EMPTY_INDEX.as_bytes().to_vec(),
        };
        IndexFile::parse(&bytes).with_context(|| format!("{}: corrupt index", path.display()))
    }

    /// Read-modify-write of `index.json` under the exclusive index lock. The file is replaced
    /// atomically, and only if `change` succeeds.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
        self.check_own_files()?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let result = change(&mut index)?;
        // Blob renames must be durable before an index.json that names them is: one directory
        // sync here covers every blob written since the last update.
        for alg in ALGORITHMS {
            if let Some(dir) = self.blob_dir(alg)? {
                sync_dir(dir.as_fd());
            }
        }
        self.write_atomically(INDEX_FILE, &index.to_bytes())?;
        Ok(result)
    }

    /// Points `name` at `descriptor`, replacing any entry that names the same image.
    pub fn set_ref(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        self.update_index(|index| {
            index.set_ref(name, descriptor);
            Ok(())
        })
    }

    /// Held by a writer from its first blob until its refs are written (see module docs).
    pub fn lock_for_writing(&self) -> Result<LockGuard> {
        self.lock("gc.lock", false)
    }

    /// Held by garbage collection while it marks and sweeps.
    pub fn lock_for_gc(&self) -> Result<LockGuard> {
        self.lock("gc.lock", true)
    }

    pub(crate) fn lock_index(&self) -> Result<LockGuard> {
        self.lock("index.lock", true)
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard> {
        let path = self.root.join(PRIVATE_DIR).join(name);
        let file = crate::lockfile::open_in(self.private("")?.as_fd(), name, &path)?;
        if exclusive { file.lock() } else { file.lock_shared() }
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(LockGuard { _file: file })
    }

    /// Removes temp files left by killed writers. Call only while holding the GC lock and the
    /// index lock: then no writer of ours has a temp file open.
    pub(crate) fn remove_stale_temp_files(&self) -> Result<()> {
        let img = self.root.join(PRIVATE_DIR);
        let Some(dir) = open_dir(self.fd(), PRIVATE_DIR, &img)? else { return Ok(()) };
        let Some(tmp) = open_dir(dir.as_fd(), "tmp", &img.join("tmp"))? else { return Ok(()) };
        for name in list_dir(tmp.as_fd())? {
            let _ = rustix::fs::unlinkat(tmp.as_fd(), name.as_slice(), AtFlags::empty());
        }
        Ok(())
    }

    /// Writes a small file of the layout's directory by temp file + fsync + rename, then syncs
    /// the directory. (The rename replaces whatever entry is there, a symlink included; it never
    /// writes through one.)
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<()> {
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

/// A file being written in the layout's `.img/tmp`, removed when dropped unless renamed into
/// place.
struct TempFile {
    dir: OwnedFd,
    name: String,
    file: File,
    kept: bool,
}

impl TempFile {
    fn new(layout: &Layout, prefix: &str) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = layout.private("tmp")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name =
                format!("{prefix}{}-{:x}", std::process::id(), nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
            let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(dir.as_fd(), name.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => return Ok(TempFile { dir, name, file: File::from(fd), kept: false }),
                Err(Errno::EXIST) => continue,
                Err(e) => bail!(
                    "creating a temp file in {}: {}",
                    layout.root.join(".img/tmp").display(),
                    io::Error::from(e)
                ),
            }
        }
        bail!(
            "creating a temp file in {}: every name tried was taken",
            layout.root.join(".img/tmp").display()
        )
    }

    /// Renames the file to `name` in `dir`.
    fn persist(mut self, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        rustix::fs::renameat(self.dir.as_fd(), self.name.as_str(), dir, name)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = rustix::fs::unlinkat(self.dir.as_fd(), self.name.as_str(), AtFlags::empty());
        }
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A blob being written; see [`Layout::blob_writer`].
pub struct BlobWriter {
    layout: Layout,
    inner: HashingWriter<TempFile>,
    _lock: LockGuard,
}

impl BlobWriter {
    pub fn bytes_written(&self) -> u64 {
        self.inner.count()
    }

    /// Verifies, syncs and renames the blob into place. On any error the temp file is removed.
    pub fn commit(self) -> Result<(Digest, u64)> {
        let (tmp, digest, size) = self.inner.verify()?;
        if self.layout.has_blob(&digest) {
            return Ok((digest, size)); // someone else stored the same content meanwhile
        }
        let dir = self.layout.blob_dir_made(digest.algorithm())?;
        tmp.file.set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.file.sync_all()?;
        tmp.persist(dir.as_fd(), digest.hex()).map_err(|e| anyhow!("storing blob {digest}: {e}"))?;
        // The rename is made durable by `update_index`, before any index.json can name it.
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Layout {
    /// A download of the blob `expected` names that survives interruption: bytes go to
    /// `.img/partial/<alg>-<hex>`, which a later call continues (its bytes are re-hashed first).
    /// Returns `None` if the blob is already stored (perhaps by a concurrent process, which this
    /// waits for: the partial file is locked while in use).
    pub fn partial_blob(&self, digest: &Digest, size: u64) -> Result<Option<PartialBlob>> {
        let lock = self.lock_for_writing()?;
        let dir = self.private("partial")?;
        let name = format!("{}-{}", digest.algorithm().name(), digest.hex());
        let path = self.root.join(PRIVATE_DIR).join("partial").join(&name);
        for _ in 0..10 {
            if self.has_blob(digest) {
                return Ok(None);
            }
            let file = crate::lockfile::open_in(dir.as_fd(), &name, &path)?;
            file.lock().with_context(|| format!("locking {}", path.display()))?;
            if self.has_blob(digest) {
                return Ok(None);
            }
            // Whoever held the lock may have committed or removed this file meanwhile.
            use std::os::unix::fs::MetadataExt;
            let now = rustix::fs::statat(dir.as_fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW);
            let same = now
                .is_ok_and(|st| file.metadata().is_ok_and(|m| m.ino() == st.st_ino && m.dev() == st.st_dev));
            if !same {
                continue;
            }
            let mut partial = PartialBlob {
                layout: self.clone(),
                dir,
                name,
                file,
                hasher: crate::digest::Hasher::new(digest.algorithm()),
                count: 0,
                expected: Expected::new(digest, size),
                written_back: 0,
                _lock: lock,
            };
            partial.rehash()?;
            return Ok(Some(partial));
        }
        bail!("{}: the partial download keeps changing under us", path.display())
    }
}

/// A blob being downloaded with resume; see [`Layout::partial_blob`]. Dropping it keeps the
/// bytes for next time; `discard` removes them; `commit` verifies and stores the blob.
pub struct PartialBlob {
    layout: Layout,
    /// `.img/partial`, and the file's name there.
    dir: OwnedFd,
    name: String,
    file: File,
    hasher: crate::digest::Hasher,
    count: u64,
    expected: Expected,
    /// Bytes handed to the kernel for writeback so far.
    written_back: u64,
    _lock: LockGuard,
}

impl PartialBlob {
    /// How many bytes are already there (where a Range request should continue).
    pub fn offset(&self) -> u64 {
        self.count
    }

    fn rehash(&mut self) -> Result<()> {
        use std::io::Seek;
        let len = self.file.metadata()?.len();
        if self.expected.size.is_some_and(|want| len > want) {
            return self.restart();
        }
        self.file.seek(io::SeekFrom::Start(0))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            total += n as u64;
        }
        self.count = total;
        self.written_back = total;
        Ok(())
    }

    /// Throws away what is there and starts from byte 0.
    pub fn restart(&mut self) -> Result<()> {
        use std::io::Seek;
        self.file.set_len(0)?;
        self.file.seek(io::SeekFrom::Start(0))?;
        self.hasher = crate::digest::Hasher::new(
            self.expected.digest.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm()),
        );
        self.count = 0;
        self.written_back = 0;
        Ok(())
    }

    /// Removes the partial file (its content is known to be wrong).
    pub fn discard(self) {
        let _ = rustix::fs::unlinkat(self.dir.as_fd(), self.name.as_str(), AtFlags::empty());
    }

    /// Verifies size and digest, syncs and renames the blob into place. A blob that does not
    /// verify is removed, never stored.
    pub fn commit(self) -> Result<(Digest, u64)> {
        let digest = self.hasher.clone().finish();
        if let Err(e) = self.expected.check(&digest, self.count) {
            let _ = rustix::fs::unlinkat(self.dir.as_fd(), self.name.as_str(), AtFlags::empty());
            return Err(e);
        }
        let target = self.layout.blob_dir_made(digest.algorithm())?;
        self.file.set_permissions(fs::Permissions::from_mode(0o644))?;
        self.file.sync_all()?;
        rustix::fs::renameat(self.dir.as_fd(), self.name.as_str(), target.as_fd(), digest.hex())
            .map_err(|e| anyhow!("storing blob {digest}: {}", io::Error::from(e)))?;
        Ok((digest, self.count))
    }
}

impl Write for PartialBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.expected.size
            && self.count + buf.len() as u64 > limit
        {
            return Err(io::Error::other(format!("size mismatch: more than the expected {limit} bytes")));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.start_writeback();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl PartialBlob {
    /// Starts writing finished 1 MiB stretches to disk while the download goes on, so the
    /// fsync at commit has little left to wait for (with 8 MiB, a typical 5 MB layer was all
    /// left to the fsync).
    fn start_writeback(&mut self) {
        const STRETCH: u64 = 1 << 20;
        if self.count / STRETCH > self.written_back / STRETCH {
            let end = self.count / STRETCH * STRETCH;
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a file descriptor we own; failure is harmless.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.written_back as i64,
                    (end - self.written_back) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.written_back = end;
        }
    }
}

/// `index.json`, kept as JSON so fields we do not know survive a rewrite: the document's own
/// and those of each entry (`data`, `platform.os.features`, …), which are written back as read.
#[derive(Clone, Debug)]
pub struct IndexFile {
    doc: Map<String, Value>,
    entries: Vec<Descriptor>,
    /// Each entry as it was read; `None` for entries made here.
    raw: Vec<Option<Value>>,
}

impl IndexFile {
    fn parse(bytes: &[u8]) -> Result<IndexFile> {
        let doc: Map<String, Value> = serde_json::from_slice(bytes)?;
        let manifests = match doc.get("manifests") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => bail!("\"manifests\" is not an array"),
        };
        let entries = manifests
            .iter()
            .enumerate()
            .map(|(i, m)| serde_json::from_value(m.clone()).with_context(|| format!("manifests[{i}]")))
            .collect::<Result<_>>()?;
        Ok(IndexFile { doc, entries, raw: manifests.into_iter().map(Some).collect() })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut doc = self.doc.clone();
        doc.insert("schemaVersion".into(), Value::from(2));
        let entries = self.entries.iter().zip(&self.raw).map(|(d, raw)| {
            raw.clone().unwrap_or_else(|| serde_json::to_value(d).expect("descriptors serialise"))
        });
        doc.insert("manifests".into(), Value::Array(entries.collect()));
        serde_json::to_vec(&doc).expect("values serialise")
    }

    /// The descriptors listed in the index, in order.
    pub fn entries(&self) -> &[Descriptor] {
        &self.entries
    }

    /// Indexes of the entries a query names (see [`refs::find`]).
    pub fn find(&self, query: &str) -> Vec<usize> {
        refs::find(&self.entries, query)
    }

    pub fn set_ref(&mut self, name: &str, descriptor: &Descriptor) {
        let replaced: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].ref_name().is_some_and(|n| refs::same_image(n, name)))
            .collect();
        self.remove(&replaced);
        let mut entry = descriptor.clone();
        entry.annotations.insert(REF_NAME_ANNOTATION.into(), name.to_string());
        self.entries.push(entry);
        self.raw.push(None);
    }

    /// Removes the entries at the given positions and returns them.
    pub fn remove(&mut self, positions: &[usize]) -> Vec<Descriptor> {
        let mut removed = Vec::new();
        let (mut entries, mut raw) = (Vec::new(), Vec::new());
        for (i, (e, r)) in self.entries.drain(..).zip(self.raw.drain(..)).enumerate() {
            if positions.contains(&i) {
                removed.push(e);
            } else {
                entries.push(e);
                raw.push(r);
            }
        }
        (self.entries, self.raw) = (entries, raw);
        removed
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}: invalid path", path.display()))
}

// Confined access: files of a layout (or of the store) reached from their directory's
// descriptor, never through a symlink.

/// What `name` in `dir` is, without following it; `None` if there is nothing by that name.
pub(crate) fn stat_kind(dir: BorrowedFd<'_>, name: &str) -> Option<FileType> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(FileType::from_raw_mode(st.st_mode))
}

/// The one-line refusal of `shown`, found to be `kind` where a `want` ("directory", "regular
/// file") of ours belongs.
pub(crate) fn not_ours(shown: &dyn Display, kind: FileType, want: &str) -> anyhow::Error {
    let kind = match kind {
        FileType::Symlink => return anyhow!("{shown}: is a symlink, not a {want}: refusing to follow it"),
        FileType::Directory => "a directory",
        FileType::RegularFile => "a regular file",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "of an unknown type",
    };
    anyhow!("{shown}: is {kind}, not a {want}: refused")
}

/// Opens the directory `name` in `dir` (`O_PATH`: as a place to resolve names in, which needs
/// no read permission), which must be a real directory there (a symlink is refused, not
/// followed); `None` if there is none. `shown` is its path, for errors.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => {
            let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(io::Error::from)?.st_mode);
            if kind != FileType::Directory {
                return Err(not_ours(&shown.display(), kind, "directory"));
            }
            Ok(Some(fd))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => match stat_kind(dir, name) {
            Some(kind) if kind != FileType::Directory => Err(not_ours(&shown.display(), kind, "directory")),
            _ => Err(anyhow!("{}: {}", shown.display(), io::Error::from(e))),
        },
    }
}

/// [`open_dir`], creating the directory first if it is missing.
pub(crate) fn make_dir(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o777)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => bail!("creating {}: {}", shown.display(), io::Error::from(e)),
    }
    open_dir(dir, name, shown)?.ok_or_else(|| anyhow!("{}: vanished as it was made", shown.display()))
}

/// Opens the regular file `name` in `dir` for reading; `None` if there is none. A symlink, a
/// FIFO, a device or a socket is refused without being opened (and, should one replace the
/// file meanwhile, without following it or blocking on it).
pub(crate) fn open_regular(dir: BorrowedFd<'_>, name: &str, shown: &dyn Display) -> Result<Option<File>> {
    match stat_kind(dir, name) {
        None => return Ok(None),
        Some(FileType::RegularFile) => {}
        Some(kind) => return Err(not_ours(shown, kind, "regular file")),
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(not_ours(shown, FileType::Symlink, "regular file")),
        Err(e) => bail!("{shown}: {}", io::Error::from(e)),
    };
    let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(io::Error::from)?.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_ours(shown, kind, "regular file"));
    }
    Ok(Some(File::from(fd)))
}

/// Reads a whole file of at most `cap` bytes (`what` says whose cap, for the error), checking
/// its size before reading and never reading more than `cap` + 1 bytes should it grow.
fn read_capped(file: File, cap: u64, shown: &dyn Display, what: &str) -> Result<Vec<u8>> {
    let too_big = |size: u64| anyhow!("{shown}: is {size} bytes, over the {} cap on {what}", size_name(cap));
    let size = file.metadata().with_context(|| shown.to_string())?.len();
    if size > cap {
        return Err(too_big(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(cap + 1).read_to_end(&mut bytes).with_context(|| shown.to_string())?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Makes the renames in a directory durable (best effort: each rename is already atomic).
fn sync_dir(dir: BorrowedFd<'_>) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if let Ok(d) = rustix::fs::openat(dir, ".", flags, Mode::empty()) {
        let _ = rustix::fs::fsync(&d);
    }
}

/// `4 MiB`, `64 KiB`.
fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes >> 10) }
}

/// The names in a directory, but `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let readable =
        rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&readable)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_puts_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("l")).unwrap();
        assert!(layout.root().join("oci-layout").is_file());
        assert!(layout.read_index().unwrap().entries().is_empty());
        let d = layout.put_bytes(b"hello").unwrap();
        assert_eq!(layout.read_blob(&d).unwrap(), b"hello");
        assert_eq!(layout.list_blobs().unwrap(), vec![(d.clone(), 5)]);
        let mode = fs::metadata(layout.blob_path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        Layout::open(layout.root()).unwrap();
    }

    #[test]
    fn a_wrong_blob_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let want = Digest::of(b"hello");
        let err = layout.put_blob(&b"hellO"[..], Expected::new(&want, 5)).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(layout.list_blobs().unwrap().is_empty());
        assert_eq!(fs::read_dir(layout.private_dir("tmp").unwrap()).unwrap().count(), 0);
    }

    #[test]
    fn partial_blobs_resume_and_never_commit_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let want = Digest::of(b"hello world");
        let mut p = layout.partial_blob(&want, 11).unwrap().unwrap();
        p.write_all(b"hello").unwrap();
        drop(p);
        let mut p = layout.partial_blob(&want, 11).unwrap().unwrap();
        assert_eq!(p.offset(), 5);
        p.write_all(b" world").unwrap();
        p.commit().unwrap();
        assert_eq!(layout.read_blob(&want).unwrap(), b"hello world");
        assert!(layout.partial_blob(&want, 11).unwrap().is_none());

        let other = Digest::of(b"abc");
        let mut p = layout.partial_blob(&other, 3).unwrap().unwrap();
        p.write_all(b"abd").unwrap();
        assert!(p.commit().unwrap_err().to_string().contains("digest mismatch"));
        assert!(!layout.has_blob(&other));
        assert_eq!(layout.partial_blob(&other, 3).unwrap().unwrap().offset(), 0);
    }

    #[test]
    fn refs_replace_same_image_and_keep_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        fs::write(layout.index_path(), r#"{"schemaVersion":2,"manifests":[],"annotations":{"x":"y"}}"#)
            .unwrap();
        let a = Descriptor::of(crate::media_type::OCI_MANIFEST, b"a");
        let b = Descriptor::of(crate::media_type::OCI_MANIFEST, b"b");
        layout.set_ref("alpine:3", &a).unwrap();
        layout.set_ref("docker.io/library/alpine:3", &b).unwrap();
        layout.set_ref("docker.io/library/alpine:4", &a).unwrap();
        let index = layout.read_index().unwrap();
        let names: Vec<_> = index.entries().iter().map(|e| e.ref_name().unwrap()).collect();
        assert_eq!(names, ["docker.io/library/alpine:3", "docker.io/library/alpine:4"]);
        assert_eq!(index.entries()[0].digest, b.digest);
        let raw: Value = serde_json::from_slice(&fs::read(layout.index_path()).unwrap()).unwrap();
        assert_eq!(raw["annotations"]["x"], "y");
    }

    #[test]
    fn a_writer_waiting_for_gc_keeps_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let gc = layout.lock_for_gc().unwrap();
        let other = layout.clone();
        let writer = std::thread::spawn(move || other.put_bytes(b"written while GC ran"));
        // Give the writer time to block on the GC lock (if it is quicker, the test proves less).
        std::thread::sleep(std::time::Duration::from_millis(200));
        layout.remove_stale_temp_files().unwrap(); // what GC does while it holds its lock
        drop(gc);
        let d = writer.join().unwrap().expect("the writer's blob survives a GC it waited for");
        assert_eq!(layout.read_blob(&d).unwrap(), b"written while GC ran");
    }

    #[test]
    fn concurrent_creators_all_open_the_same_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || Layout::open_or_create(root).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().expect("a concurrent creator failed");
        }
        Layout::open(&root).unwrap();
        // A directory that holds something else is still refused, and left as it was.
        let foreign = dir.path().join("foreign");
        fs::create_dir_all(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = Layout::open_or_create(&foreign).unwrap_err().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
        assert_eq!(fs::read_dir(&foreign).unwrap().count(), 1);
    }

    #[test]
    fn sha512_blobs_and_layouts_without_a_sha256_directory() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        fs::remove_dir(dir.path().join("blobs/sha256")).unwrap();
        let d = layout.put_bytes(b"x").unwrap();
        assert_eq!(layout.read_blob(&d).unwrap(), b"x");
        let mut h = crate::digest::Hasher::new(Algorithm::Sha512);
        h.update(b"y");
        let d512 = h.finish();
        layout.put_blob(&b"y"[..], Expected::new(&d512, 1)).unwrap();
        assert_eq!(layout.read_blob(&d512).unwrap(), b"y");
        assert_eq!(layout.list_blobs().unwrap().len(), 2);
    }

    #[test]
    fn entries_keep_fields_we_do_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let a = Descriptor::of(crate::media_type::OCI_MANIFEST, b"a");
        let b = Descriptor::of(crate::media_type::OCI_MANIFEST, b"b");
        let entry = |d: &Descriptor, name: &str| {
            serde_json::json!({
                "mediaType": d.media_type, "digest": d.digest, "size": d.size, "data": "YQ==",
                "platform": {"os": "windows", "architecture": "amd64", "os.features": ["win32k"]},
                "annotations": {REF_NAME_ANNOTATION: name},
            })
        };
        let doc = serde_json::json!({"schemaVersion": 2, "manifests": [entry(&a, "a"), entry(&b, "b"), entry(&a, "c")]});
        fs::write(layout.index_path(), doc.to_string()).unwrap();
        layout.update_index(|i| Ok(i.remove(&i.find("b:latest")))).unwrap();
        layout.set_ref("docker.io/library/d:1", &b).unwrap();
        let raw: Value = serde_json::from_slice(&fs::read(layout.index_path()).unwrap()).unwrap();
        assert_eq!(raw["manifests"][0], entry(&a, "a"));
        assert_eq!(raw["manifests"][1], entry(&a, "c"));
        assert_eq!(raw["manifests"][2]["annotations"][REF_NAME_ANNOTATION], "docker.io/library/d:1");
        assert_eq!(raw["manifests"].as_array().unwrap().len(), 3);
        let index = layout.read_index().unwrap();
        assert_eq!(index.entries().len(), 3);
        assert_eq!(index.entries()[2].digest, b.digest);
    }

    #[test]
    fn writes_never_go_through_a_symlink_planted_in_the_layout() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path().join("l")).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("file"), "precious").unwrap();
        let untouched = |what: &str| {
            let names: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["file"], "{what}");
            assert_eq!(fs::read(outside.join("file")).unwrap(), b"precious", "{what}");
        };

        // A partial download that is a symlink to a file outside: not opened, not truncated.
        let want = Digest::of(b"hello");
        let partial = layout.private_dir("partial").unwrap().join(format!("sha256-{}", want.hex()));
        symlink(outside.join("file"), &partial).unwrap();
        let err =
            layout.partial_blob(&want, 5).err().expect("a symlinked partial file is refused").to_string();
        assert!(err.contains("symlink"), "{err}");
        untouched("partial");
        fs::remove_file(&partial).unwrap();

        // A temp directory that is a symlink: no blob is written there, no index.json either.
        let tmp = layout.private_dir("tmp").unwrap();
        fs::remove_dir(&tmp).unwrap();
        symlink(&outside, &tmp).unwrap();
        let err = layout.put_bytes(b"x").unwrap_err().to_string();
        assert!(err.contains(".img/tmp") && err.contains("symlink"), "{err}");
        let err = layout.set_ref("a:1", &Descriptor::of(crate::media_type::OCI_MANIFEST, b"a")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        untouched("tmp");
        fs::remove_file(&tmp).unwrap();

        // A blob directory that is a symlink: nothing stored, listed or removed through it.
        fs::remove_dir(dir.path().join("l/blobs/sha256")).unwrap();
        symlink(&outside, dir.path().join("l/blobs/sha256")).unwrap();
        assert!(layout.put_bytes(b"y").unwrap_err().to_string().contains("symlink"));
        assert!(layout.list_blobs().unwrap_err().to_string().contains("symlink"));
        assert!(layout.remove_blob(&Digest::of(b"y")).unwrap_err().to_string().contains("symlink"));
        assert!(!layout.has_blob(&Digest::of(b"y")));
        untouched("blobs");
        // The same layout with real directories works as before.
        fs::remove_file(dir.path().join("l/blobs/sha256")).unwrap();
        let d = layout.put_bytes(b"z").unwrap();
        assert_eq!(layout.read_blob(&d).unwrap(), b"z");
    }

    #[test]
    fn corrupt_index_and_missing_layout_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
        let layout = Layout::open_or_create(dir.path()).unwrap();
        fs::write(layout.index_path(), "{not json").unwrap();
        let err = format!("{:#}", layout.read_index().unwrap_err());
        assert!(err.contains("corrupt index"), "{err}");
        let d = layout.put_bytes(b"x").unwrap();
        fs::write(layout.blob_path(&d), "y").unwrap();
        let err = layout.read_blob(&d).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
