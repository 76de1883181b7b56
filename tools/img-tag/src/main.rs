//! img-tag: new names for an image of an OCI image layout, as `docker tag`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use img::layout::{Layout, resolve};
use img::record::{self, ImageRecord, Input, Stdin, Usage};
use img::reference::Reference;
use img::store;
use img_cli::LayoutArg;

/// Give an image of an OCI image layout new names (same digest, same descriptor), as
/// `docker tag`: `img-tag SRC DST...`. With a single argument and records piped in (or `-` as
/// SRC), the image comes from stdin: one record or reference line, tagged DST...
/// Prints one JSON record per new name.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    /// SRC (a reference, digest or unique digest prefix in the layout, or `-` for stdin) then
    /// DST names
    names: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-tag");
    img_cli::run("img-tag", || {
        let args = Args::parse();
        if args.names.iter().any(|n| n.trim().is_empty()) {
            usage(&Usage::EmptyArgument.to_string());
        }
        let upstream = record::stdin() == Stdin::Upstream;
        let from_stdin = match args.names.as_slice() {
            [] => usage("no image given: img-tag SRC DST... (or records on stdin and DST...)"),
            [first, ..] if first == "-" && !upstream => {
                usage("no image given: `-` reads the image from stdin, but nothing is piped in")
            }
            [first, ..] if first == "-" => true,
            [_] if !upstream => usage("no new name given: img-tag SRC DST..."),
            [_] => true,
            _ => false,
        };
        let targets = if from_stdin && args.names[0] != "-" { &args.names[..] } else { &args.names[1..] };
        if targets.is_empty() {
            usage("no new name given: img-tag SRC DST...");
        }
        let mut names = Vec::new();
        for t in targets {
            match t.parse::<Reference>() {
                Ok(r) if r.digest().is_none() => names.push(r.to_string()),
                Ok(_) => usage(&format!("{t}: a new name is NAME[:TAG], without a digest")),
                Err(e) => usage(&format!("{e:#}")),
            }
        }
        let sources = if from_stdin {
            // An empty pipeline tags nothing; two images cannot share one name.
            let inputs = record::read_stdin()?;
            if inputs.len() > 1 {
                bail!("stdin names {} images, but a name holds one image", inputs.len());
            }
            inputs
        } else {
            vec![Input::named(&args.names[0])]
        };
        // The source is checked before it is looked up, as every tool checks a name.
        img_cli::inputs::check_names(&sources)?;
        for source in sources {
            let layout =
                Layout::open(store::choose_layout(args.layout.layout.as_deref(), source.layout.as_deref())?)?;
            let entry = resolve::entry(&layout, &layout.read_index()?, &source.name)?;
            layout.update_index(|index| {
                for name in &names {
                    index.set_ref(name, &entry);
                }
                Ok(())
            })?;
            for name in &names {
                let platform =
                    entry.platform.as_ref().map(ToString::to_string).or_else(|| platform_of(&layout, name));
                record::print(&ImageRecord {
                    platform,
                    ..ImageRecord::new(&entry, Some(name.clone()), layout.root())
                })?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The platform the image's config declares (for a single-platform image).
fn platform_of(layout: &Layout, name: &str) -> Option<String> {
    let image = resolve::image(layout, name, None).ok()?;
    (image.entry.digest == image.manifest_descriptor.digest).then(|| image.platform.to_string())
}

fn usage(message: &str) -> ! {
    img_cli::usage_error::<Args>(message)
}
