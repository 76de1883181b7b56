//! img-run's isolation, observed from inside the container: PID 1, hostname, host processes
//! and mounts invisible, docker's capabilities, read-only root, `..` and symlinks that cannot
//! leave the root, masked /proc paths, /dev, `--network none`.

mod run_common;

use run_common::*;

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

#[test]
fn pid_1_is_the_command_or_the_init() {
    let env = Env::new();
    assert_eq!(env.sh(&[], "echo $$").trim(), "1");
    let out = env.sh(&["--init"], "echo $$; cat /proc/1/cmdline | tr '\\0' ' '");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "{out}");
    assert!(lines.next().unwrap().contains("img-run"), "{out}");
}

#[test]
fn hostname_is_the_containers() {
    let env = Env::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = env.sh(&["-h", "box"], "hostname; cat /etc/hostname; echo $HOSTNAME; hostname other; hostname");
    // Setting it needs CAP_SYS_ADMIN, which docker's default set lacks.
    assert_eq!(out, "box\nbox\nbox\nbox\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host,
        "the host's name changed"
    );
    // docker: with --network none the hostname is the id's first 12 characters.
    let out = env.sh(&["--network", "none", "--name", "abcdef0123456789"], "hostname");
    assert_eq!(out.trim(), "abcdef012345");
}

#[test]
fn host_processes_are_invisible() {
    let env = Env::new();
    // Only the shell (1) and ps itself are there.
    let out = env.sh(&[], "ps -o pid,comm > /tmp/ps; cat /tmp/ps");
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0], ["1", "sh"]);
    assert_eq!(rows[1][1], "ps");
}

#[test]
fn host_mounts_are_invisible_and_unchanged() {
    let env = Env::new();
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = env.sh(&[], "cat /proc/self/mountinfo");
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before, after, "the host's mount table changed");
    let store = env.store.path().to_string_lossy().into_owned();
    for line in out.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(
            !fields[4].starts_with(&store) && !fields[4].starts_with("/work"),
            "host mount visible: {line}"
        );
    }
    let points: Vec<&str> = out.lines().map(|l| l.split(' ').nth(4).unwrap()).collect();
    for want in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hosts",
        "/etc/resolv.conf",
    ] {
        assert!(points.contains(&want), "{want} is not mounted: {points:?}");
    }
}

#[test]
fn capabilities_are_dockers_default() {
    let env = Env::new();
    let status = env.sh(&[], "cat /proc/self/status");
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(status_field(&status, set), "00000000a80425fb", "{set}");
    }
    assert_eq!(status_field(&status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&status, "CapAmb"), "0000000000000000");
    // As docker: setuid programs work unless --security-opt no-new-privileges says otherwise.
    assert_eq!(status_field(&status, "NoNewPrivs"), "0");
    let nnp = env.sh(&["--security-opt", "no-new-privileges"], "cat /proc/self/status");
    assert_eq!(status_field(&nnp, "NoNewPrivs"), "1");
    let unconfined = env.sh(&["--security-opt", "seccomp=unconfined"], "cat /proc/self/status");
    assert_eq!(status_field(&unconfined, "NoNewPrivs"), "0");
    // AppArmor: a named profile must be loaded, on a host that has AppArmor (this one may
    // not: then it is refused by name); unconfined always runs.
    let out = env.run(&["--security-opt", "apparmor=no-such-profile", "bb:1", "true"]);
    assert_eq!(code(&out), 125);
    let err = img_e2e::stderr(&out);
    assert!(
        err.contains("AppArmor profile \"no-such-profile\": AppArmor is not enabled on this host")
            || err.contains("AppArmor profile \"no-such-profile\" is not loaded"),
        "{err}"
    );
    assert_eq!(env.sh(&["--security-opt", "apparmor=unconfined"], "echo ok"), "ok\n");
    // Without AppArmor, image runs have no profile (with it, img-default: see runtime::apparmor).
    let enabled =
        std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y");
    let current = env.sh(&[], "cat /proc/self/attr/current 2>/dev/null || echo none");
    match enabled {
        true => assert_eq!(current.trim(), "img-default (enforce)"),
        false => assert!(!current.contains("img-default"), "{current}"),
    }
    let out = env.run(&["--security-opt", "label=level:s0", "bb:1", "true"]);
    assert_eq!(code(&out), 125);
    assert!(img_e2e::stderr(&out).contains("no SELinux"), "{}", img_e2e::stderr(&out));

    let added = env.sh(&["--cap-add", "SYS_ADMIN", "--cap-drop", "chown"], "cat /proc/self/status");
    assert_eq!(status_field(&added, "CapEff"), format!("{:016x}", (0xa80425fbu64 | 1 << 21) & !1));
    let none = env.sh(&["--cap-drop", "ALL"], "cat /proc/self/status");
    assert_eq!(status_field(&none, "CapBnd"), "0000000000000000");
    // A non-root user keeps the bounding set but has no effective capabilities.
    let user = env.sh(&["-u", "1000"], "cat /proc/self/status");
    assert_eq!(status_field(&user, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&user, "CapBnd"), "00000000a80425fb");
}

