//! img-inspect end to end, against a real `docker-registry` and skopeo: the same digest and the
//! same exact bytes (manifest, index, config) as `skopeo inspect`, remotely and for the local
//! copy img-pull made; platforms of an index; tags page by page; records on stdin; history
//! matched to the layers of an image img-build made; wasted bytes; and errors, including a
//! registry whose answers are too large.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use img::layout::Layout;
use img::test_image::{BuiltImage, BuiltIndex, Entry, Layer, TestImage};
use img_e2e::registry::{Fault, Proxy, Registry};
use img_e2e::{Store, assert_success, json_lines, require, stderr};
use serde_json::{Value, json};

fn image(seed: &str) -> TestImage {
    TestImage::new()
        .layer(Layer::new([Entry::dir("etc"), Entry::file("etc/seed", seed)]))
        .layer(Layer::new([Entry::file(&format!("data/{seed}"), seed.repeat(1000))]))
        .run_config("Env", json!(["PATH=/bin", format!("SEED={seed}")]))
        .run_config("Cmd", json!(["/bin/sh"]))
        .run_config("Labels", json!({"org.example.seed": seed}))
}

/// Writes an image into a fresh layout under `name` and returns the layout's path.
fn layout_with(store: &Store, dir: &str, name: &str, built: &BuiltImage) -> PathBuf {
    let path = store.path().join(dir);
    built.write_to(&Layout::open_or_create(&path).unwrap(), Some(name)).unwrap();
    path
}

fn push(store: &Store, layout: &Path, name: &str, to: &str) {
    let out = store.run("img-push", &["--layout", layout.to_str().unwrap(), "--to", to, name], "");
    assert_success(&out, "img-push");
}

fn inspect(store: &Store, args: &[&str]) -> Vec<Value> {
    store.records("img-inspect", args, "")
}

/// img-inspect's stdout as bytes, which must succeed.
fn inspect_bytes(store: &Store, args: &[&str]) -> Vec<u8> {
    let out = store.run("img-inspect", args, "");
    assert_success(&out, "img-inspect");
    out.stdout
}

/// skopeo's stdout as bytes (`inspect --raw` output is compared byte for byte).
fn skopeo(args: &[&str]) -> Vec<u8> {
    require("skopeo");
    let out = Command::new("skopeo").args(args).output().expect("running skopeo");
    assert_success(&out, &format!("skopeo {}", args.join(" ")));
    out.stdout
}

fn one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "should fail with 1: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("img-inspect: "), "{err}");
    assert!(err.contains(needle), "{err:?} does not say {needle:?}");
}

