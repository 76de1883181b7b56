//! COPY and ADD: files from the build context, another stage or an image, heredocs, and (ADD)
//! URLs and local archives, staged into a directory that becomes the step's layer.

use std::fs;
use std::io::{Read, Seek};

use anyhow::{Context, Result, bail};
use img::digest::Digest;
use img::layer::apply::{Applier, Node};
use img::layer::compression::decompress;
use img_dockerfile::instruction::{CopySpec, Step};

use super::layers::user_in_layers;
use super::{Builder, StepContext, now_timespec, staging_applier};
use crate::context::{Attributes, BuildContext};
use crate::download;
use crate::state::{ImageState, clean_absolute};

/// Which of the two instructions a copy is: ADD also fetches URLs and extracts archives.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Copy,
    Add,
}

impl Builder<'_> {
    pub(super) fn dispatch_copy(&self, cx: &mut StepContext, step: &Step, spec: &CopySpec) -> Result<()> {
        self.copy(cx, step, spec, Kind::Copy)
    }

    pub(super) fn dispatch_add(&self, cx: &mut StepContext, step: &Step, spec: &CopySpec) -> Result<()> {
        self.copy(cx, step, spec, Kind::Add)
    }

    fn copy(&self, cx: &mut StepContext, step: &Step, spec: &CopySpec, kind: Kind) -> Result<()> {
        let is_add = kind == Kind::Add;
        let x = |s: &str| cx.expand(s);
        let mut dest = x(&spec.dest)?;
        if !dest.starts_with('/') {
            let slash = if dest.ends_with('/') || dest == "." { "/" } else { "" };
            dest = format!("{}{slash}", clean_absolute(&format!("{}/{dest}", cx.state.workdir())));
            if dest == "//" {
                dest = "/".into();
            }
        }
        let attrs = Attributes {
            uid: 0,
            gid: 0,
            mode: spec
                .chmod
                .as_deref()
                .map(|m| u32::from_str_radix(&x(m)?, 8).context("--chmod"))
                .transpose()?,
        };
        let attrs = match &spec.chown {
            Some(c) => {
                let (uid, gid) = self.resolve_owner(&cx.state, &x(c)?)?;
                Attributes { uid, gid, ..attrs }
            }
            None => attrs,
        };
        let staging = tempfile::Builder::new().prefix("copy-").tempdir_in(self.work.path())?;
        let mut out = staging_applier(staging.path())?;
        let from_root = match &spec.from {
            Some(from) => Some(self.rootfs_of(&x(from)?, cx.done, cx.stages)?),
            None => None,
        };
        let ctx_owned;
        let ctx = match &from_root {
            Some(root) => {
                ctx_owned = BuildContext::rootfs(root)?;
                &ctx_owned
            }
            None => &self.context,
        };
        let mut inputs = vec![
            if is_add { "ADD".to_string() } else { "COPY".to_string() },
            dest.clone(),
            format!("{attrs:?}"),
        ];
        let heredoc_names: Vec<&str> = spec.heredocs.iter().map(|h| h.name.as_str()).collect();
        let many = spec.sources.len() > 1;
        for source in &spec.sources {
            if let Some(name) =
                source.strip_prefix("<<").map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
            {
                if let Some(h) = spec.heredocs.iter().find(|h| h.name == name) {
                    let content = if h.expand { x(&h.content)? } else { h.content.clone() };
                    let into_dir = dest.ends_with('/') || many;
                    let target = if into_dir { format!("{dest}{name}") } else { dest.clone() };
                    let meta = attrs.meta(0o644, now_timespec());
                    out.put(target.as_bytes(), Node::File(&mut content.as_bytes()), &meta)?;
                    inputs.push(format!("heredoc:{name}:{content}"));
                    continue;
                }
                if heredoc_names.is_empty() {
                    bail!("{source}: no heredoc of that name");
                }
            }
            let source = x(source)?;
            if is_add && (source.starts_with("http://") || source.starts_with("https://")) {
                let digest = self.add_url(&source, &dest, spec.checksum.as_deref(), attrs, &mut out)?;
                inputs.push(format!("url:{source}:{digest}"));
                continue;
            }
            let found = ctx.resolve(&source)?;
            inputs.push(format!("{source}:{}", ctx.digest(&found)?));
            if is_add && found.len() == 1 && !found[0].is_dir && is_archive(ctx.open_file(&found[0])?)? {
                out.apply_in(dest.as_bytes(), decompress(ctx.open_file(&found[0])?)?)
                    .with_context(|| format!("extracting {source}"))?;
                continue;
            }
            let into = if many && !dest.ends_with('/') { format!("{dest}/") } else { dest.clone() };
            ctx.stage(&found, &into, attrs, &mut out)?;
        }
        out.finish()?;
        let input_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let key = cx.key.then(&input_refs);
        let created_by =
            format!("{} {} {}", if is_add { "ADD" } else { "COPY" }, spec.sources.join(" "), dest);
        if self.cached(cx, step, &key, &created_by) {
            return Ok(());
        }
        self.log(cx.stage, &step.text, "");
        self.commit_staging(staging, &key, &mut cx.state, &created_by)?;
        cx.key = key;
        Ok(())
    }

    /// `--chown` names resolved through the stage's /etc/passwd and /etc/group.
    fn resolve_owner(&self, state: &ImageState, spec: &str) -> Result<(u32, u32)> {
        let lower = self.lower_dirs(state)?;
        let user = user_in_layers(&lower, spec).with_context(|| format!("--chown {spec}"))?;
        // Unlike USER, a --chown without a group takes the uid as gid (Docker's rule).
        let gid = if spec.contains(':') { user.gid } else { user.uid };
        Ok((user.uid, gid))
    }

    /// ADD of a URL: streamed to a temporary file while hashed (and checked against
    /// `--checksum` if given), then written into dest. Bounded in time: connecting, each read
    /// and the whole download have deadlines.
    fn add_url(
        &self,
        url: &str,
        dest: &str,
        checksum: Option<&str>,
        attrs: Attributes,
        out: &mut Applier,
    ) -> Result<Digest> {
        let name = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("index.html");
        let target = if dest.ends_with('/') { format!("{dest}{name}") } else { dest.to_string() };
        let want = checksum.map(|c| c.parse::<Digest>().context("--checksum")).transpose()?;
        let mut file = tempfile::tempfile_in(self.work.path()).context("a file for the download")?;
        let digest = download::fetch(url, &self.options.download, &mut file)?;
        if let Some(want) = want
            && want != digest
        {
            bail!("{url}: checksum mismatch: expected {want}, got {digest}");
        }
        file.seek(std::io::SeekFrom::Start(0))?;
        out.put(target.as_bytes(), Node::File(&mut file), &attrs.meta(0o600, now_timespec()))?;
        Ok(digest)
    }
}

/// Whether ADD should extract a local file: a tar, possibly gzip or zstd compressed.
fn is_archive(file: fs::File) -> Result<bool> {
    let mut head = Vec::new();
    decompress(file)?.take(512).read_to_end(&mut head)?;
    Ok(head.len() >= 262 && &head[257..262] == b"ustar")
}
