//! The exported build cache, as an OCI artifact (see docs/build-cache.md):
//!
//! - a manifest (`application/vnd.oci.image.manifest.v1+json`) with `artifactType`
//!   [`ARTIFACT_TYPE`], whose layers are the cached steps' layer blobs;
//! - its config, of media type [`CONFIG_TYPE`]: `{"version":1,"entries":{KEY: ENTRY}}`, KEY a
//!   step key (64 hex digits) and ENTRY `{"layer": descriptor|null, "diff_id": digest|null,
//!   "created": RFC 3339}`;
//! - inline (`--cache-to type=inline`), the same config document as the value of the image
//!   config's label [`INLINE_LABEL`], with the image's own layers.
//!
//! What is read is untrusted: sizes are capped, every field checked, and an entry may only
//! name a layer that the manifest lists (so only that repository's or layout's blobs are
//! fetched, each verified by digest).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use img::document::{self, Descriptor, Manifest};
use img::media_type;
use serde::{Deserialize, Serialize};

use super::Entry;

pub const ARTIFACT_TYPE: &str = "application/vnd.img.build-cache.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.img.build-cache.config.v1+json";
/// The image config label of an inline cache.
pub const INLINE_LABEL: &str = "dev.img.build-cache.v1";
/// The ref name of the cache in a `type=local` layout.
pub const LOCAL_REF: &str = "img-build-cache";
/// The largest cache config read (a real one is ~300 bytes an entry).
pub const MAX_CONFIG: u64 = 8 << 20;
/// The most entries one cache may hold.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// The config document for these entries (sorted by key: the same entries, the same bytes).
pub fn encode(entries: &BTreeMap<String, Entry>) -> Vec<u8> {
    let config = Config { version: 1, entries: entries.clone() };
    serde_json::to_vec(&config).expect("cache entries serialize")
}

/// The entries of a config document, checked; `layers` are those its manifest lists.
pub fn decode(bytes: &[u8], layers: &[Descriptor]) -> Result<BTreeMap<String, Entry>> {
    if bytes.len() as u64 > MAX_CONFIG {
        bail!("the cache config is larger than {} MiB", MAX_CONFIG >> 20);
    }
    let config: Config =
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("malformed cache config: {e}"))?;
    if config.version != 1 {
        bail!("cache format version {} (this img-build reads version 1)", config.version);
    }
    if config.entries.len() > MAX_ENTRIES {
        bail!("the cache has {} entries, more than the {MAX_ENTRIES} accepted", config.entries.len());
    }
    for (key, entry) in &config.entries {
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            bail!("malformed cache key {key:?}");
        }
        match (&entry.layer, &entry.diff_id) {
            (None, None) => {}
            (Some(layer), Some(_)) => {
                if !is_layer(&layer.media_type) {
                    bail!("cache entry {key}: {:?} is not a layer media type", layer.media_type);
                }
                if !layers.iter().any(|l| l.digest == layer.digest && l.size == layer.size) {
                    bail!("cache entry {key}: layer {} is not in the cache manifest", layer.digest);
                }
            }
            _ => bail!("cache entry {key}: a layer needs a diff_id and a diff_id a layer"),
        }
        if entry.created.len() > 64 {
            bail!("cache entry {key}: malformed created time");
        }
    }
    Ok(config.entries)
}

/// The cache artifact's manifest: the config and every layer the entries name.
pub fn manifest(config: &Descriptor, entries: &BTreeMap<String, Entry>) -> Vec<u8> {
    let mut seen = BTreeSet::new();
    let layers: Vec<Descriptor> =
        entries.values().filter_map(|e| e.layer.clone()).filter(|l| seen.insert(l.digest.clone())).collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: config.clone(),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    document::to_canonical_json(&manifest)
}

/// Whether a manifest is a cache artifact.
pub fn is_cache(manifest: &Manifest) -> bool {
    manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE) || manifest.config.media_type == CONFIG_TYPE
}

fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.v1.tar")
        || media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use img::digest::Digest;

    fn entry(layer: &[u8]) -> Entry {
        let d = Digest::of(layer);
        Entry {
            layer: Some(Descriptor::new(media_type::OCI_LAYER_GZIP, d.clone(), layer.len() as u64)),
            diff_id: Some(d),
            created: "2020-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn round_trips_and_rejects_what_is_malformed() {
        let key = "a".repeat(64);
        let entries = BTreeMap::from([(key.clone(), entry(b"x"))]);
        let bytes = encode(&entries);
        let layers = vec![entries[&key].layer.clone().unwrap()];
        assert_eq!(decode(&bytes, &layers).unwrap(), entries);
        assert!(decode(&bytes, &[]).is_err(), "a layer outside the manifest");
        assert!(decode(b"{", &layers).is_err());
        assert!(decode(br#"{"version":2,"entries":{}}"#, &layers).is_err());
        let bad_key = encode(&BTreeMap::from([("../x".to_string(), entry(b"x"))]));
        assert!(decode(&bad_key, &layers).is_err());
        let mut half = entry(b"x");
        half.diff_id = None;
        assert!(decode(&encode(&BTreeMap::from([(key.clone(), half)])), &layers).is_err());
        let mut not_layer = entry(b"x");
        not_layer.layer.as_mut().unwrap().media_type = media_type::OCI_MANIFEST.into();
        assert!(decode(&encode(&BTreeMap::from([(key, not_layer)])), &layers).is_err());
    }
}
