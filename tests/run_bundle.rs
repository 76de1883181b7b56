//! Bundles: umoci's and img-unpack's run, give the same output under runc and img-run, come
//! from a record on stdin; volumes; and a rootless run (an unprivileged user is root inside).

mod run_common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use run_common::*;

/// What a container sees of itself, for comparing runtimes. (runc mounts cgroup v1
/// hierarchies under /sys/fs/cgroup, img-run a read-only cgroup2 there: left out.)
const PROBE: &str = "id; hostname; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; \
    ls -l /dev | awk '{print $1, $NF}' | sort; ls /; pwd; echo $$; env | sort; \
    cat /proc/self/uid_map; ulimit -n; ls /sys/class/net; \
    awk '{print $5, substr($6,1,2)}' /proc/self/mountinfo | grep -v '^/sys/fs/cgroup' | sort";

#[test]
fn umocis_bundle_runs() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["sh", "-c", "echo $$; hostname; ls /sys/class/net"]);
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run on umoci's bundle");
    // umoci's config asks for a network namespace and names the host umoci-default.
    assert_eq!(stdout(&out), "1\numoci-default\nlo\n");
    // Options still apply to a bundle.
    let out = img_run_bundle(&bundle, &["-h", "other", "-e", "X=1"]);
    assert_eq!(stdout(&out), "1\nother\nlo\n");
}

#[test]
fn same_output_under_runc_and_img_run() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["sh", "-c", PROBE]);
    let state = env.store.path().join("runc-state");
    let theirs = runc(&bundle, &state, &format!("img-test-{}", std::process::id()));
    img_e2e::assert_success(&theirs, "runc run");
    let ours = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&ours, "img-run");
    assert_eq!(stdout(&ours), stdout(&theirs));
}

#[test]
fn img_unpacks_bundle_runs_under_runc_and_img_run() {
    let env = Env::new();
    let dir = env.store.path().join("unpacked");
    let out = env.store.run("img-unpack", &["--bundle", &dir.to_string_lossy(), "bb:1"], "");
    img_e2e::assert_success(&out, "img-unpack");
    edit_config(&dir, |c| {
        c["process"]["terminal"] = serde_json::json!(false);
        c["process"]["args"] = serde_json::json!(["sh", "-c", PROBE]);
    });
    let theirs =
        runc(&dir, &env.store.path().join("runc-state"), &format!("img-unpack-{}", std::process::id()));
    img_e2e::assert_success(&theirs, "runc run");
    let ours = img_run_bundle(&dir, &[]);
    img_e2e::assert_success(&ours, "img-run");
    assert_eq!(stdout(&ours), stdout(&theirs));
    // img-unpack's record on stdin names the bundle: `img-unpack | img-run`.
    let record = String::from_utf8_lossy(&out.stdout).into_owned();
    let piped = env.run_with(&["-e", "A=1", "--", "sh", "-c", "echo $A; echo $$"], &record, &[]);
    img_e2e::assert_success(&piped, "img-run from a record");
    assert_eq!(stdout(&piped), "1\n1\n");
}

#[test]
fn volumes_bind_host_directories() {
    let env = Env::new();
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("in"), "from host").unwrap();
    let rw = format!("{}:/data", vol.path().display());
    let out = env.sh(&["-v", &rw], "cat /data/in; echo from container > /data/out");
    assert_eq!(out, "from host");
    assert_eq!(std::fs::read_to_string(vol.path().join("out")).unwrap(), "from container\n");
    let ro = format!("{}:/data:ro", vol.path().display());
    let out = env.run(&["-v", &ro, "bb:1", "sh", "-c", "echo x > /data/in 2>&1 || echo refused"]);
    assert!(stdout(&out).ends_with("refused\n"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(vol.path().join("in")).unwrap(), "from host");
    // A file volume.
    let file = format!("{}:/etc/motd:ro", vol.path().join("in").display());
    assert_eq!(env.sh(&["-v", &file], "cat /etc/motd"), "from host");
}

#[test]
fn rootless_user_is_root_inside() {
    img_e2e::require("setpriv");
    let env = Env::new();
    let bundle = env.umoci_bundle(&[
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo $$; hostname; ls /sys/class/net",
    ]);
    // The bundle is the unprivileged user's, as if it had unpacked it.
    std::fs::set_permissions(env.store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    img_e2e::peer("chown", &["-R", "65534:65534", &bundle.to_string_lossy()]);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(img_run()).arg(&bundle);
    let out = run_timeout(&mut cmd, "", Duration::from_secs(60));
    img_e2e::assert_success(&out, "rootless img-run");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "65534", "1"]);
    assert_eq!(&lines[2..], ["1", "umoci-default", "lo"]);
    // Limits need cgroups this user may not write: an error, not silently ignored.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(img_run())
        .args(["--memory", "64m"])
        .arg(&bundle);
    let out = run_timeout(&mut cmd, "", Duration::from_secs(60));
    assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
}

#[test]
fn a_user_namespace_the_runtime_cannot_make_is_an_error() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["true"]);
    edit_config(&bundle, |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let out = img_run_bundle(&bundle, &[]);
    assert_eq!(code(&out), 125);
    assert!(img_e2e::stderr(&out).contains("user namespace"), "{}", img_e2e::stderr(&out));
}
