//! Docker's best practices for Dockerfiles that BuildKit's checks leave out: fewer layers,
//! no package caches in layers, no compilers in the final image, COPY unless ADD's extras are
//! wanted, pinned base images. The names are ours; each says what is wrong.

use super::words::{Invocation, invocations};
use super::{CheckStage, Input, Instr, Warning};
use crate::instruction::{Command, Instruction, RunSpec};
use crate::mount::MountKind;

/// How many RUN instructions in a row are worth joining.
const CONSECUTIVE_RUNS: usize = 3;

pub(super) fn consecutive_run_instructions(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        let mut group: Vec<usize> = Vec::new();
        let runs =
            stage.body.iter().map(|i| matches!(i.step.instruction, Instruction::Run(_)).then(|| i.line()));
        for run in runs.chain([None]) {
            match run {
                Some(line) => group.push(line),
                None => {
                    if group.len() >= CONSECUTIVE_RUNS {
                        out.push(Warning::practice(
                            "ConsecutiveRunInstructions",
                            group[0],
                            format!(
                                "{} RUN instructions in a row (lines {}-{}) make {} layers",
                                group.len(),
                                group[0],
                                group[group.len() - 1],
                                group.len()
                            ),
                            "join them into one RUN with `&&` (or a heredoc: RUN <<EOF) so they make one layer",
                        ));
                    }
                    group.clear();
                }
            }
        }
    }
}

/// What a RUN runs: its command and heredocs, as text. JSON form is joined with spaces.
fn script(run: &RunSpec) -> String {
    let mut text = match &run.command {
        Command::Shell(line) => line.clone(),
        Command::Exec(words) => words.join(" "),
    };
    for heredoc in &run.heredocs {
        text.push('\n');
        text.push_str(&heredoc.content);
    }
    text
}

/// The RUN steps of a stage, with their scripts.
fn runs<'a>(stage: &'a CheckStage) -> impl Iterator<Item = (&'a Instr<'a>, &'a RunSpec, String)> {
    stage.body.iter().filter_map(|i| match &i.step.instruction {
        Instruction::Run(run) => Some((i, run, script(run))),
        _ => None,
    })
}

/// A package manager's cache left behind: which manager, and the fix.
fn uncleaned_cache(inv: &Invocation, script: &str) -> Option<(&'static str, &'static str)> {
    let sub = inv.subcommand()?;
    match inv.program.as_str() {
        "apt-get" | "apt" if matches!(sub, "update" | "install" | "upgrade" | "dist-upgrade") => (!script
            .contains("/var/lib/apt/lists"))
        .then_some(("apt-get", "end the same RUN with `&& rm -rf /var/lib/apt/lists/*`")),
        "apk" if sub == "add" => (!inv.has_flag("--no-cache") && !script.contains("/var/cache/apk"))
            .then_some(("apk add", "use `apk add --no-cache`")),
        "yum" | "dnf" | "microdnf" if matches!(sub, "install" | "update" | "upgrade") => {
            let cleaned = script.contains("clean all") || script.contains("/var/cache/");
            (!cleaned).then_some((
                "yum/dnf install",
                "end the same RUN with `&& yum clean all` (or `dnf clean all`)",
            ))
        }
        program if program.starts_with("pip") && sub == "install" => {
            (!inv.has_flag("--no-cache-dir")).then_some(("pip install", "use `pip install --no-cache-dir`"))
        }
        _ => None,
    }
}

pub(super) fn package_cache_not_cleaned(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        let mut pip_no_cache = false;
        for i in &stage.body {
            if let Instruction::Env(pairs) = &i.step.instruction {
                pip_no_cache |= pairs.iter().any(|(k, _)| k == "PIP_NO_CACHE_DIR");
            }
        }
        for (i, run, script) in runs(stage) {
            // A cache mount keeps the cache out of the layer: that is its point.
            if run.mounts.iter().any(|m| m.kind == MountKind::Cache) {
                continue;
            }
            let mut reported: Vec<&str> = Vec::new();
            for inv in invocations(&script) {
                let Some((manager, fix)) = uncleaned_cache(&inv, &script) else { continue };
                if reported.contains(&manager) || (manager == "pip install" && pip_no_cache) {
                    continue;
                }
                reported.push(manager);
                out.push(Warning::practice(
                    "PackageCacheNotCleaned",
                    i.line(),
                    format!(
                        "{manager} leaves its package cache in this RUN's layer, making the image bigger"
                    ),
                    format!("{fix} (or use RUN --mount=type=cache for the cache directory)"),
                ));
            }
        }
    }
}

