//! Image mode: per-layer snapshots extracted once and stacked with overlayfs, whiteouts,
//! the writable layer kept on request, platform choice, and the rootless copy fallback.

mod run_common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use img::layout::Layout;
use img::test_image::{BuiltIndex, Entry, Layer};
use run_common::*;

#[test]
fn snapshots_are_extracted_once_and_stacked() {
    let env = Env::with_image(busybox_image(
        &[],
        vec![
            Layer::new([Entry::file("data/a", "1"), Entry::file("data/b", "1"), Entry::file("keep/x", "1")]),
            Layer::new([Entry::whiteout("data/a"), Entry::file("data/b", "2"), Entry::opaque("keep")]),
        ],
    ));
    assert_eq!(env.sh(&[], "ls /data; cat /data/b; echo; ls /keep | wc -l"), "b\n2\n0\n");
    let snapshots = env.store.path().join("snapshots");
    let dirs: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    assert_eq!(dirs.len(), 3, "one snapshot per layer: {dirs:?}");
    // A second run uses the snapshots as they are: a file slipped into one shows up.
    let busybox_snapshot = dirs.iter().find(|d| d.join("bin/busybox").exists()).unwrap();
    std::fs::write(busybox_snapshot.join("marker"), "from the snapshot").unwrap();
    assert_eq!(env.sh(&[], "cat /marker"), "from the snapshot");
    // Writes go to the container's own upper directory, never into a snapshot.
    env.sh(&[], "echo changed > /marker; rm /bin/busybox.gone 2>/dev/null; echo new > /data/new");
    assert_eq!(std::fs::read_to_string(busybox_snapshot.join("marker")).unwrap(), "from the snapshot");
    assert_eq!(std::fs::read_dir(env.store.path().join("containers")).unwrap().count(), 0);
}

#[test]
fn keep_leaves_the_writable_layer_and_says_where() {
    let env = Env::new();
    let out = env.run(&["--keep", "--name", "kept", "bb:1", "sh", "-c", "echo hi > /made"]);
    img_e2e::assert_success(&out, "img-run --keep");
    let upper = env.store.path().join("containers/kept/upper");
    assert!(img_e2e::stderr(&out).contains(&upper.display().to_string()), "{}", img_e2e::stderr(&out));
    assert_eq!(std::fs::read_to_string(upper.join("made")).unwrap(), "hi\n");
    // The name is taken while the container's directory is there.
    assert_eq!(code(&env.run(&["--name", "kept", "bb:1", "true"])), 125);
}

#[test]
fn platform_chooses_from_an_index() {
    let store = img_e2e::Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let variant = |arch: &str| {
        busybox_image(&[], vec![Layer::new([Entry::file("platform", arch)])])
            .platform(&format!("linux/{arch}"))
            .build()
    };
    BuiltIndex::new(vec![variant("amd64"), variant("arm64")], false)
        .write_to(&layout, Some("multi:1"))
        .unwrap();
    let env = Env { store };
    let out = env.run(&["--platform", "linux/arm64", "multi:1", "cat", "/platform"]);
    assert_eq!(stdout(&out), "arm64", "{}", img_e2e::stderr(&out));
    let out = env.run(&["--platform", "linux/s390x", "multi:1", "true"]);
    assert_eq!(code(&out), 125);
}

#[test]
fn rootless_image_run_uses_an_unpacked_copy() {
    img_e2e::require("setpriv");
    let env = Env::new();
    img_e2e::peer("chown", &["-R", "65534:65534", &env.store.path().to_string_lossy()]);
    std::fs::set_permissions(env.store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(img_run())
        .args(["bb:1", "sh", "-c", "id -u; echo $$; echo w > /w && cat /w; ls -ld /tmp | cut -c1-10"])
        .env("IMG_ROOT", env.store.path())
        .current_dir(env.store.path());
    let out = run_timeout(&mut cmd, "", Duration::from_secs(60));
    img_e2e::assert_success(&out, "rootless img-run of an image");
    assert_eq!(stdout(&out), "0\n1\nw\ndrwxrwxrwt\n");
    assert_eq!(std::fs::read_dir(env.store.path().join("containers")).unwrap().count(), 0);
}

#[test]
fn sigterm_while_preparing_cleans_up_and_stops() {
    // Thousands of files make preparing (extracting the snapshot) take far longer than it
    // takes the test to see it has begun, on any machine.
    let files: Vec<Entry> = (0..20_000).map(|i| Entry::file(&format!("many/{i}"), "x")).collect();
    let env = Env::with_image(busybox_image(&[], vec![Layer::new(files)]));
    let child = env
        .store
        .command("img-run")
        .args(["bb:1", "sleep", "30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once img-run is preparing (its container directory exists), not after a fixed
    // delay: how long a start takes depends on the machine's load.
    let containers = env.store.path().join("containers");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&containers).map_or(0, |d| d.count()) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "img-run never started preparing");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 143, "{}", img_e2e::stderr(&out));
    assert!(!containers.exists() || std::fs::read_dir(&containers).unwrap().count() == 0);
}

