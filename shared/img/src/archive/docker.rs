//! `docker-archive`: what `docker save` and `podman save --format docker-archive` write. A
//! `manifest.json` lists each image's config and layer files (uncompressed tars) and its
//! `RepoTags`; the archive holds no image manifest. docker 25+ writes an OCI layout in the same
//! tar (`index.json`, `blobs/`): such an archive is imported through that, keeping docker's
//! manifest digests.
//!
//! Imported images get an OCI manifest we write (sorted keys, so the same archive always gives
//! the same digest): the config exactly as archived (docker's image ID is its digest) and each
//! layer stored as the archive holds it, uncompressed as `application/vnd.oci.image.layer.v1.tar`
//! (a compressed one keeps its compression), so each layer's digest is its diff_id.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;

use super::members::Members;
use super::{
    BlobSource, Checked, Exported, Imported, Plan, append_blob, diff_id_of, file_header, hash_stream,
    name_matches, stored_name,
};
use crate::digest::{Algorithm, Digest};
use crate::document::{self, Descriptor, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::layer::compression::{self, Compression};
use crate::layout::Layout;
use crate::media_type::{self, Kind};
use crate::platform::Platform;
use crate::reference::Reference;

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Plans the import of the images of a docker archive: those `selector` names (a name among
/// the `RepoTags`, or `@N`), else all.
pub(crate) fn plan(members: &Members, selector: Option<&str>) -> Result<Plan> {
    let listed = if members.contains("manifest.json") { Some(read_manifest_json(members)?) } else { None };
    if members.contains("index.json") {
        // docker 25+: the archive is an OCI layout too; names come from manifest.json when
        // index.json gives none.
        let mut names: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for e in listed.iter().flatten() {
            if let Some(hex) = e.config.strip_prefix("blobs/sha256/")
                && let Ok(d) = format!("sha256:{hex}").parse::<Digest>()
            {
                names.entry(d).or_default().extend(e.repo_tags.iter().flatten().cloned());
            }
        }
        return super::oci::plan(members, selector, Some(&names));
    }
    let Some(entries) = listed else {
        bail!("not a docker archive: it has no manifest.json (nor index.json)");
    };

    let mut chosen: Vec<(usize, Vec<String>)> = Vec::new();
    let tags = |e: &Entry| e.repo_tags.clone().unwrap_or_default();
    match selector {
        None => chosen.extend(entries.iter().enumerate().map(|(i, e)| (i, tags(e)))),
        Some(sel) => match super::position(sel) {
            Some(n) => {
                let n = n?;
                if n >= entries.len() {
                    bail!("{sel}: the archive holds {} images", entries.len());
                }
                chosen.push((n, tags(&entries[n])));
            }
            None => {
                for (i, e) in entries.iter().enumerate() {
                    if let Some(t) = tags(e).into_iter().find(|t| name_matches(t, sel)) {
                        chosen.push((i, vec![t]));
                    }
                }
                if chosen.is_empty() {
                    let have: Vec<String> = entries.iter().flat_map(tags).collect();
                    bail!("no image {sel} in the archive (it has: {})", have.join(", "));
                }
            }
        },
    }

    let mut plan = Plan::default();
    let mut done: BTreeMap<usize, (Descriptor, Option<Platform>)> = BTreeMap::new();
    for (i, names) in chosen {
        let (descriptor, platform) = match done.get(&i) {
            Some(d) => d.clone(),
            None => {
                let d = plan_image(members, &entries[i], &mut plan)
                    .with_context(|| format!("image {i} of manifest.json"))?;
                done.insert(i, d.clone());
                d
            }
        };
        let names: Vec<String> = names.iter().filter_map(|n| stored_name(n)).collect();
        if names.is_empty() {
            plan.images.push(Imported {
                name: None,
                descriptor: descriptor.clone(),
                platform: platform.clone(),
            });
        }
        for name in names {
            plan.images.push(Imported {
                name: Some(name),
                descriptor: descriptor.clone(),
                platform: platform.clone(),
            });
        }
    }
    Ok(plan)
}

fn read_manifest_json(members: &Members) -> Result<Vec<Entry>> {
    let bytes = members.read_small("manifest.json", MAX_MANIFEST_BYTES)?;
    serde_json::from_slice(&bytes).context("malformed manifest.json in the archive")
}

/// Checks one image's config and layers (each layer against its diff_id) and adds them, and
/// the manifest made for them, to the plan.
fn plan_image(members: &Members, entry: &Entry, plan: &mut Plan) -> Result<(Descriptor, Option<Platform>)> {
    let config_bytes = members
        .read_small(&entry.config, MAX_CONFIG_BYTES)
        .map_err(|e| e.context(format!("config {}", entry.config)))?;
    let config = document::parse_config(&config_bytes).with_context(|| format!("config {}", entry.config))?;
    let diff_ids = config.rootfs.as_ref().map(|r| r.diff_ids.clone()).unwrap_or_default();
    if diff_ids.len() != entry.layers.len() {
        bail!("the config lists {} diff_ids for {} layers", diff_ids.len(), entry.layers.len());
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(&diff_ids) {
        let span = members.find(path).with_context(|| format!("layer {path}"))?;
        let digest = members.hash(span, Algorithm::Sha256)?;
        let mut head = BufReader::new(members.open(span));
        let compression = Compression::sniff(head.fill_buf().context("reading the archive")?);
        let uncompressed = if compression == Compression::None {
            digest.clone()
        } else {
            diff_id_of(members, span, diff_id.algorithm()).with_context(|| format!("layer {path}"))?
        };
        if &uncompressed != diff_id {
            bail!("layer {path}: its content is {uncompressed}, but the config's diff_id is {diff_id}");
        }
        let media_type = match compression {
            Compression::None => media_type::OCI_LAYER,
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        };
        plan.add_blob(&digest, span.size, BlobSource::Member(span));
        layers.push(Descriptor::new(media_type, digest, span.size));
    }
    let config_desc = Descriptor::of(media_type::OCI_CONFIG, &config_bytes);
    plan.add_blob(&config_desc.digest, config_desc.size, BlobSource::Bytes(config_bytes));
    let manifest = document::to_canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }));
    let descriptor = Descriptor::of(media_type::OCI_MANIFEST, &manifest);
    plan.add_blob(&descriptor.digest, descriptor.size, BlobSource::Bytes(manifest));
    let platform = Some(config.platform()).filter(|p| !p.os.is_empty());
    Ok((descriptor, platform))
}

