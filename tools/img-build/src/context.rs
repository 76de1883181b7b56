//! The build context: the directory COPY and ADD read from, filtered by `.dockerignore`.
//! Sources are resolved as Docker does (paths relative to the context root, never leaving it;
//! wildcards per path component), copied into a staging directory laid out as the layer will
//! be, and hashed (content and metadata) for the build cache.
//!
//! A context is untrusted: its symlinks may point anywhere, it may hold FIFOs, sockets and
//! devices, and another stage's root filesystem is whatever its RUN steps made. So every path
//! is opened inside the context's [`Root`] (symlinks resolved as if it were `/`, the last
//! component never followed), special files are copied as nodes and never opened, and every
//! write goes through the layer applier's [`Applier::put`], which resolves inside the staging
//! directory: nothing copied earlier in a step can lead a later write out of it.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use img::digest::{Algorithm, Digest, Hasher};
use img::layer::apply::{Applier, Meta, Node};
use img::layer::root::Root;
use img::path::clean_relative;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec};

use img_dockerfile::dockerignore::Ignore;

pub struct BuildContext {
    root: Root,
    ignore: Ignore,
}

/// A source path that matched, relative to the context root.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// The path as named (its last component names the copy).
    pub rel: PathBuf,
    /// Where it really is, symlinks resolved inside the root.
    pub real: PathBuf,
    pub is_dir: bool,
}

/// Ownership and mode for copied files (`--chown`, `--chmod`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Attributes {
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
}

impl Attributes {
    /// The metadata a copied entry gets: owner from `--chown` (root by default), mode from
    /// `--chmod` or `mode`, time `mtime`.
    pub fn meta(&self, mode: u32, mtime: Timespec) -> Meta {
        Meta {
            uid: self.uid.into(),
            gid: self.gid.into(),
            mode: self.mode.unwrap_or(mode & 0o7777),
            mtime,
            xattrs: Vec::new(),
        }
    }
}

/// An entry of the context being copied: `name` in the directory `dir`, at `rel` from the
/// root, as `st` describes it.
#[derive(Clone, Copy)]
struct At<'a> {
    dir: BorrowedFd<'a>,
    name: &'a [u8],
    rel: &'a Path,
    st: &'a Stat,
}

/// The most a `.dockerignore` may hold.
const MAX_DOCKERIGNORE: u64 = 1 << 20;

impl BuildContext {
    /// A directory read without ignore rules: another stage's or image's root filesystem.
    pub fn rootfs(root: &Path) -> Result<BuildContext> {
        let root = Root::open(root).with_context(|| format!("{}", root.display()))?;
        Ok(BuildContext { root, ignore: Ignore::none() })
    }

