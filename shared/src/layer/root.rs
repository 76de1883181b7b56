//! A directory used as a root: every path is resolved inside it with chroot semantics
//! (`openat2` with `RESOLVE_IN_ROOT`), so `..` stops at the root and an absolute symlink like
//! `var/run -> /run` points into the tree, never out of it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// An open directory that paths are resolved in.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` (bytes, `/`-separated, relative or absolute: both mean inside the root).
    /// Symlinks on the way are followed inside the root; whether the last one is followed is
    /// up to `O_NOFOLLOW` in `flags`. An empty path is the root itself.
    pub fn open_at(&self, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        let c = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        // openat2 asks callers to retry when a rename raced with a `..` lookup.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, c.as_c_str(), flags | OFlags::CLOEXEC, Mode::empty(), resolve)
            {
                Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
                Err(rustix::io::Errno::NOSYS) => {
                    return Err(io::Error::other("the kernel lacks openat2 (Linux 5.6 or later is needed)"));
                }
                r => return r.map_err(io::Error::from),
            }
        }
    }

    /// Reads a whole file inside the root (following symlinks inside it), e.g. `/etc/passwd`.
    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        let fd = self.open_at(rel.as_bytes(), OFlags::RDONLY)?;
        let mut file = std::fs::File::from(fd);
        let mut out = Vec::new();
        io::Read::read_to_end(&mut file, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), "inside").unwrap();
        symlink("/etc", dir.path().join("link")).unwrap();
        symlink("../../../../etc/hostname", dir.path().join("up")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(root.read("link/hostname").unwrap(), b"inside");
        assert_eq!(root.read("/up").unwrap(), b"inside");
        assert_eq!(root.read("../../etc/hostname").unwrap(), b"inside");
    }
}
