//! `img-rm --remote` against real `docker-registry` processes: a tag is resolved to its digest
//! and the manifest deleted (as `skopeo delete`), a digest reference deletes that digest, a
//! token registry gets a token with the `delete` action, and a registry that refuses deletes
//! (distribution's default) says so in one line.

use std::process::Output;

use img::layout::Layout;
use img::test_image::{BuiltImage, Entry, Layer, TestImage};
use img_e2e::registry::{Auth, Registry};
use img_e2e::{Store, assert_success, json_lines, stderr};

fn image(seed: &str) -> BuiltImage {
    TestImage::new().layer(Layer::new([Entry::file("seed", seed)])).build()
}

/// Pushes `built` to `to` (with `extra` flags) and returns its digest.
fn push(store: &Store, built: &BuiltImage, to: &str, extra: &[&str]) -> String {
    let src = store.path().join(format!("src-{}", built.manifest.descriptor.digest.hex()));
    built.write_to(&Layout::open_or_create(&src).unwrap(), Some("x:1")).unwrap();
    let mut args = vec!["--layout", src.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(["--to", to, "x:1"]);
    assert_success(&store.run("img-push", &args, ""), "img-push");
    built.manifest.descriptor.digest.to_string()
}

fn one_line_error(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "img-rm should fail with 1: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("img-rm: "), "{err}");
    assert!(err.to_lowercase().contains(needle), "{err:?} does not say {needle:?}");
    err
}

fn pull_fails(store: &Store, reference: &str) {
    let layout = store.path().join(format!("check-{}", img_e2e::registry::free_port()));
    let out = store.run("img-pull", &["--layout", layout.to_str().unwrap(), reference], "");
    assert_eq!(out.status.code(), Some(1), "{reference} can still be pulled");
    assert!(stderr(&out).contains("manifest unknown"), "{}", stderr(&out));
}

#[test]
fn remote_rm_deletes_by_tag_by_digest_and_from_a_pipeline() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let host = registry.host();
    let a = image("a");
    let digest = push(&store, &a, &format!("{host}/team/app:1"), &[]);
    push(&store, &a, &format!("{host}/team/app:also"), &[]);

    let out = store.run("img-rm", &["--remote", &format!("{host}/team/app:1")], "");
    assert_success(&out, "img-rm --remote by tag");
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["ref"], format!("{host}/team/app:1"));
    assert_eq!(records[0]["digest"], digest);
    assert_eq!(records[0]["deleted"], true);
    // The manifest is gone, and with it every tag that named it.
    pull_fails(&store, &format!("{host}/team/app:1"));
    pull_fails(&store, &format!("{host}/team/app:also"));
    // Again: the tag is unknown now, in one line.
    let out = store.run("img-rm", &["--remote", &format!("{host}/team/app:1")], "");
    one_line_error(&out, "manifest unknown");
    // With -f that is not an error (and nothing is printed), as for a layout.
    let out = store.run("img-rm", &["--remote", "-f", &format!("{host}/team/app:1")], "");
    assert_success(&out, "img-rm --remote -f of a missing image");
    assert!(out.stdout.is_empty() && stderr(&out).is_empty(), "{}", stderr(&out));

    // By digest.
    let b = image("b");
    let digest = push(&store, &b, &format!("{host}/team/b:1"), &[]);
    let out = store.run("img-rm", &["--remote", &format!("{host}/team/b@{digest}")], "");
    assert_success(&out, "img-rm --remote by digest");
    assert_eq!(json_lines(&out.stdout)[0]["digest"], digest);
    pull_fails(&store, &format!("{host}/team/b:1"));

    // From img-push's record: its `ref` is the local image, its `pushed` the registry's copy
    // (`img-push … | jq -c '{ref: .pushed}' | img-rm --remote`).
    let c = image("c");
    let src = store.path().join("src-c");
    c.write_to(&Layout::open_or_create(&src).unwrap(), Some("c:1")).unwrap();
    let to = format!("{host}/team/c:1");
    let pushed = store.run("img-push", &["--layout", src.to_str().unwrap(), "--to", &to, "c:1"], "");
    assert_success(&pushed, "img-push");
    let line = serde_json::json!({"ref": json_lines(&pushed.stdout)[0]["pushed"]}).to_string();
    let out = store.run("img-rm", &["--remote"], &line);
    assert_success(&out, "img-push | jq '{ref: .pushed}' | img-rm --remote");
    assert_eq!(json_lines(&out.stdout)[0]["ref"], format!("{to}@{}", c.manifest.descriptor.digest));
    pull_fails(&store, &to);

    // A bare digest names no registry.
    let out = store.run("img-rm", &["--remote", &digest], "");
    one_line_error(&out, "names no registry");
}

#[test]
fn remote_rm_on_a_token_registry_needs_credentials() {
    let registry = Registry::start(Auth::Token { user: "bob".into(), password: "pw".into() }, false);
    let store = Store::new();
    let to = format!("{}/team/app:1", registry.host());
    push(&store, &image("t"), &to, &["--creds", "bob:pw"]);
    // Anonymous tokens only grant pull.
    let out = store.run("img-rm", &["--remote", &to], "");
    one_line_error(&out, "authentication required");
    let out = store.run("img-rm", &["--remote", "--creds", "bob:pw", &to], "");
    assert_success(&out, "img-rm --remote with credentials");
    pull_fails(&store, &to);
}

#[test]
fn a_registry_that_refuses_deletes_says_so() {
    let registry = Registry::without_deletes(Auth::Anonymous);
    let store = Store::new();
    let to = format!("{}/team/app:1", registry.host());
    let digest = push(&store, &image("kept"), &to, &[]);
    let out = store.run("img-rm", &["--remote", &to], "");
    let err = one_line_error(&out, "does not allow deleting");
    assert!(err.contains(&registry.host()) && err.contains("405"), "{err}");
    // Nothing was deleted.
    let pulled = store.records("img-pull", &[&to], "");
    assert_eq!(pulled[0]["digest"], digest);
}
