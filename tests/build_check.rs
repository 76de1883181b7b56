//! `img-build --check`: the build checks' warnings, by rule and line, with exit status 1; a
//! clean Dockerfile exits 0; nothing is built, pulled or written. A normal build shows the
//! same warnings and still builds.

use std::fs;
use std::path::Path;
use std::process::Output;

use img::layout::Layout;
use img::test_image::{COMMON_APPLETS, TestImage, busybox_layer};
use img_e2e::{Store, assert_success, json_lines, stderr};

/// Runs `img-build --check` on a Dockerfile written into a fresh context.
fn check(store: &Store, dockerfile: &str) -> Output {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    store.run("img-build", &["--check", ctx.path().to_str().unwrap()], "")
}

/// The (rule, line) of each record on stdout, sorted; each record has every field.
fn findings(out: &Output) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = json_lines(&out.stdout)
        .iter()
        .map(|r| {
            for field in ["message", "fix", "url"] {
                assert!(r[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {r}");
            }
            (r["rule"].as_str().unwrap().to_string(), r["line"].as_u64().unwrap())
        })
        .collect();
    found.sort();
    found
}

fn expected(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut pairs: Vec<(String, u64)> = pairs.iter().map(|(r, l)| (r.to_string(), *l)).collect();
    pairs.sort();
    pairs
}

/// The human lines agree with the records: `Dockerfile:LINE: Rule: message (fix: …)`.
fn assert_lines_on_stderr(out: &Output, found: &[(String, u64)]) {
    let err = stderr(out);
    for (rule, line) in found {
        let prefix = format!("Dockerfile:{line}: {rule}: ");
        assert!(err.lines().any(|l| l.starts_with(&prefix) && l.contains("(fix: ")), "{prefix} in:\n{err}");
    }
}

#[test]
fn check_finds_the_best_practices_a_single_stage_file_breaks() {
    let store = Store::new();
    let out = check(
        &store,
        "FROM localhost/not-here/ubuntu\n\
         RUN apt-get update\n\
         RUN apt-get install -y build-essential\n\
         RUN apk add curl\n\
         RUN pip install flask && yum install -y git\n\
         ADD . /app\n\
         FROM localhost/not-here/ubuntu:latest AS unused\n",
    );
    // With a second stage (for :latest), build-essential is not in the only stage: the
    // toolchain rule is checked on its own below.
    let found = findings(&out);
    assert_eq!(
        found,
        expected(&[
            ("BaseImageNotPinned", 1),
            ("ConsecutiveRunInstructions", 2),
            ("PackageCacheNotCleaned", 2),
            ("PackageCacheNotCleaned", 3),
            ("PackageCacheNotCleaned", 4),
            ("PackageCacheNotCleaned", 5),
            ("PackageCacheNotCleaned", 5),
            ("CopyRecommendedOverAdd", 6),
            ("BaseImageNotPinned", 7),
        ]),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1), "warnings exit 1: {}", stderr(&out));
    assert_lines_on_stderr(&out, &found);

    let out = check(
        &store,
        "FROM localhost/not-here/debian:12\n\
         RUN apt-get update && apt-get install -y gcc make && rm -rf /var/lib/apt/lists/*\n\
         COPY . /src\n\
         RUN make -C /src\n\
         CMD make -C /src run\n",
    );
    let found = findings(&out);
    assert_eq!(
        found,
        expected(&[("ToolchainInFinalStage", 2), ("JSONArgsRecommended", 5)]),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1));
    assert_lines_on_stderr(&out, &found);
    let err = stderr(&out);
    assert!(err.contains("build tools (gcc, make)"), "{err}");
    assert!(err.contains("CMD [\"make\", \"-C\", \"/src\", \"run\"]"), "the fix is the exec form: {err}");
}

#[test]
fn check_finds_buildkits_rules() {
    let store = Store::new();
    let out = check(
        &store,
        "ARG VERSION=1\n\
         FROM --platform=linux/amd64 localhost/not-here/golang:1.22 as Builder\n\
         run echo $VERSION\n\
         COPY v${VERSION}.txt /src/\n\
         WORKDIR src\n\
         FROM localhost/not-here/debian:12 AS builder\n\
         FROM localhost/not-here/debian:12 AS scratch\n\
         MAINTAINER someone <someone@example.com>\n\
         ENV GITHUB_TOKEN=abc\n\
         ENV MODE production\n\
         FROM ${BASE}\n\
         ENTRYPOINT [\"/bin/app\"]\n\
         ENTRYPOINT [\"/bin/app2\"]\n",
    );
    let found = findings(&out);
    assert_eq!(
        found,
        expected(&[
            ("FromAsCasing", 2),
            ("FromPlatformFlagConstDisallowed", 2),
            ("StageNameCasing", 2),
            ("ConsistentInstructionCasing", 3),
            ("UndefinedVar", 4),
            ("WorkdirRelativePath", 5),
            ("DuplicateStageName", 6),
            ("ReservedStageName", 7),
            ("MaintainerDeprecated", 8),
            ("SecretsUsedInArgOrEnv", 9),
            ("LegacyKeyValueFormat", 10),
            ("UndefinedArgInFrom", 11),
            ("MultipleInstructionsDisallowed", 12),
        ]),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1));
    assert_lines_on_stderr(&out, &found);
    let records = json_lines(&out.stdout);
    let record = records.iter().find(|r| r["rule"] == "FromAsCasing").unwrap();
    assert_eq!(record["url"], "https://docs.docker.com/reference/build-checks/from-as-casing/");
}

