//! The library behind the img tools. Each module is one concept; the tools' `main.rs` files
//! parse flags, call into here and print records.

pub mod archive;
pub mod bundle;
pub mod digest;
pub mod document;
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod media_type;
pub mod path;
pub mod platform;
pub mod record;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod summary;
// Test images are built from the host's busybox: for tests only, never in a shipped tool.
#[cfg(any(test, feature = "test-support"))]
pub mod test_image;
