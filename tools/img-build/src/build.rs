//! The build: runs the stages a target needs, step by step, with the cache, and writes the
//! resulting image into the layout. Refs are written only when everything succeeded.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use img::digest::Digest;
use img::document::{Descriptor, to_canonical_json};
use img::layer::apply::{Applier, Node, Options as ApplyOptions, Owners, Whiteouts};
use img::layer::compression::decompress;
use img::layer::create::{self as changes, Compression};
use img::layer::root::Root;
use img::layout::Layout;
use img::layout::resolve;
use img::media_type;
use img::platform::Platform;
use img::reference::Reference;
use img::registry::Connections;
use img::registry::pull;
use img::runtime::spec::Mount as RuntimeMount;
use img::snapshot::{self, Snapshots};
use rustix::fs::{FileType, OFlags, Timespec};
use serde_json::{Value, json};

use crate::cache::{self, Cache, Key};
use crate::context::{Attributes, BuildContext};
use crate::download;
use crate::instruction::{self, CopySpec, Instruction, Mount, Step};
use crate::parser;
use crate::run_step::{self, RunStep};
use crate::shell;
use crate::ssh_agent::AgentProxy;
use crate::stages::{Stage, Stages};
use crate::state::{ImageState, LayerRef};

pub struct Options {
    pub dockerfile: String,
    /// For messages: `Dockerfile:12: …`.
    pub dockerfile_name: String,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platform: Platform,
    pub labels: Vec<(String, String)>,
    pub no_cache: bool,
    /// `--network none`: every RUN without a `--network` of its own has no network.
    pub network_none: bool,
    /// `--add-host HOST:IP`: lines added to RUN steps' /etc/hosts.
    pub add_hosts: Vec<String>,
    pub pull: bool,
    pub compression: Compression,
    /// `--secret id=..,src=..`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh ID[=SOCKET]`: forwarded SSH agents' sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `SOURCE_DATE_EPOCH`: clamps file times and sets every `created`.
    pub source_date_epoch: Option<u64>,
    /// Bounds on `ADD <url>` downloads.
    pub download: download::Limits,
}

/// The image a build wrote.
pub struct Built {
    pub manifest: Descriptor,
    pub config_digest: Digest,
}

/// Filtered copies of context paths for read-only bind mounts: the copy and the path in it.
type ContextViews = HashMap<PathBuf, (tempfile::TempDir, PathBuf)>;

/// What a finished stage left: its image and the key of its state.
#[derive(Clone)]
struct StageResult {
    state: ImageState,
    key: Key,
}

pub struct Builder<'a> {
    layout: &'a Layout,
    store_root: PathBuf,
    context: BuildContext,
    options: Options,
    cache: Cache,
    snapshots: Snapshots,
    /// Keeps `img-rm` from removing snapshots while the build uses them.
    _snapshots_held: fs::File,
    connections: Connections,
    /// Unpacked root filesystems of stages and images that COPY --from reads.
    rootfs_copies: HashMap<String, tempfile::TempDir>,
    /// Copies of context directories without what `.dockerignore` excludes, for read-only
    /// bind mounts (by resolved path).
    context_views: ContextViews,
    work: tempfile::TempDir,
    step_count: usize,
}

