//! Build checks: what a Dockerfile does that works but is likely a mistake or a bad habit,
//! found without building anything. BuildKit's own checks (`docker build --check`) under
//! BuildKit's rule names, in [`buildkit`], and the best practices Docker teaches that BuildKit
//! does not check (one layer per RUN, package caches left in layers, compilers in the final
//! image, ADD for COPY, unpinned base images), in [`practices`].
//!
//! Each rule is a function over the parsed file ([`Input`]) that adds its [`Warning`]s. The
//! checks read text only: nothing is pulled, so what a base image brings (its ENV, its
//! WORKDIR) is unknown and a rule that would need it stays quiet rather than guess.

mod buildkit;
mod practices;
mod words;

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Value, json};

use crate::error::ParseError;
use crate::instruction::{Instruction, Step, from_nodes};
use crate::node::{Args, Node};
use crate::parser::parse;

/// One finding: where, which rule, what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// The rule's name: BuildKit's where BuildKit has the rule (`JSONArgsRecommended`).
    pub rule: &'static str,
    /// The (1-based) line of the instruction at fault.
    pub line: usize,
    pub message: String,
    pub fix: String,
    /// Where the rule is explained.
    pub url: Option<String>,
}

impl Warning {
    /// A warning of one of BuildKit's rules, with the link to its page.
    fn buildkit(rule: &'static str, line: usize, message: String, fix: impl Into<String>) -> Warning {
        let url = format!("https://docs.docker.com/reference/build-checks/{}/", kebab(rule));
        Warning { rule, line, message, fix: fix.into(), url: Some(url) }
    }

    /// A warning of one of Docker's best practices that BuildKit does not check.
    fn practice(rule: &'static str, line: usize, message: String, fix: impl Into<String>) -> Warning {
        let url = "https://docs.docker.com/build/building/best-practices/".to_string();
        Warning { rule, line, message, fix: fix.into(), url: Some(url) }
    }

    /// The JSON Lines record: `{"rule","line","message","fix","url"}`.
    pub fn record(&self) -> Value {
        let mut record = json!({
            "rule": self.rule,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        });
        if let Some(url) = &self.url {
            record["url"] = Value::from(url.as_str());
        }
        record
    }
}

/// `RuleName: message (fix: …)`; the caller puts `Dockerfile:12: ` before it.
impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.rule, self.message, self.fix)
    }
}

/// `JSONArgsRecommended` → `json-args-recommended`, as BuildKit's pages are named.
fn kebab(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let after_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
        let ends_acronym = i > 0
            && chars[i - 1].is_ascii_uppercase()
            && chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
        if c.is_ascii_uppercase() && (after_lower || ends_acronym) {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// An instruction as written (its node: keyword case, flags, legacy forms) and as typed.
#[derive(Clone, Copy)]
struct Instr<'a> {
    node: &'a Node,
    step: &'a Step,
}

impl Instr<'_> {
    fn line(&self) -> usize {
        self.step.line
    }
}

/// A stage: its FROM and what follows.
struct CheckStage<'a> {
    /// The `AS` name, lower-cased.
    name: Option<String>,
    from: Instr<'a>,
    body: Vec<Instr<'a>>,
    /// The earlier stage its FROM names, if it names one.
    parent: Option<usize>,
}

impl CheckStage<'_> {
    /// The FROM image as written.
    fn image(&self) -> &str {
        match &self.from.step.instruction {
            Instruction::From { image, .. } => image,
            _ => unreachable!("stages start with FROM"),
        }
    }
}

/// The file as the rules see it. Unlike [`crate::stages::Stages`], splitting does not stop at
/// a duplicate stage name: that is something to report.
struct Input<'a> {
    escape: char,
    /// Every instruction, in order.
    all: Vec<Instr<'a>>,
    /// ARGs before the first FROM.
    globals: Vec<Instr<'a>>,
    stages: Vec<CheckStage<'a>>,
}

