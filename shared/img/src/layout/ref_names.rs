//! How a name the user gives finds entries of `index.json`.
//!
//! We write the full normalised reference (`docker.io/library/alpine:3.20`) in the
//! `org.opencontainers.image.ref.name` annotation. Other tools write other forms: skopeo keeps
//! what it was given (`alpine:3.20`), umoci writes a bare tag (`latest`). Lookup is lenient so
//! those are found too, but the most exact kind of match wins.

use crate::digest::Digest;
use crate::document::Descriptor;
use crate::reference::Reference;

/// How well a stored name matches a query, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Exact,
    Normalised,
    BareTag,
}

fn match_kind(stored: &str, query: &str) -> Option<Match> {
    if stored == query {
        return Some(Match::Exact);
    }
    let q = query.parse::<Reference>().ok()?;
    if stored.parse::<Reference>().is_ok_and(|s| s == q) {
        return Some(Match::Normalised);
    }
    // umoci's bare tags: a query whose tag is that tag finds it (`img-ls` shows it as is).
    if is_bare_tag(stored) && q.tag() == Some(stored) && query.ends_with(&format!(":{stored}")) {
        return Some(Match::BareTag);
    }
    None
}

/// A stored name that is just a tag, as umoci and `skopeo copy oci:dir:tag` write.
pub fn is_bare_tag(stored: &str) -> bool {
    !stored.contains(['/', ':', '@'])
}

/// Whether two stored names denote the same image reference (so one replaces the other).
pub fn same_image(a: &str, b: &str) -> bool {
    a == b
        || match (a.parse::<Reference>(), b.parse::<Reference>()) {
            (Ok(x), Ok(y)) => !is_bare_tag(a) && !is_bare_tag(b) && x == y,
            _ => false,
        }
}

/// The positions of the entries a query names: a digest (`sha256:…`) names every entry with that
/// digest; otherwise the best kind of ref match wins (exact, then normalised, then bare tag).
pub fn find(entries: &[Descriptor], query: &str) -> Vec<usize> {
    if let Ok(digest) = query.parse::<Digest>() {
        return positions(entries, |e| e.digest == digest);
    }
    let best = entries.iter().filter_map(|e| match_kind(e.ref_name()?, query)).min();
    match best {
        Some(best) => positions(entries, |e| e.ref_name().and_then(|n| match_kind(n, query)) == Some(best)),
        None => Vec::new(),
    }
}

/// The positions of entries an `img-ls` filter selects: a name without tag or digest selects
/// all its tags; anything else is a lookup as in [`find`].
pub fn filter(entries: &[Descriptor], query: &str) -> Vec<usize> {
    let has_version = query.rsplit('/').next().is_some_and(|last| last.contains([':', '@']));
    match query.parse::<Reference>() {
        Ok(q) if !has_version => positions(entries, |e| {
            e.ref_name().and_then(|n| n.parse::<Reference>().ok()).is_some_and(|s| s.name() == q.name())
        }),
        _ => find(entries, query),
    }
}

/// Why a query that found nothing can never find anything of ours: it is neither a valid
/// reference nor a valid digest. (Stored names are matched exactly first, so a bare tag another
/// tool wrote, even an invalid reference, is still found.)
pub fn invalid_query(query: &str) -> Option<anyhow::Error> {
    if query.starts_with("sha256:") || query.starts_with("sha512:") {
        return query.parse::<Digest>().err();
    }
    query.parse::<Reference>().err()
}

fn positions(entries: &[Descriptor], pred: impl Fn(&Descriptor) -> bool) -> Vec<usize> {
    entries.iter().enumerate().filter(|(_, e)| pred(e)).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::REF_NAME_ANNOTATION;

    fn entry(name: &str, content: &[u8]) -> Descriptor {
        let mut d = Descriptor::of(crate::media_type::OCI_MANIFEST, content);
        d.annotations.insert(REF_NAME_ANNOTATION.into(), name.into());
        d
    }

    #[test]
    fn finds_best_match() {
        let entries = [
            entry("docker.io/library/alpine:3.20", b"a"),
            entry("alpine:edge", b"b"),
            entry("latest", b"c"),
            entry("localhost:5000/app:1", b"d"),
        ];
        assert_eq!(find(&entries, "alpine:3.20"), [0]);
        assert_eq!(find(&entries, "docker.io/library/alpine:3.20"), [0]);
        assert_eq!(find(&entries, "docker.io/library/alpine:edge"), [1]);
        assert_eq!(find(&entries, "alpine:edge"), [1]);
        assert_eq!(find(&entries, "latest"), [2]);
        assert_eq!(find(&entries, "anything:latest"), [2]);
        assert!(find(&entries, "alpine").is_empty(), "bare name is alpine:latest, not the bare tag");
        assert_eq!(find(&entries, &entries[3].digest.to_string()), [3]);
        assert!(find(&entries, "localhost:5000/app:2").is_empty());
    }

    #[test]
    fn filter_by_name_matches_all_tags() {
        let entries = [
            entry("docker.io/library/alpine:3.20", b"a"),
            entry("alpine:edge", b"b"),
            entry("docker.io/library/debian:12", b"c"),
        ];
        assert_eq!(filter(&entries, "alpine"), [0, 1]);
        assert_eq!(filter(&entries, "docker.io/library/alpine"), [0, 1]);
        assert_eq!(filter(&entries, "alpine:edge"), [1]);
        assert_eq!(filter(&entries, "debian"), [2]);
        assert!(filter(&entries, "ubuntu").is_empty());
    }

    #[test]
    fn invalid_queries_say_why() {
        assert!(invalid_query("alpine:3").is_none());
        assert!(invalid_query("latest").is_none());
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(invalid_query(&d).is_none());
        assert!(invalid_query("Alpine").unwrap().to_string().contains("lowercase"));
        assert!(invalid_query("sha256:abc").unwrap().to_string().contains("hex digits"));
        // An exact stored name is found even when it is not a valid reference.
        let entries = [entry("Upper_Tag", b"a")];
        assert_eq!(find(&entries, "Upper_Tag"), [0]);
        assert_eq!(filter(&entries, "Upper_Tag"), [0]);
    }

    #[test]
    fn same_image_ignores_bare_tags() {
        assert!(same_image("alpine:3", "docker.io/library/alpine:3"));
        assert!(!same_image("latest", "docker.io/library/latest:latest"));
        assert!(same_image("latest", "latest"));
    }
}
