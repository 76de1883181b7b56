//! Referrers (OCI 1.1): the signatures, SBOMs and attestations attached to an image, which are
//! manifests (or indexes) whose `subject` names the image's digest.
//!
//! **Finding them in a registry** ([`list`]): the referrers API, `GET
//! /v2/<name>/referrers/<digest>` (an image index; `artifactType` filters it), and when the
//! registry lacks it (404, as distribution 2.8 does), the fallback tag scheme of the
//! distribution spec: an index of the referrers pushed under the tag `sha256-<hex>`. Every
//! request goes through [`Registry::send`], so credentials go where they go for a pull, and a
//! referrer's manifest is fetched by digest and checked against it like any other.
//!
//! **Keeping them in a layout**: a referrer is an ordinary manifest in `blobs/`, listed in
//! `index.json` as an entry of its own with no `org.opencontainers.image.ref.name` (as oras
//! keeps them: the entry is a root, the `subject` edge leads to the image). So GC keeps it (and
//! its blobs) as long as the entry is there; [`in_layout`] finds a subject's referrers by
//! reading the unnamed entries' documents; [`orphaned`] says which entries to drop with their
//! subject (img-rm), since an entry would otherwise keep its subject's blobs alive.
//!
//! **Copying** ([`pull`], [`push`]): the referrers of an image and, recursively, theirs (a
//! signature of an SBOM), at most [`MAX_DEPTH`] levels and [`MAX_COUNT`] documents, so a
//! registry cannot make a pull endless. A push uses the referrers API when the destination has
//! it (the registry indexes pushed manifests itself), else merges the referrers into the
//! destination's fallback tag index (read, add what is missing, put back; two pushes racing on
//! one subject can lose an entry, as with every client of the fallback scheme).

use std::collections::{BTreeSet, VecDeque};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use ureq::http::Method;

use super::errors::describe;
use super::progress::Progress;
use super::push::{self, PushOptions};
use super::{Body, Registry, Repository, status_error};
use crate::digest::Digest;
use crate::document::{self, Descriptor, MAX_MANIFEST_BYTES};
use crate::layout::{IndexFile, Layout};
use crate::media_type::{self, Kind};
use crate::reference::Reference;

/// How many levels of referrers are copied (referrers of the image, theirs, and theirs).
pub const MAX_DEPTH: usize = 3;
/// How many referrer documents one image's copy takes at most.
pub const MAX_COUNT: usize = 256;

/// The fallback tag under which a subject's referrers index is kept: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().name(), subject.hex())
}

/// Where a list of referrers came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The registry's referrers API.
    Api,
    /// The fallback tag's index (possibly absent: no referrers).
    FallbackTag,
}

/// The referrers of `subject` in a repository, as the registry lists them: the descriptors of
/// the manifests that name it as their subject, with their `artifactType` and annotations.
/// `artifact_type` keeps only those of that type. For other tools (img-inspect) as well as
/// for [`pull`].
pub fn list(repo: &Repository, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
    Ok(list_from(repo, subject, artifact_type)?.0)
}

/// [`list`], saying whether the registry has the referrers API.
pub fn list_from(
    repo: &Repository,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<(Vec<Descriptor>, Source)> {
    let mut path = format!("{}/referrers/{subject}", repo.name);
    if let Some(t) = artifact_type {
        path += &format!("?artifactType={}", query_escape(t));
    }
    let (found, source) = match get_index(repo, &path)? {
        Some(index) => (index, Source::Api),
        None => {
            let tag = format!("{}/manifests/{}", repo.name, fallback_tag(subject));
            (get_index(repo, &tag)?.unwrap_or_default(), Source::FallbackTag)
        }
    };
    let mut out: Vec<Descriptor> = Vec::new();
    for d in found.manifests {
        let wanted = artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t));
        if wanted && !out.iter().any(|o| o.digest == d.digest) {
            out.push(d);
        }
    }
    Ok((out, source))
}

