//! Progress of blob transfers: bars on stderr when it is a terminal, nothing otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;

/// Told about every blob transfer; implementations must be shareable between worker threads.
pub trait Progress: Sync {
    /// A transfer of `size` bytes begins with `done` of them already there.
    fn start(&self, what: &str, digest: &Digest, size: u64, done: u64) -> Box<dyn Transfer + '_>;
    /// A line for humans (with `-v`), printed above the bars.
    fn message(&self, _line: &str) {}
    /// What a finished job did, in one line left on the terminal once its bars are cleared
    /// (nothing where no bars are drawn).
    fn summary(&self, _line: &str) {}
}

/// `pulled docker.io/library/alpine:3.20: 3 layers, 3.40 MiB fetched in 1.2 s`: `count`
/// things called `unit`, `bytes` moved `how`.
pub fn summary_line(
    verb: &str,
    name: &str,
    count: usize,
    unit: &str,
    bytes: u64,
    how: &str,
    started: Instant,
) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!(
        "{verb} {name}: {count} {unit}{plural}, {} {how} in {:.1} s",
        HumanBytes(bytes),
        started.elapsed().as_secs_f64()
    )
}

/// One transfer in progress.
pub trait Transfer: Send + Sync {
    fn advance(&self, bytes: u64);
    /// The transfer went back to `position` (a retry starting over).
    fn rewind(&self, position: u64);
    fn finish(&self);
}

/// No output.
pub struct Silent;

struct NoTransfer;

impl Transfer for NoTransfer {
    fn advance(&self, _: u64) {}
    fn rewind(&self, _: u64) {}
    fn finish(&self) {}
}

impl Progress for Silent {
    fn start(&self, _: &str, _: &Digest, _: u64, _: u64) -> Box<dyn Transfer + '_> {
        Box::new(NoTransfer)
    }
}

/// Per-blob bars on stderr, drawn only if stderr is a terminal; `verbose` lines go to stderr
/// either way.
pub struct Bars {
    multi: Option<MultiProgress>,
    verbose: bool,
    lock: Mutex<()>,
}

impl Bars {
    pub fn new(verbose: bool) -> Bars {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars { multi, verbose, lock: Mutex::new(()) }
    }
}

struct Bar(ProgressBar);

impl Transfer for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn rewind(&self, position: u64) {
        self.0.set_position(position);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bars {
    fn start(&self, what: &str, digest: &Digest, size: u64, done: u64) -> Box<dyn Transfer + '_> {
        let Some(multi) = &self.multi else { return Box::new(NoTransfer) };
        let bar = multi.add(ProgressBar::new(size));
        let style = ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{what} {}", digest.short()));
        bar.set_position(done);
        Box::new(Bar(bar))
    }

    fn summary(&self, line: &str) {
        if self.multi.is_some() {
            let _guard = self.lock.lock();
            eprintln!("{line}");
        }
    }

    fn message(&self, line: &str) {
        if !self.verbose {
            return;
        }
        let _guard = self.lock.lock();
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}
