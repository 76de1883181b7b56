//! Device rules (issue 11): a bundle's `linux.resources.devices`, docker's default allowlist for
//! images and img-build's RUN steps, `--device-cgroup-rule`, `--device` permissions and
//! `--privileged`, observed as a container that makes device nodes with mknod and opens them.
//! Bundles are compared with runc. (This host's cgroups are v1 for the devices controller, so
//! these runs exercise `devices.allow`/`devices.deny`; the v2 eBPF program is loaded and
//! checked against the kernel by the library's own tests.)

mod run_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use run_common::*;
use serde_json::json;

/// For each `name major minor`: makes /dev/probe-NAME with mknod, opens it for reading, and
/// prints `NAME mknod:ok|<error> open:ok|<error>` (the shell's message for the open).
fn probe_script(nodes: &[(&str, u32, u32)]) -> String {
    let mut s = String::new();
    for (name, major, minor) in nodes {
        s.push_str(&format!(
            "p=/dev/probe-{name}; rm -f $p; \
             if m=$(busybox mknod $p c {major} {minor} 2>&1); then m=ok; fi; \
             if o=$( (exec 3<$p) 2>&1 ); then o=ok; fi; \
             echo \"{name} mknod:$m open:$o\"; "
        ));
    }
    s
}

const HWRNG: (&str, u32, u32) = ("hwrng", 10, 183);
const LOOP_CONTROL: (&str, u32, u32) = ("loop-control", 10, 237);
const NULL: (&str, u32, u32) = ("null", 1, 3);
const URANDOM: (&str, u32, u32) = ("urandom", 1, 9);

fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name} in {out}"))
}

fn assert_denied(out: &str, name: &str) {
    let l = line(out, name);
    assert!(l.contains("mknod:ok"), "mknod is allowed for every node: {l}");
    assert!(
        l.contains("open:") && l.contains("Operation not permitted"),
        "opening {name} must be refused: {l}"
    );
}

fn assert_allowed(out: &str, name: &str) {
    assert_eq!(line(out, name), format!("{name} mknod:ok open:ok"), "{out}");
}

/// A umoci bundle running `script` as root with CAP_MKNOD and the given device rules.
fn bundle(env: &Env, script: &str, rules: Option<serde_json::Value>) -> std::path::PathBuf {
    let dir = env.umoci_bundle(&["sh", "-c", script]);
    edit_config(&dir, |c| {
        for set in ["bounding", "effective", "permitted"] {
            let caps = c["process"]["capabilities"][set].as_array_mut().unwrap();
            caps.push(json!("CAP_MKNOD"));
        }
        if let Some(r) = rules {
            c["linux"]["resources"]["devices"] = r;
        }
    });
    dir
}

#[test]
fn a_bundles_deny_all_rule_is_applied_as_runc_applies_it() {
    let env = Env::new();
    let script = probe_script(&[HWRNG, LOOP_CONTROL, NULL, URANDOM]);
    let dir = bundle(&env, &script, None);
    // umoci's config has the spec's default rule.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["linux"]["resources"]["devices"], json!([{"allow": false, "access": "rwm"}]));

    let ours = img_run_bundle(&dir, &[]);
    img_e2e::assert_success(&ours, "img-run");
    let out = stdout(&ours);
    assert_denied(&out, "hwrng");
    assert_denied(&out, "loop-control");
    assert_allowed(&out, "null");
    assert_allowed(&out, "urandom");
    // The standard nodes work.
    let theirs = runc(&dir, &env.store.path().join("runc-state"), &format!("dev-{}", std::process::id()));
    img_e2e::assert_success(&theirs, "runc run");
    assert_eq!(out, stdout(&theirs), "img-run and runc differ");
}

