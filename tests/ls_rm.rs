//! img-ls and img-rm as a user drives them: tables and JSON Lines, filters, pipelines between
//! the two, what img-rm frees, and exit codes.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use img::layout::Layout;
use img::test_image::{BuiltImage, BuiltIndex, Entry, Layer, TestImage};
use img_e2e::{Store, assert_success, bin, check, json_lines, require, run_with_stdin, stderr};
use serde_json::Value;

fn image(seed: &str) -> BuiltImage {
    TestImage::new()
        .layer(Layer::new([Entry::file("shared", "the same in every image")]))
        .layer(Layer::new([Entry::file("own", seed.repeat(100))]))
        .created("2024-03-04T05:06:07Z")
        .build()
}

fn refs_of(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["ref"].as_str().unwrap_or("").to_string()).collect()
}

fn blobs_of(img: &BuiltImage) -> BTreeSet<String> {
    img.blobs().iter().map(|b| b.descriptor.digest.to_string()).collect()
}

fn bytes_of<'a>(blobs: impl IntoIterator<Item = &'a img::test_image::Blob>) -> u64 {
    blobs.into_iter().map(|b| b.bytes.len() as u64).sum()
}

/// Runs a command under `script` so its stdout is a terminal; returns what it printed.
fn on_terminal(store: &Store, command: &str) -> (bool, String) {
    require("script");
    let out = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("IMG_ROOT", store.path())
        .env_remove("IMG_LAYOUT")
        .output()
        .expect("running script");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).replace('\r', ""))
}

fn assert_one_line_error(out: &Output, tool: &str, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{tool}: stderr: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with(&format!("{tool}: ")) && err.contains(says), "{err:?} does not say {says:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn json_lines_when_piped_or_asked() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("docker.io/library/app:1", &a), ("localhost:5000/other:2", &b)]);
    let records = store.records("img-ls", &[], "");
    assert_eq!(refs_of(&records), ["docker.io/library/app:1", "localhost:5000/other:2"]);
    let layout = std::fs::canonicalize(store.layout()).unwrap();
    for (r, img) in records.iter().zip([&a, &b]) {
        assert_eq!(r["digest"], img.manifest.descriptor.digest.to_string());
        assert_eq!(r["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(r["size"], img.manifest.bytes.len() as u64);
        assert_eq!(r["layout"], layout.to_str().unwrap());
        assert_eq!(r["platform"], img.platform.to_string());
        assert_eq!(r["created"], "2024-03-04T05:06:07Z");
        assert_eq!(r["layers"], 2);
        assert_eq!(r["bytes"], bytes_of(img.blobs()));
    }
    // --json gives the same lines; so does a terminal with --json.
    let out = store.run("img-ls", &["--json"], "");
    assert_success(&out, "img-ls --json");
    assert_eq!(json_lines(&out.stdout), records);
    let img_ls = bin("img-ls");
    let (ok, text) = on_terminal(&store, &format!("{} --json", img_ls.display()));
    assert!(ok, "{text}");
    assert_eq!(json_lines(text.as_bytes()), records);
}

#[test]
fn a_table_on_a_terminal() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("docker.io/library/app:1", &a), ("localhost:5000/other:2", &b)]);
    let (ok, text) = on_terminal(&store, &bin("img-ls").display().to_string());
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "CREATED"]);
    for (line, (name, img)) in
        lines[1..].iter().zip([("docker.io/library/app:1", &a), ("localhost:5000/other:2", &b)])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], name);
        assert_eq!(cells[1], &img.manifest.descriptor.digest.hex()[..12]);
        assert_eq!(cells[2], img.platform.to_string());
        assert!(cells[3].parse::<f64>().is_ok() && ["B", "kB"].contains(&cells[4]), "size: {line}");
        assert_eq!(&cells[5..], ["2024-03-04", "05:06"]);
        assert!(!line.contains('{'), "JSON on a terminal: {line}");
    }
}

