//! How every tool that takes images is given them (issue 12): arguments, else records piped in;
//! nothing upstream (a terminal, /dev/null) or an empty argument is a usage error (exit 2); an
//! empty pipe is nothing to do (exit 0). A malformed reference is the same one-line error from
//! every tool, before anything is looked up; a unique digest prefix names an image as docker's
//! image-ID prefixes do; img-unpack goes on after a failure; `-q` prints digests other tools read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use img::layout::Layout;
use img::reference::Reference;
use img::test_image::{BuiltImage, Entry, Layer, TestImage};
use img_e2e::registry::Registry;
use img_e2e::{Store, assert_success, bin, json_lines, require, stderr};
use serde_json::Value;

/// The tools that act on images named as arguments or by records on stdin, with the extra
/// arguments each needs (img-tag's stdin form takes the new name as its argument).
const TAKERS: [(&str, &[&str]); 6] = [
    ("img-pull", &[]),
    ("img-push", &[]),
    ("img-rm", &[]),
    ("img-unpack", &[]),
    ("img-inspect", &[]),
    ("img-tag", &["-", "new:1"]),
];

fn image(seed: &str) -> BuiltImage {
    TestImage::new().layer(Layer::new([Entry::file("seed", seed)])).build()
}

fn index_json(store: &Store) -> Vec<u8> {
    fs::read(store.layout().join("index.json")).unwrap()
}

