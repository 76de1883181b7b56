//! Downloads that survive interruption: a blob's bytes go to `.img/partial/<alg>-<hex>`, which
//! a later download continues after re-hashing what is there, and become a blob only once
//! verified. The partial file is locked while in use, so concurrent downloads of one blob wait
//! for each other instead of interleaving.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::AtFlags;

use super::lock::{self, LockGuard};
use super::{Layout, PRIVATE_DIR};
use crate::digest::{Algorithm, Digest, Expected};

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
            let file = lock::open_in(dir.as_fd(), &name, &path)?;
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
