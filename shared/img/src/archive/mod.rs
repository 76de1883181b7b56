//! Image archives as transports, named as skopeo names them: `docker-archive:PATH[:REF]` (what
//! `docker save` and `podman save` write) and `oci-archive:PATH[:REF]` (a tar of an OCI image
//! layout). `-` as PATH is stdin or stdout.
//!
//! Importing ([`import`]): the archive is read in place when it is a regular file, else (stdin,
//! a pipe, a compressed archive) spooled to an anonymous temp file in the layout's `.img/tmp`,
//! up to a size cap: a docker archive's `manifest.json` may come after its layers. Nothing is
//! extracted by path: members are found by name in a table of offsets ([`members`]). Every
//! blob of every image chosen is checked against its digest and size, and every layer's
//! uncompressed content against the config's diff_id, before the first blob is stored; only
//! then are blobs stored (verified again while written) and the refs written, all in one
//! update of `index.json`. So a bad archive changes nothing.
//!
//! Exporting ([`export`]): an oci-archive holds the image's blobs as they are (its digest is
//! kept); a docker-archive holds the config and uncompressed layers and no manifest, so the
//! image's digest is not kept (its config digest, docker's image ID, is). A file is written
//! beside its destination and renamed into place when whole.

pub mod docker;
pub mod members;
pub mod oci;

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::digest::{Algorithm, Digest, Expected, Hasher};
use crate::document::Descriptor;
use crate::layer::compression::{self, Compression};
use crate::layout::Layout;
use crate::platform::Platform;
use crate::reference::Reference;
use members::{Members, Span};

/// The largest archive spooled from a pipe by default (`--max-size`).
pub const DEFAULT_MAX_SPOOL: u64 = 64 << 30;

/// Which archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

impl Format {
    pub fn transport(self) -> &'static str {
        match self {
            Format::Docker => "docker-archive",
            Format::Oci => "oci-archive",
        }
    }
}

/// `docker-archive:PATH[:REF]` or `oci-archive:PATH[:REF]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveRef {
    pub format: Format,
    /// `None` for `-`: stdin or stdout.
    pub path: Option<PathBuf>,
    /// Which image of the archive (a name, or `@N` for the Nth), or the name to give it.
    pub reference: Option<String>,
}

impl ArchiveRef {
    /// Parses an archive transport; `None` if `text` names none (a registry reference).
    /// The path ends at the first `:` after the transport, as skopeo reads it.
    pub fn parse(text: &str) -> Option<Result<ArchiveRef>> {
        let (format, rest) = if let Some(rest) = text.strip_prefix("docker-archive:") {
            (Format::Docker, rest)
        } else if let Some(rest) = text.strip_prefix("oci-archive:") {
            (Format::Oci, rest)
        } else {
            return None;
        };
        let (path, reference) = match rest.split_once(':') {
            Some((p, r)) => (p, Some(r.to_string())),
            None => (rest, None),
        };
        if path.is_empty() {
            return Some(Err(anyhow!("{text}: no path (use - for stdin or stdout)")));
        }
        if reference.as_deref() == Some("") {
            return Some(Err(anyhow!("{text}: empty reference after the path")));
        }
        let path = (path != "-").then(|| PathBuf::from(path));
        Some(Ok(ArchiveRef { format, path, reference }))
    }
}

impl fmt::Display for ArchiveRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.as_deref().map_or("-".into(), |p| p.display().to_string());
        write!(f, "{}:{path}", self.format.transport())?;
        if let Some(r) = &self.reference {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

/// One name written by an import (or an unnamed image).
#[derive(Clone, Debug)]
pub struct Imported {
    pub name: Option<String>,
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
}

/// A blob to store: where its bytes are, already verified.
#[derive(Clone, Debug)]
pub(crate) enum BlobSource {
    Member(Span),
    Bytes(Vec<u8>),
}

/// What an import will write: blobs, then entries of `index.json`.
#[derive(Default)]
pub(crate) struct Plan {
    pub blobs: Vec<(Digest, u64, BlobSource)>,
    pub images: Vec<Imported>,
}

impl Plan {
    pub fn add_blob(&mut self, digest: &Digest, size: u64, source: BlobSource) {
        if !self.blobs.iter().any(|(d, _, _)| d == digest) {
            self.blobs.push((digest.clone(), size, source));
        }
    }
}

/// Options of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The largest archive spooled from a pipe, or decompressed.
    pub max_spool: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { max_spool: DEFAULT_MAX_SPOOL }
    }
}

