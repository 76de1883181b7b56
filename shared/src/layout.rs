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
//! Locking protocol (flock, released when the guard drops):
//! - `.img/index.lock`, exclusive, around every read-modify-write of `index.json`;
//! - `.img/gc.lock`, shared by every writer from its first blob to its ref update, exclusive
//!   for garbage collection, so GC never sweeps a blob that a ref is about to point at.
//!   A process must not collect garbage while it holds a writer lock (flock would deadlock).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use crate::digest::{Algorithm, Digest, Expected, HashingWriter};
use crate::document::{Descriptor, REF_NAME_ANNOTATION};
use crate::refs;

const LAYOUT_VERSION_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
const EMPTY_INDEX: &str = r#"{"schemaVersion":2,"manifests":[]}"#;
const PRIVATE_DIR: &str = ".img";

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
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
        let version = root.join(LAYOUT_VERSION_FILE);
        let text = fs::read_to_string(&version).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                anyhow!("{}: not an OCI image layout (no oci-layout file)", root.display())
            } else {
                anyhow!("{}: {e}", version.display())
            }
        })?;
        let parsed: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: malformed oci-layout file", root.display()))?;
        match parsed.get("imageLayoutVersion").and_then(Value::as_str) {
            Some(v) if v.starts_with("1.") => Ok(Layout { root }),
            other => bail!("{}: unsupported image layout version {other:?}", root.display()),
        }
    }

    /// Opens a layout, creating an empty one (and its parent directories) if there is none.
    pub fn open_or_create(root: impl AsRef<Path>) -> Result<Layout> {
        let root = absolute(root.as_ref())?;
        if root.join(LAYOUT_VERSION_FILE).exists() {
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
        let layout = Layout { root };
        // Creation happens under the index lock, so concurrent creators wait for each other
        // instead of seeing a half-made layout as a foreign directory.
        let _lock = layout.lock_index()?;
        if layout.root.join(LAYOUT_VERSION_FILE).exists() {
            return Layout::open(&layout.root);
        }
        if foreign(&layout.root)? {
            bail!("{}: exists, is not empty and is not an OCI image layout", layout.root.display());
        }
        fs::create_dir_all(layout.root.join("blobs").join("sha256"))
            .with_context(|| format!("creating layout {}", layout.root.display()))?;
        // index.json first, oci-layout last: a layout is only recognised once it is complete.
        if !layout.index_path().exists() {
            layout.write_atomically(&layout.index_path(), EMPTY_INDEX.as_bytes())?;
        }
        layout.write_atomically(&layout.root.join(LAYOUT_VERSION_FILE), LAYOUT_VERSION.as_bytes())?;
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().name()).join(digest.hex())
    }

    /// Our private directory inside the layout, created on demand.
    pub fn private_dir(&self, sub: &str) -> Result<PathBuf> {
        let dir = self.root.join(PRIVATE_DIR).join(sub);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).map_err(|e| self.blob_error(digest, e))
    }

    /// Reads a whole blob and checks it against its digest (for manifests and configs).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let bytes = fs::read(self.blob_path(digest)).map_err(|e| self.blob_error(digest, e))?;
        let mut hasher = crate::digest::Hasher::new(digest.algorithm());
        hasher.update(&bytes);
        let actual = hasher.finish();
        if &actual != digest {
            bail!("blob {digest} is corrupt: its content hashes to {actual}");
        }
        Ok(bytes)
    }

    fn blob_error(&self, digest: &Digest, e: io::Error) -> anyhow::Error {
        if e.kind() == io::ErrorKind::NotFound {
            anyhow!("blob {digest} is missing from {}", self.root.display())
        } else {
            anyhow!("blob {digest}: {e}")
        }
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
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.private_dir("tmp")?)
            .context("creating a temp file in the layout")?;
        Ok(BlobWriter { layout: self.clone(), inner: HashingWriter::new(tmp, expected), _lock: lock })
    }

    /// Every blob file in the layout, with its size. Files whose names are not digests are
    /// skipped.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        let blobs = self.root.join("blobs");
        let algs = match fs::read_dir(&blobs) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(anyhow!("{}: {e}", blobs.display())),
        };
        for alg in algs {
            let alg = alg?;
            if !alg.file_type()?.is_dir() {
                continue;
            }
            for blob in fs::read_dir(alg.path())? {
                let blob = blob?;
                let name =
                    format!("{}:{}", alg.file_name().to_string_lossy(), blob.file_name().to_string_lossy());
                if let Ok(digest) = name.parse::<Digest>() {
                    out.push((digest, blob.metadata()?.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a blob; a blob already gone is not an error.
    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(anyhow!("removing blob {digest}: {e}")),
            _ => Ok(()),
        }
    }

    /// Reads `index.json`. A missing file reads as empty; a corrupt one is an error.
    pub fn read_index(&self) -> Result<IndexFile> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => EMPTY_INDEX.as_bytes().to_vec(),
            Err(e) => return Err(anyhow!("{}: {e}", path.display())),
        };
        IndexFile::parse(&bytes).with_context(|| format!("{}: corrupt index", path.display()))
    }

    /// Read-modify-write of `index.json` under the exclusive index lock. The file is replaced
    /// atomically, and only if `change` succeeds.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let result = change(&mut index)?;
        // Blob renames must be durable before an index.json that names them is: one directory
        // sync here covers every blob written since the last update.
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            if dir.is_dir() {
                sync_dir(&dir);
            }
        }
        self.write_atomically(&self.index_path(), &index.to_bytes())?;
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
        let path = self.private_dir("")?.join(name);
        let file = crate::lockfile::open(&path)?;
        if exclusive { file.lock() } else { file.lock_shared() }
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(LockGuard { _file: file })
    }

    /// Removes temp files left by killed writers. Call only while holding the GC lock and the
    /// index lock: then no writer of ours has a temp file open.
    pub(crate) fn remove_stale_temp_files(&self) -> Result<()> {
        let dir = self.root.join(PRIVATE_DIR).join("tmp");
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
        for entry in entries {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(())
    }

    /// Writes a small file by temp file + fsync + rename, then syncs the directory.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix("write-")
            .tempfile_in(self.private_dir("tmp")?)
            .context("creating a temp file in the layout")?;
        tmp.write_all(bytes)?;
        tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
        sync_dir(path.parent().unwrap_or(&self.root));
        Ok(())
    }
}

