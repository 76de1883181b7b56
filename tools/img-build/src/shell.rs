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

/// One element of a shell pattern.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Char(char),
    /// `?`
    Any,
    /// `*`
    Star,
    /// `[...]`: the text between the brackets.
    Class(Vec<char>),
}

impl Token {
    /// Whether this token, not a `*`, consumes `c`.
    fn takes(&self, c: char) -> bool {
        match self {
            Token::Char(p) => *p == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class(class) => class_matches(class, c),
        }
    }
}

/// A shell pattern (`*`, `?`, `[...]`; a `[` without its `]` is literal) as the `#`, `%` and
/// `/` operators use it. Matching runs the pattern as an automaton over the text, every
/// position of the pattern at once, so it takes time proportional to the text's length times
/// the pattern's, whatever the pattern: a backtracking matcher takes exponential time on
/// patterns like `*a*a*a*a*b` against a run of `a`s.
///
/// The automaton's states are the positions `0..=len` in the token list (`len`: the whole
/// pattern matched); a `*` lets its position be skipped and loops on any character.
#[derive(Debug)]
struct Glob {
    tokens: Vec<Token>,
}

/// A set of automaton states, each with the earliest start that reached it: the live states
/// in ascending order, and the starts by state (`NONE` for a state not in the set).
struct States {
    active: Vec<usize>,
    start: Vec<usize>,
}

const NONE: usize = usize::MAX;

impl States {
    fn new(count: usize) -> States {
        States { active: Vec::new(), start: vec![NONE; count] }
    }

    fn start(&self, j: usize) -> Option<usize> {
        Some(self.start[j]).filter(|&s| s != NONE)
    }

    /// Adds `j` (not below any state in the set) reached from `start`.
    fn add(&mut self, j: usize, start: usize) {
        if self.start[j] == NONE {
            self.active.push(j);
        }
        self.start[j] = self.start[j].min(start);
    }

