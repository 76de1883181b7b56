//! A layout given with `--layout` is untrusted input, and so is everything in it: symlinks
//! planted where our private directories, lock files, blob directories, blobs, `index.json` or
//! `oci-layout` should be, FIFOs in their place, documents over the size caps and indexes
//! nested without end. Every tool must refuse with a one-line error (exit 1) and touch nothing
//! outside the layout: each test plants its links to a directory beside the layout, inside the
//! test's own temp dir, full of canaries named like what a sweep would take, and checks that
//! directory, the layout's refs and its blobs afterwards.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use img::digest::Digest;
use img::document::{self, MAX_CONFIG_BYTES, MAX_INDEX_JSON_BYTES, MAX_MANIFEST_BYTES, MAX_NESTING};
use img::layout::Layout;
use img::media_type;
use img::test_image::{BuiltImage, Entry, Layer, TestImage};
use img_e2e::{assert_success, bin, check, json_lines, run_with_timeout, stderr, tree};
use serde_json::json;

/// Long enough for any of these commands; a FIFO that blocks a tool shows as a timeout.
const LIMIT: Duration = Duration::from_secs(20);

struct Fixture {
    dir: tempfile::TempDir,
    /// The layout under attack.
    layout: PathBuf,
    /// Beside the layout: where the planted symlinks point.
    outside: PathBuf,
    img: BuiltImage,
    /// A blob nothing references, which a collection that runs removes.
    stray: Digest,
}

fn image(content: &str) -> BuiltImage {
    TestImage::new().layer(Layer::new([Entry::file("f", content)])).build()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let l = Layout::open_or_create(&layout).unwrap();
    let img = image("inside");
    img.write_to(&l, Some("app:1")).unwrap();
    let stray = l.put_bytes(b"an unreferenced blob").unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir_all(outside.join("sha256")).unwrap();
    fs::create_dir_all(outside.join("snapshots/build-1")).unwrap();
    // Canaries named like what each sweep takes: blobs, temp files, snapshots.
    let hex = Digest::of(b"canary").hex().to_string();
    for (name, content) in [
        ("canary".to_string(), "precious"),
        (hex.clone(), "named like a blob"),
        (format!("sha256/{hex}"), "named like a blob"),
        ("blob-1234".to_string(), "named like a temp file"),
        ("index.lock".to_string(), "not a lock"),
        (format!("snapshots/sha256-{hex}"), "named like a snapshot"),
        ("snapshots/build-1/file".to_string(), "in a build directory"),
    ] {
        fs::write(outside.join(name), content).unwrap();
    }
    fs::create_dir(dir.path().join("store")).unwrap();
    Fixture { dir, layout, outside, img, stray }
}

impl Fixture {
    fn at(&self, rel: &str) -> PathBuf {
        self.layout.join(rel)
    }

    /// Replaces `rel` in the layout (file or directory) with a symlink to `target`.
    fn plant_symlink(&self, rel: &str, target: &Path) {
        remove_any(&self.at(rel));
        symlink(target, self.at(rel)).unwrap();
    }

    /// Replaces `rel` in the layout with a FIFO.
    fn plant_fifo(&self, rel: &str) {
        remove_any(&self.at(rel));
        let c = std::ffi::CString::new(self.at(rel).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a plain syscall on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    fn blob(&self, d: &Digest) -> PathBuf {
        self.at(&format!("blobs/sha256/{}", d.hex()))
    }

    /// Runs a tool on the layout with a private store; a tool that blocks fails the test.
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin(tool));
        cmd.arg("--layout")
            .arg(&self.layout)
            .args(args)
            .env("IMG_ROOT", self.dir.path().join("store"))
            .env("RUST_BACKTRACE", "1")
            .env_remove("IMG_LAYOUT");
        run_with_timeout(&mut cmd, "", LIMIT)
    }

    /// What must not change: the directory outside (every file, and the directory itself, whose
    /// mtime moves if a file was made or removed there), the layout's refs and its blob names.
    fn state(&self) -> State {
        State {
            outside: tree::snapshot(&self.outside),
            outside_mtime: fs::metadata(&self.outside).unwrap().modified().unwrap(),
            refs: check::refs(&self.layout),
            blobs: blob_names(&self.layout),
        }
    }
}

