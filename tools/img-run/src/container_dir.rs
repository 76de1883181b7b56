//! A container's own directory in the store, `containers/<id>/`: its writable layer and
//! generated /etc files, removed when the run ends unless kept (`--keep`).
//!
//! img-run holds `containers/<id>.lock` from before it makes the directory until after it has
//! removed it. A directory whose lock nobody holds was left by an img-run that was killed
//! (SIGKILL, the OOM killer: its container died with it) and is swept by the next img-run,
//! with the cgroups it made. Kept directories carry a `kept` marker and stay.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use img::layer::apply::remove_dir_tree;
use img::layout::lock;
use img::runtime::cgroup::Cgroup;

const KEPT: &str = "kept";

pub struct ContainerDir {
    pub path: PathBuf,
    keep: bool,
    lock_path: PathBuf,
    _lock: File,
}

impl ContainerDir {
    /// Claims `<containers>/<id>`; an error if a running or kept container has that name.
    pub fn create(containers: &Path, id: &str, keep: bool) -> Result<ContainerDir> {
        fs::create_dir_all(containers).context("creating the containers directory")?;
        let lock_path = containers.join(format!("{id}.lock"));
        let path = containers.join(id);
        let Some(lock) = claim(&lock_path)? else {
            bail!("a container named {id} is running ({})", path.display());
        };
        if path.join(KEPT).exists() {
            bail!("a container named {id} exists ({}): remove it first", path.display());
        }
        if path.exists() {
            remove_leftover(&path, id); // the same name, from a run that was killed
        }
        fs::create_dir(&path)
            .with_context(|| format!("a container named {id} exists ({})", path.display()))?;
        if keep {
            fs::write(path.join(KEPT), "").context("marking the container kept")?;
        }
        Ok(ContainerDir { path, keep, lock_path, _lock: lock })
    }
}

impl Drop for ContainerDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "img-run: kept the container's writable layer in {}",
                self.path.join("upper").display()
            );
            let _ = fs::remove_dir_all(self.path.join("work"));
        } else {
            let _ = remove_dir_tree(&self.path);
        }
        // Still locked: whoever opens the old file next finds it unlinked and starts over.
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes what killed img-runs left in `<containers>`. Best effort: a failure here must not
/// stop the run that is starting.
pub fn sweep(containers: &Path) {
    let Ok(entries) = fs::read_dir(containers) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || path.join(KEPT).exists() {
            continue;
        }
        let lock_path = containers.join(format!("{name}.lock"));
        if let Ok(Some(_lock)) = claim(&lock_path) {
            remove_leftover(&path, &name);
            let _ = fs::remove_file(&lock_path);
        }
    }
}

fn remove_leftover(path: &Path, id: &str) {
    if let Err(e) = remove_dir_tree(path) {
        eprintln!("img-run: warning: removing {} left by a killed run: {e:#}", path.display());
    }
    Cgroup::remove_leftover(id);
}

/// Locks `path` (created if missing) exclusively without waiting; `None` if another process
/// holds it.
fn claim(path: &Path) -> Result<Option<File>> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let file = lock::open(path)?;
        if !lock::try_exclusive(&file, path)? {
            return Ok(None);
        }
        // The last holder may have removed the file before we locked it: lock the new one then.
        let current = fs::metadata(path).map(|m| m.ino()).ok();
        if current == Some(file.metadata()?.ino()) {
            return Ok(Some(file));
        }
    }
}
