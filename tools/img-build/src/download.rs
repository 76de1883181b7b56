//! Downloads for `ADD <url>`: streamed to a file while hashed, never held in memory, and
//! bounded in time (connecting, each read, the whole transfer) and, if asked, in size. The
//! server is not trusted: a body that trickles, never ends or never starts is an error
//! after a deadline, not a build that hangs.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use img::digest::{Algorithm, Digest, Hasher};
use img::registry::timeouts::show;

/// How long and how much a download may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connecting (DNS, TCP, TLS); `None`: no limit.
    pub connect: Option<Duration>,
    /// The longest wait for any one read (an idle connection).
    pub idle: Option<Duration>,
    /// The whole download, from the request to the last byte.
    pub total: Option<Duration>,
    /// The largest body accepted, if any.
    pub max_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(60)),
            total: Some(Duration::from_secs(30 * 60)),
            max_bytes: None,
        }
    }
}

/// Fetches `url` into `out`; returns the sha256 of what was written.
pub fn fetch(url: &str, limits: &Limits, out: &mut impl Write) -> Result<Digest> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(limits.connect)
        .timeout_connect(limits.connect)
        .timeout_send_request(limits.idle)
        .timeout_recv_response(limits.idle)
        .timeout_per_read(limits.idle)
        .timeout_global(limits.total)
        .user_agent(concat!("img-build/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let started = Instant::now();
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("downloading {url}: {e}");
    let mut resp = agent.get(url).call().map_err(|e| fail(&describe(&e, limits)))?;
    if !resp.status().is_success() {
        bail!("downloading {url}: {}", resp.status());
    }
    if let (Some(max), Some(len)) = (limits.max_bytes, resp.body().content_length())
        && len > max
    {
        bail!("downloading {url}: {len} bytes, more than the {max} allowed");
    }
    let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // ureq reports its deadlines as I/O errors; name which one ran out.
                let why = if let Some(total) = limits.total.filter(|t| started.elapsed() >= *t) {
                    format!("no complete answer within {} (--download-timeout)", show(total))
                } else {
                    e.to_string()
                };
                return Err(fail(&why));
            }
        };
        total += n as u64;
        if limits.max_bytes.is_some_and(|max| total > max) {
            bail!("downloading {url}: more than the {} bytes allowed", limits.max_bytes.unwrap_or(0));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).context("writing the download")?;
    }
    Ok(hasher.finish())
}

fn describe(e: &ureq::Error, limits: &Limits) -> String {
    let shown = |d: Option<Duration>| d.map_or_else(|| "none".to_string(), show);
    match e {
        ureq::Error::Timeout(which) => format!(
            "timed out ({which}; limits: --connect-timeout {}, --read-timeout {}, --download-timeout {})",
            shown(limits.connect),
            shown(limits.idle),
            shown(limits.total)
        ),
        other => other.to_string(),
    }
}
