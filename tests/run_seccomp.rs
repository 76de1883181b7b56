//! Seccomp in img-run and img-build: docker's default profile for images and RUN steps,
//! `--security-opt seccomp=unconfined|PROFILE`, `--privileged`, and a bundle's `linux.seccomp`
//! with its actions, argument conditions and errors. The system calls are made by a small
//! static C probe (tests/support/seccomp_probe.c) that prints the errno each call got.

mod run_common;

use std::collections::HashMap;
use std::fs;

use std::process::Output;

use img::test_image::{Entry, Layer};
use img_e2e::{assert_success, stderr};
use run_common::{Env, busybox_image, code, edit_config, stdout};
use serde_json::{Value, json};

const EPERM: i32 = 1;
const EBADF: i32 = 9;
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;

/// Compiles the probe, static, so it runs in the busybox image.
fn compile_probe() -> Vec<u8> {
    img_e2e::compile_c("seccomp_probe.c", &["-static", "-O2"])
}

/// The busybox image (with `unshare`) plus `/probe`, as `bb:1` and `localhost/sc:1`.
fn env() -> Env {
    let applets =
        ["sh", "echo", "cat", "grep", "mkdir", "ls", "unshare", "true", "touch", "rm", "ps", "wc", "sed"];
    let bb = img::test_image::busybox_layer(&applets).expect("busybox-static is installed (scripts/setup)");
    let probe =
        Layer::new([Entry::file("probe", compile_probe()).mode(0o755), Entry::dir("tmp").mode(0o1777)]);
    let image = busybox_image(&[("Cmd", json!(["sh"]))], vec![bb, probe]);
    let env = Env::with_image(image.clone());
    env.add_image(image, "localhost/sc:1");
    env
}

/// What the probe printed: call name to errno (0 for success).
fn probe(env: &Env, opts: &[&str], calls: &[&str]) -> HashMap<String, i32> {
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["bb:1", "/probe"]);
    args.extend(calls);
    let out = env.run(&args);
    parse(&out, &args.join(" "))
}

