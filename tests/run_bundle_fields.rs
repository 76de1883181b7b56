//! Every field of a bundle's config.json is applied or refused by name (issue 11): namespaces
//! (duplicates, joined by path), mount sources, order and options, sysctl, oomScoreAdj, hooks;
//! compared with runc where that is cheap.

mod run_common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use run_common::*;
use serde_json::json;

fn runc(env: &Env, bundle: &Path) -> Output {
    let id = format!("img-fields-{}-{}", std::process::id(), bundle.file_name().unwrap().to_string_lossy());
    run_common::runc(bundle, &env.store.path().join("runc-state"), &id)
}

/// img-run fails before the command runs, with one line naming `what`.
fn assert_refused(out: &Output, what: &str) {
    let err = img_e2e::stderr(out);
    assert_eq!(code(out), 125, "stdout {:?} stderr {err:?} {:?}", stdout(out), out.status);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains(what), "{err:?} does not name {what}");
    assert!(stdout(out).is_empty());
}

#[test]
fn a_namespace_listed_twice_is_an_error() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["echo", "ran"]);
    edit_config(&bundle, |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "uts"}));
    });
    assert_refused(&img_run_bundle(&bundle, &[]), "lists the uts namespace twice");
}

#[test]
fn fields_img_run_does_not_apply_are_refused_by_name() {
    let env = Env::new();
    let cases = [
        ("linux.intelRdt", json!({"closID": "x"})),
        ("process.ioPriority", json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})),
        ("linux.personality", json!({"domain": "LINUX32"})),
    ];
    for (field, value) in cases {
        let bundle = env.umoci_bundle(&["echo", "ran"]);
        edit_config(&bundle, |c| {
            let (parent, key) = field.split_once('.').unwrap();
            c[parent][key] = value.clone();
        });
        assert_refused(&img_run_bundle(&bundle, &[]), field);
    }
    // A mount option img-run does not apply, on a bind (where the kernel would not notice).
    let bundle = env.umoci_bundle(&["echo", "ran"]);
    edit_config(&bundle, |c| {
        let m =
            json!({"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]});
        c["mounts"].as_array_mut().unwrap().push(m);
    });
    assert_refused(&img_run_bundle(&bundle, &[]), "idmap");
    // A property the spec does not define is ignored, as the spec requires, with a warning.
    let bundle = env.umoci_bundle(&["echo", "ran"]);
    edit_config(&bundle, |c| c["process"]["notAField"] = json!(1));
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "an undefined property");
    let err = img_e2e::stderr(&out);
    assert!(err.contains("process.notAField") && err.lines().count() == 1, "{err}");
}

/// Source and mount point of each mount, in mountinfo's order.
const MOUNTS: &str = "awk '{for (i = 7; $i != \"-\"; i++); print $(i+2), $5}' /proc/self/mountinfo";

