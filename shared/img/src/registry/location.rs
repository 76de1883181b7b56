//! Resolving a `Location` header (a redirect, an upload session) against the URL it answered:
//! absolute, host-relative (`/v2/...`) or relative to the URL's directory.

/// `location` as an absolute URL, read against `base`.
pub(super) fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let host = rest.split('/').next().unwrap_or_default();
    if location.starts_with('/') {
        format!("{scheme}://{host}{location}")
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        assert_eq!(
            resolve("http://h:5/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u?x=1"),
            "http://h:5/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(resolve("http://h:5/v2/x", "https://cdn/y"), "https://cdn/y");
    }
}
