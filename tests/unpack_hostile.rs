//! Hostile layers: every path is resolved inside the rootfs, so each of these is contained in
//! it or refused with a clear error, and a directory outside (standing for the host) is
//! untouched. Run as root, where a mistake would really write to the host.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use img_e2e::rawtar::{self, RawTar, header};
use img_e2e::tree::{self, Kind, Tree, file};
use img_e2e::{Store, assert_success, stderr};
use serde_json::json;

/// A store, and a directory outside it with files a hostile layer would like to reach.
struct Scene {
    store: Store,
    outside: tempfile::TempDir,
    before: Tree,
}

impl Scene {
    fn new() -> Scene {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), "precious").unwrap();
        fs::create_dir(outside.path().join("dir")).unwrap();
        fs::write(outside.path().join("dir/inner"), "also precious").unwrap();
        let before = tree::snapshot(outside.path());
        Scene { store: Store::new(), outside, before }
    }

    fn outside(&self) -> &str {
        self.outside.path().to_str().unwrap()
    }

    fn rootfs(&self) -> PathBuf {
        self.store.path().join("out")
    }

    /// Unpacks layers (uncompressed tars) with img-unpack, then checks the outside is as it
    /// was and that the store holds nothing but the layout and, on success, the rootfs.
    fn unpack(&self, tars: &[Vec<u8>]) -> Output {
        rawtar::write_image(&self.store.layout(), "evil:1", tars, true, json!({}));
        let rootfs = self.rootfs();
        let args = ["--rootfs-only", "--bundle", rootfs.to_str().unwrap(), "evil:1"];
        let out = self.store.run("img-unpack", &args, "");
        img_e2e::assert_walk_agrees(&self.store, &args, &out);
        assert_eq!(tree::snapshot(self.outside.path()), self.before, "the outside changed");
        let mut names: Vec<String> = fs::read_dir(self.store.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let want: &[&str] = if out.status.success() { &["layout", "out"] } else { &["layout"] };
        assert_eq!(names, want, "stray files next to the rootfs: {}", stderr(&out));
        out
    }

    fn contained(&self, tars: &[Vec<u8>]) -> Tree {
        let out = self.unpack(tars);
        assert_success(&out, "img-unpack");
        tree::snapshot(&self.rootfs())
    }

    fn refused(&self, tars: &[Vec<u8>], message: &str) {
        let out = self.unpack(tars);
        assert!(!out.status.success(), "img-unpack accepted a hostile layer");
        let err = stderr(&out);
        assert!(err.contains(message), "stderr lacks {message:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line of error: {err}");
    }
}

fn path_in(rootfs_path: &Path) -> String {
    rootfs_path.to_str().unwrap().trim_start_matches('/').to_string()
}

#[test]
fn dotdot_names_are_refused() {
    for name in [&b"../escaped"[..], b"../../../../../../escaped", b"a/../../escaped", b"./../escaped"] {
        let s = Scene::new();
        s.refused(&[RawTar::new().file(name, b"x").finish()], "leaves the root");
        assert!(!s.store.path().parent().unwrap().join("escaped").exists());
    }
}

#[test]
fn absolute_names_land_inside() {
    let s = Scene::new();
    let target = format!("{}/victim", s.outside());
    let t = s.contained(&[RawTar::new().file(target.as_bytes(), b"pwned").finish()]);
    assert_eq!(t[&format!("{}/victim", path_in(s.outside.path()))].kind, file("pwned"));
}

#[test]
fn writing_through_a_symlink_stays_inside() {
    // Absolute and climbing symlinks, followed by a write through them in the same layer
    // and in a later one.
    for climb in [false, true] {
        let s = Scene::new();
        let target = if climb {
            format!("{}{}", "../".repeat(20), path_in(s.outside.path()))
        } else {
            s.outside().into()
        };
        let same_layer =
            RawTar::new().symlink(b"link", target.as_bytes()).file(b"link/victim", b"pwned").finish();
        let t = s.contained(&[same_layer]);
        assert_eq!(t[&format!("{}/victim", path_in(s.outside.path()))].kind, file("pwned"), "{target}");

        let s = Scene::new();
        let target = if climb {
            format!("{}{}", "../".repeat(20), path_in(s.outside.path()))
        } else {
            s.outside().into()
        };
        let lower = RawTar::new().symlink(b"link", target.as_bytes()).finish();
        let upper = RawTar::new().dir(b"link/dir/").file(b"link/dir/inner", b"pwned").finish();
        let t = s.contained(&[lower, upper]);
        assert_eq!(t[&format!("{}/dir/inner", path_in(s.outside.path()))].kind, file("pwned"), "{target}");
    }
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let s = Scene::new();
    let victim = format!("{}/victim", s.outside());
    s.refused(&[RawTar::new().hardlink(b"h", victim.as_bytes()).finish()], "hardlink target");
    let s = Scene::new();
    let tar =
        RawTar::new().symlink(b"up", b"../../../../../../").hardlink(b"h", format!("up{victim}").as_bytes());
    s.refused(&[tar.finish()], "hardlink target");
    let s = Scene::new();
    s.refused(&[RawTar::new().hardlink(b"h", b"../../../etc/passwd").finish()], "leaves the root");
    assert_eq!(fs::metadata(s.outside.path().join("victim")).unwrap().nlink(), 1);
}

