//! img-unpack applies layers by the OCI image-spec rules: each edge case is an image made here
//! and the tree it must unpack to.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use img::layer::apply::{Applier, Options, Owners, Whiteouts};
use img::layout::Layout;
use img::test_image::{Compression, Entry, Layer, TestImage};
use img_e2e::rawtar::{self, RawTar};
use img_e2e::tree::{self, Kind, Tree, file};
use img_e2e::{Store, assert_success, json_lines, stderr};
use serde_json::{Value, json};

/// A store with one image in its default layout, unpacked by the binary.
struct Unpacked {
    store: Store,
    out: Output,
}

impl Unpacked {
    fn rootfs(&self) -> PathBuf {
        self.store.path().join("out")
    }

    fn tree(&self) -> Tree {
        assert_success(&self.out, "img-unpack");
        tree::snapshot(&self.rootfs())
    }
}

fn unpack_image(image: &TestImage) -> Unpacked {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    image.build().write_to(&layout, Some("test:1")).unwrap();
    run_unpack(store, &["--rootfs-only"])
}

fn run_unpack(store: Store, extra: &[&str]) -> Unpacked {
    let dest = store.path().join("out");
    let mut args = vec!["--bundle", dest.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("test:1");
    let out = store.run("img-unpack", &args, "");
    img_e2e::assert_walk_agrees(&store, &args, &out);
    Unpacked { store, out }
}

fn unpack_layers(layers: Vec<Layer>) -> Tree {
    let image = layers.into_iter().fold(TestImage::new(), TestImage::layer);
    unpack_image(&image).tree()
}

fn kind(tree: &Tree, path: &str) -> Kind {
    tree.get(path).unwrap_or_else(|| panic!("{path} missing from {:?}", tree::paths(tree))).kind.clone()
}

fn assert_fails(u: &Unpacked, message: &str) {
    assert!(!u.out.status.success(), "img-unpack should have failed");
    let err = stderr(&u.out);
    assert!(err.contains(message), "stderr lacks {message:?}: {err}");
    assert!(!u.rootfs().exists(), "a failed unpack left {}", u.rootfs().display());
    let leftovers: Vec<_> = fs::read_dir(u.store.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".img-unpack"))
        .collect();
    assert!(leftovers.is_empty(), "temp dirs left behind: {leftovers:?}");
}

