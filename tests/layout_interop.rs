//! Layouts go both ways between our tools and the real peers: what umoci and skopeo write, img-ls
//! lists with the digests of their index.json and img-rm edits so that the peers (and
//! oci-image-tool's validator) still accept it; what we write, the peers read.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use img::layout::Layout;
use img::test_image::{BuiltImage, BuiltIndex, Entry, Layer, TestImage};
use img_e2e::{assert_success, bin, check, json_lines, peer, require};
use serde_json::Value;

fn img(tool: &str, layout: &Path, args: &[&str]) -> Output {
    Command::new(bin(tool)).arg("--layout").arg(layout).args(args).env_remove("IMG_LAYOUT").output().unwrap()
}

fn records(tool: &str, layout: &Path, args: &[&str]) -> Vec<Value> {
    let out = img(tool, layout, args);
    assert_success(&out, tool);
    json_lines(&out.stdout)
}

fn ref_digests(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| (r["ref"].as_str().unwrap().into(), r["digest"].as_str().unwrap().into()))
        .collect()
}

fn validate(layout: &Path) {
    let out = peer("oci-image-tool", &["validate", "--type", "image", layout.to_str().unwrap()]);
    assert!(out.contains("Validation succeeded"), "{out}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An image with the kinds of entries a rootfs has.
/// Our layout at `dir/ours`, holding [`rich_image`] as `docker.io/library/app:1`.
fn our_layout_with_app(dir: &Path) -> (PathBuf, Layout, BuiltImage) {
    let ours = dir.join("ours");
    let layout = Layout::open_or_create(&ours).unwrap();
    let app = rich_image().build();
    app.write_to(&layout, Some("docker.io/library/app:1")).unwrap();
    (ours, layout, app)
}

fn rich_image() -> TestImage {
    TestImage::new()
        .layer(Layer::new([
            Entry::dir("etc"),
            Entry::file("etc/hello", "hello from img\n"),
            Entry::symlink("etc/link", "hello"),
            Entry::hardlink("etc/hard", "etc/hello"),
            Entry::file("bin/tool", "#!/bin/sh\n").mode(0o755).owner(1000, 1000),
        ]))
        .layer(Layer::new([Entry::file("etc/second", "second layer"), Entry::whiteout("etc/gone")]))
        .run_config("Cmd", serde_json::json!(["/bin/tool"]))
}

#[test]
fn umoci_layouts_are_listed_and_stay_readable_after_img_rm() {
    require("umoci");
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("umoci");
    let content = dir.path().join("content");
    fs::create_dir_all(content.join("etc")).unwrap();
    fs::write(content.join("etc/hello"), "hi\n").unwrap();
    peer("umoci", &["init", "--layout", s(&l)]);
    peer("umoci", &["new", "--image", &format!("{}:base", s(&l))]);
    peer(
        "umoci",
        &["insert", "--image", &format!("{}:base", s(&l)), s(&content.join("etc/hello")), "/etc/hello"],
    );
    peer(
        "umoci",
        &["config", "--image", &format!("{}:base", s(&l)), "--config.cmd", "/bin/sh", "--tag", "v2"],
    );
    peer("umoci", &["tag", "--image", &format!("{}:v2", s(&l)), "extra"]);

    // Listed with the names and digests of index.json, bare tags as they are.
    let listed = records("img-ls", &l, &[]);
    assert_eq!(ref_digests(&listed), check::refs(&l));
    assert_eq!(
        listed.iter().map(|r| r["ref"].as_str().unwrap()).collect::<Vec<_>>(),
        ["base", "v2", "extra"]
    );
    assert!(listed.iter().all(|r| r["layers"] == 1 && r["platform"].is_string()), "{listed:?}");
    // Bare tags are found leniently.
    assert_eq!(ref_digests(&records("img-ls", &l, &["v2"])), ref_digests(&listed[1..2]));
    assert_eq!(ref_digests(&records("img-ls", &l, &["localhost/any:v2"])), ref_digests(&listed[1..2]));

    // Removed through the pipeline, as `img-ls base | img-rm` does.
    let line = serde_json::to_string(&records("img-ls", &l, &["base"])[0]).unwrap();
    let mut rm = Command::new(bin("img-rm"));
    rm.env_remove("IMG_LAYOUT").env("IMG_ROOT", dir.path().join("unused"));
    let out = img_e2e::run_with_stdin(&mut rm, &line);
    assert_success(&out, "img-rm");
    let removed = json_lines(&out.stdout);
    assert_eq!(removed[0]["ref"], "base");
    assert_eq!(removed[0]["freedBlobs"], 2, "base's manifest and config; the layer is v2's too");
    let left = check::refs(&l);
    assert_eq!(left.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["v2", "extra"]);
    let live = check::assert_complete(&l);
    assert_eq!(check::blob_names(&l), live);

    validate(&l);
    let ls = peer("umoci", &["ls", "--layout", s(&l)]);
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["v2", "extra"]);
    // umoci's own GC finds nothing more to collect.
    peer("umoci", &["gc", "--layout", s(&l)]);
    assert_eq!(check::blob_names(&l), live);
    let bundle = dir.path().join("bundle");
    peer("umoci", &["unpack", "--image", &format!("{}:extra", s(&l)), s(&bundle)]);
    assert_eq!(fs::read_to_string(bundle.join("rootfs/etc/hello")).unwrap(), "hi\n");
    let config: Value = serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/sh"]));
    let inspected: Value =
        serde_json::from_str(&peer("skopeo", &["inspect", &format!("oci:{}:v2", s(&l))])).unwrap();
    assert_eq!(inspected["Digest"], left[0].1.as_str());
}

#[test]
fn skopeo_layouts_are_listed_and_stay_readable_after_img_rm() {
    require("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let layout = Layout::open_or_create(&a).unwrap();
    let app = rich_image().build();
    let tool = TestImage::new().layer(Layer::new([Entry::file("tool", "a tool")])).build();
    app.write_to(&layout, Some("docker.io/library/app:1")).unwrap();
    tool.write_to(&layout, Some("docker.io/library/tool:2")).unwrap();
    for (from, to) in [
        ("docker.io/library/app:1", "app1"),
        ("docker.io/library/tool:2", "tool"),
        ("docker.io/library/app:1", "localhost/app:1"),
    ] {
        peer("skopeo", &["copy", "-q", &format!("oci:{}:{from}", s(&a)), &format!("oci:{}:{to}", s(&b))]);
    }

    let listed = records("img-ls", &b, &[]);
    assert_eq!(ref_digests(&listed), check::refs(&b));
    let app_digest = app.manifest.descriptor.digest.to_string();
    let tool_digest = tool.manifest.descriptor.digest.to_string();
    assert_eq!(
        ref_digests(&listed),
        [
            ("app1".into(), app_digest.clone()),
            ("tool".into(), tool_digest.clone()),
            ("localhost/app:1".into(), app_digest)
        ]
    );
    assert_eq!(listed[0]["layers"], 2);
    assert_eq!(listed[0]["created"], "2024-01-01T00:00:00Z");

    // By bare tag and by the full name skopeo kept; app's blobs stay while one ref remains.
    assert_eq!(records("img-rm", &b, &["app1"])[0]["freedBlobs"], 0);
    validate(&b);
    let removed = records("img-rm", &b, &["localhost/app:1"]);
    assert_eq!(removed[0]["freedBlobs"], app.blobs().len());
    assert_eq!(check::refs(&b), [("tool".to_string(), tool_digest.clone())]);
    assert_eq!(check::blob_names(&b), check::assert_complete(&b));
    validate(&b);

    let inspected: Value =
        serde_json::from_str(&peer("skopeo", &["inspect", &format!("oci:{}:tool", s(&b))])).unwrap();
    assert_eq!(inspected["Digest"], tool_digest.as_str());
    peer("skopeo", &["copy", "-q", &format!("oci:{}:tool", s(&b)), &format!("oci:{}:t", s(&c))]);
    assert_eq!(check::refs(&c), [("t".to_string(), tool_digest)]);
    require("umoci");
    assert_eq!(peer("umoci", &["ls", "--layout", s(&b)]).trim(), "tool");
    let bundle = dir.path().join("bundle");
    peer("umoci", &["unpack", "--image", &format!("{}:tool", s(&b)), s(&bundle)]);
    assert_eq!(fs::read_to_string(bundle.join("rootfs/tool")).unwrap(), "a tool");
}

#[test]
fn layouts_we_write_are_valid_and_the_peers_read_them() {
    require("skopeo");
    require("umoci");
    let dir = tempfile::tempdir().unwrap();
    let (ours, layout, app) = our_layout_with_app(dir.path());
    let multi = BuiltIndex::new(
        vec![
            TestImage::new()
                .platform("linux/amd64")
                .layer(Layer::new([Entry::file("arch", "amd64")]))
                .build(),
            TestImage::new()
                .platform("linux/arm64/v8")
                .layer(Layer::new([Entry::file("arch", "arm64")]))
                .build(),
        ],
        false,
    );
    multi.write_to(&layout, Some("docker.io/library/multi:1")).unwrap();
    validate(&ours);

    let inspected: Value = serde_json::from_str(&peer(
        "skopeo",
        &["inspect", &format!("oci:{}:docker.io/library/app:1", s(&ours))],
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], app.manifest.descriptor.digest.to_string());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    // umoci addresses bare tags only: hand it a copy made by skopeo, then check the rootfs.
    let copy = dir.path().join("copy");
    peer(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{}:docker.io/library/app:1", s(&ours)),
            &format!("oci:{}:app", s(&copy)),
        ],
    );
    assert_eq!(check::refs(&copy)[0].1, app.manifest.descriptor.digest.to_string(), "skopeo kept our bytes");
    let bundle = dir.path().join("bundle");
    peer("umoci", &["unpack", "--image", &format!("{}:app", s(&copy)), s(&bundle)]);
    let root = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(root.join("etc/hello")).unwrap(), "hello from img\n");
    assert_eq!(fs::read_link(root.join("etc/link")).unwrap(), Path::new("hello"));
    assert_eq!(
        fs::metadata(root.join("etc/hard")).unwrap().ino(),
        fs::metadata(root.join("etc/hello")).unwrap().ino()
    );
    let tool = fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!((tool.permissions().mode() & 0o7777, tool.uid(), tool.gid()), (0o755, 1000, 1000));
    assert_eq!(fs::read_to_string(root.join("etc/second")).unwrap(), "second layer");

    // The whole index, every platform, copies across unchanged.
    let all = dir.path().join("all");
    peer(
        "skopeo",
        &[
            "copy",
            "-q",
            "--all",
            &format!("oci:{}:docker.io/library/multi:1", s(&ours)),
            &format!("oci:{}:multi", s(&all)),
        ],
    );
    assert_eq!(check::refs(&all)[0].1, multi.index.descriptor.digest.to_string());
    validate(&all);
    let listed = records("img-ls", &all, &[]);
    assert_eq!(listed[0]["platforms"], serde_json::json!(["linux/amd64", "linux/arm64/v8"]));

    // After img-rm of one image the other still validates and reads.
    records("img-rm", &ours, &["app:1"]);
    validate(&ours);
    let raw = peer("skopeo", &["inspect", "--raw", &format!("oci:{}:docker.io/library/multi:1", s(&ours))]);
    assert_eq!(raw.as_bytes(), multi.index.bytes.as_slice(), "the index bytes are kept exactly");
}

