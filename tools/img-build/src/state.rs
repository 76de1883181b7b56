//! The image a stage is building: its config (kept as JSON so a base image's fields survive),
//! its layers and history, and the build arguments in scope. Metadata instructions change the
//! config here; instructions that make layers add them through [`ImageState::add_layer`].
//!
//! Every step reads the variables and most change the config, so these cost no more than the
//! step itself, whatever the image holds already: a Dockerfile of 10,000 `ENV` lines must not
//! copy 10,000 variables 10,000 times. The environment is indexed by name, and
//! [`ImageState::variables`] hands out a shared snapshot that it brings up to date with the
//! names changed since the last one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result, bail};
use img::digest::Digest;
use img::document::Descriptor;
use img::platform::Platform;
use serde_json::{Map, Value, json};

use img_dockerfile::instruction::{Command, Health};

/// docker's PATH for images that set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A layer of the image: the blob's descriptor and the digest of its uncompressed tar.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRef {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

#[derive(Debug)]
pub struct ImageState {
    /// The whole image config document. Its `config.Env` changes through
    /// [`ImageState::set_env`] only (other edits are noticed when they change its length).
    pub config: Map<String, Value>,
    pub layers: Vec<LayerRef>,
    /// Build arguments declared in this stage, with their values (not kept in the image).
    pub args: BuildArgs,
    /// Whether this build set CMD (then ENTRYPOINT keeps it).
    cmd_set: bool,
    /// Bytes of text this build's instructions wrote into the config, for [`ImageState::check_size`].
    written: usize,
    /// Where each name is in `config.Env`.
    env_index: EnvIndex,
    /// Names `set_env` changed, in order: what `variables` has to catch up with.
    env_log: Vec<String>,
    /// The variables as of the last [`ImageState::variables`], and how far the logs had got.
    cache: Mutex<VariablesCache>,
}

impl Clone for ImageState {
    fn clone(&self) -> ImageState {
        ImageState {
            config: self.config.clone(),
            layers: self.layers.clone(),
            args: self.args.clone(),
            cmd_set: self.cmd_set,
            written: self.written,
            env_index: self.env_index.clone(),
            env_log: self.env_log.clone(),
            cache: Mutex::new(self.lock_cache().clone()),
        }
    }
}

/// Build arguments by name. Reads as a map; changes go through `insert`, `remove` and `clear`,
/// which note the names for [`ImageState::variables`].
#[derive(Clone, Debug, Default)]
pub struct BuildArgs {
    map: BTreeMap<String, String>,
    /// Names changed since the last `clear`, in order.
    log: Vec<String>,
    /// How many times the arguments were cleared.
    epoch: u64,
}

impl BuildArgs {
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        self.log.push(name.clone());
        self.map.insert(name, value)
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.log.push(name.to_string());
        self.map.remove(name)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.log.clear();
        self.epoch += 1;
    }
}

impl Extend<(String, String)> for BuildArgs {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, items: I) {
        for (name, value) in items {
            self.insert(name, value);
        }
    }
}

impl Deref for BuildArgs {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &BTreeMap<String, String> {
        &self.map
    }
}

impl<'a> IntoIterator for &'a BuildArgs {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

/// The variables an instruction can expand, as they were when [`ImageState::variables`] was
/// called. Reads as a map; cloning it shares it, and changing it copies it first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Variables(Arc<BTreeMap<String, String>>);

impl Deref for Variables {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl DerefMut for Variables {
    fn deref_mut(&mut self) -> &mut BTreeMap<String, String> {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a> IntoIterator for &'a Variables {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The position of each name's (first) entry in `config.Env`, and the list's length when
/// indexed: a list of another length was changed behind the index's back.
#[derive(Clone, Debug, Default)]
struct EnvIndex {
    positions: HashMap<String, usize>,
    len: usize,
}

impl EnvIndex {
    fn of(list: &[Value]) -> EnvIndex {
        let mut positions = HashMap::new();
        for (i, entry) in list.iter().enumerate() {
            if let Some(name) = entry.as_str().map(env_name) {
                positions.entry(name.to_string()).or_insert(i);
            }
        }
        EnvIndex { positions, len: list.len() }
    }
}

#[derive(Clone, Debug, Default)]
struct VariablesCache {
    vars: Variables,
    /// Whether `vars` was ever computed.
    valid: bool,
    args_epoch: u64,
    /// How much of `args.log` and of `env_log` is in `vars`.
    args_seen: usize,
    env_seen: usize,
}

/// `KEY=VALUE` → `KEY`; an entry without `=` is all name.
fn env_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The value in an entry of `name`, if that is what it is.
fn env_value<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    entry.as_str()?.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v)
}

impl ImageState {
    /// The empty image `FROM scratch` starts from.
    pub fn scratch(platform: &Platform) -> ImageState {
        let mut config = Map::new();
        config.insert("architecture".into(), json!(platform.architecture));
        config.insert("os".into(), json!(platform.os));
        if let Some(v) = &platform.variant {
            config.insert("variant".into(), json!(v));
        }
        config.insert("config".into(), json!({"Env": [format!("PATH={DEFAULT_PATH}")]}));
        config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
        config.insert("history".into(), json!([]));
        ImageState::new(config, Vec::new())
    }

