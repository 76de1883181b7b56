//! img-deny-openat2: runs a command under a seccomp filter that answers `openat2` with EPERM,
//! as the default profiles of container runtimes older than that system call do, so tests can
//! run our tools where openat2 is refused.
//!
//! ```text
//! img-deny-openat2 COMMAND [ARGS...]
//! ```

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const SYS_OPENAT2: u32 = 437; // the same number on every architecture
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: img-deny-openat2 COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    // seccomp_data: nr at offset 0, arch at offset 4.
    let filter = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH_AARCH64, 0, 3),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, SYS_OPENAT2, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with a filter that outlives the call; the kernel copies it.
    let installed = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _) == 0
    };
    if !installed {
        eprintln!("img-deny-openat2: installing the filter: {}", std::io::Error::last_os_error());
        return ExitCode::from(125);
    }
    let err = Command::new(program).args(rest).exec();
    eprintln!("img-deny-openat2: {program}: {err}");
    ExitCode::from(127)
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}
