//! Pushing an image from a layout to a registry: blobs first (skipped if present, mounted from
//! another repository when possible, uploaded whole or in resumable chunks), then manifests
//! with their exact bytes, children before the index.

use anyhow::{Context, Result, anyhow, bail};
use ureq::http::Method;

use super::progress::Progress;
use super::pull::parallel;
use super::{Body, Registry, Repository, header, status_error};
use crate::digest::Digest;
use crate::document::{self, Descriptor};
use crate::layout::Layout;
use crate::media_type::Kind;
use crate::reference::Reference;

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { jobs: 4, chunk_size: 32 << 20 }
    }
}

/// What a push did.
#[derive(Clone, Debug, Default)]
pub struct Pushed {
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub mounted_blobs: usize,
    pub existing_blobs: usize,
}

/// Pushes the image `root` names in the layout to `dest`. `mount_from` is a repository of the
/// same registry that may already hold the blobs (where the image was pulled from).
pub fn push(
    registry: &Registry,
    layout: &Layout,
    root: &Descriptor,
    dest: &Reference,
    mount_from: Option<&str>,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let mount_from = mount_from.filter(|m| *m != dest.repository());
    let mut repo = Repository::new(registry, dest.repository(), true);
    if let Some(from) = mount_from {
        repo.scope = format!("{} repository:{from}:pull", repo.scope);
    }

    // The manifests to push (children first) and every blob they use.
    let root_bytes = layout.read_blob(&root.digest)?;
    let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    match root.kind() {
        Kind::Index => {
            let index = document::parse_index(&root_bytes).context("image index")?;
            for child in &index.manifests {
                if !layout.has_blob(&child.digest) {
                    let p = child.platform.as_ref().map(|p| format!(" ({p})")).unwrap_or_default();
                    bail!(
                        "the index lists {}{p}, which is not in the layout (pulled without --all-platforms?): push one platform's image instead",
                        child.digest
                    );
                }
                manifests.push((child.clone(), layout.read_blob(&child.digest)?));
            }
        }
        Kind::Manifest => {}
        Kind::Blob => bail!("{}: not an image manifest or index", root.media_type),
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    for (desc, bytes) in manifests.iter().chain(std::iter::once(&(root.clone(), root_bytes.clone()))) {
        if desc.kind() != Kind::Manifest {
            continue;
        }
        let m = document::parse_manifest(bytes).with_context(|| format!("manifest {}", desc.digest))?;
        for d in std::iter::once(m.config).chain(m.layers) {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d);
            }
        }
    }

    let stats = std::sync::Mutex::new(Pushed::default());
    parallel(&blobs, options.jobs, |d| {
        let how = push_blob(&repo, layout, d, mount_from, options, progress)
            .with_context(|| format!("blob {}", d.digest))?;
        super::sources::remember(layout, &d.digest, registry.name(), dest.repository());
        let mut s = stats.lock().expect("lock");
        match how {
            How::Existed => s.existing_blobs += 1,
            How::Mounted => s.mounted_blobs += 1,
            How::Uploaded => {
                s.uploaded_blobs += 1;
                s.uploaded_bytes += d.size;
            }
        }
        Ok(())
    })?;

    for (desc, bytes) in &manifests {
        put_manifest(&repo, &desc.digest.to_string(), &desc.media_type, bytes, &desc.digest)?;
    }
    let reference = match dest.tag() {
        Some(t) if dest.digest().is_none() => t.to_string(),
        _ => root.digest.to_string(),
    };
    put_manifest(&repo, &reference, &root.media_type, &root_bytes, &root.digest)?;
    Ok(stats.into_inner().expect("lock"))
}

fn put_manifest(
    repo: &Repository,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    digest: &Digest,
) -> Result<()> {
    let got = repo.put_manifest(reference, media_type, bytes)?;
    if let Some(got) = got
        && &got != digest
    {
        bail!("the registry stored manifest {reference} as {got}, not {digest}");
    }
    Ok(())
}

enum How {
    Existed,
    Mounted,
    Uploaded,
}

