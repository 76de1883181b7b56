//! img-build beside its peers: the same Dockerfile built by buildah gives the same file tree and
//! config fields; a base image that is only in a registry is pulled.

use std::fs;
use std::path::Path;
use std::process::Command;

use img::layout::Layout;
use img::test_image::{COMMON_APPLETS, TestImage, busybox_layer};
use img_e2e::registry::Registry;
use img_e2e::tree::{self, Ignore};
use img_e2e::{Store, assert_success, json_lines, peer, require};
use serde_json::{Value, json};

/// The image config of the one image in an OCI layout written by a peer.
fn config_in(layout: &Path, name: &str) -> Value {
    let layout = Layout::open(layout).unwrap();
    let image = img::layout::resolve::image(&layout, name, None).unwrap();
    serde_json::from_slice(&image.config_bytes).unwrap()
}

/// Mount points buildah leaves in an image after RUN (BuildKit and img-build remove them).
const BUILDAH_STUBS: [&str; 8] =
    ["dev", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "run", "sys"];

#[test]
fn buildah_builds_the_same_tree_and_config() {
    require("buildah");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ctx = w.join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::copy(img::test_image::BUSYBOX, ctx.join("busybox")).unwrap();
    fs::create_dir(ctx.join("conf")).unwrap();
    fs::write(ctx.join("conf/app.conf"), "setting=1\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox --install -s /bin\"]\n\
         ENV APP=/app MODE=test\n\
         WORKDIR $APP\n\
         COPY conf/ ./conf/\n\
         RUN mkdir -p data/sub && echo hi > data/sub/f && ln -s data/sub/f link && chmod 4755 data/sub/f \
             && rm /bin/vi && mkfifo pipe && ln data/sub/f hard\n\
         USER 1000:1000\n\
         EXPOSE 8080 53/udp\n\
         LABEL k=v other=\"two words\"\n\
         ENTRYPOINT [\"/bin/cat\"]\n\
         CMD [\"data/sub/f\"]\n",
    )
    .unwrap();

    // buildah, into its own storage, then out to an OCI layout.
    let (root, runroot, theirs) = (w.join("root"), w.join("runroot"), w.join("theirs"));
    let buildah = |args: &[&str]| {
        let mut all = vec![
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        peer("buildah", &all)
    };
    buildah(&["bud", "--layers", "--isolation", "chroot", "-t", "localhost/cmp:1", ctx.to_str().unwrap()]);
    buildah(&["push", "localhost/cmp:1", &format!("oci:{}:cmp", theirs.display())]);

    let store = Store::new();
    let out = store.run("img-build", &["-t", "localhost/cmp:1", ctx.to_str().unwrap()], "");
    assert_success(&out, "img-build");

    // Trees: both unpacked by umoci, so only the builders differ.
    let ours_dir = w.join("ours-bundle");
    let theirs_dir = w.join("theirs-bundle");
    peer(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:localhost/cmp:1", store.layout().display()),
            ours_dir.to_str().unwrap(),
        ],
    );
    peer("umoci", &["unpack", "--image", &format!("{}:cmp", theirs.display()), theirs_dir.to_str().unwrap()]);
    let ours = tree::snapshot(&ours_dir.join("rootfs"));
    let mut theirs_tree = tree::snapshot(&theirs_dir.join("rootfs"));
    for stub in BUILDAH_STUBS {
        theirs_tree.remove(stub);
    }
    let differences = tree::diff(&ours, &theirs_tree, Ignore { mtimes: true, ..Ignore::default() });
    assert!(differences.is_empty(), "trees differ:\n{}", differences.join("\n"));
    assert!(ours.len() > 200, "busybox's applets are there: {}", ours.len());

    // Config fields docker users rely on.
    let a = config_in(&store.layout(), "localhost/cmp:1");
    let mut b = config_in(&theirs, "cmp");
    b["config"]["Labels"].as_object_mut().unwrap().remove("io.buildah.version");
    for field in ["Env", "WorkingDir", "User", "ExposedPorts", "Labels", "Entrypoint", "Cmd"] {
        assert_eq!(a["config"][field], b["config"][field], "config.{field}");
    }
    for field in ["os", "architecture"] {
        assert_eq!(a[field], b[field]);
    }
    // One layer more: `WORKDIR $APP` makes /app in a layer of its own, as docker (BuildKit)
    // does; buildah makes it inside the next step's layer.
    assert_eq!(
        a["rootfs"]["diff_ids"].as_array().unwrap().len(),
        b["rootfs"]["diff_ids"].as_array().unwrap().len() + 1
    );
    assert_eq!(a["history"].as_array().unwrap().len(), b["history"].as_array().unwrap().len());
}

#[test]
fn a_base_image_only_in_a_registry_is_pulled() {
    let registry = Registry::anonymous();
    let source = Store::new();
    let layout = Layout::open_or_create(source.layout()).unwrap();
    TestImage::new()
        .layer(busybox_layer(&COMMON_APPLETS).unwrap())
        .run_config("Env", json!(["PATH=/bin", "FROM_BASE=yes"]))
        .build()
        .write_to(&layout, Some("localhost/base:1"))
        .unwrap();
    let remote = format!("{}/base:1", registry.host());
    peer(
        "skopeo",
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci:{}:localhost/base:1", source.layout().display()),
            &format!("docker://{remote}"),
        ],
    );

    let store = Store::new();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), format!("FROM {remote}\nRUN echo $FROM_BASE > /seen\n"))
        .unwrap();
    let out = store.run("img-build", &["-t", "localhost/derived:1", ctx.path().to_str().unwrap()], "");
    assert_success(&out, "img-build");
    assert_eq!(json_lines(&out.stdout)[0]["ref"], "localhost/derived:1");
    let listed = store.records("img-ls", &["--json"], "");
    let names: Vec<&str> = listed.iter().filter_map(|r| r["ref"].as_str()).collect();
    assert!(names.contains(&remote.as_str()), "the base was pulled under its name: {names:?}");
    let run = Command::new(img_e2e::bin("img-run"))
        .env("IMG_ROOT", store.path())
        .args(["localhost/derived:1", "--", "cat", "/seen"])
        .output()
        .unwrap();
    assert_success(&run, "img-run");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "yes\n");

    // A base that is nowhere is a clear error.
    fs::write(ctx.path().join("Dockerfile"), format!("FROM {}/nope:1\nRUN true\n", registry.host())).unwrap();
    let out = store.run("img-build", &[ctx.path().to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = img_e2e::stderr(&out);
    assert!(err.lines().count() <= 3 && err.contains("nope"), "{err}");
}
