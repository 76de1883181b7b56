//! Tests of the layout as a whole: blobs, partial downloads, refs, locks, creation, and
//! refusing symlinks planted in the layout.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::Layout;
use crate::digest::{Algorithm, Digest, Expected};
use crate::document::{Descriptor, REF_NAME_ANNOTATION};

#[test]
fn creates_puts_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path().join("l")).unwrap();
    assert!(layout.root().join("oci-layout").is_file());
    assert!(layout.read_index().unwrap().entries().is_empty());
    let d = layout.put_bytes(b"hello").unwrap();
    assert_eq!(layout.read_blob(&d).unwrap(), b"hello");
    assert_eq!(layout.list_blobs().unwrap(), vec![(d.clone(), 5)]);
    let mode = fs::metadata(layout.blob_path(&d)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    Layout::open(layout.root()).unwrap();
}

#[test]
fn a_wrong_blob_is_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path()).unwrap();
    let want = Digest::of(b"hello");
    let err = layout.put_blob(&b"hellO"[..], Expected::new(&want, 5)).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(layout.list_blobs().unwrap().is_empty());
    assert_eq!(fs::read_dir(layout.private_dir("tmp").unwrap()).unwrap().count(), 0);
}

#[test]
fn partial_blobs_resume_and_never_commit_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path()).unwrap();
    let want = Digest::of(b"hello world");
    let mut p = layout.partial_blob(&want, 11).unwrap().unwrap();
    p.write_all(b"hello").unwrap();
    drop(p);
    let mut p = layout.partial_blob(&want, 11).unwrap().unwrap();
    assert_eq!(p.offset(), 5);
    p.write_all(b" world").unwrap();
    p.commit().unwrap();
    assert_eq!(layout.read_blob(&want).unwrap(), b"hello world");
    assert!(layout.partial_blob(&want, 11).unwrap().is_none());

    let other = Digest::of(b"abc");
    let mut p = layout.partial_blob(&other, 3).unwrap().unwrap();
    p.write_all(b"abd").unwrap();
    assert!(p.commit().unwrap_err().to_string().contains("digest mismatch"));
    assert!(!layout.has_blob(&other));
    assert_eq!(layout.partial_blob(&other, 3).unwrap().unwrap().offset(), 0);
}

#[test]
fn refs_replace_same_image_and_keep_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path()).unwrap();
    fs::write(layout.index_path(), r#"{"schemaVersion":2,"manifests":[],"annotations":{"x":"y"}}"#).unwrap();
    let a = Descriptor::of(crate::media_type::OCI_MANIFEST, b"a");
    let b = Descriptor::of(crate::media_type::OCI_MANIFEST, b"b");
    layout.set_ref("alpine:3", &a).unwrap();
    layout.set_ref("docker.io/library/alpine:3", &b).unwrap();
    layout.set_ref("docker.io/library/alpine:4", &a).unwrap();
    let index = layout.read_index().unwrap();
    let names: Vec<_> = index.entries().iter().map(|e| e.ref_name().unwrap()).collect();
    assert_eq!(names, ["docker.io/library/alpine:3", "docker.io/library/alpine:4"]);
    assert_eq!(index.entries()[0].digest, b.digest);
    let raw: Value = serde_json::from_slice(&fs::read(layout.index_path()).unwrap()).unwrap();
    assert_eq!(raw["annotations"]["x"], "y");
}

#[test]
fn a_writer_waiting_for_gc_keeps_its_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path()).unwrap();
    let gc = layout.lock_for_gc().unwrap();
    let other = layout.clone();
    let writer = std::thread::spawn(move || other.put_bytes(b"written while GC ran"));
    // Give the writer time to block on the GC lock (if it is quicker, the test proves less).
    std::thread::sleep(std::time::Duration::from_millis(200));
    layout.remove_stale_temp_files().unwrap(); // what GC does while it holds its lock
    drop(gc);
    let d = writer.join().unwrap().expect("the writer's blob survives a GC it waited for");
    assert_eq!(layout.read_blob(&d).unwrap(), b"written while GC ran");
}

#[test]
fn concurrent_creators_all_open_the_same_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || Layout::open_or_create(root).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("a concurrent creator failed");
    }
    Layout::open(&root).unwrap();
    // A directory that holds something else is still refused, and left as it was.
    let foreign = dir.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = Layout::open_or_create(&foreign).unwrap_err().to_string();
    assert!(err.contains("not an OCI image layout"), "{err}");
    assert_eq!(fs::read_dir(&foreign).unwrap().count(), 1);
}

