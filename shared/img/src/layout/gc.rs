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
