//! img-unpack against the real peers: the tree it makes equals `umoci unpack`'s for the same
//! layout, and `runc run` runs the bundle it makes, unchanged.

use std::fs;
use std::path::Path;
use std::process::Command;

use img::layout::Layout;
use img::test_image::{self, Entry, Layer, TestImage};
use img_e2e::tree::{self, Ignore};
use img_e2e::{Store, assert_success, peer, require};
use serde_json::json;

/// Unpacks ref `name` of the store's layout with umoci and with img-unpack; returns both
/// rootfs trees.
fn both(store: &Store, name: &str) -> (tree::Tree, tree::Tree) {
    let layout = store.layout();
    let umoci_bundle = store.path().join("umoci");
    peer(
        "umoci",
        &["unpack", "--image", &format!("{}:{name}", layout.display()), umoci_bundle.to_str().unwrap()],
    );
    let ours = store.path().join("ours");
    let out = store.run("img-unpack", &["--bundle", ours.to_str().unwrap(), name], "");
    assert_success(&out, "img-unpack");
    (tree::snapshot(&umoci_bundle.join("rootfs")), tree::snapshot(&ours.join("rootfs")))
}

fn assert_same(umoci: &tree::Tree, ours: &tree::Tree, ignore: Ignore) {
    let diff = tree::diff(umoci, ours, ignore);
    assert!(diff.is_empty(), "umoci (first) and img-unpack (second) differ:\n{}", diff.join("\n"));
}

/// A layer with a directory entry for every parent its entries imply, so that no directory's
/// mtime is the time of the unpack (which no two tools share).
fn explicit(entries: impl IntoIterator<Item = Entry>) -> Layer {
    let entries: Vec<Entry> = entries.into_iter().collect();
    let declared: std::collections::BTreeSet<String> =
        entries.iter().map(|e| e.path.trim_end_matches('/').to_string()).collect();
    let mut parents = std::collections::BTreeSet::new();
    for e in &entries {
        let mut p = e.path.trim_end_matches('/');
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !declared.contains(parent) {
                parents.insert(parent.to_string());
            }
            p = parent;
        }
    }
    Layer::new(parents.iter().map(|p| Entry::dir(p)).chain(entries))
}

fn edge_cases() -> TestImage {
    TestImage::new()
        .layer(explicit([
            Entry::dir("etc").mtime(1_600_000_000),
            Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            Entry::file("etc/shadow", "secret").mode(0o640).owner(0, 42),
            Entry::dir("home/user").owner(1000, 1000).mode(0o700),
            Entry::file("home/user/.profile", "export A=1\n").owner(1000, 1000).mtime(1_650_000_000),
            Entry::file("usr/bin/passwd", "suid binary").mode(0o4755),
            Entry::file("usr/bin/crontab", "sgid binary").mode(0o2755).owner(0, 102),
            Entry::dir("tmp").mode(0o1777),
            Entry::file("usr/lib/lib.so.1", "library"),
            Entry::symlink("usr/lib/lib.so", "lib.so.1"),
            Entry::symlink("var-run", "/run"),
            Entry::file("usr/bin/gzip", "gzip"),
            Entry::hardlink("usr/bin/gunzip", "usr/bin/gzip"),
            Entry::hardlink("usr/bin/zcat", "usr/bin/gzip"),
            Entry::fifo("run/initctl").mode(0o600),
            Entry::char_device("dev/null", 1, 3),
            Entry::file("usr/bin/ping", "ping").xattr("user.note", "kept"),
            Entry::file("old/a", "a"),
            Entry::file("old/sub/b", "b"),
            Entry::file("opaque/lower", "lower"),
            Entry::file("opaque/sub/lower", "lower"),
            Entry::file("gone", "soon"),
        ]))
        .layer(explicit([
            Entry::whiteout("old/sub"),
            Entry::whiteout("gone"),
            Entry::opaque("opaque"),
            Entry::file("opaque/upper", "upper"),
            Entry::hardlink("usr/bin/uncompress", "usr/bin/gzip"),
            Entry::file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
            ),
            Entry::file("srv/data", "data").owner(33, 33).mode(0o600),
        ]))
        .layer(Layer::new([Entry::dir("etc").mode(0o755).mtime(1_700_000_000), Entry::file("etc/new", "n")]))
}

#[test]
fn the_tree_equals_umocis() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    edge_cases().build().write_to(&layout, Some("edge")).unwrap();
    let (umoci, ours) = both(&store, "edge");
    for path in ["old", "old/a", "opaque/upper", "usr/bin/uncompress", "run/initctl", "srv/data"] {
        assert!(ours.contains_key(path), "{path} missing");
    }
    assert!(
        !ours.contains_key("old/sub") && !ours.contains_key("opaque/lower") && !ours.contains_key("gone")
    );
    assert_same(&umoci, &ours, Ignore::default());
}

#[test]
fn the_tree_of_a_busybox_image_equals_umocis() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let image = TestImage::new()
        .compression(test_image::Compression::Gzip)
        .layer(test_image::busybox_layer(&test_image::COMMON_APPLETS).unwrap())
        .layer(Layer::new([
            Entry::whiteout("bin/ps"),
            Entry::file("bin/hello", "#!/bin/sh\necho hi\n").mode(0o755),
        ]));
    image.build().write_to(&layout, Some("busybox")).unwrap();
    let (umoci, ours) = both(&store, "busybox");
    assert_same(&umoci, &ours, Ignore::default());
}

