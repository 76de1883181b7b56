//! `oci-archive`: a tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/`), as skopeo
//! and `podman save --format oci-archive` write it; docker 25+ `docker save` archives are one
//! too (with a `manifest.json` beside it). Blobs are kept byte for byte, so digests are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

use super::members::{Members, Span};
use super::{
    BlobSource, Exported, Imported, Plan, append_blob, diff_id_of, dir_header, file_header, name_matches,
};
use crate::digest::{Digest, Hasher};
use crate::document::{
    self, Descriptor, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, MAX_NESTING, REF_NAME_ANNOTATION,
};
use crate::layout::Layout;
use crate::media_type::{self, Kind};
use crate::platform::Platform;

/// The annotation containerd and docker 25+ put the full image name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Plans the import of the images of an OCI archive: those `selector` names (a name, or `@N`),
/// else all. `docker_names` maps config digests to the `RepoTags` of a docker archive's
/// `manifest.json`, for entries of `index.json` that carry no name.
pub(crate) fn plan(
    members: &Members,
    selector: Option<&str>,
    docker_names: Option<&BTreeMap<Digest, Vec<String>>>,
) -> Result<Plan> {
    if !members.contains("index.json") {
        bail!("not an OCI archive: it has no index.json");
    }
    if members.contains("oci-layout") {
        let text = members.read_small("oci-layout", 64 << 10)?;
        let v: serde_json::Value = serde_json::from_slice(&text).context("malformed oci-layout")?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(version) if version.starts_with("1.") => {}
            other => bail!("unsupported image layout version {other:?} in the archive"),
        }
    }
    let index = document::parse_index(&members.read_small("index.json", MAX_MANIFEST_BYTES)?)
        .context("index.json of the archive")?;
    let entries = index.manifests;
    let names: Vec<Vec<String>> = entries.iter().map(|e| entry_names(members, e, docker_names)).collect();

    let mut chosen: Vec<(usize, Option<String>)> = Vec::new();
    match selector {
        None => {
            for (i, n) in names.iter().enumerate() {
                if n.is_empty() {
                    chosen.push((i, None));
                }
                chosen.extend(n.iter().map(|name| (i, Some(name.clone()))));
            }
        }
        Some(sel) => match super::position(sel) {
            Some(n) => {
                let n = n?;
                if n >= entries.len() {
                    bail!("{sel}: the archive holds {} images", entries.len());
                }
                if names[n].is_empty() {
                    chosen.push((n, None));
                }
                chosen.extend(names[n].iter().map(|name| (n, Some(name.clone()))));
            }
            None => {
                for (i, n) in names.iter().enumerate() {
                    if let Some(found) = n.iter().find(|name| name_matches(name, sel)) {
                        chosen.push((i, Some(found.clone())));
                    }
                }
                if chosen.is_empty() {
                    let have: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
                    bail!("no image {sel} in the archive (it has: {})", have.join(", "));
                }
            }
        },
    }

    let mut plan = Plan::default();
    let mut seen = BTreeMap::new();
    for (i, name) in chosen {
        let entry = &entries[i];
        let found = verify(members, entry, true, 0, &mut plan, &mut seen)?;
        let mut descriptor = entry.clone();
        descriptor.annotations.remove(REF_NAME_ANNOTATION);
        descriptor.annotations.remove(CONTAINERD_NAME);
        let platform = entry.platform.clone().or_else(|| found.and_then(|f| f.platform));
        plan.images.push(Imported {
            name: name.as_deref().and_then(super::stored_name),
            descriptor,
            platform,
        });
    }
    Ok(plan)
}

