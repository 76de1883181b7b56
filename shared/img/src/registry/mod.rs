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

pub mod auth;
pub mod origin;
pub mod progress;
pub mod pull;
pub mod push;
pub mod sources;
pub mod timeouts;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ureq::RequestExt;
use ureq::http::{self, HeaderMap, Method, Response};

use crate::digest::Digest;
use crate::media_type;
use auth::{Credentials, Session};
use origin::Origin;
pub use timeouts::{Budget, Timeouts};

pub type HttpResponse = Response<ureq::Body>;

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

/// The host that serves a registry name.
pub fn endpoint_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Whether a registry name is a loopback host (where plain http is allowed).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(v6) = registry.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a request sends as its body. Bodies can be sent again on a retry.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

/// One registry host, connected: the scheme is settled and the auth session is shared by
/// every request (and thread).
pub struct Registry {
    name: String,
    base: String,
    /// The only origin our credentials are sent to (besides the token realm it names).
    origin: Origin,
    agent: ureq::Agent,
    session: Session,
    pub(crate) options: Options,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.base)
    }
}

/// How an agent checks certificates.
enum Verify {
    /// Mozilla's roots (ureq's default).
    Default,
    Roots(Arc<Vec<ureq::tls::Certificate<'static>>>),
    /// For registries the user named insecure.
    Off,
}

fn agent(verify: Verify, timeouts: &Timeouts) -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    let tls = match verify {
        Verify::Default => TlsConfig::builder().build(),
        Verify::Roots(roots) => TlsConfig::builder().root_certs(RootCerts::Specific(roots)).build(),
        Verify::Off => TlsConfig::builder().disable_verification(true).build(),
    };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Redirects are followed in `send_once`, which decides what each hop may carry.
        .max_redirects(0)
        .timeout_connect(timeouts.connect)
        .timeout_resolve(timeouts.connect)
        .timeout_per_read(timeouts.read)
        .timeout_per_write(timeouts.read)
        // Requests made without a budget of their own (`/v2/`, tokens) are documents.
        .timeout_global(timeouts.document)
        .user_agent(concat!("img/", env!("CARGO_PKG_VERSION")))
        .accept("")
        .accept_encoding("identity")
        .tls_config(tls)
        .build()
        .new_agent()
}

/// The roots to verify a registry's certificate with: the system's bundle (or Mozilla's), plus
/// the docker-style per-host directory and the files given.
fn roots(registry: &str, extra: &[PathBuf]) -> Result<Option<Arc<Vec<ureq::tls::Certificate<'static>>>>> {
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
fn is_certificate_error(e: &ureq::Error) -> bool {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text += &s.to_string();
        source = s.source();
    }
    let text = text.to_ascii_lowercase();
    text.contains("certificate") || text.contains("unknownissuer")
}

