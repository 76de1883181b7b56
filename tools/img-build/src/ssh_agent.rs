//! `RUN --mount=type=ssh`: the step reaches a forwarded SSH agent through a socket of its own,
//! as with BuildKit. img-build listens on a new socket in the step's scratch directory, owned
//! and moded as the mount asks, which is bind-mounted into the container, and relays every
//! connection to the agent. The host's agent socket itself is never mounted: the step cannot
//! change it or learn where it lives, and its owner and mode stay the host's business.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Scope};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long a waiting thread sleeps before it looks whether the step has ended.
const TICK_MS: u16 = 50;

/// A listening socket that stands for one forwarded agent during one RUN step; the socket
/// file is removed when this is dropped.
pub struct AgentProxy {
    listener: UnixListener,
    socket: PathBuf,
    agent: PathBuf,
}

impl AgentProxy {
    /// Listens at `socket` on behalf of the agent at `agent`; `uid` and `gid` are ids in the
    /// container. Bound before the step's helper starts, so the file exists to be mounted and
    /// clients that connect before the relays start wait in the listen backlog.
    pub fn bind(socket: PathBuf, agent: &Path, uid: u32, gid: u32, mode: u32) -> Result<AgentProxy> {
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("listening on {} for the SSH agent", socket.display()))?;
        let proxy = AgentProxy { listener, socket, agent: agent.to_path_buf() };
        // Polled, so the accepting thread notices when the step has ended.
        proxy.listener.set_nonblocking(true).context("making the SSH agent socket non-blocking")?;
        let (host_uid, host_gid) = host_ids(uid, gid);
        std::os::unix::fs::chown(&proxy.socket, Some(host_uid), Some(host_gid))
            .with_context(|| format!("giving the SSH agent socket to {uid}:{gid}"))?;
        fs::set_permissions(&proxy.socket, fs::Permissions::from_mode(mode & 0o7777))
            .with_context(|| format!("setting the SSH agent socket's mode to {mode:o}"))?;
        Ok(proxy)
    }

    /// The socket's path on the host, to bind-mount into the container.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Relays one client to a fresh connection to the agent, until either side closes or the
    /// step has ended.
    fn relay(&self, client: UnixStream, step_done: &AtomicBool) {
        let agent = match UnixStream::connect(&self.agent) {
            Ok(agent) => agent,
            Err(e) => {
                eprintln!("img-build: connecting to the SSH agent {}: {e}", self.agent.display());
                return;
            }
        };
        // A client that goes away mid-message is the step's business, not an error of the build.
        let _ = copy_both_ways(&client, &agent, step_done);
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket);
    }
}

/// Host ids for a socket the container sees as owned by `uid:gid`. Rootless, the container's
/// root is the invoking user (and no other id is mapped).
fn host_ids(uid: u32, gid: u32) -> (u32, u32) {
    if nix::unistd::geteuid().is_root() {
        return (uid, gid);
    }
    let own = |id: u32, invoking: u32| if id == 0 { invoking } else { id };
    (own(uid, nix::unistd::geteuid().as_raw()), own(gid, nix::unistd::getegid().as_raw()))
}

/// Runs `wait_for_step` while serving the proxies' clients. The threads this starts are all
/// joined before it returns.
pub fn serve_while<T>(proxies: &[AgentProxy], wait_for_step: impl FnOnce() -> T) -> T {
    if proxies.is_empty() {
        return wait_for_step();
    }
    let step_done = &AtomicBool::new(false);
    thread::scope(|scope| {
        // Set even if the wait panics, so the scope's join cannot hang.
        let _done_on_exit = SetOnDrop(step_done);
        scope.spawn(move || accept_connections(proxies, step_done, scope));
        wait_for_step()
    })
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Accepts clients on every proxy until the step has ended; a thread relays each.
fn accept_connections<'scope, 'env>(
    proxies: &'env [AgentProxy],
    step_done: &'env AtomicBool,
    scope: &'scope Scope<'scope, 'env>,
) {
    while !step_done.load(Ordering::Relaxed) {
        let mut fds: Vec<PollFd> =
            proxies.iter().map(|p| PollFd::new(p.listener.as_fd(), PollFlags::POLLIN)).collect();
        if poll(&mut fds, PollTimeout::from(TICK_MS)).is_err() {
            thread::sleep(Duration::from_millis(TICK_MS.into())); // EINTR, or out of memory
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        for (proxy, _) in proxies.iter().zip(ready).filter(|(_, ready)| *ready) {
            match proxy.listener.accept() {
                Ok((client, _)) => {
                    scope.spawn(move || proxy.relay(client, step_done));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => eprintln!("img-build: accepting an SSH agent client: {e}"),
            }
        }
    }
}

/// Copies what either stream receives to the other, until either closes or `stop` is set.
fn copy_both_ways(a: &UnixStream, b: &UnixStream, stop: &AtomicBool) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(a.as_fd(), PollFlags::POLLIN), PollFd::new(b.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(TICK_MS)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = fds.map(|f| f.any().unwrap_or(false));
        for (ready, (mut from, mut to)) in ready.into_iter().zip([(a, b), (b, a)]) {
            if ready {
                let n = from.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                to.write_all(&buf[..n])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::fs::FileTypeExt;

    /// An "agent" that answers each line with `agent: <line>`, for as many clients as come.
    fn echo_agent(path: &Path) -> thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        thread::spawn(move || {
            for client in listener.incoming() {
                let client = client.unwrap();
                thread::spawn(move || {
                    let mut lines = io::BufReader::new(&client).lines();
                    while let Some(Ok(line)) = lines.next() {
                        if (&client).write_all(format!("agent: {line}\n").as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        })
    }

    fn ask(client: &UnixStream, line: &str) -> String {
        let mut writer = client;
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        io::BufReader::new(client).read_line(&mut answer).unwrap();
        answer
    }

    #[test]
    fn relays_clients_to_the_agent_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent.sock");
        let _agent = echo_agent(&agent);
        let socket = dir.path().join("proxy.sock");
        let proxy = AgentProxy::bind(socket.clone(), &agent, 0, 0, 0o600).unwrap();
        let meta = fs::metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

        // A client that connects before the relays start waits in the backlog.
        let early = UnixStream::connect(&socket).unwrap();
        let proxies = [proxy];
        let (answers, still_open) = serve_while(&proxies, || {
            let late = UnixStream::connect(&socket).unwrap();
            (vec![ask(&early, "one"), ask(&late, "two"), ask(&early, "three")], late)
        });
        assert_eq!(answers, ["agent: one\n", "agent: two\n", "agent: three\n"]);
        // serve_while returned although a client is still connected: its relay was stopped.
        drop(still_open);
        drop(proxies);
        assert!(!socket.exists(), "the socket file is removed with the proxy");
    }

    #[test]
    fn a_missing_agent_closes_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("proxy.sock");
        let proxy = AgentProxy::bind(socket.clone(), &dir.path().join("gone.sock"), 0, 0, 0o600).unwrap();
        let read = serve_while(&[proxy], || {
            let mut client = UnixStream::connect(&socket).unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).map(|_| rest.len())
        });
        assert_eq!(read.unwrap(), 0, "the client sees the connection closed");
    }
}
