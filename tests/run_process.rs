//! What runs and as whom, with docker's semantics: environment, user and groups, working
//! directory, Entrypoint/Cmd, stdin, exit codes and signals.

mod run_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use run_common::*;
use serde_json::json;

#[test]
fn environment_from_image_options_and_files() {
    let env = Env::with_image(busybox_image(
        &[("Env", json!(["PATH=/bin:/usr/bin", "FOO=image", "KEEP=yes"])), ("Cmd", json!(["sh"]))],
        vec![],
    ));
    let file = env.store.path().join("env.list");
    std::fs::write(&file, "# comment\n\nFROMFILE=1\nFOO=file\n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let out = env.run_with(
        &[
            "--env-file",
            &file,
            "-e",
            "FOO=cli",
            "-e",
            "FROM_HOST",
            "-e",
            "UNSET_ON_HOST",
            "-h",
            "hn",
            "bb:1",
            "env",
        ],
        "",
        &[("FROM_HOST", "h")],
    );
    img_e2e::assert_success(&out, "img-run env");
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "FOO=cli",
            "FROMFILE=1",
            "FROM_HOST=h",
            "HOME=/root",
            "HOSTNAME=hn",
            "KEEP=yes",
            "PATH=/bin:/usr/bin"
        ]
    );
    // An image without PATH gets docker's default one.
    env.add_image(busybox_image(&[("Env", json!(["X=1"]))], vec![]), "nopath:1");
    let out = env.run(&["nopath:1", "/bin/env"]);
    assert!(stdout(&out).contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"));
}

#[test]
fn user_from_image_or_option_resolved_in_the_container() {
    let env = Env::with_image(busybox_image(&[("User", json!("app")), ("Cmd", json!(["id"]))], vec![]));
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.insert(all.len().min(all.len()), "bb:1");
        let out = env.run(&all);
        (code(&out), stdout(&out), img_e2e::stderr(&out))
    };
    let (_, out, _) = run(&[]);
    assert_eq!(out, "uid=1000(app) gid=1000(app) groups=10(wheel),29(audio),1000(app)\n");
    let (_, out, _) = run(&["-u", "root"]);
    assert_eq!(out, "uid=0(root) gid=0(root) groups=0(root)\n");
    let (_, out, _) = run(&["-u", "app:wheel"]);
    assert_eq!(out, "uid=1000(app) gid=10(wheel) groups=10(wheel)\n");
    let (_, out, _) = run(&["-u", "4242:4343"]);
    assert_eq!(out, "uid=4242 gid=4343 groups=4343\n");
    let home = env.run(&["-u", "app", "bb:1", "sh", "-c", "echo $HOME"]);
    assert_eq!(stdout(&home), "/home/app\n");
    let (code, _, err) = run(&["-u", "nope"]);
    assert_eq!(code, 125);
    assert!(err.contains("unable to find user nope"), "{err}");
}

#[test]
fn working_directory_from_image_or_option_is_created() {
    let env =
        Env::with_image(busybox_image(&[("WorkingDir", json!("/srv/app")), ("Cmd", json!(["pwd"]))], vec![]));
    assert_eq!(stdout(&env.run(&["bb:1"])), "/srv/app\n");
    assert_eq!(stdout(&env.run(&["-w", "/data/x", "bb:1"])), "/data/x\n");
    assert_eq!(code(&env.run(&["-w", "relative", "bb:1"])), 125);
}

#[test]
fn entrypoint_and_cmd_combine_as_docker_does() {
    let env = Env::with_image(busybox_image(
        &[("Entrypoint", json!(["echo", "ep"])), ("Cmd", json!(["cmd"]))],
        vec![],
    ));
    let out = |args: &[&str]| stdout(&env.run(args));
    assert_eq!(out(&["bb:1"]), "ep cmd\n");
    assert_eq!(out(&["bb:1", "arg1", "arg2"]), "ep arg1 arg2\n");
    assert_eq!(out(&["--entrypoint", "/bin/echo", "bb:1"]), "\n");
    assert_eq!(out(&["--entrypoint", "/bin/echo", "bb:1", "x"]), "x\n");
    assert_eq!(out(&["--entrypoint", "", "bb:1", "echo", "plain"]), "plain\n");
    // Options after the image are the command's.
    assert_eq!(out(&["bb:1", "-n", "x"]), "ep -n x\n");
    assert_eq!(out(&["bb:1", "--", "-e"]), "ep -e\n");
    let none = env.run(&["--entrypoint", "", "bb:1"]);
    assert_eq!(code(&none), 125);
}

