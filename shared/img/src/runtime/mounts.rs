//! The container's filesystem: private propagation, the rootfs bind (or overlay), bind
//! sources opened (`O_PATH`) before pivot_root, then pivot_root (not chroot), the spec's
//! mounts in the order listed, /dev with the standard nodes, the old root detached, masked and
//! read-only paths, the root's propagation, a read-only root.
//!
//! Everything after pivot_root resolves paths inside the new root, so a symlink in the image
//! cannot send a mount outside it; host paths (bind sources, device nodes) are only ever
//! reached through descriptors opened before pivot_root. The old root stays stacked under
//! the new one until the spec's mounts are made, so each is created (cloned with `open_tree`,
//! or made by `fsmount`) when its turn comes: mountinfo lists mounts by creation, and the spec
//! wants them in the order config.json lists them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::spec::{Mount, Spec};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).context("a path with a NUL byte")
}

/// A detached copy of the mount tree at a descriptor opened earlier (`O_PATH`); its mount
/// must still be in this mount namespace.
fn clone_at(fd: &OwnedFd, shown: &Path, recursive: bool) -> Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree on a descriptor we own with an empty C string; we own the result.
    let new = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if new < 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cloning the mount at {}", shown.display()));
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(new as i32) })
}

/// Opens a host path (following its symlinks on the host) to clone it later.
fn open_path(path: &Path) -> Result<OwnedFd> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(file.into())
}

/// Sets mount attributes (read-only, nosuid, …) on a detached tree or a path.
fn set_attrs(fd: Option<&OwnedFd>, path: &Path, attrs: u64, recursive: bool) -> Result<()> {
    set_clear_attrs(fd, path, attrs, 0, recursive)
}

/// Sets and clears mount attributes on a detached tree or a path.
fn set_clear_attrs(fd: Option<&OwnedFd>, path: &Path, attrs: u64, clear: u64, recursive: bool) -> Result<()> {
    if attrs == 0 && clear == 0 {
        return Ok(());
    }
    // The access-time attributes are one field: setting one clears the others.
    let clear = if attrs & MOUNT_ATTR_ATIME_MASK != 0 { clear | MOUNT_ATTR_ATIME_MASK } else { clear };
    let attr = MountAttr { attr_set: attrs, attr_clr: clear, propagation: 0, userns_fd: 0 };
    let (dirfd, c) = match fd {
        Some(fd) => (fd.as_raw_fd(), CString::default()),
        None => (libc::AT_FDCWD, cstr(path)?),
    };
    let flags = if fd.is_some() { libc::AT_EMPTY_PATH as libc::c_uint } else { 0 }
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr with a valid struct of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("setting mount attributes on {}", path.display()));
    }
    Ok(())
}

/// Attaches a detached tree at `dest` (a path in the current root).
fn move_mount(fd: &OwnedFd, dest: &Path) -> Result<()> {
    let c = cstr(dest)?;
    let empty = CString::default();
    // SAFETY: move_mount with valid C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("mounting on {}", dest.display()));
    }
    Ok(())
}

