//! What `img-inspect` shows of an image, wherever it is (a layout or a registry): the record
//! (descriptor, platforms of an index, run config, layers with the history entries that made
//! them), the exact bytes of its manifest and config, and the bytes its layers waste.
//!
//! - [`local`] and [`remote`] read an image ([`Image`]) from a layout or a registry, every
//!   document capped in size and checked against its digest;
//! - [`history`] matches the config's history to the layers;
//! - [`wasted`] walks the layers' tar headers for files later layers delete or overwrite.

pub mod history;
pub mod local;
pub mod remote;
pub mod wasted;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::digest::Digest;
use crate::document::{self, Descriptor};
use crate::media_type::{self, Kind};
use crate::platform::Platform;

/// One image as read for inspection: the exact bytes of what its name points at, of the
/// manifest chosen for the platform, and of its config, each verified against its digest.
#[derive(Clone, Debug)]
pub struct Image {
    /// The reference as stored (a layout's ref name) or as normalised (a registry's).
    pub reference: Option<String>,
    /// What the name points at: a manifest, or an index.
    pub root: Descriptor,
    pub root_bytes: Vec<u8>,
    /// The manifest chosen (the root itself, or the index's child for the platform).
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config_bytes: Vec<u8>,
    /// The layout it is in (absent for a registry's image).
    pub layout: Option<PathBuf>,
}

impl Image {
    /// The parsed manifest.
    pub fn parsed_manifest(&self) -> Result<document::Manifest> {
        document::parse_manifest(&self.manifest_bytes)
            .with_context(|| format!("manifest {}", self.manifest.digest))
    }

    /// The inspection record: the usual record fields and everything the config says.
    pub fn record(&self) -> Result<Record> {
        let manifest = self.parsed_manifest()?;
        let config: Map<String, Value> = if media_type::is_image_config(&manifest.config.media_type) {
            serde_json::from_slice(&self.config_bytes)
                .with_context(|| format!("malformed image config {}", manifest.config.digest))?
        } else {
            Map::new() // an artifact: its config is not an image config
        };
        let mut r = Map::new();
        if self.root.kind() == Kind::Index {
            r.insert("platforms".into(), Value::Array(self.platforms()?));
        }
        r.insert("manifest".into(), descriptor_value(&self.manifest));
        r.insert("configDescriptor".into(), descriptor_value(&manifest.config));
        if let Some(t) = &manifest.artifact_type {
            r.insert("artifactType".into(), json!(t));
        }
        if !manifest.annotations.is_empty() {
            r.insert("annotations".into(), json!(manifest.annotations));
        }
        for key in ["created", "author", "architecture", "os", "variant", "os.version", "os.features"] {
            if let Some(v) = config.get(key).filter(|v| !v.is_null()) {
                r.insert(key.into(), v.clone());
            }
        }
        r.insert("config".into(), config.get("config").cloned().unwrap_or_else(|| json!({})));
        let matched = history::match_layers(&manifest.layers, &config);
        r.insert("layers".into(), json!(matched.layers));
        r.insert("history".into(), json!(matched.history));
        Ok(Record {
            reference: self.reference.clone(),
            digest: self.root.digest.clone(),
            media_type: self.root.media_type.clone(),
            size: self.root.size,
            layout: self.layout.clone(),
            platform: platform_of(&config).or_else(|| self.manifest.platform.clone()).map(|p| p.to_string()),
            fields: r,
        })
    }

    /// Each child of an index: its platform, digest, media type and size.
    fn platforms(&self) -> Result<Vec<Value>> {
        let index =
            document::parse_index(&self.root_bytes).with_context(|| format!("index {}", self.root.digest))?;
        Ok(index
            .manifests
            .iter()
            .map(|m| {
                let mut v = descriptor_value(m);
                if let Some(p) = &m.platform {
                    v["platform"] = json!(p.to_string());
                }
                v
            })
            .collect())
    }
}

/// An inspection record: the fields every tool's record starts with, in the same order, then
/// the rest ([`Image::record`] says which).
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<PathBuf>,
    /// The platform of the image shown (for an index, of the child chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

fn descriptor_value(d: &Descriptor) -> Value {
    json!({"digest": d.digest, "mediaType": d.media_type, "size": d.size})
}

fn platform_of(config: &Map<String, Value>) -> Option<Platform> {
    let text = |k: &str| config.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    Some(Platform {
        os: text("os")?,
        architecture: text("architecture")?,
        variant: text("variant"),
        os_version: None,
    })
}
