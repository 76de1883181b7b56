//! A bundle's config.json is read strictly with the oci-spec crate's runtime types (issue 11):
//! a malformed value is a one-line error naming its path, exit 125, before anything is made;
//! configs runc reads still run.

mod run_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use run_common::*;
use serde_json::{Value, json};

/// Every path under `dir`, sorted, with its size, to see that nothing was made or changed.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                todo.push(entry.path());
            }
            out.push((entry.path(), if meta.is_file() { meta.len() } else { 0 }));
        }
    }
    out.sort();
    out
}

fn mountinfo() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

/// img-run refuses the bundle before running it: exit 125, one line naming `field`, nothing
/// created in the store or the bundle, no mount left.
fn assert_refused(env: &Env, bundle: &Path, field: &str) {
    let (before, mounts) = (tree(env.store.path()), mountinfo());
    let out = img_run_bundle(bundle, &[]);
    let err = img_e2e::stderr(&out);
    assert_eq!(code(&out), 125, "stdout {:?} stderr {err:?}", stdout(&out));
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.starts_with(&format!("img-run: config.json: {field}")), "{err:?} does not name {field}");
    assert!(stdout(&out).is_empty());
    assert_eq!(tree(env.store.path()), before, "img-run left something behind");
    assert_eq!(mountinfo(), mounts);
}

/// A change to a config.json.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn malformed_values_are_refused_by_path() {
    let env = Env::new();
    let cases: Vec<(&str, Edit)> = vec![
        ("process.terminal: invalid type: string", Box::new(|c| c["process"]["terminal"] = json!("yes"))),
        (
            "linux.resources.memory.limit: invalid type: string",
            Box::new(|c| c["linux"]["resources"]["memory"] = json!({"limit": "64m"})),
        ),
        (
            "process.user.uid: invalid value: integer `-1`",
            Box::new(|c| c["process"]["user"]["uid"] = json!(-1)),
        ),
        (
            "process.rlimits[0].type: unknown type `RLIMIT_LOTS`",
            Box::new(|c| c["process"]["rlimits"] = json!([{"type": "RLIMIT_LOTS", "hard": 1, "soft": 1}])),
        ),
        (
            "ociVersion: missing",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("ociVersion");
            }),
        ),
        (
            "mounts[0]: missing field `destination`",
            Box::new(|c| {
                c["mounts"][0].as_object_mut().unwrap().remove("destination");
            }),
        ),
        (
            "process.capabilities.bounding[0]: no variant for CAP_WISHES",
            Box::new(|c| c["process"]["capabilities"]["bounding"] = json!(["CAP_WISHES"])),
        ),
    ];
    for (what, edit) in cases {
        let bundle = env.umoci_bundle(&["touch", "/ran"]);
        edit_config(&bundle, |c| edit(c));
        assert_refused(&env, &bundle, what);
    }
}

#[test]
fn an_unknown_namespace_type_is_refused() {
    let env = Env::new();
    let bundle = env.umoci_bundle(&["touch", "/ran"]);
    let mut index = 0;
    edit_config(&bundle, |c| {
        let namespaces = c["linux"]["namespaces"].as_array_mut().unwrap();
        index = namespaces.len();
        namespaces.push(json!({"type": "vpn"}));
    });
    assert_refused(&env, &bundle, &format!("linux.namespaces[{index}].type: unknown type `vpn`"));
}

#[test]
fn configs_runc_reads_still_run() {
    // No process.user (runc runs uid 0): oci-spec's types require it, runc does not.
    let env = Env::new();
    let bundle = env.umoci_bundle(&["sh", "-c", "id -u; echo ran"]);
    edit_config(&bundle, |c| {
        c["process"].as_object_mut().unwrap().remove("user");
    });
    let out = img_run_bundle(&bundle, &[]);
    img_e2e::assert_success(&out, "img-run");
    assert_eq!(stdout(&out), "0\nran\n");
    img_e2e::require("runc");
    let id = format!("img-strict-{}", std::process::id());
    let mut cmd = Command::new("runc");
    cmd.arg("--root").arg(env.store.path().join("runc-state")).args(["run", "--bundle"]).arg(&bundle).arg(id);
    let theirs = run_timeout(&mut cmd, "", Duration::from_secs(60));
    img_e2e::assert_success(&theirs, "runc run");
    assert_eq!(stdout(&theirs), stdout(&out));
}
