//! AppArmor: on hosts that have it, image runs and RUN steps are confined by `img-default`, a
//! profile with the semantics of docker's `docker-default` (everything a container normally
//! does, but no mounts, no writes to the host's kernel knobs under /proc and /sys, no reading
//! of kcore, firmware or the security filesystem), loaded with `apparmor_parser` on first use.
//! A bundle's `process.apparmorProfile`, or `--security-opt apparmor=NAME`, names a profile
//! that must already be loaded. Where AppArmor is not enabled, asking for a profile is an
//! error; the default is then simply not applied (as docker does).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The profile image runs get by default on an AppArmor host.
pub const DEFAULT: &str = "img-default";

/// Whether the kernel has AppArmor enabled.
pub fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

/// The profile for an image run when nothing else is asked: [`DEFAULT`] where AppArmor is
/// enabled, else none.
pub fn default_for_host() -> Option<String> {
    enabled().then(|| DEFAULT.to_string())
}

/// What `--security-opt apparmor=…` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Nothing said: [`DEFAULT`] for images on an AppArmor host (none with `--privileged`),
    /// a bundle's own.
    Default,
    Unconfined,
    /// A profile already loaded into the kernel.
    Profile(String),
}

impl Choice {
    /// docker's `apparmor=` values: `unconfined` or a loaded profile's name.
    pub fn parse(value: &str) -> Result<Choice> {
        match value {
            "unconfined" => Ok(Choice::Unconfined),
            "" | "true" => bail!("--security-opt apparmor={value}: name a loaded profile or unconfined"),
            name => Ok(Choice::Profile(name.to_string())),
        }
    }

    /// The process's profile given the spec's own (`current`): as docker chooses it.
    pub fn resolve(self, current: Option<String>, privileged: bool) -> Option<String> {
        match self {
            Choice::Unconfined => None,
            Choice::Profile(name) => Some(name),
            Choice::Default if privileged => None,
            Choice::Default => current,
        }
    }
}

/// Checks, before anything is made, that the profile can be applied: AppArmor is enabled,
/// and the profile is loaded (img-default is loaded here when it is not yet).
pub fn prepare(profile: &str) -> Result<()> {
    if !enabled() {
        bail!("AppArmor profile {profile:?}: AppArmor is not enabled on this host");
    }
    let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").unwrap_or_default();
    if is_loaded(&loaded, profile) {
        return Ok(());
    }
    if profile != DEFAULT {
        bail!("AppArmor profile {profile:?} is not loaded (apparmor_parser -r PROFILE loads it)");
    }
    load(&profile_text())
}

/// Sets the profile the command gets when it is executed (`/proc` must still be the host's).
pub fn apply_on_exec(profile: &str) -> Result<()> {
    let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
        "/proc/self/attr/apparmor/exec"
    } else {
        "/proc/self/attr/exec"
    };
    std::fs::write(attr, format!("exec {profile}"))
        .with_context(|| format!("setting the AppArmor profile {profile:?}"))
}

/// Whether `/sys/kernel/security/apparmor/profiles` (one `NAME (MODE)` per line) lists `name`.
fn is_loaded(profiles: &str, name: &str) -> bool {
    profiles.lines().any(|l| l.rsplit_once(" (").is_some_and(|(n, _)| n == name))
}

/// Loads a profile into the kernel (replacing one of the same name), without caching it.
fn load(text: &str) -> Result<()> {
    let mut child = Command::new("apparmor_parser")
        .args(["--replace", "--skip-cache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("loading the AppArmor profile {DEFAULT}: apparmor_parser (use --security-opt apparmor=unconfined to run without it)")
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .context("apparmor_parser: writing the profile")?;
    let out = child.wait_with_output().context("apparmor_parser")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "loading the AppArmor profile {DEFAULT}: {}",
            err.lines().next().unwrap_or("apparmor_parser failed")
        );
    }
    Ok(())
}

