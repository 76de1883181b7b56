//! Walking the graph of an image: index → manifests → config and layers (and `subject`s).

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use crate::digest::Digest;
use crate::document::{self, Descriptor};
use crate::layout::Layout;
use crate::media_type::Kind;

/// Every digest reachable from a set of roots.
#[derive(Debug, Default)]
pub struct Reachable {
    pub digests: BTreeSet<Digest>,
    /// Children of an index that are not in the layout (a single-platform copy of a
    /// multi-platform image keeps the index but not every child). Not an error.
    pub absent: BTreeSet<Digest>,
}

/// Marks everything reachable from `roots`. A root manifest or index that is missing, corrupt
/// or malformed is an error, since what it points at cannot be known; missing children of an
/// index, configs and layers are leaves and are only recorded.
pub fn reachable(layout: &Layout, roots: &[Descriptor]) -> Result<Reachable> {
    let mut seen = Reachable::default();
    let mut stack: Vec<(Descriptor, bool)> = roots.iter().map(|d| (d.clone(), true)).collect();
    while let Some((desc, required)) = stack.pop() {
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
        let bytes =
            layout.read_blob(&desc.digest).with_context(|| format!("{} {}", kind_name(kind), desc.digest))?;
        match kind {
            Kind::Index => {
                let index =
                    document::parse_index(&bytes).with_context(|| format!("index {}", desc.digest))?;
                stack.extend(index.manifests.into_iter().map(|m| (m, false)));
                stack.extend(index.subject.map(|s| (s, false)));
            }
            Kind::Manifest => {
                let m =
                    document::parse_manifest(&bytes).with_context(|| format!("manifest {}", desc.digest))?;
                stack.push((m.config, false));
                stack.extend(m.layers.into_iter().map(|l| (l, false)));
                stack.extend(m.subject.map(|s| (s, false)));
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
