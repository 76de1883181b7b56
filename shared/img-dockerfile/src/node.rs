//! What the parser gives: one node per instruction as written (keyword, `--flags`, arguments
//! in the shape the keyword takes, heredocs, lines), and BuildKit's text form of a node, which
//! its parser test data is written in.

/// One instruction as written: keyword, `--flags`, arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Lower-cased keyword (`run`, `copy`, …).
    pub keyword: String,
    /// The keyword as written, for messages.
    pub original: String,
    pub flags: Vec<String>,
    pub args: Args,
    /// Heredocs that follow the instruction line (RUN, COPY, ADD).
    pub heredocs: Vec<Heredoc>,
    pub start_line: usize,
    pub end_line: usize,
}

/// The arguments of an instruction, in the shape its keyword gives them.
#[derive(Clone, Debug, PartialEq)]
pub enum Args {
    /// Plain strings (shell form, whitespace-separated words, or a JSON array's elements).
    Strings { values: Vec<String>, json: bool },
    /// ENV and LABEL: one pair per name.
    KeyValues(Vec<KeyValue>),
    /// ONBUILD: the instruction it wraps.
    Nested(Box<Node>),
}

/// One `name=value` of ENV or LABEL, as written (quotes are kept; expansion comes later).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `KEY value` form, without `=` (BuildKit's test data tells the
    /// two apart, and history shows them as written).
    pub legacy: bool,
}

/// A heredoc body following a RUN, COPY or ADD line.
#[derive(Clone, Debug, PartialEq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: the content is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped.
    pub chomp: bool,
}

/// The BuildKit test format: `(keyword ["--flag"] "arg" …)`, Go-quoted strings.
pub fn dump(node: &Node) -> String {
    let mut out = format!("({}", node.keyword);
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    match &node.args {
        Args::Strings { values, .. } => {
            for v in values {
                out.push(' ');
                out.push_str(&go_quote(v));
            }
        }
        Args::KeyValues(pairs) => {
            for p in pairs {
                let sep = if p.legacy { "" } else { "=" };
                out.push_str(&format!(" {} {} {}", go_quote(&p.key), go_quote(&p.value), go_quote(sep)));
            }
        }
        Args::Nested(inner) => {
            out.push(' ');
            out.push_str(&dump(inner));
        }
    }
    out.push(')');
    out
}

/// Quotes a string as Go's `%q` does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