#[derive(Debug, PartialEq)]
struct State {
    outside: tree::Tree,
    outside_mtime: std::time::SystemTime,
    refs: Vec<(String, String)>,
    blobs: BTreeSet<String>,
}

/// Blob names, without following a symlink anywhere under `blobs/`.
fn blob_names(layout: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(algs) = fs::read_dir(layout.join("blobs")) else { return out };
    for alg in algs.map(Result::unwrap) {
        if !alg.file_type().unwrap().is_dir() {
            out.insert(format!("{} (not a directory)", alg.file_name().to_string_lossy()));
            continue;
        }
        for blob in fs::read_dir(alg.path()).unwrap().map(Result::unwrap) {
            out.insert(format!(
                "{}:{}",
                alg.file_name().to_string_lossy(),
                blob.file_name().to_string_lossy()
            ));
        }
    }
    out
}

fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Fails unless the tool refused with exit 1 and a single line of stderr saying all of `says`.
fn assert_refused(out: &Output, tool: &str, says: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{tool}: {err}");
    assert!(!err.contains("panicked") && !err.contains("overflow"), "{err}");
    assert_eq!(err.lines().count(), 1, "{tool}: not one line: {err}");
    assert!(err.starts_with(&format!("{tool}: ")), "{err}");
    for s in says {
        assert!(err.contains(s), "{err:?} does not say {s:?}");
    }
}

#[test]
fn a_symlinked_temp_directory_stops_collection_before_anything_is_deleted() {
    let f = fixture();
    f.plant_symlink(".img/tmp", &f.outside);
    let before = f.state();
    for args in [&["--prune"][..], &["app:1"]] {
        let out = f.run("img-rm", args);
        assert_refused(&out, "img-rm", &[".img/tmp", "symlink"]);
        assert_eq!(f.state(), before, "img-rm {args:?}");
    }
    assert!(f.blob(&f.stray).is_file(), "the stray blob was collected");
    // The same layout with a real directory there collects as usual.
    fs::remove_file(f.at(".img/tmp")).unwrap();
    let out = f.run("img-rm", &["--prune"]);
    assert_success(&out, "img-rm --prune");
    assert_eq!(json_lines(&out.stdout)[0]["freedBlobs"], 1);
}

