//! Registry authentication: where credentials come from (docker and containers config files,
//! credential helpers, a flag), and the `WWW-Authenticate` challenge flows (Basic, and the
//! Bearer token flow with tokens reused per scope).
//!
//! A [`Session`] belongs to one registry origin and only ever sees challenges from it (a 401
//! from a redirect target or another host never reaches it, see [`super::origin`]), so its
//! credentials go only to that registry and to the token realm it announced, and its tokens
//! only back to that registry.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// What a user logs in with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// `USER:PASSWORD`, as the `--creds` flag takes it.
    pub fn parse_user_password(s: &str) -> Result<Credentials> {
        let Some((username, password)) = s.split_once(':') else {
            bail!("credentials must be USER:PASSWORD");
        };
        Ok(Credentials::Basic { username: username.into(), password: password.into() })
    }

    fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => {
                Some(format!("Basic {}", STANDARD.encode(format!("{username}:{password}"))))
            }
            Credentials::IdentityToken(_) => None,
        }
    }
}

/// The keys a registry may be stored under in `auths` (docker writes Docker Hub as a URL).
pub(crate) fn config_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
            .map(String::from)
            .to_vec();
    }
    vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
}

/// The config files to search, most specific first: `REGISTRY_AUTH_FILE`, containers'
/// `auth.json`, then docker's `config.json`.
fn config_files() -> Vec<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut files = Vec::new();
    if let Some(f) = var("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(h) = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config"))) {
        files.push(h.join("containers/auth.json"));
    }
    match var("DOCKER_CONFIG") {
        Some(d) => files.push(d.join("config.json")),
        None => {
            if let Some(h) = var("HOME") {
                files.push(h.join(".docker/config.json"));
            }
        }
    }
    files
}

/// Finds stored credentials for a registry (`docker.io`, `localhost:5000`); `None` means
/// anonymous. `auth_file` (`--authfile`, as skopeo's) is the only file read when given.
pub fn lookup(registry: &str, auth_file: Option<&std::path::Path>) -> Result<Option<Credentials>> {
    let files = match auth_file {
        Some(f) => vec![f.to_path_buf()],
        None => config_files(),
    };
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && auth_file.is_none() => continue,
            Err(e) => return Err(anyhow!("{}: {e}", file.display())),
        };
        let config: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: malformed JSON", file.display()))?;
        if let Some(found) = from_config(&config, registry).with_context(|| file.display().to_string())? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn from_config(config: &Value, registry: &str) -> Result<Option<Credentials>> {
    let keys = config_keys(registry);
    if let Some(helpers) = config.get("credHelpers").and_then(Value::as_object) {
        for key in &keys {
            if let Some(helper) = helpers.get(key).and_then(Value::as_str) {
                return helper_get(helper, &keys[0]);
            }
        }
    }
    if let Some(auths) = config.get("auths").and_then(Value::as_object) {
        for key in &keys {
            let Some(entry) = auths.get(key) else { continue };
            if let Some(token) = entry.get("identitytoken").and_then(Value::as_str).filter(|t| !t.is_empty())
            {
                return Ok(Some(Credentials::IdentityToken(token.to_string())));
            }
            if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                let decoded = STANDARD.decode(auth.trim()).context("auths: \"auth\" is not base64")?;
                let text = String::from_utf8(decoded).context("auths: \"auth\" is not UTF-8")?;
                return Credentials::parse_user_password(&text).map(Some);
            }
            let field = |k: &str| entry.get(k).and_then(Value::as_str).map(String::from);
            if let (Some(username), Some(password)) = (field("username"), field("password")) {
                return Ok(Some(Credentials::Basic { username, password }));
            }
        }
    }
    if let Some(store) = config.get("credsStore").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return helper_get(store, &keys[0]);
    }
    Ok(None)
}

/// Runs `docker-credential-<name> get` with the server on stdin.
fn helper_get(name: &str, server: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running credential helper {program}"))?;
    child.stdin.take().expect("piped").write_all(server.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        bail!("credential helper {program} failed: {msg}");
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("{program}: malformed output"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (username, secret) = (text("Username"), text("Secret"));
    if username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(secret)));
    }
    Ok(Some(Credentials::Basic { username, password: secret }))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.insert(key, value);
    }
    out
}

/// The authentication state of one registry: its challenge, the user's credentials and the
/// tokens obtained so far, by scope.
#[derive(Debug, Default)]
pub struct Session {
    credentials: Option<Credentials>,
    /// For naming the limit a token request hit.
    timeouts: super::Timeouts,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, String>>,
    /// Held while a token is fetched ahead of a request, so threads share one fetch.
    fetching: Mutex<()>,
}