fn parse(out: &Output, what: &str) -> HashMap<String, i32> {
    assert_success(out, what);
    stdout(out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
        .collect()
}

/// The `Seccomp:` mode of /proc/self/status (0 none, 2 filter).
fn seccomp_mode(env: &Env, opts: &[&str]) -> String {
    env.sh(opts, "grep '^Seccomp:' /proc/self/status | sed 's/.*:[[:space:]]*//'").trim().to_string()
}

const REFUSED: [&str; 9] = [
    "unshare_user",
    "keyctl",
    "add_key",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "io_uring_setup",
    "mount",
    "setns",
];

#[test]
fn the_default_profile_refuses_what_docker_refuses() {
    let env = env();
    let mut calls = REFUSED.to_vec();
    calls.extend([
        "clone3",
        "fork",
        "getpid",
        "mkdir",
        "personality_query",
        "personality_linux32",
        "personality_norandom",
    ]);
    let seen = probe(&env, &[], &calls);
    for name in REFUSED {
        assert_eq!(seen[name], EPERM, "{name} under docker's default profile: {seen:?}");
    }
    // clone3 is ENOSYS, so that libc falls back to clone (whose flags the filter can see).
    assert_eq!(seen["clone3"], ENOSYS, "{seen:?}");
    // Ordinary work, and personality only with the values docker allows.
    for name in ["fork", "getpid", "mkdir", "personality_query", "personality_linux32"] {
        assert_eq!(seen[name], 0, "{name}: {seen:?}");
    }
    assert_eq!(seen["personality_norandom"], EPERM, "{seen:?}");
    assert_eq!(seccomp_mode(&env, &[]), "2");
    // A syscall newer than any the profile names (statmount, 457 on x86-64) is ENOSYS, as
    // under runc, so that libc falls back; one the profile knows and refuses stays EPERM.
    if cfg!(target_arch = "x86_64") {
        let seen = probe(&env, &[], &["nr_457", "nr_1000", "keyctl"]);
        assert_eq!((seen["nr_457"], seen["nr_1000"], seen["keyctl"]), (ENOSYS, ENOSYS, EPERM), "{seen:?}");
        let seen = probe(&env, &["--security-opt", "seccomp=unconfined"], &["nr_457"]);
        assert_ne!(seen["nr_457"], ENOSYS, "this kernel has statmount: {seen:?}");
    }
    // With --init the command is filtered too (the reaper is img-run's own code).
    assert_eq!(seccomp_mode(&env, &["--init"]), "2");
    let seen = probe(&env, &["--init"], &["unshare_user"]);
    assert_eq!(seen["unshare_user"], EPERM, "{seen:?}");

    // busybox's own unshare, as the issue probed it.
    let out = env.run(&["bb:1", "unshare", "-U", "true"]);
    assert_ne!(code(&out), 0, "unshare -U succeeded under the default profile");
    assert!(stderr(&out).contains("Operation not permitted"), "{}", stderr(&out));
    // A shell, pipes, subprocesses and files work as ever.
    let text =
        env.sh(&[], "mkdir -p /tmp/a && echo hi > /tmp/a/f && cat /tmp/a/f | wc -c && ps | wc -l >/dev/null");
    assert_eq!(text.trim(), "3");
}

#[test]
fn compiled_programs_are_cached_in_the_store() {
    let env = env();
    let dir = env.store.path().join("seccomp");
    assert_eq!(seccomp_mode(&env, &[]), "2");
    let cached: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    // A damaged program is compiled again, never loaded or trusted.
    fs::write(&cached[0], b"abc").unwrap();
    let seen = probe(&env, &[], &["unshare_user", "getpid"]);
    assert_eq!((seen["unshare_user"], seen["getpid"]), (EPERM, 0), "{seen:?}");
    assert_eq!(fs::metadata(&cached[0]).unwrap().len() % 8, 0);
}

#[test]
fn unconfined_and_privileged_lift_it() {
    let env = env();
    let seen = probe(&env, &["--security-opt", "seccomp=unconfined"], &REFUSED);
    assert_eq!(seen["unshare_user"], 0, "{seen:?}");
    assert_eq!(seen["add_key"], 0, "{seen:?}");
    assert_eq!(seen["userfaultfd"], 0, "{seen:?}");
    assert_eq!(seen["io_uring_setup"], EFAULT, "{seen:?}");
    assert_ne!(seen["keyctl"], EPERM, "{seen:?}");
    assert_ne!(seen["perf_event_open"], EPERM, "{seen:?}");
    // Without CAP_SYS_ADMIN the kernel itself refuses mount (EFAULT comes first) and setns.
    assert_eq!(seen["mount"], EFAULT, "{seen:?}");
    assert_eq!(seccomp_mode(&env, &["--security-opt", "seccomp=unconfined"]), "0");

    let seen = probe(&env, &["--privileged"], &["unshare_user", "bpf", "mount", "setns", "clone3"]);
    assert_eq!(seen["unshare_user"], 0, "{seen:?}");
    assert_eq!(seen["bpf"], EINVAL, "{seen:?}");
    assert_eq!(seen["mount"], EFAULT, "{seen:?}");
    assert_eq!(seen["setns"], EBADF, "{seen:?}");
    assert_eq!(seen["clone3"], EINVAL, "{seen:?}");
    assert_eq!(seccomp_mode(&env, &["--privileged"]), "0");
}

#[test]
fn capabilities_unlock_their_syscalls_as_in_docker() {
    let env = env();
    let seen =
        probe(&env, &["--cap-add", "SYS_ADMIN"], &["mount", "setns", "unshare_uts", "clone3", "keyctl"]);
    assert_eq!(seen["mount"], EFAULT, "CAP_SYS_ADMIN allows mount: {seen:?}");
    assert_eq!(seen["setns"], EBADF, "{seen:?}");
    assert_eq!(seen["unshare_uts"], 0, "{seen:?}");
    assert_eq!(seen["clone3"], EINVAL, "{seen:?}");
    assert_eq!(seen["keyctl"], EPERM, "keyctl stays refused: {seen:?}");
    // Dropping a capability docker's default has takes its syscalls away too.
    let seen = probe(&env, &["--cap-drop", "ALL"], &["getpid", "unshare_user"]);
    assert_eq!((seen["getpid"], seen["unshare_user"]), (0, EPERM), "{seen:?}");
}

/// Writes a profile in docker's format and returns `seccomp=PATH`.
fn profile_opt(env: &Env, name: &str, profile: &Value) -> String {
    let path = env.store.path().join(name);
    fs::write(&path, serde_json::to_vec(profile).unwrap()).unwrap();
    format!("seccomp={}", path.display())
}

#[test]
fn a_custom_profile_in_dockers_format() {
    let env = env();
    // Deny by default; allow what img-run's last steps and the static probe need. mkdir is
    // not among them; getpid is, for the probe.
    let allowed = [
        "execve",
        "brk",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "mprotect",
        "mmap",
        "munmap",
        "readlink",
        "readlinkat",
        "uname",
        "getrandom",
        "newfstatat",
        "fstat",
        "write",
        "exit_group",
        "exit",
        "getpid",
        "prctl",
        "capget",
        "capset",
        "setgroups",
        "setresuid",
        "setresgid",
        "umask",
        "chdir",
        "getcwd",
        "statx",
        "close_range",
        "close",
        "fcntl",
        "futex",
    ];
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [
            {"names": &allowed[..], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid", "not_a_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
        ]
    });
    let opt = profile_opt(&env, "custom.json", &profile);
    for extra in [&[][..], &["--security-opt", "no-new-privileges"][..]] {
        let mut opts = vec!["--security-opt", opt.as_str()];
        opts.extend(extra);
        let seen = probe(&env, &opts, &["getpid", "mkdir", "mount", "unshare_user"]);
        assert_eq!(seen["getpid"], 0, "{extra:?}: {seen:?}");
        assert_eq!(seen["mkdir"], EPERM, "{extra:?}: {seen:?}");
        assert_eq!(seen["mount"], EPERM, "{extra:?}: {seen:?}");
        assert_eq!(seen["unshare_user"], ENOSYS, "{extra:?}: {seen:?}");
    }
    // The same profile with CAP_SYS_ADMIN: its conditional rules flip.
    let seen = probe(&env, &["--security-opt", &opt, "--cap-add", "SYS_ADMIN"], &["mount", "unshare_user"]);
    assert_eq!((seen["mount"], seen["unshare_user"]), (EFAULT, EPERM), "{seen:?}");
    // A profile named explicitly applies even with --privileged, as docker does.
    let seen = probe(&env, &["--security-opt", &opt, "--privileged"], &["mkdir"]);
    assert_eq!(seen["mkdir"], EPERM, "{seen:?}");

    // Malformed profiles are refused with the field named; a missing file too.
    for (bad, expect) in [
        (json!({"defaultAction": "SCMP_ACT_NOPE"}), "defaultAction"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "bogus": 1}]}),
            "bogus",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}),
            "syscalls[0].args[0].op",
        ),
    ] {
        let opt = profile_opt(&env, "bad.json", &bad);
        let out = env.run(&["--security-opt", &opt, "bb:1", "true"]);
        assert_eq!(code(&out), 125, "{bad}");
        let err = stderr(&out);
        assert!(err.contains(expect) && err.lines().count() == 1, "{bad}: {err}");
    }
    let out = env.run(&["--security-opt", "seccomp=/nonexistent/profile.json", "bb:1", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("/nonexistent/profile.json"), "{}", stderr(&out));
}