#[test]
fn filters_select_by_reference_and_a_bare_name_selects_every_tag() {
    let imgs: Vec<BuiltImage> = (0..5).map(|i| image(&i.to_string())).collect();
    let names =
        ["docker.io/library/app:1", "app:2", "docker.io/library/tool:1", "localhost:5000/app:1", "latest"];
    let store = Store::with_images(&names.iter().copied().zip(imgs.iter()).collect::<Vec<_>>());
    let ls = |args: &[&str]| refs_of(&store.records("img-ls", args, ""));
    assert_eq!(ls(&["app"]), ["docker.io/library/app:1", "app:2"]);
    assert_eq!(ls(&["docker.io/library/app"]), ["docker.io/library/app:1", "app:2"]);
    assert_eq!(ls(&["app:2"]), ["app:2"]);
    assert_eq!(ls(&["docker.io/library/app:2"]), ["app:2"]);
    assert_eq!(ls(&["localhost:5000/app"]), ["localhost:5000/app:1"]);
    assert_eq!(ls(&["tool", "app:1", "tool:1"]), ["docker.io/library/app:1", "docker.io/library/tool:1"]);
    assert_eq!(ls(&[&imgs[3].manifest.descriptor.digest.to_string()]), ["localhost:5000/app:1"]);
    assert_eq!(ls(&["x:latest"]), ["latest"], "umoci's bare tag is found by any name with that tag");
    assert!(ls(&["nothing"]).is_empty());
    assert!(ls(&["app:3"]).is_empty());
}

#[test]
fn a_multi_platform_index_shows_its_platforms() {
    let amd = TestImage::new().platform("linux/amd64").layer(Layer::new([Entry::file("a", "x")])).build();
    let arm = TestImage::new().platform("linux/arm64/v8").layer(Layer::new([Entry::file("a", "y")])).build();
    let index = BuiltIndex::new(vec![amd, arm], false);
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    index.write_to(&layout, Some("docker.io/library/multi:1")).unwrap();
    let r = &store.records("img-ls", &[], "")[0];
    assert_eq!(r["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(r["digest"], index.index.descriptor.digest.to_string());
    assert_eq!(r["platforms"], serde_json::json!(["linux/amd64", "linux/arm64/v8"]));
    assert!(r.get("platform").is_none(), "an index has platforms, not one platform: {r}");
    assert_eq!(r["layers"], 2);
    assert_eq!(r["bytes"], bytes_of(index.blobs()));
    let (ok, text) = on_terminal(&store, &bin("img-ls").display().to_string());
    assert!(ok && text.contains("linux/amd64,linux/arm64/v8"), "{text}");
}

#[test]
fn an_empty_or_missing_layout_lists_nothing() {
    let store = Store::new();
    // The store before anything was stored: nothing to list.
    for args in [&[][..], &["app"]] {
        let out = store.run("img-ls", args, "");
        assert_success(&out, "img-ls");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}: {out:?}");
    }
    // A layout named that does not exist is a mistake, not an empty list (issue 12).
    let out = store.run("img-ls", &["--layout", "/nonexistent/layout"], "");
    assert_one_line_error(&out, "img-ls", 1, "/nonexistent/layout: no such layout");
    std::fs::create_dir_all(store.layout()).unwrap();
    let out = store.run("img-ls", &[], "");
    assert_success(&out, "img-ls of an empty directory");
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    Layout::open_or_create(store.layout()).unwrap();
    let out = store.run("img-ls", &[], "");
    assert_success(&out, "img-ls");
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    // A directory that holds something else is not silently an empty layout.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), "not a layout").unwrap();
    let out = store.run("img-ls", &["--layout", other.path().to_str().unwrap()], "");
    assert_one_line_error(&out, "img-ls", 1, "not an OCI image layout");
}

#[test]
fn a_corrupt_index_is_a_one_line_error() {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    let before = check::blob_names(&store.layout());
    for bad in
        ["{not json", r#"{"schemaVersion":2,"manifests":{}}"#, r#"{"manifests":[{"digest":"sha256:12"}]}"#]
    {
        std::fs::write(store.layout().join("index.json"), bad).unwrap();
        let out = store.run("img-ls", &[], "");
        assert_one_line_error(&out, "img-ls", 1, "index.json");
        assert!(out.stdout.is_empty());
        let out = store.run("img-rm", &["app:1"], "");
        assert_one_line_error(&out, "img-rm", 1, "index.json");
        let out = store.run("img-rm", &["--prune"], "");
        assert_one_line_error(&out, "img-rm", 1, "index.json");
        assert_eq!(check::blob_names(&store.layout()), before, "blobs deleted with a corrupt index");
        assert_eq!(std::fs::read_to_string(store.layout().join("index.json")).unwrap(), bad);
    }
}

#[test]
fn rm_by_argument_frees_exactly_the_image_s_own_blobs() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &a), ("app:2", &b)]);
    let records = store.records("img-rm", &["app:1"], "");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["ref"], "app:1");
    assert_eq!(r["digest"], a.manifest.descriptor.digest.to_string());
    assert_eq!(r["size"], a.manifest.bytes.len() as u64);
    assert_eq!(r["layout"], std::fs::canonicalize(store.layout()).unwrap().to_str().unwrap());
    // The first layer is b's too: it stays and does not count as freed.
    let own: Vec<_> = a.blobs().into_iter().filter(|x| x.descriptor != a.layers[0].descriptor).collect();
    assert_eq!(r["freedBlobs"], own.len());
    assert_eq!(r["freedBytes"], bytes_of(own));
    assert_eq!(check::blob_names(&store.layout()), blobs_of(&b));
    check::assert_complete(&store.layout());
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["app:2"]);
}