impl Session {
    pub fn new(credentials: Option<Credentials>, timeouts: super::Timeouts) -> Session {
        Session { credentials, timeouts, ..Session::default() }
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    pub fn set_challenge(&self, challenge: Option<Challenge>) {
        *self.challenge.lock().expect("lock") = challenge;
    }

    /// The `Authorization` header to send for a scope, if we have one.
    pub fn header(&self, scope: &str) -> Option<String> {
        match &*self.challenge.lock().expect("lock") {
            None => None,
            Some(Challenge::Basic) => self.credentials.as_ref().and_then(Credentials::basic_header),
            Some(Challenge::Bearer { .. }) => {
                self.tokens.lock().expect("lock").get(scope).map(|t| format!("Bearer {t}"))
            }
        }
    }

    /// Fetches a token for a scope before its first request when the registry is known to
    /// want one (saves the 401 round trip).
    pub fn prepare(&self, agent: &ureq::Agent, scope: &str) -> Result<()> {
        let challenge = self.challenge.lock().expect("lock").clone();
        let Some(Challenge::Bearer { realm, service, .. }) = challenge else { return Ok(()) };
        if scope.is_empty() {
            return Ok(());
        }
        let _one_at_a_time = self.fetching.lock().expect("lock");
        if self.tokens.lock().expect("lock").contains_key(scope) {
            return Ok(());
        }
        let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        let token = self.fetch_token(agent, &realm, service.as_deref(), &scopes)?;
        self.tokens.lock().expect("lock").insert(scope.to_string(), token);
        Ok(())
    }

    /// Handles a 401: records the challenge and fetches a fresh token for the scope. Returns
    /// whether retrying the request can help.
    pub fn on_unauthorized(
        &self,
        agent: &ureq::Agent,
        www_authenticate: Option<&str>,
        scope: &str,
    ) -> Result<bool> {
        let Some(challenge) = www_authenticate.and_then(parse_challenge) else {
            return Ok(false);
        };
        self.set_challenge(Some(challenge.clone()));
        match challenge {
            Challenge::Basic => Ok(self.credentials.as_ref().and_then(Credentials::basic_header).is_some()),
            Challenge::Bearer { realm, service, scope: asked } => {
                let mut scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
                if let Some(a) = asked.as_deref() {
                    for s in a.split(' ') {
                        if !scopes.contains(&s) {
                            scopes.push(s);
                        }
                    }
                }
                let token = self.fetch_token(agent, &realm, service.as_deref(), &scopes)?;
                self.tokens.lock().expect("lock").insert(scope.to_string(), token);
                Ok(true)
            }
        }
    }

    /// Asks the realm for a token, with the user's credentials. The realm may be on another
    /// host or use plain http while the registry uses https (docker allows both): the registry
    /// the user trusts named it. Redirects from the realm are not followed (the agent follows
    /// none), so the credentials go nowhere else. The request runs under the agent's limits:
    /// `--timeout` as a whole, and the answer is read up to 1 MiB.
    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        realm: &str,
        service: Option<&str>,
        scopes: &[&str],
    ) -> Result<String> {
        let describe = |e: ureq::Error| match e {
            ureq::Error::Timeout(which) => self.timeouts.describe(which),
            ureq::Error::BodyExceedsLimit(_) => "its answer is larger than 1 MiB".to_string(),
            e => e.to_string(),
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let response = match &self.credentials {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
                form.push(("client_id", "img"));
                form.extend(query.iter().copied());
                agent.post(realm).send_form(form)
            }
            creds => {
                let mut req = agent.get(realm);
                for (k, v) in &query {
                    req = req.query(*k, *v);
                }
                if let Some(h) = creds.as_ref().and_then(Credentials::basic_header) {
                    req = req.header("Authorization", h);
                }
                req.call()
            }
        };
        let mut response = response.map_err(|e| anyhow!("token service {realm}: {}", describe(e)))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            bail!("authentication failed at {realm}: wrong username or password? ({status})");
        }
        if status != 200 {
            bail!("token service {realm} answered {status}");
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| anyhow!("token service {realm}: {}", describe(e)))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("token service {realm}: malformed answer: {e}"))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .ok_or_else(|| anyhow!("token service {realm}: no token in the answer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None, "a realm is required");
    }

    #[test]
    fn reads_docker_config_forms() {
        let auth = STANDARD.encode("me:s3cret:with:colons");
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": auth},
            "quay.io": {"identitytoken": "refresh"},
            "localhost:5000": {"username": "u", "password": "p"},
        }});
        assert_eq!(
            from_config(&config, "docker.io").unwrap(),
            Some(Credentials::Basic { username: "me".into(), password: "s3cret:with:colons".into() })
        );
        assert_eq!(
            from_config(&config, "quay.io").unwrap(),
            Some(Credentials::IdentityToken("refresh".into()))
        );
        assert_eq!(
            from_config(&config, "localhost:5000").unwrap(),
            Some(Credentials::Basic { username: "u".into(), password: "p".into() })
        );
        assert_eq!(from_config(&config, "ghcr.io").unwrap(), None);
        let bad = json!({"credHelpers": {"ghcr.io": "img-test-no-such-helper"}});
        assert!(from_config(&bad, "ghcr.io").is_err());
    }
}