/// Runs a bundle of the image whose `linux.seccomp` is `seccomp` and returns the output.
fn run_bundle(env: &Env, args: &[&str], seccomp: Option<Value>) -> Output {
    let bundle = env.umoci_bundle(args);
    edit_config(&bundle, |c| match seccomp {
        Some(s) => c["linux"]["seccomp"] = s,
        None => {
            c["linux"].as_object_mut().unwrap().remove("seccomp");
        }
    });
    env.run(&[bundle.to_str().unwrap()])
}

#[test]
fn a_bundles_seccomp_is_applied() {
    let env = env();
    // The probe: everything allowed but mkdir.
    let deny_mkdir = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    });
    let out = run_bundle(&env, &["mkdir", "/tmp/made"], Some(deny_mkdir.clone()));
    assert_ne!(code(&out), 0, "mkdir succeeded although the bundle refuses it");
    assert!(stderr(&out).contains("Operation not permitted"), "{}", stderr(&out));
    let seen = parse(&run_bundle(&env, &["/probe", "mkdir", "getpid"], Some(deny_mkdir)), "bundle");
    assert_eq!((seen["mkdir"], seen["getpid"]), (EPERM, 0), "{seen:?}");
    // A bundle without linux.seccomp runs unfiltered, as runc runs it.
    let out = run_bundle(&env, &["grep", "^Seccomp:", "/proc/self/status"], None);
    assert!(stdout(&out).contains('0') && !stdout(&out).contains('2'), "{}", stdout(&out));

    // errnoRet, defaultErrnoRet, the LOG and SPEC_ALLOW flags, LOG (allowed, logged) and TRACE.
    let errnos = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            // TRACE with no tracer attached: the kernel answers ENOSYS.
            {"names": ["keyctl"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["no_such_syscall_here"], "action": "SCMP_ACT_ERRNO"}
        ]
    });
    let seen =
        parse(&run_bundle(&env, &["/probe", "mkdir", "getpid", "keyctl"], Some(errnos)), "bundle errnoRet");
    assert_eq!((seen["mkdir"], seen["getpid"], seen["keyctl"]), (13, 0, ENOSYS), "{seen:?}");
    let deny_all_but = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{"names": ["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq",
            "prlimit64", "mprotect", "mmap", "readlink", "readlinkat", "uname", "getrandom", "newfstatat", "fstat",
            "write", "exit_group", "prctl", "capget", "capset", "setgroups", "setresuid", "setresgid", "umask",
            "chdir", "getcwd", "statx", "close_range", "fcntl"], "action": "SCMP_ACT_ALLOW"}]
    });
    let seen =
        parse(&run_bundle(&env, &["/probe", "mkdir", "getpid"], Some(deny_all_but)), "defaultErrnoRet");
    assert_eq!((seen["mkdir"], seen["getpid"]), (ENOSYS, ENOSYS), "{seen:?}");

    // KILL_PROCESS, KILL (thread) and TRAP end the command with SIGSYS (128+31).
    for act in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"] {
        let kill =
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": act}]});
        let out = run_bundle(&env, &["/probe", "getpid"], Some(kill));
        assert_eq!(code(&out), 128 + libc::SIGSYS, "{act}: {}", stderr(&out));
    }
}

