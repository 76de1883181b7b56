//! Device rules on cgroup v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` generated
//! from the rules and attached to the container's cgroup, as runc and crun do (v2 has no
//! devices controller). The kernel runs it on every mknod and open of a device node by a
//! process of the cgroup; 0 refuses (EPERM), 1 allows.
//!
//! The program follows [`device_rules::decide`]: for each access bit asked (mknod, read,
//! write) the rules are tried from the last to the first; the first one matching the device
//! and listing the bit decides; none allows.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::device_rules::{Kind, MKNOD, READ, Rule, WRITE};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used (class | op | source).
const LDX_MEM_W: u8 = 0x61;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JA: u8 = 0x05;
const JMP_JNE_K: u8 = 0x55;
const JMP_JSET_K: u8 = 0x45;
const JMP_EXIT: u8 = 0x95;

// The context (`struct bpf_cgroup_dev_ctx`): access_type (type in the low 16 bits, access in
// the high), major, minor, all u32.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Registers: r1 the context, r2 the type, r3 the access, r4 major, r5 minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// A program being written: jumps name labels, resolved at the end.
struct Asm {
    out: Vec<Insn>,
    /// (instruction index, label) of jumps to patch.
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.out.len());
    }
    fn emit(&mut self, i: Insn) {
        self.out.push(i);
    }
    fn jump(&mut self, code: u8, dst: u8, imm: i32, label: usize) {
        self.fixups.push((self.out.len(), label));
        self.out.push(insn(code, dst, 0, 0, imm));
    }
    fn finish(mut self) -> Result<Vec<Insn>> {
        for (at, label) in self.fixups {
            let target = self.labels[label].expect("every label is bound");
            let off = target as i64 - at as i64 - 1;
            self.out[at].off = i16::try_from(off).context("device rules: the program is too long")?;
        }
        Ok(self.out)
    }
}

/// The program for the rules.
pub fn program(rules: &[Rule]) -> Result<Vec<Insn>> {
    let mut a = Asm { out: Vec::new(), fixups: Vec::new(), labels: Vec::new() };
    a.emit(insn(LDX_MEM_W, R2, R1, 0, 0));
    a.emit(insn(ALU64_MOV_X, R3, R2, 0, 0));
    a.emit(insn(ALU64_AND_K, R2, 0, 0, 0xffff));
    a.emit(insn(ALU64_RSH_K, R3, 0, 0, 16));
    a.emit(insn(LDX_MEM_W, R4, R1, 4, 0));
    a.emit(insn(LDX_MEM_W, R5, R1, 8, 0));
    let deny = a.label();
    for bit in [MKNOD, READ, WRITE] {
        let next_bit = a.label();
        let check = a.label();
        // Skip the bit when it is not asked for.
        a.jump(JMP_JSET_K, R3, bit as i32, check);
        a.jump(JMP_JA, 0, 0, next_bit);
        a.bind(check);
        for r in rules.iter().rev().filter(|r| r.access & bit != 0) {
            let next_rule = a.label();
            match r.kind {
                Kind::All => {}
                Kind::Char => a.jump(JMP_JNE_K, R2, DEV_CHAR, next_rule),
                Kind::Block => a.jump(JMP_JNE_K, R2, DEV_BLOCK, next_rule),
            }
            if let Some(m) = r.major {
                a.jump(JMP_JNE_K, R4, m as i32, next_rule);
            }
            if let Some(m) = r.minor {
                a.jump(JMP_JNE_K, R5, m as i32, next_rule);
            }
            a.jump(JMP_JA, 0, 0, if r.allow { next_bit } else { deny });
            a.bind(next_rule);
            if r.is_every_device() {
                // Nothing before it can match anything it did not.
                break;
            }
        }
        a.bind(next_bit);
    }
    a.emit(insn(ALU64_MOV_K, R0, 0, 0, 1));
    a.emit(insn(JMP_EXIT, 0, 0, 0, 0));
    a.bind(deny);
    a.emit(insn(ALU64_MOV_K, R0, 0, 0, 0));
    a.emit(insn(JMP_EXIT, 0, 0, 0, 0));
    a.finish()
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, zero-padded (the kernel wants unused bytes 0).
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    pad: [u64; 8],
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: [u32; 11],
}

