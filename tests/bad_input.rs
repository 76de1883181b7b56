//! Broken layouts and bad arguments: clear one-line errors (no panic, no backtrace), and nothing
//! deleted that should not be. Garbage collection refuses to run when it cannot know what a root
//! points at.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use img::document::Descriptor;
use img::layout::Layout;
use img::media_type;
use img::test_image::{BuiltImage, BuiltIndex, Entry, Layer, TestImage};
use img_e2e::{assert_success, bin, check, json_lines, run_with_stdin, stderr};
use serde_json::Value;

fn image(seed: &str) -> BuiltImage {
    TestImage::new().layer(Layer::new([Entry::file("f", seed)])).build()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    layout: Layout,
}

fn fixture(images: &[(&str, &BuiltImage)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout");
    let layout = Layout::open_or_create(&path).unwrap();
    for (name, img) in images {
        img.write_to(&layout, Some(name)).unwrap();
    }
    Fixture { _dir: dir, path, layout }
}

fn run(tool: &str, layout: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(bin(tool));
    cmd.arg("--layout").arg(layout).args(args).env("RUST_BACKTRACE", "1").env_remove("IMG_LAYOUT");
    run_with_stdin(&mut cmd, stdin)
}

/// Fails unless the tool failed with exit 1 and every stderr line is a one-line error of the
/// tool, the first one saying all of `says`.
fn assert_error(out: &Output, tool: &str, says: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{tool}: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    assert!(!err.is_empty() && err.lines().all(|l| l.starts_with(&format!("{tool}: "))), "{err}");
    for s in says {
        assert!(err.contains(s), "{err:?} does not say {s:?}");
    }
    err
}

fn blob_path(f: &Fixture, d: &Descriptor) -> PathBuf {
    f.path.join("blobs/sha256").join(d.digest.hex())
}

#[test]
fn a_missing_root_manifest_makes_gc_refuse_and_deletes_nothing() {
    let (a, b) = (image("a"), image("b"));
    let f = fixture(&[("app:1", &a), ("app:2", &b)]);
    let stray = f.layout.put_bytes(b"unreferenced").unwrap();
    fs::remove_file(blob_path(&f, &a.manifest.descriptor)).unwrap();
    let before = check::blob_names(&f.path);

    // img-ls reports the broken image and still lists the other.
    let out = run("img-ls", &f.path, &[], "");
    assert_error(&out, "img-ls", &["app:1", "missing", &a.manifest.descriptor.digest.to_string()]);
    let listed = json_lines(&out.stdout);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["ref"], "app:2");

    // GC cannot know what app:1 needs, so it removes nothing at all.
    let out = run("img-rm", &f.path, &["--prune"], "");
    assert_error(&out, "img-rm", &["garbage collection refused", "missing"]);
    assert_eq!(check::blob_names(&f.path), before);
    // Removing another image removes its ref, but its blobs wait for a collection that can run.
    let out = run("img-rm", &f.path, &["app:2"], "");
    assert_error(&out, "img-rm", &["garbage collection refused"]);
    assert_eq!(json_lines(&out.stdout)[0]["ref"], "app:2");
    assert_eq!(check::blob_names(&f.path), before);

    // Removing the broken image itself lets the collection run and clean everything.
    let out = run("img-rm", &f.path, &["app:1"], "");
    assert_success(&out, "img-rm app:1");
    assert!(check::blob_names(&f.path).is_empty(), "{:?}", check::blob_names(&f.path));
    assert!(!f.layout.has_blob(&stray));
}

#[test]
fn a_blob_whose_content_does_not_match_its_name() {
    let (a, b) = (image("a"), image("b"));
    let f = fixture(&[("app:1", &a), ("app:2", &b)]);
    fs::write(blob_path(&f, &a.manifest.descriptor), &b.manifest.bytes).unwrap();
    let stray = f.layout.put_bytes(b"unreferenced").unwrap();
    let before = check::blob_names(&f.path);

    let out = run("img-ls", &f.path, &["app:1"], "");
    assert_error(&out, "img-ls", &["app:1", "corrupt", &a.manifest.descriptor.digest.to_string()]);
    assert!(out.stdout.is_empty());
    let out = run("img-rm", &f.path, &["--prune"], "");
    assert_error(&out, "img-rm", &["garbage collection refused", "corrupt"]);
    assert_eq!(check::blob_names(&f.path), before);
    assert!(f.layout.has_blob(&stray));

    // A corrupt config: listing says so; the config is a leaf, so collection goes on and keeps it.
    fs::write(blob_path(&f, &a.manifest.descriptor), &a.manifest.bytes).unwrap();
    fs::write(blob_path(&f, &b.config.descriptor), b"{}").unwrap();
    let out = run("img-ls", &f.path, &[], "");
    assert_error(&out, "img-ls", &["app:2", "corrupt", &b.config.descriptor.digest.to_string()]);
    assert_eq!(json_lines(&out.stdout).len(), 1);
    let out = run("img-rm", &f.path, &["--prune"], "");
    assert_success(&out, "img-rm --prune");
    assert_eq!(json_lines(&out.stdout)[0]["freedBlobs"], 1, "only the stray blob goes");
    assert!(!f.layout.has_blob(&stray));
    assert!(blob_path(&f, &b.config.descriptor).is_file(), "a live (if corrupt) blob was swept");
}

