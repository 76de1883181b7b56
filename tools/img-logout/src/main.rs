//! img-logout: remove a registry's stored credentials.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use img::registry::docker_config;
use serde_json::json;

/// Log out of a registry: its credentials are removed from $DOCKER_CONFIG/config.json (default
/// ~/.docker/config.json) and erased from the credential helper that file names. Not being
/// logged in is not an error (as docker). Prints one JSON record.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Remove them from this file instead (docker config.json or containers auth.json form)
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The registry (host[:port]; default: Docker Hub)
    #[arg(default_value = "docker.io")]
    registry: String,
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-logout");
    img_cli::run("img-logout", || {
        let args = Args::parse();
        let registry = docker_config::registry_name(&args.registry)?;
        let path = match &args.authfile {
            Some(f) => f.clone(),
            None => docker_config::default_path()?,
        };
        let removed = docker_config::remove(&path, &registry)?;
        match &removed {
            Some(place) => eprintln!("img-logout: removed the login for {registry} from {place}"),
            None => eprintln!("img-logout: not logged in to {registry}"),
        }
        img::record::print(&json!({"registry": registry, "loggedIn": false, "removed": removed.is_some()}))?;
        Ok(ExitCode::SUCCESS)
    })
}
