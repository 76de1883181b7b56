//! Pulling an image from a registry into a layout: resolve the reference, choose platforms,
//! fetch missing blobs in parallel (streamed, verified, resumable), then store manifests and
//! point the ref at the image, all under the layout's writer lock so GC never sweeps our blobs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};

use super::progress::{Progress, Silent};
use super::{Budget, Connections, MAX_CONFIG, Registry, Repository, copy_body, header, status_error};
use crate::digest::Digest;
use crate::document::{self, Descriptor};
use crate::layout::Layout;
use crate::media_type::{self, Kind};
use crate::platform::Platform;
use crate::reference::Reference;

#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The platform wanted from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Keep the whole index and every child image.
    pub all_platforms: bool,
    /// Blobs fetched at once.
    pub jobs: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: None, all_platforms: false, jobs: 4 }
    }
}

/// What a pull stored.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The name written in `index.json`.
    pub name: String,
    pub descriptor: Descriptor,
    /// The platform of a single image (None for a whole index).
    pub platform: Option<Platform>,
    pub fetched_blobs: usize,
    pub fetched_bytes: u64,
}

/// Runs `f` over `items` on up to `jobs` threads; the first error stops the rest.
pub(crate) fn parallel<T: Sync>(items: &[T], jobs: usize, f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    if failed.lock().expect("lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { return };
                    if let Err(e) = f(item) {
                        failed.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A document, from the layout if it is there, else from the registry.
struct Doc {
    descriptor: Descriptor,
    bytes: Vec<u8>,
}

fn media_type_of(bytes: &[u8], hint: &str) -> String {
    if media_type::kind(hint) != Kind::Blob {
        return hint.to_string();
    }
    let probe: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    match probe.get("mediaType").and_then(|v| v.as_str()) {
        Some(m) => m.to_string(),
        None if probe.get("manifests").is_some() => media_type::OCI_INDEX.to_string(),
        None => media_type::OCI_MANIFEST.to_string(),
    }
}

fn document(repo: &Repository, layout: &Layout, digest: &Digest, media_type: &str) -> Result<Doc> {
    if layout.has_blob(digest) {
        let bytes = layout.read_blob(digest)?;
        let media_type = media_type_of(&bytes, media_type);
        return Ok(Doc {
            descriptor: Descriptor::new(&media_type, digest.clone(), bytes.len() as u64),
            bytes,
        });
    }
    let m = repo.get_manifest(&digest.to_string())?;
    Ok(Doc { descriptor: Descriptor::new(&m.media_type, m.digest, m.bytes.len() as u64), bytes: m.bytes })
}

/// When a tool that needs an image pulls it: docker's `--pull` policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Pull only what the layout does not have.
    #[default]
    Missing,
    /// Pull every time (a tag may have moved).
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl Policy {
    /// The names docker's `--pull` takes.
    pub const NAMES: [&'static str; 3] = ["missing", "always", "never"];
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Policy, String> {
        match s {
            "missing" => Ok(Policy::Missing),
            "always" => Ok(Policy::Always),
            "never" => Ok(Policy::Never),
            other => Err(format!("unknown pull policy {other:?} (missing, always or never)")),
        }
    }
}

/// Makes sure the image `name` (for `platform`) is in the layout, pulling it as `policy` says.
/// A digest without a name cannot be pulled and is left to the caller's lookup. Silent (a
/// build's log has its own way with stderr); see [`ensure_with`].
pub fn ensure(
    layout: &Layout,
    name: &str,
    platform: Option<&Platform>,
    policy: Policy,
    connections: &mut Connections,
) -> Result<()> {
    ensure_with(layout, name, platform, policy, connections, &Silent)
}

/// [`ensure`], showing a pull's progress to `progress` (img-run passes the bars img-pull
/// draws: a first run may pull for a while).
pub fn ensure_with(
    layout: &Layout,
    name: &str,
    platform: Option<&Platform>,
    policy: Policy,
    connections: &mut Connections,
    progress: &dyn Progress,
) -> Result<()> {
    let wanted = match policy {
        Policy::Never => false,
        Policy::Always => true,
        Policy::Missing => crate::layout::resolve::image(layout, name, platform).is_err(),
    };
    if !wanted || name.parse::<Digest>().is_ok() {
        return Ok(());
    }
    let reference: Reference = name.parse()?;
    let registry = connections.get(reference.registry())?;
    let options = PullOptions { platform: platform.cloned(), ..PullOptions::default() };
    pull(&registry, layout, &reference, &options, progress)
        .with_context(|| format!("pulling {reference}"))?;
    Ok(())
}

/// Pulls one image into the layout and points `reference` (its full normalised form) at it.
pub fn pull(
    registry: &Registry,
    layout: &Layout,
    reference: &Reference,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let started = std::time::Instant::now();
    let _writing = layout.lock_for_writing()?;
    let repo = Repository::new(registry, reference.repository(), false);

    // The root: by digest if pinned, else whatever the tag names now (HEAD first if the layout
    // has an image of that name, so one that is already here costs no download).
    let root = match reference.digest() {
        Some(d) => document(&repo, layout, d, "")?,
        None => {
            let tag = reference.api_reference();
            let known = !layout.read_index()?.find(&reference.to_string()).is_empty();
            let head = if known { repo.head_manifest(&tag)? } else { None };
            match head {
                Some((digest, media_type)) if layout.has_blob(&digest) => {
                    document(&repo, layout, &digest, &media_type)?
                }
                _ => {
                    let m = repo.get_manifest(&tag).map_err(|e| {
                        // Say whether the image or only the tag is unknown.
                        if e.to_string().ends_with("(404)") && !repo.exists().unwrap_or(true) {
                            anyhow!("no such image: repository {} not found (404)", reference.name())
                        } else {
                            e
                        }
                    })?;
                    Doc {
                        descriptor: Descriptor::new(&m.media_type, m.digest, m.bytes.len() as u64),
                        bytes: m.bytes,
                    }
                }
            }
        }
    };

    // The manifests to keep, and what the ref will point at.
    let mut manifests: Vec<(Doc, Option<Platform>)> = Vec::new();
    let (target, platform) = match root.descriptor.kind() {
        Kind::Manifest => (root.descriptor.clone(), None),
        Kind::Index => {
            let index = document::parse_index(&root.bytes).context("image index")?;
            if options.all_platforms {
                for child in index.manifests.iter().filter(|c| c.kind() == Kind::Manifest) {
                    let doc = document(&repo, layout, &child.digest, &child.media_type)?;
                    manifests.push((doc, child.platform.clone()));
                }
                (root.descriptor.clone(), None)
            } else {
                let want = options.platform.clone().unwrap_or_else(Platform::host);
                let child = choose_or_explain(&index.manifests, &want)?;
                let doc = document(&repo, layout, &child.digest, &child.media_type)?;
                let mut target = doc.descriptor.clone();
                target.platform = child.platform.clone();
                manifests.push((doc, child.platform.clone()));
                (target, child.platform.clone())
            }
        }
        Kind::Blob => bail!("{}: not an image manifest or index", root.descriptor.media_type),
    };
    // An index is stored too: whole with --all-platforms, otherwise unreferenced, so that the
    // next pull of the same tag finds it without a download (until GC sweeps it).
    let index_bytes = match root.descriptor.kind() {
        Kind::Index => Some(root.bytes),
        _ => {
            manifests.push((root, None));
            None
        }
    };

    // A config is read into memory: one said to be huge is refused before anything is stored.
    for (doc, _) in &manifests {
        let m = document::parse_manifest(&doc.bytes)
            .with_context(|| format!("manifest {}", doc.descriptor.digest))?;
        if m.config.size > MAX_CONFIG {
            bail!(
                "the config {} is said to be {} MiB, more than the {} MiB we accept",
                m.config.digest,
                m.config.size >> 20,
                MAX_CONFIG >> 20
            );
        }
    }

    // Manifests are stored first: until the ref names them they are only garbage GC may sweep
    // (after this pull), and their small writes need not wait behind the layers' at the end.
    for (doc, _) in &manifests {
        layout.put_bytes(&doc.bytes)?;
    }
    if let Some(bytes) = &index_bytes {
        layout.put_bytes(bytes)?;
    }

    // Every config and layer, fetched unless present.
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut layers = 0;
    for (doc, _) in &manifests {
        let m = document::parse_manifest(&doc.bytes)
            .with_context(|| format!("manifest {}", doc.descriptor.digest))?;
        layers += m.layers.len();
        for d in std::iter::once(m.config).chain(m.layers) {
            if seen.insert(d.digest.clone()) && !layout.has_blob(&d.digest) {
                blobs.push(d);
            }
        }
    }
    let fetched_bytes = AtomicU64::new(0);
    parallel(&blobs, options.jobs, |d| {
        let n = fetch_blob(&repo, layout, d, progress).with_context(|| format!("blob {}", d.digest))?;
        fetched_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    })?;
    for digest in &seen {
        super::sources::remember(layout, digest, registry.name(), reference.repository());
    }

    let mut platform = platform;
    for (doc, p) in &manifests {
        if platform.is_none() && !options.all_platforms && p.is_none() {
            platform = config_platform(layout, &doc.bytes);
        }
    }
    let name = reference.to_string();
    layout.set_ref(&name, &target)?;
    let fetched_bytes = fetched_bytes.into_inner();
    progress.summary(&super::progress::summary_line(
        "pulled",
        &name,
        layers,
        "layer",
        fetched_bytes,
        "fetched",
        started,
    ));
    Ok(Pulled { name, descriptor: target, platform, fetched_blobs: blobs.len(), fetched_bytes })
}

/// The platform an image config declares.
fn config_platform(layout: &Layout, manifest: &[u8]) -> Option<Platform> {
    let m = document::parse_manifest(manifest).ok()?;
    if !media_type::is_image_config(&m.config.media_type) {
        return None;
    }
    let config = document::parse_config(&layout.read_blob(&m.config.digest).ok()?).ok()?;
    Some(config.platform())
}

/// The index entry for a platform: an exact variant match beats a missing variant.
pub fn choose<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|m| m.kind() == Kind::Manifest && m.platform.as_ref().is_some_and(|p| p.satisfies(want)))
        .collect();
    candidates
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.variant == want.variant))
        .or_else(|| candidates.first())
        .copied()
}

