//! The tools composed as users compose them: real shell pipelines (bash, so `pipefail` makes a
//! failing stage fail the line) and a Makefile run by `make`, against a real `docker-registry`.
//! Each case asserts the records that reach the end of the pipe, the exit status and stderr.

mod run_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use img::layout::Layout;
use img::test_image::{BuiltIndex, Entry, Layer, TestImage};
use img_e2e::registry::Registry;
use img_e2e::{Store, bin, json_lines, require, run_with_timeout, stderr};
use serde_json::{Value, json};

/// The busybox image every case starts from, named in the store's layout.
const LOCAL: &str = "localhost/bb:1";

/// A private store holding `localhost/bb:1` (busybox, runnable), a registry holding the same
/// image as `$REG/lib/bb:1`, and a work directory for bundles, contexts and Makefiles.
struct World {
    store: Store,
    registry: Registry,
    work: tempfile::TempDir,
    /// The digest of `localhost/bb:1` (and so of `$REG/lib/bb:1`).
    digest: String,
}

impl World {
    fn new() -> World {
        require("jq");
        let store = Store::new();
        let registry = Registry::anonymous();
        let image = run_common::busybox_image(&[("Cmd", json!(["sh"]))], vec![]).build();
        let layout = Layout::open_or_create(store.layout()).unwrap();
        let digest = image.write_to(&layout, Some(LOCAL)).unwrap().digest.to_string();
        let world = World { store, registry, work: tempfile::tempdir().unwrap(), digest };
        world.ok("img-push --to $REG/lib/bb:1 localhost/bb:1 >/dev/null");
        world
    }

