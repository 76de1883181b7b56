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
//! [`origin`] and [`timeouts`] beside them, and [`pull`] and [`push`] on top.

pub mod auth;
pub mod origin;
pub mod progress;
pub mod pull;
pub mod push;
pub mod sources;
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

/// The flags img-pull and img-push share: how to reach registries.
#[derive(Clone, Debug, clap::Args)]
pub struct RegistryArgs {
    /// Allow this registry (host[:port]) without TLS verification or over plain http
    /// (repeatable; also $IMG_INSECURE_REGISTRIES, comma-separated)
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
    /// Trust this CA certificate (PEM) too, besides /etc/docker/certs.d/HOST/*.crt
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// Log in with these credentials instead of those in the docker/containers config files
    #[arg(long, value_name = "USER:PASSWORD", env = "IMG_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Read credentials from this file only (docker config.json or containers auth.json form)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Blobs transferred at once
    #[arg(short, long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Retries of a failed request (429, 5xx, connection errors), with backoff
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// Give up on a manifest, index, config or token not fully received in this time, retries
    /// included (layers have no such limit, only --read-timeout); 0: no limit
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = timeouts::parse_duration)]
    pub timeout: Duration,
    /// Give up connecting to a registry (or a host it sends us to) after this long; 0: no limit
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeouts::parse_duration)]
    pub connect_timeout: Duration,
    /// Give up on any request, layers included, when no data moves for this long; 0: no limit
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = timeouts::parse_duration)]
    pub read_timeout: Duration,
    /// Print a line per image on stderr
    #[arg(short, long)]
    pub verbose: bool,
}

impl RegistryArgs {
    pub fn options(&self) -> Result<Options> {
        let credentials = self.creds.as_deref().map(Credentials::parse_user_password).transpose()?;
        Ok(Options {
            insecure: self.insecure.clone(),
            ca_files: self.ca_cert.clone(),
            credentials,
            auth_file: self.authfile.clone(),
            retries: self.retries,
            timeouts: Timeouts {
                connect: timeouts::limit(self.connect_timeout),
                read: timeouts::limit(self.read_timeout),
                document: timeouts::limit(self.timeout),
            },
            ..Options::default()
        }
        .with_env())
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
