//! Every record the tools print, checked against docs/record.schema.json by a real JSON Schema
//! validator (Debian's python3-jsonschema, draft 2020-12): each tool is run the ways users run
//! it and every stdout line must be the kind of record docs/records.md says it prints, with no
//! field the schema does not know.

mod run_common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use img::layout::Layout;
use img::test_image::{BuiltIndex, Entry, Layer, TestImage};
use img_e2e::registry::{Auth, Registry};
use img_e2e::{Store, assert_success, json_lines, require, run_with_stdin, stderr};
use serde_json::json;

/// Validates each stdin line against the kind `argv[2]` of the schema at `argv[1]` and against
/// the whole schema (any kind); prints what is wrong, and how many lines were valid.
const VALIDATOR: &str = r##"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
whole = Draft202012Validator(schema)
kind = dict(schema)
kind.pop("anyOf")
kind["$ref"] = "#/$defs/" + sys.argv[2]
one = Draft202012Validator(kind)
bad, good = 0, 0
for n, line in enumerate(sys.stdin.read().splitlines(), 1):
    record = json.loads(line)
    errors = list(one.iter_errors(record)) + [e for e in whole.iter_errors(record)][:1]
    for e in errors:
        print(f"line {n}: {'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}")
    bad += bool(errors)
    good += not errors
print(f"valid: {good}")
sys.exit(1 if bad else 0)
"##;

fn schema() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/record.schema.json")
}

/// Runs the validator on `lines` as records of `kind`.
fn check(kind: &str, lines: &[u8]) -> Output {
    // The Debian package scripts/setup installs, whatever python3 comes first on PATH.
    require("/usr/bin/python3");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", VALIDATOR]).arg(schema()).arg(kind);
    run_with_stdin(&mut cmd, &String::from_utf8_lossy(lines))
}

/// Every line of a tool's stdout must be a valid record of `kind`; there must be `count`.
fn assert_valid(kind: &str, out: &Output, count: usize) {
    assert_success(out, kind);
    let lines = json_lines(&out.stdout).len();
    assert_eq!(lines, count, "{kind}: {}", String::from_utf8_lossy(&out.stdout));
    let checked = check(kind, &out.stdout);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{kind} records do not match the schema:\n{said}{}\nrecords:\n{}",
        stderr(&checked),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(said.ends_with(&format!("valid: {count}\n")), "{said}");
}

/// `record` (one JSON object) must be refused as a `kind`.
fn assert_refused(kind: &str, record: serde_json::Value, why: &str) {
    let checked = check(kind, format!("{record}\n").as_bytes());
    let said = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{why}: accepted as {kind}: {record}\n{}", stderr(&checked));
    assert!(said.contains("line 1:"), "{said}");
}

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn the_schema_refuses_what_no_tool_prints() {
    let image = json!({"ref": "localhost/a:1", "digest": DIGEST,
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 3, "layout": "/l",
        "platform": "linux/amd64"});
    let mut pushed = image.clone();
    pushed["pushed"] = json!(format!("127.0.0.1:5000/a:1@{DIGEST}"));
    let ok = check("pushed", format!("{pushed}\n").as_bytes());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    assert_refused("pushed", image.clone(), "no pushed");
    let mut unpinned = pushed.clone();
    unpinned["pushed"] = json!("127.0.0.1:5000/a:1");
    assert_refused("pushed", unpinned, "a destination without its digest");
    let mut extra = image.clone();
    extra["layers"] = json!(1);
    extra["bytes"] = json!(9);
    extra["surprise"] = json!(true);
    assert_refused("listed", extra, "a field nobody documented");
    let mut bad = image.clone();
    bad["digest"] = json!("sha256:abc");
    assert_refused("tagged", bad, "a malformed digest");
    let mut relative = image.clone();
    relative["layout"] = json!("layout");
    assert_refused("tagged", relative, "a relative layout");
    let mut inner = image.clone();
    inner.as_object_mut().unwrap().remove("platform");
    assert_refused("unpacked", json!({"bundle": "/b", "rootfs": "/b/rootfs", "image": inner}), "no platform");
    assert_refused("deleted", json!({"ref": "r/a:1", "digest": DIGEST, "deleted": false}), "deleted false");
}