    fn clear(&mut self) {
        for &j in &self.active {
            self.start[j] = NONE;
        }
        self.active.clear();
    }
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        let p: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let token = match p[i] {
                '*' => Token::Star,
                '?' => Token::Any,
                '[' => match class_end(&p[i..]) {
                    Some(end) => {
                        let class = p[i + 1..i + end].to_vec();
                        i += end;
                        Token::Class(class)
                    }
                    None => Token::Char('['),
                },
                c => Token::Char(c),
            };
            i += 1;
            // `**` matches what `*` does.
            if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                tokens.push(token);
            }
        }
        Glob { tokens }
    }

    /// The pattern read backwards: it matches a reversed string when this one matches the
    /// string. Every token is one character wide, so reversing them is enough.
    fn reversed(&self) -> Glob {
        Glob { tokens: self.tokens.iter().rev().cloned().collect() }
    }

    fn accepting(&self) -> usize {
        self.tokens.len()
    }

    /// Adds the states a `*` may skip to, passing on the earliest start.
    fn close(&self, states: &mut States) {
        let list = std::mem::take(&mut states.active);
        let mut closed = Vec::with_capacity(list.len());
        let mut list = list.into_iter().peekable();
        // A state a `*` just before it reaches: always at or before the list's next one.
        let mut skipped_to: Option<usize> = None;
        loop {
            let j = match (skipped_to.take(), list.peek()) {
                (Some(to), Some(&next)) if next == to => list.next().expect("peeked"),
                (Some(to), _) => to,
                (None, Some(_)) => list.next().expect("peeked"),
                (None, None) => break,
            };
            closed.push(j);
            if self.tokens.get(j) == Some(&Token::Star) {
                let start = states.start[j];
                states.start[j + 1] = states.start[j + 1].min(start);
                skipped_to = Some(j + 1);
            }
        }
        states.active = closed;
    }

    /// The states after reading `c`, into `next`: work in proportion to the live states.
    fn step(&self, states: &States, c: char, next: &mut States, work: &mut Work) -> Result<()> {
        work.spend(states.active.len() + 1)?;
        next.clear();
        for &j in &states.active {
            let to = match self.tokens.get(j) {
                Some(Token::Star) => j,
                Some(t) if t.takes(c) => j + 1,
                _ => continue,
            };
            // `states.active` ascends and `to` is j or j + 1, so `next.active` ascends too.
            next.add(to, states.start[j]);
        }
        self.close(next);
        Ok(())
    }

    /// The lengths `n` for which the pattern matches `text[..n]`: the shortest, or the
    /// longest if `longest`.
    fn prefix_match(&self, text: &[char], longest: bool, work: &mut Work) -> Result<Option<usize>> {
        let mut states = States::new(self.accepting() + 1);
        let mut next = States::new(self.accepting() + 1);
        states.add(0, 0);
        self.close(&mut states);
        let mut found = None;
        for i in 0..=text.len() {
            if states.start(self.accepting()).is_some() {
                found = Some(i);
                if !longest {
                    break;
                }
            }
            if i == text.len() || states.active.is_empty() {
                break;
            }
            self.step(&states, text[i], &mut next, work)?;
            std::mem::swap(&mut states, &mut next);
        }
        Ok(found)
    }

    /// `${V#p}` (shortest matching prefix removed) and `${V##p}` (longest).
    fn remove_prefix(&self, value: &str, longest: bool, work: &mut Work) -> Result<String> {
        let v: Vec<char> = value.chars().collect();
        Ok(match self.prefix_match(&v, longest, work)? {
            Some(n) => v[n..].iter().collect(),
            None => value.to_string(),
        })
    }

    /// `${V%p}` (shortest matching suffix removed) and `${V%%p}` (longest): a prefix of the
    /// reversed value for the reversed pattern.
    fn remove_suffix(&self, value: &str, longest: bool, work: &mut Work) -> Result<String> {
        let v: Vec<char> = value.chars().collect();
        let backwards: Vec<char> = v.iter().rev().copied().collect();
        Ok(match self.reversed().prefix_match(&backwards, longest, work)? {
            Some(n) => v[..v.len() - n].iter().collect(),
            None => value.to_string(),
        })
    }

    /// The leftmost non-empty match in `text[from..]`, the longest one starting there.
    ///
    /// An attempt starts at every position until a match is found; the states keep the
    /// earliest start that reaches them (two attempts in the same state go on alike, so the
    /// earlier one is the better). The scan ends once no attempt that could still make a
    /// longer or earlier match is alive.
    fn find(&self, text: &[char], from: usize, work: &mut Work) -> Result<Option<(usize, usize)>> {
        let accept = self.accepting();
        let mut states = States::new(accept + 1);
        let mut next = States::new(accept + 1);
        let mut best: Option<(usize, usize)> = None;
        let mut i = from;
        loop {
            if best.is_none() && states.start(0).is_none() {
                // The latest start: it lowers no other state's, so closing again only adds.
                states.active.insert(0, 0);
                states.start[0] = i;
                self.close(&mut states);
            }
            if let Some(start) = states.start(accept)
                && start < i
                && best.is_none_or(|(s, _)| start <= s)
            {
                best = Some((start, i));
            }
            let alive = match best {
                Some((s, _)) => states.active.iter().any(|&j| states.start[j] <= s),
                None => true,
            };
            if i == text.len() || !alive {
                return Ok(best);
            }
            self.step(&states, text[i], &mut next, work)?;
            std::mem::swap(&mut states, &mut next);
            i += 1;
        }
    }

    /// `${V/p/r}` replaces the leftmost longest match of p; `${V//p/r}` every match. An empty
    /// pattern matches nothing. The result may be at most `limit` bytes.
    fn replace(
        &self,
        value: &str,
        replacement: &str,
        all: bool,
        limit: usize,
        work: &mut Work,
    ) -> Result<String> {
        if self.tokens.is_empty() {
            return Ok(value.to_string());
        }
        let v: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        while let Some((start, end)) = self.find(&v, pos, work)? {
            out.extend(&v[pos..start]);
            out.push_str(replacement);
            if out.len() > limit {
                bail!("a variable expansion makes more than {MAX_EXPANSION} bytes beyond the text written");
            }
            pos = end;
            if !all || pos == v.len() {
                break;
            }
        }
        out.extend(&v[pos..]);
        Ok(out)
    }
}

