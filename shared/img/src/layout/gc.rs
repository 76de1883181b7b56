//! Garbage collection of a layout: mark from every descriptor in `index.json`, sweep the rest.
//!
//! Safe against concurrent writers through the layout's GC lock (see [`super::lock`]): GC waits until
//! no writer is between its first blob and its ref update, and writers wait while GC runs.

use anyhow::{Context, Result};

use super::Layout;
use super::graph;
use crate::digest::Digest;

#[derive(Debug, Default)]
pub struct Collected {
    /// The blobs removed, with their sizes.
    pub removed: Vec<(Digest, u64)>,
}

impl Collected {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|(_, n)| n).sum()
    }
}

/// Removes every blob not reachable from `index.json`. If any root cannot be read, nothing is
/// removed: the error says which. Nor is anything removed from a layout whose own directories
/// or lock files are symlinks (or not what they must be): collection never leaves the layout.
pub fn collect(layout: &Layout) -> Result<Collected> {
    layout.check_own_files()?;
    let _gc = layout.lock_for_gc()?;
    let _index = layout.lock_index()?;
    let index = layout.read_index()?;
    let live = graph::reachable(layout, index.entries()).context("garbage collection refused")?;
    let mut collected = Collected::default();
    for (digest, size) in layout.list_blobs()? {
        if !live.digests.contains(&digest) {
            layout.remove_blob(&digest)?;
            collected.removed.push((digest, size));
        }
    }
    layout.remove_stale_temp_files()?;
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::document::to_canonical_json;
    use crate::layout::graph;
    use crate::media_type;
    use crate::summary;
    use crate::test_image::{BuiltIndex, TestImage};

    fn sample(seed: &str) -> TestImage {
        TestImage::sample(seed)
    }

    #[test]
    fn gc_keeps_what_refs_reach_and_sweeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let a = sample("a").build();
        let b = sample("b").build();
        let multi =
            BuiltIndex::new(vec![sample("c").build(), sample("c").platform("linux/arm64").build()], false);
        a.write_to(&layout, Some("a:1")).unwrap();
        b.write_to(&layout, Some("b:1")).unwrap();
        multi.write_to(&layout, Some("m:1")).unwrap();
        let stray = layout.put_bytes(b"stray").unwrap();

        let collected = collect(&layout).unwrap();
        assert_eq!(collected.removed.iter().map(|(d, _)| d).collect::<Vec<_>>(), [&stray]);

        layout
            .update_index(|i| {
                let at = i.find("b:1");
                Ok(i.remove(&at))
            })
            .unwrap();
        let collected = collect(&layout).unwrap();
        // b's manifest, config and its own layer go; nothing of a's or the index's does.
        let removed: Vec<_> = collected.removed.iter().map(|(d, _)| d.clone()).collect();
        for blob in b.blobs() {
            assert!(removed.contains(&blob.descriptor.digest));
        }
        for blob in a.blobs().into_iter().chain(multi.blobs()) {
            assert!(layout.has_blob(&blob.descriptor.digest), "swept a live blob");
        }
        let live = graph::reachable(&layout, layout.read_index().unwrap().entries()).unwrap();
        assert_eq!(live.digests.len(), layout.list_blobs().unwrap().len());

        let s = summary::summarise(&layout, &multi.index.descriptor).unwrap();
        assert_eq!(s.platforms.len(), 2);
        assert_eq!(s.layers, 1, "both platforms share one layer");
    }

    #[test]
    fn gc_refuses_when_a_root_manifest_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let a = sample("a").build();
        a.write_to(&layout, Some("a:1")).unwrap();
        let stray = layout.put_bytes(b"stray").unwrap();
        layout.remove_blob(&a.manifest.descriptor.digest).unwrap();
        let err = format!("{:#}", collect(&layout).unwrap_err());
        assert!(err.contains("missing"), "{err}");
        assert!(layout.has_blob(&stray) && layout.has_blob(&a.config.descriptor.digest));
    }

    #[test]
    fn gc_follows_subject() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let base = sample("a").build();
        base.write_to(&layout, None).unwrap();
        let empty = layout.put_document(media_type::OCI_EMPTY, b"{}").unwrap();
        let referrer = json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "artifactType": "application/example", "config": empty, "layers": [],
            "subject": base.manifest.descriptor,
        });
        let desc = layout.put_document(media_type::OCI_MANIFEST, &to_canonical_json(&referrer)).unwrap();
        layout.set_ref("sig:1", &desc).unwrap();
        assert!(collect(&layout).unwrap().removed.is_empty());
        assert!(layout.has_blob(&base.layers[0].descriptor.digest));
    }
}
