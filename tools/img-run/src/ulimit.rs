//! `--ulimit NAME=SOFT[:HARD]`: docker's names for resource limits, as rlimits of the spec.

use anyhow::{Result, anyhow, bail};
use img::runtime::spec::Rlimit;

/// `--ulimit NAME=SOFT[:HARD]` (docker's names: nofile, nproc, core, …; -1 or `unlimited` for
/// no limit) as an rlimit of the spec.
pub fn parse_ulimit(text: &str) -> Result<Rlimit> {
    let bad = || anyhow!("--ulimit {text}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048");
    let (name, limits) = text.split_once('=').ok_or_else(bad)?;
    const NAMES: [&str; 16] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    if !NAMES.contains(&name) {
        bail!("--ulimit {text}: unknown limit {name:?}");
    }
    let value = |v: &str| match v {
        "-1" | "unlimited" => Ok(u64::MAX),
        v => v.parse::<u64>().map_err(|_| bad()),
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => (value(limits)?, value(limits)?),
    };
    if soft > hard {
        bail!("--ulimit {text}: the soft limit is above the hard one");
    }
    Ok(Rlimit { kind: format!("RLIMIT_{}", name.to_uppercase()), soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_as_docker_spells_them() {
        let l = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((l.kind.as_str(), l.soft, l.hard), ("RLIMIT_NOFILE", 1024, 2048));
        let l = parse_ulimit("core=-1").unwrap();
        assert_eq!((l.soft, l.hard), (u64::MAX, u64::MAX));
        assert!(parse_ulimit("nofile=3:2").is_err() && parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err() && parse_ulimit("nofile=x").is_err());
    }
}
