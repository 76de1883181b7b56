//! Temp files in the layout's `.img/tmp`: where a blob or a small file of the layout is written
//! before it is renamed into place, removed when dropped unless it was; and the cleanup of those
//! killed writers left behind.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::confined::{list_dir, open_dir};
use super::{Layout, PRIVATE_DIR};

impl Layout {
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
}

/// A file being written in the layout's `.img/tmp`, removed when dropped unless renamed into
/// place.
pub(super) struct TempFile {
    dir: OwnedFd,
    name: String,
    pub(super) file: File,
    kept: bool,
}

impl TempFile {
    pub(super) fn new(layout: &Layout, prefix: &str) -> Result<TempFile> {
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
    pub(super) fn persist(mut self, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
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