#[test]
fn our_private_directory_bothers_no_peer() {
    require("skopeo");
    require("umoci");
    let dir = tempfile::tempdir().unwrap();
    let (ours, _layout, _app) = our_layout_with_app(dir.path());
    // What a killed writer leaves behind, and our lock files.
    fs::create_dir_all(ours.join(".img/tmp")).unwrap();
    fs::write(ours.join(".img/tmp/blob-leftover"), "half a blob").unwrap();
    assert!(ours.join(".img/index.lock").exists());

    validate(&ours);
    // skopeo and umoci write into the same layout…
    peer(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{}:docker.io/library/app:1", s(&ours)),
            &format!("oci:{}:sk", s(&ours)),
        ],
    );
    peer("umoci", &["tag", "--image", &format!("{}:sk", s(&ours)), "um"]);
    peer("umoci", &["gc", "--layout", s(&ours)]);
    assert_eq!(peer("umoci", &["ls", "--layout", s(&ours)]).lines().count(), 3);
    assert!(ours.join(".img/tmp/blob-leftover").exists(), "umoci gc leaves our directory alone");
    validate(&ours);

    // …and ours still work on it: list, remove, collect (which cleans the leftover).
    let names: Vec<_> =
        records("img-ls", &ours, &[]).iter().map(|r| r["ref"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["docker.io/library/app:1", "sk", "um"]);
    records("img-rm", &ours, &["app:1", "sk"]);
    assert!(!ours.join(".img/tmp/blob-leftover").exists());
    assert_eq!(check::blob_names(&ours), check::assert_complete(&ours));
    assert_eq!(peer("umoci", &["ls", "--layout", s(&ours)]).trim(), "um");
    let bundle = dir.path().join("bundle");
    peer("umoci", &["unpack", "--image", &format!("{}:um", s(&ours)), s(&bundle)]);
    assert!(bundle.join("rootfs/etc/hello").is_file());
    validate(&ours);
}