#[test]
fn read_only_root_refuses_writes() {
    let env = Env::new();
    let out = env.run(&["--read-only", "bb:1", "sh", "-c", "touch /x 2>&1; echo rc=$?"]);
    assert!(stdout(&out).contains("Read-only file system"), "{}", stdout(&out));
    assert!(stdout(&out).contains("rc=1"));
    // --tmpfs gives a writable place; /dev/shm stays writable.
    let out = env.sh(&["--read-only", "--tmpfs", "/tmp"], "touch /tmp/x /dev/shm/y && echo ok");
    assert_eq!(out, "ok\n");
    // Without --read-only the writable layer is the container's own: gone in the next run.
    env.sh(&[], "echo hi > /made-here");
    assert_eq!(env.sh(&[], "ls /made-here 2>/dev/null; echo done"), "done\n");
}

#[test]
fn dotdot_and_symlinks_cannot_leave_the_root() {
    let escape_to = tempfile::tempdir().unwrap();
    let target = escape_to.path().join("escaped");
    let link = format!("../../../../../../../..{}", target.display());
    let image = busybox_image(
        &[],
        vec![img::test_image::Layer::new([
            img::test_image::Entry::symlink("up", "../../../../../.."),
            img::test_image::Entry::symlink("abs", &target.to_string_lossy()),
            img::test_image::Entry::symlink("rel", &link),
        ])],
    );
    let env = Env::with_image(image);
    let root = env.sh(&[], "ls /");
    assert_eq!(env.sh(&[], "cd /../../..; pwd; ls"), format!("/\n{root}"));
    assert_eq!(env.sh(&[], "ls /up/"), root);
    // Mount destinations through symlinks land inside the container.
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("f"), "v").unwrap();
    let spec = format!("{}:/abs/sub", vol.path().display());
    let spec2 = format!("{}:/rel/sub", vol.path().display());
    let out = env.sh(&["-v", &spec, "-v", &spec2, "--tmpfs", "/up/t"], "cat /abs/sub/f /rel/sub/f; ls -d /t");
    assert_eq!(out, "vv/t\n");
    assert!(!target.exists(), "a mount point was made on the host");
}

#[test]
fn proc_paths_are_masked_and_read_only() {
    let env = Env::new();
    let out = env.sh(
        &[],
        "wc -c < /proc/timer_list; ls /proc/acpi 2>/dev/null | wc -l; \
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo wrote || echo refused; \
         echo x > /proc/sysrq-trigger 2>/dev/null && echo wrote || echo refused; \
         awk '$5 == \"/sys\" { print substr($6, 1, 2) }' /proc/self/mountinfo",
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "refused", "refused", "ro"], "{out}");
}

#[test]
fn dev_has_the_standard_nodes() {
    let env = Env::new();
    let out = env.sh(
        &[],
        "for d in null zero full random urandom tty; do stat -c '%n %F %t,%T' /dev/$d; done; \
         readlink /dev/ptmx; readlink /dev/fd; ls /dev/pts; echo hi > /dev/shm/x && cat /dev/shm/x; \
         head -c 4 /dev/zero | wc -c",
    );
    let expect = "/dev/null character special file 1,3\n/dev/zero character special file 1,5\n\
                  /dev/full character special file 1,7\n/dev/random character special file 1,8\n\
                  /dev/urandom character special file 1,9\n/dev/tty character special file 5,0\n\
                  pts/ptmx\n/proc/self/fd\nptmx\nhi\n4\n";
    assert_eq!(out, expect);
}