    /// The platform the image's config names (its binaries run there).
    pub fn platform(&self) -> Platform {
        let text = |k: &str| self.config.get(k).and_then(Value::as_str).map(str::to_string);
        Platform {
            os: text("os").unwrap_or_default(),
            architecture: text("architecture").unwrap_or_default(),
            variant: text("variant"),
            os_version: None,
        }
    }

    fn new(config: Map<String, Value>, layers: Vec<LayerRef>) -> ImageState {
        let mut state = ImageState {
            config,
            layers,
            args: BuildArgs::default(),
            cmd_set: false,
            written: 0,
            env_index: EnvIndex::default(),
            env_log: Vec::new(),
            cache: Mutex::default(),
        };
        state.env_index = EnvIndex::of(state.env_list());
        state
    }

    /// A base image's config and layers. Its layers must match its `rootfs.diff_ids`.
    pub fn from_image(config_bytes: &[u8], layers: Vec<LayerRef>) -> Result<ImageState> {
        let mut config: Map<String, Value> =
            serde_json::from_slice(config_bytes).context("base image config")?;
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let declared: Vec<String> = config
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if declared != diff_ids {
            bail!(
                "base image config lists {} layers but its manifest has {}",
                declared.len(),
                diff_ids.len()
            );
        }
        let run = config.entry("config").or_insert_with(|| json!({}));
        if !run.is_object() {
            *run = json!({});
        }
        if run.get("Env").is_none() {
            run["Env"] = json!([format!("PATH={DEFAULT_PATH}")]);
        }
        config.entry("history").or_insert_with(|| json!([]));
        Ok(ImageState::new(config, layers))
    }

    fn run_config(&mut self) -> &mut Map<String, Value> {
        let v = self.config.entry("config").or_insert_with(|| json!({}));
        if !v.is_object() {
            *v = json!({});
        }
        v.as_object_mut().expect("an object")
    }

    fn run_field(&self, key: &str) -> Option<&Value> {
        self.config.get("config").and_then(|c| c.get(key)).filter(|v| !v.is_null())
    }

    /// The image's environment as `KEY=VALUE` strings, in order.
    pub fn env(&self) -> Vec<String> {
        string_list(self.run_field("Env"))
    }

    /// `config.Env` (empty if it is not a list).
    fn env_list(&self) -> &[Value] {
        self.run_field("Env").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }

    /// The index of `config.Env`'s first entry for `name`, `None` if it has none.
    fn env_position(&self, name: &str) -> Option<usize> {
        let list = self.env_list();
        if list.len() == self.env_index.len {
            let at = self.env_index.positions.get(name).copied();
            if at.is_none_or(|i| list[i].as_str().map(env_name) == Some(name)) {
                return at;
            }
        }
        // Changed behind the index's back: look.
        list.iter().position(|e| e.as_str().map(env_name) == Some(name))
    }

    /// An image environment variable's value.
    pub fn env_var(&self, name: &str) -> Option<String> {
        let at = self.env_position(name)?;
        env_value(&self.env_list()[at], name).map(str::to_string)
    }

