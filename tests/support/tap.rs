//! Reads the TAP (Test Anything Protocol) output of runtime-tools' `runtimetest`:
//! `ok N - name`, `not ok N - name`, `ok N # SKIP reason`, the plan `1..N`, and YAML blocks
//! (indented, ignored).

use std::collections::BTreeSet;

/// The checks of one TAP stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tap {
    /// Passed checks, by count (their names are not needed to compare runtimes).
    pub ok: usize,
    /// Skipped checks (`ok N # SKIP ...`).
    pub skipped: usize,
    /// The names of the failed checks, without their numbers.
    pub not_ok: BTreeSet<String>,
    /// The `TAP version` header was printed: the checker started.
    pub started: bool,
    /// The plan line `1..N` was printed: the checker ran to its end (it prints the plan last,
    /// and a panic ends it before).
    pub finished: bool,
}

impl Tap {
    pub fn parse(text: &str) -> Tap {
        let mut tap = Tap::default();
        for line in text.lines() {
            if line.starts_with("TAP version") {
                tap.started = true;
            } else if let Some(rest) = line.strip_prefix("not ok ") {
                // `not ok N # TODO ...` is a check the checker itself does not make yet.
                if directive(rest).starts_with("# TODO") {
                    tap.skipped += 1;
                } else {
                    tap.not_ok.insert(name(rest));
                }
            } else if let Some(rest) = line.strip_prefix("ok ") {
                if directive(rest).starts_with("# SKIP") {
                    tap.skipped += 1;
                } else {
                    tap.ok += 1;
                }
            } else if line.starts_with("1..") && line[3..].chars().all(|c| c.is_ascii_digit()) {
                tap.finished = true;
            }
        }
        tap
    }

    /// Records a check made outside the TAP stream (that the runtime started, a hook ran).
    pub fn check(&mut self, passed: bool, name: &str) {
        if passed {
            self.ok += 1;
        } else {
            self.not_ok.insert(name.to_string());
        }
    }
}

/// `12 # SKIP reason` → `# SKIP reason`.
fn directive(rest: &str) -> &str {
    rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start()
}

/// `12 - mounts[0] (/proc) found` → `mounts[0] (/proc) found`.
fn name(rest: &str) -> String {
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim();
    rest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_checks_skips_and_the_plan() {
        let tap = Tap::parse(
            "TAP version 13\nok 1 - root filesystem is readonly\n  ---\n  {\n    \"ok 9 - x\": 1\n  }\n  ...\n\
             not ok 2 - mounts[0] (/proc) found\nok 3 # SKIP linux.seccomp not set\n\
             not ok 5 # TODO we need an (r)bind spec to test against\n\
             not ok 4 - has expected user ID\n1..4\n",
        );
        assert_eq!(tap.ok, 1);
        assert_eq!(tap.skipped, 2);
        assert_eq!(
            tap.not_ok.iter().map(String::as_str).collect::<Vec<_>>(),
            ["has expected user ID", "mounts[0] (/proc) found"]
        );
        assert!(tap.started && tap.finished);
    }

    #[test]
    fn a_panic_leaves_no_plan() {
        let tap = Tap::parse("TAP version 13\nok 1 - a\nnot ok 2 - b\npanic: runtime error\n");
        assert!(tap.started && !tap.finished);
        assert!(!Tap::parse("").started);
    }
}