fn is_retryable(e: &ureq::Error) -> bool {
    // A document's overall deadline covers its retries: once it is spent, nothing is left.
    if matches!(e, ureq::Error::Timeout(ureq::Timeout::Global)) {
        return false;
    }
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

/// Describes a transport error in words a user recognises.
fn describe(e: &ureq::Error, timeouts: &Timeouts) -> String {
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

impl Registry {
    /// Connects to a registry (as named in references), settling http or https and learning its
    /// authentication challenge.
    pub fn connect(name: &str, options: &Options) -> Result<Registry> {
        let host = endpoint_host(name).to_string();
        let credentials = match &options.credentials {
            Some(c) => Some(c.clone()),
            None => auth::lookup(name, options.auth_file.as_deref())
                .with_context(|| format!("reading credentials for {name}"))?,
        };
        let insecure = options.insecure.iter().any(|h| h == name || h == &host);
        let timeouts = &options.timeouts;
        let secure_agent =
            agent(roots(name, &options.ca_files)?.map_or(Verify::Default, Verify::Roots), timeouts);
        let mut attempts: Vec<(String, ureq::Agent)> = vec![(format!("https://{host}"), secure_agent)];
        if insecure {
            attempts = vec![(format!("https://{host}"), agent(Verify::Off, timeouts))];
        }
        if insecure || is_loopback(name) {
            attempts.push((format!("http://{host}"), agent(Verify::Default, timeouts)));
        }
        let mut first_error = None;
        for (base, agent) in attempts {
            let origin = Origin::of(&base).ok_or_else(|| anyhow!("{name}: not a registry name"))?;
            let registry = Registry {
                name: name.to_string(),
                base,
                origin,
                agent,
                session: Session::new(credentials.clone(), *timeouts),
                options: options.clone(),
            };
            match registry.ping() {
                Ok(()) => return Ok(registry),
                Err(e) => {
                    let cert = e.downcast_ref::<ureq::Error>().is_some_and(is_certificate_error);
                    let err = anyhow!(
                        "{name}: {}",
                        e.downcast_ref::<ureq::Error>()
                            .map_or_else(|| format!("{e:#}"), |e| describe(e, timeouts))
                    );
                    if cert {
                        return Err(err);
                    }
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.expect("at least one attempt"))
    }

    /// `GET /v2/`: is anyone there, and how do they want us to authenticate?
    fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let mut last = None;
        for attempt in 0..=self.options.retries.min(2) {
            if attempt > 0 {
                std::thread::sleep(self.options.backoff * 2u32.pow(attempt - 1));
            }
            let request = http::Request::get(&url).body(ureq::SendBody::none())?;
            match self.agent.run(request) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 {
                        let challenge = header(resp.headers(), "www-authenticate")
                            .and_then(|h| auth::parse_challenge(&h));
                        self.session.set_challenge(challenge);
                        return Ok(());
                    }
                    if status == 200 {
                        return Ok(());
                    }
                    if status < 500 {
                        bail!("{url} answered {status}: not a registry (distribution API v2)");
                    }
                    last = Some(anyhow!("{url}: {status}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.expect("ran at least once"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `scheme://host` of the endpoint.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn has_credentials(&self) -> bool {
        self.session.has_credentials()
    }

    /// Sends a request with authentication, retries and redirects. `scope` is the token scope
    /// (`repository:NAME:pull`, several separated by spaces). Returns the final response
    /// whatever its status; `on_retry` is called before each new attempt (to rewind progress).
    /// A request with a file body is a layer transfer; anything else is a document, bounded by
    /// `--timeout` as a whole (see [`timeouts`]).
    pub fn send(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        on_retry: impl FnMut(),
    ) -> Result<HttpResponse> {
        let budget = match body {
            Body::File { .. } => Budget::Transfer,
            _ => Budget::Document,
        };
        self.send_with(self.options.retries, budget, method, url, scope, headers, body, on_retry)
    }

    /// [`Registry::send`] without retries (for an upload chunk, which is recovered by asking
    /// the registry where it stands).
    pub fn send_without_retries(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<HttpResponse> {
        let budget = match body {
            Body::File { .. } => Budget::Transfer,
            _ => Budget::Document,
        };
        self.send_with(0, budget, method, url, scope, headers, body, || {})
    }

    #[allow(clippy::too_many_arguments)]
    fn send_with(
        &self,
        retries: u32,
        budget: Budget,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        mut on_retry: impl FnMut(),
    ) -> Result<HttpResponse> {
        let deadline = match budget {
            Budget::Document => self.options.timeouts.document.map(|d| Instant::now() + d),
            Budget::Transfer => None,
        };
        // Only requests to the registry itself get a token fetched ahead.
        if self.origin.serves(url) {
            self.session.prepare(&self.agent, scope)?;
        }
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            if attempt > 0 {
                on_retry();
            }
            let outcome = self.send_once(&method, url, scope, headers, body, deadline);
            let delay = match outcome {
                Ok((resp, Some(elsewhere))) if matches!(resp.status().as_u16(), 401 | 407) => {
                    // Logging in there would hand it our credentials (or fetch a token of its
                    // own that we would then send to the registry).
                    bail!(
                        "{} (where the registry sent us) asks for credentials ({}): img sends them only to {}",
                        elsewhere,
                        resp.status().as_u16(),
                        self.origin.host_port()
                    );
                }
                Ok((resp, elsewhere)) => {
                    let status = resp.status().as_u16();
                    if status == 401 && !refreshed && elsewhere.is_none() {
                        refreshed = true;
                        let challenge = header(resp.headers(), "www-authenticate");
                        if self.session.on_unauthorized(&self.agent, challenge.as_deref(), scope)? {
                            attempt += 1;
                            continue;
                        }
                        return Ok(resp);
                    }
                    let retryable =
                        status == 429 || status == 408 || (500..600).contains(&status) && status != 501;
                    if !retryable || attempt >= retries {
                        return Ok(resp);
                    }
                    let backoff = self.options.backoff * 2u32.pow(attempt.min(6));
                    retry_after(resp.headers()).map_or(backoff, |d| d.min(Duration::from_secs(60)))
                }
                Err(e) => {
                    let retryable = e.downcast_ref::<ureq::Error>().is_some_and(is_retryable);
                    if !retryable || attempt >= retries {
                        let what = e
                            .downcast_ref::<ureq::Error>()
                            .map_or_else(|| format!("{e:#}"), |e| describe(e, &self.options.timeouts));
                        bail!("{what}");
                    }
                    self.options.backoff * 2u32.pow(attempt.min(6))
                }
            };
            // A wait past the deadline would only end in a timeout: the next attempt reports it.
            let delay = deadline.map_or(delay, |d| delay.min(d.saturating_duration_since(Instant::now())));
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// One attempt, following redirects of GET and HEAD. Returns the response and, when the
    /// request went to another origin than the registry's (a redirect target, an upload
    /// location), that origin's `host:port`. Only requests to the registry's own origin carry
    /// our `Authorization`.
    fn send_once(
        &self,
        method: &Method,
        url: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        deadline: Option<Instant>,
    ) -> Result<(HttpResponse, Option<String>)> {
        let mut url = url.to_string();
        // The first origin of the chain that is not the registry's.
        let mut elsewhere: Option<String> = None;
        for _ in 0..6 {
            let mut builder = http::Request::builder().method(method.clone()).uri(&url);
            for (k, v) in headers {
                builder = builder.header(*k, v);
            }
            // Decided per hop against the registry itself, not the previous hop, so an https →
            // http downgrade on the same host loses them too; and a chain that has left the
            // registry does not get them back by redirecting to it (the other host would choose
            // what we ask the registry with our credentials).
            if elsewhere.is_none() && !self.origin.serves(&url) {
                elsewhere = Some(Origin::of(&url).map_or_else(|| url.clone(), |o| o.host_port()));
            }
            if elsewhere.is_none()
                && let Some(h) = self.session.header(scope)
            {
                builder = builder.header("Authorization", h);
            }
            // What is left of a document's deadline; a transfer has none (the agent's default
            // is the document limit, so it is lifted explicitly).
            let limit = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
                    Some(left) => Some(left),
                    None => return Err(ureq::Error::Timeout(ureq::Timeout::Global).into()),
                },
                None => None,
            };
            let resp = match body {
                Body::Empty => {
                    let with_length = matches!(*method, Method::PUT | Method::POST | Method::PATCH);
                    if with_length {
                        builder = builder.header("Content-Length", "0");
                    }
                    self.run(builder.body(ureq::SendBody::none())?, limit)?
                }
                Body::Bytes(bytes) => {
                    builder = builder.header("Content-Length", bytes.len().to_string());
                    self.run(builder.body(bytes)?, limit)?
                }
                Body::File { path, offset, len } => {
                    use std::io::{Seek, SeekFrom};
                    // A layout's blob: never through a symlink, never a FIFO that would block.
                    let mut file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                        .open(path)
                        .with_context(|| path.display().to_string())?;
                    if !file.metadata()?.is_file() {
                        bail!("{}: not a regular file", path.display());
                    }
                    file.seek(SeekFrom::Start(offset))?;
                    let reader = std::io::BufReader::with_capacity(1 << 18, file.take(len));
                    builder = builder.header("Content-Length", len.to_string());
                    self.run(builder.body(ureq::SendBody::from_owned_reader(reader))?, limit)?
                }
            };
            let status = resp.status().as_u16();
            let redirect = matches!(status, 301 | 302 | 303 | 307 | 308)
                && matches!(*method, Method::GET | Method::HEAD);
            match header(resp.headers(), "location") {
                Some(location) if redirect => url = resolve(&url, &location),
                _ => return Ok((resp, elsewhere)),
            }
        }
        bail!("{url}: too many redirects")
    }

    /// Runs one request with `limit` as its overall deadline (`None`: none).
    fn run(
        &self,
        request: http::Request<impl ureq::AsSendBody>,
        limit: Option<Duration>,
    ) -> Result<HttpResponse, ureq::Error> {
        request.with_agent(&self.agent).configure().timeout_global(limit).run()
    }

    /// Words for an error from reading a response body (a timeout names its flag).
    pub fn describe_io(&self, e: &std::io::Error) -> String {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()) {
            Some(inner) => describe(inner, &self.options.timeouts),
            None => e.to_string(),
        }
    }

    /// Whether a body read failed because the request's overall deadline passed.
    pub fn is_deadline(&self, e: &std::io::Error) -> bool {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(ureq::Timeout::Global)))
    }

    /// A URL under `/v2/` of this registry.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.base)
    }

    /// Resolves a `Location` header against this registry.
    pub fn resolve(&self, location: &str) -> String {
        resolve(&self.base, location)
    }
}

/// A header's value as text.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `Retry-After` as seconds or as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header(headers, "retry-after")?;
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(value)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate.
fn http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let host = rest.split('/').next().unwrap_or_default();
    if location.starts_with('/') {
        format!("{scheme}://{host}{location}")
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
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
        self.registry.send_with(
            retries,
            budget,
            Method::GET,
            &url,
            &self.scope,
            &headers,
            Body::Empty,
            on_retry,
        )
    }
}

/// Reads a response body into a writer in large chunks, counting bytes.
pub fn copy_body(
    resp: HttpResponse,
    out: &mut impl std::io::Write,
    mut progress: impl FnMut(u64),
) -> Result<u64, std::io::Error> {
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 17];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(endpoint_host("docker.io"), "registry-1.docker.io");
        assert_eq!(endpoint_host("quay.io"), "quay.io");
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:5000"));
        assert!(!is_loopback("example.com:5000") && !is_loopback("10.0.0.1"));
        assert_eq!(
            resolve("http://h:5/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u?x=1"),
            "http://h:5/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(resolve("http://h:5/v2/x", "https://cdn/y"), "https://cdn/y");
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date("yesterday"), None);
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