    fn lock_cache(&self) -> MutexGuard<'_, VariablesCache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every variable an instruction can expand (ENV wins over ARG, as in Docker): a snapshot
    /// taken before the instruction changes anything. It is shared with the state until the
    /// state changes again, so taking it costs as much as the changes since the last one.
    pub fn variables(&self) -> Variables {
        let mut cache = self.lock_cache();
        let indexed = self.env_list().len() == self.env_index.len;
        if !cache.valid || cache.args_epoch != self.args.epoch || !indexed {
            let mut vars = self.args.map.clone();
            // A name's first entry is the one that counts, as for `env_var`.
            let mut seen = HashSet::new();
            for entry in self.env_list().iter().filter_map(Value::as_str) {
                if seen.insert(env_name(entry))
                    && let Some((k, v)) = entry.split_once('=')
                {
                    vars.insert(k.to_string(), v.to_string());
                }
            }
            *cache = VariablesCache {
                vars: Variables(Arc::new(vars)),
                valid: true,
                args_epoch: self.args.epoch,
                args_seen: self.args.log.len(),
                env_seen: self.env_log.len(),
            };
            return cache.vars.clone();
        }
        let changed = self.args.log[cache.args_seen..].iter().chain(&self.env_log[cache.env_seen..]);
        let updates: Vec<(&String, Option<String>)> =
            changed.map(|name| (name, self.env_var(name).or_else(|| self.args.get(name).cloned()))).collect();
        (cache.args_seen, cache.env_seen) = (self.args.log.len(), self.env_log.len());
        if !updates.is_empty() {
            // The last snapshot is normally gone by now: then this changes it in place.
            let vars = &mut *cache.vars;
            for (name, value) in updates {
                match value {
                    Some(v) => vars.insert(name.clone(), v),
                    None => vars.remove(name),
                };
            }
        }
        cache.vars.clone()
    }

    /// `ENV`: a variable already there keeps its place in the list, as in Docker.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.written += key.len() + value.len();
        let config = self.run_config();
        if !config.get("Env").is_some_and(Value::is_array) {
            config.insert("Env".into(), json!([]));
        }
        let list = self.env_list();
        let stale = list.len() != self.env_index.len
            || self
                .env_index
                .positions
                .get(key)
                .is_some_and(|&i| list[i].as_str().map(env_name) != Some(key));
        // Changed behind the index's back: index it again, and recompute the variables.
        let reindexed = stale.then(|| EnvIndex::of(list));
        let cache = self.cache.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(index) = reindexed {
            self.env_index = index;
            cache.valid = false;
        }
        // The log only has to reach back to the last snapshot.
        if cache.env_seen == self.env_log.len() {
            self.env_log.clear();
            cache.env_seen = 0;
        }
        self.env_log.push(key.to_string());
        let entry = json!(format!("{key}={value}"));
        let list = self.config["config"]["Env"].as_array_mut().expect("made a list");
        match self.env_index.positions.get(key) {
            Some(&i) => list[i] = entry,
            None => {
                self.env_index.positions.insert(key.to_string(), list.len());
                self.env_index.len += 1;
                list.push(entry);
            }
        }
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        self.written += key.len() + value.len();
        let labels = self.run_config().entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels[key] = json!(value);
    }

    /// `SHELL` or the default `/bin/sh -c`.
    pub fn shell(&self) -> Vec<String> {
        let shell = string_list(self.run_field("Shell"));
        if shell.is_empty() { vec!["/bin/sh".into(), "-c".into()] } else { shell }
    }

    pub fn workdir(&self) -> String {
        self.run_field("WorkingDir")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    pub fn user(&self) -> Option<String> {
        self.run_field("User").and_then(Value::as_str).filter(|u| !u.is_empty()).map(str::to_string)
    }

    /// `WORKDIR`: relative paths are relative to the current one.
    pub fn set_workdir(&mut self, dir: &str) {
        let path = if dir.starts_with('/') { dir.to_string() } else { format!("{}/{dir}", self.workdir()) };
        let cleaned = clean_absolute(&path);
        self.run_config().insert("WorkingDir".into(), json!(cleaned));
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.written += key.len() + text_size(&value);
        self.run_config().insert(key.into(), value);
    }

    /// The argv a command runs as: exec form as is, shell form through SHELL.
    pub fn argv(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut argv = self.shell();
                argv.push(s.clone());
                argv
            }
        }
    }

    /// CMD: also, as docker does, an ENTRYPOINT set in this build clears an inherited CMD
    /// (handled by `set_entrypoint`).
    pub fn set_cmd(&mut self, command: &Command) {
        let argv = self.argv(command);
        self.set("Cmd", json!(argv));
        self.cmd_set = true;
    }

    pub fn set_entrypoint(&mut self, command: &Command) {
        let argv = self.argv(command);
        self.set("Entrypoint", json!(argv));
        // docker: ENTRYPOINT resets a CMD inherited from the base image.
        if !self.cmd_set {
            self.set("Cmd", Value::Null);
        }
    }

