//! Wasted bytes, in the spirit of `dive`: the files a layer adds that a later layer deletes
//! (a whiteout, an opaque directory, a file put where a directory was) or overwrites. Their
//! bytes still travel with the image in the layer that added them: the cost of not cleaning up
//! in the same `RUN`.
//!
//! Only tar headers are read (each layer is streamed through its decompressor once, file
//! contents skipped), and each layer's compressed bytes are checked against its descriptor
//! (size and digest) as they stream. A layer is untrusted: the entries kept in memory are
//! capped ([`MAX_ENTRIES`]).

use std::collections::BTreeMap;
use std::io::{self, Read};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::digest::{Expected, HashingReader};
use crate::document::Descriptor;
use crate::layer::compression;

/// The most regular files tracked across an image's layers; real images hold tens of
/// thousands.
pub const MAX_ENTRIES: usize = 4_000_000;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";

/// One file a later layer removed or replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WastedFile {
    /// Absolute path in the image (`/var/cache/big`).
    pub path: String,
    /// Its size in the layer that added it (uncompressed).
    pub size: u64,
    /// The position (from 0, in the manifest's `layers`) of the layer that added it.
    pub added_in: usize,
    /// The position of the layer that removed or overwrote it.
    pub removed_in: usize,
    /// `deleted` (a whiteout), `opaque` (an opaque directory above it), `overwritten` (the
    /// same path again) or `replaced` (a parent directory became something else).
    pub how: &'static str,
}

/// What a walk of an image's layers found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Wasted {
    /// The sum of the sizes of `files`.
    pub bytes: u64,
    pub files: Vec<WastedFile>,
}

#[derive(Clone, Copy, Debug)]
struct Present {
    size: u64,
    layer: usize,
}

/// The walk's state: every regular file present so far, by path (without a leading `/`).
#[derive(Default)]
struct Walk {
    present: BTreeMap<String, Present>,
    wasted: Wasted,
}

impl Walk {
    fn waste(&mut self, path: &str, was: Present, removed_in: usize, how: &'static str) {
        self.wasted.bytes += was.size;
        self.wasted.files.push(WastedFile {
            path: format!("/{path}"),
            size: was.size,
            added_in: was.layer,
            removed_in,
            how,
        });
    }

    /// Removes `path` and everything under it that lower layers (before `layer`) added.
    fn remove_tree(&mut self, path: &str, layer: usize, how: &'static str) {
        if let Some(p) = self.present.get(path).copied()
            && p.layer < layer
        {
            self.present.remove(path);
            self.waste(path, p, layer, how);
        }
        self.remove_under(path, layer, how);
    }

    /// Removes everything under the directory `dir` ("" for the root) from lower layers.
    fn remove_under(&mut self, dir: &str, layer: usize, how: &'static str) {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let under: Vec<(String, Present)> = self
            .present
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, p)| p.layer < layer)
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        for (k, p) in under {
            self.present.remove(&k);
            self.waste(&k, p, layer, how);
        }
    }

    fn entry(&mut self, layer: usize, path: &str, kind: tar::EntryType, size: u64) -> Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name == OPAQUE {
            self.remove_under(dir, layer, "opaque");
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(".wh.") || hidden.is_empty() {
                return Ok(()); // AUFS bookkeeping (.wh..wh.plnk and the like)
            }
            let target = if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") };
            self.remove_tree(&target, layer, "deleted");
            return Ok(());
        }
        // A new entry at a path replaces what was there, in this layer or below.
        if let Some(p) = self.present.remove(path) {
            self.waste(path, p, layer, "overwritten");
        }
        if !kind.is_dir() {
            // A file, link or device where a directory was hides the directory's files.
            self.remove_under(path, layer, "replaced");
        }
        if kind.is_file() || kind == tar::EntryType::Continuous {
            if self.present.len() >= MAX_ENTRIES {
                bail!("more than {MAX_ENTRIES} files in the image's layers");
            }
            self.present.insert(path.to_string(), Present { size, layer });
        }
        Ok(())
    }
}