#[test]
fn files_dirs_links_and_special_files_with_their_metadata() {
    let t = unpack_layers(vec![Layer::new([
        Entry::dir("etc").mode(0o750).owner(0, 4).mtime(1_600_000_000),
        Entry::file("etc/hosts", "127.0.0.1 localhost\n").owner(1000, 1001).mtime(1_500_000_000),
        Entry::file("usr/bin/su", "suid").mode(0o4755),
        Entry::file("usr/bin/wall", "sgid").mode(0o2755).owner(0, 5),
        Entry::dir("tmp").mode(0o1777),
        Entry::symlink("abs", "/etc/hosts"),
        Entry::symlink("rel", "etc/hosts"),
        Entry::symlink("dangling", "/no/such/file"),
        Entry::fifo("run/fifo").mode(0o600),
        Entry::char_device("dev/null", 1, 3),
        Entry::block_device("dev/loop0", 7, 0),
        Entry::file("usr/bin/ping", "cap")
            .xattr("security.capability", [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Entry::file("xattr-file", "x").xattr("user.key", "value").xattr("trusted.t", "1"),
        Entry::dir("xattr-dir").xattr("user.dir", "d"),
        Entry::symlink("xattr-link", "x").xattr("trusted.link", "l"),
    ])]);
    assert_eq!(
        tree::paths(&t),
        [
            "abs",
            "dangling",
            "dev",
            "dev/loop0",
            "dev/null",
            "etc",
            "etc/hosts",
            "rel",
            "run",
            "run/fifo",
            "tmp",
            "usr",
            "usr/bin",
            "usr/bin/ping",
            "usr/bin/su",
            "usr/bin/wall",
            "xattr-dir",
            "xattr-file",
            "xattr-link",
        ]
    );
    let etc = &t["etc"];
    assert_eq!((etc.kind.clone(), etc.mode, etc.gid, etc.mtime), (Kind::Dir, 0o750, 4, 1_600_000_000));
    let hosts = &t["etc/hosts"];
    assert_eq!(hosts.kind, file("127.0.0.1 localhost\n"));
    assert_eq!((hosts.mode, hosts.uid, hosts.gid, hosts.mtime), (0o644, 1000, 1001, 1_500_000_000));
    assert_eq!(t["usr/bin/su"].mode, 0o4755);
    assert_eq!((t["usr/bin/wall"].mode, t["usr/bin/wall"].gid), (0o2755, 5));
    assert_eq!(t["tmp"].mode, 0o1777);
    assert_eq!(kind(&t, "abs"), Kind::Symlink("/etc/hosts".into()));
    assert_eq!(kind(&t, "rel"), Kind::Symlink("etc/hosts".into()));
    assert_eq!(kind(&t, "dangling"), Kind::Symlink("/no/such/file".into()));
    assert_eq!(t["abs"].mtime, 1_700_000_000, "symlink times are set without following");
    assert_eq!((kind(&t, "run/fifo"), t["run/fifo"].mode), (Kind::Fifo, 0o600));
    assert_eq!(kind(&t, "dev/null"), Kind::Char(1, 3));
    assert_eq!(kind(&t, "dev/loop0"), Kind::Block(7, 0));
    assert_eq!(t["dev"].mode, 0o755, "implied parents are 0755");
    assert_eq!(t["usr/bin/ping"].xattrs["security.capability"][0], 1, "capabilities survive the chown");
    assert_eq!(t["xattr-file"].xattrs["user.key"], b"value");
    assert_eq!(t["xattr-file"].xattrs["trusted.t"], b"1");
    assert_eq!(t["xattr-dir"].xattrs["user.dir"], b"d");
    assert_eq!(t["xattr-link"].xattrs["trusted.link"], b"l");
}

#[test]
fn whiteouts_delete_files_and_directories_of_lower_layers() {
    let t = unpack_layers(vec![
        Layer::new([
            Entry::file("a/b/c", "c"),
            Entry::file("a/keep", "k"),
            Entry::file("x", "x"),
            Entry::symlink("a/link", "/x"),
        ]),
        Layer::new([
            Entry::whiteout("a/b"),
            Entry::whiteout("x"),
            Entry::whiteout("a/link"),
            Entry::whiteout("never"),
        ]),
    ]);
    assert_eq!(tree::paths(&t), ["a", "a/keep"]);
}

#[test]
fn a_whiteout_never_hides_entries_of_its_own_layer() {
    let t = unpack_layers(vec![
        Layer::new([Entry::file("before", "old"), Entry::file("after", "old")]),
        Layer::new([
            Entry::file("before", "new"),
            Entry::whiteout("before"),
            Entry::whiteout("after"),
            Entry::file("after", "new"),
        ]),
    ]);
    assert_eq!(tree::paths(&t), ["after", "before"]);
    assert_eq!(kind(&t, "before"), file("new"));
    assert_eq!(kind(&t, "after"), file("new"));
}

#[test]
fn opaque_directories_hide_only_lower_layers_wherever_the_marker_is() {
    let t = unpack_layers(vec![
        Layer::new([
            Entry::file("d/old", "1"),
            Entry::file("d/sub/old", "2"),
            Entry::file("d/sub2/old", "3"),
            Entry::file("e/old", "4"),
        ]),
        Layer::new([
            Entry::file("d/sub/new", "5"),
            Entry::opaque("d"),
            Entry::file("d/new", "6"),
            Entry::opaque("e"),
        ]),
    ]);
    assert_eq!(tree::paths(&t), ["d", "d/new", "d/sub", "d/sub/new", "e"]);
}

#[test]
fn invalid_whiteouts_are_errors_and_leave_nothing() {
    for bad in [&b".wh."[..], b"dir/.wh..", b"dir/.wh.."] {
        let store = Store::new();
        let lower = RawTar::new().file(b"dir/f", b"f").finish();
        let upper = RawTar::new().file(bad, b"").finish();
        rawtar::write_image(&store.layout(), "test:1", &[lower, upper], true, json!({}));
        let u = run_unpack(store, &["--rootfs-only"]);
        assert_fails(&u, "invalid whiteout");
    }
}

#[test]
fn overwrite_rules() {
    let t = unpack_layers(vec![
        Layer::new([
            Entry::file("dir-becomes-file/inner", "i"),
            Entry::file("file-becomes-dir", "f"),
            Entry::file("dir-becomes-link/inner", "i"),
            Entry::dir("merged").mode(0o700).mtime(1),
            Entry::file("merged/lower", "l"),
            Entry::file("target", "untouched"),
            Entry::symlink("link-becomes-file", "target"),
            Entry::file("file", "old"),
        ]),
        Layer::new([
            Entry::file("dir-becomes-file", "now a file"),
            Entry::dir("file-becomes-dir"),
            Entry::file("file-becomes-dir/inner", "now a dir"),
            Entry::symlink("dir-becomes-link", "/target"),
            Entry::dir("merged").mode(0o711).mtime(2),
            Entry::file("merged/upper", "u"),
            Entry::file("link-becomes-file", "replaces the link, not its target"),
            Entry::file("file", "new"),
        ]),
    ]);
    assert_eq!(kind(&t, "dir-becomes-file"), file("now a file"));
    assert_eq!(kind(&t, "file-becomes-dir"), Kind::Dir);
    assert_eq!(kind(&t, "file-becomes-dir/inner"), file("now a dir"));
    assert_eq!(kind(&t, "dir-becomes-link"), Kind::Symlink("/target".into()));
    assert!(!t.contains_key("dir-becomes-link/inner"));
    assert_eq!((t["merged"].mode, t["merged"].mtime), (0o711, 2), "the upper directory's metadata wins");
    assert_eq!(kind(&t, "merged/lower"), file("l"));
    assert_eq!(kind(&t, "merged/upper"), file("u"));
    assert_eq!(kind(&t, "link-becomes-file"), file("replaces the link, not its target"));
    assert_eq!(kind(&t, "target"), file("untouched"));
    assert_eq!(kind(&t, "file"), file("new"));
}

#[test]
fn hardlinks_within_a_layer_and_to_earlier_layers() {
    let t = unpack_layers(vec![
        Layer::new([
            Entry::file("lower", "L"),
            Entry::file("broken", "B"),
            Entry::hardlink("broken-link", "broken"),
        ]),
        Layer::new([
            Entry::file("a", "A").mode(0o640),
            Entry::hardlink("b", "a"),
            Entry::hardlink("dir/c", "/a"),
            Entry::hardlink("to-lower", "lower"),
            Entry::file("broken", "replaced"),
        ]),
    ]);
    assert_eq!(t["a"].link_group.as_deref(), Some("a"));
    assert_eq!(t["b"].link_group.as_deref(), Some("a"));
    assert_eq!(t["dir/c"].link_group.as_deref(), Some("a"));
    assert_eq!((kind(&t, "b"), t["b"].mode), (file("A"), 0o640));
    assert_eq!(t["to-lower"].link_group.as_deref(), Some("lower"));
    assert_eq!(kind(&t, "to-lower"), file("L"));
    assert_eq!(t["broken"].link_group, None, "replacing a linked file breaks the link");
    assert_eq!(kind(&t, "broken-link"), file("B"));
}

#[test]
fn long_names_gnu_and_pax_and_non_utf8_names() {
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let t = unpack_layers(vec![Layer::new([
        Entry::file(&long, "gnu long name"),
        Entry::symlink("long-link", &"t".repeat(200)),
    ])]);
    assert_eq!(kind(&t, &long), file("gnu long name"));
    assert_eq!(kind(&t, "long-link"), Kind::Symlink("t".repeat(200)));

    let pax_name = format!("{}/pax-file", "p".repeat(200));
    let tar = RawTar::new()
        .pax(&[("path", pax_name.as_bytes()), ("mtime", b"1234567890.5")])
        .file(b"short-name-overridden", b"pax")
        .file(b"caf\xe9-\xff", b"latin1")
        .pax(&[("path", b"\xfe\xfd-pax")])
        .file(b"ignored", b"pax bytes")
        .finish();
    let store = Store::new();
    rawtar::write_image(&store.layout(), "test:1", &[tar], false, json!({}));
    let t = run_unpack(store, &["--rootfs-only"]).tree();
    assert_eq!(kind(&t, &pax_name), file("pax"));
    assert_eq!(t[&pax_name].mtime, 1_234_567_890);
    assert_eq!(kind(&t, r"caf\xe9-\xff"), file("latin1"));
    assert_eq!(kind(&t, r"\xfe\xfd-pax"), file("pax bytes"));
    assert!(!t.contains_key("short-name-overridden") && !t.contains_key("ignored"));
}

#[test]
fn libarchive_xattr_records_as_bsdtar_writes_them() {
    // bsdtar writes each xattr twice: SCHILY raw, LIBARCHIVE with the name percent-encoded and
    // the value in base64. Alone, the LIBARCHIVE record counts; beside a SCHILY one, SCHILY wins.
    let tar = RawTar::new()
        .pax(&[("LIBARCHIVE.xattr.user.only%3Dlibarchive", b"dmFsdWU=")])
        .file(b"only", b"x")
        .pax(&[("LIBARCHIVE.xattr.user.both", b"bGli"), ("SCHILY.xattr.user.both", b"schily")])
        .file(b"both", b"y")
        .finish();
    let store = Store::new();
    rawtar::write_image(&store.layout(), "test:1", &[tar], false, json!({}));
    let t = run_unpack(store, &["--rootfs-only"]).tree();
    assert_eq!(t["only"].xattrs["user.only=libarchive"], b"value");
    assert_eq!(t["both"].xattrs["user.both"], b"schily");
    assert_eq!(t["both"].xattrs.len(), 1);

    let bad = RawTar::new().pax(&[("LIBARCHIVE.xattr.user.b", b"not base64!")]).file(b"bad", b"z").finish();
    let store = Store::new();
    rawtar::write_image(&store.layout(), "test:1", &[bad], false, json!({}));
    assert_fails(
        &run_unpack(store, &["--rootfs-only"]),
        "the LIBARCHIVE.xattr record of user.b is not base64",
    );
}

#[test]
fn every_compression_and_media_type() {
    let layers = || {
        [Layer::new([Entry::file("one", "1")]), Layer::new([Entry::file("two", "2"), Entry::whiteout("one")])]
    };
    for (compression, docker) in [
        (Compression::Gzip, false),
        (Compression::Gzip, true),
        (Compression::None, false),
        (Compression::None, true),
        (Compression::Zstd, false),
    ] {
        let mut image = TestImage::new().compression(compression);
        if docker {
            image = image.docker_media_types();
        }
        let t = unpack_image(&layers().into_iter().fold(image, TestImage::layer)).tree();
        assert_eq!(tree::paths(&t), ["two"], "{compression:?} docker={docker}");
    }
}

#[test]
fn multi_member_gzip_layers() {
    let tar = Layer::new([Entry::file("a", "a".repeat(5000)), Entry::file("b", "b")]).tar();
    let (first, second) = tar.split_at(1536);
    let mut gz = img::test_image::gzip(first);
    gz.extend(img::test_image::gzip(second));
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let built = TestImage::new()
        .layer(Layer::new([Entry::file("a", "a".repeat(5000)), Entry::file("b", "b")]))
        .build();
    // Same diff_id, different compressed blob: rewrite the manifest around it.
    let mut manifest: Value = serde_json::from_slice(&built.manifest.bytes).unwrap();
    layout.put_bytes(&gz).unwrap();
    layout.put_bytes(&built.config.bytes).unwrap();
    manifest["layers"][0] = json!(img::document::Descriptor::of(img::media_type::OCI_LAYER_GZIP, &gz));
    let desc =
        layout.put_document(img::media_type::OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap()).unwrap();
    layout.set_ref("test:1", &desc).unwrap();
    let t = run_unpack(store, &["--rootfs-only"]).tree();
    assert_eq!(kind(&t, "a"), file("a".repeat(5000)));
    assert_eq!(kind(&t, "b"), file("b"));
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_an_error() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let built = TestImage::new().layer(Layer::new([Entry::file("a", "a")])).build();
    let mut config: Value = serde_json::from_slice(&built.config.bytes).unwrap();
    config["rootfs"]["diff_ids"][0] = json!(img::digest::Digest::of(b"something else"));
    let config = serde_json::to_vec(&config).unwrap();
    let mut manifest: Value = serde_json::from_slice(&built.manifest.bytes).unwrap();
    manifest["config"] = json!(img::document::Descriptor::of(img::media_type::OCI_CONFIG, &config));
    layout.put_bytes(&config).unwrap();
    layout.put_bytes(&built.layers[0].bytes).unwrap();
    let desc =
        layout.put_document(img::media_type::OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap()).unwrap();
    layout.set_ref("test:1", &desc).unwrap();
    let u = run_unpack(store, &[]);
    assert_fails(&u, "diff_id");
}

#[test]
fn directory_times_are_set_after_their_contents() {
    let t = unpack_layers(vec![
        Layer::new([
            Entry::dir("d").mtime(1_000_000_000),
            Entry::file("d/f", "f"),
            Entry::dir("d/e").mtime(1_100_000_000),
        ]),
        Layer::new([
            Entry::file("d/e/g", "g"),
            Entry::dir("d2").mtime(1_200_000_000),
            Entry::file("d2/h", "h"),
        ]),
    ]);
    assert_eq!(t["d"].mtime, 1_000_000_000);
    assert_eq!(t["d/e"].mtime, 1_100_000_000, "a later layer's files do not change a lower directory's time");
    assert_eq!(t["d2"].mtime, 1_200_000_000);
}

#[test]
fn bundle_config_follows_the_image_config() {
    let image = TestImage::new()
        .layer(Layer::new([
            Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
            Entry::file("etc/group", "root:x:0:\napp:x:1000:\nwheel:x:10:app\n"),
        ]))
        .run_config("Entrypoint", json!(["/bin/app", "--flag"]))
        .run_config("Cmd", json!(["arg"]))
        .run_config("Env", json!(["A=1"]))
        .run_config("WorkingDir", json!("/work"))
        .run_config("User", json!("app"))
        .run_config("Labels", json!({"l": "v"}))
        .annotation("org.example.a", "b");
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let built = image.build();
    built.write_to(&layout, Some("test:1")).unwrap();
    let dest = store.path().join("bundle");
    let args = ["--bundle", dest.to_str().unwrap(), "test:1"];
    let records = store.records("img-unpack", &args, "");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["bundle"], json!(dest));
    assert_eq!(records[0]["rootfs"], json!(dest.join("rootfs")));
    assert_eq!(records[0]["image"]["digest"], json!(built.manifest.descriptor.digest));
    assert_eq!(records[0]["image"]["ref"], "test:1");

    let config: Value = serde_json::from_slice(&fs::read(dest.join("config.json")).unwrap()).unwrap();
    let p = &config["process"];
    assert_eq!(p["args"], json!(["/bin/app", "--flag", "arg"]));
    assert_eq!(p["cwd"], "/work");
    assert_eq!(p["user"], json!({"uid": 1000, "gid": 1000, "additionalGids": [10]}));
    let env: Vec<&str> = p["env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"A=1") && env.contains(&"HOME=/home/app"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(p["capabilities"]["bounding"].as_array().unwrap().contains(&json!("CAP_NET_BIND_SERVICE")));
    assert_eq!(config["root"]["path"], "rootfs");
    assert_eq!(config["annotations"]["l"], "v");
    assert_eq!(config["annotations"]["org.example.a"], "b");
    assert!(config["linux"]["maskedPaths"].as_array().unwrap().contains(&json!("/proc/kcore")));
    assert!(config["mounts"].as_array().unwrap().iter().any(|m| m["destination"] == "/proc"));

    // Unpacking the same image again is a no-op that prints the same record.
    let again = store.records("img-unpack", &args, "");
    assert_eq!(again, records);
    // And a record on stdin names the image as well as an argument does.
    let line = serde_json::to_string(&records[0]).unwrap();
    let from_stdin = store.records("img-unpack", &["--bundle", dest.to_str().unwrap()], &line);
    assert_eq!(from_stdin, records);
    // Something else in the way is an error, not overwritten.
    let other = store.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("mine"), "x").unwrap();
    let out = store.run("img-unpack", &["--bundle", other.to_str().unwrap(), "test:1"], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(fs::read(other.join("mine")).unwrap(), b"x");
}

#[test]
fn default_bundle_directory_is_under_the_store() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new()
        .layer(Layer::new([Entry::file("f", "f")]))
        .build()
        .write_to(&layout, Some("test:1"))
        .unwrap();
    let out = store.run("img-unpack", &[], "test:1\n");
    assert_success(&out, "img-unpack");
    let rec = &json_lines(&out.stdout)[0];
    let bundle = PathBuf::from(rec["bundle"].as_str().unwrap());
    assert!(bundle.starts_with(store.path().join("bundles")), "{}", bundle.display());
    assert!(bundle.join("config.json").is_file() && bundle.join("rootfs/f").is_file());
}

/// Overlay-form whiteouts, for per-layer snapshots (img-run): the library, not the tool.
#[test]
fn overlay_whiteouts_for_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let tar = Layer::new([
        Entry::whiteout("gone"),
        Entry::opaque("opq"),
        Entry::file("opq/new", "n"),
        Entry::file("kept", "k"),
        Entry::whiteout("kept"),
    ])
    .tar();
    let mut applier =
        Applier::new(dir.path(), Options { whiteouts: Whiteouts::Overlay, owners: Owners::Chown }).unwrap();
    applier.apply(tar.as_slice()).unwrap();
    applier.finish().unwrap();
    let t = tree::snapshot(dir.path());
    assert_eq!(tree::paths(&t), ["gone", "kept", "opq", "opq/new"]);
    assert_eq!(kind(&t, "gone"), Kind::Char(0, 0));
    assert_eq!(kind(&t, "kept"), file("k"));
    assert_eq!(t["opq"].xattrs["trusted.overlay.opaque"], b"y");
}

