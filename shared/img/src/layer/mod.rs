//! Image layers, both ways: creating one from a directory of changes, applying one to a
//! directory, their compression, and unpacking an image's layers in order.
//!
//! - [`compression`]: which decoder a layer needs (tar, gzip incl. multi-member, zstd).
//! - [`root`]: resolving paths inside a directory as if it were `/` (`openat2`
//!   `RESOLVE_IN_ROOT`), so nothing a layer says can reach outside it.
//! - [`apply`]: applying one layer tar to a directory with the OCI image-spec rules
//!   (whiteouts, opaque directories, overwrites, hardlinks, owners, modes, times, xattrs),
//!   writing whiteouts either as real deletions or in overlayfs form.
//! - [`create`]: a layer tar from a directory of changes (an overlay upper directory, a
//!   staging directory), deterministic, overlay whiteouts turned into `.wh.` entries.
//! - [`unpack`]: every layer of an image in order, decompressing the next while applying the
//!   current one, each checked against its diff_id.

pub mod apply;
pub mod compression;
pub mod create;
pub mod root;
pub mod unpack;
