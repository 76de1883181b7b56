//! img-pull and img-push through a fault-injecting proxy in front of a real `docker-registry`:
//! server errors, rate limits, connections reset mid-blob, corrupted bytes, an interrupted pull
//! resumed with a Range request, and a chunked upload that recovers from a failed chunk.

use std::process::Stdio;
use std::time::{Duration, Instant};

use img::layout::Layout;
use img::test_image::{BuiltImage, Compression, Entry, Layer, TestImage};
use img_e2e::registry::{Auth, Fault, Proxy, Registry};
use img_e2e::{Store, assert_success, stderr};

/// Bytes that do not compress, so a layer is as big as asked.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn big_image(seed: u64, len: usize) -> BuiltImage {
    TestImage::new()
        .compression(Compression::None)
        .layer(Layer::new([Entry::file("small", format!("seed {seed}"))]))
        .layer(Layer::new([Entry::file("big", noise(len, seed))]))
        .build()
}

/// A registry with `image` pushed as `repo:1`, and a proxy in front of it.
fn setup(store: &Store, image: &BuiltImage) -> (Registry, Proxy, String) {
    let registry = Registry::anonymous();
    let src = store.path().join("src");
    image.write_to(&Layout::open_or_create(&src).unwrap(), Some("img:1")).unwrap();
    let out = store.run(
        "img-push",
        &["--layout", src.to_str().unwrap(), "--to", &format!("{}/repo:1", registry.host()), "img:1"],
        "",
    );
    assert_success(&out, "img-push");
    let proxy = Proxy::start(registry.port);
    let reference = format!("{}/repo:1", proxy.host());
    (registry, proxy, reference)
}

