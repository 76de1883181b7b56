//! Seccomp: the system calls a container may make.
//!
//! Two formats meet here. A bundle's `linux.seccomp` (the runtime spec's [`Seccomp`]) is the
//! filter itself: a default action, architectures, flags and per-syscall rules with argument
//! conditions. docker's profile format ([`Profile`]) adds rules that apply only with some
//! capabilities, on some architectures or from some kernel on; [`Profile::resolve`] turns a
//! profile into a spec filter for one container's capabilities, as docker does when it writes
//! the container's config. docker's own default profile is our data file
//! `seccomp_default.json`, used for image runs and img-build's RUN steps.
//!
//! Filters are compiled by libseccomp (see docs/decisions.md): it resolves syscall names for
//! every architecture a filter lists, and gives the spec's actions, comparisons and flags the
//! meaning the spec defines (the spec names libseccomp's constants).
//!
//! Compiling docker's profile for three architectures (x86-64, x86, x32) takes libseccomp
//! 5-15 ms, more than the rest of a container's start. So img-run compiles a filter before it
//! forks (errors are reported there) and keeps the BPF program in the store's `seccomp/` cache,
//! named by a hash of the filter, libseccomp's version and the machine; a run with a filter
//! seen before reads 8 KiB instead.
//!
//! The program is loaded by the container process itself, as late as it can be: right before
//! execve when no_new_privs is set; otherwise before the capabilities are dropped, because
//! without no_new_privs loading a filter needs CAP_SYS_ADMIN (runc orders it the same way).

use std::collections::HashSet;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// docker's default profile, in docker's format.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// A `null` in the JSON reads as the empty value (docker writes `"args": null`).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The runtime spec's `linux.seccomp`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seccomp {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<Syscall>,
}

/// One rule: these syscalls get this action (when the argument conditions hold).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Syscall {
    #[serde(default, deserialize_with = "nullable")]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
}

/// A condition on one argument. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` what the masked argument must equal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// docker's profile format (`--security-opt seccomp=FILE`): the spec's fields plus an
/// architecture map and rules conditional on capabilities, architectures and the kernel.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: Option<String>,
    #[serde(default)]
    pub listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<ProfileSyscall>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSyscall {
    /// The old single-name form.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub includes: Option<Condition>,
    #[serde(default)]
    pub excludes: Option<Condition>,
}

/// When a rule of a profile applies (`includes`: all of these hold; `excludes`: none does).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(default, deserialize_with = "nullable")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// The machine's architecture in the spelling of a profile's `arches` (Go's).
fn native_arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        other => other,
    }
}

/// The machine's architecture as libseccomp spells it.
fn native_scmp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390x" => "SCMP_ARCH_S390X",
        "powerpc64" if cfg!(target_endian = "little") => "SCMP_ARCH_PPC64LE",
        "powerpc64" => "SCMP_ARCH_PPC64",
        "mips64" if cfg!(target_endian = "little") => "SCMP_ARCH_MIPSEL64",
        "mips64" => "SCMP_ARCH_MIPS64",
        "loongarch64" => "SCMP_ARCH_LOONGARCH64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// The running kernel's `major.minor`.
