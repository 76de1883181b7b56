//! The build: runs the stages a target needs, step by step, with the cache, and writes the
//! resulting image into the layout. Refs are written only when everything succeeded.
//!
//! Each instruction has its own `dispatch_*` method (as BuildKit's dispatcher has one function
//! per instruction) over a [`StepContext`]: the stage being built, the image state it changes
//! and the cache key so far. Instructions that only change the config are in `config`,
//! WORKDIR in `workdir`, COPY and ADD in `copy`, RUN in `run`; `image` writes the result.
//!
//! Stages that do not need each other run at the same time, each on a thread of its own, up to
//! `--jobs` at once: a stage starts when the stages it reads (its FROM, `COPY --from`,
//! `RUN --mount=from=`) are done. The [`Builder`] is what they share; what one stage changes is
//! its [`StepContext`]. A failing stage stops the others ([`Jobs::cancel`]).

mod config;
mod copy;
mod image;
mod layers;
mod run;
mod workdir;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use anyhow::{Context, Result, anyhow, bail};
use img::digest::Digest;
use img::document::Descriptor;
use img::layer::apply::{Applier, Options as ApplyOptions, Owners, Whiteouts};
use img::layer::create::{self as changes, Compression};
use img::layout::Layout;
use img::layout::resolve;
use img::platform::Platform;
use img::reference::Reference;
use img::registry::Connections;
use img::registry::pull;
use img::snapshot::{self, Snapshots};
use img_dockerfile::ParseError;
use img_dockerfile::instruction::{self, Instruction, Step};
use img_dockerfile::parser;
use img_dockerfile::shell;
use img_dockerfile::stages::{Stage, Stages};
use rustix::fs::Timespec;

use crate::cache::{self, Cache, Key};
use crate::context::BuildContext;
use crate::download;
use crate::jobs::Jobs;
use crate::state::{ImageState, LayerRef, Variables};
use run::ContextViews;

#[derive(Clone)]
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
    /// `--jobs`: how many stages may build at once (at least 1).
    pub jobs: usize,
    /// The build is one of several platforms': the log names the platform with the stage.
    pub platform_in_log: bool,
}

/// `--jobs`' default: the CPUs this process may use, and at least two, since a stage often
/// waits (on a download, a `sleep`, the network) more than it computes.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

/// The image a build wrote.
pub struct Built {
    pub manifest: Descriptor,
    pub config_digest: Digest,
}

/// What a finished stage left: its image and the key of its state.
struct StageResult {
    state: ImageState,
    key: Key,
}

/// Finished stages' results by index: those a stage depends on, as it is handed them.
type Done = HashMap<usize, Arc<StageResult>>;

/// What one step of a stage works on, passed to each instruction's `dispatch_*`: the stage
/// and what it may read (the stages built before it, the global ARGs), and what it changes
/// (the image state and the cache key that names it).
struct StepContext<'s> {
    stages: &'s Stages,
    stage: &'s Stage,
    /// The stages this one depends on, by index (built before it): what `COPY --from` and
    /// `RUN --mount=from=` read.
    done: &'s Done,
    /// ARGs before the first FROM: a stage's `ARG NAME` without a default takes its value.
    globals: &'s BTreeMap<String, String>,
    /// The Dockerfile's escape character, for variable expansion.
    escape: char,
    state: ImageState,
    /// The cache key of `state`.
    key: Key,
    /// ARG and ENV as they were before the current instruction: `ENV A=1 B=$A` sees the old A.
    vars: Variables,
}

impl StepContext<'_> {
    /// Expands variables in a word, as the current instruction sees them.
    fn expand(&self, word: &str) -> Result<String> {
        shell::expand(word, self.escape, &|n: &str| self.vars.get(n).cloned())
    }

    /// Expands and splits into words.
    fn expand_words(&self, word: &str) -> Result<Vec<String>> {
        shell::expand_words(word, self.escape, &|n: &str| self.vars.get(n).cloned())
    }
}

