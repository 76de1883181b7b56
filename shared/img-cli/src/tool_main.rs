//! What every tool's `main` shares around its body: exit codes (0, 1 for a failure, 2 for a
//! usage error), quiet ends of pipes, and the usage error of a tool given no image.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::errors::one_line;

/// A tool that reads images from arguments or stdin has nothing to read when it got no
/// argument and stdin is a terminal: that is a usage error (exit 2), `no image given: {hint}`.
/// (An empty pipeline is not: it selected nothing, and there is nothing to do.)
pub fn require_images<A: clap::CommandFactory>(images: &[String], hint: &str) {
    if images.is_empty() && std::io::stdin().is_terminal() {
        A::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, format!("no image given: {hint}"))
            .exit();
    }
}

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
