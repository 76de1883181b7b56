//! img-login: check credentials against a registry, then store them where docker and podman
//! read them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{CommandFactory, Parser};
use img::registry::auth::Credentials;
use img::registry::{Options, Registry, docker_config, login};
use serde_json::json;

/// Log in to a registry: the credentials are checked against it (Basic, or the token service
/// it names), then stored in $DOCKER_CONFIG/config.json (default ~/.docker/config.json), or in
/// the credential helper that file names. Prints one JSON record.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The user name (asked for on a terminal when not given)
    #[arg(short, long, value_name = "USER")]
    username: Option<String>,
    /// The password, on the command line: others on this machine can see it (a warning says so)
    #[arg(short, long, value_name = "PASSWORD", conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of stdin
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Store the credentials in this file instead (docker config.json or containers auth.json form)
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Allow this registry without TLS verification or over plain http
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// Trust this CA certificate (PEM) too, besides /etc/docker/certs.d/HOST/*.crt
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
    /// The registry (host[:port]; default: Docker Hub)
    #[arg(default_value = "docker.io")]
    registry: String,
}

fn usage(message: &str) -> ! {
    Args::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
}

fn main() -> ExitCode {
    img_cli::generate::<Args>("img-login");
    img_cli::run("img-login", || {
        let args = Args::parse();
        let registry = docker_config::registry_name(&args.registry)?;
        let terminal = std::io::stdin().is_terminal();
        if args.password.is_some() {
            eprintln!("img-login: warning: a password on the command line is insecure; use --password-stdin");
        }
        let username = match &args.username {
            Some(u) => u.clone(),
            None if terminal => prompt("Username: ", true)?,
            None => usage("not a terminal: give --username and --password-stdin"),
        };
        let password = match &args.password {
            Some(p) => p.clone(),
            None if args.password_stdin => read_line(&mut std::io::stdin().lock())?,
            None if terminal => prompt("Password: ", false)?,
            None => usage("not a terminal: give the password with --password-stdin"),
        };
        if username.is_empty() || password.is_empty() {
            bail!("a user name and a password are needed");
        }
        let options = Options {
            insecure: args.insecure.clone(),
            ca_files: args.ca_cert.clone(),
            credentials: Some(Credentials::Basic { username: username.clone(), password: password.clone() }),
            retries: 2,
            ..Options::default()
        }
        .with_env();
        let connected = Registry::connect(&registry, &options)?;
        login::verify(&connected).map_err(|e| e.context(registry.clone()))?;
        let path = match &args.authfile {
            Some(f) => f.clone(),
            None => docker_config::default_path()?,
        };
        let place = docker_config::save(&path, &registry, &username, &password)?;
        eprintln!("img-login: logged in to {registry} (credentials in {place})");
        img::record::print(&json!({
            "registry": registry,
            "username": username,
            "loggedIn": true,
            "store": place.to_string(),
        }))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// One line without its line ending.
fn read_line(input: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Asks on stderr and reads the answer from the terminal on stdin; without echo for a password.
fn prompt(question: &str, echo: bool) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    // Echo goes off before the question is asked, so an answer typed at once is not shown.
    let saved = if echo { None } else { tcgetattr(&stdin).ok() };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let answer = read_line(&mut stdin.lock());
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
    }
    answer
}