#[test]
fn mounts_show_their_sources_in_the_listed_order() {
    let env = Env::new();
    let vol = tempfile::tempdir().unwrap();
    let bundle = env.umoci_bundle(&["sh", "-c", MOUNTS]);
    edit_config(&bundle, |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        // A bind between /proc and /dev, a tmpfs after it.
        let at = mounts.iter().position(|m| m["destination"] == "/proc").unwrap() + 1;
        let bind =
            json!({"destination": "/data", "type": "bind", "source": vol.path(), "options": ["rbind"]});
        mounts.insert(at, bind);
        mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "scratchfs", "options": ["iversion", "loud"]}));
    });
    let listed: Vec<String> = {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_string())
            .collect()
    };
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    let text = stdout(&out);
    let seen: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once(' ').unwrap())
        .filter(|(_, dest)| listed.iter().any(|d| d == dest))
        .collect();
    let order: Vec<&str> = seen.iter().map(|(_, d)| *d).collect();
    assert_eq!(order, listed, "mountinfo:\n{text}");
    let source = |dest: &str| seen.iter().find(|(_, d)| *d == dest).unwrap().0;
    assert_eq!(source("/proc"), "proc", "{text}");
    assert_eq!(source("/sys"), "sysfs", "{text}");
    assert_eq!(source("/scratch"), "scratchfs", "{text}");
    // runc lists the same mounts in the same order with the same sources.
    let theirs = runc(&env, &bundle);
    img_e2e::assert_success(&theirs, "runc");
    let theirs: Vec<String> = stdout(&theirs)
        .lines()
        .filter(|l| listed.iter().any(|d| l.ends_with(&format!(" {d}"))) && !l.ends_with(" /sys/fs/cgroup"))
        .map(str::to_string)
        .collect();
    // (runc mounts cgroup v1 hierarchies there, img-run a read-only cgroup2: left out.)
    let ours: Vec<String> =
        seen.iter().filter(|(_, d)| *d != "/sys/fs/cgroup").map(|(s, d)| format!("{s} {d}")).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn an_rro_bind_is_read_only_all_the_way_down() {
    let env = Env::new();
    // A tree with a writable mount inside it.
    let vol = tempfile::tempdir().unwrap();
    let inner = vol.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    img_e2e::peer("mount", &["-t", "tmpfs", "tmpfs", &inner.to_string_lossy()]);
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&inner);
    let script = "touch /a/x 2>/dev/null && echo top-writable; touch /a/inner/x 2>/dev/null && echo inner-writable; \
        touch /b/inner/x 2>/dev/null && echo plain-ro-inner-writable; \
        ln -s /etc/hostname /c/link; cat /c/link >/dev/null 2>&1 || echo nosymfollow; echo done";
    let bundle = env.umoci_bundle(&["sh", "-c", script]);
    let dir = vol.path().to_string_lossy().into_owned();
    let sym = tempfile::tempdir().unwrap();
    edit_config(&bundle, |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/a", "type": "bind", "source": dir, "options": ["rbind", "rro"]}));
        mounts.push(json!({"destination": "/b", "type": "bind", "source": dir, "options": ["rbind", "ro"]}));
        mounts.push(json!({"destination": "/c", "type": "bind", "source": sym.path(), "options": ["bind", "nosymfollow"]}));
    });
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    // `rro` makes the mount inside read-only too. (img-run makes an `ro` rbind read-only all
    // the way down as well, as docker's `-v …:ro` does; runc only its top.)
    assert_eq!(stdout(&out), "nosymfollow\ndone\n");
    let theirs = runc(&env, &bundle);
    img_e2e::assert_success(&theirs, "runc");
    assert_eq!(stdout(&theirs), "plain-ro-inner-writable\nnosymfollow\ndone\n");
}

#[test]
fn namespaced_sysctls_are_set_others_refused() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["cat", "/proc/sys/kernel/shmmax"]);
    edit_config(&bundle, |c| c["linux"]["sysctl"] = json!({"kernel.shmmax": "123456789"}));
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    assert_eq!(stdout(&out), "123456789\n");
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    assert_ne!(host, "123456789\n");
    assert_eq!(stdout(&runc(&env, &bundle)), "123456789\n");

    edit_config(&bundle, |c| c["linux"]["sysctl"] = json!({"vm.swappiness": "1"}));
    assert_refused(&img_run_bundle(&bundle, &[]), "vm.swappiness");
    // An IPC parameter without an IPC namespace of the container's own.
    edit_config(&bundle, |c| {
        c["linux"]["sysctl"] = json!({"kernel.shmmax": "1"});
        c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "ipc");
    });
    assert_refused(&img_run_bundle(&bundle, &[]), "kernel.shmmax needs a ipc namespace");
}

#[test]
fn oom_score_adj_is_applied() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["cat", "/proc/self/oom_score_adj"]);
    edit_config(&bundle, |c| c["process"]["oomScoreAdj"] = json!(345));
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    assert_eq!(stdout(&out), "345\n");
    assert_eq!(stdout(&runc(&env, &bundle)), "345\n");
}

