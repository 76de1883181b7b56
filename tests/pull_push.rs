//! img-pull and img-push against real `docker-registry` processes: round trips, skopeo interop
//! both ways, multi-platform indexes, Docker schema2, auth (htpasswd, token), TLS, concurrency
//! and the errors users hit every day.

use std::path::Path;

use img::layout::Layout;
use img::test_image::{BuiltImage, BuiltIndex, Entry, Layer, TestImage};
use img_e2e::registry::{Auth, Registry};
use img_e2e::{Store, assert_success, peer, stderr};
use serde_json::Value;

fn image(seed: &str) -> TestImage {
    TestImage::new()
        .layer(Layer::new([Entry::dir("etc"), Entry::file("etc/seed", seed)]))
        .layer(Layer::new([Entry::file(&format!("data/{seed}"), seed.repeat(1000))]))
}

/// Writes an image into a fresh layout under `name` and returns the layout's path.
fn layout_with(store: &Store, dir: &str, name: &str, built: &BuiltImage) -> std::path::PathBuf {
    let path = store.path().join(dir);
    built.write_to(&Layout::open_or_create(&path).unwrap(), Some(name)).unwrap();
    path
}

fn pull(store: &Store, args: &[&str]) -> Vec<Value> {
    store.records("img-pull", args, "")
}

fn push(store: &Store, layout: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--layout", layout.to_str().unwrap()];
    all.extend_from_slice(args);
    store.records("img-push", &all, "")
}

fn one_line_error(out: &std::process::Output, tool: &str, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{tool} should fail with 1: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with(&format!("{tool}: ")), "{err}");
    assert!(err.to_lowercase().contains(needle), "{err:?} does not say {needle:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
}

#[test]
fn push_then_pull_gives_identical_digests_and_is_idempotent() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let built = image("a").build();
    let src = layout_with(&store, "src", "app:1", &built);
    let dest = format!("{}/team/app:1", registry.host());
    let pushed = push(&store, &src, &["--to", &dest, "app:1"]);
    assert_eq!(pushed.len(), 1);
    // The record is the local image's (so `| img-rm` removes the local copy), and says where
    // it went, pinned to the digest pushed.
    assert_eq!(pushed[0]["digest"], built.manifest.descriptor.digest.to_string());
    assert_eq!(pushed[0]["ref"], "app:1");
    assert_eq!(pushed[0]["layout"], src.to_str().unwrap());
    assert_eq!(pushed[0]["mediaType"], img::media_type::OCI_MANIFEST);
    assert_eq!(
        pushed[0]["platform"],
        img::platform::Platform::host().to_string(),
        "the config's, as img-ls says"
    );
    assert_eq!(pushed[0]["pushed"], format!("{dest}@{}", built.manifest.descriptor.digest));

    let pulled = pull(&store, &[&dest]);
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0]["digest"], built.manifest.descriptor.digest.to_string());
    assert_eq!(pulled[0]["ref"], dest);
    assert_eq!(pulled[0]["mediaType"], img::media_type::OCI_MANIFEST);
    assert_eq!(pulled[0]["platform"], img::platform::Platform::host().to_string());
    let layout = Layout::open(store.layout()).unwrap();
    for blob in built.blobs() {
        assert_eq!(layout.read_blob(&blob.descriptor.digest).unwrap(), blob.bytes);
    }
    let index = layout.read_index().unwrap();
    assert_eq!(index.entries().len(), 1);
    assert_eq!(index.entries()[0].ref_name(), Some(dest.as_str()));

    // Pulling again fetches nothing; by digest too.
    let again = pull(&store, &[&dest]);
    assert_eq!(again[0]["fetchedBytes"], 0);
    assert_eq!(again[0]["digest"], pulled[0]["digest"]);
    let by_digest = format!("{}/team/app@{}", registry.host(), built.manifest.descriptor.digest);
    let pinned = pull(&store, &[&by_digest]);
    assert_eq!(pinned[0]["ref"], by_digest);
    assert_eq!(pinned[0]["fetchedBytes"], 0);
    let tag_and_digest = format!("{dest}@{}", built.manifest.descriptor.digest);
    let both = pull(&store, &[&tag_and_digest]);
    assert_eq!(both[0]["ref"], tag_and_digest);
    assert_eq!(both[0]["digest"], pulled[0]["digest"]);
    let wrong = format!("{dest}@sha256:{}", "0".repeat(64));
    let out = store.run("img-pull", &[&wrong], "");
    one_line_error(&out, "img-pull", "manifest unknown");

    // Pushing the same image again uploads nothing; to another repository, blobs are mounted.
    let again = push(&store, &src, &["--to", &dest, "app:1"]);
    assert_eq!(again[0]["uploadedBytes"], 0);
    let other = format!("{}/other/app:2", registry.host());
    let mounted = push(&store, &store.layout(), &["--to", &other, &dest]);
    assert_eq!(mounted[0]["uploadedBytes"], 0, "blobs are mounted from team/app");
    assert_eq!(mounted[0]["digest"], pulled[0]["digest"]);

    // The layout remembers where it pushed blobs: a push to yet another repository mounts them.
    let fourth = format!("{}/fourth/app:4", registry.host());
    let remembered = push(&store, &src, &["--to", &fourth, "app:1"]);
    assert_eq!(remembered[0]["uploadedBytes"], 0, "blobs are mounted from where they were pushed");

    // Records flow through a pipeline: img-pull's output is img-push's input.
    let line = serde_json::to_string(&pulled[0]).unwrap();
    let third = format!("{}/third/app:3", registry.host());
    let piped = store.records("img-push", &["--to", &third], &line);
    assert_eq!(piped[0]["digest"], pulled[0]["digest"]);
    assert_eq!(piped[0]["ref"], dest, "the local image pushed");
    assert_eq!(piped[0]["pushed"], format!("{third}@{}", built.manifest.descriptor.digest));

    // Pushed to a digest alone, `pushed` is that reference; by the name the image has (no
    // --to), the name pinned.
    let pinned = format!("{}/pinned/app@{}", registry.host(), built.manifest.descriptor.digest);
    let by_digest = push(&store, &src, &["--to", &pinned, "app:1"]);
    assert_eq!(by_digest[0]["pushed"], pinned);
    let named = push(&store, &store.layout(), &[&dest]);
    assert_eq!(
        (&named[0]["ref"], &named[0]["pushed"]),
        (&pulled[0]["ref"], &Value::from(format!("{dest}@{}", built.manifest.descriptor.digest)))
    );

    // -q: the digest alone, for `$(img-push -q …)`.
    let quiet = store.run("img-push", &["--layout", src.to_str().unwrap(), "-q", "--to", &dest, "app:1"], "");
    assert_success(&quiet, "img-push -q");
    assert_eq!(String::from_utf8_lossy(&quiet.stdout), format!("{}\n", built.manifest.descriptor.digest));
}

