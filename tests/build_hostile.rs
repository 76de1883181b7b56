//! img-build against a hostile Dockerfile and build context (issue 10's trust boundaries):
//! nothing a build reads may lead a write, chmod or chown outside the step's staging
//! directory, no RUN step may change the host's context or another stage's files, files
//! `.dockerignore` excludes stay invisible, host files never reach an error message, and
//! special files or slow servers cannot hang a build.
//!
//! Every attack points at a "host" directory in the test's own temp dir, holding canaries.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use img::test_image::TestImage;
use img_e2e::rawtar::RawTar;
use img_e2e::{Store, assert_success, run_with_timeout, stderr};

const BASE: &str = "localhost/busybox:1";

/// A store with a busybox base image, a context directory and a "host" directory the
/// attacks aim at, holding a canary file and a canary directory with known modes.
struct Setup {
    store: Store,
    ctx: tempfile::TempDir,
    host: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let store = Store::new();
        let layout = img::layout::Layout::open_or_create(store.layout()).unwrap();
        TestImage::busybox(&["ln", "test", "chmod"]).build().write_to(&layout, Some(BASE)).unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("canary"), "host file\n").unwrap();
        fs::create_dir(host.path().join("dir")).unwrap();
        fs::set_permissions(host.path().join("dir"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(host.path(), fs::Permissions::from_mode(0o750)).unwrap();
        Setup { store, ctx: tempfile::tempdir().unwrap(), host }
    }

    fn ctx(&self, rel: &str) -> PathBuf {
        self.ctx.path().join(rel)
    }

    fn host(&self) -> &Path {
        self.host.path()
    }

    fn build(&self, dockerfile: &str, extra: &[&str]) -> Output {
        fs::write(self.ctx("Dockerfile"), dockerfile).unwrap();
        let mut args: Vec<&str> = extra.to_vec();
        args.push(self.ctx.path().to_str().unwrap());
        run_with_timeout(self.store.command("img-build").args(&args), "", Duration::from_secs(120))
    }

    /// What `cmd` prints in the image `name`.
    fn run(&self, name: &str, cmd: &str) -> String {
        let out = self.store.run("img-run", &[name, "--", "/bin/sh", "-c", cmd], "");
        assert_success(&out, "img-run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The host directory is as the setup left it: same entries, contents, modes, owners.
    fn assert_host_untouched(&self) {
        let names: Vec<String> = fs::read_dir(self.host())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["canary", "dir"], "nothing was written into the host directory");
        assert_eq!(fs::read_to_string(self.host().join("canary")).unwrap(), "host file\n");
        for (path, mode) in [(self.host().to_path_buf(), 0o750), (self.host().join("dir"), 0o750)] {
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(meta.mode() & 0o7777, mode, "{} keeps its mode", path.display());
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "{} keeps its owner", path.display());
        }
        assert_eq!(fs::read_dir(self.host().join("dir")).unwrap().count(), 0);
        assert_eq!(fs::metadata(self.host().join("canary")).unwrap().mode() & 0o7777, 0o644);
    }
}

fn assert_one_line_failure(out: &Output, expect: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit 1: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("img-build: ") && last.contains(expect), "one line naming {expect:?}: {err}");
}

/// `COPY d1 d2 /dst/` where d1/x is a symlink to a host directory and d2/x a directory: the
/// second source's files land in the image, not in the host directory, whose mode and owner
/// `--chmod`/`--chown` must not change either. The same through a wildcard.
#[test]
fn copy_sources_never_write_through_links_an_earlier_source_staged() {
    let s = Setup::new();
    fs::create_dir_all(s.ctx("d1")).unwrap();
    fs::create_dir_all(s.ctx("d2/x")).unwrap();
    symlink(s.host(), s.ctx("d1/x")).unwrap();
    symlink(s.host().join("canary"), s.ctx("d1/canary")).unwrap();
    fs::write(s.ctx("d2/x/planted"), "from the context\n").unwrap();
    fs::write(s.ctx("d2/canary"), "overwritten\n").unwrap();
    for (n, copy) in ["COPY d1 d2 /dst/", "COPY --chown=1234:1234 --chmod=777 d1 d2 /dst/", "COPY d* /dst/"]
        .iter()
        .enumerate()
    {
        let tag = format!("localhost/copy:{n}");
        let out = s.build(&format!("FROM {BASE}\n{copy}\n"), &["-t", &tag]);
        assert_success(&out, copy);
        s.assert_host_untouched();
        assert_eq!(
            s.run(&tag, "cat /dst/x/planted /dst/canary"),
            "from the context\noverwritten\n",
            "{copy}"
        );
    }
}

