//! Removing a directory tree without following symlinks, making directories writable on the
//! way (a tree unpacked without root may have read-only ones).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use anyhow::{Result, anyhow};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// Removes a directory and everything in it, never following symlinks, making directories
/// writable on the way if need be (a tree unpacked without root may have read-only ones).
pub fn remove_dir_tree(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| anyhow!("{}: not a removable path", path.display()))?;
    let dirfd =
        rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    remove_tree(dirfd.as_fd(), std::os::unix::ffi::OsStrExt::as_bytes(name), true)
}

pub(super) fn remove_tree(dirfd: BorrowedFd<'_>, name: &[u8], rootless: bool) -> Result<()> {
    match rustix::fs::unlinkat(dirfd, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rootless {
        let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700));
    }
    for child in list_dir(fd.as_fd())? {
        remove_tree(fd.as_fd(), &child, rootless)?;
    }
    rustix::fs::unlinkat(dirfd, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

pub(super) fn list_dir(fd: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}
