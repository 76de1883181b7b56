//! Which image a name denotes in a layout: the `index.json` entry, and through an index or
//! manifest list the manifest for the wanted platform, with its config.

use anyhow::{Context, Result, bail};

use super::Layout;
use crate::document::{self, Descriptor, ImageConfig, Manifest};
use crate::media_type::{self, Kind};
use crate::platform::Platform;

/// An image found in a layout.
#[derive(Clone, Debug)]
pub struct Image {
    /// The `index.json` entry the name matched (a manifest, or an index).
    pub entry: Descriptor,
    /// The manifest chosen (the entry itself, or the index's child for the platform).
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The config's exact bytes, for fields [`ImageConfig`] does not model.
    pub config_bytes: Vec<u8>,
    pub platform: Platform,
}

/// Finds `name` (a reference or a digest) in the layout. For an index, the manifest for
/// `platform` (default: the host's) is chosen.
pub fn image(layout: &Layout, name: &str, platform: Option<&Platform>) -> Result<Image> {
    let index = layout.read_index()?;
    let found = index.find(name);
    let Some(&first) = found.first() else {
        bail!("{name}: no such image in {}", layout.root().display());
    };
    let entry = index.entries()[first].clone();
    let want = platform.cloned().unwrap_or_else(Platform::host);
    let manifest_descriptor = match entry.kind() {
        Kind::Manifest => entry.clone(),
        Kind::Index => choose(layout, &entry, &want).with_context(|| name.to_string())?,
        Kind::Blob => bail!("{name}: {} is not an image (media type {})", entry.digest, entry.media_type),
    };
    let bytes = layout.read_document(&manifest_descriptor).with_context(|| name.to_string())?;
    let manifest = document::parse_manifest(&bytes)
        .with_context(|| format!("{name}: manifest {}", manifest_descriptor.digest))?;
    if !media_type::is_image_config(&manifest.config.media_type) {
        bail!("{name}: not a container image (config media type {})", manifest.config.media_type);
    }
    let config_bytes = layout.read_document(&manifest.config).with_context(|| name.to_string())?;
    let config = document::parse_config(&config_bytes)
        .with_context(|| format!("{name}: config {}", manifest.config.digest))?;
    let image_platform = config.platform();
    if platform.is_some() && !image_platform.satisfies(&want) {
        bail!("{name}: the image is for {image_platform}, not {want}");
    }
    Ok(Image { entry, manifest_descriptor, manifest, config, config_bytes, platform: image_platform })
}

fn choose(layout: &Layout, index: &Descriptor, want: &Platform) -> Result<Descriptor> {
    let bytes = layout.read_document(index)?;
    let parsed = document::parse_index(&bytes).with_context(|| format!("index {}", index.digest))?;
    let candidates: Vec<&Descriptor> = parsed
        .manifests
        .iter()
        .filter(|m| m.kind() == Kind::Manifest && m.platform.as_ref().is_some_and(|p| p.satisfies(want)))
        .collect();
    // Prefer a child that is in this layout (a single-platform copy keeps the whole index).
    match candidates.iter().find(|m| layout.has_blob(&m.digest)).or(candidates.first()) {
        Some(m) => Ok((*m).clone()),
        None => {
            let have: Vec<String> =
                parsed.manifests.iter().filter_map(|m| m.platform.as_ref().map(|p| p.to_string())).collect();
            bail!("no image for {want} (the index has {})", have.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::{BuiltIndex, Entry, Layer, TestImage};

    #[test]
    fn finds_manifests_and_platform_children() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let one = TestImage::new().layer(Layer::new([Entry::file("a", "1")])).build();
        one.write_to(&layout, Some("one:1")).unwrap();
        let arm = TestImage::new().platform("linux/arm64").layer(Layer::new([Entry::file("b", "2")])).build();
        let multi = BuiltIndex::new(vec![one.clone(), arm.clone()], false);
        multi.write_to(&layout, Some("multi:1")).unwrap();

        let img = image(&layout, "one:1", None).unwrap();
        assert_eq!(img.manifest_descriptor.digest, one.manifest.descriptor.digest);
        let img = image(&layout, "multi:1", Some(&"linux/arm64".parse().unwrap())).unwrap();
        assert_eq!(img.manifest_descriptor.digest, arm.manifest.descriptor.digest);
        assert_eq!(img.entry.digest, multi.index.descriptor.digest);
        let err = image(&layout, "multi:1", Some(&"linux/s390x".parse().unwrap())).unwrap_err();
        assert!(format!("{err:#}").contains("no image for linux/s390x"), "{err:#}");
        assert!(image(&layout, "nope:1", None).is_err());
        assert!(image(&layout, "one:1", Some(&"linux/s390x".parse().unwrap())).is_err());
    }
}