#[test]
fn remote_and_local_match_skopeo_byte_for_byte() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let built = image("a").build();
    let src = layout_with(&store, "src", "app:1", &built);
    let dest = format!("{}/team/app:1", registry.host());
    push(&store, &src, "app:1", &dest);
    let docker = format!("docker://{dest}");

    let remote = inspect(&store, &["--remote", &dest]);
    assert_eq!(remote.len(), 1);
    let r = &remote[0];
    let skopeo_view: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &docker])).unwrap();
    assert_eq!(r["digest"], skopeo_view["Digest"]);
    assert_eq!(r["digest"], built.manifest.descriptor.digest.to_string());
    assert_eq!(r["ref"], dest);
    assert_eq!(r["platform"], img::platform::Platform::host().to_string());
    assert_eq!(r["architecture"], skopeo_view["Architecture"]);
    assert_eq!(r["config"]["Env"], skopeo_view["Env"]);
    assert_eq!(r["config"]["Labels"], skopeo_view["Labels"]);
    assert_eq!(r["config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(r["created"], "2024-01-01T00:00:00Z");
    let layers: Vec<&Value> = r["layers"].as_array().unwrap().iter().collect();
    let skopeo_layers = skopeo_view["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (l, (blob, s)) in layers.iter().zip(built.layers.iter().zip(skopeo_layers)) {
        assert_eq!(l["digest"], *s);
        assert_eq!(l["size"], blob.descriptor.size);
        assert_eq!(l["mediaType"], blob.descriptor.media_type);
        assert_eq!(l["created_by"], "img test_image");
    }
    assert!(r.get("layout").is_none(), "a registry's image has no layout");
    let line = inspect_bytes(&store, &["--remote", &dest]);
    assert!(line.starts_with(br#"{"ref":"#), "the usual record fields come first");
    assert!(!store.layout().exists(), "--remote stores nothing");

    // --raw and --config: exactly what the registry holds, as skopeo sees it.
    let raw = inspect_bytes(&store, &["--remote", "--raw", &dest]);
    assert_eq!(raw, skopeo(&["inspect", "--tls-verify=false", "--raw", &docker]));
    assert_eq!(raw, built.manifest.bytes);
    let config = inspect_bytes(&store, &["--remote", "--config", &dest]);
    assert_eq!(config, skopeo(&["inspect", "--tls-verify=false", "--config", "--raw", &docker]));
    assert_eq!(config, built.config.bytes);

    // The local copy after img-pull: the same record (plus its layout) and the layout's bytes.
    let pulled = store.records("img-pull", &[&dest], "");
    let local = inspect(&store, &[&dest]);
    assert_eq!(local[0]["digest"], pulled[0]["digest"]);
    assert_eq!(local[0]["layout"], store.layout().to_str().unwrap());
    let mut without_layout = local[0].clone();
    without_layout.as_object_mut().unwrap().remove("layout");
    assert_eq!(&without_layout, r, "local and remote records agree");
    let layout = Layout::open(store.layout()).unwrap();
    let local_raw = inspect_bytes(&store, &["--raw", &dest]);
    assert_eq!(local_raw, layout.read_blob(&built.manifest.descriptor.digest).unwrap());
    assert_eq!(local_raw, raw);
    let local_config = inspect_bytes(&store, &["--config", &dest]);
    assert_eq!(local_config, layout.read_blob(&built.config.descriptor.digest).unwrap());

    // By digest, remotely and locally (the digest alone finds the layout's entry).
    let by_digest = format!("{}/team/app@{}", registry.host(), built.manifest.descriptor.digest);
    assert_eq!(inspect(&store, &["--remote", &by_digest])[0]["digest"], r["digest"]);
    let digest = built.manifest.descriptor.digest.to_string();
    assert_eq!(inspect(&store, &[&digest])[0]["digest"], r["digest"]);
}

#[test]
fn an_index_lists_its_platforms_and_shows_the_one_chosen() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let amd = image("amd").platform("linux/amd64").build();
    let arm = image("arm").platform("linux/arm64/v8").build();
    let multi = BuiltIndex::new(vec![amd.clone(), arm.clone()], false);
    let src = store.path().join("src");
    multi.write_to(&Layout::open_or_create(&src).unwrap(), Some("multi:1")).unwrap();
    let dest = format!("{}/multi:1", registry.host());
    push(&store, &src, "multi:1", &dest);
    let docker = format!("docker://{dest}");

    let r = &inspect(&store, &["--remote", "--platform", "linux/arm64", &dest])[0];
    assert_eq!(r["digest"], multi.index.descriptor.digest.to_string());
    assert_eq!(r["mediaType"], img::media_type::OCI_INDEX);
    let platforms: Vec<(&str, &str)> = r["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["platform"].as_str().unwrap(), p["digest"].as_str().unwrap()))
        .collect();
    let amd_digest = amd.manifest.descriptor.digest.to_string();
    let arm_digest = arm.manifest.descriptor.digest.to_string();
    assert_eq!(platforms, [("linux/amd64", amd_digest.as_str()), ("linux/arm64/v8", arm_digest.as_str())]);
    assert_eq!(r["platform"], "linux/arm64/v8");
    assert_eq!(r["manifest"]["digest"], arm_digest);
    assert_eq!(r["config"]["Labels"]["org.example.seed"], "arm");

    let skopeo_view: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &docker])).unwrap();
    assert_eq!(r["digest"], skopeo_view["Digest"], "the digest is the index's, as skopeo says");
    let raw = inspect_bytes(&store, &["--remote", "--raw", &dest]);
    assert_eq!(raw, skopeo(&["inspect", "--tls-verify=false", "--raw", &docker]));
    assert_eq!(raw, multi.index.bytes);
    let arm_config = inspect_bytes(&store, &["--remote", "--config", "--platform", "linux/arm64", &dest]);
    assert_eq!(
        arm_config,
        skopeo(&["inspect", "--tls-verify=false", "--override-arch", "arm64", "--config", "--raw", &docker])
    );
    assert_eq!(arm_config, arm.config.bytes);

    // The whole index pulled: the same, from the layout.
    assert_success(&store.run("img-pull", &["--all-platforms", &dest], ""), "img-pull --all-platforms");
    let local = &inspect(&store, &["--platform", "linux/arm64", &dest])[0];
    assert_eq!(local["platforms"], r["platforms"]);
    assert_eq!(local["manifest"], r["manifest"]);
    assert_eq!(inspect_bytes(&store, &["--raw", &dest]), multi.index.bytes);
}