/// Packages that are compilers or build tools, by name as the distributions call them.
fn is_toolchain(package: &str) -> bool {
    // `gcc=4:12.2`, `gcc-12`, `golang-1.21-go`, `make~4`: the name before a version.
    let name = package.split(['=', '~', '>', '<']).next().unwrap_or(package);
    const EXACT: &[&str] = &[
        "gcc",
        "g++",
        "gcc-c++",
        "cc",
        "clang",
        "llvm",
        "build-essential",
        "build-base",
        "make",
        "cmake",
        "autoconf",
        "automake",
        "libtool",
        "golang",
        "go",
        "rustc",
        "cargo",
        "rust",
        "gfortran",
        "openjdk-jdk",
        "maven",
        "gradle",
    ];
    const PREFIXES: &[&str] = &["gcc-", "g++-", "clang-", "golang-", "rustc-", "llvm-", "openjdk-"];
    EXACT.contains(&name)
        || PREFIXES
            .iter()
            .any(|p| name.starts_with(p) && !name.ends_with("-jre") && !name.ends_with("-jre-headless"))
}

/// Whether an invocation installs packages, and which.
fn installed(inv: &Invocation) -> Vec<&str> {
    let installs = matches!(
        (inv.program.as_str(), inv.subcommand()),
        ("apt-get" | "apt" | "yum" | "dnf" | "microdnf" | "zypper", Some("install")) | ("apk", Some("add"))
    );
    if installs { inv.operands().collect() } else { Vec::new() }
}

pub(super) fn toolchain_in_final_stage(input: &Input, out: &mut Vec<Warning>) {
    // With several stages, the final one may well be the runtime stage it should be.
    let [stage] = input.stages.as_slice() else { return };
    for (i, _, script) in runs(stage) {
        let mut tools: Vec<String> = Vec::new();
        for inv in invocations(&script) {
            for package in installed(&inv).into_iter().filter(|p| is_toolchain(p)) {
                if !tools.iter().any(|t| t == package) {
                    tools.push(package.to_string());
                }
            }
        }
        if tools.is_empty() {
            continue;
        }
        out.push(Warning::practice(
            "ToolchainInFinalStage",
            i.line(),
            format!(
                "build tools ({}) are installed in the only stage, so they ship in the final image",
                tools.join(", ")
            ),
            "build in a first stage (FROM … AS build) and COPY --from=build only what it makes into a \
             final stage without the toolchain",
        ));
    }
}

/// Whether ADD does something COPY does not with this source: a URL, a git repository, or a
/// tar archive to extract. A variable could be any of these.
fn needs_add(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    const REMOTE: &[&str] = &["http://", "https://", "git://", "git@", "ssh://"];
    const ARCHIVES: &[&str] = &[
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar.zst", ".tzst",
        ".gz", ".bz2", ".xz", ".zst", ".lz4",
    ];
    source.contains('$')
        || REMOTE.iter().any(|r| lower.starts_with(r))
        || lower.ends_with(".git")
        || ARCHIVES.iter().any(|a| lower.ends_with(a))
}

pub(super) fn copy_recommended_over_add(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        for i in &stage.body {
            let Instruction::Add(add) = &i.step.instruction else { continue };
            if !add.heredocs.is_empty() || add.checksum.is_some() || add.keep_git_dir {
                continue;
            }
            let local: Vec<&str> = add.sources.iter().map(String::as_str).filter(|s| !needs_add(s)).collect();
            if local.is_empty() {
                continue;
            }
            out.push(Warning::practice(
                "CopyRecommendedOverAdd",
                i.line(),
                format!(
                    "ADD of local files ({}): ADD also fetches URLs and extracts archives, which is not \
                     wanted here",
                    local.join(", ")
                ),
                format!("use COPY: COPY {} {}", add.sources.join(" "), add.dest),
            ));
        }
    }
}

