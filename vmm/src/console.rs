//! The guest's serial console on the user's terminal: raw mode ([`RawTerminal`]) and the relay
//! between the console socket qemu listens on and stdin/stdout ([`relay`]).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::termios::{self, LocalModes, OptionalActions, OutputModes, SpecialCodeIndex, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// The byte that detaches `moby console` (Ctrl-], as telnet and `virsh console`).
pub const DETACH_BYTE: u8 = 0x1d;

/// The terminal on stdin, switched to raw mode until dropped.
#[derive(Debug)]
pub struct RawTerminal {
    fd: OwnedFd,
    saved: Termios,
}

impl RawTerminal {
    /// Switches the terminal on stdin to raw mode; `None` when stdin is not a terminal.
    ///
    /// Output processing stays on (a `\n` from us is still a new line), and with `keep_signals`
    /// Ctrl-C still raises SIGINT, so that `moby run` can shut the VM down cleanly; Ctrl-Z and
    /// Ctrl-\ are passed to the guest either way.
    pub fn enter(keep_signals: bool) -> io::Result<Option<RawTerminal>> {
        let stdin = io::stdin();
        if !termios::isatty(stdin.as_fd()) {
            return Ok(None);
        }
        let fd = stdin.as_fd().try_clone_to_owned()?;
        let saved = termios::tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        raw.output_modes |= OutputModes::OPOST | OutputModes::ONLCR;
        if keep_signals {
            raw.local_modes |= LocalModes::ISIG;
            raw.special_codes[SpecialCodeIndex::VSUSP] = 0;
            raw.special_codes[SpecialCodeIndex::VQUIT] = 0;
        }
        termios::tcsetattr(&fd, OptionalActions::Now, &raw)?;
        Ok(Some(RawTerminal { fd, saved }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // Nothing sensible to do if the terminal is gone.
        let _ = termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

/// Why [`relay`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// qemu closed the console (the VM is gone).
    Closed,
    /// The user typed the detach byte.
    Detached,
}

/// Reads stdin on a thread of its own (reads from a terminal cannot be cancelled) and forwards
/// what it reads; the channel closes at end of input.
fn stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// A guest's serial console: what it prints and, where the backend allows, a way to type to it.
pub struct Console {
    from_guest: Box<dyn AsyncRead + Send + Unpin>,
    to_guest: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    history: Option<PathBuf>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("input", &self.to_guest.is_some())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console read from `from_guest` and written to `to_guest` (`None`: output only).
    pub fn new(
        from_guest: Box<dyn AsyncRead + Send + Unpin>,
        to_guest: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    ) -> Console {
        Console {
            from_guest,
            to_guest,
            history: None,
        }
    }

    /// The same console, whose output so far is kept in `log`.
    pub fn with_history(mut self, log: PathBuf) -> Console {
        self.history = Some(log);
        self
    }

    /// The file holding what the console printed before it was attached to, if the backend
    /// keeps one.
    pub fn history(&self) -> Option<&Path> {
        self.history.as_deref()
    }

    /// Connects to a console socket the VM program listens on (qemu's `console.sock`).
    pub async fn attach(socket: &Path) -> io::Result<Console> {
        let stream = UnixStream::connect(socket).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot attach to the console {}: {e}", socket.display()),
            )
        })?;
        let (from_guest, to_guest) = stream.into_split();
        Ok(Console::new(Box::new(from_guest), Some(Box::new(to_guest))))
    }
}

/// Copies guest output from the console to `out` and stdin to the guest until the console closes
/// (the VM is gone) or, with `detach` set, the user types it. At the end of stdin, input stops but
/// output goes on; a console without input never reads stdin.
pub async fn relay(console: Console, detach: Option<u8>, out: &mut (dyn Write + Send)) -> io::Result<RelayEnd> {
    let Console {
        mut from_guest,
        to_guest,
        ..
    } = console;
    let mut input = to_guest.is_some().then(stdin_reader);
    let mut to_guest = to_guest.unwrap_or_else(|| Box::new(tokio::io::sink()));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = from_guest.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    out.flush()?;
                    return Ok(RelayEnd::Closed);
                }
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
            bytes = async {
                match input.as_mut() {
                    Some(input) => input.recv().await,
                    None => std::future::pending().await,
                }
            }, if input.is_some() => {
                let Some(bytes) = bytes else {
                    input = None;
                    continue;
                };
                match detach.and_then(|d| bytes.iter().position(|&b| b == d)) {
                    Some(at) => {
                        to_guest.write_all(&bytes[..at]).await?;
                        return Ok(RelayEnd::Detached);
                    }
                    None => to_guest.write_all(&bytes).await?,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn copies_output_until_the_socket_closes() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("console.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"Linux version 6.1\r\n").await.unwrap();
            s.write_all(b"login: ").await.unwrap();
        });
        let mut out = Vec::new();
        let console = Console::attach(&sock).await.unwrap();
        let end = relay(console, Some(DETACH_BYTE), &mut out).await.unwrap();
        server.await.unwrap();
        assert_eq!(end, RelayEnd::Closed);
        assert_eq!(out, b"Linux version 6.1\r\nlogin: ");
    }

    #[tokio::test]
    async fn missing_socket_is_named() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("console.sock");
        let e = Console::attach(&sock).await.unwrap_err().to_string();
        assert!(
            e.contains("cannot attach to the console") && e.contains("console.sock"),
            "{e}"
        );
    }
}
