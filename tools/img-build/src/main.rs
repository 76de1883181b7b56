//! img-build: Dockerfile + context → an image in the layout; prints its record.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use img::document::Descriptor;
use img::layer::apply::{Applier, Options as ApplyOptions};
use img::layer::compression::decompress;
use img::layer::create::Compression;
use img::layout::Layout;
use img::platform::Platform;
use img::record::{self, ImageRecord};
use img::reference::Reference;
use img::registry::Connections;
use img::registry::timeouts::limit;
use img::store;
use img_build::build::{self, Builder, Built};
use img_build::cache::Entry as CacheEntry;
use img_build::cache::transfer::{self, CacheFrom, CacheTo};
use img_build::context::BuildContext;
use img_build::jobs::Jobs;
use img_build::output::Output;
use img_build::platforms;
use img_cli::{LayoutArg, RegistryArgs};

/// Build an image from a Dockerfile and a context directory (or `-`: a tar on stdin) into the
/// layout, and print its record. The build log goes to stderr.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Name the image (repeatable): `app`, `localhost:5000/app:1`
    #[arg(short = 't', long = "tag", value_name = "REF")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Set a build argument (`NAME=VALUE`, or `NAME` to take it from the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// Build this stage (by name or index) instead of the last
    #[arg(long)]
    target: Option<String>,
    /// The platforms to build for, comma-separated (default: the host's): with several, each
    /// is built (foreign ones' RUN steps emulated) and the image is an index of them all
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT],...")]
    platforms: Vec<String>,
    /// Add a label to the image (`KEY=VALUE`, repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    no_cache: bool,
    /// Export the build cache (repeatable): `type=registry,ref=REF[,mode=min|max]`,
    /// `type=local,dest=DIR[,mode=min|max]` or `type=inline` (in the image's config)
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Use an exported build cache (repeatable): `type=registry,ref=REF` (a cache, or an image
    /// built with `--cache-to type=inline`) or `type=local,src=DIR`; one that cannot be read is
    /// a warning
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Pull base images even if the layout has them
    #[arg(long)]
    pull: bool,
    /// Write the image's manifest digest to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Layer compression
    #[arg(long, default_value = "gzip", value_name = "gzip|zstd")]
    compression: Compression,
    /// Make a secret available to `RUN --mount=type=secret`: `id=NAME,src=FILE`, or
    /// `id=NAME,env=VAR` for a variable's value (`id=VAR` alone: the variable of that name)
    #[arg(long = "secret", value_name = "id=NAME,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// Also write the image's root filesystem out: DIR, type=local,dest=DIR or type=tar,dest=FILE
    #[arg(short = 'o', long, value_name = "DEST")]
    output: Option<String>,
    /// Add a line to RUN steps' /etc/hosts (HOST:IP)
    #[arg(long, value_name = "HOST:IP")]
    add_host: Vec<String>,
    /// The network of RUN steps: default (the host's), host, or none
    #[arg(long, value_name = "MODE")]
    network: Option<String>,
    /// Forward an SSH agent to `RUN --mount=type=ssh` (repeatable): `default` is $SSH_AUTH_SOCK
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    ssh: Vec<String>,
    /// `ADD <url>`: the longest one download may take in all (`0`: no limit); connecting and
    /// idle reads are bounded by --connect-timeout and --read-timeout
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = img::registry::timeouts::parse_duration)]
    download_timeout: Duration,
    /// `ADD <url>`: the largest download accepted, in bytes (default: no limit)
    #[arg(long, value_name = "BYTES")]
    download_max_size: Option<u64>,
    /// Only check the Dockerfile (BuildKit's build checks and Docker's best practices): print
    /// the warnings (JSON Lines on stdout) and exit 1 if there are any, 0 if none. Nothing is
    /// built or pulled and the layout is not touched
    #[arg(long)]
    check: bool,
    /// How many stages may build at once (default: the number of CPUs, at least 2)
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    stage_jobs: Option<u32>,
    /// Print only the image's digest on stdout, and no build log
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The build context: a directory, or `-` for a tar on stdin (with --check: default `.`)
    #[arg(required_unless_present = "check")]
    context: Option<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-build");
    img_cli::run("img-build", || {
        // RUN steps must not reach this binary through /proc/self/exe (CVE-2019-5736): from
        // here on img-build runs a sealed copy of itself.
        img::runtime::sealed_exe::ensure("img-build")?;
        // A RUN step's helper: img-build started again by itself to run one container.
        let mut argv = std::env::args_os().skip(1);
        if argv.next().as_deref() == Some(img_build::run_step::HELPER_ARG.as_ref()) {
            let dir = argv.next().context("the helper needs the step's directory")?;
            return Ok(img_build::run_step::helper(Path::new(&dir)));
        }
        let args = Args::parse();
        // stdout carries the record only: RUN steps inherit fd 1, so it points at stderr
        // while building and the record goes to a saved copy of the real stdout.
        let mut records = redirect_stdout_to_stderr()?;
        let (context_dir, _extracted) = context_dir(&args)?;
        let dockerfile = read_dockerfile(&args, &context_dir)?;
        if args.check {
            return check(&dockerfile.1, &dockerfile.0, &mut records);
        }
        let layout = Layout::open_or_create(store::choose_layout(args.layout.layout.as_deref(), None)?)?;
        let tags = args.tags.iter().map(|t| t.parse::<Reference>()).collect::<Result<Vec<_>>>()?;
        let platforms = platforms::parse(&args.platforms)?;
        let several = platforms.len() > 1;
        // Secrets given as variables live in files of a private directory for the build.
        let (secret_paths, _secret_files) = secrets(&args.secrets)?;
        let options = build::Options {
            dockerfile: dockerfile.0,
            dockerfile_name: dockerfile.1,
            tags: if several { Vec::new() } else { tags.clone() }, // several: the index is tagged
            build_args: key_values(&args.build_args, "--build-arg", true)?,
            target: args.target.clone(),
            platform: platforms[0].clone(),
            labels: key_values(&args.labels, "--label", false)?.into_iter().collect(),
            no_cache: args.no_cache,
            network_none: match args.network.as_deref() {
                None | Some("default" | "host") => false,
                Some("none") => true,
                Some(other) => bail!("--network {other}: expected default, host or none"),
            },
            add_hosts: {
                for h in &args.add_host {
                    img_cli::parse_add_host(h)?;
                }
                args.add_host.clone()
            },
            pull: args.pull,
            compression: args.compression,
            secrets: secret_paths,
            ssh: ssh_agents(&args.ssh)?,
            source_date_epoch: source_date_epoch()?,
            download: img_build::download::Limits {
                connect: limit(args.registry.connect_timeout),
                idle: limit(args.registry.read_timeout),
                total: limit(args.download_timeout),
                max_bytes: args.download_max_size,
            },
            jobs: args.stage_jobs.map_or_else(build::default_jobs, |n| n as usize),
            platform_in_log: several,
        };
        let output = args.output.as_deref().map(img_build::output::parse).transpose()?;
        if let Some(output) = &output {
            output.check()?;
            if several && matches!(output, Output::Tar(_)) {
                bail!(
                    "--output type=tar takes one platform's tree; with several platforms use a directory (one subdirectory per platform)"
                );
            }
        }
        let shared = Shared {
            args: &args,
            layout: &layout,
            root: store::root()?,
            context_dir,
            cache_to: args.cache_to.iter().map(|s| CacheTo::parse(s)).collect::<Result<Vec<_>>>()?,
            cache_from: args.cache_from.iter().map(|s| CacheFrom::parse(s)).collect::<Result<Vec<_>>>()?,
        };
        warn(&options.dockerfile_name, &options.dockerfile)?;
        // -q: the log goes nowhere while building; an error still reaches stderr.
        let quiet = if args.quiet { Some(Quiet::start()?) } else { None };

        // Each platform's image, built at the same time as the others' (as BuildKit does);
        // the cache entries each export takes from each build, merged into one export.
        let mut images: Vec<(Platform, Built)> = Vec::new();
        let mut exports: Vec<BTreeMap<String, CacheEntry>> = vec![BTreeMap::new(); shared.cache_to.len()];
        for (platform, (built, entries)) in platforms.iter().zip(shared.build_all(&options, &platforms)?) {
            for (all, more) in exports.iter_mut().zip(entries) {
                all.extend(more);
            }
            images.push((platform.clone(), built));
        }
        let mut cache_connections = Connections::new(args.registry.options()?);
        for (to, entries) in shared.cache_to.iter().zip(&exports) {
            transfer::export(entries, &layout, to, &mut cache_connections)?;
        }
        let image = match &images[..] {
            [(_, built)] => built.manifest.clone(),
            _ => {
                let manifests: Vec<_> = images.iter().map(|(p, b)| (p.clone(), b.manifest.clone())).collect();
                platforms::write_index(&layout, &manifests, &tags)?
            }
        };
        if let Some(output) = &output {
            write_output(&layout, &images, output)?;
        }
        if let Some(path) = &args.iidfile {
            std::fs::write(path, image.digest.to_string())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if quiet.is_some() {
            drop(quiet);
            writeln!(records, "{}", image.digest).context("writing the digest")?;
            return Ok(ExitCode::SUCCESS);
        }
        print_records(&mut records, &layout, &image, &tags, &images)?;
        let built_for = if several { format!(" for {}", args.platforms.join(",")) } else { String::new() };
        eprintln!("img-build: built {}{built_for}", image.digest);
        Ok(ExitCode::SUCCESS)
    })
}

