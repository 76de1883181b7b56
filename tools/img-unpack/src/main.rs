//! img-unpack: an image from the layout → a rootfs directory, or an OCI runtime bundle
//! (`config.json` + `rootfs/`) that `runc run -b DIR` runs as it is.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use img::layer::apply::{Applier, Options, Owners, Whiteouts};
use img::layout::Layout;
use img::layout::resolve::{self, Image};
use img::platform::Platform;
use img::record::{self, ImageRecord, Input};
use img::{bundle, layer, store};
use img_cli::LayoutArg;
use serde_json::{Value, json};

/// Unpack images (references or digests, or JSON Lines records on stdin) into OCI runtime
/// bundles or plain rootfs directories. Prints {"bundle", "rootfs", "image"} per image.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    /// Where to put the bundle (with --rootfs-only: the rootfs). Default: a directory under
    /// the store's bundles/ named after the image
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Unpack just the filesystem tree, without config.json
    #[arg(long)]
    rootfs_only: bool,
    /// The platform to pick from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
    /// The images: references (`alpine:3.20`), digests or unique digest prefixes (`4f1c2a`)
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
}

/// Written into each bundle so that unpacking the same image again is a cheap no-op.
const MARKER: &str = "img-unpack.json";

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-unpack");
    img_cli::run("img-unpack", || {
        let args = Args::parse();
        // An empty pipeline (nothing selected upstream) has nothing to unpack.
        let inputs = img_cli::local_images::<Args>(
            &args.images,
            "name one as an argument or a JSON Lines record on stdin",
        )?;
        if args.bundle.is_some() && inputs.len() > 1 {
            img_cli::usage_error::<Args>(&format!(
                "--bundle takes one image, but {} were given",
                inputs.len()
            ));
        }
        // Each image on its own: one that fails is said on stderr, the others are still unpacked.
        let mut ok = true;
        for input in &inputs {
            match unpack(&args, input) {
                Ok(out) => record::print(&out)?,
                Err(e) => {
                    eprintln!("img-unpack: {}", img_cli::one_line(&e));
                    ok = false;
                }
            }
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn unpack(args: &Args, input: &Input) -> Result<Value> {
    let layout = Layout::open(store::choose_layout(args.layout.layout.as_deref(), input.layout.as_deref())?)?;
    // Held while reading blobs, so a concurrent img-rm does not collect them under us. A user
    // who may read but not write the layout unpacks without it.
    let _reading = layout.lock_for_writing().ok();
    // resolve's errors name the image already; what follows gets the name added.
    let image = resolve::image(&layout, &input.name, args.platform.as_ref())?;
    unpack_image(args, &layout, image).with_context(|| input.name.clone())
}

fn unpack_image(args: &Args, layout: &Layout, image: resolve::Image) -> Result<Value> {
    let dest = match &args.bundle {
        Some(dir) => std::path::absolute(dir).with_context(|| format!("{}: invalid path", dir.display()))?,
        None => store::root()?.join("bundles").join(default_name(&image)),
    };
    let rootfs = if args.rootfs_only { dest.clone() } else { dest.join("rootfs") };
    let record = image_record(layout, &image);
    let output = json!({
        "bundle": if args.rootfs_only { Value::Null } else { json!(dest) },
        "rootfs": rootfs,
        "image": record,
    });

    if already_there(&dest, &image, args.rootfs_only)? {
        return Ok(output);
    }
    let parent = dest.parent().context("the destination has no parent directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Everything is made in a temp dir beside the destination and renamed at the end, so a
    // failure leaves nothing half-made.
    let tmp = tempfile::Builder::new()
        .prefix(".img-unpack-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
    let tmp_rootfs = if args.rootfs_only { tmp.path().to_path_buf() } else { tmp.path().join("rootfs") };
    if !args.rootfs_only {
        fs::create_dir(&tmp_rootfs)?;
    }
    fs::set_permissions(&tmp_rootfs, fs::Permissions::from_mode(0o755))?;

    let diff_ids = image.config.rootfs.as_ref().map(|r| r.diff_ids.clone()).unwrap_or_default();
    let mut applier = Applier::new(
        &tmp_rootfs,
        Options { whiteouts: Whiteouts::Delete, owners: Owners::for_current_user() },
    )?;
    let name =
        image.entry.ref_name().map_or_else(|| image.manifest_descriptor.digest.to_string(), str::to_string);
    layer::unpack::apply_layers_shown(layout, &image.manifest.layers, &diff_ids, &mut applier, &name)?;
    // The config is made before directories get their final modes, so that a failure here
    // (say, a user missing from /etc/passwd) leaves a tree a rootless user can still remove.
    let config = if args.rootfs_only {
        None
    } else {
        let opts =
            bundle::Options { rootless: Owners::for_current_user() == Owners::Rootless, hostname: None };
        Some(bundle::runtime_config(&image.config, &image.manifest, &tmp_rootfs, &opts)?)
    };
    applier.finish()?;
    if let Some(config) = config {
        bundle::write(tmp.path(), &config)?;
        let marker = json!({"manifest": image.manifest_descriptor.digest, "image": output["image"]});
        fs::write(tmp.path().join(MARKER), serde_json::to_vec(&marker)?)?;
    }
    place(tmp, &dest)?;
    Ok(output)
}

/// Whether `dest` already holds this image's bundle (unpacked by us). Anything else there is
/// an error, except an empty directory, which is replaced.
fn already_there(dest: &Path, image: &Image, rootfs_only: bool) -> Result<bool> {
    let mut entries = match fs::read_dir(dest) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}", dest.display())),
    };
    if entries.next().is_none() {
        return Ok(false);
    }
    if !rootfs_only
        && let Ok(bytes) = fs::read(dest.join(MARKER))
        && let Ok(marker) = serde_json::from_slice::<Value>(&bytes)
        && marker["manifest"] == json!(image.manifest_descriptor.digest)
        && dest.join("rootfs").is_dir()
    {
        return Ok(true);
    }
    bail!("{} already exists and is not empty: remove it or choose another --bundle", dest.display())
}

fn place(tmp: tempfile::TempDir, dest: &Path) -> Result<()> {
    fs::rename(tmp.path(), dest)
        .with_context(|| format!("moving the unpacked image to {}", dest.display()))?;
    let _ = tmp.keep();
    Ok(())
}

/// `docker.io/library/alpine:3.20` → `docker.io_library_alpine_3.20-<12 hex of the manifest>`.
fn default_name(image: &Image) -> String {
    let short = image.manifest_descriptor.digest.short().to_string();
    match image.entry.ref_name() {
        Some(name) => {
            let slug: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c } else { '_' })
                .collect();
            format!("{slug}-{short}")
        }
        None => short,
    }
}

fn image_record(layout: &Layout, image: &Image) -> ImageRecord {
    let mut extra = BTreeMap::new();
    if image.entry.digest != image.manifest_descriptor.digest {
        extra.insert("manifest".to_string(), json!(image.manifest_descriptor.digest));
    }
    ImageRecord {
        platform: Some(image.platform.to_string()),
        extra,
        ..ImageRecord::new(&image.entry, image.entry.ref_name().map(str::to_string), layout.root())
    }
}