#[test]
fn exit_codes_as_docker_reports_them() {
    let env = Env::new();
    assert_eq!(code(&env.run(&["bb:1", "sh", "-c", "exit 3"])), 3);
    let out = env.run(&["bb:1", "no-such-command"]);
    assert_eq!(code(&out), 127);
    assert!(img_e2e::stderr(&out).contains("executable file not found"), "{}", img_e2e::stderr(&out));
    assert_eq!(code(&env.run(&["bb:1", "/no/such/file"])), 127);
    assert_eq!(code(&env.run(&["bb:1", "/etc/passwd"])), 126);
    assert_eq!(code(&env.run(&["bb:1", "/etc"])), 126);
    assert_eq!(code(&env.run(&["nosuch:image"])), 125);
    assert_eq!(code(&env.run(&["--network", "bridge", "bb:1", "true"])), 125);
    assert_eq!(code(&env.run(&["--bogus-flag", "bb:1"])), 125);
    // Killed by a signal: 128+N.
    assert_eq!(code(&env.run(&["--init", "bb:1", "sh", "-c", "kill -9 $$"])), 137);
}

fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    env.store
        .command("img-run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` to img-run once the container is ready (it printed its first line, if
/// `ready` says it will), then collects its output; kills it if it hangs.
fn signal_and_wait(mut child: std::process::Child, signal: i32, ready: bool) -> std::process::Output {
    use std::io::{BufRead, Read};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    if ready {
        reader.read_line(&mut first).unwrap();
    } else {
        std::thread::sleep(Duration::from_millis(500));
    }
    let pid = child.id() as i32;
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let guard = std::thread::spawn(move || {
        for _ in 0..400 {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; the child has not been reaped (we are still waiting for it).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let mut out = child.wait_with_output().unwrap();
    done.store(true, Ordering::SeqCst);
    guard.join().unwrap();
    out.stdout = format!("{first}{rest}").into_bytes();
    out
}

#[test]
fn signals_are_forwarded() {
    let env = Env::new();
    for (sig, name, code_) in [
        (libc::SIGTERM, "TERM", 7),
        (libc::SIGUSR1, "USR1", 8),
        (libc::SIGHUP, "HUP", 9),
        (libc::SIGINT, "INT", 10),
        (libc::SIGQUIT, "QUIT", 11),
        (libc::SIGUSR2, "USR2", 12),
    ] {
        let script = format!(
            "trap 'echo got {name}; exit {code_}' {name}; echo ready; while true; do sleep 0.1; done"
        );
        let child = spawn(&env, &["bb:1", "sh", "-c", &script]);
        let out = signal_and_wait(child, sig, true);
        assert_eq!(code(&out), code_, "{name}: {}", img_e2e::stderr(&out));
        assert_eq!(stdout(&out), format!("ready\ngot {name}\n"));
    }
    // With --init, a command without handlers dies of the signal: 128+15.
    let out = signal_and_wait(spawn(&env, &["--init", "bb:1", "sleep", "30"]), libc::SIGTERM, false);
    assert_eq!(code(&out), 143);
    // And the container's directory is gone afterwards.
    assert_eq!(std::fs::read_dir(env.store.path().join("containers")).unwrap().count(), 0);
}

/// A signal img-run inherited as ignored (`nohup`, a job a script started with `&`, a
/// supervisor ignoring SIGHUP) is not ignored in the container: exec would have kept it
/// ignored, a shell cannot trap such a signal, and the forwarded one was lost (the SIGHUP
/// case above hung whenever the tests ran with SIGHUP ignored).
#[test]
fn signals_ignored_by_the_caller_are_reset_in_the_container() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let ignoring = |args: &[&str]| {
        let mut cmd = env.store.command("img-run");
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: only signal(), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE, libc::SIGUSR1] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        cmd
    };
    let out = run_timeout(
        &mut ignoring(&["bb:1", "grep", "SigIgn", "/proc/self/status"]),
        "",
        Duration::from_secs(60),
    );
    assert_eq!(stdout(&out), "SigIgn:\t0000000000000000\n", "{}", img_e2e::stderr(&out));
    let script = "trap 'echo got HUP; exit 9' HUP; echo ready; while true; do sleep 0.1; done";
    let child = ignoring(&["bb:1", "sh", "-c", script]).spawn().unwrap();
    let out = signal_and_wait(child, libc::SIGHUP, true);
    assert_eq!(code(&out), 9, "{}", img_e2e::stderr(&out));
    assert_eq!(stdout(&out), "ready\ngot HUP\n");
}

#[test]
fn init_reaps_orphans() {
    let env = Env::new();
    let out =
        env.sh(&["--init"], "sh -c 'sleep 0.2 & exit 0'; sleep 1; ps -o stat,comm | grep -c '^Z' || true");
    assert_eq!(out.trim(), "0", "zombies left: {out}");
}

/// As docker: `-it` with input that is not a terminal is refused at once (it used to wait on
/// a terminal that never answered, deaf to SIGTERM); `-t` alone or `-i` alone still run.
#[test]
fn it_with_piped_input_is_refused() {
    let env = Env::new();
    let out = env.run_with(&["-it", "bb:1", "sh"], "echo x\n", &[]);
    assert_eq!(code(&out), 125);
    assert!(img_e2e::stderr(&out).contains("the input device is not a TTY"), "{}", img_e2e::stderr(&out));
    assert_eq!(stdout(&env.run_with(&["-i", "bb:1", "sh"], "echo x\n", &[])), "x\n");
    img_e2e::assert_success(&env.run_with(&["-t", "bb:1", "true"], "", &[]), "img-run -t");
}

#[test]
fn stdin_is_attached_with_i_and_a_record_line_names_the_image() {
    let env = Env::new();
    let with_i = env.run_with(&["-i", "bb:1", "cat"], "hello\n", &[]);
    assert_eq!(stdout(&with_i), "hello\n");
    let without = env.run_with(&["bb:1", "cat"], "hello\n", &[]);
    assert_eq!(stdout(&without), "");
    // One record line names the image; the rest of stdin is the container's.
    let input = "{\"ref\":\"bb:1\",\"digest\":\"sha256:x\"}\nrest of input\n";
    assert_eq!(stdout(&env.run_with(&["-i", "--", "cat"], input, &[])), "rest of input\n");
    assert_eq!(stdout(&env.run_with(&["-i", "-", "cat"], "bb:1\nmore\n", &[])), "more\n");
}

#[test]
fn tty_gives_a_terminal() {
    let env = Env::new();
    img_e2e::require("script");
    let cmd = format!(
        "IMG_ROOT={} {} -t bb:1 sh -c 'tty; stty size; echo $TERM'",
        env.store.path().display(),
        img_run().display()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env("COLUMNS", "100").env("LINES", "30");
    let out = run_timeout(&mut c, "", Duration::from_secs(30));
    let text = stdout(&out).replace('\r', "");
    assert!(text.starts_with("/dev/pts/0\n"), "{text:?}");
    assert!(text.contains("xterm"), "{text:?}");
    assert_eq!(code(&out), 0);
}

#[test]
fn tty_has_the_callers_window_size_and_restores_its_mode() {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let env = Env::new();
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty fills two descriptors we then own.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(rc, 0);
    // SAFETY: tcgetattr into a zeroed struct.
    let before = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(slave, &mut t);
        t
    };
    // SAFETY: descriptors from openpty, each owned once (dup for the three stdio slots).
    let stdio = |fd: i32| unsafe { Stdio::from(std::fs::File::from_raw_fd(libc::dup(fd))) };
    let mut child = env
        .store
        .command("img-run")
        .args(["-it", "bb:1", "sh", "-c", "stty size; tty; echo console > /dev/console; read l; echo got $l"])
        .stdin(stdio(slave))
        .stdout(stdio(slave))
        .stderr(stdio(slave))
        .spawn()
        .unwrap();
    // Drain the pty while the container runs, so it never blocks on a full buffer.
    // SAFETY: the master descriptor is ours alone.
    let mut reader = unsafe { std::fs::File::from_raw_fd(master) };
    let (chunks, received) = std::sync::mpsc::channel::<Vec<u8>>();
    let collected = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = chunks.send(buf[..n].to_vec());
        }
        all
    });
    // Typed on the caller's terminal once the container is reading it (it prints its
    // terminal's name first), however long starting took on a loaded machine.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("console") {
        match received.recv_timeout(Duration::from_secs(30)) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => break,
        }
    }
    // SAFETY: writing a buffer we own to the master, which the reader thread shares.
    unsafe { libc::write(master, b"typed\r".as_ptr().cast(), 6) };
    let status = child.wait().unwrap();
    // SAFETY: tcgetattr into a zeroed struct.
    let after = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(slave, &mut t);
        libc::close(slave);
        t
    };
    let text = String::from_utf8_lossy(&collected.join().unwrap()).replace('\r', "");
    assert!(status.success(), "{text}");
    assert_eq!(text, "30 100\n/dev/pts/0\nconsole\ntyped\ngot typed\n");
    assert_eq!(before.c_lflag, after.c_lflag, "the caller's terminal mode was not restored");
    assert_eq!(before.c_iflag, after.c_iflag);
}