#[test]
fn a_uts_namespace_is_joined_by_path() {
    img_e2e::require("unshare");
    let env = Env::new();
    // A process in a UTS namespace of its own, named by the test.
    let mut holder = Command::new("unshare")
        .args(["--uts", "sh", "-c", "hostname joined-by-path && exec sleep 60"])
        .spawn()
        .unwrap();
    let ns = format!("/proc/{}/ns/uts", holder.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Wait until the holder has named its namespace (and exec'd sleep).
    while std::fs::read_link(format!("/proc/{}/exe", holder.id()))
        .map(|p| !p.ends_with("sleep"))
        .unwrap_or(true)
    {
        assert!(std::time::Instant::now() < deadline, "unshare did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bundle = env.umoci_bundle(&["hostname"]);
    edit_config(&bundle, |c| {
        let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
        nss.retain(|n| n["type"] != "uts");
        nss.push(json!({"type": "uts", "path": ns}));
        c.as_object_mut().unwrap().remove("hostname");
    });
    let out = img_run_bundle(&bundle, &[]);
    let theirs = runc(&env, &bundle);
    let _ = holder.kill();
    let _ = holder.wait();
    img_e2e::assert_success(&out, "img-run");
    assert_eq!(stdout(&out), "joined-by-path\n");
    assert_eq!(stdout(&theirs), "joined-by-path\n");
    // A path that is not a namespace of that type.
    edit_config(&bundle, |c| {
        let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
        nss.retain(|n| n["type"] != "uts");
        nss.push(json!({"type": "uts", "path": "/proc/self/ns/ipc"}));
    });
    let out = img_run_bundle(&bundle, &[]);
    assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
}

/// A hook that writes its stdin (the state) and its PID namespace to `dir/name`.
fn recording_hook(dir: &Path, name: &str) -> serde_json::Value {
    let file = dir.join(name);
    let script = format!("cat > {0}; echo >> {0}; readlink /proc/self/ns/pid >> {0}", file.display());
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 10})
}

/// What a recording hook saw: its state and its PID namespace.
fn recorded(dir: &Path, name: &str) -> (serde_json::Value, String) {
    let text =
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("hook {name} did not run: {e}"));
    let (state, ns) = text.split_once('\n').unwrap();
    (serde_json::from_str(state).unwrap(), ns.trim().to_string())
}

#[test]
fn hooks_run_with_the_state_on_stdin() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["sh", "-c", "echo ran; test -s /hookout/startContainer && echo started"]);
    let host_pidns = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
    let run = |runtime: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().to_path_buf();
        edit_config(&bundle, |c| {
            let mut hooks = json!({});
            for name in ["prestart", "createRuntime", "createContainer", "poststart", "poststop"] {
                hooks[name] = json!([recording_hook(&out_dir, name)]);
            }
            // startContainer runs in the container: its path and file are the container's.
            hooks["startContainer"] = json!([recording_hook(Path::new("/hookout"), "startContainer")]);
            c["hooks"] = hooks;
            c["annotations"] = json!({"org.example.key": "value"});
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| m["destination"] != "/hookout");
            mounts.push(
                json!({"destination": "/hookout", "type": "bind", "source": out_dir, "options": ["bind"]}),
            );
        });
        let out = if runtime == "runc" { runc(&env, &bundle) } else { img_run_bundle(&bundle, &[]) };
        img_e2e::assert_success(&out, runtime);
        assert_eq!(stdout(&out), "ran\nstarted\n", "{runtime}");
        let mut seen = Vec::new();
        for name in
            ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
        {
            let (state, ns) = recorded(dir.path(), name);
            assert_eq!(state["bundle"], json!(bundle), "{runtime} {name}");
            assert_eq!(state["annotations"]["org.example.key"], "value", "{runtime} {name}");
            // The runtime's hooks run in the runtime's PID namespace, the container's in its.
            let runtime_side = !matches!(name, "createContainer" | "startContainer");
            assert_eq!(ns == host_pidns, runtime_side, "{runtime} {name}");
            // img-run gives the pid as the host sees it to every hook (runc gives 1, the pid
            // inside, to the container's).
            if name == "poststop" {
                assert!(state.get("pid").is_none(), "{runtime} {name}: {state}");
            } else if runtime == "img-run" || runtime_side {
                assert!(state["pid"].as_i64().unwrap_or(0) > 1, "{runtime} {name}: {state}");
            }
            seen.push((name, state["status"].as_str().unwrap().to_string(), state["pid"].clone()));
        }
        // One container: the same pid everywhere.
        if runtime == "img-run" {
            assert!(seen[..5].iter().all(|s| s.2 == seen[0].2), "{runtime}: {seen:?}");
        }
        seen.into_iter().map(|(n, status, _)| format!("{n}={status}")).collect::<Vec<_>>()
    };
    let ours = run("img-run");
    let theirs = run("runc");
    let expected = [
        "prestart=creating",
        "createRuntime=creating",
        "createContainer=creating",
        "startContainer=created",
        "poststart=running",
        "poststop=stopped",
    ];
    assert_eq!(ours, expected);
    // runc 1.1 says `created` to poststart, though the command is running by then.
    assert_eq!(theirs[..4], expected[..4]);
    assert_eq!(theirs[5], expected[5]);
}