#[test]
fn docker_media_types_are_kept_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("l");
    let layout = Layout::open_or_create(&l).unwrap();
    let docker = rich_image().docker_media_types().build();
    let oci = rich_image().build();
    docker.write_to(&layout, Some("docker.io/library/d:1")).unwrap();
    oci.write_to(&layout, Some("docker.io/library/o:1")).unwrap();
    let listed = records("img-ls", &l, &[]);
    assert_eq!(listed[0]["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(listed[0]["digest"], docker.manifest.descriptor.digest.to_string());
    assert_eq!(listed[0]["layers"], 2);
    let removed = records("img-rm", &l, &["o:1"]);
    let docker_blobs: BTreeSet<String> =
        docker.blobs().iter().map(|b| b.descriptor.digest.to_string()).collect();
    let own = oci.blobs().into_iter().filter(|b| !docker_blobs.contains(&b.descriptor.digest.to_string()));
    assert_eq!(removed[0]["freedBlobs"], own.count(), "the layers and config bytes are the same in both");
    assert_eq!(check::blob_names(&l), docker_blobs);
    let manifest = fs::read(l.join("blobs/sha256").join(docker.manifest.descriptor.digest.hex())).unwrap();
    assert_eq!(manifest, docker.manifest.bytes);
}

#[test]
fn an_unprivileged_user_reads_our_layout_with_umoci_rootless_and_img_ls() {
    require("setpriv");
    require("umoci");
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let l = dir.path().join("layout");
    let layout = Layout::open_or_create(&l).unwrap();
    rich_image().build().write_to(&layout, Some("app")).unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let nobody = |program: &Path, args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .args(args)
            .env_remove("IMG_LAYOUT")
            .env("IMG_ROOT", &work)
            .output()
            .unwrap()
    };

    let bundle = work.join("bundle");
    let out = nobody(
        Path::new("umoci"),
        &["unpack", "--rootless", "--image", &format!("{}:app", s(&l)), s(&bundle)],
    );
    assert_success(&out, "umoci unpack --rootless as nobody");
    assert_eq!(fs::read_to_string(bundle.join("rootfs/etc/hello")).unwrap(), "hello from img\n");

    // Listing needs no write access; removing says why it cannot, and changes nothing.
    let out = nobody(&bin("img-ls"), &["--layout", s(&l)]);
    assert_success(&out, "img-ls as nobody");
    assert_eq!(json_lines(&out.stdout)[0]["ref"], "app");
    let before = (check::refs(&l), check::blob_names(&l));
    let out = nobody(&bin("img-rm"), &["--layout", s(&l), "app"]);
    assert_eq!(out.status.code(), Some(1));
    let err = img_e2e::stderr(&out);
    assert!(
        err.starts_with("img-rm: ") && err.contains("Permission denied") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!((check::refs(&l), check::blob_names(&l)), before);
}
