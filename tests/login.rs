//! img-login and img-logout against real `docker-registry` processes (htpasswd Basic auth and
//! token auth): credentials are checked before they are stored, stored where docker and podman
//! read them (config.json, mode 0600, the rest of the file kept, or a credential helper), used
//! by img-pull and img-push without `--creds`, and removed again.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use img::layout::Layout;
use img::test_image::{Entry, Layer, TestImage};
use img_e2e::registry::{Auth, Registry};
use img_e2e::{Store, assert_success, json_lines, run_with_stdin, stderr};
use serde_json::Value;

fn with_config(store: &Store, tool: &str, config: &Path, path_dir: Option<&Path>) -> Command {
    let mut cmd = store.command(tool);
    // Only the config under test: no containers auth.json of the machine's.
    cmd.env("DOCKER_CONFIG", config)
        .env("XDG_RUNTIME_DIR", config.join("no-runtime"))
        .env("XDG_CONFIG_HOME", config.join("no-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("IMG_CREDS");
    if let Some(dir) = path_dir {
        cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
    }
    cmd
}

fn login(
    store: &Store,
    config: &Path,
    host: &str,
    user: &str,
    password: &str,
    path_dir: Option<&Path>,
) -> Output {
    let mut cmd = with_config(store, "img-login", config, path_dir);
    cmd.args(["--username", user, "--password-stdin", host]);
    run_with_stdin(&mut cmd, &format!("{password}\n"))
}

fn run(store: &Store, tool: &str, config: &Path, path_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = with_config(store, tool, config, path_dir);
    cmd.args(args);
    run_with_stdin(&mut cmd, "")
}

fn one_line_error(out: &Output, tool: &str, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{tool} should fail with 1: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with(&format!("{tool}: ")), "{err}");
    assert!(err.to_lowercase().contains(needle), "{err:?} does not say {needle:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
}

fn base64(s: &str) -> String {
    use base64_engine::encode;
    encode(s.as_bytes())
}

/// Standard base64, small enough to write here rather than add a dependency to the tests.
mod base64_engine {
    pub fn encode(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                out.push(if i <= chunk.len() { T[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
            }
        }
        out
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Pushes a small image to `reference` with explicit credentials, for the logins to pull.
fn seed(store: &Store, reference: &str, creds: &str) {
    let built = TestImage::new().layer(Layer::new([Entry::file("hello", reference)])).build();
    let src = store.path().join("seed");
    built.write_to(&Layout::open_or_create(&src).unwrap(), Some("seed:1")).unwrap();
    let out = store.run(
        "img-push",
        &["--layout", src.to_str().unwrap(), "--creds", creds, "--to", reference, "seed:1"],
        "",
    );
    assert_success(&out, "seeding the registry");
}

#[test]
fn login_then_pull_without_creds_and_logout_on_basic_and_token_registries() {
    for kind in ["basic", "token"] {
        let (user, password) = ("alice".to_string(), "s3cret pass".to_string());
        let registry = match kind {
            "basic" => Registry::start(Auth::Basic { user: user.clone(), password: password.clone() }, false),
            _ => Registry::start(Auth::Token { user: user.clone(), password: password.clone() }, false),
        };
        let host = registry.host();
        let store = Store::new();
        let reference = format!("{host}/team/app:1");
        seed(&store, &reference, &format!("{user}:{password}"));

        let config = store.path().join("docker");
        std::fs::create_dir_all(&config).unwrap();
        let file = config.join("config.json");
        std::fs::write(&file, r#"{"auths":{"other.example:1":{"auth":"eDp5"}},"psFormat":"table {{.ID}}","proxies":{"default":{"httpProxy":"p"}}}"#).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

        // A wrong password: refused in one line, the file untouched.
        let before = std::fs::read(&file).unwrap();
        let out = login(&store, &config, &host, &user, "wrong", None);
        one_line_error(&out, "img-login", "wrong username or password");
        assert_eq!(std::fs::read(&file).unwrap(), before, "{kind}: a failed login changed config.json");

        // The right one: stored as docker stores it, the rest kept, mode 0600.
        let out = login(&store, &config, &host, &user, &password, None);
        assert_success(&out, &format!("{kind}: img-login"));
        let records = json_lines(&out.stdout);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["registry"], host);
        assert_eq!(records[0]["loggedIn"], true);
        let saved = read_json(&file);
        assert_eq!(saved["auths"][&host]["auth"], base64(&format!("{user}:{password}")));
        assert_eq!(saved["auths"]["other.example:1"]["auth"], "eDp5");
        assert_eq!(saved["psFormat"], "table {{.ID}}");
        assert_eq!(saved["proxies"]["default"]["httpProxy"], "p");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{kind}: config.json holds a password");
        let leftovers: Vec<_> = std::fs::read_dir(&config).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{kind}: temp files left: {leftovers:?}");

        // Pull and push with what was stored, no --creds.
        let pulled = run(&store, "img-pull", &config, None, &[&reference]);
        assert_success(&pulled, &format!("{kind}: img-pull after img-login"));
        let to = format!("{host}/team/copy:1");
        assert_success(
            &run(&store, "img-push", &config, None, &["--to", &to, &reference]),
            "img-push after login",
        );

        // Logout removes the entry (only it); a second logout says so and succeeds, as docker's.
        let out = run(&store, "img-logout", &config, None, &[&host]);
        assert_success(&out, "img-logout");
        assert_eq!(json_lines(&out.stdout)[0]["removed"], true);
        let saved = read_json(&file);
        assert!(saved["auths"].get(&host).is_none(), "{kind}: the login is still there: {saved}");
        assert_eq!(saved["auths"]["other.example:1"]["auth"], "eDp5");
        assert_eq!(saved["psFormat"], "table {{.ID}}");
        let out = run(&store, "img-logout", &config, None, &[&host]);
        assert_success(&out, "a second img-logout");
        assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));
        assert_eq!(json_lines(&out.stdout)[0]["removed"], false);

        // Now the registry wants credentials again (the token registry lets anyone pull, so
        // there it is a push that is refused).
        let other = store.path().join("other-layout");
        let out = match kind {
            "basic" => {
                run(&store, "img-pull", &config, None, &["--layout", other.to_str().unwrap(), &reference])
            }
            _ => {
                run(&store, "img-push", &config, None, &["--to", &format!("{host}/team/again:1"), &reference])
            }
        };
        one_line_error(
            &out,
            if kind == "basic" { "img-pull" } else { "img-push" },
            "authentication required",
        );
    }
}

#[test]
fn login_usage_without_a_terminal_and_docker_hub_naming() {
    let store = Store::new();
    let config = store.path().join("docker");
    // No --username and stdin is not a terminal: a usage error, nothing written.
    let out = run(&store, "img-login", &config, None, &["127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let mut cmd = with_config(&store, "img-login", &config, None);
    cmd.args(["--username", "u", "127.0.0.1:1"]);
    let out = run_with_stdin(&mut cmd, "pw\n");
    assert_eq!(out.status.code(), Some(2), "no --password-stdin: {}", stderr(&out));
    let out = run(&store, "img-login", &config, None, &["--password-stdin", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "--password-stdin needs --username: {}", stderr(&out));
    assert!(!config.join("config.json").exists());
    // --password works but warns; a registry that is not there is one line.
    let port = img_e2e::registry::free_port();
    let out = run(&store, "img-login", &config, None, &["-u", "u", "-p", "pw", &format!("127.0.0.1:{port}")]);
    assert!(stderr(&out).contains("insecure"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));
    assert!(!config.join("config.json").exists());
    // Docker Hub is logged out of under docker's key, whatever alias names it.
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        r#"{"auths":{"https://index.docker.io/v1/":{"auth":"eDp5"}}}"#,
    )
    .unwrap();
    let out = run(&store, "img-logout", &config, None, &["https://index.docker.io/v1/"]);
    assert_success(&out, "img-logout of Docker Hub");
    assert_eq!(json_lines(&out.stdout)[0]["registry"], "docker.io");
    assert_eq!(read_json(&config.join("config.json"))["auths"], serde_json::json!({}));
}

#[test]
fn a_credential_helper_stores_and_erases_and_the_file_holds_no_secret() {
    let (user, password) = ("carol", "helper-pw");
    let registry = Registry::start(Auth::Basic { user: user.into(), password: password.into() }, false);
    let host = registry.host();
    let store = Store::new();
    let reference = format!("{host}/team/app:1");
    seed(&store, &reference, &format!("{user}:{password}"));

    // docker-credential-test keeps one secret in a file and logs every call.
    let helpers = store.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let state = helpers.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let script = format!(
        r#"#!/bin/sh
state={state}
input=$(cat)
echo "$1" >> "$state/calls"
case "$1" in
  store) printf '%s' "$input" > "$state/stored" ;;
  get) [ -f "$state/stored" ] || {{ echo "credentials not found in native keychain"; exit 1; }}; cat "$state/stored" ;;
  erase) [ -f "$state/stored" ] || {{ echo "credentials not found in native keychain"; exit 1; }}; rm "$state/stored" ;;
  *) exit 1 ;;
esac
"#,
        state = state.display()
    );
    let helper = helpers.join("docker-credential-test");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let config = store.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    let file = config.join("config.json");
    std::fs::write(&file, r#"{"credsStore":"test","detachKeys":"ctrl-q"}"#).unwrap();

    let out = login(&store, &config, &host, user, password, Some(&helpers));
    assert_success(&out, "img-login through a helper");
    assert!(json_lines(&out.stdout)[0]["store"].as_str().unwrap().contains("docker-credential-test"));
    let stored = read_json(&state.join("stored"));
    assert_eq!(stored["ServerURL"], host);
    assert_eq!(stored["Username"], user);
    assert_eq!(stored["Secret"], password);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(password) && !text.contains(&base64(&format!("{user}:{password}"))), "{text}");
    let saved = read_json(&file);
    assert_eq!(saved["credsStore"], "test");
    assert_eq!(saved["detachKeys"], "ctrl-q");
    assert_eq!(saved["auths"][&host], serde_json::json!({}), "the file notes the registry, as docker's does");

    // img-pull gets them back from the helper.
    assert_success(
        &run(&store, "img-pull", &config, Some(&helpers), &[&reference]),
        "img-pull via the helper",
    );

    let out = run(&store, "img-logout", &config, Some(&helpers), &[&host]);
    assert_success(&out, "img-logout through a helper");
    assert_eq!(json_lines(&out.stdout)[0]["removed"], true);
    assert!(!state.join("stored").exists(), "the helper was not asked to erase");
    let calls = std::fs::read_to_string(state.join("calls")).unwrap();
    assert_eq!(calls.lines().filter(|l| *l == "store").count(), 1, "{calls}");
    assert_eq!(calls.lines().filter(|l| *l == "erase").count(), 1, "{calls}");
    assert!(read_json(&file)["auths"].get(&host).is_none());
    // Logged out: the pull is refused.
    let other = store.path().join("other-layout");
    let out =
        run(&store, "img-pull", &config, Some(&helpers), &["--layout", other.to_str().unwrap(), &reference]);
    one_line_error(&out, "img-pull", "authentication required");
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors it opened, which we then own.
    let rc = unsafe {
        libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are open descriptors nobody else owns.
    unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) }
}

