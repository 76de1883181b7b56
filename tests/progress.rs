//! Progress for people: with stderr on a terminal img-unpack, img-pull, img-push and img-run's
//! implicit pull leave a one-line summary there (after their bars); with stderr a pipe they
//! print nothing of the kind, and stdout stays pure JSON Lines either way.

mod run_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use img_e2e::registry::Registry;
use img_e2e::{Store, bin};
use run_common::*;

/// Runs a shell command line under `script`, so that its stderr is a terminal; returns what
/// the terminal showed. `IMG_ROOT` is `store`'s.
fn on_terminal(store: &Store, line: &str) -> String {
    img_e2e::require("script");
    let mut cmd = Command::new("script");
    cmd.env("IMG_ROOT", store.path()).env_remove("IMG_LAYOUT").args(["-qec", line, "/dev/null"]);
    let out = run_timeout(&mut cmd, "", Duration::from_secs(60));
    let text = stdout(&out).replace('\r', "");
    assert_eq!(code(&out), 0, "{line}: {text}");
    text
}

/// Every line of the file is a JSON object; returns how many.
fn json_lines_in(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let lines = img_e2e::json_lines(&bytes);
    assert!(lines.iter().all(|l| l.is_object()), "{}", String::from_utf8_lossy(&bytes));
    lines.len()
}

fn tool(name: &str) -> String {
    bin(name).display().to_string()
}

#[test]
fn unpack_leaves_a_summary_on_a_terminal_only() {
    let env = Env::new();
    let dir = env.store.path();
    let json = dir.join("out.json");
    let line =
        format!("{} --bundle {} bb:1 > {}", tool("img-unpack"), dir.join("b1").display(), json.display());
    let shown = on_terminal(&env.store, &line);
    assert!(
        shown.contains("unpacked ") && shown.contains(": 1 layer, ") && shown.contains(" written in "),
        "{shown:?}"
    );
    assert_eq!(json_lines_in(&json), 1);

    let b2 = dir.join("b2").display().to_string();
    let out = env.store.run("img-unpack", &["--bundle", &b2, "bb:1"], "");
    img_e2e::assert_success(&out, "img-unpack");
    assert_eq!(img_e2e::stderr(&out), "", "nothing for people when stderr is a pipe");
    assert_eq!(img_e2e::json_lines(&out.stdout).len(), 1);
}

#[test]
fn pull_push_and_run_leave_a_summary_on_a_terminal_only() {
    let registry = Registry::anonymous();
    let env = Env::new();
    let dest = format!("{}/progress/bb:1", registry.host());
    let json = env.store.path().join("out.json");

    // img-push
    let line = format!("{} --to {dest} bb:1 > {}", tool("img-push"), json.display());
    let shown = on_terminal(&env.store, &line);
    assert!(shown.contains(&format!("pushed {dest}: ")) && shown.contains(" uploaded in "), "{shown:?}");
    assert_eq!(json_lines_in(&json), 1);

    // img-pull, into a store that lacks the image
    let fresh = Store::new();
    let json = fresh.path().join("out.json");
    let shown = on_terminal(&fresh, &format!("{} {dest} > {}", tool("img-pull"), json.display()));
    assert!(
        shown.contains(&format!("pulled {dest}: 1 layer, ")) && shown.contains(" fetched in "),
        "{shown:?}"
    );
    assert_eq!(json_lines_in(&json), 1);

    // img-run pulling what it lacks: the summary, then the container's output
    let fresh = Store::new();
    let shown = on_terminal(&fresh, &format!("{} {dest} echo ran", tool("img-run")));
    assert!(shown.contains(&format!("pulled {dest}: 1 layer, ")), "{shown:?}");
    assert!(shown.ends_with("ran\n"), "{shown:?}");

    // The same with stderr a pipe: no summary, no bars.
    let fresh = Store::new();
    let out = fresh.run("img-pull", &[&dest], "");
    img_e2e::assert_success(&out, "img-pull");
    assert_eq!(img_e2e::stderr(&out), "");
    assert_eq!(img_e2e::json_lines(&out.stdout).len(), 1);
    let fresh = Store::new();
    let out = run_timeout(fresh.command("img-run").args([&dest, "echo", "ran"]), "", Duration::from_secs(60));
    assert_eq!(code(&out), 0, "{}", img_e2e::stderr(&out));
    assert_eq!(img_e2e::stderr(&out), "");
    assert_eq!(stdout(&out), "ran\n");
}