/// A heredoc after a directory whose link has the heredoc's name: the heredoc replaces the
/// link in the image; the host file it pointed at keeps its content.
#[test]
fn a_heredoc_never_writes_through_a_staged_link() {
    let s = Setup::new();
    fs::create_dir_all(s.ctx("d1")).unwrap();
    symlink(s.host().join("canary"), s.ctx("d1/note")).unwrap();
    symlink(s.host().join("dir"), s.ctx("d1/sub")).unwrap();
    let out = s.build(
        &format!(
            "FROM {BASE}\nCOPY d1 <<note /dst/\nwritten by the heredoc\nnote\nCOPY <<x /dst/sub/y\nz\nx\n"
        ),
        &["-t", "localhost/heredoc:1"],
    );
    assert_success(&out, "img-build");
    s.assert_host_untouched();
    assert_eq!(s.run("localhost/heredoc:1", "cat /dst/note"), "written by the heredoc\n");
}

/// `ADD links.tar d2 /dst/`: the archive's symlink to the host is staged, then the
/// directory's files go through it no more than through a copied one. And an archive
/// extracted under a staged link stays in the image.
#[test]
fn add_archives_and_later_sources_stay_in_the_staging_directory() {
    let s = Setup::new();
    let host = s.host().to_str().unwrap().as_bytes().to_vec();
    let tar = RawTar::new().symlink(b"x", &host).symlink(b"c", &[&host[..], b"/canary"].concat()).finish();
    fs::write(s.ctx("links.tar"), tar).unwrap();
    fs::create_dir_all(s.ctx("d2/x")).unwrap();
    fs::write(s.ctx("d2/x/planted"), "from d2\n").unwrap();
    fs::write(s.ctx("d2/c"), "overwritten\n").unwrap();
    let out = s.build(&format!("FROM {BASE}\nADD links.tar d2 /dst/\n"), &["-t", "localhost/add:1"]);
    assert_success(&out, "img-build");
    s.assert_host_untouched();
    assert_eq!(s.run("localhost/add:1", "cat /dst/x/planted /dst/c"), "from d2\noverwritten\n");

    // The archive's own entries go under a link d1 staged: resolved inside the image.
    fs::create_dir_all(s.ctx("d1")).unwrap();
    symlink(s.host(), s.ctx("d1/x")).unwrap();
    let tar = RawTar::new().dir(b"x").file(b"x/evil", b"from the archive\n").finish();
    fs::write(s.ctx("evil.tar"), tar).unwrap();
    let out =
        s.build(&format!("FROM {BASE}\nCOPY d1 /dst/\nADD d1 evil.tar /dst2/\n"), &["-t", "localhost/add:2"]);
    assert_success(&out, "img-build");
    s.assert_host_untouched();
}

/// No hostile context at all: an earlier RUN makes links to a host path, and
/// `COPY --from=stage /a /b /dst/` copies them and then a directory onto them.
#[test]
fn copy_from_a_stage_never_follows_links_its_run_steps_made() {
    let s = Setup::new();
    let host = s.host().display();
    let out = s.build(
        &format!(
            "FROM {BASE} AS evil\n\
             RUN mkdir -p /a /b/x && ln -s {host} /a/x && ln -s {host}/canary /a/canary \
                 && echo planted > /b/x/planted && echo overwritten > /b/canary\n\
             FROM {BASE}\n\
             COPY --from=evil /a /b /dst/\n"
        ),
        &["-t", "localhost/from:1"],
    );
    assert_success(&out, "img-build");
    s.assert_host_untouched();
    assert_eq!(s.run("localhost/from:1", "cat /dst/x/planted /dst/canary"), "planted\noverwritten\n");
}

/// USER and `--chown` names are looked up in the image's /etc/passwd: when a RUN made /etc
/// a link to a host directory, the host's accounts are not consulted.
#[test]
fn chown_names_are_never_looked_up_in_host_files() {
    let s = Setup::new();
    fs::write(s.host().join("dir/passwd"), "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
    fs::write(s.ctx("f"), "f\n").unwrap();
    let host = s.host().join("dir");
    let tar = RawTar::new().symlink(b"etc", host.to_str().unwrap().as_bytes()).finish();
    fs::write(s.ctx("etc.tar"), tar).unwrap();
    let out = s.build(
        &format!("FROM {BASE}\nADD etc.tar /\nCOPY --chown=hostonly f /f\n"),
        &["-t", "localhost/chown:1"],
    );
    assert_one_line_failure(&out, "hostonly");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("4242"));
    fs::remove_file(host.join("passwd")).unwrap();
    s.assert_host_untouched();
}

