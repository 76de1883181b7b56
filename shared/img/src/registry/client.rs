//! One registry host, connected ([`Registry`]): the scheme settled (https, or http where
//! allowed), the auth session shared by every request, and [`Registry::send`], the one place
//! requests get authentication, retries, time limits and redirects.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ureq::RequestExt;
use ureq::http::{self, Method};

use super::Options;
use super::agent::agent;
use super::auth::{self, Session};
use super::endpoint::{endpoint_host, is_loopback};
use super::errors::describe;
use super::location::resolve;
use super::origin::Origin;
use super::response::{HttpResponse, header};
use super::retry::{is_retryable, is_retryable_status, retry_after};
use super::timeouts::Budget;
use super::tls::{Verify, is_certificate_error, roots};

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

impl Body<'_> {
    /// The time limit a request with this body gets: a file is a layer transfer, anything
    /// else a document (see [`super::timeouts`]).
    fn budget(&self) -> Budget {
        match self {
            Body::File { .. } => Budget::Transfer,
            _ => Budget::Document,
        }
    }
}

/// One request as [`Registry::send_with`] sends it (and sends again on a retry).
#[derive(Clone, Copy)]
pub(super) struct Request<'a> {
    pub method: &'a Method,
    pub url: &'a str,
    /// The token scope (`repository:NAME:pull`).
    pub scope: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: Body<'a>,
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
    /// `--timeout` as a whole (see [`super::timeouts`]).
    pub fn send(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        on_retry: impl FnMut(),
    ) -> Result<HttpResponse> {
        self.send_with(
            self.options.retries,
            body.budget(),
            Request { method: &method, url, scope, headers, body },
            on_retry,
        )
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
        self.send_with(0, body.budget(), Request { method: &method, url, scope, headers, body }, || {})
    }

    /// [`Registry::send`] with the number of retries and the time budget given.
    pub(super) fn send_with(
        &self,
        retries: u32,
        budget: Budget,
        request: Request<'_>,
        mut on_retry: impl FnMut(),
    ) -> Result<HttpResponse> {
        let Request { url, scope, .. } = request;
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
            let outcome = self.send_once(&request, deadline);
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
                    if !is_retryable_status(status) || attempt >= retries {
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
        request: &Request<'_>,
        deadline: Option<Instant>,
    ) -> Result<(HttpResponse, Option<String>)> {
        let Request { method, url, scope, headers, body } = *request;
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
