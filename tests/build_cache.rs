//! `--cache-to` and `--cache-from` end to end: two stores stand for two CI runners. Store A
//! builds and exports its cache; store B, empty, imports it and must make the very same image
//! without running a step whose inputs match (every RUN here writes something new each time
//! it runs, so a RUN that ran shows in the digest).

use std::fs;
use std::path::Path;

use img::document::{self, Descriptor};
use img::layout::Layout;
use img::media_type;
use img::test_image::TestImage;
use img_e2e::registry::Registry;
use img_e2e::{Store, assert_success, json_lines, stderr};
use serde_json::json;

/// Store A with a busybox base pushed to the registry as HOST/busybox:1, which the Dockerfiles
/// use (store B pulls it while building).
fn base(registry: &Registry) -> (Store, String) {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::busybox(&["head", "date", "od"])
        .build()
        .write_to(&layout, Some("localhost/busybox:1"))
        .unwrap();
    let name = format!("{}/busybox:1", registry.host());
    store.records("img-push", &["--to", &name, "localhost/busybox:1"], "");
    (store, name)
}

/// A context directory (in `parent`, so the two runners' contexts can be on different
/// filesystems) holding a file and a directory to COPY.
fn context(parent: &Path, dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir_in(parent).unwrap();
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    fs::create_dir_all(ctx.path().join("tree/sub")).unwrap();
    fs::write(ctx.path().join("tree/sub/f"), "f\n").unwrap();
    ctx
}

/// Builds; returns the image digest and the log.
fn build(store: &Store, ctx: &Path, extra: &[&str]) -> (String, String) {
    let mut args: Vec<&str> = extra.to_vec();
    args.push(ctx.to_str().unwrap());
    let out = store.run("img-build", &args, "");
    assert_success(&out, "img-build");
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1, "{records:?}");
    (records[0]["digest"].as_str().unwrap().to_string(), stderr(&out))
}

/// The log lines of RUN steps.
fn runs(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("] RUN ")).collect()
}

fn all_cached(log: &str) {
    let runs = runs(log);
    assert!(!runs.is_empty(), "{log}");
    for line in runs {
        assert!(line.ends_with("CACHED"), "a RUN ran: {line}\n{log}");
    }
}

fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         COPY hello.txt /hello.txt\n\
         COPY tree /tree\n\
         RUN head -c16 /dev/urandom | od -An -tx1 > /random\n\
         ENV STEP=2\n\
         RUN date > /date && head -c16 /dev/urandom | od -An -tx1 >> /date\n"
    )
}

/// The directory for runner B's context: another filesystem than A's when there is one, so
/// keys that depended on directory sizes would miss.
fn other_fs() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm } else { Path::new("/tmp") }
}

#[test]
fn registry_cache_gives_a_fresh_store_the_same_image_without_running_steps() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let cache = format!("{}/cache:1", registry.host());
    let text = dockerfile(&base);
    let ctx_a = context(&std::env::temp_dir(), &text);
    let to = format!("type=registry,ref={cache},mode=max");
    let (digest_a, log_a) = build(&a, ctx_a.path(), &["--cache-to", &to]);
    assert_eq!(runs(&log_a).len(), 2);
    assert!(runs(&log_a).iter().all(|l| !l.ends_with("CACHED")), "{log_a}");
    assert!(log_a.contains("exported"), "{log_a}");

    // The same build on A again, without its cache, makes another image: the RUNs differ.
    let (again, _) = build(&a, ctx_a.path(), &["--no-cache"]);
    assert_ne!(again, digest_a, "the RUN steps must make different output each time");

    let b = Store::new();
    let ctx_b = context(other_fs(), &text);
    let from = format!("type=registry,ref={cache}");
    let (digest_b, log_b) = build(&b, ctx_b.path(), &["--cache-from", &from]);
    all_cached(&log_b);
    assert_eq!(digest_b, digest_a, "{log_b}");
    assert!(!log_b.contains("warning: --cache-from"), "{log_b}");

    // B kept the entries: a second build hits its own cache with no import.
    let (digest_b2, log_b2) = build(&b, ctx_b.path(), &[]);
    all_cached(&log_b2);
    assert_eq!(digest_b2, digest_a);

    // Only the layers a build hits are fetched: C changes the ENV before the last RUN, so it
    // hits the first RUN, runs the last, and never downloads A's last layer.
    let c = Store::new();
    let ctx_c = context(other_fs(), &text.replace("STEP=2", "STEP=3"));
    let (_, log_c) = build(&c, ctx_c.path(), &["--cache-from", &from]);
    let ran = runs(&log_c);
    assert!(ran[0].ends_with("CACHED") && !ran[1].ends_with("CACHED"), "{log_c}");
    let layers_of = |store: &Store, digest: &str| {
        let layout = Layout::open(store.layout()).unwrap();
        document::parse_manifest(&layout.read_blob(&digest.parse().unwrap()).unwrap()).unwrap().layers
    };
    let a_layers = layers_of(&a, &digest_a);
    let c_layout = Layout::open(c.layout()).unwrap();
    assert!(c_layout.has_blob(&a_layers[a_layers.len() - 2].digest), "the first RUN's layer");
    assert!(!c_layout.has_blob(&a_layers[a_layers.len() - 1].digest), "the last RUN's layer");
}