/// What each platform's build shares.
struct Shared<'a> {
    args: &'a Args,
    layout: &'a Layout,
    root: PathBuf,
    context_dir: PathBuf,
    cache_to: Vec<CacheTo>,
    cache_from: Vec<CacheFrom>,
}

/// An image built for one platform, and the cache entries each `--cache-to` takes from it.
type PlatformBuild = (Built, Vec<BTreeMap<String, CacheEntry>>);

/// Threads that build a platform get the stack a main thread has.
const PLATFORM_STACK: usize = 8 << 20;

impl Shared<'_> {
    /// Builds every platform at once, each on a thread of its own. The first failure stops
    /// the others (their RUN steps are killed) and is the build's error.
    fn build_all(&self, options: &build::Options, platforms: &[Platform]) -> Result<Vec<PlatformBuild>> {
        if let [platform] = platforms {
            let options = build::Options { platform: platform.clone(), ..options.clone() };
            return Ok(vec![self.build(options, Arc::new(Jobs::new()))?]);
        }
        let jobs = Arc::new(Jobs::new());
        let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let built = std::thread::scope(|scope| -> Result<Vec<Option<PlatformBuild>>> {
            let mut threads = Vec::new();
            for platform in platforms {
                let options = build::Options { platform: platform.clone(), ..options.clone() };
                let (jobs, failure) = (jobs.clone(), &failure);
                let thread = std::thread::Builder::new()
                    .name(format!("platform {platform}"))
                    .stack_size(PLATFORM_STACK)
                    .spawn_scoped(scope, move || match self.build(options, jobs.clone()) {
                        Ok(built) => Some(built),
                        Err(e) => {
                            let mut first = failure.lock().unwrap_or_else(|e| e.into_inner());
                            // The first failure is the build's; the others were stopped by it.
                            if first.is_none() {
                                *first = Some(e);
                                jobs.cancel();
                            }
                            None
                        }
                    })
                    .context("starting a thread for a platform")?;
                threads.push(thread);
            }
            Ok(threads.into_iter().map(|t| t.join().unwrap_or(None)).collect())
        })?;
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        built.into_iter().map(|b| b.context("a platform's build ended without a result")).collect()
    }

    /// Builds the image of one platform (`options.platform`), with the caches of
    /// `--cache-from` for that platform.
    fn build(&self, options: build::Options, jobs: Arc<Jobs>) -> Result<PlatformBuild> {
        let platform = options.platform.clone();
        let context = BuildContext::open(&self.context_dir)?;
        let connections = Connections::new(self.args.registry.options()?);
        let mut cache_connections = Connections::new(self.args.registry.options()?);
        let mut builder = Builder::new(self.layout, &self.root, context, options, connections)?;
        builder.share_jobs(jobs);
        for (from, spec) in self.cache_from.iter().zip(&self.args.cache_from) {
            match transfer::import(from, &mut cache_connections, &platform) {
                Ok(imported) => builder.cache().add_import(imported),
                Err(e) => eprintln!(
                    "img-build: warning: --cache-from {spec}: {}; not using it",
                    img_cli::one_line(&e)
                ),
            }
        }
        builder.cache().inline = self.cache_to.contains(&CacheTo::Inline);
        let built = builder.build()?;
        let mut entries = Vec::new();
        if !self.cache_to.is_empty() {
            let manifest = img::document::parse_manifest(&self.layout.read_document(&built.manifest)?)?;
            for to in &self.cache_to {
                entries.push(to.entries(builder.cache(), &manifest.layers));
            }
        }
        Ok((built, entries))
    }
}

