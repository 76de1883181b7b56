//! A registry the user trusts, and hosts it points us at that they do not: a blob redirect to
//! another port that asks for credentials with its own Bearer realm, an upload `Location` on
//! another port, a manifest sent one byte a second, a blob that stalls, and documents too big
//! to be what they claim. The trusted registry is the real `docker-registry` (behind the
//! fault proxy where a response must be rewritten); the hostile hosts are small HTTP servers
//! written here, on 127.0.0.1, that record everything they receive.
//!
//! "Another host" means another origin: scheme, host and port must all match the registry the
//! user named for credentials to be sent. These tests use another port of 127.0.0.1.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use img::layout::Layout;
use img::test_image::{BuiltImage, Compression, Entry, Layer, TestImage};
use img_e2e::check;
use img_e2e::registry::{Auth, Fault, Proxy, Registry};
use img_e2e::{Store, assert_success, run_with_timeout, stderr};

/// One request a hostile server received.
#[derive(Clone, Debug)]
struct Seen {
    /// The request line, then the header lines.
    head: Vec<String>,
    body: Vec<u8>,
}

impl Seen {
    fn line(&self) -> &str {
        &self.head[0]
    }

    fn path(&self) -> &str {
        self.line().split(' ').nth(1).unwrap_or("")
    }

    fn authorization(&self) -> Option<&str> {
        self.head[1..].iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim().eq_ignore_ascii_case("authorization").then_some(v.trim())
        })
    }
}

/// What a hostile server answers to one request.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send the body this many bytes at a time, sleeping between pieces.
    drip: Option<(usize, Duration)>,
    /// Send only this much of the body, then hold the connection open (bounded) saying nothing.
    stall_after: Option<usize>,
}

