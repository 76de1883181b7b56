//! Confined access: files of a layout (or of the store) reached from their directory's
//! descriptor with `*at` calls, never through a symlink; a file read must be a regular file
//! (opened `O_NONBLOCK`, so a FIFO cannot block us) and is read under a size cap.

use std::fmt::Display;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

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
pub(crate) fn read_capped(file: File, cap: u64, shown: &dyn Display, what: &str) -> Result<Vec<u8>> {
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
pub(crate) fn sync_dir(dir: BorrowedFd<'_>) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if let Ok(d) = rustix::fs::openat(dir, ".", flags, Mode::empty()) {
        let _ = rustix::fs::fsync(&d);
    }
}

/// `4 MiB`, `64 KiB`.
pub(crate) fn size_name(bytes: u64) -> String {
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