#[test]
fn local_cache_directory_round_trips() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let text = dockerfile(&base);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let ctx_a = context(&std::env::temp_dir(), &text);
    let to = format!("type=local,dest={}", cache.display());
    let (digest_a, _) = build(&a, ctx_a.path(), &["--cache-to", &to]);

    // An OCI layout holding the cache artifact under its fixed name.
    let layout = Layout::open(&cache).unwrap();
    let index = layout.read_index().unwrap();
    let entry = index.entries().iter().find(|e| e.ref_name() == Some("img-build-cache")).unwrap();
    let manifest = document::parse_manifest(&layout.read_document(entry).unwrap()).unwrap();
    assert_eq!(manifest.artifact_type.as_deref(), Some("application/vnd.img.build-cache.v1+json"));
    assert_eq!(manifest.layers.len(), 4, "two COPY and two RUN layers");

    let b = Store::new();
    let ctx_b = context(other_fs(), &text);
    let from = format!("type=local,src={}", cache.display());
    let (digest_b, log_b) = build(&b, ctx_b.path(), &["--cache-from", &from]);
    all_cached(&log_b);
    assert_eq!(digest_b, digest_a);
}

#[test]
fn inline_cache_in_a_pushed_image_is_reused() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let text = dockerfile(&base);
    let ctx_a = context(&std::env::temp_dir(), &text);
    let image = format!("{}/app:1", registry.host());
    let (digest_a, _) = build(&a, ctx_a.path(), &["-t", &image, "--cache-to", "type=inline"]);
    a.records("img-push", &[&image], "");

    let b = Store::new();
    let ctx_b = context(other_fs(), &text);
    let from = format!("type=registry,ref={image}");
    let (digest_b, log_b) = build(&b, ctx_b.path(), &["--cache-from", &from, "--cache-to", "type=inline"]);
    all_cached(&log_b);
    assert_eq!(digest_b, digest_a, "{log_b}");
}

#[test]
fn a_missing_or_unreachable_cache_is_a_warning() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let ctx = context(&std::env::temp_dir(), &dockerfile(&base));
    let missing = format!("type=registry,ref={}/nothing:here", registry.host());
    let (_, log) = build(&a, ctx.path(), &["--no-cache", "--cache-from", &missing]);
    assert!(log.contains("warning: --cache-from"), "{log}");
    assert_eq!(runs(&log).len(), 2);

    let unreachable = format!("type=registry,ref=127.0.0.1:{}/cache:1", img_e2e::registry::free_port());
    let (_, log) =
        build(&a, ctx.path(), &["--cache-from", &unreachable, "--cache-from", "type=local,src=/nonexistent"]);
    assert_eq!(log.matches("warning: --cache-from").count(), 2, "{log}");
}

