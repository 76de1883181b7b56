//! The Dockerfile parser: text → a list of instruction nodes with their line spans, as
//! BuildKit's parser produces them (directives, escaped line continuations, comments inside
//! continuations, heredocs). What the arguments mean is decided later, per instruction.

use crate::args;
use crate::error::ParseError;
use crate::node::{Args, Heredoc, Node};

type Result<T> = std::result::Result<T, ParseError>;

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq)]
pub struct Dockerfile {
    pub nodes: Vec<Node>,
    pub escape: char,
    pub syntax: Option<String>,
    /// The `# check=` directive as written (which build checks to skip, whether they are errors).
    pub check: Option<String>,
    /// The span of the instruction list, first to last line (1-based).
    pub start_line: usize,
    pub end_line: usize,
}

/// Parser directives seen at the top of the file.
struct Directives {
    escape: char,
    syntax: Option<String>,
    check: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Directives {
    /// Looks at a line while directives are still possible. A line that is not a directive
    /// (an instruction, a plain comment, an empty line) ends them.
    fn consider(&mut self, line: &str, number: usize) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = parse_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "escape" | "syntax" | "check" => {}
            _ => {
                self.done = true; // an unknown directive is a comment, and ends directives
                return Ok(());
            }
        }
        if self.seen.contains(&key) {
            return Err(ParseError::at(number, format!("only one {key} parser directive can be used")));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                self.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError::at(
                            number,
                            format!("invalid escape token {value:?}: use ` or \\"),
                        ));
                    }
                }
            }
            "syntax" => self.syntax = Some(value),
            "check" => self.check = Some(value),
            _ => {}
        }
        Ok(())
    }
}

/// `# key = value` with a name of letters and digits.
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    if key.is_empty()
        || !key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        || !key.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_string(), value.to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing continuation (an unescaped escape char, then spaces or tabs).
