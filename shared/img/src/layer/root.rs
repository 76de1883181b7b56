//! A directory used as a root: every path is resolved inside it with chroot semantics, so `..`
//! stops at the root and an absolute symlink like `var/run -> /run` points into the tree, never
//! out of it. The kernel does it (`openat2` with `RESOLVE_IN_ROOT`, Linux 5.6+); on older
//! kernels, or under a seccomp filter that refuses openat2, a walk does: one component at a
//! time, each opened with `O_NOFOLLOW` from its parent's fd, symlinks read and resolved by us,
//! `..` taken from our own stack of parents.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// As many symlinks as Linux follows in one lookup.
const MAX_SYMLINKS: usize = 40;

/// Set once `openat2` turned out to be missing or refused.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The non-empty, non-`.` components of a `/`-separated path.
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec)
}

fn openat(dir: BorrowedFd<'_>, name: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::fs::openat(dir, c.as_c_str(), flags | OFlags::CLOEXEC, Mode::empty())?)
}

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

    /// A root from an open directory (`path` is for messages only).
    pub fn from_fd(fd: OwnedFd, path: PathBuf) -> Root {
        Root { fd, path }
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
        if NO_OPENAT2.load(Ordering::Relaxed) {
            return self.walk(rel, flags);
        }
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        let c = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        // openat2 asks callers to retry when a rename raced with a `..` lookup.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, c.as_c_str(), flags | OFlags::CLOEXEC, Mode::empty(), resolve)
            {
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                // Missing, or refused by a seccomp filter that predates it (older container
                // runtimes answer EPERM to system calls they do not know).
                Err(Errno::NOSYS) => return self.without_openat2(rel, flags),
                Err(Errno::PERM) if self.openat2_refused() => return self.without_openat2(rel, flags),
                r => return r.map_err(io::Error::from),
            }
        }
    }

    fn without_openat2(&self, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        NO_OPENAT2.store(true, Ordering::Relaxed);
        self.walk(rel, flags)
    }

    /// Whether `openat2` is refused as such: opening the root itself cannot be denied.
    fn openat2_refused(&self) -> bool {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let probe =
            rustix::fs::openat2(&self.fd, c".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), resolve);
        matches!(probe, Err(Errno::PERM | Errno::NOSYS))
    }

    /// [`Root::open_at`] without `openat2`. The kernel never follows a symlink here (every
    /// component is opened `O_NOFOLLOW`), so nothing a symlink says can lead out of the root.
    fn walk(&self, rel: &[u8], mut flags: OFlags) -> io::Result<OwnedFd> {
        // A trailing slash means a directory, reached through a symlink if need be.
        let trailing_slash = rel.ends_with(b"/") && components(rel).next().is_some();
        if trailing_slash {
            flags = (flags | OFlags::DIRECTORY) - OFlags::NOFOLLOW;
        }
        let follow_last = !flags.contains(OFlags::NOFOLLOW);
        // Directories from the root down to the current one; `..` pops, but never the root.
        let mut parents: Vec<OwnedFd> = vec![self.dup_root()?];
        let mut pending: VecDeque<Vec<u8>> = components(rel).collect();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            let here = parents.last().expect("the root is never popped").as_fd();
            if name == b".." {
                if parents.len() > 1 {
                    parents.pop();
                }
                continue;
            }
            if pending.is_empty() && !follow_last {
                return openat(here, &name, flags);
            }
            let fd = openat(here, &name, OFlags::PATH | OFlags::NOFOLLOW)?;
            let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
            if kind == FileType::Symlink {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&fd, c"", Vec::new())?.into_bytes();
                if target.starts_with(b"/") {
                    parents.truncate(1);
                }
                for c in components(&target).rev() {
                    pending.push_front(c);
                }
            } else if pending.is_empty() {
                // The last component, not a symlink: open it for real. If it became a
                // symlink meanwhile, O_NOFOLLOW makes that an error rather than a way out.
                return openat(here, &name, flags | OFlags::NOFOLLOW);
            } else if kind == FileType::Directory {
                parents.push(fd);
            } else {
                return Err(Errno::NOTDIR.into());
            }
        }
        // The path ended at a directory (or was empty): reopen it with the caller's flags.
        let dir = parents.pop().expect("the root is never popped");
        openat(dir.as_fd(), b".", flags)
    }

    fn dup_root(&self) -> io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?)
    }

    /// Reads a whole file inside the root (following symlinks inside it), e.g. `/etc/passwd`:
    /// a regular file of at most `max` bytes (a FIFO would block, a device or a huge file
    /// would never end), else an error that says which.
    pub fn read(&self, rel: &str, max: u64) -> io::Result<Vec<u8>> {
        let refused = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{rel} {why}"));
        let fd = self.open_at(rel.as_bytes(), OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(refused("is not a regular file".into()));
        }
        let too_big = || refused(format!("is larger than {} KiB", max >> 10));
        if st.st_size as u64 > max {
            return Err(too_big());
        }
        let mut out = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(std::fs::File::from(fd), max + 1), &mut out)?;
        if out.len() as u64 > max {
            return Err(too_big());
        }
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
        assert_eq!(root.read("link/hostname", 64).unwrap(), b"inside");
        assert_eq!(root.read("/up", 64).unwrap(), b"inside");
        assert_eq!(root.read("../../etc/hostname", 64).unwrap(), b"inside");
        assert!(root.read("etc/hostname", 3).unwrap_err().to_string().contains("larger than"));
        assert!(root.read("etc", 64).unwrap_err().to_string().contains("not a regular file"));
    }

    /// The walk resolves like the kernel's `RESOLVE_IN_ROOT`: same file or same error.
    #[test]
    fn the_walk_agrees_with_openat2() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let at = |p: &str| dir.path().join(p);
        std::fs::create_dir_all(at("a/b/c")).unwrap();
        std::fs::write(at("a/b/c/file"), "x").unwrap();
        std::fs::write(at("top"), "t").unwrap();
        symlink("/a/b", at("abs")).unwrap();
        symlink("b/c", at("a/rel")).unwrap();
        symlink("../../../../../top", at("a/b/up")).unwrap();
        symlink("loop2", at("loop1")).unwrap();
        symlink("loop1", at("loop2")).unwrap();
        symlink("nowhere", at("dangling")).unwrap();
        symlink("/", at("slash")).unwrap();
        symlink("/proc/self/root", at("magic")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let id = |r: io::Result<OwnedFd>| match r {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).unwrap();
                Ok((st.st_dev, st.st_ino))
            }
            Err(e) => Err(e.raw_os_error()),
        };
        let paths = [
            "",
            "/",
            ".",
            "..",
            "a/b/c/file",
            "/a/../a/b/./c/file",
            "abs/c/file",
            "a/rel/file",
            "a/rel/../c/file",
            "a/b/up",
            "/../../top",
            "loop1",
            "loop1/x",
            "dangling",
            "dangling/x",
            "top/x",
            "slash",
            "slash/top",
            "abs",
            "a/b/c/file/",
            "missing/x",
            "magic/top",
            "abs/",
            "a/b/",
            "dangling/",
            "top/",
            "a//b///c",
        ];
        let flag_sets = [
            OFlags::PATH,
            OFlags::PATH | OFlags::NOFOLLOW,
            OFlags::PATH | OFlags::DIRECTORY,
            OFlags::RDONLY | OFlags::NOFOLLOW,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        ];
        for path in paths {
            for flags in flag_sets {
                let kernel = id(root.open_at(path.as_bytes(), flags));
                let walk = id(root.walk(path.as_bytes(), flags));
                assert_eq!(walk, kernel, "{path:?} with {flags:?}");
            }
        }
        // Whatever a symlink says, the walk ends inside the root.
        let outside = std::fs::metadata("/").unwrap().ino();
        let inside = std::fs::metadata(dir.path()).unwrap().ino();
        for path in ["..", "slash", "/../.."] {
            let (_, ino) = id(root.walk(path.as_bytes(), OFlags::PATH)).unwrap();
            assert_eq!(ino, inside, "{path}");
            assert_ne!(ino, outside, "{path}");
        }
    }
}