#[test]
fn an_image_only_in_a_registry_is_pulled_as_docker_run_does() {
    let registry = img_e2e::registry::Registry::anonymous();
    let source = img_e2e::Store::new();
    let layout = Layout::open_or_create(source.layout()).unwrap();
    busybox_image(&[("Cmd", serde_json::json!(["echo", "pulled and ran"]))], vec![])
        .build()
        .write_to(&layout, Some("localhost/remote:1"))
        .unwrap();
    let remote = format!("{}/remote:1", registry.host());
    img_e2e::peer(
        "skopeo",
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci:{}:localhost/remote:1", source.layout().display()),
            &format!("docker://{remote}"),
        ],
    );

    let store = img_e2e::Store::new();
    let never = store.run("img-run", &["--pull", "never", &remote], "");
    assert_eq!(never.status.code(), Some(125), "--pull never does not fetch");
    let err = img_e2e::stderr(&never);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("not an OCI image layout") || err.contains("no such image"), "{err}");
    let out = store.run("img-run", &[&remote], "");
    img_e2e::assert_success(&out, "img-run of a remote image");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled and ran\n");
    let listed = store.records("img-ls", &["--json"], "");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["ref"], remote.as_str());
}

#[test]
fn img_rm_collects_snapshots_no_image_uses_but_never_those_in_use() {
    let env = Env::new();
    env.add_image(busybox_image(&[], vec![Layer::new([Entry::file("only-in-extra", "x")])]), "extra:1");
    assert_eq!(env.sh(&[], "echo bb"), "bb\n");
    let out = env.run(&["extra:1", "cat", "/only-in-extra"]);
    assert_eq!(stdout(&out), "x");
    let snapshots = env.store.path().join("snapshots");
    let names = || -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".lock")
            .collect();
        n.sort();
        n
    };
    assert_eq!(names().len(), 2, "busybox's layer and extra's own: {:?}", names());
    let stale = snapshots.join(".extracting-crashed");
    std::fs::create_dir_all(stale.join("sub")).unwrap();

    // While a container runs, its snapshots (and every other) stay.
    let mut running = env
        .store
        .command("img-run")
        .args(["--init", "extra:1", "sleep", "30"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its writable layer is made after the snapshots are held.
    let up = std::time::Instant::now();
    let started = || {
        std::fs::read_dir(env.store.path().join("containers"))
            .is_ok_and(|d| d.flatten().any(|e| e.path().join("upper").is_dir()))
    };
    while !started() {
        assert!(up.elapsed() < Duration::from_secs(20), "the container did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = env.store.run("img-rm", &["--no-gc", "extra:1"], "");
    img_e2e::assert_success(&out, "img-rm --no-gc");
    let out = env.store.run("img-rm", &["--prune"], "");
    img_e2e::assert_success(&out, "img-rm --prune");
    assert!(img_e2e::stderr(&out).contains("in use"), "{}", img_e2e::stderr(&out));
    assert_eq!(names().len(), 3, "nothing removed while in use: {:?}", names());
    // SAFETY: a signal to our own child, which is still there to be waited for.
    unsafe { libc::kill(running.id() as i32, libc::SIGTERM) };
    assert_eq!(running.wait().unwrap().code(), Some(128 + libc::SIGTERM), "img-run passes SIGTERM on");

    // Once nothing runs: extra's snapshot and the crash leftover go, busybox's stays (bb:1 uses it).
    let record = &env.store.records("img-rm", &["--prune"], "")[0];
    assert_eq!(record["freedSnapshots"], 2, "{record}");
    assert!(record["freedSnapshotBytes"].as_u64().unwrap() >= 1, "{record}");
    let layout = Layout::open(env.store.layout()).unwrap();
    let bb = img::layout::resolve::image(&layout, "bb:1", None).unwrap();
    let diff_id = &bb.config.rootfs.as_ref().unwrap().diff_ids[0];
    assert_eq!(names(), [format!("sha256-{}", diff_id.hex())]);
    // Removing the last image takes its snapshot too.
    img_e2e::assert_success(&env.store.run("img-rm", &["bb:1"], ""), "img-rm bb:1");
    assert!(names().is_empty(), "{:?}", names());
}

/// img-run pulls a missing image with img-pull's registry flags: `--creds` (and the TLS,
/// authfile and timeout flags) reach a registry that needs them.
#[test]
fn a_missing_image_is_pulled_with_the_registry_flags() {
    use img_e2e::registry::{Auth, Registry};
    let registry = Registry::start(Auth::Basic { user: "u".into(), password: "p".into() }, false);
    let reference = format!("{}/team/bb:1", registry.host());
    let env = Env::new();
    let push = env.store.run("img-push", &["--creds", "u:p", "--to", &reference, "bb:1"], "");
    img_e2e::assert_success(&push, "img-push");
    let fresh = Env::new();
    let isolated = |args: &[&str]| {
        // No credentials of the machine's: only what the flags give.
        let empty = fresh.store.path().join("no-config");
        let mut cmd = fresh.store.command("img-run");
        cmd.args(args)
            .env("DOCKER_CONFIG", &empty)
            .env("XDG_RUNTIME_DIR", &empty)
            .env("XDG_CONFIG_HOME", &empty)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("IMG_CREDS");
        run_timeout(&mut cmd, "", Duration::from_secs(60))
    };
    let out = isolated(&[&reference, "echo", "hi"]);
    assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
    assert!(img_e2e::stderr(&out).contains("401"), "{}", img_e2e::stderr(&out));
    let out = isolated(&["--creds", "u:p", &reference, "echo", "hi"]);
    img_e2e::assert_success(&out, "img-run --creds");
    assert_eq!(stdout(&out), "hi\n");
}
