//! `--add-host HOST:IP`, as img-run and img-build take it: an entry of the container's
//! /etc/hosts.

use anyhow::{Result, anyhow, bail};
use img::runtime::etc_files::HostEntry;

/// `--add-host HOST:IP` (or `HOST=IP`; an IPv6 address may be in brackets).
pub fn parse_add_host(text: &str) -> Result<HostEntry> {
    let (host, ip) =
        text.split_once(['=', ':']).ok_or_else(|| anyhow!("--add-host {text}: expected HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        anyhow!("--add-host {text}: {ip:?} is not an IP address (host-gateway is not supported)")
    })?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("--add-host {text}: invalid host name {host:?}");
    }
    Ok(HostEntry { host: host.to_string(), ip })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_as_docker_spells_them() {
        let line = |text: &str| parse_add_host(text).unwrap().line();
        assert_eq!(line("db:10.0.0.2"), "10.0.0.2\tdb\n");
        assert_eq!(line("v6:::1"), "::1\tv6\n");
        assert_eq!(line("eq=[fe80::1]"), "fe80::1\teq\n");
        assert!(parse_add_host("db").is_err() && parse_add_host("db:host-gateway").is_err());
    }
}
