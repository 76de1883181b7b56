//! BuildKit's build checks, under BuildKit's names, each written from the rule's description:
//! what the rule catches and the fix, in our words.

use std::collections::{HashMap, HashSet};

use super::words::{names_a_secret, plain_variables};
use super::{CheckStage, Input, Instr, Warning, strings};
use crate::instruction::{Command, Instruction};
use crate::node::Args;

/// ARGs every build defines, usable without declaring them.
const PREDEFINED_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `FROM image AS name`: the `AS` keyword and the name as written.
fn written_alias<'a>(from: &Instr<'a>) -> Option<(&'a str, &'a str)> {
    match strings(from.node) {
        [_, as_kw, name] => Some((as_kw.as_str(), name.as_str())),
        _ => None,
    }
}

fn is_upper(s: &str) -> bool {
    s == s.to_uppercase()
}

fn is_lower(s: &str) -> bool {
    s == s.to_lowercase()
}

pub(super) fn stage_name_casing(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        if let Some((_, name)) = written_alias(&stage.from)
            && !is_lower(name)
        {
            out.push(Warning::buildkit(
                "StageNameCasing",
                stage.from.line(),
                format!("Stage name '{name}' should be lowercase"),
                format!(
                    "write it as '{}' (stage names are matched without case anyway)",
                    name.to_lowercase()
                ),
            ));
        }
    }
}

pub(super) fn from_as_casing(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        let from = stage.from.node.original.as_str();
        if let Some((as_kw, _)) = written_alias(&stage.from)
            && ((is_upper(from) && !is_upper(as_kw)) || (is_lower(from) && !is_lower(as_kw)))
        {
            out.push(Warning::buildkit(
                "FromAsCasing",
                stage.from.line(),
                format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                format!("write '{}' in the case of '{from}'", if is_upper(from) { "AS" } else { "as" }),
            ));
        }
    }
}

pub(super) fn consistent_instruction_casing(input: &Input, out: &mut Vec<Warning>) {
    let upper = input.all.iter().filter(|i| is_upper(&i.node.original)).count();
    let lower = input.all.iter().filter(|i| is_lower(&i.node.original)).count();
    let (majority, name) = if upper >= lower { (true, "uppercase") } else { (false, "lowercase") };
    for i in &input.all {
        let written = i.node.original.as_str();
        let fits = if majority { is_upper(written) } else { is_lower(written) };
        if !fits {
            let wanted = if majority { written.to_uppercase() } else { written.to_lowercase() };
            out.push(Warning::buildkit(
                "ConsistentInstructionCasing",
                i.line(),
                format!("Command '{written}' should match the case of the command majority ({name})"),
                format!("write '{wanted}'"),
            ));
        }
    }
}

pub(super) fn duplicate_stage_name(input: &Input, out: &mut Vec<Warning>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for stage in &input.stages {
        let Some(name) = stage.name.as_deref() else { continue };
        if let Some(first) = seen.get(name) {
            out.push(Warning::buildkit(
                "DuplicateStageName",
                stage.from.line(),
                format!(
                    "Duplicate stage name '{name}', stage names should be unique (first on line {first})"
                ),
                "give each stage its own name",
            ));
        } else {
            seen.insert(name, stage.from.line());
        }
    }
}

pub(super) fn reserved_stage_name(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        if let Some(name @ ("scratch" | "context")) = stage.name.as_deref() {
            out.push(Warning::buildkit(
                "ReservedStageName",
                stage.from.line(),
                format!("Stage name should not use the same name as reserved stage '{name}'"),
                "choose another stage name",
            ));
        }
    }
}

