//! The runtime's own binary is out of the container's reach (CVE-2019-5736): an image whose
//! entrypoint is `/proc/self/exe` makes the kernel exec the binary the runtime was running,
//! with the image's ELF interpreter (tests/support/exe_probe.c) as the code that runs. That
//! code must find a sealed in-memory copy, not the host's img-run or img-build: another file,
//! sealed against writing, and the host file's bytes unchanged.

mod run_common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use img::test_image::{Compression, Entry, Layer, TestImage};
use img_e2e::check::digest_of_file;
use img_e2e::{assert_success, bin, stderr};
use run_common::*;
use serde_json::json;

const F_SEAL_SEAL: i64 = 1;
const F_SEAL_SHRINK: i64 = 2;
const F_SEAL_GROW: i64 = 4;
const F_SEAL_WRITE: i64 = 8;
const ALL_SEALS: i64 = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

/// The loader img-run's binary asks for (`readelf -l target/debug/img-run`).
const INTERPRETER: &str = "lib64/ld-linux-x86-64.so.2";

/// Compiles the probe (no libc, static, not position-independent) into `dir`.
fn compile_probe() -> Vec<u8> {
    img_e2e::compile_c(
        "exe_probe.c",
        &["-nostdlib", "-static", "-fno-pie", "-no-pie", "-fno-stack-protector", "-O2"],
    )
}

/// An image whose only file is the probe, as the dynamic loader, and whose entrypoint is
/// `/proc/self/exe` with `args`.
fn probe_image(args: &[&str]) -> TestImage {
    let probe = compile_probe();
    let mut entrypoint = vec!["/proc/self/exe"];
    entrypoint.extend_from_slice(args);
    TestImage::new()
        .compression(Compression::None)
        .layer(Layer::new([
            Entry::dir("lib64"),
            Entry::file(INTERPRETER, probe).mode(0o755),
            Entry::dir("tmp").mode(0o1777),
        ]))
        .run_config("Entrypoint", json!(entrypoint))
        .run_config("Env", json!(["PATH=/usr/bin:/bin"]))
}

/// What the probe saw of the binary it looked at.
#[derive(Debug)]
struct Seen {
    dev: u64,
    ino: u64,
    seals: i64,
    reopen: String,
    write: String,
}

fn parse_probe(text: &str) -> Seen {
    // img-build's log prefixes a RUN step's lines with its stage (`[0] dev=…`).
    let line = text
        .lines()
        .map(|l| l.strip_prefix('[').and_then(|r| r.split_once("] ")).map_or(l, |(_, rest)| rest))
        .find(|l| l.starts_with("dev="))
        .unwrap_or_else(|| panic!("no probe line in {text:?}"));
    let field = |key: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_string()
    };
    Seen {
        dev: field("dev").parse().unwrap(),
        ino: field("ino").parse().unwrap(),
        seals: field("seals").parse().unwrap(),
        reopen: field("reopen"),
        write: field("write"),
    }
}

/// The host's binary is not what the container saw, and what it saw cannot be written: a
/// memfd sealed for good, or (as root) the binary seen through a read-only overlayfs mount
/// attached nowhere, whose file refuses to open for writing (EROFS).
fn assert_sealed_copy(seen: &Seen, host: &Path) {
    const EROFS: &str = "-30";
    let meta = fs::metadata(host).unwrap();
    // An overlay shows the lower file's inode number on a device of its own: the device tells.
    assert!(
        seen.dev != meta.dev(),
        "the container reached the host's binary {} (dev {} ino {}, seen ino {})",
        host.display(),
        meta.dev(),
        meta.ino(),
        seen.ino
    );
    let sealed = seen.seals >= 0 && seen.seals & ALL_SEALS == ALL_SEALS;
    let read_only_view = seen.reopen == EROFS;
    assert!(sealed || read_only_view, "neither a sealed copy nor a read-only view: {seen:?}");
    assert_ne!(
        seen.write, "ok",
        "the container reopened ({}) and wrote to the binary: {seen:?}",
        seen.reopen
    );
}

/// The host binary's path and digest, to compare after the attack.
fn fingerprint(tool: &str) -> (PathBuf, String) {
    let path = bin(tool);
    let digest = digest_of_file(&path);
    (path, digest)
}

#[test]
fn the_command_cannot_reach_img_runs_binary() {
    let env = Env::with_image(probe_image(&[]));
    let (host, before) = fingerprint("img-run");
    let out = env.run(&["bb:1"]);
    assert_success(&out, "img-run of /proc/self/exe");
    let seen = parse_probe(&stdout(&out));
    assert_sealed_copy(&seen, &host);
    assert_eq!(digest_of_file(&host), before, "img-run's binary changed");
}

#[test]
fn the_command_cannot_reach_img_runs_binary_through_init() {
    // With --init, PID 1 is img-run forked and never execed; a container allowed to trace it
    // can open its /proc/1/exe.
    let env = Env::with_image(probe_image(&["/proc/1/exe"]));
    let (host, before) = fingerprint("img-run");
    let out = env.run(&["--init", "--cap-add", "SYS_PTRACE", "bb:1"]);
    assert_success(&out, "img-run --init of /proc/self/exe /proc/1/exe");
    let seen = parse_probe(&stdout(&out));
    assert_sealed_copy(&seen, &host);
    assert_eq!(digest_of_file(&host), before, "img-run's binary changed");
}

#[test]
fn a_process_outliving_img_run_cannot_rewrite_its_binary() {
    // CVE-2019-5736 itself: a bundle without a PID namespace, so the container's processes
    // outlive img-run. The probe keeps /proc/self/exe open in a child that execs something
    // else, waits until nothing executes the binary (img-run has exited) and reopens it for
    // writing through /proc/self/fd/N.
    let env = Env::with_image(probe_image(&[]));
    let bundle = env.umoci_bundle(&["/proc/self/exe", "outlive"]);
    edit_config(&bundle, |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "pid");
        // Without a cgroup of its own: img-run, like runc, kills what is left in the
        // container's cgroup when it ends, and device rules would make one.
        c["linux"]["resources"]["devices"] = json!([]);
    });
    let (host, before) = fingerprint("img-run");
    // The output comes from the child that outlived img-run; reading it waits for that child.
    let out = env.run(&[bundle.to_str().unwrap()]);
    assert_success(&out, "img-run of a bundle running /proc/self/exe outlive");
    let seen = parse_probe(&stdout(&out));
    assert_sealed_copy(&seen, &host);
    // Nothing executes the binary any more: a sealed copy reopens and its seal refuses the
    // write; a read-only view refuses the reopen itself (EROFS).
    assert!(seen.reopen == "ok" || seen.reopen == "-30", "{seen:?}");
    assert_ne!(seen.write, "ok", "{seen:?}");
    assert_eq!(digest_of_file(&host), before, "img-run's binary changed");
}

#[test]
fn a_run_step_cannot_reach_img_builds_binary() {
    let env = Env::with_image(probe_image(&[]));
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), "FROM bb:1\nRUN [\"/proc/self/exe\"]\n").unwrap();
    let (host, before) = fingerprint("img-build");
    let out = env.store.run("img-build", &["-t", "localhost/escaped:1", ctx.path().to_str().unwrap()], "");
    assert_success(&out, "img-build with RUN [\"/proc/self/exe\"]");
    // RUN steps write to img-build's stderr.
    let seen = parse_probe(&stderr(&out));
    assert_sealed_copy(&seen, &host);
    assert_eq!(digest_of_file(&host), before, "img-build's binary changed");
}
