//! `--layout DIR`, the flag every tool takes to work on an OCI image layout other than the
//! store's.

use std::path::PathBuf;

/// `--layout DIR`, flattened into every tool's arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct LayoutArg {
    /// The OCI image layout to use (default: the store's, under $IMG_ROOT or
    /// ~/.local/share/img)
    #[arg(long, value_name = "DIR", env = "IMG_LAYOUT")]
    pub layout: Option<PathBuf>,
}