#[test]
fn network_none_has_only_loopback() {
    let env = Env::new();
    let out = env.sh(
        &["--network", "none"],
        "ls /sys/class/net; cat /sys/class/net/lo/flags; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    );
    assert_eq!(out, "lo\n0x9\nlo\n");
    // The default is the host's network: the same interfaces as the host.
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let inside = env.sh(&[], "ls /sys/class/net");
    assert_eq!(inside.lines().collect::<Vec<_>>(), host);
}

#[test]
fn etc_files_are_provided() {
    let env = Env::new();
    let out = env.sh(&["--network", "none", "-h", "web"], "cat /etc/hosts");
    assert!(out.contains("127.0.0.1\tlocalhost web"), "{out}");
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(env.sh(&[], "cat /etc/resolv.conf"), resolv);
}

#[test]
fn only_stdio_reaches_the_container() {
    let env = Env::new();
    // Descriptors left open by the caller (7: a file, 8: the host's root directory).
    let script = format!(
        "exec 7</etc/hostname 8</; IMG_ROOT={} {} bb:1 ls /proc/self/fd; \
         IMG_ROOT={} {} -w /proc/self/fd/8 bb:1 sh -c 'pwd; ls'; echo rc=$?",
        env.store.path().display(),
        img_run().display(),
        env.store.path().display(),
        img_run().display()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    let out = run_timeout(&mut cmd, "", std::time::Duration::from_secs(60));
    let text = stdout(&out);
    let mut lines = text.lines();
    // 0-2 and the directory ls is reading.
    assert_eq!(lines.next(), Some("0"));
    assert_eq!(lines.by_ref().take(3).collect::<Vec<_>>(), ["1", "2", "3"], "{text}");
    // The working directory cannot be the host's through a leaked descriptor.
    assert_eq!(lines.collect::<Vec<_>>(), ["rc=125"], "{text}");
    assert!(img_e2e::stderr(&out).contains("working directory"), "{}", img_e2e::stderr(&out));
}

#[test]
fn devices_and_privileged_as_docker_gives_them() {
    let env = Env::new();
    // --device: the host's node, under its own name or another.
    let out = env.sh(
        &["--device", "/dev/loop-control", "--device", "/dev/null:/dev/other-null"],
        "stat -c '%F %t:%T' /dev/loop-control /dev/other-null; echo gone > /dev/other-null && echo wrote",
    );
    assert_eq!(out, "character special file a:ed\ncharacter special file 1:3\nwrote\n");
    // Without it, no such node; a path that is no device is refused in one line.
    assert_eq!(env.sh(&[], "test -e /dev/loop-control && echo there || echo absent"), "absent\n");
    let out = env.run(&["--device", "/etc/hostname", "bb:1", "true"]);
    assert_eq!(code(&out), 125);
    assert!(img_e2e::stderr(&out).contains("not a device"), "{}", img_e2e::stderr(&out));

    // --privileged: every capability the kernel has, host devices, nothing masked, mounts allowed.
    // (Those img-run itself may grant: its own bounding set, which on these VMs lacks one.)
    let own = status_field(&std::fs::read_to_string("/proc/self/status").unwrap(), "CapBnd");
    let all = own.to_string();
    let status = env.sh(&["--privileged"], "cat /proc/self/status");
    assert_eq!(status_field(&status, "CapEff"), all);
    assert_eq!(status_field(&status, "CapBnd"), all);
    let out = env.sh(
        &["--privileged"],
        "test -c /dev/loop-control && echo devices; grep -c ' /proc/timer_list ' /proc/self/mountinfo; \
         grep ' /sys ' /proc/self/mountinfo | grep -q ' rw,' && echo sys-rw; \
         mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted",
    );
    assert_eq!(out, "devices\n0\nsys-rw\nmounted\n");
    // Unprivileged, /proc/timer_list is masked and mounting is refused.
    let out = env.sh(&[], "grep -c ' /proc/timer_list ' /proc/self/mountinfo; mkdir -p /mnt/t; mount -t tmpfs none /mnt/t 2>/dev/null || echo refused");
    assert_eq!(out, "1\nrefused\n");
    // --cap-drop still narrows --privileged.
    let status = env.sh(&["--privileged", "--cap-drop", "SYS_ADMIN"], "cat /proc/self/status");
    let own = u64::from_str_radix(&own, 16).unwrap();
    assert_eq!(status_field(&status, "CapEff"), format!("{:016x}", own & !(1 << 21)));
}