/// Returns the line without it and whether the instruction continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let escapes = body.chars().rev().take_while(|&c| c == escape).count();
    if escapes % 2 == 1 { (&body[..body.len() - escape.len_utf8()], true) } else { (line, false) }
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    // A final newline does not make one more (empty) line.
    let count = if text.ends_with('\n') { lines.len() - 1 } else { lines.len() };
    let mut directives =
        Directives { escape: '\\', syntax: None, check: None, seen: Vec::new(), done: false };
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < count {
        let raw = lines[i];
        let number = i + 1;
        i += 1;
        directives.consider(raw, number)?;
        let first = raw.trim_start();
        if is_comment(first) {
            continue;
        }
        let escape = directives.escape;
        let (mut line, mut continues) = trim_continuation(first, escape);
        if !continues && line.trim().is_empty() {
            continue;
        }
        let mut joined = line.to_string();
        while continues && i < count {
            let next = lines[i];
            i += 1;
            if is_comment(next) || next.trim().is_empty() {
                continue; // comments and empty lines inside a continuation are skipped
            }
            (line, continues) = trim_continuation(next, escape);
            joined.push_str(line);
        }
        let end_line = i;
        let mut node = node_from_line(&joined, escape).map_err(|e| ParseError::at(number, e.message))?;
        node.start_line = number;
        node.end_line = end_line;
        if matches!(node.keyword.as_str(), "run" | "copy" | "add") {
            for (name, chomp, expand) in heredoc_markers(&node) {
                let mut content = String::new();
                let mut closed = false;
                while i < count {
                    let mut body = lines[i];
                    i += 1;
                    if chomp {
                        body = body.trim_start_matches('\t');
                    }
                    if body == name {
                        closed = true;
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                if !closed {
                    return Err(ParseError::at(number, format!("unterminated heredoc {name:?}")));
                }
                node.heredocs.push(Heredoc { name, content, expand, chomp });
            }
            node.end_line = i;
        }
        nodes.push(node);
    }
    let (Some(first), Some(last)) = (nodes.first(), nodes.last()) else {
        return Err(ParseError::whole("the Dockerfile has no instructions"));
    };
    let (start_line, end_line) = (first.start_line, last.end_line);
    let (escape, syntax, check) = (directives.escape, directives.syntax, directives.check);
    Ok(Dockerfile { nodes, escape, syntax, check, start_line, end_line })
}

/// Splits `KEYWORD [--flags] args` and parses args the way the keyword takes them. An error
/// has no line: the caller knows where the line was.
pub fn node_from_line(line: &str, escape: char) -> Result<Node> {
    let trimmed = line.trim_matches(args::is_space);
    let (keyword, rest) = match trimmed.find(args::is_space) {
        Some(at) => (&trimmed[..at], &trimmed[at..]),
        None => (trimmed, ""),
    };
    let (flags, rest) = args::extract_flags(rest);
    let rest = rest.trim_matches(args::is_space);
    let lower = keyword.to_ascii_lowercase();
    let parsed = match lower.as_str() {
        "env" => Args::KeyValues(args::name_values(rest, "ENV", escape)?),
        "label" => Args::KeyValues(args::name_values(rest, "LABEL", escape)?),
        "onbuild" => {
            if rest.is_empty() {
                return Err(ParseError::whole("ONBUILD requires an instruction"));
            }
            // Refused before it recurses: `ONBUILD ONBUILD ...` a thousand times is one line.
            if rest.split(args::is_space).next().is_some_and(|k| k.eq_ignore_ascii_case("onbuild")) {
                return Err(ParseError::whole("ONBUILD isn't allowed as an ONBUILD trigger"));
            }
            Args::Nested(Box::new(node_from_line(rest, escape)?))
        }
        "run" | "cmd" | "entrypoint" | "shell" => args::maybe_json(rest)?,
        "copy" | "add" | "volume" => args::maybe_json_list(rest)?,
        "healthcheck" => args::health(rest)?,
        "from" | "expose" => Args::Strings { values: args::whitespace_words(rest), json: false },
        "arg" => Args::Strings { values: args::quoted_words(rest, escape), json: false },
        _ => Args::Strings {
            values: if rest.is_empty() { vec![] } else { vec![rest.to_string()] },
            json: false,
        },
    };
    Ok(Node {
        keyword: lower,
        original: keyword.to_string(),
        flags,
        args: parsed,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
    })
}

/// The heredocs a RUN/COPY/ADD line opens, in order: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`.
fn heredoc_markers(node: &Node) -> Vec<(String, bool, bool)> {
    let Args::Strings { values, json: false } = &node.args else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for value in values {
        let mut rest = value.as_str();
        while let Some(at) = rest.find("<<") {
            rest = &rest[at + 2..];
            let chomp = rest.starts_with('-');
            if chomp {
                rest = &rest[1..];
            }
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
            if let Some(q) = quote {
                rest = &rest[1..];
                let Some(end) = rest.find(q) else { break };
                let name = &rest[..end];
                rest = &rest[end + 1..];
                if !name.is_empty() {
                    out.push((name.to_string(), chomp, false));
                }
            } else {
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let name = &rest[..end];
                rest = &rest[end..];
                if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()) {
                    out.push((name.to_string(), chomp, true));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::dump;

    fn dumps(text: &str) -> Vec<String> {
        parse(text).unwrap().nodes.iter().map(dump).collect()
    }

    #[test]
    fn heredocs() {
        let df = parse(
            "FROM scratch\nRUN <<EOF\necho $HOME\nEOF\nCOPY <<-\"A\" <<B /dest/\n\tx\n\tA\ny\nB\nRUN echo done\n",
        )
        .unwrap();
        let run = &df.nodes[1];
        assert_eq!(
            run.heredocs,
            [Heredoc { name: "EOF".into(), content: "echo $HOME\n".into(), expand: true, chomp: false }]
        );
        assert_eq!((run.start_line, run.end_line), (2, 4));
        let copy = &df.nodes[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert_eq!(
            copy.heredocs[0],
            Heredoc { name: "A".into(), content: "x\n".into(), expand: false, chomp: true }
        );
        assert_eq!(copy.heredocs[1].content, "y\n");
        assert_eq!(dump(&df.nodes[3]), "(run \"echo done\")");
        assert!(parse("FROM a\nRUN <<EOF\nno end\n").is_err());
    }

    #[test]
    fn directives_only_at_the_top() {
        let df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN x `\n  y\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(dumps("FROM a\n# escape=`\nRUN x \\\n y\n")[1], "(run \"x  y\")");
        assert!(parse("# escape=\\\n# escape=`\nFROM a\n").is_err());
        assert!(parse("# escape=x\nFROM a\n").is_err());
    }

    #[test]
    fn hostile_nesting_is_an_error_or_flat_not_a_stack_overflow() {
        let onbuilds = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(100_000));
        let err = parse(&onbuilds).unwrap_err().to_string();
        assert_eq!(err, "line 2: ONBUILD isn't allowed as an ONBUILD trigger");
        assert!(parse("FROM a\nONBUILD onbuild RUN x\n").is_err());
        assert_eq!(dumps("FROM a\nONBUILD RUN x\n")[1], "(onbuild (run \"x\"))");
        // A JSON array nested past serde_json's limit is shell form, as any text that is not
        // an array of strings.
        let brackets = format!("FROM a\nCMD {}\n", "[".repeat(100_000));
        assert_eq!(
            parse(&brackets).unwrap().nodes[1].args,
            Args::Strings { values: vec!["[".repeat(100_000)], json: false }
        );
        // 100,000 continuation lines and heredocs are loops, not recursion.
        let continued = format!("FROM a\nRUN {}x\n", "y \\\n".repeat(100_000));
        assert_eq!(parse(&continued).unwrap().nodes[1].end_line, 100_002);
        let heredocs: String = (0..10_000).map(|i| format!("RUN <<E{i}\nbody\nE{i}\n")).collect();
        assert_eq!(parse(&format!("FROM a\n{heredocs}")).unwrap().nodes.len(), 10_001);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("FROM a\n\nENV X\n").unwrap_err();
        assert_eq!(err.to_string(), "line 3: ENV must have two arguments");
        assert!(parse("").is_err() && parse("# only\n\n").is_err());
    }
}
