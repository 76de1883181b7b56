//! The build cache: what a layer-making step produced, by the step's key. A key chains the
//! parent state's key with everything the step depends on (the expanded instruction, the
//! environment it runs in, the digest of the files it copies), so an unchanged step finds its
//! layer and a changed one, or anything after it, misses.
//!
//! Entries also come from caches other builds exported (`--cache-from`, [`transfer`]): their
//! layers are fetched only when a step hits them, verified by digest. Every entry a build
//! hits or stores is remembered, for `--cache-to` to export ([`format`] says how).

pub mod format;
pub mod transfer;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use img::digest::{Algorithm, Digest, Hasher};
use img::document::Descriptor;
use img::layout::Layout;
use serde::{Deserialize, Serialize};

/// A key: the digest of the parent key and the step's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(pub Digest);

impl Key {
    /// The key of a stage's starting point (a base image manifest, or scratch).
    pub fn root(base: &str) -> Key {
        Key(Digest::of(format!("img-build/v1\0{base}").as_bytes()))
    }

    /// The key after a step with these inputs.
    pub fn then(&self, inputs: &[&str]) -> Key {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(self.0.to_string().as_bytes());
        for i in inputs {
            h.update(&(i.len() as u64).to_le_bytes());
            h.update(i.as_bytes());
        }
        Key(h.finish())
    }
}

/// What a cached step made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The layer, or none when the step changed no files.
    pub layer: Option<Descriptor>,
    pub diff_id: Option<Digest>,
    /// When the step first ran: reused so an unchanged rebuild gives the same image.
    pub created: String,
}

pub struct Cache {
    dir: PathBuf,
    /// Caches imported with `--cache-from`, in the order given: the first that has a key wins.
    imported: Vec<transfer::Imported>,
    /// Every entry this build hit or stored, by key (hex), for `--cache-to`.
    used: Mutex<BTreeMap<String, Entry>>,
    /// `--cache-to type=inline`: the image carries its own cache entries.
    pub inline: bool,
}

impl Cache {
    pub fn open(store_root: &Path) -> Result<Cache> {
        let dir = store_root.join("build-cache");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Cache { dir, imported: Vec::new(), used: Mutex::new(BTreeMap::new()), inline: false })
    }

    /// Makes an imported cache's entries available to [`Cache::get`].
    pub fn add_import(&mut self, imported: transfer::Imported) {
        self.imported.push(imported);
    }

    /// The entries this build hit or stored so far, by key.
    pub fn used(&self) -> BTreeMap<String, Entry> {
        self.used.lock().expect("cache lock").clone()
    }

    fn remember(&self, key: &Key, entry: &Entry) {
        self.used.lock().expect("cache lock").insert(key.0.hex().to_string(), entry.clone());
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(key.0.hex())
    }

    /// The entry for a key, if its layer is still in the layout (GC may have removed it), or
    /// else from an imported cache, whose layer is then fetched into the layout.
    pub fn get(&self, key: &Key, layout: &Layout) -> Option<Entry> {
        let entry = self.get_local(key, layout).or_else(|| self.get_imported(key, layout))?;
        self.remember(key, &entry);
        Some(entry)
    }

    fn get_imported(&self, key: &Key, layout: &Layout) -> Option<Entry> {
        for imported in &self.imported {
            let Some(entry) = imported.entries.get(key.0.hex()) else { continue };
            if let Some(layer) = &entry.layer
                && !layout.has_blob(&layer.digest)
                && let Err(e) = imported.source.fetch(layout, layer)
            {
                eprintln!(
                    "img-build: warning: cache {}: layer {}: {}",
                    imported.name,
                    layer.digest,
                    format!("{e:#}").replace('\n', " ")
                );
                continue;
            }
            // Kept locally too, so the next build needs no import.
            let _ = self.store(key, entry);
            return Some(entry.clone());
        }
        None
    }

    fn get_local(&self, key: &Key, layout: &Layout) -> Option<Entry> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        match &entry.layer {
            Some(l) if !layout.has_blob(&l.digest) => None,
            _ => Some(entry),
        }
    }

    pub fn put(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.remember(key, entry);
        self.store(key, entry)
    }

    fn store(&self, key: &Key, entry: &Entry) -> Result<()> {
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        fs::write(tmp.path(), serde_json::to_vec(entry)?)?;
        tmp.persist(self.path(key)).context("writing a build cache entry")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_entries_need_their_layer() {
        let a = Key::root("scratch");
        assert_eq!(a.then(&["RUN", "x"]), Key::root("scratch").then(&["RUN", "x"]));
        assert_ne!(a.then(&["RUN", "x"]), a.then(&["RUN", "y"]));
        assert_ne!(a.then(&["RU", "Nx"]), a.then(&["RUN", "x"]), "inputs are length-prefixed");

        let store = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(store.path().join("layout")).unwrap();
        let cache = Cache::open(store.path()).unwrap();
        let digest = layout.put_bytes(b"layer").unwrap();
        let entry = Entry {
            layer: Some(Descriptor::new(img::media_type::OCI_LAYER, digest.clone(), 5)),
            diff_id: Some(digest.clone()),
            created: "t".into(),
        };
        cache.put(&a, &entry).unwrap();
        assert_eq!(cache.get(&a, &layout).unwrap().created, "t");
        layout.remove_blob(&digest).unwrap();
        assert!(cache.get(&a, &layout).is_none());
    }
}