pub(super) fn base_image_not_pinned(input: &Input, out: &mut Vec<Warning>) {
    for stage in &input.stages {
        let image = stage.image();
        // A stage, scratch, or a variable (its value is the build's) say nothing of tags.
        if stage.parent.is_some() || image == "scratch" || image.contains('$') || image.contains('@') {
            continue;
        }
        let last = image.rsplit('/').next().unwrap_or(image);
        let message = match last.split_once(':') {
            None => format!("base image '{image}' has no tag: it is whatever :latest is when the build runs"),
            Some((_, "latest")) => {
                format!("base image '{image}' uses :latest, which changes under the build")
            }
            Some(_) => continue,
        };
        out.push(Warning::practice(
            "BaseImageNotPinned",
            stage.from.line(),
            message,
            "name a version tag (FROM debian:12-slim), or pin a digest (FROM debian:12-slim@sha256:…)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::lines_of;

    #[test]
    fn consecutive_run_instructions() {
        let text = "FROM a:1\nRUN a\nRUN b\nRUN c\nCOPY x /x\nRUN d\nRUN e\nFROM a:1\nRUN f\nRUN g\n";
        assert_eq!(lines_of("ConsecutiveRunInstructions", text), [2]);
    }

    #[test]
    fn package_cache_not_cleaned() {
        let text = "FROM a:1\n\
                    RUN apt-get update && apt-get install -y curl\n\
                    RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n\
                    RUN apk add curl\n\
                    RUN apk add --no-cache curl\n\
                    COPY x /x\n\
                    RUN dnf install -y git\n\
                    RUN yum install -y git && yum clean all\n\
                    RUN pip install requests\n\
                    COPY y /y\n\
                    RUN pip3 install --no-cache-dir requests\n\
                    RUN --mount=type=cache,target=/var/cache/apt apt-get update && apt-get install -y x\n\
                    RUN echo apt-get is not run here\n";
        assert_eq!(lines_of("PackageCacheNotCleaned", text), [2, 4, 7, 9]);
        let env = "FROM a:1\nENV PIP_NO_CACHE_DIR=1\nRUN python3 -m pip install x\n";
        assert_eq!(lines_of("PackageCacheNotCleaned", env), Vec::<usize>::new());
        let heredoc = "FROM a:1\nRUN <<EOF\napt-get update\napt-get install -y x\nEOF\n";
        assert_eq!(lines_of("PackageCacheNotCleaned", heredoc), [2]);
    }

    #[test]
    fn toolchain_in_final_stage() {
        let single = "FROM debian:12\nRUN apt-get install -y --no-install-recommends gcc-12 make curl \\\n\
                      && rm -rf /var/lib/apt/lists/*\nRUN apk add --no-cache ca-certificates\n";
        assert_eq!(lines_of("ToolchainInFinalStage", single), [2]);
        let multi =
            "FROM debian:12 AS build\nRUN apt-get install -y gcc\nFROM debian:12\nCOPY --from=build /a /a\n";
        assert_eq!(lines_of("ToolchainInFinalStage", multi), Vec::<usize>::new());
        let runtime = "FROM debian:12\nRUN apt-get install -y openjdk-17-jre-headless\n";
        assert_eq!(lines_of("ToolchainInFinalStage", runtime), Vec::<usize>::new());
    }

    #[test]
    fn copy_recommended_over_add() {
        let text = "FROM a:1\nADD . /app\nADD app.tar.gz /opt/\nADD https://x/y /y\nADD $SRC /z\n\
                    ADD --checksum=sha256:00 https://x/z /z\nADD git@github.com:a/b.git /b\nADD a.txt b.tgz /c/\n";
        assert_eq!(lines_of("CopyRecommendedOverAdd", text), [2, 8]);
    }

    #[test]
    fn base_image_not_pinned() {
        let text = "FROM ubuntu AS a\nFROM alpine:latest\nFROM localhost:5000/app\nFROM localhost:5000/app:1\n\
                    FROM a\nFROM scratch\nFROM debian@sha256:00\nFROM $BASE\nFROM docker.io/library/debian:12\n";
        assert_eq!(lines_of("BaseImageNotPinned", text), [1, 2, 3]);
    }
}
