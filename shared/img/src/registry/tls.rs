//! Which certificates a registry's TLS is verified against: Mozilla's roots by default; with
//! `/etc/docker/certs.d/<host>/*.crt` (`$IMG_CERTS_DIR`) or `--ca-cert`, the system's bundle
//! plus those. A certificate error is told apart from other transport errors, because it is
//! never retried nor a reason to downgrade to http.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};

/// How an agent checks certificates.
pub(super) enum Verify {
    /// Mozilla's roots (ureq's default).
    Default,
    Roots(Arc<Vec<ureq::tls::Certificate<'static>>>),
    /// For registries the user named insecure.
    Off,
}

/// The roots to verify a registry's certificate with: the system's bundle (or Mozilla's), plus
/// the docker-style per-host directory and the files given.
pub(super) fn roots(
    registry: &str,
    extra: &[PathBuf],
) -> Result<Option<Arc<Vec<ureq::tls::Certificate<'static>>>>> {
    let certs_dir =
        std::env::var_os("IMG_CERTS_DIR").map(PathBuf::from).unwrap_or_else(|| "/etc/docker/certs.d".into());
    let mut files: Vec<PathBuf> = extra.to_vec();
    if let Ok(entries) = std::fs::read_dir(certs_dir.join(registry)) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Ok(None); // ureq's default: Mozilla's roots
    }
    let mut certs = Vec::new();
    let system = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];
    for (i, file) in system.iter().map(PathBuf::from).chain(files.iter().cloned()).enumerate() {
        let pem = match std::fs::read(&file) {
            Ok(p) => p,
            Err(_) if i < system.len() => continue,
            Err(e) => return Err(anyhow!("CA certificate {}: {e}", file.display())),
        };
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) =
                item.map_err(|e| anyhow!("{}: {e}", file.display()))?
            {
                certs.push(c);
            }
        }
        if i >= system.len() && certs.len() == before {
            bail!("CA certificate {}: no certificate in it", file.display());
        }
    }
    Ok(Some(Arc::new(certs)))
}

/// Whether a transport error is about the server's certificate (never retried or downgraded).
pub(super) fn is_certificate_error(e: &ureq::Error) -> bool {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text += &s.to_string();
        source = s.source();
    }
    let text = text.to_ascii_lowercase();
    text.contains("certificate") || text.contains("unknownissuer")
}