impl<'a> Input<'a> {
    fn new(nodes: &'a [Node], steps: &'a [Step], escape: char) -> Input<'a> {
        let all: Vec<Instr> = nodes.iter().zip(steps).map(|(node, step)| Instr { node, step }).collect();
        let mut globals = Vec::new();
        let mut stages: Vec<CheckStage> = Vec::new();
        // The first stage of each name (a map: thirty thousand stages are a hostile file's).
        let mut names: HashMap<String, usize> = HashMap::new();
        for &i in &all {
            if let Instruction::From { image, alias, .. } = &i.step.instruction {
                let parent = names.get(&image.to_lowercase()).copied();
                if let Some(name) = alias {
                    names.entry(name.clone()).or_insert(stages.len());
                }
                stages.push(CheckStage { name: alias.clone(), from: i, body: Vec::new(), parent });
            } else if let Some(stage) = stages.last_mut() {
                stage.body.push(i);
            } else {
                globals.push(i);
            }
        }
        Input { escape, all, globals, stages }
    }

    /// The names global ARGs declare.
    fn global_arg_names(&self) -> HashSet<&str> {
        self.globals
            .iter()
            .filter_map(|i| match &i.step.instruction {
                Instruction::Arg(args) => Some(args.iter().map(|(n, _)| n.as_str())),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// The words of a node's arguments (empty for ENV, LABEL and ONBUILD).
fn strings(node: &Node) -> &[String] {
    match &node.args {
        Args::Strings { values, .. } => values,
        _ => &[],
    }
}

/// A rule: looks at the file, adds what it finds.
type Rule = fn(&Input, &mut Vec<Warning>);

const RULES: &[Rule] = &[
    buildkit::stage_name_casing,
    buildkit::from_as_casing,
    buildkit::consistent_instruction_casing,
    buildkit::duplicate_stage_name,
    buildkit::reserved_stage_name,
    buildkit::json_args_recommended,
    buildkit::maintainer_deprecated,
    buildkit::undefined_arg_in_from,
    buildkit::workdir_relative_path,
    buildkit::undefined_var,
    buildkit::multiple_instructions_disallowed,
    buildkit::legacy_key_value_format,
    buildkit::from_platform_flag_const_disallowed,
    buildkit::secrets_used_in_arg_or_env,
    practices::consecutive_run_instructions,
    practices::package_cache_not_cleaned,
    practices::toolchain_in_final_stage,
    practices::copy_recommended_over_add,
    practices::base_image_not_pinned,
];

/// What the checks found.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// By line.
    pub warnings: Vec<Warning>,
    /// `# check=error=true`: the Dockerfile asks for warnings to fail the build.
    pub error: bool,
}

/// The `# check=` directive, as BuildKit reads it: `skip=Rule,Rule` (or `skip=all`) and
/// `error=true`, separated by `;`.
struct Directive {
    skip: Vec<String>,
    error: bool,
}

impl Directive {
    fn parse(text: Option<&str>) -> Directive {
        let mut directive = Directive { skip: Vec::new(), error: false };
        for option in text.unwrap_or_default().split(';') {
            match option.trim().split_once('=') {
                Some(("skip", rules)) => {
                    directive.skip.extend(rules.split(',').map(|r| r.trim().to_ascii_lowercase()));
                }
                Some(("error", value)) => directive.error = value.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        directive
    }

    fn skips(&self, rule: &str) -> bool {
        self.skip.iter().any(|s| s == "all" || s.eq_ignore_ascii_case(rule))
    }
}

/// Checks a Dockerfile's text. A Dockerfile that does not parse is the parser's error, as a
/// build would give it.
pub fn check(text: &str) -> Result<Report, ParseError> {
    let dockerfile = parse(text)?;
    let steps = from_nodes(&dockerfile.nodes)?;
    let input = Input::new(&dockerfile.nodes, &steps, dockerfile.escape);
    let directive = Directive::parse(dockerfile.check.as_deref());
    let mut warnings = Vec::new();
    for rule in RULES {
        rule(&input, &mut warnings);
    }
    warnings.retain(|w| !directive.skips(w.rule));
    warnings.sort_by_key(|w| w.line);
    Ok(Report { warnings, error: directive.error })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules that fire, with their lines.
    pub(super) fn found(text: &str) -> Vec<(&'static str, usize)> {
        check(text).unwrap().warnings.into_iter().map(|w| (w.rule, w.line)).collect()
    }

    /// The lines one rule fires on.
    pub(super) fn lines_of(rule: &str, text: &str) -> Vec<usize> {
        check(text).unwrap().warnings.into_iter().filter(|w| w.rule == rule).map(|w| w.line).collect()
    }

    #[test]
    fn a_clean_multi_stage_file_has_no_warnings() {
        let text = "# syntax=docker/dockerfile:1\n\
                    ARG VERSION=1.2\n\
                    FROM golang:1.22@sha256:0123 AS build\n\
                    ARG VERSION\n\
                    WORKDIR /src\n\
                    COPY go.mod go.sum ./\n\
                    RUN --mount=type=cache,target=/root/.cache go mod download\n\
                    COPY . .\n\
                    RUN go build -ldflags \"-X main.v=${VERSION}\" -o /out/app\n\
                    FROM debian:12-slim\n\
                    RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \\\n\
                        && rm -rf /var/lib/apt/lists/*\n\
                    COPY --from=build /out/app /usr/local/bin/app\n\
                    ENV APP_HOME=/srv\n\
                    WORKDIR $APP_HOME\n\
                    USER 65534\n\
                    ENTRYPOINT [\"/usr/local/bin/app\"]\n\
                    CMD [\"serve\"]\n";
        assert_eq!(found(text), []);
    }

    #[test]
    fn warnings_render_for_people_and_as_records() {
        let w = &check("FROM alpine:3\nCMD echo hi\n").unwrap().warnings[0];
        assert_eq!((w.rule, w.line), ("JSONArgsRecommended", 2));
        assert!(w.to_string().starts_with("JSONArgsRecommended: JSON arguments recommended for CMD"), "{w}");
        assert!(w.to_string().contains("(fix: "), "{w}");
        let r = w.record();
        assert_eq!(r["rule"], "JSONArgsRecommended");
        assert_eq!(r["line"], 2);
        assert_eq!(r["url"], "https://docs.docker.com/reference/build-checks/json-args-recommended/");
        assert!(r["fix"].as_str().unwrap().contains("[\""));
    }

    #[test]
    fn rule_pages_are_kebab_case() {
        assert_eq!(kebab("FromPlatformFlagConstDisallowed"), "from-platform-flag-const-disallowed");
        assert_eq!(kebab("SecretsUsedInArgOrEnv"), "secrets-used-in-arg-or-env");
        assert_eq!(kebab("JSONArgsRecommended"), "json-args-recommended");
    }

    #[test]
    fn hostile_sizes_take_linear_time() {
        // Thirty thousand stages, each built on the one before and adding an ENV: looking
        // stages up in a list, or copying every ENV name into every stage, is quadratic.
        let n = 30_000;
        let text: String = std::iter::once("FROM scratch AS s0\n".to_string())
            .chain((1..n).map(|i| format!("FROM s{} AS s{i}\nENV V{i}=$V{}\n", i - 1, i - 1)))
            .collect();
        let start = std::time::Instant::now();
        let warnings = check(&text).unwrap().warnings;
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
        // V1 is the only undefined one (line 3): the rest come from the stage before.
        let undefined: Vec<usize> =
            warnings.iter().filter(|w| w.rule == "UndefinedVar").map(|w| w.line).collect();
        assert_eq!(undefined.first(), Some(&3));
        let start = std::time::Instant::now();
        let runs = format!("FROM a:1\n{}", "RUN apt-get install -y gcc\n".repeat(20_000));
        assert_eq!(
            check(&runs).unwrap().warnings.iter().filter(|w| w.rule == "ConsecutiveRunInstructions").count(),
            1
        );
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    }

    #[test]
    fn the_check_directive_skips_rules_and_makes_warnings_errors() {
        let text = "FROM ubuntu\nMAINTAINER me\nCMD run\n";
        assert_eq!(found(text).len(), 3);
        let skip = format!("# check=skip=JSONArgsRecommended,basEImagenotpinned\n{text}");
        assert_eq!(found(&skip), [("MaintainerDeprecated", 3)]);
        assert!(!check(&skip).unwrap().error);
        let all = format!("# check=skip=all;error=true\n{text}");
        assert_eq!(check(&all).unwrap(), Report { warnings: vec![], error: true });
        assert!(check(&format!("# check=error=true\n{text}")).unwrap().error);
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error() {
        assert!(check("FROM a\nFROBNICATE x\n").is_err());
        assert!(check("").is_err());
    }
}