pub(super) fn json_args_recommended(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        // With a SHELL of its own, the stage chose what runs its commands.
        let mut shell_set = false;
        for i in &stage.body {
            let (keyword, command) = match &i.step.instruction {
                Instruction::Shell(_) => {
                    shell_set = true;
                    continue;
                }
                Instruction::Cmd(Command::Shell(c)) => ("CMD", c),
                Instruction::Entrypoint(Command::Shell(c)) => ("ENTRYPOINT", c),
                _ => continue,
            };
            if shell_set {
                continue;
            }
            // Shell syntax in it needs a shell: then a script ending in `exec` keeps signals.
            let fix = if command.contains(['&', '|', ';', '<', '>', '$', '*', '`', '(', '"', '\'']) {
                format!(
                    "use the exec form ({keyword} [\"program\", \"arg\"]); what needs a shell can go \
                     in a script that ends in `exec program`"
                )
            } else {
                let words: Vec<String> = command.split_whitespace().map(|w| format!("\"{w}\"")).collect();
                format!("use the exec form: {keyword} [{}]", words.join(", "))
            };
            out.push(Warning::buildkit(
                "JSONArgsRecommended",
                i.line(),
                format!(
                    "JSON arguments recommended for {keyword} to prevent unintended behavior related to OS \
                     signals (the shell form runs it under /bin/sh -c, which may not pass on SIGTERM)"
                ),
                fix,
            ));
        }
    }
}

pub(super) fn maintainer_deprecated(input: &Input, out: &mut Vec<Warning>) {
    for i in &input.all {
        if let Instruction::Maintainer(who) = &i.step.instruction {
            out.push(Warning::buildkit(
                "MaintainerDeprecated",
                i.line(),
                "The MAINTAINER instruction is deprecated, use a label instead to define an image author"
                    .to_string(),
                format!("LABEL org.opencontainers.image.authors={who:?}"),
            ));
        }
    }
}

pub(super) fn undefined_arg_in_from(input: &Input, out: &mut Vec<Warning>) {
    let globals = input.global_arg_names();
    for stage in &input.stages {
        let Instruction::From { image, platform, .. } = &stage.from.step.instruction else { continue };
        let mut reported = HashSet::new();
        for word in std::iter::once(image).chain(platform) {
            for name in plain_variables(word, input.escape) {
                if globals.contains(&name.as_str()) || PREDEFINED_ARGS.contains(&name.as_str()) {
                    continue;
                }
                if reported.insert(name.clone()) {
                    out.push(Warning::buildkit(
                        "UndefinedArgInFrom",
                        stage.from.line(),
                        format!("FROM argument '{name}' is not declared"),
                        format!("declare `ARG {name}` before the first FROM"),
                    ));
                }
            }
        }
    }
}

pub(super) fn workdir_relative_path(input: &Input, out: &mut Vec<Warning>) {
    // Whether each stage (at its end) has set an absolute WORKDIR; a stage built on another
    // starts with that stage's.
    let mut absolute_at_end: Vec<bool> = Vec::new();
    for stage in &input.stages {
        let mut absolute = stage.parent.is_some_and(|p| absolute_at_end[p]);
        for i in &stage.body {
            let Instruction::Workdir(dir) = &i.step.instruction else { continue };
            if dir.starts_with('/') || dir.starts_with('$') {
                absolute = true;
            } else if !absolute {
                out.push(Warning::buildkit(
                    "WorkdirRelativePath",
                    i.line(),
                    format!("Relative workdir '{dir}' can have unexpected results if the base image changes"),
                    format!("use an absolute path (WORKDIR /{dir}), or set an absolute WORKDIR first"),
                ));
            }
        }
        absolute_at_end.push(absolute);
    }
}