#[test]
fn skopeo_interop_both_ways() {
    let registry = Registry::anonymous();
    let store = Store::new();
    // skopeo pushes, img-pull pulls.
    let built = image("s").build();
    let src = layout_with(&store, "src", "latest", &built);
    let to_registry = format!("docker://{}/sk/one:1", registry.host());
    peer(
        "skopeo",
        &["copy", "--dest-tls-verify=false", &format!("oci:{}:latest", src.display()), &to_registry],
    );
    let pulled = pull(&store, &[&format!("{}/sk/one:1", registry.host())]);
    assert_eq!(pulled[0]["digest"], built.manifest.descriptor.digest.to_string());

    // img-push pushes, skopeo pulls into an oci: layout with the same digest.
    let built = image("t").build();
    let src = layout_with(&store, "src2", "app:2", &built);
    push(&store, &src, &["--to", &format!("{}/img/two:2", registry.host()), "app:2"]);
    let out = store.path().join("by-skopeo");
    peer(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/img/two:2", registry.host()),
            &format!("oci:{}:two", out.display()),
        ],
    );
    let index = Layout::open(&out).unwrap().read_index().unwrap();
    assert_eq!(index.entries()[0].digest, built.manifest.descriptor.digest);
}

fn multi_platform() -> BuiltIndex {
    BuiltIndex::new(
        vec![
            image("amd").platform("linux/amd64").build(),
            image("arm").platform("linux/arm64/v8").build(),
            image("armv7").platform("linux/arm/v7").build(),
        ],
        false,
    )
}

