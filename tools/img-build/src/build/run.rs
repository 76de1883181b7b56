//! RUN: the command in a container over the stage's layers, with its `--mount`s (the build
//! context or another stage bound, caches kept in the store, tmpfs, secrets, SSH agents), and
//! what it changed becomes the step's layer.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use img::digest::Digest;
use img::runtime::spec::Mount as RuntimeMount;
use img_dockerfile::instruction::{Command, Network, RunSpec, Step};
use img_dockerfile::mount::{Mount, MountKind};
use img_dockerfile::node::Heredoc;
use img_dockerfile::stages::Stages;

use super::{Builder, Done, StepContext, lock, staging_applier};
use crate::context::BuildContext;
use crate::run_step::{self, RunStep};
use crate::ssh_agent::AgentProxy;
use crate::state::ImageState;

/// Filtered copies of context paths for read-only bind mounts: the copy and the path in it.
pub(super) type ContextViews = HashMap<PathBuf, (tempfile::TempDir, PathBuf)>;

impl Builder<'_> {
    /// What a RUN's bind mounts show, for its key: the digest of the context files bound, or
    /// the key of the stage or the digest of the image bound. Without it a step whose mounted
    /// files changed would hit (here, or on any machine that imports this cache).
    fn bind_inputs(&self, cx: &StepContext, mounts: &[Mount]) -> Vec<String> {
        let mut inputs = Vec::new();
        for m in mounts.iter().filter(|m| m.kind == MountKind::Bind) {
            let source = m.source.as_deref().unwrap_or_default();
            let input = match &m.from {
                None => self
                    .context
                    .resolve(source)
                    .and_then(|found| self.context.digest(&found))
                    .map(|d| d.to_string()),
                Some(from) => match cx.stages.find(from).and_then(|i| cx.done.get(&i)) {
                    Some(stage) => Ok(format!("stage:{}", stage.key.0)),
                    None => {
                        let platform = self.options.platform.clone();
                        self.base_image(from, &platform).map(|(_, digest)| format!("image:{digest}"))
                    }
                },
            };
            // One that cannot be read fails when it is mounted, with the reason.
            inputs.push(input.unwrap_or_else(|_| "unreadable".to_string()));
        }
        inputs
    }

    pub(super) fn dispatch_run(&self, cx: &mut StepContext, step: &Step, spec: &RunSpec) -> Result<()> {
        let argv = run_argv(&cx.state, &spec.command, &spec.heredocs);
        let network_none = match spec.network {
            Some(Network::None) => true,
            Some(Network::Host) => false,
            None | Some(Network::Default) => self.options.network_none, // the build's
        };
        let mounts = &spec.mounts;
        let mut env = cx.state.env();
        for (k, v) in &cx.state.args {
            if cx.state.env_var(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        // As BuildKit: the first SSH mount is the step's agent, unless ENV or ARG name one.
        if let Some(first) = mounts.iter().find(|m| m.kind == MountKind::Ssh)
            && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
        {
            env.push(format!("SSH_AUTH_SOCK={}", ssh_target(first, 0)));
        }
        let user = cx.state.user();
        let cwd = cx.state.workdir();
        let mut mount_keys: Vec<String> = mounts.iter().map(|m| format!("{m:?}")).collect();
        mount_keys.extend(self.bind_inputs(cx, mounts));
        let key = cx.key.then(&[
            "RUN",
            &serde_json::to_string(&argv)?,
            &env.join("\0"),
            user.as_deref().unwrap_or(""),
            &cwd,
            &mount_keys.join("\0"),
            if network_none { "none" } else { "default" },
            &self.options.add_hosts.join(","),
        ]);
        let created_by = format!("RUN {}", argv.join(" "));
        if self.cached(cx, step, &key, &created_by) {
            return Ok(());
        }
        // A step of another architecture runs emulated, if this machine can.
        crate::emulation::check(&cx.state.platform())?;
        self.log(cx.stage, &step.text, "");
        let dir = tempfile::Builder::new().prefix("run-").tempdir_in(self.work.path())?;
        let (runtime_mounts, ssh_agents) = self.run_mounts(mounts, dir.path(), cx.done, cx.stages)?;
        let lower = self.lower_dirs(&cx.state)?;
        let run = RunStep {
            argv,
            env,
            cwd,
            user,
            network_none,
            add_hosts: self.options.add_hosts.clone(),
            mounts: runtime_mounts,
            ssh_agents,
            lower,
        };
        let upper = run_step::run(&run, dir.path(), &self.jobs, &self.log_label(cx.stage))?;
        self.commit_changes(&upper, &key, &mut cx.state, &created_by)?;
        cx.key = key;
        Ok(())
    }

    /// `RUN --mount`s as runtime mounts: caches persist in the store between builds; SSH
    /// mounts bind sockets made in the step's scratch directory `dir`, returned to be served.
    fn run_mounts(
        &self,
        mounts: &[Mount],
        dir: &Path,
        done: &Done,
        stages: &Stages,
    ) -> Result<(Vec<RuntimeMount>, Vec<AgentProxy>)> {
        let mut out = Vec::new();
        let mut ssh_agents = Vec::new();
        let mut ssh_index = 0;
        for m in mounts {
            let target = m.target.clone().unwrap_or_default();
            match m.kind {
                MountKind::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir =
                        self.store_root.join("build-cache-mounts").join(Digest::of(id.as_bytes()).hex());
                    fs::create_dir_all(&dir)?;
                    let opt = if m.read_only == Some(true) { "ro" } else { "rw" };
                    out.push(RuntimeMount::new(&target, "bind", &dir.to_string_lossy(), &["rbind", opt]));
                }
                MountKind::Tmpfs => {
                    out.push(RuntimeMount::new(&target, "tmpfs", "tmpfs", &["nosuid", "nodev"]))
                }
                MountKind::Bind => {
                    let rw = m.read_only == Some(false);
                    let source = m.source.clone().unwrap_or_default();
                    let path = match &m.from {
                        Some(from) => {
                            let root = self.rootfs_of(from, done, stages)?;
                            let view = BuildContext::rootfs(&root)?;
                            bind_source(&view, None, &source, rw, dir, self.work.path())?
                        }
                        None => bind_source(
                            &self.context,
                            Some(&mut lock(&self.context_views)),
                            &source,
                            rw,
                            dir,
                            self.work.path(),
                        )?,
                    };
                    let opt = if rw { "rw" } else { "ro" };
                    out.push(RuntimeMount::new(&target, "bind", &path.to_string_lossy(), &["rbind", opt]));
                }
                MountKind::Secret => {
                    let id = m
                        .id
                        .clone()
                        .or_else(|| m.target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_string)));
                    let id = id.context("--mount=type=secret needs an id")?;
                    let Some(src) = self.options.secrets.get(&id) else {
                        if m.required {
                            bail!("secret {id:?} was not given (--secret id={id},src=FILE)");
                        }
                        continue;
                    };
                    let target = m.target.clone().unwrap_or_else(|| format!("/run/secrets/{id}"));
                    out.push(RuntimeMount::new(&target, "bind", &src.to_string_lossy(), &["rbind", "ro"]));
                }
                MountKind::Ssh => {
                    let index = ssh_index;
                    ssh_index += 1;
                    let id = m.id.as_deref().unwrap_or("default");
                    let Some(agent) = self.options.ssh.get(id) else {
                        if m.required {
                            bail!("no SSH agent {id:?} forwarded: use img-build --ssh {id}[=SOCKET]");
                        }
                        continue;
                    };
                    let socket = dir.join(format!("ssh_agent.{index}.sock"));
                    let (uid, gid, mode) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0), m.mode.unwrap_or(0o600));
                    let proxy = AgentProxy::bind(socket, agent, uid, gid, mode)?;
                    let source = proxy.socket().to_string_lossy().into_owned();
                    out.push(RuntimeMount::new(&ssh_target(m, index), "bind", &source, &["rbind", "ro"]));
                    ssh_agents.push(proxy);
                }
            }
        }
        Ok((out, ssh_agents))
    }
}

