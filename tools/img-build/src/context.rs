//! The build context: the directory COPY and ADD read from, filtered by `.dockerignore`.
//! Sources are resolved as Docker does (paths relative to the context root, never leaving it;
//! wildcards per path component), copied into a staging directory laid out as the layer will
//! be, and hashed (content and metadata) for the build cache.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use img::digest::{Algorithm, Digest, Hasher};

use crate::dockerignore::Ignore;

pub struct BuildContext {
    root: PathBuf,
    ignore: Ignore,
}

/// A source path that matched, relative to the context root.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// The path as named (its last component names the copy).
    pub rel: PathBuf,
    /// Where it really is, symlinks resolved inside the root.
    pub real: PathBuf,
    pub is_dir: bool,
}

/// Ownership and mode for copied files (`--chown`, `--chmod`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Attributes {
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
}

impl BuildContext {
    /// A directory read without ignore rules: another stage's or image's root filesystem.
    pub fn rootfs(root: &Path) -> Result<BuildContext> {
        let root = fs::canonicalize(root).with_context(|| format!("{}", root.display()))?;
        Ok(BuildContext { root, ignore: Ignore::none() })
    }

    /// A context directory with its `.dockerignore` (if any).
    pub fn open(root: &Path) -> Result<BuildContext> {
        let root = fs::canonicalize(root).with_context(|| format!("build context {}", root.display()))?;
        if !root.is_dir() {
            bail!("build context {} is not a directory", root.display());
        }
        let ignore = match fs::read_to_string(root.join(".dockerignore")) {
            Ok(text) => Ignore::parse(&text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::none(),
            Err(e) => return Err(e).context(".dockerignore"),
        };
        Ok(BuildContext { root, ignore })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The paths a COPY source names: cleaned to stay inside the context, wildcards expanded
    /// (sorted), ignored paths left out. No match is an error naming the source.
    pub fn resolve(&self, source: &str) -> Result<Vec<Source>> {
        let clean: Vec<String> =
            clean_relative(source).split('/').filter(|c| !c.is_empty()).map(String::from).collect();
        let mut found = Vec::new();
        self.expand(Path::new(""), Path::new(""), &clean, &mut found)?;
        found.retain(|s: &Source| s.rel.as_os_str().is_empty() || !self.ignore.is_excluded(&slash(&s.rel)));
        if found.is_empty() {
            bail!("{source}: not found in the build context (or excluded by .dockerignore)");
        }
        Ok(found)
    }

    /// Walks `rest` from `base` (as named) / `real` (resolved), expanding wildcards.
    fn expand(&self, base: &Path, real: &Path, rest: &[String], out: &mut Vec<Source>) -> Result<()> {
        let Some((first, rest)) = rest.split_first() else {
            if let Ok(meta) = fs::symlink_metadata(self.root.join(real)) {
                out.push(Source { rel: base.to_path_buf(), real: real.to_path_buf(), is_dir: meta.is_dir() });
            }
            return Ok(());
        };
        if !has_wildcard(first) {
            let name = unescape(first);
            let next = resolve_in_root(&self.root, &real.join(&name))?;
            return self.expand(&base.join(&name), &next, rest, out);
        }
        let glob = globset::GlobBuilder::new(first)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .with_context(|| format!("invalid pattern {first:?}"))?
            .compile_matcher();
        let dir = self.root.join(real);
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names.iter().filter(|n| glob.is_match(n.as_str())) {
            let next = resolve_in_root(&self.root, &real.join(name))?;
            self.expand(&base.join(name), &next, rest, out)?;
        }
        Ok(())
    }

    /// Copies sources into `staging` at `dest` (an absolute path in the image) the way COPY
    /// places them: a directory's contents go into dest; a file goes to dest, or into it when
    /// dest ends in `/` or there are several sources.
    pub fn stage(&self, sources: &[Source], dest: &str, attrs: Attributes, staging: &Path) -> Result<()> {
        let into_dir = dest.ends_with('/') || sources.len() > 1 || sources.iter().any(|s| s.is_dir);
        let dest = staging.join(clean_relative(dest));
        for s in sources {
            let from = self.root.join(&s.real);
            if s.is_dir {
                fs::create_dir_all(&dest)?;
                self.copy_tree(&from, &s.real, &dest, attrs)?;
            } else {
                let to = if into_dir {
                    dest.join(s.rel.file_name().expect("files have names"))
                } else {
                    dest.clone()
                };
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)?;
                }
                copy_entry(&from, &to, attrs)?;
            }
        }
        Ok(())
    }