fn kernel_version() -> (u32, u32) {
    let release =
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

impl Profile {
    /// Reads a profile in docker's format; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<Profile> {
        serde_json::from_str(text).with_context(|| format!("{what}: malformed seccomp profile"))
    }

    /// docker's default profile.
    pub fn docker_default() -> &'static Profile {
        static PARSED: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
        PARSED.get_or_init(|| {
            Profile::parse(DEFAULT_PROFILE, "the default seccomp profile")
                .expect("the built-in profile parses")
        })
    }

    /// The spec filter for a container whose bounding set is `caps`, on this machine: the rules
    /// whose conditions hold, the architectures of the map entry for this machine.
    pub fn resolve(&self, caps: &[String]) -> Result<Seccomp> {
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            bail!("seccomp profile: use either architectures or archMap, not both");
        }
        let mut architectures = self.architectures.clone();
        let native = native_scmp_arch();
        for m in self.arch_map.iter().filter(|m| m.architecture == native) {
            architectures.push(m.architecture.clone());
            architectures.extend(m.sub_architectures.iter().cloned());
        }
        let arch = native_arch_name();
        let kernel = kernel_version();
        let holds = |c: &Condition, field: &str| -> Result<(bool, bool, bool)> {
            let min_kernel = match &c.min_kernel {
                Some(v) => {
                    let want = parse_version(v).ok_or_else(|| {
                        anyhow!("seccomp profile: {field}.minKernel {v:?} is not a kernel version")
                    })?;
                    Some(kernel >= want)
                }
                None => None,
            };
            Ok((
                c.caps.iter().all(|cap| caps.contains(cap)),
                c.arches.iter().any(|a| a == arch),
                min_kernel.unwrap_or(true),
            ))
        };
        let mut syscalls = Vec::new();
        for (i, s) in self.syscalls.iter().enumerate() {
            let field = format!("syscalls[{i}]");
            if let Some(inc) = &s.includes {
                let (caps_ok, arch_ok, kernel_ok) = holds(inc, &format!("{field}.includes"))?;
                if !caps_ok || (!inc.arches.is_empty() && !arch_ok) || !kernel_ok {
                    continue;
                }
            }
            if let Some(exc) = &s.excludes {
                if exc.min_kernel.is_some() {
                    bail!("seccomp profile: {field}.excludes.minKernel is not supported (only includes)");
                }
                let any_cap = exc.caps.iter().any(|cap| caps.contains(cap));
                if any_cap || (!exc.arches.is_empty() && exc.arches.iter().any(|a| a == arch)) {
                    continue;
                }
            }
            let mut names = s.names.clone();
            match &s.name {
                Some(_) if !names.is_empty() => {
                    bail!("seccomp profile: {field}: use either name or names, not both")
                }
                Some(n) => names.push(n.clone()),
                None => {}
            }
            syscalls.push(Syscall {
                names,
                action: s.action.clone(),
                errno_ret: s.errno_ret,
                args: s.args.clone(),
            });
        }
        Ok(Seccomp {
            default_action: self.default_action.clone(),
            default_errno_ret: self.default_errno_ret,
            architectures,
            flags: self.flags.clone(),
            listener_path: self.listener_path.clone(),
            listener_metadata: self.listener_metadata.clone(),
            syscalls,
        })
    }
}

/// docker's default filter for a container with this bounding set.
pub fn docker_default(caps: &[String]) -> Seccomp {
    Profile::docker_default().resolve(caps).expect("the built-in profile resolves")
}

/// An action by its spec name; `errno` is the rule's `errnoRet`.
fn action(name: &str, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    let code = |e: u32| i32::try_from(e).map_err(|_| anyhow!("{field}: errnoRet {e} is out of range"));
    Ok(match name {
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(code(errno.unwrap_or(libc::EPERM as u32))?),
        "SCMP_ACT_TRACE" => {
            let msg = errno.unwrap_or(libc::EPERM as u32);
            ScmpAction::Trace(
                u16::try_from(msg).map_err(|_| anyhow!("{field}: errnoRet {msg} is out of range"))?,
            )
        }
        _ if errno.is_some() => {
            bail!("{field}: errnoRet is only meaningful with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {name}")
        }
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_NOTIFY" => {
            bail!(
                "{field}: SCMP_ACT_NOTIFY is not supported (img-run has no seccomp agent to hand the listener to)"
            )
        }
        other => bail!("{field}: unknown action {other:?}"),
    })
}

fn compare_op(arg: &Arg, field: &str) -> Result<ScmpArgCompare> {
    if arg.index > 5 {
        bail!("{field}.index: {} is not an argument index (0-5)", arg.index);
    }
    let (op, datum) = match arg.op.as_str() {
        "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, arg.value),
        "SCMP_CMP_LT" => (ScmpCompareOp::Less, arg.value),
        "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, arg.value),
        "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, arg.value),
        "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, arg.value),
        "SCMP_CMP_GT" => (ScmpCompareOp::Greater, arg.value),
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(arg.value), arg.value_two),
        other => bail!("{field}.op: unknown operator {other:?}"),
    };
    Ok(ScmpArgCompare::new(arg.index, op, datum))
}

/// A filter compiled by libseccomp.
pub struct Filter {
    ctx: ScmpFilterContext,
}

/// seccomp(2)'s filter flags, as the spec names them.
const FLAGS: [(&str, libc::c_ulong); 3] =
    [("SECCOMP_FILTER_FLAG_TSYNC", 1), ("SECCOMP_FILTER_FLAG_LOG", 2), ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 4)];

/// The largest program the kernel takes (BPF_MAXINSNS), in bytes.
const MAX_PROGRAM: u64 = 4096 * 8;

