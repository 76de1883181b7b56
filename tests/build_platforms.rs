//! `img-build --platform linux/amd64,linux/arm64`: each platform built from its own image of
//! a two-platform base, the arm64 RUN steps running arm64 binaries through qemu-user (which
//! `scripts/setup` installs and registers), a `FROM --platform=$BUILDPLATFORM` stage running
//! natively for both, and one index as the result: pushed whole, and run or unpacked by
//! platform.

use std::fs;
use std::path::Path;
use std::process::Output;

use img::layout::Layout;
use img::test_image::{BUSYBOX, BUSYBOX_ARM64, BuiltIndex, TestImage};
use img_e2e::registry::{Auth, Registry};
use img_e2e::{Store, assert_success, json_lines, stderr};
use serde_json::Value;

const BASE: &str = "localhost/busybox:multi";

/// A store whose BASE is an index of a busybox image for amd64 and one for arm64.
fn store_with_base() -> Store {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let image = |binary: &str, platform: &str| {
        TestImage::busybox_from(binary, &["uname", "head", "od"]).platform(platform).build()
    };
    let images = vec![image(BUSYBOX, "linux/amd64"), image(BUSYBOX_ARM64, "linux/arm64")];
    BuiltIndex::new(images, false).write_to(&layout, Some(BASE)).unwrap();
    store
}

fn build(store: &Store, ctx: &Path, dockerfile: &str, args: &[&str]) -> Output {
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = store.command("img-build");
    cmd.args(args).arg(ctx);
    img_e2e::run_with_stdin(&mut cmd, "")
}

/// The files a container of `platform` of `image` shows.
fn cat(store: &Store, image: &str, platform: &str, files: &[&str]) -> String {
    let mut args = vec!["--platform", platform, image, "--", "cat"];
    args.extend(files);
    let out = store.run("img-run", &args, "");
    assert_success(&out, "img-run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The build stage runs on the build machine for both targets (it only reports what it was
/// asked to make); the final stage runs each platform's own `uname`.
const CROSS: &str = "FROM --platform=$BUILDPLATFORM localhost/busybox:multi AS tools\n\
     ARG TARGETPLATFORM\n\
     ARG BUILDPLATFORM\n\
     RUN echo \"$BUILDPLATFORM to $TARGETPLATFORM on $(uname -m)\" > /cross\n\
     FROM localhost/busybox:multi\n\
     ARG TARGETARCH\n\
     COPY --from=tools /cross /cross\n\
     RUN uname -m > /arch && echo \"$TARGETARCH\" > /targetarch\n";

#[test]
fn one_index_of_two_platforms_each_running_its_own_binaries() {
    let store = store_with_base();
    let ctx = tempfile::tempdir().unwrap();
    let args = ["--platform", "linux/amd64,linux/arm64", "-t", "localhost/multi:1"];
    let out = build(&store, ctx.path(), CROSS, &args);
    assert_success(&out, "img-build");
    let log = stderr(&out);
    // The log names each platform with its stage.
    assert!(log.contains("[linux/arm64 tools] RUN") && log.contains("[linux/amd64 1] RUN"), "{log}");

    // One record: the index, no platform of its own.
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["mediaType"], "application/vnd.oci.image.index.v1+json", "{record}");
    assert_eq!(record["ref"], "localhost/multi:1");
    assert!(record.get("platform").is_none(), "{record}");
    let digest = record["digest"].as_str().unwrap().to_string();

    let layout = Layout::open(store.layout()).unwrap();
    let index: Value = serde_json::from_slice(&layout.read_blob(&digest.parse().unwrap()).unwrap()).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    // Each platform's RUN ran its own binaries; the cross stage ran natively for both.
    let amd64 = cat(&store, "localhost/multi:1", "linux/amd64", &["/arch", "/targetarch", "/cross"]);
    assert_eq!(amd64, "x86_64\namd64\nlinux/amd64 to linux/amd64 on x86_64\n");
    let arm64 = cat(&store, "localhost/multi:1", "linux/arm64", &["/arch", "/targetarch", "/cross"]);
    assert_eq!(arm64, "aarch64\narm64\nlinux/amd64 to linux/arm64 on x86_64\n");

    // img-unpack picks a platform from the index too.
    let bundle = tempfile::tempdir().unwrap();
    let dest = bundle.path().join("b");
    let out = store.run(
        "img-unpack",
        &["--platform", "linux/arm64", "--bundle", dest.to_str().unwrap(), "localhost/multi:1"],
        "",
    );
    assert_success(&out, "img-unpack");
    assert_eq!(fs::read_to_string(dest.join("rootfs/arch")).unwrap(), "aarch64\n");

    // Built again: every step of both platforms is cached, and the index is the same.
    let again = build(&store, ctx.path(), CROSS, &args);
    assert_success(&again, "img-build");
    assert_eq!(json_lines(&again.stdout)[0]["digest"], digest.as_str());
    let log = stderr(&again);
    assert!(log.lines().filter(|l| l.contains("] RUN ")).all(|l| l.contains("CACHED")), "{log}");

    // Pushed whole: the registry holds the index and both images.
    let registry = Registry::anonymous();
    let to = format!("{}/multi:1", registry.host());
    let out = store.run("img-push", &["--to", &to], &format!("{record}\n"));
    assert_success(&out, "img-push");
    let raw = img_e2e::peer("skopeo", &["inspect", "--raw", "--tls-verify=false", &format!("docker://{to}")]);
    let pushed: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(pushed, index, "the registry serves the index built");
    for (arch, uname) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let config = img_e2e::peer(
            "skopeo",
            &[
                "inspect",
                "--config",
                "--tls-verify=false",
                "--override-arch",
                arch,
                &format!("docker://{to}"),
            ],
        );
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["architecture"], arch, "{config}");
        let history = config["history"].to_string();
        assert!(history.contains("uname -m > /arch"), "{uname}: {history}");
    }
}

