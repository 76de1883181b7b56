//! img-build end to end: real Dockerfiles built on a busybox base the test makes, the result
//! inspected in the layout and run with img-run and runc.

use std::fs;
use std::path::Path;

use img::layout::Layout;
use img::layout::resolve;
use img::test_image::{COMMON_APPLETS, TestImage, busybox_layer};
use img_e2e::{Store, assert_success, json_lines, stderr};
use serde_json::{Value, json};

const BASE: &str = "localhost/busybox:1";

/// A store with a busybox base image, and a context directory.
fn setup() -> (Store, tempfile::TempDir) {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let applets = ["wc", "seq", "xargs", "rmdir", "chmod", "stat", "grep", "test", "find"];
    TestImage::busybox(&applets).build().write_to(&layout, Some(BASE)).unwrap();
    (store, tempfile::tempdir().unwrap())
}

fn build(store: &Store, ctx: &Path, dockerfile: &str, extra: &[&str]) -> std::process::Output {
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut args: Vec<&str> = extra.to_vec();
    let ctx_str = ctx.to_str().unwrap();
    args.push(ctx_str);
    store.run("img-build", &args, "")
}

fn built(store: &Store, ctx: &Path, dockerfile: &str, extra: &[&str]) -> (Value, String) {
    let out = build(store, ctx, dockerfile, extra);
    assert_success(&out, "img-build");
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1, "one record: {records:?}");
    (records[0].clone(), stderr(&out))
}

fn config_of(store: &Store, name: &str) -> Value {
    let layout = Layout::open(store.layout()).unwrap();
    let image = resolve::image(&layout, name, None).unwrap();
    serde_json::from_slice(&image.config_bytes).unwrap()
}

fn run(store: &Store, name: &str, cmd: &[&str]) -> String {
    let mut args = vec![name, "--"];
    args.extend_from_slice(cmd);
    let out = store.run("img-run", &args, "");
    assert_success(&out, "img-run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_copy_and_metadata_make_the_image_docker_would() {
    let (store, ctx) = setup();
    fs::write(ctx.path().join("hello.txt"), "hello from the context\n").unwrap();
    let (record, log) = built(
        &store,
        ctx.path(),
        &format!(
            "FROM {BASE}\n\
             ENV GREETING=hi DIR=/app\n\
             WORKDIR $DIR\n\
             COPY hello.txt ./\n\
             RUN echo \"$GREETING from RUN\" > made.txt && mkdir -p /var/data && rm /bin/rmdir\n\
             USER nobody\n\
             LABEL org.example.k=v\n\
             EXPOSE 8080\n\
             ENTRYPOINT [\"/bin/cat\"]\n\
             CMD [\"made.txt\"]\n"
        ),
        &["-t", "localhost/app:1"],
    );
    assert_eq!(record["ref"], "localhost/app:1");
    assert!(log.contains("RUN echo"), "the log names the steps: {log}");
    let config = config_of(&store, "localhost/app:1");
    let c = &config["config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Entrypoint"], json!(["/bin/cat"]));
    assert_eq!(c["Cmd"], json!(["made.txt"]));
    assert_eq!(c["Labels"]["org.example.k"], "v");
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert!(c["Env"].as_array().unwrap().contains(&json!("GREETING=hi")));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 4, "base + WORKDIR + COPY + RUN");
    let history = config["history"].as_array().unwrap();
    assert!(history.iter().any(|h| h["created_by"].as_str().unwrap().starts_with("RUN ")));

    // The image runs: entrypoint + cmd, as the user, in the workdir.
    assert_eq!(run(&store, "localhost/app:1", &[]), "hi from RUN\n");
    assert_eq!(run(&store, "localhost/app:1", &["hello.txt"]), "hello from the context\n");
    let out = store.run(
        "img-run",
        &[
            "--entrypoint",
            "/bin/sh",
            "localhost/app:1",
            "-c",
            "id -u; pwd; test -e /bin/rmdir || echo rmdir-gone; test -d /var/data && echo data",
        ],
        "",
    );
    assert_success(&out, "img-run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "65534\n/app\nrmdir-gone\ndata\n");
}

