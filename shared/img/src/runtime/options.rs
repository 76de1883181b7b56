//! docker-run semantics: the options a user gives (`-e`, `-w`, `-u`, `--entrypoint`, `-v`,
//! `--memory`, …) applied to a spec, and the image config's Entrypoint/Cmd/Env/User/WorkingDir
//! combined with them exactly as docker does.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use super::capabilities;
use super::spec::{Cpu, Memory, Mount, Pids, Spec};
use crate::document::RunConfig;

/// docker's PATH for images that set none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The options of `img-run` that change what runs and how, in docker's spelling.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The command after the image (replaces Cmd, or the bundle's args).
    pub command: Vec<String>,
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// `-e`/`--env-file` entries, `KEY=VALUE` (a bare `KEY` was already looked up).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub volumes: Vec<String>,
    pub tmpfs: Vec<String>,
    /// `--mount type=bind|tmpfs,…` entries, docker's long form of -v and --tmpfs.
    pub mounts: Vec<String>,
    /// `--shm-size`: the size of /dev/shm in bytes (docker's default is 64 MiB).
    pub shm_size: Option<i64>,
    pub read_only: bool,
    /// `host` or `none`; `None` keeps the bundle's choice (host for images).
    pub network: Option<String>,
    pub tty: bool,
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt` entries, docker's spelling.
    pub security_opt: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]` entries.
    pub ulimits: Vec<String>,
    /// `--device HOST[:CONTAINER[:PERMISSIONS]]` entries.
    pub devices: Vec<String>,
    /// `--device-cgroup-rule 'TYPE MAJOR:MINOR ACCESS'` entries.
    pub device_cgroup_rules: Vec<String>,
    /// `--privileged`: every capability and host device, nothing masked, /sys writable.
    pub privileged: bool,
}

/// `--ulimit NAME=SOFT[:HARD]` (docker's names: nofile, nproc, core, …; -1 or `unlimited` for
/// no limit) as an rlimit of the spec.
pub fn parse_ulimit(text: &str) -> Result<super::spec::Rlimit> {
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
    Ok(super::spec::Rlimit { kind: format!("RLIMIT_{}", name.to_uppercase()), soft, hard })
}

/// `--add-host HOST:IP` (or `HOST=IP`) as a line of /etc/hosts.
pub fn parse_add_host(text: &str) -> Result<String> {
    let (host, ip) =
        text.split_once(['=', ':']).ok_or_else(|| anyhow!("--add-host {text}: expected HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        anyhow!("--add-host {text}: {ip:?} is not an IP address (host-gateway is not supported)")
    })?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("--add-host {text}: invalid host name {host:?}");
    }
    Ok(format!("{ip}\t{host}\n"))
}

/// Adds devices to the spec, each replacing one of the same path.
fn add_devices(spec: &mut Spec, devices: Vec<super::spec::Device>) {
    for d in devices {
        spec.linux.devices.retain(|x| x.path != d.path);
        spec.linux.devices.push(d);
    }
}

/// `--privileged` allows every device; otherwise `--device` adds its node and a rule with its
/// permissions, and `--device-cgroup-rule` its rule, after the spec's (as docker does).
fn apply_device_options(spec: &mut Spec, opts: &RunOptions) -> Result<()> {
    let mut devices = Vec::new();
    let mut rules = Vec::new();
    for d in &opts.devices {
        let (device, rule) = super::devices::parse_option(d)?;
        devices.push(device);
        rules.push(rule);
    }
    for r in &opts.device_cgroup_rules {
        rules.push(super::device_rules::parse_cgroup_rule(r)?);
    }
    add_devices(spec, devices);
    if opts.privileged {
        spec.resources_mut().devices = super::device_rules::allow_all();
    } else if !rules.is_empty() {
        // (A bundle without rules allows every device already: these add nothing there.)
        spec.resources_mut().devices.extend(rules);
    }
    Ok(())
}

/// What `--security-opt seccomp=…` asked for.
enum SeccompChoice {
    /// Nothing said: docker's default for images (off with `--privileged`), the bundle's own.
    Default,
    Unconfined,
    /// A profile file in docker's format.
    Profile(String),
}

/// Applies `--security-opt` entries: `no-new-privileges[=|:true|false]`, `seccomp=PROFILE.json|
/// unconfined`, and the docker ones that turn off confinement img-run does not have (AppArmor,
/// SELinux labels).
fn apply_security_opts(p: &mut super::spec::Process, opts: &[String]) -> Result<SeccompChoice> {
    let mut seccomp = SeccompChoice::Default;
    for opt in opts {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
        match (key, value) {
            ("no-new-privileges", "true") => p.no_new_privileges = true,
            ("no-new-privileges", "false") => p.no_new_privileges = false,
            ("seccomp", "unconfined") => seccomp = SeccompChoice::Unconfined,
            ("seccomp", "" | "true") => bail!("--security-opt {opt}: name a profile file or unconfined"),
            ("seccomp", file) => seccomp = SeccompChoice::Profile(file.to_string()),
            ("apparmor", "unconfined") | ("label", "disable") => {}
            _ => {
                bail!("--security-opt {opt}: not supported (img-run has no AppArmor or SELinux confinement)")
            }
        }
    }
    Ok(seccomp)
}

