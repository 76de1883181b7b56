//! A client of the OCI distribution API (v2): registry naming, TLS, authentication, retries and
//! redirects in one place ([`Registry::send`]), and the endpoints pull and push use.
//!
//! - Naming as docker: `docker.io` is served by `registry-1.docker.io`.
//! - https by default, verified against Mozilla's roots plus `/etc/docker/certs.d/<host>/*.crt`
//!   (`$IMG_CERTS_DIR` overrides the directory) and any `--ca-cert`. A loopback registry that
//!   does not speak TLS is used over plain http; a registry named insecure (`--insecure-registry`
//!   or `$IMG_INSECURE_REGISTRIES`, comma-separated) is tried over https without verification,
//!   then over http. A certificate that does not verify is an error, never a reason to downgrade.
//! - Retries: 429, 5xx, connection failures and resets, with exponential backoff that honours
//!   `Retry-After`. Redirects (blob downloads from a CDN) are followed by hand (ureq follows
//!   none: `max_redirects(0)`) so that credentials go only to the registry's own origin
//!   ([`origin`]): a redirect or upload `Location` elsewhere gets no `Authorization` header, and
//!   a 401 from there is an error, never a login.
//! - Time limits on connecting, on idle connections and on whole documents ([`timeouts`]);
//!   size limits on every document read into memory (manifests, configs, tokens, errors).
//!
//! One concern per file: `client` ([`Registry`] and its `send`), `repository` (the manifest and
//! blob endpoints), `endpoint` (which host, where plain http may be used), `tls` (which roots),
//! `agent` (the HTTP agent), `retry` (what to retry, how long to wait), `location` (`Location`
//! headers), `response` (headers and bodies), `errors` (failures in one line); [`auth`],
//! [`origin`] and [`timeouts`] beside them, and [`pull`] and [`push`] on top; [`referrers`]
//! (OCI 1.1 artifacts attached to an image), [`delete`] (`img-rm --remote`), and for
//! img-login/img-logout [`login`] (checking credentials) and [`docker_config`] (storing them).

pub mod auth;
pub mod delete;
pub mod docker_config;
pub mod login;
pub mod origin;
pub mod progress;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod sources;
pub mod tags;
pub mod timeouts;

mod agent;
mod client;
mod endpoint;
mod errors;
mod location;
mod repository;
mod response;
mod retry;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use auth::Credentials;
pub use client::{Body, Registry};
pub use endpoint::{endpoint_host, is_loopback};
pub use errors::status_error;
pub use repository::{FetchedManifest, MAX_CONFIG, Repository, manifest_accept};
pub use response::{HttpResponse, copy_body, header};
pub use timeouts::{Budget, Timeouts};

/// How to reach registries: TLS, insecure hosts, credentials, retries.
#[derive(Clone, Debug)]
pub struct Options {
    /// Registries (as named in references, `host[:port]`) that may be reached without TLS
    /// verification or over plain http.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_files: Vec<PathBuf>,
    /// Credentials that override the config files.
    pub credentials: Option<Credentials>,
    /// The one credentials file to read instead of the usual ones.
    pub auth_file: Option<PathBuf>,
    /// How many times a failed request is retried.
    pub retries: u32,
    /// The first backoff delay; it doubles on each retry.
    pub backoff: Duration,
    pub timeouts: Timeouts,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            ca_files: Vec::new(),
            credentials: None,
            auth_file: None,
            retries: 5,
            backoff: Duration::from_millis(250),
            timeouts: Timeouts::default(),
        }
    }
}

impl Options {
    /// Adds the registries named in `$IMG_INSECURE_REGISTRIES`.
    pub fn with_env(mut self) -> Options {
        if let Ok(list) = std::env::var("IMG_INSECURE_REGISTRIES") {
            self.insecure.extend(list.split([',', ' ']).filter(|s| !s.is_empty()).map(String::from));
        }
        self
    }
}

/// Registries connected so far, by name, so a run with many images connects once per registry.
#[derive(Default)]
pub struct Connections {
    options: Options,
    open: std::collections::HashMap<String, Arc<Registry>>,
}

impl Connections {
    pub fn new(options: Options) -> Connections {
        Connections { options, open: Default::default() }
    }

    pub fn get(&mut self, name: &str) -> Result<Arc<Registry>> {
        if let Some(r) = self.open.get(name) {
            return Ok(r.clone());
        }
        let r = Arc::new(Registry::connect(name, &self.options)?);
        self.open.insert(name.to_string(), r.clone());
        Ok(r)
    }
}
