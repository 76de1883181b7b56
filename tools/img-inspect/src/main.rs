//! img-inspect: what an image is made of, from a layout or a registry, without pulling it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use img::inspect;
use img::layout::{Layout, resolve};
use img::platform::Platform;
use img::record::{self, Input};
use img::reference::Reference;
use img::registry::{Connections, Repository, referrers, tags};
use img::store;
use img_cli::{LayoutArg, RegistryArgs};
use serde_json::json;

/// Show an image's manifest, config, layers and history (from the layout, or from a registry
/// with --remote): one JSON record per image, references as arguments or JSON Lines on stdin.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Read the images from their registries instead of the layout (nothing is stored)
    #[arg(long)]
    remote: bool,
    /// The platform to show of a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
    /// Print the manifest (or index) exactly as stored, byte for byte (one image only)
    #[arg(long, conflicts_with_all = ["config", "wasted", "tags"])]
    raw: bool,
    /// Print the image config exactly as stored, byte for byte (one image only)
    #[arg(long, conflicts_with_all = ["wasted", "tags"])]
    config: bool,
    /// Add `wasted`: files later layers delete or overwrite, with their sizes and a total
    #[arg(long, conflicts_with = "tags")]
    wasted: bool,
    /// With --remote --wasted: refuse images whose layers add up to more than this many bytes
    #[arg(long, value_name = "BYTES", default_value_t = 2 << 30)]
    max_layer_bytes: u64,
    /// Add `referrers`: the signatures, SBOMs and attestations attached to the image (OCI 1.1
    /// referrers of what the name points at and of the manifest shown; in a registry through
    /// its referrers API or the `sha256-<hex>` tag)
    #[arg(long, conflicts_with = "tags")]
    referrers: bool,
    /// List the tags of a repository in its registry, one record per tag
    #[arg(long, value_name = "REPOSITORY", conflicts_with = "images")]
    tags: Option<String>,
    /// With --tags: ask the registry for pages of this many tags
    #[arg(long, value_name = "N", requires = "tags")]
    page_size: Option<u32>,
    /// References: `alpine:3.20`, `localhost:5000/app@sha256:…`, or a digest or unique digest
    /// prefix in the layout
    images: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-inspect");
    img_cli::run("img-inspect", || {
        let args = Args::parse();
        let mut connections = Connections::new(args.registry.options()?);
        if let Some(repository) = &args.tags {
            return list_tags(repository, args.page_size, &mut connections);
        }
        let inputs = img_cli::local_images::<Args>(
            &args.images,
            "name references as arguments or JSON Lines on stdin",
        )?;
        let bytes_wanted = args.raw || args.config;
        if bytes_wanted && inputs.len() > 1 {
            usage_error("--raw and --config print one image; got several");
        }
        let mut ok = true;
        for input in &inputs {
            if let Err(e) = inspect_one(&args, input, &mut connections) {
                eprintln!("img-inspect: {}", named_error(&args, &input.name, &e));
                ok = false;
            }
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn inspect_one(args: &Args, input: &Input, connections: &mut Connections) -> Result<()> {
    let platform = args.platform.as_ref();
    if args.raw {
        // Whatever the name points at, an index whatever platforms it holds: no choosing.
        let (_, bytes) = if args.remote {
            let reference: Reference = input.name.parse()?;
            inspect::remote::read_root(&*connections.get(reference.registry())?, &reference)?
        } else {
            let layout = open_layout(args, input)?;
            let entry = resolve::entry(&layout, &layout.read_index()?, &input.name)?;
            let bytes = layout.read_document(&entry).with_context(|| input.name.clone())?;
            (entry, bytes)
        };
        return print_bytes(&bytes);
    }
    let subjects = |image: &inspect::Image| {
        let mut s = vec![image.root.digest.clone()];
        if image.manifest.digest != image.root.digest {
            s.push(image.manifest.digest.clone());
        }
        s
    };
    let mut referrers = Vec::new();
    let (image, wasted) = if args.remote {
        let reference: Reference = input.name.parse()?;
        let registry = connections.get(reference.registry())?;
        let image = inspect::remote::read(&registry, &reference, platform)?;
        let wasted = if args.wasted {
            Some(inspect::remote::wasted(&registry, &reference, &image, args.max_layer_bytes)?)
        } else {
            None
        };
        if args.referrers {
            let repo = Repository::new(&registry, reference.repository(), false);
            for subject in subjects(&image) {
                referrers.extend(
                    referrers::list(&repo, &subject, None)?.into_iter().map(|d| (subject.clone(), d)),
                );
            }
        }
        (image, wasted)
    } else {
        let layout = open_layout(args, input)?;
        let image = inspect::local::read(&layout, &input.name, platform)?;
        let wasted = if args.wasted { Some(inspect::local::wasted(&layout, &image)?) } else { None };
        if args.referrers {
            for subject in subjects(&image) {
                referrers.extend(
                    referrers::in_layout(&layout, &subject)?.into_iter().map(|d| (subject.clone(), d)),
                );
            }
        }
        (image, wasted)
    };
    if args.config {
        return print_bytes(&image.config_bytes);
    }
    let mut out = image.record()?;
    if let Some(w) = wasted {
        out.fields.insert("wasted".into(), json!(w));
    }
    if args.referrers {
        // Each referrer's descriptor (artifactType, annotations) and the digest it refers to.
        let listed: Vec<_> = referrers
            .into_iter()
            .map(|(subject, d)| {
                let mut v = json!(d);
                v["subject"] = json!(subject.to_string());
                v
            })
            .collect();
        out.fields.insert("referrers".into(), json!(listed));
    }
    record::print(&out)
}

/// `--layout`, else the layout the input's record names, else the store's.
fn open_layout(args: &Args, input: &Input) -> Result<Layout> {
    Layout::open(store::choose_layout(args.layout.layout.as_deref(), input.layout.as_deref())?)
}

fn list_tags(repository: &str, page_size: Option<u32>, connections: &mut Connections) -> Result<ExitCode> {
    let last = repository.rsplit('/').next().unwrap_or_default();
    if last.contains([':', '@']) {
        usage_error(&format!("--tags {repository}: name a repository, without a tag or digest"));
    }
    let reference: Reference = repository.parse()?;
    let name = reference.name();
    let registry = connections.get(reference.registry())?;
    let repo = Repository::new(&registry, reference.repository(), false);
    let all = tags::list(&repo, page_size).map_err(|e| e.context(name.clone()))?;
    for tag in all {
        // A tag a registry sends is checked like one a user types: it becomes a reference.
        let tagged =
            reference.with_tag(&tag).with_context(|| format!("{name}: the registry lists {tag:?}"))?;
        record::print(&json!({"ref": tagged.to_string(), "repository": name, "tag": tag}))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exact bytes on stdout: nothing added, nothing re-serialised.
fn print_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// `REF: why`, unless the error already starts with the name.
fn named_error(args: &Args, name: &str, e: &anyhow::Error) -> String {
    let shown = if args.remote {
        name.parse::<Reference>().map_or(name.to_string(), |r| r.to_string())
    } else {
        name.to_string()
    };
    let message = img_cli::one_line(e);
    let names_it = message.starts_with(&format!("{name}:"))
        || message.starts_with(&format!("{shown}:"))
        || message.contains(&format!("{name:?}"));
    if names_it { message } else { format!("{shown}: {message}") }
}

fn usage_error(message: &str) -> ! {
    img_cli::usage_error::<Args>(message)
}