    /// A context directory with its `.dockerignore` (if any).
    pub fn open(root: &Path) -> Result<BuildContext> {
        let shown = root.display();
        let root = Root::open(root).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => anyhow::anyhow!("build context {shown} is not a directory"),
            _ => anyhow::anyhow!("build context {shown}: {e}"),
        })?;
        let ignore = match root.read(".dockerignore", MAX_DOCKERIGNORE) {
            Ok(text) => Ignore::parse(&String::from_utf8_lossy(&text))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::none(),
            Err(e) => return Err(anyhow::Error::from(e).context(".dockerignore")),
        };
        Ok(BuildContext { root, ignore })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A path named in the context (a bind mount's source), its symlinks resolved inside it.
    pub fn resolve_path(&self, source: &str) -> Result<PathBuf> {
        resolve_in_root(&self.root, Path::new(&clean_relative(source)))
    }

    /// Whether nothing under `rel` (a resolved path) is excluded by `.dockerignore`, so the
    /// directory may be shown as it is.
    pub fn nothing_excluded_under(&self, rel: &Path) -> Result<bool> {
        if self.ignore.is_empty() {
            return Ok(true);
        }
        if !rel.as_os_str().is_empty() && self.ignore.is_excluded(&slash(rel)) {
            return Ok(false);
        }
        let (dir, name) = self.parent_of(rel)?;
        self.none_excluded(dir.as_fd(), &name, rel)
    }

    fn none_excluded(&self, dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<bool> {
        let st = lstat(dir, name, rel)?;
        if file_type(&st) != FileType::Directory {
            return Ok(true);
        }
        let fd = open_dir(dir, name, rel)?;
        for (child, _) in children(fd.as_fd(), rel)? {
            let rel_child = rel.join(os(&child));
            if self.ignore.is_excluded(&slash(&rel_child))
                || !self.none_excluded(fd.as_fd(), &child, &rel_child)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The paths a COPY source names: cleaned to stay inside the context, wildcards expanded
    /// (sorted), ignored paths left out. No match is an error naming the source.
    pub fn resolve(&self, source: &str) -> Result<Vec<Source>> {
        let clean: Vec<String> =
            clean_relative(source).split('/').filter(|c| !c.is_empty()).map(String::from).collect();
        let mut found = Vec::new();
        self.expand(Path::new(""), Path::new(""), &clean, &mut found)?;
        found.retain(|s: &Source| s.rel.as_os_str().is_empty() || !self.ignore.is_excluded(&slash(&s.rel)));
        if found.is_empty() {
            bail!("{source}: not found in the build context (or excluded by .dockerignore)");
        }
        Ok(found)
    }

    /// Walks `rest` from `base` (as named) / `real` (resolved), expanding wildcards.
    fn expand(&self, base: &Path, real: &Path, rest: &[String], out: &mut Vec<Source>) -> Result<()> {
        let Some((first, rest)) = rest.split_first() else {
            if let Ok(fd) = self.root.open_at(bytes(real), OFlags::PATH | OFlags::NOFOLLOW) {
                let is_dir = file_type(&rustix::fs::fstat(&fd)?) == FileType::Directory;
                out.push(Source { rel: base.to_path_buf(), real: real.to_path_buf(), is_dir });
            }
            return Ok(());
        };
        if !has_wildcard(first) {
            let name = unescape(first);
            let next = resolve_in_root(&self.root, &real.join(&name))?;
            return self.expand(&base.join(&name), &next, rest, out);
        }
        let glob = globset::GlobBuilder::new(first)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .with_context(|| format!("invalid pattern {first:?}"))?
            .compile_matcher();
        let Ok(dir) = self.root.open_at(bytes(real), OFlags::RDONLY | OFlags::DIRECTORY) else {
            return Ok(());
        };
        for (name, _) in children(dir.as_fd(), real)? {
            let name = String::from_utf8_lossy(&name).into_owned();
            if glob.is_match(name.as_str()) {
                let next = resolve_in_root(&self.root, &real.join(&name))?;
                self.expand(&base.join(&name), &next, rest, out)?;
            }
        }
        Ok(())
    }

    /// Copies sources into the applier's root at `dest` (an absolute path in the image) the
    /// way COPY places them: a directory's contents go into dest; a file goes to dest, or into
    /// it when dest ends in `/` or there are several sources.
    pub fn stage(&self, sources: &[Source], dest: &str, attrs: Attributes, out: &mut Applier) -> Result<()> {
        let into_dir = dest.ends_with('/') || sources.len() > 1 || sources.iter().any(|s| s.is_dir);
        let dest = clean_relative(dest).into_bytes();
        let meta = |st: &Stat| attrs.meta(st.st_mode, mtime(st));
        for s in sources {
            let (dir, name) = self.parent_of(&s.real)?;
            let st = lstat(dir.as_fd(), &name, &s.real)?;
            if s.is_dir {
                let at = At { dir: dir.as_fd(), name: &name, rel: &s.real, st: &st };
                self.copy_tree(at, &dest, &meta, out)?;
            } else {
                let to = match s.rel.file_name() {
                    Some(file) if into_dir => join(&dest, file.as_encoded_bytes()),
                    _ => dest.clone(),
                };
                let at = At { dir: dir.as_fd(), name: &name, rel: &s.real, st: &st };
                self.copy_node(at, &to, &meta, out)?;
            }
        }
        Ok(())
    }

    /// What `rel` (a resolved path) holds, filtered by `.dockerignore`, copied into the
    /// applier's root with its owners and modes: a private copy of a directory (at the root)
    /// or a file (named as in the context). Returns the copy's path in the applier's root.
    pub fn copy_as_is(&self, rel: &Path, out: &mut Applier) -> Result<PathBuf> {
        let (dir, name) = self.parent_of(rel)?;
        let st = lstat(dir.as_fd(), &name, rel)?;
        let meta = |st: &Stat| Meta {
            uid: st.st_uid.into(),
            gid: st.st_gid.into(),
            mode: st.st_mode & 0o7777,
            mtime: mtime(st),
            xattrs: Vec::new(),
        };
        if file_type(&st) == FileType::Directory {
            self.copy_tree(At { dir: dir.as_fd(), name: &name, rel, st: &st }, b"", &meta, out)?;
            return Ok(PathBuf::new());
        }
        let file = rel.file_name().map_or_else(|| b"file".to_vec(), |f| f.as_encoded_bytes().to_vec());
        self.copy_node(At { dir: dir.as_fd(), name: &name, rel, st: &st }, &file, &meta, out)?;
        Ok(PathBuf::from(os(&file)))
    }

    /// A directory and what it holds, into `to`.
    fn copy_tree(
        &self,
        at: At<'_>,
        to: &[u8],
        meta: &dyn Fn(&Stat) -> Meta,
        out: &mut Applier,
    ) -> Result<()> {
        let At { dir, name, rel, st } = at;
        out.put(to, Node::Dir, &meta(st))?;
        let fd = open_dir(dir, name, rel)?;
        for (child, st) in children(fd.as_fd(), rel)? {
            let rel_child = rel.join(os(&child));
            let excluded = self.ignore.is_excluded(&slash(&rel_child));
            let target = join(to, &child);
            if file_type(&st) == FileType::Directory {
                // An excluded directory is still walked when a `!` pattern re-includes
                // something under it, and made only then (as docker: not left empty).
                if !excluded
                    || (self.ignore.has_exceptions() && self.includes_any(fd.as_fd(), &child, &rel_child)?)
                {
                    self.copy_tree(
                        At { dir: fd.as_fd(), name: &child, rel: &rel_child, st: &st },
                        &target,
                        meta,
                        out,
                    )?;
                }
            } else if !excluded {
                self.copy_node(
                    At { dir: fd.as_fd(), name: &child, rel: &rel_child, st: &st },
                    &target,
                    meta,
                    out,
                )?;
            }
        }
        Ok(())
    }

    /// Whether anything under the excluded directory `rel` is re-included by a `!` pattern.
    fn includes_any(&self, dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<bool> {
        let fd = open_dir(dir, name, rel)?;
        for (child, st) in children(fd.as_fd(), rel)? {
            let rel_child = rel.join(os(&child));
            if !self.ignore.is_excluded(&slash(&rel_child)) {
                return Ok(true);
            }
            if file_type(&st) == FileType::Directory && self.includes_any(fd.as_fd(), &child, &rel_child)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One entry that is not a directory: files are read, symlinks copied as links, FIFOs and
    /// devices made as nodes (never opened: a FIFO would block the build forever).
    fn copy_node(
        &self,
        at: At<'_>,
        to: &[u8],
        meta: &dyn Fn(&Stat) -> Meta,
        out: &mut Applier,
    ) -> Result<()> {
        let At { dir, name, rel, st } = at;
        let meta = meta(st);
        match file_type(st) {
            FileType::RegularFile => {
                let mut file = std::fs::File::from(open_regular(dir, name, rel)?);
                out.put(to, Node::File(&mut file), &meta)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .with_context(|| format!("reading the link {}", rel.display()))?;
                out.put(to, Node::Symlink(target.as_bytes()), &meta)?;
            }
            FileType::Fifo => {
                out.put(to, Node::Fifo, &meta)?;
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                out.put(to, Node::Device(kind, st.st_rdev), &meta)?;
            }
            // A layer tar has no sockets; docker leaves them out too.
            FileType::Socket => eprintln!("warning: {}: a socket, not copied", rel.display()),
            other => bail!("{}: cannot copy a {other:?}", rel.display()),
        }
        Ok(())
    }

    /// A regular file of the context (for ADD's archives), opened without following a
    /// symlink or blocking on a FIFO.
    pub fn open_file(&self, source: &Source) -> Result<std::fs::File> {
        let (dir, name) = self.parent_of(&source.real)?;
        Ok(std::fs::File::from(open_regular(dir.as_fd(), &name, &source.real)?))
    }

    /// A digest of what the sources are: paths, types, modes, sizes, link targets and file
    /// contents (not times or owners, which COPY does not take from the context). Used as
    /// part of a COPY step's cache key.
    pub fn digest(&self, sources: &[Source]) -> Result<Digest> {
        let mut h = Hasher::new(Algorithm::Sha256);
        for s in sources {
            h.update(slash(&s.rel).as_bytes());
            let (dir, name) = self.parent_of(&s.real)?;
            self.hash_entry(dir.as_fd(), &name, &s.real, &mut h)?;
        }
        Ok(h.finish())
    }

    fn hash_entry(&self, dir: BorrowedFd<'_>, name: &[u8], rel: &Path, h: &mut Hasher) -> Result<()> {
        let st = lstat(dir, name, rel)?;
        let kind = file_type(&st);
        let excluded = !rel.as_os_str().is_empty() && self.ignore.is_excluded(&slash(rel));
        // An excluded directory is still walked when a `!` pattern may re-include under it.
        if excluded && !(kind == FileType::Directory && self.ignore.has_exceptions()) {
            return Ok(());
        }
        if !excluded {
            h.update(slash(rel).as_bytes());
            // Only what is the same on every machine: a directory's size is the filesystem's
            // (ext4 4096, tmpfs and overlayfs count entries), a device number only means
            // something for a device.
            let size = if kind == FileType::RegularFile { st.st_size as u64 } else { 0 };
            let rdev = if matches!(kind, FileType::CharacterDevice | FileType::BlockDevice) {
                st.st_rdev as u64
            } else {
                0
            };
            h.update(format!("\0{:o}:{size}:{rdev}\0", st.st_mode).as_bytes());
        }
        match kind {
            FileType::Directory => {
                let fd = open_dir(dir, name, rel)?;
                for (child, _) in children(fd.as_fd(), rel)? {
                    self.hash_entry(fd.as_fd(), &child, &rel.join(os(&child)), h)?;
                }
            }
            FileType::Symlink => {
                h.update(rustix::fs::readlinkat(dir, name, Vec::new())?.as_bytes());
            }
            FileType::RegularFile => {
                let mut f = std::fs::File::from(open_regular(dir, name, rel)?);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf).with_context(|| format!("reading {}", rel.display()))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            _ => {}
        }
        h.update(&[0xff]);
        Ok(())
    }

    /// The directory holding `rel` (a resolved path) and its last component; the root itself
    /// is `.` in the root.
    fn parent_of(&self, rel: &Path) -> Result<(OwnedFd, Vec<u8>)> {
        let (parent, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p, n.as_encoded_bytes().to_vec()),
            _ => (Path::new(""), b".".to_vec()),
        };
        let fd = self
            .root
            .open_at(bytes(parent), OFlags::PATH | OFlags::DIRECTORY)
            .with_context(|| format!("{}", rel.display()))?;
        Ok((fd, name))
    }
}

/// Resolves symlinks in `rel` as if `root` were `/`: absolute targets start again at the
/// root and `..` stops there, so nothing outside `root` is ever named. Returns the resolved
/// path relative to the root.
pub fn resolve_in_root(root: &Root, rel: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = rel.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::Normal(name)) => {
                let candidate = resolved.join(name);
                let link = root
                    .open_at(bytes(&candidate), OFlags::PATH | OFlags::NOFOLLOW)
                    .ok()
                    .filter(|fd| rustix::fs::fstat(fd).is_ok_and(|st| file_type(&st) == FileType::Symlink));
                let Some(link) = link else {
                    resolved = candidate;
                    continue;
                };
                hops += 1;
                if hops > 40 {
                    bail!("{}: too many levels of symbolic links", rel.display());
                }
                let target = rustix::fs::readlinkat(&link, c"", Vec::new())?;
                let target = PathBuf::from(os(target.as_bytes()));
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
            }
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            _ => {}
        }
    }
    Ok(resolved)
}

fn lstat(dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).with_context(|| format!("{}", rel.display()))
}

fn open_dir(dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty()).with_context(|| format!("opening {}", rel.display()))
}

