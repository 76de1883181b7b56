//! The shell patterns of `${V#p}`, `${V%p}` and `${V/p/r}`, matched by an automaton so that
//! no pattern takes more than time linear in the value times the pattern.

use anyhow::{Result, bail};

use super::{MAX_EXPANSION, Work};

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
pub(super) struct Glob {
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
    pub(super) fn new(pattern: &str) -> Glob {
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
    pub(super) fn remove_prefix(&self, value: &str, longest: bool, work: &mut Work) -> Result<String> {
        let v: Vec<char> = value.chars().collect();
        Ok(match self.prefix_match(&v, longest, work)? {
            Some(n) => v[n..].iter().collect(),
            None => value.to_string(),
        })
    }

    /// `${V%p}` (shortest matching suffix removed) and `${V%%p}` (longest): a prefix of the
    /// reversed value for the reversed pattern.
    pub(super) fn remove_suffix(&self, value: &str, longest: bool, work: &mut Work) -> Result<String> {
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
    pub(super) fn replace(
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
pub(super) fn class_end(pattern: &[char]) -> Option<usize> {
    let mut start = if matches!(pattern.get(1), Some('!' | '^')) { 2 } else { 1 };
    if pattern.get(start) == Some(&']') {
        start += 1; // `[]...]`: a leading ']' is a member
    }
    (start..pattern.len()).find(|&i| pattern[i] == ']')
}

pub(super) fn class_matches(class: &[char], c: char) -> bool {
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