#[test]
fn a_blob_directory_symlinked_to_another_layout_is_not_swept() {
    let f = fixture();
    // Another layout beside this one, whose blobs this one's index does not reference.
    let other = f.dir.path().join("other");
    let o = Layout::open_or_create(&other).unwrap();
    image("other").write_to(&o, Some("mine:1")).unwrap();
    let others = check::blob_names(&other);
    for (planted, target) in [("blobs", other.join("blobs")), ("blobs/sha256", other.join("blobs/sha256"))] {
        let f = fixture();
        fs::write(f.at("index.json"), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        f.plant_symlink(planted, &target);
        let before = f.state();
        let out = f.run("img-rm", &["--prune"]);
        assert_refused(&out, "img-rm", &[planted, "symlink"]);
        assert_eq!(f.state(), before, "{planted}");
        assert_eq!(check::blob_names(&other), others, "{planted}: the other layout lost blobs");
    }
    // Reading through it is refused too.
    f.plant_symlink("blobs/sha256", &other.join("blobs/sha256"));
    let before = f.state();
    assert_refused(&f.run("img-ls", &[]), "img-ls", &["app:1", "blobs/sha256", "symlink"]);
    assert_refused(&f.run("img-rm", &["app:1"]), "img-rm", &["blobs/sha256", "symlink"]);
    assert_eq!(f.state(), before);
}

#[test]
fn lock_files_and_the_private_directory_are_never_made_through_a_symlink() {
    for (planted, target, args) in [
        (".img/index.lock", "made-by-index-lock", &["app:1"][..]),
        (".img/gc.lock", "made-by-gc-lock", &["--prune"][..]),
        (".img/gc.lock", "made-by-gc-lock", &["app:1"][..]),
        (".img", "made-by-private-dir", &["app:1"][..]),
    ] {
        let f = fixture();
        // Dangling: following it would create the file (or directory) outside.
        f.plant_symlink(planted, &f.outside.join(target));
        let before = f.state();
        let out = f.run("img-rm", args);
        assert_refused(&out, "img-rm", &[planted, "symlink"]);
        assert!(!f.outside.join(target).exists(), "{planted}: made {target} outside");
        assert_eq!(f.state(), before, "{planted} {args:?}");
        // Pointing at an existing file: it is neither opened for writing nor changed.
        f.plant_symlink(planted, &f.outside.join("index.lock"));
        let before = f.state();
        assert_refused(&f.run("img-rm", args), "img-rm", &[planted, "symlink"]);
        assert_eq!(f.state(), before, "{planted} {args:?}");
    }
}

#[test]
fn blobs_that_are_symlinks_or_fifos_are_not_read() {
    let f = fixture();
    let layer = f.img.layers[0].descriptor.digest.clone();
    let config = f.img.config.descriptor.digest.clone();
    let bundle = f.dir.path().join("bundle");
    let bundle_arg = bundle.to_str().unwrap().to_string();

    // A layer that is a FIFO would block its reader for ever.
    f.plant_fifo(&format!("blobs/sha256/{}", layer.hex()));
    let out = f.run("img-unpack", &["--bundle", &bundle_arg, "app:1"]);
    assert_refused(&out, "img-unpack", &[&layer.to_string(), "not a regular file"]);
    assert!(!bundle.exists(), "a refused unpack left a bundle");

    // A layer that is a symlink to a tar outside: refused before a byte is read.
    let secret = image("secret");
    fs::write(f.outside.join("layer.tar.gz"), &secret.layers[0].bytes).unwrap();
    f.plant_symlink(&format!("blobs/sha256/{}", layer.hex()), &f.outside.join("layer.tar.gz"));
    let before = f.state();
    let out = f.run("img-unpack", &["--bundle", &bundle_arg, "app:1"]);
    assert_refused(&out, "img-unpack", &[&layer.to_string(), "symlink"]);
    assert!(!bundle.exists(), "a refused unpack left a bundle");
    assert_eq!(f.state(), before);

    // A config that is a symlink to a file outside, or a FIFO.
    fs::write(f.outside.join("config.json"), &f.img.config.bytes).unwrap();
    f.plant_symlink(&format!("blobs/sha256/{}", config.hex()), &f.outside.join("config.json"));
    assert_refused(&f.run("img-ls", &[]), "img-ls", &["app:1", &config.to_string(), "symlink"]);
    f.plant_fifo(&format!("blobs/sha256/{}", config.hex()));
    assert_refused(&f.run("img-ls", &[]), "img-ls", &["app:1", &config.to_string(), "not a regular file"]);
    let out = f.run("img-unpack", &["--bundle", &bundle_arg, "app:1"]);
    assert_refused(&out, "img-unpack", &[&config.to_string(), "not a regular file"]);

    // A root manifest that is a FIFO: collection refuses, deleting nothing.
    f.plant_fifo(&format!("blobs/sha256/{}", f.img.manifest.descriptor.digest.hex()));
    let before = f.state();
    let out = f.run("img-rm", &["--prune"]);
    assert_refused(&out, "img-rm", &["garbage collection refused", "not a regular file"]);
    assert_eq!(f.state(), before);
}

#[test]
fn index_json_and_oci_layout_must_be_regular_files_of_the_layout() {
    for file in ["index.json", "oci-layout"] {
        for fifo in [false, true] {
            let f = fixture();
            if fifo {
                f.plant_fifo(file);
            } else {
                // A copy outside, so following the link would work.
                fs::copy(f.at(file), f.outside.join(file)).unwrap();
                f.plant_symlink(file, &f.outside.join(file));
            }
            let says = if fifo { "not a regular file" } else { "symlink" };
            let before = (tree::snapshot(&f.outside), blob_names(&f.layout));
            for (tool, args) in [("img-ls", &[][..]), ("img-rm", &["app:1"]), ("img-rm", &["--prune"])] {
                let out = f.run(tool, args);
                assert_refused(&out, tool, &[file, says]);
                assert!(out.stdout.is_empty(), "{tool} {args:?}");
                assert_eq!(
                    (tree::snapshot(&f.outside), blob_names(&f.layout)),
                    before,
                    "{file} {tool} {args:?}"
                );
                let kind = fs::symlink_metadata(f.at(file)).unwrap().file_type();
                assert!(if fifo { kind.is_fifo() } else { kind.is_symlink() }, "{tool} replaced {file}");
            }
        }
    }
}

/// Writes a file of `len` bytes without writing them (a sparse file reads as zeros).
fn sparse(path: &Path, len: u64) {
    remove_any(path);
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// Runs a tool under `/usr/bin/time`, returning its output and its peak RSS in KiB.
fn run_measured(f: &Fixture, tool: &str, args: &[&str]) -> (Output, u64) {
    let report = f.dir.path().join("rss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-o")
        .arg(&report)
        .args(["-f", "%M"])
        .arg(bin(tool))
        .arg("--layout")
        .arg(&f.layout)
        .args(args)
        .env("IMG_ROOT", f.dir.path().join("store"))
        .env_remove("IMG_LAYOUT");
    let out = run_with_timeout(&mut cmd, "", LIMIT);
    let rss = fs::read_to_string(&report).unwrap();
    // A tool that failed adds a "Command exited with non-zero status" line before the number.
    let kib = rss.lines().last().unwrap().trim().parse().unwrap();
    (out, kib)
}

#[test]
fn documents_over_the_caps_are_refused_before_they_are_read() {
    img_e2e::require("/usr/bin/time");
    let f = fixture();
    let big = 300 << 20;
    // A 300 MiB manifest, its descriptor honest about the size.
    let huge = Digest::of(b"a 300 MiB manifest");
    sparse(&f.blob(&huge), big);
    let l = Layout::open(&f.layout).unwrap();
    l.set_ref("huge:1", &document::Descriptor::new(media_type::OCI_MANIFEST, huge.clone(), big)).unwrap();
    // One whose descriptor claims a small size but whose file is one byte over the cap.
    let liar = Digest::of(b"a manifest that lies about its size");
    sparse(&f.blob(&liar), MAX_MANIFEST_BYTES + 1);
    l.set_ref("liar:1", &document::Descriptor::new(media_type::OCI_INDEX, liar.clone(), 1000)).unwrap();
    let cap = format!("{} MiB", MAX_MANIFEST_BYTES >> 20);
    let before = f.state();
    for (name, digest) in [("huge:1", &huge), ("liar:1", &liar)] {
        let (out, kib) = run_measured(&f, "img-ls", &[name]);
        assert_refused(&out, "img-ls", &[name, &digest.to_string(), &cap]);
        assert!(kib < 64 << 10, "img-ls {name} peaked at {kib} KiB");
        let bundle = f.dir.path().join("bundle");
        let out = f.run("img-unpack", &["--bundle", bundle.to_str().unwrap(), name]);
        assert_refused(&out, "img-unpack", &[&digest.to_string(), &cap]);
    }
    let (out, kib) = run_measured(&f, "img-rm", &["--prune"]);
    assert_refused(&out, "img-rm", &["garbage collection refused", &cap]);
    assert!(kib < 64 << 10, "img-rm --prune peaked at {kib} KiB");
    assert_eq!(f.state(), before);

    // A config one byte over its cap.
    let f = fixture();
    sparse(&f.blob(&f.img.config.descriptor.digest), MAX_CONFIG_BYTES + 1);
    let out = f.run("img-ls", &["app:1"]);
    assert_refused(
        &out,
        "img-ls",
        &[&f.img.config.descriptor.digest.to_string(), &format!("{} MiB", MAX_CONFIG_BYTES >> 20)],
    );

    // index.json one byte over its cap.
    sparse(&f.at("index.json"), MAX_INDEX_JSON_BYTES + 1);
    let before = (tree::snapshot(&f.outside), blob_names(&f.layout));
    for (tool, args) in [("img-ls", &[][..]), ("img-rm", &["app:1"]), ("img-rm", &["--prune"])] {
        let (out, kib) = run_measured(&f, tool, args);
        assert_refused(&out, tool, &["index.json", &format!("{} MiB", MAX_INDEX_JSON_BYTES >> 20)]);
        assert!(kib < 64 << 10, "{tool} {args:?} peaked at {kib} KiB");
        assert_eq!(fs::metadata(f.at("index.json")).unwrap().len(), MAX_INDEX_JSON_BYTES + 1);
    }
    assert_eq!((tree::snapshot(&f.outside), blob_names(&f.layout)), before);
}

/// Writes `doc` as a blob straight into the layout (no fsync: thousands are written).
fn raw_document(f: &Fixture, media_type: &str, doc: &serde_json::Value) -> document::Descriptor {
    let bytes = serde_json::to_vec(doc).unwrap();
    let d = document::Descriptor::of(media_type, &bytes);
    fs::write(f.blob(&d.digest), &bytes).unwrap();
    d
}

/// An index over `child`, `depth` times.
fn nest(f: &Fixture, child: &document::Descriptor, depth: usize) -> document::Descriptor {
    let mut d = child.clone();
    for _ in 0..depth {
        let doc = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [d]});
        d = raw_document(f, media_type::OCI_INDEX, &doc);
    }
    d
}

