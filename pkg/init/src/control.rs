//! The control socket of init and the `service` command that talks to it.
//!
//! Protocol (unix stream socket [`SOCKET`]): the client writes one request line, init answers with
//! text and closes. An answer starting with `error: ` is a failure. Requests:
//! `ls`, `start NAME`, `stop NAME`, `restart NAME`, `logs NAME`, `poweroff`, `halt`, `reboot`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

/// Where init listens. Containers that bind-mount it (or `/run`) can control init.
pub const SOCKET: &str = "/run/moby-init.sock";

pub fn usage() -> &'static str {
    "usage: service ls | start NAME | stop NAME | restart NAME | logs NAME | poweroff | halt | reboot"
}

/// The `service` command: sends `args` as one request, prints the answer.
pub fn client(args: &[String]) -> ExitCode {
    let request = args.join(" ");
    if request.is_empty() || request == "-h" || request == "--help" || request == "help" {
        println!("{}", usage());
        return if request.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let socket = std::env::var("MOBY_INIT_SOCKET").unwrap_or_else(|_| SOCKET.to_string());
    let mut stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(err) => {
            eprintln!(
                "service: cannot connect to init at {socket}: {err} (is this the moby init's system, \
                 and is {socket} bind-mounted into this container?)"
            );
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    if let Err(err) = stream.write_all(format!("{request}\n").as_bytes()) {
        eprintln!("service: sending the request to {socket} failed: {err}");
        return ExitCode::FAILURE;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    if let Err(err) = stream.read_to_string(&mut answer) {
        eprintln!("service: reading the answer from {socket} failed: {err}");
        return ExitCode::FAILURE;
    }
    if let Some(message) = answer.strip_prefix("error: ") {
        eprint!("service: {message}");
        return ExitCode::FAILURE;
    }
    print!("{answer}");
    ExitCode::SUCCESS
}

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    List,
    Start(String),
    Stop(String),
    Restart(String),
    Logs(String),
    Power(crate::supervisor::Shutdown),
}

pub fn parse(line: &str) -> Result<Request, String> {
    use crate::supervisor::Shutdown;
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["ls"] | ["list"] => Request::List,
        ["start", name] => Request::Start(name.to_string()),
        ["stop", name] => Request::Stop(name.to_string()),
        ["restart", name] => Request::Restart(name.to_string()),
        ["logs", name] => Request::Logs(name.to_string()),
        ["poweroff"] => Request::Power(Shutdown::PowerOff),
        ["halt"] => Request::Power(Shutdown::Halt),
        ["reboot"] => Request::Power(Shutdown::Reboot),
        _ => return Err(format!("unknown request {line:?}; {}", usage())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::Shutdown;

    #[test]
    fn requests_parse() {
        assert_eq!(parse("ls"), Ok(Request::List));
        assert_eq!(parse("stop getty\n"), Ok(Request::Stop("getty".into())));
        assert_eq!(parse("poweroff"), Ok(Request::Power(Shutdown::PowerOff)));
        assert!(parse("stop").unwrap_err().contains("usage"));
    }
}