#[test]
fn rm_reads_records_from_img_ls_through_a_pipeline() {
    let imgs: Vec<BuiltImage> = (0..3).map(|i| image(&i.to_string())).collect();
    let store = Store::with_images(&[
        ("localhost/a:1", &imgs[0]),
        ("localhost/b:1", &imgs[1]),
        ("docker.io/library/c:1", &imgs[2]),
    ]);
    require("jq");
    let script = format!(
        "{} | jq -c 'select(.ref|test(\"^localhost/\"))' | {}",
        bin("img-ls").display(),
        bin("img-rm").display()
    );
    let pipeline = || {
        Command::new("sh")
            .args(["-c", &script])
            .env("IMG_ROOT", store.path())
            .env_remove("IMG_LAYOUT")
            .output()
            .unwrap()
    };
    let out = pipeline();
    assert_success(&out, &script);
    let removed = json_lines(&out.stdout);
    assert_eq!(refs_of(&removed), ["localhost/a:1", "localhost/b:1"]);
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["docker.io/library/c:1"]);
    check::assert_complete(&store.layout());

    // A pipeline that selects nothing removes nothing and is not an error.
    let out = pipeline();
    assert_success(&out, "an empty pipeline");
    assert!(out.stdout.is_empty());
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["docker.io/library/c:1"]);
}

#[test]
fn rm_follows_the_layout_a_record_names() {
    let store = Store::with_images(&[("app:1", &image("default"))]);
    let other = tempfile::tempdir().unwrap();
    let other_layout = other.path().join("elsewhere");
    let layout = Layout::open_or_create(&other_layout).unwrap();
    image("x").write_to(&layout, Some("app:1")).unwrap();
    image("y").write_to(&layout, Some("app:2")).unwrap();

    let listed = store.run("img-ls", &["--layout", other_layout.to_str().unwrap(), "app:1"], "");
    assert_success(&listed, "img-ls --layout");
    let removed = store.records("img-rm", &[], &String::from_utf8(listed.stdout).unwrap());
    assert_eq!(refs_of(&removed), ["app:1"]);
    assert_eq!(removed[0]["layout"], std::fs::canonicalize(&other_layout).unwrap().to_str().unwrap());
    assert_eq!(check::refs(&other_layout).len(), 1, "removed from the layout the record named");
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["app:1"], "the default store is untouched");

    // Plain reference lines (and lines that are not JSON) are references too.
    let removed = store.records("img-rm", &["--layout", other_layout.to_str().unwrap()], "\napp:2\n\n");
    assert_eq!(refs_of(&removed), ["app:2"]);
    assert!(check::refs(&other_layout).is_empty());
    assert!(check::blob_names(&other_layout).is_empty());
}

#[test]
fn rm_by_digest_removes_every_ref_to_it() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &a), ("app:latest", &a), ("other:1", &b)]);
    let digest = a.manifest.descriptor.digest.to_string();
    let records = store.records("img-rm", &[&digest], "");
    assert_eq!(refs_of(&records), ["app:1", "app:latest"]);
    let freed: u64 = records.iter().map(|r| r["freedBytes"].as_u64().unwrap()).sum();
    assert_eq!(freed, bytes_of(a.blobs()) - a.layers[0].bytes.len() as u64);
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["other:1"]);
    // Records without a ref name are removed by their digest.
    let removed =
        store.records("img-rm", &[], &format!("{{\"digest\":\"{}\"}}\n", b.manifest.descriptor.digest));
    assert_eq!(refs_of(&removed), ["other:1"]);
}

