//! The members of an archive file (a tar), found by name without extracting anything: each
//! regular file is an offset and a size in the file, read in place with positional reads.
//!
//! An archive is untrusted. Member names are cleaned lexically and refused when absolute or
//! when a `..` would leave the archive; symlinks and hardlinks between members are resolved by
//! name inside the archive (never on the host), a few hops at most. Header data (PAX records,
//! GNU long names, which the `tar` crate reads into memory) is capped per entry, and so is the
//! number of members.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};

use crate::digest::{Algorithm, Digest, Hasher};

/// The most header data (PAX records, GNU long names) one entry may have.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// The most members an archive may have: image archives have a few per layer.
const MAX_MEMBERS: usize = 100_000;
/// The most symlinks followed to find one member.
const MAX_LINK_HOPS: usize = 16;

#[derive(Clone, Debug)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hardlink, its target already made a member name.
    Link(String),
}

/// A regular file of the archive: where its bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

/// The table of an archive's members, over the archive's file.
pub struct Members {
    file: File,
    members: BTreeMap<String, Member>,
}

impl Members {
    /// Reads the table of `file` (a tar, read from its start).
    pub fn read(file: File) -> Result<Members> {
        (&file).seek(SeekFrom::Start(0)).context("reading the archive")?;
        let budget = Rc::new(Cell::new(None));
        let mut archive = tar::Archive::new(Guarded { inner: &file, budget: budget.clone() });
        let mut members = BTreeMap::new();
        let mut entries = archive.entries_with_seek().context("reading the archive")?;
        loop {
            budget.set(Some(MAX_HEADER_BYTES));
            let next = entries.next();
            budget.set(None);
            let Some(entry) = next else { break };
            let entry = entry.context("reading the archive")?;
            let raw = entry.path_bytes();
            let Some(name) = clean(&raw)? else { continue };
            let kind = entry.header().entry_type();
            let member = if kind.is_file() || kind == tar::EntryType::Continuous {
                Member::File { offset: entry.raw_file_position(), size: entry.size() }
            } else if kind.is_symlink() {
                let target =
                    entry.link_name_bytes().ok_or_else(|| anyhow!("member {name:?}: no link target"))?;
                Member::Link(resolve_symlink(&name, &target)?)
            } else if kind.is_hard_link() {
                let target =
                    entry.link_name_bytes().ok_or_else(|| anyhow!("member {name:?}: no link target"))?;
                let target = clean(&target)?.ok_or_else(|| anyhow!("member {name:?}: links to the root"))?;
                Member::Link(target)
            } else if kind.is_gnu_sparse() {
                bail!("member {name:?}: sparse files are not supported in image archives");
            } else {
                continue; // directories, devices, FIFOs: nothing an image archive reads
            };
            if members.len() >= MAX_MEMBERS {
                bail!("the archive has more than {MAX_MEMBERS} members");
            }
            if members.insert(name.clone(), member).is_some() {
                bail!("member {name:?} appears twice in the archive");
            }
        }
        Ok(Members { file, members })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Where the regular file `name` is, through links.
    pub fn find(&self, name: &str) -> Result<Span> {
        let mut current = clean(name.as_bytes())?.unwrap_or_default();
        for _ in 0..=MAX_LINK_HOPS {
            match self.members.get(&current) {
                Some(Member::File { offset, size }) => return Ok(Span { offset: *offset, size: *size }),
                Some(Member::Link(target)) => current = target.clone(),
                None => bail!("{name} is missing from the archive"),
            }
        }
        bail!("{name}: more than {MAX_LINK_HOPS} links in a row in the archive")
    }

    /// A reader of a member's bytes.
    pub fn open(&self, span: Span) -> SpanReader<'_> {
        SpanReader { file: &self.file, pos: span.offset, left: span.size }
    }

    /// Reads a small member whole, refusing one over `cap` bytes before reading it.
    pub fn read_small(&self, name: &str, cap: u64) -> Result<Vec<u8>> {
        let span = self.find(name)?;
        if span.size > cap {
            bail!("{name} in the archive is {} bytes, over the {} KiB cap", span.size, cap >> 10);
        }
        let mut out = Vec::with_capacity(span.size as usize);
        self.open(span).read_to_end(&mut out).with_context(|| format!("reading {name} from the archive"))?;
        Ok(out)
    }

    /// The digest of a member's bytes.
    pub fn hash(&self, span: Span, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = Hasher::new(algorithm);
        let mut reader = self.open(span);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf).context("reading the archive")?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }
}

/// Reads a span of the archive file with positional reads (so readers share no cursor).
pub struct SpanReader<'a> {
    file: &'a File,
    pos: u64,
    left: u64,
}

impl Read for SpanReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive is truncated"));
        }
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A member name made relative and clean (`./a//b` → `a/b`); `None` for the root itself.
/// Absolute names and names that climb out with `..` are refused.
fn clean(raw: &[u8]) -> Result<Option<String>> {
    let text = std::str::from_utf8(raw).map_err(|_| anyhow!("member name {raw:?} is not UTF-8"))?;
    if text.starts_with('/') {
        bail!("member {text:?} has an absolute name");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("member {text:?} climbs out of the archive (path traversal)"),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The member a symlink at `name` pointing at `target` names, resolved lexically.
fn resolve_symlink(name: &str, target: &[u8]) -> Result<String> {
    let text =
        std::str::from_utf8(target).map_err(|_| anyhow!("member {name:?}: link target is not UTF-8"))?;
    if text.starts_with('/') {
        bail!("member {name:?} links outside the archive ({text:?})");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    bail!("member {name:?} links outside the archive ({text:?})");
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The archive file, refusing to read more than the budget while the budget is set (that is,
/// while the `tar` crate reads one entry's headers).
struct Guarded<'a> {
    inner: &'a File,
    budget: Rc<Cell<Option<u64>>>,
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = match self.budget.get() {
            None => buf.len(),
            Some(0) => {
                return Err(io::Error::other(format!(
                    "an entry's headers exceed {} KiB",
                    MAX_HEADER_BYTES >> 10
                )));
            }
            Some(b) => buf.len().min(b.min(usize::MAX as u64) as usize),
        };
        let n = self.inner.read(&mut buf[..limit])?;
        if let Some(b) = self.budget.get() {
            self.budget.set(Some(b - n as u64));
        }
        Ok(n)
    }
}

impl Seek for Guarded<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_traversal_refused() {
        assert_eq!(clean(b"./a//b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(clean(b"./").unwrap(), None);
        assert!(clean(b"../x").is_err());
        assert!(clean(b"a/../../x").is_err());
        assert!(clean(b"/etc/passwd").is_err());
        assert_eq!(resolve_symlink("abc/layer.tar", b"../def.tar").unwrap(), "def.tar");
        assert!(resolve_symlink("abc/layer.tar", b"../../x").is_err());
        assert!(resolve_symlink("a", b"/etc/shadow").is_err());
    }
}
