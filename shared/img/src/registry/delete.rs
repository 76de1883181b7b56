//! Deleting an image in a registry (`img-rm --remote`, as `skopeo delete` and `crane delete`):
//! a tag is resolved to the digest it names now, then `DELETE /v2/<name>/manifests/<digest>`.
//! The registry removes the manifest and every tag that points at it (distribution cannot
//! delete a tag alone); its blobs go at the registry's next garbage collection.

use anyhow::{Context, Result, anyhow, bail};
use ureq::http::Method;

use super::{Body, Registry, Repository, status_error};
use crate::digest::Digest;
use crate::reference::Reference;

/// Deletes the manifest `reference` names (its digest, or what its tag resolves to) and
/// returns that digest.
pub fn delete(registry: &Registry, reference: &Reference) -> Result<Digest> {
    let mut repo = Repository::new(registry, reference.repository(), false);
    // distribution asks for the `delete` action on DELETE (and `pull` to resolve the tag).
    repo.scope = format!("repository:{}:pull,delete", reference.repository());
    let digest = match reference.digest() {
        Some(d) => d.clone(),
        None => {
            let tag = reference.api_reference();
            match repo.head_manifest(&tag)? {
                Some((d, _)) => d,
                // No digest in the HEAD answer (or no HEAD): GET says it, or why not.
                None => repo.get_manifest(&tag).context("resolving the tag")?.digest,
            }
        }
    };
    let url = registry.url(&format!("{}/manifests/{digest}", reference.repository()));
    let resp = registry.send(Method::DELETE, &url, repo.scope(), &[], Body::Empty, || {})?;
    match resp.status().as_u16() {
        200..=299 => Ok(digest),
        405 => {
            let why = status_error(resp, registry.has_credentials());
            Err(anyhow!(
                "{} does not allow deleting images ({why:#}); distribution needs storage.delete.enabled",
                registry.name()
            ))
        }
        _ => {
            Err(status_error(resp, registry.has_credentials())).with_context(|| format!("deleting {digest}"))
        }
    }
}

/// Refuses what cannot name a remote image: only registry references are deleted remotely.
pub fn parse(name: &str) -> Result<Reference> {
    if name.parse::<Digest>().is_ok() {
        bail!("a bare digest names no registry: give name@{name}");
    }
    name.parse()
}