    fn copy_tree(&self, from: &Path, rel: &Path, to: &Path, attrs: Attributes) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(from)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel_child = rel.join(e.file_name());
            let excluded = self.ignore.is_excluded(&slash(&rel_child));
            let is_dir = e.file_type()?.is_dir();
            if excluded && !(is_dir && self.ignore.has_exceptions()) {
                continue;
            }
            let target = to.join(e.file_name());
            if is_dir {
                fs::create_dir_all(&target)?;
                self.copy_tree(&e.path(), &rel_child, &target, attrs)?;
                apply_attrs(&target, &fs::symlink_metadata(e.path())?, attrs)?;
            } else if !excluded {
                copy_entry(&e.path(), &target, attrs)?;
            }
        }
        apply_attrs(to, &fs::symlink_metadata(from)?, attrs)
    }

    /// A digest of what the sources are: paths, types, modes, sizes, link targets and file
    /// contents (not times or owners, which COPY does not take from the context). Used as
    /// part of a COPY step's cache key.
    pub fn digest(&self, sources: &[Source]) -> Result<Digest> {
        let mut h = Hasher::new(Algorithm::Sha256);
        for s in sources {
            h.update(slash(&s.rel).as_bytes());
            self.hash_path(&s.real, &mut h)?;
        }
        Ok(h.finish())
    }

    fn hash_path(&self, rel: &Path, h: &mut Hasher) -> Result<()> {
        let full = self.root.join(rel);
        let meta = fs::symlink_metadata(&full)?;
        let excluded = !rel.as_os_str().is_empty() && self.ignore.is_excluded(&slash(rel));
        // An excluded directory is still walked when a `!` pattern may re-include under it.
        if excluded && !(meta.is_dir() && self.ignore.has_exceptions()) {
            return Ok(());
        }
        if !excluded {
            h.update(slash(rel).as_bytes());
            h.update(format!("\0{:o}:{}\0", meta.mode(), meta.len()).as_bytes());
        }
        if meta.is_dir() {
            let mut names: Vec<_> =
                fs::read_dir(&full)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
            names.sort();
            for n in names {
                self.hash_path(&rel.join(n), h)?;
            }
        } else if meta.file_type().is_symlink() {
            h.update(fs::read_link(&full)?.as_os_str().as_encoded_bytes());
        } else if meta.is_file() {
            let mut f = fs::File::open(&full)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update(&[0xff]);
        Ok(())
    }
}

/// Resolves symlinks in `rel` as if `root` were `/`: absolute targets start again at the
/// root and `..` stops there, so nothing outside `root` is ever named. Returns the resolved
/// path relative to the root.
pub fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = rel.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::Normal(name)) => {
                let candidate = resolved.join(name);
                match fs::symlink_metadata(root.join(&candidate)) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        hops += 1;
                        if hops > 40 {
                            bail!("{}: too many levels of symbolic links", rel.display());
                        }
                        let target = fs::read_link(root.join(&candidate))?;
                        if target.is_absolute() {
                            resolved = PathBuf::new();
                        }
                        pending.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
                    }
                    _ => resolved = candidate,
                }
            }
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            _ => {}
        }
    }
    Ok(resolved)
}

fn copy_entry(from: &Path, to: &Path, attrs: Attributes) -> Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if to.symlink_metadata().is_ok() {
        fs::remove_file(to).ok();
    }
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)?;
    } else {
        fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    }
    apply_attrs(to, &meta, attrs)
}

/// Owner from `--chown` (root by default), mode from `--chmod` or the source, mtime from the
/// source.
fn apply_attrs(path: &Path, source: &fs::Metadata, attrs: Attributes) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(attrs.uid), Some(attrs.gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if !source.file_type().is_symlink() {
        let mode = attrs.mode.unwrap_or(source.mode() & 0o7777);
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    let mtime = filetime_from(source);
    set_mtime(path, mtime)?;
    Ok(())
}

fn filetime_from(meta: &fs::Metadata) -> libc::timespec {
    libc::timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() }
}

fn set_mtime(path: &Path, mtime: libc::timespec) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let times = [libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }, mtime];
    // SAFETY: c is a valid C string; times points at two timespecs.
    let rc =
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("setting mtime of {}", path.display()));
    }
    Ok(())
}