#[test]
fn a_platform_that_cannot_run_here_is_a_clear_error_and_changes_nothing() {
    let store = store_with_base();
    let ctx = tempfile::tempdir().unwrap();
    fs::copy(BUSYBOX, ctx.path().join("busybox")).unwrap();
    let dockerfile = "FROM scratch\nCOPY busybox /bin/sh\nRUN echo hi\n";
    let before = fs::read(store.layout().join("index.json")).unwrap();
    let out = build(
        &store,
        ctx.path(),
        dockerfile,
        &["--platform", "linux/amd64,linux/wasm", "-t", "localhost/no:1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert_eq!(
        last,
        "img-build: Dockerfile:3: linux/wasm: cannot run RUN steps for linux/wasm on this linux/amd64 machine: \
         img-build does not know the binaries of architecture \"wasm\"",
    );
    assert!(out.stdout.is_empty());
    assert_eq!(fs::read(store.layout().join("index.json")).unwrap(), before, "no ref was written");

    // A platform is named once.
    let out = build(&store, ctx.path(), dockerfile, &["--platform", "linux/amd64,linux/amd64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--platform linux/amd64 is given twice"), "{}", stderr(&out));
}

#[test]
fn quiet_prints_the_digest_only_and_output_has_a_tree_per_platform() {
    let store = store_with_base();
    let ctx = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let trees = out_dir.path().join("trees");
    let dockerfile = "FROM localhost/busybox:multi\nRUN uname -m > /arch\n";
    let out = build(
        &store,
        ctx.path(),
        dockerfile,
        &["-q", "--platform", "linux/arm64,linux/amd64", "-o", trees.to_str().unwrap()],
    );
    assert_success(&out, "img-build");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let digest = stdout.strip_suffix('\n').unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71 && !digest.contains('\n'), "{stdout:?}");
    assert!(!stderr(&out).contains("RUN"), "quiet: no build log\n{}", stderr(&out));
    assert_eq!(fs::read_to_string(trees.join("linux_arm64/arch")).unwrap(), "aarch64\n");
    assert_eq!(fs::read_to_string(trees.join("linux_amd64/arch")).unwrap(), "x86_64\n");

    // The untagged index is kept in the layout (listed, not collected).
    let listed = store.run("img-ls", &["--json"], "");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(digest), "the untagged index is kept");
}

