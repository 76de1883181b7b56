//! Writing credentials where docker and podman read them, for img-login and img-logout: the
//! `auths` of `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), or the credential
//! helper that file names for the registry (`credHelpers`, else `credsStore`), run as
//! `docker-credential-<name> store|erase` with the JSON on stdin, as docker runs it. Reading
//! them back is [`super::auth::lookup`]'s job.
//!
//! The file is rewritten atomically (a temp file beside it, mode 0600, synced, renamed over it;
//! a symlinked `config.json` is written through to its target, as docker does), every other key
//! is kept with its value (serde_json sorts keys, so their order may change), and a file that is
//! not valid JSON is an error, never overwritten. A password is never put on a command line:
//! helpers get it on stdin.
//!
//! Docker Hub is stored under docker's key, `https://index.docker.io/v1/`; other registries
//! under their name as in references (`localhost:5000`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::auth::config_keys;

/// docker's key for Docker Hub in `auths` and for credential helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry a user names, as references name it: the scheme and any path stripped
/// (`https://quay.io/v2/` → `quay.io`), Docker Hub's aliases folded into `docker.io`.
pub fn registry_name(arg: &str) -> Result<String> {
    let arg = arg.trim();
    let rest = arg.strip_prefix("https://").or_else(|| arg.strip_prefix("http://")).unwrap_or(arg);
    let host = rest.split('/').next().unwrap_or_default().to_ascii_lowercase();
    if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
        bail!("{arg:?} is not a registry (host[:port])");
    }
    Ok(match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    })
}

/// The key a registry's credentials are stored under.
pub fn server_key(registry: &str) -> String {
    if registry == "docker.io" { DOCKER_HUB_KEY.to_string() } else { registry.to_string() }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_path() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (var("DOCKER_CONFIG"), var("HOME")) {
        (Some(dir), _) => Ok(dir.join("config.json")),
        (None, Some(home)) => Ok(home.join(".docker/config.json")),
        (None, None) => bail!("neither $DOCKER_CONFIG nor $HOME is set: where is config.json?"),
    }
}

/// Where a registry's credentials are (or would be) kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The `auths` of this file.
    File(PathBuf),
    /// The credential helper `docker-credential-<name>`.
    Helper(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::File(p) => write!(f, "{}", p.display()),
            Place::Helper(h) => write!(f, "docker-credential-{h}"),
        }
    }
}

/// The config file's JSON (an empty object if there is none).
fn read(path: &Path) -> Result<Map<String, Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(anyhow!("{}: {e}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!("{}: not a JSON object (left as it is)", path.display()),
        Err(e) => bail!("{}: malformed JSON (left as it is): {e}", path.display()),
    }
}

/// The helper configured for a registry: `credHelpers` for it, else `credsStore`.
fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
    let helpers = config.get("credHelpers").and_then(Value::as_object);
    for key in config_keys(registry) {
        if let Some(h) = helpers.and_then(|h| h.get(&key)).and_then(Value::as_str).filter(|h| !h.is_empty()) {
            return Some(h.to_string());
        }
    }
    config.get("credsStore").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from)
}

/// Stores a login for `registry` (a name as [`registry_name`] gives) in the config file at
/// `path`, or in the helper it names. Returns where it went.
pub fn save(path: &Path, registry: &str, username: &str, password: &str) -> Result<Place> {
    let mut config = read(path)?;
    let key = server_key(registry);
    let helper = helper_for(&config, registry);
    let auths = config.entry("auths").or_insert_with(|| json!({}));
    let Some(auths) = auths.as_object_mut() else {
        bail!("{}: \"auths\" is not an object (left as it is)", path.display());
    };
    // Other spellings of the same registry would shadow or outlive this login.
    for other in config_keys(registry).into_iter().filter(|k| *k != key) {
        auths.remove(&other);
    }
    let place = match &helper {
        Some(h) => {
            run_helper(
                h,
                "store",
                &json!({"ServerURL": key, "Username": username, "Secret": password}).to_string(),
            )?;
            // As docker does: the file notes the registry, the helper keeps the secret.
            auths.insert(key, json!({}));
            Place::Helper(h.clone())
        }
        None => {
            let auth = STANDARD.encode(format!("{username}:{password}"));
            auths.insert(key, json!({ "auth": auth }));
            Place::File(path.to_path_buf())
        }
    };
    write(path, &config)?;
    Ok(place)
}

