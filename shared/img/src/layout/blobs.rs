//! The layout's blobs, `blobs/<alg>/<hex>`: stored only once verified (hashed while written
//! to a temp file, synced, renamed into place), read only as regular files of the layout and
//! checked against their digest, listed and removed without following symlinks.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use super::confined::{list_dir, make_dir, open_dir, open_regular, read_capped, size_name, stat_kind};
use super::lock::LockGuard;
use super::temp_file::TempFile;
use super::{ALGORITHMS, Layout};
use crate::digest::{Algorithm, Digest, Expected, HashingWriter};
use crate::document::{self, Descriptor};
use crate::media_type::Kind;

impl Layout {
    /// `blobs/<alg>`, if it is there.
    pub(super) fn blob_dir(&self, alg: Algorithm) -> Result<Option<OwnedFd>> {
        let blobs = self.root.join("blobs");
        let Some(dir) = open_dir(self.fd(), "blobs", &blobs)? else { return Ok(None) };
        open_dir(dir.as_fd(), alg.name(), &blobs.join(alg.name()))
    }

    /// `blobs/<alg>`, created if need be (other tools may leave out `blobs/sha256` of a layout
    /// without blobs; sha512 has none).
    pub(super) fn blob_dir_made(&self, alg: Algorithm) -> Result<OwnedFd> {
        let blobs = self.root.join("blobs");
        let dir = make_dir(self.fd(), "blobs", &blobs)?;
        make_dir(dir.as_fd(), alg.name(), &blobs.join(alg.name()))
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