#[test]
fn workdir_makes_its_directory_even_if_no_step_uses_it() {
    let (store, ctx) = setup();
    let dockerfile = format!(
        "FROM {BASE}\n\
         WORKDIR /bin\n\
         USER 1000:1000\n\
         WORKDIR /srv/data\n\
         WORKDIR logs\n\
         WORKDIR /srv\n"
    );
    let (_, log) = built(&store, ctx.path(), &dockerfile, &["-t", "localhost/wd:1"]);
    let config = config_of(&store, "localhost/wd:1");
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    // /bin and /srv (by then) exist: no layer; /srv/data and /srv/data/logs: one each.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3, "{log}");
    let empty: Vec<bool> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["created_by"].as_str().unwrap().starts_with("WORKDIR"))
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(empty, [true, false, false, true]);
    let out = store.run(
        "img-run",
        &[
            "--user",
            "0",
            "localhost/wd:1",
            "stat",
            "-c",
            "%n %u:%g %a",
            "/srv",
            "/srv/data",
            "/srv/data/logs",
        ],
        "",
    );
    assert_success(&out, "img-run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/srv 1000:1000 755\n/srv/data 1000:1000 755\n/srv/data/logs 1000:1000 755\n"
    );
    // A rebuild takes the WORKDIR layers from the cache.
    let (_, again) = built(&store, ctx.path(), &dockerfile, &["-t", "localhost/wd:1"]);
    assert_eq!(again.matches("CACHED").count(), 2, "{again}");
}

#[test]
fn an_unchanged_rebuild_hits_the_cache_and_gives_the_same_digest() {
    let (store, ctx) = setup();
    fs::write(ctx.path().join("a.txt"), "a\n").unwrap();
    let dockerfile =
        format!("FROM {BASE}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nRUN echo more >> /b.txt\n");
    let (first, log1) = built(&store, ctx.path(), &dockerfile, &["-t", "localhost/c:1"]);
    assert!(!log1.contains("CACHED"), "{log1}");
    let (second, log2) = built(&store, ctx.path(), &dockerfile, &["-t", "localhost/c:1"]);
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(log2.matches("CACHED").count(), 3, "{log2}");

    // A changed source rebuilds from that step on.
    fs::write(ctx.path().join("a.txt"), "changed\n").unwrap();
    let (third, log3) = built(&store, ctx.path(), &dockerfile, &["-t", "localhost/c:1"]);
    assert_ne!(first["digest"], third["digest"]);
    assert_eq!(log3.matches("CACHED").count(), 0, "{log3}");
    assert_eq!(run(&store, "localhost/c:1", &["cat", "/b.txt"]), "changed\nmore\n");

    // --no-cache runs everything.
    let (_, log4) = built(&store, ctx.path(), &dockerfile, &["--no-cache", "-t", "localhost/c:1"]);
    assert_eq!(log4.matches("CACHED").count(), 0);
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let (store, ctx) = setup();
    let dockerfile = format!(
        "ARG BASE={BASE}\n\
         FROM $BASE AS build\n\
         RUN mkdir /out && echo built > /out/artifact\n\
         FROM $BASE AS unused\n\
         RUN echo this stage must not run && false\n\
         FROM scratch\n\
         COPY --from=build /out/artifact /artifact\n\
         COPY --from=build /bin/busybox /bin/busybox\n\
         COPY --from=build /bin/cat /bin/cat\n\
         CMD [\"/bin/cat\", \"/artifact\"]\n"
    );
    let (_, log) = built(&store, ctx.path(), &dockerfile, &["-t", "localhost/ms:1"]);
    assert!(!log.contains("must not run"), "{log}");
    assert_eq!(run(&store, "localhost/ms:1", &[]), "built\n");
    let config = config_of(&store, "localhost/ms:1");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    let (_, _) = built(&store, ctx.path(), &dockerfile, &["--target", "build", "-t", "localhost/ms:build"]);
    assert_eq!(run(&store, "localhost/ms:build", &["cat", "/out/artifact"]), "built\n");
}

