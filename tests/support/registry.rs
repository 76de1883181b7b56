//! Real registries for the pull/push tests: Debian's `docker-registry` (distribution 2.8) on a
//! free loopback port with a generated config, optionally behind htpasswd Basic auth, token
//! auth (with a token issuer served from the test) or TLS with a generated CA; and a
//! fault-injecting HTTP proxy to put in front of one. Everything is stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A free TCP port on 127.0.0.1 (bound and released; the registry binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("binding a port").local_addr().expect("local addr").port()
}

/// Waits (bounded) until something accepts connections on the port.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 15s");
}

fn run(program: &str, args: &[&str], dir: &Path) -> Vec<u8> {
    crate::require(program);
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    crate::assert_success(&out, &format!("{program} {}", args.join(" ")));
    out.stdout
}

/// A CA and a server certificate for 127.0.0.1/localhost it signed, made with openssl.
pub struct Tls {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed certificate `NAME.crt` with its key `NAME.key` in `dir`, valid two days.
fn self_signed(dir: &Path, name: &str, common_name: &str) {
    let d = |s: &str| dir.join(s).to_string_lossy().into_owned();
    let (key, crt, subject) =
        (d(&format!("{name}.key")), d(&format!("{name}.crt")), format!("/CN={common_name}"));
    run(
        "openssl",
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &crt, "-days", "2",
            "-subj", &subject,
        ],
        dir,
    );
}

impl Tls {
    pub fn generate(dir: &Path) -> Tls {
        let d = |s: &str| dir.join(s).to_string_lossy().into_owned();
        self_signed(dir, "ca", "img test CA");
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &d("server.key"),
                "-out",
                &d("server.csr"),
                "-subj",
                "/CN=127.0.0.1",
            ],
            dir,
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &d("server.csr"),
                "-CA",
                &d("ca.crt"),
                "-CAkey",
                &d("ca.key"),
                "-CAcreateserial",
                "-out",
                &d("server.crt"),
                "-days",
                "2",
                "-extfile",
                &d("ext.cnf"),
            ],
            dir,
        );
        Tls { ca_cert: dir.join("ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key") }
    }
}

/// How the registry authenticates.
pub enum Auth {
    Anonymous,
    /// htpasswd Basic auth with one user.
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens from a token issuer run by the test, which accepts one user (and
    /// anonymous requests for pull only when `anonymous_pull`).
    Token {
        user: String,
        password: String,
    },
}

/// A running `docker-registry`.
pub struct Registry {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
    pub tls: Option<Tls>,
    pub token_server: Option<TokenServer>,
}

impl Registry {
    pub fn anonymous() -> Registry {
        Registry::start(Auth::Anonymous, false)
    }

    /// Starts a registry; `tls` serves https with a generated CA.
    pub fn start(auth: Auth, tls: bool) -> Registry {
        Registry::start_with(auth, tls, true)
    }

    /// Starts a registry that refuses `DELETE` (distribution's default: 405 UNSUPPORTED).
    pub fn without_deletes(auth: Auth) -> Registry {
        Registry::start_with(auth, false, false)
    }

