//! Archives as transports: `img-pull docker-archive:…|oci-archive:…` imports what `podman save`
//! (and skopeo) write, and the images run; `img-push --to docker-archive:…|oci-archive:…`
//! writes archives podman loads and skopeo reads, through files and pipes. Hostile archives
//! are refused in one line and change nothing.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use img::digest::Digest;
use img::layout::Layout;
use img::test_image::{self, BuiltImage, Entry, Layer, TestImage};
use img_e2e::rawtar::RawTar;
use img_e2e::{Store, assert_success, check, json_lines, peer, require, stderr};
use serde_json::{Value, json};

/// podman with its own storage (vfs, no daemon) in a temp directory.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        require("podman");
        Podman { dir: tempfile::tempdir().unwrap() }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        let d = self.dir.path();
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .env("TMPDIR", d);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert_success(&out, &format!("podman {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Loads an image of our layout into podman's storage (through skopeo's docker-archive).
    fn load_from_layout(&self, layout: &Path, name: &str) {
        let file = self.dir.path().join("transfer.tar");
        let _ = fs::remove_file(&file);
        peer(
            "skopeo",
            &[
                "copy",
                "-q",
                &format!("oci:{}:{name}", layout.display()),
                &format!("docker-archive:{}:{name}", file.display()),
            ],
        );
        self.run(&["load", "-q", "-i", file.to_str().unwrap()]);
    }

    fn image_id(&self, name: &str) -> String {
        self.run(&["image", "inspect", "--format", "{{.Id}}", name]).trim().to_string()
    }
}

/// A busybox image that runs `echo`, with a second layer so layer order matters.
fn busybox_image(seed: &str) -> BuiltImage {
    TestImage::busybox(&[]).layer(Layer::new([Entry::file("etc/seed", seed)])).build()
}

fn source_layout(dir: &Path, images: &[(&str, &BuiltImage)]) -> PathBuf {
    let path = dir.join("source");
    let layout = Layout::open_or_create(&path).unwrap();
    for (name, image) in images {
        image.write_to(&layout, Some(name)).unwrap();
    }
    path
}

/// Runs a tool of this store with a file as stdin.
fn run_with_file(store: &Store, tool: &str, args: &[&str], input: &Path) -> Output {
    store.command(tool).args(args).stdin(File::open(input).unwrap()).output().unwrap()
}

fn img_run_echo(store: &Store, image: &str) {
    let out = store.run("img-run", &["--network", "none", image, "echo", "hi"], "");
    assert_success(&out, &format!("img-run {image}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

fn refs_of(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["ref"].as_str().unwrap()).collect()
}

#[test]
fn podman_saved_archives_import_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let one = busybox_image("one");
    let two = busybox_image("two");
    let source = source_layout(dir.path(), &[("docker.io/library/one:1", &one), ("localhost/two:2", &two)]);
    let podman = Podman::new();
    podman.load_from_layout(&source, "docker.io/library/one:1");
    podman.load_from_layout(&source, "localhost/two:2");

    for format in ["docker-archive", "oci-archive"] {
        let file = dir.path().join(format!("{format}.tar"));
        podman.run(&[
            "save",
            "-q",
            "--format",
            format,
            "-o",
            file.to_str().unwrap(),
            "docker.io/library/one:1",
        ]);
        let store = Store::new();
        let out = store.records("img-pull", &[&format!("{format}:{}", file.display())], "");
        assert_eq!(refs_of(&out), ["docker.io/library/one:1"], "{format}");
        assert_eq!(out[0]["platform"], img::platform::Platform::host().to_string());
        if format == "oci-archive" {
            // podman keeps the manifest it wrote; we keep it byte for byte.
            let index: Value = serde_json::from_slice(&tar_member(&file, "index.json")).unwrap();
            assert_eq!(out[0]["digest"], index["manifests"][0]["digest"]);
        }
        let layout = store.layout();
        check::assert_complete(&layout);
        let listed = store.records("img-ls", &["--json"], "");
        assert_eq!(listed.len(), 1);
        if format == "docker-archive" {
            // The image ID (config digest) is podman's. (Its oci-archive holds a converted
            // config, whose digest the manifest check above covers.)
            let id = podman.image_id("docker.io/library/one:1");
            assert_eq!(config_digest(&layout, &out[0]), format!("sha256:{id}"));
        }
        img_run_echo(&store, "one:1");

        // The same through stdin, into another store: the same digest.
        let piped = Store::new();
        let out2 = run_with_file(&piped, "img-pull", &[&format!("{format}:-")], &file);
        assert_success(&out2, "img-pull from stdin");
        assert_eq!(json_lines(&out2.stdout)[0]["digest"], out[0]["digest"], "{format} through a pipe");
        assert_eq!(check::temp_files(&piped.layout()), 0);
    }

    // A multi-image docker archive: all images, or the one named.
    let multi = dir.path().join("multi.tar");
    podman.run(&[
        "save",
        "-q",
        "-m",
        "-o",
        multi.to_str().unwrap(),
        "docker.io/library/one:1",
        "localhost/two:2",
    ]);
    let store = Store::new();
    let all = store.records("img-pull", &[&format!("docker-archive:{}", multi.display())], "");
    assert_eq!(refs_of(&all), ["docker.io/library/one:1", "localhost/two:2"]);
    img_run_echo(&store, "localhost/two:2");
    let store = Store::new();
    let picked =
        store.records("img-pull", &[&format!("docker-archive:{}:localhost/two:2", multi.display())], "");
    assert_eq!(refs_of(&picked), ["localhost/two:2"]);
    let by_position =
        Store::new().records("img-pull", &[&format!("docker-archive:{}:@0", multi.display())], "");
    assert_eq!(refs_of(&by_position), ["docker.io/library/one:1"]);
    let missing = store.run("img-pull", &[&format!("docker-archive:{}:nope:1", multi.display())], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no image nope:1 in the archive"), "{}", stderr(&missing));
}

#[test]
fn skopeo_written_archives_import_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image("sk");
    let source = source_layout(dir.path(), &[("docker.io/library/sk:1", &image)]);
    let docker = dir.path().join("d.tar");
    let oci = dir.path().join("o.tar");
    let src = format!("oci:{}:docker.io/library/sk:1", source.display());
    peer("skopeo", &["copy", "-q", &src, &format!("docker-archive:{}:sk:1", docker.display())]);
    peer("skopeo", &["copy", "-q", &src, &format!("oci-archive:{}:sk:1", oci.display())]);
    let store = Store::new();
    let d = store.records("img-pull", &[&format!("docker-archive:{}", docker.display())], "");
    let o = store.records("img-pull", &[&format!("oci-archive:{}:sk:1", oci.display())], "");
    assert_eq!(refs_of(&d), ["docker.io/library/sk:1"]);
    assert_eq!(refs_of(&o), ["docker.io/library/sk:1"]);
    assert_eq!(o[0]["digest"], image.manifest.descriptor.digest.to_string(), "oci-archive keeps the digest");
    // docker-archive layers are stored uncompressed: each layer's digest is its diff_id.
    let layout = store.layout();
    let manifest: Value = serde_json::from_slice(&blob(&layout, d[0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(&layout, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers: Vec<&Value> = manifest["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
    let diff_ids: Vec<&Value> = config["rootfs"]["diff_ids"].as_array().unwrap().iter().collect();
    assert_eq!(layers, diff_ids);
    assert!(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar")
    );
    // Importing again changes nothing (the same manifest digest).
    let again = store.records("img-pull", &[&format!("docker-archive:{}", docker.display())], "");
    assert_eq!(again[0]["digest"], d[0]["digest"]);
    img_run_echo(&store, "sk:1");
}

#[test]
fn exports_load_in_podman_and_read_in_skopeo_through_files_and_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image("export");
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    image.write_to(&layout, Some("docker.io/library/exp:1")).unwrap();
    let digest = image.manifest.descriptor.digest.to_string();
    let config = image.config.descriptor.digest.to_string();

    // oci-archive: the digest is kept, for skopeo and for a round trip.
    let oci = dir.path().join("o.tar");
    let out = store.records("img-push", &["--to", &format!("oci-archive:{}", oci.display()), "exp:1"], "");
    assert_eq!(out[0]["digest"], digest);
    // The record is the local image's; `pushed` names the archive by its absolute path.
    assert_eq!(out[0]["ref"], "docker.io/library/exp:1");
    assert_eq!(out[0]["pushed"], format!("oci-archive:{}", oci.display()));
    let relative = img_e2e::run_with_stdin(
        store.command("img-push").current_dir(dir.path()).args(["--to", "oci-archive:rel.tar", "exp:1"]),
        "",
    );
    assert_success(&relative, "img-push --to oci-archive:rel.tar");
    let written = dir.path().join("rel.tar");
    assert_eq!(json_lines(&relative.stdout)[0]["pushed"], format!("oci-archive:{}", written.display()));
    let inspected: Value =
        serde_json::from_str(&peer("skopeo", &["inspect", &format!("oci-archive:{}", oci.display())]))
            .unwrap();
    assert_eq!(inspected["Digest"], digest);
    let back = Store::new().records("img-pull", &[&format!("oci-archive:{}", oci.display())], "");
    assert_eq!(
        (back[0]["ref"].as_str(), back[0]["digest"].as_str()),
        (Some("docker.io/library/exp:1"), Some(&*digest))
    );

    // docker-archive: the config (image ID) and diff_ids are kept, the digest cannot be; a
    // warning says so.
    let docker = dir.path().join("d.tar");
    let pushed = store.run(
        "img-push",
        &["--to", &format!("docker-archive:{}:exp:renamed", docker.display()), "exp:1"],
        "",
    );
    assert_success(&pushed, "img-push --to docker-archive");
    assert!(stderr(&pushed).contains("is not kept"), "{}", stderr(&pushed));
    let record = &json_lines(&pushed.stdout)[0];
    assert_eq!((record["digest"].as_str(), record["config"].as_str()), (Some(&*digest), Some(&*config)));
    assert_eq!(record["pushed"], format!("docker-archive:{}:exp:renamed", docker.display()));
    let inspected: Value =
        serde_json::from_str(&peer("skopeo", &["inspect", &format!("docker-archive:{}", docker.display())]))
            .unwrap();
    let diff_ids: Vec<Value> = image
        .layers
        .iter()
        .map(|l| {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(l.bytes.as_slice()), &mut raw)
                .unwrap();
            Value::from(Digest::of(&raw).to_string())
        })
        .collect();
    assert_eq!(inspected["Layers"].as_array().unwrap(), &diff_ids);
    let podman = Podman::new();
    podman.run(&["load", "-q", "-i", docker.to_str().unwrap()]);
    assert_eq!(format!("sha256:{}", podman.image_id("docker.io/library/exp:renamed")), config);
    podman.run(&["load", "-q", "-i", oci.to_str().unwrap()]);
    assert_eq!(format!("sha256:{}", podman.image_id("docker.io/library/exp:1")), config);

    // Through pipes: `img-push --to FORMAT:- | podman load`; stdout carries only the archive.
    for (format, name) in
        [("docker-archive", "docker.io/library/exp:piped"), ("oci-archive", "docker.io/library/exp:ocipiped")]
    {
        let mut push = store
            .command("img-push")
            .args(["--to", &format!("{format}:-:{name}"), "exp:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let load = podman.command().args(["load", "-q"]).stdin(push.stdout.take().unwrap()).output().unwrap();
        let pushed = push.wait_with_output().unwrap();
        assert_success(&pushed, &format!("img-push --to {format}:-"));
        assert_success(&load, &format!("podman load of {format}"));
        assert_eq!(format!("sha256:{}", podman.image_id(name)), config, "{format}");
    }
    // The stream itself is a tar, not records.
    let streamed = dir.path().join("streamed.tar");
    let status = store
        .command("img-push")
        .args(["--to", "oci-archive:-", "exp:1"])
        .stdout(File::create(&streamed).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read(&streamed).unwrap(),
        fs::read(&oci).unwrap(),
        "the same archive through a file and a pipe"
    );
}

// ---- hostile archives ----

/// A docker archive made member by member.
fn docker_archive(config: &[u8], layers: &[(&str, &[u8])], manifest: &Value) -> Vec<u8> {
    let mut tar = RawTar::new().file(b"config.json", config);
    for (name, content) in layers {
        tar = tar.file(name.as_bytes(), content);
    }
    tar.file(b"manifest.json", manifest.to_string().as_bytes()).finish()
}

fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

#[test]
fn hostile_archives_are_refused_in_one_line_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new()
        .layer(Layer::new([Entry::file("a", "a")]))
        .build()
        .write_to(&layout, Some("docker.io/library/keep:1"))
        .unwrap();
    let index_before = fs::read(store.layout().join("index.json")).unwrap();
    let blobs_before = check::blob_names(&store.layout());

    let layer = Layer::new([Entry::file("etc/x", "x")]).tar();
    let layer_id = Digest::of(&layer).to_string();
    let good_config = config_for(std::slice::from_ref(&layer_id));
    let listing = json!([{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": ["layer.tar"]}]);
    let oci_blob = |content: &[u8]| format!("blobs/sha256/{}", Digest::of(content).hex());

    let mut cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "a member named ../x",
            "docker-archive",
            RawTar::new().file(b"../x", b"escape").file(b"manifest.json", b"[]").finish(),
            "path traversal",
        ),
        (
            "manifest.json names a missing layer",
            "docker-archive",
            docker_archive(&good_config, &[], &listing),
            "layer.tar is missing from the archive",
        ),
        (
            "a layer that is not its diff_id",
            "docker-archive",
            docker_archive(
                &good_config,
                &[("layer.tar", b"not the layer, padded to look like one")],
                &listing,
            ),
            "but the config's diff_id is",
        ),
        (
            "a layer linking outside the archive",
            "docker-archive",
            {
                let t = RawTar::new()
                    .file(b"config.json", &good_config)
                    .symlink(b"layer.tar", b"../../etc/passwd");
                t.file(b"manifest.json", listing.to_string().as_bytes()).finish()
            },
            "links outside the archive",
        ),
        (
            "an oversized manifest.json",
            "docker-archive",
            RawTar::new().file(b"manifest.json", &vec![b' '; 5 << 20]).finish(),
            "manifest.json in the archive is",
        ),
        (
            "an OCI blob whose content is not its digest",
            "oci-archive",
            {
                let config = config_for(std::slice::from_ref(&layer_id));
                let manifest = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_id, "size": layer.len()}],
                }))
                .unwrap();
                let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
                     "annotations": {"org.opencontainers.image.ref.name": "evil:1"}}]}))
                .unwrap();
                let mut tampered = layer.clone();
                let last = tampered.len() - 1;
                tampered[last] ^= 1;
                RawTar::new()
                    .file(b"oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .file(b"index.json", &index)
                    .file(oci_blob(&manifest).as_bytes(), &manifest)
                    .file(oci_blob(&config).as_bytes(), &config)
                    .file(format!("blobs/sha256/{}", Digest::of(&layer).hex()).as_bytes(), &tampered)
                    .finish()
            },
            "is corrupt in the archive",
        ),
    ];

    let mut truncated = RawTar::new()
        .file(b"manifest.json", listing.to_string().as_bytes())
        .file(b"config.json", &good_config)
        .file(b"layer.tar", &layer)
        .finish();
    truncated.truncate(truncated.len() - layer.len() / 2 - 1024);
    cases.push(("a truncated archive", "docker-archive", truncated, "the archive is truncated"));
    let long_name = vec![b'a'; 2 << 20];
    cases.push((
        "2 MiB of PAX headers",
        "docker-archive",
        RawTar::new().pax(&[("path", &long_name)]).file(b"x", b"").finish(),
        "headers exceed",
    ));
    let big_config = config_for(&vec![layer_id.clone(); 150_000]);
    assert!(big_config.len() > 8 << 20);
    cases.push((
        "an oversized config",
        "docker-archive",
        RawTar::new()
            .file(b"manifest.json", listing.to_string().as_bytes())
            .file(b"config.json", &big_config)
            .finish(),
        "config.json in the archive is",
    ));

    for (what, format, bytes, needle) in cases {
        let file = dir.path().join("hostile.tar");
        fs::write(&file, &bytes).unwrap();
        for via_stdin in [false, true] {
            let out = if via_stdin {
                run_with_file(&store, "img-pull", &[&format!("{format}:-")], &file)
            } else {
                store.run("img-pull", &[&format!("{format}:{}", file.display())], "")
            };
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: {err}");
            assert!(
                err.starts_with(&format!("img-pull: {format}:")) && err.contains(needle),
                "{what}: {err}"
            );
            assert!(out.stdout.is_empty(), "{what}");
            assert_eq!(
                fs::read(store.layout().join("index.json")).unwrap(),
                index_before,
                "{what}: index.json changed"
            );
            assert_eq!(check::blob_names(&store.layout()), blobs_before, "{what}: new blobs");
            assert_eq!(check::temp_files(&store.layout()), 0, "{what}: temp files left");
        }
    }
    assert!(!dir.path().join("x").exists() && !dir.path().parent().unwrap().join("x").exists());

    // A pipe larger than --max-size is refused, and leaves nothing.
    let big = dir.path().join("big.tar");
    let mut f = File::create(&big).unwrap();
    f.write_all(&RawTar::new().file(b"padding", &vec![0u8; 3 << 20]).finish()).unwrap();
    let out = run_with_file(&store, "img-pull", &["--max-size", "1048576", "docker-archive:-"], &big);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("larger than 1 MiB"), "{}", stderr(&out));
    assert_eq!(fs::read(store.layout().join("index.json")).unwrap(), index_before);
}