#[test]
fn a_missing_ref_fails_but_the_others_are_removed_and_force_ignores_it() {
    let imgs: Vec<BuiltImage> = (0..3).map(|i| image(&i.to_string())).collect();
    let store = Store::with_images(&[("app:1", &imgs[0]), ("app:2", &imgs[1]), ("app:3", &imgs[2])]);
    let out = store.run("img-rm", &["app:1", "nope:1", "app:2"], "");
    assert_one_line_error(&out, "img-rm", 1, "nope:1: no such image");
    assert_eq!(refs_of(&json_lines(&out.stdout)), ["app:1", "app:2"]);
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["app:3"]);
    assert_eq!(check::blob_names(&store.layout()), blobs_of(&imgs[2]), "the removed images were collected");

    let out = store.run("img-rm", &["-f", "nope:1", "app:3"], "");
    assert_success(&out, "img-rm -f");
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_eq!(refs_of(&json_lines(&out.stdout)), ["app:3"]);
    let out = store.run("img-rm", &["--force", "nope:1"], "");
    assert_success(&out, "img-rm --force");
    assert!(out.stdout.is_empty());
}

#[test]
fn no_gc_keeps_the_blobs_for_a_later_prune() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &a), ("app:2", &b)]);
    let stray = Layout::open(store.layout()).unwrap().put_bytes(b"a stray blob").unwrap();
    let before = check::blob_names(&store.layout());
    let records = store.records("img-rm", &["--no-gc", "app:1"], "");
    assert_eq!(refs_of(&records), ["app:1"]);
    assert_eq!((records[0]["freedBlobs"].as_u64(), records[0]["freedBytes"].as_u64()), (Some(0), Some(0)));
    assert_eq!(check::blob_names(&store.layout()), before, "--no-gc collected");

    let pruned = store.records("img-rm", &["--prune"], "");
    assert_eq!(pruned.len(), 1);
    let freed: Vec<_> = a.blobs().into_iter().filter(|x| x.descriptor != a.layers[0].descriptor).collect();
    assert_eq!(pruned[0]["freedBlobs"], freed.len() + 1);
    assert_eq!(pruned[0]["freedBytes"], bytes_of(freed) + b"a stray blob".len() as u64);
    assert_eq!(pruned[0]["layout"], std::fs::canonicalize(store.layout()).unwrap().to_str().unwrap());
    assert!(!check::blob_names(&store.layout()).contains(&stray.to_string()));
    assert_eq!(check::blob_names(&store.layout()), blobs_of(&b));
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["app:2"]);
    // Nothing left to collect.
    assert_eq!(store.records("img-rm", &["--prune"], "")[0]["freedBlobs"], 0);
}

