//! `--cache-from` and `--cache-to` (BuildKit's syntax): reading exported caches' entries
//! before a build, fetching the layers a build hits, and writing a build's entries out, to a
//! registry (with img's own client: credentials go only to the named registry) or to an OCI
//! layout directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use img::digest::{Digest, Expected};
use img::document::{self, Descriptor};
use img::layout::Layout;
use img::media_type::{self, Kind};
use img::platform::Platform;
use img::reference::Reference;
use img::registry::progress::Silent;
use img::registry::{Budget, Connections, MAX_CONFIG, Registry, Repository, pull, push, status_error};

use super::format::{self, LOCAL_REF};
use super::{Cache, Entry};
use crate::state::ImageState;

/// Where a cache is exported to.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheTo {
    Registry {
        reference: Reference,
        max: bool,
    },
    Local {
        dir: PathBuf,
        max: bool,
    },
    /// In the built image's config.
    Inline,
}

/// Where a cache is imported from.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheFrom {
    /// A cache artifact, or an image built with `--cache-to type=inline`.
    Registry(Reference),
    Local(PathBuf),
}

/// `type=...,key=value,...` as a map; a value without `type=` is a registry reference.
fn fields(flag: &str, spec: &str) -> Result<BTreeMap<String, String>> {
    if !spec.contains('=') {
        return Ok(BTreeMap::from([("type".into(), "registry".into()), ("ref".into(), spec.into())]));
    }
    let mut out = BTreeMap::new();
    for field in spec.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            bail!("{flag} {spec:?}: expected KEY=VALUE, not {field:?}")
        };
        if out.insert(k.to_string(), v.to_string()).is_some() {
            bail!("{flag} {spec:?}: {k} given twice");
        }
    }
    Ok(out)
}

fn take(flag: &str, spec: &str, fields: &mut BTreeMap<String, String>, name: &str) -> Result<String> {
    fields
        .remove(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("{flag} {spec:?}: {name}= is missing"))
}

fn no_more(flag: &str, spec: &str, fields: &BTreeMap<String, String>) -> Result<()> {
    match fields.keys().next() {
        Some(k) => bail!("{flag} {spec:?}: unknown option {k}"),
        None => Ok(()),
    }
}

impl CacheTo {
    pub fn parse(spec: &str) -> Result<CacheTo> {
        let flag = "--cache-to";
        let mut f = fields(flag, spec)?;
        let kind = take(flag, spec, &mut f, "type")?;
        let max = match f.remove("mode").as_deref() {
            None | Some("min") => false,
            Some("max") => true,
            Some(m) => bail!("{flag} {spec:?}: mode={m}: expected min or max"),
        };
        let to = match kind.as_str() {
            "registry" => CacheTo::Registry { reference: take(flag, spec, &mut f, "ref")?.parse()?, max },
            "local" => CacheTo::Local { dir: take(flag, spec, &mut f, "dest")?.into(), max },
            "inline" => CacheTo::Inline,
            other => bail!("{flag} {spec:?}: type={other}: expected registry, local or inline"),
        };
        no_more(flag, spec, &f)?;
        Ok(to)
    }
}

impl CacheFrom {
    pub fn parse(spec: &str) -> Result<CacheFrom> {
        let flag = "--cache-from";
        let mut f = fields(flag, spec)?;
        let kind = take(flag, spec, &mut f, "type")?;
        let from = match kind.as_str() {
            "registry" => CacheFrom::Registry(take(flag, spec, &mut f, "ref")?.parse()?),
            "local" => CacheFrom::Local(take(flag, spec, &mut f, "src")?.into()),
            other => bail!("{flag} {spec:?}: type={other}: expected registry or local"),
        };
        no_more(flag, spec, &f)?;
        Ok(from)
    }
}

/// Where an imported cache's layers come from.
pub enum Source {
    Registry { registry: Arc<Registry>, repository: String },
    Local(Layout),
}

impl Source {
    /// Copies a layer into the layout, verified against its digest and size.
    pub fn fetch(&self, layout: &Layout, layer: &Descriptor) -> Result<()> {
        match self {
            Source::Registry { registry, repository } => {
                let repo = Repository::new(registry, repository, false);
                pull::fetch_blob(&repo, layout, layer, &Silent)?;
            }
            Source::Local(from) => {
                layout.put_blob(from.open_blob(&layer.digest)?, Expected::new(&layer.digest, layer.size))?;
            }
        }
        Ok(())
    }
}

