//! `--output`: the built image's root filesystem written out beside the image, as BuildKit's
//! local and tar exporters do (`docker build -o`): `-o DIR` or `-o type=local,dest=DIR` makes
//! DIR the tree, `-o type=tar,dest=FILE` a tar of it. Both appear whole or not at all: the tree
//! is made next to its destination and renamed into place.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use img::digest::Digest;
use img::document;
use img::layout::Layout;

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Local(PathBuf),
    Tar(PathBuf),
}

/// `DIR`, or `type=local|tar,dest=PATH` (BuildKit's spelling).
pub fn parse(text: &str) -> Result<Output> {
    if !text.contains('=') {
        return Ok(Output::Local(PathBuf::from(text)));
    }
    let (mut kind, mut dest) = (None, None);
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => bail!("--output {text}: expected DIR, or type=local|tar,dest=PATH"),
        }
    }
    let Some(dest) = dest.filter(|d| !d.as_os_str().is_empty() && d != Path::new("-")) else {
        bail!("--output {text}: a dest path is needed (stdout carries the image's record)");
    };
    match kind.unwrap_or("local") {
        "local" => Ok(Output::Local(dest)),
        "tar" => Ok(Output::Tar(dest)),
        other => bail!("--output {text}: type {other} is not supported (local or tar)"),
    }
}

impl Output {
    pub fn dest(&self) -> &Path {
        match self {
            Output::Local(d) | Output::Tar(d) => d,
        }
    }

    /// Refuses a destination that is there already (but an empty directory for a tree), so a
    /// build does not run only to find it cannot write its output.
    pub fn check(&self) -> Result<()> {
        let dest = self.dest();
        if dest.symlink_metadata().is_ok() && !(matches!(self, Output::Local(_)) && is_empty_dir(dest)) {
            bail!("--output: {} exists (give a new path or an empty directory)", dest.display());
        }
        Ok(())
    }
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// Writes the root filesystem of the image `manifest` names.
pub fn export(layout: &Layout, manifest: &Digest, output: &Output) -> Result<()> {
    output.check()?;
    let dest = output.dest();
    let shown = dest.display();
    let is_empty_dir = is_empty_dir(dest);
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".img-build-output-")
        .tempdir_in(&parent)
        .with_context(|| format!("--output: making a directory in {}", parent.display()))?;
    let m = document::parse_manifest(&layout.read_blob(manifest)?).context("the built manifest")?;
    let config = document::parse_config(&layout.read_blob(&m.config.digest)?).context("the built config")?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    let tree = work.path().join("rootfs");
    img::snapshot::unpack_copy(layout, &m.layers, &diff_ids, &tree)?;
    match output {
        Output::Local(_) => {
            if is_empty_dir {
                fs::remove_dir(dest).with_context(|| format!("--output: replacing {shown}"))?;
            }
            fs::rename(&tree, dest).with_context(|| format!("--output: moving the tree to {shown}"))?;
        }
        Output::Tar(_) => {
            let tar = work.path().join("rootfs.tar");
            let file = fs::File::create(&tar).context("--output: creating the tar")?;
            img::layer::create::write_layer(
                &tree,
                std::io::BufWriter::new(file),
                &img::layer::create::Options::default(),
            )
            .context("--output: writing the tar")?;
            fs::rename(&tar, dest).with_context(|| format!("--output: moving the tar to {shown}"))?;
        }
    }
    // The rest of `work` (an unpacked tree for a tar) goes with it, perhaps read-only dirs too.
    let work = work.keep();
    img::layer::apply::remove_dir_tree(&work)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_spellings() {
        assert_eq!(parse("out").unwrap(), Output::Local("out".into()));
        assert_eq!(parse("type=local,dest=/o").unwrap(), Output::Local("/o".into()));
        assert_eq!(parse("type=tar,dest=r.tar").unwrap(), Output::Tar("r.tar".into()));
        assert!(parse("type=tar,dest=-").is_err() && parse("type=oci,dest=x").is_err());
        assert!(parse("type=local").is_err() && parse("type=local,dest=o,x=y").is_err());
    }
}