// ---- helpers ----

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    fs::read(layout.join("blobs").join(alg).join(hex)).unwrap()
}

fn config_digest(layout: &Path, record: &Value) -> String {
    let manifest: Value = serde_json::from_slice(&blob(layout, record["digest"].as_str().unwrap())).unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// A member of a tar file, read with the tar crate.
fn tar_member(file: &Path, name: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(File::open(file).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut out).unwrap();
            return out;
        }
    }
    panic!("{name} is not in {}", file.display())
}

/// docker 25+ `docker save`: an OCI layout and a classic manifest.json in one tar, layers
/// uncompressed. Imported through index.json, keeping docker's manifest digest.
fn docker25_archive(image: &BuiltImage, annotations: Value) -> Vec<u8> {
    let path = |d: &img::document::Descriptor| format!("blobs/sha256/{}", d.digest.hex());
    let mut entry = serde_json::to_value(&image.manifest.descriptor).unwrap();
    entry["annotations"] = annotations;
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]});
    let listing = json!([{
        "Config": path(&image.config.descriptor),
        "RepoTags": ["d25:from-manifest-json"],
        "Layers": image.layers.iter().map(|l| path(&l.descriptor)).collect::<Vec<_>>(),
    }]);
    let mut tar = RawTar::new()
        .file(b"oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .dir(b"blobs/")
        .dir(b"blobs/sha256/");
    for blob in image.blobs() {
        tar = tar.file(path(&blob.descriptor).as_bytes(), &blob.bytes);
    }
    tar.file(b"index.json", index.to_string().as_bytes())
        .file(b"manifest.json", listing.to_string().as_bytes())
        .file(b"repositories", b"{}")
        .finish()
}

#[test]
fn docker_25_archives_keep_their_manifest_digest() {
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage::new()
        .layer(test_image::busybox_layer(&test_image::COMMON_APPLETS).unwrap())
        .compression(test_image::Compression::None)
        .build();
    let digest = image.manifest.descriptor.digest.to_string();
    let file = dir.path().join("d25.tar");
    let named = json!({"io.containerd.image.name": "docker.io/library/d25:1", "org.opencontainers.image.ref.name": "1"});
    fs::write(&file, docker25_archive(&image, named)).unwrap();
    let store = Store::new();
    let out = store.records("img-pull", &[&format!("docker-archive:{}", file.display())], "");
    assert_eq!(refs_of(&out), ["docker.io/library/d25:1"]);
    assert_eq!(out[0]["digest"], digest);
    img_run_echo(&store, "d25:1");
    // Without names in index.json, manifest.json's RepoTags name it.
    fs::write(&file, docker25_archive(&image, json!({}))).unwrap();
    let out = store.records("img-pull", &[&format!("docker-archive:{}", file.display())], "");
    assert_eq!(refs_of(&out), ["docker.io/library/d25:from-manifest-json"]);
    assert_eq!(out[0]["digest"], digest);
}
