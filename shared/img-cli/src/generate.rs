//! Man pages and shell completions, generated from a tool's clap definition by the tool itself.
//!
//! `IMG_GENERATE=man img-pull` prints img-pull's man page (roff) and exits 0;
//! `IMG_GENERATE=bash|zsh|fish img-pull` prints that shell's completion script. An environment
//! variable rather than a flag or subcommand keeps every tool's flags docker's and its own: no
//! `--generate` to document, to complete, or to collide with. `scripts/install` uses it to lay
//! the pages and scripts out beside the binaries.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

/// The variable that asks a tool for its man page or a completion script.
pub const VAR: &str = "IMG_GENERATE";

/// What `IMG_GENERATE` may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Man,
    Completion(Shell),
}

impl Output {
    /// `man`, `bash`, `zsh` or `fish`; anything else is not understood.
    pub fn parse(value: &str) -> Option<Output> {
        match value {
            "man" => Some(Output::Man),
            "bash" => Some(Output::Completion(Shell::Bash)),
            "zsh" => Some(Output::Completion(Shell::Zsh)),
            "fish" => Some(Output::Completion(Shell::Fish)),
            _ => None,
        }
    }
}

/// Called first thing in a tool's `main`: with `IMG_GENERATE` unset it does nothing at all;
/// set, it prints what was asked for to stdout and exits (0, 1 if stdout failed, 2 for a value
/// it does not know), before the tool opens, seals or closes anything.
pub fn generate<A: CommandFactory>(tool: &'static str) {
    let Some(value) = std::env::var_os(VAR) else { return };
    let Some(output) = value.to_str().and_then(Output::parse) else {
        eprintln!("{tool}: {VAR}={}: expected man, bash, zsh or fish", value.to_string_lossy());
        std::process::exit(2);
    };
    let mut out = std::io::stdout().lock();
    let written = render::<A>(tool, output, &mut out).and_then(|()| out.flush());
    if let Err(e) = written {
        // `| head` closing the pipe ends it quietly, as the tools' own output does.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(1);
        }
        eprintln!("{tool}: writing the {VAR}={} output: {e}", value.to_string_lossy());
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// Writes `tool`'s man page or completion script.
pub fn render<A: CommandFactory>(
    tool: &'static str,
    output: Output,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    let mut cmd = A::command().name(tool).bin_name(tool);
    match output {
        Output::Man => {
            // Man page titles are upper case by convention: `.TH IMG-PULL 1`.
            clap_mangen::Man::new(cmd).title(tool.to_uppercase()).manual("img").render(w)
        }
        Output::Completion(shell) => {
            clap_complete::generate(shell, &mut cmd, tool, w);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(about = "A tool for the test")]
    struct Args {
        /// Which platform
        #[arg(long)]
        platform: Option<String>,
        images: Vec<String>,
    }

    fn rendered(output: Output) -> String {
        let mut buf = Vec::new();
        render::<Args>("img-example", output, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn parses_the_four_outputs_and_nothing_else() {
        assert_eq!(Output::parse("man"), Some(Output::Man));
        assert_eq!(Output::parse("fish"), Some(Output::Completion(Shell::Fish)));
        assert_eq!(Output::parse("powershell"), None);
        assert_eq!(Output::parse(""), None);
    }

    #[test]
    fn man_page_has_an_upper_case_title_and_the_flags() {
        let page = rendered(Output::Man);
        assert!(page.contains(".TH IMG-EXAMPLE 1"), "{page}");
        assert!(page.contains("platform"), "{page}");
    }

    #[test]
    fn completions_name_the_tool_and_its_long_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = rendered(Output::Completion(shell));
            assert!(script.contains("img-example"), "{shell}: {script}");
            assert!(script.contains("platform"), "{shell}: {script}");
        }
    }
}
