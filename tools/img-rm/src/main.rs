//! img-rm: remove image references from a layout and collect the garbage they leave.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use img::digest::Digest;
use img::document::Descriptor;
use img::layout::Layout;
use img::layout::{gc, graph, resolve};
use img::record::{self, ImageRecord, Input};
use img::registry::{Connections, delete};
use img::snapshot::{self, Collection};
use img::store;
use img_cli::{LayoutArg, RegistryArgs};
use serde_json::{Value, json};

/// Remove images (by reference or digest, as arguments or JSON Lines on stdin) and
/// garbage-collect the blobs nothing else uses.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    layout: LayoutArg,
    /// Ignore references that are not there
    #[arg(short, long)]
    force: bool,
    /// Remove the references only; leave the blobs for a later `img-rm --prune`
    #[arg(long, conflicts_with = "prune")]
    no_gc: bool,
    /// Remove nothing; only collect blobs no image uses
    #[arg(long, conflicts_with = "images")]
    prune: bool,
    /// Delete the images in their registry instead (a tag deletes the manifest it names now,
    /// and so every tag of it), as `skopeo delete` does; an img-push record's image is deleted
    /// where it was pushed (its `pushed`)
    #[arg(long, conflicts_with_all = ["prune", "no_gc"])]
    remote: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// References (`alpine:3.20`), digests (`sha256:…`) or unique digest prefixes of at least
    /// 6 hex digits (`sha256:4f1c2a`, `4f1c2a`) of the images to remove
    images: Vec<String>,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-rm");
    img_cli::run("img-rm", || {
        let args = Args::parse();
        let flag = args.layout.layout.as_deref();
        if args.prune {
            let layout = Layout::open(store::choose_layout(flag, None)?)?;
            let collected = gc::collect(&layout)?;
            let mut out = json!({
                "layout": layout.root(),
                "freedBlobs": collected.removed.len(),
                "freedBytes": collected.bytes(),
            });
            // Snapshots are a cache: failing to collect them fails nothing.
            match snapshot::collect_unused(&layout) {
                Ok(Collection::Freed(freed)) => {
                    out["freedSnapshots"] = json!(freed.snapshots);
                    out["freedSnapshotBytes"] = json!(freed.bytes);
                }
                Ok(Collection::InUse) => {
                    eprintln!("img-rm: snapshots are in use by a running container or build: kept")
                }
                Ok(Collection::NoSnapshots) => {}
                Err(e) => eprintln!("img-rm: warning: {}", img_cli::one_line(&e)),
            }
            record::print(&out)?;
            return Ok(ExitCode::SUCCESS);
        }
        // An empty pipeline (`img-ls | jq 'select(…)' | img-rm` selecting nothing) removes nothing;
        // a malformed name removes nothing at all.
        let inputs = img_cli::local_images::<Args>(
            &args.images,
            "name references as arguments or JSON Lines on stdin (or use --prune)",
        )?;
        if args.remote {
            return remove_remote(&inputs, &args);
        }
        // Records from a pipeline may come from several layouts; each is handled on its own.
        let mut by_layout: BTreeMap<PathBuf, Vec<Input>> = BTreeMap::new();
        for input in inputs {
            let path = store::choose_layout(flag, input.layout.as_deref())?;
            by_layout.entry(path).or_default().push(input);
        }
        let mut ok = true;
        for (path, inputs) in by_layout {
            // A layout that cannot be opened fails its images, not those of the other layouts.
            ok &= remove_from(&path, &inputs, &args).unwrap_or_else(|e| {
                eprintln!("img-rm: {}", img_cli::one_line(&e));
                false
            });
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// Deletes each image in its registry; prints `{"ref", "digest", "deleted": true}` for each.
fn remove_remote(inputs: &[Input], args: &Args) -> Result<ExitCode> {
    let mut connections = Connections::new(args.registry.options()?);
    let mut ok = true;
    for input in inputs {
        // img-push's record names the local image and where it went: `--remote` deletes the
        // copy pushed (undoing the push), never the registry the local name came from.
        let name = input.pushed.as_deref().unwrap_or(&input.name);
        let deleted = delete::parse(name).and_then(|reference| {
            let registry = connections.get(reference.registry())?;
            let digest = delete::delete(&registry, &reference)?;
            Ok((reference, digest))
        });
        match deleted {
            Ok((reference, digest)) => {
                record::print(&json!({"ref": reference.to_string(), "digest": digest, "deleted": true}))?
            }
            // -f: an image the registry does not have is not an error, as for a layout.
            Err(e) if args.force && img_cli::one_line(&e).ends_with("(404)") => {}
            Err(e) => {
                eprintln!("img-rm: {name}: {}", img_cli::one_line(&e));
                ok = false;
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Removes the named entries of one layout in a single index update, then collects garbage.
/// Returns false if a name was not found (and not forced) or collection failed.
fn remove_from(path: &std::path::Path, inputs: &[Input], args: &Args) -> Result<bool> {
    let layout = Layout::open(path)?;
    let mut ok = true;
    let removed: Vec<Descriptor> = layout.update_index(|index| {
        let mut positions = BTreeSet::new();
        for input in inputs {
            match resolve::find(index.entries(), &input.name) {
                Ok(found) if found.is_empty() && !args.force => {
                    eprintln!("img-rm: {}: no such image in {}", input.name, layout.root().display());
                    ok = false;
                }
                Ok(found) => positions.extend(found),
                // An ambiguous digest prefix removes nothing of what it matches.
                Err(e) => {
                    eprintln!("img-rm: {}", img_cli::one_line(&e));
                    ok = false;
                }
            }
        }
        let removed = index.remove(&positions.into_iter().collect::<Vec<_>>());
        // Referrers (signatures…) of what went go too, or they would keep its blobs.
        if !removed.is_empty() {
            index.remove(&img::registry::referrers::orphaned(&layout, index));
        }
        Ok(removed)
    })?;

    let mut freed: Vec<(u64, u64)> = vec![(0, 0); removed.len()];
    if !args.no_gc && !removed.is_empty() {
        // What each removed image reached, to say which freed blobs were its own.
        let reached: Vec<BTreeSet<Digest>> = removed
            .iter()
            .map(|d| {
                graph::reachable(&layout, std::slice::from_ref(d)).map(|r| r.digests).unwrap_or_default()
            })
            .collect();
        match gc::collect(&layout) {
            Ok(collected) => {
                for (digest, size) in &collected.removed {
                    if let Some(i) = reached.iter().position(|r| r.contains(digest)) {
                        freed[i].0 += 1;
                        freed[i].1 += size;
                    }
                }
                // Snapshots are a cache: failing to collect them fails nothing.
                if let Err(e) = snapshot::collect_unused(&layout) {
                    eprintln!("img-rm: warning: {}", img_cli::one_line(&e));
                }
            }
            Err(e) => {
                eprintln!("img-rm: {}", img_cli::one_line(&e));
                ok = false;
            }
        }
    }
    for (d, (blobs, bytes)) in removed.iter().zip(freed) {
        let mut extra = BTreeMap::new();
        extra.insert("freedBlobs".to_string(), Value::from(blobs));
        extra.insert("freedBytes".to_string(), Value::from(bytes));
        record::print(&ImageRecord {
            extra,
            ..ImageRecord::new(d, d.ref_name().map(str::to_string), layout.root())
        })?;
    }
    Ok(ok)
}