#[test]
fn sha512_blobs_and_layouts_without_a_sha256_directory() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path()).unwrap();
    fs::remove_dir(dir.path().join("blobs/sha256")).unwrap();
    let d = layout.put_bytes(b"x").unwrap();
    assert_eq!(layout.read_blob(&d).unwrap(), b"x");
    let mut h = crate::digest::Hasher::new(Algorithm::Sha512);
    h.update(b"y");
    let d512 = h.finish();
    layout.put_blob(&b"y"[..], Expected::new(&d512, 1)).unwrap();
    assert_eq!(layout.read_blob(&d512).unwrap(), b"y");
    assert_eq!(layout.list_blobs().unwrap().len(), 2);
}

#[test]
fn entries_keep_fields_we_do_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path()).unwrap();
    let a = Descriptor::of(crate::media_type::OCI_MANIFEST, b"a");
    let b = Descriptor::of(crate::media_type::OCI_MANIFEST, b"b");
    let entry = |d: &Descriptor, name: &str| {
        serde_json::json!({
            "mediaType": d.media_type, "digest": d.digest, "size": d.size, "data": "YQ==",
            "platform": {"os": "windows", "architecture": "amd64", "os.features": ["win32k"]},
            "annotations": {REF_NAME_ANNOTATION: name},
        })
    };
    let doc = serde_json::json!({"schemaVersion": 2, "manifests": [entry(&a, "a"), entry(&b, "b"), entry(&a, "c")]});
    fs::write(layout.index_path(), doc.to_string()).unwrap();
    layout.update_index(|i| Ok(i.remove(&i.find("b:latest")))).unwrap();
    layout.set_ref("docker.io/library/d:1", &b).unwrap();
    let raw: Value = serde_json::from_slice(&fs::read(layout.index_path()).unwrap()).unwrap();
    assert_eq!(raw["manifests"][0], entry(&a, "a"));
    assert_eq!(raw["manifests"][1], entry(&a, "c"));
    assert_eq!(raw["manifests"][2]["annotations"][REF_NAME_ANNOTATION], "docker.io/library/d:1");
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 3);
    let index = layout.read_index().unwrap();
    assert_eq!(index.entries().len(), 3);
    assert_eq!(index.entries()[2].digest, b.digest);
}

#[test]
fn writes_never_go_through_a_symlink_planted_in_the_layout() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open_or_create(dir.path().join("l")).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("file"), "precious").unwrap();
    let untouched = |what: &str| {
        let names: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["file"], "{what}");
        assert_eq!(fs::read(outside.join("file")).unwrap(), b"precious", "{what}");
    };

    // A partial download that is a symlink to a file outside: not opened, not truncated.
    let want = Digest::of(b"hello");
    let partial = layout.private_dir("partial").unwrap().join(format!("sha256-{}", want.hex()));
    symlink(outside.join("file"), &partial).unwrap();
    let err = layout.partial_blob(&want, 5).err().expect("a symlinked partial file is refused").to_string();
    assert!(err.contains("symlink"), "{err}");
    untouched("partial");
    fs::remove_file(&partial).unwrap();

    // A temp directory that is a symlink: no blob is written there, no index.json either.
    let tmp = layout.private_dir("tmp").unwrap();
    fs::remove_dir(&tmp).unwrap();
    symlink(&outside, &tmp).unwrap();
    let err = layout.put_bytes(b"x").unwrap_err().to_string();
    assert!(err.contains(".img/tmp") && err.contains("symlink"), "{err}");
    let err = layout.set_ref("a:1", &Descriptor::of(crate::media_type::OCI_MANIFEST, b"a")).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    untouched("tmp");
    fs::remove_file(&tmp).unwrap();

    // A blob directory that is a symlink: nothing stored, listed or removed through it.
    fs::remove_dir(dir.path().join("l/blobs/sha256")).unwrap();
    symlink(&outside, dir.path().join("l/blobs/sha256")).unwrap();
    assert!(layout.put_bytes(b"y").unwrap_err().to_string().contains("symlink"));
    assert!(layout.list_blobs().unwrap_err().to_string().contains("symlink"));
    assert!(layout.remove_blob(&Digest::of(b"y")).unwrap_err().to_string().contains("symlink"));
    assert!(!layout.has_blob(&Digest::of(b"y")));
    untouched("blobs");
    // The same layout with real directories works as before.
    fs::remove_file(dir.path().join("l/blobs/sha256")).unwrap();
    let d = layout.put_bytes(b"z").unwrap();
    assert_eq!(layout.read_blob(&d).unwrap(), b"z");
}

#[test]
fn corrupt_index_and_missing_layout_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Layout::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not an OCI image layout"), "{err}");
    let layout = Layout::open_or_create(dir.path()).unwrap();
    fs::write(layout.index_path(), "{not json").unwrap();
    let err = format!("{:#}", layout.read_index().unwrap_err());
    assert!(err.contains("corrupt index"), "{err}");
    let d = layout.put_bytes(b"x").unwrap();
    fs::write(layout.blob_path(&d), "y").unwrap();
    let err = layout.read_blob(&d).unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
}