/// Imports the images of an archive into the layout (all of them, or the one its reference
/// names) and returns what was named. Nothing is written unless every image checks out.
pub fn import(layout: &Layout, archive: &ArchiveRef, options: &ImportOptions) -> Result<Vec<Imported>> {
    let _writing = layout.lock_for_writing()?;
    let file = open_archive(layout, archive.path.as_deref(), options.max_spool)?;
    let members = Members::read(file)?;
    let selector = archive.reference.as_deref();
    let plan = match archive.format {
        Format::Oci => oci::plan(&members, selector, None)?,
        Format::Docker => docker::plan(&members, selector)?,
    };
    if plan.images.is_empty() {
        bail!("the archive holds no image");
    }
    for (digest, size, source) in &plan.blobs {
        if layout.has_blob(digest) {
            continue;
        }
        let expected = Expected::new(digest, *size);
        match source {
            BlobSource::Member(span) => layout.put_blob(members.open(*span), expected),
            BlobSource::Bytes(bytes) => layout.put_blob(bytes.as_slice(), expected),
        }
        .with_context(|| format!("storing blob {digest}"))?;
    }
    layout.update_index(|index| {
        for image in &plan.images {
            match &image.name {
                Some(name) => index.set_ref(name, &image.descriptor),
                None => index.add_unnamed(&image.descriptor),
            }
        }
        Ok(())
    })?;
    Ok(plan.images)
}

/// The archive as a file that can be read at any offset: a regular file as it is; stdin, a
/// pipe or a compressed archive spooled (decompressed) to an anonymous file in `.img/tmp`.
fn open_archive(layout: &Layout, path: Option<&Path>, max: u64) -> Result<File> {
    let input: Box<dyn Read + Send> = match path {
        None => Box::new(io::stdin()),
        Some(p) => {
            let mut file = File::open(p).with_context(|| format!("{}", p.display()))?;
            let meta = file.metadata().with_context(|| format!("{}", p.display()))?;
            if meta.is_dir() {
                bail!("{}: is a directory, not an archive", p.display());
            }
            if meta.is_file() {
                let mut head = [0u8; 4];
                let n = read_head(&mut file, &mut head)?;
                if Compression::sniff(&head[..n]) == Compression::None {
                    return Ok(file);
                }
                file = File::open(p).with_context(|| format!("{}", p.display()))?;
            }
            Box::new(file)
        }
    };
    let tmp = layout.private_dir("tmp")?;
    let mut spool =
        tempfile::tempfile_in(&tmp).with_context(|| format!("a temp file in {}", tmp.display()))?;
    let mut reader = compression::decompress(BufReader::new(input)).context("reading the archive")?;
    let copied = io::copy(&mut (&mut reader).take(max + 1), &mut spool).context("reading the archive")?;
    if copied > max {
        bail!("the archive is larger than {} MiB (raise --max-size)", max >> 20);
    }
    Ok(spool)
}

fn read_head(file: &mut File, head: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).context("reading the archive")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The digest of a layer's uncompressed content (the diff_id it must have), read from the
/// archive.
pub(crate) fn diff_id_of(members: &Members, span: Span, algorithm: Algorithm) -> Result<Digest> {
    let mut reader = BufReader::new(members.open(span));
    let compressed = Compression::sniff(reader.fill_buf().context("reading the archive")?);
    if compressed == Compression::None {
        return members.hash(span, algorithm);
    }
    let mut stream = compression::decompress(reader).context("decompressing a layer")?;
    hash_stream(&mut stream, algorithm).map(|(d, _)| d).context("decompressing a layer")
}

/// The digest and length of a stream, read to its end.
pub(crate) fn hash_stream(reader: &mut dyn Read, algorithm: Algorithm) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// A stored name for a name found in an archive: a reference in its full normalised form; a
/// bare tag (as umoci and docker write in `org.opencontainers.image.ref.name`) as it is.
pub(crate) fn stored_name(name: &str) -> Option<String> {
    if crate::layout::ref_names::is_bare_tag(name) {
        return Some(name.to_string());
    }
    name.parse::<Reference>().ok().map(|r| r.to_string())
}

