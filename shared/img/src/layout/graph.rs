//! Walking the graph of an image: index → manifests → config and layers (and `subject`s).

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};

use super::Layout;
use crate::digest::Digest;
use crate::document::{self, Descriptor, MAX_NESTING};
use crate::media_type::{self, Kind};

/// Every digest reachable from a set of roots.
#[derive(Debug, Default)]
pub struct Reachable {
    pub digests: BTreeSet<Digest>,
    /// Children of an index that are not in the layout (a single-platform copy of a
    /// multi-platform image keeps the index but not every child). Not an error.
    pub absent: BTreeSet<Digest>,
    /// The image configs among `digests`.
    pub configs: BTreeSet<Digest>,
}

impl Reachable {
    /// The layers' diff_ids, from every config that is in the layout.
    pub fn diff_ids(&self, layout: &Layout) -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        for digest in &self.configs {
            let Ok(bytes) = layout.read_blob(digest) else { continue };
            let Ok(config) = document::parse_config(&bytes) else { continue };
            out.extend(config.rootfs.map(|r| r.diff_ids).unwrap_or_default());
        }
        out
    }
}

/// Marks everything reachable from `roots`. A root manifest or index that is missing, corrupt
/// or malformed is an error, since what it points at cannot be known; missing children of an
/// index, configs and layers are leaves and are only recorded. Documents nested more than
/// [`MAX_NESTING`] deep are an error too.
pub fn reachable(layout: &Layout, roots: &[Descriptor]) -> Result<Reachable> {
    let mut seen = Reachable::default();
    // Each descriptor with whether it must be there and how deep below its root it is.
    let mut stack: Vec<(Descriptor, bool, usize)> = roots.iter().map(|d| (d.clone(), true, 0)).collect();
    while let Some((desc, required, depth)) = stack.pop() {
        if !seen.digests.insert(desc.digest.clone()) {
            continue;
        }
        let kind = desc.kind();
        if kind == Kind::Blob {
            continue;
        }
        if !required && !layout.has_blob(&desc.digest) {
            seen.absent.insert(desc.digest.clone());
            continue;
        }
        if depth >= MAX_NESTING {
            bail!("{} {}: documents nested more than {MAX_NESTING} deep", kind_name(kind), desc.digest);
        }
        let bytes =
            layout.read_document(&desc).with_context(|| format!("{} {}", kind_name(kind), desc.digest))?;
        let child = |d: Descriptor| (d, false, depth + 1);
        match kind {
            Kind::Index => {
                let index =
                    document::parse_index(&bytes).with_context(|| format!("index {}", desc.digest))?;
                stack.extend(index.manifests.into_iter().map(child));
                stack.extend(index.subject.map(child));
            }
            Kind::Manifest => {
                let m =
                    document::parse_manifest(&bytes).with_context(|| format!("manifest {}", desc.digest))?;
                if media_type::is_image_config(&m.config.media_type) {
                    seen.configs.insert(m.config.digest.clone());
                }
                stack.push(child(m.config));
                stack.extend(m.layers.into_iter().map(child));
                stack.extend(m.subject.map(child));
            }
            Kind::Blob => unreachable!(),
        }
    }
    Ok(seen)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Index => "index",
        Kind::Manifest => "manifest",
        Kind::Blob => "blob",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::to_canonical_json;
    use crate::media_type;
    use crate::test_image::{BuiltIndex, Entry, Layer, TestImage};

    fn image(content: &str, platform: &str) -> crate::test_image::BuiltImage {
        TestImage::new().platform(platform).layer(Layer::new([Entry::file("f", content)])).build()
    }

    #[test]
    fn walks_nested_indexes_and_docker_lists_and_records_absent_children() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let amd = image("a", "linux/amd64");
        let arm = image("b", "linux/arm64");
        let inner = BuiltIndex::new(vec![amd.clone(), arm.clone()], true);
        // Store the inner list and amd only: arm is absent, as in a single-platform copy.
        layout.put_bytes(&inner.index.bytes).unwrap();
        amd.write_to(&layout, None).unwrap();
        let outer = serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
            "manifests": [inner.index.descriptor],
        });
        let outer = layout.put_document(media_type::OCI_INDEX, &to_canonical_json(&outer)).unwrap();

        let r = reachable(&layout, std::slice::from_ref(&outer)).unwrap();
        let mut want: BTreeSet<Digest> = amd.blobs().iter().map(|b| b.descriptor.digest.clone()).collect();
        want.extend([
            outer.digest.clone(),
            inner.index.descriptor.digest.clone(),
            arm.manifest.descriptor.digest.clone(),
        ]);
        assert_eq!(r.digests, want, "arm's config and layer cannot be known, its manifest is named");
        assert_eq!(r.absent, BTreeSet::from([arm.manifest.descriptor.digest.clone()]));
    }

    #[test]
    fn a_present_but_corrupt_child_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let amd = image("a", "linux/amd64");
        let index = BuiltIndex::new(vec![amd.clone()], false);
        index.write_to(&layout, None).unwrap();
        std::fs::write(layout.blob_path(&amd.manifest.descriptor.digest), b"{}").unwrap();
        let err =
            format!("{:#}", reachable(&layout, std::slice::from_ref(&index.index.descriptor)).unwrap_err());
        assert!(
            err.contains("corrupt") && err.contains(&amd.manifest.descriptor.digest.to_string()),
            "{err}"
        );
    }
}
