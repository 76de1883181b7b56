//! img-pull: registry → local OCI image layout.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use img::archive::{self, ArchiveRef, ImportOptions};
use img::layout::Layout;
use img::platform::Platform;
use img::record::{self, ImageRecord};
use img::reference::Reference;
use img::registry::Connections;
use img::registry::progress::Bars;
use img::registry::pull::{self, PullOptions};
use img::store;
use img_cli::{LayoutArg, RegistryArgs, TransferArgs};
use serde_json::Value;

/// Pull images from registries into an OCI image layout (references as arguments or JSON Lines
/// on stdin); print one JSON record per image.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    transfer: TransferArgs,
    /// The platform to pull from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", conflicts_with = "all_platforms")]
    platform: Option<Platform>,
    /// Keep the whole index and pull every platform's image
    #[arg(long)]
    all_platforms: bool,
    /// Copy the image's referrers too (signatures, SBOMs, attestations: OCI 1.1)
    #[arg(long)]
    referrers: bool,
    /// The largest archive read from a pipe or decompressed first (docker-archive:-), in bytes
    #[arg(long, value_name = "BYTES", default_value_t = archive::DEFAULT_MAX_SPOOL)]
    max_size: u64,
    /// Print only each image's digest (`sha256:…`), one per line, instead of its record
    #[arg(short, long)]
    quiet: bool,
    /// References: `alpine:3.20`, `localhost:5000/app@sha256:…`, `name:tag@sha256:…`, or
    /// archives: `docker-archive:PATH[:REF]`, `oci-archive:PATH[:REF]` (PATH `-`: stdin)
    images: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-pull");
    img_cli::run("img-pull", || {
        let args = Args::parse();
        // An empty pipeline (nothing selected upstream) has nothing to do.
        let inputs =
            img_cli::images::<Args>(&args.images, "name references as arguments or JSON Lines on stdin")?;
        // Every reference is checked before anything is pulled: a malformed one is the same
        // one-line error here as in every other tool, and nothing is fetched.
        for input in &inputs {
            if matches!(Transport::parse(&input.name), Transport::Registry) && !is_digest_alone(&input.name) {
                input.name.parse::<Reference>()?;
            }
        }
        let mut connections = Connections::new(args.registry.options()?);
        let options = PullOptions {
            platform: args.platform.clone(),
            all_platforms: args.all_platforms,
            jobs: args.transfer.jobs,
        };
        let progress = Bars::new(args.transfer.verbose);
        let mut ok = true;
        let import = ImportOptions { max_spool: args.max_size };
        // A record pulls into the layout it names (`img-ls --layout L | img-pull` refreshes L),
        // unless --layout says where; each layout is opened once.
        let mut layouts: BTreeMap<PathBuf, Layout> = BTreeMap::new();
        for input in inputs {
            let layout = match store::choose_layout(args.layout.layout.as_deref(), input.layout.as_deref()) {
                Ok(path) => match layouts.entry(path) {
                    Entry::Occupied(e) => Ok(&*e.into_mut()),
                    Entry::Vacant(e) => Layout::open_or_create(e.key()).map(|l| &*e.insert(l)),
                },
                Err(e) => Err(e),
            };
            // The record of an index asks for the whole index again, unless --platform
            // picks one of its images.
            let options = PullOptions {
                all_platforms: options.all_platforms || (input.is_index() && args.platform.is_none()),
                ..options.clone()
            };
            let (pulled, archive) = match (layout, Transport::parse(&input.name)) {
                (Err(e), transport) => (Err(e), matches!(transport, Transport::Archive(_))),
                (Ok(layout), Transport::Registry) => {
                    let pulled = pull_one(&input.name, layout, &mut connections, &options, &args, &progress);
                    (pulled, false)
                }
                (Ok(layout), Transport::Archive(a)) => {
                    (a.and_then(|a| import_archive(&a, layout, &import, args.quiet)), true)
                }
            };
            if let Err(e) = pulled {
                let parsed = input
                    .name
                    .parse::<Reference>()
                    .ok()
                    .filter(|_| !archive && !is_digest_alone(&input.name));
                let shown = parsed.map_or(input.name.clone(), |r| r.to_string());
                eprintln!("img-pull: {shown}: {}", img_cli::one_line(&e));
                ok = false;
            }
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn pull_one(
    name: &str,
    layout: &Layout,
    connections: &mut Connections,
    options: &PullOptions,
    args: &Args,
    progress: &Bars,
) -> Result<()> {
    // A record without its ref (`jq 'del(.ref)'`) names a digest alone: no repository to ask.
    if is_digest_alone(name) {
        anyhow::bail!("a digest alone names no repository to pull from: give REPOSITORY@{name}");
    }
    let reference: Reference = name.parse()?;
    let registry = connections.get(reference.registry())?;
    let pulled = pull::pull(&registry, layout, &reference, options, progress)?;
    if args.referrers {
        let repo = img::registry::Repository::new(&registry, reference.repository(), false);
        img::registry::referrers::pull(&repo, layout, &pulled.descriptor.digest, progress)?;
    }
    img::registry::progress::Progress::message(
        progress,
        &format!(
            "img-pull: {} {} ({} blobs, {} bytes fetched)",
            pulled.name, pulled.descriptor.digest, pulled.fetched_blobs, pulled.fetched_bytes
        ),
    );
    if args.quiet {
        return print_digest(&pulled.descriptor.digest);
    }
    let mut extra = BTreeMap::new();
    extra.insert("fetchedBytes".to_string(), Value::from(pulled.fetched_bytes));
    record::print(&ImageRecord {
        platform: pulled.platform.map(|p| p.to_string()),
        extra,
        ..ImageRecord::new(&pulled.descriptor, Some(pulled.name), layout.root())
    })
}

/// Where an image comes from: a registry, or an archive file (`docker-archive:`, `oci-archive:`).
enum Transport {
    Registry,
    Archive(Result<ArchiveRef>),
}

impl Transport {
    fn parse(name: &str) -> Transport {
        ArchiveRef::parse(name).map_or(Transport::Registry, Transport::Archive)
    }
}

/// Imports every image of an archive (or the one its reference names): a record per name.
fn import_archive(archive: &ArchiveRef, layout: &Layout, options: &ImportOptions, quiet: bool) -> Result<()> {
    for image in archive::import(layout, archive, options)? {
        if quiet {
            print_digest(&image.descriptor.digest)?;
            continue;
        }
        record::print(&ImageRecord {
            platform: image.platform.map(|p| p.to_string()),
            ..ImageRecord::new(&image.descriptor, image.name, layout.root())
        })?;
    }
    Ok(())
}

/// `-q`: the digest alone on a line, which every other tool takes as a name on stdin.
fn print_digest(digest: &img::digest::Digest) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{digest}").and_then(|()| out.flush()).context("writing to stdout")
}

/// `sha256:…` with no repository before it (which would otherwise parse as image `sha256`).
fn is_digest_alone(name: &str) -> bool {
    name.starts_with("sha256:") || name.starts_with("sha512:")
}