/// A regular file, opened so that neither a symlink nor a FIFO swapped in meanwhile is used.
fn open_regular(dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
        .with_context(|| format!("opening {}", rel.display()))?;
    if file_type(&rustix::fs::fstat(&fd)?) != FileType::RegularFile {
        bail!("{}: not a regular file any more", rel.display());
    }
    Ok(fd)
}

/// The entries of a directory (not `.` and `..`), sorted by name, with their metadata.
fn children(dir: BorrowedFd<'_>, rel: &Path) -> Result<Vec<(Vec<u8>, Stat)>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).with_context(|| format!("listing {}", rel.display()))? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            let st = lstat(dir, &name, rel)?;
            out.push((name, st));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn mtime(st: &Stat) -> Timespec {
    Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    [dir, b"/", name].concat()
}

fn os(b: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn unescape(s: &str) -> String {
    s.replace('\\', "")
}

fn slash(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn applier(dir: &Path) -> Applier {
        use img::layer::apply::{Options, Owners, Whiteouts};
        Applier::new(dir, Options { whiteouts: Whiteouts::Delete, owners: Owners::Chown }).unwrap()
    }

    /// A build on another machine must find the same keys: the same files give the same
    /// digest on ext4 and on tmpfs, whose directory sizes differ.
    #[test]
    fn digests_do_not_depend_on_the_filesystem() {
        let shm = Path::new("/dev/shm");
        let dirs = [
            tempfile::tempdir().unwrap(),
            match shm.is_dir() {
                true => tempfile::tempdir_in(shm).unwrap(),
                false => tempfile::tempdir().unwrap(),
            },
        ];
        let digests: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let d = dir.path();
                fs::create_dir_all(d.join("tree/sub")).unwrap();
                fs::write(d.join("tree/sub/f"), "f").unwrap();
                if i == 0 {
                    // A directory that once held many entries keeps its size on ext4.
                    for n in 0..300 {
                        fs::write(d.join(format!("tree/{n:0>60}")), "").unwrap();
                    }
                    for n in 0..300 {
                        fs::remove_file(d.join(format!("tree/{n:0>60}"))).unwrap();
                    }
                }
                let ctx = BuildContext::open(d).unwrap();
                ctx.digest(&ctx.resolve("tree").unwrap()).unwrap()
            })
            .collect();
        assert_eq!(digests[0], digests[1]);
    }

    fn context() -> (tempfile::TempDir, BuildContext) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("src/sub")).unwrap();
        fs::write(d.join("src/a.rs"), "a").unwrap();
        fs::write(d.join("src/b.rs"), "b").unwrap();
        fs::write(d.join("src/sub/c.txt"), "c").unwrap();
        fs::write(d.join("README.md"), "r").unwrap();
        fs::write(d.join("secret.key"), "k").unwrap();
        fs::write(d.join(".dockerignore"), "*.key\n").unwrap();
        let ctx = BuildContext::open(d).unwrap();
        (dir, ctx)
    }

    #[test]
    fn resolves_like_docker() {
        let (_d, ctx) = context();
        let rels = |s: &str| ctx.resolve(s).unwrap().into_iter().map(|s| slash(&s.rel)).collect::<Vec<_>>();
        assert_eq!(rels("src/*.rs"), ["src/a.rs", "src/b.rs"]);
        assert_eq!(rels("../../src/a.rs"), ["src/a.rs"], "cannot leave the context");
        assert_eq!(rels("/README.md"), ["README.md"]);
        assert_eq!(rels("."), [""]);
        assert!(ctx.resolve("secret.key").is_err(), "ignored");
        assert!(ctx.resolve("nope").unwrap_err().to_string().contains("not found"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("usr/lib")).unwrap();
        fs::write(d.join("usr/lib/x"), "inside").unwrap();
        symlink("/usr/lib", d.join("lib")).unwrap();
        symlink("../../../../etc", d.join("up")).unwrap();
        let root = Root::open(d).unwrap();
        assert_eq!(resolve_in_root(&root, Path::new("lib/x")).unwrap(), PathBuf::from("usr/lib/x"));
        assert_eq!(resolve_in_root(&root, Path::new("up/passwd")).unwrap(), PathBuf::from("etc/passwd"));
        let ctx = BuildContext::rootfs(d).unwrap();
        let found = ctx.resolve("/lib/x").unwrap();
        assert_eq!(
            (found[0].rel.clone(), found[0].real.clone()),
            (PathBuf::from("lib/x"), PathBuf::from("usr/lib/x"))
        );
        assert!(ctx.resolve("/up/passwd").is_err(), "the host's /etc/passwd is not reachable");
        symlink("loop", d.join("loop")).unwrap();
        assert!(resolve_in_root(&root, Path::new("loop/x")).is_err());
    }

    #[test]
    fn stages_files_and_directories() {
        let (_d, ctx) = context();
        let staging = tempfile::tempdir().unwrap();
        let s = staging.path();
        let mut out = applier(s);
        ctx.stage(&ctx.resolve("src").unwrap(), "/app/", Attributes { uid: 1, gid: 2, mode: None }, &mut out)
            .unwrap();
        ctx.stage(&ctx.resolve("README.md").unwrap(), "/doc/readme", Attributes::default(), &mut out)
            .unwrap();
        ctx.stage(&ctx.resolve(".").unwrap(), "/all", Attributes::default(), &mut out).unwrap();
        out.finish().unwrap();
        assert_eq!(fs::read_to_string(s.join("app/sub/c.txt")).unwrap(), "c");
        assert_eq!(fs::metadata(s.join("app/a.rs")).unwrap().uid(), 1);
        assert_eq!(fs::read_to_string(s.join("doc/readme")).unwrap(), "r");
        assert!(s.join("all/src/a.rs").is_file());
        assert!(!s.join("all/secret.key").exists(), ".dockerignore applies to directory copies");
    }

    /// A symlink staged by an earlier source is never followed by a later one's writes, and
    /// special files are made as nodes, never opened.
    #[test]
    fn staging_stays_inside() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("canary"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("d1")).unwrap();
        std::fs::create_dir_all(d.join("d2/x")).unwrap();
        symlink(host.path(), d.join("d1/x")).unwrap();
        std::fs::write(d.join("d2/x/canary"), "context").unwrap();
        std::fs::write(d.join("d2/x/new"), "context").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("d2/fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let ctx = BuildContext::open(d).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let mut out = applier(staging.path());
        let mut sources = ctx.resolve("d1").unwrap();
        sources.extend(ctx.resolve("d2").unwrap());
        ctx.stage(&sources, "/dst/", Attributes { uid: 0, gid: 0, mode: Some(0o777) }, &mut out).unwrap();
        out.finish().unwrap();
        assert_eq!(std::fs::read_to_string(host.path().join("canary")).unwrap(), "host");
        assert!(!host.path().join("new").exists());
        assert_ne!(std::fs::metadata(host.path()).unwrap().mode() & 0o777, 0o777);
        assert_eq!(std::fs::read_to_string(staging.path().join("dst/x/new")).unwrap(), "context");
        let fifo = std::fs::symlink_metadata(staging.path().join("dst/fifo")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    }

    #[test]
    fn digest_changes_with_content_only() {
        let (d, ctx) = context();
        let first = ctx.digest(&ctx.resolve("src").unwrap()).unwrap();
        assert_eq!(first, ctx.digest(&ctx.resolve("src").unwrap()).unwrap());
        fs::write(d.path().join("secret.key"), "changed").unwrap();
        assert_eq!(first, ctx.digest(&ctx.resolve("src").unwrap()).unwrap());
        fs::write(d.path().join("src/a.rs"), "changed").unwrap();
        assert_ne!(first, ctx.digest(&ctx.resolve("src").unwrap()).unwrap());
    }
}