/// `RUN --mount=type=bind,rw` writes into a throwaway copy: the host's context (here a
/// planted git hook) and another stage's files stay as they were.
#[test]
fn rw_bind_mounts_never_change_the_context_or_another_stage() {
    let s = Setup::new();
    fs::create_dir_all(s.ctx(".git/hooks")).unwrap();
    fs::write(s.ctx("existing"), "original\n").unwrap();
    let before = img_e2e::tree::snapshot(s.ctx.path());
    let out = s.build(
        &format!(
            "FROM {BASE} AS first\n\
             RUN echo stage > /f\n\
             FROM {BASE}\n\
             RUN --mount=type=bind,rw,target=/ctx echo evil > /ctx/.git/hooks/post-checkout \
                 && echo changed > /ctx/existing && cat /ctx/existing > /r1\n\
             RUN --mount=type=bind,rw,from=first,target=/s echo changed > /s/f && echo > /r2\n\
             COPY --from=first /f /from-first\n\
             RUN --mount=type=bind,target=/ctx cat /ctx/existing > /seen\n"
        ),
        &["-t", "localhost/rw:1"],
    );
    assert_success(&out, "img-build");
    fs::remove_file(s.ctx("Dockerfile")).unwrap();
    let mut after = img_e2e::tree::snapshot(s.ctx.path());
    after.retain(|k, _| k != "Dockerfile");
    let mut before = before;
    before.retain(|k, _| k != "Dockerfile");
    assert_eq!(after, before, "the context on the host is unchanged");
    assert_eq!(s.run("localhost/rw:1", "cat /r1 /from-first /seen"), "changed\nstage\noriginal\n");
}

/// Files `.dockerignore` excludes are invisible through bind mounts, read-only or not, as
/// BuildKit never sends them; what it keeps is there.
#[test]
fn dockerignore_hides_files_from_bind_mounts() {
    let s = Setup::new();
    fs::write(s.ctx(".dockerignore"), "secret.txt\nprivate/\n").unwrap();
    fs::write(s.ctx("secret.txt"), "s3cr3t\n").unwrap();
    fs::create_dir_all(s.ctx("private")).unwrap();
    fs::write(s.ctx("private/key"), "k\n").unwrap();
    fs::write(s.ctx("kept.txt"), "kept\n").unwrap();
    let out = s.build(
        &format!(
            "FROM {BASE}\n\
             RUN --mount=type=bind,target=/ctx ls -a /ctx > /ro.txt\n\
             RUN --mount=type=bind,rw,target=/ctx ls -a /ctx > /rw.txt\n\
             RUN --mount=type=bind,source=private,target=/p ls -a /p > /p.txt\n"
        ),
        &["-t", "localhost/ignore:1"],
    );
    assert_success(&out, "img-build");
    for file in ["/ro.txt", "/rw.txt"] {
        let listed = s.run("localhost/ignore:1", &format!("cat {file}"));
        assert!(listed.contains("kept.txt") && listed.contains("Dockerfile"), "{file}: {listed}");
        assert!(!listed.contains("secret.txt") && !listed.contains("private"), "{file}: {listed}");
    }
    assert_eq!(s.run("localhost/ignore:1", "cat /p.txt"), ".\n..\n", "an excluded directory is empty");
}

/// A Dockerfile (or `.dockerignore`, or `-f` path in the context) that is a symlink to a
/// host file is resolved inside the context: the host file's lines never appear.
#[test]
fn host_files_linked_from_the_context_are_never_read() {
    let s = Setup::new();
    fs::write(s.host().join("dir/shadow"), "root:SECRET-HASH:19000:0:99999:7:::\n").unwrap();
    let shadow = s.host().join("dir/shadow");
    symlink(&shadow, s.ctx("Dockerfile")).unwrap();
    let mut cmd = s.store.command("img-build");
    cmd.args(["-t", "localhost/leak:1", s.ctx.path().to_str().unwrap()]);
    let out = run_with_timeout(&mut cmd, "", Duration::from_secs(60));
    assert_one_line_failure(&out, "Dockerfile");
    assert!(!stderr(&out).contains("SECRET"), "{}", stderr(&out));

    fs::create_dir(s.ctx("sub")).unwrap();
    symlink(&shadow, s.ctx("sub/Dockerfile.prod")).unwrap();
    let file = s.ctx("sub/Dockerfile.prod");
    let mut cmd = s.store.command("img-build");
    cmd.args(["-f", file.to_str().unwrap(), s.ctx.path().to_str().unwrap()]);
    let out = run_with_timeout(&mut cmd, "", Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("SECRET"), "{}", stderr(&out));

    // .dockerignore: a pattern error would quote the line.
    fs::write(s.host().join("dir/ignore"), "[SECRET\n").unwrap();
    fs::remove_file(s.ctx("Dockerfile")).unwrap();
    symlink(s.host().join("dir/ignore"), s.ctx(".dockerignore")).unwrap();
    let out = s.build(&format!("FROM {BASE}\nCOPY . /all/\n"), &["-t", "localhost/leak:2"]);
    assert!(!stderr(&out).contains("SECRET"), "{}", stderr(&out));
    assert_success(&out, "img-build with a .dockerignore linked outside (found nowhere)");
    fs::remove_file(s.host().join("dir/shadow")).unwrap();
    fs::remove_file(s.host().join("dir/ignore")).unwrap();
    s.assert_host_untouched();
}