    fn start_with(auth: Auth, tls: bool, deletes: bool) -> Registry {
        crate::require("docker-registry");
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let tls = tls.then(|| Tls::generate(dir.path()));
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {deletes}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: img-test-secret\n",
            dir.path().join("data").display()
        );
        if let Some(t) = &tls {
            config +=
                &format!("  tls:\n    certificate: {}\n    key: {}\n", t.cert.display(), t.key.display());
        }
        let mut token_server = None;
        match auth {
            Auth::Anonymous => {}
            Auth::Basic { user, password } => {
                let line = run("htpasswd", &["-Bbn", &user, &password], dir.path());
                std::fs::write(dir.path().join("htpasswd"), line).unwrap();
                config += &format!(
                    "auth:\n  htpasswd:\n    realm: img-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                );
            }
            Auth::Token { user, password } => {
                let server = TokenServer::start(dir.path(), &user, &password);
                config += &format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: img-test-registry\n    issuer: img-test-issuer\n    rootcertbundle: {}\n",
                    server.port,
                    server.cert.display()
                );
                token_server = Some(server);
            }
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("registry.log")).unwrap()))
            .spawn()
            .expect("starting docker-registry");
        wait_for_port(port);
        Registry { port, child, dir, tls, token_server }
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64_std(bytes: &[u8]) -> String {
    let mut s = base64url(bytes).replace('-', "+").replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// A token issuer the registry trusts: RS256 JWTs whose `x5c` header carries a self-signed
/// certificate that is also the registry's `rootcertbundle`. It takes the user's password
/// (Basic, on GET) or the refresh token `refresh-<user>` (OAuth2 POST form, as docker's
/// `identitytoken` is used).
pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    /// Token requests served, and how many were refused.
    pub issued: Arc<AtomicUsize>,
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let d = |s: &str| dir.join(s).to_string_lossy().into_owned();
        self_signed(dir, "token", "img test token issuer");
        let der = run("openssl", &["x509", "-in", &d("token.crt"), "-outform", "DER"], dir);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let expected_auth = format!("Basic {}", base64_std(format!("{user}:{password}").as_bytes()));
        let x5c = base64_std(&der);
        let key = dir.join("token.key");
        let (stop2, issued2, refused2) = (stop.clone(), issued.clone(), refused.clone());
        let user = user.to_string();
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let (key, x5c, expected, user) =
                            (key.clone(), x5c.clone(), expected_auth.clone(), user.clone());
                        let (issued, refused) = (issued2.clone(), refused2.clone());
                        thread::spawn(move || {
                            let _ = serve_token(stream, &key, &x5c, &expected, &user, &issued, &refused);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer { port, cert: dir.join("token.crt"), issued, refused, stop }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(
    stream: TcpStream,
    key: &Path,
    x5c: &str,
    expected_auth: &str,
    user: &str,
    issued: &AtomicUsize,
    refused: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    // GET with the parameters in the query, or the OAuth2 POST form (refresh tokens).
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let query =
        format!("{}&{}", target.split_once('?').map_or("", |(_, q)| q), String::from_utf8_lossy(&body));
    let mut scopes = Vec::new();
    let mut service = String::new();
    let mut refresh_token = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "scope" => scopes.extend(percent_decode(v).split(' ').map(String::from)),
            "service" => service = percent_decode(v),
            "refresh_token" => refresh_token = Some(percent_decode(v)),
            _ => {}
        }
    }
    let mut out = stream;
    let subject = match (authorization.as_deref(), refresh_token) {
        (_, Some(t)) if t == format!("refresh-{user}") => user.to_string(),
        (_, Some(_)) => {
            refused.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"details":"invalid refresh token"}"#;
            return write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        (Some(a), None) if a == expected_auth => user.to_string(),
        (None, None) => String::new(),
        (Some(_), None) => {
            refused.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"details":"wrong username or password"}"#;
            return write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    };
    // Anonymous users may pull; the named user may do anything.
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let actions: Vec<&str> = actions.split(',').filter(|a| subject == user || *a == "pull").collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "img-test-issuer", "sub": subject, "aud": service, "exp": now + 600, "nbf": now - 60,
        "iat": now, "jti": format!("{now}-{}", issued.load(Ordering::SeqCst)), "access": access,
    });
    let signing_input =
        format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(signing_input.as_bytes())?;
    let signature = child.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", base64url(&signature));
    issued.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What the proxy does to one matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and headers) instead of forwarding.
    Status(u16, Vec<(String, String)>),
    /// Answer 200 with this content type and body instead of forwarding.
    Respond(String, Vec<u8>),
    /// Forward, but close the connection after this many bytes of the response body.
    ResetAfter(u64),
    /// Forward with one byte of the body flipped (at this offset).
    Corrupt(u64),
    /// Forward without the `Range` header, as a server that ignores ranges would answer.
    IgnoreRange,
    /// Answer `307 Temporary Redirect` to this base URL plus the request path (a CDN).
    Redirect(String),
}

/// A rule: requests whose `METHOD path` contains `matches` get `fault`, `times` times.
#[derive(Clone, Debug)]
pub struct Rule {
    pub matches: String,
    pub fault: Fault,
    /// Matching requests let through before the fault starts.
    pub skip: usize,
    pub times: usize,
}

#[derive(Default)]
struct ProxyState {
    rules: Mutex<Vec<Rule>>,
    /// Request lines seen, in order.
    requests: Mutex<Vec<String>>,
    /// Every request's head (request line and headers), in order.
    heads: Mutex<Vec<Vec<String>>>,
    /// Response body bytes relayed for blob GETs.
    blob_bytes: AtomicU64,
    /// Delay per 64 KiB of blob body (to let a test kill a client mid-blob).
    throttle_ms: AtomicU64,
}