    pub fn expose(&mut self, port: &str) -> Result<()> {
        let port = if port.contains('/') { port.to_lowercase() } else { format!("{port}/tcp") };
        let (num, proto) = port.split_once('/').expect("has a /");
        let valid_num = num.split('-').all(|n| n.parse::<u16>().is_ok());
        if !valid_num || !matches!(proto, "tcp" | "udp" | "sctp") {
            bail!("EXPOSE: invalid port {port:?}");
        }
        let ports = self.run_config().entry("ExposedPorts").or_insert_with(|| json!({}));
        if !ports.is_object() {
            *ports = json!({});
        }
        ports[port.as_str()] = json!({});
        Ok(())
    }

    pub fn add_volume(&mut self, path: &str) {
        let vols = self.run_config().entry("Volumes").or_insert_with(|| json!({}));
        if !vols.is_object() {
            *vols = json!({});
        }
        vols[path] = json!({});
    }

    pub fn add_onbuild(&mut self, trigger: &str) {
        self.written += trigger.len();
        let list = self.run_config().entry("OnBuild").or_insert_with(|| json!([]));
        match list.as_array_mut() {
            Some(list) => list.push(json!(trigger)),
            None => *list = json!([trigger]),
        }
    }

    /// ONBUILD triggers inherited from the base image (run, then cleared).
    pub fn take_onbuild(&mut self) -> Vec<String> {
        let list = string_list(self.run_field("OnBuild"));
        self.set("OnBuild", Value::Null);
        list
    }

    pub fn set_healthcheck(&mut self, h: &Health) -> Result<()> {
        let Some(test) = &h.test else {
            self.set("Healthcheck", json!({"Test": ["NONE"]}));
            return Ok(());
        };
        let test = match test {
            Command::Exec(v) => {
                std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect::<Vec<_>>()
            }
            Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
        };
        let mut hc = json!({"Test": test});
        for (key, value) in [
            ("Interval", &h.interval),
            ("Timeout", &h.timeout),
            ("StartPeriod", &h.start_period),
            ("StartInterval", &h.start_interval),
        ] {
            if let Some(v) = value {
                hc[key] = json!(parse_duration_ns(v)?);
            }
        }
        if let Some(r) = h.retries {
            hc["Retries"] = json!(r);
        }
        self.set("Healthcheck", hc);
        Ok(())
    }

    /// Records a step in the config's history.
    pub fn add_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        self.written += created.len() + created_by.len();
        let mut entry = json!({"created": created, "created_by": created_by, "comment": HISTORY_COMMENT});
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        let history = self.config.entry("history").or_insert_with(|| json!([]));
        if let Some(h) = history.as_array_mut() {
            h.push(entry);
        }
    }

    pub fn add_layer(&mut self, layer: LayerRef) {
        let diff = json!(layer.diff_id.to_string());
        let rootfs = self.config.entry("rootfs").or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
            ids.push(diff);
        }
        self.layers.push(layer);
    }

    /// The time of the newest history entry: what `created` says for a rebuild that changed
    /// nothing, so it gives the same digest.
    pub fn last_created(&self) -> Option<String> {
        self.config
            .get("history")
            .and_then(Value::as_array)
            .and_then(|h| h.last())
            .and_then(|e| e.get("created"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// Marks history entries this tool wrote.
pub const HISTORY_COMMENT: &str = "img-build";

/// How much text a build's instructions may write into an image config (values, labels,
/// history). Each expansion is bounded (`shell::MAX_EXPANSION`), but a line at a time
/// `ENV Bn=$A`, with a 1 MiB `A`, would still add a MiB a line.
pub const MAX_CONFIG_TEXT: usize = 64 << 20;

impl ImageState {
    /// Fails once this build's instructions wrote more than [`MAX_CONFIG_TEXT`] bytes into the
    /// config; meant to be called after each step. A value set again counts again: its old
    /// text stays in the history.
    pub fn check_size(&self) -> Result<()> {
        if self.written > MAX_CONFIG_TEXT {
            bail!("the instructions wrote more than {} MiB into the image config", MAX_CONFIG_TEXT >> 20);
        }
        Ok(())
    }
}

/// The bytes of text in a JSON value's strings (the rest is small).
fn text_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_size).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + text_size(v)).sum(),
        _ => 8,
    }
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `/a/./b/../c/` → `/a/c`.
pub fn clean_absolute(path: &str) -> String {
    format!("/{}", img::path::clean_relative(path))
}