/// A new, detached filesystem mount (fsopen/fsconfig/fsmount). proc and sysfs are made this
/// way before pivot_root: in a user namespace the kernel only allows them while a fully
/// visible instance is in the mount namespace, which the old root provides until it goes.
fn new_fs(kind: &str, source: &str, opts: &Options) -> Result<OwnedFd> {
    let fail = |what: &str| {
        Err::<OwnedFd, _>(io::Error::last_os_error()).with_context(|| format!("{what} for {kind}"))
    };
    let ckind = CString::new(kind).context("filesystem type")?;
    // SAFETY: fsopen with a valid C string; we own the returned descriptor.
    let fs = unsafe {
        libc::syscall(libc::SYS_fsopen, ckind.as_ptr(), 1 /* FSOPEN_CLOEXEC */)
    };
    if fs < 0 {
        return fail("fsopen");
    }
    // SAFETY: as above.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    // The source mountinfo shows (`proc`, `sysfs`), as config.json names it.
    let source = if source.is_empty() { kind } else { source };
    let source_opt = format!("source={source}");
    for d in std::iter::once(&source_opt).chain(&opts.data) {
        let (key, value) = match d.split_once('=') {
            Some((k, v)) => (CString::new(k)?, Some(CString::new(v)?)),
            None => (CString::new(d.as_str())?, None),
        };
        let (cmd, vptr) = match &value {
            Some(v) => (1 /* FSCONFIG_SET_STRING */, v.as_ptr()),
            None => (0 /* FSCONFIG_SET_FLAG */, std::ptr::null()),
        };
        // SAFETY: fsconfig with valid C strings (or NULL for a flag).
        if unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key.as_ptr(), vptr, 0) } != 0 {
            return fail(&format!("option {d}"));
        }
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    if unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            6,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    } != 0
    {
        return fail("creating the filesystem");
    }
    let attrs = opts.attrs;
    // SAFETY: fsmount on the configured context; we own the returned descriptor.
    let m = unsafe {
        libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), 1 /* FSMOUNT_CLOEXEC */, attrs)
    };
    if m < 0 {
        return fail("fsmount");
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(m as i32) })
}

/// Mount options split into flags, attributes for binds, and the data string.
#[derive(Debug, PartialEq)]
struct Options {
    flags: MsFlags,
    /// The same as mount attributes, for binds and `fsmount`.
    attrs: u64,
    /// Attributes cleared on a bind (`rw`, `suid`, …).
    clear: u64,
    /// Attributes set recursively once mounted (`rro`, `rnosuid`, …).
    rattrs: u64,
    recursive: bool,
    /// `private`, `rshared`, …: applied once mounted.
    propagation: MsFlags,
    /// Superblock flags a bind cannot change (`sync`, `iversion`, …), as written.
    sb_only: Vec<String>,
    data: Vec<String>,
}

/// A propagation option as mount(2) flags.
fn propagation(opt: &str) -> Option<MsFlags> {
    let (rec, kind) = match opt.strip_prefix('r') {
        Some(k) if matches!(k, "private" | "shared" | "slave" | "unbindable") => (MsFlags::MS_REC, k),
        _ => (MsFlags::empty(), opt),
    };
    let flag = match kind {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(flag | rec)
}

fn parse_options(options: &[String]) -> Result<Options> {
    let mut o = Options {
        flags: MsFlags::empty(),
        attrs: 0,
        clear: 0,
        rattrs: 0,
        recursive: false,
        propagation: MsFlags::empty(),
        sb_only: Vec::new(),
        data: Vec::new(),
    };
    for opt in options {
        if let Some(p) = propagation(opt) {
            o.propagation = p;
            continue;
        }
        let (flag, attr, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY, 0),
            "nosuid" => (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID, 0),
            "nodev" => (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV, 0),
            "noexec" => (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC, 0),
            "nosymfollow" => (MS_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW, 0),
            "noatime" => (MsFlags::MS_NOATIME, MOUNT_ATTR_NOATIME, 0),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME, 0),
            "strictatime" => (MsFlags::MS_STRICTATIME, MOUNT_ATTR_STRICTATIME, 0),
            "relatime" => (MsFlags::MS_RELATIME, 0, 0),
            "rw" => (MsFlags::empty(), 0, MOUNT_ATTR_RDONLY),
            "suid" => (MsFlags::empty(), 0, MOUNT_ATTR_NOSUID),
            "dev" => (MsFlags::empty(), 0, MOUNT_ATTR_NODEV),
            "exec" => (MsFlags::empty(), 0, MOUNT_ATTR_NOEXEC),
            "symfollow" => (MsFlags::empty(), 0, MOUNT_ATTR_NOSYMFOLLOW),
            "diratime" => (MsFlags::empty(), 0, MOUNT_ATTR_NODIRATIME),
            "atime" | "norelatime" | "nostrictatime" | "bind" | "loud" => (MsFlags::empty(), 0, 0),
            "rro" | "rnosuid" | "rnodev" | "rnoexec" | "rnosymfollow" => {
                o.rattrs |= match &opt[1..] {
                    "ro" => MOUNT_ATTR_RDONLY,
                    "nosuid" => MOUNT_ATTR_NOSUID,
                    "nodev" => MOUNT_ATTR_NODEV,
                    "noexec" => MOUNT_ATTR_NOEXEC,
                    _ => MOUNT_ATTR_NOSYMFOLLOW,
                };
                continue;
            }
            "rbind" => {
                o.recursive = true;
                continue;
            }
            "sync" | "dirsync" | "iversion" | "silent" | "async" | "noiversion" => {
                o.sb_only.push(opt.clone());
                let flag = match opt.as_str() {
                    "sync" => MsFlags::MS_SYNCHRONOUS,
                    "dirsync" => MsFlags::MS_DIRSYNC,
                    "iversion" => MsFlags::MS_I_VERSION,
                    "silent" => MsFlags::MS_SILENT,
                    _ => MsFlags::empty(),
                };
                o.flags |= flag;
                continue;
            }
            "tmpcopyup" | "idmap" | "ridmap" | "rrw" | "rsuid" | "rdev" | "rexec" | "rsymfollow"
            | "ratime" | "rnoatime" | "rstrictatime" | "rrelatime" | "rdiratime" | "rnodiratime" | "mand"
            | "nomand" | "lazytime" | "nolazytime" => {
                bail!("mount option {opt:?} is not supported by img-run")
            }
            data => {
                o.data.push(data.to_string());
                continue;
            }
        };
        o.flags |= flag;
        o.attrs |= attr;
        o.clear |= clear;
    }
    Ok(o)
}

