//! The one error the front end gives: what is wrong with a Dockerfile, and on which line when
//! one instruction is at fault. Callers match on it to prefix the file's name and line.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    /// The (1-based) line of the instruction at fault; `None` when the file as a whole is
    /// (no instructions, a cycle between stages, an unknown target).
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    pub fn at(line: usize, message: impl Into<String>) -> ParseError {
        ParseError { line: Some(line), message: message.into() }
    }

    /// An error of the whole file, not of one line.
    pub fn whole(message: impl Into<String>) -> ParseError {
        ParseError { line: None, message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}