/// A BPF program and the flags to load it with.
pub struct Program {
    insns: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl Seccomp {
    /// Compiles the filter; every malformed field is an error naming it. Syscall names this
    /// kernel's architectures do not know are skipped, as runc does.
    pub fn compile(&self) -> Result<Filter> {
        let f = "linux.seccomp";
        if self.listener_path.is_some() || self.listener_metadata.is_some() {
            bail!("{f}.listenerPath: seccomp notification is not supported (img-run has no seccomp agent)");
        }
        let default = action(&self.default_action, self.default_errno_ret, &format!("{f}.defaultAction"))?;
        let mut ctx = ScmpFilterContext::new(default).context("creating the seccomp filter")?;
        // Setuid programs keep working unless the process asks for no_new_privs itself.
        ctx.set_ctl_nnp(false).context("seccomp: clearing the no_new_privs attribute")?;
        for (i, name) in self.architectures.iter().enumerate() {
            let arch: ScmpArch =
                name.parse().map_err(|_| anyhow!("{f}.architectures[{i}]: unknown architecture {name:?}"))?;
            if !ctx.is_arch_present(arch).unwrap_or(false) {
                ctx.add_arch(arch).with_context(|| format!("{f}.architectures[{i}]: {name}"))?;
            }
        }
        for (i, flag) in self.flags.iter().enumerate() {
            let set = match flag.as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => ctx.set_ctl_tsync(true).map(|_| ()),
                "SECCOMP_FILTER_FLAG_LOG" => ctx.set_ctl_log(true).map(|_| ()),
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => ctx.set_ctl_ssb(true).map(|_| ()),
                other => bail!("{f}.flags[{i}]: unknown or unsupported flag {other:?}"),
            };
            set.with_context(|| format!("{f}.flags[{i}]: {flag}"))?;
        }
        for (i, rule) in self.syscalls.iter().enumerate() {
            let field = format!("{f}.syscalls[{i}]");
            let act = action(&rule.action, rule.errno_ret, &format!("{field}.action"))?;
            let conds = rule
                .args
                .iter()
                .enumerate()
                .map(|(j, a)| compare_op(a, &format!("{field}.args[{j}]")))
                .collect::<Result<Vec<_>>>()?;
            if rule.names.is_empty() {
                bail!("{field}.names: no syscall named");
            }
            // libseccomp refuses a rule that does what the default does.
            if act == default {
                continue;
            }
            // Conditions on distinct arguments must all hold (one rule); several on the same
            // argument are alternatives (a rule each), as runc reads them.
            let mut seen = HashSet::new();
            let alternatives = !conds.is_empty() && !rule.args.iter().all(|a| seen.insert(a.index));
            for (j, name) in rule.names.iter().enumerate() {
                if name.is_empty() {
                    bail!("{field}.names[{j}]: empty syscall name");
                }
                let Ok(nr) = ScmpSyscall::from_name(name) else { continue };
                let add = |ctx: &mut ScmpFilterContext, c: &[ScmpArgCompare]| {
                    ctx.add_rule_conditional(act, nr, c)
                        .map(|_| ())
                        .with_context(|| format!("{field}: adding the rule for {name}"))
                };
                if alternatives {
                    for c in &conds {
                        add(&mut ctx, std::slice::from_ref(c))?;
                    }
                } else {
                    add(&mut ctx, &conds)?;
                }
            }
        }
        Ok(Filter { ctx })
    }
}

impl Seccomp {
    /// The program for this filter: from the cache directory when it holds one for the same
    /// filter, else compiled (and then kept there; a cache that cannot be written is skipped).
    pub fn program(&self, cache: Option<&Path>) -> Result<Program> {
        let flags = self
            .flags
            .iter()
            .map(|f| FLAGS.iter().find(|(name, _)| name == f).map_or(0, |(_, bit)| *bit))
            .fold(0, |a, b| a | b);
        let version = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default();
        let mut hash = Sha256::new();
        hash.update(serde_json::to_vec(self).context("serialising the seccomp filter")?);
        // The program's format: libseccomp's output with our ENOSYS prefix.
        hash.update(format!("\0{version}\0{}\0enosys-prefix-1", std::env::consts::ARCH));
        let name = format!("{}.bpf", hex::encode(hash.finalize()));
        // A damaged cache file is compiled again and replaced.
        if let Some(program) = cache
            .and_then(|dir| read_cached(&dir.join(&name)))
            .and_then(|b| Program::from_bytes(&b, flags).ok())
        {
            return Ok(program);
        }
        // Only a filter that compiled was ever cached, so a hit needs no checking.
        let filter = self.compile()?;
        let mut file = tempfile::tempfile().context("seccomp: a temporary file for the program")?;
        filter.ctx.export_bpf(&file).context("seccomp: generating the BPF program")?;
        let mut bytes = Vec::new();
        file.rewind().and_then(|_| file.read_to_end(&mut bytes)).context("seccomp: reading the program")?;
        let mut program = Program::from_bytes(&bytes, flags)?;
        program.enosys_beyond(self.newest_syscall());
        let bytes = program.to_bytes();
        if let Some(dir) = cache {
            write_cached(dir, &name, &bytes);
        }
        Ok(program)
    }
}