/// The names an `index.json` entry gives its image: containerd's full name if there is one
/// (docker 25+ writes a bare tag in the OCI annotation), else the OCI ref name, else the
/// `RepoTags` a docker `manifest.json` lists for its config.
fn entry_names(
    members: &Members,
    entry: &Descriptor,
    docker: Option<&BTreeMap<Digest, Vec<String>>>,
) -> Vec<String> {
    if let Some(n) = entry.annotations.get(CONTAINERD_NAME) {
        return vec![n.clone()];
    }
    if let Some(n) = entry.ref_name() {
        return vec![n.to_string()];
    }
    let Some(docker) = docker else { return Vec::new() };
    // The config this manifest names (read unverified: only to find names; verified later).
    let config = (entry.kind() == Kind::Manifest)
        .then(|| members.read_small(&blob_path(&entry.digest), MAX_MANIFEST_BYTES).ok())
        .flatten()
        .and_then(|b| document::parse_manifest(&b).ok())
        .map(|m| m.config.digest);
    config.and_then(|c| docker.get(&c).cloned()).unwrap_or_default()
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// What verifying a manifest found.
#[derive(Clone, Debug)]
struct Found {
    platform: Option<Platform>,
}

/// Checks the blob `desc` names, and everything below it, against their digests and sizes
/// (layers also against the config's diff_ids), and adds them to the plan. A child of an index
/// that the archive lacks is skipped (`required` false), as a single-platform copy of an
/// index lacks the other platforms; anything else missing is an error.
fn verify(
    members: &Members,
    desc: &Descriptor,
    required: bool,
    depth: usize,
    plan: &mut Plan,
    seen: &mut BTreeMap<Digest, Option<Found>>,
) -> Result<Option<Found>> {
    if let Some(found) = seen.get(&desc.digest) {
        return Ok(found.clone());
    }
    let path = blob_path(&desc.digest);
    if !required && !members.contains(&path) {
        return Ok(None);
    }
    let kind = desc.kind();
    if kind != Kind::Blob && depth >= MAX_NESTING {
        bail!("{}: documents nested more than {MAX_NESTING} deep", desc.digest);
    }
    let span = members.find(&path).with_context(|| format!("blob {}", desc.digest))?;
    check_size(desc, span)?;
    let found = match kind {
        Kind::Blob => {
            check_digest(desc, members.hash(span, desc.digest.algorithm())?)?;
            None
        }
        Kind::Manifest | Kind::Index => {
            let bytes = members.read_small(&path, MAX_MANIFEST_BYTES)?;
            check_digest(desc, hash(&bytes, desc))?;
            if kind == Kind::Manifest {
                Some(verify_manifest(members, desc, &bytes, plan, seen)?)
            } else {
                verify_index(members, desc, &bytes, depth, plan, seen)?;
                None
            }
        }
    };
    plan.add_blob(&desc.digest, desc.size, BlobSource::Member(span));
    seen.insert(desc.digest.clone(), found.clone());
    Ok(found)
}

fn verify_index(
    members: &Members,
    desc: &Descriptor,
    bytes: &[u8],
    depth: usize,
    plan: &mut Plan,
    seen: &mut BTreeMap<Digest, Option<Found>>,
) -> Result<()> {
    let index = document::parse_index(bytes).with_context(|| format!("index {}", desc.digest))?;
    let mut present = 0;
    for child in &index.manifests {
        if members.contains(&blob_path(&child.digest)) {
            present += 1;
        }
        verify(members, child, false, depth + 1, plan, seen)?;
    }
    if present == 0 && !index.manifests.is_empty() {
        bail!("index {}: none of its manifests is in the archive", desc.digest);
    }
    Ok(())
}

fn verify_manifest(
    members: &Members,
    desc: &Descriptor,
    bytes: &[u8],
    plan: &mut Plan,
    seen: &mut BTreeMap<Digest, Option<Found>>,
) -> Result<Found> {
    let manifest = document::parse_manifest(bytes).with_context(|| format!("manifest {}", desc.digest))?;
    let config = &manifest.config;
    if config.size > MAX_CONFIG_BYTES {
        bail!("config {}: {} bytes, over the {} MiB cap", config.digest, config.size, MAX_CONFIG_BYTES >> 20);
    }
    let config_path = blob_path(&config.digest);
    let config_span = members.find(&config_path).with_context(|| format!("config {}", config.digest))?;
    check_size(config, config_span)?;
    let config_bytes = members.read_small(&config_path, MAX_CONFIG_BYTES)?;
    check_digest(config, hash(&config_bytes, config))?;
    plan.add_blob(&config.digest, config.size, BlobSource::Member(config_span));

    let image = media_type::is_image_config(&config.media_type);
    let parsed = if image {
        Some(document::parse_config(&config_bytes).with_context(|| format!("config {}", config.digest))?)
    } else {
        None
    };
    let diff_ids = parsed.as_ref().and_then(|c| c.rootfs.as_ref()).map(|r| r.diff_ids.clone());
    if let Some(ids) = &diff_ids
        && ids.len() != manifest.layers.len()
    {
        bail!("config {} lists {} diff_ids for {} layers", config.digest, ids.len(), manifest.layers.len());
    }
    for (i, layer) in manifest.layers.iter().enumerate() {
        let path = blob_path(&layer.digest);
        let span = members.find(&path).with_context(|| format!("layer {}", layer.digest))?;
        check_size(layer, span)?;
        if !seen.contains_key(&layer.digest) {
            check_digest(layer, members.hash(span, layer.digest.algorithm())?)?;
        }
        if let Some(ids) = &diff_ids {
            let got = diff_id_of(members, span, ids[i].algorithm())
                .with_context(|| format!("layer {}", layer.digest))?;
            if got != ids[i] {
                bail!(
                    "layer {}: uncompressed content is {got}, but the config's diff_id is {}",
                    layer.digest,
                    ids[i]
                );
            }
        }
        plan.add_blob(&layer.digest, layer.size, BlobSource::Member(span));
        seen.entry(layer.digest.clone()).or_insert(None);
    }
    let platform = parsed.map(|c| c.platform()).filter(|p| !p.os.is_empty());
    Ok(Found { platform })
}

fn hash(bytes: &[u8], desc: &Descriptor) -> Digest {
    let mut h = Hasher::new(desc.digest.algorithm());
    h.update(bytes);
    h.finish()
}

fn check_size(desc: &Descriptor, span: Span) -> Result<()> {
    if span.size != desc.size {
        bail!(
            "blob {}: {} bytes in the archive, but its descriptor says {}",
            desc.digest,
            span.size,
            desc.size
        );
    }
    Ok(())
}

fn check_digest(desc: &Descriptor, got: Digest) -> Result<()> {
    if got != desc.digest {
        bail!("blob {} is corrupt in the archive: its content hashes to {got}", desc.digest);
    }
    Ok(())
}

// ---- export ----

/// Writes the image `root` of the layout as an OCI layout in the tar: every blob as it is,
/// `index.json` naming the root `name`. Children of an index the layout lacks are left out.
pub(crate) fn write(
    layout: &Layout,
    root: &Descriptor,
    name: Option<&str>,
    builder: &mut tar::Builder<impl Write>,
) -> Result<Exported> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = BTreeSet::new();
    collect(layout, root, true, 0, &mut blobs, &mut seen)?;

    let mut entry = root.clone();
    entry.annotations.remove(REF_NAME_ANNOTATION);
    if let Some(n) = name {
        entry.annotations.insert(REF_NAME_ANNOTATION.into(), n.to_string());
    }
    let index = document::to_canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [entry],
    }));
    let layout_file = br#"{"imageLayoutVersion":"1.0.0"}"#;
    builder.append(&file_header("oci-layout", layout_file.len() as u64)?, &layout_file[..])?;
    builder.append(&file_header("index.json", index.len() as u64)?, index.as_slice())?;
    builder.append(&dir_header("blobs/")?, std::io::empty())?;
    let mut algorithms = BTreeSet::new();
    for desc in &blobs {
        let alg = desc.digest.algorithm().name();
        if algorithms.insert(alg) {
            builder.append(&dir_header(&format!("blobs/{alg}/"))?, std::io::empty())?;
        }
        append_blob(builder, layout, &blob_path(&desc.digest), desc)?;
    }
    Ok(Exported { descriptor: root.clone(), digest_kept: true, config: None })
}

