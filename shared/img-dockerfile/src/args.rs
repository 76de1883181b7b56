//! How each kind of instruction splits its arguments: JSON arrays, whitespace-separated words,
//! quoted words, `name=value` pairs, leading `--flags`. The parser calls in here; nothing here
//! knows the parser.

use serde_json::Value;

use crate::error::ParseError;
use crate::node::{Args, KeyValue};

/// Errors here have no line yet: the parser adds the instruction's.
type Result<T> = std::result::Result<T, ParseError>;

/// Whitespace as Dockerfile lines split on.
pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Leading `--name[=value]` words (quotes removed, backslash escapes honoured) and the rest.
/// A lone `--` ends the flags and is dropped.
pub fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &line[pos..];
        let start = pos + (rest.len() - rest.trim_start_matches(char::is_whitespace).len());
        if !line[start..].starts_with("--") {
            return (flags, &line[start..]);
        }
        let (word, end) = flag_word(line, start);
        if word == "--" {
            return (flags, &line[end..]);
        }
        flags.push(word);
        pos = end;
        if pos >= line.len() {
            return (flags, "");
        }
    }
}

/// One flag word starting at `start`: up to unquoted whitespace.
fn flag_word(line: &str, start: usize) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line[start..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            None if c.is_whitespace() => return (word, start + i),
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ if c == '\\' => {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            _ => word.push(c),
        }
    }
    (word, line.len())
}

/// `[ "a", "b" ]`: a JSON array of strings. `Ok(None)` when the text is not a JSON array at
/// all; an error when it is JSON but not an array of strings.
fn json_strings(rest: &str) -> Result<Option<Vec<String>>> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(rest) else {
        return Ok(None);
    };
    let strings: Option<Vec<String>> = items.into_iter().map(|v| v.as_str().map(str::to_string)).collect();
    match strings {
        Some(s) => Ok(Some(s)),
        None => Err(ParseError::whole("the JSON array must contain only strings")),
    }
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array (exec form) or the whole text (shell form).
pub fn maybe_json(rest: &str) -> Result<Args> {
    if rest.is_empty() {
        return Ok(Args::Strings { values: vec![], json: false });
    }
    Ok(match json_strings(rest)? {
        Some(values) => Args::Strings { values, json: true },
        None => Args::Strings { values: vec![rest.to_string()], json: false },
    })
}

/// COPY, ADD, VOLUME: a JSON array or whitespace-separated words.
pub fn maybe_json_list(rest: &str) -> Result<Args> {
    Ok(match json_strings(rest)? {
        Some(values) => Args::Strings { values, json: true },
        None => Args::Strings { values: whitespace_words(rest), json: false },
    })
}

/// HEALTHCHECK: the type (`CMD`, `NONE`) then, for CMD, the command in either form.
pub fn health(rest: &str) -> Result<Args> {
    let Some(at) = rest.find(char::is_whitespace).or((!rest.is_empty()).then_some(rest.len())) else {
        return Ok(Args::Strings { values: vec![], json: false });
    };
    let kind = rest[..at].to_string();
    let Args::Strings { values, json } = maybe_json(rest[at..].trim_start())? else {
        unreachable!("maybe_json gives strings")
    };
    Ok(Args::Strings { values: std::iter::once(kind).chain(values).collect(), json })
}

pub fn whitespace_words(rest: &str) -> Vec<String> {
    rest.split(is_space).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// Words split on whitespace outside quotes; quotes and escapes are kept in the words
/// (they are resolved later, by variable expansion).
pub fn quoted_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut keep_empty = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word && (keep_empty || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                keep_empty = false;
            }
            None => {
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    keep_empty = true;
                }
                word.push(c);
                if c == escape
                    && let Some(next) = chars.next()
                {
                    word.push(next);
                } else if c == escape {
                    word.pop(); // an escape at the very end is dropped
                }
            }
            Some(q) => {
                if c == q {
                    quote = None;
                    word.push(c);
                } else if c == escape && q != '\'' {
                    word.push(c);
                    match chars.next() {
                        Some(next) => word.push(next),
                        None => {
                            word.pop();
                        }
                    }
                } else {
                    word.push(c);
                }
            }
        }
    }
    if in_word && (keep_empty || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `KEY value` (legacy: the rest is the value) or `k=v k2=v2 …`.
pub fn name_values(rest: &str, keyword: &str, escape: char) -> Result<Vec<KeyValue>> {
    let words = quoted_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(ParseError::whole(format!("{keyword} must have two arguments")));
    };
    if !first.contains('=') {
        let Some(at) = rest.find(is_space) else {
            return Err(ParseError::whole(format!("{keyword} must have two arguments")));
        };
        let value = rest[at..].trim_start_matches(is_space);
        if value.is_empty() {
            return Err(ParseError::whole(format!("{keyword} must have two arguments")));
        }
        return Ok(vec![KeyValue { key: rest[..at].to_string(), value: value.to_string(), legacy: true }]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok(KeyValue { key: k.to_string(), value: v.to_string(), legacy: false }),
            None => Err(ParseError::whole(format!(
                "syntax error: can't find = in {w:?}; must be of the form name=value"
            ))),
        })
        .collect()
}
