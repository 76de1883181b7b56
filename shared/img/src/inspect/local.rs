//! Reading an image for inspection from a layout: the entry a name finds, the manifest for the
//! platform (as img-unpack and img-run choose it) and the config, each a regular file of the
//! layout, capped in size and checked against its digest.

use std::io::Read;

use anyhow::{Context, Result, bail};

use super::Image;
use super::wasted::{self, Wasted};
use crate::document::Descriptor;
use crate::layout::{Layout, resolve};
use crate::platform::Platform;

/// Finds `name` (a reference or a digest) in the layout; for an index, the manifest for
/// `platform` (default: the host's) is chosen.
pub fn read(layout: &Layout, name: &str, platform: Option<&Platform>) -> Result<Image> {
    let found = resolve::image(layout, name, platform)?;
    let root_bytes = layout.read_document(&found.entry).with_context(|| name.to_string())?;
    let manifest_bytes =
        layout.read_document(&found.manifest_descriptor).with_context(|| name.to_string())?;
    let mut root = found.entry.clone();
    let reference = root.ref_name().map(str::to_string).or_else(|| Some(name.to_string()));
    // The record shows the descriptor; the ref name is in `ref`.
    root.annotations.clear();
    Ok(Image {
        reference,
        root,
        root_bytes,
        manifest: found.manifest_descriptor,
        manifest_bytes,
        config_bytes: found.config_bytes,
        layout: Some(layout.root().to_path_buf()),
    })
}

/// What `name` points at in the layout, as its exact bytes: a manifest, or a whole index
/// (whatever platforms it holds). Nothing else is read.
pub fn read_root(layout: &Layout, name: &str) -> Result<(Descriptor, Vec<u8>)> {
    let index = layout.read_index()?;
    let Some(&first) = index.find(name).first() else {
        bail!("{name}: no such image in {}", layout.root().display());
    };
    let entry = index.entries()[first].clone();
    let bytes = layout.read_document(&entry).with_context(|| name.to_string())?;
    Ok((entry, bytes))
}

/// The files the image's later layers delete or overwrite (see [`wasted`]).
pub fn wasted(layout: &Layout, image: &Image) -> Result<Wasted> {
    let manifest = image.parsed_manifest()?;
    wasted::analyse(&manifest.layers, |d| {
        let file = layout.open_blob(&d.digest)?;
        Ok(Box::new(file) as Box<dyn Read + Send>)
    })
}