#[test]
fn a_bundles_rules_apply_in_order_as_under_runc() {
    let env = Env::new();
    let script = probe_script(&[HWRNG, LOOP_CONTROL, NULL]);
    let deny_all = json!({"allow": false, "access": "rwm"});
    let allow = json!({"allow": true, "type": "c", "major": 10, "minor": 183, "access": "r"});
    let deny = json!({"allow": false, "type": "c", "major": 10, "minor": 183, "access": "r"});
    let allow_misc = json!({"allow": true, "type": "c", "major": 10, "access": "r"});
    for (i, (rules, hwrng_open, loop_open)) in [
        (json!([deny_all, allow, deny]), false, false),
        (json!([deny_all, deny, allow]), true, false),
        (json!([deny_all, allow_misc]), true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = bundle(&env, &script, Some(rules.clone()));
        let ours = img_run_bundle(&dir, &[]);
        img_e2e::assert_success(&ours, "img-run");
        let out = stdout(&ours);
        let theirs =
            runc(&dir, &env.store.path().join("runc-state"), &format!("order-{i}-{}", std::process::id()));
        img_e2e::assert_success(&theirs, "runc run");
        let check = |name: &str, open: bool| match open {
            true => assert_allowed(&out, name),
            false => assert_denied(&out, name),
        };
        check("hwrng", hwrng_open);
        check("loop-control", loop_open);
        assert_allowed(&out, "null");
        let theirs =
            runc(&dir, &env.store.path().join("runc-state"), &format!("order-{i}-{}", std::process::id()));
        img_e2e::assert_success(&theirs, "runc run");
        assert_eq!(out, stdout(&theirs), "img-run and runc differ on {rules}");
    }
    // A deny narrowing an earlier wildcard allow: the eBPF program img-run attaches to a v2
    // cgroup (any host with a cgroup2 tree, hybrid ones too) says it exactly.
    let dir = bundle(&env, &script, Some(json!([deny_all, allow_misc, deny])));
    let ours = img_run_bundle(&dir, &[]);
    img_e2e::assert_success(&ours, "img-run");
    assert_denied(&stdout(&ours), "hwrng");
    assert_allowed(&stdout(&ours), "loop-control");
    // With a limit that puts the container in v1 cgroups, its v1 devices controller cannot say
    // it: img-run refuses the bundle, as runc does.
    let v1 = std::fs::read_to_string("/proc/self/cgroup").unwrap().lines().any(|l| l.contains(":devices:"));
    if v1 {
        edit_config(&dir, |c| c["linux"]["resources"]["pids"] = json!({"limit": 100}));
        let ours = img_run_bundle(&dir, &[]);
        assert_eq!(code(&ours), 125, "{}", img_e2e::stderr(&ours));
        let err = img_e2e::stderr(&ours);
        assert!(err.contains("cannot be applied on cgroup v1") && err.contains("c 10:* r"), "{err}");
        let theirs =
            runc(&dir, &env.store.path().join("runc-state"), &format!("hole-{}", std::process::id()));
        assert!(!theirs.status.success(), "runc refuses it too");
    }
}

#[test]
fn an_invalid_rule_is_an_error() {
    let env = Env::new();
    for (rule, what) in [
        (json!({"allow": true, "type": "x", "access": "r"}), "unknown type"),
        (json!({"allow": true, "type": "c", "access": "rx"}), "invalid access"),
        (json!({"allow": false}), "access is empty"),
    ] {
        let dir = bundle(&env, "echo ran", Some(json!([rule])));
        let out = img_run_bundle(&dir, &[]);
        assert_eq!(code(&out), 125, "{rule}: {}", img_e2e::stderr(&out));
        let err = img_e2e::stderr(&out);
        assert!(err.contains("linux.resources.devices") && err.contains(what), "{err}");
        assert!(!stdout(&out).contains("ran"));
    }
}

#[test]
fn an_image_run_gets_dockers_allowlist() {
    let env = Env::new();
    let out =
        env.sh(&[], &probe_script(&[HWRNG, LOOP_CONTROL, NULL, URANDOM, ("tun", 10, 200), ("zero", 1, 5)]));
    assert_denied(&out, "hwrng");
    assert_denied(&out, "loop-control");
    for name in ["null", "urandom", "tun", "zero"] {
        assert_allowed(&out, name);
    }
    // Rules alone: through an eBPF program on a v2 cgroup of the container's own, which the
    // container is forked straight into (joining a v1 cgroup would cost more than the rest of
    // its start); the v1 devices cgroup stays the host's.
    let out = env.sh(&[], "cat /proc/self/cgroup");
    assert!(out.lines().any(|l| l.starts_with("0::/img-run/")), "{out}");
    // With limits that need v1 cgroups anyway, the v1 devices controller where there is one.
    if Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        let script = probe_script(&[HWRNG, NULL]);
        let out = env.sh(&["--pids-limit", "100"], &format!("{script} grep :devices: /proc/self/cgroup"));
        assert!(out.contains("/img-run-"), "{out}");
        assert_denied(&out, "hwrng");
        assert_allowed(&out, "null");
        assert!(!out.contains("0::/img-run/"), "{out}");
    }
    // The nodes img-run made work too, and a terminal's pty.
    let out = env.sh(&[], "head -c 1 /dev/zero | wc -c; echo x > /dev/null; head -c 4 /dev/urandom | wc -c");
    assert_eq!(out, "1\n4\n");
    let out = env.run(&["-t", "bb:1", "sh", "-c", "tty; echo hi > $(tty) && echo wrote"]);
    assert!(stdout(&out).contains("/dev/console") || stdout(&out).contains("/dev/pts"), "{}", stdout(&out));
    assert!(stdout(&out).contains("wrote"), "{}", stdout(&out));
}

