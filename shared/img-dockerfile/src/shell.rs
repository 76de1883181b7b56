//! Variable expansion in Dockerfile arguments, as Docker does it: `$V`, `${V}`, `${V:-w}`,
//! `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?w}`, `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`,
//! `${V%%p}`, `${V/p/r}`, `${V//p/r}`, with single quotes, double quotes and escapes.
//!
//! [`expand`] gives one string (most instructions); [`expand_words`] also splits into words
//! the way the shell does, where unquoted expansions split and quoted ones do not.
//!
//! A Dockerfile is untrusted input, so the work here is bounded: `${...}` may nest only
//! [`MAX_NESTING`] deep (the lexer recurses once a level), an expansion may produce at most
//! [`MAX_EXPANSION`] bytes more than it was given, the pattern operators match in time linear
//! in the value's length times the pattern's (see `Glob`), and the values an expansion reads
//! and the steps its patterns take are counted against [`MAX_WORK`].

use anyhow::{Result, anyhow, bail};

mod glob;

use glob::Glob;

/// How deep `${...}` may nest (`${a:-${b:-...}}`): far more than any real Dockerfile uses,
/// far less than would exhaust the stack.
pub const MAX_NESTING: usize = 100;

/// How many bytes an expansion may produce beyond the length of the word it expands: an
/// `ENV B=$A$A` a line, doubling each time, stops here instead of filling the memory.
pub const MAX_EXPANSION: usize = 1 << 20;

/// How much work one expansion may do: bytes of values looked up, plus pattern matching
/// steps (for each character read, one per live position in the pattern). `${A##*x*x*x...}`
/// on a 1 MiB `A` would take 10^11 steps; some megabytes of values, and patterns of a dozen
/// characters on values of a megabyte, stay inside. At most about a second in a debug
/// build, a tenth in a release one.
pub const MAX_WORK: usize = 1 << 24;

/// What is left of an expansion's [`MAX_WORK`].
struct Work(usize);

impl Work {
    fn spend(&mut self, n: usize) -> Result<()> {
        match self.0.checked_sub(n) {
            Some(left) => self.0 = left,
            None => {
                bail!("a variable expansion takes more than {MAX_WORK} steps (long values, long patterns)")
            }
        }
        Ok(())
    }
}

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
    /// How many `${` are open.
    depth: usize,
    /// The longest string an expansion of this word may build, in bytes.
    limit: usize,
    work: Work,
}

impl<'a> Lexer<'a> {
    fn new(word: &str, escape: char, env: &'a dyn Env) -> Lexer<'a> {
        let limit = word.len().saturating_add(MAX_EXPANSION);
        Lexer { chars: word.chars().collect(), pos: 0, escape, env, depth: 0, limit, work: Work(MAX_WORK) }
    }

    /// Fails once a string being built is longer than the expansion may make.
    fn check_size(&self, s: &str) -> Result<()> {
        if s.len() > self.limit {
            bail!("a variable expansion makes more than {MAX_EXPANSION} bytes beyond the text written");
        }
        Ok(())
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
                    result.push_str(&s);
                    self.check_size(&result)?;
                    words.raw(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    self.check_size(&result)?;
                    words.splitting(&s);
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
                Some('$') => {
                    s.push_str(&self.dollar()?);
                    self.check_size(&s)?;
                }
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

    fn lookup(&mut self, name: &str) -> Result<Option<String>> {
        let special = name.chars().all(|c| c.is_ascii_digit()) || "@*#?-$!".contains(name);
        let value = if special { None } else { self.env.get(name) };
        self.work.spend(value.as_ref().map_or(0, String::len))?;
        Ok(value)
    }

    fn dollar(&mut self) -> Result<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name)?.unwrap_or_default());
        }
        // Each `${` recurses (the word inside is lexed by `run`): bounded, not the stack's size.
        if self.depth == MAX_NESTING {
            bail!("variable substitutions nested more than {MAX_NESTING} deep");
        }
        self.depth += 1;
        let value = self.braced();
        self.depth -= 1;
        value
    }

    /// `${...}` after the `$`.
    fn braced(&mut self) -> Result<String> {
        self.next();
        match self.peek() {
            None => bail!("syntax error: missing '}}'"),
            Some('{' | '}' | ':') => bail!("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.name();
        let value = self.lookup(&name)?;
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
                        let set = self.lookup(&name)?.is_some();
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
                let pattern = Glob::new(&self.run(Some('}'))?.0);
                let value = value.unwrap_or_default();
                if c == '#' {
                    pattern.remove_prefix(&value, greedy, &mut self.work)
                } else {
                    pattern.remove_suffix(&value, greedy, &mut self.work)
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, replacement) = self.pattern_and_replacement()?;
                let value = value.unwrap_or_default();
                Glob::new(&pattern).replace(&value, &replacement, all, self.limit, &mut self.work)
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
                    self.check_size(&pattern)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
