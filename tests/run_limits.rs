//! Resource limits through cgroups (v1 controllers on this hybrid machine, v2 where it has
//! them): a memory hog is killed at --memory, a fork bomb stops at --pids-limit, --cpus is
//! written, and the container's cgroups are gone afterwards.

mod run_common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use run_common::*;

/// Waits (up to 4 s) for `done` to hold; the tests' assertions then say what did not happen.
fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cgroup2 mount, if it has `controller` (then img-run uses v2 for it).
fn v2_mount_with(controller: &str) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = PathBuf::from(left.split(' ').nth(4)?);
        let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        (right.starts_with("cgroup2 ") && controllers.split_whitespace().any(|c| c == controller))
            .then_some(mount)
    })
}

/// Where img-run puts a container's cgroup for `controller` (v2: under img-run/; v1: nested
/// in ours).
fn cgroup_dir(controller: &str, name: &str) -> Option<PathBuf> {
    if let Some(mount) = v2_mount_with(controller) {
        return Some(mount.join("img-run").join(name));
    }
    v1_cgroup_dir(controller, name)
}

fn v1_cgroup_dir(controller: &str, name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, names, path) = (f.next()?, f.next()?, f.next()?);
        names.split(',').any(|n| n == controller).then(|| path.to_string())
    })?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (mount, root) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let r: Vec<&str> = right.split(' ').collect();
        let l: Vec<&str> = left.split(' ').collect();
        (r[0] == "cgroup" && r[2].split(',').any(|o| o == controller))
            .then(|| (l[4].to_string(), l[3].to_string()))
    })?;
    let rel = path.strip_prefix(&root).unwrap_or(&path).trim_start_matches('/').to_string();
    Some(PathBuf::from(mount).join(rel).join(format!("img-run-{name}")))
}

#[test]
fn a_memory_hog_is_killed_at_the_limit() {
    let env = Env::new();
    // `tail` keeps the whole endless "line" of /dev/zero in memory.
    let out = env.run(&["--memory", "32m", "bb:1", "sh", "-c", "tail /dev/zero; echo survived $?"]);
    // The shell survives to report tail's death by SIGKILL (the OOM killer).
    assert_eq!(stdout(&out), "survived 137\n", "{}", img_e2e::stderr(&out));
    let out = env.run(&["--memory", "32m", "--init", "bb:1", "tail", "/dev/zero"]);
    assert_eq!(code(&out), 137);
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let env = Env::new();
    // Long-lived children, counted as they start: the 12th process cannot be forked.
    let script = "i=0; while [ $i -lt 40 ]; do sleep 10 & i=$((i+1)); echo $i; done";
    let out = env.run(&["--pids-limit", "12", "bb:1", "sh", "-c", script]);
    let started: usize = stdout(&out).lines().last().unwrap_or("0").parse().unwrap();
    assert_eq!(started, 11, "with the shell, 12 processes: {}", img_e2e::stderr(&out));
    assert!(img_e2e::stderr(&out).contains("can't fork"), "{}", img_e2e::stderr(&out));
    // A real bomb: held at the limit, and gone with the container.
    let bomb = "sleep 1 & s=$!; b() { b | b & }; b 2>/dev/null; wait $s; echo alive";
    let out = env.run(&["--pids-limit", "16", "bb:1", "sh", "-c", bomb]);
    assert_eq!(stdout(&out), "alive\n", "{}", img_e2e::stderr(&out));
}