#[test]
fn docker_run_flags_people_type_by_habit() {
    let env = Env::new();
    // --rm is what img-run always does; -p is discarded with a warning (host network).
    let out = env.run(&["--rm", "-p", "8080:80", "bb:1", "echo", "ran"]);
    img_e2e::assert_success(&out, "img-run --rm -p");
    assert_eq!(stdout(&out), "ran\n");
    assert!(img_e2e::stderr(&out).contains("published ports are discarded"), "{}", img_e2e::stderr(&out));
    let left: Vec<_> = env.store.path().join("containers").read_dir().unwrap().collect();
    assert!(left.is_empty(), "the container's directory and lock file are gone: {left:?}");

    // --ulimit sets soft and hard limits; a later one of the same name wins.
    let limits =
        env.sh(&["--ulimit", "nofile=64:128", "--ulimit", "nproc=50"], "ulimit -n; ulimit -Hn; ulimit -u");
    assert_eq!(limits, "64\n128\n50\n");
    let limits = env.sh(&["--ulimit", "nofile=1:1", "--ulimit", "nofile=70:80"], "ulimit -n; ulimit -Hn");
    assert_eq!(limits, "70\n80\n");

    // --add-host lines land in /etc/hosts, IPv6 too. (Whole names: the container's random id,
    // also in /etc/hosts, may contain "db".)
    let hosts = env.sh(
        &["--add-host", "db:10.1.2.3", "--add-host", "v6:::1"],
        "grep -E '[[:space:]](db|v6)$' /etc/hosts",
    );
    assert_eq!(hosts, "10.1.2.3\tdb\n::1\tv6\n");
    let none =
        env.sh(&["--network", "none", "--add-host", "db=10.9.9.9"], "grep -E '[[:space:]]db$' /etc/hosts");
    assert_eq!(none, "10.9.9.9\tdb\n");

    // --group-add: gids or names of the container's /etc/group, after the user's own groups.
    assert_eq!(env.sh(&["--group-add", "4242", "--group-add", "audio"], "id -G"), "0 29 4242\n");
    assert_eq!(env.sh(&["-u", "app", "--group-add", "nogroup"], "id -G"), "1000 10 29 65534\n");

    // --mount, docker's long form of -v and --tmpfs.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "from the host").unwrap();
    let bind = format!("type=bind,source={},target=/data,readonly", host.path().display());
    let out = env.sh(
        &["--mount", &bind, "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m"],
        "cat /data/f; echo; touch /data/new 2>/dev/null || echo read-only; \
         grep ' /scratch ' /proc/self/mountinfo | grep -o 'tmpfs tmpfs rw,size=1024k'",
    );
    assert_eq!(out, "from the host\nread-only\ntmpfs tmpfs rw,size=1024k\n");

    // --shm-size: /dev/shm's size (64 MiB otherwise).
    let shm = "grep ' /dev/shm ' /proc/self/mountinfo | grep -o 'size=[0-9]*k'";
    assert_eq!(env.sh(&[], shm), "size=65536k\n");
    assert_eq!(env.sh(&["--shm-size", "128m"], shm), "size=131072k\n");

    // What cannot be done is refused in one line, and nothing runs.
    for (args, message) in [
        (&["--group-add", "nosuchgroup"][..], "unable to find group nosuchgroup"),
        (&["--ulimit", "nofile=9:1"], "soft limit is above the hard one"),
        (&["--ulimit", "files=1"], "unknown limit"),
        (&["--add-host", "db:host-gateway"], "not an IP address"),
        (&["-d"], "--detach is not supported"),
        (&["--mount", "type=volume,source=v,target=/v"], "no named volumes"),
    ] {
        let mut all = args.to_vec();
        all.extend(["bb:1", "echo", "ran"]);
        let out = env.run(&all);
        assert_eq!(code(&out), 125, "{args:?}");
        let err = img_e2e::stderr(&out);
        assert!(err.contains(message) && err.lines().count() == 1, "{args:?}: {err}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}