/// Runs a tool with `input` on a pipe, even an empty one (the support helper gives /dev/null
/// for no input).
fn piped(store: &Store, tool: &str, args: &[&str], input: &str) -> Output {
    let mut child = store
        .command(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A tool that refuses its arguments exits without reading: a closed pipe is no failure here.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// Runs a tool with stdin from /dev/null, as a CI step or `make < /dev/null` runs it.
fn devnull(store: &Store, tool: &str, args: &[&str]) -> Output {
    store.command(tool).args(args).stdin(Stdio::null()).output().unwrap()
}

/// Runs a tool with stdin redirected from a regular file.
fn from_file(store: &Store, tool: &str, args: &[&str], file: &Path) -> Output {
    let stdin = fs::File::open(file).unwrap();
    store.command(tool).args(args).stdin(stdin).output().unwrap()
}

/// Runs a shell command under `script`, so the tools' stdin is a terminal; returns the output
/// with `exit=N` of the last tool, as the command prints it.
fn on_terminal(store: &Store, command: &str) -> String {
    require("script");
    let out = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("IMG_ROOT", store.path())
        .env_remove("IMG_LAYOUT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, "script");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// Exit `code`, nothing on stdout, and stderr exactly one line, the one given.
fn assert_error_line(out: &Output, code: i32, line: &str, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: {}", stderr(out));
    assert!(out.stdout.is_empty(), "{what}: stdout {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr(out), format!("{line}\n"), "{what}");
}

#[test]
fn no_image_and_nothing_upstream_is_a_usage_error() {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    let before = index_json(&store);
    for (tool, extra) in TAKERS {
        // img-tag with `-` and nothing piped in; the others with no argument at all.
        let out = devnull(&store, tool, extra);
        assert_eq!(out.status.code(), Some(2), "{tool} < /dev/null: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{tool}");
        let err = stderr(&out);
        assert!(err.starts_with(&format!("{tool}: no image given: ")), "{tool}: {err}");
        assert_eq!(err.lines().count(), 1, "{tool}: {err}");
    }
    // img-tag SRC without DST and nothing piped in: SRC has no new name.
    let out = devnull(&store, "img-tag", &["app:1"]);
    assert_error_line(&out, 2, "img-tag: no new name given: img-tag SRC DST...", "img-tag SRC");
    assert_eq!(index_json(&store), before, "a usage error changed index.json");

    // A terminal is nothing upstream too.
    let script: Vec<String> = TAKERS
        .iter()
        .map(|(tool, extra)| format!("{} {}; echo \"{tool} exit=$?\"", bin(tool).display(), extra.join(" ")))
        .collect();
    let text = on_terminal(&store, &script.join("; "));
    for (tool, _) in TAKERS {
        assert!(text.contains(&format!("{tool}: no image given: ")), "{tool}: {text}");
        assert!(text.contains(&format!("{tool} exit=2")), "{tool}: {text}");
    }
    assert_eq!(index_json(&store), before);
}

#[test]
fn an_empty_pipe_or_file_selects_nothing_and_is_success() {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    let before = index_json(&store);
    let empty_file = store.path().join("empty.jsonl");
    fs::write(&empty_file, "").unwrap();
    for (tool, extra) in TAKERS.iter().chain([("img-tag", &["new:1"][..])].iter()) {
        for input in ["", "\n\n"] {
            let out = piped(&store, tool, extra, input);
            assert_success(&out, &format!("{tool} with the pipe {input:?}"));
            assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{tool}: {out:?}");
        }
        let out = from_file(&store, tool, extra, &empty_file);
        assert_success(&out, &format!("{tool} < empty file"));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{tool}: {out:?}");
    }
    assert_eq!(index_json(&store), before);
    // img-ls: an empty pipe shows nothing, /dev/null and a terminal show everything.
    let out = piped(&store, "img-ls", &[], "");
    assert_success(&out, "img-ls with an empty pipe");
    assert!(out.stdout.is_empty());
    let out = devnull(&store, "img-ls", &["--json"]);
    assert_success(&out, "img-ls < /dev/null");
    assert_eq!(json_lines(&out.stdout).len(), 1);
    let text = on_terminal(&store, &format!("{} --json; echo \"exit=$?\"", bin("img-ls").display()));
    assert!(text.contains("\"ref\":\"app:1\"") && text.contains("exit=0"), "{text}");
    // A record piped in selects its image.
    let out = piped(&store, "img-ls", &["--json"], "app:1\n");
    assert_success(&out, "img-ls app:1 piped");
    assert_eq!(json_lines(&out.stdout)[0]["ref"], "app:1");
}

#[test]
fn an_empty_argument_is_a_usage_error() {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    let before = index_json(&store);
    let cases: [(&str, &[&str]); 10] = [
        ("img-pull", &[""]),
        ("img-push", &[""]),
        ("img-rm", &[""]),
        ("img-rm", &["app:1", ""]),
        ("img-unpack", &[" "]),
        ("img-inspect", &[""]),
        ("img-tag", &["", "x:1"]),
        ("img-tag", &["app:1", ""]),
        ("img-ls", &[""]),
        ("img-pull", &["app:1", ""]),
    ];
    for (tool, args) in cases {
        for out in [devnull(&store, tool, args), piped(&store, tool, args, "app:1\n")] {
            let says = format!("{tool}: an empty argument names no image");
            assert_eq!(out.status.code(), Some(2), "{tool} {args:?}: {}", stderr(&out));
            assert!(out.stdout.is_empty(), "{tool} {args:?}");
            assert!(stderr(&out).starts_with(&says), "{tool} {args:?}: {}", stderr(&out));
            assert_eq!(stderr(&out).lines().count(), 1);
        }
    }
    assert_eq!(index_json(&store), before, "app:1 was removed or renamed");
}

/// The error every tool gives for a malformed reference: the reference module's.
fn invalid(name: &str) -> String {
    format!("{:#}", name.parse::<Reference>().unwrap_err())
}

#[test]
fn a_malformed_reference_is_one_error_everywhere_before_any_lookup() {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    let before = index_json(&store);
    let bundles = store.path().join("bundles");
    for bad in ["Alpine:3", "a//b", "x:", "foo@sha256:zz", "app:-1"] {
        let why = invalid(bad);
        assert!(why.starts_with(&format!("invalid reference {bad:?}: ")), "{why}");
        let as_args: [(&str, Vec<&str>); 7] = [
            ("img-pull", vec![bad]),
            ("img-push", vec![bad]),
            ("img-rm", vec!["app:1", bad]),
            ("img-unpack", vec!["app:1", bad]),
            ("img-tag", vec![bad, "new:1"]),
            ("img-inspect", vec!["app:1", bad]),
            ("img-ls", vec!["app:1", bad]),
        ];
        for (tool, args) in as_args {
            let out = devnull(&store, tool, &args);
            assert_error_line(&out, 1, &format!("{tool}: {why}"), &format!("{tool} {args:?}"));
        }
        // The same from a record on stdin, after a good one: nothing is done for either.
        let records = format!("app:1\n{}\n", serde_json::json!({"ref": bad, "layout": store.layout()}));
        for (tool, extra) in
            TAKERS.iter().filter(|(t, _)| *t != "img-tag").chain([("img-ls", &[][..])].iter())
        {
            let out = piped(&store, tool, extra, &records);
            assert_error_line(&out, 1, &format!("{tool}: {why}"), &format!("{tool} < {records}"));
        }
        let out = piped(&store, "img-tag", &["new:1"], &format!("{bad}\n"));
        assert_error_line(&out, 1, &format!("img-tag: {why}"), "img-tag from stdin");
    }
    assert_eq!(index_json(&store), before, "a malformed name changed index.json");
    assert!(!bundles.exists(), "img-unpack unpacked an image despite a malformed name");
    // A digest too short to be a prefix, the same everywhere too.
    let line = "invalid digest \"sha256:abc\": a digest prefix needs at least 6 hex digits, got 3";
    for tool in ["img-push", "img-rm", "img-unpack", "img-inspect", "img-ls"] {
        let out = devnull(&store, tool, &["sha256:abc"]);
        assert_error_line(&out, 1, &format!("{tool}: {line}"), tool);
    }
    assert_eq!(index_json(&store), before);
}

#[test]
fn unique_digest_prefixes_name_images() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &a), ("other:1", &b)]);
    let digest = a.manifest.descriptor.digest.to_string();
    let hex = a.manifest.descriptor.digest.hex().to_string();
    let short = &hex[..12];
    let sha_short = format!("sha256:{}", &hex[..8]);
    let six = &hex[..6];

    // The 12 digits img-ls shows in its table name the image for every tool.
    let text = on_terminal(&store, &bin("img-ls").display().to_string());
    assert!(text.contains(short), "img-ls shows {short}: {text}");
    for name in [short, sha_short.as_str(), six, digest.as_str(), hex.as_str()] {
        let shown = store.records("img-inspect", &[name], "");
        assert_eq!(shown[0]["digest"], digest, "img-inspect {name}");
        let listed = store.records("img-ls", &["--json", name], "");
        assert_eq!(listed.len(), 1, "img-ls {name}");
        assert_eq!(listed[0]["digest"], digest);
    }
    let bundle = store.path().join("b");
    let out =
        store.records("img-unpack", &["--rootfs-only", "--bundle", bundle.to_str().unwrap(), short], "");
    assert_eq!(out[0]["image"]["digest"], digest);
    assert_eq!(fs::read(bundle.join("seed")).unwrap(), b"a");
    let tagged = store.records("img-tag", &[&sha_short, "again:1"], "");
    assert_eq!(tagged[0]["digest"], digest);
    let archive = store.path().join("a.tar");
    let to = format!("oci-archive:{}", archive.display());
    let pushed = store.records("img-push", &["--to", &to, short], "");
    assert_eq!(pushed[0]["digest"], digest);

    // Fewer than 6 digits is a reference that is not there, as docker would look it up.
    let five = &hex[..5];
    let out = devnull(&store, "img-rm", &[five]);
    assert_error_line(
        &out,
        1,
        &format!("img-rm: {five}: no such image in {}", store.layout().display()),
        "img-rm 5 digits",
    );
    // A removal by prefix removes every name of that digest.
    let removed = store.records("img-rm", &[six], "");
    let mut refs: Vec<&str> = removed.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    refs.sort();
    assert_eq!(refs, ["app:1", "docker.io/library/again:1"]);
    let left = store.records("img-ls", &["--json"], "");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["ref"], "other:1");
}