/// Where the class that `pattern` (starting with `[`) opens ends: the index of its `]`.
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

    /// Variables for the bound tests: `BIG` is 600 KiB, `A60` sixty `a`s, `AB` 10,000 bytes.
    fn big_env(name: &str) -> Option<String> {
        match name {
            "BIG" => Some("x".repeat(600 << 10)),
            "A60" => Some("a".repeat(60)),
            "AB" => Some("ab".repeat(5_000)),
            "R300" => Some("r".repeat(300)),
            _ => None,
        }
    }

    #[test]
    fn nesting_is_bounded_not_a_stack_overflow() {
        let nested = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        assert_eq!(expand(&nested(MAX_NESTING), '\\', &env).unwrap(), "x");
        for depth in [MAX_NESTING + 1, 100_000] {
            let err = expand(&nested(depth), '\\', &env).unwrap_err().to_string();
            assert_eq!(err, "variable substitutions nested more than 100 deep");
            assert!(expand_words(&nested(depth), '\\', &env).is_err());
        }
        // In quotes, in patterns and replacements, the same count.
        let quoted = format!("{}x{}", "\"${a:-".repeat(100_000), "}\"".repeat(100_000));
        assert!(expand(&quoted, '\\', &env).is_err());
        let replaced = format!("{}x{}", "${FILE/a/".repeat(100_000), "}".repeat(100_000));
        assert!(expand(&replaced, '\\', &env).unwrap_err().to_string().contains("nested"));
        let pattern = format!("{}x{}", "${FILE/${a:-".repeat(50_000), "}/y}".repeat(50_000));
        assert!(expand(&pattern, '\\', &env).unwrap_err().to_string().contains("nested"));
    }

    #[test]
    fn pathological_patterns_take_polynomial_time() {
        // A backtracking matcher tries about C(60, 30) ways to place these stars.
        let stars = "*a".repeat(30);
        let x = |word: String| expand(&word, '\\', &big_env).unwrap();
        assert_eq!(x(format!("${{A60#{stars}b}}")), "a".repeat(60));
        assert_eq!(x(format!("${{A60##{stars}b}}")), "a".repeat(60));
        assert_eq!(x(format!("${{A60%{stars}b}}")), "a".repeat(60));
        assert_eq!(x(format!("${{A60%%{stars}b}}")), "a".repeat(60));
        assert_eq!(x(format!("${{A60/{stars}b/x}}")), "a".repeat(60));
        assert_eq!(x(format!("${{A60//{stars}b/x}}")), "a".repeat(60));
        assert_eq!(x(format!("${{A60##{stars}}}")), "");
        assert_eq!(x(format!("${{A60#{stars}}}")), "a".repeat(30));
        assert_eq!(x(format!("${{A60%{stars}}}")), "a".repeat(30));
        // Long values: a quadratic matcher would take minutes here too.
        assert_eq!(x("${AB//b/}".into()), "a".repeat(5_000));
        assert_eq!(x("${AB//?/x}".into()), "x".repeat(10_000));
        assert_eq!(x("${AB//*b/x}".into()), "x");
        assert_eq!(x("${AB##*a}".into()), "b");
        assert_eq!(x("${AB%%b*}".into()), "a");
        assert_eq!(x("${AB/a*a/}".into()), "b");
    }

    #[test]
    fn expansions_cannot_grow_without_bound() {
        // `ENV B=$A$A`, a line at a time, doubles the value: it stops at MAX_EXPANSION.
        assert_eq!(expand("$BIG", '\\', &big_env).unwrap().len(), 600 << 10);
        for word in [
            "$BIG$BIG",
            "${BIG}${BIG}",
            "\"$BIG$BIG\"",
            "${X:-$BIG$BIG}",
            "\"$BIG\"\"$BIG\"",
            "${AB//a/$R300}",
            "${BIG/$BIG$BIG/}",
        ] {
            let err = expand(word, '\\', &big_env).unwrap_err().to_string();
            assert!(err.contains("more than 1048576 bytes"), "{word}: {err}");
            assert!(expand_words(word, '\\', &big_env).is_err(), "{word}");
        }
        // Work: each is cheap to write, and took minutes or hours.
        let lookups = "${BIG:+x}".repeat(200);
        let long_pattern = format!("${{BIG##{}}}", "*x".repeat(200));
        for word in [&lookups, &long_pattern] {
            let err = expand(word, '\\', &big_env).unwrap_err().to_string();
            assert!(err.contains("takes more than 16777216 steps"), "{}: {err}", &word[..20]);
        }
        // Only the live states count: a long literal pattern is one state at a time.
        assert_eq!(expand(&"${BIG:+x}".repeat(20), '\\', &big_env).unwrap(), "x".repeat(20));
        assert_eq!(expand("${BIG##*x}${BIG#$BIG}", '\\', &big_env).unwrap(), "");
        // Text written out (a heredoc, say) is not counted against it.
        let written = "y".repeat(3 << 20);
        assert_eq!(expand(&format!("{written}$BIG"), '\\', &big_env).unwrap().len(), (3 << 20) + (600 << 10));
    }

    /// The backtracking matcher the automaton replaced: the definition of what should match.
    fn reference_match(pattern: &[char], text: &[char]) -> bool {
        match pattern.first() {
            None => text.is_empty(),
            Some('*') => (0..=text.len()).any(|i| reference_match(&pattern[1..], &text[i..])),
            Some('?') => !text.is_empty() && reference_match(&pattern[1..], &text[1..]),
            Some('[') => match (class_end(pattern), text.first()) {
                (Some(end), Some(&t)) => {
                    class_matches(&pattern[1..end], t) && reference_match(&pattern[end + 1..], &text[1..])
                }
                (None, Some(&t)) => t == '[' && reference_match(&pattern[1..], &text[1..]),
                (_, None) => false,
            },
            Some(&p) => text.first() == Some(&p) && reference_match(&pattern[1..], &text[1..]),
        }
    }

    fn reference_ops(value: &str, pattern: &str) -> [String; 6] {
        let v: Vec<char> = value.chars().collect();
        let p: Vec<char> = pattern.chars().collect();
        let n = v.len();
        let s = |a: usize, b: usize| v[a..b].iter().collect::<String>();
        let prefix = |lens: Vec<usize>| {
            lens.into_iter().find(|&k| reference_match(&p, &v[..k])).map_or(value.to_string(), |k| s(k, n))
        };
        let suffix = |starts: Vec<usize>| {
            starts.into_iter().find(|&k| reference_match(&p, &v[k..])).map_or(value.to_string(), |k| s(0, k))
        };
        let replace = |all: bool| {
            if p.is_empty() {
                return value.to_string();
            }
            let (mut out, mut i, mut replaced) = (String::new(), 0, false);
            while i < n {
                let hit = if replaced && !all {
                    None
                } else {
                    (i + 1..=n).rev().find(|&end| reference_match(&p, &v[i..end]))
                };
                match hit {
                    Some(end) => (out, i, replaced) = (out + "R", end, true),
                    None => {
                        out.push(v[i]);
                        i += 1;
                    }
                }
            }
            out
        };
        [
            prefix((0..=n).collect()),
            prefix((0..=n).rev().collect()),
            suffix((0..=n).rev().collect()),
            suffix((0..=n).collect()),
            replace(false),
            replace(true),
        ]
    }

    #[test]
    fn the_automaton_matches_what_backtracking_did() {
        // Every pattern of up to three pieces against texts of up to five characters.
        let pieces = ["a", "b", "*", "?", "[ab]", "[!a]", "[", "]", "[]a]", "[a-b]"];
        let mut patterns = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> =
                patterns.iter().flat_map(|p| pieces.iter().map(move |q| format!("{p}{q}"))).collect();
            patterns.extend(longer);
        }
        patterns.sort();
        patterns.dedup();
        let mut texts = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> =
                texts.iter().flat_map(|t| ["a", "b", "["].map(|c| format!("{t}{c}"))).collect();
            texts.extend(longer);
        }
        texts.sort();
        texts.dedup();
        let mut checked = 0;
        for (i, pattern) in patterns.iter().enumerate() {
            // A sample of the texts for each pattern keeps this quick; across the patterns
            // every text is used many times.
            for text in texts.iter().skip(i % 11).step_by(11) {
                let glob = Glob::new(pattern);
                let work = &mut Work(usize::MAX);
                let got = [
                    glob.remove_prefix(text, false, work).unwrap(),
                    glob.remove_prefix(text, true, work).unwrap(),
                    glob.remove_suffix(text, false, work).unwrap(),
                    glob.remove_suffix(text, true, work).unwrap(),
                    glob.replace(text, "R", false, usize::MAX, work).unwrap(),
                    glob.replace(text, "R", true, usize::MAX, work).unwrap(),
                ];
                assert_eq!(got, reference_ops(text, pattern), "pattern {pattern:?} on {text:?}");
                checked += 1;
            }
        }
        assert!(checked > 30_000, "{checked}");
    }
}