/// A tar path as the walk keys it: no leading `/` or `./`, no trailing `/`, no `.` parts.
fn normalise(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Walks `layers` in order; `open` gives each layer's compressed bytes (from a layout or a
/// registry). Each layer is checked against its descriptor's size and digest.
pub fn analyse(
    layers: &[Descriptor],
    mut open: impl FnMut(&Descriptor) -> Result<Box<dyn Read + Send>>,
) -> Result<Wasted> {
    let mut walk = Walk::default();
    for (i, desc) in layers.iter().enumerate() {
        compression::check_media_type(&desc.media_type).with_context(|| format!("layer {}", desc.digest))?;
        let raw = open(desc).with_context(|| format!("layer {}", desc.digest))?;
        walk_layer(&mut walk, i, desc, raw).with_context(|| format!("layer {}", desc.digest))?;
    }
    Ok(walk.wasted)
}

fn walk_layer(walk: &mut Walk, index: usize, desc: &Descriptor, raw: Box<dyn Read + Send>) -> Result<()> {
    // One byte more than declared is read at most: enough to see that it is too long.
    let mut hashing = HashingReader::new(raw.take(desc.size.saturating_add(1)), desc.digest.algorithm());
    {
        let mut plain = compression::decompress(&mut hashing)?;
        {
            let mut archive = tar::Archive::new(&mut plain);
            for entry in archive.entries().context("reading the layer's tar")? {
                let entry = entry.context("reading the layer's tar")?;
                let Some(path) = normalise(&entry.path_bytes()) else { continue };
                let kind = entry.header().entry_type();
                walk.entry(index, &path, kind, entry.size())?;
            }
        }
        // What follows the archive's end (padding) is read too, so the whole blob is hashed.
        io::copy(&mut plain, &mut io::sink()).context("reading the layer")?;
    }
    io::copy(&mut hashing, &mut io::sink()).context("reading the layer")?;
    let (digest, size) = hashing.finish();
    Expected::new(&desc.digest, desc.size).check(&digest, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::{Entry, Layer, TestImage};

    fn wasted(layers: Vec<Layer>) -> Wasted {
        let img = layers.into_iter().fold(TestImage::new(), |i, l| i.layer(l)).build();
        let descriptors: Vec<Descriptor> = img.layers.iter().map(|b| b.descriptor.clone()).collect();
        let blobs = img.layers.clone();
        analyse(&descriptors, |d| {
            let b = blobs.iter().find(|b| b.descriptor.digest == d.digest).unwrap();
            Ok(Box::new(io::Cursor::new(b.bytes.clone())))
        })
        .unwrap()
    }

    #[test]
    fn deletions_overwrites_and_opaque_directories() {
        let w = wasted(vec![
            Layer::new([
                Entry::dir("a"),
                Entry::file("a/big", vec![0u8; 1000]),
                Entry::file("keep", "k"),
                Entry::file("over", vec![1u8; 300]),
                Entry::dir("d"),
                Entry::file("d/x", vec![2u8; 20]),
                Entry::file("d/y", vec![2u8; 30]),
            ]),
            Layer::new([Entry::whiteout("a/big"), Entry::file("over", "new")]),
            Layer::new([Entry::opaque("d"), Entry::file("d/z", "z")]),
        ]);
        let found: Vec<(&str, u64, usize, usize, &str)> =
            w.files.iter().map(|f| (f.path.as_str(), f.size, f.added_in, f.removed_in, f.how)).collect();
        assert_eq!(
            found,
            [
                ("/a/big", 1000, 0, 1, "deleted"),
                ("/over", 300, 0, 1, "overwritten"),
                ("/d/x", 20, 0, 2, "opaque"),
                ("/d/y", 30, 0, 2, "opaque"),
            ]
        );
        assert_eq!(w.bytes, 1350);
    }

    #[test]
    fn a_deleted_directory_takes_its_files_and_same_layer_entries_survive_whiteouts() {
        let w = wasted(vec![
            Layer::new([Entry::dir("t"), Entry::file("t/1", "11"), Entry::file("t/2", "222")]),
            Layer::new([Entry::whiteout("t"), Entry::dir("t"), Entry::file("t/3", "3333")]),
            Layer::new([Entry::file("t", "now a file")]),
        ]);
        let found: Vec<(&str, usize, usize, &str)> =
            w.files.iter().map(|f| (f.path.as_str(), f.added_in, f.removed_in, f.how)).collect();
        assert_eq!(found, [("/t/1", 0, 1, "deleted"), ("/t/2", 0, 1, "deleted"), ("/t/3", 1, 2, "replaced")]);
        assert_eq!(w.bytes, 9);
    }

    #[test]
    fn a_layer_that_is_not_what_its_descriptor_says_is_refused() {
        let img = TestImage::new().layer(Layer::new([Entry::file("f", "x")])).build();
        let mut desc = img.layers[0].descriptor.clone();
        desc.size += 1;
        let bytes = img.layers[0].bytes.clone();
        let err = analyse(&[desc], |_| Ok(Box::new(io::Cursor::new(bytes.clone())))).unwrap_err();
        assert!(format!("{err:#}").contains("size mismatch"), "{err:#}");
    }
}
