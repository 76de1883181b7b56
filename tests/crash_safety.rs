//! Processes killed with SIGKILL at random points while they write (big layers, so kills land
//! in the middle of blob writes) or collect garbage must always leave a valid layout: index.json
//! parses, every ref is complete, and no partial or wrong blob is under `blobs/`. A later
//! collection cleans up what the killed writers left in `.img/tmp`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use img_e2e::{assert_success, bin, check, json_lines};

/// A small xorshift generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
                ^ u64::from(std::process::id())
        });
        eprintln!("crash_safety: CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    /// Uniform-ish in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn writer(layout: &Path, name: &str) -> Command {
    let mut cmd = Command::new(bin("img-testimage"));
    cmd.args(["--layout", layout.to_str().unwrap(), "--ref", name, "--seed", name])
        .args(["--base-seed", "base", "--layers", "3", "--size", "4000000", "--uncompressed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn img_rm(layout: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("img-rm"));
    cmd.arg("--layout")
        .arg(layout)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    cmd
}

/// Lets a child run for `delay`, then SIGKILLs it (unless it already ended). Returns whether it
/// was killed before it finished.
fn kill_after(mut child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    let finished = child.try_wait().expect("polling the child").is_some();
    child.kill().expect("SIGKILL"); // std's kill sends SIGKILL; a no-op error-free on a zombie
    child.wait().expect("reaping the child");
    !finished
}

/// Everything a valid layout must be after any crash.
fn assert_valid(layout: &Path, context: &str) {
    let r = std::panic::catch_unwind(|| {
        check::assert_complete(layout);
        check::assert_no_bad_blob(layout);
    });
    if let Err(e) = r {
        panic!("after {context}: the layout is not valid: {e:?}");
    }
}

#[test]
fn killed_writers_and_collectors_leave_a_valid_layout() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let mut rng = Rng::new();

    // One complete write, to know how long a write takes (the range the kills are spread over).
    let started = Instant::now();
    let out = writer(&layout, "localhost/complete:1").output().unwrap();
    assert_success(&out, "img-testimage");
    let full = started.elapsed();
    let complete = json_lines(&out.stdout).remove(0);
    assert_valid(&layout, "a complete write");

    // Writers killed at random points, until kills have been seen to leave temp files behind
    // (proof that they land mid-write), and at least 12 times.
    let mut killed_mid_write = 0;
    let mut killed = 0;
    for i in 0..60 {
        if i >= 12 && killed_mid_write >= 2 {
            break;
        }
        let before = check::temp_files(&layout);
        let name = format!("localhost/crash:{i}");
        let child = writer(&layout, &name).spawn().unwrap();
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 11 / 10));
        killed += usize::from(kill_after(child, delay));
        assert_valid(&layout, &format!("killing the writer of {name} after {delay:?}"));
        if check::temp_files(&layout) > before {
            killed_mid_write += 1;
        }
    }
    assert!(killed > 0, "no writer was killed before it finished");
    assert!(killed_mid_write > 0, "no kill landed while a blob was being written");

    // Collectors and removers killed at random points, with a writer running alongside.
    for i in 0..10 {
        let gc = if i % 2 == 0 {
            img_rm(&layout, &["--prune"]).spawn().unwrap()
        } else {
            img_rm(&layout, &["-f", &format!("localhost/crash:{}", i - 1)]).spawn().unwrap()
        };
        let w = writer(&layout, &format!("localhost/again:{i}")).spawn().unwrap();
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 / 2));
        kill_after(gc, delay);
        kill_after(w, Duration::from_micros(rng.below(full.as_micros() as u64)));
        assert_valid(&layout, &format!("killing a collector (round {i})"));
    }

    // The first image is untouched; a last collection cleans every leftover.
    let refs = check::refs(&layout);
    assert!(refs.contains(&("localhost/complete:1".into(), complete["digest"].as_str().unwrap().into())));
    let out = Command::new(bin("img-rm")).arg("--layout").arg(&layout).arg("--prune").output().unwrap();
    assert_success(&out, "img-rm --prune");
    assert_eq!(check::temp_files(&layout), 0, "temp files left after GC");
    let live = check::assert_complete(&layout);
    assert_eq!(check::blob_names(&layout), live, "GC left unreachable blobs");
    check::assert_no_bad_blob(&layout);
    let out = Command::new(bin("img-ls")).arg("--layout").arg(&layout).output().unwrap();
    assert_success(&out, "img-ls");
    assert_eq!(json_lines(&out.stdout).len(), refs.len());
}