#[test]
fn multi_platform_index_pull() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let multi = multi_platform();
    let src = store.path().join("src");
    multi.write_to(&Layout::open_or_create(&src).unwrap(), Some("multi:1")).unwrap();
    let dest = format!("{}/multi:1", registry.host());
    let pushed = push(&store, &src, &["--to", &dest, "multi:1"]);
    assert_eq!(pushed[0]["digest"], multi.index.descriptor.digest.to_string());
    assert_eq!(pushed[0]["mediaType"], img::media_type::OCI_INDEX);
    assert_eq!(pushed[0].get("platform"), None, "an index has no one platform");

    // Default: the host's platform; the ref points at that image's manifest.
    let host = img::platform::Platform::host();
    let want = multi.images.iter().find(|i| i.platform.satisfies(&host)).expect("the host is in the index");
    let pulled = pull(&store, &[&dest]);
    assert_eq!(pulled[0]["digest"], want.manifest.descriptor.digest.to_string());
    assert_eq!(pulled[0]["platform"], want.platform.to_string());

    // --platform picks another; only its layers are fetched.
    let arm = store.path().join("arm");
    let pulled = pull(&store, &["--layout", arm.to_str().unwrap(), "--platform", "linux/arm/v7", &dest]);
    assert_eq!(pulled[0]["digest"], multi.images[2].manifest.descriptor.digest.to_string());
    let arm_layout = Layout::open(&arm).unwrap();
    assert!(arm_layout.has_blob(&multi.images[2].layers[1].descriptor.digest));
    assert!(!arm_layout.has_blob(&multi.images[1].layers[1].descriptor.digest));

    // --all-platforms keeps the whole index and every child.
    let all = store.path().join("all");
    let pulled = pull(&store, &["--layout", all.to_str().unwrap(), "--all-platforms", &dest]);
    assert_eq!(pulled[0]["digest"], multi.index.descriptor.digest.to_string());
    assert_eq!(pulled[0]["mediaType"], img::media_type::OCI_INDEX);
    let all_layout = Layout::open(&all).unwrap();
    for blob in multi.blobs() {
        assert!(all_layout.has_blob(&blob.descriptor.digest), "missing {}", blob.descriptor.digest);
    }

    // A platform the index lacks is a clear error.
    let out = store.run("img-pull", &["--platform", "linux/s390x", &dest], "");
    one_line_error(&out, "img-pull", "no image for linux/s390x");
}

#[test]
fn docker_schema2_image_and_manifest_list_keep_their_bytes_and_types() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let docker = image("d").docker_media_types().build();
    let list = BuiltIndex::new(
        vec![
            image("d").docker_media_types().build(),
            image("e").docker_media_types().platform("linux/ppc64le").build(),
        ],
        true,
    );
    let src = layout_with(&store, "src", "d:1", &docker);
    list.write_to(&Layout::open(&src).unwrap(), Some("list:1")).unwrap();
    let d = format!("{}/docker/img:1", registry.host());
    let l = format!("{}/docker/list:1", registry.host());
    push(&store, &src, &["--to", &d, "d:1"]);
    push(&store, &src, &["--to", &l, "list:1"]);
    let pulled = pull(&store, &["--all-platforms", &d, &l]);
    assert_eq!(pulled[0]["mediaType"], img::media_type::DOCKER_MANIFEST);
    assert_eq!(pulled[0]["digest"], docker.manifest.descriptor.digest.to_string());
    assert_eq!(pulled[1]["mediaType"], img::media_type::DOCKER_LIST);
    assert_eq!(pulled[1]["digest"], list.index.descriptor.digest.to_string());
    let layout = Layout::open(store.layout()).unwrap();
    assert_eq!(layout.read_blob(&list.index.descriptor.digest).unwrap(), list.index.bytes);
}

