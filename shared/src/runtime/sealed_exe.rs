//! Keeps the runtime's own binary out of the container's reach (CVE-2019-5736).
//!
//! The attack: the container's command is `/proc/self/exe`. When the runtime's process execs
//! it, that link still names the runtime's binary, so the kernel runs img-run (or img-build)
//! again, inside the container, with the dynamic loader (and `LD_PRELOAD`) of the *image*:
//! code of the image's choosing runs with `/proc/self/exe` open on the host's binary. It can
//! read the binary, keep the descriptor, and once nothing executes the file any more (the
//! runtime exited; a container without its own PID namespace outlives it) reopen it through
//! `/proc/self/fd/N` for writing and replace the host's binary with its own, to be run as
//! root by the next user. A `--init` PID 1 is img-run forked and never execed: its
//! `/proc/1/exe` is the same binary, for a container allowed to trace it.
//!
//! The defence, as runc's: before anything can enter a container, the running image is not
//! the host's file but a copy in a memfd sealed against every change (`F_SEAL_WRITE`,
//! `F_SEAL_SHRINK`, `F_SEAL_GROW`, and `F_SEAL_SEAL` so no seal can be taken back). [`ensure`]
//! copies `/proc/self/exe` into one and execs it with the same arguments and environment;
//! the new image finds its `/proc/self/exe` sealed and carries on. Every process of the tool
//! then runs the copy, so all a container can reach through `/proc` is a private, unwritable
//! file that vanishes with the tool.
//!
//! "Already sealed" is read from the file itself (`F_GET_SEALS` on `/proc/self/exe`), never
//! from an environment variable a caller could set to skip the copy; a regular file has no
//! seals and a tmpfs file only `F_SEAL_SEAL`, so only our sealed memfd passes.
//!
//! The cost is one copy of the binary per start, made in the kernel (`copy_file_range` or
//! `sendfile`); the copy holds the binary's size in memory while the tool runs.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, Result, bail};
use rustix::fs::{MemfdFlags, SealFlags};

/// The seals that make the copy immutable for good.
const SEALS: SealFlags =
    SealFlags::SEAL.union(SealFlags::SHRINK).union(SealFlags::GROW).union(SealFlags::WRITE);

/// Returns when the running image is a sealed copy; otherwise makes one from
/// `/proc/self/exe` and execs it with this process's arguments and environment, so it
/// returns only with an error. `name` names the memfd (`/proc/self/exe` shows
/// `/memfd:NAME (deleted)`). Call it first thing in `main`, before threads or state that an
/// exec would lose.
pub fn ensure(name: &str) -> Result<()> {
    let exe = File::open("/proc/self/exe").context("opening /proc/self/exe")?;
    if is_sealed(&exe) {
        return Ok(());
    }
    let copy = sealed_copy(&exe, name)?;
    drop(exe);
    let args = c_strings(std::env::args_os())?;
    let env = c_strings(std::env::vars_os().map(|(k, v)| {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        kv
    }))?;
    let Err(err) = nix::unistd::fexecve(&copy, &args, &env);
    Err(err).context("executing the sealed copy of the binary")
}

/// Whether the file carries every seal of [`SEALS`].
fn is_sealed(file: &File) -> bool {
    rustix::fs::fcntl_get_seals(file).is_ok_and(|s| s.contains(SEALS))
}

/// A close-on-exec memfd holding the bytes of `exe`, sealed.
fn sealed_copy(exe: &File, name: &str) -> Result<File> {
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) keeps the copy executable when vm.memfd_noexec asks for
    // non-executable memfds by default; older kernels do not know it.
    let fd = match rustix::fs::memfd_create(name, base | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(name, base),
        other => other,
    }
    .context("memfd_create for a sealed copy of the binary")?;
    let copy = File::from(fd);
    let want = exe.metadata().context("reading /proc/self/exe")?.len();
    let copied = std::io::copy(&mut &*exe, &mut &copy).context("copying /proc/self/exe")?;
    if copied != want {
        bail!("copying /proc/self/exe: {copied} of {want} bytes");
    }
    rustix::fs::fcntl_add_seals(&copy, SEALS).context("sealing the copy of the binary")?;
    Ok(copy)
}

fn c_strings(items: impl Iterator<Item = OsString>) -> Result<Vec<CString>> {
    items.map(|s| CString::new(s.into_vec()).context("an argument or variable with a NUL byte")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_not_sealed() {
        assert!(!is_sealed(&File::open("/proc/self/exe").unwrap()));
    }

    #[test]
    fn the_copy_is_sealed_and_the_same_bytes() {
        let exe = File::open("/proc/self/exe").unwrap();
        let copy = sealed_copy(&exe, "sealed-exe-test").unwrap();
        assert!(is_sealed(&copy));
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
        assert!(std::fs::read(&path).unwrap() == std::fs::read("/proc/self/exe").unwrap());
        // Sealed against writing: the write is refused even through a fresh descriptor.
        let writable = std::fs::OpenOptions::new().write(true).open(&path);
        if let Ok(mut w) = writable {
            assert!(std::io::Write::write_all(&mut w, b"x").is_err(), "a sealed copy took a write");
        }
    }
}