#[test]
fn device_cgroup_rule_allows_what_it_names() {
    let env = Env::new();
    let script = probe_script(&[HWRNG, LOOP_CONTROL]);
    let out = env.sh(&["--device-cgroup-rule", "c 10:183 rw"], &script);
    assert_allowed(&out, "hwrng");
    assert_denied(&out, "loop-control");
    // Wildcards.
    let out = env.sh(&["--device-cgroup-rule", "c 10:* r"], &script);
    assert_allowed(&out, "hwrng");
    assert_allowed(&out, "loop-control");
    // Only the access given: read allowed, write refused.
    let out = env.sh(
        &["--device-cgroup-rule", "c 10:183 r"],
        "busybox mknod /dev/h c 10 183; (exec 3</dev/h) && echo read-ok; (exec 3>/dev/h) 2>&1; true",
    );
    assert!(out.contains("read-ok") && out.contains("Operation not permitted"), "{out}");
    // docker's syntax only.
    for bad in ["c 10:183", "x 10:183 r", "c 10-183 r", "c 10:183 rx"] {
        let out = env.run(&["--device-cgroup-rule", bad, "bb:1", "true"]);
        assert_eq!(code(&out), 125, "{bad}");
        assert!(img_e2e::stderr(&out).contains("--device-cgroup-rule"), "{}", img_e2e::stderr(&out));
    }
}

#[test]
fn privileged_allows_every_device() {
    let env = Env::new();
    let out = env.sh(&["--privileged"], &probe_script(&[HWRNG, LOOP_CONTROL, NULL]));
    for name in ["hwrng", "loop-control", "null"] {
        assert_allowed(&out, name);
    }
}

#[test]
fn a_device_given_is_allowed_with_its_permissions() {
    let env = Env::new();
    // hwrng refuses an open for writing itself (EINVAL) once the cgroup lets it through.
    let script = "(exec 3</dev/hwrng) && echo read-ok; (exec 3<>/dev/hwrng) 2>&1; \
        (exec 3</dev/loop-control) 2>&1; true";
    let out = env.sh(&["--device", "/dev/hwrng"], script);
    assert!(out.contains("read-ok") && out.contains("Invalid argument"), "{out}");
    assert!(out.contains("loop-control: no such file"), "{out}");
    let out = env.sh(&["--device", "/dev/hwrng:/dev/hwrng:r"], script);
    assert!(out.contains("read-ok") && out.contains("Operation not permitted"), "{out}");
    let out = env.sh(&["--device", "/dev/hwrng:r"], script);
    assert!(out.contains("read-ok") && out.contains("Operation not permitted"), "{out}");
    // Another node of the same device made inside is allowed too (the rule is the device's).
    let out = env.sh(&["--device", "/dev/hwrng:/dev/rng"], &probe_script(&[HWRNG, LOOP_CONTROL]));
    assert_allowed(&out, "hwrng");
    assert_denied(&out, "loop-control");
}

#[test]
fn build_run_steps_get_the_allowlist() {
    let env = Env::new();
    env.add_image(busybox_image(&[("Cmd", json!(["sh"]))], vec![]), "localhost/bb:1");
    let ctx = tempfile::tempdir().unwrap();
    let script = probe_script(&[HWRNG, NULL]);
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM localhost/bb:1\nRUN ( {script} ) > /seen\n"))
        .unwrap();
    let out = env.store.run("img-build", &["-t", "localhost/probed:1", &ctx.path().to_string_lossy()], "");
    img_e2e::assert_success(&out, "img-build");
    let out = env.run(&["localhost/probed:1", "cat", "/seen"]);
    img_e2e::assert_success(&out, "img-run");
    let seen = stdout(&out);
    assert_denied(&seen, "hwrng");
    assert_allowed(&seen, "null");
}

