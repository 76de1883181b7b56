//! The little HTTP the tests' own servers speak (the hostile registry, the fault-injecting
//! proxy in front of the real one, the paging proxy).

use std::io::{BufRead, Result};

/// The most header lines a request may have before the server hangs up.
const MAX_HEAD_LINES: usize = 100;

/// Reads one request's (or response's) head: its first line and header lines, without their
/// line ends.
/// `None` when the client hung up first, sent more than [`MAX_HEAD_LINES`], or sent no line.
pub fn read_head(reader: &mut impl BufRead) -> Result<Option<Vec<String>>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end().to_string());
        if head.len() > MAX_HEAD_LINES {
            return Ok(None);
        }
    }
    Ok(Some(head).filter(|h| !h.is_empty()))
}
