//! Referrers (OCI 1.1) copied with their image: `img-pull --referrers | img-push --referrers`
//! keeps cosign-style signatures (and their own referrers) when mirroring between repositories
//! of a real `docker-registry`. distribution 2.8 has no referrers API, so this is the fallback
//! tag scheme (`sha256-<hex>`), for real, both ways. The artifacts are made here and pushed
//! with img's own registry client; skopeo checks the result.
//!
//! And credentials: a referrers request the registry redirects to another host gets none, and
//! that host asking for them is an error naming it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use img::digest::Digest;
use img::document::{Descriptor, to_canonical_json};
use img::layout::Layout;
use img::media_type;
use img::reference::Reference;
use img::registry::progress::Silent;
use img::registry::push::{self, PushOptions};
use img::registry::{Options, Registry as Client, Repository, referrers};
use img::test_image::{BuiltImage, Entry, Layer, TestImage};
use img_e2e::registry::{Auth, Fault, Proxy, Registry};
use img_e2e::{Store, assert_success, json_lines, peer, stderr};
use serde_json::{Value, json};

const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

fn image(seed: &str) -> BuiltImage {
    TestImage::new().layer(Layer::new([Entry::file("seed", seed)])).build()
}

/// An artifact manifest of `artifact_type` with one small layer, attached to `subject`,
/// written into `layout`; returns its descriptor and its blobs' digests.
fn artifact(
    layout: &Layout,
    artifact_type: &str,
    subject: &Descriptor,
    payload: &str,
) -> (Descriptor, Vec<Digest>) {
    let config = layout.put_document(media_type::OCI_EMPTY, b"{}").unwrap();
    let mut layer =
        layout.put_document("application/vnd.dev.cosign.simplesigning.v1+json", payload.as_bytes()).unwrap();
    layer.annotations.insert("dev.cosignproject.cosign/signature".into(), format!("sig-of-{payload}"));
    let mut subject = subject.clone();
    subject.annotations.clear();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    let d = layout.put_document(media_type::OCI_MANIFEST, &to_canonical_json(&manifest)).unwrap();
    (d, vec![config.digest, layer.digest])
}

fn client(host: &str, creds: Option<&str>) -> Client {
    let options = Options {
        credentials: creds.map(|c| img::registry::auth::Credentials::parse_user_password(c).unwrap()),
        ..Options::default()
    };
    Client::connect(host, &options).unwrap()
}

