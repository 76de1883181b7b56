//! `hooks`: programs run at points of the container's life with its state (the runtime spec's
//! state JSON) on stdin, each within its `timeout`. Where each runs, as the spec says:
//! - createRuntime and prestart: in img-run's (the runtime's) namespaces, once the container's
//!   namespaces exist and before pivot_root; a failure stops the container;
//! - createContainer: in the container's namespaces, before pivot_root (so its path resolves
//!   on the host, as the spec says); a failure stops the container;
//! - startContainer: in the container, just before the command runs; a failure stops it;
//! - poststart (once the command runs) and poststop (once it has ended): in img-run's
//!   namespaces; a failure is a warning, as the spec says.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::spec::{Hook, Hooks, Spec};

/// The hook lists by their config.json names.
pub fn lists(h: &Hooks) -> [(&'static str, &Vec<Hook>); 6] {
    [
        ("prestart", &h.prestart),
        ("createRuntime", &h.create_runtime),
        ("createContainer", &h.create_container),
        ("startContainer", &h.start_container),
        ("poststart", &h.poststart),
        ("poststop", &h.poststop),
    ]
}

/// The container's state as the runtime spec defines it.
pub fn state(spec: &Spec, id: &str, status: &str, pid: Option<i32>, bundle: &Path) -> String {
    let bundle = std::path::absolute(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    let mut s = json!({
        "ociVersion": spec.oci_version,
        "id": id,
        "status": status,
        "bundle": bundle,
        "annotations": spec.annotations,
    });
    if let Some(pid) = pid {
        s["pid"] = json!(pid);
    }
    s.to_string()
}

/// Checks the hooks before anything runs: absolute paths, positive timeouts.
pub fn check(spec: &Spec) -> Result<()> {
    let Some(h) = &spec.hooks else { return Ok(()) };
    for (name, list) in lists(h) {
        for (i, hook) in list.iter().enumerate() {
            if !Path::new(&hook.path).is_absolute() {
                bail!("config.json: hooks.{name}[{i}].path {:?} is not absolute", hook.path);
            }
            if hook.timeout.is_some_and(|t| t <= 0) {
                bail!("config.json: hooks.{name}[{i}].timeout must be more than zero");
            }
        }
    }
    Ok(())
}

/// Runs the hooks of one list in order; the first failure is the error.
pub fn run(name: &str, list: &[Hook], state: &str) -> Result<()> {
    for (i, hook) in list.iter().enumerate() {
        run_one(hook, state).with_context(|| format!("hooks.{name}[{i}] {}", hook.path))?;
    }
    Ok(())
}

/// Runs the hooks of one list, reporting failures as warnings (poststart, poststop).
pub fn run_warn(name: &str, list: &[Hook], state: &str) {
    for (i, hook) in list.iter().enumerate() {
        if let Err(e) = run_one(hook, state) {
            eprintln!("img-run: warning: hooks.{name}[{i}] {}: {e:#}", hook.path);
        }
    }
}

fn run_one(hook: &Hook, state: &str) -> Result<()> {
    let mut cmd = Command::new(&hook.path);
    if let Some((arg0, rest)) = hook.args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in &hook.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().context("starting")?;
    // A hook need not read its stdin: the write's error is dropped, and SIGPIPE (which img-run
    // leaves at its default, for `| head`) is ignored meanwhile.
    if let Some(mut stdin) = child.stdin.take() {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: SIG_IGN installs no handler code; the previous disposition is put back.
        let old = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
        let _ = stdin.write_all(state.as_bytes());
        drop(stdin);
        if let Ok(old) = old {
            // SAFETY: restoring the disposition signal() returned.
            let _ = unsafe { signal(Signal::SIGPIPE, old) };
        }
    }
    let deadline = hook.timeout.map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(status) = child.try_wait().context("waiting")? {
            if !status.success() {
                bail!("failed ({status})");
            }
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} s", hook.timeout.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["X=1".into()],
            timeout,
        }
    }

    #[test]
    fn state_on_stdin_status_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(&format!("cat > {}; echo $X >> {}", out.display(), out.display()), Some(5));
        run("poststop", &[h], "{\"id\":\"a\"}").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"a\"}1\n");
        let e = run("prestart", &[hook("exit 3", None)], "").unwrap_err();
        assert!(format!("{e:#}").contains("hooks.prestart[0] /bin/sh: failed"), "{e:#}");
        let start = Instant::now();
        let e = run("prestart", &[hook("sleep 10", Some(1))], "").unwrap_err();
        assert!(format!("{e:#}").contains("timed out after 1 s"));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