#[test]
fn a_corrupt_cache_is_a_warning_and_the_steps_run() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let text = dockerfile(&base);
    let ctx = context(&std::env::temp_dir(), &text);

    // A cache artifact whose config is not a cache config, pushed with img-push.
    let dir = tempfile::tempdir().unwrap();
    let bad = Layout::open_or_create(dir.path()).unwrap();
    let config = br#"{"version":1,"entries":{"../../etc":{"layer":null,"diff_id":null,"created":"x"}}}"#;
    let config_desc = bad.put_document("application/vnd.img.build-cache.config.v1+json", config).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.img.build-cache.v1+json",
        "config": config_desc,
        "layers": [],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let desc: Descriptor = bad.put_document(media_type::OCI_MANIFEST, &bytes).unwrap();
    bad.set_ref("localhost/cache:bad", &desc).unwrap();
    let cache = format!("{}/cache:bad", registry.host());
    a.records(
        "img-push",
        &["--layout", dir.path().to_str().unwrap(), "--to", &cache, "localhost/cache:bad"],
        "",
    );

    let b = Store::new();
    let from = format!("type=registry,ref={cache}");
    let (_, log) = build(&b, ctx.path(), &["--cache-from", &from]);
    assert!(log.contains("warning: --cache-from"), "{log}");
    assert!(log.contains("cache key"), "{log}");
    let ran = runs(&log);
    assert_eq!(ran.len(), 2);
    assert!(ran.iter().all(|l| !l.ends_with("CACHED")), "{log}");

    // A local cache whose config blob was changed on disk fails its digest check.
    let local = tempfile::tempdir().unwrap();
    let to = format!("type=local,dest={}", local.path().display());
    build(&a, ctx.path(), &["--cache-to", &to]);
    let layout = Layout::open(local.path()).unwrap();
    let index = layout.read_index().unwrap();
    let entry = index.entries().iter().find(|e| e.ref_name() == Some("img-build-cache")).unwrap();
    let m = document::parse_manifest(&layout.read_document(entry).unwrap()).unwrap();
    let path = layout.blob_path(&m.config.digest);
    let mut text = fs::read(&path).unwrap();
    text[0] = b'[';
    fs::write(&path, text).unwrap();
    let c = Store::new();
    let from = format!("type=local,src={}", local.path().display());
    let (_, log) = build(&c, ctx.path(), &["--cache-from", &from]);
    assert!(log.contains("warning: --cache-from"), "{log}");
    assert!(runs(&log).iter().all(|l| !l.ends_with("CACHED")), "{log}");
}

#[test]
fn mode_min_leaves_intermediate_stages_out_and_max_keeps_them() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let text = format!(
        "FROM {base} AS builder\n\
         RUN head -c16 /dev/urandom | od -An -tx1 > /built\n\
         FROM {base}\n\
         COPY --from=builder /built /built\n\
         RUN head -c16 /dev/urandom | od -An -tx1 > /random\n"
    );
    let ctx = context(&std::env::temp_dir(), &text);
    let dir = tempfile::tempdir().unwrap();
    let (min, max) = (dir.path().join("min"), dir.path().join("max"));
    let to_min = format!("type=local,dest={},mode=min", min.display());
    let to_max = format!("type=local,dest={},mode=max", max.display());
    let (digest_a, _) = build(&a, ctx.path(), &["--cache-to", &to_min, "--cache-to", &to_max]);

    let layers = |dir: &Path| -> Vec<Descriptor> {
        let layout = Layout::open(dir).unwrap();
        let index = layout.read_index().unwrap();
        let entry = index.entries().iter().find(|e| e.ref_name() == Some("img-build-cache")).unwrap();
        document::parse_manifest(&layout.read_document(entry).unwrap()).unwrap().layers
    };
    let (min_layers, max_layers) = (layers(&min), layers(&max));
    assert_eq!(min_layers.len(), 2, "the final stage's COPY and RUN");
    assert_eq!(max_layers.len(), 3, "and the builder stage's RUN");
    assert!(min_layers.iter().all(|l| max_layers.contains(l)));
    let builder_layer = max_layers.iter().find(|l| !min_layers.contains(l)).unwrap();
    assert!(!Layout::open(&min).unwrap().has_blob(&builder_layer.digest));

    // With max, B runs nothing; with min, B runs the builder stage again.
    let b = Store::new();
    let from = format!("type=local,src={}", max.display());
    let (digest_b, log_b) = build(&b, ctx.path(), &["--cache-from", &from]);
    all_cached(&log_b);
    assert_eq!(digest_b, digest_a);

    let c = Store::new();
    let from = format!("type=local,src={}", min.display());
    let (_, log_c) = build(&c, ctx.path(), &["--cache-from", &from]);
    let builder_run = runs(&log_c).into_iter().find(|l| l.contains("[builder]")).unwrap();
    assert!(!builder_run.ends_with("CACHED"), "{log_c}");
}