/// Go durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`) → nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<u64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest == "0" {
        return Ok(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_end);
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let n: f64 = num.parse().with_context(|| format!("invalid duration {s:?}"))?;
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
        total += n * scale;
        rest = next;
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_instructions_change_the_config_as_docker_does() {
        let mut s = ImageState::scratch(&"linux/amd64".parse().unwrap());
        assert_eq!(s.env(), [format!("PATH={DEFAULT_PATH}")]);
        s.set_env("A", "1");
        s.set_env("A", "2");
        assert_eq!(s.env_var("A").as_deref(), Some("2"));
        s.args.insert("B".into(), "arg".into());
        s.args.insert("A".into(), "arg".into());
        let vars = s.variables();
        assert_eq!(
            (vars.get("A").map(String::as_str), vars.get("B").map(String::as_str)),
            (Some("2"), Some("arg"))
        );
        s.set_workdir("/app");
        s.set_workdir("sub/../src");
        assert_eq!(s.workdir(), "/app/src");
        s.set_cmd(&Command::Shell("echo hi".into()));
        assert_eq!(s.run_field("Cmd").unwrap(), &json!(["/bin/sh", "-c", "echo hi"]));
        s.expose("80").unwrap();
        s.expose("53/UDP").unwrap();
        assert!(s.expose("http").is_err());
        assert_eq!(s.run_field("ExposedPorts").unwrap(), &json!({"80/tcp": {}, "53/udp": {}}));
        s.set_healthcheck(&Health {
            test: Some(Command::Shell("true".into())),
            interval: Some("1m30s".into()),
            retries: Some(2),
            ..Health::default()
        })
        .unwrap();
        assert_eq!(
            s.run_field("Healthcheck").unwrap(),
            &json!({"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000u64, "Retries": 2})
        );
    }

    #[test]
    fn entrypoint_clears_inherited_cmd_but_not_this_builds() {
        let base = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["base"]},
                          "rootfs": {"type": "layers", "diff_ids": []}});
        let mut s = ImageState::from_image(base.to_string().as_bytes(), vec![]).unwrap();
        s.set_entrypoint(&Command::Exec(vec!["/ep".into()]));
        assert_eq!(s.run_field("Cmd"), None);

        let mut s = ImageState::from_image(base.to_string().as_bytes(), vec![]).unwrap();
        s.set_cmd(&Command::Exec(vec!["mine".into()]));
        s.set_entrypoint(&Command::Exec(vec!["/ep".into()]));
        assert_eq!(s.run_field("Cmd").unwrap(), &json!(["mine"]));
    }

    #[test]
    fn variables_are_snapshots_of_env_over_args() {
        let mut s = ImageState::scratch(&"linux/amd64".parse().unwrap());
        let before = s.variables();
        s.set_env("A", "1");
        s.args.insert("B".into(), "arg".into());
        s.args.insert("A".into(), "arg".into());
        let get = |vars: &BTreeMap<String, String>, k: &str| vars.get(k).cloned();
        // Taken before the changes, a snapshot keeps what it saw.
        assert_eq!((get(&before, "A"), get(&before, "B")), (None, None));
        assert_eq!(get(&before, "PATH").as_deref(), Some(DEFAULT_PATH));
        let vars = s.variables();
        assert_eq!((get(&vars, "A").as_deref(), get(&vars, "B").as_deref()), (Some("1"), Some("arg")));
        s.set_env("A", "2");
        s.args.remove("B");
        assert_eq!(get(&vars, "A").as_deref(), Some("1"), "held while the state changes");
        let now = s.variables();
        assert_eq!((get(&now, "A").as_deref(), get(&now, "B")), (Some("2"), None));
        s.args.extend([("C".to_string(), "c".to_string())]);
        assert_eq!(get(&s.variables(), "C").as_deref(), Some("c"));
        s.args.clear();
        let now = s.variables();
        assert_eq!((now.len(), get(&now, "A").as_deref(), get(&now, "C")), (2, Some("2"), None));

        // A copy goes its own way.
        let mut copy = s.clone();
        copy.set_env("A", "copy");
        copy.args.insert("D".into(), "d".into());
        assert_eq!(get(&s.variables(), "A").as_deref(), Some("2"));
        assert_eq!(get(&s.variables(), "D"), None);
        assert_eq!(get(&copy.variables(), "A").as_deref(), Some("copy"));

        // A config changed behind the state's back is still read right.
        s.config["config"]["Env"] = json!(["X=1", "A=first", "A=second"]);
        assert_eq!((s.env_var("X").as_deref(), s.env_var("A").as_deref()), (Some("1"), Some("first")));
        let now = s.variables();
        assert_eq!((get(&now, "X").as_deref(), get(&now, "A").as_deref()), (Some("1"), Some("first")));
        s.set_env("PATH", "/bin");
        s.set_env("A", "3");
        assert_eq!(s.env(), ["X=1", "A=3", "A=second", "PATH=/bin"]);
        assert_eq!(get(&s.variables(), "A").as_deref(), Some("3"));
        s.config["config"]["Env"] = json!(["Y=1", "X=2", "A=4"]);
        assert_eq!(s.env_var("A").as_deref(), Some("4"), "same length, other entries");
        s.set_env("X", "3");
        assert_eq!(s.env(), ["Y=1", "X=3", "A=4"]);
        assert_eq!(get(&s.variables(), "Y").as_deref(), Some("1"));
        s.config["config"]["Env"] = json!(["A", "A=second"]);
        s.args.insert("A".into(), "arg".into());
        assert_eq!(s.env_var("A"), None, "the first entry has no value");
        assert_eq!(get(&s.variables(), "A").as_deref(), Some("arg"));
        s.set_env("A", "5");
        assert_eq!(s.env(), ["A=5", "A=second"]);
        assert_eq!(get(&s.variables(), "A").as_deref(), Some("5"));
        s.config["config"].as_object_mut().unwrap().remove("Env");
        s.set_env("Z", "1");
        assert_eq!(s.env(), ["Z=1"]);
        assert_eq!(get(&s.variables(), "A").as_deref(), Some("arg"), "the ARG again");
    }

    #[test]
    fn env_keeps_a_variables_place_as_docker_does() {
        let mut s = ImageState::scratch(&"linux/amd64".parse().unwrap());
        s.set_env("A", "1");
        s.set_env("B", "2");
        s.set_env("PATH", "/bin");
        s.set_env("A", "3");
        assert_eq!(s.env(), ["PATH=/bin", "A=3", "B=2"]);
    }

    #[test]
    fn metadata_steps_cost_the_same_however_many_came_before() {
        // What the build does for `ENV`, `LABEL`, `ARG` and `ONBUILD` lines, 20,000 of each:
        // copying the variables or the lists a step would take hours here.
        let mut s = ImageState::scratch(&"linux/amd64".parse().unwrap());
        let n = 20_000;
        for i in 0..n {
            let vars = s.variables();
            let previous = vars.get(&format!("V{}", i.max(1) - 1)).cloned().unwrap_or_default();
            // `ENV Vi=${V(i-1)}.`, kept to four characters.
            let value: String = format!("{previous}.").chars().take(4).collect();
            s.set_env(&format!("V{i}"), &value);
            s.set_label(&format!("l{i}"), "x");
            s.args.insert(format!("A{i}"), i.to_string());
            s.add_onbuild(&format!("RUN echo {i}"));
            let created = s.last_created().unwrap_or_else(|| "t".into());
            s.add_history(&created, &format!("ENV V{i}"), true);
            drop(vars);
        }
        let vars = s.variables();
        assert_eq!(vars.len(), 1 + 2 * n);
        assert_eq!(vars.get("V19999").map(String::as_str), Some("...."));
        assert_eq!(s.env().len(), n + 1);
        assert_eq!(s.run_field("OnBuild").and_then(Value::as_array).map(Vec::len), Some(n));
        assert_eq!(s.config["history"].as_array().map(Vec::len), Some(n));
    }

    #[test]
    fn the_config_text_a_build_writes_is_bounded() {
        let mut s = ImageState::scratch(&"linux/amd64".parse().unwrap());
        let mib = "x".repeat(1 << 20);
        for i in 0..31 {
            // What `ENV Bi=$A` does with a 1 MiB A: the value, and the history entry.
            s.set_env(&format!("B{i}"), &mib);
            s.add_history("t", &format!("ENV B{i}={mib}"), true);
            s.check_size().unwrap();
        }
        s.set_label("L", &mib);
        s.set("User", json!([mib]));
        assert_eq!(
            s.check_size().unwrap_err().to_string(),
            "the instructions wrote more than 64 MiB into the image config"
        );
        // A copy (a later stage built on this one) keeps the count.
        assert!(s.clone().check_size().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration_ns("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration_ns("1h2m").unwrap(), 3_720_000_000_000);
        assert!(parse_duration_ns("5 sec").is_err());
    }
}
