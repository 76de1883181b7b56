//! The container's environment from docker's flags: `-e KEY=VALUE`, `-e KEY` (the caller's
//! value) and `--env-file`.

use anyhow::{Context, Result};

/// Sets `KEY=VALUE` in an environment list, replacing an earlier value of KEY.
pub fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(entry.to_string());
}

/// docker's `-e KEY`: the caller's value of KEY, or nothing if it has none.
pub fn expand_env_arg(arg: &str) -> Option<String> {
    if arg.contains('=') {
        return Some(arg.to_string());
    }
    std::env::var(arg).ok().map(|v| format!("{arg}={v}"))
}

/// Reads an `--env-file`: `KEY=VALUE` lines, `#` comments and blank lines skipped.
pub fn read_env_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading env file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(expand_env_arg)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_value_replaces_an_earlier_one() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        set_env(&mut env, "A=3");
        assert_eq!(env, ["B=2", "A=3"]);
    }
}
