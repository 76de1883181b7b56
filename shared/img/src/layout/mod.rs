//! The OCI image layout store: `oci-layout`, `index.json` and `blobs/<alg>/<hex>`.
//!
//! Every write is crash-safe. A blob is written to a temp file inside the layout (same
//! filesystem), hashed while written, verified, synced and renamed into place, so `blobs/` never
//! holds a partial or wrong blob. `index.json` is rewritten to a temp file and renamed under an
//! exclusive lock, so concurrent writers never lose each other's refs.
//!
//! Our bookkeeping lives in `.img/` inside the layout (locks, temp files, partial downloads);
//! other tools ignore it.
//!
//! A layout is untrusted input (one given with `--layout` may come from anywhere), and so is
//! everything in it. The layout's directory is opened once; every file inside it is reached
//! from that descriptor with `*at` calls that never follow a symlink, and every file read must be
//! a regular file (opened `O_NONBLOCK`, so a FIFO cannot block us). A symlink where one of the
//! layout's own directories or files belongs is refused, never followed: it could lead reads,
//! writes, lock files and garbage collection anywhere on the host. Documents read whole are
//! capped in size (see [`crate::document::MAX_MANIFEST_BYTES`] and the others).
//!
//! Locking ([`lock`]): `.img/index.lock` around every change of `index.json`, `.img/gc.lock`
//! shared by writers and exclusive for garbage collection ([`gc`]), so GC never sweeps a blob
//! that a ref is about to point at.
//!
//! One concept per file: [`Layout`] itself (opening, creating, its own directories), blobs,
//! partial downloads, temp files, `index.json`, the ref names in it ([`ref_names`]), locks,
//! confined file access, and on top the image graph ([`graph`]), garbage collection ([`gc`])
//! and finding the image a name denotes ([`resolve`]).

mod blobs;
pub(crate) mod confined;
pub mod gc;
pub mod graph;
mod index;
pub mod lock;
mod open;
mod partial;
pub mod ref_names;
pub mod resolve;
mod temp_file;
#[cfg(test)]
mod tests;

use crate::digest::Algorithm;

pub use blobs::BlobWriter;
pub use index::IndexFile;
pub use lock::LockGuard;
pub use open::Layout;
pub use partial::PartialBlob;

const LAYOUT_VERSION_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// `oci-layout` holds one small JSON object.
const MAX_LAYOUT_VERSION_BYTES: u64 = 64 << 10;
const INDEX_FILE: &str = "index.json";
const EMPTY_INDEX: &str = r#"{"schemaVersion":2,"manifests":[]}"#;
const PRIVATE_DIR: &str = ".img";
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];
