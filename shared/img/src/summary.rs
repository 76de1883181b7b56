//! What `img-ls` shows of an image: platforms, creation time, layer count and total size.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::digest::Digest;
use crate::document::{self, Descriptor, MAX_NESTING};
use crate::layout::Layout;
use crate::media_type::{self, Kind};
use crate::record::ImageRecord;

#[derive(Clone, Debug)]
pub struct Summary {
    pub descriptor: Descriptor,
    /// One for an image, every present child's for an index.
    pub platforms: Vec<String>,
    /// RFC 3339, from the config (the newest child's for an index).
    pub created: Option<String>,
    /// Distinct layers.
    pub layers: usize,
    /// Bytes of every distinct blob the image references (manifests, configs, layers).
    pub size: u64,
}

/// Summarises the image an `index.json` entry points at, reading and verifying its manifests
/// and configs. Each document is read once however many times the graph names it, and
/// documents nested more than [`MAX_NESTING`] deep are an error.
pub fn summarise(layout: &Layout, root: &Descriptor) -> Result<Summary> {
    let mut acc = Accumulator::default();
    acc.visit(layout, root, true, 0)?;
    Ok(Summary {
        descriptor: root.clone(),
        platforms: acc.platforms,
        created: acc.created,
        layers: acc.layers.len(),
        size: acc.blobs.values().sum(),
    })
}

#[derive(Default)]
struct Accumulator {
    platforms: Vec<String>,
    created: Option<String>,
    layers: BTreeMap<Digest, u64>,
    blobs: BTreeMap<Digest, u64>,
    /// The documents read so far, with a manifest's platform as its config says.
    read: BTreeMap<Digest, Option<String>>,
}

impl Accumulator {
    fn visit(&mut self, layout: &Layout, desc: &Descriptor, required: bool, depth: usize) -> Result<()> {
        if !required && !layout.has_blob(&desc.digest) {
            return Ok(()); // a platform this copy of the index does not hold
        }
        let kind = desc.kind();
        if kind != Kind::Blob && depth >= MAX_NESTING {
            bail!("{} {}: documents nested more than {MAX_NESTING} deep", kind_name(kind), desc.digest);
        }
        self.blobs.insert(desc.digest.clone(), desc.size);
        if let Some(config_platform) = self.read.get(&desc.digest) {
            // Named again (an index may list one manifest for several platforms): its
            // platform counts again, but nothing is read twice.
            if kind == Kind::Manifest {
                let platform =
                    desc.platform.as_ref().map(ToString::to_string).or_else(|| config_platform.clone());
                self.platforms.extend(platform);
            }
            return Ok(());
        }
        match kind {
            Kind::Index => {
                self.read.insert(desc.digest.clone(), None);
                let bytes = layout.read_document(desc)?;
                let index =
                    document::parse_index(&bytes).with_context(|| format!("index {}", desc.digest))?;
                for child in &index.manifests {
                    self.visit(layout, child, false, depth + 1)?;
                }
            }
            Kind::Manifest => {
                let bytes = layout.read_document(desc)?;
                let m =
                    document::parse_manifest(&bytes).with_context(|| format!("manifest {}", desc.digest))?;
                self.blobs.insert(m.config.digest.clone(), m.config.size);
                for l in &m.layers {
                    self.blobs.insert(l.digest.clone(), l.size);
                    self.layers.insert(l.digest.clone(), l.size);
                }
                let mut config_platform = None;
                if media_type::is_image_config(&m.config.media_type) {
                    let bytes = layout.read_document(&m.config)?;
                    let config = document::parse_config(&bytes)
                        .with_context(|| format!("config {}", m.config.digest))?;
                    config_platform = Some(config.platform().to_string());
                    if config.created > self.created {
                        self.created = config.created;
                    }
                }
                self.read.insert(desc.digest.clone(), config_platform.clone());
                self.platforms.extend(desc.platform.as_ref().map(ToString::to_string).or(config_platform));
            }
            Kind::Blob => {}
        }
        Ok(())
    }
}

fn kind_name(kind: Kind) -> &'static str {
    if kind == Kind::Index { "index" } else { "manifest" }
}

impl Summary {
    /// The JSON record `img-ls` prints.
    pub fn record(&self, layout: &Path) -> ImageRecord {
        let mut extra = BTreeMap::new();
        if let Some(c) = &self.created {
            extra.insert("created".into(), Value::from(c.clone()));
        }
        extra.insert("layers".into(), Value::from(self.layers));
        extra.insert("bytes".into(), Value::from(self.size));
        let is_index = self.descriptor.kind() == Kind::Index;
        if is_index {
            extra.insert("platforms".into(), Value::from(self.platforms.clone()));
        }
        ImageRecord {
            platform: if is_index { None } else { self.platforms.first().cloned() },
            extra,
            ..ImageRecord::new(&self.descriptor, self.descriptor.ref_name().map(str::to_string), layout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::{BuiltIndex, Entry, Layer, TestImage};

    #[test]
    fn counts_distinct_blobs_layers_and_the_newest_creation() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let shared = Layer::new([Entry::file("shared", "same")]);
        let amd = TestImage::new()
            .platform("linux/amd64")
            .created("2024-01-01T00:00:00Z")
            .layer(shared.clone())
            .layer(Layer::new([Entry::file("own", "amd")]))
            .build();
        let arm =
            TestImage::new().platform("linux/arm/v7").created("2025-06-01T00:00:00Z").layer(shared).build();

        let s = summarise(&layout, &amd.write_to(&layout, None).unwrap()).unwrap();
        assert_eq!(s.platforms, ["linux/amd64"]);
        assert_eq!(s.layers, 2);
        assert_eq!(s.size, amd.blobs().iter().map(|b| b.bytes.len() as u64).sum::<u64>());
        assert_eq!(s.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        let r = s.record(layout.root());
        assert_eq!(r.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(r.extra["bytes"], s.size);
        assert!(!r.extra.contains_key("platforms"));

        let index = BuiltIndex::new(vec![amd.clone(), arm.clone()], false);
        let s = summarise(&layout, &index.write_to(&layout, None).unwrap()).unwrap();
        assert_eq!(s.platforms, ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(s.layers, 2, "the shared layer counts once");
        let distinct: std::collections::BTreeMap<_, _> =
            index.blobs().iter().map(|b| (b.descriptor.digest.clone(), b.bytes.len() as u64)).collect();
        assert_eq!(s.size, distinct.values().sum::<u64>());
        assert_eq!(s.created.as_deref(), Some("2025-06-01T00:00:00Z"), "the newest child's");
        let r = s.record(layout.root());
        assert_eq!(r.platform, None);
        assert_eq!(r.extra["platforms"], serde_json::json!(["linux/amd64", "linux/arm/v7"]));
    }

    #[test]
    fn a_missing_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let img = TestImage::new().build();
        let root = img.write_to(&layout, None).unwrap();
        layout.remove_blob(&img.config.descriptor.digest).unwrap();
        let err = format!("{:#}", summarise(&layout, &root).unwrap_err());
        assert!(err.contains("missing"), "{err}");
    }
}