/// `GET` an index at a path under `/v2/`; `None` when the registry answers 404.
fn get_index(repo: &Repository, path: &str) -> Result<Option<document::Index>> {
    let registry = repo.registry;
    let url = registry.url(path);
    let accept = [("Accept", format!("{}, {}", media_type::OCI_INDEX, media_type::DOCKER_LIST))];
    let mut resp = registry.send(Method::GET, &url, repo.scope(), &accept, Body::Empty, || {})?;
    match resp.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        _ => return Err(status_error(resp, registry.has_credentials()).context(format!("GET /v2/{path}"))),
    }
    let bytes =
        resp.body_mut().with_config().limit(MAX_MANIFEST_BYTES).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                anyhow!("/v2/{path}: larger than {} MiB, the most we accept", MAX_MANIFEST_BYTES >> 20)
            }
            e => anyhow!("/v2/{path}: {}", describe(&e, &registry.options.timeouts)),
        })?;
    document::parse_index(&bytes).map(Some).with_context(|| format!("/v2/{path}"))
}

/// Percent-encodes a query value (media types hold `+` and `/`).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The subject a document names, if any.
fn subject_of(bytes: &[u8]) -> Option<Descriptor> {
    #[derive(serde::Deserialize)]
    struct WithSubject {
        subject: Option<Descriptor>,
    }
    serde_json::from_slice::<WithSubject>(bytes).ok()?.subject
}

/// The descriptor a referrers index lists for a referrer: its media type, digest and size,
/// its `artifactType` (the manifest's, else its config's media type) and its annotations.
fn referrer_descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    let mut d = Descriptor::of(media_type, bytes);
    let doc: Value = serde_json::from_slice(bytes).unwrap_or_default();
    d.artifact_type = doc
        .get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| doc.get("config").and_then(|c| c.get("mediaType")).and_then(Value::as_str))
        .map(String::from);
    if let Some(a) = doc.get("annotations").and_then(|a| serde_json::from_value(a.clone()).ok()) {
        d.annotations = a;
    }
    d
}

/// The referrers of `subject` kept in a layout: its unnamed `index.json` entries whose
/// document names `subject`. Each is returned as a referrers index lists it.
pub fn in_layout(layout: &Layout, subject: &Digest) -> Result<Vec<Descriptor>> {
    let index = layout.read_index()?;
    let mut out = Vec::new();
    for (entry, bytes) in referrer_entries(layout, &index) {
        if subject_of(&bytes).is_some_and(|s| &s.digest == subject)
            && !out.iter().any(|d: &Descriptor| d.digest == entry.digest)
        {
            out.push(referrer_descriptor(&entry.media_type, &bytes));
        }
    }
    Ok(out)
}

/// The unnamed manifest and index entries of `index.json` that have a subject, with their
/// documents (an entry that cannot be read is not one).
fn referrer_entries<'i>(layout: &Layout, index: &'i IndexFile) -> Vec<(&'i Descriptor, Vec<u8>)> {
    index
        .entries()
        .iter()
        .filter(|e| e.ref_name().is_none() && e.kind() != Kind::Blob)
        .filter_map(|e| {
            let bytes = layout.read_document(e).ok()?;
            subject_of(&bytes).map(|_| (e, bytes))
        })
        .collect()
}

/// Whether an `index.json` entry is a referrer kept beside its subject (img-ls leaves these
/// out of its list of images).
pub fn is_referrer_entry(layout: &Layout, entry: &Descriptor) -> bool {
    entry.ref_name().is_none()
        && entry.kind() != Kind::Blob
        && layout.read_document(entry).ok().is_some_and(|b| subject_of(&b).is_some())
}