impl Answer {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer { status, headers: Vec::new(), body: body.into(), drip: None, stall_after: None }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    /// A 401 that asks for a Bearer token from a realm on the hostile server itself.
    fn bearer_challenge(port: u16) -> Answer {
        Answer::new(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
            .header(
                "WWW-Authenticate",
                format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="evil",scope="repository:repo:pull""#),
            )
    }

    /// The token its realm hands out.
    fn evil_token() -> Answer {
        Answer::new(200, r#"{"token":"evil-token","access_token":"evil-token"}"#)
            .header("Content-Type", "application/json")
    }
}

type Handler = dyn Fn(&Seen, u16) -> Answer + Send + Sync;

/// A small HTTP/1.1 server on 127.0.0.1 that answers as its handler says and records every
/// request; one request per connection. Stops when dropped.
struct Hostile {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    fn start(handler: impl Fn(&Seen, u16) -> Answer + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen2, stop2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (seen, stop, handler) = (seen2.clone(), stop2.clone(), handler.clone());
                        thread::spawn(move || {
                            let _ = serve(stream, port, &*handler, &seen, &stop);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hostile { port, seen, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    stream: TcpStream,
    port: u16,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    // A TLS hello (the client trying https first) is not text: the read fails and we hang up.
    let Some(head) = img_e2e::http::read_head(&mut reader)? else { return Ok(()) };
    let length = head[1..]
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 << 20);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let request = Seen { head, body };
    seen.lock().unwrap().push(request.clone());
    let answer = handler(&request, port);
    let mut out = stream;
    let mut response = format!(
        "HTTP/1.1 {} Hostile\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (k, v) in &answer.headers {
        response += &format!("{k}: {v}\r\n");
    }
    out.write_all(format!("{response}\r\n").as_bytes())?;
    if request.line().starts_with("HEAD ") {
        return Ok(());
    }
    if let Some(n) = answer.stall_after {
        out.write_all(&answer.body[..n.min(answer.body.len())])?;
        out.flush()?;
        // Say nothing more for a while (bounded), then hang up.
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    match answer.drip {
        Some((piece, pause)) => {
            for chunk in answer.body.chunks(piece.max(1)) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                out.write_all(chunk)?;
                out.flush()?;
                thread::sleep(pause);
            }
        }
        None => out.write_all(&answer.body)?,
    }
    out.flush()
}

/// A registry's `/v2/` answer: anonymous access.
fn v2_ok() -> Answer {
    Answer::new(200, "{}").header("Docker-Distribution-API-Version", "registry/2.0")
}

fn image(seed: &str) -> BuiltImage {
    TestImage::new()
        .compression(Compression::None)
        .layer(Layer::new([Entry::file("hello", format!("hello from {seed}"))]))
        .build()
}

/// Writes `image` as `img:1` into a fresh layout under the store; returns its path.
fn source_layout(store: &Store, image: &BuiltImage) -> String {
    let src = store.path().join("src");
    image.write_to(&Layout::open_or_create(&src).unwrap(), Some("img:1")).unwrap();
    src.to_str().unwrap().to_string()
}

/// The trusted registry: `docker-registry` with htpasswd (`basic`) or token auth, user `u`
/// with password `p`.
fn trusted(auth: &str) -> Registry {
    let (user, password) = ("u".to_string(), "p".to_string());
    match auth {
        "basic" => Registry::start(Auth::Basic { user, password }, false),
        _ => Registry::start(Auth::Token { user, password }, false),
    }
}

/// How the user logs in to the trusted registry in a case.
struct Login {
    what: &'static str,
    args: Vec<String>,
    /// What must never reach another host.
    secrets: Vec<String>,
}

/// A docker config file holding an identity token (an OAuth2 refresh token) for `host`.
fn identity_token_file(store: &Store, host: &str) -> String {
    let path = store.path().join("auth.json");
    let config = serde_json::json!({"auths": {host: {"identitytoken": "refresh-u"}}});
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// The logins the credential cases run with: `--creds` (sent as Basic to an htpasswd registry,
/// or to the token realm of a token registry), and an identity token from an auth file (token
/// registries only). The test token realm is on another port than its registry: the registry
/// announced it, so it is trusted.
fn logins(store: &Store, front: &Proxy) -> Vec<Login> {
    let basic_b64 = "dTpw"; // base64("u:p")
    vec![
        Login {
            what: "Basic",
            args: vec!["--creds".into(), "u:p".into()],
            secrets: vec![basic_b64.into(), "u:p".into()],
        },
        Login {
            what: "identity token",
            args: vec!["--authfile".into(), identity_token_file(store, &front.host())],
            secrets: vec!["refresh-u".into()],
        },
    ]
}

/// Panics if anything that identifies the user reached the hostile server.
fn assert_nothing_leaked(evil: &Hostile, secrets: &[String], case: &str) {
    let seen = evil.seen();
    for s in &seen {
        assert_eq!(
            s.authorization(),
            None,
            "{case}: {} got an Authorization header: {:?}",
            evil.host(),
            s.head
        );
        let text = format!("{}\n{}", s.head.join("\n"), String::from_utf8_lossy(&s.body));
        for secret in secrets {
            assert!(!text.contains(secret.as_str()), "{case}: {} received {secret:?}: {text}", evil.host());
        }
    }
}

/// Panics unless the tool failed with exit 1 and one line that names `host`.
fn assert_one_line_naming(out: &Output, tool: &str, host: &str, case: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{case}: {tool} should fail: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{case}: not one line: {err}");
    assert!(err.starts_with(&format!("{tool}: ")), "{case}: {err}");
    assert!(err.contains(host), "{case}: the error does not name {host}: {err}");
    err
}

/// No reference, no blob with wrong content, none of `absent` stored, no temp file left.
fn assert_nothing_half_made(layout: &Path, absent: &[&img::digest::Digest], case: &str) {
    if !layout.join("index.json").exists() {
        return;
    }
    assert!(check::refs(layout).is_empty(), "{case}: a ref was written: {:?}", check::refs(layout));
    check::assert_no_bad_blob(layout);
    let blobs = check::blob_names(layout);
    for d in absent {
        assert!(!blobs.contains(&d.to_string()), "{case}: {d} was stored");
    }
    assert_eq!(check::temp_files(layout), 0, "{case}: temp files left");
}

#[test]
fn a_blob_redirect_to_another_port_gets_no_credentials_and_its_401_is_an_error() {
    for auth in ["basic", "token"] {
        let store = Store::new();
        let image = image(auth);
        let layer = &image.layers[0].descriptor;
        let registry = trusted(auth);
        let src = source_layout(&store, &image);
        let to = format!("{}/repo:1", registry.host());
        assert_success(
            &store.run("img-push", &["--layout", &src, "--creds", "u:p", "--to", &to, "img:1"], ""),
            "push",
        );

        // The "CDN" asks for credentials with a Bearer realm of its own, and hands out a
        // token to whoever asks.
        let evil = Hostile::start(|req, port| {
            if req.path().starts_with("/token") {
                Answer::evil_token()
            } else {
                Answer::bearer_challenge(port)
            }
        });
        let front = Proxy::start(registry.port);
        front.add(
            &format!("GET /v2/repo/blobs/{}", layer.digest),
            Fault::Redirect(format!("http://127.0.0.1:{}", evil.port)),
            100,
        );
        let logins = logins(&store, &front);
        for login in logins.iter().filter(|l| auth == "token" || l.what == "Basic") {
            let case = format!("{auth} registry, {} login", login.what);
            let pull = Store::new();
            let reference = format!("{}/repo:1", front.host());
            let mut args: Vec<&str> = login.args.iter().map(String::as_str).collect();
            args.extend(["--retries", "1", &reference]);
            let out = run_with_timeout(pull.command("img-pull").args(&args), "", Duration::from_secs(120));

            assert!(
                evil.seen().iter().any(|s| s.path().contains(&layer.digest.to_string())),
                "{case}: the redirect was not followed: {}",
                stderr(&out)
            );
            assert_nothing_leaked(&evil, &login.secrets, &case);
            assert!(
                !evil.seen().iter().any(|s| s.path().starts_with("/token")),
                "{case}: the other host's token realm was used: {:?}",
                evil.seen().iter().map(|s| s.line().to_string()).collect::<Vec<_>>()
            );
            let evil_token_used = front.heads().iter().flatten().any(|h| h.contains("evil-token"));
            assert!(!evil_token_used, "{case}: a token from another host was sent to the registry");
            assert!(
                front
                    .heads()
                    .iter()
                    .any(|h| h[1..].iter().any(|l| l.to_ascii_lowercase().starts_with("authorization:"))),
                "{case}: the registry itself never got credentials (the test proves nothing)"
            );
            assert_one_line_naming(&out, "img-pull", &evil.host(), &case);
            assert_nothing_half_made(&pull.layout(), &[&layer.digest], &case);
        }
    }
}

#[test]
fn a_redirect_chain_that_leaves_the_registry_gets_no_credentials_back() {
    let store = Store::new();
    let image = image("chain");
    let layer = image.layers[0].descriptor.clone();
    let registry = trusted("basic");
    let src = source_layout(&store, &image);
    let to = format!("{}/repo:1", registry.host());
    assert_success(
        &store.run("img-push", &["--layout", &src, "--creds", "u:p", "--to", &to, "img:1"], ""),
        "push",
    );
    let front = Proxy::start(registry.port);
    // The other host sends us back to the registry, for a request it chose.
    let back = format!("http://127.0.0.1:{}/v2/repo/blobs/{}?chosen=elsewhere", front.port, layer.digest);
    let evil = Hostile::start(move |_, _| Answer::new(302, "").header("Location", back.clone()));
    front.add(
        &format!("GET /v2/repo/blobs/{}", layer.digest),
        Fault::Redirect(format!("http://127.0.0.1:{}", evil.port)),
        1,
    );
    let reference = format!("{}/repo:1", front.host());
    let out = run_with_timeout(
        store.command("img-pull").args(["--creds", "u:p", "--retries", "1", &reference]),
        "",
        Duration::from_secs(120),
    );
    let back_at_registry: Vec<Vec<String>> =
        front.heads().into_iter().filter(|h| h[0].contains("chosen=elsewhere")).collect();
    assert_eq!(back_at_registry.len(), 1, "the chain was not followed back: {}", stderr(&out));
    let with_auth =
        back_at_registry[0][1..].iter().any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
    assert!(!with_auth, "credentials were sent on a request another host chose: {:?}", back_at_registry[0]);
    assert_nothing_leaked(&evil, &["dTpw".into()], "chain");
    assert_one_line_naming(&out, "img-pull", &evil.host(), "chain");
    assert_nothing_half_made(&store.layout(), &[&layer.digest], "chain");
}

#[test]
fn an_upload_location_on_another_port_gets_no_credentials() {
    for auth in ["basic", "token"] {
        let store = Store::new();
        let image = image(auth);
        let registry = trusted(auth);
        let evil = Hostile::start(|req, port| {
            if req.path().starts_with("/token") {
                Answer::evil_token()
            } else {
                Answer::bearer_challenge(port)
            }
        });
        let front = Proxy::start(registry.port);
        // The registry starts every upload, then names a session on the other host.
        front.add(
            "POST /v2/up/blobs/uploads/",
            Fault::Status(
                202,
                vec![
                    (
                        "Location".into(),
                        format!("http://127.0.0.1:{}/v2/up/blobs/uploads/stolen?_state=x", evil.port),
                    ),
                    ("Docker-Upload-UUID".into(), "stolen".into()),
                ],
            ),
            100,
        );
        let src = source_layout(&store, &image);
        let logins = logins(&store, &front);
        for login in logins.iter().filter(|l| auth == "token" || l.what == "Basic") {
            let case = format!("{auth} registry, {} login", login.what);
            let mut args: Vec<&str> = login.args.iter().map(String::as_str).collect();
            let to = format!("{}/up:1", front.host());
            args.extend(["--retries", "1", "--layout", &src, "--to", &to, "img:1"]);
            let out = run_with_timeout(store.command("img-push").args(&args), "", Duration::from_secs(120));

            assert!(
                evil.seen().iter().any(|s| s.path().starts_with("/v2/up/blobs/uploads/stolen")),
                "{case}: the upload location was not used: {}",
                stderr(&out)
            );
            assert_nothing_leaked(&evil, &login.secrets, &case);
            assert!(
                !evil.seen().iter().any(|s| s.path().starts_with("/token")),
                "{case}: its realm was used"
            );
            let evil_token_used = front.heads().iter().flatten().any(|h| h.contains("evil-token"));
            assert!(!evil_token_used, "{case}: a token from another host was sent to the registry");
            assert_one_line_naming(&out, "img-push", &evil.host(), &case);
            // Nothing was pushed: the tag is not there.
            let check = Store::new();
            let pull = check.run("img-pull", &["--creds", "u:p", &format!("{}/up:1", registry.host())], "");
            assert_eq!(pull.status.code(), Some(1), "{case}: the image got pushed after all");
        }
    }
}

/// A registry (on the hostile server) that serves `image` as `repo:1`; `layer` decides how each
/// layer is answered (the config is answered at once).
fn serving(image: BuiltImage, layer: impl Fn(&[u8]) -> Answer + Send + Sync + 'static) -> Hostile {
    Hostile::start(move |req, _| {
        let path = req.path();
        if path == "/v2/" {
            return v2_ok();
        }
        if path == "/v2/repo/manifests/1"
            || path == format!("/v2/repo/manifests/{}", image.manifest.descriptor.digest)
        {
            return Answer::new(200, image.manifest.bytes.clone())
                .header("Content-Type", image.manifest.descriptor.media_type.clone())
                .header("Docker-Content-Digest", image.manifest.descriptor.digest.to_string());
        }
        for b in &image.layers {
            if path == format!("/v2/repo/blobs/{}", b.descriptor.digest) {
                return layer(&b.bytes);
            }
        }
        if path == format!("/v2/repo/blobs/{}", image.config.descriptor.digest) {
            return Answer::new(200, image.config.bytes.clone());
        }
        Answer::new(404, r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#)
    })
}

#[test]
fn a_manifest_sent_one_byte_a_second_times_out() {
    let image = image("slow");
    let manifest = image.manifest.clone();
    let slow = Hostile::start(move |req, _| {
        if req.path() == "/v2/" {
            return v2_ok();
        }
        let mut answer = Answer::new(200, manifest.bytes.clone())
            .header("Content-Type", manifest.descriptor.media_type.clone());
        answer.drip = Some((1, Duration::from_secs(1)));
        answer
    });
    let store = Store::new();
    let reference = format!("{}/repo:1", slow.host());
    let started = Instant::now();
    let out = run_with_timeout(
        store.command("img-pull").args(["--timeout", "3s", "--retries", "1", &reference]),
        "",
        Duration::from_secs(90),
    );
    let took = started.elapsed();
    let err = assert_one_line_naming(&out, "img-pull", &reference, "slow manifest");
    assert!(err.contains("--timeout"), "the error does not say which limit: {err}");
    assert!(took < Duration::from_secs(30), "a 3s limit took {took:?}");
    assert!(slow.seen().iter().any(|s| s.path() == "/v2/repo/manifests/1"), "the manifest was not asked for");
    assert!(check::blob_names(&store.layout()).is_empty(), "{:?}", check::blob_names(&store.layout()));
    if store.layout().join("index.json").exists() {
        assert!(check::refs(&store.layout()).is_empty());
    }
}

#[test]
fn a_stalled_blob_ends_at_the_read_timeout_but_a_slow_one_is_not_cut_off() {
    // A layer that stops after 10 bytes: the idle limit ends the pull.
    let image1 = image("stall");
    let layer1 = image1.layers[0].descriptor.clone();
    let stalled = serving(image1, |bytes| {
        let mut a = Answer::new(200, bytes.to_vec());
        a.stall_after = Some(10);
        a
    });
    let store = Store::new();
    let reference = format!("{}/repo:1", stalled.host());
    let started = Instant::now();
    let out = run_with_timeout(
        store.command("img-pull").args(["--read-timeout", "2s", "--retries", "0", &reference]),
        "",
        Duration::from_secs(90),
    );
    let took = started.elapsed();
    let err = assert_one_line_naming(&out, "img-pull", &reference, "stalled blob");
    assert!(err.contains("--read-timeout"), "the error does not say which limit: {err}");
    assert!(took < Duration::from_secs(25), "a 2s idle limit took {took:?}");
    assert_nothing_half_made(&store.layout(), &[&layer1.digest], "stalled blob");

    // Layers have no overall limit: one that takes longer than --timeout but keeps coming
    // arrives whole.
    let image2 = image("slow but steady");
    let stalled_ok = serving(image2.clone(), |bytes| {
        let mut a = Answer::new(200, bytes.to_vec());
        a.drip = Some((bytes.len().div_ceil(4), Duration::from_millis(1000)));
        a
    });
    let store = Store::new();
    let reference = format!("{}/repo:1", stalled_ok.host());
    let out = run_with_timeout(
        store.command("img-pull").args(["--timeout", "2s", "--jobs", "1", &reference]),
        "",
        Duration::from_secs(90),
    );
    assert_success(&out, "img-pull of a slow blob");
    let layout = Layout::open(store.layout()).unwrap();
    assert_eq!(layout.read_blob(&image2.layers[0].descriptor.digest).unwrap(), image2.layers[0].bytes);
    check::assert_complete(&store.layout());
}

#[test]
fn documents_too_big_to_be_what_they_claim_are_refused_in_one_line() {
    // A manifest whose config claims to be 1 GiB: refused before a byte of it is asked for.
    let image = image("big config");
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    manifest["config"]["size"] = serde_json::json!(1u64 << 30);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let media_type = image.manifest.descriptor.media_type.clone();
    let big_config = Hostile::start(move |req, _| match req.path() {
        "/v2/" => v2_ok(),
        "/v2/repo/manifests/1" => Answer::new(200, bytes.clone()).header("Content-Type", media_type.clone()),
        _ => Answer::new(404, ""),
    });
    let store = Store::new();
    let reference = format!("{}/repo:1", big_config.host());
    let out = run_with_timeout(store.command("img-pull").arg(&reference), "", Duration::from_secs(60));
    let err = assert_one_line_naming(&out, "img-pull", &reference, "big config");
    assert!(err.contains("config") && err.contains("MiB"), "{err}");
    let asked: Vec<String> = big_config.seen().iter().map(|s| s.line().to_string()).collect();
    assert!(
        !asked.iter().any(|l| l.contains(&image.config.descriptor.digest.to_string())),
        "the config was downloaded: {asked:?}"
    );
    assert!(check::blob_names(&store.layout()).is_empty(), "something was stored");

    // A manifest bigger than 4 MiB, and a token bigger than 1 MiB: one line each.
    let huge = Hostile::start(|req, port| match req.path() {
        "/v2/" => v2_ok(),
        "/v2/repo/manifests/1" => Answer::new(200, vec![b' '; 5 << 20])
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        "/v2/tokened/manifests/1" => Answer::bearer_challenge(port),
        p if p.starts_with("/token") => Answer::new(200, format!(r#"{{"token":"{}"}}"#, "x".repeat(2 << 20))),
        _ => Answer::new(404, ""),
    });
    for (repo, words) in [("repo", "manifest"), ("tokened", "token")] {
        let store = Store::new();
        let reference = format!("{}/{repo}:1", huge.host());
        let out = run_with_timeout(store.command("img-pull").arg(&reference), "", Duration::from_secs(60));
        let err = assert_one_line_naming(&out, "img-pull", &reference, repo);
        assert!(err.contains(words) && err.contains("MiB"), "{repo}: {err}");
        assert!(check::blob_names(&store.layout()).is_empty(), "{repo}: a blob was stored");
    }
}
