//! The JSON documents of an image: descriptors, manifests, indexes and image configs.
//!
//! These are read-side views: the store always keeps the exact bytes it was given, and digests
//! are computed over those bytes, never over a re-serialised struct. Unknown fields are ignored
//! when reading. When we write a document, serde_json's sorted maps make the bytes reproducible.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, Kind};
use crate::platform::Platform;

pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The largest manifest or index read from a layout: distribution's limit on a manifest it
/// accepts (4 MiB), which img-pull applies to what it fetches too.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest image config read from a layout: twice the 4 MiB containers/image (skopeo,
/// Podman, CRI-O) reads configs under, so any config those read, we read.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// The largest `index.json` read: about 100,000 refs.
pub const MAX_INDEX_JSON_BYTES: u64 = 32 << 20;
/// How many documents deep a walk from an `index.json` entry may go (index → index → … →
/// manifest → subject …); real images nest two or three.
pub const MAX_NESTING: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
            artifact_type: None,
        }
    }

    /// The descriptor of some bytes of the given media type.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }

    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME_ANNOTATION).map(String::as_str)
    }

    pub fn kind(&self) -> Kind {
        media_type::kind(&self.media_type)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config the tools read. (img-build writes configs as JSON values.)
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

impl ImageConfig {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
    }
}

/// The `config` object of an image config: how a container of this image runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// Parses a manifest, refusing Docker schema1 with a message that says so.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    refuse_schema1(bytes)?;
    serde_json::from_slice(bytes).context("malformed image manifest")
}

pub fn parse_index(bytes: &[u8]) -> Result<Index> {
    serde_json::from_slice(bytes).context("malformed image index")
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig> {
    serde_json::from_slice(bytes).context("malformed image config")
}

fn refuse_schema1(bytes: &[u8]) -> Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
    }
    if let Ok(Probe { schema_version: Some(1) }) = serde_json::from_slice::<Probe>(bytes) {
        bail!("Docker schema1 manifests are not supported (deprecated since 2017); re-push the image");
    }
    Ok(())
}

/// Serialises a document with sorted keys, the way every document we write is made.
pub fn to_canonical_json<T: Serialize>(doc: &T) -> Vec<u8> {
    let value = serde_json::to_value(doc).expect("documents serialise");
    serde_json::to_vec(&value).expect("values serialise")
}
