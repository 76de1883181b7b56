//! img-build on hostile Dockerfiles: input that used to take minutes, crash the process or
//! fill the memory must build quickly or fail with a one-line error naming its line. Each
//! build runs under a time limit far below what the old behaviour took, so a regression
//! fails here instead of hanging the suite.

use std::fs;
use std::process::Output;
use std::time::Duration;

use img::layout::Layout;
use img::layout::resolve;
use img_e2e::{Store, assert_success, run_with_timeout, stderr};
use serde_json::Value;

/// Well under what the quadratic and exponential versions took (minutes), well over what a
/// debug build takes on a loaded machine now (seconds).
const LIMIT: Duration = Duration::from_secs(60);

fn build(store: &Store, dockerfile: &str, tag: &str) -> Output {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = store.command("img-build");
    cmd.args(["-t", tag]).arg(ctx.path());
    run_with_timeout(&mut cmd, "", LIMIT)
}

fn config_of(store: &Store, name: &str) -> Value {
    let layout = Layout::open(store.layout()).unwrap();
    let image = resolve::image(&layout, name, None).unwrap();
    serde_json::from_slice(&image.config_bytes).unwrap()
}

/// The build failed, and said why in one line naming the Dockerfile and the line.
fn assert_fails_at(out: &Output, line: usize, message: &str) {
    assert!(!out.status.success(), "the build succeeded");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(last, format!("img-build: Dockerfile:{line}: {message}"), "stderr:\n{err}");
}

fn env_of(config: &Value) -> Vec<&str> {
    config["config"]["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

#[test]
fn ten_thousand_metadata_lines_build_in_linear_time() {
    // Took 575 s (debug) when every step copied every variable; each line also expands the
    // variable the line before set, and ARG and LABEL lines are mixed in.
    let mut dockerfile = String::from("FROM scratch\nENV V0=v0\n");
    for i in 1..=10_000 {
        dockerfile.push_str(&format!("ENV V{i}=v{i} P{i}=$V{}\n", i - 1));
        if i % 5 == 0 {
            dockerfile.push_str(&format!("ARG A{i}=$P{i}\nLABEL l{i}=$A{i}\n"));
        }
    }
    let store = Store::new();
    let out = build(&store, &dockerfile, "localhost/many:1");
    assert_success(&out, "img-build");
    let config = config_of(&store, "localhost/many:1");
    let env = env_of(&config);
    assert_eq!(env.len(), 1 + 1 + 2 * 10_000, "PATH, V0, then V and P of each line");
    assert_eq!(env[env.len() - 2..], ["V10000=v10000", "P10000=v9999"]);
    let labels = config["config"]["Labels"].as_object().unwrap();
    assert_eq!(labels.len(), 2_000);
    assert_eq!(labels["l10000"], "v9999");
    assert_eq!(config["history"].as_array().unwrap().len(), 10_001 + 2_000, "ENV and LABEL lines");
}

#[test]
fn an_env_set_again_keeps_its_place() {
    let store = Store::new();
    let out = build(&store, "FROM scratch\nENV A=1 B=2\nENV A=3 PATH=/bin\n", "localhost/order:1");
    assert_success(&out, "img-build");
    assert_eq!(env_of(&config_of(&store, "localhost/order:1")), ["PATH=/bin", "A=3", "B=2"]);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    // 100,000 nested `${a:-` overflowed the stack and aborted the process.
    let nested = format!("{}x{}", "${a:-".repeat(100_000), "}".repeat(100_000));
    let store = Store::new();
    let out = build(&store, &format!("FROM scratch\nENV A=1\nLABEL x={nested}\n"), "localhost/deep:1");
    assert_fails_at(&out, 3, "variable substitutions nested more than 100 deep");

    let onbuilds = "ONBUILD ".repeat(100_000);
    let out = build(&store, &format!("FROM scratch\n{onbuilds}RUN true\n"), "localhost/deep:2");
    assert_fails_at(&out, 2, "ONBUILD isn't allowed as an ONBUILD trigger");
}

#[test]
fn pattern_operators_on_long_values_finish() {
    // The backtracking matcher took 75 s on a 50-character value and would take years here.
    let stars = "*a".repeat(30);
    let dockerfile = format!(
        "FROM scratch\nENV A={}\nENV B=${{A#{stars}b}} C=${{A%%{stars}}} D=${{A//{stars}b/x}} E=${{A##*a}}\n",
        "a".repeat(60)
    );
    let store = Store::new();
    let out = build(&store, &dockerfile, "localhost/glob:1");
    assert_success(&out, "img-build");
    let config = config_of(&store, "localhost/glob:1");
    let a60 = "a".repeat(60);
    let env = env_of(&config);
    assert_eq!(env[2..], [format!("B={a60}"), "C=".into(), format!("D={a60}"), "E=".into()]);
}

#[test]
fn an_expansion_bomb_stops_at_a_megabyte() {
    // Each line doubles A: it would reach 4 MiB here, 2^N bytes with N lines.
    let mut dockerfile = format!("FROM scratch\nENV A={}\n", "x".repeat(1024));
    for _ in 0..12 {
        dockerfile.push_str("ENV A=$A$A\n");
    }
    let store = Store::new();
    let out = build(&store, &dockerfile, "localhost/bomb:1");
    // 1 KiB doubled 11 times is 2 MiB: line 2 + 11.
    assert_fails_at(&out, 13, "a variable expansion makes more than 1048576 bytes beyond the text written");
    let layout = Layout::open(store.layout()).ok();
    assert!(layout.is_none_or(|l| resolve::image(&l, "localhost/bomb:1", None).is_err()), "no image named");
}

#[test]
fn errors_before_the_first_stage_name_their_line() {
    let store = Store::new();
    let deep = format!("{}x{}", "${a:-".repeat(200), "}".repeat(200));
    let out = build(&store, &format!("ARG A={deep}\nFROM scratch\n"), "localhost/deep-arg:1");
    assert_fails_at(&out, 1, "variable substitutions nested more than 100 deep");
    let out = build(&store, "FROM scratch AS x\nFROM scratch AS x\n", "localhost/dup:1");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).lines().last().unwrap().starts_with("img-build: Dockerfile:2: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_config_that_grows_without_bound_stops_at_64_mib() {
    // Each LABEL line adds a megabyte to the config (the label and its history entry), within
    // the per-expansion bound: the whole config is bounded too.
    let mut dockerfile = format!("FROM scratch\nENV A={}\n", "a".repeat(1 << 20));
    for i in 0..80 {
        dockerfile.push_str(&format!("LABEL l{i}=$A\n"));
    }
    let store = Store::new();
    let out = build(&store, &dockerfile, "localhost/big-config:1");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("img-build: Dockerfile:")
            && last.ends_with("more than 64 MiB into the image config"),
        "{last}"
    );
}
