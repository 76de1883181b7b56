//! The build log on stderr. Stages may run side by side, so the log is written in whole lines
//! (each one `write` under the stderr lock, never two stages' text within one line) and a
//! RUN step's output is prefixed with its stage's name: `[build] compiling…`.

use std::io::{BufRead, BufReader, Read, Write};

/// The longest line relayed as one: longer output (a progress bar without newlines, binary
/// noise) is cut into lines of this size.
const MAX_LINE: u64 = 64 << 10;

/// Writes one line to stderr, whole.
pub fn line(text: &str) {
    let mut buf = Vec::with_capacity(text.len() + 1);
    buf.extend_from_slice(text.as_bytes());
    buf.push(b'\n');
    write_whole(&buf);
}

/// Copies `from` (a RUN step's output) to stderr until its end, each line prefixed with
/// `[label] `; a last line without a newline gets one.
pub fn relay(from: impl Read, label: &str) {
    prefixed_lines(from, label, write_whole);
}

/// Reads `from` to its end and hands each line to `emit`, prefixed and ending in a newline.
fn prefixed_lines(from: impl Read, label: &str, mut emit: impl FnMut(&[u8])) {
    let prefix = format!("[{label}] ");
    let mut reader = BufReader::new(from);
    let mut text = Vec::new();
    loop {
        text.clear();
        match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut text) {
            Ok(0) => return,
            Ok(_) => {
                let mut buf = Vec::with_capacity(prefix.len() + text.len() + 1);
                buf.extend_from_slice(prefix.as_bytes());
                buf.extend_from_slice(&text);
                if !buf.ends_with(b"\n") {
                    buf.push(b'\n');
                }
                emit(&buf);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn write_whole(buf: &[u8]) {
    // The lock is std's own, which eprintln! takes too: no other thread writes between.
    let _ = std::io::stderr().lock().write_all(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_whole_and_bounded() {
        let long = "x".repeat(MAX_LINE as usize + 3);
        let mut lines: Vec<String> = Vec::new();
        prefixed_lines(format!("a\n\nb c\n{long}").as_bytes(), "s", |l| {
            lines.push(String::from_utf8(l.to_vec()).unwrap())
        });
        let cut = format!("[s] {}\n", "x".repeat(MAX_LINE as usize));
        assert_eq!(lines, ["[s] a\n", "[s] \n", "[s] b c\n", cut.as_str(), "[s] xxx\n"]);
    }
}
