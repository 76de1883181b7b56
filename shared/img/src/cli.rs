//! What every tool's `main` shares: the `--layout` flag, one-line errors and exit codes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--layout DIR`, flattened into every tool's arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct LayoutArg {
    /// The OCI image layout to use (default: the store's, under $IMG_ROOT or
    /// ~/.local/share/img)
    #[arg(long, value_name = "DIR", env = "IMG_LAYOUT")]
    pub layout: Option<PathBuf>,
}

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

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// `img-ls | head -1` should end quietly, as Unix tools do, not panic on EPIPE.
fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to its default is async-signal-safe and has no
    // preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