/// The build, shared by the stages running at once: what it reads, and the stores and
/// caches it writes, each safe to use from several threads (the layout, build cache and
/// snapshots write by atomic rename; the rest is behind a lock).
pub struct Builder<'a> {
    layout: &'a Layout,
    store_root: PathBuf,
    context: BuildContext,
    options: Options,
    cache: Cache,
    snapshots: Snapshots,
    /// Keeps `img-rm` from removing snapshots while the build uses them.
    _snapshots_held: fs::File,
    /// Locked while a base image is pulled.
    connections: Mutex<Connections>,
    /// Unpacked root filesystems of stages and images that COPY --from reads, made once each
    /// (a stage waiting for another's copy of the same one waits on its slot).
    rootfs_copies: Mutex<HashMap<String, Arc<Mutex<Option<tempfile::TempDir>>>>>,
    /// Copies of context directories without what `.dockerignore` excludes, for read-only
    /// bind mounts (by resolved path).
    context_views: Mutex<ContextViews>,
    work: tempfile::TempDir,
    step_count: AtomicUsize,
    /// Whether the build is being stopped, and the RUN helpers to kill then (shared with the
    /// builds of the other platforms of a multi-platform build).
    jobs: Arc<Jobs>,
    /// Errors name the stage (the build has more than one).
    name_stages: std::sync::atomic::AtomicBool,
}

/// A lock, even if a thread panicked while holding it (the data are caches, still usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a stage is named in errors: its `AS` name, else its index.
fn label(stage: &Stage) -> String {
    stage.name.clone().unwrap_or_else(|| stage.index.to_string())
}

/// Held while a base image is pulled and looked up, by the builds of every platform.
static BASE_IMAGES: Mutex<()> = Mutex::new(());