/// Two made-up `index.json` entries whose digests share their first 8 digits (nothing is read
/// from them: the prefix is refused before).
fn layout_with_lookalikes() -> (Store, [String; 2]) {
    let store = Store::with_images(&[("app:1", &image("a"))]);
    let path = store.layout().join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let digests = ["1", "2"].map(|tail| format!("sha256:abcdef12{}", tail.repeat(56)));
    for (i, d) in digests.iter().enumerate() {
        index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d,
            "size": 100,
            "annotations": {"org.opencontainers.image.ref.name": format!("look:{i}")},
        }));
    }
    fs::write(&path, index.to_string()).unwrap();
    (store, digests)
}

#[test]
fn an_ambiguous_prefix_names_its_candidates_and_does_nothing() {
    let (store, [one, two]) = layout_with_lookalikes();
    let before = index_json(&store);
    let says = format!("ambiguous digest prefix \"abcdef12\": matches {one} and {two}");
    for (tool, args) in [
        ("img-rm", &["abcdef12"][..]),
        ("img-unpack", &["abcdef12"]),
        ("img-inspect", &["abcdef12"]),
        ("img-tag", &["abcdef12", "x:1"]),
        ("img-ls", &["abcdef12"]),
    ] {
        let out = devnull(&store, tool, args);
        assert_error_line(&out, 1, &format!("{tool}: {says}"), tool);
    }
    // The same for the name on stdin.
    for tool in ["img-rm", "img-unpack", "img-inspect", "img-ls"] {
        let out = piped(&store, tool, &[], "abcdef12\n");
        assert_error_line(&out, 1, &format!("{tool}: {says}"), &format!("{tool} < abcdef12"));
    }
    // img-push names each image it failed to push before the reason, as it names every failure.
    let out = devnull(&store, "img-push", &["--to", "localhost:1/x:1", "abcdef12"]);
    assert_error_line(&out, 1, &format!("img-push: abcdef12: {says}"), "img-push");
    let out = devnull(&store, "img-rm", &["sha256:abcdef12"]);
    assert_error_line(
        &out,
        1,
        &format!("img-rm: {}", says.replace("\"abcdef12\"", "\"sha256:abcdef12\"")),
        "rm",
    );
    assert_eq!(index_json(&store), before);
    // One digit more is unique again.
    let tagged = store.records("img-tag", &["sha256:abcdef122", "unique:1"], "");
    assert_eq!(tagged[0]["digest"], two);
}

