//! RUN steps of another architecture. The kernel runs a foreign binary through the emulator
//! binfmt_misc names for its ELF header (Debian's `qemu-user-static` registers one per
//! architecture). Inside a build container the emulator's path does not exist, so the handler
//! must have been registered with the fix-binary flag (`F`): the kernel then opened the
//! emulator once, at registration, and uses that file in every mount namespace.
//!
//! Before a foreign RUN step starts, [`check`] finds the handler the kernel would use and says
//! plainly why the step cannot run when there is none, instead of the container's `exec
//! format error` or `no such file or directory`.

use std::fs;
use std::path::Path;

use anyhow::{Result, bail};
use img::platform::Platform;

/// Where binfmt_misc is mounted.
const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// How Debian users get emulators registered with the fix-binary flag.
const HINT: &str =
    "install qemu-user-static and binfmt-support (Debian) or register qemu-user with the F flag";

/// Whether a RUN step of `platform` can run on this machine: natively, or through an
/// emulator registered with the fix-binary flag.
pub fn check(platform: &Platform) -> Result<()> {
    // An image whose config names no architecture runs as the host's.
    if platform.architecture.is_empty() {
        return Ok(());
    }
    check_in(Path::new(BINFMT_MISC), platform, &Platform::host())
}

fn check_in(binfmt_misc: &Path, platform: &Platform, host: &Platform) -> Result<()> {
    if platform.os != "linux" {
        bail!("cannot run RUN steps for {platform}: only linux images run here");
    }
    if native(&platform.architecture, &host.architecture) {
        return Ok(());
    }
    let cannot = format!("cannot run RUN steps for {platform} on this {host} machine");
    let Some(header) = elf_header(&platform.architecture) else {
        bail!("{cannot}: img-build does not know the binaries of architecture {:?}", platform.architecture);
    };
    let entries = match fs::read_dir(binfmt_misc) {
        Ok(entries) => entries,
        Err(e) => bail!("{cannot}: binfmt_misc cannot be read at {} ({e}); {HINT}", binfmt_misc.display()),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "register" && n != "status")
        .collect();
    if names.is_empty() && !binfmt_misc.join("register").exists() {
        bail!("{cannot}: binfmt_misc is not mounted at {}; {HINT}", binfmt_misc.display());
    }
    names.sort();
    let mut found = None;
    for name in names {
        let Ok(text) = fs::read_to_string(binfmt_misc.join(&name)) else { continue };
        if let Some(handler) = Handler::parse(&name, &text)
            && handler.matches(&header)
        {
            // The kernel tries enabled handlers only; a disabled one explains a failure.
            if handler.enabled {
                found = Some(handler);
                break;
            }
            found.get_or_insert(handler);
        }
    }
    match found {
        None => bail!(
            "{cannot}: no emulator for {} binaries is registered in binfmt_misc; {HINT}",
            platform.architecture
        ),
        Some(h) if !h.enabled => bail!(
            "{cannot}: the binfmt_misc handler {} is disabled (enable it: update-binfmts --enable {})",
            h.name,
            h.name
        ),
        Some(h) if !h.flags.contains('F') => bail!(
            "{cannot}: the binfmt_misc handler {} was registered without the fix-binary (F) flag, so its emulator {} is not found inside a build container; {HINT}",
            h.name,
            h.interpreter
        ),
        Some(_) => Ok(()),
    }
}

/// Architectures the host's CPU and kernel run themselves: its own, and the 32-bit one it
/// has a compatibility mode for (i386 on x86-64, arm on arm64).
fn native(arch: &str, host: &str) -> bool {
    arch == host || matches!((host, arch), ("amd64", "386") | ("arm64", "arm"))
}

