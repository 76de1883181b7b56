//! Reading an image for inspection from a registry, without storing anything: the manifest (by
//! tag, or by digest and then checked against it), the child for the platform if it is an
//! index (chosen as img-pull chooses), and the config (capped at [`MAX_CONFIG`] and checked
//! against the manifest's descriptor). Layers are read only for [`wasted`], and only up to a
//! total the caller sets.

use std::io::Read;

use anyhow::{Result, anyhow, bail};

use super::Image;
use super::wasted::{self, Wasted};
use crate::digest::{Expected, Hasher};
use crate::document::{self, Descriptor};
use crate::media_type::{self, Kind};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::pull::choose_or_explain;
use crate::registry::{Budget, FetchedManifest, MAX_CONFIG, Registry, Repository, status_error};

/// Reads `reference` from its registry; for an index, the manifest for `platform` (default:
/// the host's) is chosen.
pub fn read(registry: &Registry, reference: &Reference, platform: Option<&Platform>) -> Result<Image> {
    let repo = Repository::new(registry, reference.repository(), false);
    let (root_descriptor, root_bytes) = read_root(registry, reference)?;
    let root = FetchedManifest {
        media_type: root_descriptor.media_type.clone(),
        bytes: root_bytes,
        digest: root_descriptor.digest.clone(),
    };
    let (manifest, manifest_bytes) = match root_descriptor.kind() {
        Kind::Manifest => (root_descriptor.clone(), root.bytes.clone()),
        Kind::Index => {
            let index = document::parse_index(&root.bytes)?;
            let want = platform.cloned().unwrap_or_else(Platform::host);
            let child = choose_or_explain(&index.manifests, &want)?;
            if child.size > document::MAX_MANIFEST_BYTES {
                bail!("manifest {}: said to be {} bytes, more than we accept", child.digest, child.size);
            }
            let m = repo.get_manifest(&child.digest.to_string())?;
            Expected::new(&child.digest, child.size).check(&m.digest, m.bytes.len() as u64)?;
            let mut d = Descriptor::new(&m.media_type, m.digest, m.bytes.len() as u64);
            d.platform = child.platform.clone();
            if d.kind() != Kind::Manifest {
                bail!("{}: the index's child for {want} is not an image manifest", d.digest);
            }
            (d, m.bytes)
        }
        Kind::Blob => bail!("{}: not an image manifest or index", root.media_type),
    };
    let parsed = document::parse_manifest(&manifest_bytes)?;
    let config_bytes = fetch_config(&repo, &parsed.config)?;
    // A single image asked for with --platform must be for it (as in a layout).
    if let (Some(want), Kind::Manifest) = (platform, root_descriptor.kind())
        && media_type::is_image_config(&parsed.config.media_type)
    {
        let have = document::parse_config(&config_bytes)?.platform();
        if !have.satisfies(want) {
            bail!("the image is for {have}, not {want}");
        }
    }
    Ok(Image {
        reference: Some(reference.to_string()),
        root: root_descriptor,
        root_bytes: root.bytes,
        manifest,
        manifest_bytes,
        config_bytes,
        layout: None,
    })
}

/// What `reference` names in its registry, as its exact bytes: a manifest, or a whole index
/// (checked against the digest when the reference has one). Nothing else is read.
pub fn read_root(registry: &Registry, reference: &Reference) -> Result<(Descriptor, Vec<u8>)> {
    let repo = Repository::new(registry, reference.repository(), false);
    let root = repo.get_manifest(&reference.api_reference())?;
    Ok((Descriptor::new(&root.media_type, root.digest, root.bytes.len() as u64), root.bytes))
}

/// Fetches a config blob whole, capped at [`MAX_CONFIG`], and checks it against its descriptor.
fn fetch_config(repo: &Repository, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size > MAX_CONFIG {
        bail!(
            "the config {} is said to be {} bytes, more than the {} MiB we accept",
            desc.digest,
            desc.size,
            MAX_CONFIG >> 20
        );
    }
    let resp = repo.get_blob(&desc.digest, 0, None, Budget::Document, || {})?;
    if resp.status().as_u16() != 200 {
        return Err(
            status_error(resp, repo.registry.has_credentials()).context(format!("config {}", desc.digest))
        );
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(desc.size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("config {}: {}", desc.digest, repo.registry.describe_io(&e)))?;
    let mut hasher = Hasher::new(desc.digest.algorithm());
    hasher.update(&bytes);
    Expected::new(&desc.digest, desc.size)
        .check(&hasher.finish(), bytes.len() as u64)
        .map_err(|e| anyhow!("config {}: {e}", desc.digest))?;
    Ok(bytes)
}

/// The files the image's later layers delete or overwrite, streaming every layer from the
/// registry (nothing is stored). Refused before anything is read if the layers add up to more
/// than `max_bytes`.
pub fn wasted(registry: &Registry, reference: &Reference, image: &Image, max_bytes: u64) -> Result<Wasted> {
    let manifest = image.parsed_manifest()?;
    let total: u64 = manifest.layers.iter().map(|l| l.size).fold(0, u64::saturating_add);
    if total > max_bytes {
        bail!(
            "its layers are {total} bytes, more than --max-layer-bytes {max_bytes}: pull it and inspect the local copy"
        );
    }
    let repo = Repository::new(registry, reference.repository(), false);
    wasted::analyse(&manifest.layers, |d| {
        let resp = repo.get_blob(&d.digest, 0, None, Budget::Transfer, || {})?;
        if resp.status().as_u16() != 200 {
            return Err(status_error(resp, registry.has_credentials()));
        }
        Ok(Box::new(resp.into_body().into_reader()) as Box<dyn Read + Send>)
    })
}
