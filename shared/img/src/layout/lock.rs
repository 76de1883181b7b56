//! Locks: files that exist to be `flock`ed, opened the same way everywhere (the layout's gc and
//! index locks, the snapshots' lock, a running container's lock, a partial download), and the
//! layout's locking protocol.
//!
//! A lock file is never opened through a symlink (one planted there would make us create or
//! open for writing a file anywhere on the host), and must be a regular file (opened
//! `O_NONBLOCK`, so a FIFO in its place cannot block us).
//!
//! The layout's protocol (flock, released when the guard drops):
//! - `.img/index.lock`, exclusive, around every read-modify-write of `index.json`;
//! - `.img/gc.lock`, shared by every writer from its first blob to its ref update, exclusive
//!   for garbage collection, so GC never sweeps a blob that a ref is about to point at.
//!   A process must not collect garbage while it holds a writer lock (flock would deadlock).

use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::confined::not_ours;
use super::{Layout, PRIVATE_DIR};

const FLAGS: OFlags = OFlags::CREATE
    .union(OFlags::RDWR)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Opens (creating if need be) the lock file at `path`, without touching its content. The
/// directories on the way are followed; the file itself must not be a symlink.
pub fn open(path: &Path) -> Result<File> {
    checked(rustix::fs::open(path, FLAGS, Mode::from_raw_mode(0o666)), path)
}

/// Opens (creating if need be) the lock file `name` in the directory `dir`; `path` is its path,
/// for errors.
pub fn open_in(dir: BorrowedFd<'_>, name: &str, path: &Path) -> Result<File> {
    checked(rustix::fs::openat(dir, name, FLAGS, Mode::from_raw_mode(0o666)), path)
}

fn checked(opened: rustix::io::Result<OwnedFd>, path: &Path) -> Result<File> {
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(not_ours(&path.display(), FileType::Symlink, "regular file")),
        Err(e) => return Err(io::Error::from(e)).with_context(|| format!("opening lock {}", path.display())),
    };
    let st = rustix::fs::fstat(fd.as_fd()).map_err(|e| anyhow!("opening lock {}: {e}", path.display()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_ours(&path.display(), kind, "regular file"));
    }
    Ok(File::from(fd))
}

/// Takes `file`'s exclusive lock if nobody holds it; `false` if somebody does.
pub fn try_exclusive(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// A lock held until dropped.
#[must_use = "the lock is released when this is dropped"]
pub struct LockGuard {
    _file: File,
}

impl Layout {
    /// Held by a writer from its first blob until its refs are written (see the module docs).
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
        let file = open_in(self.private("")?.as_fd(), name, &path)?;
        if exclusive { file.lock() } else { file.lock_shared() }
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(LockGuard { _file: file })
    }
}