fn push_blob(
    repo: &Repository,
    layout: &Layout,
    desc: &Descriptor,
    mount_from: Option<&str>,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<How> {
    if repo.has_blob(&desc.digest)? {
        return Ok(How::Existed);
    }
    let path = layout.blob_path(&desc.digest);
    // Opened as the layout opens blobs: a symlink there (to any file of the host) is refused.
    let size = layout.open_blob(&desc.digest)?.metadata()?.len();
    if size != desc.size {
        bail!("is {size} bytes in the layout, but its descriptor says {}", desc.size);
    }
    // Mount from where the image came from, else from wherever this layout saw the blob.
    let known;
    let mount_from = match mount_from {
        Some(m) => Some(m),
        None => {
            known = super::sources::known_repository(layout, &desc.digest, repo.registry.name(), &repo.name);
            known.as_deref()
        }
    };
    // An upload that fails after its own retries (a session the registry lost, say) is
    // started over once; a refusal (auth, bad request) is not.
    match upload(repo, desc, &path, size, mount_from, options, progress) {
        Err(e) if !is_refusal(&e) => upload(repo, desc, &path, size, None, options, progress),
        other => other,
    }
}

/// Whether an error is the registry refusing us (retrying cannot help).
fn is_refusal(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    ["(401", "(403", "authentication", "access denied"].iter().any(|s| text.contains(s))
}

fn upload(
    repo: &Repository,
    desc: &Descriptor,
    path: &std::path::Path,
    size: u64,
    mount_from: Option<&str>,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<How> {
    let uploads = repo.registry.url(&format!("{}/blobs/uploads/", repo.name));
    let start_url = match mount_from {
        Some(from) => format!("{uploads}?mount={}&from={from}", desc.digest),
        None => uploads,
    };
    // Mounting needs pull access to the other repository too.
    let scope = match mount_from {
        Some(from) => format!("repository:{}:pull,push repository:{from}:pull", repo.name),
        None => repo.scope.clone(),
    };
    let resp = repo.registry.send(Method::POST, &start_url, &scope, &[], Body::Empty, || {})?;
    let status = resp.status().as_u16();
    if status == 201 && mount_from.is_some() {
        return Ok(How::Mounted);
    }
    if status != 202 {
        return Err(status_error(resp, repo.registry.has_credentials()).context("starting an upload"));
    }
    let location =
        header(resp.headers(), "location").ok_or_else(|| anyhow!("the registry gave no upload location"))?;
    let mut location = repo.registry.resolve(&location);
    let transfer = progress.start("push", &desc.digest, size, 0);

    let mut offset = 0u64;
    if size > options.chunk_size {
        let mut failures = 0;
        while offset < size {
            let len = options.chunk_size.min(size - offset);
            let headers = [
                ("Content-Type", "application/octet-stream".to_string()),
                ("Content-Range", format!("{offset}-{}", offset + len - 1)),
            ];
            let body = Body::File { path, offset, len };
            let sent =
                repo.registry.send_without_retries(Method::PATCH, &location, &repo.scope, &headers, body);
            match sent {
                Ok(resp) if resp.status().as_u16() == 202 => {
                    if let Some(l) = header(resp.headers(), "location") {
                        location = repo.registry.resolve(&l);
                    }
                    offset =
                        header(resp.headers(), "range").and_then(|r| range_end(&r)).unwrap_or(offset + len);
                    transfer.rewind(offset);
                }
                outcome => {
                    // Ask the registry how much it has and continue from there.
                    failures += 1;
                    if failures > repo.registry.options.retries {
                        return match outcome {
                            Ok(resp) => Err(status_error(resp, repo.registry.has_credentials())
                                .context("uploading a chunk")),
                            Err(e) => Err(e.context("uploading a chunk")),
                        };
                    }
                    std::thread::sleep(repo.registry.options.backoff * 2u32.pow(failures.min(6) - 1));
                    let status =
                        repo.registry.send(Method::GET, &location, &repo.scope, &[], Body::Empty, || {})?;
                    if status.status().as_u16() != 204 {
                        return Err(status_error(status, repo.registry.has_credentials())
                            .context("resuming an upload"));
                    }
                    if let Some(l) = header(status.headers(), "location") {
                        location = repo.registry.resolve(&l);
                    }
                    offset = header(status.headers(), "range").and_then(|r| range_end(&r)).unwrap_or(0);
                    transfer.rewind(offset);
                }
            }
        }
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={}", desc.digest);
    let body = if offset < size { Body::File { path, offset, len: size - offset } } else { Body::Empty };
    let headers = [("Content-Type", "application/octet-stream".to_string())];
    let resp =
        repo.registry.send(Method::PUT, &url, &repo.scope, &headers, body, || transfer.rewind(offset))?;
    if resp.status().as_u16() != 201 {
        return Err(status_error(resp, repo.registry.has_credentials()).context("finishing an upload"));
    }
    transfer.rewind(size);
    transfer.finish();
    Ok(How::Uploaded)
}

/// The next offset from a `Range: 0-N` header (N is the last byte received).
fn range_end(range: &str) -> Option<u64> {
    let end = range.trim().trim_start_matches("bytes=").split('-').nth(1)?;
    end.trim().parse::<u64>().ok().map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upload_ranges() {
        assert_eq!(range_end("0-1023"), Some(1024));
        assert_eq!(range_end("bytes=0-99"), Some(100));
        assert_eq!(range_end("garbage"), None);
    }
}
