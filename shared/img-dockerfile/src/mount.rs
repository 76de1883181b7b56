//! `RUN --mount=type=...,target=...`: what a RUN step mounts, read from the flag's
//! comma-separated fields. The kinds and the cache sharing modes are closed sets, so they are
//! enums; what a mount's source means is for the executor to decide.

use std::fmt;

use anyhow::{Context, Result, bail};

/// What a mount is. `bind` when the flag names no type.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum MountKind {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Secret => "secret",
            MountKind::Ssh => "ssh",
        }
    }

    fn parse(s: &str) -> Option<MountKind> {
        [MountKind::Bind, MountKind::Cache, MountKind::Tmpfs, MountKind::Secret, MountKind::Ssh]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// How builds share one cache mount: at once (`shared`, the default), each a copy of its own
/// (`private`), or one after another (`locked`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }
    }

    fn parse(s: &str) -> Option<Sharing> {
        [Sharing::Shared, Sharing::Private, Sharing::Locked].into_iter().find(|k| k.as_str() == s)
    }
}

// Debug shows the word as written, quoted, as it did when these were strings: a mount's Debug
// text is part of RUN's cache key, and caches made before must still be found.
impl fmt::Debug for MountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `RUN --mount=...`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mount {
    pub kind: MountKind,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub read_only: Option<bool>,
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<u64>,
}

/// `type=cache,target=/root/.cache,sharing=locked,...`
pub fn parse_mount(spec: &str) -> Result<Mount> {
    let mut m = Mount::default();
    // The type is checked once every field is read, so that an unknown option is told first.
    let mut kind = String::from("bind");
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.to_string())),
            None => (field.to_lowercase(), None),
        };
        let need = |v: Option<String>| v.with_context(|| format!("--mount: {k} needs a value"));
        let flag = |v: Option<String>| -> Result<bool> {
            match v.as_deref() {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(x) => bail!("--mount: {k} expects true or false, got {x:?}"),
            }
        };
        let number = |v: Option<String>, radix: u32| -> Result<u32> {
            let v = v.with_context(|| format!("--mount: {k} needs a value"))?;
            u32::from_str_radix(&v, radix).with_context(|| format!("--mount: invalid {k} {v:?}"))
        };
        match k.as_str() {
            "type" => kind = need(v)?,
            "target" | "dst" | "destination" => m.target = Some(need(v)?),
            "source" | "src" => m.source = Some(need(v)?),
            "from" => m.from = Some(need(v)?),
            "id" => m.id = Some(need(v)?),
            "ro" | "readonly" => m.read_only = Some(flag(v)?),
            "rw" | "readwrite" => m.read_only = Some(!flag(v)?),
            "sharing" => {
                let s = need(v)?;
                let sharing =
                    Sharing::parse(&s).context("--mount: sharing must be shared, private or locked")?;
                m.sharing = Some(sharing);
            }
            "mode" => m.mode = Some(number(v, 8)?),
            "uid" => m.uid = Some(number(v, 10)?),
            "gid" => m.gid = Some(number(v, 10)?),
            "required" => m.required = flag(v)?,
            "size" => m.size = Some(need(v)?.parse().context("--mount: invalid size")?),
            _ => bail!("--mount: unknown option {k:?}"),
        }
    }
    m.kind = MountKind::parse(&kind).with_context(|| format!("--mount: unknown type {kind:?}"))?;
    if m.target.is_none() && !matches!(m.kind, MountKind::Secret | MountKind::Ssh) {
        bail!("--mount: type={} needs a target", m.kind);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_defaults() {
        let m = parse_mount("type=cache,target=/c,sharing=locked,ro,uid=7,mode=0755").unwrap();
        assert_eq!((m.kind, m.sharing, m.read_only), (MountKind::Cache, Some(Sharing::Locked), Some(true)));
        assert_eq!((m.uid, m.mode), (Some(7), Some(0o755)));
        assert_eq!(parse_mount("target=/x").unwrap().kind, MountKind::Bind);
        assert_eq!(parse_mount("type=ssh").unwrap().target, None);
        for (spec, why) in [
            ("type=nfs,target=/x", "unknown type \"nfs\""),
            ("type=nfs,bogus", "unknown option \"bogus\""),
            ("type=cache,target=/c,sharing=some", "sharing must be"),
            ("type=tmpfs", "type=tmpfs needs a target"),
        ] {
            let err = format!("{:#}", parse_mount(spec).unwrap_err());
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    /// RUN's cache key holds each mount's Debug text: it must read as it did when the kind and
    /// sharing were strings, or every cached RUN with a mount would run again.
    #[test]
    fn debug_text_is_the_cache_key_it_was() {
        let m = parse_mount("type=cache,target=/c,sharing=locked").unwrap();
        assert_eq!(
            format!("{m:?}"),
            "Mount { kind: \"cache\", target: Some(\"/c\"), source: None, from: None, id: None, \
             read_only: None, sharing: Some(\"locked\"), mode: None, uid: None, gid: None, \
             required: false, size: None }"
        );
    }
}