/// Positions of the referrer entries of `index` whose subject no other entry keeps: after the
/// images they were attached to are removed, these go too (otherwise they would keep those
/// images' blobs alive). A referrer of a referrer goes with it.
pub fn orphaned(layout: &Layout, index: &IndexFile) -> Vec<usize> {
    let referrers: Vec<(usize, Digest)> = index
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, e)| e.ref_name().is_none() && e.kind() != Kind::Blob)
        .filter_map(|(i, e)| Some((i, subject_of(&layout.read_document(e).ok()?)?.digest)))
        .collect();
    let is_referrer = |i: usize| referrers.iter().any(|(r, _)| *r == i);
    let roots: Vec<Descriptor> =
        (0..index.entries().len()).filter(|&i| !is_referrer(i)).map(|i| index.entries()[i].clone()).collect();
    let Ok(mut live) = crate::layout::graph::reachable(layout, &roots).map(|r| r.digests) else {
        return Vec::new(); // unreadable images: keep everything, GC will say why
    };
    let mut kept: BTreeSet<usize> = BTreeSet::new();
    loop {
        let before = kept.len();
        for (i, subject) in &referrers {
            if !kept.contains(i) && live.contains(subject) {
                kept.insert(*i);
                let entry = index.entries()[*i].clone();
                live.extend(
                    crate::layout::graph::reachable(layout, &[entry]).map(|r| r.digests).unwrap_or_default(),
                );
            }
        }
        if kept.len() == before {
            break;
        }
    }
    referrers.into_iter().map(|(i, _)| i).filter(|i| !kept.contains(i)).collect()
}

/// Copies the referrers of `subject` (and theirs, bounded) from a repository into the layout:
/// their documents and blobs, and an unnamed `index.json` entry each. Returns their descriptors.
pub fn pull(
    repo: &Repository,
    layout: &Layout,
    subject: &Digest,
    progress: &dyn Progress,
) -> Result<Vec<Descriptor>> {
    let _writing = layout.lock_for_writing()?;
    let mut copied: Vec<Descriptor> = Vec::new();
    let mut queue: VecDeque<(Digest, usize)> = VecDeque::from([(subject.clone(), 0)]);
    let mut seen: BTreeSet<Digest> = BTreeSet::from([subject.clone()]);
    while let Some((of, depth)) = queue.pop_front() {
        for listed in list(repo, &of, None).with_context(|| format!("referrers of {of}"))? {
            if listed.kind() == Kind::Blob || !seen.insert(listed.digest.clone()) {
                continue;
            }
            if seen.len() > MAX_COUNT {
                bail!("{subject} has more than {MAX_COUNT} referrers (counting theirs): refused");
            }
            let m = repo.get_manifest(&listed.digest.to_string())?;
            // A list (a fallback tag anyone could push) may name anything: only a document
            // that says it refers to this subject is one of its referrers.
            if subject_of(&m.bytes).is_none_or(|s| s.digest != of) {
                continue;
            }
            fetch_document_blobs(repo, layout, &m.media_type, &m.bytes, progress)
                .with_context(|| format!("referrer {}", m.digest))?;
            layout.put_bytes(&m.bytes)?;
            let mut entry = Descriptor::of(&m.media_type, &m.bytes);
            entry.artifact_type = referrer_descriptor(&m.media_type, &m.bytes).artifact_type;
            copied.push(entry);
            if depth + 1 < MAX_DEPTH {
                queue.push_back((m.digest, depth + 1));
            }
        }
    }
    if !copied.is_empty() {
        layout.update_index(|index| {
            for d in &copied {
                index.add_unnamed(d);
            }
            Ok(())
        })?;
    }
    Ok(copied)
}

/// Fetches what a referrer document uses: a manifest's config and layers, an index's
/// manifests and theirs.
fn fetch_document_blobs(
    repo: &Repository,
    layout: &Layout,
    media_type: &str,
    bytes: &[u8],
    progress: &dyn Progress,
) -> Result<()> {
    match media_type::kind(media_type) {
        Kind::Manifest => {
            let m = document::parse_manifest(bytes)?;
            for d in std::iter::once(m.config).chain(m.layers) {
                if !layout.has_blob(&d.digest) {
                    super::pull::fetch_blob(repo, layout, &d, progress)
                        .with_context(|| format!("blob {}", d.digest))?;
                }
            }
        }
        Kind::Index => {
            let index = document::parse_index(bytes)?;
            for child in index.manifests.iter().filter(|c| c.kind() == Kind::Manifest).take(MAX_COUNT) {
                let m = repo.get_manifest(&child.digest.to_string())?;
                fetch_document_blobs(repo, layout, &m.media_type, &m.bytes, progress)?;
                layout.put_bytes(&m.bytes)?;
            }
        }
        Kind::Blob => {}
    }
    Ok(())
}