/// Loads the program into the kernel (the verifier's log becomes the error when it refuses).
pub fn load(program: &[Insn]) -> Result<OwnedFd> {
    // Without a log first: a verifier that logs takes several times longer, on every start.
    match load_with_log(program, None) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            let mut log = vec![0u8; 64 * 1024];
            match load_with_log(program, Some(&mut log)) {
                Ok(fd) => Ok(fd),
                Err(err) => {
                    let text = String::from_utf8_lossy(&log);
                    let last = text.trim_end_matches('\0').lines().rfind(|l| !l.trim().is_empty());
                    match last {
                        Some(last) => bail!("device rules: loading the eBPF device program: {err} ({last})"),
                        None => bail!("device rules: loading the eBPF device program: {err}"),
                    }
                }
            }
        }
    }
}

fn load_with_log(program: &[Insn], log: Option<&mut Vec<u8>>) -> std::io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"img_dev");
    let (log_level, log_size, log_buf) = match log {
        Some(log) => (1, log.len() as u32, log.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..LoadAttr::default()
    };
    // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_LOAD whose pointers (the
    // instructions, the license, and the log buffer with its size when given) stay alive
    // across the call.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &mut attr as *mut LoadAttr, size_of::<LoadAttr>() as u32)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a loaded program to the cgroup v2 directory `dir` (alongside those of its
/// ancestors, which must all allow an access).
pub fn attach(dir: &Path, prog: &OwnedFd) -> Result<()> {
    let cgroup =
        std::fs::File::open(dir).with_context(|| format!("device rules: opening {}", dir.display()))?;
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_ATTACH; both descriptors are
    // open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &mut attr as *mut AttachAttr,
            size_of::<AttachAttr>() as u32,
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        bail!("device rules: attaching the eBPF device program to {}: {err}", dir.display());
    }
    Ok(())
}

