//! Cleaning `/`-separated paths relative to a root, lexically (nothing on disk is looked at):
//! a layer's entry names, a build context's sources and destinations, mount targets. `..` above
//! the root is either refused ([`clean`]: in a tar entry it is an attack) or stays at the root
//! ([`clean_clamped`]: as the kernel resolves a path in a chroot).

use anyhow::{Result, bail};

/// A tar path made relative to the root: `/`, `.` and empty components dropped, `..` applied.
/// A path that climbs above the root is refused.
pub fn clean(raw: &[u8]) -> Result<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    bail!("path {:?} leaves the root", show(raw));
                }
            }
            c => parts.push(c),
        }
    }
    if parts.iter().any(|p| p.contains(&0)) {
        bail!("path {:?} contains a NUL byte", show(raw));
    }
    Ok(parts.join(&b'/'))
}

/// A path as the kernel resolves it in a chroot: `..` at the root stays at the root.
pub fn clean_clamped(raw: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join(&b'/')
}

/// [`clean_clamped`] of a path given as text: a source or destination relative to the root,
/// `/`-joined, that nothing can make climb above the root.
pub fn clean_relative(path: &str) -> String {
    String::from_utf8_lossy(&clean_clamped(path.as_bytes())).into_owned()
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Whether `path` is `dir` or under it.
pub(crate) fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(clean(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(clean(b"a/../b").unwrap(), b"b");
        assert_eq!(clean(b"./").unwrap(), b"");
        assert!(clean(b"../x").is_err());
        assert!(clean(b"a/../../x").is_err());
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert!(is_under(b"a/b", b"a") && is_under(b"a", b"a") && !is_under(b"ab", b"a"));
        assert_eq!(clean_clamped(b"../../a/./b/.."), b"a");
        assert_eq!(clean_relative("/../x//y/"), "x/y");
    }
}