/// runc runs the bundle as img-unpack wrote it, and the command prints what it should.
#[test]
fn runc_runs_the_bundle() {
    require("runc");
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let image = TestImage::new()
        .layer(test_image::busybox_layer(&test_image::COMMON_APPLETS).unwrap())
        .layer(Layer::new([
            Entry::dir("home/app").owner(1000, 1000),
            Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
            Entry::file("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"),
        ]))
        .run_config("Entrypoint", json!(["/bin/sh", "-c"]))
        .run_config(
            "Cmd",
            json!(["echo \"hello $GREETING from $(id -u):$(id -g) groups $(id -G) in $(pwd) home $HOME\""]),
        )
        .run_config("Env", json!(["GREETING=world"]))
        .run_config("User", json!("app"))
        .run_config("WorkingDir", json!("/home/app"));
    image.build().write_to(&layout, Some("app")).unwrap();
    let bundle = store.path().join("bundle");
    let out = store.run("img-unpack", &["--bundle", bundle.to_str().unwrap(), "app"], "");
    assert_success(&out, "img-unpack");

    let state = store.path().join("runc-state");
    let id = format!("img-unpack-test-{}", std::process::id());
    let run = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running runc");
    let _ = Command::new("runc").arg("--root").arg(&state).args(["delete", "--force", &id]).output();
    assert_success(&run, "runc run");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hello world from 1000:1000 groups 1000 50 in /home/app home /home/app\n"
    );
}

/// What umoci unpacks for an image we unpack identically is not a fluke of one image: the
/// bundle directory layout is what runtimes expect too.
#[test]
fn the_bundle_has_config_and_rootfs() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new().layer(Layer::new([Entry::file("f", "f")])).build().write_to(&layout, Some("t")).unwrap();
    let bundle = store.path().join("b");
    let out = store.run("img-unpack", &["--bundle", bundle.to_str().unwrap(), "t"], "");
    assert_success(&out, "img-unpack");
    let mut names: Vec<String> = fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["config.json", "img-unpack.json", "rootfs"]);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["ociVersion"], img::bundle::OCI_VERSION);
    assert!(Path::new(&bundle.join("rootfs/f")).is_file());
}

/// Not root: both tools leave files to the user and keep the image's owners in the
/// `user.rootlesscontainers` xattr; the trees must still be the same.
#[test]
fn the_rootless_tree_equals_umocis() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let image = TestImage::new()
        .layer(explicit([
            Entry::file("owned", "o").owner(1000, 1001),
            Entry::file("group-only", "g").owner(0, 42),
            Entry::dir("home/user").owner(1000, 1000).mode(0o750),
            Entry::file("usr/bin/passwd", "suid").mode(0o4755),
            Entry::symlink("link", "owned").owner(1000, 1000),
            Entry::fifo("fifo").owner(5, 5),
            Entry::file("gz", "gz"),
            Entry::hardlink("gunzip", "gz"),
            Entry::file("old/a", "a"),
        ]))
        .layer(explicit([Entry::whiteout("old/a"), Entry::file("new", "n").owner(7, 7)]));
    image.build().write_to(&layout, Some("rootless")).unwrap();
    chown_tree(store.path(), 65534);
    let nobody = |program: &Path, args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .args(args)
            .env("IMG_ROOT", store.path())
            .output()
            .unwrap();
        assert_success(&out, &format!("{} as nobody", program.display()));
    };
    require("umoci");
    let umoci = store.path().join("umoci");
    let image_arg = format!("{}:rootless", store.layout().display());
    nobody(Path::new("umoci"), &["unpack", "--rootless", "--image", &image_arg, umoci.to_str().unwrap()]);
    let ours = store.path().join("ours");
    nobody(&img_e2e::bin("img-unpack"), &["--bundle", ours.to_str().unwrap(), "rootless"]);
    let (umoci, ours) = (tree::snapshot(&umoci.join("rootfs")), tree::snapshot(&ours.join("rootfs")));
    assert_eq!(ours["owned"].uid, 65534);
    assert!(ours["owned"].xattrs.contains_key("user.rootlesscontainers"));
    assert_same(&umoci, &ours, Ignore::default());
}

fn chown_tree(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), id);
        }
    }
}

/// Unpacked by an unprivileged user, the bundle is a rootless one that runc, run by that same
/// user, runs unchanged.
#[test]
fn runc_runs_a_rootless_bundle() {
    require("runc");
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new()
        .layer(test_image::busybox_layer(&test_image::COMMON_APPLETS).unwrap())
        .run_config("Cmd", json!(["sh", "-c", "echo rootless $(id -u) $(cat /owner)"]))
        .layer(Layer::new([Entry::file("owner", "file").owner(1000, 1000)]))
        .build()
        .write_to(&layout, Some("rl"))
        .unwrap();
    chown_tree(store.path(), 65534);
    let bundle = store.path().join("bundle");
    let as_nobody = |program: &Path| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .env("IMG_ROOT", store.path());
        cmd
    };
    let out = as_nobody(&img_e2e::bin("img-unpack"))
        .args(["--bundle", bundle.to_str().unwrap(), "rl"])
        .output()
        .unwrap();
    assert_success(&out, "img-unpack as nobody");
    let state = store.path().join("runc-state");
    let id = format!("img-unpack-rootless-{}", std::process::id());
    let run = as_nobody(Path::new("runc"))
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = as_nobody(Path::new("runc")).arg("--root").arg(&state).args(["delete", "--force", &id]).output();
    assert_success(&run, "runc run as nobody");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "rootless 0 file\n");
}
