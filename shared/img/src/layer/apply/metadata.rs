//! An entry's metadata: read from its tar headers (PAX times, xattrs in SCHILY and bsdtar
//! form) and set on what was written (owner, or umoci's `user.rootlesscontainers` record of it
//! when not root; xattrs; mode; times).

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::{Applier, Meta, Owners, show};

/// The xattr umoci uses to remember owners in rootless unpacks.
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

/// Where an entry's metadata is set: its open fd, or by name in its parent directory.
pub(super) enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

impl Applier {
    pub(super) fn meta<R: Read>(&self, e: &mut tar::Entry<R>) -> Result<Meta> {
        let h = e.header();
        let mut meta = Meta {
            uid: h.uid()?,
            gid: h.gid()?,
            mode: h.mode()? & 0o7777,
            mtime: Timespec { tv_sec: h.mtime()? as i64, tv_nsec: 0 },
            xattrs: Vec::new(),
        };
        // bsdtar's form of an xattr (name percent-encoded, value base64), taken when there is
        // no SCHILY record of the same name (bsdtar writes both).
        let mut libarchive = Vec::new();
        if let Some(pax) = e.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    meta.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                    let value = base64::engine::general_purpose::STANDARD.decode(ext.value_bytes()).map_err(
                        |_| anyhow!("the LIBARCHIVE.xattr record of {} is not base64", show(name)),
                    )?;
                    libarchive.push((percent_decode(name), value));
                } else if key == b"mtime"
                    && let Some(t) = parse_pax_time(ext.value_bytes())
                {
                    meta.mtime = t;
                }
            }
        }
        for (name, value) in libarchive {
            if !meta.xattrs.iter().any(|(n, _)| *n == name) {
                meta.xattrs.push((name, value));
            }
        }
        Ok(meta)
    }

    /// Owner, xattrs, mode (unless a directory: see `finish`) and time.
    pub(super) fn set_metadata(&mut self, target: Target<'_>, meta: &Meta, chmod: bool) -> Result<()> {
        self.set_owner_and_xattrs(reborrow(&target), meta)?;
        let mode = Mode::from_raw_mode(meta.mode);
        let t = times(meta.mtime);
        match target {
            Target::Fd(fd) => {
                if chmod {
                    rustix::fs::fchmod(fd, mode).context("chmod")?;
                }
                rustix::fs::futimens(fd, &t).context("setting times")?;
            }
            Target::At(dir, name) => {
                if chmod {
                    // Only FIFOs and devices we just made get here: not symlinks.
                    rustix::fs::chmodat(dir, name, mode, AtFlags::empty()).context("chmod")?;
                }
                rustix::fs::utimensat(dir, name, &t, AtFlags::SYMLINK_NOFOLLOW).context("setting times")?;
            }
        }
        Ok(())
    }

    pub(super) fn set_owner_and_xattrs(&mut self, target: Target<'_>, meta: &Meta) -> Result<()> {
        let is_symlink = match &target {
            Target::At(dir, name) => rustix::fs::statat(*dir, *name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink),
            Target::Fd(_) => false,
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        match self.opts.owners {
            Owners::Chown => {
                let uid = Some(Uid::from_raw(u32::try_from(meta.uid).context("uid out of range")?));
                let gid = Some(Gid::from_raw(u32::try_from(meta.gid).context("gid out of range")?));
                match &target {
                    Target::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
                    Target::At(dir, name) => {
                        rustix::fs::chownat(dir, *name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    }
                }
                .context("chown")?;
            }
            Owners::Rootless => {
                // Linux allows no user.* xattrs on symlinks; umoci skips them too.
                if (meta.uid, meta.gid) != (0, 0) && !is_symlink {
                    xattrs.push((ROOTLESS_XATTR.as_bytes().to_vec(), rootless_owner(meta.uid, meta.gid)));
                }
            }
        }
        for (k, v) in meta.xattrs.iter().chain(&xattrs) {
            let r = match &target {
                Target::Fd(fd) => rustix::fs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()),
                Target::At(dir, name) => {
                    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                    p.extend_from_slice(name);
                    rustix::fs::lsetxattr(p, k.as_slice(), v, XattrFlags::empty())
                }
            };
            match r {
                Ok(()) => {}
                Err(e @ (Errno::PERM | Errno::NOTSUP | Errno::ACCESS)) => {
                    let k = String::from_utf8_lossy(k).into_owned();
                    self.warn(&format!("xattr {k}"), &format!("cannot set xattr {k} ({e}); skipping it"));
                }
                Err(e) => return Err(e).with_context(|| format!("xattr {}", show(k))),
            }
        }
        Ok(())
    }
}

fn reborrow<'a>(t: &'a Target<'_>) -> Target<'a> {
    match t {
        Target::Fd(fd) => Target::Fd(*fd),
        Target::At(d, n) => Target::At(*d, n),
    }
}

pub(super) fn times(t: Timespec) -> Timestamps {
    Timestamps { last_access: t, last_modification: t }
}

/// PAX `mtime` (`1700000000.123456789`).
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(Timespec { tv_sec, tv_nsec })
}

/// umoci's `user.rootlesscontainers` value: a protobuf message `{uint32 uid = 1; uint32 gid = 2;}`
/// where 0 (which proto3 cannot tell from unset) is written as the "noop" id 0xffffffff, and
/// root:root is no xattr at all.
pub fn rootless_owner(uid: u64, gid: u64) -> Vec<u8> {
    const NOOP_ID: u64 = 0xffff_ffff;
    let mut out = Vec::new();
    if (uid, gid) == (0, 0) {
        return out;
    }
    for (tag, v) in [(0x08u8, uid), (0x10u8, gid)] {
        out.push(tag);
        let mut v = if v == 0 { NOOP_ID } else { v };
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

/// `%XX` escapes decoded (libarchive's encoding of xattr names in PAX keys).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (s[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rootless_owners_as_umoci_does() {
        assert_eq!(rootless_owner(0, 0), b"");
        assert_eq!(rootless_owner(1000, 0), [0x08, 0xe8, 0x07, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(rootless_owner(0, 42), [0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 42]);
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode(b"user.a%3Db%25"), b"user.a=b%");
        assert_eq!(percent_decode(b"user.%zz%4"), b"user.%zz%4");
    }

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        assert_eq!(parse_pax_time(b"12").unwrap().tv_sec, 12);
    }
}
