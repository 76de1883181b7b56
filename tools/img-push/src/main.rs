//! img-push: local OCI image layout → registry.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Parser;
use img::archive::{self, ArchiveRef, Format};
use img::document::Descriptor;
use img::layout::Layout;
use img::layout::ref_names;
use img::layout::resolve;
use img::record::{self, ImageRecord, Input};
use img::reference::Reference;
use img::registry::Connections;
use img::registry::progress::{Bars, Progress, Silent};
use img::registry::push::{self, PushOptions};
use img::store;
use img_cli::{LayoutArg, RegistryArgs, TransferArgs};
use serde_json::Value;

/// Push images from an OCI image layout to the registry their reference names, or to --to
/// (images as arguments or JSON Lines on stdin); print one JSON record per image: the local
/// image's, with `pushed` naming where it went.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    transfer: TransferArgs,
    /// Push to this reference instead (one image only), or write an archive:
    /// `docker-archive:PATH[:REF]`, `oci-archive:PATH[:REF]` (PATH `-`: stdout, and no records)
    #[arg(long, value_name = "REF")]
    to: Option<String>,
    /// Push the image's referrers too (signatures, SBOMs, attestations that img-pull
    /// --referrers copied): by the referrers API, else the `sha256-<hex>` tag scheme
    #[arg(long)]
    referrers: bool,
    /// Print only each pushed image's digest, one per line (and no progress)
    #[arg(short, long)]
    quiet: bool,
    /// Blobs larger than this are uploaded in chunks of this size (bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20, hide = true)]
    chunk_size: u64,
    /// Images in the layout: references or digests
    images: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-push");
    img_cli::run("img-push", || {
        let args = Args::parse();
        // An empty pipeline (nothing selected upstream) has nothing to do.
        let inputs =
            img_cli::local_images::<Args>(&args.images, "name images as arguments or JSON Lines on stdin")?;
        let to = args.to.as_deref().map(Destination::parse).transpose()?;
        if to.is_some() && inputs.len() > 1 {
            bail!("--to takes one image, but {} were given", inputs.len());
        }
        let mut connections = Connections::new(args.registry.options()?);
        let options = PushOptions { jobs: args.transfer.jobs, chunk_size: args.chunk_size.max(1) };
        let bars = Bars::new(args.transfer.verbose);
        let progress: &dyn Progress = if args.quiet { &Silent } else { &bars };
        let mut ok = true;
        for input in &inputs {
            let pushed = match &to {
                Some(Destination::Archive(a)) => export_one(input, &args, a),
                Some(Destination::Registry(r)) => {
                    push_one(input, &args, Some(r), &mut connections, &options, progress)
                }
                None => push_one(input, &args, None, &mut connections, &options, progress),
            };
            match pushed {
                Ok(Some(record)) if args.quiet => println!("{}", record.digest),
                Ok(Some(record)) => record::print(&record)?,
                Ok(None) => {}
                Err(e) => {
                    eprintln!("img-push: {}: {}", input.name, img_cli::one_line(&e));
                    ok = false;
                }
            }
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn push_one(
    input: &Input,
    args: &Args,
    to: Option<&Reference>,
    connections: &mut Connections,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<Option<ImageRecord>> {
    let started = std::time::Instant::now();
    let (layout, root) = find_image(args, input)?;
    let stored =
        root.ref_name().filter(|n| !ref_names::is_bare_tag(n)).and_then(|n| n.parse::<Reference>().ok());
    let dest = match to {
        Some(t) => t.clone(),
        None => {
            let named = input.name.parse::<Reference>().ok().filter(|_| !ref_names::is_bare_tag(&input.name));
            named
                .or_else(|| stored.clone())
                .ok_or_else(|| anyhow!("where to? name a destination with --to"))?
        }
    };
    // Blobs of an image pulled from another repository of the same registry can be mounted.
    let mount_from =
        stored.as_ref().filter(|s| s.registry() == dest.registry()).map(|s| s.repository().to_string());
    let registry = connections.get(dest.registry())?;
    let pushed = push::push(&registry, &layout, &root, &dest, mount_from.as_deref(), options, progress)?;
    if args.referrers {
        img::registry::referrers::push(&registry, &layout, &root.digest, &dest, options, progress)?;
    }
    progress.message(&format!(
        "img-push: {dest} {} ({} uploaded, {} bytes; {} mounted; {} already there)",
        root.digest,
        pushed.uploaded_blobs,
        pushed.uploaded_bytes,
        pushed.mounted_blobs,
        pushed.existing_blobs
    ));
    let blobs = pushed.uploaded_blobs + pushed.mounted_blobs + pushed.existing_blobs;
    let line = img::registry::progress::summary_line(
        "pushed",
        &dest.to_string(),
        blobs,
        "blob",
        pushed.uploaded_bytes,
        "uploaded",
        started,
    );
    progress.summary(&line);
    // `REGISTRY/REPO:TAG@DIGEST`: the tag the push set, pinned to what it now names.
    let destination = match dest.digest() {
        Some(_) => dest.to_string(),
        None => dest.with_digest(root.digest.clone()).to_string(),
    };
    let mut record = local_record(&layout, &root);
    record.extra.insert("pushed".to_string(), Value::from(destination));
    record.extra.insert("uploadedBytes".to_string(), Value::from(pushed.uploaded_bytes));
    Ok(Some(record))
}

/// The record of the local image, as img-ls prints its fields: pushing changes nothing here,
/// so the next tool of a pipeline (`img-push … | img-rm`, `| img-run`) works on the local copy
/// it names, the way `docker push && docker rmi` does. Where the image went is `pushed`.
fn local_record(layout: &Layout, root: &Descriptor) -> ImageRecord {
    // A single image's platform is its config's when the index entry does not say; an index
    // has none (as img-ls shows them).
    let platform = root.platform.as_ref().map(ToString::to_string).or_else(|| {
        let image = resolve::image(layout, &root.digest.to_string(), None).ok()?;
        (image.manifest_descriptor.digest == root.digest).then(|| image.platform.to_string())
    });
    ImageRecord { platform, ..ImageRecord::new(root, root.ref_name().map(str::to_string), layout.root()) }
}

/// Where `--to` sends an image: a registry, or an archive file (`docker-archive:`, `oci-archive:`).
enum Destination {
    Registry(Reference),
    Archive(ArchiveRef),
}

impl Destination {
    fn parse(text: &str) -> Result<Destination> {
        match ArchiveRef::parse(text) {
            Some(archive) => Ok(Destination::Archive(archive?)),
            None => Ok(Destination::Registry(text.parse()?)),
        }
    }
}

/// Writes one image of the layout into an archive. With `-` the archive is stdout, so no
/// record is printed; a docker archive cannot keep the image's digest, and a warning says so.
fn export_one(input: &Input, args: &Args, to: &ArchiveRef) -> Result<Option<ImageRecord>> {
    let (layout, root) = find_image(args, input)?;
    if to.format == Format::Docker
        && let Some(r) = &to.reference
        && r.parse::<Reference>().ok().and_then(|r| r.tag().map(str::to_string)).is_none()
    {
        bail!("{to}: a docker archive names images NAME:TAG");
    }
    let stored = root.ref_name().filter(|n| !ref_names::is_bare_tag(n) || to.format == Format::Oci);
    let name = to.reference.as_deref().or(stored);
    let exported = archive::export(&layout, &root, name, to)?;
    if let Some(config) = exported.config.as_ref().filter(|_| !exported.digest_kept) {
        eprintln!(
            "img-push: warning: {to} holds the config {config} (docker's image ID) and uncompressed layers but no manifest: the image's digest {} is not kept",
            root.digest
        );
    }
    if to.path.is_none() {
        return Ok(None); // stdout carries the archive
    }
    // The path made absolute, as `layout` is, so the record means the same from any directory.
    let path = to.path.as_deref().map(std::path::absolute).transpose()?;
    let written = ArchiveRef { path, ..to.clone() };
    let mut record = local_record(&layout, &root);
    record.extra.insert("pushed".to_string(), Value::from(written.to_string()));
    if let Some(config) = &exported.config {
        record.extra.insert("config".to_string(), Value::from(config.to_string()));
    }
    Ok(Some(record))
}

/// The layout (the record's, `--layout` or the store's) and the one image `input` names in it.
fn find_image(args: &Args, input: &Input) -> Result<(Layout, Descriptor)> {
    let layout = Layout::open(store::choose_layout(args.layout.layout.as_deref(), input.layout.as_deref())?)?;
    let index = layout.read_index()?;
    // As every tool finds a local image: an ambiguous digest prefix is an error naming its
    // candidates.
    let found = resolve::find(index.entries(), &input.name)?;
    let Some(&first) = found.first() else {
        bail!("no such image in {}", layout.root().display());
    };
    let root = index.entries()[first].clone();
    if found.iter().any(|&i| index.entries()[i].digest != root.digest) {
        bail!("names several images in {}: use a full reference or a digest", layout.root().display());
    }
    Ok((layout, root))
}
