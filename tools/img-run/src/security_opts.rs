//! `--security-opt`, docker's spelling: no-new-privileges, the seccomp and AppArmor profiles,
//! and the SELinux switch that turns off confinement img-run does not have.

use anyhow::{Context, Result, bail};
use img::runtime::spec::{Process, Spec};
use img::runtime::{apparmor, seccomp};

/// What `--security-opt seccomp=…` asked for.
pub enum SeccompChoice {
    /// Nothing said: docker's default for images (off with `--privileged`), the bundle's own.
    Default,
    Unconfined,
    /// A profile file in docker's format.
    Profile(String),
}

/// The profiles `--security-opt` asked for.
pub struct Choices {
    pub seccomp: SeccompChoice,
    pub apparmor: apparmor::Choice,
}

/// Applies `--security-opt` entries: `no-new-privileges[=|:true|false]`, `seccomp=PROFILE.json|
/// unconfined`, `apparmor=PROFILE|unconfined`, and `label=disable` (img-run has no SELinux
/// confinement to turn off).
pub fn apply_security_opts(p: &mut Process, opts: &[String]) -> Result<Choices> {
    let mut seccomp = SeccompChoice::Default;
    let mut apparmor = apparmor::Choice::Default;
    for opt in opts {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
        match (key, value) {
            ("no-new-privileges", "true") => p.no_new_privileges = true,
            ("no-new-privileges", "false") => p.no_new_privileges = false,
            ("seccomp", "unconfined") => seccomp = SeccompChoice::Unconfined,
            ("seccomp", "" | "true") => bail!("--security-opt {opt}: name a profile file or unconfined"),
            ("seccomp", file) => seccomp = SeccompChoice::Profile(file.to_string()),
            ("apparmor", value) => apparmor = apparmor::Choice::parse(value)?,
            ("label", "disable") => {}
            ("label", _) => bail!("--security-opt {opt}: not supported (img-run has no SELinux confinement)"),
            _ => bail!("--security-opt {opt}: not supported"),
        }
    }
    Ok(Choices { seccomp, apparmor })
}

/// The container's seccomp filter as docker chooses it: a named profile (even with
/// `--privileged`), none when unconfined or privileged, else docker's default for an image
/// and the bundle's own for a bundle. Profiles are resolved against the final bounding set.
pub fn choose_seccomp(
    spec: &mut Spec,
    choice: SeccompChoice,
    privileged: bool,
    bundle_mode: bool,
) -> Result<()> {
    let bounding = spec.process.capabilities.as_ref().map(|c| c.bounding.clone()).unwrap_or_default();
    spec.linux.seccomp = match choice {
        SeccompChoice::Unconfined => None,
        SeccompChoice::Profile(file) => {
            let what = format!("--security-opt seccomp={file}");
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{what}: reading the profile"))?;
            Some(seccomp::Profile::parse(&text, &what)?.resolve(&bounding).context(what)?)
        }
        SeccompChoice::Default if privileged => None,
        SeccompChoice::Default if bundle_mode => spec.linux.seccomp.take(),
        SeccompChoice::Default => Some(seccomp::docker_default(&bounding)),
    };
    Ok(())
}