fn collect(
    layout: &Layout,
    desc: &Descriptor,
    required: bool,
    depth: usize,
    out: &mut Vec<Descriptor>,
    seen: &mut BTreeSet<Digest>,
) -> Result<()> {
    if !seen.insert(desc.digest.clone()) {
        return Ok(());
    }
    if !required && !layout.has_blob(&desc.digest) {
        return Ok(()); // a platform this copy of the index does not hold
    }
    if depth > MAX_NESTING {
        bail!("{}: documents nested more than {MAX_NESTING} deep", desc.digest);
    }
    match desc.kind() {
        Kind::Index => {
            let index = document::parse_index(&layout.read_document(desc)?)
                .with_context(|| format!("index {}", desc.digest))?;
            for child in &index.manifests {
                collect(layout, child, false, depth + 1, out, seen)?;
            }
        }
        Kind::Manifest => {
            let m = document::parse_manifest(&layout.read_document(desc)?)
                .with_context(|| format!("manifest {}", desc.digest))?;
            collect(layout, &m.config, true, depth + 1, out, seen)?;
            for l in &m.layers {
                collect(layout, l, true, depth + 1, out, seen)?;
            }
        }
        Kind::Blob => {
            if !layout.has_blob(&desc.digest) {
                return Err(anyhow!("blob {} is missing from {}", desc.digest, layout.root().display()));
            }
        }
    }
    out.push(desc.clone());
    Ok(())
}