/// [`choose`], or an error listing the platforms the index has.
pub fn choose_or_explain<'a>(manifests: &'a [Descriptor], want: &Platform) -> Result<&'a Descriptor> {
    choose(manifests, want).ok_or_else(|| {
        let have: Vec<String> =
            manifests.iter().filter_map(|m| m.platform.as_ref().map(ToString::to_string)).collect();
        anyhow!("no image for {want} in the index (it has: {})", have.join(", "))
    })
}

/// Downloads one blob into the layout, continuing a partial download with a Range request.
/// Returns the bytes transferred.
pub fn fetch_blob(
    repo: &Repository,
    layout: &Layout,
    desc: &Descriptor,
    progress: &dyn Progress,
) -> Result<u64> {
    let Some(mut partial) = layout.partial_blob(&desc.digest, desc.size)? else {
        return Ok(0); // stored meanwhile by someone else
    };
    let transfer = progress.start("pull", &desc.digest, desc.size, partial.offset());
    let transferred = AtomicU64::new(0);
    fetch_into(repo, desc, &mut partial, desc.size, &*transfer, &transferred)?;
    partial.commit()?;
    transfer.finish();
    Ok(transferred.into_inner())
}

/// Fetches into `partial` until it holds `end` bytes (or the whole blob, if the server sends
/// it all), resuming with Range requests after interruptions.
fn fetch_into(
    repo: &Repository,
    desc: &Descriptor,
    partial: &mut crate::layout::PartialBlob,
    end: u64,
    transfer: &dyn super::progress::Transfer,
    transferred: &AtomicU64,
) -> Result<()> {
    let retries = repo.registry.options.retries;
    // Configs are documents (small, read whole); layers are transfers of any size.
    let budget = if desc.size <= MAX_CONFIG && media_type::is_image_config(&desc.media_type) {
        Budget::Document
    } else {
        Budget::Transfer
    };
    let mut failures = 0u32;
    while partial.offset() < end || (desc.size == 0 && failures == 0) {
        let from = partial.offset();
        let last = (end < desc.size).then(|| end - 1);
        let resp = repo.get_blob(&desc.digest, from, last, budget, || {})?;
        let status = resp.status().as_u16();
        match status {
            200 if from > 0 => {
                // The server ignored the Range: start over with what it sends.
                partial.restart()?;
                transfer.rewind(0);
            }
            200 => {}
            206 => {
                let start = header(resp.headers(), "content-range")
                    .and_then(|r| r.trim_start_matches("bytes ").split('-').next()?.parse::<u64>().ok());
                if start != Some(from) {
                    partial.restart()?;
                    transfer.rewind(0);
                    failures += 1;
                    if failures > retries {
                        bail!("the registry sent a wrong range");
                    }
                    continue;
                }
            }
            416 if from > 0 => {
                partial.restart()?;
                continue;
            }
            _ => return Err(status_error(resp, repo.registry.has_credentials())),
        }
        match copy_body(resp, partial, |n| {
            transferred.fetch_add(n, Ordering::Relaxed);
            transfer.advance(n);
        }) {
            Ok(_) if desc.size == 0 => return Ok(()),
            Ok(_) if partial.offset() < end => {
                // The body ended early without an error: ask for the rest, a bounded number of times.
                failures += 1;
                if failures > retries {
                    bail!(
                        "the registry keeps sending a short blob ({} of {} bytes)",
                        partial.offset(),
                        desc.size
                    );
                }
            }
            Ok(_) => {}
            Err(e) if e.to_string().contains("size mismatch") => {
                partial.restart()?;
                bail!("{e}");
            }
            Err(e) => {
                failures += 1;
                // A config's deadline is spent: asking again would only start another one.
                if failures > retries || repo.registry.is_deadline(&e) {
                    let what = repo.registry.describe_io(&e);
                    return Err(anyhow!("download interrupted: {what} (run again to resume)"));
                }
                std::thread::sleep(repo.registry.options.backoff * 2u32.pow(failures.min(6) - 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_platforms() {
        let d = |p: &str, content: &[u8]| {
            let mut d = Descriptor::of(media_type::OCI_MANIFEST, content);
            d.platform = Some(p.parse().unwrap());
            d
        };
        let list = [
            d("linux/amd64", b"a"),
            d("linux/arm/v6", b"b"),
            d("linux/arm/v7", b"c"),
            d("linux/arm64", b"d"),
        ];
        assert_eq!(choose(&list, &"linux/amd64".parse().unwrap()).unwrap().digest, list[0].digest);
        assert_eq!(choose(&list, &"linux/arm/v7".parse().unwrap()).unwrap().digest, list[2].digest);
        assert_eq!(choose(&list, &"linux/arm64/v8".parse().unwrap()).unwrap().digest, list[3].digest);
        assert!(choose(&list, &"linux/s390x".parse().unwrap()).is_none());
    }
}