#[test]
fn dockerignore_heredocs_and_build_args() {
    let (store, ctx) = setup();
    fs::write(ctx.path().join(".dockerignore"), "*.secret\nlogs/\n!logs/keep.log\nsecret/\n").unwrap();
    fs::write(ctx.path().join("app.conf"), "conf\n").unwrap();
    // Excluded, with nothing re-included under it: not even an empty directory is copied.
    fs::create_dir_all(ctx.path().join("secret/deeper")).unwrap();
    fs::write(ctx.path().join("secret/deeper/key"), "k\n").unwrap();
    fs::write(ctx.path().join("db.secret"), "s3cr3t\n").unwrap();
    fs::create_dir(ctx.path().join("logs")).unwrap();
    fs::write(ctx.path().join("logs/a.log"), "a\n").unwrap();
    fs::write(ctx.path().join("logs/keep.log"), "keep\n").unwrap();
    let dockerfile = format!(
        "FROM {BASE}\n\
         ARG WHO=default\n\
         COPY . /ctx/\n\
         COPY <<EOF /greeting\n\
         hello $WHO\n\
         EOF\n\
         RUN <<SCRIPT\n\
         echo \"script saw $WHO\" > /script.out\n\
         ls /ctx /ctx/logs >> /script.out\n\
         SCRIPT\n"
    );
    built(&store, ctx.path(), &dockerfile, &["--build-arg", "WHO=world", "-t", "localhost/h:1"]);
    assert_eq!(run(&store, "localhost/h:1", &["cat", "/greeting"]), "hello world\n");
    let out = run(&store, "localhost/h:1", &["cat", "/script.out"]);
    assert!(out.starts_with("script saw world\n"), "{out}");
    assert!(out.contains("app.conf") && !out.contains("db.secret"), "{out}");
    assert!(out.contains("keep.log") && !out.contains("a.log"), "{out}");
    assert!(!out.contains("secret"), "{out}");
    // ARG values are not kept in the image's environment.
    let config = config_of(&store, "localhost/h:1");
    assert!(!config["config"]["Env"].to_string().contains("WHO"));
}