/// The first 20 bytes of an executable of `arch` (Go's names): what binfmt_misc's magic
/// entries match on (class, byte order, type, machine).
fn elf_header(arch: &str) -> Option<[u8; 20]> {
    // (64-bit, big-endian, e_machine)
    let (wide, big, machine): (bool, bool, u16) = match arch {
        "amd64" => (true, false, 62),
        "386" => (false, false, 3),
        "arm64" => (true, false, 183),
        "arm" => (false, false, 40),
        "ppc64le" => (true, false, 21),
        "ppc64" => (true, true, 21),
        "s390x" => (true, true, 22),
        "riscv64" => (true, false, 243),
        "mips64le" => (true, false, 8),
        "mips64" => (true, true, 8),
        "mipsle" => (false, false, 8),
        "mips" => (false, true, 8),
        "loong64" => (true, false, 258),
        _ => return None,
    };
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if wide { 2 } else { 1 };
    h[5] = if big { 2 } else { 1 };
    h[6] = 1; // EV_CURRENT
    let (e_type, e_machine) = if big {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    h[16..18].copy_from_slice(&e_type); // ET_EXEC
    h[18..20].copy_from_slice(&e_machine);
    Some(h)
}

/// One binfmt_misc handler, as its file in the binfmt_misc directory shows it.
#[derive(Debug)]
struct Handler {
    name: String,
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Option<Vec<u8>>,
}

impl Handler {
    /// A magic-matching handler; extension-matching ones (`.jar`) are `None`.
    fn parse(name: &str, text: &str) -> Option<Handler> {
        let mut lines = text.lines();
        let enabled = lines.next()? == "enabled";
        let mut handler = Handler {
            name: name.to_string(),
            enabled,
            interpreter: String::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: None,
        };
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "interpreter" => handler.interpreter = value.to_string(),
                "flags:" => handler.flags = value.to_string(),
                "offset" => handler.offset = value.parse().ok()?,
                "magic" => handler.magic = hex::decode(value).ok()?,
                "mask" => handler.mask = Some(hex::decode(value).ok()?),
                _ => {}
            }
        }
        (!handler.magic.is_empty()).then_some(handler)
    }

    /// Whether the kernel would pick this handler for a file starting with `header`.
    fn matches(&self, header: &[u8]) -> bool {
        let Some(bytes) = header.get(self.offset..self.offset + self.magic.len()) else { return false };
        bytes.iter().zip(&self.magic).enumerate().all(|(i, (b, m))| {
            let mask = self.mask.as_ref().and_then(|k| k.get(i)).copied().unwrap_or(0xff);
            b & mask == *m
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's qemu-user-static registration of aarch64, as /proc shows it.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n\
        offset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt(handlers: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        for (name, text) in handlers {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn check(dir: &Path, platform: &str) -> Result<()> {
        check_in(dir, &platform.parse().unwrap(), &"linux/amd64".parse().unwrap())
    }

    #[test]
    fn native_platforms_need_no_emulator() {
        let none = binfmt(&[]);
        check(none.path(), "linux/amd64").unwrap();
        check(none.path(), "linux/386").unwrap();
        let err = check(none.path(), "windows/amd64").unwrap_err().to_string();
        assert!(err.contains("only linux images"), "{err}");
    }

    #[test]
    fn a_registered_fix_binary_emulator_runs_foreign_steps() {
        let dir = binfmt(&[
            ("jar", "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n"),
            ("qemu-aarch64", AARCH64),
        ]);
        check(dir.path(), "linux/arm64").unwrap();
        check(dir.path(), "linux/arm64/v8").unwrap();
        // Another architecture's header does not match aarch64's magic.
        let err = check(dir.path(), "linux/riscv64").unwrap_err().to_string();
        assert!(err.contains("no emulator for riscv64 binaries is registered"), "{err}");
        assert!(err.contains("cannot run RUN steps for linux/riscv64 on this linux/amd64 machine"), "{err}");
    }

    #[test]
    fn says_why_an_emulator_cannot_be_used() {
        let disabled = AARCH64.replacen("enabled", "disabled", 1);
        let dir = binfmt(&[("qemu-aarch64", &disabled)]);
        let err = check(dir.path(), "linux/arm64").unwrap_err().to_string();
        assert!(err.contains("qemu-aarch64 is disabled"), "{err}");

        let not_fixed = AARCH64.replace("flags: PF", "flags: P");
        let dir = binfmt(&[("qemu-aarch64", &not_fixed)]);
        let err = check(dir.path(), "linux/arm64").unwrap_err().to_string();
        assert!(err.contains("without the fix-binary (F) flag"), "{err}");
        assert!(err.contains("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"), "{err}");

        let unmounted = tempfile::tempdir().unwrap();
        let err = check(unmounted.path(), "linux/arm64").unwrap_err().to_string();
        assert!(err.contains("binfmt_misc is not mounted"), "{err}");
        let err = check(unmounted.path(), "linux/sparc").unwrap_err().to_string();
        assert!(err.contains("does not know the binaries of architecture \"sparc\""), "{err}");
    }

    #[test]
    fn headers_match_the_kernel_s_own_registrations() {
        // qemu's arm (32-bit, little-endian) magic and mask, as Debian registers them.
        let arm = Handler::parse(
            "qemu-arm",
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\noffset 0\n\
             magic 7f454c4601010100000000000000000002002800\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        assert!(arm.matches(&elf_header("arm").unwrap()));
        assert!(!arm.matches(&elf_header("arm64").unwrap()));
        assert!(!arm.matches(&elf_header("386").unwrap()));
    }
}