#[test]
fn htpasswd_basic_auth_with_config_files_helpers_and_wrong_password() {
    let registry = Registry::start(Auth::Basic { user: "alice".into(), password: "s3cret".into() }, false);
    let store = Store::new();
    let built = image("b").build();
    let src = layout_with(&store, "src", "b:1", &built);
    let dest = format!("{}/private/b:1", registry.host());

    // No credentials: refused, clearly.
    let out = store.run("img-push", &["--layout", src.to_str().unwrap(), "--to", &dest, "b:1"], "");
    one_line_error(&out, "img-push", "authentication required");

    // Credentials from $DOCKER_CONFIG/config.json.
    let config = store.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    let auth = img_base64("alice:s3cret");
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host()),
    )
    .unwrap();
    let mut cmd = store.command("img-push");
    cmd.env("DOCKER_CONFIG", &config).args(["--layout", src.to_str().unwrap(), "--to", &dest, "b:1"]);
    assert_success(&img_e2e::run_with_stdin(&mut cmd, ""), "img-push with DOCKER_CONFIG");

    // Credentials from REGISTRY_AUTH_FILE pull it back.
    let auth_file = store.path().join("auth.json");
    std::fs::write(&auth_file, format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host()))
        .unwrap();
    let mut cmd = store.command("img-pull");
    cmd.env("REGISTRY_AUTH_FILE", &auth_file).arg(&dest);
    let out = img_e2e::run_with_stdin(&mut cmd, "");
    assert_success(&out, "img-pull with REGISTRY_AUTH_FILE");
    assert_eq!(img_e2e::json_lines(&out.stdout)[0]["digest"], built.manifest.descriptor.digest.to_string());
    // --authfile names that file instead, and only that one: a missing one is an error.
    let other = store.path().join("other-layout");
    let out = store.run(
        "img-pull",
        &["--authfile", auth_file.to_str().unwrap(), "--layout", other.to_str().unwrap(), &dest],
        "",
    );
    assert_success(&out, "img-pull --authfile");
    let missing = store.path().join("missing.json");
    let out = store.run(
        "img-pull",
        &["--authfile", missing.to_str().unwrap(), "--layout", other.to_str().unwrap(), &dest],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(img_e2e::stderr(&out).contains("missing.json"), "{}", img_e2e::stderr(&out));

    // Credential helpers: credHelpers for this registry, and credsStore for all.
    let helpers = store.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-imgtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = {} ] || {{ echo credentials not found; exit 1; }}\necho '{{\"Username\":\"alice\",\"Secret\":\"s3cret\"}}'\n",
            registry.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap_or_default());
    for config_json in [
        format!(r#"{{"credHelpers":{{"{}":"imgtest"}}}}"#, registry.host()),
        r#"{"credsStore":"imgtest"}"#.to_string(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), &config_json).unwrap();
        let mut cmd = store.command("img-pull");
        cmd.env("DOCKER_CONFIG", dir.path()).env("PATH", &path).arg(&dest);
        assert_success(&img_e2e::run_with_stdin(&mut cmd, ""), &format!("img-pull with {config_json}"));
    }

    // A wrong password.
    let out = store.run("img-pull", &["--creds", "alice:wrong", &dest], "");
    one_line_error(&out, "img-pull", "wrong username or password");
}

