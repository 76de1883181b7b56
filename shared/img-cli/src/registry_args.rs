//! The registry flags img-pull, img-push and img-build share: how to reach registries (TLS,
//! credentials, retries, time limits), turned into the library's [`Options`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use img::registry::auth::Credentials;
use img::registry::{Options, Timeouts, timeouts};

/// The flags of every tool that talks to registries: how to reach them (TLS, credentials,
/// retries, time limits).
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
}

/// The flags of the tools that move blobs (img-pull, img-push): how many at once, and a line
/// per image.
#[derive(Clone, Debug, clap::Args)]
pub struct TransferArgs {
    /// Blobs transferred at once
    #[arg(short, long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Print a line per image on stderr
    #[arg(short, long)]
    pub verbose: bool,
}

impl RegistryArgs {
    /// The registry options these flags ask for, with the environment's (`$IMG_INSECURE_REGISTRIES`).
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
