//! Independent checks of a layout on disk, for tests that must prove a layout is whole: they
//! read the files themselves instead of trusting the library under test.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use img::digest::{Algorithm, Hasher};
use serde_json::Value;

/// The `algorithm:hex` digest of a file's content.
pub fn digest_of_file(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let algorithm = if path.parent().and_then(Path::file_name).is_some_and(|a| a == "sha512") {
        Algorithm::Sha512
    } else {
        Algorithm::Sha256
    };
    let mut h = Hasher::new(algorithm);
    h.update(&bytes);
    h.finish().to_string()
}

/// Every file under `blobs/`, as `algorithm:hex` names.
pub fn blob_names(layout: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(algs) = fs::read_dir(layout.join("blobs")) else { return out };
    for alg in algs {
        let alg = alg.unwrap();
        for blob in fs::read_dir(alg.path()).unwrap() {
            let blob = blob.unwrap();
            out.insert(format!(
                "{}:{}",
                alg.file_name().to_string_lossy(),
                blob.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// Panics unless every file under `blobs/` holds exactly the content its name says.
pub fn assert_no_bad_blob(layout: &Path) {
    for name in blob_names(layout) {
        let (alg, hex) = name.split_once(':').unwrap();
        let actual = digest_of_file(&layout.join("blobs").join(alg).join(hex));
        assert_eq!(actual, name, "blob {name} of {} has the wrong content", layout.display());
    }
}

/// `index.json` parsed, panicking with its text if it is not a valid index.
pub fn index(layout: &Path) -> Value {
    let text = fs::read_to_string(layout.join("index.json")).expect("index.json is there");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("index.json does not parse ({e}): {text}"));
    assert_eq!(v["schemaVersion"], 2, "index.json: {text}");
    assert!(v["manifests"].is_array(), "index.json: {text}");
    v
}

/// The `(ref name, digest)` of every `index.json` entry (ref `""` when it has none).
pub fn refs(layout: &Path) -> Vec<(String, String)> {
    index(layout)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or("");
            (name.to_string(), m["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Panics unless the layout is valid and every image `index.json` names is complete: each blob
/// reachable from it (through indexes, manifests, configs, layers, subjects) is present, has
/// the size its descriptor says and hashes to its name. Returns every reachable digest.
pub fn assert_complete(layout: &Path) -> BTreeSet<String> {
    assert!(layout.join("oci-layout").is_file(), "{}: no oci-layout", layout.display());
    let mut seen = BTreeSet::new();
    let mut stack: Vec<Value> = index(layout)["manifests"].as_array().unwrap().clone();
    while let Some(desc) = stack.pop() {
        let digest = desc["digest"].as_str().expect("descriptor has a digest").to_string();
        if !seen.insert(digest.clone()) {
            continue;
        }
        let (alg, hex) = digest.split_once(':').unwrap();
        let path = layout.join("blobs").join(alg).join(hex);
        assert!(path.is_file(), "blob {digest} ({}) is missing from {}", desc["mediaType"], layout.display());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, desc["size"].as_u64().unwrap(), "blob {digest} has the wrong size");
        assert_eq!(digest_of_file(&path), digest, "blob {digest} has the wrong content");
        let media_type = desc["mediaType"].as_str().unwrap_or("");
        if media_type.contains("manifest") || media_type.contains("index") {
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            for key in ["manifests", "layers"] {
                stack.extend(doc[key].as_array().into_iter().flatten().cloned());
            }
            for key in ["config", "subject"] {
                if doc[key].is_object() {
                    stack.push(doc[key].clone());
                }
            }
        }
    }
    seen
}

/// Files left in our private temp directory (by killed writers).
pub fn temp_files(layout: &Path) -> usize {
    fs::read_dir(layout.join(".img/tmp")).map_or(0, |d| d.count())
}