/// A fault-injecting HTTP/1.1 proxy in front of a registry (plain http only).
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(ProxyState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (state.clone(), stop.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let state = state2.clone();
                        thread::spawn(move || {
                            let _ = proxy_connection(client, upstream_port, &state);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, state, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn add(&self, matches: &str, fault: Fault, times: usize) {
        self.add_after(matches, 0, fault, times);
    }

    /// Like `add`, but the first `skip` matching requests pass untouched.
    pub fn add_after(&self, matches: &str, skip: usize, fault: Fault, times: usize) {
        self.state.rules.lock().unwrap().push(Rule { matches: matches.to_string(), fault, skip, times });
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every request's head: the request line, then the header lines.
    pub fn heads(&self) -> Vec<Vec<String>> {
        self.state.heads.lock().unwrap().clone()
    }

    pub fn blob_bytes(&self) -> u64 {
        self.state.blob_bytes.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.state.blob_bytes.store(0, Ordering::SeqCst);
        self.state.requests.lock().unwrap().clear();
    }

    pub fn throttle(&self, ms_per_64k: u64) {
        self.state.throttle_ms.store(ms_per_64k, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn content_length(head: &[String]) -> u64 {
    head.iter()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn proxy_connection(client: TcpStream, upstream_port: u16, state: &ProxyState) -> std::io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    loop {
        let Some(head) = crate::http::read_head(&mut from_client)? else { return Ok(()) };
        let request_line = head.first().cloned().unwrap_or_default();
        let mut body = vec![0u8; content_length(&head) as usize];
        from_client.read_exact(&mut body)?;
        state.requests.lock().unwrap().push(request_line.clone());
        state.heads.lock().unwrap().push(head.clone());
        let fault = {
            let mut rules = state.rules.lock().unwrap();
            let hit = rules.iter_mut().find(|r| r.times > 0 && request_line.contains(&r.matches));
            hit.and_then(|r| {
                if r.skip > 0 {
                    r.skip -= 1;
                    return None;
                }
                r.times -= 1;
                Some(r.fault.clone())
            })
        };
        if let Some(Fault::Respond(content_type, bytes)) = &fault {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            );
            to_client.write_all(head.as_bytes())?;
            to_client.write_all(bytes)?;
            continue;
        }
        if let Some(Fault::Redirect(base)) = &fault {
            let path = request_line.split(' ').nth(1).unwrap_or("/");
            let response = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{path}\r\nContent-Length: 0\r\n\r\n"
            );
            to_client.write_all(response.as_bytes())?;
            continue;
        }
        if let Some(Fault::Status(code, headers)) = &fault {
            let mut response = format!("HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\n");
            for (k, v) in headers {
                response += &format!("{k}: {v}\r\n");
            }
            to_client.write_all(format!("{response}\r\n").as_bytes())?;
            continue;
        }
        // Forward on a fresh upstream connection that closes after one response.
        let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
        let mut out = format!("{request_line}\r\n");
        let ignore_range = matches!(fault, Some(Fault::IgnoreRange));
        for h in &head[1..] {
            let lower = h.to_ascii_lowercase();
            if !(lower.starts_with("connection:") || ignore_range && lower.starts_with("range:")) {
                out += &format!("{h}\r\n");
            }
        }
        out += "Connection: close\r\n\r\n";
        upstream.write_all(out.as_bytes())?;
        upstream.write_all(&body)?;
        let mut from_upstream = BufReader::new(upstream);
        let Some(resp_head) = crate::http::read_head(&mut from_upstream)? else { return Ok(()) };
        let is_head = request_line.starts_with("HEAD ");
        let length = if is_head { 0 } else { content_length(&resp_head) };
        let is_blob_get = request_line.starts_with("GET ") && request_line.contains("/blobs/sha256:");
        let mut head_out = String::new();
        for h in &resp_head {
            if !h.to_ascii_lowercase().starts_with("connection:") {
                head_out += &format!("{h}\r\n");
            }
        }
        to_client.write_all(format!("{head_out}\r\n").as_bytes())?;
        let mut sent = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while sent < length {
            let want = ((length - sent) as usize).min(buf.len());
            let n = from_upstream.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            if let Some(Fault::Corrupt(at)) = fault
                && at >= sent
                && at < sent + n as u64
            {
                buf[(at - sent) as usize] ^= 0xff;
            }
            if let Some(Fault::ResetAfter(limit)) = fault
                && sent + n as u64 > limit
            {
                let keep = (limit - sent.min(limit)) as usize;
                to_client.write_all(&buf[..keep])?;
                if is_blob_get {
                    state.blob_bytes.fetch_add(keep as u64, Ordering::SeqCst);
                }
                let _ = to_client.shutdown(Shutdown::Both);
                return Ok(());
            }
            to_client.write_all(&buf[..n])?;
            sent += n as u64;
            if is_blob_get {
                state.blob_bytes.fetch_add(n as u64, Ordering::SeqCst);
                let ms = state.throttle_ms.load(Ordering::SeqCst);
                if ms > 0 {
                    thread::sleep(Duration::from_millis(ms));
                }
            }
        }
        to_client.flush()?;
    }
}