/// The words of an instruction that variables are expanded in (RUN, CMD, ENTRYPOINT and
/// HEALTHCHECK are left to the shell), and the names it defines after it.
fn expanded_words<'a>(i: &Instr<'a>) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut used: Vec<&str> = Vec::new();
    let mut defined: Vec<&str> = Vec::new();
    match &i.step.instruction {
        Instruction::Env(pairs) | Instruction::Label(pairs) => {
            for (k, v) in pairs {
                used.push(v);
                if matches!(i.step.instruction, Instruction::Env(_)) {
                    defined.push(k);
                } else {
                    used.push(k);
                }
            }
        }
        Instruction::Arg(args) => {
            for (name, default) in args {
                used.extend(default.as_deref());
                defined.push(name);
            }
        }
        Instruction::Copy(c) | Instruction::Add(c) => {
            used.extend(c.sources.iter().map(String::as_str));
            used.push(&c.dest);
            used.extend(c.chown.as_deref());
            used.extend(c.chmod.as_deref());
        }
        Instruction::Expose(ports) | Instruction::Volume(ports) => {
            used.extend(ports.iter().map(String::as_str))
        }
        Instruction::Workdir(w) | Instruction::User(w) | Instruction::StopSignal(w) => used.push(w),
        _ => {}
    }
    (used, defined)
}

pub(super) fn undefined_var(input: &Input, out: &mut Vec<Warning>) {
    let globals = input.global_arg_names();
    // ENV names each stage ends with: what a stage built on it starts with. A stage whose
    // base is an image (not scratch, not a stage) has that image's ENV, which only a pull
    // would tell; there only the mistake that needs no base image is reported: a global ARG
    // used in a stage that did not declare it again.
    let mut env_at_end: Vec<(HashSet<String>, bool)> = Vec::new();
    // Each stage starts from a copy of its parent's ENV names: a long chain of stages each
    // adding some would copy quadratically many, so past this many the rule stops.
    let mut copies_left: usize = 1 << 20;
    for stage in &input.stages {
        let (mut defined, known) = match stage.parent {
            Some(p) => {
                let Some(left) = copies_left.checked_sub(env_at_end[p].0.len()) else { return };
                copies_left = left;
                env_at_end[p].clone()
            }
            None => (HashSet::new(), stage.image() == "scratch"),
        };
        let mut stage_env = defined.clone();
        for i in &stage.body {
            let (used, defines) = expanded_words(i);
            let mut reported = HashSet::new();
            for name in used.iter().flat_map(|w| plain_variables(w, input.escape)) {
                if defined.contains(&name) || PREDEFINED_ARGS.contains(&name.as_str()) || name == "PATH" {
                    continue;
                }
                let global = globals.contains(&name.as_str());
                if !(known || global) || !reported.insert(name.clone()) {
                    continue;
                }
                let fix = if global {
                    format!(
                        "a global ARG is not seen inside a stage: add `ARG {name}` after this stage's FROM"
                    )
                } else {
                    format!(
                        "define it first (`ARG {name}` or `ENV {name}=…`), or give a default: ${{{name}:-…}}"
                    )
                };
                out.push(Warning::buildkit(
                    "UndefinedVar",
                    i.line(),
                    format!("Usage of undefined variable '${name}'"),
                    fix,
                ));
            }
            for name in defines {
                defined.insert(name.to_string());
                if matches!(i.step.instruction, Instruction::Env(_)) {
                    stage_env.insert(name.to_string());
                }
            }
        }
        env_at_end.push((stage_env, known));
    }
}

pub(super) fn multiple_instructions_disallowed(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        for keyword in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let lines: Vec<usize> = stage
                .body
                .iter()
                .filter(|i| i.node.keyword.eq_ignore_ascii_case(keyword))
                .map(Instr::line)
                .collect();
            let Some((last, overridden)) = lines.split_last() else { continue };
            for &line in overridden {
                out.push(Warning::buildkit(
                    "MultipleInstructionsDisallowed",
                    line,
                    format!(
                        "Multiple {keyword} instructions should not be used in the same stage because only \
                         the last one will be used (line {last})"
                    ),
                    format!("keep one {keyword} per stage"),
                ));
            }
        }
    }
}

pub(super) fn legacy_key_value_format(input: &Input, out: &mut Vec<Warning>) {
    for i in &input.all {
        let Args::KeyValues(pairs) = &i.node.args else { continue };
        if let Some(p) = pairs.iter().find(|p| p.legacy) {
            let keyword = i.node.keyword.to_uppercase();
            out.push(Warning::buildkit(
                "LegacyKeyValueFormat",
                i.line(),
                format!(
                    "\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"
                ),
                match p.value.contains(char::is_whitespace) && !p.value.starts_with(['"', '\'']) {
                    true => format!("{keyword} {}=\"{}\"", p.key, p.value),
                    false => format!("{keyword} {}={}", p.key, p.value),
                },
            ));
        }
    }
}

