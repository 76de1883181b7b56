//! Resource limits through cgroups: v2 where a cgroup2 tree is mounted with the controllers we
//! need, else v1 (one hierarchy per controller). A limit that cannot be applied is an error.
//! Device rules go to the v1 devices controller, or on v2 (and where v1 has no devices
//! controller) into an eBPF program attached to the container's v2 cgroup.
//! A container only gets cgroups when it has limits or device rules that restrict something;
//! its processes die with its PID namespace.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::cgroup_bpf;
use super::device_rules::{self, Rule};
use super::spec::Resources;

/// The cgroup directories made for one container.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Parents made for `linux.cgroupsPath`, removed after `dirs`.
    parents: Vec<PathBuf>,
    /// The one v2 directory among `dirs`, which a child can be forked straight into.
    v2: Option<PathBuf>,
}

/// One mounted cgroup hierarchy: where, which version, which controllers.
#[derive(Clone, Debug)]
struct Hierarchy {
    mount: PathBuf,
    /// The mount's root within the hierarchy (mountinfo's fourth field).
    root: String,
    v2: bool,
    controllers: Vec<String>,
}

/// The limits to write, as (controller, file, value) for each version.
fn settings(r: &Resources, v2: bool) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = &r.memory {
        if let Some(limit) = m.limit {
            out.push(("memory", if v2 { "memory.max" } else { "memory.limit_in_bytes" }, limit.to_string()));
        }
        if let Some(swap) = m.swap {
            if v2 {
                let extra = swap - m.limit.unwrap_or(0);
                out.push(("memory", "memory.swap.max", extra.max(0).to_string()));
            } else {
                out.push(("memory", "memory.memsw.limit_in_bytes", swap.to_string()));
            }
        }
    }
    if let Some(p) = &r.pids {
        let v = if p.limit <= 0 { "max".to_string() } else { p.limit.to_string() };
        out.push(("pids", "pids.max", v));
    }
    if let Some(c) = &r.cpu {
        let period = c.period.unwrap_or(100_000);
        if let Some(quota) = c.quota {
            if v2 {
                out.push(("cpu", "cpu.max", format!("{quota} {period}")));
            } else {
                out.push(("cpu", "cpu.cfs_period_us", period.to_string()));
                out.push(("cpu", "cpu.cfs_quota_us", quota.to_string()));
            }
        }
        if let Some(shares) = c.shares {
            if v2 {
                let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
                out.push(("cpu", "cpu.weight", weight.to_string()));
            } else {
                out.push(("cpu", "cpu.shares", shares.to_string()));
            }
        }
    }
    out
}