/// Not root: files belong to the user, owners go to `user.rootlesscontainers`, devices are
/// skipped with one warning.
#[test]
fn rootless_unpack_keeps_owners_in_an_xattr() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new()
        .layer(Layer::new([
            Entry::file("owned", "o").owner(1000, 1001),
            Entry::file("root-owned", "r"),
            Entry::dir("ro").mode(0o555),
            Entry::file("ro/inside", "i").mode(0o400),
            Entry::char_device("dev/null", 1, 3),
            Entry::char_device("dev/zero", 1, 5),
        ]))
        .build()
        .write_to(&layout, Some("test:1"))
        .unwrap();
    let dest = store.path().join("work/rootfs");
    let out = unpack_as_nobody(&store, &["--rootfs-only", "--bundle", dest.to_str().unwrap(), "test:1"]);
    assert_success(&out, "img-unpack as nobody");
    let err = stderr(&out);
    assert_eq!(err.matches("device").count(), 1, "one warning about devices: {err}");
    let t = tree::snapshot(&dest);
    assert_eq!(tree::paths(&t), ["dev", "owned", "ro", "ro/inside", "root-owned"]);
    assert_eq!((t["owned"].uid, t["owned"].gid), (65534, 65534));
    assert_eq!(t["owned"].xattrs["user.rootlesscontainers"], img::layer::apply::rootless_owner(1000, 1001));
    assert!(!t["root-owned"].xattrs.contains_key("user.rootlesscontainers"));
    assert_eq!((t["ro"].mode, t["ro/inside"].mode), (0o555, 0o400));
    // The rootfs belongs to the user who unpacked it.
    assert_eq!(fs::metadata(&dest).unwrap().uid(), 65534);
}

