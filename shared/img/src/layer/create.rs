//! A layer tar from a directory of changes: the upper directory of an overlay mount after a
//! RUN step, or a staging directory a COPY filled.
//!
//! The output is deterministic: entries sorted by path, no atime/ctime, owners and modes as on
//! disk, hardlinks as links to the first path, mtimes clamped to `SOURCE_DATE_EPOCH` when one is
//! given. Overlay whiteouts (a 0/0 character device) become `.wh.NAME` entries and an opaque
//! directory (`trusted.overlay.opaque` or `user.overlay.opaque` = `y`) gets `.wh..wh..opq`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::digest::{Algorithm, Digest, Expected, Hasher};
use crate::document::Descriptor;
use crate::layout::Layout;
use crate::media_type;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Clamp every mtime to at most this (seconds since the epoch).
    pub clamp_mtime: Option<u64>,
}

/// Writes the tar of `dir`'s contents (not `dir` itself) to `out`.
pub fn write_layer(dir: &Path, out: impl Write, options: &Options) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links = HashMap::new();
    write_dir_contents(&mut builder, dir, Path::new(""), options, &mut links)?;
    builder.into_inner().context("finishing the layer tar")?.flush()?;
    Ok(())
}

/// Depth first with children sorted by name bytes, so a directory comes before its contents.
/// How a stored layer is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            _ => anyhow::bail!("unknown compression {s:?}: use gzip or zstd"),
        }
    }
}

/// A stored layer: the blob's descriptor and the digest of the uncompressed tar.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Writes `dir` as a compressed layer blob into the layout in one pass, hashing the tar (the
/// diff_id) and the compressed bytes (the blob digest) as they stream.
pub fn store_layer(
    layout: &Layout,
    dir: &Path,
    compression: Compression,
    options: &Options,
) -> Result<StoredLayer> {
    let blob = layout.blob_writer(Expected::default())?;
    let (blob, diff_id) = match compression {
        Compression::Gzip => {
            // A fixed gzip header (no name, mtime 0) keeps the bytes reproducible.
            let gz = flate2::GzBuilder::new().write(blob, flate2::Compression::new(6));
            let mut tee = DiffIdWriter::new(gz);
            write_layer(dir, &mut tee, options)?;
            let (gz, diff_id) = tee.finish();
            (gz.finish().context("compressing the layer")?, diff_id)
        }
        Compression::Zstd => {
            let enc = zstd::stream::write::Encoder::new(blob, 3).context("starting zstd")?;
            let mut tee = DiffIdWriter::new(enc);
            write_layer(dir, &mut tee, options)?;
            let (enc, diff_id) = tee.finish();
            (enc.finish().context("compressing the layer")?, diff_id)
        }
    };
    let (digest, size) = blob.commit()?;
    let media = match compression {
        Compression::Gzip => media_type::OCI_LAYER_GZIP,
        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
    };
    Ok(StoredLayer { descriptor: Descriptor::new(media, digest, size), diff_id })
}

/// Passes bytes through while hashing them.
struct DiffIdWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> DiffIdWriter<W> {
    fn new(inner: W) -> Self {
        DiffIdWriter { inner, hasher: Hasher::new(Algorithm::Sha256) }
    }

    fn finish(self) -> (W, Digest) {
        (self.inner, self.hasher.finish())
    }
}

impl<W: Write> Write for DiffIdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_dir_contents<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    options: &Options,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let mut children: Vec<PathBuf> = fs::read_dir(root.join(rel))
        .with_context(|| format!("reading {}", root.join(rel).display()))?
        .map(|e| e.map(|e| rel.join(e.file_name())))
        .collect::<io::Result<_>>()?;
    children.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    for child in &children {
        let meta = fs::symlink_metadata(root.join(child))?;
        append(builder, root, child, &meta, options, links)?;
        if meta.is_dir() {
            write_dir_contents(builder, root, child, options, links)?;
        }
    }
    Ok(())
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    meta: &fs::Metadata,
    options: &Options,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let full = root.join(rel);
    let ft = meta.file_type();
    let name = rel.file_name().unwrap_or(OsStr::new(""));

    // An overlay whiteout: the path was deleted.
    if ft.is_char_device() && meta.rdev() == 0 {
        let mut wh_name = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        wh_name.push(OsStr::from_bytes(&[b".wh.".as_slice(), name.as_bytes()].concat()));
        let mut header = base_header(meta, options);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        builder.append_data(&mut header, &wh_name, io::empty())?;
        return Ok(());
    }

    let mut header = base_header(meta, options);
    let pax = xattrs(&full)?;
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    if ft.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        // Directory names end in `/`, as docker and BuildKit write them.
        let mut name = rel.as_os_str().as_bytes().to_vec();
        name.push(b'/');
        builder.append_data(&mut header, OsStr::from_bytes(&name), io::empty())?;
        if is_opaque(&full) {
            let mut opq = base_header(meta, options);
            opq.set_entry_type(tar::EntryType::Regular);
            opq.set_size(0);
            opq.set_mode(0o644);
            builder.append_data(&mut opq, rel.join(".wh..wh..opq"), io::empty())?;
        }
    } else if ft.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        let target = fs::read_link(&full)?;
        builder.append_link(&mut header, rel, target)?;
    } else if ft.is_file() {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, rel, first)?;
                return Ok(());
            }
            links.insert(key, rel.to_path_buf());
        }
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(&full).with_context(|| format!("reading {}", full.display()))?;
        builder.append_data(&mut header, rel, file)?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        header.set_entry_type(if ft.is_fifo() {
            tar::EntryType::Fifo
        } else if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        });
        header.set_size(0);
        if !ft.is_fifo() {
            let dev = meta.rdev();
            header.set_device_major(libc::major(dev))?;
            header.set_device_minor(libc::minor(dev))?;
        }
        builder.append_data(&mut header, rel, io::empty())?;
    }
    // Sockets are not part of images.
    Ok(())
}