fn img_base64(s: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child =
        Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), s.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn token_auth_bearer_flow() {
    let registry = Registry::start(Auth::Token { user: "bob".into(), password: "pw".into() }, false);
    let tokens = registry.token_server.as_ref().unwrap();
    let store = Store::new();
    let built = image("tok").build();
    let src = layout_with(&store, "src", "t:1", &built);
    let dest = format!("{}/tok/app:1", registry.host());

    // Anonymous tokens only grant pull: pushing is refused.
    let out = store.run("img-push", &["--layout", src.to_str().unwrap(), "--to", &dest, "t:1"], "");
    one_line_error(&out, "img-push", "authentication required");
    // With credentials the token grants push.
    let pushed = push(&store, &src, &["--creds", "bob:pw", "--to", &dest, "t:1"]);
    assert_eq!(pushed[0]["digest"], built.manifest.descriptor.digest.to_string());
    // Anonymous pull works through an anonymous token; tokens are reused per scope.
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    let pulled = pull(&store, &[&dest]);
    assert_eq!(pulled[0]["digest"], built.manifest.descriptor.digest.to_string());
    let used = tokens.issued.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!((1..=2).contains(&used), "one token for the pull scope, not one per request ({used})");
    // An identity token from the docker config is exchanged at the token service (OAuth2).
    for (token, ok) in [("refresh-bob", true), ("refresh-eve", false)] {
        let config = tempfile::tempdir().unwrap();
        let json = format!(r#"{{"auths":{{"{}":{{"identitytoken":"{token}"}}}}}}"#, registry.host());
        std::fs::write(config.path().join("config.json"), json).unwrap();
        let mut cmd = store.command("img-push");
        cmd.env("DOCKER_CONFIG", config.path()).args([
            "--layout",
            src.to_str().unwrap(),
            "--to",
            &format!("{}/tok/id:1", registry.host()),
            "t:1",
        ]);
        let out = img_e2e::run_with_stdin(&mut cmd, "");
        if ok {
            assert_success(&out, "img-push with an identity token");
        } else {
            one_line_error(&out, "img-push", "authentication failed");
        }
    }
    // A wrong password is refused by the token service.
    let out = store.run("img-pull", &["--creds", "bob:nope", &dest], "");
    one_line_error(&out, "img-pull", "wrong username or password");
}

#[test]
fn tls_with_a_generated_ca() {
    let registry = Registry::start(Auth::Anonymous, true);
    let ca = registry.tls.as_ref().unwrap().ca_cert.clone();
    let store = Store::new();
    let built = image("tls").build();
    let src = layout_with(&store, "src", "x:1", &built);
    let dest = format!("{}/secure/x:1", registry.host());

    // Unknown CA: a TLS failure, never a downgrade to http.
    let out = store.run("img-push", &["--layout", src.to_str().unwrap(), "--to", &dest, "x:1"], "");
    one_line_error(&out, "img-push", "certificate");

    // --ca-cert, and the docker certs.d convention.
    push(&store, &src, &["--ca-cert", ca.to_str().unwrap(), "--to", &dest, "x:1"]);
    let certs = store.path().join("certs.d");
    std::fs::create_dir_all(certs.join(registry.host())).unwrap();
    std::fs::copy(&ca, certs.join(registry.host()).join("ca.crt")).unwrap();
    let mut cmd = store.command("img-pull");
    cmd.env("IMG_CERTS_DIR", &certs).arg(&dest);
    let out = img_e2e::run_with_stdin(&mut cmd, "");
    assert_success(&out, "img-pull with certs.d");
    assert_eq!(img_e2e::json_lines(&out.stdout)[0]["digest"], built.manifest.descriptor.digest.to_string());

    // A registry named insecure (flag or environment) is used without verification.
    let other = Store::new();
    let mut cmd = other.command("img-pull");
    cmd.env("IMG_INSECURE_REGISTRIES", format!("example.com,{}", registry.host())).arg(&dest);
    assert_success(&img_e2e::run_with_stdin(&mut cmd, ""), "img-pull with IMG_INSECURE_REGISTRIES");
    let records = other.records("img-pull", &["--insecure-registry", &registry.host(), &dest], "");
    assert_eq!(records[0]["digest"], built.manifest.descriptor.digest.to_string());
}

#[test]
fn concurrent_pulls_into_one_layout_lose_no_reference() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let src = store.path().join("src");
    let src_layout = Layout::open_or_create(&src).unwrap();
    let n = 6;
    let mut digests = Vec::new();
    for i in 0..n {
        // Shared first layer, own second layer: concurrent writers of the same blob too.
        let built = image(&format!("c{i}")).layer(Layer::new([Entry::file("shared", "same")])).build();
        built.write_to(&src_layout, Some(&format!("c:{i}"))).unwrap();
        push(&store, &src, &["--to", &format!("{}/conc:{i}", registry.host()), &format!("c:{i}")]);
        digests.push(built.manifest.descriptor.digest.to_string());
    }
    let children: Vec<_> = (0..n)
        .map(|i| {
            store
                .command("img-pull")
                .arg(format!("{}/conc:{i}", registry.host()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        assert_success(&c.wait_with_output().unwrap(), "a concurrent img-pull");
    }
    let index = Layout::open(store.layout()).unwrap().read_index().unwrap();
    for (i, digest) in digests.iter().enumerate() {
        let found = index.find(&format!("{}/conc:{i}", registry.host()));
        assert_eq!(found.len(), 1, "ref conc:{i} lost");
        assert_eq!(&index.entries()[found[0]].digest.to_string(), digest);
    }
    let listed = store.records("img-ls", &[], "");
    assert_eq!(listed.len(), n);
}

#[test]
fn everyday_errors_are_one_clear_line() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let built = image("e").build();
    let src = layout_with(&store, "src", "e:1", &built);
    push(&store, &src, &["--to", &format!("{}/known:1", registry.host()), "e:1"]);

    let out = store.run("img-pull", &[&format!("{}/nope:1", registry.host())], "");
    one_line_error(&out, "img-pull", "no such image");
    let out = store.run("img-pull", &[&format!("{}/known:2", registry.host())], "");
    one_line_error(&out, "img-pull", "manifest unknown (404)");
    let down = img_e2e::registry::free_port();
    let out = store.run("img-pull", &["--retries", "1", &format!("127.0.0.1:{down}/x:1")], "");
    one_line_error(&out, "img-pull", "connection refused");
    let out = store.run("img-pull", &["Bad/Name"], "");
    one_line_error(&out, "img-pull", "invalid reference");
    let out = store.run(
        "img-push",
        &["--layout", src.to_str().unwrap(), "--to", &format!("{}/x:1", registry.host()), "missing:1"],
        "",
    );
    one_line_error(&out, "img-push", "no such image");
    // Nothing was written for the failed pulls.
    let index = Layout::open(store.layout()).unwrap().read_index().unwrap();
    assert!(index.entries().is_empty());
}