/// An HTTP proxy in front of a real registry that pages its tag lists as distribution 3 does
/// (`?n=`, `last=`, a `Link` header to the next page), which Debian's distribution 2.8 does not.
/// Everything else is relayed as is.
struct Paginator {
    port: u16,
    /// Where its `Link` headers point: `None` for the next page, as they should; else this
    /// URL, verbatim (another host, or the same page again).
    link: Arc<std::sync::Mutex<Option<String>>>,
    pages: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Paginator {
    fn start(upstream: u16) -> Paginator {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let pages = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let link = Arc::new(std::sync::Mutex::new(None));
        let (pages2, stop2, link2) = (pages.clone(), stop.clone(), link.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let (pages, link) = (pages2.clone(), link2.clone());
                        thread::spawn(move || {
                            let link = link.lock().unwrap().clone();
                            let _ = paginate(client, upstream, &pages, link.as_deref());
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Paginator { port, link, pages, stop }
    }
}

impl Drop for Paginator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sends one request upstream with `Connection: close` and returns the whole response.
fn upstream_request(port: u16, head: &[String]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", port))?;
    let mut out = format!("{}\r\n", head[0]);
    for h in &head[1..] {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            out += &format!("{h}\r\n");
        }
    }
    out += "Connection: close\r\n\r\n";
    up.write_all(out.as_bytes())?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    Ok(response)
}

fn paginate(
    client: TcpStream,
    upstream: u16,
    pages: &AtomicUsize,
    link: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    loop {
        let Some(head) = img_e2e::http::read_head(&mut reader)? else { return Ok(()) };
        let path = head[0].split(' ').nth(1).unwrap_or("/").to_string();
        let Some((base, query)) = path.split_once("/tags/list").filter(|_| head[0].starts_with("GET "))
        else {
            to_client.write_all(&upstream_request(upstream, &head)?)?;
            return Ok(()); // the upstream's response said Connection: close
        };
        let params: Vec<(&str, &str)> =
            query.trim_start_matches('?').split('&').filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let mut all_head = head.clone();
        all_head[0] = format!("GET {base}/tags/list HTTP/1.1");
        let response = upstream_request(upstream, &all_head)?;
        let text = String::from_utf8_lossy(&response);
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
        let doc: Value = serde_json::from_str(body).unwrap_or(json!({}));
        let mut tags: Vec<String> = doc["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        tags.sort();
        if let Some(last) = param("last") {
            tags.retain(|t| t.as_str() > last);
        }
        let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
        let more = tags.len() > n;
        tags.truncate(n);
        let body = json!({"name": doc["name"], "tags": tags}).to_string();
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if more {
            let last = tags.last().cloned().unwrap_or_default();
            let next = link.map_or_else(|| format!("{base}/tags/list?last={last}&n={n}"), str::to_string);
            response += &format!("Link: <{next}>; rel=\"next\"\r\n");
        }
        pages.fetch_add(1, Ordering::SeqCst);
        to_client.write_all(format!("{response}\r\n{body}").as_bytes())?;
    }
}

#[test]
fn tags_follow_pagination_to_the_last_page() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let built = image("t").build();
    let src = layout_with(&store, "src", "t:1", &built);
    let names: Vec<String> = (1..=7).map(|i| format!("v{i}")).collect();
    for tag in &names {
        push(&store, &src, "t:1", &format!("{}/tagged:{tag}", registry.host()));
    }
    let tags_of = |records: &[Value]| {
        let mut tags: Vec<String> = records.iter().map(|r| r["tag"].as_str().unwrap().to_string()).collect();
        tags.sort();
        tags
    };

    // Straight from distribution 2.8, which sends every tag at once whatever `n` says.
    let repo = format!("{}/tagged", registry.host());
    let direct = inspect(&store, &["--tags", &repo, "--page-size", "2"]);
    assert_eq!(tags_of(&direct), names);
    assert!(direct.iter().all(|r| r["repository"] == repo.as_str()));
    assert!(direct.iter().all(|r| r["ref"] == format!("{repo}:{}", r["tag"].as_str().unwrap())));

    // Through a registry that pages: pages of two, following `Link`, four pages in all.
    let pager = Paginator::start(registry.port);
    let paged_repo = format!("127.0.0.1:{}/tagged", pager.port);
    let paged = inspect(&store, &["--tags", &paged_repo, "--page-size", "2"]);
    assert_eq!(tags_of(&paged), names);
    assert_eq!(pager.pages.load(Ordering::SeqCst), 4, "7 tags in pages of 2");
    let refs: Vec<&str> = paged.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs[0], format!("{paged_repo}:v1"));

    // A next page on another host is not followed (credentials go to the registry only), and
    // pages that go round in a loop end.
    *pager.link.lock().unwrap() = Some("http://127.0.0.1:1/v2/tagged/tags/list?last=v2&n=2".into());
    let out = store.run("img-inspect", &["--tags", &paged_repo, "--page-size", "2"], "");
    one_line_error(&out, "next page of tags is elsewhere");
    *pager.link.lock().unwrap() = Some("/v2/tagged/tags/list?n=2".into());
    let out = store.run("img-inspect", &["--tags", &paged_repo, "--page-size", "2"], "");
    one_line_error(&out, "go round in a loop");

    // Each record is a reference the other tools take.
    let first = serde_json::to_string(&direct[0]).unwrap();
    let again = store.records("img-inspect", &["--remote"], &format!("{first}\n"));
    assert_eq!(again[0]["digest"], built.manifest.descriptor.digest.to_string());

    let out = store.run("img-inspect", &["--tags", &format!("{}/nothing", registry.host())], "");
    one_line_error(&out, "(404)");
}

#[test]
fn records_on_stdin_from_img_pull() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let src = layout_with(&store, "src", "p:1", &image("piped").build());
    let dest = format!("{}/piped:1", registry.host());
    push(&store, &src, "p:1", &dest);
    let pulled = store.run("img-pull", &[&dest], "");
    assert_success(&pulled, "img-pull");
    // `img-pull R | img-inspect | jq .config.Env`
    let records = store.records("img-inspect", &[], &String::from_utf8(pulled.stdout).unwrap());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["config"]["Env"], json!(["PATH=/bin", "SEED=piped"]));
    assert_eq!(records[0]["layout"], store.layout().to_str().unwrap());
    // A plain reference line works too, and a record's layout is where it is looked for.
    let other = layout_with(&store, "other", "elsewhere:1", &image("else").build());
    let line = json!({"ref": "elsewhere:1", "layout": other}).to_string();
    let records = store.records("img-inspect", &[], &format!("{dest}\n{line}\n"));
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["config"]["Labels"]["org.example.seed"], "else");
    // More than one image on stdin is a usage error for --raw.
    let out = store.run("img-inspect", &["--raw"], &format!("{dest}\n{line}\n"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn history_is_matched_to_the_layers_of_a_built_image() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::busybox(&[]).build().write_to(&layout, Some("localhost/busybox:1")).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:1\n\
         ENV GREETING=hi\n\
         COPY hello.txt /hello.txt\n\
         RUN echo \"$GREETING\" > /made.txt\n\
         CMD [\"cat\", \"/made.txt\"]\n",
    )
    .unwrap();
    let built = store.run("img-build", &["-t", "localhost/hist:1", ctx.path().to_str().unwrap()], "");
    assert_success(&built, "img-build");

    let r = &inspect(&store, &["localhost/hist:1"])[0];
    let config: Value =
        serde_json::from_slice(&inspect_bytes(&store, &["--config", "localhost/hist:1"])).unwrap();
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "base, COPY, RUN: {layers:?}");
    assert_eq!(layers[0]["created_by"], "img test_image");
    assert!(layers[1]["created_by"].as_str().unwrap().contains("COPY hello.txt"), "{:?}", layers[1]);
    assert!(layers[2]["created_by"].as_str().unwrap().contains("RUN "), "{:?}", layers[2]);
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["diff_id"], config["rootfs"]["diff_ids"][i]);
        assert!(l["created"].is_string());
    }
    let history = r["history"].as_array().unwrap();
    let in_config = config["history"].as_array().unwrap();
    assert_eq!(history.len(), in_config.len(), "every history entry is kept");
    for (shown, original) in history.iter().zip(in_config) {
        let mut shown = shown.clone();
        shown.as_object_mut().unwrap().remove("layer");
        assert_eq!(&shown, original, "as the config has it");
    }
    let env = history.iter().find(|h| h["created_by"].as_str().unwrap().contains("ENV GREETING")).unwrap();
    assert_eq!(env["empty_layer"], true);
    assert!(env.get("layer").is_none(), "an empty layer made no layer");
    let cmd = history.iter().find(|h| h["created_by"].as_str().unwrap().contains("CMD")).unwrap();
    assert!(cmd.get("layer").is_none());
    let layer_of = |needle: &str| {
        history.iter().find(|h| h["created_by"].as_str().unwrap().contains(needle)).unwrap()["layer"].clone()
    };
    assert_eq!(layer_of("COPY"), 1);
    assert_eq!(layer_of("RUN"), 2);
    assert!(r["config"]["Env"].as_array().unwrap().contains(&json!("GREETING=hi")));
    assert_eq!(r["config"]["Cmd"], json!(["cat", "/made.txt"]));
}