#[test]
fn blobs_shared_with_an_index_stay() {
    let single = image("a");
    let other = TestImage::new().platform("linux/arm64").layer(Layer::new([Entry::file("z", "z")])).build();
    let index = BuiltIndex::new(vec![single.clone(), other], false);
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    single.write_to(&layout, Some("single:1")).unwrap();
    index.write_to(&layout, Some("multi:1")).unwrap();
    let records = store.records("img-rm", &["single:1"], "");
    assert_eq!((records[0]["freedBlobs"].as_u64(), records[0]["freedBytes"].as_u64()), (Some(0), Some(0)));
    assert_eq!(
        check::blob_names(&store.layout()),
        index.blobs().iter().map(|b| b.descriptor.digest.to_string()).collect()
    );
    let records = store.records("img-rm", &["multi:1"], "");
    assert_eq!(records[0]["freedBlobs"], index.blobs().len());
    assert_eq!(records[0]["freedBytes"], bytes_of(index.blobs()));
    assert!(check::blob_names(&store.layout()).is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    for args in [&["--bogus"][..], &["--prune", "app:1"], &["--prune", "--no-gc"], &["--layout"]] {
        let out = store.run("img-rm", args, "");
        assert_eq!(out.status.code(), Some(2), "img-rm {args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    let out = store.run("img-ls", &["--bogus"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // No image and nothing piped in: a usage error, not a silent success.
    let (ok, text) = on_terminal(&store, &format!("{}; echo \"exit=$?\"", bin("img-rm").display()));
    assert!(ok, "{text}");
    assert!(text.contains("no image given") && text.contains("exit=2"), "{text}");
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["app:1"]);
}

#[test]
fn help_and_version_work() {
    for tool in ["img-ls", "img-rm"] {
        let out = Command::new(bin(tool)).arg("--help").output().unwrap();
        assert_success(&out, tool);
        assert!(String::from_utf8_lossy(&out.stdout).contains("--layout"));
        let out = Command::new(bin(tool)).arg("--version").output().unwrap();
        assert_success(&out, tool);
    }
}

#[test]
fn img_ls_into_a_closed_pipe_ends_quietly() {
    let imgs: Vec<BuiltImage> = (0..30).map(|i| image(&i.to_string())).collect();
    let names: Vec<String> = (0..30).map(|i| format!("app:{i}")).collect();
    let store = Store::with_images(&names.iter().map(String::as_str).zip(imgs.iter()).collect::<Vec<_>>());
    let script = format!("{} | head -1", bin("img-ls").display());
    let out = run_with_stdin(Command::new("sh").args(["-c", &script]).env("IMG_ROOT", store.path()), "");
    assert_success(&out, &script);
    assert_eq!(json_lines(&out.stdout).len(), 1);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn records_from_several_layouts_are_each_removed_even_if_one_layout_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    for l in [&one, &two] {
        image("a").write_to(&Layout::open_or_create(l).unwrap(), Some("app:1")).unwrap();
    }
    let gone = dir.path().join("gone");
    let stdin: String = [&one, &gone, &two]
        .iter()
        .map(|l| format!("{}\n", serde_json::json!({"ref": "app:1", "layout": l})))
        .collect();
    let store = Store::new();
    let out = store.run("img-rm", &[], &stdin);
    assert_one_line_error(&out, "img-rm", 1, "not an OCI image layout");
    let removed = json_lines(&out.stdout);
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(check::refs(&one).is_empty() && check::refs(&two).is_empty());
    assert!(!gone.exists(), "img-rm created a layout");
}

#[test]
fn entries_without_a_name_are_listed_and_removed_by_digest() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &b)]);
    a.write_to(&Layout::open(store.layout()).unwrap(), None).unwrap();
    let index_path = store.layout().join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .insert(0, serde_json::to_value(&a.manifest.descriptor).unwrap());
    std::fs::write(&index_path, index.to_string()).unwrap();

    let out = store.run("img-ls", &[], "");
    assert_success(&out, "img-ls");
    let listed = json_lines(&out.stdout);
    assert!(listed[0].get("ref").is_none(), "{}", listed[0]);
    assert_eq!(listed[0]["digest"], a.manifest.descriptor.digest.to_string());
    let (ok, text) = on_terminal(&store, &bin("img-ls").display().to_string());
    assert!(ok && text.lines().nth(1).unwrap().starts_with("<none>"), "{text}");

    let unnamed = String::from_utf8(out.stdout).unwrap().lines().next().unwrap().to_string();
    let removed = store.records("img-rm", &[], &unnamed);
    assert_eq!(removed.len(), 1);
    assert!(removed[0].get("ref").is_none());
    assert_eq!(removed[0]["freedBlobs"], 3, "manifest, config and own layer");
    assert_eq!(refs_of(&store.records("img-ls", &[], "")), ["app:1"]);
    assert_eq!(check::blob_names(&store.layout()), blobs_of(&b));
}

/// `img-pull R | img-ls`: records on stdin show just those images, enriched (each from the
/// layout its record names); one that is not there is an error, the others still shown; an
/// empty pipe lists nothing.
#[test]
fn records_on_stdin_select_the_images_shown() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    for (i, name) in ["a:1", "b:1", "c:1"].iter().enumerate() {
        image(&format!("seed{i}")).write_to(&layout, Some(name)).unwrap();
    }
    let all = store.records("img-ls", &["--json"], "");
    assert_eq!(all.len(), 3);
    let b = all.iter().find(|r| r["ref"].as_str().unwrap().ends_with("b:1")).unwrap();
    // A record (as img-pull prints it) and a plain line.
    let input = format!("{}\nc:1\n", serde_json::json!({"ref": b["ref"], "digest": b["digest"]}));
    let shown = store.records("img-ls", &[], &input);
    let refs: Vec<&str> = shown.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs.len(), 2, "{shown:?}");
    assert!(refs[0].ends_with("b:1") && refs[1].ends_with("c:1"), "{refs:?}");
    assert_eq!(shown[0], *b, "the same record img-ls prints for it");
    // One missing: an error naming it, the rest shown, exit 1.
    let out = store.run("img-ls", &[], "nope:1\na:1\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out.stdout).len(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope:1: no such image"), "{out:?}");
    // An empty pipe upstream (a blank line): nothing to show, success.
    let out = store.run("img-ls", &[], "\n");
    assert_success(&out, "img-ls with an empty pipe");
    assert!(out.stdout.is_empty());
}
