//! Image references, parsed and normalised the way docker does:
//! `alpine` → `docker.io/library/alpine:latest`, `localhost:5000/a/b:t`, `name@sha256:…`,
//! `name:tag@sha256:…`.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::digest::Digest;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised reference. A reference without tag or digest gets the tag `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same name with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        check_tag(tag)?;
        Ok(Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }

    /// The same name pinned to a digest (the tag, if any, is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// What the registry API calls this image: the digest if pinned, else the tag.
    pub fn api_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// Docker's short form: `alpine:3.20` for `docker.io/library/alpine:3.20`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let short = full.strip_prefix("docker.io/").unwrap_or(&full);
        short.strip_prefix("library/").unwrap_or(short).to_string()
    }
}

impl FromStr for Reference {
    type Err = anyhow::Error;

    fn from_str(input: &str) -> Result<Self> {
        parse(input).map_err(|e| anyhow::anyhow!("invalid reference {input:?}: {e}"))
    }
}

fn parse(input: &str) -> Result<Reference> {
    if input.is_empty() {
        bail!("empty");
    }
    let (rest, digest) = match input.split_once('@') {
        Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
        None => (input, None),
    };
    // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() {
        bail!("empty repository name");
    }
    if name.len() > MAX_NAME_LEN {
        bail!("repository name longer than {MAX_NAME_LEN} characters");
    }
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a 64-character hex string is an image ID, not a repository name");
    }

    let (registry, path) = split_registry(name);
    check_registry(registry)?;
    for component in path.split('/') {
        check_path_component(component)?;
    }
    let registry = if registry == "index.docker.io" { DEFAULT_REGISTRY } else { registry };
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        bail!("repository name longer than {MAX_NAME_LEN} characters");
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference { registry: registry.to_string(), repository, tag, digest })
}

/// Docker's rule: the first component is a registry if it has a '.' or ':', is `localhost`,
/// or has uppercase letters; otherwise the image is on Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn check_registry(registry: &str) -> Result<()> {
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            bail!("invalid registry {registry:?}");
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            bail!("invalid registry {registry:?}");
        }
        (None, after.strip_prefix(':'))
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            bail!("invalid registry host {host:?}");
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("invalid registry port {port:?}");
    }
    Ok(())
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<()> {
    if c.is_empty() {
        bail!("empty path component");
    }
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        bail!("repository name must be lowercase");
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            bail!("invalid repository name component {c:?}");
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &c[sep..i];
        let valid =
            separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-');
        if !valid {
            bail!("invalid repository name component {c:?}");
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() {
        bail!("empty tag");
    }
    if tag.len() > MAX_TAG_LEN {
        bail!("tag longer than {MAX_TAG_LEN} characters");
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        bail!("invalid tag {tag:?}");
    }
    Ok(())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(norm("library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("me/app:1"), "docker.io/me/app:1");
        assert_eq!(norm("index.docker.io/me/app"), "docker.io/me/app:latest");
        assert_eq!(norm("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("quay.io/x/y/z:v1.0-rc_1"), "quay.io/x/y/z:v1.0-rc_1");
        assert_eq!(norm("[::1]:5000/app:1"), "[::1]:5000/app:1");
        assert_eq!(norm("Registry/app"), "Registry/app:latest");
        assert_eq!(norm(&format!("alpine@{D}")), format!("docker.io/library/alpine@{D}"));
        assert_eq!(norm(&format!("alpine:3@{D}")), format!("docker.io/library/alpine:3@{D}"));
        assert_eq!(norm("a__b-c---d/e.f_g"), "docker.io/a__b-c---d/e.f_g:latest");
    }

    #[test]
    fn parts_and_forms() {
        let r: Reference = format!("localhost:5000/a/b:t@{D}").parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.api_reference(), D);
        assert_eq!(r.name(), "localhost:5000/a/b");
        let a: Reference = "alpine:3.20".parse().unwrap();
        assert_eq!(a.familiar(), "alpine:3.20");
        assert_eq!(a.api_reference(), "3.20");
        assert_eq!(a.with_tag("edge").unwrap().to_string(), "docker.io/library/alpine:edge");
    }

    #[test]
    fn rejects_invalid_with_reason() {
        let long_name = "a".repeat(256);
        let long_tag = format!("a:{}", "t".repeat(129));
        let cases = [
            ("", "empty"),
            ("Alpine", "lowercase"),
            ("me/App", "lowercase"),
            ("alpine:", "empty tag"),
            ("alpine:-x", "invalid tag"),
            ("alpine:a/b", "invalid registry port"),
            ("alpine@sha256:123", "hex digits"),
            ("alpine@md5:abc", "unsupported algorithm"),
            ("a//b", "empty path component"),
            ("-a", "invalid repository name"),
            ("a_-b", "invalid repository name"),
            ("a...b", "invalid repository name"),
            ("a/", "empty path component"),
            (":tag", "empty repository name"),
            ("bad host!/x", "invalid"),
            ("host:port/x", "invalid registry port"),
            (long_name.as_str(), "longer than 255"),
            (long_tag.as_str(), "tag longer than 128"),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "image ID"),
        ];
        for (input, why) in cases {
            let err = input.parse::<Reference>().expect_err(input).to_string();
            assert!(err.contains(why), "{input:?}: {err:?} does not say {why:?}");
        }
    }
}