/// A multi-stage Dockerfile that follows every rule.
const CLEAN: &str = "# syntax=docker/dockerfile:1\n\
     ARG VERSION=1.2\n\
     FROM localhost/not-here/golang:1.22 AS build\n\
     ARG VERSION\n\
     WORKDIR /src\n\
     COPY go.mod go.sum ./\n\
     RUN --mount=type=cache,target=/root/.cache/go-build go mod download\n\
     COPY . .\n\
     RUN go build -ldflags \"-X main.version=${VERSION}\" -o /out/app ./cmd/app\n\
     FROM localhost/not-here/debian:12-slim\n\
     RUN apt-get update \\\n\
      && apt-get install -y --no-install-recommends ca-certificates \\\n\
      && rm -rf /var/lib/apt/lists/*\n\
     COPY --from=build /out/app /usr/local/bin/app\n\
     ENV APP_HOME=/srv\n\
     WORKDIR $APP_HOME\n\
     USER 65534\n\
     ENTRYPOINT [\"/usr/local/bin/app\"]\n\
     CMD [\"serve\"]\n";

#[test]
fn check_on_a_clean_multi_stage_file_finds_nothing_and_exits_0() {
    let store = Store::new();
    let out = check(&store, CLEAN);
    assert_success(&out, "img-build --check");
    assert!(out.stdout.is_empty(), "no records: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains("no warnings"), "{}", stderr(&out));

    // The Dockerfile may come from stdin, and then the context may be left out.
    let out = store.run("img-build", &["--check", "-f", "-"], "FROM localhost/x:1\nMAINTAINER me\n");
    assert_eq!(findings(&out), expected(&[("MaintainerDeprecated", 2)]), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));

    // A Dockerfile that does not parse is the parser's one-line error, and no record.
    let out = store.run(
        "img-build",
        &["--check", "-f", "-"],
        "FROM localhost/x:1
FROBNICATE x
",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(stderr(&out).trim_end(), "img-build: Dockerfile:2: unknown instruction: FROBNICATE");
}

#[test]
fn check_writes_nothing_and_pulls_nothing() {
    // No layout at all: --check does not make one, and its base images (which exist nowhere)
    // are never looked for, so the result is the same as with them.
    let store = Store::new();
    let out = check(&store, CLEAN);
    assert_success(&out, "img-build --check");
    let out = check(&store, "FROM localhost/not-here/app:1\nCMD run\n");
    assert_eq!(findings(&out), expected(&[("JSONArgsRecommended", 2)]));
    assert_eq!(out.status.code(), Some(1));
    let left: Vec<_> = fs::read_dir(store.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "--check wrote into the store: {left:?}");

    // A layout that exists is left as it was: index.json byte for byte, no new blobs.
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::new()
        .layer(busybox_layer(&COMMON_APPLETS).unwrap())
        .build()
        .write_to(&layout, Some("localhost/busybox:1"))
        .unwrap();
    let index = fs::read(store.layout().join("index.json")).unwrap();
    let blobs = count_files(&store.layout().join("blobs"));
    let out = check(&store, "FROM localhost/busybox:1\nRUN touch /made\nCMD [\"/bin/sh\"]\n");
    assert_success(&out, "img-build --check");
    assert_eq!(fs::read(store.layout().join("index.json")).unwrap(), index, "index.json changed");
    assert_eq!(count_files(&store.layout().join("blobs")), blobs, "blobs were written");
    assert!(!stderr(&out).contains("#1 "), "no step ran: {}", stderr(&out));
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { count_files(&e.path()) } else { 1 }
        })
        .sum()
}

#[test]
fn a_build_shows_the_warnings_and_still_builds() {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    TestImage::busybox(&[]).build().write_to(&layout, Some("localhost/busybox:1")).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), "FROM localhost/busybox:1\nMAINTAINER me\nCMD echo hi\n")
        .unwrap();
    let out = store.run("img-build", &["-t", "localhost/warned:1", ctx.path().to_str().unwrap()], "");
    assert_success(&out, "img-build");
    let err = stderr(&out);
    let warning = err.lines().position(|l| l.starts_with("Dockerfile:3: warning: JSONArgsRecommended: "));
    let first_step = err.lines().position(|l| l.starts_with("#1 "));
    assert!(warning.is_some() && warning < first_step, "the warning comes before the build's log:\n{err}");
    assert!(err.contains("Dockerfile:2: warning: MaintainerDeprecated: "), "{err}");
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1, "stdout has the image's record only: {records:?}");
    assert_eq!(records[0]["ref"], "localhost/warned:1");

    // `# check=skip=` silences rules; `# check=error=true` makes warnings fail the build
    // before any step, as BuildKit does.
    let skipped =
        "# check=skip=JSONArgsRecommended,MaintainerDeprecated\nFROM localhost/busybox:1\nCMD echo hi\n";
    fs::write(ctx.path().join("Dockerfile"), skipped).unwrap();
    let out = store.run("img-build", &[ctx.path().to_str().unwrap()], "");
    assert_success(&out, "img-build");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let strict = "# check=error=true\nFROM localhost/busybox:1\nCMD echo hi\n";
    fs::write(ctx.path().join("Dockerfile"), strict).unwrap();
    let out = store.run("img-build", &["-t", "localhost/strict:1", ctx.path().to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:3: warning: JSONArgsRecommended: "), "{err}");
    assert!(
        err.ends_with(
            "img-build: Dockerfile: 1 build check warning, and `# check=error=true` makes warnings errors\n"
        ),
        "{err}"
    );
    assert!(!err.contains("#1 "), "no step ran: {err}");
}