/// One record per tag, as docker's --iidfile and img-pull's records (so `| img-push` pushes
/// every tag); one without a ref when the image has no tag. A multi-platform build's record
/// is its index's (no `platform`, no `config`).
fn print_records(
    records: &mut File,
    layout: &Layout,
    image: &Descriptor,
    tags: &[Reference],
    images: &[(Platform, Built)],
) -> Result<()> {
    let mut names: Vec<Option<String>> = Vec::new();
    for t in tags {
        let name = Some(t.to_string());
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        names.push(None);
    }
    for name in names {
        let mut record = ImageRecord::new(image, name, layout.root());
        if let [(platform, built)] = images {
            record.platform = Some(platform.to_string());
            record
                .extra
                .insert("config".to_string(), serde_json::Value::from(built.config_digest.to_string()));
        }
        record::write(records, &record).context("writing the record")?;
    }
    Ok(())
}

/// `--output`: the image's tree; with several platforms, one directory per platform in it.
fn write_output(layout: &Layout, images: &[(Platform, Built)], output: &Output) -> Result<()> {
    if let [(_, built)] = images {
        return img_build::output::export(layout, &built.manifest.digest, output);
    }
    let dest = output.dest();
    std::fs::create_dir_all(dest).with_context(|| format!("--output: creating {}", dest.display()))?;
    for (platform, built) in images {
        let dir = Output::Local(dest.join(platforms::output_dir(platform)));
        img_build::output::export(layout, &built.manifest.digest, &dir)?;
    }
    Ok(())
}