    /// Runs `script` with bash (`set -o pipefail`), the tools first on PATH, `IMG_ROOT` the
    /// store, `$REG` the registry, `$W` the work directory (also the current one); stdin is
    /// /dev/null as in a CI step.
    fn sh(&self, script: &str) -> Output {
        let bins = bin("img-ls").parent().unwrap().to_path_buf();
        let path = format!("{}:{}", bins.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("set -o pipefail\n{script}")])
            .current_dir(self.work.path())
            .env("PATH", path)
            .env("IMG_ROOT", self.store.path())
            .env_remove("IMG_LAYOUT")
            .env("REG", self.registry.host())
            .env("W", self.work.path());
        run_with_timeout(&mut cmd, "", Duration::from_secs(180))
    }

    /// Runs `script`, which must succeed with nothing on stderr; returns its stdout records.
    fn ok(&self, script: &str) -> Vec<Value> {
        let out = self.sh(script);
        assert_eq!(out.status.code(), Some(0), "{script}\nstderr: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{script}: nothing on stderr");
        json_lines(&out.stdout)
    }

    /// Runs `script`, which must succeed; returns its stdout as text.
    fn text(&self, script: &str) -> String {
        let out = self.sh(script);
        assert_eq!(out.status.code(), Some(0), "{script}\nstderr: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    /// The refs of the store's layout, as `img-ls` lists them.
    fn listed(&self) -> Vec<String> {
        let records = self.ok("img-ls");
        records.iter().map(|r| r["ref"].as_str().unwrap_or("<none>").to_string()).collect()
    }

    /// The digest the registry serves for `reference` (read without pulling).
    fn remote_digest(&self, reference: &str) -> String {
        let records = self.ok(&format!("img-inspect --remote {reference}"));
        records[0]["digest"].as_str().unwrap().to_string()
    }
}

fn one(records: Vec<Value>) -> Value {
    assert_eq!(records.len(), 1, "one record: {records:?}");
    records.into_iter().next().unwrap()
}

fn layout_of(store: &Store) -> String {
    store.layout().to_str().unwrap().to_string()
}

#[test]
fn pull_into_ls_unpack_run_tag_inspect_push_rm() {
    let w = World::new();
    let reference = format!("{}/lib/bb:1", w.host());

    // pull → ls: the pulled image, enriched with what img-ls adds.
    let listed = one(w.ok("img-pull $REG/lib/bb:1 | img-ls"));
    assert_eq!(listed["ref"], reference);
    assert_eq!(listed["digest"], w.digest);
    assert_eq!(listed["layout"], layout_of(&w.store));
    assert_eq!(listed["layers"], 1);
    assert!(listed["bytes"].as_u64().unwrap() > listed["size"].as_u64().unwrap(), "{listed}");

    // pull → unpack: the bundle of that image.
    let unpacked = one(w.ok("img-pull $REG/lib/bb:1 | img-unpack --bundle $W/pulled"));
    assert_eq!(unpacked["bundle"], json!(w.path("pulled")));
    assert_eq!(unpacked["image"]["ref"], reference);
    assert_eq!(unpacked["image"]["digest"], w.digest);
    assert!(w.path("pulled/rootfs/bin/busybox").is_file() && w.path("pulled/config.json").is_file());

    // pull → run: the container's stdout is the pipeline's.
    assert_eq!(
        w.text("img-pull $REG/lib/bb:1 | img-run -- echo hi from the pulled image"),
        "hi from the pulled image\n"
    );

    // pull → tag: one new name for the image the record names.
    let tagged = one(w.ok("img-pull $REG/lib/bb:1 | img-tag localhost/renamed:2"));
    assert_eq!(
        (tagged["ref"].as_str(), tagged["digest"].as_str()),
        (Some("localhost/renamed:2"), Some(&*w.digest))
    );
    assert!(w.listed().contains(&"localhost/renamed:2".to_string()));

    // pull → inspect, with jq picking a field as users do.
    assert_eq!(w.text("img-pull $REG/lib/bb:1 | img-inspect | jq -r '.config.Cmd[0]'"), "sh\n");

    // pull → push: the pulled image goes to another repository; the record is still the local
    // image, and says where it went.
    let pushed = one(w.ok("img-pull $REG/lib/bb:1 | img-push --to $REG/copy/bb:1"));
    assert_eq!(pushed["ref"], reference);
    assert_eq!(pushed["digest"], w.digest);
    assert_eq!(pushed["pushed"], format!("{}/copy/bb:1@{}", w.host(), w.digest));
    assert_eq!(w.remote_digest(&format!("{}/copy/bb:1", w.host())), w.digest);

    // pull → rm: the pulled name goes; the other names of the image stay.
    let removed = one(w.ok("img-pull $REG/lib/bb:1 | img-rm"));
    assert_eq!((removed["ref"].as_str(), removed["freedBlobs"].as_u64()), (Some(&*reference), Some(0)));
    let left = w.listed();
    assert!(!left.contains(&reference) && left.contains(&LOCAL.to_string()), "{left:?}");
}

#[test]
fn ls_into_pull_refreshes_the_records_layout_and_keeps_an_index_whole() {
    let w = World::new();
    // A two-platform index in the registry: this machine's busybox and an arm64 image.
    let host_platform = img::platform::Platform::host().to_string();
    let other = if host_platform == "linux/arm64" { "linux/amd64" } else { "linux/arm64" };
    let native = run_common::busybox_image(&[], vec![]).platform(&host_platform).build();
    let foreign = TestImage::new().platform(other).layer(Layer::new([Entry::file("f", "arm")])).build();
    let index = BuiltIndex::new(vec![native, foreign], false);
    let seed = w.path("seed");
    index.write_to(&Layout::open_or_create(&seed).unwrap(), Some("multi:1")).unwrap();
    w.ok("img-push --layout $W/seed --to $REG/lib/multi:1 multi:1 >/dev/null");

    // Layout L holds the whole index and a single image, pulled earlier.
    let l = w.path("L");
    w.ok("img-pull --layout $W/L --all-platforms $REG/lib/multi:1 $REG/lib/bb:1 >/dev/null");
    let before = w.ok("img-ls --layout $W/L");
    assert_eq!(before.len(), 2);

    // Refreshing L from its records: each image is pulled again into L (the record's layout),
    // the index as a whole index; the store's own layout is not touched.
    let refreshed = w.ok("img-ls --layout $W/L | img-pull");
    assert_eq!(refreshed.len(), 2, "{refreshed:?}");
    for (was, now) in before.iter().zip(&refreshed) {
        assert_eq!(now["ref"], was["ref"]);
        assert_eq!(now["digest"], was["digest"], "the same document: {now}");
        assert_eq!(now["mediaType"], was["mediaType"]);
        assert_eq!(now["layout"], json!(l), "pulled into the record's layout");
        assert_eq!(now["fetchedBytes"], 0, "everything was there already");
    }
    let store_refs = w.listed();
    assert_eq!(store_refs, [LOCAL], "nothing pulled into the store's layout");
}

#[test]
fn ls_selected_with_jq_into_rm_push_unpack() {
    let w = World::new();
    w.ok("img-tag localhost/bb:1 localhost/keep:1 localhost/drop:1 >/dev/null");

    // ls → jq → push: only the selected image goes, to the name the record holds.
    let pushed =
        one(w.ok("img-ls | jq -c 'select(.ref == \"localhost/keep:1\")' | img-push --to $REG/sel/keep:1"));
    assert_eq!(
        (pushed["ref"].as_str(), pushed["digest"].as_str()),
        (Some("localhost/keep:1"), Some(&*w.digest))
    );
    assert_eq!(w.remote_digest(&format!("{}/sel/keep:1", w.host())), w.digest);

    // ls → jq → unpack.
    let unpacked =
        one(w.ok("img-ls | jq -c 'select(.ref == \"localhost/keep:1\")' | img-unpack --bundle $W/sel"));
    assert_eq!(unpacked["image"]["ref"], "localhost/keep:1");
    assert!(w.path("sel/rootfs/bin/sh").exists());

    // ls → jq → rm: only what jq selected is removed.
    let removed = one(w.ok("img-ls | jq -c 'select(.ref | test(\"drop\"))' | img-rm"));
    assert_eq!(removed["ref"], "localhost/drop:1");
    assert_eq!(w.listed(), ["localhost/bb:1", "localhost/keep:1"]);

    // A selection of nothing is an empty pipe: nothing to do, and success.
    assert!(w.ok("img-ls | jq -c 'select(.ref == \"nope\")' | img-rm").is_empty());
    assert!(w.ok("img-ls | jq -c 'select(.ref == \"nope\")' | img-push --to $REG/sel/none:1").is_empty());
    assert_eq!(w.listed().len(), 2);
}

#[test]
fn tag_into_push_pushes_to_the_new_name() {
    let w = World::new();
    let name = format!("{}/team/bb:2", w.host());
    let pushed = one(w.ok("img-tag localhost/bb:1 $REG/team/bb:2 | img-push"));
    assert_eq!(pushed["ref"], name);
    assert_eq!(pushed["pushed"], format!("{name}@{}", w.digest));
    assert_eq!(w.remote_digest(&name), w.digest);
}

#[test]
fn unpack_into_run_runs_the_bundle() {
    let w = World::new();
    // Once the record has come (the bundle is made), the image is removed: only the bundle
    // the record names can run.
    let out = w.text(
        "img-unpack --bundle $W/b localhost/bb:1 | { read -r record && img-rm localhost/bb:1 >/dev/null && printf '%s\\n' \"$record\" | img-run -- echo ran the bundle; }",
    );
    assert_eq!(out, "ran the bundle\n");
    assert!(w.listed().is_empty(), "the image itself is gone");
    assert!(w.path("b/rootfs/bin/busybox").is_file());
}

/// A context with a Dockerfile on the store's busybox image.
fn context(w: &World) -> PathBuf {
    let ctx = w.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("hello"), "hello from the build\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {LOCAL}\nCOPY hello /hello\nCMD [\"cat\", \"/hello\"]\n"),
    )
    .unwrap();
    ctx
}