fn image(seed: &str) -> TestImage {
    TestImage::new().layer(Layer::new([Entry::file("seed", seed)]))
}

#[test]
fn image_records_of_pull_push_ls_tag_unpack_inspect_rm_match_the_schema() {
    let registry = Registry::anonymous();
    let host = registry.host();
    let store = Store::new();
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    run_common::busybox_image(&[("Cmd", json!(["sh"]))], vec![])
        .build()
        .write_to(&layout, Some("bb:1"))
        .unwrap();
    // An index of this machine's platform and another.
    let host_platform = img::platform::Platform::host().to_string();
    let other = if host_platform == "linux/arm64" { "linux/amd64" } else { "linux/arm64" };
    let index = BuiltIndex::new(
        vec![
            image("native").platform(&host_platform).build(),
            image("foreign").platform(other).layer(Layer::new([Entry::whiteout("seed")])).build(),
        ],
        false,
    );
    index.write_to(&layout, Some("multi:1")).unwrap();

    // img-push: to a registry (a single image and an index), to both kinds of archive.
    let pushed = store.run("img-push", &["--to", &format!("{host}/s/bb:1"), "bb:1"], "");
    assert_valid("pushed", &pushed, 1);
    assert_valid("pushed", &store.run("img-push", &["--to", &format!("{host}/s/multi:1"), "multi:1"], ""), 1);
    assert_valid(
        "pushed",
        &store.run("img-push", &["--to", &format!("oci-archive:{}", w("o.tar")), "bb:1"], ""),
        1,
    );
    let docker =
        store.run("img-push", &["--to", &format!("docker-archive:{}:x/bb:1", w("d.tar")), "bb:1"], "");
    assert_valid("pushed", &docker, 1);
    assert_eq!(json_lines(&pushed.stdout)[0]["pushed"].as_str().unwrap().split('@').count(), 2);

    // img-pull: from a registry (an image, a whole index, by digest) and from archives; the
    // records of a pipeline too.
    let pulled = store.run("img-pull", &[&format!("{host}/s/bb:1")], "");
    assert_valid("pulled", &pulled, 1);
    assert_valid("pulled", &store.run("img-pull", &["--all-platforms", &format!("{host}/s/multi:1")], ""), 1);
    let digest = json_lines(&pulled.stdout)[0]["digest"].as_str().unwrap().to_string();
    assert_valid("pulled", &store.run("img-pull", &[&format!("{host}/s/bb@{digest}")], ""), 1);
    assert_valid("pulled", &store.run("img-pull", &[&format!("oci-archive:{}", w("o.tar"))], ""), 1);
    assert_valid("pulled", &store.run("img-pull", &[&format!("docker-archive:{}", w("d.tar"))], ""), 1);
    assert_valid("pulled", &store.run("img-pull", &[], &String::from_utf8_lossy(&pulled.stdout)), 1);

    // img-ls: everything (images and an index), a filter, records piped in.
    let listed = store.run("img-ls", &[], "");
    let count = json_lines(&listed.stdout).len();
    assert!(count >= 5, "{}", String::from_utf8_lossy(&listed.stdout));
    assert_valid("listed", &listed, count);
    assert_valid("listed", &store.run("img-ls", &["multi"], ""), 1);
    assert_valid("listed", &store.run("img-ls", &[], &String::from_utf8_lossy(&pulled.stdout)), 1);

    // img-tag: two names at once; from a record on stdin.
    assert_valid("tagged", &store.run("img-tag", &["bb:1", "localhost/t:1", "localhost/t:2"], ""), 2);
    assert_valid(
        "tagged",
        &store.run("img-tag", &["localhost/again:1"], &String::from_utf8_lossy(&pulled.stdout)),
        1,
    );
    assert_valid("tagged", &store.run("img-tag", &["multi:1", "localhost/multi:3"], ""), 1);

    // img-unpack: a bundle, a rootfs only, one platform of an index, again (already there).
    assert_valid("unpacked", &store.run("img-unpack", &["--bundle", &w("b1"), "bb:1"], ""), 1);
    assert_valid("unpacked", &store.run("img-unpack", &["--bundle", &w("b1"), "bb:1"], ""), 1);
    assert_valid(
        "unpacked",
        &store.run("img-unpack", &["--rootfs-only", "--bundle", &w("r"), "bb:1"], ""),
        1,
    );
    let of_index = store.run("img-unpack", &["--bundle", &w("b2"), "multi:1"], "");
    assert_valid("unpacked", &of_index, 1);
    assert!(
        json_lines(&of_index.stdout)[0]["image"]["manifest"].is_string(),
        "an index's record names the manifest"
    );

    // img-inspect: an image, an index, --wasted, --referrers, --remote, --tags.
    assert_valid("inspected", &store.run("img-inspect", &["bb:1", "multi:1"], ""), 2);
    assert_valid(
        "inspected",
        &store.run("img-inspect", &["--wasted", "--platform", other, "multi:1"], ""),
        1,
    );
    assert_valid("inspected", &store.run("img-inspect", &["--referrers", "bb:1"], ""), 1);
    let remote =
        store.run("img-inspect", &["--remote", &format!("{host}/s/bb:1"), &format!("{host}/s/multi:1")], "");
    assert_valid("inspected", &remote, 2);
    assert_valid("remoteTag", &store.run("img-inspect", &["--tags", &format!("{host}/s/bb")], ""), 1);

    // img-rm: names, records piped in, --prune, --remote.
    assert_valid("removed", &store.run("img-rm", &["localhost/t:1", "localhost/t:2"], ""), 2);
    assert_valid("removed", &store.run("img-rm", &[], &String::from_utf8_lossy(&pulled.stdout)), 1);
    assert_valid("removed", &store.run("img-rm", &["--no-gc", "localhost/again:1"], ""), 1);
    assert_valid("pruned", &store.run("img-rm", &["--prune"], ""), 1);
    assert_valid("deleted", &store.run("img-rm", &["--remote", &format!("{host}/s/bb:1")], ""), 1);
}