pub(super) fn from_platform_flag_const_disallowed(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        let Instruction::From { platform: Some(platform), .. } = &stage.from.step.instruction else {
            continue;
        };
        if platform.contains('$') {
            continue;
        }
        // A stage named for its platform (`AS build-amd64`) is one of several on purpose.
        let arch = platform.split('/').nth(1).unwrap_or(platform);
        if stage.name.as_deref().is_some_and(|n| n.contains(arch)) {
            continue;
        }
        out.push(Warning::buildkit(
            "FromPlatformFlagConstDisallowed",
            stage.from.line(),
            format!("FROM --platform flag should not use constant value \"{platform}\""),
            "leave it out (the build's --platform decides), or use $BUILDPLATFORM / $TARGETPLATFORM",
        ));
    }
}

pub(super) fn secrets_used_in_arg_or_env(input: &Input, out: &mut Vec<Warning>) {
    let in_stages = input.stages.iter().flat_map(|s: &CheckStage| s.body.iter());
    for i in input.globals.iter().chain(in_stages) {
        let (keyword, names): (&str, Vec<&str>) = match &i.step.instruction {
            Instruction::Arg(args) => ("ARG", args.iter().map(|(n, _)| n.as_str()).collect()),
            Instruction::Env(pairs) => ("ENV", pairs.iter().map(|(n, _)| n.as_str()).collect()),
            _ => continue,
        };
        for name in names.into_iter().filter(|n| names_a_secret(n)) {
            out.push(Warning::buildkit(
                "SecretsUsedInArgOrEnv",
                i.line(),
                format!(
                    "Do not use ARG or ENV instructions for sensitive data ({keyword} \"{name}\"): \
                     their values stay in the image's config and history"
                ),
                format!(
                    "pass it with --secret id={0},src=FILE and read it in RUN --mount=type=secret,id={0}",
                    name.to_lowercase()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::lines_of;

    #[test]
    fn stage_name_casing() {
        assert_eq!(lines_of("StageNameCasing", "FROM a:1 AS Build\nFROM a:1 AS build2\n"), [1]);
        assert_eq!(lines_of("StageNameCasing", "FROM a:1 AS build\n"), Vec::<usize>::new());
    }

    #[test]
    fn from_as_casing() {
        assert_eq!(
            lines_of("FromAsCasing", "FROM a:1 as b\nfrom a:1 AS c\nFROM a:1 AS d\nfrom a:1 as e\n"),
            [1, 2]
        );
    }

    #[test]
    fn consistent_instruction_casing() {
        let text = "FROM a:1\nrun true\nRUN true\nCopy x /x\n";
        assert_eq!(lines_of("ConsistentInstructionCasing", text), [2, 4]);
        let lower = "from a:1\nrun true\nRUN true\n";
        assert_eq!(lines_of("ConsistentInstructionCasing", lower), [3]);
        assert_eq!(lines_of("ConsistentInstructionCasing", "FROM a:1\nRUN true\n"), Vec::<usize>::new());
    }

    #[test]
    fn duplicate_and_reserved_stage_names() {
        let text = "FROM a:1 AS x\nFROM a:1 AS X\nFROM a:1 AS scratch\nFROM a:1 AS context\n";
        assert_eq!(lines_of("DuplicateStageName", text), [2]);
        assert_eq!(lines_of("ReservedStageName", text), [3, 4]);
        assert_eq!(lines_of("DuplicateStageName", "FROM a:1 AS x\nFROM x AS y\n"), Vec::<usize>::new());
    }

    #[test]
    fn json_args_recommended() {
        let text = "FROM a:1\nCMD run me\nENTRYPOINT [\"x\"]\nFROM a:1\nENTRYPOINT x y\n\
                    FROM a:1\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n";
        assert_eq!(lines_of("JSONArgsRecommended", text), [2, 5]);
        let fix = |t: &str| super::super::check(t).unwrap().warnings[0].fix.clone();
        assert_eq!(fix("FROM a:1\nCMD run me\n"), "use the exec form: CMD [\"run\", \"me\"]");
        assert!(fix("FROM a:1\nCMD a && b\n").contains("script that ends in `exec program`"));
    }

    #[test]
    fn maintainer_deprecated() {
        assert_eq!(lines_of("MaintainerDeprecated", "FROM a:1\nMAINTAINER me <m@e>\n"), [2]);
        assert_eq!(lines_of("MaintainerDeprecated", "FROM a:1\nLABEL a=b\n"), Vec::<usize>::new());
    }

    #[test]
    fn undefined_arg_in_from() {
        let text = "ARG V=1\nFROM a:$V\nFROM b:${W}\nFROM --platform=$BUILDPLATFORM c:${X:-1}\n";
        assert_eq!(lines_of("UndefinedArgInFrom", text), [3]);
    }

    #[test]
    fn workdir_relative_path() {
        let text = "FROM a:1 AS one\nWORKDIR app\nWORKDIR /srv\nWORKDIR data\nFROM one\nWORKDIR x\n\
                    FROM a:1\nWORKDIR $HOME\nWORKDIR y\n";
        assert_eq!(lines_of("WorkdirRelativePath", text), [2]);
    }

    #[test]
    fn undefined_var() {
        let text = "ARG G=1\n\
                    FROM scratch AS base\n\
                    ENV A=1\n\
                    COPY $A $B /x/\n\
                    LABEL l=${G} m=${MAYBE:-none}\n\
                    ARG G\n\
                    USER $G\n\
                    FROM base\n\
                    WORKDIR /$A/$G\n\
                    FROM debian:12\n\
                    ENV P=$PATH:$JAVA_HOME\n\
                    COPY $G /y\n\
                    RUN echo $UNDEFINED_IN_RUN_IS_THE_SHELLS\n";
        // Line 4: $B. Line 5: the global G not declared in the stage. Line 9: G is an ARG of
        // `base`, and ARGs do not pass to stages built on it (ENV A does). On debian,
        // JAVA_HOME may be the image's: only the global G is certain.
        assert_eq!(lines_of("UndefinedVar", text), [4, 5, 9, 12]);
    }

    #[test]
    fn multiple_instructions_disallowed() {
        let text = "FROM a:1\nCMD [\"a\"]\nCMD [\"b\"]\nENTRYPOINT [\"c\"]\nHEALTHCHECK NONE\n\
                    HEALTHCHECK CMD [\"x\"]\nFROM a:1\nCMD [\"c\"]\n";
        assert_eq!(lines_of("MultipleInstructionsDisallowed", text), [2, 5]);
    }

    #[test]
    fn legacy_key_value_format() {
        let text = "FROM a:1\nENV A 1\nENV B=2\nLABEL c d e\nLABEL f=g\n";
        assert_eq!(lines_of("LegacyKeyValueFormat", text), [2, 4]);
    }

    #[test]
    fn from_platform_flag_const_disallowed() {
        let text = "FROM --platform=linux/amd64 a:1\nFROM --platform=$BUILDPLATFORM a:1\n\
                    FROM --platform=linux/arm64 a:1 AS build-arm64\nFROM a:1\n";
        assert_eq!(lines_of("FromPlatformFlagConstDisallowed", text), [1]);
    }

    #[test]
    fn secrets_used_in_arg_or_env() {
        let text = "ARG GITHUB_TOKEN\nFROM a:1\nENV DB_PASSWORD=x HOME=/root\nARG PUBLIC_KEY VERSION\n";
        assert_eq!(lines_of("SecretsUsedInArgOrEnv", text), [1, 3]);
    }
}
