//! Lock files: files that exist to be `flock`ed (the layout's gc and index locks, the snapshots'
//! lock, a running container's lock), opened the same way everywhere.

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context, Result};

/// Opens (creating if need be) the lock file at `path`, without touching its content.
pub fn open(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}

/// Takes `file`'s exclusive lock if nobody holds it; `false` if somebody does.
pub fn try_exclusive(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}