#[test]
fn on_a_terminal_it_asks_and_does_not_echo_the_password() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let registry = Registry::start(Auth::Basic { user: "dave".into(), password: "typed-pw".into() }, false);
    let store = Store::new();
    let config = store.path().join("docker");
    let (master, slave) = pty();
    let mut cmd = with_config(&store, "img-login", &config, None);
    cmd.arg(registry.host())
        .stdin(slave.try_clone().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(slave);
    let child = cmd.spawn().unwrap();
    drop(cmd); // our copies of the terminal's slave side: the master reads EOF when the child ends

    let screen = Arc::new(Mutex::new(String::new()));
    let (mut reader, mut keyboard) = (master.try_clone().unwrap(), master);
    let shown = screen.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !screen.lock().unwrap().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} on the terminal: {:?}", screen.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("Username: ");
    keyboard.write_all(b"dave\n").unwrap();
    wait_for("Password: ");
    keyboard.write_all(b"typed-pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(keyboard);
    let _ = reading.join();
    let screen = screen.lock().unwrap().clone();
    assert!(out.status.success(), "img-login on a terminal failed: {screen}");
    assert!(screen.contains("dave"), "the user name is echoed: {screen:?}");
    assert!(!screen.contains("typed-pw"), "the password was echoed: {screen:?}");
    assert_eq!(json_lines(&out.stdout)[0]["username"], "dave");
    assert_eq!(
        read_json(&config.join("config.json"))["auths"][&registry.host()]["auth"],
        base64("dave:typed-pw")
    );
}
