//! `-t`: a pseudo-terminal made inside the container (from its own /dev/pts instance), its
//! master handed to img-run over a socket, the caller's terminal in raw mode (restored on
//! exit) and its window size copied across.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, bail};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::sys::termios::{self, SetArg, Termios};

fn check(rc: libc::c_int, what: &str) -> Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()).context(what.to_string()) } else { Ok(rc) }
}

/// Opens a new pty pair from the container's /dev/ptmx: (master, slave).
pub fn open_pair() -> Result<(OwnedFd, OwnedFd)> {
    // SAFETY: open/ioctl on descriptors we own; TIOCGPTPEER opens the slave without a path.
    unsafe {
        let master = check(
            libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC),
            "opening /dev/ptmx",
        )?;
        let master = OwnedFd::from_raw_fd(master);
        let unlock: libc::c_int = 0;
        check(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock), "unlocking the pty")?;
        let slave = check(
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ),
            "opening the pty's slave",
        )?;
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}

/// Binds the pty's slave over /dev/console, as runc and docker do for a terminal.
pub fn bind_console(master: BorrowedFd) -> Result<()> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty's number.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) }, "TIOCGPTN")?;
    let console = std::path::Path::new("/dev/console");
    if std::fs::symlink_metadata(console).is_err() {
        File::create(console).context("creating /dev/console")?;
    }
    let slave = format!("/dev/pts/{n}");
    nix::mount::mount(Some(slave.as_str()), console, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .context("binding the terminal to /dev/console")
}

/// Makes the slave this process's controlling terminal and its stdin, stdout and stderr.
pub fn attach(slave: OwnedFd) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    // SAFETY: ioctl/dup2 on a descriptor we own.
    unsafe {
        check(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0), "making the pty the controlling terminal")?;
        for target in 0..3 {
            check(libc::dup2(slave.as_raw_fd(), target), "dup2 of the pty")?;
        }
    }
    Ok(())
}

/// Sends a descriptor over a unix socket.
pub fn send_fd(sock: BorrowedFd, fd: BorrowedFd) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"t")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("sending the pty to img-run")?;
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`].
pub fn recv_fd(sock: BorrowedFd) -> Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .context("receiving the pty")?;
    for c in msg.cmsgs().context("reading the pty message")? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel installed this descriptor for us.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(*fd) }));
        }
    }
    if msg.bytes == 0 {
        return Ok(None);
    }
    bail!("no descriptor in the pty message")
}

/// The window size of a terminal, if it is one.
pub fn winsize(of: BorrowedFd) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ writes a winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(of.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0).then_some(ws)
    }
}

/// Sets the window size of a pty.
pub fn set_winsize(pty: BorrowedFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads a winsize struct.
    unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, ws) };
}

/// Copies the window size of `from` (the caller's terminal) to `to` (the pty).
pub fn copy_winsize(from: BorrowedFd, to: BorrowedFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The caller's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode for stdin if it is a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

/// Relays between the caller and the pty's master: output to stdout, and with `-i` stdin
/// to the pty. Driven by img-run's poll loop (no threads: img-run sits outside the PID
/// namespace it made for its child, where the kernel allows no new threads).
pub struct Relay {
    /// None once img-run hung the pty up ([`Relay::hang_up`]).
    master: Option<File>,
    /// Still reading the pty (until every slave descriptor is closed).
    pub output_open: bool,
    /// Still forwarding stdin (with `-i`, until it ends).
    pub input_open: bool,
}

/// What a read of the caller's input came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Relayed (or nothing to read right now).
    Relayed,
    /// The input ended: end of file, or an error (EIO once a terminal hung up).
    Ended,
}

impl Relay {
    pub fn new(master: OwnedFd, interactive: bool) -> Relay {
        Relay { master: Some(File::from(master)), output_open: true, input_open: interactive }
    }

    /// The pty's master, until it is hung up.
    pub fn master(&self) -> Option<BorrowedFd<'_>> {
        self.master.as_ref().map(File::as_fd)
    }

    /// Closes the master: the kernel hangs the container's terminal up, which sends its
    /// session leader SIGHUP and makes its reads fail, as a closed terminal window does.
    pub fn hang_up(&mut self) {
        self.master = None;
        self.output_open = false;
        self.input_open = false;
    }

    /// Copies what the pty has to stdout; `false` once it is closed.
    pub fn pump_output(&mut self) {
        let Some(master) = self.master.as_mut() else { return };
        let mut buf = [0u8; 16384];
        match master.read(&mut buf) {
            Ok(0) => self.output_open = false,
            Ok(n) => {
                let mut out = io::stdout().lock();
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    self.output_open = false;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            // EIO: every slave descriptor is closed.
            Err(_) => self.output_open = false,
        }
    }

    /// Copies what stdin has to the pty.
    pub fn pump_input(&mut self) -> Input {
        let Some(master) = self.master.as_mut() else { return Input::Relayed };
        let mut buf = [0u8; 4096];
        // SAFETY: read into a buffer we own.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            return Input::Relayed;
        }
        if n <= 0 {
            self.input_open = false;
            return Input::Ended;
        }
        if master.write_all(&buf[..n as usize]).is_err() {
            self.input_open = false;
        }
        Input::Relayed
    }

    /// Copies whatever output is left once the container has ended.
    pub fn drain(&mut self) {
        let Some(master) = self.master.as_mut() else { return };
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fd = master.as_raw_fd();
            libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK);
        }
        while self.output_open {
            let mut buf = [0u8; 16384];
            match master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => self.output_open = false,
            }
        }
    }
}