/// Runs a build pipeline: success, the build log on stderr ending with `built DIGEST`.
fn build_pipe(w: &World, script: &str) -> (Vec<Value>, String) {
    let out = w.sh(script);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{script}\nstderr: {err}");
    let built = err.lines().rev().find_map(|l| l.strip_prefix("img-build: built ")).map(str::to_string);
    (json_lines(&out.stdout), built.unwrap_or_else(|| panic!("no `built` line: {err}")))
}

#[test]
fn build_into_push_run_unpack() {
    let w = World::new();
    context(&w);

    // build → push: the built image goes up under --to; the record is the local image.
    let (records, built) = build_pipe(&w, "img-build -t localhost/app:1 ctx | img-push --to $REG/me/app:1");
    let pushed = one(records);
    assert_eq!(pushed["ref"], "localhost/app:1");
    assert_eq!(pushed["digest"], built);
    assert_eq!(pushed["pushed"], format!("{}/me/app:1@{built}", w.host()));
    assert!(pushed["uploadedBytes"].as_u64().unwrap() > 0);
    assert_eq!(w.remote_digest(&format!("{}/me/app:1", w.host())), built);

    // build → run: an untagged build's record names it by digest; its CMD runs.
    let out = w.sh("img-build ctx | img-run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the build\n");

    // build → unpack.
    let (records, built) = build_pipe(&w, "img-build -t localhost/app:2 ctx | img-unpack --bundle $W/app");
    let unpacked = one(records);
    assert_eq!(unpacked["image"]["digest"], built);
    assert_eq!(fs::read_to_string(w.path("app/rootfs/hello")).unwrap(), "hello from the build\n");
}

