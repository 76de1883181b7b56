//! One repository of a registry ([`Repository`]) and the endpoints pull and push use on it:
//! manifests (read whole, size-capped, schema1 refused, digests checked) and blobs.

use anyhow::{Context, Result, anyhow, bail};
use ureq::http::Method;

use super::client::{Body, Registry, Request};
use super::errors::{describe, status_error};
use super::response::{HttpResponse, header};
use super::timeouts::Budget;
use crate::digest::Digest;
use crate::media_type;

/// The `Accept` header for manifests: every kind we keep.
pub fn manifest_accept() -> String {
    media_type::MANIFEST_ACCEPT.join(", ")
}

/// A manifest as the registry served it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

/// Largest manifest or index we accept (distribution's own limit is 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// Largest image config we fetch: it is read into memory, and real ones are kilobytes (even
/// with hundreds of history entries), so a bigger one is a registry lying about what it is.
pub const MAX_CONFIG: u64 = 16 << 20;

/// One repository of a registry, with the scope its requests ask for.
pub struct Repository<'r> {
    pub registry: &'r Registry,
    pub name: String,
    pub(crate) scope: String,
}

impl<'r> Repository<'r> {
    pub fn new(registry: &'r Registry, name: &str, push: bool) -> Repository<'r> {
        let actions = if push { "pull,push" } else { "pull" };
        Repository { registry, name: name.to_string(), scope: format!("repository:{name}:{actions}") }
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<HttpResponse> {
        self.registry.send(method, url, &self.scope, headers, body, || {})
    }

    /// Whether the repository exists (its tag list can be read).
    pub fn exists(&self) -> Result<bool> {
        let url = self.registry.url(&format!("{}/tags/list?n=1", self.name));
        let resp = self.send(Method::GET, &url, &[], Body::Empty)?;
        Ok(resp.status().as_u16() != 404)
    }

    /// `HEAD` a manifest: its digest and media type, if the registry says.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<(Digest, String)>> {
        let url = self.registry.url(&format!("{}/manifests/{reference}", self.name));
        let resp = self.send(Method::HEAD, &url, &[("Accept", manifest_accept())], Body::Empty)?;
        match resp.status().as_u16() {
            200 => {
                let digest = header(resp.headers(), "docker-content-digest").and_then(|d| d.parse().ok());
                let media_type = header(resp.headers(), "content-type").unwrap_or_default();
                Ok(digest.map(|d| (d, media_type)))
            }
            // Not there, or HEAD not served: the GET that follows says why.
            _ => Ok(None),
        }
    }

    /// `GET` a manifest with its exact bytes and media type; schema1 is refused.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = self.registry.url(&format!("{}/manifests/{reference}", self.name));
        let mut resp = self.send(Method::GET, &url, &[("Accept", manifest_accept())], Body::Empty)?;
        if resp.status().as_u16() != 200 {
            return Err(status_error(resp, self.registry.has_credentials()));
        }
        let content_type = header(resp.headers(), "content-type").unwrap_or_default();
        let too_big =
            || anyhow!("the manifest is larger than {} MiB, the most we accept", MAX_MANIFEST >> 20);
        let announced = header(resp.headers(), "content-length").and_then(|l| l.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_MANIFEST) {
            return Err(too_big());
        }
        // Read under what is left of the request's --timeout (set when it was sent).
        let bytes = resp.body_mut().with_config().limit(MAX_MANIFEST).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => too_big(),
            e => anyhow!("reading the manifest: {}", describe(&e, &self.registry.options.timeouts)),
        })?;
        let mut media_type = content_type.split(';').next().unwrap_or_default().trim().to_string();
        if media_type == media_type::DOCKER_SCHEMA1 || media_type == media_type::DOCKER_SCHEMA1_SIGNED {
            bail!("Docker schema1 manifests are not supported (deprecated since 2017); re-push the image");
        }
        // Some registries answer application/json: the document's own mediaType says.
        if media_type::kind(&media_type) == media_type::Kind::Blob {
            let probe: serde_json::Value = serde_json::from_slice(&bytes).context("malformed manifest")?;
            if probe.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
                bail!(
                    "Docker schema1 manifests are not supported (deprecated since 2017); re-push the image"
                );
            }
            media_type = match probe.get("mediaType").and_then(|v| v.as_str()) {
                Some(m) => m.to_string(),
                None if probe.get("manifests").is_some() => media_type::OCI_INDEX.to_string(),
                None => media_type::OCI_MANIFEST.to_string(),
            };
        }
        let digest = Digest::of(&bytes);
        if let Ok(want) = reference.parse::<Digest>() {
            let mut hasher = crate::digest::Hasher::new(want.algorithm());
            hasher.update(&bytes);
            let got = hasher.finish();
            if got != want {
                bail!("manifest digest mismatch: asked for {want}, got {got}");
            }
            return Ok(FetchedManifest { media_type, bytes, digest: want });
        }
        Ok(FetchedManifest { media_type, bytes, digest })
    }

    /// `PUT` a manifest with its exact bytes; returns the digest the registry computed.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Option<Digest>> {
        let url = self.registry.url(&format!("{}/manifests/{reference}", self.name));
        let resp =
            self.send(Method::PUT, &url, &[("Content-Type", media_type.to_string())], Body::Bytes(bytes))?;
        if !(200..300).contains(&resp.status().as_u16()) {
            return Err(status_error(resp, self.registry.has_credentials())
                .context(format!("pushing manifest {reference}")));
        }
        Ok(header(resp.headers(), "docker-content-digest").and_then(|d| d.parse().ok()))
    }

    /// Whether the repository has a blob (`HEAD`).
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let url = self.registry.url(&format!("{}/blobs/{digest}", self.name));
        let resp = self.send(Method::HEAD, &url, &[], Body::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(resp, self.registry.has_credentials())),
        }
    }

    /// `GET` a blob from byte `from`; the caller checks the status (200, or 206 for a range).
    /// A layer is a [`Budget::Transfer`]; a config, a [`Budget::Document`].
    pub fn get_blob(
        &self,
        digest: &Digest,
        from: u64,
        last: Option<u64>,
        budget: Budget,
        on_retry: impl FnMut(),
    ) -> Result<HttpResponse> {
        let url = self.registry.url(&format!("{}/blobs/{digest}", self.name));
        let mut headers = Vec::new();
        match last {
            Some(last) => headers.push(("Range", format!("bytes={from}-{last}"))),
            None if from > 0 => headers.push(("Range", format!("bytes={from}-"))),
            None => {}
        }
        let retries = self.registry.options.retries;
        let request = Request {
            method: &Method::GET,
            url: &url,
            scope: &self.scope,
            headers: &headers,
            body: Body::Empty,
        };
        self.registry.send_with(retries, budget, request, on_retry)
    }
}
