//! Which image a name denotes in a layout: the `index.json` entry, and through an index or
//! manifest list the manifest for the wanted platform, with its config.
//!
//! A name is checked before anything is looked up ([`Name::parse`]), so a malformed one gets
//! the same error from every tool. Besides references and full digests, a unique digest prefix
//! names an image, as docker takes an image-ID prefix: `sha256:4f1c2a…` or bare `4f1c2a…` (a
//! bare one only when no reference of that name is there), at least [`MIN_PREFIX`] hex digits.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};

use super::{IndexFile, Layout, ref_names};
use crate::digest::{Algorithm, Digest};
use crate::document::{self, Descriptor, ImageConfig, Manifest};
use crate::media_type::{self, Kind};
use crate::platform::Platform;
use crate::reference::Reference;

/// The fewest hex digits of a digest prefix: distribution's short identifiers are 6 to 64, and
/// fewer would collide too soon to be a name worth typing (img-ls shows 12).
pub const MIN_PREFIX: usize = 6;

/// What a name given for an image of a layout is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// A full digest (`sha256:<64 hex>`, or 64 bare hex digits): every entry with it.
    Digest(Digest),
    /// `sha256:<hex>` or `sha512:<hex>` with fewer digits than a digest: the entries whose
    /// digest starts with them.
    Prefix { algorithm: Algorithm, hex: String },
    /// A reference. All hex of [`MIN_PREFIX`] digits or more (`4f1c2a9b`, also a valid
    /// repository name) is tried as a digest prefix when no reference of that name is there.
    Reference { hex_prefix: bool },
    /// Not a valid reference but shaped like a tag, as umoci and skopeo store names verbatim
    /// (`Upper_Tag`): found only as such a stored name, else it is the reference error `why`.
    Stored { why: String },
}

impl Name {
    /// Checks `text` as a name of an image: an error (`invalid reference "…": why`, or
    /// `invalid digest "…": why`) if it cannot name one.
    pub fn parse(text: &str) -> Result<Name> {
        if let Some((alg, hex)) = text.split_once(':')
            && let Some((algorithm, full)) = algorithm(alg)
        {
            if hex.len() >= full {
                return Ok(Name::Digest(text.parse()?));
            }
            if !is_lower_hex(hex) {
                bail!("invalid digest {text:?}: not lowercase hex");
            }
            if hex.len() < MIN_PREFIX {
                bail!(
                    "invalid digest {text:?}: a digest prefix needs at least {MIN_PREFIX} hex digits, got {}",
                    hex.len()
                );
            }
            return Ok(Name::Prefix { algorithm, hex: hex.to_string() });
        }
        if text.len() == 64 && is_lower_hex(text) {
            return Ok(Name::Digest(format!("sha256:{text}").parse()?));
        }
        match text.parse::<Reference>() {
            Ok(_) => Ok(Name::Reference { hex_prefix: text.len() >= MIN_PREFIX && is_lower_hex(text) }),
            Err(e) if is_tag_shaped(text) => Ok(Name::Stored { why: format!("{e:#}") }),
            Err(e) => Err(e),
        }
    }
}

/// The positions of the entries `text` names, checked first ([`Name::parse`]); none if it
/// names nothing there, an error if it is malformed or a prefix of several digests.
pub fn find(entries: &[Descriptor], text: &str) -> Result<Vec<usize>> {
    let name = Name::parse(text)?;
    let (found, by_prefix) = matches(entries, text, &name);
    if let Name::Stored { why } = &name
        && found.is_empty()
    {
        bail!("{why}");
    }
    if by_prefix {
        let digests: BTreeSet<&Digest> = found.iter().map(|&i| &entries[i].digest).collect();
        if digests.len() > 1 {
            let all: Vec<String> = digests.iter().map(ToString::to_string).collect();
            bail!("ambiguous digest prefix {text:?}: matches {}", and_list(&all));
        }
    }
    Ok(found)
}

