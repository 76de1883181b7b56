//! The container's filesystem: private propagation, the rootfs bind (or overlay), bind
//! sources opened as detached mounts before pivot_root, then pivot_root (not chroot), the
//! spec's mounts, /dev with the standard nodes, masked and read-only paths, a read-only root.
//!
//! Everything after pivot_root resolves paths inside the new root, so a symlink in the image
//! cannot send a mount outside it; host paths (bind sources, device nodes) are only ever
//! reached through mounts cloned before pivot_root with `open_tree`.

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

/// A detached copy of the mount tree at `path` (recursive if asked).
fn open_tree(path: &Path, recursive: bool) -> Result<OwnedFd> {
    let c = cstr(path)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree with a valid C string; the returned fd is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cloning the mount at {}", path.display()));
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sets mount attributes (read-only, nosuid, …) on a detached tree or a path.
fn set_attrs(fd: Option<&OwnedFd>, path: &Path, attrs: u64, recursive: bool) -> Result<()> {
    if attrs == 0 {
        return Ok(());
    }
    let attr = MountAttr { attr_set: attrs, attr_clr: 0, propagation: 0, userns_fd: 0 };
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
fn new_fs(kind: &str, opts: &Options) -> Result<OwnedFd> {
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
    for d in &opts.data {
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
    let mut attrs = opts.attrs;
    if opts.flags.contains(MsFlags::MS_NOATIME) {
        attrs |= 0x10;
    }
    if opts.flags.contains(MsFlags::MS_STRICTATIME) {
        attrs |= 0x20;
    }
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
    attrs: u64,
    recursive: bool,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Options {
    let mut o = Options { flags: MsFlags::empty(), attrs: 0, recursive: false, data: Vec::new() };
    for opt in options {
        let (flag, attr) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, 0),
            "dirsync" => (MsFlags::MS_DIRSYNC, 0),
            "noatime" => (MsFlags::MS_NOATIME, 0),
            "nodiratime" => (MsFlags::MS_NODIRATIME, 0),
            "relatime" => (MsFlags::MS_RELATIME, 0),
            "strictatime" => (MsFlags::MS_STRICTATIME, 0),
            "rbind" => {
                o.recursive = true;
                (MsFlags::empty(), 0)
            }
            "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "norelatime"
            | "nostrictatime" | "bind" | "private" | "rprivate" | "slave" | "rslave" | "shared"
            | "rshared" | "unbindable" | "runbindable" | "tmpcopyup" | "nosymfollow" => (MsFlags::empty(), 0),
            data => {
                o.data.push(data.to_string());
                (MsFlags::empty(), 0)
            }
        };
        o.flags |= flag;
        o.attrs |= attr;
    }
    o
}

/// How the container's namespaces constrain mounting.
#[derive(Clone, Copy, Debug)]
pub struct Isolation {
    /// In a user namespace (rootless): no mknod, host devices are bound instead.
    pub userns: bool,
    /// In a new network namespace: sysfs can be mounted (else it is the host's, bound).
    pub netns: bool,
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

    // Host sides of binds, cloned while the host is still reachable.
    let mut binds: Vec<Option<Prepared>> = Vec::new();
    for m in &spec.mounts {
        binds.push(if m.is_bind() {
            Some(prepare_bind(m, bundle)?)
        } else if m.kind == "proc" || m.kind == "sysfs" && cx.netns {
            let fd = new_fs(&m.kind, &parse_options(&m.options))
                .with_context(|| format!("mounting {} on {}", m.kind, m.destination))?;
            Some(Prepared { fd, is_dir: true })
        } else if m.kind == "sysfs" && cx.userns {
            // Without a network namespace of its own, a user namespace may not mount sysfs:
            // the host's, read-only.
            let fd = open_tree(Path::new("/sys"), true)?;
            let all = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
            set_attrs(Some(&fd), Path::new("/sys"), all, true)?;
            Some(Prepared { fd, is_dir: true })
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
            devices.push(Prepared { fd: open_tree(&host, false)?, is_dir: false });
        }
        for d in &spec.linux.devices {
            extra_devices.push(Some(Prepared { fd: open_tree(Path::new(&d.path), false)?, is_dir: false }));
        }
    }
    pivot(root)?;

    let mut dev_is_tmpfs = false;
    for (m, prepared) in spec.mounts.iter().zip(binds) {
        let dest = container_path(&m.destination)?;
        if let Some(p) = prepared {
            let dest = make_target(&dest, p.is_dir)?;
            move_mount(&p.fd, &dest)?;
            continue;
        }
        let opts = parse_options(&m.options);
        let dest = make_target(&dest, true)?;
        match m.kind.as_str() {
            "cgroup" | "cgroup2" => mount_cgroup(&dest, &opts)?,
            kind => {
                let mut data = opts.data.clone();
                if kind == "devpts" && cx.userns {
                    // Group 5 (tty) is not mapped in a rootless container.
                    data.retain(|d| !d.starts_with("gid="));
                }
                let data = data.join(",");
                let source = if m.source.is_empty() { kind } else { m.source.as_str() };
                mount(Some(source), &dest, Some(kind), opts.flags, Some(data.as_str()))
                    .with_context(|| format!("mounting {kind} on {}", m.destination))?;
                if dest == Path::new("/dev") && kind == "tmpfs" {
                    dev_is_tmpfs = true;
                }
            }
        }
    }
    if dev_is_tmpfs {
        populate_dev(&devices)?;
    }
    for (i, d) in spec.linux.devices.iter().enumerate() {
        let dest = container_path(&d.path)?;
        match extra_devices.get_mut(i).and_then(Option::take) {
            Some(p) => move_mount(&p.fd, &make_target(&dest, false)?)?,
            None => {
                let parent = dest.parent().unwrap_or(Path::new("/"));
                let parent = make_target(parent, true)?;
                let name = dest.file_name().context("a device path names a file")?;
                super::devices::make(d, &parent.join(name))?;
            }
        }
    }
    for p in &spec.linux.masked_paths {
        mask(Path::new(p))?;
    }
    for p in &spec.linux.readonly_paths {
        readonly(Path::new(p))?;
    }
    Ok(())
}

/// Makes the root read-only, once nothing else needs creating under it.
pub fn readonly_root() -> Result<()> {
    set_attrs(None, Path::new("/"), MOUNT_ATTR_RDONLY, false).context("making the rootfs read-only")
}

fn prepare_bind(m: &Mount, bundle: &Path) -> Result<Prepared> {
    let source =
        if Path::new(&m.source).is_absolute() { PathBuf::from(&m.source) } else { bundle.join(&m.source) };
    let meta = fs::metadata(&source).with_context(|| format!("bind source {}", source.display()))?;
    let opts = parse_options(&m.options);
    let fd = open_tree(&source, opts.recursive)?;
    set_attrs(Some(&fd), &source, opts.attrs, opts.recursive)?;
    Ok(Prepared { fd, is_dir: meta.is_dir() })
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
    // The old root sits on top of "."; cut it loose without propagating to the host.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .context("making the old root a slave")?;
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
            move_mount(&p.fd, &path)?;
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
        let o = parse_options(&["nosuid".into(), "ro".into(), "mode=755".into(), "rbind".into()]);
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
