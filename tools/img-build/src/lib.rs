//! img-build: Dockerfile builds into an OCI layout. This crate holds the Dockerfile front end:
//! the parser (text → instruction nodes), argument splitting, and variable expansion.

pub mod args;
pub mod build;
pub mod cache;
pub mod context;
pub mod dockerignore;
pub mod download;
pub mod instruction;
pub mod output;
pub mod parser;
pub mod run_step;
pub mod shell;
pub mod ssh_agent;
pub mod stages;
pub mod state;
