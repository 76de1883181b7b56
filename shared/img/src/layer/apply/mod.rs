//! Applying a layer tar to a directory, with the OCI image-spec layer rules.
//!
//! Every path is resolved inside the root ([`Root`]): parents through `openat2` with
//! `RESOLVE_IN_ROOT`, the last component with `*at` calls that never follow it. So a layer can
//! use absolute symlinks that point into the tree, and nothing it says can reach outside.
//!
//! Rules, as umoci and containerd apply them:
//! - `dir/.wh.NAME` deletes `dir/NAME` of lower layers; `dir/.wh..wh..opq` hides everything
//!   lower layers had in `dir`. Neither touches entries of its own layer, wherever in the tar
//!   the whiteout comes. `.wh.`, `.wh..` and names that leave the root are errors.
//! - An entry replaces what is at its path, except that a directory over a directory merges.
//!   Replacing a directory removes it with everything under it, without following symlinks.
//! - Owners, modes (setuid/setgid/sticky), xattrs (after the owner, so `security.capability`
//!   survives) and times are applied; directories get their mode and times last, after their
//!   contents ([`Applier::finish`]).
//! - Not root ([`Owners::Rootless`]): files belong to the invoking user and their owners in the
//!   image are kept in the `user.rootlesscontainers` xattr, as umoci does; device nodes are
//!   skipped with one warning.
//!
//! Whiteouts are written as deletions ([`Whiteouts::Delete`], for a rootfs) or in overlayfs
//! form ([`Whiteouts::Overlay`]: a 0/0 character device, an `overlay.opaque` xattr), for a
//! per-layer snapshot that overlayfs stacks.
//!
//! Entry names are cleaned by [`crate::path`]; reading and setting an entry's metadata is in
//! `metadata`, removing a tree without following symlinks in `remove`.

mod metadata;
mod remove;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, XattrFlags};
use rustix::io::Errno;

pub use metadata::{ROOTLESS_XATTR, rootless_owner};
pub use remove::remove_dir_tree;

use super::root::Root;
use crate::path::{clean, clean_clamped, is_under, join, split};
use metadata::{Target, times};
use remove::{list_dir, remove_tree};

/// How whiteouts are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// Delete what they hide (a flattened rootfs).
    Delete,
    /// Keep them in overlayfs form for a lower layer of an overlay mount: `.wh.NAME` becomes a
    /// character device 0/0 named NAME, `.wh..wh..opq` an `overlay.opaque=y` xattr on its
    /// directory (`trusted.` as root, `user.` when rootless, for overlayfs' `userxattr`).
    Overlay,
}

/// Whose files these are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// Set the owners the layer says (needs root).
    Chown,
    /// Leave files to the invoking user; keep the layer's owners in `user.rootlesscontainers`.
    Rootless,
}

impl Owners {
    /// `Chown` as root, `Rootless` otherwise.
    pub fn for_current_user() -> Owners {
        if rustix::process::geteuid().is_root() { Owners::Chown } else { Owners::Rootless }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub whiteouts: Whiteouts,
    pub owners: Owners,
}

impl Default for Options {
    fn default() -> Self {
        Options { whiteouts: Whiteouts::Delete, owners: Owners::for_current_user() }
    }
}

/// What applying a layer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub file_bytes: u64,
}