#[test]
fn indexes_nested_without_end_are_refused() {
    let f = fixture();
    let l = Layout::open(&f.layout).unwrap();
    let manifest = f.img.platform_descriptor();
    // As deep as allowed: listed and kept like any image.
    l.set_ref("deep-ok:1", &nest(&f, &manifest, MAX_NESTING - 1)).unwrap();
    let out = f.run("img-ls", &["deep-ok:1"]);
    assert_success(&out, "img-ls deep-ok:1");
    assert_eq!(json_lines(&out.stdout)[0]["layers"], 1);

    // 10,000 deep: an error, not a stack overflow or a walk through every level.
    l.set_ref("deep:1", &nest(&f, &manifest, 10_000)).unwrap();
    let before = f.state();
    let out = f.run("img-ls", &["deep:1"]);
    assert_refused(&out, "img-ls", &["deep:1", &format!("more than {MAX_NESTING}")]);
    let out = f.run("img-rm", &["--prune"]);
    assert_refused(&out, "img-rm", &["garbage collection refused", &format!("more than {MAX_NESTING}")]);
    assert_eq!(f.state(), before);
    assert!(f.blob(&f.stray).is_file());

    // An index naming itself cannot hash to its own digest: an error, never a loop.
    let f = fixture();
    let me = Digest::of(b"an index that names itself");
    let doc = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": media_type::OCI_INDEX, "digest": me, "size": 200}
    ]});
    fs::write(f.blob(&me), serde_json::to_vec(&doc).unwrap()).unwrap();
    let l = Layout::open(&f.layout).unwrap();
    l.set_ref("self:1", &document::Descriptor::new(media_type::OCI_INDEX, me.clone(), 200)).unwrap();
    assert_refused(&f.run("img-ls", &["self:1"]), "img-ls", &["self:1", "corrupt"]);
    assert_refused(&f.run("img-rm", &["--prune"]), "img-rm", &["garbage collection refused", "corrupt"]);
}

