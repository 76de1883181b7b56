//! The JSON Lines protocol: image records on stdout, images named by arguments or by records
//! (or plain reference lines) on stdin.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::document::Descriptor;

/// One image, as every tool prints it. Tools add their own fields through `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub layout: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageRecord {
    /// The record of the image `descriptor` points at in `layout`: its digest, media type and
    /// size, the descriptor's platform if it has one, no extra fields.
    pub fn new(descriptor: &Descriptor, reference: Option<String>, layout: &Path) -> ImageRecord {
        ImageRecord {
            reference,
            digest: descriptor.digest.clone(),
            media_type: descriptor.media_type.clone(),
            size: descriptor.size,
            layout: layout.to_path_buf(),
            platform: descriptor.platform.as_ref().map(ToString::to_string),
            extra: BTreeMap::new(),
        }
    }
}

/// Writes one record as one line on stdout.
pub fn print(record: &impl Serialize) -> Result<()> {
    write(&mut io::stdout().lock(), record).context("writing to stdout")
}

/// Writes one record as one line to `out` (a tool whose stdout is taken, like img-build's).
pub fn write(out: &mut impl Write, record: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_vec(record).context("serialising a record")?;
    line.push(b'\n');
    out.write_all(&line).and_then(|_| out.flush())?;
    Ok(())
}

/// An image a tool was asked to work on.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// A reference, or a digest for an entry without a name.
    pub name: String,
    /// The layout named in the record this came from, if any.
    pub layout: Option<PathBuf>,
    /// The record's `mediaType`: an index's record asks for the whole index (img-pull).
    pub media_type: Option<String>,
    /// The record's `pushed` (img-push's): where the image was pushed to, which is what
    /// `img-rm --remote` deletes, never the local name's registry.
    pub pushed: Option<String>,
}

impl Input {
    /// An image named by an argument or a plain line: a name and nothing else.
    pub fn named(name: &str) -> Input {
        Input { name: name.to_string(), layout: None, media_type: None, pushed: None }
    }

    /// Whether the record named a multi-platform index.
    pub fn is_index(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|m| crate::media_type::kind(m) == crate::media_type::Kind::Index)
    }
}

/// What stdin is to a tool given no image argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdin {
    /// A pipe, FIFO, socket or regular file: something upstream wrote records there (maybe
    /// none, when it selected nothing).
    Upstream,
    /// A terminal, a character device such as /dev/null (a CI step's, a Makefile's under
    /// `make < /dev/null`), or no stdin at all: nothing upstream.
    Nothing,
}

/// What the process's stdin is.
pub fn stdin() -> Stdin {
    stdin_of(io::stdin().as_fd())
}

/// What `fd` is as a tool's stdin, by its file type: only a pipe, socket or regular file can
/// carry records (a terminal and /dev/null are both character devices).
pub fn stdin_of(fd: BorrowedFd<'_>) -> Stdin {
    // SAFETY: fstat writes into a zeroed stat we own; a closed descriptor is an error, not UB.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Stdin::Nothing;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFREG => Stdin::Upstream,
        _ => Stdin::Nothing,
    }
}

/// A mistake in naming images that is the caller's, a usage error (exit 2): found before
/// anything is read or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// No argument, and nothing upstream to read records from.
    NoImage,
    /// An empty argument (`img-rm "$UNSET"`): never a name, likely an unset variable.
    EmptyArgument,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Usage::NoImage => "no image given",
            Usage::EmptyArgument => "an empty argument names no image",
        })
    }
}

/// Where a tool's images come from, by the one rule every tool follows: its arguments; with
/// none, the records upstream wrote on stdin (zero records is nothing to do); with none and
/// nothing upstream, a usage error.
#[derive(Debug, PartialEq)]
pub enum Source {
    Args(Vec<Input>),
    Stdin,
}

/// Applies the rule to `args` and the process's stdin.
pub fn source(args: &[String]) -> Result<Source, Usage> {
    source_with(args, stdin())
}

/// Applies the rule to `args` and a stdin of the kind given.
pub fn source_with(args: &[String], stdin: Stdin) -> Result<Source, Usage> {
    if args.iter().any(|a| a.trim().is_empty()) {
        return Err(Usage::EmptyArgument);
    }
    if !args.is_empty() {
        return Ok(Source::Args(args.iter().map(|a| Input::named(a)).collect()));
    }
    match stdin {
        Stdin::Upstream => Ok(Source::Stdin),
        Stdin::Nothing => Err(Usage::NoImage),
    }
}

impl Source {
    /// The images: the arguments', or one per record (or plain line) on stdin.
    pub fn read(self) -> Result<Vec<Input>> {
        match self {
            Source::Args(inputs) => Ok(inputs),
            Source::Stdin => read_stdin(),
        }
    }
}