#[test]
fn cpus_are_written_and_cgroups_removed() {
    let env = Env::new();
    let name = format!("cpu-test-{}", std::process::id());
    let mut child = env
        .store
        .command("img-run")
        .args([
            "--name",
            &name,
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "--memory",
            "64m",
            "bb:1",
            "sleep",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let v2 = v2_mount_with("cpu").is_some()
        && v2_mount_with("memory").is_some()
        && v2_mount_with("pids").is_some();
    let cpu = cgroup_dir("cpu", &name).expect("a cpu controller");
    let memory = cgroup_dir("memory", &name).expect("a memory controller");
    let pids = cgroup_dir("pids", &name).expect("a pids controller");
    let quota_file = if v2 { "cpu.max" } else { "cpu.cfs_quota_us" };
    wait_until(|| cpu.join(quota_file).exists());
    std::thread::sleep(Duration::from_millis(200));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
    if v2 {
        assert_eq!(read(cpu.join("cpu.max")), "50000 100000");
        assert_eq!(read(memory.join("memory.max")), (64u64 << 20).to_string());
    } else {
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(memory.join("memory.limit_in_bytes")), (64u64 << 20).to_string());
    }
    assert_eq!(read(pids.join("pids.max")), "50");
    let procs = read(pids.join("cgroup.procs"));
    assert!(!procs.is_empty(), "the container is not in its cgroup");
    assert!(child.wait().unwrap().success());
    for dir in [cpu, memory, pids] {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}

#[test]
fn limits_that_cannot_be_applied_are_errors() {
    let env = Env::new();
    let out = env.run(&["--memory", "1k", "bb:1", "true"]);
    assert_eq!(code(&out), 125);
    let out = env.run(&["--cpus", "64", "bb:1", "true"]);
    assert_eq!(code(&out), 125);
    assert!(img_e2e::stderr(&out).contains("--cpus"), "{}", img_e2e::stderr(&out));
}

#[test]
fn the_next_run_sweeps_what_a_killed_run_left() {
    let env = Env::new();
    let name = format!("killed-{}", std::process::id());
    let mut child = env
        .store
        .command("img-run")
        .args(["--name", &name, "--memory", "64m", "--init", "bb:1", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let memory = cgroup_dir("memory", &name).expect("a memory controller");
    let dir = env.store.path().join("containers").join(&name);
    wait_until(|| memory.join("cgroup.procs").exists());
    std::thread::sleep(Duration::from_millis(300));
    // A kept container must survive the sweep.
    let out = env.run(&["--keep", "--name", "kept", "bb:1", "true"]);
    img_e2e::assert_success(&out, "img-run --keep");

    child.kill().unwrap(); // SIGKILL: img-run cleans nothing up (its container dies with it)
    child.wait().unwrap();
    assert!(dir.is_dir(), "the killed run's directory is there");
    wait_until(|| std::fs::read_to_string(memory.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty()));
    assert!(memory.is_dir(), "the killed run's cgroup is there");

    // Its name is free again, and any next run sweeps the leftovers.
    assert_eq!(env.sh(&["--name", &name], "echo again"), "again\n");
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(!memory.exists(), "{} was left behind", memory.display());
    let other = format!("other-{}", std::process::id());
    let mut child =
        env.store.command("img-run").args(["--name", &other, "bb:1", "sleep", "30"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    env.sh(&[], "true");
    let left: Vec<String> = std::fs::read_dir(env.store.path().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["kept"], "only the kept container remains");
}

#[test]
fn a_killed_bundle_runs_cgroups_do_not_block_the_name() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["sleep", "30"]);
    let name = format!("killed-bundle-{}", std::process::id());
    let mut child = env
        .store
        .command("img-run")
        .args(["--name", &name, "--memory", "64m", bundle.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let memory = cgroup_dir("memory", &name).expect("a memory controller");
    wait_until(|| memory.join("cgroup.procs").exists());
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: its cgroup stays behind
    child.wait().unwrap();
    assert!(memory.is_dir(), "the killed run's cgroup is there");
    // The same name with limits again: the empty leftover is removed, not an error.
    let mut waited = 0;
    loop {
        let out = env.run(&["--name", &name, "--memory", "64m", bundle.to_str().unwrap(), "echo", "again"]);
        if out.status.success() {
            assert_eq!(stdout(&out), "again\n");
            break;
        }
        // Its processes may take a moment to leave the cgroup after the SIGKILL.
        assert!(waited < 50, "{}", img_e2e::stderr(&out));
        waited += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!memory.exists(), "{} was left behind", memory.display());
}