/// Runs img-unpack as nobody, with a work directory (`<store>/work`) that nobody owns.
fn unpack_as_nobody(store: &Store, args: &[&str]) -> Output {
    chmod_tree(store.path(), 0o755);
    let work = store.path().join("work");
    fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(img_e2e::bin("img-unpack"))
        .args(["--layout", store.layout().to_str().unwrap()])
        .args(args)
        .env("IMG_ROOT", &work)
        .output()
        .unwrap()
}

#[test]
fn a_rootless_failure_leaves_nothing_either() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new()
        .layer(Layer::new([Entry::dir("ro").mode(0o555), Entry::file("ro/f", "f").mode(0o400)]))
        .run_config("User", json!("ghost"))
        .build()
        .write_to(&layout, Some("test:1"))
        .unwrap();
    let dest = store.path().join("work/bundle");
    let out = unpack_as_nobody(&store, &["--bundle", dest.to_str().unwrap(), "test:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unable to find user ghost"), "{}", stderr(&out));
    let left: Vec<_> = fs::read_dir(store.path().join("work")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn chmod_tree(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let md = fs::symlink_metadata(path).unwrap();
    if md.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        for e in fs::read_dir(path).unwrap() {
            chmod_tree(&e.unwrap().path(), mode);
        }
    } else if md.is_file() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[test]
fn platform_picks_from_an_index_and_errors_are_one_line() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let amd =
        TestImage::new().platform("linux/amd64").layer(Layer::new([Entry::file("arch", "amd64")])).build();
    let arm =
        TestImage::new().platform("linux/arm64").layer(Layer::new([Entry::file("arch", "arm64")])).build();
    img::test_image::BuiltIndex::new(vec![amd, arm.clone()], false)
        .write_to(&layout, Some("multi:1"))
        .unwrap();
    let dest = store.path().join("arm");
    let args = ["--rootfs-only", "--platform", "linux/arm64", "--bundle", dest.to_str().unwrap(), "multi:1"];
    let records = store.records("img-unpack", &args, "");
    assert_eq!(records[0]["image"]["platform"], "linux/arm64");
    assert_eq!(records[0]["image"]["manifest"], json!(arm.manifest.descriptor.digest));
    assert_eq!(records[0]["bundle"], Value::Null);
    assert_eq!(fs::read(dest.join("arch")).unwrap(), b"arm64");

    for (args, message, code) in [
        (vec!["--platform", "linux/s390x", "multi:1"], "no image for linux/s390x", 1),
        (vec!["nope:1"], "no such image", 1),
        // Nothing named and nothing upstream (stdin is /dev/null) is a usage error.
        (vec![], "no image given", 2),
    ] {
        let out = store.run("img-unpack", &args, "");
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with("img-unpack: ") && err.contains(message), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}
