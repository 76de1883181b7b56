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
//! The cost is one copy per start, made in the kernel (`copy_file_range` or `sendfile`), of
//! only what exec uses (see the `elf` module below); the copy holds that much memory while
//! the tool runs.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, Result, bail};
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};

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
    if is_sealed(&exe) || on_read_only_overlay(&exe) {
        return Ok(());
    }
    // As root, a read-only overlay of the binary's directory costs no copy (runc does the
    // same); elsewhere, or where overlayfs refuses, the sealed memfd.
    let copy = match read_only_view() {
        Some(view) => view,
        None => sealed_copy(&exe, name)?,
    };
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

/// Whether the binary runs from a read-only overlayfs mount: no write can reach it through
/// that file (overlayfs has no upper layer to copy it up to).
fn on_read_only_overlay(file: &File) -> bool {
    const OVERLAYFS_SUPER_MAGIC: u32 = 0x794c_7630;
    let Ok(fs) = rustix::fs::fstatfs(file) else { return false };
    let Ok(vfs) = rustix::fs::fstatvfs(file) else { return false };
    fs.f_type as u32 == OVERLAYFS_SUPER_MAGIC && vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)
}

/// The running binary through a read-only overlayfs mount of its directory that is attached
/// nowhere (`fsmount`): exec from it and `/proc/self/exe` names a file that cannot be opened
/// for writing, without copying the binary. Needs CAP_SYS_ADMIN and Linux 6.8 (`lowerdir+`);
/// `None` where that is not had.
fn read_only_view() -> Option<File> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let path = std::fs::read_link("/proc/self/exe").ok()?;
    let (dir, name) = (path.parent()?, path.file_name()?);
    if !path.is_absolute() || path.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") {
        return None;
    }
    let attrs = MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV;
    // Without an upper layer overlayfs wants two lower ones: the binary's directory and an
    // empty tmpfs, itself attached nowhere.
    let tmpfs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).ok()?;
    rustix::mount::fsconfig_create(&tmpfs).ok()?;
    let empty = rustix::mount::fsmount(&tmpfs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).ok()?;
    let lower =
        rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let overlay = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).ok()?;
    rustix::mount::fsconfig_set_fd(&overlay, "lowerdir+", &lower).ok()?;
    rustix::mount::fsconfig_set_fd(&overlay, "lowerdir+", &empty).ok()?;
    rustix::mount::fsconfig_create(&overlay).ok()?;
    let mnt = rustix::mount::fsmount(&overlay, FsMountFlags::FSMOUNT_CLOEXEC, attrs).ok()?;
    let fd = rustix::fs::openat(&mnt, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let file = File::from(fd);
    on_read_only_overlay(&file).then_some(file)
}

/// Whether the file carries every seal of [`SEALS`].
fn is_sealed(file: &File) -> bool {
    rustix::fs::fcntl_get_seals(file).is_ok_and(|s| s.contains(SEALS))
}

/// A close-on-exec memfd holding what the kernel and the loader use of `exe`, sealed.
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
    let size = exe.metadata().context("reading /proc/self/exe")?.len();
    let want = elf::loaded_len(exe).filter(|&n| n <= size).unwrap_or(size);
    let copied = std::io::copy(&mut exe.take(want), &mut &copy).context("copying /proc/self/exe")?;
    if copied != want {
        bail!("copying /proc/self/exe: {copied} of {want} bytes");
    }
    if want < size {
        elf::drop_section_headers(&copy).context("writing the copy of the binary")?;
    }
    rustix::fs::fcntl_add_seals(&copy, SEALS).context("sealing the copy of the binary")?;
    Ok(copy)
}

/// Just enough of ELF64 (little-endian, our own binary's format) to copy only what
/// exec uses: the header, the program headers and every segment's bytes in the file. What
/// follows them (section headers, symbols, debug information) serves only debuggers, which
/// cannot find it through a memfd anyway, and is most of a debug build (59 of 70 MB of
/// img-run's).
mod elf {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    const HEADER: usize = 64;
    const PHDR: usize = 56;

    fn u16_at(b: &[u8], at: usize) -> u64 {
        u16::from_le_bytes([b[at], b[at + 1]]).into()
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    }

    /// The length of the file's prefix that holds the header, the program headers and
    /// every segment's file bytes; `None` when the file is not an ELF64 LSB file we can
    /// read (the whole file is copied then).
    pub fn loaded_len(exe: &File) -> Option<u64> {
        let mut header = [0u8; HEADER];
        exe.read_exact_at(&mut header, 0).ok()?;
        if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return None;
        }
        let (phoff, phentsize, phnum) = (u64_at(&header, 0x20), u16_at(&header, 0x36), u16_at(&header, 0x38));
        // 0xffff: the count is in the first section header, which the copy would drop.
        if phentsize != PHDR as u64 || phnum == 0 || phnum == 0xffff {
            return None;
        }
        let mut phdrs = vec![0u8; PHDR * phnum as usize];
        exe.read_exact_at(&mut phdrs, phoff).ok()?;
        let mut end = phoff.checked_add(phdrs.len() as u64)?.max(HEADER as u64);
        for ph in phdrs.chunks_exact(PHDR) {
            let (offset, filesz) = (u64_at(ph, 8), u64_at(ph, 32));
            end = end.max(offset.checked_add(filesz)?);
        }
        Some(end)
    }

    /// Marks the copy as having no section headers (e_shoff, e_shnum, e_shstrndx zero),
    /// as the ELF specification spells it, since they were not copied.
    pub fn drop_section_headers(copy: &File) -> std::io::Result<()> {
        copy.write_all_at(&[0u8; 8], 0x28)?;
        copy.write_all_at(&[0u8; 4], 0x3c)
    }
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
    fn the_copy_is_sealed_and_holds_what_exec_uses() {
        let exe = File::open("/proc/self/exe").unwrap();
        let copy = sealed_copy(&exe, "sealed-exe-test").unwrap();
        assert!(is_sealed(&copy));
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
        let (copied, original) = (std::fs::read(&path).unwrap(), std::fs::read("/proc/self/exe").unwrap());
        // The test binary has debug information: the copy stops before it and says it has
        // no section headers; everything else is the original's.
        assert!(copied.len() < original.len(), "{} of {} bytes", copied.len(), original.len());
        let mut expected = original[..copied.len()].to_vec();
        expected[0x28..0x30].fill(0);
        expected[0x3c..0x40].fill(0);
        assert!(copied == expected, "the copy differs from the original");
        // Sealed against writing: the write is refused even through a fresh descriptor.
        let writable = std::fs::OpenOptions::new().write(true).open(&path);
        if let Ok(mut w) = writable {
            assert!(std::io::Write::write_all(&mut w, b"x").is_err(), "a sealed copy took a write");
        }
    }

    #[test]
    fn not_elf_means_the_whole_file() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(elf::loaded_len(&f), None);
    }
}