impl Seccomp {
    /// The highest native syscall number the filter names, if its default refuses: newer
    /// syscalls then get ENOSYS (as runc arranges), so that libc falls back to older ones
    /// instead of failing with the default's EPERM.
    fn newest_syscall(&self) -> Option<u32> {
        let default_refuses = !matches!(self.default_action.as_str(), "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG");
        let newest = self
            .syscalls
            .iter()
            .flat_map(|r| &r.names)
            .filter_map(|n| ScmpSyscall::from_name(n).ok())
            .filter_map(|nr| u32::try_from(i32::from(nr)).ok())
            .max();
        newest.filter(|_| default_refuses)
    }
}

/// The audit architecture of this machine's native syscalls, where we know it.
fn native_audit_arch() -> Option<u32> {
    match std::env::consts::ARCH {
        "x86_64" => Some(0xC000_003E),
        "aarch64" => Some(0xC000_00B7),
        _ => None,
    }
}

/// A cached program: a regular file, not a link, of a size the kernel could take.
fn read_cached(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_PROGRAM {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_PROGRAM + 1).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Keeps a program in the cache: written to a temporary file, then renamed into place.
fn write_cached(dir: &Path, name: &str, bytes: &[u8]) {
    let _ = (|| -> std::io::Result<()> {
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.persist(dir.join(name)).map_err(|e| e.error)?;
        Ok(())
    })();
}

impl Program {
    fn from_bytes(bytes: &[u8], flags: libc::c_ulong) -> Result<Program> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() as u64 > MAX_PROGRAM {
            bail!("seccomp: the BPF program has {} bytes, not a whole number of instructions", bytes.len());
        }
        let insns = bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Program { insns, flags })
    }

    /// Puts in front of the program: a native syscall numbered above `newest` gets ENOSYS.
    /// x32's numbers (bit 30 set) and other architectures go on to libseccomp's program.
    fn enosys_beyond(&mut self, newest: Option<u32>) {
        let (Some(newest), Some(arch)) = (newest, native_audit_arch()) else { return };
        let ins = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
        let (ld, jeq, jge, jgt, ret) = (
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K,
            libc::BPF_RET | libc::BPF_K,
        );
        const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
        let prefix = [
            ins(ld, 0, 0, 4),                                        // 0: seccomp_data.arch
            ins(jeq, 0, 4, arch),                                    // 1: not native: to 6
            ins(ld, 0, 0, 0),                                        // 2: seccomp_data.nr
            ins(jge, 2, 0, 0x4000_0000),                             // 3: x32: to 6
            ins(jgt, 0, 1, newest),                                  // 4: newer: 5, else 6
            ins(ret, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32), // 5
        ];
        if self.insns.len() + prefix.len() <= (MAX_PROGRAM / 8) as usize {
            self.insns.splice(0..0, prefix);
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.insns
            .iter()
            .flat_map(|i| {
                let mut b = [0u8; 8];
                b[..2].copy_from_slice(&i.code.to_ne_bytes());
                b[2] = i.jt;
                b[3] = i.jf;
                b[4..].copy_from_slice(&i.k.to_ne_bytes());
                b
            })
            .collect()
    }

    /// Loads the program into this process (and, with TSYNC, its threads).
    pub fn load(&self) -> Result<()> {
        let prog = libc::sock_fprog { len: self.insns.len() as u16, filter: self.insns.as_ptr() as *mut _ };
        const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
        // SAFETY: seccomp(2) reads the program through `prog`, which points at our own
        // instructions for the duration of the call.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, self.flags, &prog) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("loading the seccomp filter");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn names_with(s: &Seccomp, action: &str) -> Vec<String> {
        s.syscalls.iter().filter(|r| r.action == action).flat_map(|r| r.names.clone()).collect()
    }

    #[test]
    fn the_default_profile_depends_on_capabilities() {
        let plain = docker_default(&caps(&["CAP_CHOWN", "CAP_SETUID"]));
        let allowed = names_with(&plain, "SCMP_ACT_ALLOW");
        for blocked in [
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "userfaultfd",
            "perf_event_open",
            "io_uring_setup",
        ] {
            assert!(!allowed.contains(&blocked.to_string()), "{blocked} is allowed");
        }
        // ptrace from kernel 4.8 on (seccomp can no longer be bypassed with it).
        for name in ["read", "clone", "ptrace"] {
            assert!(allowed.contains(&name.to_string()), "{name} is not allowed");
        }
        // clone only with conditions, clone3 ENOSYS.
        let clone = plain.syscalls.iter().find(|r| r.names == ["clone"]).unwrap();
        assert_eq!(clone.args[0].op, "SCMP_CMP_MASKED_EQ");
        let clone3 = plain.syscalls.iter().find(|r| r.names == ["clone3"]).unwrap();
        assert_eq!(clone3.errno_ret, Some(38));
        assert_eq!(plain.architectures.first().map(String::as_str), Some(native_scmp_arch()));

        let admin = docker_default(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]));
        let allowed = names_with(&admin, "SCMP_ACT_ALLOW");
        for name in ["mount", "unshare", "setns", "clone3", "ptrace"] {
            assert!(allowed.contains(&name.to_string()), "{name} is not allowed with the capability");
        }
        assert!(admin.syscalls.iter().all(|r| r.names != ["clone3"] || r.action == "SCMP_ACT_ALLOW"));
        plain.compile().unwrap();
        admin.compile().unwrap();
    }

    #[test]
    fn malformed_fields_are_named_and_unknown_syscalls_skipped() {
        let parse = |j: &str| serde_json::from_str::<Seccomp>(j).unwrap();
        let err = |j: &str| format!("{:#}", parse(j).compile().err().expect(j));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).contains("linux.seccomp.defaultAction"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).contains("SCMP_ACT_NOTIFY is not supported"));
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#)
                .contains("linux.seccomp.architectures[0]")
        );
        assert!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["X"]}"#).contains("linux.seccomp.flags[0]")
        );
        let bad_op = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#;
        assert!(err(bad_op).contains("linux.seccomp.syscalls[0].args[0].op"));
        let bad_index = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#;
        assert!(err(bad_index).contains("linux.seccomp.syscalls[0].args[0].index"));
        let errno_on_allow = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","errnoRet":5}]}"#;
        assert!(err(errno_on_allow).contains("linux.seccomp.syscalls[0].action"));
        assert!(serde_json::from_str::<Seccomp>(r#"{"defaultAction":"SCMP_ACT_ALLOW","bogus":1}"#).is_err());
        // A name no architecture knows is skipped; every action, flag and operator compiles.
        let ok = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_AARCH64"],
            "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls":[{"names":["no_such_syscall_xyz","read"],"action":"SCMP_ACT_ALLOW"},
              {"names":["kill"],"action":"SCMP_ACT_KILL"},{"names":["tkill"],"action":"SCMP_ACT_KILL_PROCESS"},
              {"names":["tgkill"],"action":"SCMP_ACT_KILL_THREAD"},{"names":["getpid"],"action":"SCMP_ACT_TRAP"},
              {"names":["getppid"],"action":"SCMP_ACT_TRACE","errnoRet":3},{"names":["getuid"],"action":"SCMP_ACT_LOG"},
              {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":5,"args":[
                {"index":0,"value":1,"op":"SCMP_CMP_NE"},{"index":1,"value":0,"op":"SCMP_CMP_GT"},
                {"index":2,"value":4096,"op":"SCMP_CMP_LT"},{"index":3,"value":1,"op":"SCMP_CMP_LE"},
                {"index":4,"value":1,"op":"SCMP_CMP_GE"},{"index":5,"value":255,"valueTwo":3,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                {"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#;
        parse(ok).compile().unwrap();
    }

    #[test]
    fn profile_conditions() {
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"name":"a","action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.0"}},
                {"names":["b"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"3.10"}},
                {"names":["c"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["nonesuch"]}},
                {"names":["d"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_X"]}},
                {"names":["e"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_X","CAP_Y"]}}]}"#,
            "test",
        )
        .unwrap();
        let names = |s: Seccomp| s.syscalls.into_iter().flat_map(|r| r.names).collect::<Vec<_>>();
        assert_eq!(names(p.resolve(&caps(&["CAP_X"])).unwrap()), ["b"]);
        assert_eq!(names(p.resolve(&caps(&["CAP_X", "CAP_Y"])).unwrap()), ["b", "e"]);
        assert_eq!(names(p.resolve(&[]).unwrap()), ["b", "d"]);
        assert!(Profile::parse(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","bogus":1}]}"#, "x").is_err());
        assert_eq!(parse_version("6.1.0-18-amd64"), Some((6, 1)));
    }
}