#[test]
fn push_into_rm_unpack_run_uses_the_local_copy() {
    let w = World::new();
    let dest = format!("{}/up/bb:1", w.host());

    // push → unpack: the local image (same digest), in the local layout.
    let unpacked = one(w.ok("img-push --to $REG/up/bb:1 localhost/bb:1 | img-unpack --bundle $W/u"));
    assert_eq!(unpacked["image"]["ref"], LOCAL);
    assert_eq!(unpacked["image"]["digest"], w.digest);
    assert_eq!(unpacked["image"]["layout"], layout_of(&w.store));

    // push → run.
    assert_eq!(
        w.text("img-push --to $REG/up/bb:1 localhost/bb:1 | img-run -- echo pushed and ran"),
        "pushed and ran\n"
    );

    // -q: only the digest, one line per image.
    assert_eq!(w.text("img-push -q --to $REG/up/bb:q localhost/bb:1"), format!("{}\n", w.digest));

    // Undoing a push deletes the destination, `pushed` (`ref` is the local image, which may
    // have come from a registry that must not lose it), with or without jq's help.
    for undo in ["img-rm --remote", "jq -c '{ref: .pushed}' | img-rm --remote"] {
        let deleted = one(w.ok(&format!("img-push --to $REG/undo/bb:1 localhost/bb:1 | {undo}")));
        assert_eq!(deleted["ref"], format!("{}/undo/bb:1@{}", w.host(), w.digest));
        let gone = w.sh("img-inspect --remote $REG/undo/bb:1");
        assert_eq!(gone.status.code(), Some(1));
        assert!(stderr(&gone).contains("manifest unknown"), "{}", stderr(&gone));
        assert_eq!(w.remote_digest(&dest), w.digest, "another repository keeps its copy");
    }
    // An image pulled from the registry and pushed elsewhere: undoing the push leaves the
    // repository it came from alone.
    let deleted =
        one(w.ok("img-pull --layout $W/o $REG/up/bb:1 | img-push --to $REG/undo/bb:2 | img-rm --remote"));
    assert_eq!(deleted["ref"], format!("{}/undo/bb:2@{}", w.host(), w.digest));
    assert_eq!(w.remote_digest(&dest), w.digest, "the source keeps its image");

    // push → rm: `docker push && docker rmi`; the registry keeps its copy.
    let removed = one(w.ok("img-push --to $REG/up/bb:1 localhost/bb:1 | img-rm"));
    assert_eq!((removed["ref"].as_str(), removed["digest"].as_str()), (Some(LOCAL), Some(&*w.digest)));
    assert!(removed["freedBlobs"].as_u64().unwrap() >= 3, "manifest, config, layer: {removed}");
    assert!(w.listed().is_empty());
    assert_eq!(w.remote_digest(&dest), w.digest);

    // An archive likewise: pushed to a file, then removed locally; the archive holds it.
    w.ok(&format!("img-pull {dest} >/dev/null"));
    let removed = one(w.ok(&format!("img-push --to oci-archive:a.tar {dest} | img-rm")));
    assert_eq!(removed["ref"], dest);
    assert!(w.listed().is_empty());
    let back = one(w.ok("img-pull oci-archive:a.tar"));
    assert_eq!(back["digest"], w.digest);
}

