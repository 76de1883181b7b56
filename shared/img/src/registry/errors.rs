//! Registry failures in one line a user recognises: a transport error (`cannot connect`, a
//! timeout naming its flag, an untrusted certificate) or a status with the registry's own
//! message (`manifest unknown (404)`).

use anyhow::anyhow;

use super::response::HttpResponse;
use super::timeouts::Timeouts;
use super::tls::is_certificate_error;

/// Describes a transport error in words a user recognises.
pub(super) fn describe(e: &ureq::Error, timeouts: &Timeouts) -> String {
    match e {
        ureq::Error::Timeout(which) => timeouts.describe(*which),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "cannot connect: connection refused (is the registry running?)".into()
        }
        ureq::Error::ConnectionFailed => "cannot connect (is the registry running?)".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        e if is_certificate_error(e) => {
            let e = e.to_string();
            format!(
                "TLS certificate not trusted: {} (add its CA with --ca-cert)",
                e.trim_start_matches("io: ")
            )
        }
        e => e.to_string().trim_start_matches("io: ").to_string(),
    }
}

/// The error a registry answer means, in one line: `manifest unknown (404)`.
pub fn status_error(mut resp: HttpResponse, credentials: bool) -> anyhow::Error {
    let status = resp.status();
    let text = resp.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let first = v.get("errors")?.get(0)?.clone();
            let msg = first.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_string();
            let code = first
                .get("code")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_lowercase()
                .replace('_', " ");
            Some(if msg.is_empty() { code } else { msg })
        })
        .filter(|m| !m.is_empty());
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    match (code, message) {
        (401, _) if credentials => {
            anyhow!("authentication failed: wrong username or password? ({code} {reason})")
        }
        (401, _) => anyhow!("authentication required: log in or pass --creds ({code} {reason})"),
        (403, m) => anyhow!("access denied{} ({code})", m.map(|m| format!(": {m}")).unwrap_or_default()),
        (_, Some(m)) => anyhow!("{m} ({code})"),
        (_, None) => anyhow!("{reason} ({code})"),
    }
}
