//! Which host serves a registry name, and where plain http may be used: naming as docker
//! (`docker.io` is served by `registry-1.docker.io`), plain http only on loopback hosts.

/// The host that serves a registry name.
pub fn endpoint_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Whether a registry name is a loopback host (where plain http is allowed).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(v6) = registry.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(endpoint_host("docker.io"), "registry-1.docker.io");
        assert_eq!(endpoint_host("quay.io"), "quay.io");
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:5000"));
        assert!(!is_loopback("example.com:5000") && !is_loopback("10.0.0.1"));
    }
}