/// Pushes the artifacts (blobs and manifests, by digest) to `repository` and lists them in
/// the fallback tag of `subject`, as cosign does on a registry without the referrers API.
fn attach(client: &Client, layout: &Layout, repository: &str, subject: &Digest, artifacts: &[&Descriptor]) {
    let dest: Reference = format!("{}/{repository}:x", client.name()).parse().unwrap();
    for a in artifacts {
        push::push(
            client,
            layout,
            a,
            &dest.with_digest(a.digest.clone()),
            None,
            &PushOptions::default(),
            &Silent,
        )
        .unwrap();
    }
    let listed: Vec<Value> = artifacts
        .iter()
        .map(|a| {
            let mut d = (*a).clone();
            let m: Value = serde_json::from_slice(&layout.read_blob(&a.digest).unwrap()).unwrap();
            d.artifact_type = m["artifactType"].as_str().map(String::from);
            serde_json::to_value(d).unwrap()
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": listed});
    let repo = Repository::new(client, repository, true);
    repo.put_manifest(&referrers::fallback_tag(subject), media_type::OCI_INDEX, &to_canonical_json(&index))
        .unwrap();
}

fn skopeo_raw(reference: &str) -> Value {
    let text = peer("skopeo", &["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")]);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn signatures_survive_pull_referrers_into_push_referrers() {
    let registry = Registry::anonymous();
    let host = registry.host();
    let store = Store::new();
    let built = image("signed");
    let work = store.path().join("work");
    let layout = Layout::open_or_create(&work).unwrap();
    let image_desc = built.write_to(&layout, Some("app:1")).unwrap();
    let subject = image_desc.digest.clone();
    let src = format!("{host}/src/app:1");
    assert_success(
        &store.run("img-push", &["--layout", work.to_str().unwrap(), "--to", &src, "app:1"], ""),
        "push",
    );

    // A signature and an SBOM of the image, a signature of the SBOM, and a manifest listed in
    // the image's fallback tag that does not refer to it (it is not copied).
    let (sig, sig_blobs) = artifact(&layout, SIG, &image_desc, "image signature");
    let (sbom, sbom_blobs) = artifact(&layout, SBOM, &image_desc, "image sbom");
    let (sbom_sig, sbom_sig_blobs) = artifact(&layout, SIG, &sbom, "sbom signature");
    let (stranger, _) = artifact(&layout, SIG, &Descriptor::of(media_type::OCI_MANIFEST, b"other"), "other");
    let c = client(&host, None);
    attach(&c, &layout, "src/app", &subject, &[&sig, &sbom, &stranger]);
    attach(&c, &layout, "src/app", &sbom.digest, &[&sbom_sig]);

    // The library lists them as a registry without the API keeps them.
    let listed = referrers::list(&Repository::new(&c, "src/app", false), &subject, Some(SIG)).unwrap();
    assert_eq!(listed.iter().map(|d| &d.digest).collect::<Vec<_>>(), [&sig.digest, &stranger.digest]);

    // Pull with referrers into the store.
    let out = store.run("img-pull", &["--referrers", &src], "");
    assert_success(&out, "img-pull --referrers");
    let pulled = json_lines(&out.stdout);
    assert_eq!(pulled.len(), 1, "one record: the image");
    assert_eq!(pulled[0]["digest"], subject.to_string());
    let stored = Layout::open(store.layout()).unwrap();
    let index = stored.read_index().unwrap();
    let unnamed: Vec<&Digest> =
        index.entries().iter().filter(|e| e.ref_name().is_none()).map(|e| &e.digest).collect();
    assert_eq!(unnamed.len(), 3, "sig, sbom and the sbom's sig: {unnamed:?}");
    for d in [&sig.digest, &sbom.digest, &sbom_sig.digest] {
        assert!(unnamed.contains(&d), "{d} is not kept in index.json");
    }
    assert!(!stored.has_blob(&stranger.digest), "a manifest that does not refer to the image was copied");
    for b in sig_blobs.iter().chain(&sbom_blobs).chain(&sbom_sig_blobs) {
        assert!(stored.has_blob(b), "blob {b} missing");
    }
    let in_layout = referrers::in_layout(&stored, &subject).unwrap();
    assert_eq!(in_layout.len(), 2);
    assert!(in_layout.iter().any(|d| d.artifact_type.as_deref() == Some(SBOM)));
    // img-inspect lists them, for the local copy and in the registry.
    let referred = |rec: &serde_json::Value| {
        let mut d: Vec<String> = rec["referrers"]
            .as_array()
            .unwrap_or_else(|| panic!("no referrers in {rec}"))
            .iter()
            .map(|r| {
                assert_eq!(r["subject"], subject.to_string(), "{r}");
                r["digest"].as_str().unwrap().to_string()
            })
            .collect();
        d.sort();
        d
    };
    let mut expected = vec![sig.digest.to_string(), sbom.digest.to_string()];
    expected.sort();
    let local = store.records("img-inspect", &["--referrers", &src], "");
    assert_eq!(referred(&local[0]), expected);
    let remote = store.records("img-inspect", &["--remote", "--referrers", &src], "");
    let mut with_stranger = expected.clone();
    with_stranger.push(stranger.digest.to_string());
    with_stranger.sort();
    // The registry's fallback index lists what was attached to it, the stranger too (as the
    // referrers API of a registry would not, the fallback tag is whatever a client wrote).
    assert_eq!(referred(&remote[0]), with_stranger);
    // img-ls lists images, not their signatures.
    let listed = store.records("img-ls", &["--json"], "");
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Pulling again is idempotent.
    assert_success(&store.run("img-pull", &["--referrers", &src], ""), "img-pull --referrers again");
    assert_eq!(Layout::open(store.layout()).unwrap().read_index().unwrap().entries().len(), 4);

    // Push to another repository, through the pipeline.
    let dst = format!("{host}/dst/app:1");
    let line = serde_json::to_string(&pulled[0]).unwrap();
    let out = store.run("img-push", &["--referrers", "--to", &dst], &line);
    assert_success(&out, "img-pull --referrers | img-push --referrers");
    assert_eq!(json_lines(&out.stdout)[0]["digest"], subject.to_string());

    // skopeo sees the fallback tag index in dst, listing manifests that name the image, whose
    // blobs are there.
    let fallback = skopeo_raw(&format!("{host}/dst/app:{}", referrers::fallback_tag(&subject)));
    assert_eq!(fallback["mediaType"], media_type::OCI_INDEX);
    let manifests = fallback["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{fallback}");
    let dst_repo = Repository::new(&c, "dst/app", false);
    for m in manifests {
        let digest = m["digest"].as_str().unwrap();
        assert!(
            [sig.digest.to_string(), sbom.digest.to_string()].contains(&digest.to_string()),
            "unexpected {digest}"
        );
        assert!(m["artifactType"].as_str().is_some(), "{m}");
        let doc = skopeo_raw(&format!("{host}/dst/app@{digest}"));
        assert_eq!(doc["subject"]["digest"], subject.to_string());
        for blob in std::iter::once(&doc["config"]).chain(doc["layers"].as_array().unwrap()) {
            let b: Digest = blob["digest"].as_str().unwrap().parse().unwrap();
            assert!(dst_repo.has_blob(&b).unwrap(), "{b} is not in dst");
        }
    }
    let sig_doc = skopeo_raw(&format!("{host}/dst/app@{}", sig.digest));
    assert_eq!(sig_doc["artifactType"], SIG);
    // The SBOM's own signature went along under the SBOM's fallback tag.
    let nested = referrers::list(&dst_repo, &sbom.digest, None).unwrap();
    assert_eq!(nested.iter().map(|d| &d.digest).collect::<Vec<_>>(), [&sbom_sig.digest]);

    // A second push merges instead of replacing: a signature already at dst stays.
    let (extra, _) = artifact(&layout, SIG, &image_desc, "a dst-only signature");
    let dst_tag = referrers::fallback_tag(&subject);
    let mut with_extra = fallback.clone();
    with_extra["manifests"].as_array_mut().unwrap().push(serde_json::to_value(&extra).unwrap());
    push::push(
        &c,
        &layout,
        &extra,
        &format!("{host}/dst/app@{}", extra.digest).parse().unwrap(),
        None,
        &PushOptions::default(),
        &Silent,
    )
    .unwrap();
    Repository::new(&c, "dst/app", true)
        .put_manifest(&dst_tag, media_type::OCI_INDEX, &to_canonical_json(&with_extra))
        .unwrap();
    assert_success(
        &store.run("img-push", &["--referrers", "--to", &dst], &line),
        "img-push --referrers again",
    );
    let merged = referrers::list(&dst_repo, &subject, None).unwrap();
    assert_eq!(merged.len(), 3, "{merged:?}");

    // Removing the image takes its referrers with it, and every blob goes.
    let out = store.run("img-rm", &[&src], "");
    assert_success(&out, "img-rm");
    let left = Layout::open(store.layout()).unwrap();
    assert!(left.read_index().unwrap().entries().is_empty(), "referrers outlived their image");
    assert!(left.list_blobs().unwrap().is_empty(), "blobs left: {:?}", left.list_blobs().unwrap());
}

/// A server on another port that records each request's headers and answers 401 with a Basic
/// challenge of its own.
fn asking_for_credentials() -> (u16, Arc<Mutex<Vec<Vec<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            seen2.lock().unwrap().push(head);
            let mut out = stream;
            let _ = out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"elsewhere\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, seen)
}

#[test]
fn a_referrers_request_redirected_elsewhere_gets_no_credentials() {
    let registry = Registry::start(Auth::Basic { user: "u".into(), password: "p".into() }, false);
    let store = Store::new();
    let built = image("private");
    let work = store.path().join("work");
    built.write_to(&Layout::open_or_create(&work).unwrap(), Some("app:1")).unwrap();
    let to = format!("{}/src/app:1", registry.host());
    assert_success(
        &store.run(
            "img-push",
            &["--layout", work.to_str().unwrap(), "--creds", "u:p", "--to", &to, "app:1"],
            "",
        ),
        "push",
    );
    let (evil_port, seen) = asking_for_credentials();
    let front = Proxy::start(registry.port);
    for path in ["GET /v2/src/app/referrers/", "GET /v2/src/app/manifests/sha256-"] {
        front.add(path, Fault::Redirect(format!("http://127.0.0.1:{evil_port}")), 100);
    }
    let reference = format!("{}/src/app:1", front.host());
    let out = store.run("img-pull", &["--creds", "u:p", "--retries", "0", "--referrers", &reference], "");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{evil_port}")), "the error does not name the other host: {err}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the redirect was not followed (the test proves nothing)");
    for head in &seen {
        assert!(
            !head.iter().any(|h| h.to_ascii_lowercase().starts_with("authorization:") || h.contains("dTpw")),
            "credentials went to another host: {head:?}"
        );
    }
    assert!(
        front
            .heads()
            .iter()
            .any(|h| h[1..].iter().any(|l| l.to_ascii_lowercase().starts_with("authorization:"))),
        "the registry itself never got credentials (the test proves nothing)"
    );
}

#[test]
fn a_registry_with_the_referrers_api_is_asked_that_way_and_keeps_its_own_index() {
    let registry = Registry::anonymous();
    let host = registry.host();
    let store = Store::new();
    let built = image("api");
    let work = store.path().join("work");
    let layout = Layout::open_or_create(&work).unwrap();
    let image_desc = built.write_to(&layout, Some("app:1")).unwrap();
    let src = format!("{host}/src/app:1");
    assert_success(
        &store.run("img-push", &["--layout", work.to_str().unwrap(), "--to", &src, "app:1"], ""),
        "push",
    );
    let (sig, _) = artifact(&layout, SIG, &image_desc, "api signature");
    let c = client(&host, None);
    // The signature is in the repository, but in no fallback tag: only the (simulated)
    // referrers API lists it.
    let dest: Reference = format!("{host}/src/app@{}", sig.digest).parse().unwrap();
    push::push(&c, &layout, &sig, &dest, None, &PushOptions::default(), &Silent).unwrap();
    let mut listed = sig.clone();
    listed.artifact_type = Some(SIG.into());
    let api_index = to_canonical_json(&json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [listed],
    }));
    let front = Proxy::start(registry.port);
    front.add("GET /v2/src/app/referrers/", Fault::Respond(media_type::OCI_INDEX.into(), api_index), 100);
    let empty =
        to_canonical_json(&json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []}));
    front.add("GET /v2/dst/app/referrers/", Fault::Respond(media_type::OCI_INDEX.into(), empty), 100);

    let out = store.run("img-pull", &["--referrers", &format!("{}/src/app:1", front.host())], "");
    assert_success(&out, "img-pull --referrers from a registry with the API");
    let stored = Layout::open(store.layout()).unwrap();
    assert!(stored.has_blob(&sig.digest), "the signature the API listed was not copied");
    assert!(
        !front.requests().iter().any(|r| r.contains(&referrers::fallback_tag(&image_desc.digest))),
        "the fallback tag was asked for although the API answered: {:?}",
        front.requests()
    );

    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let dst = format!("{}/dst/app:1", front.host());
    let out = store.run("img-push", &["--referrers", "--to", &dst], &line);
    assert_success(&out, "img-push --referrers to a registry with the API");
    let requests = front.requests();
    assert!(
        requests.iter().any(|r| r.starts_with(&format!("PUT /v2/dst/app/manifests/{}", sig.digest))),
        "the signature was not pushed by digest: {requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.starts_with("PUT /v2/dst/app/manifests/sha256-")),
        "a fallback tag was written although the registry keeps its own index: {requests:?}"
    );
}