/// An imported cache: its entries, and where their layers are.
pub struct Imported {
    /// For messages.
    pub name: String,
    pub source: Source,
    pub entries: BTreeMap<String, Entry>,
}

/// Reads a cache's entries (no layer is fetched here).
pub fn import(from: &CacheFrom, connections: &mut Connections, platform: &Platform) -> Result<Imported> {
    match from {
        CacheFrom::Registry(reference) => {
            let registry = connections.get(reference.registry())?;
            let repo = Repository::new(&registry, reference.repository(), false);
            let mut fetched = repo.get_manifest(&reference.api_reference())?;
            if media_type::kind(&fetched.media_type) == Kind::Index {
                let index = document::parse_index(&fetched.bytes).context("malformed index")?;
                let chosen = pull::choose(&index.manifests, platform)
                    .ok_or_else(|| anyhow!("the index has no image for {platform}"))?;
                fetched = repo.get_manifest(&chosen.digest.to_string())?;
            }
            let manifest = document::parse_manifest(&fetched.bytes).context("malformed manifest")?;
            let config = fetch_document(&repo, &manifest.config)?;
            let entries = entries_of(&manifest, &config)?;
            let source = Source::Registry { registry, repository: reference.repository().to_string() };
            Ok(Imported { name: reference.to_string(), source, entries })
        }
        CacheFrom::Local(dir) => {
            let layout = Layout::open(dir).with_context(|| format!("opening {}", dir.display()))?;
            let index = layout.read_index()?;
            let desc = index
                .entries()
                .iter()
                .find(|e| e.ref_name() == Some(LOCAL_REF))
                .ok_or_else(|| anyhow!("{} holds no {LOCAL_REF}", dir.display()))?
                .clone();
            if desc.kind() != Kind::Manifest {
                bail!("{LOCAL_REF} is not a manifest");
            }
            let manifest =
                document::parse_manifest(&layout.read_document(&desc)?).context("malformed manifest")?;
            if manifest.config.size > format::MAX_CONFIG {
                bail!("the cache config is larger than {} MiB", format::MAX_CONFIG >> 20);
            }
            let config = layout.read_document(&manifest.config)?;
            let entries = entries_of(&manifest, &config)?;
            Ok(Imported { name: dir.display().to_string(), source: Source::Local(layout), entries })
        }
    }
}

/// The entries of a cache artifact, or of an image's inline cache.
fn entries_of(manifest: &document::Manifest, config: &[u8]) -> Result<BTreeMap<String, Entry>> {
    if format::is_cache(manifest) {
        return format::decode(config, &manifest.layers);
    }
    if !media_type::is_image_config(&manifest.config.media_type) {
        bail!("neither a build cache nor an image ({})", manifest.config.media_type);
    }
    let config: serde_json::Value = serde_json::from_slice(config).context("malformed image config")?;
    let label = config.pointer("/config/Labels").and_then(|l| l.get(format::INLINE_LABEL));
    match label.and_then(|l| l.as_str()) {
        Some(text) => format::decode(text.as_bytes(), &manifest.layers),
        None => bail!("the image has no inline build cache (built without --cache-to type=inline)"),
    }
}