/// One image per record (or plain reference line) on stdin; blank lines are skipped.
pub fn read_stdin() -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for line in io::stdin().lock().lines() {
        if let Some(input) = parse_line(&line.context("reading stdin")?)? {
            out.push(input);
        }
    }
    Ok(out)
}

/// Reads exactly one line of stdin, a byte at a time from the descriptor itself, so the rest
/// stays for someone else (img-run hands it to the container; std's stdin would buffer it).
pub fn read_one_line() -> Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reads into a one-byte buffer we own.
        match unsafe { libc::read(0, byte.as_mut_ptr().cast(), 1) } {
            0 => break,
            1 if byte[0] == b'\n' => break,
            1 => line.push(byte[0]),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("reading stdin");
            }
        }
    }
    String::from_utf8(line).context("stdin: not UTF-8")
}

/// A JSON record names its image by `ref` (else `digest`), also nested under `image` as
/// img-unpack prints it; any other non-empty line is a plain reference.
pub fn parse_line(line: &str) -> Result<Option<Input>> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return Ok(Some(Input::named(line)));
    };
    let image = match obj.get("image") {
        Some(Value::Object(inner)) => inner,
        _ => &obj,
    };
    let text = |k: &str| image.get(k).and_then(Value::as_str).map(str::to_string);
    let name = text("ref")
        .or_else(|| text("digest"))
        .with_context(|| format!("stdin record has neither \"ref\" nor \"digest\": {line}"))?;
    Ok(Some(Input {
        name,
        layout: text("layout").map(PathBuf::from),
        media_type: text("mediaType"),
        pushed: text("pushed"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_plain_lines() {
        assert_eq!(parse_line("  ").unwrap(), None);
        assert_eq!(parse_line("alpine:3").unwrap().unwrap().name, "alpine:3");
        let r = parse_line(r#"{"ref":"a:1","digest":"sha256:x","layout":"/l"}"#).unwrap().unwrap();
        assert_eq!(r, Input { layout: Some("/l".into()), ..Input::named("a:1") });
        let nested = parse_line(r#"{"bundle":"/b","image":{"ref":"b:2","layout":"/m"}}"#).unwrap().unwrap();
        assert_eq!(nested, Input { layout: Some("/m".into()), ..Input::named("b:2") });
        let by_digest = parse_line(r#"{"digest":"sha256:ab"}"#).unwrap().unwrap();
        assert_eq!(by_digest.name, "sha256:ab");
        assert!(parse_line(r#"{"size":1}"#).is_err());
        assert!(!r.is_index());
        let pushed = r#"{"ref":"a:1","mediaType":"application/vnd.oci.image.index.v1+json","pushed":"r/a:1@sha256:x"}"#;
        let pushed = parse_line(pushed).unwrap().unwrap();
        assert!(pushed.is_index());
        assert_eq!(pushed.pushed.as_deref(), Some("r/a:1@sha256:x"));
    }

    #[test]
    fn stdin_kinds_by_file_type() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(stdin_of(null.as_fd()), Stdin::Nothing);
        let file = tempfile::tempfile().unwrap();
        assert_eq!(stdin_of(file.as_fd()), Stdin::Upstream);
        let (reader, _writer) = std::io::pipe().unwrap();
        assert_eq!(stdin_of(reader.as_fd()), Stdin::Upstream);
        let dir = std::fs::File::open("/").unwrap();
        assert_eq!(stdin_of(dir.as_fd()), Stdin::Nothing);
    }

    #[test]
    fn the_rule_for_arguments_and_stdin() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(source_with(&[], Stdin::Nothing), Err(Usage::NoImage));
        assert_eq!(source_with(&[], Stdin::Upstream), Ok(Source::Stdin));
        assert_eq!(source_with(&args(&[""]), Stdin::Upstream), Err(Usage::EmptyArgument));
        assert_eq!(source_with(&args(&["a:1", " "]), Stdin::Nothing), Err(Usage::EmptyArgument));
        let Ok(Source::Args(named)) = source_with(&args(&["a:1"]), Stdin::Nothing) else { panic!() };
        assert_eq!(named, [Input::named("a:1")]);
    }

    #[test]
    fn record_round_trips_with_extra_fields() {
        let json = r#"{"ref":"docker.io/library/a:1","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","mediaType":"m","size":3,"layout":"/l","platform":"linux/amd64","layers":2}"#;
        let r: ImageRecord = serde_json::from_str(json).unwrap();
        assert_eq!(r.extra["layers"], 2);
        let back: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(json).unwrap());
    }
}
