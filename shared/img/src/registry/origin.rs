//! Where credentials may go. The user trusts the registry they named and nothing else it points
//! us at: blob downloads redirected to a CDN, upload `Location`s, anything in a response. So
//! every request decides whether to carry an `Authorization` header by comparing its URL's
//! origin (scheme, host and port, as browsers and containerd do) with the registry's, and a
//! 401 from another origin is an error instead of a reason to log in there: otherwise a
//! redirect target could answer with a Bearer realm of its own and be handed the user's
//! password, or a token for it that we would then send back to the real registry.
//!
//! The one other place credentials go is the token realm the registry itself announces in its
//! `WWW-Authenticate` challenge ([`super::auth`]), which is often on another host
//! (`auth.docker.io` for Docker Hub): the registry is trusted to name its own token service.

use ureq::http::Uri;

/// A URL's scheme, host and port; two URLs with equal origins reach the same server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute http(s) URL; `None` for anything else.
    pub fn of(url: &str) -> Option<Origin> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        Some(Origin { port: uri.port_u16().unwrap_or(default_port), scheme, host })
    }

    /// Whether `url` is on this origin.
    pub fn serves(&self, url: &str) -> bool {
        Origin::of(url).as_ref() == Some(self)
    }

    /// `host:port`, for messages.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_need_scheme_host_and_port_to_match() {
        let registry = Origin::of("https://reg.example:5000").unwrap();
        assert!(registry.serves("https://reg.example:5000/v2/a/blobs/uploads/x?y=1"));
        assert!(registry.serves("https://REG.example:5000/v2/"));
        assert!(!registry.serves("https://reg.example:5001/v2/"), "another port");
        assert!(!registry.serves("http://reg.example:5000/v2/"), "another scheme");
        assert!(!registry.serves("https://cdn.example:5000/v2/"), "another host");
        assert!(!registry.serves("https://reg.example:5000@evil.example/v2/"), "userinfo is not the host");
        assert!(!registry.serves("/v2/relative"), "relative URLs are resolved first");
        let default = Origin::of("https://reg.example").unwrap();
        assert!(default.serves("https://reg.example:443/v2/"));
        assert!(!default.serves("http://reg.example:443/v2/"));
        // 127.0.0.1 and localhost are different names, so different origins.
        assert!(!Origin::of("http://127.0.0.1:5000").unwrap().serves("http://localhost:5000/v2/"));
        assert_eq!(Origin::of("http://127.0.0.1:5000/v2/").unwrap().host_port(), "127.0.0.1:5000");
        assert_eq!(Origin::of("ftp://x/"), None);
    }
}