// ---- export ----

/// Writes one image of the layout (for an index, this machine's platform) as a docker archive:
/// `<config hex>.json`, one uncompressed `<diff_id hex>.tar` per layer (each checked against
/// its diff_id), and `manifest.json` naming it `name`.
pub(crate) fn write(
    layout: &Layout,
    root: &Descriptor,
    name: Option<&str>,
    builder: &mut tar::Builder<impl Write>,
) -> Result<Exported> {
    let manifest_desc = match root.kind() {
        Kind::Manifest => root.clone(),
        Kind::Index => choose_host(layout, root)?,
        Kind::Blob => bail!("{} is not an image (media type {})", root.digest, root.media_type),
    };
    let manifest = document::parse_manifest(&layout.read_document(&manifest_desc)?)
        .with_context(|| format!("manifest {}", manifest_desc.digest))?;
    if !media_type::is_image_config(&manifest.config.media_type) {
        bail!("not a container image (config media type {})", manifest.config.media_type);
    }
    let config_bytes = layout.read_document(&manifest.config)?;
    let config = document::parse_config(&config_bytes)
        .with_context(|| format!("config {}", manifest.config.digest))?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        bail!("the config lists {} diff_ids for {} layers", diff_ids.len(), manifest.layers.len());
    }
    let config_name = format!("{}.json", manifest.config.digest.hex());
    builder.append(&file_header(&config_name, config_bytes.len() as u64)?, config_bytes.as_slice())?;

    let mut layer_names = Vec::new();
    let mut written = BTreeSet::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        compression::check_media_type(&layer.media_type)
            .with_context(|| format!("layer {}", layer.digest))?;
        let file_name = format!("{}.tar", diff_id.hex());
        layer_names.push(file_name.clone());
        if !written.insert(file_name.clone()) {
            continue;
        }
        append_layer(builder, layout, &file_name, layer, diff_id)
            .with_context(|| format!("layer {}", layer.digest))?;
    }
    let repo_tags: Vec<String> = name
        .and_then(|n| n.parse::<Reference>().ok())
        .filter(|r| r.tag().is_some())
        .map(|r| r.to_string())
        .into_iter()
        .collect();
    let listing = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]))?;
    builder.append(&file_header("manifest.json", listing.len() as u64)?, listing.as_slice())?;
    Ok(Exported {
        descriptor: root.clone(),
        digest_kept: false,
        config: Some(manifest.config.digest.clone()),
    })
}

/// Appends a layer uncompressed. A compressed layer is read twice: once to learn its size and
/// check its diff_id (a tar header comes before the data), once to write it, checked again.
fn append_layer(
    builder: &mut tar::Builder<impl Write>,
    layout: &Layout,
    file_name: &str,
    layer: &Descriptor,
    diff_id: &Digest,
) -> Result<()> {
    let mut head = [0u8; 4];
    let n = layout.open_blob(&layer.digest)?.read(&mut head)?;
    if Compression::sniff(&head[..n]) == Compression::None {
        if &layer.digest != diff_id {
            bail!("an uncompressed layer must be its diff_id {diff_id}");
        }
        return append_blob(builder, layout, file_name, layer);
    }
    let (got, size) =
        hash_stream(&mut compression::decompress(layout.open_blob(&layer.digest)?)?, diff_id.algorithm())?;
    if &got != diff_id {
        bail!("uncompressed content is {got}, but the config's diff_id is {diff_id}");
    }
    let mut reader =
        Checked::new(compression::decompress(layout.open_blob(&layer.digest)?)?, diff_id.clone(), size);
    builder.append(&file_header(file_name, size)?, &mut reader)?;
    reader.check()
}

/// The manifest of an index for this machine, which the layout must hold.
fn choose_host(layout: &Layout, index: &Descriptor) -> Result<Descriptor> {
    let parsed = document::parse_index(&layout.read_document(index)?)
        .with_context(|| format!("index {}", index.digest))?;
    let want = Platform::host();
    parsed
        .manifests
        .iter()
        .find(|m| {
            m.kind() == Kind::Manifest
                && m.platform.as_ref().is_some_and(|p| p.satisfies(&want))
                && layout.has_blob(&m.digest)
        })
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!("a docker archive holds one platform, and the index has no {want} image here")
        })
}