#[test]
fn whiteouts_cannot_climb_out() {
    let s = Scene::new();
    s.refused(&[RawTar::new().file(b"../.wh.victim", b"").finish()], "leaves the root");
    // Through a symlink to the outside: resolved inside, where there is nothing to delete.
    let s = Scene::new();
    let lower = RawTar::new().symlink(b"link", s.outside().as_bytes()).file(b"keep", b"k").finish();
    let upper = RawTar::new().file(b"link/.wh.victim", b"").file(b"link/.wh..wh..opq", b"").finish();
    let t = s.contained(&[lower, upper]);
    assert_eq!(tree::paths(&t), ["keep", "link"]);
}

#[test]
fn a_symlink_named_dot_is_refused() {
    // CVE-2021-29136: a symlink replacing the root itself would redirect every later entry.
    for name in [&b"."[..], b"./", b"a/.."] {
        let s = Scene::new();
        let tar =
            RawTar::new().dir(b"a/").symlink(name, s.outside().as_bytes()).file(b"victim", b"pwned").finish();
        s.refused(&[tar], "cannot replace the root");
    }
}

#[test]
fn replacing_a_directory_does_not_follow_the_symlinks_in_it() {
    let s = Scene::new();
    let lower = RawTar::new()
        .dir(b"d/")
        .symlink(b"d/link", s.outside().as_bytes())
        .symlink(b"d/rel", b"../../../../../../../../")
        .finish();
    let upper = RawTar::new().file(b"d", b"now a file").finish();
    let t = s.contained(&[lower, upper]);
    assert_eq!(tree::paths(&t), ["d"]);
    assert_eq!(t["d"].kind, file("now a file"));
    // And a whiteout of the directory, and an opaque marker in it, likewise.
    let s = Scene::new();
    let lower = RawTar::new().dir(b"d/").symlink(b"d/link", s.outside().as_bytes()).finish();
    let upper = RawTar::new().file(b".wh.d", b"").finish();
    assert!(tree::paths(&s.contained(&[lower, upper])).is_empty());
    let s = Scene::new();
    let lower = RawTar::new().dir(b"d/").symlink(b"d/link", s.outside().as_bytes()).finish();
    let upper = RawTar::new().file(b"d/link/.wh..wh..opq", b"").file(b"d/.wh..wh..opq", b"").finish();
    assert_eq!(tree::paths(&s.contained(&[lower, upper])), ["d"]);
}

#[test]
fn symlink_loops_and_files_as_parents_are_errors() {
    let s = Scene::new();
    s.refused(&[RawTar::new().symlink(b"loop", b"loop").file(b"loop/x", b"x").finish()], "symbolic links");
    let s = Scene::new();
    s.refused(&[RawTar::new().file(b"f", b"f").file(b"f/x", b"x").finish()], "Not a directory");
}

#[test]
fn huge_headers_are_refused() {
    // A PAX header of 64 MiB (a few KiB once gzipped) would otherwise be read into memory.
    let s = Scene::new();
    let body = vec![b'a'; 64 << 20];
    let tar = RawTar::new().raw(&header(b"PaxHeader", b'x', body.len() as u64, b"", 0o644), &body);
    s.refused(&[tar.file(b"f", b"f").finish()], "tar headers of one entry exceed");
    // A GNU long name likewise.
    let s = Scene::new();
    let body = vec![b'n'; 16 << 20];
    let tar = RawTar::new().raw(&header(b"././@LongLink", b'L', body.len() as u64, b"", 0o644), &body);
    s.refused(&[tar.file(b"f", b"f").finish()], "tar headers of one entry exceed");
}

#[test]
fn truncated_and_garbage_layers_are_errors() {
    let s = Scene::new();
    let mut tar = RawTar::new().file(b"f", &[7u8; 4096]).finish();
    tar.truncate(1024);
    s.refused(&[tar], "layer");
    let s = Scene::new();
    s.refused(
        &[b"this is not a tar file at all, but it is long enough to be read as a header block".repeat(10)],
        "layer",
    );
}

#[test]
fn devices_and_setuid_files_stay_inside() {
    // A device node for the host's disk is a legitimate image entry; it is made inside.
    let s = Scene::new();
    let mut h = header(b"dev/sda", b'4', 0, b"", 0o660);
    h.set_device_major(8).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_cksum();
    let t = s.contained(&[RawTar::new().raw(&h, b"").finish()]);
    assert_eq!(t["dev/sda"].kind, Kind::Block(8, 0));
}