#[test]
fn malformed_documents_are_named_in_the_error() {
    let a = image("a");
    let f = fixture(&[("app:1", &a)]);
    let stray = f.layout.put_bytes(b"unreferenced").unwrap();
    for (what, bytes, says) in [
        ("truncated", &a.manifest.bytes[..a.manifest.bytes.len() / 2], "malformed image manifest"),
        ("schema1", br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.as_slice(), "schema1"),
    ] {
        let desc = f.layout.put_document(media_type::OCI_MANIFEST, bytes).unwrap();
        f.layout.set_ref("bad:1", &desc).unwrap();
        let out = run("img-ls", &f.path, &["bad:1"], "");
        assert_error(&out, "img-ls", &["bad:1", says]);
        let out = run("img-rm", &f.path, &["--prune"], "");
        assert_error(&out, "img-rm", &["garbage collection refused", says]);
        assert!(f.layout.has_blob(&stray), "{what}: GC deleted a blob");
    }
}

#[test]
fn corrupt_layout_files_are_clear_errors_and_change_nothing() {
    let a = image("a");
    let f = fixture(&[("app:1", &a)]);
    let before = check::blob_names(&f.path);
    let index = fs::read(f.path.join("index.json")).unwrap();
    for (file, bad, says) in [
        ("index.json", "", "corrupt index"),
        ("index.json", "[]", "corrupt index"),
        ("index.json", r#"{"manifests":"no"}"#, "not an array"),
        ("index.json", r#"{"manifests":[{"mediaType":"x","size":1}]}"#, "digest"),
        (
            "index.json",
            r#"{"manifests":[{"mediaType":"x","size":1,"digest":"sha256:XYZ"}]}"#,
            "invalid digest",
        ),
        ("oci-layout", "garbage", "malformed oci-layout"),
        ("oci-layout", r#"{"imageLayoutVersion":"2.0.0"}"#, "unsupported image layout version"),
    ] {
        let saved = fs::read(f.path.join(file)).unwrap();
        fs::write(f.path.join(file), bad).unwrap();
        for (tool, args) in [("img-ls", &[][..]), ("img-rm", &["app:1"]), ("img-rm", &["--prune"])] {
            let out = run(tool, &f.path, args, "");
            assert_error(&out, tool, &[says]);
            assert!(out.stdout.is_empty(), "{tool} {file}={bad}");
            assert_eq!(check::blob_names(&f.path), before, "{tool} deleted blobs with {file}={bad:?}");
            assert_eq!(fs::read(f.path.join(file)).unwrap(), bad.as_bytes(), "{tool} rewrote {file}");
        }
        fs::write(f.path.join(file), saved).unwrap();
    }
    assert_eq!(fs::read(f.path.join("index.json")).unwrap(), index);

    // A directory with an index.json but no oci-layout is not a layout.
    fs::remove_file(f.path.join("oci-layout")).unwrap();
    let out = run("img-ls", &f.path, &[], "");
    assert_error(&out, "img-ls", &["not an OCI image layout"]);
    let out = run("img-rm", &f.path, &["app:1"], "");
    assert_error(&out, "img-rm", &["not an OCI image layout"]);
    assert_eq!(check::blob_names(&f.path), before);
}

#[test]
fn invalid_references_say_what_is_wrong() {
    let a = image("a");
    let f = fixture(&[("app:1", &a), ("Upper_Tag", &a)]);
    for (name, says) in [
        ("App:1", "must be lowercase"),
        ("app:-1", "invalid tag"),
        ("app:", "empty tag"),
        ("sha256:123", "hex digits"),
        ("app@sha256:zz", "hex digits"),
        ("a//b", "empty path component"),
    ] {
        let out = run("img-rm", &f.path, &[name], "");
        assert_error(&out, "img-rm", &["invalid", says]);
        let out = run("img-ls", &f.path, &[name], "");
        assert_error(&out, "img-ls", &["invalid", says]);
        assert!(out.stdout.is_empty());
    }
    // Nothing was removed; a stored name is found as it is, even one that is not a reference.
    assert_eq!(check::refs(&f.path).len(), 2);
    let out = run("img-ls", &f.path, &["Upper_Tag"], "");
    assert_success(&out, "img-ls Upper_Tag");
    assert_eq!(json_lines(&out.stdout).len(), 1);
    let out = run("img-rm", &f.path, &["Upper_Tag"], "");
    assert_success(&out, "img-rm Upper_Tag");
    assert_eq!(check::refs(&f.path), [("app:1".to_string(), a.manifest.descriptor.digest.to_string())]);
    check::assert_complete(&f.path);
}

#[test]
fn bad_stdin_records_are_clear_errors() {
    let a = image("a");
    let f = fixture(&[("app:1", &a)]);
    let out = run("img-rm", &f.path, &[], "{\"size\": 3}\n");
    assert_error(&out, "img-rm", &["neither \"ref\" nor \"digest\""]);
    assert_eq!(check::refs(&f.path).len(), 1, "nothing removed after a bad record");
    // A record nested as img-unpack prints it names its image.
    let out = run("img-rm", &f.path, &[], "{\"bundle\":\"/b\",\"image\":{\"ref\":\"app:1\"}}\n");
    assert_success(&out, "img-rm");
    assert!(check::refs(&f.path).is_empty());
    // A record without its ref (`jq 'del(.ref)'`) to img-pull: a digest names no repository; it
    // is said so, not looked up as docker.io/library/sha256 (issue 12).
    let digest = a.manifest.descriptor.digest.to_string();
    let out = run("img-pull", &f.path, &[], &format!("{{\"digest\":\"{digest}\"}}\n"));
    let err = assert_error(&out, "img-pull", &["a digest alone names no repository"]);
    assert!(err.starts_with(&format!("img-pull: {digest}: ")) && !err.contains("docker.io"), "{err}");
}

#[test]
fn files_gc_does_not_understand_are_left_alone() {
    let a = image("a");
    let f = fixture(&[("app:1", &a)]);
    // A peer's temp file next to the blobs, and blobs of an algorithm we do not know.
    fs::write(f.path.join("blobs/sha256/.tmp-skopeo-123"), "partial").unwrap();
    fs::write(f.path.join("blobs/sha256/not-a-digest"), "x").unwrap();
    fs::create_dir_all(f.path.join("blobs/blake3")).unwrap();
    fs::write(f.path.join("blobs/blake3/abcd"), "y").unwrap();
    let before = check::blob_names(&f.path);
    let out = run("img-rm", &f.path, &["--prune"], "");
    assert_success(&out, "img-rm --prune");
    assert_eq!(json_lines(&out.stdout)[0]["freedBlobs"], 0);
    assert_eq!(check::blob_names(&f.path), before);
}

#[test]
fn an_index_missing_some_platforms_is_not_an_error() {
    let amd = TestImage::new().platform("linux/amd64").layer(Layer::new([Entry::file("a", "1")])).build();
    let arm = TestImage::new().platform("linux/arm64").layer(Layer::new([Entry::file("a", "2")])).build();
    let multi = BuiltIndex::new(vec![amd.clone(), arm.clone()], false);
    let f = fixture(&[]);
    // A single-platform copy: the index and one child only.
    f.layout.put_bytes(&multi.index.bytes).unwrap();
    amd.write_to(&f.layout, None).unwrap();
    f.layout.set_ref("multi:1", &multi.index.descriptor).unwrap();
    let stray = f.layout.put_bytes(b"unreferenced").unwrap();

    let out = run("img-ls", &f.path, &[], "");
    assert_success(&out, "img-ls");
    let listed: Vec<Value> = json_lines(&out.stdout);
    assert_eq!(listed[0]["platforms"], serde_json::json!(["linux/amd64"]));
    let out = run("img-rm", &f.path, &["--prune"], "");
    assert_success(&out, "img-rm --prune");
    assert!(!f.layout.has_blob(&stray));
    let mut want: BTreeSet<String> = amd.blobs().iter().map(|b| b.descriptor.digest.to_string()).collect();
    want.insert(multi.index.descriptor.digest.to_string());
    assert_eq!(check::blob_names(&f.path), want);
}