fn unpack_dest(store: &Store, name: &str) -> PathBuf {
    store.path().join(name)
}

#[test]
fn unpack_goes_on_after_a_failure() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &a), ("other:1", &b)]);
    let layout = store.layout().display().to_string();
    let out = devnull(&store, "img-unpack", &["--rootfs-only", "app:1", "nope:1", "other:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let records = json_lines(&out.stdout);
    let refs: Vec<&Value> = records.iter().map(|r| &r["image"]["ref"]).collect();
    assert_eq!(refs, ["app:1", "other:1"]);
    assert_eq!(stderr(&out), format!("img-unpack: nope:1: no such image in {layout}\n"));
    for r in &records {
        assert!(Path::new(r["rootfs"].as_str().unwrap()).join("seed").is_file(), "{r}");
    }
    // The same from records on stdin (a rootfs is not unpacked again over itself).
    fs::remove_dir_all(store.path().join("bundles")).unwrap();
    let out = piped(&store, "img-unpack", &["--rootfs-only"], "nope:2\nother:1\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out.stdout).len(), 1);
    assert_eq!(stderr(&out), format!("img-unpack: nope:2: no such image in {layout}\n"));

    // --bundle with several images is a usage error, whether they are arguments or records.
    let dest = unpack_dest(&store, "one");
    let d = dest.to_str().unwrap();
    let out = devnull(&store, "img-unpack", &["--bundle", d, "app:1", "other:1"]);
    assert_error_line(&out, 2, "img-unpack: --bundle takes one image, but 2 were given", "--bundle args");
    let out = piped(&store, "img-unpack", &["--bundle", d], "app:1\nother:1\n");
    assert_error_line(&out, 2, "img-unpack: --bundle takes one image, but 2 were given", "--bundle stdin");
    assert!(!dest.exists(), "a usage error unpacked something");
}

#[test]
fn quiet_lists_digests_the_other_tools_take() {
    let (a, b) = (image("a"), image("b"));
    let store = Store::with_images(&[("app:1", &a), ("other:1", &b)]);
    let out = devnull(&store, "img-ls", &["-q"]);
    assert_success(&out, "img-ls -q");
    let want = format!("{}\n{}\n", a.manifest.descriptor.digest, b.manifest.descriptor.digest);
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // Also on a terminal: no table, just the digests.
    let text = on_terminal(&store, &format!("{} --quiet", bin("img-ls").display()));
    assert_eq!(text, want);
    // Filtered, and from records.
    let out = devnull(&store, "img-ls", &["-q", "other"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", b.manifest.descriptor.digest));
    let out = piped(&store, "img-ls", &["-q"], "app:1\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", a.manifest.descriptor.digest));

    // The lines are names: img-inspect and img-rm take them on stdin.
    let lines = want.clone();
    let shown = json_lines(&piped(&store, "img-inspect", &[], &lines).stdout);
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0]["digest"], a.manifest.descriptor.digest.to_string());
    let out = piped(&store, "img-rm", &[], &format!("{}\n", a.manifest.descriptor.digest));
    assert_success(&out, "img-rm < digest");
    assert_eq!(json_lines(&out.stdout)[0]["ref"], "app:1");

    // img-ls -q and --json ask for two outputs: a usage error.
    let out = devnull(&store, "img-ls", &["-q", "--json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pull_quiet_prints_the_digest_for_the_next_tool() {
    let registry = Registry::anonymous();
    let store = Store::new();
    let built = image("q");
    let src = store.path().join("src");
    built.write_to(&Layout::open_or_create(&src).unwrap(), Some("app:1")).unwrap();
    let dest = format!("{}/team/app:1", registry.host());
    let out = devnull(&store, "img-push", &["--layout", src.to_str().unwrap(), "--to", &dest, "app:1"]);
    assert_success(&out, "img-push");

    let out = devnull(&store, "img-pull", &["-q", &dest]);
    assert_success(&out, "img-pull -q");
    let digest = built.manifest.descriptor.digest.to_string();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{digest}\n"));
    // Again (nothing fetched): the same line.
    let out = devnull(&store, "img-pull", &["--quiet", &dest]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{digest}\n"));
    // From an archive too.
    let archive = store.path().join("app.tar");
    let to = format!("oci-archive:{}", archive.display());
    assert_success(
        &devnull(&store, "img-push", &["--layout", src.to_str().unwrap(), "--to", &to, "app:1"]),
        "export",
    );
    let out = devnull(&store, "img-pull", &["-q", &format!("oci-archive:{}", archive.display())]);
    assert_success(&out, "img-pull -q oci-archive");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{digest}\n"));

    // The line is a name the next tool resolves.
    let out = piped(&store, "img-unpack", &["--rootfs-only"], &format!("{digest}\n"));
    assert_success(&out, "img-unpack < digest");
    let unpacked = json_lines(&out.stdout);
    assert_eq!(unpacked[0]["image"]["digest"], digest);
    assert_eq!(fs::read(Path::new(unpacked[0]["rootfs"].as_str().unwrap()).join("seed")).unwrap(), b"q");
}