/// A RUN's key covers what its bind mounts show: a changed file in the context, or a changed
/// stage, makes it run again (a shared cache must not hand out a stale result).
#[test]
fn bind_mounted_files_are_part_of_the_key() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let text = format!(
        "FROM {base} AS gen\n\
         COPY hello.txt /gen.txt\n\
         FROM {base}\n\
         RUN --mount=type=bind,source=tree,target=/t cat /t/sub/f > /f\n\
         RUN --mount=type=bind,from=gen,target=/g cat /g/gen.txt > /g.txt\n"
    );
    let ctx = context(&std::env::temp_dir(), &text);
    let (first, _) = build(&a, ctx.path(), &[]);
    let (again, log) = build(&a, ctx.path(), &[]);
    all_cached(&log);
    assert_eq!(again, first);

    fs::write(ctx.path().join("tree/sub/f"), "changed\n").unwrap();
    let (_, log) = build(&a, ctx.path(), &[]);
    assert!(!runs(&log)[0].ends_with("CACHED"), "{log}");

    fs::write(ctx.path().join("hello.txt"), "changed\n").unwrap();
    let (_, log) = build(&a, ctx.path(), &[]);
    let ran = runs(&log);
    assert!(ran[0].ends_with("CACHED") && !ran[1].ends_with("CACHED"), "{log}");
}

/// Layers are checked against their digests when fetched: a cache layer changed on disk is
/// refused with a warning, and its step runs.
#[test]
fn a_tampered_layer_is_refused_and_its_step_runs() {
    let registry = Registry::anonymous();
    let (a, base) = base(&registry);
    let text = dockerfile(&base);
    let ctx = context(&std::env::temp_dir(), &text);
    let dir = tempfile::tempdir().unwrap();
    let to = format!("type=local,dest={}", dir.path().display());
    let (digest_a, _) = build(&a, ctx.path(), &["--cache-to", &to]);
    let layout = Layout::open(a.layout()).unwrap();
    let layers =
        document::parse_manifest(&layout.read_blob(&digest_a.parse().unwrap()).unwrap()).unwrap().layers;
    let last = &layers[layers.len() - 1];
    let path = Layout::open(dir.path()).unwrap().blob_path(&last.digest);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    fs::write(&path, bytes).unwrap();

    let b = Store::new();
    let from = format!("type=local,src={}", dir.path().display());
    let (digest_b, log) = build(&b, ctx.path(), &["--cache-from", &from]);
    assert!(log.contains(&format!("layer {}", last.digest)), "{log}");
    let ran = runs(&log);
    assert!(ran[0].ends_with("CACHED") && !ran[1].ends_with("CACHED"), "{log}");
    assert_ne!(digest_b, digest_a);
    assert!(!Layout::open(b.layout()).unwrap().has_blob(&last.digest));
}

/// SOURCE_DATE_EPOCH is part of every step's key: a build with it after one without makes the
/// image a clean build with it makes (its layers' times clamped), and a plain build after it
/// makes the plain image again, not one with the clamped times.
#[test]
fn source_date_epoch_is_part_of_the_cache_key() {
    let parent = tempfile::tempdir().unwrap();
    let ctx = context(parent.path(), "FROM scratch\nCOPY hello.txt tree /\n");
    let build_with = |store: &Store, epoch: Option<&str>| -> String {
        let mut cmd = store.command("img-build");
        if let Some(epoch) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", epoch);
        }
        let out = img_e2e::run_with_stdin(cmd.arg(ctx.path()), "");
        assert_success(&out, "img-build");
        json_lines(&out.stdout)[0]["digest"].as_str().unwrap().to_string()
    };
    let runner = Store::new();
    let plain = build_with(&runner, None);
    let after_plain = build_with(&runner, Some("1000000000"));
    let clean = build_with(&Store::new(), Some("1000000000"));
    assert_ne!(after_plain, plain, "the files' times are clamped with SOURCE_DATE_EPOCH");
    assert_eq!(after_plain, clean, "a build with SOURCE_DATE_EPOCH does not reuse the plain one's layers");
    assert_eq!(build_with(&runner, None), plain, "a plain build does not reuse the clamped layers");
    let other = build_with(&runner, Some("1000000001"));
    assert!(other != clean && other != plain, "another epoch is another key");
}