#[test]
fn wasted_bytes_of_deleted_and_overwritten_files() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let mib = vec![7u8; 1 << 20];
    let built = TestImage::new()
        .layer(Layer::new([
            Entry::dir("var"),
            Entry::file("var/big", &mib),
            Entry::file("config.db", vec![1u8; 300_000]),
            Entry::file("keep", "kept"),
        ]))
        .layer(Layer::new([Entry::whiteout("var/big")]))
        .layer(Layer::new([Entry::file("config.db", "small now")]))
        .build();
    let src = layout_with(&store, "src", "w:1", &built);
    let expected = json!({
        "bytes": (1 << 20) + 300_000,
        "files": [
            {"path": "/var/big", "size": 1 << 20, "addedIn": 0, "removedIn": 1, "how": "deleted"},
            {"path": "/config.db", "size": 300_000, "addedIn": 0, "removedIn": 2, "how": "overwritten"},
        ],
    });
    let local = &inspect(&store, &["--layout", src.to_str().unwrap(), "--wasted", "w:1"])[0];
    assert_eq!(local["wasted"], expected);

    let dest = format!("{}/wasted:1", registry.host());
    push(&store, &src, "w:1", &dest);
    let remote = &inspect(&store, &["--remote", "--wasted", &dest])[0];
    assert_eq!(remote["wasted"], expected);
    assert!(!store.layout().exists(), "--remote --wasted stores nothing");

    // Reading layers from a registry is bounded.
    let out = store.run("img-inspect", &["--remote", "--wasted", "--max-layer-bytes", "1000", &dest], "");
    one_line_error(&out, "--max-layer-bytes");
    // A clean image wastes nothing.
    let src2 = layout_with(&store, "src2", "c:1", &image("clean").build());
    let clean = &inspect(&store, &["--layout", src2.to_str().unwrap(), "--wasted", "c:1"])[0];
    assert_eq!(clean["wasted"], json!({"bytes": 0, "files": []}));
}