/// How the container's namespaces constrain mounting.
#[derive(Clone, Copy, Debug)]
pub struct Isolation {
    /// In a user namespace (rootless): no mknod, host devices are bound instead.
    pub userns: bool,
    /// In a new network namespace: sysfs can be mounted (else it is the host's, bound).
    pub netns: bool,
    /// In a new cgroup namespace: cgroup2 is mounted (else the host's tree is bound).
    pub cgroupns: bool,
}

/// A host file or tree cloned before pivot_root, to be attached inside.
struct Prepared {
    fd: OwnedFd,
    is_dir: bool,
}

const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// What the root filesystem is made of.
pub enum Rootfs {
    /// A directory used as it is (a bundle's rootfs).
    Dir(PathBuf),
    /// An overlay of read-only layer directories (topmost first) with a writable upper.
    Overlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf, target: PathBuf },
    /// An overlay whose upper directory is thrown away after the run: mounted `volatile`, so
    /// nothing waits for it to reach the disk (unmounting an ordinary overlay syncs it).
    ScratchOverlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf, target: PathBuf },
}

impl Rootfs {
    fn path(&self) -> &Path {
        match self {
            Rootfs::Dir(p) => p,
            Rootfs::Overlay { target, .. } | Rootfs::ScratchOverlay { target, .. } => target,
        }
    }
}