/// Threads that run stages get the stack a main thread has (deeply nested variable
/// expansions recurse).
const STAGE_STACK: usize = 16 << 20;

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
            connections: Mutex::new(connections),
            rootfs_copies: Mutex::default(),
            context_views: Mutex::default(),
            work,
            options,
            step_count: AtomicUsize::new(0),
            jobs: Arc::new(Jobs::new()),
            name_stages: Default::default(),
        })
    }

    pub fn build(&self) -> Result<Built> {
        let name = self.options.dockerfile_name.clone();
        let at_line = |e: ParseError| match e.line {
            Some(line) => anyhow!("{name}:{line}: {}", e.message),
            None => anyhow!("{name}: {}", e.message.replace('\n', " ")),
        };
        let dockerfile = parser::parse(&self.options.dockerfile).map_err(at_line)?;
        let escape = dockerfile.escape;
        let steps = instruction::from_nodes(&dockerfile.nodes).map_err(at_line)?;
        let stages = Stages::split(steps).map_err(at_line)?;
        let globals = self.global_args(&stages, escape).map_err(at_line)?;
        let target = stages.target(self.options.target.as_deref())?;
        let base_of = |s: &Stage| -> Result<String, ParseError> {
            let Instruction::From { image, .. } = &s.from.instruction else {
                unreachable!("stages start with FROM")
            };
            shell::expand(image, escape, &|n: &str| globals.get(n).cloned())
                .map_err(|e| ParseError::at(s.from.line, img_cli::one_line(&e)))
        };
        let order = stages.build_order(target, &base_of).map_err(at_line)?;
        let mut deps = HashMap::new();
        for &i in &order {
            let mut d = stages.dependencies(i, &base_of).map_err(at_line)?;
            d.sort_unstable();
            d.dedup();
            deps.insert(i, d);
        }
        self.name_stages.store(order.len() > 1, Ordering::Relaxed);
        let run = |i: usize, done: &Done| {
            let stage = &stages.stages[i];
            let base = base_of(stage)?;
            self.run_stage(&stages, stage, &base, &globals, done, escape)
        };
        let mut results = self.run_stages(&order, &deps, &run)?;
        let last = results.remove(&target).expect("the target was built");
        let mut last = Arc::try_unwrap(last)
            .unwrap_or_else(|shared| StageResult { state: shared.state.clone(), key: shared.key.clone() });
        // --cache-to type=inline: the cache's entries travel as a label of the image.
        let mut inline = Vec::new();
        cache::transfer::add_inline(&self.cache, &last.state, &mut inline);
        for (k, v) in &inline {
            last.state.set_label(k, v);
        }
        self.write_image(last.state)
    }

    /// Makes this build stop when `jobs` is cancelled, and cancel it when this build fails:
    /// the builds of a multi-platform build stop together.
    pub fn share_jobs(&mut self, jobs: Arc<Jobs>) {
        self.jobs = jobs;
    }

    /// The build cache, for `--cache-from` (before [`Builder::build`]) and `--cache-to` (after).
    pub fn cache(&mut self) -> &mut Cache {
        &mut self.cache
    }

    /// Runs the stages of `order` (dependencies first), each as soon as the stages it depends
    /// on are done, up to `--jobs` at once. The first failure stops the others and is the
    /// build's error.
    fn run_stages(
        &self,
        order: &[usize],
        deps: &HashMap<usize, Vec<usize>>,
        run: &(dyn Fn(usize, &Done) -> Result<StageResult> + Sync),
    ) -> Result<Done> {
        let mut waiting_on: HashMap<usize, usize> = order.iter().map(|&i| (i, deps[&i].len())).collect();
        let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in order {
            for &d in &deps[&i] {
                dependents.entry(d).or_default().push(i);
            }
        }
        // Ready stages start in the sequential order, so `--jobs 1` builds as before.
        let mut ready: VecDeque<usize> = order.iter().copied().filter(|i| waiting_on[i] == 0).collect();
        let mut results: Done = HashMap::new();
        let mut failure: Option<anyhow::Error> = None;
        let jobs = self.options.jobs.max(1);
        let (tx, rx) = mpsc::channel::<(usize, Result<StageResult>)>();
        std::thread::scope(|scope| {
            let mut running = 0;
            loop {
                while failure.is_none() && running < jobs {
                    let Some(i) = ready.pop_front() else { break };
                    let done: Done = deps[&i].iter().map(|d| (*d, results[d].clone())).collect();
                    let tx = tx.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("stage-{i}"))
                        .stack_size(STAGE_STACK)
                        .spawn_scoped(scope, move || {
                            let result =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(i, &done)))
                                    .unwrap_or_else(|_| Err(anyhow!("stage {i}: internal error (panic)")));
                            let _ = tx.send((i, result));
                        });
                    match spawned {
                        Ok(_) => running += 1,
                        Err(e) => {
                            failure = Some(anyhow!("starting a thread for stage {i}: {e}"));
                            self.jobs.cancel();
                        }
                    }
                }
                if running == 0 {
                    break;
                }
                let (i, result) = rx.recv().expect("running stages hold a sender");
                running -= 1;
                match result {
                    Ok(r) => {
                        results.insert(i, Arc::new(r));
                        for &j in dependents.get(&i).into_iter().flatten() {
                            let n = waiting_on.get_mut(&j).expect("a stage of the order");
                            *n -= 1;
                            if *n == 0 {
                                ready.push_back(j);
                            }
                        }
                    }
                    // The first failure is the build's; the others' (stopped, killed) are not.
                    Err(e) => {
                        if failure.is_none() {
                            failure = Some(e);
                            self.jobs.cancel();
                        }
                    }
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// ARGs before the first FROM, with `--build-arg` values and the predefined platform ARGs.
    fn global_args(&self, stages: &Stages, escape: char) -> Result<BTreeMap<String, String>, ParseError> {
        let mut values = self.platform_args();
        for ((name, default), &line) in stages.global_args.iter().zip(&stages.global_arg_lines) {
            let value = match (self.options.build_args.get(name), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(
                    shell::expand(d, escape, &|n: &str| values.get(n).cloned())
                        .map_err(|e| ParseError::at(line, img_cli::one_line(&e)))?,
                ),
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

    /// How a stage is named in the log: with its platform when the build makes several
    /// (`linux/arm64 build`), as BuildKit's progress does.
    fn log_label(&self, stage: &Stage) -> String {
        match self.options.platform_in_log {
            true => format!("{} {}", self.options.platform, label(stage)),
            false => label(stage),
        }
    }

    fn log(&self, stage: &Stage, text: &str, note: &str) {
        let n = self.step_count.fetch_add(1, Ordering::Relaxed) + 1;
        crate::log::line(&format!("#{n} [{}] {text}{note}", self.log_label(stage)));
    }

    /// Builds one stage; an error says the Dockerfile line and, in a multi-stage build, the
    /// stage (and the platform, when the build makes several).
    fn run_stage(
        &self,
        stages: &Stages,
        stage: &Stage,
        base: &str,
        globals: &BTreeMap<String, String>,
        done: &Done,
        escape: char,
    ) -> Result<StageResult> {
        let platform = &self.options.platform;
        let in_stage = match (self.name_stages.load(Ordering::Relaxed), self.options.platform_in_log) {
            (true, true) => format!("{platform} stage {}: ", label(stage)),
            (true, false) => format!("stage {}: ", label(stage)),
            (false, true) => format!("{platform}: "),
            (false, false) => String::new(),
        };
        let name = &self.options.dockerfile_name;
        let from = |e: anyhow::Error| match in_stage.as_str() {
            "" => e,
            _ => anyhow!("{name}:{}: {in_stage}{}", stage.from.line, img_cli::one_line(&e)),
        };
        self.jobs.check()?;
        let (mut cx, steps) = self.start_stage(stages, stage, base, globals, done, escape).map_err(from)?;
        for step in &steps {
            self.jobs.check()?;
            self.dispatch(&mut cx, step)
                .and_then(|()| cx.state.check_size())
                .map_err(|e| anyhow!("{name}:{}: {in_stage}{}", step.line, img_cli::one_line(&e)))?;
        }
        Ok(StageResult { state: cx.state, key: cx.key })
    }

    /// A stage's FROM: its starting state, and its steps (the base's ONBUILD triggers first).
    fn start_stage<'s>(
        &self,
        stages: &'s Stages,
        stage: &'s Stage,
        base: &str,
        globals: &'s BTreeMap<String, String>,
        done: &'s Done,
        escape: char,
    ) -> Result<(StepContext<'s>, Vec<Step>)> {
        let Instruction::From { platform, .. } = &stage.from.instruction else { unreachable!() };
        let platform = match platform {
            Some(p) => shell::expand(p, escape, &|n: &str| globals.get(n).cloned())?.parse()?,
            None => self.options.platform.clone(),
        };
        self.log(stage, &format!("FROM {base}"), "");
        let (mut state, key) = match stages.find_named(base) {
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
        let mut key = key.then(&["platform", &platform.to_string()]);
        // SOURCE_DATE_EPOCH changes every layer's file times and every `created`: a step built
        // with it is not the step built without it (nor with another value).
        if let Some(epoch) = self.options.source_date_epoch {
            key = key.then(&["SOURCE_DATE_EPOCH", &epoch.to_string()]);
        }

        let mut steps: Vec<Step> = Vec::new();
        for trigger in state.take_onbuild() {
            let node = parser::node_from_line(&trigger, escape)?;
            let step = instruction::from_nodes(std::slice::from_ref(&node))
                .with_context(|| format!("ONBUILD trigger {trigger:?} of {base}"))?;
            steps.extend(step);
        }
        steps.extend(stage.steps.iter().cloned());
        let vars = Variables::default(); // taken by each step
        Ok((StepContext { stages, stage, done, globals, escape, state, key, vars }, steps))
    }

    /// A base image from the layout, pulled first if it is not there (or with `--pull`).
    fn base_image(&self, name: &str, platform: &Platform) -> Result<(ImageState, Digest)> {
        let wanted = name.parse::<Reference>()?.to_string();
        let policy = if self.options.pull { pull::Policy::Always } else { pull::Policy::Missing };
        let image = {
            // Pulling one platform's image of a tag points the tag at it (as docker's pull
            // --platform does): another platform's build must not look the tag up between
            // this pull and this lookup.
            let _one_at_a_time = lock(&BASE_IMAGES);
            pull::ensure(self.layout, &wanted, Some(platform), policy, &mut lock(&self.connections))?;
            resolve::image(self.layout, &wanted, Some(platform))?
        };
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

    /// Runs one step: the instruction's own `dispatch_*`, which changes the state and moves the
    /// key on.
    fn dispatch(&self, cx: &mut StepContext, step: &Step) -> Result<()> {
        // The last step's snapshot goes first: while it is held, the state cannot update its
        // variables in place and would copy them all, each step (quadratic in ENV lines).
        cx.vars = Variables::default();
        cx.vars = cx.state.variables();
        match &step.instruction {
            Instruction::From { .. } => unreachable!("FROM starts a stage"),
            Instruction::Arg(args) => self.dispatch_arg(cx, step, args),
            Instruction::Env(pairs) => self.dispatch_env(cx, step, pairs),
            Instruction::Label(pairs) => self.dispatch_label(cx, step, pairs),
            Instruction::Workdir(dir) => self.dispatch_workdir(cx, step, dir),
            Instruction::User(user) => self.dispatch_user(cx, step, user),
            Instruction::Expose(ports) => self.dispatch_expose(cx, step, ports),
            Instruction::Volume(volumes) => self.dispatch_volume(cx, step, volumes),
            Instruction::StopSignal(signal) => self.dispatch_stopsignal(cx, step, signal),
            Instruction::Shell(argv) => self.dispatch_shell(cx, step, argv),
            Instruction::Cmd(command) => self.dispatch_cmd(cx, step, command),
            Instruction::Entrypoint(command) => self.dispatch_entrypoint(cx, step, command),
            Instruction::Healthcheck(health) => self.dispatch_healthcheck(cx, step, health),
            Instruction::Onbuild(trigger) => self.dispatch_onbuild(cx, step, trigger),
            Instruction::Maintainer(name) => self.dispatch_maintainer(cx, step, name),
            Instruction::Copy(spec) => self.dispatch_copy(cx, step, spec),
            Instruction::Add(spec) => self.dispatch_add(cx, step, spec),
            Instruction::Run(run) => self.dispatch_run(cx, step, run),
        }
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
        let layers = state.layers.iter().map(|l| (&l.descriptor, &l.diff_id));
        img::runtime::overlay::snapshot_lowers(&self.snapshots, self.layout, layers)
    }

    /// Looks a step's new key up; on a hit adds the cached layer and history to the state and
    /// makes the key the state's.
    fn cached(&self, cx: &mut StepContext, step: &Step, key: &Key, created_by: &str) -> bool {
        if self.options.no_cache {
            return false;
        }
        let Some(entry) = self.cache.get(key, self.layout) else { return false };
        self.log(cx.stage, &step.text, "  CACHED");
        self.add_result(&mut cx.state, entry, created_by);
        cx.key = key.clone();
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
    fn commit_changes(&self, dir: &Path, key: &Key, state: &mut ImageState, created_by: &str) -> Result<()> {
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
        &self,
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

    /// An unpacked root filesystem of a stage (by name or index) or an image, for COPY --from
    /// and RUN --mount=from=.
    fn rootfs_of(&self, from: &str, done: &Done, stages: &Stages) -> Result<PathBuf> {
        let stage = stages.find(from).and_then(|i| done.get(&i).map(|r| (i, r)));
        let name = match stage {
            Some((i, _)) => format!("stage {i}"),
            None => format!("image {from}"),
        };
        let slot = lock(&self.rootfs_copies).entry(name).or_default().clone();
        let mut slot = lock(&slot);
        if let Some(dir) = slot.as_ref() {
            return Ok(dir.path().to_path_buf());
        }
        let state = match stage {
            Some((_, r)) => r.state.clone(),
            None => self.base_image(from, &self.options.platform)?.0,
        };
        let dir = tempfile::Builder::new().prefix("rootfs-").tempdir_in(self.work.path())?;
        let layers: Vec<Descriptor> = state.layers.iter().map(|l| l.descriptor.clone()).collect();
        let diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        snapshot::unpack_copy(self.layout, &layers, &diff_ids, dir.path())?;
        let path = dir.path().to_path_buf();
        *slot = Some(dir);
        Ok(path)
    }
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