/// The container's seccomp filter as docker chooses it: a named profile (even with
/// `--privileged`), none when unconfined or privileged, else docker's default for an image
/// and the bundle's own for a bundle. Profiles are resolved against the final bounding set.
fn choose_seccomp(spec: &mut Spec, choice: SeccompChoice, privileged: bool, bundle_mode: bool) -> Result<()> {
    let bounding = spec.process.capabilities.as_ref().map(|c| c.bounding.clone()).unwrap_or_default();
    spec.linux.seccomp = match choice {
        SeccompChoice::Unconfined => None,
        SeccompChoice::Profile(file) => {
            let what = format!("--security-opt seccomp={file}");
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{what}: reading the profile"))?;
            Some(super::seccomp::Profile::parse(&text, &what)?.resolve(&bounding).context(what)?)
        }
        SeccompChoice::Default if privileged => None,
        SeccompChoice::Default if bundle_mode => spec.linux.seccomp.take(),
        SeccompChoice::Default => Some(super::seccomp::docker_default(&bounding)),
    };
    Ok(())
}

/// Sets `KEY=VALUE` in an environment list, replacing an earlier value of KEY.
pub fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(entry.to_string());
}

/// docker's `-e KEY`: the caller's value of KEY, or nothing if it has none.
pub fn expand_env_arg(arg: &str) -> Option<String> {
    if arg.contains('=') {
        return Some(arg.to_string());
    }
    std::env::var(arg).ok().map(|v| format!("{arg}={v}"))
}

/// Reads an `--env-file`: `KEY=VALUE` lines, `#` comments and blank lines skipped.
pub fn read_env_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading env file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(expand_env_arg)
        .collect())
}

/// docker's memory sizes: a number with an optional unit b, k, m, g, t (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if n < 0.0 {
        bail!("invalid size {s:?}");
    }
    Ok((n * mult as f64) as i64)
}

