//! The images a tool is asked to work on, by the one rule every tool follows (see
//! [`img::record::source`]), and the usage errors of naming none.

use anyhow::Result;
use img::layout::resolve::Name;
use img::record::{self, Input};

/// The images named by the arguments or, with none, by the records upstream wrote on stdin.
/// No argument and nothing upstream (a terminal, /dev/null), or an empty argument, is a usage
/// error: `TOOL: no image given: {hint}`, exit 2.
pub fn images<A: clap::CommandFactory>(args: &[String], hint: &str) -> Result<Vec<Input>> {
    match record::source(args) {
        Ok(source) => source.read(),
        Err(usage) => usage_error::<A>(&format!("{usage}: {hint}")),
    }
}

/// [`images`], each name then checked as the name of an image in a layout ([`Name::parse`])
/// before anything is looked up: a malformed one fails the tool (exit 1) with nothing done,
/// with the same error whichever tool it was given to.
pub fn local_images<A: clap::CommandFactory>(args: &[String], hint: &str) -> Result<Vec<Input>> {
    let inputs = images::<A>(args, hint)?;
    check_names(&inputs)?;
    Ok(inputs)
}

/// Checks every name as the name of an image in a layout; the first malformed one is the error.
pub fn check_names(inputs: &[Input]) -> Result<()> {
    for input in inputs {
        Name::parse(&input.name)?;
    }
    Ok(())
}

/// A usage error: `TOOL: message` on one line of stderr, and exit 2 (as clap exits for a flag
/// it does not know).
pub fn usage_error<A: clap::CommandFactory>(message: &str) -> ! {
    eprintln!("{}: {message}", A::command().get_name());
    std::process::exit(2)
}
