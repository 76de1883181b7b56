//! Many processes on one layout at once: writers adding images that share blobs with images
//! being removed, removers, and garbage collectors. No ref may be lost and every image left must
//! be complete.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};
use std::thread;

use img_e2e::{assert_success, bin, check, json_lines, run_with_stdin};
use serde_json::Value;

const SIZE: &str = "65536";

/// Writes an image with two layers of its own plus a base layer shared by every image here.
fn add(layout: &Path, name: &str) -> Output {
    Command::new(bin("img-testimage"))
        .args(["--layout", layout.to_str().unwrap(), "--ref", name, "--seed", name])
        .args(["--base-seed", "shared-base", "--layers", "2", "--size", SIZE])
        .output()
        .expect("starting img-testimage")
}

fn img(tool: &str, layout: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(bin(tool));
    cmd.arg("--layout").arg(layout).args(args).env_remove("IMG_LAYOUT");
    run_with_stdin(&mut cmd, stdin)
}

#[test]
fn writers_removers_and_collectors_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let doomed: Vec<String> = (0..12).map(|i| format!("localhost/doomed:{i}")).collect();
    let kept = ["localhost/kept:1", "localhost/kept:2"];
    for name in doomed.iter().map(String::as_str).chain(kept) {
        assert_success(&add(&layout, name), "img-testimage");
    }

    // 4 writers, 2 removers and 2 collectors, each running its processes one after another.
    let start = Arc::new(Barrier::new(8));
    let mut threads = Vec::new();
    for w in 0..4 {
        let (layout, start) = (layout.clone(), start.clone());
        threads.push(thread::spawn(move || {
            start.wait();
            let mut added = Vec::new();
            for j in 0..4 {
                let name = format!("localhost/added-{w}:{j}");
                let out = add(&layout, &name);
                assert_success(&out, &format!("img-testimage {name}"));
                let record = json_lines(&out.stdout).remove(0);
                added.push((name, record));
            }
            added
        }));
    }
    for r in 0..2 {
        let (layout, start) = (layout.clone(), start.clone());
        let mine: Vec<String> = doomed.iter().skip(r).step_by(2).cloned().collect();
        threads.push(thread::spawn(move || {
            start.wait();
            for (k, name) in mine.iter().enumerate() {
                // By argument, and by a record on stdin as `img-ls | img-rm` would send it.
                let out = if k % 2 == 0 {
                    img("img-rm", &layout, &[name], "")
                } else {
                    img("img-rm", &layout, &[], &format!("{{\"ref\":\"{name}\"}}\n"))
                };
                assert_success(&out, &format!("img-rm {name}"));
                assert_eq!(json_lines(&out.stdout)[0]["ref"], name.as_str());
            }
            Vec::new()
        }));
    }
    for _ in 0..2 {
        let (layout, start) = (layout.clone(), start.clone());
        threads.push(thread::spawn(move || {
            start.wait();
            for _ in 0..6 {
                assert_success(&img("img-rm", &layout, &["--prune"], ""), "img-rm --prune");
            }
            Vec::new()
        }));
    }
    let added: Vec<(String, Value)> =
        threads.into_iter().flat_map(|t| t.join().expect("a worker failed")).collect();
    assert_eq!(added.len(), 16);

    // Exactly the kept and added refs are left, and every image they name is whole.
    let want: BTreeSet<String> =
        kept.iter().map(|s| s.to_string()).chain(added.iter().map(|(n, _)| n.clone())).collect();
    let refs = check::refs(&layout);
    let have: BTreeSet<String> = refs.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(have, want, "refs lost or not removed");
    assert_eq!(refs.len(), want.len(), "a ref is listed twice: {refs:?}");
    let live = check::assert_complete(&layout);
    for (name, record) in &added {
        let digest = record["digest"].as_str().unwrap();
        assert!(refs.contains(&(name.clone(), digest.to_string())), "{name} points elsewhere");
        for blob in record["blobs"].as_array().unwrap() {
            assert!(live.contains(blob.as_str().unwrap()), "{name}: blob {blob} is not reachable");
        }
    }
    check::assert_no_bad_blob(&layout);

    // img-ls agrees, and a last collection leaves exactly what is reachable.
    let out = img("img-ls", &layout, &[], "");
    assert_success(&out, "img-ls");
    let listed: BTreeSet<String> =
        json_lines(&out.stdout).iter().map(|r| r["ref"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, want);
    assert_success(&img("img-rm", &layout, &["--prune"], ""), "img-rm --prune");
    assert_eq!(check::blob_names(&layout), live, "garbage left, or live blobs swept");
    assert_eq!(check::temp_files(&layout), 0);
}

#[test]
fn eight_writers_creating_the_same_layout_at_once_all_succeed() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("new/layout");
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (layout, start) = (layout.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    let name = format!("localhost/w{i}:{round}");
                    let out = add(&layout, &name);
                    assert_success(&out, &format!("img-testimage {name}"));
                    name
                })
            })
            .collect();
        let names: BTreeSet<String> =
            threads.into_iter().map(|t| t.join().expect("a writer failed")).collect();
        let have: BTreeSet<String> = check::refs(&layout).into_iter().map(|(n, _)| n).collect();
        assert_eq!(have, names);
        check::assert_complete(&layout);
    }
}