/// `-q`: stderr (the log, and RUN steps' output, which also has stdout) points at /dev/null
/// until this is dropped, which points both back at the real stderr.
struct Quiet {
    saved: OwnedFd,
}

impl Quiet {
    fn start() -> Result<Quiet> {
        let null = File::options().write(true).open("/dev/null").context("opening /dev/null")?;
        // SAFETY: dup/dup2 on the process's standard descriptors and one it owns; the copy of
        // stderr is owned by the returned value (close-on-exec, so containers do not get it).
        unsafe {
            let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
            if saved < 0 {
                bail!("saving stderr: {}", std::io::Error::last_os_error());
            }
            let saved = OwnedFd::from_raw_fd(saved);
            if libc::dup2(null.as_raw_fd(), 2) < 0 || libc::dup2(null.as_raw_fd(), 1) < 0 {
                bail!("silencing the log: {}", std::io::Error::last_os_error());
            }
            Ok(Quiet { saved })
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        // SAFETY: dup2 from a descriptor this value owns onto the standard ones.
        unsafe {
            libc::dup2(self.saved.as_raw_fd(), 2);
            libc::dup2(self.saved.as_raw_fd(), 1);
        }
    }
}

fn redirect_stdout_to_stderr() -> Result<File> {
    // SAFETY: dup/dup2 on the process's own standard descriptors; the new descriptor is owned
    // by the returned File (and close-on-exec so containers do not inherit it).
    unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if saved < 0 || libc::dup2(2, 1) < 0 {
            bail!("redirecting stdout: {}", std::io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(saved))
    }
}

/// How many of the build checks' warnings a build shows before its log.
const WARNINGS_SHOWN: usize = 20;

/// The build checks' warnings, one line each, before the build's log; with `# check=error=true`
/// they fail the build, as in BuildKit. A Dockerfile that does not parse shows none: the build
/// says what is wrong with it.
fn warn(name: &str, text: &str) -> Result<()> {
    let report = img_dockerfile::checks::check(text).unwrap_or_default();
    let warnings = &report.warnings;
    for warning in warnings.iter().take(WARNINGS_SHOWN) {
        eprintln!("{name}:{}: warning: {warning}", warning.line);
    }
    if warnings.len() > WARNINGS_SHOWN {
        eprintln!(
            "{name}: {} more warnings (img-build --check lists them all)",
            warnings.len() - WARNINGS_SHOWN
        );
    }
    if report.error && !warnings.is_empty() {
        let n = warnings.len();
        let plural = if n == 1 { "" } else { "s" };
        bail!("{name}: {n} build check warning{plural}, and `# check=error=true` makes warnings errors");
    }
    Ok(())
}

/// `--check`: each warning on stderr for people (`Dockerfile:12: Rule: message (fix: …)`)
/// and as a record on stdout; exit status 1 when there are warnings, as BuildKit's.
fn check(name: &str, text: &str, records: &mut File) -> Result<ExitCode> {
    let warnings = img_dockerfile::checks::check(text)
        .map_err(|e| match e.line {
            Some(line) => anyhow::anyhow!("{name}:{line}: {}", e.message),
            None => anyhow::anyhow!("{name}: {}", e.message),
        })?
        .warnings;
    for warning in &warnings {
        eprintln!("{name}:{}: {warning}", warning.line);
        writeln!(records, "{}", warning.record()).context("writing a record")?;
    }
    match warnings.len() {
        0 => {
            eprintln!("img-build: {name}: no warnings");
            Ok(ExitCode::SUCCESS)
        }
        n => {
            eprintln!("img-build: {name}: {n} warning{}", if n == 1 { "" } else { "s" });
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The context directory; `-` extracts a tar from stdin into a temp dir (kept until exit).
fn context_dir(args: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let context = args.context.as_deref().unwrap_or(".");
    if context != "-" {
        return Ok((PathBuf::from(context), None));
    }
    if args.file.as_deref() == Some("-") {
        bail!("the context and the Dockerfile cannot both come from stdin");
    }
    if std::io::stdin().is_terminal() {
        bail!("context `-` reads a tar from stdin, but stdin is a terminal");
    }
    let dir = tempfile::tempdir().context("creating a directory for the context")?;
    let mut applier = Applier::new(dir.path(), ApplyOptions::default())?;
    applier.apply(decompress(std::io::stdin())?).context("reading the context tar from stdin")?;
    applier.finish()?;
    Ok((dir.path().to_path_buf(), Some(dir)))
}

/// The most a Dockerfile may hold.
const MAX_DOCKERFILE: u64 = 16 << 20;

/// The Dockerfile's text and the name errors call it by. One inside the context is read with
/// its symlinks resolved inside the context (a context is untrusted: `Dockerfile ->
/// /etc/shadow` must not be read, nor its lines shown in an error); one the user names
/// outside the context is theirs.
fn read_dockerfile(args: &Args, context: &Path) -> Result<(String, String)> {
    let (text, name) = match args.file.as_deref() {
        Some("-") => {
            let mut text = Vec::new();
            std::io::stdin()
                .take(MAX_DOCKERFILE + 1)
                .read_to_end(&mut text)
                .context("reading the Dockerfile from stdin")?;
            if text.len() as u64 > MAX_DOCKERFILE {
                bail!("the Dockerfile on stdin is larger than {} MiB", MAX_DOCKERFILE >> 20);
            }
            (text, "Dockerfile".to_string())
        }
        Some(path) => {
            let inside = std::path::absolute(path)
                .ok()
                .zip(std::fs::canonicalize(context).ok())
                .and_then(|(file, ctx)| file.strip_prefix(&ctx).ok().map(Path::to_path_buf));
            let text = match inside {
                Some(rel) => in_context(context, &rel.to_string_lossy())?,
                None => read_named(Path::new(path))?,
            };
            (text, path.to_string())
        }
        None => (in_context(context, "Dockerfile")?, "Dockerfile".to_string()),
    };
    let text = String::from_utf8(text).map_err(|_| anyhow::anyhow!("{name}: not UTF-8 text"))?;
    Ok((text, name))
}

/// A Dockerfile inside the context, read confined to it.
fn in_context(context: &Path, rel: &str) -> Result<Vec<u8>> {
    let root = img::layer::root::Root::open(context)
        .with_context(|| format!("build context {}", context.display()))?;
    root.read(rel, MAX_DOCKERFILE).with_context(|| format!("reading {rel}"))
}

/// A Dockerfile the user named outside the context: a regular file of bounded size.
fn read_named(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("reading {shown}"))?;
    if !file.metadata()?.is_file() {
        bail!("{shown} is not a regular file");
    }
    let mut text = Vec::new();
    file.take(MAX_DOCKERFILE + 1).read_to_end(&mut text).with_context(|| format!("reading {shown}"))?;
    if text.len() as u64 > MAX_DOCKERFILE {
        bail!("{shown} is larger than {} MiB", MAX_DOCKERFILE >> 20);
    }
    Ok(text)
}

/// `KEY=VALUE` list; with `from_env`, a bare `KEY` takes the caller's value.
fn key_values(items: &[String], flag: &str, from_env: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            _ => bail!("{flag} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `--secret id=NAME,src=FILE` (also `source=`), `id=NAME,env=VAR` (the variable's value, in a
/// file readable by its owner only, in a private directory made for the first such secret and
/// returned to be kept for the build), `type=file|env` as BuildKit spells them, and `id=VAR`
/// alone for the variable of that name.
fn secrets(items: &[String]) -> Result<(BTreeMap<String, PathBuf>, Option<tempfile::TempDir>)> {
    let mut out = BTreeMap::new();
    let mut dir: Option<tempfile::TempDir> = None;
    for (index, item) in items.iter().enumerate() {
        let mut from_env = |var: &str, id: &str| -> Result<PathBuf> {
            let d = match &mut dir {
                Some(d) => d,
                none => none.insert(tempfile::Builder::new().prefix("img-build-secrets-").tempdir()?),
            };
            secret_from_env(id, var, &d.path().join(format!("secret-{index}")))
        };
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in item.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", v @ ("file" | "env"))) => kind = Some(v),
                _ => bail!("--secret {item:?}: expected id=NAME,src=FILE or id=NAME,env=VAR"),
            }
        }
        let Some(id) = id else { bail!("--secret {item:?}: needs id=NAME") };
        let file = match (src, env, kind) {
            (Some(_), Some(_), _) => bail!("--secret {id}: give src= or env=, not both"),
            (Some(src), None, Some("env")) => from_env(&src.to_string_lossy(), &id)?,
            (Some(src), None, _) => {
                if !src.is_file() {
                    bail!("--secret {id}: {} is not a file", src.display());
                }
                std::fs::canonicalize(src)?
            }
            (None, Some(var), _) => from_env(&var, &id)?,
            (None, None, _) => from_env(&id, &id)?,
        };
        out.insert(id, file);
    }
    Ok((out, dir))
}

/// The value of `$var` in the new file `path`, mode 0400, for the secret `id`. (Files are
/// named by the flag's position, not the id: ids are the user's own text.)
fn secret_from_env(id: &str, var: &str, path: &Path) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(value) = std::env::var_os(var) else {
        bail!("--secret {id}: the variable {var} is not set (or give src=FILE)");
    };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(path)?;
    f.write_all(value.as_encoded_bytes())?;
    Ok(path.to_path_buf())
}

/// `--ssh ID[=SOCKET]`: agent sockets by id; without a socket, the caller's `$SSH_AUTH_SOCK`.
fn ssh_agents(items: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    for item in items {
        let (id, socket) = match item.split_once('=') {
            Some((id, socket)) => (id, PathBuf::from(socket)),
            None => match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
                Some(socket) => (item.as_str(), PathBuf::from(socket)),
                None => bail!(
                    "--ssh {item}: SSH_AUTH_SOCK is not set (give the agent's socket: --ssh {item}=SOCKET)"
                ),
            },
        };
        if id.is_empty() || socket.as_os_str().is_empty() {
            bail!("--ssh {item:?}: expected ID[=SOCKET]");
        }
        let shown = socket.display();
        let meta = std::fs::metadata(&socket).with_context(|| format!("--ssh {id}={shown}"))?;
        if !meta.file_type().is_socket() {
            bail!("--ssh {id}={shown}: {shown} is not an SSH agent socket (key files are not supported)");
        }
        let socket = std::fs::canonicalize(&socket).with_context(|| format!("--ssh {id}={shown}"))?;
        out.insert(id.to_string(), socket);
    }
    Ok(out)
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number"))?))
        }
        _ => Ok(None),
    }
}