/// The text of [`DEFAULT`], in AppArmor's policy language.
pub fn profile_text() -> String {
    // Writes to /proc are refused except below a process's own directory (/proc/<pid>/…) and
    // /proc/sys/kernel/shm*; /sys is read-only except the cgroup filesystem; sysrq-trigger,
    // kcore, firmware, powercap and securityfs are out of reach entirely.
    let rules = [
        "#include <abstractions/base>",
        "network,",
        "capability,",
        "file,",
        "umount,",
        "signal (receive) peer=unconfined,",
        "signal (send,receive) peer=@{NAME},",
        "ptrace (trace,read,tracedby,readby) peer=@{NAME},",
        "deny mount,",
        "deny @{PROC}/* w,",
        "deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/** w,",
        "deny @{PROC}/sys/[^k]** w,",
        "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,",
        "deny @{PROC}/sysrq-trigger rwklx,",
        "deny @{PROC}/kcore rwklx,",
        "deny /sys/[^f]*/** wklx,",
        "deny /sys/f[^s]*/** wklx,",
        "deny /sys/fs/[^c]*/** wklx,",
        "deny /sys/fs/c[^g]*/** wklx,",
        "deny /sys/fs/cg[^r]*/** wklx,",
        "deny /sys/firmware/** rwklx,",
        "deny /sys/devices/virtual/powercap/** rwklx,",
        "deny /sys/kernel/security/** rwklx,",
    ];
    let mut text = format!(
        "#include <tunables/global>\n@{{NAME}}={DEFAULT}\nprofile {DEFAULT} flags=(attach_disconnected,mediate_deleted) {{\n"
    );
    for r in rules {
        text.push_str("  ");
        text.push_str(r);
        text.push('\n');
    }
    text.push_str("}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_as_docker_makes_them() {
        let img = Some(DEFAULT.to_string());
        assert_eq!(Choice::Default.resolve(img.clone(), false), img);
        assert_eq!(Choice::Default.resolve(img.clone(), true), None);
        assert_eq!(Choice::Default.resolve(None, false), None);
        assert_eq!(Choice::parse("unconfined").unwrap().resolve(img.clone(), false), None);
        let named = Choice::parse("mine").unwrap();
        assert_eq!(named.resolve(img, true), Some("mine".to_string()));
        assert!(Choice::parse("").is_err());
    }

    #[test]
    fn finds_loaded_profiles_by_name() {
        let listing = "img-default (enforce)\n/usr/bin/man (enforce)\nweird (name) (complain)\n";
        assert!(is_loaded(listing, "img-default"));
        assert!(is_loaded(listing, "/usr/bin/man"));
        assert!(is_loaded(listing, "weird (name)"));
        assert!(!is_loaded(listing, "img"));
        assert!(!is_loaded("", DEFAULT));
    }

    #[test]
    fn the_default_profile_is_one_balanced_block() {
        let text = profile_text();
        assert!(text.starts_with("#include <tunables/global>\n"));
        assert!(text.contains(&format!("profile {DEFAULT} flags=(attach_disconnected,mediate_deleted) {{")));
        assert_eq!(text.matches('{').count(), text.matches('}').count(), "{text}");
        assert!(text.contains("  deny mount,\n") && text.trim_end().ends_with('}'));
        // Every rule line ends its statement.
        for line in text.lines().filter(|l| l.starts_with("  ") && !l.contains("#include")) {
            assert!(line.ends_with(','), "{line}");
        }
    }

    /// The profile compiles with AppArmor's own parser (without loading it: this host's kernel
    /// may not have AppArmor). scripts/setup installs the parser.
    #[test]
    fn apparmor_parser_accepts_the_default_profile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("img-default");
        std::fs::write(&file, profile_text()).unwrap();
        let out = Command::new("apparmor_parser")
            .args(["--skip-kernel-load", "--skip-cache", "--skip-read-cache"])
            .arg(&file)
            .output()
            .expect("apparmor_parser (scripts/setup installs the apparmor package)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
