//! img-testimage: writes a made-up image into an OCI layout, for tests that need another
//! process to add images (concurrency, crash safety).
//!
//! ```text
//! img-testimage --layout DIR [--ref NAME] [--layers N] [--size BYTES] [--seed TEXT]
//!               [--base-seed TEXT] [--platform OS/ARCH]... [--uncompressed] [--docker]
//! ```
//! Each layer holds one file of `--size` pseudo-random bytes drawn from `--seed` and the layer's
//! position, so the same arguments always make the same image. `--base-seed` adds a first layer
//! of its own, shared by every image made with the same base seed and size. Two or more
//! `--platform`s make a multi-platform index. Prints one JSON line: the ref, the root digest and
//! the digest of every blob written.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use img::layout::Layout;
use img::test_image::{BuiltIndex, Compression, Entry, Layer, TestImage};
use serde_json::json;

struct Args {
    layout: String,
    reference: Option<String>,
    layers: usize,
    size: usize,
    seed: String,
    base_seed: Option<String>,
    platforms: Vec<String>,
    uncompressed: bool,
    docker: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        layout: String::new(),
        reference: None,
        layers: 1,
        size: 1024,
        seed: "seed".into(),
        base_seed: None,
        platforms: Vec::new(),
        uncompressed: false,
        docker: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--layout" => args.layout = value()?,
            "--ref" => args.reference = Some(value()?),
            "--layers" => args.layers = value()?.parse().context("--layers")?,
            "--size" => args.size = value()?.parse().context("--size")?,
            "--seed" => args.seed = value()?,
            "--base-seed" => args.base_seed = Some(value()?),
            "--platform" => args.platforms.push(value()?),
            "--uncompressed" => args.uncompressed = true,
            "--docker" => args.docker = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.layout.is_empty() {
        bail!("--layout DIR is required");
    }
    Ok(args)
}

/// Pseudo-random bytes (xorshift64*), the same for the same seed text.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut state =
        seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    state |= 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn image(args: &Args, platform: Option<&str>) -> TestImage {
    let mut image = TestImage::new();
    if let Some(base) = &args.base_seed {
        image = image.layer(Layer::new([Entry::file("base", noise(base, args.size))]));
    }
    let tag = platform.unwrap_or("");
    for i in 0..args.layers {
        let content = noise(&format!("{}/{tag}/{i}", args.seed), args.size);
        image =
            image.layer(Layer::new([Entry::dir("data"), Entry::file(&format!("data/layer-{i}"), content)]));
    }
    if let Some(p) = platform {
        image = image.platform(p);
    }
    if args.uncompressed {
        image = image.compression(Compression::None);
    }
    if args.docker {
        image = image.docker_media_types();
    }
    image
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("img-testimage: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let layout = Layout::open_or_create(&args.layout)?;
    let name = args.reference.as_deref();
    let (root, blobs) = if args.platforms.len() > 1 {
        let images = args.platforms.iter().map(|p| image(&args, Some(p)).build()).collect();
        let index = BuiltIndex::new(images, args.docker);
        let blobs: Vec<String> = index.blobs().iter().map(|b| b.descriptor.digest.to_string()).collect();
        (index.write_to(&layout, name)?, blobs)
    } else {
        let built = image(&args, args.platforms.first().map(String::as_str)).build();
        let blobs: Vec<String> = built.blobs().iter().map(|b| b.descriptor.digest.to_string()).collect();
        (built.write_to(&layout, name)?, blobs)
    };
    let line = json!({"ref": name, "digest": root.digest, "mediaType": root.media_type, "size": root.size, "blobs": blobs});
    println!("{line}");
    Ok(())
}