/// [`find`] without its errors, for code that only asks what is there: a malformed name finds
/// only an entry stored under exactly that name, an ambiguous prefix every entry it matches.
pub fn lookup(entries: &[Descriptor], text: &str) -> Vec<usize> {
    match Name::parse(text) {
        Ok(name) => matches(entries, text, &name).0,
        Err(_) => ref_names::find(entries, text),
    }
}

/// The entries a checked name finds, and whether they were found by a digest prefix.
fn matches(entries: &[Descriptor], text: &str, name: &Name) -> (Vec<usize>, bool) {
    let by_prefix = |algorithm: Option<Algorithm>, hex: &str| {
        let found = positions(entries, |e| {
            algorithm.is_none_or(|a| e.digest.algorithm() == a) && e.digest.hex().starts_with(hex)
        });
        (found, true)
    };
    match name {
        Name::Digest(d) => (positions(entries, |e| e.digest == *d), false),
        Name::Prefix { algorithm, hex } => by_prefix(Some(*algorithm), hex),
        Name::Reference { hex_prefix } => {
            let found = ref_names::find(entries, text);
            if found.is_empty() && *hex_prefix { by_prefix(None, text) } else { (found, false) }
        }
        Name::Stored { .. } => (ref_names::find(entries, text), false),
    }
}

/// The entries an `img-ls` filter selects: a repository name without tag or digest selects
/// all its tags; anything else is a lookup as in [`find`].
pub fn filter(entries: &[Descriptor], text: &str) -> Result<Vec<usize>> {
    let has_version = text.rsplit('/').next().is_some_and(|last| last.contains([':', '@']));
    match Name::parse(text)? {
        Name::Reference { hex_prefix: false } if !has_version => Ok(ref_names::filter(entries, text)),
        Name::Reference { hex_prefix: true } if !has_version => {
            let by_name = ref_names::filter(entries, text);
            if by_name.is_empty() { find(entries, text) } else { Ok(by_name) }
        }
        _ => find(entries, text),
    }
}

/// The one `index.json` entry `name` denotes: an error if none, or several different images.
pub fn entry(layout: &Layout, index: &IndexFile, name: &str) -> Result<Descriptor> {
    let found = find(index.entries(), name)?;
    let Some(&first) = found.first() else {
        bail!("{name}: no such image in {}", layout.root().display());
    };
    let entry = index.entries()[first].clone();
    if found.iter().any(|&i| index.entries()[i].digest != entry.digest) {
        bail!(
            "{name}: names several images in {}: use a full reference or a digest",
            layout.root().display()
        );
    }
    Ok(entry)
}

