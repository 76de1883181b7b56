//! Helpers for the end-to-end tests in `tests/`: find the built tools, run them in a private
//! store, and insist on the real peer tools being installed.

pub mod check;
pub mod http;
pub mod rawtar;
pub mod registry;
pub mod tap;
pub mod tree;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The path of a built binary of this workspace (`img-ls`, …), next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(path.is_file(), "{} is not built: run `cargo build --workspace` first", path.display());
    path
}

/// Fails loudly when a peer tool the test needs is missing (scripts/setup installs them).
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{tool} is not installed: run scripts/setup");
}

/// Compiles `tests/support/NAME` with gcc and `flags` (static probes that tests put into
/// images) and returns the binary's bytes.
pub fn compile_c(name: &str, flags: &[&str]) -> Vec<u8> {
    require("gcc");
    let dir = tempfile::tempdir().expect("a temp dir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(name);
    let out = dir.path().join("probe");
    let status =
        Command::new("gcc").args(flags).arg("-o").arg(&out).arg(&source).status().expect("running gcc");
    assert!(status.success(), "gcc could not build {}", source.display());
    std::fs::read(&out).expect("the compiled probe")
}

/// A private store (`IMG_ROOT`) in a temp directory, removed when dropped.
pub struct Store {
    pub dir: tempfile::TempDir,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store { dir: tempfile::tempdir().expect("a temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The store's default layout.
    pub fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    /// A store whose layout holds these images under these names.
    pub fn with_images(images: &[(&str, &img::test_image::BuiltImage)]) -> Store {
        let store = Store::new();
        let layout = img::layout::Layout::open_or_create(store.layout()).expect("a layout");
        for (name, image) in images {
            image.write_to(&layout, Some(name)).expect("writing a test image");
        }
        store
    }

    /// A command for one of our tools with `IMG_ROOT` pointing at this store.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(bin(tool));
        cmd.env("IMG_ROOT", self.dir.path()).env_remove("IMG_LAYOUT");
        cmd
    }

    /// Runs a tool with arguments and stdin; returns its output whatever the exit status.
    pub fn run(&self, tool: &str, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(self.command(tool).args(args), stdin)
    }

    /// Runs a tool that must succeed and returns its stdout parsed as JSON Lines.
    pub fn records(&self, tool: &str, args: &[&str], stdin: &str) -> Vec<Value> {
        let out = self.run(tool, args, stdin);
        assert_success(&out, tool);
        json_lines(&out.stdout)
    }
}

/// Runs a command with `stdin` written to it and collects its output. A command still running
/// after five minutes is killed and the test fails, so a hang cannot stall CI.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    run_with_timeout(cmd, stdin, Duration::from_secs(300))
}

/// Like [`run_with_stdin`], killing the command (and failing) after `limit`. No input is
/// stdin from /dev/null (as a script's or a CI step's), not an empty pipe: img-ls reads records
/// from a pipe.
pub fn run_with_timeout(cmd: &mut Command, input: &str, limit: Duration) -> Output {
    let piped = !input.is_empty();
    let mut child = cmd
        .stdin(if piped { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let stdin = child.stdin.take();
    let data = input.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&data);
        }
    });
    let pid = child.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if flag.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        true
    });
    let out = child.wait_with_output().expect("waiting for the child");
    done.store(true, Ordering::SeqCst);
    assert!(!watchdog.join().expect("watchdog"), "{cmd:?} timed out after {limit:?}");
    writer.join().expect("stdin writer");
    out
}

/// Panics with the command's stderr if it failed.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a peer tool (skopeo, umoci, …) that must succeed; returns its stdout.
pub fn peer(program: &str, args: &[&str]) -> String {
    require(program);
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert_success(&out, &format!("{program} {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses every non-empty line as JSON; stdout must carry nothing else.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect()
}

/// stderr as text, for asserting on error messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs img-unpack again with `args`, its `--bundle` directory renamed, under a seccomp filter
/// that refuses `openat2` (as older container runtimes' profiles do; kernels before 5.6 lack
/// it), and asserts the walk that replaces it does exactly what `first` did: the same tree, or
/// the same error. The second tree is removed.
pub fn assert_walk_agrees(store: &Store, args: &[&str], first: &Output) {
    let at = args.iter().position(|a| *a == "--bundle").expect("a --bundle argument") + 1;
    let dest = Path::new(args[at]);
    let walk_dest = dest.with_file_name("walk");
    let walk_dest_arg = walk_dest.to_str().unwrap().to_string();
    let mut walk_args: Vec<&str> = args.to_vec();
    walk_args[at] = &walk_dest_arg;
    let unpack = bin("img-unpack");
    let mut cmd = store.command("img-deny-openat2");
    cmd.arg(&unpack).args(&walk_args);
    let walk = run_with_stdin(&mut cmd, "");
    assert_eq!(walk.status.code(), first.status.code(), "without openat2: {}", stderr(&walk));
    if first.status.success() {
        // Directories the layers do not list get the time they were made: not compared.
        let recent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            as i64
            - 3600;
        let settled = |mut t: tree::Tree| {
            t.values_mut().filter(|n| n.mtime > recent).for_each(|n| n.mtime = 0);
            t
        };
        assert_eq!(
            settled(tree::snapshot(&walk_dest)),
            settled(tree::snapshot(dest)),
            "without openat2, another tree"
        );
        std::fs::remove_dir_all(&walk_dest).unwrap();
    } else {
        let same = stderr(&walk).replace(walk_dest.to_str().unwrap(), dest.to_str().unwrap());
        assert_eq!(same, stderr(first), "without openat2, another error");
        assert!(!walk_dest.exists(), "a failed unpack left {}", walk_dest.display());
    }
}