impl<'a> Builder<'a> {
    pub fn new(
        layout: &'a Layout,
        store_root: &Path,
        context: BuildContext,
        options: Options,
        connections: Connections,
    ) -> Result<Builder<'a>> {
        let snapshots = Snapshots::open(store_root)?;
        let snapshots_held = snapshots.hold()?;
        let work = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(snapshots.dir())
            .context("creating the build's work directory")?;
        Ok(Builder {
            layout,
            store_root: store_root.to_path_buf(),
            context,
            cache: Cache::open(store_root)?,
            snapshots,
            _snapshots_held: snapshots_held,
            connections,
            rootfs_copies: HashMap::new(),
            context_views: HashMap::new(),
            work,
            options,
            step_count: 0,
        })
    }

    pub fn build(&mut self) -> Result<Built> {
        let name = self.options.dockerfile_name.clone();
        let at_line = |e: anyhow::Error| match e.downcast::<parser::ParseError>() {
            Ok(p) => anyhow!("{name}:{}: {}", p.line, p.message),
            Err(e) => anyhow!("{name}: {}", img::cli::one_line(&e)),
        };
        let dockerfile = parser::parse(&self.options.dockerfile).map_err(at_line)?;
        let escape = dockerfile.escape;
        let steps = instruction::from_nodes(&dockerfile.nodes).map_err(at_line)?;
        let stages = Stages::split(steps).map_err(at_line)?;
        let globals = self.global_args(&stages, escape).map_err(at_line)?;
        let target = stages.target(self.options.target.as_deref())?;
        let base_of = |s: &Stage| -> Result<String> {
            let Instruction::From { image, .. } = &s.from.instruction else {
                unreachable!("stages start with FROM")
            };
            shell::expand(image, escape, &|n: &str| globals.get(n).cloned())
                .map_err(|e| parser::ParseError { line: s.from.line, message: img::cli::one_line(&e) }.into())
        };
        let order = stages.build_order(target, &base_of).map_err(at_line)?;
        let mut results: HashMap<usize, StageResult> = HashMap::new();
        for &i in &order {
            let stage = &stages.stages[i];
            let base = base_of(stage)?;
            let result = self.run_stage(&stages, stage, &base, &globals, &results, escape)?;
            results.insert(i, result);
        }
        let last = results.remove(&target).expect("the target was built");
        self.write_image(last.state)
    }

    /// ARGs before the first FROM, with `--build-arg` values and the predefined platform ARGs.
    fn global_args(&self, stages: &Stages, escape: char) -> Result<BTreeMap<String, String>> {
        let mut values = self.platform_args();
        for ((name, default), &line) in stages.global_args.iter().zip(&stages.global_arg_lines) {
            let value = match (self.options.build_args.get(name), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => {
                    Some(shell::expand(d, escape, &|n: &str| values.get(n).cloned()).map_err(
                        |e| -> anyhow::Error {
                            parser::ParseError { line, message: img::cli::one_line(&e) }.into()
                        },
                    )?)
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                values.insert(name.clone(), v);
            }
        }
        Ok(values)
    }

    fn platform_args(&self) -> BTreeMap<String, String> {
        let mut args = BTreeMap::new();
        let host = Platform::host();
        for (prefix, p) in [("TARGET", &self.options.platform), ("BUILD", &host)] {
            args.insert(format!("{prefix}PLATFORM"), p.to_string());
            args.insert(format!("{prefix}OS"), p.os.clone());
            args.insert(format!("{prefix}ARCH"), p.architecture.clone());
            args.insert(format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default());
        }
        args
    }

    fn log(&mut self, stage: &Stage, text: &str, note: &str) {
        self.step_count += 1;
        let name = stage.name.clone().unwrap_or_else(|| stage.index.to_string());
        eprintln!("#{} [{name}] {text}{note}", self.step_count);
    }

    fn run_stage(
        &mut self,
        stages: &Stages,
        stage: &Stage,
        base: &str,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, StageResult>,
        escape: char,
    ) -> Result<StageResult> {
        let Instruction::From { platform, .. } = &stage.from.instruction else { unreachable!() };
        let platform = match platform {
            Some(p) => shell::expand(p, escape, &|n: &str| globals.get(n).cloned())?.parse()?,
            None => self.options.platform.clone(),
        };
        self.log(stage, &format!("FROM {base}"), "");
        let (mut state, mut key) = match stages.find_named(base) {
            Some(dep) if dep < stage.index => {
                let r = done.get(&dep).expect("dependencies are built first");
                (r.state.clone(), r.key.clone())
            }
            _ if base == "scratch" => (ImageState::scratch(&platform), Key::root("scratch")),
            _ => {
                let (state, digest) = self.base_image(base, &platform)?;
                (state, Key::root(&digest.to_string()))
            }
        };
        state.args.clear();
        key = key.then(&["platform", &platform.to_string()]);

        let mut steps: Vec<Step> = Vec::new();
        for trigger in state.take_onbuild() {
            let node = parser::node_from_line(&trigger, escape)?;
            let step = instruction::from_nodes(std::slice::from_ref(&node))
                .with_context(|| format!("ONBUILD trigger {trigger:?} of {base}"))?;
            steps.extend(step);
        }
        steps.extend(stage.steps.iter().cloned());
        for step in &steps {
            key = self
                .step(stages, stage, step, &mut state, key, globals, done, escape)
                .and_then(|key| state.check_size().map(|()| key))
                .map_err(|e| {
                    anyhow!("{}:{}: {}", self.options.dockerfile_name, step.line, img::cli::one_line(&e))
                })?;
        }
        Ok(StageResult { state, key })
    }

    /// A base image from the layout, pulled first if it is not there (or with `--pull`).
    fn base_image(&mut self, name: &str, platform: &Platform) -> Result<(ImageState, Digest)> {
        let wanted = name.parse::<Reference>()?.to_string();
        let policy = if self.options.pull { pull::Policy::Always } else { pull::Policy::Missing };
        pull::ensure(self.layout, &wanted, Some(platform), policy, &mut self.connections)?;
        let image = resolve::image(self.layout, &wanted, Some(platform))?;
        let diff_ids = image.config.rootfs.as_ref().map(|r| r.diff_ids.clone()).unwrap_or_default();
        if diff_ids.len() != image.manifest.layers.len() {
            bail!(
                "{wanted}: its config lists {} diff_ids for {} layers",
                diff_ids.len(),
                image.manifest.layers.len()
            );
        }
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| LayerRef { descriptor: d.clone(), diff_id })
            .collect();
        Ok((ImageState::from_image(&image.config_bytes, layers)?, image.manifest_descriptor.digest))
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        stages: &Stages,
        stage: &Stage,
        step: &Step,
        state: &mut ImageState,
        key: Key,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, StageResult>,
        escape: char,
    ) -> Result<Key> {
        // Variables as they are before this instruction (`ENV A=1 B=$A` sees the old A).
        let vars = state.variables();
        let env = |n: &str| vars.get(n).cloned();
        let x = |s: &str| shell::expand(s, escape, &env);
        let created_now = self.now();
        let metadata = |state: &mut ImageState, created_by: String| {
            let created = state.last_created().unwrap_or_else(|| created_now.clone());
            state.add_history(&created, &created_by, true);
        };
        match &step.instruction {
            Instruction::From { .. } => unreachable!("FROM starts a stage"),
            Instruction::Arg(args) => {
                let mut text = Vec::new();
                for (name, default) in args {
                    let value = self
                        .options
                        .build_args
                        .get(name)
                        .cloned()
                        .or(default.as_deref().map(x).transpose()?)
                        .or_else(|| globals.get(name).cloned());
                    match value {
                        Some(v) => {
                            text.push(format!("{name}={v}"));
                            state.args.insert(name.clone(), v);
                        }
                        None => text.push(name.clone()),
                    }
                }
                self.log(stage, &step.text, "");
                return Ok(key.then(&["ARG", &text.join(" ")]));
            }
            Instruction::Env(pairs) | Instruction::Label(pairs) => {
                let is_env = matches!(step.instruction, Instruction::Env(_));
                let mut shown = Vec::new();
                // Every value sees the variables as they were before this instruction.
                for (k, v) in pairs {
                    let (k, v) = (x(k)?, x(v)?);
                    if is_env {
                        state.set_env(&k, &v)
                    } else {
                        state.set_label(&k, &v)
                    }
                    shown.push(format!("{k}={v}"));
                }
                metadata(state, format!("{} {}", if is_env { "ENV" } else { "LABEL" }, shown.join(" ")));
            }
            Instruction::Workdir(dir) => {
                state.set_workdir(&x(dir)?);
                if let Some(key) = self.workdir_layer(stage, step, state, &key)? {
                    return Ok(key);
                }
                metadata(state, format!("WORKDIR {}", state.workdir()));
            }
            Instruction::User(user) => {
                let user = x(user)?;
                state.set("User", json!(user));
                metadata(state, format!("USER {user}"));
            }
            Instruction::Expose(ports) => {
                let mut shown = Vec::new();
                for p in ports {
                    for p in shell::expand_words(p, escape, &env)? {
                        state.expose(&p)?;
                        shown.push(p);
                    }
                }
                metadata(state, format!("EXPOSE map[{}]", shown.join(" ")));
            }
            Instruction::Volume(vols) => {
                for v in vols {
                    state.add_volume(&x(v)?);
                }
                metadata(state, format!("VOLUME {vols:?}"));
            }
            Instruction::StopSignal(sig) => {
                let sig = x(sig)?;
                state.set("StopSignal", json!(sig));
                metadata(state, format!("STOPSIGNAL {sig}"));
            }
            Instruction::Shell(argv) => {
                state.set("Shell", json!(argv));
                metadata(state, format!("SHELL {argv:?}"));
            }
            Instruction::Cmd(c) => {
                state.set_cmd(c);
                metadata(state, format!("CMD {:?}", state.argv(c)));
            }
            Instruction::Entrypoint(c) => {
                state.set_entrypoint(c);
                metadata(state, format!("ENTRYPOINT {:?}", state.argv(c)));
            }
            Instruction::Healthcheck(h) => {
                state.set_healthcheck(h)?;
                metadata(state, step.text.clone());
            }
            Instruction::Onbuild(trigger) => {
                state.add_onbuild(trigger);
                metadata(state, format!("ONBUILD {trigger}"));
            }
            Instruction::Maintainer(m) => {
                state.config.insert("author".into(), json!(m));
                metadata(state, format!("MAINTAINER {m}"));
            }
            Instruction::Copy(spec) | Instruction::Add(spec) => {
                let is_add = matches!(step.instruction, Instruction::Add(_));
                return self.copy(stages, stage, step, spec, is_add, state, key, done, escape, &env);
            }
            Instruction::Run { command, mounts, network, heredocs } => {
                let argv = run_argv(state, command, heredocs);
                return self.run(
                    stage,
                    step,
                    argv,
                    mounts,
                    match network.as_deref() {
                        Some("none") => true,
                        Some("host") => false,
                        _ => self.options.network_none, // absent or "default": the build's
                    },
                    state,
                    key,
                    done,
                    stages,
                );
            }
        }
        self.log(stage, &step.text, "");
        let last = state.config.get("history").and_then(|h| h.as_array()).and_then(|h| h.last()).cloned();
        let created_by = last.and_then(|e| e.get("created_by").and_then(Value::as_str).map(str::to_string));
        Ok(key.then(&["meta", &created_by.unwrap_or_default()]))
    }

    fn now(&self) -> String {
        let secs = self.options.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
        });
        rfc3339(secs)
    }

    fn clamp(&self) -> changes::Options {
        changes::Options { clamp_mtime: self.options.source_date_epoch }
    }

    /// Layer snapshots of the state, topmost first (extracted on first use).
    fn lower_dirs(&self, state: &ImageState) -> Result<Vec<PathBuf>> {
        let mut lower = Vec::new();
        for l in state.layers.iter().rev() {
            lower.push(self.snapshots.ensure(self.layout, &l.descriptor, &l.diff_id)?);
        }
        Ok(lower)
    }

    /// Looks a step's key up; on a hit adds the cached layer and history.
    fn cached(
        &mut self,
        stage: &Stage,
        step: &Step,
        key: &Key,
        state: &mut ImageState,
        created_by: &str,
    ) -> bool {
        if self.options.no_cache {
            return false;
        }
        let Some(entry) = self.cache.get(key, self.layout) else { return false };
        self.log(stage, &step.text, "  CACHED");
        self.add_result(state, entry, created_by);
        true
    }

    fn add_result(&self, state: &mut ImageState, entry: cache::Entry, created_by: &str) {
        match (entry.layer, entry.diff_id) {
            (Some(descriptor), Some(diff_id)) => {
                state.add_layer(LayerRef { descriptor, diff_id });
                state.add_history(&entry.created, created_by, false);
            }
            _ => state.add_history(&entry.created, created_by, true),
        }
    }

    /// Turns a directory of changes into the step's layer (none if it is empty), keeps the
    /// directory as that layer's snapshot, and records the result in the cache.
    fn commit_changes(
        &mut self,
        dir: &Path,
        key: &Key,
        state: &mut ImageState,
        created_by: &str,
    ) -> Result<()> {
        let empty = fs::read_dir(dir)?.next().is_none();
        let entry = if empty {
            cache::Entry { layer: None, diff_id: None, created: self.now() }
        } else {
            let stored = changes::store_layer(self.layout, dir, self.options.compression, &self.clamp())?;
            let snapshot = self.snapshots.path(&stored.diff_id);
            if !snapshot.exists() && fs::rename(dir, &snapshot).is_err() && !snapshot.exists() {
                bail!("keeping the snapshot of layer {}", stored.diff_id);
            }
            cache::Entry {
                layer: Some(stored.descriptor),
                diff_id: Some(stored.diff_id),
                created: self.now(),
            }
        };
        self.cache.put(key, &entry)?;
        self.add_result(state, entry, created_by);
        Ok(())
    }

    /// [`Builder::commit_changes`] for a staging directory (COPY's, WORKDIR's): it is moved
    /// into the snapshots, or removed if it holds no change.
    fn commit_staging(
        &mut self,
        staging: tempfile::TempDir,
        key: &Key,
        state: &mut ImageState,
        created_by: &str,
    ) -> Result<()> {
        let dir = staging.keep();
        let result = self.commit_changes(&dir, key, state, created_by);
        let _ = fs::remove_dir_all(&dir);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        stage: &Stage,
        step: &Step,
        argv: Vec<String>,
        mounts: &[Mount],
        network_none: bool,
        state: &mut ImageState,
        key: Key,
        done: &HashMap<usize, StageResult>,
        stages: &Stages,
    ) -> Result<Key> {
        let mut env = state.env();
        for (k, v) in &state.args {
            if state.env_var(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        // As BuildKit: the first SSH mount is the step's agent, unless ENV or ARG name one.
        if let Some(first) = mounts.iter().find(|m| m.kind == "ssh")
            && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
        {
            env.push(format!("SSH_AUTH_SOCK={}", ssh_target(first, 0)));
        }
        let user = state.user();
        let cwd = state.workdir();
        let mount_keys: Vec<String> = mounts.iter().map(|m| format!("{m:?}")).collect();
        let key = key.then(&[
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
        if self.cached(stage, step, &key, state, &created_by) {
            return Ok(key);
        }
        self.log(stage, &step.text, "");
        let dir = tempfile::Builder::new().prefix("run-").tempdir_in(self.work.path())?;
        let (runtime_mounts, ssh_agents) = self.run_mounts(mounts, dir.path(), done, stages)?;
        let lower = self.lower_dirs(state)?;
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
        let upper = run_step::run(&run, dir.path())?;
        self.commit_changes(&upper, &key, state, &created_by)?;
        Ok(key)
    }

    /// `RUN --mount`s as runtime mounts: caches persist in the store between builds; SSH
    /// mounts bind sockets made in the step's scratch directory `dir`, returned to be served.
    fn run_mounts(
        &mut self,
        mounts: &[Mount],
        dir: &Path,
        done: &HashMap<usize, StageResult>,
        stages: &Stages,
    ) -> Result<(Vec<RuntimeMount>, Vec<AgentProxy>)> {
        let mut out = Vec::new();
        let mut ssh_agents = Vec::new();
        let mut ssh_index = 0;
        for m in mounts {
            let target = m.target.clone().unwrap_or_default();
            match m.kind.as_str() {
                "cache" => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir =
                        self.store_root.join("build-cache-mounts").join(Digest::of(id.as_bytes()).hex());
                    fs::create_dir_all(&dir)?;
                    let opt = if m.read_only == Some(true) { "ro" } else { "rw" };
                    out.push(RuntimeMount::new(&target, "bind", &dir.to_string_lossy(), &["rbind", opt]));
                }
                "tmpfs" => out.push(RuntimeMount::new(&target, "tmpfs", "tmpfs", &["nosuid", "nodev"])),
                "bind" => {
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
                            Some(&mut self.context_views),
                            &source,
                            rw,
                            dir,
                            self.work.path(),
                        )?,
                    };
                    let opt = if rw { "rw" } else { "ro" };
                    out.push(RuntimeMount::new(&target, "bind", &path.to_string_lossy(), &["rbind", opt]));
                }
                "secret" => {
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
                "ssh" => {
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
                other => bail!("RUN --mount=type={other} is not supported"),
            }
        }
        Ok((out, ssh_agents))
    }

    /// An unpacked root filesystem of a stage (by name or index) or an image, for COPY --from
    /// and RUN --mount=from=.
    fn rootfs_of(
        &mut self,
        from: &str,
        done: &HashMap<usize, StageResult>,
        stages: &Stages,
    ) -> Result<PathBuf> {
        if let Some(dir) = self.rootfs_copies.get(from) {
            return Ok(dir.path().to_path_buf());
        }
        let state = match stages.find(from).and_then(|i| done.get(&i)) {
            Some(r) => r.state.clone(),
            None => self.base_image(from, &self.options.platform.clone())?.0,
        };
        let dir = tempfile::Builder::new().prefix("rootfs-").tempdir_in(self.work.path())?;
        let layers: Vec<Descriptor> = state.layers.iter().map(|l| l.descriptor.clone()).collect();
        let diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        snapshot::unpack_copy(self.layout, &layers, &diff_ids, dir.path())?;
        let path = dir.path().to_path_buf();
        self.rootfs_copies.insert(from.to_string(), dir);
        Ok(path)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        stages: &Stages,
        stage: &Stage,
        step: &Step,
        spec: &CopySpec,
        is_add: bool,
        state: &mut ImageState,
        key: Key,
        done: &HashMap<usize, StageResult>,
        escape: char,
        env: &dyn shell::Env,
    ) -> Result<Key> {
        let x = |s: &str| shell::expand(s, escape, env);
        let mut dest = x(&spec.dest)?;
        if !dest.starts_with('/') {
            let slash = if dest.ends_with('/') || dest == "." { "/" } else { "" };
            dest = format!("{}{slash}", crate::state::clean_absolute(&format!("{}/{dest}", state.workdir())));
            if dest == "//" {
                dest = "/".into();
            }
        }
        let attrs = Attributes {
            uid: 0,
            gid: 0,
            mode: spec
                .chmod
                .as_deref()
                .map(|m| u32::from_str_radix(&x(m)?, 8).context("--chmod"))
                .transpose()?,
        };
        let attrs = match &spec.chown {
            Some(c) => {
                let (uid, gid) = self.resolve_owner(state, &x(c)?)?;
                Attributes { uid, gid, ..attrs }
            }
            None => attrs,
        };
        let staging = tempfile::Builder::new().prefix("copy-").tempdir_in(self.work.path())?;
        let mut out = staging_applier(staging.path())?;
        let from_root = match &spec.from {
            Some(from) => Some(self.rootfs_of(&x(from)?, done, stages)?),
            None => None,
        };
        let ctx_owned;
        let ctx = match &from_root {
            Some(root) => {
                ctx_owned = BuildContext::rootfs(root)?;
                &ctx_owned
            }
            None => &self.context,
        };
        let mut inputs = vec![
            if is_add { "ADD".to_string() } else { "COPY".to_string() },
            dest.clone(),
            format!("{attrs:?}"),
        ];
        let heredoc_names: Vec<&str> = spec.heredocs.iter().map(|h| h.name.as_str()).collect();
        let many = spec.sources.len() > 1;
        for source in &spec.sources {
            if let Some(name) =
                source.strip_prefix("<<").map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
            {
                if let Some(h) = spec.heredocs.iter().find(|h| h.name == name) {
                    let content = if h.expand { x(&h.content)? } else { h.content.clone() };
                    let into_dir = dest.ends_with('/') || many;
                    let target = if into_dir { format!("{dest}{name}") } else { dest.clone() };
                    let meta = attrs.meta(0o644, now_timespec());
                    out.put(target.as_bytes(), Node::File(&mut content.as_bytes()), &meta)?;
                    inputs.push(format!("heredoc:{name}:{content}"));
                    continue;
                }
                if heredoc_names.is_empty() {
                    bail!("{source}: no heredoc of that name");
                }
            }
            let source = x(source)?;
            if is_add && (source.starts_with("http://") || source.starts_with("https://")) {
                let digest = self.add_url(&source, &dest, spec.checksum.as_deref(), attrs, &mut out)?;
                inputs.push(format!("url:{source}:{digest}"));
                continue;
            }
            let found = ctx.resolve(&source)?;
            inputs.push(format!("{source}:{}", ctx.digest(&found)?));
            if is_add && found.len() == 1 && !found[0].is_dir && is_archive(ctx.open_file(&found[0])?)? {
                out.apply_in(dest.as_bytes(), decompress(ctx.open_file(&found[0])?)?)
                    .with_context(|| format!("extracting {source}"))?;
                continue;
            }
            let into = if many && !dest.ends_with('/') { format!("{dest}/") } else { dest.clone() };
            ctx.stage(&found, &into, attrs, &mut out)?;
        }
        out.finish()?;
        let input_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let key = key.then(&input_refs);
        let created_by =
            format!("{} {} {}", if is_add { "ADD" } else { "COPY" }, spec.sources.join(" "), dest);
        if self.cached(stage, step, &key, state, &created_by) {
            return Ok(key);
        }
        self.log(stage, &step.text, "");
        self.commit_staging(staging, &key, state, &created_by)?;
        Ok(key)
    }

    /// `WORKDIR`: the directory is made (with its parents, mode 0755, owned by USER) in a layer
    /// of its own when the image lacks it, as docker does even if no later step uses it. `None`
    /// when the image has it: then WORKDIR only changes the config.
    fn workdir_layer(
        &mut self,
        stage: &Stage,
        step: &Step,
        state: &mut ImageState,
        key: &Key,
    ) -> Result<Option<Key>> {
        let dir = state.workdir();
        let created_by = format!("WORKDIR {dir}");
        let lower = self.lower_dirs(state)?;
        let rel = dir.trim_start_matches('/');
        if rel.is_empty() || present_in_layers(&lower, rel) {
            return Ok(None);
        }
        let (uid, gid) = match state.user() {
            Some(user) => {
                let u =
                    user_in_layers(&lower, &user).with_context(|| format!("WORKDIR {dir}: USER {user}"))?;
                (u.uid, u.gid)
            }
            None => (0, 0),
        };
        let key = key.then(&["WORKDIR", &dir, &format!("{uid}:{gid}")]);
        if self.cached(stage, step, &key, state, &created_by) {
            return Ok(Some(key));
        }
        self.log(stage, &step.text, "");
        let staging = tempfile::Builder::new().prefix("workdir-").tempdir_in(self.work.path())?;
        let mut out = staging_applier(staging.path())?;
        let meta = Attributes { uid, gid, mode: None }.meta(0o755, now_timespec());
        let mut path = String::new();
        for part in rel.split('/') {
            path = if path.is_empty() { part.to_string() } else { format!("{path}/{part}") };
            out.put(path.as_bytes(), Node::Dir, &meta)?;
        }
        out.finish()?;
        self.commit_staging(staging, &key, state, &created_by)?;
        Ok(Some(key))
    }

    /// `--chown` names resolved through the stage's /etc/passwd and /etc/group.
    fn resolve_owner(&self, state: &ImageState, spec: &str) -> Result<(u32, u32)> {
        let lower = self.lower_dirs(state)?;
        let user = user_in_layers(&lower, spec).with_context(|| format!("--chown {spec}"))?;
        // Unlike USER, a --chown without a group takes the uid as gid (Docker's rule).
        let gid = if spec.contains(':') { user.gid } else { user.uid };
        Ok((user.uid, gid))
    }

    /// ADD of a URL: streamed to a temporary file while hashed (and checked against
    /// `--checksum` if given), then written into dest. Bounded in time: connecting, each read
    /// and the whole download have deadlines.
    fn add_url(
        &self,
        url: &str,
        dest: &str,
        checksum: Option<&str>,
        attrs: Attributes,
        out: &mut Applier,
    ) -> Result<Digest> {
        let name = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("index.html");
        let target = if dest.ends_with('/') { format!("{dest}{name}") } else { dest.to_string() };
        let want = checksum.map(|c| c.parse::<Digest>().context("--checksum")).transpose()?;
        let mut file = tempfile::tempfile_in(self.work.path()).context("a file for the download")?;
        let digest = download::fetch(url, &self.options.download, &mut file)?;
        if let Some(want) = want
            && want != digest
        {
            bail!("{url}: checksum mismatch: expected {want}, got {digest}");
        }
        file.seek(std::io::SeekFrom::Start(0))?;
        out.put(target.as_bytes(), Node::File(&mut file), &attrs.meta(0o600, now_timespec()))?;
        Ok(digest)
    }

    /// Writes the config and manifest, then points every tag at the manifest.
    fn write_image(&self, mut state: ImageState) -> Result<Built> {
        for (k, v) in &self.options.labels {
            state.set_label(k, v);
        }
        let created = match self.options.source_date_epoch {
            Some(s) => rfc3339(s),
            None => state.last_created().unwrap_or_else(|| self.now()),
        };
        state.config.insert("created".into(), json!(created));
        drop_nulls(state.config.get_mut("config"));
        let config_bytes = to_canonical_json(&Value::Object(state.config.clone()));
        let _writing = self.layout.lock_for_writing()?;
        let config = self.layout.put_document(media_type::OCI_CONFIG, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config,
            "layers": state.layers.iter().map(|l| &l.descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.layout.put_document(media_type::OCI_MANIFEST, &to_canonical_json(&manifest))?;
        let mut with_platform = manifest.clone();
        with_platform.platform = Some(self.options.platform.clone());
        for tag in &self.options.tags {
            self.layout.set_ref(&tag.to_string(), &with_platform)?;
        }
        Ok(Built { manifest, config_digest: config.digest })
    }
}

/// RUN's argv: exec form as is; shell form through SHELL; with heredocs, the shell runs the
/// line and its heredocs as a script (and a lone `RUN <<EOF` runs the heredoc itself).
fn run_argv(state: &ImageState, command: &instruction::Command, heredocs: &[parser::Heredoc]) -> Vec<String> {
    let instruction::Command::Shell(line) = command else {
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

/// A file in the image's layers (topmost first), as overlayfs would show it. Each layer is a
/// root: its symlinks resolve inside it, never to the host's files.
fn read_in_layers(lower: &[PathBuf], rel: &str) -> Option<String> {
    for l in lower {
        let root = Root::open(l).ok()?;
        match entry_kind(&root, rel.as_bytes()) {
            Some(FileType::CharacterDevice) => return None, // a whiteout
            Some(FileType::RegularFile) => {
                let text = root.read(rel, img::runtime::user::MAX_ACCOUNTS_FILE).ok()?;
                return String::from_utf8(text).ok();
            }
            _ => {}
        }
    }
    None
}

/// What `rel` is in `root` (its last component not followed), if it is there.
fn entry_kind(root: &Root, rel: &[u8]) -> Option<FileType> {
    let fd = root.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW).ok()?;
    rustix::fs::fstat(&fd).ok().map(|st| FileType::from_raw_mode(st.st_mode))
}

/// A user (`name`, `uid`, `name:group`, …) resolved through the layers' /etc/passwd and /etc/group.
fn user_in_layers(lower: &[PathBuf], spec: &str) -> Result<img::runtime::user::ExecUser> {
    let passwd = read_in_layers(lower, "etc/passwd").unwrap_or_default();
    let group = read_in_layers(lower, "etc/group").unwrap_or_default();
    img::runtime::user::resolve(spec, &passwd, &group)
}

/// Whether a path exists in the image's layers (topmost first), as overlayfs would show it. A
/// symlink on the way counts as there: docker would follow it, and it is not ours to replace.
fn present_in_layers(lower: &[PathBuf], rel: &str) -> bool {
    let Ok(roots) = lower.iter().map(|l| Root::open(l)).collect::<std::io::Result<Vec<Root>>>() else {
        return false;
    };
    let mut layers: &[Root] = &roots;
    let mut prefix = String::new();
    for part in rel.split('/') {
        prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
        // The topmost layer with an entry here decides what it is.
        let Some((i, kind)) =
            layers.iter().enumerate().find_map(|(i, l)| entry_kind(l, prefix.as_bytes()).map(|k| (i, k)))
        else {
            return false;
        };
        match kind {
            FileType::Symlink => return true,
            FileType::Directory => {}
            _ => return false, // a file, or a whiteout
        }
        // An opaque directory hides what lower layers have under it.
        let opaque = is_opaque(&layers[i], prefix.as_bytes());
        layers = if opaque { &layers[i..=i] } else { &layers[i..] };
    }
    true
}

/// Whether the directory `rel` of a layer snapshot carries overlayfs' opaque mark.
fn is_opaque(root: &Root, rel: &[u8]) -> bool {
    let Ok(fd) = root.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) else {
        return false;
    };
    let mut buf = [0u8; 8];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|k| rustix::fs::fgetxattr(&fd, *k, &mut buf).is_ok())
}

/// Whether ADD should extract a local file: a tar, possibly gzip or zstd compressed.
fn is_archive(file: fs::File) -> Result<bool> {
    let mut head = Vec::new();
    decompress(file)?.take(512).read_to_end(&mut head)?;
    Ok(head.len() >= 262 && &head[257..262] == b"ustar")
}

/// An applier writing a step's staging directory: owners as the step says, whiteouts
/// deleting (an archive ADD extracts may hold some), every path resolved inside it.
fn staging_applier(dir: &Path) -> Result<Applier> {
    Applier::new(dir, ApplyOptions { whiteouts: Whiteouts::Delete, owners: Owners::Chown })
}

/// Now, for files a step makes (heredocs, downloads, WORKDIR's directories); layers clamp it
/// to `SOURCE_DATE_EPOCH` when set.
fn now_timespec() -> Timespec {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timespec { tv_sec: now.as_secs() as i64, tv_nsec: now.subsec_nanos() as _ }
}

/// Removes null fields (a CMD cleared by ENTRYPOINT) from the config object.
fn drop_nulls(v: Option<&mut Value>) {
    if let Some(Value::Object(map)) = v {
        map.retain(|_, v| !v.is_null());
    }
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
