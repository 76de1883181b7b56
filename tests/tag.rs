//! img-tag: new names for an image of a layout, as `docker tag`. The new names resolve to the
//! same digest and descriptor in img-ls, in index.json and for skopeo; errors are one line.

use std::fs;

use img::layout::Layout;
use img::test_image::{Entry, Layer, TestImage};
use img_e2e::{Store, check, json_lines, peer, stderr};
use serde_json::Value;

/// A store holding `app:1` (an image) and `plat:1` (its descriptor with a platform and an
/// annotation, as a pull of one platform of an index writes it). Returns the manifest digest.
fn store_with_app() -> (Store, String) {
    let store = Store::new();
    let layout = Layout::open_or_create(store.layout()).unwrap();
    let built = TestImage::new().layer(Layer::new([Entry::file("etc/hello", "hi\n")])).build();
    built.write_to(&layout, Some("docker.io/library/app:1")).unwrap();
    let mut desc = built.platform_descriptor();
    desc.annotations.insert("org.example.note".into(), "kept".into());
    layout.set_ref("docker.io/library/plat:1", &desc).unwrap();
    (store, built.manifest.descriptor.digest.to_string())
}

/// The index.json entry named `name`, without its name.
fn entry(store: &Store, name: &str) -> Value {
    let index = check::index(&store.layout());
    let mut found = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {index}"))
        .clone();
    let annotations = found["annotations"].as_object_mut().unwrap();
    annotations.remove("org.opencontainers.image.ref.name");
    if annotations.is_empty() {
        found.as_object_mut().unwrap().remove("annotations");
    }
    found
}

#[test]
fn new_names_resolve_to_the_same_image_in_img_ls_index_json_and_skopeo() {
    let (store, digest) = store_with_app();
    let out = store.records("img-tag", &["app:1", "app:2", "localhost:5000/team/app"], "");
    let refs: Vec<&str> = out.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["docker.io/library/app:2", "localhost:5000/team/app:latest"]);
    assert!(out.iter().all(|r| r["digest"] == digest && r["platform"].is_string()), "{out:?}");

    for name in ["app:2", "localhost:5000/team/app:latest"] {
        let listed = store.records("img-ls", &["--json", name], "");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["digest"], digest);
    }
    assert_eq!(entry(&store, "docker.io/library/app:2"), entry(&store, "docker.io/library/app:1"));
    // skopeo reads the new names, with the digest of the old one.
    let layout = store.layout();
    for name in ["docker.io/library/app:2", "localhost:5000/team/app:latest"] {
        let inspected: Value =
            serde_json::from_str(&peer("skopeo", &["inspect", &format!("oci:{}:{name}", layout.display())]))
                .unwrap();
        assert_eq!(inspected["Digest"], digest, "{name}");
    }

    // The descriptor is copied whole: platform and annotations too.
    store.records("img-tag", &["plat:1", "plat:copy"], "");
    let copy = entry(&store, "docker.io/library/plat:copy");
    assert_eq!(copy, entry(&store, "docker.io/library/plat:1"));
    assert_eq!(copy["annotations"]["org.example.note"], "kept");
    assert!(copy["platform"]["architecture"].is_string(), "{copy}");

    // By digest; and retagging moves a name.
    let by_digest = store.records("img-tag", &[&digest, "bydigest:1", "app:1"], "");
    assert_eq!(by_digest.len(), 2);
    let names: Vec<String> = check::refs(&layout).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.iter().filter(|n| *n == "docker.io/library/app:1").count(), 1, "{names:?}");
    check::assert_complete(&layout);
}

#[test]
fn stdin_records_are_tagged_with_the_arguments() {
    let (store, digest) = store_with_app();
    let listed = store.run("img-ls", &["--json", "app:1"], "");
    let line = String::from_utf8(listed.stdout).unwrap();
    let out = store.records("img-tag", &["piped:1"], &line);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0]["ref"].as_str(), out[0]["digest"].as_str()),
        (Some("docker.io/library/piped:1"), Some(&*digest))
    );
    // `-` names stdin explicitly, and takes several new names.
    let out = store.records("img-tag", &["-", "dash:1", "dash:2"], "docker.io/library/app:1\n");
    assert_eq!(out.len(), 2);
    // An empty pipeline (a blank line; no input at all is /dev/null, nothing upstream) tags nothing.
    assert!(store.records("img-tag", &["nothing:1"], "\n").is_empty());
    assert!(check::refs(&store.layout()).iter().all(|(n, _)| n != "docker.io/library/nothing:1"));
    // Two images cannot share one name.
    let two = format!("{line}{line}");
    let out = store.run("img-tag", &["twice:1"], &two);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn unknown_images_and_usage_errors() {
    let (store, _) = store_with_app();
    let before = fs::read(store.layout().join("index.json")).unwrap();

    let out = store.run("img-tag", &["nope:1", "x:1"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("img-tag: nope:1: no such image in "), "{err}");
    assert!(json_lines(&out.stdout).is_empty());

    for args in [&[][..], &["app:1", "Bad:Name"][..], &["app:1", "x@sha256:abc"][..]] {
        let out = store.run("img-tag", args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(
        fs::read(store.layout().join("index.json")).unwrap(),
        before,
        "a failed img-tag changed index.json"
    );
}
