//! `index.json`: read (capped, a regular file of the layout), changed under the exclusive index
//! lock and replaced atomically, kept as JSON so fields we do not know survive a rewrite.

use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use super::confined::{open_regular, read_capped, sync_dir};
use super::{ALGORITHMS, EMPTY_INDEX, INDEX_FILE, Layout, ref_names};
use crate::document::{self, Descriptor, REF_NAME_ANNOTATION};

impl Layout {
    /// Reads `index.json`. A missing file reads as empty; a corrupt one is an error, and so is
    /// one that is not a regular file of the layout or is over [`document::MAX_INDEX_JSON_BYTES`].
    pub fn read_index(&self) -> Result<IndexFile> {
        let path = self.index_path();
        let bytes = match open_regular(self.fd(), INDEX_FILE, &path.display())? {
            Some(file) => read_capped(file, document::MAX_INDEX_JSON_BYTES, &path.display(), "index.json")?,
            None => EMPTY_INDEX.as_bytes().to_vec(),
        };
        IndexFile::parse(&bytes).with_context(|| format!("{}: corrupt index", path.display()))
    }

    /// Read-modify-write of `index.json` under the exclusive index lock. The file is replaced
    /// atomically, and only if `change` succeeds.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
        self.check_own_files()?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let result = change(&mut index)?;
        // Blob renames must be durable before an index.json that names them is: one directory
        // sync here covers every blob written since the last update.
        for alg in ALGORITHMS {
            if let Some(dir) = self.blob_dir(alg)? {
                sync_dir(dir.as_fd());
            }
        }
        self.write_atomically(INDEX_FILE, &index.to_bytes())?;
        Ok(result)
    }

    /// Points `name` at `descriptor`, replacing any entry that names the same image.
    pub fn set_ref(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        self.update_index(|index| {
            index.set_ref(name, descriptor);
            Ok(())
        })
    }
}

/// `index.json`, kept as JSON so fields we do not know survive a rewrite: the document's own
/// and those of each entry (`data`, `platform.os.features`, …), which are written back as read.
#[derive(Clone, Debug)]
pub struct IndexFile {
    doc: Map<String, Value>,
    entries: Vec<Descriptor>,
    /// Each entry as it was read; `None` for entries made here.
    raw: Vec<Option<Value>>,
}

impl IndexFile {
    fn parse(bytes: &[u8]) -> Result<IndexFile> {
        let doc: Map<String, Value> = serde_json::from_slice(bytes)?;
        let manifests = match doc.get("manifests") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => bail!("\"manifests\" is not an array"),
        };
        let entries = manifests
            .iter()
            .enumerate()
            .map(|(i, m)| serde_json::from_value(m.clone()).with_context(|| format!("manifests[{i}]")))
            .collect::<Result<_>>()?;
        Ok(IndexFile { doc, entries, raw: manifests.into_iter().map(Some).collect() })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut doc = self.doc.clone();
        doc.insert("schemaVersion".into(), Value::from(2));
        let entries = self.entries.iter().zip(&self.raw).map(|(d, raw)| {
            raw.clone().unwrap_or_else(|| serde_json::to_value(d).expect("descriptors serialise"))
        });
        doc.insert("manifests".into(), Value::Array(entries.collect()));
        serde_json::to_vec(&doc).expect("values serialise")
    }

    /// The descriptors listed in the index, in order.
    pub fn entries(&self) -> &[Descriptor] {
        &self.entries
    }

    /// Indexes of the entries a query names, every match of a digest prefix included (see
    /// [`super::resolve::lookup`]; [`super::resolve::find`] also says why a name is wrong).
    pub fn find(&self, query: &str) -> Vec<usize> {
        super::resolve::lookup(&self.entries, query)
    }

    pub fn set_ref(&mut self, name: &str, descriptor: &Descriptor) {
        let replaced: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].ref_name().is_some_and(|n| ref_names::same_image(n, name)))
            .collect();
        self.remove(&replaced);
        let mut entry = descriptor.clone();
        entry.annotations.insert(REF_NAME_ANNOTATION.into(), name.to_string());
        self.entries.push(entry);
        self.raw.push(None);
    }

    /// Adds an entry without a name (a referrer kept beside its subject, see
    /// [`crate::registry::referrers`]) unless an unnamed entry for that digest is there.
    pub fn add_unnamed(&mut self, descriptor: &Descriptor) {
        let there = self.entries.iter().any(|e| e.ref_name().is_none() && e.digest == descriptor.digest);
        if !there {
            let mut entry = descriptor.clone();
            entry.annotations.remove(REF_NAME_ANNOTATION);
            self.entries.push(entry);
            self.raw.push(None);
        }
    }

    /// Removes the entries at the given positions and returns them.
    pub fn remove(&mut self, positions: &[usize]) -> Vec<Descriptor> {
        let mut removed = Vec::new();
        let (mut entries, mut raw) = (Vec::new(), Vec::new());
        for (i, (e, r)) in self.entries.drain(..).zip(self.raw.drain(..)).enumerate() {
            if positions.contains(&i) {
                removed.push(e);
            } else {
                entries.push(e);
                raw.push(r);
            }
        }
        (self.entries, self.raw) = (entries, raw);
        removed
    }
}