/// Builds the container's filesystem and pivots into it. Runs in the child, in its new mount
/// namespace. `bundle` is where relative bind sources are found.
pub fn setup(spec: &Spec, rootfs: &Rootfs, bundle: &Path, cx: Isolation) -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making mounts private")?;
    let root = rootfs.path();
    match rootfs {
        Rootfs::Dir(dir) => {
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .with_context(|| format!("binding the rootfs {}", dir.display()))?
        }
        Rootfs::Overlay { lower, upper, work, target }
        | Rootfs::ScratchOverlay { lower, upper, work, target } => {
            let volatile = matches!(rootfs, Rootfs::ScratchOverlay { .. });
            // An image (or a build) may hold the same layer twice, e.g. two RUN steps that
            // changed the same nothing; overlayfs refuses a directory given twice (ELOOP).
            // Keeping only the topmost copy shows the same tree: the lower copy has nothing,
            // whiteouts included, that the upper one does not already apply above it.
            let mut seen = std::collections::HashSet::new();
            let lowers: Vec<String> =
                lower.iter().filter(|p| seen.insert(*p)).map(|p| p.to_string_lossy().into_owned()).collect();
            let mut data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                upper.to_string_lossy(),
                work.to_string_lossy()
            );
            if volatile {
                data.push_str(",volatile");
            }
            mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
                .with_context(|| format!("mounting the overlay rootfs at {}", target.display()))?;
        }
    }

    // Host sides of binds, opened while the host is still reachable.
    let mut sources: Vec<Option<Prepared>> = Vec::new();
    for m in &spec.mounts {
        let opts = parse_options(&m.options).with_context(|| format!("mount on {}", m.destination))?;
        sources.push(if m.is_bind() {
            if let Some(bad) = opts.data.first().or(opts.sb_only.first()) {
                bail!("mount option {bad:?} is not supported on a bind mount ({})", m.destination);
            }
            Some(prepare_bind(m, bundle)?)
        } else if m.kind == "sysfs" && cx.userns && !cx.netns {
            // Without a network namespace of its own, a user namespace may not mount sysfs:
            // the host's, read-only.
            Some(Prepared { fd: open_path(Path::new("/sys"))?, is_dir: true })
        } else if (m.kind == "cgroup" || m.kind == "cgroup2") && !cx.cgroupns {
            // Without a cgroup namespace of its own, a new cgroup2 mount would be made in the
            // host's: the kernel then re-applies the mount's options to the host's whole v2
            // hierarchy (clearing nsdelegate, memory_recursiveprot, … where the host set them)
            // and waits for an RCU grace period doing so (10-20 ms). The host's own tree,
            // bound read-only, shows the same without touching it.
            super::cgroup::v2_mount()
                .map(|dir| open_path(&dir).map(|fd| Prepared { fd, is_dir: true }))
                .transpose()?
        } else {
            None
        });
    }

    let mut devices = Vec::new();
    // The spec's own devices: bound from the host's same path where mknod is not allowed.
    let mut extra_devices = Vec::new();
    if cx.userns {
        for (name, _, _) in DEVICES {
            let host = Path::new("/dev").join(name);
            devices.push(Prepared { fd: open_path(&host)?, is_dir: false });
        }
        for d in &spec.linux.devices {
            extra_devices.push(Some(Prepared { fd: open_path(Path::new(&d.path))?, is_dir: false }));
        }
    }
    pivot(root)?;

    let mut dev_is_tmpfs = false;
    for (m, source) in spec.mounts.iter().zip(sources) {
        let dest = container_path(&m.destination)?;
        let opts = parse_options(&m.options)?;
        let dest = make_target(&dest, source.as_ref().is_none_or(|p| p.is_dir))?;
        let fail =
            || format!("mounting {} on {}", if m.kind.is_empty() { "bind" } else { &m.kind }, m.destination);
        if let Some(p) = source {
            if m.is_bind() {
                let fd = clone_at(&p.fd, &dest, opts.recursive)?;
                set_clear_attrs(Some(&fd), &dest, opts.attrs, opts.clear, opts.recursive)?;
                move_mount(&fd, &dest).with_context(fail)?;
            } else if m.kind == "cgroup" || m.kind == "cgroup2" {
                let fd = clone_at(&p.fd, Path::new("/sys/fs/cgroup"), false)?;
                // As the fresh mount would be: read-only when the spec says `ro`.
                let always = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
                set_attrs(Some(&fd), &dest, always | opts.attrs, false)?;
                move_mount(&fd, &dest).with_context(fail)?;
            } else {
                let fd = clone_at(&p.fd, Path::new("/sys"), true)?;
                let all = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
                set_attrs(Some(&fd), Path::new("/sys"), all, true)?;
                move_mount(&fd, &dest).with_context(fail)?;
            }
        } else if m.kind == "proc" || m.kind == "sysfs" {
            // proc and sysfs are made with fsmount while the old root is still stacked
            // below: in a user namespace the kernel only allows them while a fully visible
            // instance is in the mount namespace.
            let fd = new_fs(&m.kind, &m.source, &opts).with_context(fail)?;
            move_mount(&fd, &dest).with_context(fail)?;
        } else if m.kind == "cgroup" || m.kind == "cgroup2" {
            mount_cgroup(&dest, &opts)?;
        } else {
            let kind = m.kind.as_str();
            let mut data = opts.data.clone();
            if kind == "devpts" && cx.userns {
                // Group 5 (tty) is not mapped in a rootless container.
                data.retain(|d| !d.starts_with("gid="));
            }
            let data = data.join(",");
            let source = if m.source.is_empty() { kind } else { m.source.as_str() };
            mount(Some(source), &dest, Some(kind), opts.flags, Some(data.as_str())).with_context(fail)?;
            if dest == Path::new("/dev") && kind == "tmpfs" {
                dev_is_tmpfs = true;
            }
        }
        set_attrs(None, &dest, opts.rattrs, true).with_context(fail)?;
        if !opts.propagation.is_empty() {
            mount(None::<&str>, &dest, None::<&str>, opts.propagation, None::<&str>).with_context(fail)?;
        }
    }
    if dev_is_tmpfs {
        populate_dev(&devices)?;
    }
    for (i, d) in spec.linux.devices.iter().enumerate() {
        let dest = container_path(&d.path)?;
        match extra_devices.get_mut(i).and_then(Option::take) {
            Some(p) => move_mount(&clone_at(&p.fd, &dest, false)?, &make_target(&dest, false)?)?,
            None => {
                let parent = dest.parent().unwrap_or(Path::new("/"));
                let parent = make_target(parent, true)?;
                let name = dest.file_name().context("a device path names a file")?;
                super::devices::make(d, &parent.join(name))?;
            }
        }
    }
    detach_old_root()?;
    for p in &spec.linux.masked_paths {
        mask(Path::new(p))?;
    }
    for p in &spec.linux.readonly_paths {
        readonly(Path::new(p))?;
    }
    if let Some(p) = &spec.linux.rootfs_propagation {
        let flags = root_propagation(p)?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).context("setting rootfsPropagation")?;
    }
    Ok(())
}