#[test]
fn argument_conditions() {
    let env = env();
    const NORANDOM: u64 = 0x0040000;
    let rules = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            // personality(ADDR_NO_RANDOMIZE) refused with EINVAL, other values let through.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": NORANDOM, "op": "SCMP_CMP_EQ"}]},
            // Several conditions on one argument are alternatives: 0 or -1 (a query).
            {"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]},
            // On different arguments they must all hold: clone3(NULL, 0) matches arg0 == 0
            // and arg1 <= 0; mkdir's mode 0755 under the mask 0700 equals 0700.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0, "op": "SCMP_CMP_LE"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 98,
             "args": [{"index": 1, "value": 0o700, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}]},
            // Not matching: getpid has no argument above 5.
            {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99,
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]}
        ]
    });
    let calls = ["personality_norandom", "personality_linux32", "setns", "clone3", "mkdir", "keyctl"];
    let mut args = vec!["/probe"];
    args.extend(calls);
    let seen = parse(&run_bundle(&env, &args, Some(rules)), "argument conditions");
    assert_eq!(seen["personality_norandom"], EINVAL, "{seen:?}");
    assert_eq!(seen["personality_linux32"], 0, "{seen:?}");
    assert_eq!(seen["setns"], 95, "{seen:?}");
    assert_eq!(seen["clone3"], 97, "{seen:?}");
    assert_eq!(seen["mkdir"], 98, "{seen:?}");
    assert_ne!(seen["keyctl"], 99, "keyctl(0, …) does not match arg0 > 5: {seen:?}");
}

#[test]
fn a_bundles_malformed_or_unsupported_seccomp_is_refused() {
    let env = env();
    for (seccomp, expect) in [
        (json!({"defaultAction": "SCMP_ACT_NOTIFY"}), "SCMP_ACT_NOTIFY is not supported"),
        (json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}), "listenerPath"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}),
            "linux.seccomp.architectures[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}),
            "linux.seccomp.flags[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FROB"}]}),
            "linux.seccomp.syscalls[0].action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
    ] {
        let out = run_bundle(&env, &["true"], Some(seccomp.clone()));
        assert_eq!(code(&out), 125, "{seccomp}");
        let err = stderr(&out);
        assert!(err.contains(expect) && err.lines().count() == 1, "{seccomp}: {err}");
    }
}

#[test]
fn run_steps_are_confined_too() {
    let env = env();
    let ctx = tempfile::tempdir().unwrap();
    let build = |dockerfile: &str| {
        fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        env.store.run("img-build", &[ctx.path().to_str().unwrap()], "")
    };
    let out = build("FROM localhost/sc:1\nRUN unshare -U true\n");
    assert_eq!(out.status.code(), Some(1), "unshare -U succeeded in a RUN step");
    let err = stderr(&out);
    assert!(err.contains("Operation not permitted") && err.contains("Dockerfile:2"), "{err}");
    let out = build("FROM localhost/sc:1\nRUN /probe keyctl clone3 getpid > /seen\nRUN cat /seen >&2\n");
    assert_success(&out, "img-build");
    let err = stderr(&out);
    for line in ["keyctl=1", "clone3=38", "getpid=0"] {
        assert!(err.lines().any(|l| l.trim().ends_with(line)), "{line} in a RUN step: {err}");
    }
}