#[test]
fn a_failing_or_slow_hook_stops_the_container() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["echo", "ran"]);
    edit_config(&bundle, |c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]});
    });
    assert_refused(&img_run_bundle(&bundle, &[]), "hooks.createRuntime[0] /bin/sh: failed");
    edit_config(&bundle, |c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    });
    let start = std::time::Instant::now();
    assert_refused(&img_run_bundle(&bundle, &[]), "hooks.prestart[0] /bin/sleep: timed out after 1 s");
    assert!(start.elapsed() < Duration::from_secs(10));
    // A poststop hook's failure is a warning: the container's status stands.
    edit_config(&bundle, |c| {
        c["hooks"] = json!({"poststop": [{"path": "/bin/false"}]});
    });
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "a failing poststop hook");
    assert!(img_e2e::stderr(&out).contains("hooks.poststop[0] /bin/false"), "{}", img_e2e::stderr(&out));
}

#[test]
fn a_user_namespace_with_mappings_as_root() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u /bin",
    ]);
    // The namespace's root (host uid 100000) must reach the bundle, as under runc.
    for dir in [env.store.path(), &bundle] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // The rootfs belongs to the namespace's root, as when it is unpacked for a mapped container.
    img_e2e::peer("chown", &["-R", "100000:200000", &bundle.join("rootfs").to_string_lossy()]);
    edit_config(&bundle, |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    let words = |s: String| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // Root inside, owning the rootfs.
    let expected = "0 0 0 100000 65536 0 200000 65536 0";
    assert_eq!(words(stdout(&out)).join(" "), expected);
    let theirs = runc(&env, &bundle);
    img_e2e::assert_success(&theirs, "runc");
    assert_eq!(words(stdout(&theirs)).join(" "), expected);
    // Without gidMappings: refused by name.
    edit_config(&bundle, |c| c["linux"].as_object_mut().unwrap().remove("gidMappings").map(|_| ()).unwrap());
    assert_refused(&img_run_bundle(&bundle, &[]), "linux.gidMappings");
}

/// The propagation tags (`shared`, `master`, `unbindable`) of the mount at `dest`, from
/// mountinfo's optional fields.
fn propagation_of(mountinfo: &str, dest: &str) -> Vec<String> {
    let line = mountinfo.lines().rfind(|l| l.split(' ').nth(4) == Some(dest)).unwrap_or_else(|| {
        panic!("{dest} is not in mountinfo:\n{mountinfo}");
    });
    let fields: Vec<&str> = line.split(' ').collect();
    let end = fields.iter().position(|f| *f == "-").unwrap();
    fields[6..end].iter().map(|f| f.split(':').next().unwrap().to_string()).collect()
}

#[test]
fn propagation_options_and_root_propagation_are_applied() {
    let env = Env::new();
    let vol = tempfile::tempdir().unwrap();
    let bundle = env.umoci_bundle(&["cat", "/proc/self/mountinfo"]);
    edit_config(&bundle, |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for (dest, prop) in [("/shared", "rshared"), ("/unbindable", "unbindable"), ("/private", "private")] {
            mounts.push(json!({"destination": dest, "type": "bind", "source": vol.path(), "options": ["rbind", prop]}));
        }
        mounts.push(json!({"destination": "/tmpfs-shared", "type": "tmpfs", "source": "tmpfs", "options": ["shared"]}));
    });
    let check = |out: &Output, runtime: &str| {
        img_e2e::assert_success(out, runtime);
        let text = stdout(out);
        assert_eq!(propagation_of(&text, "/shared"), ["shared"], "{runtime}: {text}");
        assert_eq!(propagation_of(&text, "/unbindable"), ["unbindable"], "{runtime}");
        assert!(propagation_of(&text, "/private").is_empty(), "{runtime}");
        assert_eq!(propagation_of(&text, "/tmpfs-shared"), ["shared"], "{runtime}");
    };
    check(&img_run_bundle(&bundle, &[]), "img-run");
    check(&runc(&env, &bundle), "runc");
    // rootfsPropagation, applied to / and, as runc does, everything under it.
    edit_config(&bundle, |c| c["linux"]["rootfsPropagation"] = json!("unbindable"));
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    assert_eq!(propagation_of(&stdout(&out), "/"), ["unbindable"]);
    edit_config(&bundle, |c| c["linux"]["rootfsPropagation"] = json!("sideways"));
    assert_refused(&img_run_bundle(&bundle, &[]), "linux.rootfsPropagation \"sideways\"");
}