#[test]
fn build_records_match_the_schema() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    run_common::busybox_image(&[], vec![]).build().write_to(&layout, Some("localhost/bb:1")).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("f"), "f").unwrap();
    fs::write(ctx.path().join("Dockerfile"), "FROM localhost/bb:1\nCOPY f /f\n").unwrap();
    let dir = ctx.path().to_str().unwrap();
    assert_valid(
        "built",
        &store.run("img-build", &["-t", "localhost/a:1", "-t", "localhost/a:2", dir], ""),
        2,
    );
    assert_valid("built", &store.run("img-build", &[dir], ""), 1);
    // Several platforms: the index's record (no RUN, so nothing is emulated).
    fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    let multi =
        store.run("img-build", &["--platform", "linux/amd64,linux/arm64", "-t", "localhost/m:1", dir], "");
    assert_valid("built", &multi, 1);
    assert!(json_lines(&multi.stdout)[0].get("platform").is_none());

    // --check: one record per warning, and exit 1 as BuildKit's.
    fs::write(ctx.path().join("Dockerfile"), "from localhost/bb:1 as Base\nCMD echo hi\n").unwrap();
    let out = store.run("img-build", &["--check", dir], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let count = json_lines(&out.stdout).len();
    assert!(count >= 2, "{}", String::from_utf8_lossy(&out.stdout));
    let checked = check("buildWarning", &out.stdout);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
    assert!(String::from_utf8_lossy(&checked.stdout).ends_with(&format!("valid: {count}\n")));
}

#[test]
fn login_and_logout_records_match_the_schema() {
    let registry = Registry::start(Auth::Basic { user: "ann".into(), password: "pw".into() }, false);
    let store = Store::new();
    let authfile = store.path().join("auth.json");
    let file = authfile.to_str().unwrap();
    let host = registry.host();
    let login = store.run("img-login", &["--authfile", file, "-u", "ann", "--password-stdin", &host], "pw\n");
    assert_valid("loggedIn", &login, 1);
    assert_valid("loggedOut", &store.run("img-logout", &["--authfile", file, &host], ""), 1);
    let again = store.run("img-logout", &["--authfile", file, &host], "");
    assert_valid("loggedOut", &again, 1);
    assert_eq!(json_lines(&again.stdout)[0]["removed"], false);
}