/// Whether a name found in an archive is what the user asked for.
pub(crate) fn name_matches(stored: &str, wanted: &str) -> bool {
    stored == wanted
        || match (stored.parse::<Reference>(), wanted.parse::<Reference>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// `@N`: the Nth image of the archive, as skopeo spells it.
pub(crate) fn position(selector: &str) -> Option<Result<usize>> {
    let n = selector.strip_prefix('@')?;
    Some(n.parse::<usize>().map_err(|_| anyhow!("{selector}: expected @N, a position in the archive")))
}

// ---- export ----

/// Where an export goes: a file written beside its destination and renamed into place, or
/// stdout.
pub(crate) struct Output {
    writer: Box<dyn Write>,
    temp: Option<(tempfile::NamedTempFile, PathBuf)>,
}

impl Output {
    fn new(path: Option<&Path>) -> Result<Output> {
        match path {
            None => {
                if io::IsTerminal::is_terminal(&io::stdout()) {
                    bail!("refusing to write an archive to a terminal: redirect stdout");
                }
                Ok(Output {
                    writer: Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout())),
                    temp: None,
                })
            }
            Some(p) => {
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let temp = tempfile::Builder::new()
                    .prefix(".img-archive-")
                    .tempfile_in(&dir)
                    .with_context(|| format!("creating a temp file in {}", dir.display()))?;
                let file = temp.reopen()?;
                Ok(Output {
                    writer: Box::new(io::BufWriter::with_capacity(1 << 20, file)),
                    temp: Some((temp, p.to_path_buf())),
                })
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        self.writer.flush().context("writing the archive")?;
        drop(self.writer);
        if let Some((temp, path)) = self.temp {
            temp.as_file().sync_all().context("writing the archive")?;
            let mut perm = temp.as_file().metadata()?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
            temp.as_file().set_permissions(perm)?;
            temp.persist(&path).map_err(|e| anyhow!("{}: {}", path.display(), e.error))?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The root the archive's image came from (the manifest or index).
    pub descriptor: Descriptor,
    /// Whether the image's digest is kept in the archive (oci-archive) or not (docker-archive).
    pub digest_kept: bool,
    /// For docker-archive, the config's digest (docker's image ID).
    pub config: Option<Digest>,
}

/// Exports the image `root` (an `index.json` entry of the layout) into an archive, naming it
/// `name` in the archive (if any).
pub fn export(
    layout: &Layout,
    root: &Descriptor,
    name: Option<&str>,
    archive: &ArchiveRef,
) -> Result<Exported> {
    // Held so garbage collection cannot remove a blob while it is copied.
    let _reading = layout.lock_for_writing().ok();
    let mut out = Output::new(archive.path.as_deref())?;
    let exported = {
        let mut builder = tar::Builder::new(&mut out);
        let exported = match archive.format {
            Format::Oci => oci::write(layout, root, name, &mut builder)?,
            Format::Docker => docker::write(layout, root, name, &mut builder)?,
        };
        builder.finish().context("writing the archive")?;
        exported
    };
    out.finish()?;
    Ok(exported)
}

/// A tar header for a member written by an export: a regular file, root-owned, time zero.
pub(crate) fn file_header(name: &str, size: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).with_context(|| format!("archive member {name}"))?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}

pub(crate) fn dir_header(name: &str) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).with_context(|| format!("archive member {name}"))?;
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}

/// Appends a blob of the layout, checked against its digest and size while it is copied.
pub(crate) fn append_blob(
    builder: &mut tar::Builder<impl Write>,
    layout: &Layout,
    name: &str,
    desc: &Descriptor,
) -> Result<()> {
    let file = layout.open_blob(&desc.digest)?;
    let actual = file.metadata()?.len();
    if actual != desc.size {
        bail!("blob {} is {actual} bytes, but its descriptor says {}", desc.digest, desc.size);
    }
    let mut reader = Checked::new(file, desc.digest.clone(), desc.size);
    builder
        .append(&file_header(name, desc.size)?, &mut reader)
        .with_context(|| format!("blob {}", desc.digest))?;
    reader.check().with_context(|| format!("blob {}", desc.digest))
}

/// A reader of exactly `size` bytes that must hash to `digest` (checked by [`Checked::check`]
/// once read; a short stream fails the copy itself).
pub(crate) struct Checked<R> {
    inner: R,
    hasher: Option<Hasher>,
    digest: Digest,
    left: u64,
}

impl<R: Read> Checked<R> {
    pub fn new(inner: R, digest: Digest, size: u64) -> Checked<R> {
        Checked { inner, hasher: Some(Hasher::new(digest.algorithm())), digest, left: size }
    }

    pub fn check(mut self) -> Result<()> {
        if self.left != 0 {
            bail!("ended {} bytes early", self.left);
        }
        let mut extra = [0u8; 1];
        if self.inner.read(&mut extra)? != 0 {
            bail!("is longer than expected");
        }
        let got = self.hasher.take().expect("checked once").finish();
        if got != self.digest {
            bail!("content is {got}, expected {}", self.digest);
        }
        Ok(())
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob ended early"));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports_as_skopeo() {
        assert!(ArchiveRef::parse("alpine:3").is_none());
        let a = ArchiveRef::parse("docker-archive:/tmp/x.tar").unwrap().unwrap();
        assert_eq!(
            (a.format, a.path.as_deref(), a.reference),
            (Format::Docker, Some(Path::new("/tmp/x.tar")), None)
        );
        let a = ArchiveRef::parse("oci-archive:-:x/a:1").unwrap().unwrap();
        assert_eq!((a.format, a.path.as_deref(), a.reference.as_deref()), (Format::Oci, None, Some("x/a:1")));
        assert!(ArchiveRef::parse("oci-archive:").unwrap().is_err());
        assert!(ArchiveRef::parse("oci-archive:x.tar:").unwrap().is_err());
        assert_eq!(a.to_string(), "oci-archive:-:x/a:1");
        assert_eq!(stored_name("x/a:1").as_deref(), Some("docker.io/x/a:1"));
        assert_eq!(stored_name("latest").as_deref(), Some("latest"));
        assert!(name_matches("docker.io/library/a:1", "a:1"));
    }
}
