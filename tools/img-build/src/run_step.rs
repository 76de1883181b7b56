//! RUN: a command in a container whose root is an overlay of the stage's layer snapshots and a
//! fresh upper directory, so what the command changed is exactly the upper directory.
//!
//! The runtime enters new namespaces in the process that calls it (a PID namespace can hold
//! only one first child) and must be called single-threaded, while img-build runs stages on
//! threads. So each RUN runs in a helper process: img-build itself, started afresh (fork and
//! exec, safe from any thread) as `img-build __run-step DIR`, reading the step from DIR. The
//! helper is single-threaded, runs the container and exits with its status; its output goes
//! through a pipe to the build log, each line prefixed with the stage's name. See
//! docs/decisions.md, "Parallel stages".

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use img::layer::root::Root;
use img::runtime::etc_files;
use img::runtime::overlay::OverlayDirs;
use img::runtime::spec::{Mount, Spec};
use img::runtime::{self, Container, Outcome};
use serde::{Deserialize, Serialize};

use crate::jobs::Jobs;
use crate::ssh_agent::{self, AgentProxy};

/// The first argument that makes img-build the helper running one RUN step.
pub const HELPER_ARG: &str = "__run-step";

/// The step's description in its scratch directory, for the helper.
const STEP_FILE: &str = "step.json";

/// One RUN step, ready to go.
#[derive(Serialize, Deserialize)]
pub struct RunStep {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Option<String>,
    pub network_none: bool,
    /// `--add-host` lines for /etc/hosts.
    pub add_hosts: Vec<String>,
    /// Extra mounts (cache, bind, tmpfs, secret, ssh).
    pub mounts: Vec<Mount>,
    /// The sockets `mounts` binds for `--mount=type=ssh`, served (by img-build, not the
    /// helper) while the command runs.
    #[serde(skip)]
    pub ssh_agents: Vec<AgentProxy>,
    /// Layer snapshots, topmost first.
    pub lower: Vec<PathBuf>,
}

/// Paths the runtime may create in the rootfs as mount points; they are removed from the
/// upper directory afterwards when the command did not make them itself.
const MOUNT_POINTS: [&str; 6] = ["proc", "sys", "dev", "etc/hosts", "etc/resolv.conf", "etc/hostname"];

/// Runs the step with `dir` as its scratch space; returns the upper directory holding the
/// changes. The command's output goes to the build log prefixed with `[label]`. A non-zero
/// exit is an error that says the status; a build being stopped kills the container.
pub fn run(step: &RunStep, dir: &Path, jobs: &Jobs, label: &str) -> Result<PathBuf> {
    let overlay = OverlayDirs::create(dir, step.lower.clone())?;
    // `dir` is the step's private directory (0700); the step's text stays in it.
    fs::write(dir.join(STEP_FILE), serde_json::to_vec(step)?).context("writing the RUN step")?;
    // Close-on-exec, so a helper another stage starts meanwhile does not hold our pipe open.
    let (output, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("img-build")
        .arg(HELPER_ARG)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone().context("dup")?))
        .stderr(Stdio::from(write));
    let spawned = jobs.spawn(&mut cmd);
    drop(cmd); // our copies of the pipe's write end: the relay ends when the helper's close
    let mut child = spawned?;
    let status = std::thread::scope(|s| {
        s.spawn(|| crate::log::relay(std::fs::File::from(output), label));
        ssh_agent::serve_while(&step.ssh_agents, || jobs.wait(&mut child))
    })?;
    jobs.check()?;
    let code = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 125,
    };
    if code != 0 {
        bail!("the command {:?} returned a non-zero code: {code}", step.argv.join(" "));
    }
    let stubs: Vec<String> = MOUNT_POINTS
        .iter()
        .map(|s| s.to_string())
        .chain(step.mounts.iter().map(|m| m.destination.trim_start_matches('/').to_string()))
        .collect();
    remove_mount_stubs(&overlay.upper, &overlay.lower, &stubs)?;
    Ok(overlay.upper)
}

