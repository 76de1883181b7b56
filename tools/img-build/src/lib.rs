//! img-build: Dockerfile builds into an OCI layout. The Dockerfile front end (parser,
//! instructions, variable expansion, stages, `.dockerignore` patterns) is the img-dockerfile
//! crate; this crate executes what it gives: the build steps, the cache, the build context, RUN
//! in a container (emulated for another architecture), ADD's downloads, SSH agent forwarding, the image state and the output.

pub mod build;
pub mod cache;
pub mod context;
pub mod download;
pub mod emulation;
pub mod jobs;
pub mod log;
pub mod output;
pub mod platforms;
pub mod run_step;
pub mod ssh_agent;
pub mod state;