/// Removes a registry's login from the config file at `path` and from its helper. Returns
/// where it was, or `None` when there was no login to remove (nothing is written then).
pub fn remove(path: &Path, registry: &str) -> Result<Option<Place>> {
    let mut config = read(path)?;
    let key = server_key(registry);
    let mut found = None;
    if let Some(h) = helper_for(&config, registry) {
        match run_helper(&h, "erase", &key) {
            Ok(()) => found = Some(Place::Helper(h)),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let mut changed = false;
    if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
        for k in config_keys(registry) {
            if auths.remove(&k).is_some() {
                changed = true;
                found.get_or_insert(Place::File(path.to_path_buf()));
            }
        }
    }
    if changed {
        write(path, &config)?;
    }
    Ok(found)
}

fn not_found(e: &anyhow::Error) -> bool {
    format!("{e:#}").to_lowercase().contains("credentials not found")
}

/// Runs `docker-credential-<name> <action>` with `input` on stdin.
fn run_helper(name: &str, action: &str, input: &str) -> Result<()> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running credential helper {program}"))?;
    // A helper that exits without reading is judged by its status, not by a broken pipe.
    let _ = child.stdin.take().expect("piped").write_all(input.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout })
            .trim()
            .replace('\n', " ");
        bail!("credential helper {program} {action} failed: {said}");
    }
    Ok(())
}

/// Replaces the file atomically with `config`, mode 0600, creating its directory (0700).
fn write(path: &Path, config: &Map<String, Value>) -> Result<()> {
    // Written through a symlink to its target, as docker does, so the link stays a link.
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).with_context(|| format!("{}: a broken symlink", path.display()))?
        }
        _ => path.to_path_buf(),
    };
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(config.clone()))?;
    bytes.push(b'\n');
    temp.write_all(&bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|e| anyhow!("replacing {}: {}", target.display(), e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_registries_as_docker_does() {
        assert_eq!(registry_name("https://index.docker.io/v1/").unwrap(), "docker.io");
        assert_eq!(registry_name("registry-1.docker.io").unwrap(), "docker.io");
        assert_eq!(registry_name("http://LocalHost:5000/v2/").unwrap(), "localhost:5000");
        assert_eq!(registry_name("quay.io").unwrap(), "quay.io");
        assert!(registry_name("").is_err() && registry_name("u@evil").is_err());
        assert_eq!(server_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(server_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn saves_and_removes_keeping_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"other:1":{"auth":"eDp5"},"http://r:5":{"auth":"b2xkOm9sZA=="}},"psFormat":"x"}"#,
        )
        .unwrap();
        assert_eq!(save(&path, "r:5", "u", "p:w").unwrap(), Place::File(path.clone()));
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["auths"]["r:5"]["auth"], STANDARD.encode("u:p:w"));
        assert_eq!(v["auths"]["other:1"]["auth"], "eDp5");
        assert!(v["auths"].get("http://r:5").is_none(), "another spelling would shadow the login");
        assert_eq!(v["psFormat"], "x");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(remove(&path, "r:5").unwrap(), Some(Place::File(path.clone())));
        assert_eq!(remove(&path, "r:5").unwrap(), None);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["auths"], json!({"other:1": {"auth": "eDp5"}}));

        std::fs::write(&path, "{not json").unwrap();
        assert!(save(&path, "r:5", "u", "p").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json", "left as it was");
    }
}
