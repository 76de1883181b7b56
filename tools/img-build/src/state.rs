//! The image a stage is building: its config (kept as JSON so a base image's fields survive),
//! its layers and history, and the build arguments in scope. Metadata instructions change the
//! config here; instructions that make layers add them through [`ImageState::add_layer`].

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use img::digest::Digest;
use img::document::Descriptor;
use img::platform::Platform;
use serde_json::{Map, Value, json};

use crate::instruction::{Command, Health};

/// docker's PATH for images that set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A layer of the image: the blob's descriptor and the digest of its uncompressed tar.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRef {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

#[derive(Clone, Debug)]
pub struct ImageState {
    /// The whole image config document.
    pub config: Map<String, Value>,
    pub layers: Vec<LayerRef>,
    /// Build arguments declared in this stage, with their values (not kept in the image).
    pub args: BTreeMap<String, String>,
    /// Whether this build set CMD (then ENTRYPOINT keeps it).
    cmd_set: bool,
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
        ImageState { config, layers: Vec::new(), args: BTreeMap::new(), cmd_set: false }
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
        Ok(ImageState { config, layers, args: BTreeMap::new(), cmd_set: false })
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

    /// An image environment variable's value.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env()
            .iter()
            .find_map(|e| e.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    /// Every variable an instruction can expand (ENV wins over ARG, as in Docker): a snapshot
    /// taken before the instruction changes anything.
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut vars = self.args.clone();
        for entry in self.env() {
            if let Some((k, v)) = entry.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        vars
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
        self.run_config().insert("Env".into(), json!(env));
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
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
        let mut list = string_list(self.run_field("OnBuild"));
        list.push(trigger.to_string());
        self.set("OnBuild", json!(list));
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

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `/a/./b/../c/` → `/a/c`.
pub fn clean_absolute(path: &str) -> String {
    format!("/{}", crate::context::clean_relative(path))
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
    fn durations() {
        assert_eq!(parse_duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration_ns("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration_ns("1h2m").unwrap(), 3_720_000_000_000);
        assert!(parse_duration_ns("5 sec").is_err());
    }
}
