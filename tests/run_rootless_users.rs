//! Rootless `-u`: an unprivileged img-run maps container root to the invoking user and, when
//! /etc/subuid and /etc/subgid give that user ranges, container ids 1.. to them through the
//! setuid helpers newuidmap/newgidmap, as podman does.
//!
//! newuidmap reads /etc/subuid itself, so the tests cannot point it elsewhere; nor may they
//! edit the host's. Each run therefore happens in a private mount namespace (`unshare -m`, as
//! root) where a temp file is bound over /etc/subuid and /etc/subgid, then drops to uid 65534
//! (`nobody`) with setpriv. Nothing changes outside that namespace.

mod run_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use run_common::{Env, code, img_run, run_timeout, stdout};

/// A store of the busybox image that uid 65534 owns.
fn nobody_env() -> Env {
    img_e2e::require("setpriv");
    img_e2e::require("unshare");
    img_e2e::require("newuidmap");
    img_e2e::require("newgidmap");
    for f in ["/etc/subuid", "/etc/subgid"] {
        assert!(
            Path::new(f).is_file(),
            "{f} is missing: the tests bind a temp file over it (package passwd)"
        );
    }
    let env = Env::new();
    img_e2e::peer("chown", &["-R", "65534:65534", &env.store.path().to_string_lossy()]);
    std::fs::set_permissions(env.store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

/// img-run as uid 65534 with `subids` as both /etc/subuid and /etc/subgid (seen only by this
/// run).
fn run_as_nobody(env: &Env, subids: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subids");
    std::fs::write(&file, subids).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount --bind \"$0\" /etc/subuid && mount --bind \"$0\" /etc/subgid && \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"",
        )
        .arg(&file)
        .arg(img_run())
        .args(args)
        .env("IMG_ROOT", env.store.path())
        .current_dir(env.store.path());
    let out = run_timeout(&mut cmd, "", Duration::from_secs(60));
    let left: Vec<_> = env.store.path().join("containers").read_dir().unwrap().collect();
    assert!(left.is_empty(), "the container's directory is removed, files of uid 1000 too: {left:?}");
    out
}

const RANGES: &str = "nobody:100000:65536\n";

#[test]
fn a_non_root_user_runs_with_subordinate_ids() {
    let env = nobody_env();
    let script =
        "id -u; id -g; touch /tmp/f && stat -c %u:%g /tmp/f; cat /proc/self/uid_map /proc/self/gid_map";
    let out = run_as_nobody(&env, RANGES, &["-u", "1000", "bb:1", "sh", "-c", script]);
    img_e2e::assert_success(&out, "rootless img-run -u 1000");
    let lines: Vec<String> =
        stdout(&out).lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    // 1000 is `app` in the image's /etc/passwd, whose primary group is 1000.
    assert_eq!(
        lines,
        ["1000", "1000", "1000:1000", "0 65534 1", "1 100000 65536", "0 65534 1", "1 100000 65536"],
        "{}",
        img_e2e::stderr(&out)
    );

    // user:group, numeric and not in /etc/passwd.
    let out = run_as_nobody(&env, RANGES, &["-u", "4242:4343", "bb:1", "sh", "-c", "id -u; id -g; id -G"]);
    img_e2e::assert_success(&out, "rootless img-run -u 4242:4343");
    assert_eq!(stdout(&out), "4242\n4343\n4343\n");

    // Root is still the invoking user.
    let out = run_as_nobody(&env, RANGES, &["-u", "0", "bb:1", "sh", "-c", "id -u; echo w > /w && cat /w"]);
    img_e2e::assert_success(&out, "rootless img-run -u 0");
    assert_eq!(stdout(&out), "0\nw\n");
}

#[test]
fn groups_of_the_user_and_group_add_inside_the_mapped_range() {
    let env = nobody_env();
    // `app` is in wheel (10) and audio (29) in the image's /etc/group; --group-add adds more.
    let out = run_as_nobody(
        &env,
        RANGES,
        &["-u", "app", "--group-add", "4242", "--group-add", "nogroup", "bb:1", "id", "-G"],
    );
    img_e2e::assert_success(&out, "rootless img-run -u app --group-add");
    assert_eq!(stdout(&out), "1000 10 29 4242 65534\n");

    // A group beyond the 65537 ids mapped (0 and 65536 subordinate ones).
    let out = run_as_nobody(&env, RANGES, &["--group-add", "70000", "bb:1", "true"]);
    assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
    let err = img_e2e::stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("gid 70000 is not mapped") && err.contains("/etc/subgid"), "{err}");
}

#[test]
fn image_files_look_owned_by_root() {
    // Rootless, the image is unpacked as the invoking user (owners kept in the
    // user.rootlesscontainers xattr, as umoci does), so every file is container root's: `app`
    // sees its home owned by root, and can write where the mode lets anyone (/tmp).
    let env = nobody_env();
    let script =
        "stat -c %u:%g /home/app; touch /home/app/x 2>/dev/null || echo refused; touch /tmp/x && echo tmp";
    let out = run_as_nobody(&env, RANGES, &["-u", "app", "bb:1", "sh", "-c", script]);
    img_e2e::assert_success(&out, "rootless img-run -u app");
    assert_eq!(stdout(&out), "0:0\nrefused\ntmp\n");
}

#[test]
fn without_subordinate_ids_only_root_is_mapped() {
    let env = nobody_env();
    // Nothing for nobody (another user's range does not count).
    for subids in ["", "someone:100000:65536\n"] {
        let out = run_as_nobody(&env, subids, &["-u", "1000", "bb:1", "id", "-u"]);
        assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
        let err = img_e2e::stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("uid 1000 is not mapped") && err.contains("/etc/subuid has no range for nobody"),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
    let out = run_as_nobody(&env, "", &["--group-add", "10", "bb:1", "true"]);
    assert_eq!(code(&out), 125, "{}", img_e2e::stderr(&out));
    assert!(img_e2e::stderr(&out).contains("/etc/subuid"), "{}", img_e2e::stderr(&out));

    // Root works as before, with the single mapping.
    let out = run_as_nobody(&env, "", &["bb:1", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    img_e2e::assert_success(&out, "rootless img-run without subordinate ids");
    let got: Vec<String> =
        stdout(&out).lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(got, ["0", "0 65534 1"]);
}