#[test]
fn rm_leaves_nothing_to_list() {
    let w = World::new();
    // The record img-rm prints names an image that is gone: img-ls says so, and fails.
    let out = w.sh("img-rm localhost/bb:1 | img-ls");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(stderr(&out), "img-ls: localhost/bb:1: no such image in the layout\n");
    assert!(w.listed().is_empty());
    assert!(w.ok("img-rm --prune")[0]["freedBlobs"] == 0, "img-rm collected the blobs already");
}

/// A chain of targets, each a file of records, each step fed the previous one's file.
const MAKEFILE: &str = "\
IMAGE ?= $(REG)/lib/bb:1
DEST ?= $(REG)/made/bb:1
.DELETE_ON_ERROR:

all: ran.txt pushed.json

pulled.json:
\timg-pull $(IMAGE) > $@

bundle.json: pulled.json
\timg-unpack --bundle $(CURDIR)/bundle < pulled.json > $@

ran.txt: bundle.json
\timg-run -- echo made it < bundle.json > $@

pushed.json: pulled.json
\timg-push --to $(DEST) < pulled.json > $@
";

fn make(w: &World, args: &[&str]) -> Output {
    require("make");
    fs::write(w.path("Makefile"), MAKEFILE).unwrap();
    let mut script = String::from("make --no-print-directory");
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    w.sh(&script)
}

fn mtimes(dir: &Path, files: &[&str]) -> Vec<std::time::SystemTime> {
    files.iter().map(|f| fs::metadata(dir.join(f)).unwrap().modified().unwrap()).collect()
}

#[test]
fn makefile_chain_runs_once_then_is_a_no_op() {
    let w = World::new();
    let first = make(&w, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(stderr(&first), "");
    assert_eq!(fs::read_to_string(w.path("ran.txt")).unwrap(), "made it\n");
    let pulled = one(json_lines(&fs::read(w.path("pulled.json")).unwrap()));
    let pushed = one(json_lines(&fs::read(w.path("pushed.json")).unwrap()));
    assert_eq!(pulled["digest"], w.digest);
    assert_eq!((&pushed["ref"], &pushed["digest"]), (&pulled["ref"], &pulled["digest"]));
    assert_eq!(pushed["pushed"], format!("{}/made/bb:1@{}", w.host(), w.digest));
    let unpacked = one(json_lines(&fs::read(w.path("bundle.json")).unwrap()));
    assert_eq!(unpacked["bundle"], json!(w.path("bundle")));

    // Everything is there: the second run does nothing and still succeeds.
    let files = ["pulled.json", "bundle.json", "ran.txt", "pushed.json"];
    let before = mtimes(w.work.path(), &files);
    let second = make(&w, &[]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(String::from_utf8_lossy(&second.stdout), "make: Nothing to be done for 'all'.\n");
    assert_eq!(mtimes(w.work.path(), &files), before, "no target was made again");
}

#[test]
fn makefile_empty_image_is_a_usage_error() {
    let w = World::new();
    // `IMAGE=` leaves `img-pull  > pulled.json` with stdin /dev/null: no image at all.
    let out = make(&w, &["pulled.json", "IMAGE="]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no image given"), "{err}");
    assert!(err.contains("pulled.json] Error 2"), "img-pull itself exits 2: {err}");
    assert!(!w.path("pulled.json").exists(), "no target made of nothing");

    // The same with the variable quoted: an empty-string argument.
    fs::write(w.path("Makefile"), MAKEFILE.replace("img-pull $(IMAGE)", "img-pull \"$(IMAGE)\"")).unwrap();
    let out = w.sh("make --no-print-directory pulled.json IMAGE=");
    let err = stderr(&out);
    assert!(err.contains("pulled.json] Error 2"), "img-pull \"\" exits 2: {err}");
    assert!(!w.path("pulled.json").exists());
}