/// Generates, loads and attaches the program for `rules` to the cgroup at `dir`.
pub fn apply(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = load(&program(rules)?)?;
    attach(dir, &prog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::device_rules::{self, ALL_ACCESS, DeviceRule, decide, effective, parse_cgroup_rule};

    /// Runs a device program the way the kernel would, for the instructions it uses.
    fn run(prog: &[Insn], kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        let ty = match kind {
            Kind::Block => DEV_BLOCK as u64,
            Kind::Char => DEV_CHAR as u64,
            Kind::All => unreachable!(),
        };
        let ctx = [(access as u64) << 16 | ty, major as u64, minor as u64];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..100_000 {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            let jump = |taken: bool| if taken { (pc as i64 + 1 + i.off as i64) as usize } else { pc + 1 };
            pc = match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    assert!(i.off >= 0 && i.off % 4 == 0 && i.off < 12, "context offset {}", i.off);
                    r[dst] = ctx[i.off as usize / 4];
                    pc + 1
                }
                ALU64_MOV_X => {
                    r[dst] = r[src];
                    pc + 1
                }
                ALU64_MOV_K => {
                    r[dst] = imm;
                    pc + 1
                }
                ALU64_AND_K => {
                    r[dst] &= imm;
                    pc + 1
                }
                ALU64_RSH_K => {
                    r[dst] >>= imm;
                    pc + 1
                }
                JMP_JA => jump(true),
                JMP_JNE_K => jump(r[dst] != imm),
                JMP_JSET_K => jump(r[dst] & imm != 0),
                JMP_EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            };
            assert!(pc < prog.len(), "jump out of the program");
        }
        panic!("the program does not end");
    }

    fn rule_sets() -> Vec<Vec<DeviceRule>> {
        let deny_all = DeviceRule { allow: false, access: Some("rwm".into()), ..DeviceRule::default() };
        vec![
            device_rules::docker_default(),
            device_rules::allow_all(),
            {
                let mut v = device_rules::docker_default();
                v.push(parse_cgroup_rule("c 10:183 rw").unwrap());
                v.push(DeviceRule::new(false, "c", Some(10), None, "w"));
                v.push(DeviceRule::new(true, "b", Some(8), Some(0), "r"));
                v
            },
            vec![
                deny_all.clone(),
                DeviceRule::new(true, "a", Some(4), None, "r"),
                DeviceRule::new(true, "c", Some(4), Some(1), "w"),
            ],
            vec![DeviceRule::new(false, "a", None, None, "m")],
            vec![DeviceRule::new(false, "b", None, Some(0), "rw")],
            vec![
                deny_all.clone(),
                DeviceRule::new(true, "a", None, None, "rwm"),
                DeviceRule::new(false, "c", Some(1), Some(3), "r"),
            ],
        ]
    }

    #[test]
    fn the_program_decides_as_the_rules_say() {
        let devices: Vec<(Kind, u32, u32)> = [Kind::Char, Kind::Block]
            .iter()
            .flat_map(|&k| {
                [
                    (1, 3),
                    (1, 5),
                    (1, 7),
                    (5, 1),
                    (5, 2),
                    (136, 0),
                    (136, 9),
                    (10, 183),
                    (10, 200),
                    (10, 237),
                    (8, 0),
                    (8, 1),
                    (4, 1),
                    (4, 2),
                    (0, 0),
                    (4095, 1048575),
                ]
                .map(move |(ma, mi)| (k, ma, mi))
            })
            .collect();
        let mut checked = 0;
        for set in rule_sets() {
            let rules = effective(&set).unwrap();
            let prog = program(&rules).unwrap();
            for &(kind, major, minor) in &devices {
                for access in 1..=ALL_ACCESS {
                    assert_eq!(
                        run(&prog, kind, major, minor, access),
                        decide(&rules, kind, major, minor, access),
                        "{set:?}: {kind:?} {major}:{minor} access {access}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn program_shape() {
        // No rules: allow everything (load the ctx, skip every bit, allow).
        let prog = program(&[]).unwrap();
        assert_eq!(prog.last().unwrap().code, JMP_EXIT);
        assert!(run(&prog, Kind::Char, 10, 183, ALL_ACCESS));
        // A rule for every device ends the search for its bits: nothing before it is emitted.
        let rules = effective(&device_rules::docker_default()).unwrap();
        let mut with_junk = vec![rules[0]; 50];
        with_junk.extend_from_slice(&rules);
        let len = program(&rules).unwrap().len();
        assert_eq!(program(&with_junk).unwrap().len(), len);
        // 200 today: far below the verifier's limits.
        assert!(len <= 256, "{len}");
    }

    /// Loads the program for docker's defaults into the kernel and attaches it to a new cgroup in
    /// the host's cgroup2 tree (on a hybrid host too: the kernel runs v2 device programs besides
    /// the v1 controller), then checks in a child in that cgroup that the kernel enforces it.
    #[test]
    fn the_kernel_enforces_the_program() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: attaching a device program needs root");
            return;
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(mount) = info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right.starts_with("cgroup2 ").then(|| left.split(' ').nth(4).unwrap().to_string())
        }) else {
            panic!("no cgroup2 mount on this host");
        };
        let dir = Path::new(&mount).join(format!("img-run-bpf-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let mut rules = device_rules::docker_default();
        // /dev/kmsg: read and write allowed, then write denied again.
        rules.push(parse_cgroup_rule("c 1:11 rw").unwrap());
        rules.push(DeviceRule::new(false, "c", Some(1), Some(11), "w"));
        apply(&dir, &effective(&rules).unwrap()).unwrap();
        // Device nodes need a filesystem without nodev: a tmpfs of our own in a private mount
        // namespace, made in the child.
        let nodes = tempfile::tempdir().unwrap();
        // SAFETY: the child only makes syscalls and leaves with _exit.
        let pid = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> std::result::Result<i32, String> {
                    std::fs::write(dir.join("cgroup.procs"), "0").map_err(|e| e.to_string())?;
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
                    nix::mount::mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                    .map_err(|e| e.to_string())?;
                    nix::mount::mount(
                        Some("tmpfs"),
                        nodes.path(),
                        Some("tmpfs"),
                        nix::mount::MsFlags::empty(),
                        None::<&str>,
                    )
                    .map_err(|e| e.to_string())?;
                    let mut bits = 0;
                    let nodes_to_try = [
                        ("null", 1, 3, false),
                        ("hwrng", 10, 183, false),
                        ("kmsg", 1, 11, false),
                        ("kmsg-w", 1, 11, true),
                    ];
                    for (i, (name, major, minor, write)) in nodes_to_try.iter().enumerate() {
                        let path = nodes.path().join(name);
                        if mknod(
                            &path,
                            SFlag::S_IFCHR,
                            Mode::from_bits_truncate(0o666),
                            makedev(*major, *minor),
                        )
                        .is_ok()
                        {
                            bits |= 1 << (2 * i);
                        }
                        if std::fs::OpenOptions::new().read(!write).write(*write).open(&path).is_ok() {
                            bits |= 2 << (2 * i);
                        }
                    }
                    Ok(bits)
                })()
                .unwrap_or(255);
                // SAFETY: leave the forked test process without running the harness's code.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        let _ = std::fs::remove_dir(&dir);
        // Each node: made (low bit) and opened (high bit). null: both; hwrng: made, not opened;
        // kmsg: opened for reading, not for writing.
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0b01_11_01_11));
    }
}