/// A FIFO (and a socket) in the context: copied as a node (a socket left out), never opened,
/// so `COPY .` finishes.
#[test]
fn special_files_in_the_context_are_copied_as_nodes_not_read() {
    let s = Setup::new();
    fs::write(s.ctx("a.txt"), "a\n").unwrap();
    let fifo = std::ffi::CString::new(s.ctx("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(s.ctx("sock")).unwrap();
    let out = s.build(&format!("FROM {BASE}\nCOPY . /app/\n"), &["-t", "localhost/fifo:1"]);
    assert_success(&out, "img-build");
    assert_eq!(
        s.run("localhost/fifo:1", "test -p /app/fifo && test ! -e /app/sock && cat /app/a.txt"),
        "a\n"
    );
}

/// A tiny HTTP server for ADD: answers every request with headers for `len` bytes, then
/// sends the body `chunk` bytes at a time with `pause` between chunks (bounded: it stops
/// when the client goes away or after `len` bytes).
fn slow_server(len: u64, chunk: usize, pause: Duration) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else { return };
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let body = vec![b'x'; chunk];
        let mut sent = 0u64;
        while sent < len {
            let n = chunk.min((len - sent) as usize);
            if conn.write_all(&body[..n]).is_err() {
                return;
            }
            sent += n as u64;
            std::thread::sleep(pause);
        }
    });
    (port, handle)
}

/// `ADD <url>` from a server that sends one byte a second: the download's deadline ends it
/// with one line, exit 1, and no image.
#[test]
fn a_trickling_download_ends_at_its_deadline() {
    let s = Setup::new();
    let (port, server) = slow_server(1_000_000, 1, Duration::from_millis(500));
    let started = Instant::now();
    let out = s.build(
        &format!("FROM {BASE}\nADD http://127.0.0.1:{port}/big /big\n"),
        &["-t", "localhost/slow:1", "--download-timeout", "3s"],
    );
    assert!(started.elapsed() < Duration::from_secs(60), "bounded: {:?}", started.elapsed());
    assert_one_line_failure(&out, "127.0.0.1");
    let records = s.store.records("img-ls", &["--json"], "");
    assert!(records.iter().all(|r| r["ref"] != "localhost/slow:1"), "no ref: {records:?}");
    server.join().unwrap();
}

/// `ADD <url>` streams to disk: a 128 MiB body does not make img-build hold 128 MiB, and
/// `--download-max-size` refuses a larger body.
#[test]
fn downloads_stream_to_disk_and_can_be_capped() {
    let s = Setup::new();
    let len = 128u64 << 20;
    let (port, server) = slow_server(len, 1 << 20, Duration::ZERO);
    fs::write(s.ctx("Dockerfile"), format!("FROM {BASE}\nADD http://127.0.0.1:{port}/big /big\n")).unwrap();
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.env("IMG_ROOT", s.store.path()).args([
        "-f",
        "maxrss=%M",
        img_e2e::bin("img-build").to_str().unwrap(),
    ]);
    cmd.args(["-t", "localhost/big:1", s.ctx.path().to_str().unwrap()]);
    let out = run_with_timeout(&mut cmd, "", Duration::from_secs(240));
    assert_success(&out, "img-build");
    server.join().unwrap();
    let err = stderr(&out);
    let rss_kib: u64 = err.lines().find_map(|l| l.strip_prefix("maxrss=")).unwrap().trim().parse().unwrap();
    assert!(rss_kib < 64 * 1024, "max RSS {rss_kib} KiB for a {len}-byte download");
    assert_eq!(s.run("localhost/big:1", "wc -c < /big").trim(), len.to_string());

    let (port, server) = slow_server(4 << 20, 64 << 10, Duration::ZERO);
    let out = s.build(
        &format!("FROM {BASE}\nADD http://127.0.0.1:{port}/big /big\n"),
        &["-t", "localhost/big:2", "--download-max-size", "1048576"],
    );
    assert_one_line_failure(&out, "1048576");
    server.join().unwrap();
}
