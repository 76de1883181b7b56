//! docker-run semantics: the options a user gives (`-e`, `-w`, `-u`, `--entrypoint`, `-v`,
//! `--memory`, …) applied to a spec, and the image config's Entrypoint/Cmd/Env/User/WorkingDir
//! combined with them exactly as docker does. How each kind of flag reads is in its own
//! module ([`crate::env`], [`crate::mount_flags`], [`crate::security_opts`], …).

use anyhow::{Result, bail};
use img::document::RunConfig;
use img::runtime::spec::{Cpu, DEFAULT_PATH, Memory, Pids, Spec};
use img::runtime::{capabilities, devices};

use crate::{device_flags, env, mount_flags, security_opts, ulimit};

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
        env::set_env(&mut p.env, e);
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
    let chosen = security_opts::apply_security_opts(p, &opts.security_opt)?;
    for u in &opts.ulimits {
        let limit = ulimit::parse_ulimit(u)?;
        p.rlimits.retain(|r| r.kind != limit.kind);
        p.rlimits.push(limit);
    }
    security_opts::choose_seccomp(spec, chosen.seccomp, opts.privileged, bundle_mode)?;
    let profile = spec.process.apparmor_profile.take();
    spec.process.apparmor_profile = chosen.apparmor.resolve(profile, opts.privileged);
    if let Some(h) = &opts.hostname {
        spec.hostname = Some(h.clone());
    }
    if opts.privileged {
        spec.linux.masked_paths.clear();
        spec.linux.readonly_paths.clear();
        for m in spec.mounts.iter_mut().filter(|m| m.kind == "sysfs" || m.kind.starts_with("cgroup")) {
            m.options.retain(|o| o != "ro");
        }
        device_flags::add_devices(spec, devices::all_host_devices());
    }
    device_flags::apply_device_options(spec, &opts.devices, &opts.device_cgroup_rules, opts.privileged)?;
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
        spec.mounts.push(mount_flags::volume(v)?);
    }
    for m in &opts.mounts {
        spec.mounts.push(mount_flags::mount_option(m)?);
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
        spec.mounts.push(mount_flags::tmpfs(t)?);
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
        // AppArmor: a named profile (checked when the container starts), none when unconfined
        // or privileged.
        let named = run(RunOptions { security_opt: opt("apparmor=mine"), ..RunOptions::default() }, false);
        assert_eq!(named.unwrap().process.apparmor_profile.as_deref(), Some("mine"));
        let off = RunOptions { security_opt: opt("apparmor=unconfined"), ..RunOptions::default() };
        assert_eq!(run(off, false).unwrap().process.apparmor_profile, None);
        assert_eq!(privileged.process.apparmor_profile, None);
        for bad in ["seccomp=", "seccomp=/nonexistent.json", "apparmor=", "label=level:s0", "bogus=1"] {
            assert!(
                run(RunOptions { security_opt: opt(bad), ..RunOptions::default() }, false).is_err(),
                "{bad}"
            );
        }
    }
}
