//! Variable expansion in Dockerfile arguments, as Docker does it: `$V`, `${V}`, `${V:-w}`,
//! `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?w}`, `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`,
//! `${V%%p}`, `${V/p/r}`, `${V//p/r}`, with single quotes, double quotes and escapes.
//!
//! [`expand`] gives one string (most instructions); [`expand_words`] also splits into words
//! the way the shell does, where unquoted expansions split and quoted ones do not.

use anyhow::{Result, anyhow, bail};

/// Variables in scope; `None` means unset (an empty value is set).
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Expands a word into one string; quotes are removed, whitespace kept.
pub fn expand(word: &str, escape: char, env: &dyn Env) -> Result<String> {
    Ok(Lexer::new(word, escape, env).run(None)?.0)
}

/// Expands and splits into words.
pub fn expand_words(word: &str, escape: char, env: &dyn Env) -> Result<Vec<String>> {
    Ok(Lexer::new(word, escape, env).run(None)?.1.finish())
}

/// Word splitting state: characters from unquoted expansions and unescaped literal
/// whitespace split words; quoted or escaped text never does.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.raw_char(c);
        }
    }

    fn raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn splitting(&mut self, s: &str) {
        s.chars().for_each(|c| self.char(c));
    }

    fn raw(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Env,
}

impl<'a> Lexer<'a> {
    fn new(word: &str, escape: char, env: &'a dyn Env) -> Lexer<'a> {
        Lexer { chars: word.chars().collect(), pos: 0, escape, env }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += c.is_some() as usize;
        c
    }

    /// Processes until `stop` (consumed) or the end; a missing `stop` is an error.
    fn run(&mut self, stop: Option<char>) -> Result<(String, Words)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, words));
            }
            match c {
                '\'' => {
                    let s = self.single_quoted()?;
                    words.raw(&s);
                    result.push_str(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    words.raw(&s);
                    result.push_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    words.splitting(&s);
                    result.push_str(&s);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        let Some(escaped) = self.next() else { break };
                        words.raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.char(c);
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some(s) => bail!("syntax error: missing '{s}'"),
            None => Ok((result, words)),
        }
    }

    fn single_quoted(&mut self) -> Result<String> {
        self.next();
        let mut s = String::new();
        loop {
            match self.next() {
                None => bail!("unexpected end of statement while looking for matching single-quote"),
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String> {
        self.next();
        let mut s = String::new();
        loop {
            match self.peek() {
                None => bail!("unexpected end of statement while looking for matching double-quote"),
                Some('"') => {
                    self.next();
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) => {
                    self.next();
                    // Only ", $ and the escape character can be escaped; other escapes stay.
                    if c == self.escape
                        && let Some(n) = self.peek()
                        && (n == '"' || n == '$' || n == self.escape)
                    {
                        self.next();
                        s.push(n);
                    } else {
                        s.push(c);
                    }
                }
            }
        }
    }

    /// A variable name: letters, digits and `_`; a run of digits (positional, always unset);
    /// or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            Some(c) if "@*#?-$!".contains(c) => {
                self.next();
                return c.to_string();
            }
            _ => {}
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            self.next();
            name.push(c);
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        let special = name.chars().all(|c| c.is_ascii_digit()) || "@*#?-$!".contains(name);
        if special { None } else { self.env.get(name) }
    }

    fn dollar(&mut self) -> Result<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => bail!("syntax error: missing '}}'"),
            Some('{' | '}' | ':') => bail!("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.name();
        let value = self.lookup(&name);
        let op = self.next();
        let unset_error = |word: String, default: &str| {
            anyhow!("{name}: {}", if word.is_empty() { default.to_string() } else { word })
        };
        match op {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let modifier = self.next();
                let word = self.run(Some('}'))?.0;
                let value = value.filter(|v| !v.is_empty());
                match modifier {
                    Some('-') => Ok(value.unwrap_or(word)),
                    Some('+') => Ok(value.map(|_| word).unwrap_or_default()),
                    Some('?') => {
                        let set = self.lookup(&name).is_some();
                        value.ok_or_else(|| {
                            unset_error(
                                word,
                                if set { "is not allowed to be empty" } else { "is not allowed to be unset" },
                            )
                        })
                    }
                    Some(m) => bail!("unsupported modifier ({m}) in substitution"),
                    None => bail!("syntax error: missing '}}'"),
                }
            }
            Some('-') => {
                let word = self.run(Some('}'))?.0;
                Ok(value.unwrap_or(word))
            }
            Some('+') => {
                let word = self.run(Some('}'))?.0;
                Ok(value.map(|_| word).unwrap_or_default())
            }
            Some('?') => {
                let word = self.run(Some('}'))?.0;
                value.ok_or_else(|| unset_error(word, "is not allowed to be unset"))
            }
            Some(c @ ('#' | '%')) => {
                let greedy = self.peek() == Some(c);
                if greedy {
                    self.next();
                }
                let pattern = self.run(Some('}'))?.0;
                let value = value.unwrap_or_default();
                Ok(if c == '#' {
                    remove_prefix(&value, &pattern, greedy)
                } else {
                    remove_suffix(&value, &pattern, greedy)
                })
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, replacement) = self.pattern_and_replacement()?;
                Ok(replace(&value.unwrap_or_default(), &pattern, &replacement, all))
            }
            Some(c) => bail!("unsupported modifier ({c}) in substitution"),
            None => bail!("syntax error: missing '}}'"),
        }
    }

    /// `${V/pattern/replacement}`: the pattern ends at the first unescaped `/`.
    fn pattern_and_replacement(&mut self) -> Result<(String, String)> {
        let mut pattern = String::new();
        loop {
            match self.peek() {
                None => bail!("syntax error: missing '}}'"),
                Some('/') => {
                    self.next();
                    return Ok((pattern, self.run(Some('}'))?.0));
                }
                Some('}') => {
                    self.next();
                    return Ok((pattern, String::new()));
                }
                Some(c) if c == self.escape => {
                    self.next();
                    if let Some(n) = self.next() {
                        pattern.push(n);
                    }
                }
                Some(_) => {
                    let s = if self.peek() == Some('$') {
                        self.dollar()?
                    } else {
                        self.next().unwrap().to_string()
                    };
                    pattern.push_str(&s);
                }
            }
        }
    }
}

