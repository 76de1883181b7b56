//! The last steps in the container before its command runs: rlimits, the user and groups,
//! capabilities, umask, no_new_privs, the working directory (checked to be inside the
//! container), every descriptor but stdio closed, the seccomp filter, and exec with docker's
//! exit codes.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::capabilities;
use super::namespaces::RootlessIds;
use super::seccomp::Program;
use super::spec::{Process, Rlimit};
use super::user;

/// Why the container's command did not start, with the exit status img-run reports.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// img-run's own failure (125).
    pub fn runtime(e: anyhow::Error) -> Failure {
        Failure { code: 125, message: format!("{e:#}") }
    }
}

/// docker's exit status for a command that could not be run.
pub const NOT_EXECUTABLE: i32 = 126;
pub const NOT_FOUND: i32 = 127;

/// The user switch: from a docker-style `user[:group]` to resolve in the container, or the
/// spec's numeric ids. Rootless, the ids must be among those mapped (`rootless`).
pub fn resolve_user(
    process: &mut Process,
    name: Option<&str>,
    group_add: &[String],
    rootless: Option<&RootlessIds>,
) -> Result<()> {
    // The single rootless mapping (no subordinate ids) cannot set groups at all.
    let no_groups = rootless.filter(|ids| !ids.can_setgroups());
    if let Some(ids) = no_groups
        && !group_add.is_empty()
    {
        let why = ids.single_because.as_deref().unwrap_or_default();
        bail!("--group-add: a rootless container without subordinate ids has no other groups: {why}");
    }
    // Read only when a name or a group needs it: most runs give neither.
    let group = if name.is_some() || !group_add.is_empty() {
        std::fs::read_to_string("/etc/group").unwrap_or_default()
    } else {
        String::new()
    };
    for g in group_add {
        let gid = user::group_id(g, &group).context("--group-add")?;
        if let Some(ids) = rootless {
            ids.check(&format!("--group-add {g}"), "gid", gid)?;
        }
        if !process.user.additional_gids.contains(&gid) {
            process.user.additional_gids.push(gid);
        }
    }
    let Some(name) = name else {
        set_home(process, None);
        return Ok(());
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let u = user::resolve(name, &passwd, &group)?;
    if let Some(ids) = rootless {
        ids.check(&format!("user {name:?}"), "uid", u.uid)?;
        ids.check(&format!("user {name:?}"), "gid", u.gid)?;
    }
    process.user.uid = u.uid;
    process.user.gid = u.gid;
    // As docker does: the primary group first, then the groups that list the user (rootless,
    // those mapped: a group beyond the subordinate ids cannot be held).
    let mut groups = vec![u.gid];
    let mapped = |g: &u32| rootless.is_none_or(|ids| *g < ids.gids);
    groups.extend(u.groups.into_iter().filter(|g| *g != u.gid && mapped(g)));
    // ... then those of --group-add.
    for gid in std::mem::take(&mut process.user.additional_gids) {
        if !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    process.user.additional_gids = if no_groups.is_some() { Vec::new() } else { groups };
    set_home(process, Some(&u.home));
    Ok(())
}

/// Docker sets HOME from /etc/passwd when the environment has none.
fn set_home(process: &mut Process, home: Option<&str>) {
    if process.env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let home = match home {
        Some(h) => h.to_string(),
        None => {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            let uid = process.user.uid.to_string();
            user::resolve(&uid, &passwd, "").map(|u| u.home).unwrap_or_else(|_| "/".to_string())
        }
    };
    process.env.push(format!("HOME={home}"));
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn set_rlimits(rlimits: &[Rlimit]) -> Result<()> {
    for r in rlimits {
        let Some(res) = rlimit_resource(&r.kind) else { bail!("unknown rlimit {:?}", r.kind) };
        let lim = libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("setting {}", r.kind));
        }
    }
    Ok(())
}

fn os_err<T>(what: &str, rc: libc::c_int, ok: T) -> Result<T> {
    if rc == 0 { Ok(ok) } else { Err(std::io::Error::last_os_error()).context(what.to_string()) }
}

/// Switches to the process's user and groups keeping capabilities, then sets the capability
/// sets. The bounding set is limited first, while we still hold CAP_SETPCAP.
fn switch_identity(p: &Process, no_setgroups: bool) -> Result<()> {
    let caps = p.capabilities.clone().unwrap_or_default();
    capabilities::limit_bounding(capabilities::mask(&caps.bounding)?)?;
    let groups: Vec<libc::gid_t> = p.user.additional_gids.clone();
    if !no_setgroups {
        // SAFETY: setgroups with a valid slice.
        os_err("setgroups", unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }, ())?;
    } else if !groups.is_empty() {
        bail!("additional groups cannot be set in a rootless container without subordinate ids");
    }
    let (uid, gid) = (p.user.uid, p.user.gid);
    // SAFETY: plain syscalls with integer arguments.
    unsafe {
        os_err("PR_SET_KEEPCAPS", libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), ())?;
        os_err(&format!("setting gid {gid}"), libc::setresgid(gid, gid, gid), ())?;
        os_err(&format!("setting uid {uid}"), libc::setresuid(uid, uid, uid), ())?;
        os_err("PR_SET_KEEPCAPS", libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0), ())?;
    }
    capabilities::set(
        capabilities::mask(&caps.effective)?,
        capabilities::mask(&caps.permitted)?,
        capabilities::mask(&caps.inheritable)?,
        capabilities::mask(&caps.ambient)?,
    )
}