fn base_header(meta: &fs::Metadata, options: &Options) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid() as u64);
    header.set_gid(meta.gid() as u64);
    let mtime = meta.mtime().max(0) as u64;
    header.set_mtime(options.clamp_mtime.map_or(mtime, |c| mtime.min(c)));
    header
}

/// Extended attributes worth keeping in a layer, as PAX records.
fn xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in list_xattrs(path)? {
        let keep =
            name.starts_with("user.") && !name.starts_with("user.overlay.") || name == "security.capability";
        if keep && let Some(value) = get_xattr(path, &name)? {
            out.push((format!("SCHILY.xattr.{name}"), value));
        }
    }
    out.sort();
    Ok(out)
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| get_xattr(path, n).ok().flatten().is_some_and(|v| v == b"y"))
}

/// Calls `fill` with a buffer that grows until the value fits (ERANGE means too small).
/// `Ok(None)` when the attribute or xattrs as a whole are not there.
fn read_growing(mut fill: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match fill(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn list_xattrs(path: &Path) -> Result<Vec<String>> {
    let names = read_growing(|buf| rustix::fs::llistxattr(path, buf))
        .with_context(|| format!("listing xattrs of {}", path.display()))?
        .unwrap_or_default();
    Ok(names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    read_growing(|buf| rustix::fs::lgetxattr(path, name, buf))
        .with_context(|| format!("reading xattr {name} of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, String)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link =
                    e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), e.header().entry_type(), link)
            })
            .collect()
    }

    #[test]
    fn sorted_deterministic_with_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("b/sub")).unwrap();
        fs::write(d.join("b/sub/f"), "x").unwrap();
        fs::write(d.join("a"), "hello").unwrap();
        fs::set_permissions(d.join("a"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(d.join("a"), d.join("c")).unwrap();
        symlink("/etc/passwd", d.join("l")).unwrap();

        let mut one = Vec::new();
        write_layer(d, &mut one, &Options { clamp_mtime: Some(1000) }).unwrap();
        let mut two = Vec::new();
        write_layer(d, &mut two, &Options { clamp_mtime: Some(1000) }).unwrap();
        assert_eq!(one, two, "the same tree gives the same bytes");

        use tar::EntryType::*;
        let got = entries(&one);
        let want = [
            ("a", Regular, ""),
            ("b/", Directory, ""),
            ("b/sub/", Directory, ""),
            ("b/sub/f", Regular, ""),
            ("c", Link, "a"),
            ("l", Symlink, "/etc/passwd"),
        ];
        let got_ref: Vec<(&str, tar::EntryType, &str)> =
            got.iter().map(|(p, t, l)| (p.as_str(), *t, l.as_str())).collect();
        assert_eq!(got_ref, want);
        let mut archive = tar::Archive::new(one.as_slice());
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            assert!(e.header().mtime().unwrap() <= 1000);
            if e.path().unwrap().to_str() == Some("a") {
                assert_eq!(e.header().mode().unwrap(), 0o4755);
            }
        }
    }

    #[test]
    fn overlay_whiteouts_become_oci_whiteouts() {
        if !nix_is_root() {
            return; // mknod and trusted.* xattrs need root; the suite runs as root in CI
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("opq")).unwrap();
        fs::write(d.join("opq/new"), "n").unwrap();
        let p = c_path(&d.join("opq")).unwrap();
        // SAFETY: valid C strings and a 1-byte value.
        let rc = unsafe {
            libc::lsetxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0)
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        let gone = c_path(&d.join("gone")).unwrap();
        // SAFETY: a valid C string; a 0/0 char device is an overlay whiteout.
        let rc = unsafe { libc::mknod(gone.as_ptr(), libc::S_IFCHR | 0o644, 0) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());

        let mut out = Vec::new();
        write_layer(d, &mut out, &Options::default()).unwrap();
        let names: Vec<String> = entries(&out).into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(names, [".wh.gone", "opq/", "opq/.wh..wh..opq", "opq/new"]);
    }

    #[test]
    fn stores_a_layer_whose_digests_check_out() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "content").unwrap();
        let store = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(store.path()).unwrap();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let stored =
                store_layer(&layout, dir.path(), compression, &Options { clamp_mtime: Some(0) }).unwrap();
            let blob = layout.read_blob(&stored.descriptor.digest).unwrap();
            assert_eq!(blob.len() as u64, stored.descriptor.size);
            let tar = crate::layer::compression::decompress(blob.as_slice()).and_then(|mut r| {
                let mut v = Vec::new();
                io::Read::read_to_end(&mut r, &mut v).map(|_| v)
            });
            assert_eq!(Digest::of(&tar.unwrap()), stored.diff_id);
            let again =
                store_layer(&layout, dir.path(), compression, &Options { clamp_mtime: Some(0) }).unwrap();
            assert_eq!(again, stored, "reproducible");
        }
    }

    fn c_path(path: &Path) -> Result<std::ffi::CString> {
        std::ffi::CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")
    }

    fn nix_is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
