//! Snapshots of directory trees, to compare what two unpackers made or to check a tree against
//! what a test expects: types, modes, owners, sizes, content hashes, link targets, hardlink
//! groups, xattrs and mtimes.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Size and sha256 of the content.
    File {
        size: u64,
        sha256: String,
    },
    Dir,
    Symlink(String),
    Fifo,
    Char(u64, u64),
    Block(u64, u64),
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For a file with several links: the first of its paths met (a walk in sorted order).
    pub link_group: Option<String>,
}

/// Paths relative to the root, non-UTF-8 bytes escaped (`\xff`); the root itself is not listed.
pub type Tree = BTreeMap<String, Node>;

/// A file node's kind for some content.
pub fn file(content: impl AsRef<[u8]>) -> Kind {
    let c = content.as_ref();
    Kind::File { size: c.len() as u64, sha256: img::digest::Digest::of(c).hex().to_string() }
}

/// Reads the whole tree under `root` without following symlinks.
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, "", &mut tree, &mut inodes);
    tree
}

fn walk(dir: &Path, prefix: &str, tree: &mut Tree, inodes: &mut BTreeMap<(u64, u64), String>) {
    let mut entries: Vec<_> =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).collect();
    entries.sort_by_key(|e| e.as_ref().map(|e| e.file_name()).ok());
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().as_bytes().escape_ascii().to_string();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let path = entry.path();
        let md = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ft = md.file_type();
        let rdev = (libc::major(md.rdev()) as u64, libc::minor(md.rdev()) as u64);
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&path).unwrap().as_os_str().as_bytes().escape_ascii().to_string())
        } else if ft.is_file() {
            file(fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char(rdev.0, rdev.1)
        } else if ft.is_block_device() {
            Kind::Block(rdev.0, rdev.1)
        } else {
            Kind::Socket
        };
        let link_group = if !ft.is_dir() && md.nlink() > 1 {
            Some(inodes.entry((md.dev(), md.ino())).or_insert_with(|| rel.clone()).clone())
        } else {
            None
        };
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            xattrs: xattrs(&path),
            link_group,
        };
        tree.insert(rel.clone(), node);
        if ft.is_dir() {
            walk(&path, &rel, tree, inodes);
        }
    }
}

/// Every xattr of a path (not following a symlink).
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in paths");
    let mut out = BTreeMap::new();
    // SAFETY: buffers are sized by the preceding query and the lengths passed match them.
    unsafe {
        let n = libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0);
        if n <= 0 {
            return out;
        }
        let mut names = vec![0u8; n as usize];
        let n = libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len());
        if n <= 0 {
            return out;
        }
        names.truncate(n as usize);
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let cname = CString::new(name).unwrap();
            let len = libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0);
            if len < 0 {
                continue;
            }
            let mut value = vec![0u8; len as usize];
            let len = libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len());
            if len < 0 {
                continue;
            }
            value.truncate(len as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

/// What to leave out when comparing two trees.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ignore {
    /// Directory mtimes (tools differ in when they set them).
    pub dir_mtimes: bool,
    /// All mtimes.
    pub mtimes: bool,
}

/// The differences between two trees, one line each (empty when they are equal).
pub fn diff(a: &Tree, b: &Tree, ignore: Ignore) -> Vec<String> {
    let mut out = Vec::new();
    for (path, x) in a {
        let Some(y) = b.get(path) else {
            out.push(format!("{path}: only in the first tree ({:?})", x.kind));
            continue;
        };
        let mut x = x.clone();
        let mut y = y.clone();
        if ignore.mtimes || (ignore.dir_mtimes && x.kind == Kind::Dir) {
            x.mtime = 0;
            y.mtime = 0;
        }
        if x != y {
            out.push(format!("{path}:\n  first:  {x:?}\n  second: {y:?}"));
        }
    }
    for (path, y) in b {
        if !a.contains_key(path) {
            out.push(format!("{path}: only in the second tree ({:?})", y.kind));
        }
    }
    out
}

/// The paths of a tree, for comparing against the list a test expects.
pub fn paths(tree: &Tree) -> Vec<&str> {
    tree.keys().map(String::as_str).collect()
}
