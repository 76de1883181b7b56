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
        if root.exists() && fs::read_dir(&root)?.any(|e| e.is_ok_and(|e| e.file_name() != PRIVATE_DIR)) {
            bail!("{}: exists, is not empty and is not an OCI image layout", root.display());
        }
        fs::create_dir_all(root.join("blobs").join("sha256"))
            .with_context(|| format!("creating layout {}", root.display()))?;
        let layout = Layout { root };
        // index.json first, oci-layout last: a layout is only recognised once it is complete.
        let _lock = layout.lock_index()?;
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
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.private_dir("tmp")?)
            .context("creating a temp file in the layout")?;
        let lock = self.lock_for_writing()?;
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
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
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
        if digest.algorithm() != Algorithm::Sha256 {
            fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
        }
        tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| anyhow!("storing blob {digest}: {}", e.error))?;
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

/// `index.json`, kept as JSON so fields we do not know survive a rewrite.
#[derive(Clone, Debug)]
pub struct IndexFile {
    doc: Map<String, Value>,
    entries: Vec<Descriptor>,
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
            .into_iter()
            .enumerate()
            .map(|(i, m)| serde_json::from_value(m).with_context(|| format!("manifests[{i}]")))
            .collect::<Result<_>>()?;
        Ok(IndexFile { doc, entries })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut doc = self.doc.clone();
        doc.insert("schemaVersion".into(), Value::from(2));
        let entries = self.entries.iter().map(|d| serde_json::to_value(d).expect("descriptors serialise"));
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
        self.entries.retain(|e| !e.ref_name().is_some_and(|n| refs::same_image(n, name)));
        let mut entry = descriptor.clone();
        entry.annotations.insert(REF_NAME_ANNOTATION.into(), name.to_string());
        self.entries.push(entry);
    }

    /// Removes the entries at the given positions and returns them.
    pub fn remove(&mut self, positions: &[usize]) -> Vec<Descriptor> {
        let mut removed = Vec::new();
        let mut i = 0;
        self.entries.retain(|e| {
            let hit = positions.contains(&i);
            if hit {
                removed.push(e.clone());
            }
            i += 1;
            !hit
        });
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