/// A small blob, read whole under a size cap and checked against its digest.
fn fetch_document(repo: &Repository, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size > MAX_CONFIG {
        bail!("the config is larger than {} MiB", MAX_CONFIG >> 20);
    }
    let mut resp = repo.get_blob(&desc.digest, 0, None, Budget::Document, || {})?;
    if resp.status().as_u16() != 200 {
        return Err(status_error(resp, repo.registry.has_credentials()));
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(desc.size)
        .read_to_vec()
        .map_err(|e| anyhow!("reading blob {}: {e}", desc.digest))?;
    let got = Digest::of(&bytes);
    if got != desc.digest || bytes.len() as u64 != desc.size {
        bail!("blob {} does not match its digest (got {got})", desc.digest);
    }
    Ok(bytes)
}

/// The entries to export: every one this build used (`max`), or those whose layers are in
/// the final image (and those with no layer).
pub fn selected(cache: &Cache, final_layers: &[Descriptor], max: bool) -> BTreeMap<String, Entry> {
    let mut entries = cache.used();
    if !max {
        entries.retain(|_, e| {
            e.layer.as_ref().is_none_or(|l| final_layers.iter().any(|f| f.digest == l.digest))
        });
    }
    entries
}

/// With `--cache-to type=inline`, the label that carries the final image's cache entries
/// (those of its own layers, which a `--cache-from` of the image then fetches from it).
pub fn add_inline(cache: &Cache, state: &ImageState, labels: &mut Vec<(String, String)>) {
    if !cache.inline {
        return;
    }
    let layers: Vec<Descriptor> = state.layers.iter().map(|l| l.descriptor.clone()).collect();
    let value = String::from_utf8(format::encode(&selected(cache, &layers, false))).expect("JSON is UTF-8");
    labels.push((format::INLINE_LABEL.to_string(), value));
}

impl CacheTo {
    /// The entries this export takes from a build's cache, whose image has `final_layers`
    /// (none for `type=inline`, which the image carries itself).
    pub fn entries(&self, cache: &Cache, final_layers: &[Descriptor]) -> BTreeMap<String, Entry> {
        match self {
            CacheTo::Inline => BTreeMap::new(),
            CacheTo::Registry { max, .. } | CacheTo::Local { max, .. } => selected(cache, final_layers, *max),
        }
    }
}

/// Writes the cache entries out (those of [`CacheTo::entries`], of one build or of each
/// platform's). `layout` holds the layers (and gets the artifact's documents).
pub fn export(
    entries: &BTreeMap<String, Entry>,
    layout: &Layout,
    to: &CacheTo,
    connections: &mut Connections,
) -> Result<()> {
    let what = match to {
        CacheTo::Inline => return Ok(()), // written with the image
        CacheTo::Registry { reference, .. } => reference.to_string(),
        CacheTo::Local { dir, .. } => dir.display().to_string(),
    };
    let config = format::encode(entries);
    let config_desc = Descriptor::of(format::CONFIG_TYPE, &config);
    let manifest = format::manifest(&config_desc, entries);
    let mut manifest_desc = Descriptor::of(media_type::OCI_MANIFEST, &manifest);
    manifest_desc.artifact_type = Some(format::ARTIFACT_TYPE.to_string());
    let result = (|| -> Result<()> {
        match to {
            CacheTo::Inline => {}
            CacheTo::Registry { reference, .. } => {
                layout.put_bytes(&config)?;
                layout.put_bytes(&manifest)?;
                let registry = connections.get(reference.registry())?;
                let options = push::PushOptions::default();
                push::push(&registry, layout, &manifest_desc, reference, None, &options, &Silent)?;
            }
            CacheTo::Local { dir, .. } => {
                let out = Layout::open_or_create(dir)?;
                for layer in entries.values().filter_map(|e| e.layer.as_ref()) {
                    if !out.has_blob(&layer.digest) {
                        out.put_blob(
                            layout.open_blob(&layer.digest)?,
                            Expected::new(&layer.digest, layer.size),
                        )?;
                    }
                }
                out.put_bytes(&config)?;
                out.put_bytes(&manifest)?;
                out.set_ref(LOCAL_REF, &manifest_desc)?;
            }
        }
        Ok(())
    })();
    result.with_context(|| format!("exporting the build cache to {what}"))?;
    eprintln!("img-build: exported {} cache entries to {what}", entries.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_specs() {
        let r: Reference = "localhost:5000/cache:1".parse().unwrap();
        assert_eq!(
            CacheTo::parse("type=registry,ref=localhost:5000/cache:1,mode=max").unwrap(),
            CacheTo::Registry { reference: r.clone(), max: true }
        );
        assert_eq!(
            CacheTo::parse("type=local,dest=/c").unwrap(),
            CacheTo::Local { dir: "/c".into(), max: false }
        );
        assert_eq!(CacheTo::parse("type=inline").unwrap(), CacheTo::Inline);
        assert_eq!(CacheFrom::parse("localhost:5000/cache:1").unwrap(), CacheFrom::Registry(r));
        assert_eq!(CacheFrom::parse("type=local,src=/c").unwrap(), CacheFrom::Local("/c".into()));
        for bad in ["type=registry", "type=s3,ref=x", "type=local,dest=/c,mode=all", "type=inline,x=1"] {
            assert!(CacheTo::parse(bad).is_err(), "{bad}");
        }
        assert!(CacheFrom::parse("type=local,dest=/c").is_err());
    }
}