/// img-run in a mount namespace where the v1 devices hierarchy (if any) is unmounted: it must
/// fall back to its eBPF program on a cgroup in the v2 tree, which the kernel runs besides v1
/// (on a hybrid host the tree is otherwise empty). So the v2 path runs end to end here too.
fn img_run_without_v1_devices(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "if grep -q ' - cgroup .*devices' /proc/self/mountinfo; then \
             umount /sys/fs/cgroup/devices || exit 99; fi; exec \"$0\" \"$@\"",
        )
        .arg(img_run())
        .args(args)
        .env("IMG_ROOT", env.store.path())
        .env_remove("IMG_LAYOUT");
    run_timeout(&mut cmd, "", Duration::from_secs(60))
}

#[test]
fn on_cgroup_v2_an_ebpf_program_applies_the_rules() {
    let v2 =
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.contains(" - cgroup2 "));
    assert!(v2, "this test needs a cgroup2 tree (hybrid hosts have one too)");
    let env = Env::new();
    let script = probe_script(&[HWRNG, LOOP_CONTROL, NULL, ("tun", 10, 200)]);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["bb:1", "sh", "-c", &script]);
        let out = img_run_without_v1_devices(&env, &all);
        img_e2e::assert_success(&out, &format!("img-run {args:?} without v1 devices"));
        stdout(&out)
    };
    let out = run(&[]);
    assert_denied(&out, "hwrng");
    assert_denied(&out, "loop-control");
    assert_allowed(&out, "null");
    assert_allowed(&out, "tun");
    // The container ran in a v2 cgroup of its own (where the program is attached).
    let out = img_run_without_v1_devices(&env, &["bb:1", "grep", "^0::", "/proc/self/cgroup"]);
    assert!(stdout(&out).starts_with("0::/img-run/"), "{}", stdout(&out));
    let out = run(&["--device-cgroup-rule", "c 10:183 rw"]);
    assert_allowed(&out, "hwrng");
    assert_denied(&out, "loop-control");
    // What v1 cannot express, the program can: a deny narrowing an earlier wildcard allow.
    let deny_all = json!({"allow": false, "access": "rwm"});
    let allow_misc = json!({"allow": true, "type": "c", "major": 10, "access": "r"});
    let deny = json!({"allow": false, "type": "c", "major": 10, "minor": 183, "access": "r"});
    let dir = bundle(&env, &script, Some(json!([deny_all, allow_misc, deny])));
    let out = img_run_without_v1_devices(&env, &[&dir.to_string_lossy()]);
    img_e2e::assert_success(&out, "img-run on the bundle without v1 devices");
    assert_denied(&stdout(&out), "hwrng");
    assert_allowed(&stdout(&out), "loop-control");
    // The container's v2 cgroup is gone afterwards.
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/unified/img-run")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with("bundle-")), "{left:?}");
}

#[test]
fn rootless_runs_check_the_rules_but_cannot_enforce_them() {
    use std::os::unix::fs::PermissionsExt;
    img_e2e::require("setpriv");
    let env = Env::new();
    std::fs::set_permissions(env.store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootless = |bundle: &Path| {
        img_e2e::peer("chown", &["-R", "65534:65534", &bundle.to_string_lossy()]);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(img_run()).arg(bundle);
        run_timeout(&mut cmd, "", Duration::from_secs(60))
    };
    // No cgroup of its own (nothing is delegated): the deny-all rule cannot be enforced, and
    // the user namespace cannot make device nodes anyway.
    let dir = bundle(&env, &probe_script(&[HWRNG]), None);
    let out = rootless(&dir);
    img_e2e::assert_success(&out, "rootless img-run");
    let l = line(&stdout(&out), "hwrng").to_string();
    assert!(l.contains("mknod:") && !l.contains("mknod:ok"), "{l}");
    // An invalid rule is still an error.
    let dir = bundle(&env, "echo ran", Some(json!([{"allow": true, "type": "x", "access": "r"}])));
    let out = rootless(&dir);
    assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
    assert!(img_e2e::stderr(&out).contains("linux.resources.devices"), "{}", img_e2e::stderr(&out));
}