/// The value of a variable in a `K=V` list.
fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Finds the command as exec.LookPath does: a name with a slash is used as is, else each
/// `$PATH` entry is tried for an executable regular file.
fn look_path(cmd: &str, env: &[String]) -> Result<PathBuf, Failure> {
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    let path = env_value(env, "PATH").unwrap_or("");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(cmd);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(Failure { code: NOT_FOUND, message: format!("exec: \"{cmd}\": executable file not found in $PATH") })
}

/// Creates the working directory if it is missing (docker does), before the root turns
/// read-only.
pub fn make_cwd(cwd: &str) -> Result<()> {
    let p = Path::new("/").join(cwd);
    if !p.is_dir() {
        std::fs::create_dir_all(&p).with_context(|| format!("creating the working directory {cwd}"))?;
    }
    Ok(())
}

/// Everything from the user switch to exec, with the `seccomp` program loaded on the way.
/// Returns only on failure. `no_setgroups`: the user namespace denies setgroups (rootless,
/// without subordinate ids).
pub fn exec(p: &Process, no_setgroups: bool, seccomp: Option<&Program>) -> Failure {
    if p.args.is_empty() {
        return Failure::runtime(anyhow!("no command given, and the image has neither Entrypoint nor Cmd"));
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still hold
    // every capability, so what follows (the identity switch, chdir, exec) runs under it.
    // With no_new_privs, load it right before exec, so it need allow only execve.
    let (early, late) = if p.no_new_privileges { (None, seccomp) } else { (seccomp, None) };
    // Before any filter, which need not allow sigaction.
    super::signals::reset_dispositions();
    let prepared = (|| -> Result<(Vec<CString>, Vec<CString>)> {
        set_rlimits(&p.rlimits)?;
        if let Some(f) = early {
            f.load()?;
        }
        switch_identity(p, no_setgroups)?;
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(p.user.umask.unwrap_or(0o022)) };
        if p.no_new_privileges {
            // SAFETY: prctl with integer arguments only.
            os_err("PR_SET_NO_NEW_PRIVS", unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, ())?;
        }
        std::env::set_current_dir(&p.cwd)
            .with_context(|| format!("changing to the working directory {}", p.cwd))?;
        // A descriptor leaked from the host could have made "." a host directory
        // (CVE-2024-21626); the kernel marks such a cwd as unreachable.
        let here = std::env::current_dir().context("checking the working directory")?;
        if !here.is_absolute() || here.starts_with("(unreachable)") {
            bail!("the working directory is outside the container");
        }
        let cstr = |s: &str| CString::new(s).map_err(|_| anyhow!("{s:?} contains a NUL byte"));
        let args = p.args.iter().map(|a| cstr(a)).collect::<Result<Vec<_>>>()?;
        let env = p.env.iter().map(|a| cstr(a)).collect::<Result<Vec<_>>>()?;
        Ok((args, env))
    })();
    let (args, env) = match prepared {
        Ok(v) => v,
        Err(e) => return Failure::runtime(e),
    };
    let program = match look_path(&p.args[0], &p.env) {
        Ok(path) => path,
        Err(f) => return f,
    };
    let Ok(program_c) = CString::new(program.as_os_str().as_bytes()) else {
        return Failure::runtime(anyhow!("bad program path"));
    };
    // Nothing but stdio may reach the command: mark every other descriptor close-on-exec
    // (the error pipe to img-run among them, which closes when exec succeeds).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes flags.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if let Some(f) = late
        && let Err(e) = f.load()
    {
        return Failure::runtime(e);
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(program_c.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => NOT_FOUND,
        _ => NOT_EXECUTABLE,
    };
    Failure { code, message: format!("exec {}: {err}", program.display()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lookup_takes_the_last() {
        let env = vec!["PATH=/a".to_string(), "X=1".to_string(), "PATH=/b".to_string()];
        assert_eq!(env_value(&env, "PATH"), Some("/b"));
        assert_eq!(env_value(&env, "PAT"), None);
    }

    #[test]
    fn missing_command_is_127() {
        let f = look_path("surely-not-a-command-xyz", &["PATH=/nonexistent".to_string()]).unwrap_err();
        assert_eq!(f.code, NOT_FOUND);
        assert!(look_path("/x/y", &[]).is_ok());
    }
}