/// The most header data (PAX records, GNU long names) one entry may have.
pub const MAX_HEADER_BYTES: u64 = 4 << 20;

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// Applies layers to one directory. Use one `Applier` for all layers of a rootfs (or one per
/// snapshot) and call [`Applier::finish`] at the end.
pub struct Applier {
    root: Root,
    opts: Options,
    /// Directories with entries in the applied layers: their mode and times, set last.
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    /// Paths with entries in the current layer, and their ancestors.
    touched: HashSet<Vec<u8>>,
    ancestors: HashSet<Vec<u8>>,
    /// The last parent directory resolved.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    warned: BTreeSet<String>,
    buf: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct DirMeta {
    mode: u32,
    mtime: Timespec,
}

/// The metadata of one entry.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub uid: u64,
    pub gid: u64,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub mtime: Timespec,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One entry to write, for callers that make a tree from something other than a layer tar
/// (img-build's COPY, heredocs, downloads): [`Applier::put`] writes it with the same confined
/// resolution as a layer's entries, so a symlink written earlier can never lead a later write
/// out of the root.
pub enum Node<'a> {
    Dir,
    File(&'a mut dyn Read),
    Symlink(&'a [u8]),
    Fifo,
    /// A character or block device and its `rdev`.
    Device(FileType, u64),
}

impl Applier {
    /// An applier writing into `root`, an existing directory (usually empty).
    pub fn new(root: &Path, opts: Options) -> Result<Applier> {
        let root = Root::open(root).with_context(|| format!("opening {}", root.display()))?;
        Ok(Applier::in_root(root, opts))
    }

    fn in_root(root: Root, opts: Options) -> Applier {
        Applier {
            root,
            opts,
            dirs: BTreeMap::new(),
            touched: HashSet::new(),
            ancestors: HashSet::new(),
            cache: None,
            warned: BTreeSet::new(),
            buf: vec![0; 256 * 1024],
        }
    }

    /// Applies one uncompressed layer tar, reading `tar` to its end.
    pub fn apply(&mut self, tar: impl Read) -> Result<Stats> {
        self.touched.clear();
        self.ancestors.clear();
        let budget = Rc::new(Cell::new(None));
        let mut archive = tar::Archive::new(Guarded { inner: tar, budget: budget.clone() });
        let mut stats = Stats::default();
        {
            let mut entries = archive.entries().context("reading the layer tar")?;
            loop {
                // Only header data is read inside `next`: entry bodies are drained below.
                budget.set(Some(MAX_HEADER_BYTES));
                let next = entries.next();
                budget.set(None);
                let Some(entry) = next else { break };
                let mut entry = entry.context("reading the layer tar")?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                stats.file_bytes +=
                    self.entry(&mut entry).with_context(|| format!("layer entry {name:?}"))?;
                stats.entries += 1;
                io::copy(&mut entry, &mut io::sink()).context("reading the layer tar")?;
            }
        }
        // Read past the end-of-archive blocks so a caller hashing the stream sees all of it.
        io::copy(&mut archive.into_inner().inner, &mut io::sink()).context("reading the layer tar")?;
        self.cache = None;
        Ok(stats)
    }

    /// Sets the modes and times of directories, deepest first, now that their contents are
    /// there.
    pub fn finish(mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let fd = match self.root.open_at(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
                Ok(fd) => fd,
                // Replaced by a later layer with something that is not a directory.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => {
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("opening directory {}", show(path))),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
                .with_context(|| format!("chmod {}", show(path)))?;
            rustix::fs::futimens(&fd, &times(meta.mtime))
                .with_context(|| format!("times of {}", show(path)))?;
        }
        Ok(())
    }

    /// Applies one entry; returns the bytes of file content written.
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<u64> {
        let raw = e.path_bytes().into_owned();
        let path = clean(&raw)?;
        let kind = e.header().entry_type();
        let meta = self.meta(e)?;
        let (parent, name) = split(&path);

        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(parent, name).map(|_| 0);
        }
        if path.is_empty() {
            // The root itself (`./`): only a directory can describe it.
            if kind != tar::EntryType::Directory {
                bail!("a {kind:?} entry cannot replace the root directory");
            }
            return self.root_dir(&meta).map(|_| 0);
        }
        use tar::EntryType as T;
        let link_name = || e.link_name_bytes().map(|t| t.into_owned());
        let node_kind = match kind {
            T::Regular | T::Continuous | T::GNUSparse if raw.ends_with(b"/") => T::Directory,
            T::Link => {
                let target = link_name().ok_or_else(|| anyhow!("hardlink without a target"))?;
                let pfd = self.parent(parent)?;
                self.touch(&path);
                self.hardlink(pfd.as_fd(), name, &path, &target)?;
                return Ok(0);
            }
            T::XGlobalHeader => return Ok(0),
            other => other,
        };
        let symlink_target;
        let rdev = match node_kind {
            T::Char | T::Block => rustix::fs::makedev(
                e.header().device_major()?.unwrap_or(0),
                e.header().device_minor()?.unwrap_or(0),
            ),
            _ => 0,
        };
        let node = match node_kind {
            T::Regular | T::Continuous | T::GNUSparse => Node::File(e),
            T::Directory => Node::Dir,
            T::Symlink => {
                symlink_target = link_name().ok_or_else(|| anyhow!("symlink without a target"))?;
                Node::Symlink(&symlink_target)
            }
            T::Fifo => Node::Fifo,
            T::Char => Node::Device(FileType::CharacterDevice, rdev),
            T::Block => Node::Device(FileType::BlockDevice, rdev),
            other => {
                self.warn(&format!("{other:?}"), &format!("skipping entries of tar type {other:?}"));
                return Ok(0);
            }
        };
        let pfd = self.parent(parent)?;
        self.touch(&path);
        self.node(pfd.as_fd(), name, &path, node, &meta)
    }