#[test]
fn run_cache_mounts_persist_between_builds() {
    let (store, ctx) = setup();
    let dockerfile = format!(
        "FROM {BASE}\nARG N\nRUN --mount=type=cache,target=/cache echo $N >> /cache/runs && cat /cache/runs > /seen\n"
    );
    built(&store, ctx.path(), &dockerfile, &["--build-arg", "N=1", "-t", "localhost/m:1"]);
    built(&store, ctx.path(), &dockerfile, &["--build-arg", "N=2", "-t", "localhost/m:2"]);
    assert_eq!(run(&store, "localhost/m:2", &["cat", "/seen"]), "1\n2\n");
    let out = run(&store, "localhost/m:2", &["sh", "-c", "test -e /cache && echo present || echo absent"]);
    assert_eq!(out, "absent\n", "neither the cache nor its mount point is in the image");
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let (store, ctx) = setup();
    fs::write(ctx.path().join("f"), "x").unwrap();
    let dockerfile = format!("FROM {BASE}\nCOPY f /f\nRUN echo hi > /g\n");
    let with_epoch = |extra: &[&str]| {
        fs::write(ctx.path().join("Dockerfile"), &dockerfile).unwrap();
        let mut cmd = store.command("img-build");
        cmd.env("SOURCE_DATE_EPOCH", "1700000000").args(extra).arg(ctx.path());
        let out = img_e2e::run_with_stdin(&mut cmd, "");
        assert_success(&out, "img-build");
        json_lines(&out.stdout)[0].clone()
    };
    let a = with_epoch(&["--no-cache", "-t", "localhost/r:1"]);
    let b = with_epoch(&["--no-cache", "-t", "localhost/r:2"]);
    assert_eq!(a["digest"], b["digest"]);
    let config = config_of(&store, "localhost/r:1");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn a_failing_step_reports_its_status_and_changes_no_ref() {
    let (store, ctx) = setup();
    let (_, _) = built(&store, ctx.path(), &format!("FROM {BASE}\nRUN true\n"), &["-t", "localhost/f:1"]);
    let before = fs::read(store.layout().join("index.json")).unwrap();
    let out = build(
        &store,
        ctx.path(),
        &format!("FROM {BASE}\nRUN echo about to fail; exit 3\n"),
        &["-t", "localhost/f:1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("about to fail"), "the step's output is shown: {err}");
    assert!(err.contains("Dockerfile:2") && err.contains("non-zero code: 3"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(fs::read(store.layout().join("index.json")).unwrap(), before);

    let out = build(&store, ctx.path(), "FROM scratch\nFROBNICATE\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Dockerfile:2"), "{}", stderr(&out));
}

#[test]
fn copy_chown_chmod_add_archives_and_onbuild() {
    let (store, ctx) = setup();
    let c = ctx.path();
    fs::write(c.join("script.sh"), "#!/bin/sh\necho script\n").unwrap();
    // A tar.gz the ADD extracts, made with the system tar.
    fs::create_dir(c.join("tree")).unwrap();
    fs::write(c.join("tree/inner.txt"), "inner\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-czf", "bundle.tar.gz", "-C", "tree", "."])
        .current_dir(c)
        .status()
        .unwrap();
    assert!(tar.success());
    fs::remove_dir_all(c.join("tree")).unwrap();
    built(
        &store,
        c,
        &format!(
            "FROM {BASE}\n\
             COPY --chown=nobody:nogroup --chmod=750 script.sh /opt/script.sh\n\
             ADD bundle.tar.gz /unpacked/\n\
             ONBUILD RUN echo triggered > /onbuild.txt\n"
        ),
        &["-t", "localhost/parent:1"],
    );
    let out = run(
        &store,
        "localhost/parent:1",
        &[
            "sh",
            "-c",
            "stat -c '%u %g %a' /opt/script.sh; cat /unpacked/inner.txt; test -e /onbuild.txt || echo no-trigger-yet",
        ],
    );
    assert_eq!(out, "65534 65534 750\ninner\nno-trigger-yet\n");
    assert_eq!(
        config_of(&store, "localhost/parent:1")["config"]["OnBuild"],
        json!(["RUN echo triggered > /onbuild.txt"])
    );

    built(&store, c, "FROM localhost/parent:1\nRUN cat /onbuild.txt\n", &["-t", "localhost/child:1"]);
    assert_eq!(run(&store, "localhost/child:1", &["cat", "/onbuild.txt"]), "triggered\n");
    assert!(config_of(&store, "localhost/child:1")["config"].get("OnBuild").is_none(), "triggers run once");
}

#[test]
fn run_mounts_network_none_and_secrets() {
    let (store, ctx) = setup();
    let c = ctx.path();
    fs::write(c.join("data.txt"), "bound\n").unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    fs::write(secret.path(), "top-secret\n").unwrap();
    let secret_arg = format!("id=token,src={}", secret.path().display());
    built(
        &store,
        c,
        &format!(
            "FROM {BASE}\n\
             RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cat /mnt/data.txt > /from-bind\n\
             RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/x && cat /scratch/x > /from-tmpfs\n\
             RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-length\n\
             RUN --network=none cat /proc/net/dev | grep -c : > /interfaces\n"
        ),
        &["--secret", &secret_arg, "-t", "localhost/mounts:1"],
    );
    let out = run(
        &store,
        "localhost/mounts:1",
        &[
            "sh",
            "-c",
            "cat /from-bind /from-tmpfs /secret-length /interfaces; ls /mnt /scratch /run/secrets 2>&1 | wc -l",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["bound", "t", "11"]);
    assert_eq!(lines[3], "1", "only loopback with --network=none");
    let config = config_of(&store, "localhost/mounts:1");
    assert!(!config.to_string().contains("top-secret"));
    // Nothing of the mounts is left in the image: the secret's file was never written.
    let layout = Layout::open(store.layout()).unwrap();
    let image = resolve::image(&layout, "localhost/mounts:1", None).unwrap();
    for l in &image.manifest.layers {
        let blob = layout.read_blob(&l.digest).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(blob.as_slice()), &mut tar).unwrap();
        assert!(!String::from_utf8_lossy(&tar).contains("top-secret"));
    }

    // A secret from a variable: env=VAR, and id=VAR alone.
    fs::write(
        c.join("Dockerfile"),
        format!(
            "FROM {BASE}\n\
             RUN --mount=type=secret,id=api cat /run/secrets/api > /api\n\
             RUN --mount=type=secret,id=IMG_TEST_TOKEN cat /run/secrets/IMG_TEST_TOKEN > /token\n"
        ),
    )
    .unwrap();
    let out = store
        .command("img-build")
        .args([
            "--secret",
            "id=api,env=IMG_TEST_API",
            "--secret",
            "id=IMG_TEST_TOKEN",
            "-t",
            "localhost/env-secret:1",
        ])
        .arg(c)
        .env("IMG_TEST_API", "from-env")
        .env("IMG_TEST_TOKEN", "tok")
        .output()
        .unwrap();
    assert_success(&out, "img-build --secret id=api,env=VAR");
    assert_eq!(run(&store, "localhost/env-secret:1", &["cat", "/api", "/token"]), "from-envtok");
    // An unset variable is a one-line error.
    let out = store
        .command("img-build")
        .args(["--secret", "id=x,env=IMG_TEST_UNSET", "-t", "localhost/u:1"])
        .arg(c)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("IMG_TEST_UNSET is not set"), "{}", stderr(&out));
}

#[test]
fn stdin_dockerfile_stdin_context_iidfile_labels_and_zstd() {
    let (store, ctx) = setup();
    let iid = ctx.path().join("iid");
    // -f - : the Dockerfile from stdin.
    let mut cmd = store.command("img-build");
    cmd.args([
        "-f",
        "-",
        "--label",
        "team=core",
        "--iidfile",
        iid.to_str().unwrap(),
        "--compression",
        "zstd",
        "-t",
        "localhost/s:1",
        "-t",
        "localhost/s:latest",
    ])
    .arg(ctx.path());
    let out = img_e2e::run_with_stdin(&mut cmd, &format!("FROM {BASE}\nRUN echo zstd > /z\n"));
    assert_success(&out, "img-build -f -");
    // One record per tag (so `| img-push` pushes each), the same image.
    let records = json_lines(&out.stdout);
    let refs: Vec<&str> = records.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["localhost/s:1", "localhost/s:latest"]);
    assert_eq!(records[0]["digest"], records[1]["digest"]);
    let record = &records[0];
    assert_eq!(fs::read_to_string(&iid).unwrap(), record["digest"].as_str().unwrap());
    let config = config_of(&store, "localhost/s:1");
    assert_eq!(config["config"]["Labels"]["team"], "core");
    let layout = Layout::open(store.layout()).unwrap();
    let image = resolve::image(&layout, "localhost/s:1", None).unwrap();
    assert_eq!(image.manifest.layers.last().unwrap().media_type, img::media_type::OCI_LAYER_ZSTD);
    assert_eq!(run(&store, "localhost/s:1", &["cat", "/z"]), "zstd\n");

    // `-` : the context as a tar on stdin.
    let tarball = tempfile::tempdir().unwrap();
    fs::write(tarball.path().join("Dockerfile"), format!("FROM {BASE}\nCOPY in.txt /in.txt\n")).unwrap();
    fs::write(tarball.path().join("in.txt"), "from a tar\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(tarball.path())
        .arg(".")
        .output()
        .unwrap();
    let mut child = store
        .command("img-build")
        .args(["-t", "localhost/s:2", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "img-build -");
    assert_eq!(run(&store, "localhost/s:2", &["cat", "/in.txt"]), "from a tar\n");
}

#[test]
fn predefined_args_and_user_names() {
    let (store, ctx) = setup();
    built(
        &store,
        ctx.path(),
        &format!(
            "FROM {BASE}\nARG TARGETARCH\nARG TARGETPLATFORM\nRUN echo $TARGETPLATFORM $TARGETARCH > /p\nUSER nobody\nRUN id -u > /tmp/who\n"
        ),
        &["-t", "localhost/p:1"],
    );
    let host = img::platform::Platform::host();
    assert_eq!(run(&store, "localhost/p:1", &["cat", "/p"]), format!("{host} {}\n", host.architecture));
    assert_eq!(run(&store, "localhost/p:1", &["cat", "/tmp/who"]), "65534\n");
}

#[test]
fn the_built_image_runs_under_runc_too() {
    let (store, ctx) = setup();
    built(
        &store,
        ctx.path(),
        &format!("FROM {BASE}\nRUN echo from-runc > /msg\nCMD [\"cat\", \"/msg\"]\n"),
        &["-t", "localhost/rc:1"],
    );
    let bundle = tempfile::tempdir().unwrap();
    let b = bundle.path().join("b");
    let out = store.run("img-unpack", &["--bundle", b.to_str().unwrap(), "localhost/rc:1"], "");
    assert_success(&out, "img-unpack");
    img_e2e::require("runc");
    let id = format!("img-build-test-{}", std::process::id());
    let out = std::process::Command::new("runc")
        .args([
            "--root",
            bundle.path().join("runc-state").to_str().unwrap(),
            "run",
            "-b",
            b.to_str().unwrap(),
            &id,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, "runc run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-runc\n");
}

/// A static HTTP server on loopback (Python's), stopped on drop.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    fn serve(dir: &Path) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Owned by the server from here on: Drop kills and waits for it.
        let mut server = HttpServer { child, port };
        // Generous: Python starts slowly on a loaded machine.
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the HTTP server exited: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the HTTP server did not start in 30 s");
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_downloads_urls_and_checks_their_checksum() {
    let (store, ctx) = setup();
    let files = tempfile::tempdir().unwrap();
    fs::write(files.path().join("remote.txt"), "remote content\n").unwrap();
    let server = HttpServer::serve(files.path());
    let url = format!("http://127.0.0.1:{}/remote.txt", server.port);
    let good = img::digest::Digest::of(b"remote content\n");
    built(
        &store,
        ctx.path(),
        &format!("FROM {BASE}\nADD --checksum={good} {url} /dl/\n"),
        &["-t", "localhost/url:1"],
    );
    assert_eq!(run(&store, "localhost/url:1", &["cat", "/dl/remote.txt"]), "remote content\n");

    let bad = img::digest::Digest::of(b"something else");
    let out = build(
        &store,
        ctx.path(),
        &format!("FROM {BASE}\nADD --checksum={bad} {url} /dl/\n"),
        &["-t", "localhost/url:2"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("checksum mismatch"), "{}", stderr(&out));
}

#[test]
fn every_metadata_instruction_lands_in_the_config() {
    let (store, ctx) = setup();
    built(
        &store,
        ctx.path(),
        &format!(
            "FROM {BASE}\n\
             SHELL [\"/bin/sh\", \"-e\", \"-c\"]\n\
             RUN cat <<EOF > /from-heredoc\n\
             line one\n\
             EOF\n\
             VOLUME /data /logs\n\
             VOLUME [\"/cache\"]\n\
             STOPSIGNAL SIGTERM\n\
             HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q localhost\n\
             MAINTAINER someone@example.com\n\
             CMD echo shell form\n"
        ),
        &["-t", "localhost/meta:1"],
    );
    let config = config_of(&store, "localhost/meta:1");
    let c = &config["config"];
    assert_eq!(c["Shell"], json!(["/bin/sh", "-e", "-c"]));
    assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}, "/cache": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 30_000_000_000u64, "Timeout": 5_000_000_000u64, "Retries": 3})
    );
    assert_eq!(config["author"], "someone@example.com");
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-e", "-c", "echo shell form"]), "shell form goes through SHELL");
    assert_eq!(run(&store, "localhost/meta:1", &["cat", "/from-heredoc"]), "line one\n");
    assert_eq!(run(&store, "localhost/meta:1", &[]), "shell form\n");
}

#[test]
fn run_ssh_mounts_relay_to_the_forwarded_agent() {
    use img::test_image::{Entry, Layer};
    use std::collections::BTreeSet;
    use std::process::{Child, Command, Stdio};

    for tool in ["ssh-agent", "ssh-add", "ssh-keygen", "ldd"] {
        img_e2e::require(tool);
    }
    /// The test's own ssh-agent, killed even when an assertion fails.
    struct AgentProcess(Child);
    impl Drop for AgentProcess {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let keys = tempfile::tempdir().unwrap();
    let agent_socket = keys.path().join("agent.sock");
    let _agent = AgentProcess(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&agent_socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting ssh-agent"),
    );
    for _ in 0..200 {
        if agent_socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(agent_socket.exists(), "ssh-agent made no socket");
    let key = keys.path().join("id");
    img_e2e::peer(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", "img-test", "-f", key.to_str().unwrap()],
    );
    let ssh_add = |args: &[&str]| {
        let out = Command::new("ssh-add").args(args).env("SSH_AUTH_SOCK", &agent_socket).output().unwrap();
        assert_success(&out, "ssh-add");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ssh_add(&[key.to_str().unwrap()]);
    let listed = ssh_add(&["-l"]);
    let fingerprint = listed.split_whitespace().nth(1).expect("ssh-add -l lists the key").to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");

    // A base image with an SSH client: busybox, plus ssh-add and what `ldd` says it loads.
    const CLIENT: &str = "localhost/ssh-client:1";
    let (store, ctx) = setup();
    let ldd = img_e2e::peer("ldd", &["/usr/bin/ssh-add"]);
    let mut files = vec!["/usr/bin/ssh-add".to_string()];
    files.extend(
        ldd.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/'))).map(String::from),
    );
    let mut dirs = BTreeSet::new();
    for file in &files {
        let mut parent = Path::new(file.trim_start_matches('/')).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_str().unwrap().to_string());
            parent = dir.parent();
        }
    }
    let client_layer = Layer::new(dirs.iter().map(|d| Entry::dir(d)).chain(
        files.iter().map(|f| Entry::file(f.trim_start_matches('/'), fs::read(f).unwrap()).mode(0o755)),
    ));
    let applets: Vec<&str> = COMMON_APPLETS.iter().copied().chain(["test", "stat"]).collect();
    TestImage::new()
        .layer(busybox_layer(&applets).unwrap())
        .layer(client_layer)
        .build()
        .write_to(&Layout::open(store.layout()).unwrap(), Some(CLIENT))
        .unwrap();

    // `--ssh default` takes $SSH_AUTH_SOCK; `gh` names the socket. The first SSH mount of a RUN
    // is its SSH_AUTH_SOCK; `uid` and `mode` let a user other than root use the agent.
    let c = ctx.path();
    fs::write(
        c.join("Dockerfile"),
        format!(
            "FROM {CLIENT}\n\
             RUN --mount=type=ssh ssh-add -l > /fingerprints && echo \"$SSH_AUTH_SOCK\" > /agent-path\n\
             RUN --mount=type=ssh,id=gh,target=/tmp/gh.sock,required=true ssh-add -l > /gh-fingerprints\n\
             USER 1000\n\
             RUN --mount=type=ssh,uid=1000,mode=0600 ssh-add -l > /home/app/fingerprints \
                 && stat -c %u:%a \"$SSH_AUTH_SOCK\" > /home/app/agent-owner\n"
        ),
    )
    .unwrap();
    let gh = format!("gh={}", agent_socket.display());
    let out = img_e2e::run_with_stdin(
        store.command("img-build").env("SSH_AUTH_SOCK", &agent_socket).args([
            "--ssh",
            "default",
            "--ssh",
            &gh,
            "-t",
            "localhost/ssh:1",
            c.to_str().unwrap(),
        ]),
        "",
    );
    assert_success(&out, "img-build --ssh");
    let shown = run(
        &store,
        "localhost/ssh:1",
        &[
            "cat",
            "/fingerprints",
            "/agent-path",
            "/gh-fingerprints",
            "/home/app/fingerprints",
            "/home/app/agent-owner",
        ],
    );
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 5, "{shown}");
    for at in [0, 2, 3] {
        assert!(lines[at].contains(&fingerprint), "line {at} lists the key {fingerprint}: {shown}");
    }
    assert_eq!(lines[1], "/run/buildkit/ssh_agent.0");
    assert_eq!(lines[4], "1000:600");

    // Neither the proxy sockets nor their mount points are in the layers.
    let probe =
        "for p in /run/buildkit /run /tmp/gh.sock; do test -e $p && echo $p present; done; echo checked";
    assert_eq!(run(&store, "localhost/ssh:1", &["sh", "-c", probe]), "checked\n");
    let layout = Layout::open(store.layout()).unwrap();
    let image = resolve::image(&layout, "localhost/ssh:1", None).unwrap();
    for layer in &image.manifest.layers[2..] {
        let blob = layout.read_blob(&layer.digest).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(blob.as_slice()));
        for entry in tar.entries().unwrap() {
            let path = entry.unwrap().path().unwrap().to_string_lossy().into_owned();
            assert!(!path.starts_with("run") && !path.contains("gh.sock"), "{path} is in a layer");
        }
    }

    // Not forwarded: a required mount fails the build, saying which flag forwards the agent.
    let out =
        build(&store, c, &format!("FROM {CLIENT}\nRUN --mount=type=ssh,required=true ssh-add -l\n"), &[]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    let mentions: Vec<&str> = err.lines().filter(|l| l.contains("--ssh")).collect();
    assert_eq!(
        mentions,
        ["img-build: Dockerfile:2: no SSH agent \"default\" forwarded: use img-build --ssh default[=SOCKET]"],
        "{err}"
    );
    // … and an optional one is left out: the command runs without a socket.
    built(
        &store,
        c,
        &format!(
            "FROM {CLIENT}\n\
             RUN --mount=type=ssh test -S /run/buildkit/ssh_agent.0 || echo no-agent > /optional\n"
        ),
        &["-t", "localhost/ssh:2"],
    );
    assert_eq!(run(&store, "localhost/ssh:2", &["cat", "/optional"]), "no-agent\n");

    // Root's socket (mode 0600 by default) is not for other users.
    let out = build(
        &store,
        c,
        &format!("FROM {CLIENT}\nUSER 1000\nRUN --mount=type=ssh ssh-add -l\n"),
        &["--ssh", &format!("default={}", agent_socket.display())],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));

    // Only agent sockets are forwarded, and a bare `--ssh ID` needs $SSH_AUTH_SOCK.
    let out = build(&store, c, &format!("FROM {CLIENT}\n"), &["--ssh", "default=/etc/passwd"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "img-build: --ssh default=/etc/passwd: /etc/passwd is not an SSH agent socket (key files are not supported)\n"
    );
    let out = img_e2e::run_with_stdin(
        store.command("img-build").env_remove("SSH_AUTH_SOCK").args([
            "--ssh",
            "default",
            c.to_str().unwrap(),
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SSH_AUTH_SOCK is not set"), "{}", stderr(&out));
}

#[test]
fn build_network_none_applies_to_every_run_without_its_own() {
    let (store, ctx) = setup();
    let interfaces = |flag: &str| format!("RUN {flag} cat /proc/net/dev | grep -c : > /n{}\n", flag.len());
    let dockerfile = format!(
        "FROM {BASE}\n{}{}{}",
        interfaces(""),
        interfaces("--network=default"),
        interfaces("--network=host")
    );
    built(&store, ctx.path(), &dockerfile, &["--network", "none", "-t", "localhost/net:1"]);
    let out = run(&store, "localhost/net:1", &["sh", "-c", "cat /n0 /n17 /n14"]);
    let counts: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(counts[..2], [1, 1], "only loopback without a network of their own: {out}");
    assert!(counts[2] > 1, "RUN --network=host keeps the host's: {out}");
    let out = build(&store, ctx.path(), &dockerfile, &["--network", "bridge"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expected default, host or none"), "{}", stderr(&out));
}

#[test]
fn output_writes_the_root_filesystem_as_a_tree_or_a_tar() {
    let (store, ctx) = setup();
    let dockerfile =
        format!("FROM {BASE}\nRUN echo made > /made && mkdir -p /opt/app && echo bin > /opt/app/tool\n");
    let out_dir = ctx.path().join("out");
    built(
        &store,
        ctx.path(),
        &dockerfile,
        &["-o", &format!("type=local,dest={}", out_dir.display()), "-t", "o:1"],
    );
    assert_eq!(fs::read_to_string(out_dir.join("made")).unwrap(), "made\n");
    assert_eq!(fs::read_to_string(out_dir.join("opt/app/tool")).unwrap(), "bin\n");
    assert!(out_dir.join("bin/busybox").is_file(), "the base image's files are there too");

    // The shorthand, into an empty directory; and a tar.
    let empty = ctx.path().join("empty");
    fs::create_dir(&empty).unwrap();
    built(&store, ctx.path(), &dockerfile, &["-o", empty.to_str().unwrap()]);
    assert!(empty.join("made").is_file());
    let tar_path = ctx.path().join("rootfs.tar");
    built(&store, ctx.path(), &dockerfile, &["--output", &format!("type=tar,dest={}", tar_path.display())]);
    let names: Vec<String> = tar::Archive::new(fs::File::open(&tar_path).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "made") && names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    let strays: Vec<_> = fs::read_dir(ctx.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".img-build-output"))
        .collect();
    assert!(strays.is_empty(), "work directories left: {strays:?}");

    // A destination that is there already is refused before anything runs, and left alone.
    let out = build(&store, ctx.path(), &dockerfile, &["-o", out_dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("exists") && !err.contains("RUN echo"), "{err}");
    assert_eq!(fs::read_to_string(out_dir.join("made")).unwrap(), "made\n");
    let out = build(&store, ctx.path(), &dockerfile, &["-o", "type=oci,dest=x.tar"]);
    assert!(stderr(&out).contains("type oci is not supported"), "{}", stderr(&out));
}

#[test]
fn add_host_reaches_run_steps_and_their_cache_key() {
    let (store, ctx) = setup();
    let dockerfile = format!("FROM {BASE}\nRUN grep db /etc/hosts > /seen || true\n");
    built(&store, ctx.path(), &dockerfile, &["--add-host", "db:10.3.2.1", "-t", "h:1"]);
    assert_eq!(run(&store, "h:1", &["cat", "/seen"]), "10.3.2.1\tdb\n");
    // Another address is another step, not the cached one.
    let (_, log) = built(&store, ctx.path(), &dockerfile, &["--add-host", "db:10.3.2.2", "-t", "h:2"]);
    assert!(!log.contains("CACHED"), "{log}");
    assert_eq!(run(&store, "h:2", &["cat", "/seen"]), "10.3.2.2\tdb\n");
    let out = build(&store, ctx.path(), &dockerfile, &["--add-host", "db"]);
    assert!(!out.status.success() && stderr(&out).contains("expected HOST:IP"), "{}", stderr(&out));
}

/// Two RUN steps that change the same nothing make the same layer twice; the next RUN still
/// mounts its overlay (overlayfs refuses a lower directory given twice).
#[test]
fn identical_layers_twice_still_run() {
    let (store, ctx) = setup();
    let (_, _) = built(
        &store,
        ctx.path(),
        &format!("FROM {BASE}\nRUN true\nRUN true\nRUN echo ran > /ran\n"),
        &["-t", "localhost/twice:1"],
    );
    assert_eq!(run(&store, "localhost/twice:1", &["cat", "/ran"]), "ran\n");
}