fn pulled_digest(store: &Store, args: &[&str]) -> String {
    let records = store.records("img-pull", args, "");
    records[0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let store = Store::new();
    let image = big_image(1, 100_000);
    let (_registry, proxy, reference) = setup(&store, &image);
    let layer = image.layers[1].descriptor.digest.to_string();
    proxy.add("/manifests/", Fault::Status(500, vec![]), 1);
    proxy.add(&layer, Fault::Status(503, vec![]), 1);
    proxy.add(
        &format!("GET /v2/repo/blobs/{}", image.config.descriptor.digest),
        Fault::Status(429, vec![("Retry-After".into(), "1".into())]),
        1,
    );
    assert_eq!(pulled_digest(&store, &[&reference]), image.manifest.descriptor.digest.to_string());
    let requests = proxy.requests();
    let count = |needle: &str| requests.iter().filter(|r| r.contains(needle)).count();
    assert_eq!(count(&layer), 2, "the layer was asked for again after the 503: {requests:?}");
    assert_eq!(count(&format!("blobs/{}", image.config.descriptor.digest)), 2, "{requests:?}");

    // Errors that persist end the pull with a clear line and nothing stored.
    let other = Store::new();
    proxy.add("/manifests/", Fault::Status(503, vec![]), 100);
    let out = other.run("img-pull", &["--retries", "2", &reference], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
}

#[test]
fn connection_reset_mid_blob_continues_with_a_range_request() {
    let store = Store::new();
    let size = 3_000_000;
    let image = big_image(2, size);
    let (_registry, proxy, reference) = setup(&store, &image);
    let layer = &image.layers[1].descriptor;
    proxy.add(&format!("GET /v2/repo/blobs/{}", layer.digest), Fault::ResetAfter(1_000_000), 1);
    proxy.reset_counts();
    assert_eq!(pulled_digest(&store, &[&reference]), image.manifest.descriptor.digest.to_string());
    let layout = Layout::open(store.layout()).unwrap();
    assert_eq!(layout.read_blob(&layer.digest).unwrap(), image.layers[1].bytes);
    // The second request continued where the first stopped instead of starting over.
    let transferred = proxy.blob_bytes();
    assert!(transferred < layer.size + 500_000, "{transferred} bytes moved for a {} byte layer", layer.size);

    // Pulling it again downloads nothing: one HEAD of the tag, no GET of anything.
    proxy.reset_counts();
    assert_eq!(pulled_digest(&store, &[&reference]), image.manifest.descriptor.digest.to_string());
    let requests = proxy.requests();
    assert!(requests.iter().any(|r| r.starts_with("HEAD /v2/repo/manifests/1")), "{requests:?}");
    assert!(!requests.iter().any(|r| r.starts_with("GET /v2/repo/")), "{requests:?}");
}

#[test]
fn corrupted_bytes_are_an_error_and_nothing_is_committed() {
    let store = Store::new();
    let image = big_image(3, 200_000);
    let (_registry, proxy, reference) = setup(&store, &image);
    let layer = &image.layers[1].descriptor;
    proxy.add(&format!("GET /v2/repo/blobs/{}", layer.digest), Fault::Corrupt(1234), 100);
    let out = store.run("img-pull", &[&reference], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("digest mismatch") && err.contains(&layer.digest.to_string()), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let layout = Layout::open(store.layout()).unwrap();
    assert!(!layout.has_blob(&layer.digest), "a corrupt blob was stored");
    assert!(layout.read_index().unwrap().entries().is_empty(), "a ref was written");
    let partial = store.layout().join(".img/partial");
    let leftovers = std::fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "corrupt bytes were kept for a resume");
}

#[test]
fn a_killed_pull_resumes_with_fewer_bytes() {
    let store = Store::new();
    let size = 8_000_000;
    let image = big_image(4, size);
    let (_registry, proxy, reference) = setup(&store, &image);
    let layer = &image.layers[1].descriptor;
    proxy.throttle(15); // ~4 MB/s: time to kill it half-way
    proxy.reset_counts();
    let mut child = store
        .command("img-pull")
        .args(["--jobs", "1", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.blob_bytes() < layer.size / 2 {
        assert!(Instant::now() < deadline, "the pull did not progress");
        assert!(child.try_wait().unwrap().is_none(), "the pull ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first = proxy.blob_bytes();
    let partial = store.layout().join(format!(".img/partial/sha256-{}", layer.digest.hex()));
    let kept = std::fs::metadata(&partial).expect("the partial blob is kept").len();
    assert!(kept > 0 && kept < layer.size, "{kept}");
    assert!(Layout::open(store.layout()).unwrap().read_index().unwrap().entries().is_empty());

    proxy.throttle(0);
    proxy.reset_counts();
    assert_eq!(pulled_digest(&store, &[&reference]), image.manifest.descriptor.digest.to_string());
    let second = proxy.blob_bytes();
    assert!(
        second < layer.size - kept / 2,
        "resumed pull moved {second} bytes (first run {first}, kept {kept})"
    );
    assert!(proxy.requests().iter().any(|r| r.contains(&layer.digest.to_string())));
    let layout = Layout::open(store.layout()).unwrap();
    assert_eq!(layout.read_blob(&layer.digest).unwrap(), image.layers[1].bytes);
    assert!(!partial.exists());
}

#[test]
fn a_server_that_ignores_range_makes_the_pull_start_over_cleanly() {
    let store = Store::new();
    let image = big_image(5, 500_000);
    let (_registry, proxy, reference) = setup(&store, &image);
    let layer = &image.layers[1].descriptor;
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let partial = layout.private_dir("partial").unwrap().join(format!("sha256-{}", layer.digest.hex()));

    // A good partial file, but the server answers the Range request with the whole blob.
    std::fs::write(&partial, &image.layers[1].bytes[..100_000]).unwrap();
    proxy.add(&format!("GET /v2/repo/blobs/{}", layer.digest), Fault::IgnoreRange, 1);
    proxy.reset_counts();
    assert_eq!(pulled_digest(&store, &[&reference]), image.manifest.descriptor.digest.to_string());
    assert_eq!(layout.read_blob(&layer.digest).unwrap(), image.layers[1].bytes);
    assert!(proxy.blob_bytes() >= layer.size, "the whole blob came again");

    // A partial file with wrong bytes: the digest check catches it, nothing is stored, and
    // the next run starts from scratch and succeeds.
    let other = Store::new();
    let layout = Layout::open_or_create(other.layout()).unwrap();
    let partial = layout.private_dir("partial").unwrap().join(format!("sha256-{}", layer.digest.hex()));
    std::fs::write(&partial, vec![0u8; 1000]).unwrap();
    let out = other.run("img-pull", &[&reference], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));
    assert!(!layout.has_blob(&layer.digest));
    assert_eq!(pulled_digest(&other, &[&reference]), image.manifest.descriptor.digest.to_string());
}

#[test]
fn chunked_upload_recovers_from_a_failed_chunk() {
    let store = Store::new();
    let registry = Registry::anonymous();
    let proxy = Proxy::start(registry.port);
    let image = big_image(6, 1_000_000);
    let src = store.path().join("src");
    image.write_to(&Layout::open_or_create(&src).unwrap(), Some("img:1")).unwrap();
    // The second PATCH fails with a 500; the upload continues from the registry's offset.
    proxy.add_after("PATCH /v2/chunked/blobs/uploads/", 1, Fault::Status(500, vec![]), 1);
    let dest = format!("{}/chunked:1", proxy.host());
    let out = store.run(
        "img-push",
        &["--layout", src.to_str().unwrap(), "--chunk-size", "200000", "--jobs", "1", "--to", &dest, "img:1"],
        "",
    );
    assert_success(&out, "img-push with chunks");
    let patches = proxy.requests().iter().filter(|r| r.starts_with("PATCH ")).count();
    assert!(patches >= 6, "{patches} PATCH requests for 5 chunks and one failure");
    // What the registry stored is exactly the image.
    let pulled = store.records("img-pull", &[&format!("{}/chunked:1", registry.host())], "");
    assert_eq!(pulled[0]["digest"], image.manifest.descriptor.digest.to_string());
    let layout = Layout::open(store.layout()).unwrap();
    assert_eq!(layout.read_blob(&image.layers[1].descriptor.digest).unwrap(), image.layers[1].bytes);
}

#[test]
fn blob_redirects_are_followed_without_our_credentials() {
    let store = Store::new();
    let image = big_image(7, 100_000);
    let layer = &image.layers[1].descriptor;
    // The registry we log in to, and a "CDN" (another registry holding the same blobs, on
    // another host name) that its blob downloads redirect to.
    let private = Registry::start(Auth::Basic { user: "u".into(), password: "p".into() }, false);
    let cdn = Registry::anonymous();
    let src = store.path().join("src");
    image.write_to(&Layout::open_or_create(&src).unwrap(), Some("img:1")).unwrap();
    for (host, creds) in [(private.host(), "u:p"), (cdn.host(), "x:y")] {
        let out = store.run(
            "img-push",
            &[
                "--layout",
                src.to_str().unwrap(),
                "--creds",
                creds,
                "--to",
                &format!("{host}/repo:1"),
                "img:1",
            ],
            "",
        );
        assert_success(&out, "img-push");
    }
    let front = Proxy::start(private.port);
    let cdn_proxy = Proxy::start(cdn.port);
    front.add(
        &format!("GET /v2/repo/blobs/{}", layer.digest),
        Fault::Redirect(format!("http://localhost:{}", cdn_proxy.port)),
        1,
    );
    let records = store.records("img-pull", &["--creds", "u:p", &format!("{}/repo:1", front.host())], "");
    assert_eq!(records[0]["digest"], image.manifest.descriptor.digest.to_string());
    let has_auth =
        |head: &Vec<String>| head.iter().any(|h| h.to_ascii_lowercase().starts_with("authorization:"));
    let at_cdn: Vec<_> =
        cdn_proxy.heads().into_iter().filter(|h| h[0].contains(&layer.digest.to_string())).collect();
    assert_eq!(at_cdn.len(), 1, "the redirect was followed");
    assert!(!has_auth(&at_cdn[0]), "credentials were sent to another host: {:?}", at_cdn[0]);
    let manifest_gets: Vec<_> = front.heads().into_iter().filter(|h| h[0].contains("/manifests/")).collect();
    assert!(manifest_gets.iter().any(has_auth), "the registry itself got our credentials");
    let layout = Layout::open(store.layout()).unwrap();
    assert_eq!(layout.read_blob(&layer.digest).unwrap(), image.layers[1].bytes);
}

#[test]
fn memory_stays_bounded_while_pulling_a_large_layer() {
    let store = Store::new();
    let size = 96 << 20;
    let image = big_image(8, size);
    let (_registry, _proxy, _) = setup(&store, &image);
    let reference = format!("{}/repo:1", _registry.host());
    // Measured by /usr/bin/time (a small parent), whose report is img-pull's own peak RSS.
    img_e2e::require("/usr/bin/time");
    let report = store.path().join("rss");
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o"]).arg(&report).arg(img_e2e::bin("img-pull")).arg(&reference);
    cmd.env("IMG_ROOT", store.path()).env_remove("IMG_LAYOUT");
    assert_success(&img_e2e::run_with_stdin(&mut cmd, ""), "img-pull under /usr/bin/time");
    let kib: u64 = std::fs::read_to_string(&report).unwrap().trim().lines().last().unwrap().parse().unwrap();
    assert!(kib < 64 << 10, "img-pull peaked at {} MiB RSS for a {} MiB layer", kib >> 10, size >> 20);
    let layout = Layout::open(store.layout()).unwrap();
    assert!(layout.has_blob(&image.layers[1].descriptor.digest));
}

#[test]
fn docker_schema1_is_refused_clearly() {
    let store = Store::new();
    let image = big_image(9, 1000);
    let (_registry, proxy, _) = setup(&store, &image);
    let schema1 =
        br#"{"schemaVersion":1,"name":"repo","tag":"old","architecture":"amd64","fsLayers":[],"history":[]}"#;
    for content_type in ["application/vnd.docker.distribution.manifest.v1+prettyjws", "application/json"] {
        proxy.add("GET /v2/repo/manifests/old", Fault::Respond(content_type.into(), schema1.to_vec()), 1);
        let out = store.run("img-pull", &[&format!("{}/repo:old", proxy.host())], "");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("schema1 manifests are not supported"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn an_upload_the_registry_lost_is_started_over() {
    let store = Store::new();
    let registry = Registry::anonymous();
    let proxy = Proxy::start(registry.port);
    let image = big_image(10, 50_000);
    let src = store.path().join("src");
    image.write_to(&Layout::open_or_create(&src).unwrap(), Some("img:1")).unwrap();
    let layer = &image.layers[1].descriptor;
    // The upload's final PUT is answered "upload unknown", as after a registry restart.
    proxy.add(&format!("digest={}", layer.digest), Fault::Status(404, vec![]), 1);
    let dest = format!("{}/restart:1", proxy.host());
    let out = store.run("img-push", &["--layout", src.to_str().unwrap(), "--to", &dest, "img:1"], "");
    assert_success(&out, "img-push");
    let requests = proxy.requests();
    let posts = requests.iter().filter(|r| r.starts_with("POST /v2/restart/blobs/uploads/")).count();
    assert_eq!(posts, image.layers.len() + 2, "one more upload session for the lost one: {requests:?}");
    let pulled = store.records("img-pull", &[&format!("{}/restart:1", registry.host())], "");
    assert_eq!(pulled[0]["digest"], image.manifest.descriptor.digest.to_string());
}

#[test]
fn garbage_collection_during_a_pull_sweeps_none_of_its_blobs() {
    let store = Store::new();
    let image = big_image(11, 4_000_000);
    let (_registry, proxy, reference) = setup(&store, &image);
    // Something already in the layout, so it exists before the pull starts.
    TestImage::new()
        .layer(Layer::new([Entry::file("x", "y")]))
        .build()
        .write_to(&Layout::open_or_create(store.layout()).unwrap(), Some("other:1"))
        .unwrap();
    proxy.throttle(10);
    proxy.reset_counts();
    let pull = store
        .command("img-pull")
        .args(["--jobs", "1", &reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.blob_bytes() < 1_000_000 {
        assert!(Instant::now() < deadline, "the pull did not progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The pull's config blob is already stored but not yet referenced: GC must wait.
    let prune = store.run("img-rm", &["--prune"], "");
    assert_success(&prune, "img-rm --prune");
    let out = pull.wait_with_output().unwrap();
    assert_success(&out, "img-pull during GC");
    let layout = Layout::open(store.layout()).unwrap();
    for blob in image.blobs() {
        assert!(layout.has_blob(&blob.descriptor.digest), "GC swept {}", blob.descriptor.digest);
    }
    let index = layout.read_index().unwrap();
    assert_eq!(index.find(&reference).len(), 1);
    assert_eq!(index.find("other:1").len(), 1);
}