fn algorithm(name: &str) -> Option<(Algorithm, usize)> {
    match name {
        "sha256" => Some((Algorithm::Sha256, 64)),
        "sha512" => Some((Algorithm::Sha512, 128)),
        _ => None,
    }
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A tag's grammar, `[\w][\w.-]{0,127}`: what umoci and skopeo may store as a bare name.
fn is_tag_shaped(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    s.len() <= 128
        && s.bytes().next().is_some_and(word)
        && s.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn positions(entries: &[Descriptor], pred: impl Fn(&Descriptor) -> bool) -> Vec<usize> {
    entries.iter().enumerate().filter(|(_, e)| pred(e)).map(|(i, _)| i).collect()
}

/// An image found in a layout.
#[derive(Clone, Debug)]
pub struct Image {
    /// The `index.json` entry the name matched (a manifest, or an index).
    pub entry: Descriptor,
    /// The manifest chosen (the entry itself, or the index's child for the platform).
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The config's exact bytes, for fields [`ImageConfig`] does not model.
    pub config_bytes: Vec<u8>,
    pub platform: Platform,
}

/// Finds `name` (a reference or a digest) in the layout. For an index, the manifest for
/// `platform` (default: the host's) is chosen.
pub fn image(layout: &Layout, name: &str, platform: Option<&Platform>) -> Result<Image> {
    let entry = entry(layout, &layout.read_index()?, name)?;
    let want = platform.cloned().unwrap_or_else(Platform::host);
    let manifest_descriptor = match entry.kind() {
        Kind::Manifest => entry.clone(),
        Kind::Index => choose(layout, &entry, &want).with_context(|| name.to_string())?,
        Kind::Blob => bail!("{name}: {} is not an image (media type {})", entry.digest, entry.media_type),
    };
    let bytes = layout.read_document(&manifest_descriptor).with_context(|| name.to_string())?;
    let manifest = document::parse_manifest(&bytes)
        .with_context(|| format!("{name}: manifest {}", manifest_descriptor.digest))?;
    if !media_type::is_image_config(&manifest.config.media_type) {
        bail!("{name}: not a container image (config media type {})", manifest.config.media_type);
    }
    let config_bytes = layout.read_document(&manifest.config).with_context(|| name.to_string())?;
    let config = document::parse_config(&config_bytes)
        .with_context(|| format!("{name}: config {}", manifest.config.digest))?;
    let image_platform = config.platform();
    if platform.is_some() && !image_platform.satisfies(&want) {
        bail!("{name}: the image is for {image_platform}, not {want}");
    }
    Ok(Image { entry, manifest_descriptor, manifest, config, config_bytes, platform: image_platform })
}

fn choose(layout: &Layout, index: &Descriptor, want: &Platform) -> Result<Descriptor> {
    let bytes = layout.read_document(index)?;
    let parsed = document::parse_index(&bytes).with_context(|| format!("index {}", index.digest))?;
    let candidates: Vec<&Descriptor> = parsed
        .manifests
        .iter()
        .filter(|m| m.kind() == Kind::Manifest && m.platform.as_ref().is_some_and(|p| p.satisfies(want)))
        .collect();
    // Prefer a child that is in this layout (a single-platform copy keeps the whole index).
    match candidates.iter().find(|m| layout.has_blob(&m.digest)).or(candidates.first()) {
        Some(m) => Ok((*m).clone()),
        None => {
            let have: Vec<String> =
                parsed.manifests.iter().filter_map(|m| m.platform.as_ref().map(|p| p.to_string())).collect();
            bail!("no image for {want} (the index has {})", have.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::{BuiltIndex, Entry, Layer, TestImage};

    fn named(name: &str, content: &[u8]) -> Descriptor {
        let mut d = Descriptor::of(crate::media_type::OCI_MANIFEST, content);
        d.annotations.insert(crate::document::REF_NAME_ANNOTATION.into(), name.into());
        d
    }

    #[test]
    fn names_are_checked_before_lookup() {
        let full = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(Name::parse(&full), Ok(Name::Digest(_))));
        assert!(matches!(Name::parse(&"a".repeat(64)), Ok(Name::Digest(_))));
        assert!(matches!(Name::parse("sha256:abcdef"), Ok(Name::Prefix { .. })));
        assert_eq!(Name::parse("abcdef").unwrap(), Name::Reference { hex_prefix: true });
        assert_eq!(Name::parse("abcde").unwrap(), Name::Reference { hex_prefix: false });
        assert_eq!(Name::parse("alpine:3").unwrap(), Name::Reference { hex_prefix: false });
        assert!(matches!(Name::parse("Upper_Tag"), Ok(Name::Stored { .. })));
        for (bad, says) in [
            ("Alpine:3", "invalid reference \"Alpine:3\": repository name must be lowercase"),
            ("a//b", "invalid reference \"a//b\": empty path component"),
            ("x:", "invalid reference \"x:\": empty tag"),
            ("foo@sha256:zz", "invalid reference \"foo@sha256:zz\""),
            (
                "sha256:abc",
                "invalid digest \"sha256:abc\": a digest prefix needs at least 6 hex digits, got 3",
            ),
            ("sha256:ABCDEF", "invalid digest \"sha256:ABCDEF\": not lowercase hex"),
        ] {
            let err = format!("{:#}", Name::parse(bad).unwrap_err());
            assert!(err.starts_with(says), "{bad}: {err}");
        }
    }

    #[test]
    fn digest_prefixes_name_one_image_or_say_which() {
        let entries = [named("a:1", b"one"), named("a:2", b"one"), named("b:1", b"two")];
        let (one, two) = (entries[0].digest.clone(), entries[2].digest.clone());
        assert_eq!(find(&entries, &one.hex()[..12]).unwrap(), [0, 1]);
        assert_eq!(find(&entries, &format!("sha256:{}", &one.hex()[..6])).unwrap(), [0, 1]);
        assert_eq!(find(&entries, &one.to_string()).unwrap(), [0, 1]);
        assert_eq!(find(&entries, "a:2").unwrap(), [1]);
        assert!(find(&entries, "sha512:abcdef").unwrap().is_empty());
        // A prefix of both: find every length at which they still agree.
        let common = one.hex().chars().zip(two.hex().chars()).take_while(|(x, y)| x == y).count();
        if common >= MIN_PREFIX {
            let err = find(&entries, &one.hex()[..common]).unwrap_err().to_string();
            assert!(err.contains(&one.to_string()) && err.contains(&two.to_string()), "{err}");
        }
        // A reference of that name wins over the prefix, as docker looks names up first.
        let hexname = named(&format!("docker.io/library/{}:latest", &two.hex()[..8]), b"three");
        let with_name = [entries[0].clone(), entries[2].clone(), hexname];
        assert_eq!(find(&with_name, &two.hex()[..8]).unwrap(), [2]);
        assert_eq!(lookup(&with_name, "Bad:Name"), Vec::<usize>::new());
    }

    #[test]
    fn an_ambiguous_prefix_names_the_candidates() {
        // Made-up entries whose digests share their first 8 digits.
        let mk = |tail: char| {
            let d: Digest = format!("sha256:{}{}", "abcdef12", tail.to_string().repeat(56)).parse().unwrap();
            Descriptor::new(crate::media_type::OCI_MANIFEST, d, 1)
        };
        let entries = [mk('1'), mk('2'), mk('2')];
        let err = find(&entries, "abcdef12").unwrap_err().to_string();
        let (d1, d2) = (entries[0].digest.to_string(), entries[1].digest.to_string());
        assert_eq!(err, format!("ambiguous digest prefix \"abcdef12\": matches {d1} and {d2}"));
        assert_eq!(find(&entries, "abcdef122").unwrap(), [1, 2], "one digest, two entries");
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
    }

    #[test]
    fn finds_manifests_and_platform_children() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        let one = TestImage::new().layer(Layer::new([Entry::file("a", "1")])).build();
        one.write_to(&layout, Some("one:1")).unwrap();
        let arm = TestImage::new().platform("linux/arm64").layer(Layer::new([Entry::file("b", "2")])).build();
        let multi = BuiltIndex::new(vec![one.clone(), arm.clone()], false);
        multi.write_to(&layout, Some("multi:1")).unwrap();

        let img = image(&layout, "one:1", None).unwrap();
        assert_eq!(img.manifest_descriptor.digest, one.manifest.descriptor.digest);
        let img = image(&layout, "multi:1", Some(&"linux/arm64".parse().unwrap())).unwrap();
        assert_eq!(img.manifest_descriptor.digest, arm.manifest.descriptor.digest);
        assert_eq!(img.entry.digest, multi.index.descriptor.digest);
        let err = image(&layout, "multi:1", Some(&"linux/s390x".parse().unwrap())).unwrap_err();
        assert!(format!("{err:#}").contains("no image for linux/s390x"), "{err:#}");
        assert!(image(&layout, "nope:1", None).is_err());
        assert!(image(&layout, "one:1", Some(&"linux/s390x".parse().unwrap())).is_err());
    }
}