/// `linux.rootfsPropagation` as mount(2) flags (recursive, as runc applies it).
pub fn root_propagation(value: &str) -> Result<MsFlags> {
    match propagation(value) {
        Some(flags) => Ok(flags | MsFlags::MS_REC),
        None => bail!("config.json: linux.rootfsPropagation {value:?} is not a propagation type"),
    }
}

/// Makes the root read-only, once nothing else needs creating under it.
pub fn readonly_root() -> Result<()> {
    set_attrs(None, Path::new("/"), MOUNT_ATTR_RDONLY, false).context("making the rootfs read-only")
}

fn prepare_bind(m: &Mount, bundle: &Path) -> Result<Prepared> {
    let source =
        if Path::new(&m.source).is_absolute() { PathBuf::from(&m.source) } else { bundle.join(&m.source) };
    let meta = fs::metadata(&source).with_context(|| format!("bind source {}", source.display()))?;
    Ok(Prepared { fd: open_path(&source)?, is_dir: meta.is_dir() })
}

/// The absolute path of a mount destination inside the container (after pivot_root).
fn container_path(dest: &str) -> Result<PathBuf> {
    let p = Path::new("/").join(dest);
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        bail!("mount destination {dest:?} contains \"..\"");
    }
    Ok(p)
}

/// Creates a mount point: a directory, or an empty file for a file bind. Runs after
/// pivot_root, so symlinks on the way (even dangling or absolute ones) resolve inside the
/// container, and missing directories are made where they point, as runc does.
fn make_target(dest: &Path, dir: bool) -> Result<PathBuf> {
    let resolved = resolve_creating(dest, dir)?;
    if !dir && fs::symlink_metadata(&resolved).is_err() {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&resolved)
            .with_context(|| format!("creating mount point {}", dest.display()))?;
    }
    Ok(resolved)
}