#[test]
fn a_diamond_of_indexes_is_read_once_per_document() {
    // Each level lists the one below four times (as four platforms): 4^14 paths, 15 documents.
    let f = fixture();
    let mut d = f.img.platform_descriptor();
    for level in 0..MAX_NESTING - 2 {
        let children: Vec<_> = (0..4)
            .map(|i| {
                let mut c = d.clone();
                c.platform = Some(format!("linux/arch{level}x{i}").parse().unwrap());
                c
            })
            .collect();
        let doc = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": children});
        d = raw_document(&f, media_type::OCI_INDEX, &doc);
    }
    Layout::open(&f.layout).unwrap().set_ref("diamond:1", &d).unwrap();
    let out = f.run("img-ls", &["diamond:1"]);
    assert_success(&out, "img-ls diamond:1");
    assert_eq!(json_lines(&out.stdout)[0]["layers"], 1);
    let out = f.run("img-rm", &["--prune"]);
    assert_success(&out, "img-rm --prune");
    assert_eq!(json_lines(&out.stdout)[0]["freedBlobs"], 1);
}

#[test]
fn a_symlinked_snapshot_directory_is_not_collected() {
    let f = fixture();
    let store = f.dir.path().join("store");
    symlink(f.outside.join("snapshots"), store.join("snapshots")).unwrap();
    let before = tree::snapshot(&f.outside);
    let out = f.run("img-rm", &["--prune"]);
    // Snapshots are a cache: the blobs are collected, the snapshots refused with a warning.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("img-rm: warning: ") && err.contains("snapshots") && err.contains("symlink"),
        "{err}"
    );
    assert_eq!(json_lines(&out.stdout)[0]["freedBlobs"], 1);
    assert_eq!(tree::snapshot(&f.outside), before);
}
