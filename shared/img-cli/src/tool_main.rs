//! What every tool's `main` shares around its body: exit codes (0 success, 1 for a failure; 2
//! for a usage error, see [`crate::inputs::usage_error`]) and quiet ends of pipes.

use std::process::ExitCode;

use crate::errors::one_line;

/// Runs a tool's body: an error becomes one line on stderr, `tool: cause: cause`, and exit 1.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    restore_sigpipe();
    match body() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{tool}: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `img-ls | head -1` should end quietly, as Unix tools do, not panic on EPIPE.
fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to its default is async-signal-safe and has no
    // preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