/// RUN's argv: exec form as is; shell form through SHELL; with heredocs, the shell runs the
/// line and its heredocs as a script (and a lone `RUN <<EOF` runs the heredoc itself).
fn run_argv(state: &ImageState, command: &Command, heredocs: &[Heredoc]) -> Vec<String> {
    let Command::Shell(line) = command else {
        return state.argv(command);
    };
    if heredocs.is_empty() {
        return state.argv(command);
    }
    let mut argv = state.shell();
    let bare = line.trim().trim_start_matches("<<").trim_start_matches('-').trim_matches(['"', '\'']);
    match heredocs {
        [h] if bare == h.name => argv.push(h.content.clone()),
        _ => {
            let mut script = format!("{line}\n");
            for h in heredocs {
                script.push_str(&h.content);
                script.push_str(&h.name);
                script.push('\n');
            }
            argv.push(script);
        }
    }
    argv
}

/// What a `RUN --mount=type=bind` shows of `source` in `ctx`: never something a step can
/// change and never a file `.dockerignore` excludes. Read-only with nothing excluded under
/// it: the directory itself. Read-only otherwise: a filtered copy made once per build in
/// `work` (`views` keeps them, for the build context). Read-write: a private copy in the
/// step's scratch directory `step_dir`, thrown away with it, as BuildKit discards what a
/// step writes to a bind mount.
fn bind_source(
    ctx: &BuildContext,
    views: Option<&mut ContextViews>,
    source: &str,
    rw: bool,
    step_dir: &Path,
    work: &Path,
) -> Result<PathBuf> {
    let rel = ctx.resolve_path(source)?;
    if !rw {
        // A view made for an earlier step says already that something is excluded there.
        if let Some((_, path)) = views.as_deref().and_then(|v| v.get(&rel)) {
            return Ok(path.clone());
        }
        if ctx.nothing_excluded_under(&rel)? {
            return Ok(ctx.root().join(&rel));
        }
    }
    let copy = |parent: &Path| -> Result<(tempfile::TempDir, PathBuf)> {
        let tmp = tempfile::Builder::new().prefix("bind-").tempdir_in(parent)?;
        let mut out = staging_applier(tmp.path())?;
        let at = ctx.copy_as_is(&rel, &mut out).with_context(|| format!("--mount source {source}"))?;
        out.finish()?;
        let path = tmp.path().join(at);
        Ok((tmp, path))
    };
    match views {
        Some(views) if !rw => {
            let (tmp, path) = copy(work)?;
            views.insert(rel, (tmp, path.clone()));
            Ok(path)
        }
        _ => {
            let (tmp, path) = copy(step_dir)?;
            // Removed with the step's scratch directory.
            let _ = tmp.keep();
            Ok(path)
        }
    }
}

/// Where the `index`th SSH mount of a RUN (from 0) appears in the container.
fn ssh_target(mount: &Mount, index: usize) -> String {
    mount.target.clone().unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{index}"))
}