/// Pushes the layout's referrers of `subject` (and theirs, bounded) to the repository of
/// `dest`: their blobs and documents by digest, then, unless the registry has the referrers
/// API, the merged fallback tag index. Returns how many were pushed.
pub fn push(
    registry: &Registry,
    layout: &Layout,
    subject: &Digest,
    dest: &Reference,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<usize> {
    let mut pushed = 0;
    let mut queue: VecDeque<(Digest, usize)> = VecDeque::from([(subject.clone(), 0)]);
    let mut seen: BTreeSet<Digest> = BTreeSet::from([subject.clone()]);
    while let Some((of, depth)) = queue.pop_front() {
        let referrers = in_layout(layout, &of)?;
        if referrers.is_empty() {
            continue;
        }
        for r in &referrers {
            if !seen.insert(r.digest.clone()) {
                continue;
            }
            let root = Descriptor::new(&r.media_type, r.digest.clone(), r.size);
            push::push(registry, layout, &root, &dest.with_digest(r.digest.clone()), None, options, progress)
                .with_context(|| format!("referrer {}", r.digest))?;
            pushed += 1;
            if depth + 1 < MAX_DEPTH {
                queue.push_back((r.digest.clone(), depth + 1));
            }
        }
        let repo = Repository::new(registry, dest.repository(), true);
        let (_, source) = list_from(&repo, &of, None)?;
        if source == Source::FallbackTag {
            merge_fallback_tag(&repo, &of, &referrers)
                .with_context(|| format!("tag {}", fallback_tag(&of)))?;
        }
    }
    Ok(pushed)
}

/// Adds `referrers` to the fallback tag index of `subject` (made if absent), keeping what it
/// listed, and puts it back if anything was missing.
fn merge_fallback_tag(repo: &Repository, subject: &Digest, referrers: &[Descriptor]) -> Result<()> {
    let tag = fallback_tag(subject);
    let path = format!("{}/manifests/{tag}", repo.name);
    let mut manifests: Vec<Value> = match get_index(repo, &path)? {
        Some(existing) => existing
            .manifests
            .iter()
            .map(|d| serde_json::to_value(d).expect("descriptors serialise"))
            .collect(),
        None => Vec::new(),
    };
    let listed: BTreeSet<String> =
        manifests.iter().filter_map(|m| m.get("digest").and_then(Value::as_str).map(String::from)).collect();
    let missing: Vec<&Descriptor> =
        referrers.iter().filter(|r| !listed.contains(&r.digest.to_string())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    manifests.extend(missing.into_iter().map(|d| serde_json::to_value(d).expect("descriptors serialise")));
    let index = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests});
    let bytes = document::to_canonical_json(&index);
    repo.put_manifest(&tag, media_type::OCI_INDEX, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tags_and_queries() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(fallback_tag(&d), format!("sha256-{}", "ab".repeat(32)));
        assert_eq!(
            query_escape("application/vnd.dev.cosign.artifact.sig.v1+json"),
            "application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson"
        );
    }

    #[test]
    fn referrer_descriptors_carry_artifact_type_and_annotations() {
        let subject = Descriptor::of(media_type::OCI_MANIFEST, b"image");
        let manifest = json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": Descriptor::of("application/vnd.example.sbom", b"{}"),
            "layers": [], "subject": subject, "annotations": {"k": "v"},
        });
        let bytes = document::to_canonical_json(&manifest);
        let d = referrer_descriptor(media_type::OCI_MANIFEST, &bytes);
        assert_eq!(d.artifact_type.as_deref(), Some("application/vnd.example.sbom"));
        assert_eq!(d.annotations.get("k").map(String::as_str), Some("v"));
        assert_eq!(subject_of(&bytes).unwrap().digest, subject.digest);
    }
}
