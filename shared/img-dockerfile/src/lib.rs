//! The Dockerfile front end: what a Dockerfile says, before anything is built. Kept apart as
//! BuildKit keeps its own: the parser (text → instruction nodes with directives and heredocs),
//! argument splitting, typed instructions, variable expansion, the stage graph,
//! `.dockerignore` patterns, and the build checks (`img-build --check`). It reads text and
//! nothing else, so it links nothing of the image library; img-build executes what it gives.

mod args;
pub mod checks;
pub mod dockerignore;
pub mod error;
pub mod instruction;
pub mod mount;
pub mod node;
pub mod parser;
pub mod shell;
pub mod stages;

pub use error::ParseError;