/// Walks `path` from `/`, following symlinks by hand and creating missing directories (all
/// but the last component when `last_is_dir` is false). Returns the resolved path.
fn resolve_creating(path: &Path, last_is_dir: bool) -> Result<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let last = todo.is_empty();
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    bail!("too many symlinks resolving {}", path.display());
                }
                let target = fs::read_link(&next).with_context(|| format!("reading {}", next.display()))?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        std::path::Component::Normal(n) => todo.push(n.to_os_string()),
                        std::path::Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !last || last_is_dir {
                    fs::create_dir(&next)
                        .with_context(|| format!("creating mount point {}", next.display()))?;
                }
                cur = next;
            }
            Err(e) => return Err(e).with_context(|| format!("resolving {}", next.display())),
        }
    }
    Ok(cur)
}

fn pivot(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).with_context(|| format!("entering {}", root.display()))?;
    let dot = c".";
    // SAFETY: pivot_root with valid C strings; stacking the old root on the new one is the
    // documented way to avoid a temporary directory.
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error()).context("pivot_root");
    }
    Ok(())
}

/// The old root sits on top of the new one (and of "."), still reachable by the descriptors
/// opened before pivot_root; cut it loose. Every mount was made private first, so nothing
/// propagates to the host. (A recursive MS_SLAVE on "." here would reach the new root's tree,
/// not the old root's: "." is not followed into the mount on top of it, and it would undo the
/// spec's `shared` mounts.)
fn detach_old_root() -> Result<()> {
    nix::unistd::chdir("/").context("entering the new root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/").context("entering the new root")?;
    Ok(())
}

/// A cgroup mount: cgroup2, read-only as the spec's options say.
fn mount_cgroup(dest: &Path, opts: &Options) -> Result<()> {
    let flags = opts.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("cgroup2"), dest, Some("cgroup2"), flags, None::<&str>) {
        Ok(()) => Ok(()),
        // Without a cgroup namespace of our own the kernel may refuse; an empty read-only
        // tmpfs keeps the path present without exposing the host's tree.
        Err(_) => mount(Some("tmpfs"), dest, Some("tmpfs"), flags | MsFlags::MS_RDONLY, Some("mode=755"))
            .with_context(|| format!("mounting cgroup on {}", dest.display())),
    }
}

/// The standard device nodes and links in a fresh /dev tmpfs.
fn populate_dev(host_devices: &[Prepared]) -> Result<()> {
    for (i, (name, major, minor)) in DEVICES.iter().enumerate() {
        let path = Path::new("/dev").join(name);
        if let Some(p) = host_devices.get(i) {
            let path = make_target(&path, false)?;
            move_mount(&clone_at(&p.fd, &path, false)?, &path)?;
        } else {
            nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(*major, *minor),
            )
            .with_context(|| format!("creating {}", path.display()))?;
            // Not narrowed by the umask.
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
    }
    let links = [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ];
    for (link, target) in links {
        match symlink(target, link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {link}")),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlink("/proc/kcore", "/dev/core");
    }
    Ok(())
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<()> {
    let Ok(meta) = fs::metadata(path) else { return Ok(()) };
    let result = if meta.is_dir() {
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
    } else {
        mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    result.with_context(|| format!("masking {}", path.display()))
}

/// Makes a path read-only (recursively), leaving its other flags as they are.
fn readonly(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("binding {}", path.display()))?;
    set_attrs(None, path, MOUNT_ATTR_RDONLY, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&["nosuid".into(), "ro".into(), "mode=755".into(), "rbind".into()]).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(o.attrs, MOUNT_ATTR_NOSUID | MOUNT_ATTR_RDONLY);
        assert!(o.recursive);
        assert_eq!(o.data, ["mode=755"]);
    }

    #[test]
    fn destinations_stay_inside() {
        assert_eq!(container_path("proc").unwrap(), Path::new("/proc"));
        assert!(container_path("/a/../../etc").is_err());
    }
}
