//! Shared by the tests/run_*.rs files: a busybox image in a private store, bundles made from
//! it by umoci, and running img-run with a timeout.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use img::layout::Layout;
use img::test_image::{Compression, Layer, TestImage};
use img_e2e::{Store, bin};
use serde_json::{Value, json};

pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "hostname", "mount", "grep", "ps", "sleep", "true", "false", "touch",
    "env", "pwd", "ip", "wc", "head", "tail", "kill", "dd", "readlink", "stat", "mkdir", "rm", "test", "sed",
    "awk", "tr", "cut", "sort", "uname", "whoami", "printf", "seq", "chmod", "yes", "tee", "nc", "stty",
    "tty", "wait",
];

/// A layer with busybox and the applets these tests use.
pub fn busybox_layer() -> Layer {
    img::test_image::busybox_layer(APPLETS).expect("busybox-static is installed (scripts/setup)")
}

/// The busybox image with extra config (`Cmd`, `Env`, …) and extra layers.
pub fn busybox_image(config: &[(&str, Value)], extra: Vec<Layer>) -> TestImage {
    let mut img = TestImage::new().compression(Compression::None).layer(busybox_layer());
    for l in extra {
        img = img.layer(l);
    }
    let mut has_env = false;
    for (k, v) in config {
        has_env |= *k == "Env";
        img = img.run_config(k, v.clone());
    }
    if !has_env {
        img = img
            .run_config("Env", json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]));
    }
    img
}

/// A private store holding the busybox image as `bb:1`.
pub struct Env {
    pub store: Store,
}

impl Env {
    pub fn new() -> Env {
        Env::with_image(busybox_image(&[("Cmd", json!(["sh"]))], vec![]))
    }

    pub fn with_image(image: TestImage) -> Env {
        let store = Store::new();
        let layout = Layout::open_or_create(store.layout()).unwrap();
        image.build().write_to(&layout, Some("bb:1")).unwrap();
        Env { store }
    }

    pub fn add_image(&self, image: TestImage, name: &str) {
        let layout = Layout::open(self.store.layout()).unwrap();
        image.build().write_to(&layout, Some(name)).unwrap();
    }

    /// img-run with these arguments, a 60 s timeout, stdin from `input`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, "", &[])
    }

    pub fn run_with(&self, args: &[&str], input: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = self.store.command("img-run");
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_timeout(&mut cmd, input, Duration::from_secs(60))
    }

    /// Runs a shell script in the busybox image; must succeed; returns stdout.
    pub fn sh(&self, opts: &[&str], script: &str) -> String {
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["bb:1", "sh", "-c", script]);
        let out = self.run(&args);
        img_e2e::assert_success(&out, &format!("img-run {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A runtime bundle of the busybox image made by umoci, with `args` as its command and
    /// no terminal.
    pub fn umoci_bundle(&self, args: &[&str]) -> PathBuf {
        let dir = self
            .store
            .path()
            .join(format!("bundle-{}", COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        let image = format!("{}:bb:1", self.store.layout().display());
        img_e2e::peer("umoci", &["unpack", "--image", &image, &dir.to_string_lossy()]);
        edit_config(&dir, |c| {
            c["process"]["terminal"] = json!(false);
            c["process"]["args"] = json!(args);
        });
        dir
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Rewrites a bundle's config.json.
pub fn edit_config(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// Runs a command with `input` on stdin, killing it after `limit`.
pub fn run_timeout(cmd: &mut Command, input: &str, limit: Duration) -> Output {
    img_e2e::run_with_timeout(cmd, input, limit)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn img_run() -> PathBuf {
    bin("img-run")
}

/// img-run on a bundle, with `extra` flags before it.
pub fn img_run_bundle(bundle: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(img_run());
    cmd.args(extra).arg(bundle);
    run_timeout(&mut cmd, "", Duration::from_secs(60))
}

/// runc on the same bundle, its state under `state`, as container `id`.
pub fn runc(bundle: &Path, state: &Path, id: &str) -> Output {
    img_e2e::require("runc");
    let mut cmd = Command::new("runc");
    cmd.arg("--root").arg(state).args(["run", "--bundle"]).arg(bundle).arg(id);
    run_timeout(&mut cmd, "", Duration::from_secs(60))
}
