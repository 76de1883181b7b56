//! docker's mount flags as runtime mounts: `-v SRC:DST[:ro]`, `--tmpfs DST[:OPTIONS]` and
//! their long form `--mount type=bind|tmpfs,…`. Named volumes are not supported: img-run has
//! no volume store.

use anyhow::{Result, anyhow, bail};
use img::runtime::spec::Mount;

use crate::sizes::parse_bytes;

/// `-v SRC:DST[:ro|rw]`: a recursive bind of an absolute host path.
pub fn volume(v: &str) -> Result<Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => bail!("-v {v}: expected SRC:DST[:ro]"),
    };
    if !src.starts_with('/') {
        bail!("-v {v}: named volumes are not supported; the source must be an absolute path");
    }
    if !dst.starts_with('/') {
        bail!("-v {v}: the destination must be an absolute path");
    }
    let mut options = vec!["rbind", "rprivate"];
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => options.push("ro"),
            "rw" | "z" | "Z" => {}
            other => bail!("-v {v}: unknown mode {other:?}"),
        }
    }
    Ok(Mount::new(dst, "bind", src, &options))
}

/// `--tmpfs DST[:OPTIONS]`: a tmpfs, noexec, nosuid and nodev as docker's, plus the options.
pub fn tmpfs(t: &str) -> Result<Mount> {
    let (dest, extra) = t.split_once(':').unwrap_or((t, ""));
    if !dest.starts_with('/') {
        bail!("--tmpfs {t}: the destination must be an absolute path");
    }
    let mut options = vec!["noexec", "nosuid", "nodev"];
    options.extend(extra.split(',').filter(|o| !o.is_empty()));
    Ok(Mount::new(dest, "tmpfs", "tmpfs", &options))
}

/// `--mount type=bind,source=SRC,target=DST[,readonly]` or `type=tmpfs,target=DST
/// [,tmpfs-size=BYTES][,tmpfs-mode=OCTAL]`, in docker's spelling (src, dst, destination, ro).
pub fn mount_option(text: &str) -> Result<Mount> {
    let mut kind = "volume";
    let (mut source, mut target) = (None, None);
    let mut options: Vec<String> = Vec::new();
    let mut propagation = "rprivate";
    for field in text.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, "true"));
        match key {
            "type" => kind = value,
            "source" | "src" => source = Some(value),
            "target" | "destination" | "dst" => target = Some(value),
            "readonly" | "ro" if value == "true" || value == "1" => options.push("ro".into()),
            "readonly" | "ro" => {}
            "tmpfs-size" => options.push(format!("size={}", parse_bytes(value)?)),
            "tmpfs-mode" => options.push(format!("mode={value}")),
            "bind-propagation" => propagation = value,
            "consistency" => {}
            _ => bail!("--mount {text}: unknown field {key:?}"),
        }
    }
    let target = target.ok_or_else(|| anyhow!("--mount {text}: a target is needed"))?;
    if !target.starts_with('/') {
        bail!("--mount {text}: the target must be an absolute path");
    }
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    match kind {
        "bind" => {
            let source = source.ok_or_else(|| anyhow!("--mount {text}: a bind needs a source"))?;
            if !source.starts_with('/') {
                bail!("--mount {text}: the source must be an absolute path");
            }
            if !["private", "rprivate", "shared", "rshared", "slave", "rslave"].contains(&propagation) {
                bail!("--mount {text}: unknown bind-propagation {propagation:?}");
            }
            let mut all = vec!["rbind", propagation];
            all.extend(options);
            Ok(Mount::new(target, "bind", source, &all))
        }
        "tmpfs" => {
            let mut all = vec!["noexec", "nosuid", "nodev"];
            all.extend(options);
            Ok(Mount::new(target, "tmpfs", "tmpfs", &all))
        }
        other => bail!("--mount {text}: type {other} is not supported (bind or tmpfs; no named volumes)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_as_docker_spells_them() {
        let m = mount_option("type=bind,src=/host,dst=/in,readonly").unwrap();
        assert_eq!((m.kind.as_str(), m.source.as_str(), m.destination.as_str()), ("bind", "/host", "/in"));
        assert_eq!(m.options, ["rbind", "rprivate", "ro"]);
        let m = mount_option("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.options, ["noexec", "nosuid", "nodev", "size=1048576", "mode=1770"]);
        for bad in [
            "type=volume,src=v,dst=/d",
            "type=bind,src=rel,dst=/d",
            "type=bind,dst=/d",
            "type=tmpfs",
            "type=bind,src=/a,dst=/d,x=1",
        ] {
            assert!(mount_option(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_and_tmpfs() {
        assert_eq!(volume("/a:/b:ro").unwrap().options, ["rbind", "rprivate", "ro"]);
        assert!(volume("name:/b").is_err());
        assert_eq!(tmpfs("/t:size=1m").unwrap().options, ["noexec", "nosuid", "nodev", "size=1m"]);
        assert!(tmpfs("t").is_err());
    }
}