#[test]
fn bad_input_fails_in_one_line() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let src = layout_with(&store, "src", "ok:1", &image("ok").build());
    let src_arg = src.to_str().unwrap();
    let dest = format!("{}/bad:1", registry.host());
    push(&store, &src, "ok:1", &dest);

    one_line_error(&store.run("img-inspect", &["--layout", src_arg, "nope:1"], ""), "nope:1: no such image");
    let missing = format!("{}/bad:nope", registry.host());
    let out = store.run("img-inspect", &["--remote", &missing], "");
    one_line_error(&out, &format!("img-inspect: {missing}: manifest unknown (404)"));

    let out = store.run("img-inspect", &["--remote", "--platform", "linux/s390x", &dest], "");
    one_line_error(&out, "not linux/s390x");
    let out = store.run("img-inspect", &["--layout", src_arg, "--platform", "linux/s390x", "ok:1"], "");
    one_line_error(&out, "not linux/s390x");

    // One bad image among good ones: the good ones are shown, and the exit status is 1.
    let out = store.run("img-inspect", &["--layout", src_arg, "nope:1", "ok:1"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out.stdout).len(), 1);

    // Usage errors: 2.
    for args in [
        &["--raw", "a:1", "b:1"][..],
        &["--config", "a:1", "b:1"],
        &["--raw", "--config", "a:1"],
        &["--tags", "repo:tag"],
        &["--tags", "repo", "a:1"],
        &["--platform", "linux", "a:1"],
    ] {
        let out = store.run("img-inspect", args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_hostile_registry_is_refused() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let built = image("h").build();
    let src = layout_with(&store, "src", "h:1", &built);
    push(&store, &src, "h:1", &format!("{}/h:1", registry.host()));
    let proxy = Proxy::start(registry.port);
    let name = format!("{}/h:1", proxy.host());

    // A manifest larger than any real one.
    let mut huge = b"{\"schemaVersion\":2,\"x\":\"".to_vec();
    huge.resize(5 << 20, b'a');
    proxy.add("/manifests/", Fault::Respond(img::media_type::OCI_MANIFEST.into(), huge.clone()), 1);
    one_line_error(&store.run("img-inspect", &["--remote", &name], ""), "larger than 4 MiB");

    // A page of tags larger than we read.
    proxy.add("/tags/list", Fault::Respond("application/json".into(), huge), 1);
    one_line_error(
        &store.run("img-inspect", &["--tags", &format!("{}/h", proxy.host())], ""),
        "larger than 4 MiB",
    );

    // A config that is not what the manifest says.
    let config = built.config.descriptor.digest.to_string();
    proxy.add(&config, Fault::Corrupt(5), 1);
    one_line_error(&store.run("img-inspect", &["--remote", "--config", &name], ""), "digest mismatch");

    // A manifest asked for by digest that is not that digest.
    let pinned = format!("{}/h@{}", proxy.host(), built.manifest.descriptor.digest);
    proxy.add("/manifests/sha256:", Fault::Corrupt(3), 1);
    one_line_error(&store.run("img-inspect", &["--remote", "--raw", &pinned], ""), "digest mismatch");
}

#[test]
fn raw_needs_no_platform_and_docker_schema2_matches_skopeo() {
    let registry = Registry::anonymous();
    let store = Store::new();
    // An index without this machine's platform: --raw shows it, the record needs --platform.
    let foreign = BuiltIndex::new(
        vec![image("s").platform("linux/s390x").build(), image("r").platform("linux/riscv64").build()],
        false,
    );
    let src = store.path().join("src");
    foreign.write_to(&Layout::open_or_create(&src).unwrap(), Some("foreign:1")).unwrap();
    let src_arg = src.to_str().unwrap();
    let dest = format!("{}/foreign:1", registry.host());
    push(&store, &src, "foreign:1", &dest);
    assert_eq!(inspect_bytes(&store, &["--remote", "--raw", &dest]), foreign.index.bytes);
    assert_eq!(inspect_bytes(&store, &["--layout", src_arg, "--raw", "foreign:1"]), foreign.index.bytes);
    let out = store.run("img-inspect", &["--remote", &dest], "");
    one_line_error(&out, "linux/s390x, linux/riscv64");
    let r = &inspect(&store, &["--remote", "--platform", "linux/riscv64", &dest])[0];
    assert_eq!(r["platform"], "linux/riscv64");
    assert_eq!(r["platforms"].as_array().unwrap().len(), 2);

    // Docker schema2 media types, as docker pushes them.
    let built = image("d").docker_media_types().build();
    let src = layout_with(&store, "docker", "d:1", &built);
    let dest = format!("{}/docker:1", registry.host());
    push(&store, &src, "d:1", &dest);
    let docker = format!("docker://{dest}");
    let r = &inspect(&store, &["--remote", &dest])[0];
    assert_eq!(r["mediaType"], img::media_type::DOCKER_MANIFEST);
    assert_eq!(r["configDescriptor"]["mediaType"], img::media_type::DOCKER_CONFIG);
    let skopeo_view: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &docker])).unwrap();
    assert_eq!(r["digest"], skopeo_view["Digest"]);
    assert_eq!(
        inspect_bytes(&store, &["--remote", "--raw", &dest]),
        skopeo(&["inspect", "--tls-verify=false", "--raw", &docker])
    );
    assert_eq!(
        inspect_bytes(&store, &["--remote", "--config", &dest]),
        skopeo(&["inspect", "--tls-verify=false", "--config", "--raw", &docker])
    );
}