#[test]
fn what_the_host_cannot_give_is_refused_by_name() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["echo", "ran"]);
    if !Path::new("/sys/module/apparmor/parameters/enabled").exists() {
        edit_config(&bundle, |c| c["process"]["apparmorProfile"] = json!("docker-default"));
        assert_refused(
            &img_run_bundle(&bundle, &[]),
            "AppArmor profile \"docker-default\": AppArmor is not enabled",
        );
        edit_config(&bundle, |c| {
            c["process"].as_object_mut().unwrap().remove("apparmorProfile").map(|_| ()).unwrap()
        });
    }
    // A namespace joined by path of a type img-run cannot join.
    edit_config(&bundle, |c| {
        let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
        nss.retain(|n| n["type"] != "mount");
        nss.push(json!({"type": "mount", "path": "/proc/1/ns/mnt"}));
    });
    assert_refused(&img_run_bundle(&bundle, &[]), "joining an existing mount namespace");
}

#[test]
fn cgroups_path_places_the_container() {
    let env = Env::new();
    let bundle =
        env.umoci_bundle(&["sh", "-c", "grep -E ':(pids|memory):' /proc/self/cgroup | cut -d: -f2-"]);
    let path = format!("/img-test-fields-{}/c", std::process::id());
    let top = format!("img-test-fields-{}", std::process::id());
    edit_config(&bundle, |c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"] = json!({"pids": {"limit": 50}});
    });
    let expected = format!("memory:{path}\npids:{path}\n");
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines.join("\n") + "\n", expected);
    // What img-run made, it removed.
    let left: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup"))
        .map(|l| format!("{}/{top}", l.split(' ').nth(4).unwrap()))
        .filter(|d| Path::new(d).exists())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let theirs = runc(&env, &bundle);
    img_e2e::assert_success(&theirs, "runc");
    let mut lines: Vec<String> = stdout(&theirs).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines.join("\n") + "\n", expected);
    // runc leaves the parent it made; not ours to keep.
    for l in
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(" - cgroup"))
    {
        let dir = Path::new(l.split(' ').nth(4).unwrap()).join(&top);
        let _ = std::fs::remove_dir(dir.join("c"));
        let _ = std::fs::remove_dir(dir);
    }
}

/// A `cgroup` mount: without a cgroup namespace of the container's own, the host's v2 tree
/// bound read-only (a new cgroup2 mount in the host's namespace would re-apply its options to
/// the host's whole hierarchy); with one, a cgroup2 mount rooted at the container's cgroup.
#[test]
fn the_cgroup_mount_shows_the_host_tree_or_the_containers_own() {
    let env = Env::new();
    let script = "grep ' /sys/fs/cgroup ' /proc/self/mountinfo; grep '^0::' /proc/self/cgroup; \
        test -d /sys/fs/cgroup/img-run && echo host-tree; (echo x > /sys/fs/cgroup/probe) 2>&1 || true";
    let with_mount = |c: &mut serde_json::Value| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
        // A device rule, so that the container has a v2 cgroup of its own.
        c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    };
    let bundle = env.umoci_bundle(&["sh", "-c", script]);
    edit_config(&bundle, |c| {
        with_mount(c);
        c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "cgroup");
    });
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run without a cgroup namespace");
    let text = stdout(&out);
    let line = text.lines().next().unwrap_or_default();
    // The host tree from its root, read-only, as cgroup2.
    assert!(line.contains(" / /sys/fs/cgroup ro,") && line.contains(" - cgroup2 "), "{text}");
    assert!(text.contains("0::/img-run/") && text.contains("host-tree"), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");

    let bundle = env.umoci_bundle(&["sh", "-c", script]);
    edit_config(&bundle, |c| {
        with_mount(c);
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "cgroup"}));
    });
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run with a cgroup namespace");
    let text = stdout(&out);
    assert!(text.contains(" - cgroup2 ") && text.contains("\n0::/\n"), "{text}");
    assert!(!text.contains("host-tree"), "{text}");
}