fn hierarchies() -> Result<Vec<Hierarchy>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(unescape(l[4]));
        match r[0] {
            "cgroup2" => {
                let controllers =
                    std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
                out.push(Hierarchy {
                    mount,
                    root: l[3].to_string(),
                    v2: true,
                    controllers: controllers.split_whitespace().map(str::to_string).collect(),
                });
            }
            "cgroup" => out.push(Hierarchy {
                mount,
                root: l[3].to_string(),
                v2: false,
                controllers: r[2].split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    Ok(out)
}

/// Where the host's cgroup v2 tree is mounted, if it is.
pub fn v2_mount() -> Option<PathBuf> {
    hierarchies().ok()?.into_iter().find(|h| h.v2).map(|h| h.mount)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// This process's `/proc/self/cgroup`, read once: the tools never move themselves between
/// cgroups (only a container's child joins its own), and a start asks it some thirty times.
fn self_cgroups() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default())
}

/// Whether `name` is a controller of a v1 hierarchy this process is in.
fn is_v1_controller(name: &str) -> bool {
    self_cgroups()
        .lines()
        .any(|l| l.split(':').nth(1).is_some_and(|names| names.split(',').any(|n| n == name)))
}

/// This process's cgroup path in the v1 hierarchy of `controller` (or v2 with `None`).
fn own_path(controller: Option<&str>) -> String {
    for line in self_cgroups().lines() {
        let mut f = line.splitn(3, ':');
        let (_, names, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        let hit = match controller {
            None => names.is_empty(),
            Some(c) => names.split(',').any(|n| n == c),
        };
        if hit {
            return path.to_string();
        }
    }
    "/".to_string()
}

/// A container's cgroup in the v2 tree: under `img-run/` at the tree's root.
fn dir_v2(h: &Hierarchy, id: &str) -> PathBuf {
    h.mount.join("img-run").join(id)
}

/// A container's cgroup in a v1 hierarchy: nested under our own, relative to the mount's root.
fn dir_v1(h: &Hierarchy, controller: &str, id: &str) -> PathBuf {
    let own = own_path(Some(controller));
    let rel = own.strip_prefix(h.root.as_str()).unwrap_or(&own).trim_start_matches('/');
    h.mount.join(rel).join(format!("img-run-{id}"))
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    std::fs::write(dir.join(file), value)
        .with_context(|| format!("cgroup: writing {value:?} to {}", dir.join(file).display()))
}

impl Cgroup {
    /// Makes the container's cgroups, writes its limits and applies its device rules (see
    /// [`device_rules::effective`]); `None` when there is nothing to apply.
    ///
    /// With `prefer_v2`, device rules alone go into an eBPF program on a cgroup in the v2
    /// tree even where v1 has a devices controller (the kernel runs both): the child can then
    /// be forked straight into it ([`super::fork`]) instead of joining a v1 cgroup, which
    /// costs more than the rest of a container's start. The caller passes false when its
    /// child cannot be forked there (img-run inside a user namespace has no rights on the
    /// tree's root), and v1 is used as before; so it is too wherever the program cannot be
    /// attached.
    pub fn create(
        id: &str,
        resources: Option<&Resources>,
        devices: &[Rule],
        prefer_v2: bool,
    ) -> Result<Option<Cgroup>> {
        let empty = Resources::default();
        let r = resources.unwrap_or(&empty);
        let wanted: Vec<&str> = {
            let mut c: Vec<&str> = settings(r, false).iter().map(|s| s.0).collect();
            c.dedup();
            c
        };
        let devices = if device_rules::allows_everything(devices) { &[][..] } else { devices };
        if wanted.is_empty() && devices.is_empty() {
            return Ok(None);
        }
        // A killed run of the same name may have left its (empty) cgroups.
        Cgroup::remove_leftover(id);
        let all = hierarchies()?;
        let v2 = all.iter().find(|h| {
            h.v2 && !wanted.is_empty() && wanted.iter().all(|c| h.controllers.iter().any(|x| x == c))
        });
        let mut cg = Cgroup { dirs: Vec::new(), parents: Vec::new(), v2: None };
        if prefer_v2
            && wanted.is_empty()
            && let Some(h) = all.iter().find(|h| h.v2)
        {
            match cg.create_v2(h, id, r, &[]).and_then(|dir| cgroup_bpf::apply(&dir, devices)) {
                Ok(()) => return Ok(Some(cg)),
                Err(_) => cg.remove(),
            }
        }
        let result = match v2 {
            Some(h) => cg.create_v2(h, id, r, &wanted).and_then(|dir| match devices.is_empty() {
                true => Ok(()),
                false => cgroup_bpf::apply(&dir, devices),
            }),
            None => cg.create_v1(&all, id, r, &wanted, devices),
        };
        match result {
            Ok(()) => Ok(Some(cg)),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    /// Makes the container's v2 cgroup (enabling the `wanted` controllers on the way) and
    /// writes the limits; returns its directory.
    fn create_v2(&mut self, h: &Hierarchy, id: &str, r: &Resources, wanted: &[&str]) -> Result<PathBuf> {
        // Under the tree's root, which may hold processes and enable controllers for children.
        let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
        let dir = dir_v2(h, id);
        let parent = dir.parent().expect("under img-run/");
        if !wanted.is_empty() {
            write(&h.mount, "cgroup.subtree_control", enable.trim())?;
        }
        match std::fs::create_dir(parent) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cgroup: creating {}", parent.display())),
        }
        if !wanted.is_empty() {
            write(parent, "cgroup.subtree_control", enable.trim())?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("cgroup: creating {}", dir.display()))?;
        self.dirs.push(dir.clone());
        self.v2 = Some(dir.clone());
        for (_, file, value) in settings(r, true) {
            write(&dir, file, &value)?;
        }
        Ok(dir)
    }

    fn create_v1(
        &mut self,
        all: &[Hierarchy],
        id: &str,
        r: &Resources,
        wanted: &[&str],
        devices: &[Rule],
    ) -> Result<()> {
        let has_v1 = |c: &str| all.iter().any(|h| !h.v2 && h.controllers.iter().any(|x| x == c));
        let v1_devices = !devices.is_empty() && has_v1("devices");
        let mut wanted = wanted.to_vec();
        if v1_devices {
            wanted.push("devices");
        }
        let mut made: Vec<(String, PathBuf)> = Vec::new();
        for c in &wanted {
            let Some(h) = all.iter().find(|h| !h.v2 && h.controllers.iter().any(|x| x == c)) else {
                bail!("cgroup: the {c} controller is not available (neither cgroup v2 nor v1 has it)");
            };
            if let Some((_, dir)) = made.iter().find(|(m, _)| Path::new(m) == h.mount) {
                made.push((c.to_string(), dir.clone()));
                continue;
            }
            let dir = dir_v1(h, c, id);
            std::fs::create_dir(&dir).with_context(|| format!("cgroup: creating {}", dir.display()))?;
            self.dirs.push(dir.clone());
            made.push((h.mount.to_string_lossy().into_owned(), dir.clone()));
            made.push((c.to_string(), dir));
        }
        for (controller, file, value) in settings(r, false) {
            let dir = &made.iter().find(|(c, _)| c == controller).expect("made above").1;
            if !dir.join(file).exists() {
                bail!("cgroup: {} is not supported here (no {file})", file);
            }
            write(dir, file, &value)?;
        }
        if v1_devices {
            // As runc: deny everything first, then the rules in order.
            let dir = &made.iter().find(|(c, _)| c == "devices").expect("made above").1;
            for (file, line) in device_rules::v1_writes(devices)? {
                write(dir, file, &line)?;
            }
        } else if !devices.is_empty() {
            let Some(h) = all.iter().find(|h| h.v2) else {
                bail!("device rules: no cgroup v1 devices controller and no cgroup2 tree is mounted");
            };
            let dir = self.create_v2(h, id, &Resources::default(), &[])?;
            cgroup_bpf::apply(&dir, devices)?;
        }
        Ok(())
    }

    /// A bundle's `linux.cgroupsPath`: the container's cgroup at that path in every hierarchy
    /// (v2 when it has the controllers the limits need, else each v1 one), as runc's cgroupfs
    /// driver places it: an absolute path from the hierarchy's root as mounted here, a relative
    /// one under img-run's own cgroup. Made if missing (what was made is removed afterwards)
    /// and joined even without limits.
    pub fn create_at(path: &str, resources: Option<&Resources>, devices: &[Rule]) -> Result<Cgroup> {
        let devices = if device_rules::allows_everything(devices) { &[][..] } else { devices };
        let rel = Path::new(path);
        if rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            bail!("config.json: linux.cgroupsPath {path:?} contains \"..\"");
        }
        let r = resources.cloned().unwrap_or_default();
        let mut wanted: Vec<&str> = settings(&r, false).iter().map(|s| s.0).collect();
        wanted.dedup();
        let all = hierarchies()?;
        let under = |h: &Hierarchy, own: String| -> PathBuf {
            let base = if rel.is_absolute() {
                String::new()
            } else {
                own.strip_prefix(h.root.as_str()).unwrap_or(&own).trim_start_matches('/').to_string()
            };
            h.mount.join(base).join(path.trim_start_matches('/'))
        };
        let mut cg = Cgroup { dirs: Vec::new(), parents: Vec::new(), v2: None };
        let v2 = all.iter().find(|h| h.v2 && wanted.iter().all(|c| h.controllers.iter().any(|x| x == c)));
        // Without limits, every hierarchy img-run is in, as runc: v1 ones when there are any.
        let use_v2 = v2.filter(|_| !wanted.is_empty() || !all.iter().any(|h| !h.v2));
        let result = (|| -> Result<()> {
            match use_v2 {
                Some(h) => {
                    let dir = under(h, own_path(None));
                    cg.make_all(&h.mount, &dir, &wanted)?;
                    cg.v2 = Some(dir.clone());
                    for (_, file, value) in settings(&r, true) {
                        write(&dir, file, &value)?;
                    }
                    if !devices.is_empty() {
                        cgroup_bpf::apply(&dir, devices)?;
                    }
                }
                None => {
                    for h in all.iter().filter(|h| !h.v2) {
                        let Some(c) = h.controllers.iter().find(|c| is_v1_controller(c)) else { continue };
                        let dir = under(h, own_path(Some(c)));
                        cg.make_all(&h.mount, &dir, &[])?;
                        for (controller, file, value) in settings(&r, false) {
                            if h.controllers.iter().any(|x| x == controller) {
                                write(&dir, file, &value)?;
                            }
                        }
                        if !devices.is_empty() && h.controllers.iter().any(|x| x == "devices") {
                            // As runc: deny everything first, then the rules in order.
                            for (file, line) in device_rules::v1_writes(devices)? {
                                write(&dir, file, &line)?;
                            }
                        }
                    }
                    if !devices.is_empty()
                        && !all.iter().any(|h| !h.v2 && h.controllers.iter().any(|x| x == "devices"))
                    {
                        bail!(
                            "device rules with linux.cgroupsPath need the cgroup v1 devices controller here"
                        );
                    }
                    if let Some(c) = wanted
                        .iter()
                        .find(|c| !all.iter().any(|h| !h.v2 && h.controllers.iter().any(|x| x == *c)))
                    {
                        bail!(
                            "cgroup: the {c} controller is not available (neither cgroup v2 nor v1 has it)"
                        );
                    }
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(cg),
            Err(e) => {
                cg.remove();
                Err(e).context("config.json: linux.cgroupsPath")
            }
        }
    }

    /// Makes `dir` and its missing parents below `mount`, noting each one made (to remove);
    /// on v2, enables `controllers` on the way down.
    fn make_all(&mut self, mount: &Path, dir: &Path, controllers: &[&str]) -> Result<()> {
        let enable: String = controllers.iter().map(|c| format!("+{c} ")).collect();
        let mut cur = mount.to_path_buf();
        let rel = dir.strip_prefix(mount).unwrap_or(dir).to_path_buf();
        for part in rel.components() {
            if !enable.is_empty() {
                write(&cur, "cgroup.subtree_control", enable.trim())?;
            }
            let parent = cur.clone();
            cur.push(part);
            let leaf = cur == dir;
            match std::fs::create_dir(&cur) {
                Ok(()) if leaf => self.dirs.push(cur.clone()),
                Ok(()) => self.parents.push(cur.clone()),
                // The container's own cgroup is removed afterwards, killing what is in it: one
                // that already exists is someone else's.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && leaf => {
                    bail!("the cgroup {} already exists", cur.display())
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cgroup: creating {}", cur.display())),
            }
            // A new v1 cpuset starts with no CPUs and no memory nodes: nothing could join it.
            // As runc: the parent's.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if std::fs::read_to_string(cur.join(f)).is_ok_and(|v| v.trim().is_empty()) {
                    let from = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                    write(&cur, f, from.trim())?;
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroups [`Cgroup::create`] made for container `id` that an img-run killed
    /// before it could clean up left behind. Only empty ones: processes in a cgroup of that
    /// name belong to a live container (of another store, say), which is not ours to kill.
    pub fn remove_leftover(id: &str) {
        let Ok(all) = hierarchies() else { return };
        let dirs: Vec<PathBuf> = all
            .iter()
            .filter_map(|h| match h.v2 {
                true => Some(dir_v2(h, id)),
                // A v1 hierarchy's mount options list its controllers among others (`rw`).
                false => h.controllers.iter().find(|c| is_v1_controller(c)).map(|c| dir_v1(h, c, id)),
            })
            .filter(|d| d.is_dir())
            .collect();
        let empty =
            |d: &PathBuf| std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
        if dirs.iter().all(empty) {
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }

    /// Lets `uid`/`gid` (the host ids a container's root maps to, when img-run as root enters
    /// the spec's user namespace before forking the child) move processes into the container's
    /// cgroups: only `cgroup.procs` changes owner, as a delegation would, so the container's
    /// root can join but never rewrite its limits or device rules.
    pub fn let_join(&self, uid: u32, gid: u32) -> Result<()> {
        for dir in &self.dirs {
            let procs = dir.join("cgroup.procs");
            std::os::unix::fs::chown(&procs, Some(uid), Some(gid))
                .with_context(|| format!("cgroup: chown {}", procs.display()))?;
        }
        Ok(())
    }

    /// The container's v2 cgroup opened for `clone3`'s `CLONE_INTO_CGROUP`, when it has one.
    pub fn fork_target(&self) -> Option<std::fs::File> {
        // Opened for reading: the kernel refuses an O_PATH descriptor there.
        self.v2.as_ref().and_then(|d| std::fs::File::open(d).ok())
    }

    /// Moves the calling process into the container's cgroups (the child does this itself
    /// before it starts the container, so everything it forks is inside); `in_v2` when it was
    /// forked into the v2 one already.
    pub fn join_self(&self, in_v2: bool) -> Result<()> {
        for dir in &self.dirs {
            if in_v2 && self.v2.as_ref() == Some(dir) {
                continue;
            }
            write(dir, "cgroup.procs", "0")?;
        }
        Ok(())
    }

    /// Kills whatever is left and removes the directories, waiting briefly for the kernel to
    /// let go of exiting tasks.
    pub fn remove(&mut self) {
        self.v2 = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs.drain(..).rev() {
            loop {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                if Instant::now() > deadline {
                    eprintln!("img-run: warning: could not remove cgroup {}", dir.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for dir in self.parents.drain(..).rev() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::{Cpu, Memory, Pids};

    #[test]
    fn v2_enables_controllers_and_writes_limits() {
        // A stand-in cgroup2 tree: the kernel's files are plain files here.
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("cgroup.subtree_control"), "").unwrap();
        let h = Hierarchy {
            mount: tree.path().to_path_buf(),
            root: "/".into(),
            v2: true,
            controllers: vec!["memory".into(), "pids".into(), "cpu".into()],
        };
        let r = Resources {
            memory: Some(Memory { limit: Some(64 << 20), swap: Some(64 << 20) }),
            pids: Some(Pids { limit: 20 }),
            cpu: Some(Cpu { quota: Some(150_000), period: Some(100_000), shares: Some(1024) }),
            devices: Vec::new(),
        };
        let mut cg = Cgroup { dirs: Vec::new(), parents: Vec::new(), v2: None };
        cg.create_v2(&h, "c1", &r, &["memory", "pids", "cpu"]).unwrap();
        let read = |p: &str| std::fs::read_to_string(tree.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +pids +cpu");
        assert_eq!(read("img-run/cgroup.subtree_control"), "+memory +pids +cpu");
        assert_eq!(read("img-run/c1/memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("img-run/c1/memory.swap.max"), "0");
        assert_eq!(read("img-run/c1/pids.max"), "20");
        assert_eq!(read("img-run/c1/cpu.max"), "150000 100000");
        assert_eq!(read("img-run/c1/cpu.weight"), "39");
        // Removing a stand-in directory with files in it fails like a busy cgroup would;
        // forget it rather than wait.
        cg.dirs.clear();
    }

    #[test]
    fn settings_for_each_version() {
        let r = Resources {
            memory: Some(Memory { limit: Some(1 << 20), swap: None }),
            pids: Some(Pids { limit: 10 }),
            cpu: Some(Cpu { quota: Some(50_000), period: Some(100_000), shares: None }),
            devices: Vec::new(),
        };
        let v1 = settings(&r, false);
        assert!(v1.contains(&("memory", "memory.limit_in_bytes", "1048576".into())));
        assert!(v1.contains(&("cpu", "cpu.cfs_quota_us", "50000".into())));
        let v2 = settings(&r, true);
        assert!(v2.contains(&("cpu", "cpu.max", "50000 100000".into())));
        assert!(v2.contains(&("pids", "pids.max", "10".into())));
    }
}
