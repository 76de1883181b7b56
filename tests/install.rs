//! Man pages and shell completions (issue 12): every tool prints them when `IMG_GENERATE` asks,
//! and `scripts/install` lays them out beside the binaries under a prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use img_e2e::bin;

/// The tools are the packages under tools/, each one binary of the same name.
fn tools() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.len() >= 11, "{names:?}");
    names
}

fn generated(tool: &str, what: &str) -> String {
    let out = Command::new(bin(tool)).env("IMG_GENERATE", what).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{tool} IMG_GENERATE={what}: {out:?}");
    assert!(out.stderr.is_empty(), "{tool} IMG_GENERATE={what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The long flags `tool --help` lists (`--platform`, …), as the completions must offer them.
fn long_flags(tool: &str) -> Vec<String> {
    let out = Command::new(bin(tool)).arg("--help").output().unwrap();
    assert!(out.status.success(), "{tool} --help: {out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = Vec::new();
    for line in help.lines().map(str::trim_start) {
        // `-j, --jobs <N>` or `--platform <PLATFORM>`: the flag that starts an option's line.
        let line =
            line.strip_prefix('-').and_then(|l| l.split_once(", ").map_or(Some(line), |(_, r)| Some(r)));
        if let Some(flag) = line.and_then(|l| l.strip_prefix("--")) {
            let name: String = flag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            if !name.is_empty() {
                flags.push(format!("--{name}"));
            }
        }
    }
    assert!(flags.iter().any(|f| f == "--help"), "{tool}: no flags found in\n{help}");
    if tool == "img-pull" {
        assert!(flags.iter().any(|f| f == "--platform") && flags.iter().any(|f| f == "--jobs"), "{flags:?}");
    }
    flags
}

fn has(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn every_tool_prints_a_man_page_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    for tool in tools() {
        let page = generated(&tool, "man");
        let title = format!(".TH {} 1 ", tool.to_uppercase());
        assert!(page.lines().any(|l| l.starts_with(&title)), "{tool}: no `{title}` in\n{page}");
        assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS") && page.contains(".SH OPTIONS"));
        for flag in long_flags(&tool) {
            // roff escapes the dashes: `\-\-platform`.
            assert!(page.contains(&flag.replace('-', "\\-")), "{tool}: man page lacks {flag}");
        }
        img_e2e::require("man"); // scripts/setup installs man-db
        {
            let file = dir.path().join(format!("{tool}.1"));
            std::fs::write(&file, &page).unwrap();
            let out = Command::new("man")
                .arg("-l")
                .arg(&file)
                .env("MANPAGER", "cat")
                .env("MAN_KEEP_FORMATTING", "")
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{tool}: man -l failed: {out:?}");
            assert!(text.contains("NAME") && text.contains(&tool), "{tool}: man rendered\n{text}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("warning") && !stderr.contains("error"), "{tool}: man said {stderr}");
        }
    }
}

#[test]
fn every_tool_prints_completions_with_its_long_flags() {
    for tool in tools() {
        let flags = long_flags(&tool);
        for shell in ["bash", "zsh", "fish"] {
            let script = generated(&tool, shell);
            for flag in &flags {
                // fish names a long flag `-l platform`; bash and zsh spell it out.
                let found = match shell {
                    "fish" => script.contains(&format!("-l {}", &flag[2..])),
                    _ => script.contains(flag.as_str()),
                };
                assert!(found, "{tool}: the {shell} completion lacks {flag}");
            }
        }
        let bash = generated(&tool, "bash");
        // The script parses, and sourcing it registers a completion for the tool.
        let check = format!("{bash}\ncomplete -p {tool}");
        let out = Command::new("bash").args(["--norc", "-c", &check]).output().unwrap();
        assert!(out.status.success(), "{tool}: bash rejected its completion: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&tool), "{tool}: {out:?}");
        for (shell, script) in [("zsh", generated(&tool, "zsh")), ("fish", generated(&tool, "fish"))] {
            if has(shell) {
                let out = Command::new(shell).args(["-n", "-c", &script]).output().unwrap();
                assert!(out.status.success(), "{tool}: {shell} -n rejected its completion: {out:?}");
            }
        }
    }
}

#[test]
fn an_unknown_generate_value_is_a_usage_error_and_does_nothing_else() {
    let out = Command::new(bin("img-ls")).env("IMG_GENERATE", "powershell").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMG_GENERATE=powershell"), "{out:?}");
}

/// target/debug, where the tests' binaries are, and the target directory holding it.
fn target_dir() -> PathBuf {
    let debug = bin("img-ls").parent().unwrap().to_path_buf();
    assert_eq!(debug.file_name().unwrap(), "debug", "the tests run from a debug build");
    debug.parent().unwrap().to_path_buf()
}

fn install(prefix: &Path, destdir: Option<&Path>) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    let mut cmd = Command::new(script);
    cmd.arg("--no-build").args(["--profile", "debug"]).arg("--target-dir").arg(target_dir());
    cmd.arg("--prefix").arg(prefix).env_remove("DESTDIR");
    if let Some(d) = destdir {
        cmd.env("DESTDIR", d);
    }
    cmd.output().unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn install_lays_out_binaries_man_pages_and_completions_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("usr");
    for _ in 0..2 {
        // Twice: installing again over an installation succeeds and changes nothing.
        let out = install(&prefix, None);
        assert!(out.status.success(), "scripts/install: {}", String::from_utf8_lossy(&out.stderr));
    }
    let tools = tools();
    let each = |f: &dyn Fn(&String) -> String| -> Vec<String> {
        let mut v: Vec<String> = tools.iter().map(f).collect();
        v.sort();
        v
    };
    // Only the tools: the test-support binaries (img-testimage, img-deny-openat2) stay out.
    assert_eq!(listing(&prefix.join("bin")), tools);
    assert_eq!(listing(&prefix.join("share/man/man1")), each(&|t| format!("{t}.1")));
    assert_eq!(listing(&prefix.join("share/bash-completion/completions")), tools);
    assert_eq!(listing(&prefix.join("share/zsh/site-functions")), each(&|t| format!("_{t}")));
    assert_eq!(listing(&prefix.join("share/fish/vendor_completions.d")), each(&|t| format!("{t}.fish")));

    for tool in &tools {
        use std::os::unix::fs::PermissionsExt;
        let exe = prefix.join("bin").join(tool);
        assert_eq!(std::fs::metadata(&exe).unwrap().permissions().mode() & 0o777, 0o755, "{tool}");
        let page = std::fs::read_to_string(prefix.join(format!("share/man/man1/{tool}.1"))).unwrap();
        assert_eq!(page, generated(tool, "man"), "{tool}");
        // The installed binary runs.
        let out = Command::new(&exe).arg("--version").output().unwrap();
        assert!(out.status.success(), "{tool} --version: {out:?}");
    }
    // man finds the pages by name under the prefix.
    img_e2e::require("man");
    {
        let out = Command::new("man")
            .arg("-M")
            .arg(prefix.join("share/man"))
            .arg("img-pull")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -M … img-pull: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--platform"), "{out:?}");
    }
}

#[test]
fn install_honours_destdir() {
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path().join("stage");
    let out = install(Path::new("/opt/img-test-prefix"), Some(&stage));
    assert!(out.status.success(), "scripts/install: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listing(&stage.join("opt/img-test-prefix/bin")), tools());
    assert!(stage.join("opt/img-test-prefix/share/man/man1/img-pull.1").is_file());
    assert!(!Path::new("/opt/img-test-prefix").exists(), "DESTDIR was not honoured");
}

#[test]
fn install_refuses_unknown_arguments_and_missing_binaries() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    let out = Command::new(&script).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&script)
        .args(["--no-build", "--profile", "debug", "--target-dir"])
        .arg(dir.path().join("empty-target"))
        .arg("--prefix")
        .arg(dir.path().join("usr"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"), "{out:?}");
    assert!(!dir.path().join("usr").exists(), "nothing is installed when a binary is missing");
}
