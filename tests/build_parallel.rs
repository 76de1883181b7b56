//! img-build runs stages that do not need each other at the same time: their RUN steps
//! overlap, their output stays in whole lines prefixed by stage, a failing stage stops the
//! others, and the image is the one a build of one stage at a time makes.

use std::fs;
use std::path::Path;
use std::process::Output;

use img::layout::Layout;
use img::test_image::TestImage;
use img_e2e::{Store, assert_success, json_lines, stderr};

const BASE: &str = "localhost/busybox:1";

/// A store with a busybox base image, and a context directory.
fn setup() -> (Store, tempfile::TempDir) {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::busybox(&["seq", "printf"]).build().write_to(&layout, Some(BASE)).unwrap();
    (store, tempfile::tempdir().unwrap())
}

fn build(store: &Store, ctx: &Path, dockerfile: &str, extra: &[&str]) -> Output {
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = store.command("img-build");
    cmd.env("SOURCE_DATE_EPOCH", "1700000000").args(extra).arg(ctx);
    img_e2e::run_with_stdin(&mut cmd, "")
}

fn digest_of(out: &Output) -> String {
    assert_success(out, "img-build");
    let records = json_lines(&out.stdout);
    records[0]["digest"].as_str().unwrap().to_string()
}

fn cat(store: &Store, image: &str, file: &str) -> String {
    let out = store.run("img-run", &[image, "--", "cat", file], "");
    assert_success(&out, "img-run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The moments (the system's uptime, the same clock in every container) a stage's RUN
/// started and ended, as the image recorded them.
fn interval(store: &Store, image: &str, stage: &str) -> (f64, f64) {
    let at = |which: &str| -> f64 {
        let text = cat(store, image, &format!("/{stage}.{which}"));
        text.split_whitespace().next().unwrap().parse().unwrap()
    };
    (at("start"), at("end"))
}

const TWO_SLEEPS: &str = "FROM {BASE} AS a\n\
     RUN cat /proc/uptime > /start && sleep 2 && cat /proc/uptime > /end\n\
     FROM {BASE} AS b\n\
     RUN cat /proc/uptime > /start && sleep 2 && cat /proc/uptime > /end\n\
     FROM {BASE}\n\
     COPY --from=a /start /a.start\n\
     COPY --from=a /end /a.end\n\
     COPY --from=b /start /b.start\n\
     COPY --from=b /end /b.end\n";

#[test]
fn independent_stages_run_at_the_same_time() {
    let (store, ctx) = setup();
    let dockerfile = TWO_SLEEPS.replace("{BASE}", BASE);
    let out = build(&store, ctx.path(), &dockerfile, &["--jobs", "2", "-t", "localhost/par:1"]);
    digest_of(&out);
    let (a, b) = (interval(&store, "localhost/par:1", "a"), interval(&store, "localhost/par:1", "b"));
    assert!(a.0 < b.1 && b.0 < a.1, "the two RUN steps overlap: a {a:?}, b {b:?}\n{}", stderr(&out));

    // One at a time, they do not.
    let out = build(&store, ctx.path(), &dockerfile, &["--no-cache", "--jobs", "1", "-t", "localhost/par:2"]);
    digest_of(&out);
    let (a, b) = (interval(&store, "localhost/par:2", "a"), interval(&store, "localhost/par:2", "b"));
    assert!(a.1 <= b.0 || b.1 <= a.0, "--jobs 1: one after the other: a {a:?}, b {b:?}");
}

#[test]
fn output_lines_are_whole_and_prefixed_by_stage() {
    let (store, ctx) = setup();
    // Each line written in two pieces, both stages at once.
    let noisy = |name: &str| {
        format!(
            "FROM {BASE} AS {name}\n\
             RUN for i in $(seq 1 300); do printf '{name}-line %s ' $i; printf '{pad}end\\n'; done\n",
            pad = name.repeat(40)
        )
    };
    let dockerfile = format!(
        "{}{}FROM {BASE}\nCOPY --from=alpha /bin/sh /a\nCOPY --from=beta /bin/sh /b\n",
        noisy("alpha"),
        noisy("beta")
    );
    let out = build(&store, ctx.path(), &dockerfile, &["-t", "localhost/log:1"]);
    digest_of(&out);
    let err = stderr(&out);
    for name in ["alpha", "beta"] {
        // Its output lines (a step line starts with `#N`).
        let ours: Vec<&str> =
            err.lines().filter(|l| l.contains(&format!("{name}-line")) && !l.starts_with('#')).collect();
        assert_eq!(ours.len(), 300, "{name}: every line once:\n{err}");
        for (i, line) in ours.iter().enumerate() {
            let want = format!("[{name}] {name}-line {} {}end", i + 1, name.repeat(40));
            assert_eq!(*line, want, "whole lines, in order, prefixed:\n{err}");
        }
        assert!(err.contains(&format!(" [{name}] RUN for i in")), "step lines name the stage:\n{err}");
    }
}

#[test]
fn a_failing_stage_stops_the_others_and_tags_nothing() {
    let (store, ctx) = setup();
    let out = build(&store, ctx.path(), &format!("FROM {BASE}\nRUN true\n"), &["-t", "localhost/f:1"]);
    digest_of(&out);
    let index = store.layout().join("index.json");
    let before = fs::read(&index).unwrap();
    let dockerfile = format!(
        "FROM {BASE} AS slow\n\
         RUN sleep 617\n\
         FROM {BASE} AS bad\n\
         RUN sleep 1; echo giving up; exit 7\n\
         FROM {BASE}\n\
         COPY --from=slow /bin/sh /a\n\
         COPY --from=bad /bin/sh /b\n"
    );
    let started = std::time::Instant::now();
    let out = build(&store, ctx.path(), &dockerfile, &["--jobs", "2", "-t", "localhost/f:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 300, "the sleeping stage was stopped");
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert_eq!(
        last,
        "img-build: Dockerfile:4: stage bad: the command \"/bin/sh -c sleep 1; echo giving up; exit 7\" returned a non-zero code: 7",
        "{err}"
    );
    assert!(err.contains("[bad] giving up"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(fs::read(&index).unwrap(), before, "no ref written");
    // The other stage's container was killed with the build.
    let sleeping = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00617\x00"));
    assert!(!sleeping, "the slow stage's `sleep 617` still runs");
}

#[test]
fn parallel_and_one_at_a_time_give_the_same_image() {
    let (store, ctx) = setup();
    fs::write(ctx.path().join("f"), "context file\n").unwrap();
    let dockerfile = format!(
        "FROM {BASE} AS base\n\
         RUN echo base > /base\n\
         FROM base AS one\n\
         COPY f /one/f\n\
         RUN echo one > /one/out\n\
         FROM base AS two\n\
         RUN mkdir /two && echo two > /two/out\n\
         FROM {BASE} AS three\n\
         RUN --mount=from=one,target=/m cat /m/one/out > /three\n\
         FROM scratch\n\
         COPY --from=one /one /one\n\
         COPY --from=two /two /two\n\
         COPY --from=three /three /three\n"
    );
    let parallel =
        digest_of(&build(&store, ctx.path(), &dockerfile, &["--no-cache", "-t", "localhost/same:1"]));
    let serial = digest_of(&build(
        &store,
        ctx.path(),
        &dockerfile,
        &["--no-cache", "--jobs", "1", "-t", "localhost/same:2"],
    ));
    let again = digest_of(&build(
        &store,
        ctx.path(),
        &dockerfile,
        &["--no-cache", "-j", "8", "-t", "localhost/same:3"],
    ));
    assert_eq!(parallel, serial);
    assert_eq!(parallel, again);
}

#[test]
fn jobs_must_be_a_positive_number() {
    let (store, ctx) = setup();
    let out = build(&store, ctx.path(), &format!("FROM {BASE}\n"), &["--jobs", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