    /// Writes one entry at `path` (relative to the root; `..` may not climb above it), replacing
    /// what is there as a layer entry would. Returns the bytes of file content written. Whiteout
    /// names are not interpreted: the caller says what the entry is.
    pub fn put(&mut self, path: &[u8], node: Node<'_>, meta: &Meta) -> Result<u64> {
        let path = clean(path)?;
        if path.is_empty() {
            if !matches!(node, Node::Dir) {
                bail!("only a directory can replace the root directory");
            }
            return self.root_dir(meta).map(|_| 0);
        }
        let (parent, name) = split(&path);
        let pfd = self.parent(parent)?;
        self.touch(&path);
        self.node(pfd.as_fd(), name, &path, node, meta).with_context(|| show(&path))
    }

    /// Applies a tar (an archive `ADD` extracts) with the directory `dir` of this root as its
    /// root, made if missing: nothing in the tar can reach outside `dir`. Its directories get
    /// their modes and times before this returns.
    pub fn apply_in(&mut self, dir: &[u8], tar: impl Read) -> Result<Stats> {
        let dir = clean(dir)?;
        let fd = self.parent(&dir)?;
        self.touch(&dir);
        let fd = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)?;
        let mut sub = Applier::in_root(Root::from_fd(fd, self.root.path().join(show(&dir))), self.opts);
        let stats = sub.apply(tar)?;
        sub.finish()?;
        // The tar may have replaced directories this applier has open.
        self.cache = None;
        Ok(stats)
    }

    /// The root directory's owner and xattrs now, its mode and times in `finish`.
    fn root_dir(&mut self, meta: &Meta) -> Result<()> {
        let fd = self.root.open_at(b"", OFlags::RDONLY | OFlags::DIRECTORY)?;
        self.set_owner_and_xattrs(Target::Fd(fd.as_fd()), meta)?;
        self.dirs.insert(Vec::new(), DirMeta { mode: meta.mode, mtime: meta.mtime });
        Ok(())
    }

    /// Writes `node` as `name` in the directory `pfd` (which is `path`'s parent).
    fn node(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        node: Node<'_>,
        meta: &Meta,
    ) -> Result<u64> {
        match node {
            Node::File(content) => return self.file(pfd, name, path, meta, content),
            Node::Dir => self.dir(pfd, name, path, meta)?,
            Node::Symlink(target) => {
                self.replace(pfd, name, path, |p, n| rustix::fs::symlinkat(target, p, n))?;
                self.set_metadata(Target::At(pfd, name), meta, false)?;
            }
            Node::Fifo => {
                let mode = Mode::from_raw_mode(meta.mode & 0o7777);
                self.replace(pfd, name, path, |p, n| rustix::fs::mknodat(p, n, FileType::Fifo, mode, 0))?;
                self.set_metadata(Target::At(pfd, name), meta, true)?;
            }
            Node::Device(kind, rdev) => {
                if self.opts.owners == Owners::Rootless {
                    self.warn("device nodes", "not root: skipping device nodes");
                    return Ok(0);
                }
                let mode = Mode::from_raw_mode(meta.mode & 0o7777);
                self.replace(pfd, name, path, |p, n| rustix::fs::mknodat(p, n, kind, mode, rdev))?;
                self.set_metadata(Target::At(pfd, name), meta, true)?;
            }
        }
        Ok(0)
    }

    fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> Result<()> {
        if name == OPAQUE {
            return self.opaque(parent);
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            bail!("invalid whiteout {:?}", show(name));
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            return Ok(()); // AUFS bookkeeping (.wh..wh.plnk and the like): not a whiteout
        }
        let path = join(parent, hidden);
        if self.touched.contains(&path) {
            return Ok(()); // an entry of this layer: whiteouts hide only lower layers
        }
        match self.opts.whiteouts {
            Whiteouts::Delete => {
                let pfd = match self.existing_dir(parent)? {
                    Some(fd) => fd,
                    None => return Ok(()),
                };
                self.remove_all(pfd.as_fd(), hidden, &path)
            }
            Whiteouts::Overlay => {
                let pfd = self.parent(parent)?;
                let pfd = pfd.as_fd();
                let mode = Mode::from_raw_mode(0);
                self.replace(pfd, hidden, &path, |p, n| {
                    rustix::fs::mknodat(p, n, FileType::CharacterDevice, mode, rustix::fs::makedev(0, 0))
                })
            }
        }
    }

    fn opaque(&mut self, dir: &[u8]) -> Result<()> {
        match self.opts.whiteouts {
            Whiteouts::Delete => {
                if let Some(fd) = self.existing_dir(dir)? {
                    self.clear_lower(fd.as_fd(), dir)?;
                }
                Ok(())
            }
            Whiteouts::Overlay => {
                let (parent, name) = split(dir);
                let fd = if dir.is_empty() {
                    self.root.open_at(b"", OFlags::RDONLY | OFlags::DIRECTORY)?
                } else {
                    let pfd = self.parent(parent)?;
                    let pfd = pfd.as_fd();
                    self.touch(dir);
                    mkdir_if_missing(pfd, name, 0o755)?;
                    rustix::fs::openat(
                        pfd,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .with_context(|| format!("opening {}", show(dir)))?
                };
                let key = if self.opts.owners == Owners::Chown {
                    "trusted.overlay.opaque"
                } else {
                    "user.overlay.opaque"
                };
                rustix::fs::fsetxattr(&fd, key, b"y", XattrFlags::empty())
                    .with_context(|| format!("marking {} opaque", show(dir)))?;
                Ok(())
            }
        }
    }

    /// Removes what lower layers put in `dir`, keeping what this layer put there.
    fn clear_lower(&mut self, dirfd: BorrowedFd<'_>, dir: &[u8]) -> Result<()> {
        for child in list_dir(dirfd)? {
            let path = join(dir, &child);
            let kept = self.touched.contains(&path) || self.ancestors.contains(&path);
            if !kept {
                self.remove_all(dirfd, &child, &path)?;
                continue;
            }
            let is_dir = rustix::fs::statat(dirfd, child.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            if is_dir {
                let fd = rustix::fs::openat(
                    dirfd,
                    child.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                self.clear_lower(fd.as_fd(), &path)?;
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        meta: &Meta,
        e: &mut dyn Read,
    ) -> Result<u64> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o600);
        let fd = match rustix::fs::openat(pfd, name, flags, mode) {
            Err(Errno::EXIST) => {
                self.remove_all(pfd, name, path)?;
                rustix::fs::openat(pfd, name, flags, mode)?
            }
            r => r?,
        };
        let mut file = File::from(fd);
        let mut written = 0;
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).context("reading its content"),
            };
            file.write_all(&self.buf[..n]).context("writing")?;
            written += n as u64;
        }
        self.set_metadata(Target::Fd(file.as_fd()), meta, true)?;
        Ok(written)
    }

    fn dir(&mut self, pfd: BorrowedFd<'_>, name: &[u8], path: &[u8], meta: &Meta) -> Result<()> {
        match rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.remove_all(pfd, name, path)?;
                    rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::openat(
            pfd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.set_owner_and_xattrs(Target::Fd(fd.as_fd()), meta)?;
        self.dirs.insert(path.to_vec(), DirMeta { mode: meta.mode, mtime: meta.mtime });
        Ok(())
    }

    fn hardlink(&mut self, pfd: BorrowedFd<'_>, name: &[u8], path: &[u8], target: &[u8]) -> Result<()> {
        let target = clean(target)?;
        if target == path {
            return Ok(());
        }
        let (tparent, tname) = split(&target);
        if tname.is_empty() {
            bail!("hardlink to the root directory");
        }
        let tfd = self
            .root
            .open_at(tparent, OFlags::PATH | OFlags::DIRECTORY)
            .with_context(|| format!("hardlink target {}", show(&target)))?;
        let link = || rustix::fs::linkat(&tfd, tname, pfd, name, AtFlags::empty());
        match link() {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let a = rustix::fs::statat(&tfd, tname, AtFlags::SYMLINK_NOFOLLOW)?;
                let b = rustix::fs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                    return Ok(());
                }
                self.remove_all(pfd, name, path)?;
                link().with_context(|| format!("hardlink to {}", show(&target)))
            }
            Err(e) => Err(e).with_context(|| format!("hardlink to {}", show(&target))),
        }
    }

    /// Creates something at `name` with `make`, first removing whatever is there.
    fn replace(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        make: impl Fn(BorrowedFd<'_>, &[u8]) -> rustix::io::Result<()>,
    ) -> Result<()> {
        match make(pfd, name) {
            Err(Errno::EXIST) => {
                self.remove_all(pfd, name, path)?;
                make(pfd, name)?;
                Ok(())
            }
            r => Ok(r?),
        }
    }

    /// Removes `name` in `dirfd` and, if it is a directory, everything under it, never
    /// following symlinks. A name that is not there is not an error.
    fn remove_all(&mut self, dirfd: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<()> {
        self.forget(path);
        remove_tree(dirfd, name, self.opts.owners == Owners::Rootless)
            .with_context(|| format!("removing {}", show(path)))
    }

    /// Drops what we remembered about `path` and everything under it.
    fn forget(&mut self, path: &[u8]) {
        if self.cache.as_ref().is_some_and(|(c, _)| is_under(c, path)) {
            self.cache = None;
        }
        let under: Vec<Vec<u8>> = self
            .dirs
            .range(path.to_vec()..)
            .take_while(|(k, _)| k.starts_with(path))
            .filter(|(k, _)| is_under(k, path))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            self.dirs.remove(&k);
        }
    }

    /// The directory `parent`, resolved in the root, created (0755) where missing.
    fn parent(&mut self, parent: &[u8]) -> Result<Rc<OwnedFd>> {
        if let Some((p, fd)) = &self.cache
            && p == parent
        {
            return Ok(fd.clone());
        }
        let fd = match self.root.open_at(parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.make_parents(parent)?,
            Err(e) => return Err(e).with_context(|| format!("directory {}", show(parent))),
        };
        let fd = Rc::new(fd);
        self.cache = Some((parent.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Creates the missing directories of `parent`, like `mkdir -p` in a chroot: a symlink on
    /// the way that points nowhere gets its target created (inside the root).
    fn make_parents(&mut self, parent: &[u8]) -> Result<OwnedFd> {
        self.make_parents_at(parent, 0)
    }

    fn make_parents_at(&mut self, parent: &[u8], depth: usize) -> Result<OwnedFd> {
        if depth > 40 {
            bail!("directory {}: too many levels of symbolic links", show(parent));
        }
        let mut fd = self.root.open_at(b"", OFlags::PATH | OFlags::DIRECTORY)?;
        let mut prefix = Vec::new();
        for comp in parent.split(|b| *b == b'/') {
            let dir = prefix.clone();
            prefix = join(&prefix, comp);
            match self.root.open_at(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(next) => fd = next,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    mkdir_if_missing(fd.as_fd(), comp, 0o755)?;
                    fd = match self.root.open_at(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                        Ok(next) => next,
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                            // A dangling symlink: make what it points at, then go through it.
                            let target = rustix::fs::readlinkat(fd.as_fd(), comp, Vec::new())
                                .with_context(|| format!("directory {}", show(&prefix)))?;
                            let target = target.as_bytes();
                            let resolved = if target.starts_with(b"/") {
                                clean_clamped(target)
                            } else {
                                clean_clamped(&join(&dir, target))
                            };
                            self.make_parents_at(&resolved, depth + 1)?;
                            self.root
                                .open_at(&prefix, OFlags::PATH | OFlags::DIRECTORY)
                                .with_context(|| format!("directory {}", show(&prefix)))?
                        }
                        Err(e) => return Err(e).with_context(|| format!("directory {}", show(&prefix))),
                    };
                }
                Err(e) => return Err(e).with_context(|| format!("directory {}", show(&prefix))),
            }
        }
        Ok(fd)
    }

    /// The directory `dir` if it exists (for whiteouts: nothing to hide otherwise).
    fn existing_dir(&self, dir: &[u8]) -> Result<Option<OwnedFd>> {
        match self.root.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("directory {}", show(dir))),
        }
    }

    fn touch(&mut self, path: &[u8]) {
        self.touched.insert(path.to_vec());
        let mut p = path;
        while let Some(i) = p.iter().rposition(|b| *b == b'/') {
            p = &p[..i];
            if !self.ancestors.insert(p.to_vec()) {
                break;
            }
        }
    }
    fn warn(&mut self, key: &str, message: &str) {
        if self.warned.insert(key.to_string()) {
            eprintln!("warning: {message}");
        }
    }
}

/// A reader that allows at most `budget` bytes while a budget is set (tar header parsing).
struct Guarded<R> {
    inner: R,
    budget: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.budget.get() {
            None => self.inner.read(buf),
            Some(0) => Err(io::Error::other(format!(
                "tar headers of one entry exceed {} MiB",
                MAX_HEADER_BYTES >> 20
            ))),
            Some(left) => {
                let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..max])?;
                self.budget.set(Some(left - n as u64));
                Ok(n)
            }
        }
    }
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn mkdir_if_missing(dirfd: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<()> {
    match rustix::fs::mkdirat(dirfd, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {
            rustix::fs::chmodat(dirfd, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
            Ok(())
        }
        Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating directory {}", show(name))),
    }
}