/// A source or destination relative to the root, `/`-joined, with `.`/`..` resolved so that
/// nothing climbs above the root (the layer code's chroot rule).
pub fn clean_relative(path: &str) -> String {
    String::from_utf8_lossy(&img::layer::apply::clean_clamped(path.as_bytes())).into_owned()
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn unescape(s: &str) -> String {
    s.replace('\\', "")
}

fn slash(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> (tempfile::TempDir, BuildContext) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("src/sub")).unwrap();
        fs::write(d.join("src/a.rs"), "a").unwrap();
        fs::write(d.join("src/b.rs"), "b").unwrap();
        fs::write(d.join("src/sub/c.txt"), "c").unwrap();
        fs::write(d.join("README.md"), "r").unwrap();
        fs::write(d.join("secret.key"), "k").unwrap();
        fs::write(d.join(".dockerignore"), "*.key\n").unwrap();
        let ctx = BuildContext::open(d).unwrap();
        (dir, ctx)
    }

    #[test]
    fn resolves_like_docker() {
        let (_d, ctx) = context();
        let rels = |s: &str| ctx.resolve(s).unwrap().into_iter().map(|s| slash(&s.rel)).collect::<Vec<_>>();
        assert_eq!(rels("src/*.rs"), ["src/a.rs", "src/b.rs"]);
        assert_eq!(rels("../../src/a.rs"), ["src/a.rs"], "cannot leave the context");
        assert_eq!(rels("/README.md"), ["README.md"]);
        assert_eq!(rels("."), [""]);
        assert!(ctx.resolve("secret.key").is_err(), "ignored");
        assert!(ctx.resolve("nope").unwrap_err().to_string().contains("not found"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("usr/lib")).unwrap();
        fs::write(d.join("usr/lib/x"), "inside").unwrap();
        symlink("/usr/lib", d.join("lib")).unwrap();
        symlink("../../../../etc", d.join("up")).unwrap();
        assert_eq!(resolve_in_root(d, Path::new("lib/x")).unwrap(), PathBuf::from("usr/lib/x"));
        assert_eq!(resolve_in_root(d, Path::new("up/passwd")).unwrap(), PathBuf::from("etc/passwd"));
        let ctx = BuildContext::rootfs(d).unwrap();
        let found = ctx.resolve("/lib/x").unwrap();
        assert_eq!(
            (found[0].rel.clone(), found[0].real.clone()),
            (PathBuf::from("lib/x"), PathBuf::from("usr/lib/x"))
        );
        assert!(ctx.resolve("/up/passwd").is_err(), "the host's /etc/passwd is not reachable");
        symlink("loop", d.join("loop")).unwrap();
        assert!(resolve_in_root(d, Path::new("loop/x")).is_err());
    }

    #[test]
    fn stages_files_and_directories() {
        let (_d, ctx) = context();
        let staging = tempfile::tempdir().unwrap();
        let s = staging.path();
        ctx.stage(&ctx.resolve("src").unwrap(), "/app/", Attributes { uid: 1, gid: 2, mode: None }, s)
            .unwrap();
        ctx.stage(&ctx.resolve("README.md").unwrap(), "/doc/readme", Attributes::default(), s).unwrap();
        ctx.stage(&ctx.resolve(".").unwrap(), "/all", Attributes::default(), s).unwrap();
        assert_eq!(fs::read_to_string(s.join("app/sub/c.txt")).unwrap(), "c");
        assert_eq!(fs::metadata(s.join("app/a.rs")).unwrap().uid(), 1);
        assert_eq!(fs::read_to_string(s.join("doc/readme")).unwrap(), "r");
        assert!(s.join("all/src/a.rs").is_file());
        assert!(!s.join("all/secret.key").exists(), ".dockerignore applies to directory copies");
    }

    #[test]
    fn digest_changes_with_content_only() {
        let (d, ctx) = context();
        let first = ctx.digest(&ctx.resolve("src").unwrap()).unwrap();
        assert_eq!(first, ctx.digest(&ctx.resolve("src").unwrap()).unwrap());
        fs::write(d.path().join("secret.key"), "changed").unwrap();
        assert_eq!(first, ctx.digest(&ctx.resolve("src").unwrap()).unwrap());
        fs::write(d.path().join("src/a.rs"), "changed").unwrap();
        assert_ne!(first, ctx.digest(&ctx.resolve("src").unwrap()).unwrap());
    }
}