/// The helper (`img-build __run-step DIR`): runs the step [`run`] left in DIR and exits with
/// the command's status (125 when the container could not be run, with the reason on stderr).
pub fn helper(dir: &Path) -> ExitCode {
    let code = match run_container(dir) {
        Ok(Outcome::Exited(code)) => code,
        Ok(Outcome::Failed(f)) => {
            eprintln!("img-build: {}", f.message);
            f.code
        }
        Err(e) => {
            eprintln!("img-build: {}", img_cli::one_line(&e));
            125
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn run_container(dir: &Path) -> Result<Outcome> {
    let step: RunStep = serde_json::from_slice(&fs::read(dir.join(STEP_FILE)).context("reading the step")?)
        .context("reading the step")?;
    let overlay = OverlayDirs::create(dir, step.lower.clone())?;
    let mut spec = Spec::docker_default();
    spec.process.args = step.argv.clone();
    spec.process.env = step.env.clone();
    spec.process.cwd = step.cwd.clone();
    spec.hostname = Some("img-build".into());
    if step.network_none {
        spec.set_namespace("network", true);
    }
    let extra_hosts =
        step.add_hosts.iter().map(|h| img_cli::parse_add_host(h)).collect::<Result<Vec<_>>>()?;
    etc_files::add_etc_files(&mut spec, dir, "img-build", step.network_none, true, &extra_hosts)?;
    spec.mounts.extend(step.mounts.iter().cloned());
    let container = Container {
        // The helper's pid: unique among the steps running at once (cgroups are named by it).
        id: format!("build-{}", std::process::id()),
        spec,
        rootfs: overlay.rootfs(),
        bundle: dir.to_path_buf(),
        user: step.user.clone(),
        group_add: Vec::new(),
        init: false,
        tty: false,
        interactive: false,
    };
    // The helper is single-threaded, as the runtime requires; it exits right after.
    runtime::run(&container)
}

/// Removes empty files and directories the runtime created as mount points (they are in no
/// lower layer), and then parents that became empty for that reason.
fn remove_mount_stubs(upper: &Path, lower: &[PathBuf], stubs: &[String]) -> Result<()> {
    use rustix::fs::{AtFlags, FileType, OFlags};
    // Mount targets come from the Dockerfile: resolved inside the upper directory and the
    // layers, never by joining them onto a host path (`target=/../../x` is `/x`).
    let upper = Root::open(upper).with_context(|| format!("opening {}", upper.display()))?;
    let lower: Vec<Root> = lower.iter().map(|l| Root::open(l)).collect::<std::io::Result<_>>()?;
    let in_lower = |rel: &[u8]| lower.iter().any(|l| l.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW).is_ok());
    for stub in stubs {
        let mut rel = img::path::clean_clamped(stub.as_bytes());
        while !rel.is_empty() {
            let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
                Some(i) => (rel[..i].to_vec(), rel[i + 1..].to_vec()),
                None => (Vec::new(), rel.clone()),
            };
            let Ok(dir) = upper.open_at(&parent, OFlags::PATH | OFlags::DIRECTORY) else { break };
            let Ok(st) = rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) else { break };
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            let empty = if is_dir {
                let fd = upper.open_at(&rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)?;
                rustix::fs::Dir::read_from(&fd)?.filter_map(|e| e.ok()).all(|e| {
                    let n = e.file_name().to_bytes();
                    n == b"." || n == b".."
                })
            } else {
                FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_size == 0
            };
            if !empty || in_lower(&rel) {
                break;
            }
            let flags = if is_dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
            rustix::fs::unlinkat(&dir, name.as_slice(), flags)
                .with_context(|| format!("removing the mount point {}", String::from_utf8_lossy(&rel)))?;
            rel = parent;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn stubs_go_but_real_changes_stay() {
        let d = tempfile::tempdir().unwrap();
        let (upper, lower) = (d.path().join("u"), d.path().join("l"));
        fs::create_dir_all(upper.join("proc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(upper.join("dev")).unwrap();
        fs::write(upper.join("dev/made-by-command"), "x").unwrap();
        fs::create_dir_all(upper.join("cache/deep")).unwrap();
        fs::create_dir_all(lower.join("sys")).unwrap();
        fs::create_dir_all(upper.join("sys")).unwrap();
        let stubs: Vec<String> =
            ["proc", "etc/hosts", "dev", "sys", "cache/deep"].iter().map(|s| s.to_string()).collect();
        remove_mount_stubs(&upper, &[lower], &stubs).unwrap();
        // A target that climbs out is the same path inside: nothing outside is touched.
        let outside = d.path().join("outside");
        fs::write(&outside, "").unwrap();
        remove_mount_stubs(&upper, &[], &["../outside".to_string(), "/../../../outside".to_string()])
            .unwrap();
        assert!(outside.exists());
        assert!(!upper.join("proc").exists());
        assert!(!upper.join("etc").exists(), "etc only held the stub");
        assert!(upper.join("dev/made-by-command").exists());
        assert!(upper.join("sys").exists(), "present in a lower layer: not ours to remove");
        assert!(!upper.join("cache").exists());
    }
}
