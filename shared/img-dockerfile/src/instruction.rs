//! Typed instructions from parser nodes: each keyword's arguments and `--flags` checked, with
//! the line it came from. Variables are not expanded here: that needs the build's state (ARG
//! and ENV in scope at that step), so the strings are kept as written.

use anyhow::{Context, Result, bail};

use crate::error::ParseError;
use crate::mount::{Mount, parse_mount};
use crate::node::{Args, Heredoc, Node};

/// The command of RUN, CMD, ENTRYPOINT and HEALTHCHECK.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run through the stage's SHELL (`/bin/sh -c` by default).
    Shell(String),
    /// Run as is (JSON form).
    Exec(Vec<String>),
}

/// RUN: its command, `--mount`s, `--network` and the heredocs that follow the line.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub command: Command,
    pub mounts: Vec<Mount>,
    /// `None` when RUN says nothing: the build's setting.
    pub network: Option<Network>,
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=`: the build's choice (`default`), none, or the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
    Host,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct CopySpec {
    /// Sources then destination, as written (the last one is the destination).
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Health {
    /// None for `HEALTHCHECK NONE`.
    pub test: Option<Command>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Instruction {
    From {
        image: String,
        alias: Option<String>,
        platform: Option<String>,
    },
    Run(RunSpec),
    Cmd(Command),
    Entrypoint(Command),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// Names with optional defaults, as written.
    Arg(Vec<(String, Option<String>)>),
    Expose(Vec<String>),
    Copy(CopySpec),
    Add(CopySpec),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Health),
    /// The trigger instruction's source text, run by builds that use this image as a base.
    Onbuild(String),
    Maintainer(String),
}

/// An instruction with the lines it spans.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub instruction: Instruction,
    pub line: usize,
    /// The instruction as written, for history and messages (`RUN echo hi`).
    pub text: String,
}

/// Parsed `--name=value` flags; each lookup consumes, and leftovers are errors.
struct Flags {
    keyword: String,
    items: Vec<(String, Option<String>)>,
}

impl Flags {
    fn new(keyword: &str, flags: &[String]) -> Flags {
        let items = flags
            .iter()
            .map(|f| {
                let f = f.trim_start_matches("--");
                match f.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (f.to_string(), None),
                }
            })
            .collect();
        Flags { keyword: keyword.to_uppercase(), items }
    }

    fn take_all(&mut self, name: &str) -> Vec<Option<String>> {
        let (hit, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.items).into_iter().partition(|(k, _)| k == name);
        self.items = rest;
        hit.into_iter().map(|(_, v)| v).collect()
    }

    fn value(&mut self, name: &str) -> Result<Option<String>> {
        match self.take_all(name).pop() {
            None => Ok(None),
            Some(Some(v)) => Ok(Some(v)),
            Some(None) => bail!("{}: --{name} needs a value", self.keyword),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<bool> {
        match self.take_all(name).pop() {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => bail!("{}: --{name} expects true or false, got {v:?}", self.keyword),
            },
        }
    }

    fn finish(self) -> Result<()> {
        match self.items.first() {
            Some((k, _)) => bail!("{}: unknown flag --{k}", self.keyword),
            None => Ok(()),
        }
    }
}

/// Converts every node; the first bad one is a [`ParseError`] naming its line.
pub fn from_nodes(nodes: &[Node]) -> Result<Vec<Step>, ParseError> {
    nodes.iter().map(|n| step(n).map_err(|e| ParseError::at(n.start_line, format!("{e:#}")))).collect()
}

fn step(node: &Node) -> Result<Step> {
    Ok(Step { instruction: instruction(node)?, line: node.start_line, text: source_text(node) })
}

fn strings(node: &Node) -> (&[String], bool) {
    match &node.args {
        Args::Strings { values, json } => (values, *json),
        _ => (&[], false),
    }
}

fn command(node: &Node) -> Result<Command> {
    let (values, json) = strings(node);
    if json {
        Ok(Command::Exec(values.to_vec()))
    } else if let [line] = values {
        Ok(Command::Shell(line.clone()))
    } else {
        bail!("{} requires a command", node.original.to_uppercase())
    }
}

fn instruction(node: &Node) -> Result<Instruction> {
    let kw = node.keyword.as_str();
    let upper = kw.to_uppercase();
    let mut flags = Flags::new(kw, &node.flags);
    let (values, json) = strings(node);
    let at_least = |n: usize| -> Result<()> {
        if values.len() < n {
            bail!("{upper} requires at least {n} argument{}", if n == 1 { "" } else { "s" });
        }
        Ok(())
    };
    let result = match kw {
        "from" => {
            let platform = flags.value("platform")?;
            let (image, alias) = match values {
                [image] => (image.clone(), None),
                [image, as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => {
                    (image.clone(), Some(alias.to_lowercase()))
                }
                _ => bail!("FROM requires either one or three arguments (FROM image [AS name])"),
            };
            Instruction::From { image, alias, platform }
        }
        "run" => {
            let mounts = flags
                .take_all("mount")
                .into_iter()
                .map(|m| parse_mount(&m.unwrap_or_default()))
                .collect::<Result<_>>()?;
            let network = match flags.value("network")?.as_deref() {
                None => None,
                Some("default") => Some(Network::Default),
                Some("none") => Some(Network::None),
                Some("host") => Some(Network::Host),
                Some(n) => bail!("RUN: --network must be default, none or host, not {n:?}"),
            };
            // `RUN --security=...` and `--device` are BuildKit extensions we do not offer.
            Instruction::Run(RunSpec {
                command: command(node)?,
                mounts,
                network,
                heredocs: node.heredocs.clone(),
            })
        }
        "cmd" => Instruction::Cmd(command(node)?),
        "entrypoint" => Instruction::Entrypoint(command(node)?),
        "shell" => {
            if !json || values.is_empty() {
                bail!("SHELL requires the arguments to be in JSON form");
            }
            Instruction::Shell(values.to_vec())
        }
        "env" | "label" => {
            let Args::KeyValues(pairs) = &node.args else { unreachable!("the parser gives key values") };
            let pairs: Vec<(String, String)> =
                pairs.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
            if pairs.iter().any(|(k, _)| k.is_empty()) {
                bail!("{upper} names cannot be empty");
            }
            if kw == "env" { Instruction::Env(pairs) } else { Instruction::Label(pairs) }
        }
        "arg" => {
            at_least(1)?;
            let args = values
                .iter()
                .map(|a| match a.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (a.clone(), None),
                })
                .collect();
            Instruction::Arg(args)
        }
        "expose" => {
            at_least(1)?;
            Instruction::Expose(values.to_vec())
        }
        "copy" | "add" => {
            let spec = CopySpec {
                from: if kw == "copy" { flags.value("from")? } else { None },
                chown: flags.value("chown")?,
                chmod: flags.value("chmod")?,
                link: flags.boolean("link")?,
                parents: flags.boolean("parents")?,
                exclude: flags.take_all("exclude").into_iter().flatten().collect(),
                checksum: if kw == "add" { flags.value("checksum")? } else { None },
                keep_git_dir: if kw == "add" { flags.boolean("keep-git-dir")? } else { false },
                heredocs: node.heredocs.clone(),
                ..CopySpec::default()
            };
            if values.len() < 2 {
                bail!("{upper} requires at least two arguments, but only {} provided", values.len());
            }
            let (dest, sources) = values.split_last().expect("two or more");
            let spec = CopySpec { sources: sources.to_vec(), dest: dest.clone(), ..spec };
            if kw == "copy" { Instruction::Copy(spec) } else { Instruction::Add(spec) }
        }
        "workdir" => Instruction::Workdir(single(&upper, values)?),
        "user" => Instruction::User(single(&upper, values)?),
        "stopsignal" => Instruction::StopSignal(single(&upper, values)?),
        "maintainer" => Instruction::Maintainer(single(&upper, values)?),
        "volume" => {
            let volumes: Vec<String> = values.iter().filter(|v| !v.trim().is_empty()).cloned().collect();
            if volumes.is_empty() {
                bail!("VOLUME specified can not be an empty string");
            }
            Instruction::Volume(volumes)
        }
        "healthcheck" => Instruction::Healthcheck(health(node, &mut flags)?),
        "onbuild" => {
            let Args::Nested(inner) = &node.args else { unreachable!("the parser nests ONBUILD") };
            match inner.keyword.as_str() {
                "onbuild" | "from" | "maintainer" => {
                    bail!("{} isn't allowed as an ONBUILD trigger", inner.keyword.to_uppercase())
                }
                _ => {}
            }
            instruction(inner)?; // a bad trigger is an error now, not in some later build
            Instruction::Onbuild(source_text(inner))
        }
        _ => bail!("unknown instruction: {}", node.original),
    };
    flags.finish()?;
    Ok(result)
}

fn single(keyword: &str, values: &[String]) -> Result<String> {
    match values {
        [v] if !v.is_empty() => Ok(v.clone()),
        _ => bail!("{keyword} requires exactly one argument"),
    }
}

fn health(node: &Node, flags: &mut Flags) -> Result<Health> {
    let (values, json) = strings(node);
    let Some((kind, rest)) = values.split_first() else {
        bail!("HEALTHCHECK requires an argument");
    };
    let test = match kind.to_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() {
                bail!("HEALTHCHECK NONE takes no arguments");
            }
            None
        }
        "CMD" => match (rest, json) {
            ([], _) => bail!("HEALTHCHECK CMD requires a command"),
            (_, true) => Some(Command::Exec(rest.to_vec())),
            ([line], false) => Some(Command::Shell(line.clone())),
            _ => unreachable!("shell form is one string"),
        },
        other => bail!("unknown HEALTHCHECK type {other:?}: use CMD or NONE"),
    };
    let retries = flags
        .value("retries")?
        .map(|r| r.parse::<u32>().with_context(|| format!("HEALTHCHECK: invalid --retries {r:?}")))
        .transpose()?;
    Ok(Health {
        test,
        interval: flags.value("interval")?,
        timeout: flags.value("timeout")?,
        start_period: flags.value("start-period")?,
        start_interval: flags.value("start-interval")?,
        retries,
    })
}

/// The instruction as a line of text (continuations joined), as history records it.
fn source_text(node: &Node) -> String {
    let mut parts = vec![node.original.to_uppercase()];
    parts.extend(node.flags.iter().cloned());
    match &node.args {
        Args::Strings { values, json: true } => {
            parts.push(serde_json::to_string(values).expect("strings serialise"));
        }
        Args::Strings { values, json: false } => parts.extend(values.iter().cloned()),
        Args::KeyValues(pairs) => parts.extend(pairs.iter().map(|p| {
            let (k, v) = (&p.key, &p.value);
            if p.legacy { format!("{k} {v}") } else { format!("{k}={v}") }
        })),
        Args::Nested(inner) => parts.push(source_text(inner)),
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::MountKind;
    use crate::parser::parse;

    fn steps(text: &str) -> Result<Vec<Step>, ParseError> {
        from_nodes(&parse(text)?.nodes)
    }

    #[test]
    fn typed_instructions() {
        let s = steps(
            "FROM --platform=linux/amd64 alpine:3 AS Build\n\
             RUN --mount=type=cache,target=/root/.cache --network=none make\n\
             COPY --from=build --chown=1:2 --chmod=755 --link a b /dst/\n\
             ADD --checksum=sha256:abc https://x/y /y\n\
             CMD [\"a\", \"b\"]\n\
             HEALTHCHECK --retries=3 CMD curl -f http://localhost/\n\
             ONBUILD RUN echo hi\n\
             ARG A=1 B\n",
        )
        .unwrap();
        assert_eq!(
            s[0].instruction,
            Instruction::From {
                image: "alpine:3".into(),
                alias: Some("build".into()),
                platform: Some("linux/amd64".into())
            }
        );
        let Instruction::Run(RunSpec { mounts, network, command, .. }) = &s[1].instruction else { panic!() };
        assert_eq!((mounts[0].kind, mounts[0].target.as_deref()), (MountKind::Cache, Some("/root/.cache")));
        assert_eq!((*network, command), (Some(Network::None), &Command::Shell("make".into())));
        let Instruction::Copy(c) = &s[2].instruction else { panic!() };
        assert_eq!(
            (c.sources.clone(), c.dest.as_str(), c.from.as_deref(), c.link),
            (vec!["a".into(), "b".into()], "/dst/", Some("build"), true)
        );
        let Instruction::Add(a) = &s[3].instruction else { panic!() };
        assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
        assert_eq!(s[4].instruction, Instruction::Cmd(Command::Exec(vec!["a".into(), "b".into()])));
        let Instruction::Healthcheck(h) = &s[5].instruction else { panic!() };
        assert_eq!(
            (h.retries, h.test.clone()),
            (Some(3), Some(Command::Shell("curl -f http://localhost/".into())))
        );
        assert_eq!(s[6].instruction, Instruction::Onbuild("RUN echo hi".into()));
        assert_eq!(
            s[7].instruction,
            Instruction::Arg(vec![("A".into(), Some("1".into())), ("B".into(), None)])
        );
        assert_eq!(s[1].line, 2);
    }

    #[test]
    fn bad_instructions_are_errors_with_lines() {
        for (text, why) in [
            ("FROM a\nCOPY --nope a b\n", "unknown flag --nope"),
            ("FROM a\nCOPY a\n", "at least two arguments"),
            ("FROM a b\n", "one or three"),
            ("FROM a\nFROBNICATE x\n", "unknown instruction"),
            ("FROM a\nRUN --mount=type=nfs,target=/x true\n", "unknown type"),
            ("FROM a\nSHELL /bin/bash\n", "JSON form"),
            ("FROM a\nONBUILD FROM b\n", "isn't allowed"),
            ("FROM a\nRUN --network=bridge true\n", "--network"),
            ("FROM a\nHEALTHCHECK PING x\n", "HEALTHCHECK type"),
        ] {
            let err = format!("{:#}", steps(text).unwrap_err());
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.starts_with("line "), "{err}");
        }
    }
}