/// The process of a container from an image: Entrypoint/Cmd/Env/User/WorkingDir as docker
/// combines them with the options. Returns the user to resolve in the container.
pub fn apply_image_config(spec: &mut Spec, config: &RunConfig, opts: &RunOptions) -> Option<String> {
    let p = &mut spec.process;
    let (entrypoint, cmd) = match &opts.entrypoint {
        // --entrypoint also resets the image's Cmd.
        Some(e) if e.is_empty() => (Vec::new(), opts.command.clone()),
        Some(e) => (vec![e.clone()], opts.command.clone()),
        None => {
            let cmd = if opts.command.is_empty() {
                config.cmd.clone().unwrap_or_default()
            } else {
                opts.command.clone()
            };
            (config.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    p.args = entrypoint.into_iter().chain(cmd).collect();
    p.env = config.env.clone().unwrap_or_default();
    if !p.env.iter().any(|e| e.starts_with("PATH=")) {
        p.env.insert(0, DEFAULT_PATH.to_string());
    }
    p.cwd = config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".to_string());
    config.user.clone().filter(|u| !u.is_empty())
}

/// Applies the options to a spec (from a bundle or an image). Returns the user to resolve in
/// the container, if `-u` was given.
pub fn apply(spec: &mut Spec, opts: &RunOptions, bundle_mode: bool) -> Result<Option<String>> {
    let p = &mut spec.process;
    if bundle_mode {
        match &opts.entrypoint {
            Some(e) if !e.is_empty() => {
                p.args = std::iter::once(e.clone()).chain(opts.command.clone()).collect()
            }
            _ if !opts.command.is_empty() => p.args = opts.command.clone(),
            _ => {}
        }
    }
    for e in &opts.env {
        set_env(&mut p.env, e);
    }
    if opts.tty && !p.env.iter().any(|e| e.starts_with("TERM=")) {
        p.env.push("TERM=xterm".to_string());
    }
    if let Some(w) = &opts.workdir {
        if !w.starts_with('/') {
            bail!("the working directory {w:?} is not an absolute path");
        }
        p.cwd = w.clone();
    }
    // --privileged first, so that --cap-drop still narrows it.
    if opts.privileged
        && let Some(caps) = p.capabilities.as_mut()
    {
        let all = capabilities::adjust(&[], &["ALL".to_string()], &[])?;
        caps.bounding = all.clone();
        caps.effective = all.clone();
        caps.permitted = all;
    }
    if let Some(caps) = p.capabilities.as_mut()
        && (!opts.cap_add.is_empty() || !opts.cap_drop.is_empty())
    {
        caps.bounding = capabilities::adjust(&caps.bounding, &opts.cap_add, &opts.cap_drop)?;
        caps.effective = capabilities::adjust(&caps.effective, &opts.cap_add, &opts.cap_drop)?;
        caps.permitted = capabilities::adjust(&caps.permitted, &opts.cap_add, &opts.cap_drop)?;
        let keep = |set: &mut Vec<String>, bounding: &[String]| set.retain(|c| bounding.contains(c));
        let bounding = caps.bounding.clone();
        keep(&mut caps.inheritable, &bounding);
        keep(&mut caps.ambient, &bounding);
    }
    let seccomp = apply_security_opts(p, &opts.security_opt)?;
    for u in &opts.ulimits {
        let limit = parse_ulimit(u)?;
        p.rlimits.retain(|r| r.kind != limit.kind);
        p.rlimits.push(limit);
    }
    choose_seccomp(spec, seccomp, opts.privileged, bundle_mode)?;
    if let Some(h) = &opts.hostname {
        spec.hostname = Some(h.clone());
    }
    if opts.privileged {
        spec.linux.masked_paths.clear();
        spec.linux.readonly_paths.clear();
        for m in spec.mounts.iter_mut().filter(|m| m.kind == "sysfs" || m.kind.starts_with("cgroup")) {
            m.options.retain(|o| o != "ro");
        }
        add_devices(spec, super::devices::all_host_devices());
    }
    apply_device_options(spec, opts)?;
    if opts.read_only {
        spec.root.readonly = true;
    }
    match opts.network.as_deref() {
        None => {}
        Some("host") => spec.set_namespace("network", false),
        Some("none") => spec.set_namespace("network", true),
        Some(other) => bail!("--network {other}: only \"host\" and \"none\" are supported"),
    }
    for v in &opts.volumes {
        spec.mounts.push(volume(v)?);
    }
    for m in &opts.mounts {
        spec.mounts.push(mount_option(m)?);
    }
    if let Some(size) = opts.shm_size {
        if size <= 0 {
            bail!("--shm-size: the size must be above zero");
        }
        for m in spec.mounts.iter_mut().filter(|m| m.destination == "/dev/shm" && m.kind == "tmpfs") {
            m.options.retain(|o| !o.starts_with("size="));
            m.options.push(format!("size={size}"));
        }
    }
    for t in &opts.tmpfs {
        let (dest, extra) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !dest.starts_with('/') {
            bail!("--tmpfs {t}: the destination must be an absolute path");
        }
        let mut options = vec!["noexec", "nosuid", "nodev"];
        options.extend(extra.split(',').filter(|o| !o.is_empty()));
        spec.mounts.push(Mount::new(dest, "tmpfs", "tmpfs", &options));
    }
    if let Some(m) = opts.memory {
        if m < 6 << 20 {
            bail!("--memory: the minimum is 6MiB");
        }
        spec.resources_mut().memory = Some(Memory { limit: Some(m), swap: None });
    }
    if let Some(n) = opts.pids_limit {
        spec.resources_mut().pids = Some(Pids { limit: n });
    }
    if let Some(cpus) = opts.cpus {
        let max = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        if !(0.01..=max).contains(&cpus) {
            bail!("--cpus: the range of CPUs is from 0.01 to {max}");
        }
        let period = 100_000u64;
        spec.resources_mut().cpu =
            Some(Cpu { quota: Some((cpus * period as f64) as i64), period: Some(period), shares: None });
    }
    Ok(opts.user.clone())
}

/// `-v SRC:DST[:ro|rw]`: a recursive bind of an absolute host path.
fn volume(v: &str) -> Result<Mount> {
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

/// `--mount type=bind,source=SRC,target=DST[,readonly]` or `type=tmpfs,target=DST
/// [,tmpfs-size=BYTES][,tmpfs-mode=OCTAL]`, in docker's spelling (src, dst, destination, ro).
fn mount_option(text: &str) -> Result<Mount> {
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

/// /etc/hosts, /etc/resolv.conf and /etc/hostname, as docker provides them: files in the
/// container's directory, bound over the image's (read-only for build steps, which must not
/// change them).
pub fn add_etc_files(
    spec: &mut Spec,
    dir: &Path,
    hostname: &str,
    network_none: bool,
    read_only: bool,
    extra_hosts: &[String],
) -> Result<()> {
    let mut hosts = if network_none {
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    } else {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()
        })
    };
    if !hosts.ends_with('\n') && !hosts.is_empty() {
        hosts.push('\n');
    }
    for h in extra_hosts {
        hosts.push_str(&parse_add_host(h)?);
    }
    let resolv = if network_none {
        String::new()
    } else {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    };
    for (name, content) in [("hosts", hosts), ("resolv.conf", resolv), ("hostname", format!("{hostname}\n"))]
    {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        let options: &[&str] = if read_only { &["rbind", "rprivate", "ro"] } else { &["rbind", "rprivate"] };
        spec.mounts.push(Mount::new(&format!("/etc/{name}"), "bind", &path.to_string_lossy(), options));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        RunConfig { entrypoint: ep.map(v), cmd: cmd.map(v), ..RunConfig::default() }
    }

    fn args(cfg: &RunConfig, entrypoint: Option<&str>, command: &[&str]) -> Vec<String> {
        let mut spec = Spec::docker_default();
        let opts = RunOptions {
            entrypoint: entrypoint.map(str::to_string),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..RunOptions::default()
        };
        apply_image_config(&mut spec, cfg, &opts);
        spec.process.args
    }

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
    fn ulimits_and_extra_hosts_as_docker_spells_them() {
        let l = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((l.kind.as_str(), l.soft, l.hard), ("RLIMIT_NOFILE", 1024, 2048));
        let l = parse_ulimit("core=-1").unwrap();
        assert_eq!((l.soft, l.hard), (u64::MAX, u64::MAX));
        assert!(parse_ulimit("nofile=3:2").is_err() && parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err() && parse_ulimit("nofile=x").is_err());
        assert_eq!(parse_add_host("db:10.0.0.2").unwrap(), "10.0.0.2\tdb\n");
        assert_eq!(parse_add_host("v6:::1").unwrap(), "::1\tv6\n");
        assert_eq!(parse_add_host("eq=[fe80::1]").unwrap(), "fe80::1\teq\n");
        assert!(parse_add_host("db").is_err() && parse_add_host("db:host-gateway").is_err());
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker_does() {
        let both = config(Some(&["/ep", "-x"]), Some(&["a"]));
        assert_eq!(args(&both, None, &[]), ["/ep", "-x", "a"]);
        assert_eq!(args(&both, None, &["b"]), ["/ep", "-x", "b"]);
        assert_eq!(args(&both, Some("/other"), &[]), ["/other"]);
        assert_eq!(args(&both, Some("/other"), &["c"]), ["/other", "c"]);
        assert_eq!(args(&both, Some(""), &["sh"]), ["sh"]);
        assert_eq!(args(&config(None, Some(&["sh"])), None, &[]), ["sh"]);
        assert!(args(&config(None, None), None, &[]).is_empty());
    }

    #[test]
    fn seccomp_as_docker_chooses_it() {
        let allows = |spec: &Spec, name: &str| {
            spec.linux.seccomp.as_ref().is_some_and(|s| {
                s.syscalls.iter().any(|r| r.action == "SCMP_ACT_ALLOW" && r.names.iter().any(|n| n == name))
            })
        };
        let run = |opts: RunOptions, bundle: bool| {
            let mut spec = Spec::docker_default();
            if bundle {
                spec.linux.seccomp = None;
            }
            apply(&mut spec, &opts, bundle).map(|_| spec)
        };
        let opt = |s: &str| vec![s.to_string()];
        let plain = run(RunOptions::default(), false).unwrap();
        assert!(plain.linux.seccomp.is_some() && !allows(&plain, "mount"));
        let admin = run(RunOptions { cap_add: opt("SYS_ADMIN"), ..RunOptions::default() }, false).unwrap();
        assert!(allows(&admin, "mount") && allows(&admin, "unshare"));
        let unconfined =
            run(RunOptions { security_opt: opt("seccomp=unconfined"), ..RunOptions::default() }, false)
                .unwrap();
        assert!(unconfined.linux.seccomp.is_none());
        let privileged = run(RunOptions { privileged: true, ..RunOptions::default() }, false).unwrap();
        assert!(privileged.linux.seccomp.is_none());
        // A bundle keeps what it has (here: nothing).
        assert!(run(RunOptions::default(), true).unwrap().linux.seccomp.is_none());
        for bad in ["seccomp=", "seccomp=/nonexistent.json", "apparmor=myprofile"] {
            assert!(
                run(RunOptions { security_opt: opt(bad), ..RunOptions::default() }, false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_sizes_and_volumes() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        set_env(&mut env, "A=3");
        assert_eq!(env, ["B=2", "A=3"]);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(volume("/a:/b:ro").unwrap().options, ["rbind", "rprivate", "ro"]);
        assert!(volume("name:/b").is_err());
    }
}