/// Shell glob matching (`*`, `?`, `[...]`) of a whole string.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).any(|i| glob_match(&pattern[1..], &text[i..])),
        Some('?') => !text.is_empty() && glob_match(&pattern[1..], &text[1..]),
        Some('[') => match (class_end(pattern), text.first()) {
            (Some(end), Some(&t)) => {
                class_matches(&pattern[1..end], t) && glob_match(&pattern[end + 1..], &text[1..])
            }
            (None, Some(&t)) => t == '[' && glob_match(&pattern[1..], &text[1..]),
            (_, None) => false,
        },
        Some(&p) => text.first() == Some(&p) && glob_match(&pattern[1..], &text[1..]),
    }
}

fn class_end(pattern: &[char]) -> Option<usize> {
    let mut start = if matches!(pattern.get(1), Some('!' | '^')) { 2 } else { 1 };
    if pattern.get(start) == Some(&']') {
        start += 1; // `[]...]`: a leading ']' is a member
    }
    (start..pattern.len()).find(|&i| pattern[i] == ']')
}

fn class_matches(class: &[char], c: char) -> bool {
    let (negate, class) = match class.first() {
        Some('!' | '^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut hit = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            hit |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            hit |= class[i] == c;
            i += 1;
        }
    }
    hit != negate
}

fn remove_prefix(value: &str, pattern: &str, greedy: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let mut lens: Vec<usize> = (0..=v.len()).collect();
    if greedy {
        lens.reverse();
    }
    match lens.into_iter().find(|&n| glob_match(&p, &v[..n])) {
        Some(n) => v[n..].iter().collect(),
        None => value.to_string(),
    }
}

fn remove_suffix(value: &str, pattern: &str, greedy: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let mut starts: Vec<usize> = (0..=v.len()).collect();
    if !greedy {
        starts.reverse();
    }
    match starts.into_iter().find(|&s| glob_match(&p, &v[s..])) {
        Some(s) => v[..s].iter().collect(),
        None => value.to_string(),
    }
}

/// `${V/p/r}` replaces the first longest match of p; `${V//p/r}` every match.
fn replace(value: &str, pattern: &str, replacement: &str, all: bool) -> String {
    if pattern.is_empty() {
        return value.to_string();
    }
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < v.len() {
        let hit = if replaced && !all {
            None
        } else {
            (i + 1..=v.len()).rev().find(|&end| glob_match(&p, &v[i..end]))
        };
        match hit {
            Some(end) => {
                out.push_str(replacement);
                i = end;
                replaced = true;
            }
            None => {
                out.push(v[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "FILE" => Some("dir/sub/file.tar.gz".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn x(word: &str) -> String {
        expand(word, '\\', &env).unwrap()
    }

    #[test]
    fn pattern_operators() {
        assert_eq!(x("${FILE#*/}"), "sub/file.tar.gz");
        assert_eq!(x("${FILE##*/}"), "file.tar.gz");
        assert_eq!(x("${FILE%.*}"), "dir/sub/file.tar");
        assert_eq!(x("${FILE%%.*}"), "dir/sub/file");
        assert_eq!(x("${FILE/sub/SUB}"), "dir/SUB/file.tar.gz");
        assert_eq!(x("${FILE//[a-z]/x}"), "xxx/xxx/xxxx.xxx.xx");
        assert_eq!(x("${FILE/.tar/}"), "dir/sub/file.gz");
        assert_eq!(x("${FILE#nomatch}"), "dir/sub/file.tar.gz");
        assert_eq!(x("${UNSET##*/}"), "");
    }

    #[test]
    fn set_and_unset_modifiers() {
        assert_eq!(x("${EMPTY-w}"), "");
        assert_eq!(x("${UNSET-w}"), "w");
        assert_eq!(x("${EMPTY+w}"), "w");
        assert_eq!(x("${UNSET+w}"), "");
        assert_eq!(x("${EMPTY:-w}"), "w");
        assert!(
            expand("${UNSET:?custom message}", '\\', &env)
                .unwrap_err()
                .to_string()
                .contains("custom message")
        );
        assert_eq!(expand("a`$FILE", '`', &env).unwrap(), "a$FILE");
    }
}