/// A CI runner with an empty store rebuilds a two-platform image from the inline cache of the
/// index another runner pushed, through a registry that wants a token: each platform's cache
/// comes from its own image in the index, no RUN step runs, and the index is the same. (The
/// test's token issuer lets anonymous requests pull; pushes need the credentials.)
#[test]
fn a_pushed_index_s_inline_cache_rebuilds_both_platforms_through_a_token_registry() {
    let registry = Registry::start(Auth::Token { user: "ci".into(), password: "s3cret".into() }, false);
    let creds = ["--creds", "ci:s3cret"];
    let a = store_with_base();
    let base = format!("{}/busybox:multi", registry.host());
    let out = a.run("img-push", &["--creds", "ci:s3cret", "--to", &base, BASE], "");
    assert_success(&out, "img-push");
    let image = format!("{}/app:1", registry.host());
    let dockerfile =
        format!("FROM {base}\nRUN uname -m > /arch && head -c 8 /dev/urandom | od -x > /noise\n");
    let platforms = ["--platform", "linux/amd64,linux/arm64"];

    let ctx = tempfile::tempdir().unwrap();
    let mut args = vec!["-t", &image, "--cache-to", "type=inline"];
    args.extend(platforms.iter().chain(&creds));
    let built = build(&a, ctx.path(), &dockerfile, &args);
    assert_success(&built, "img-build");
    let digest = json_lines(&built.stdout)[0]["digest"].as_str().unwrap().to_string();
    let out = a.run("img-push", &["--creds", "ci:s3cret"], &String::from_utf8_lossy(&built.stdout));
    assert_success(&out, "img-push");

    let b = Store::new();
    let from = format!("type=registry,ref={image}");
    // As A, B keeps the cache in the image it makes (the label is part of the config).
    let mut args = vec!["-t", &image, "--cache-from", &from, "--cache-to", "type=inline"];
    args.extend(platforms);
    args.extend(creds);
    let rebuilt = build(&b, ctx.path(), &dockerfile, &args);
    assert_success(&rebuilt, "img-build");
    let log = stderr(&rebuilt);
    let runs: Vec<&str> = log.lines().filter(|l| l.contains("] RUN ")).collect();
    assert_eq!(runs.len(), 2, "{log}");
    assert!(runs.iter().all(|l| l.ends_with("CACHED")), "{log}");
    assert_eq!(json_lines(&rebuilt.stdout)[0]["digest"], digest.as_str(), "{log}");
}

/// The platforms build at the same time: their RUN steps overlap (each records the system's
/// uptime, one clock for every container, when it starts and ends). A failing platform stops
/// the other's RUN step, is the build's error, and no reference is written.
#[test]
fn platforms_build_at_the_same_time_and_a_failure_stops_them_all() {
    let store = store_with_base();
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = "FROM localhost/busybox:multi\n\
         RUN cat /proc/uptime > /start && sleep 2 && cat /proc/uptime > /end\n";
    let out = build(
        &store,
        ctx.path(),
        dockerfile,
        &["--platform", "linux/amd64,linux/arm64", "-t", "localhost/par:1"],
    );
    assert_success(&out, "img-build");
    let interval = |platform: &str| -> (f64, f64) {
        let text = cat(&store, "localhost/par:1", platform, &["/start", "/end"]);
        let at: Vec<f64> =
            text.lines().map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
        (at[0], at[1])
    };
    let (amd64, arm64) = (interval("linux/amd64"), interval("linux/arm64"));
    assert!(amd64.0 < arm64.1 && arm64.0 < amd64.1, "the RUN steps overlap: {amd64:?} {arm64:?}");

    let failing = "FROM localhost/busybox:multi\n\
         RUN if [ \"$(uname -m)\" = aarch64 ]; then exit 3; fi; sleep 60\n";
    let before = fs::read(store.layout().join("index.json")).unwrap();
    let started = std::time::Instant::now();
    let out = build(
        &store,
        ctx.path(),
        failing,
        &["--platform", "linux/amd64,linux/arm64", "-t", "localhost/par:2"],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap().to_string();
    assert!(
        last.starts_with("img-build: Dockerfile:2: linux/arm64: ") && last.ends_with("code: 3"),
        "{last}"
    );
    assert!(!last.contains("stopped"), "the error is the failing platform's: {last}");
    assert!(took < std::time::Duration::from_secs(40), "the amd64 sleep was stopped: {took:?}");
    assert_eq!(fs::read(store.layout().join("index.json")).unwrap(), before, "no ref was written");
}