/// A blob being written; see [`Layout::blob_writer`].
pub struct BlobWriter {
    layout: Layout,
    inner: HashingWriter<tempfile::NamedTempFile>,
    _lock: LockGuard,
}

impl BlobWriter {
    pub fn bytes_written(&self) -> u64 {
        self.inner.count()
    }

    /// Verifies, syncs and renames the blob into place. On any error the temp file is removed.
    pub fn commit(self) -> Result<(Digest, u64)> {
        let (tmp, digest, size) = self.inner.verify()?;
        let path = self.layout.blob_path(&digest);
        if path.is_file() {
            return Ok((digest, size)); // someone else stored the same content meanwhile
        }
        // Other tools may leave out `blobs/sha256` of a layout without blobs; sha512 has none.
        fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
        tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| anyhow!("storing blob {digest}: {}", e.error))?;
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
        let path =
            self.private_dir("partial")?.join(format!("{}-{}", digest.algorithm().name(), digest.hex()));
        for _ in 0..10 {
            if self.has_blob(digest) {
                return Ok(None);
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.lock().with_context(|| format!("locking {}", path.display()))?;
            if self.has_blob(digest) {
                return Ok(None);
            }
            // Whoever held the lock may have committed or removed this file meanwhile.
            use std::os::unix::fs::MetadataExt;
            let same = fs::metadata(&path).is_ok_and(|m| m.ino() == file.metadata().map_or(0, |f| f.ino()));
            if !same {
                continue;
            }
            let mut partial = PartialBlob {
                layout: self.clone(),
                path: path.clone(),
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
    path: PathBuf,
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
        let _ = fs::remove_file(&self.path);
    }

    /// Verifies size and digest, syncs and renames the blob into place. A blob that does not
    /// verify is removed, never stored.
    pub fn commit(self) -> Result<(Digest, u64)> {
        let digest = self.hasher.clone().finish();
        if let Err(e) = self.expected.check(&digest, self.count) {
            let _ = fs::remove_file(&self.path);
            return Err(e);
        }
        let target = self.layout.blob_path(&digest);
        if digest.algorithm() != Algorithm::Sha256 {
            fs::create_dir_all(target.parent().expect("blob paths have a parent"))?;
        }
        self.file.set_permissions(fs::Permissions::from_mode(0o644))?;
        self.file.sync_all()?;
        fs::rename(&self.path, &target).with_context(|| format!("storing blob {digest}"))?;
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

fn sync_dir(dir: &Path) {
    // Best effort: the rename is already atomic; this makes it durable across power loss.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
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
