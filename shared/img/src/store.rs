//! The default store: `$IMG_ROOT`, else `${XDG_DATA_HOME:-$HOME/.local/share}/img`. It holds
//! the default OCI image layout (`layout/`) and the caches the tools own.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The store's root directory.
pub fn root() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var("IMG_ROOT") {
        return Ok(root);
    }
    if let Some(data) = var("XDG_DATA_HOME") {
        return Ok(data.join("img"));
    }
    match var("HOME") {
        Some(home) => Ok(home.join(".local/share/img")),
        None => bail!("cannot find the store: set IMG_ROOT or HOME"),
    }
}

/// The store's default layout.
pub fn default_layout() -> Result<PathBuf> {
    Ok(root()?.join("layout"))
}

/// The layout a tool works on: `--layout` if given, else the layout a stdin record names,
/// else the store's default.
pub fn choose_layout(flag: Option<&Path>, from_record: Option<&Path>) -> Result<PathBuf> {
    match flag.or(from_record) {
        Some(p) => Ok(p.to_path_buf()),
        None => default_layout(),
    }
}
