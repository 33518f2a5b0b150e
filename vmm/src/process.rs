//! Other processes, known by pid: what program one runs ([`process_name`]), whether it still
//! runs ([`alive`]), what a recorded pid is ([`ProcessStatus::judge`]), signalling it ([`send`])
//! and waiting for it to exit, killing it if it takes too long ([`wait_or_kill`]).
//!
//! Linux answers from `/proc`; macOS, which has none (and where hyperkit runs), from `ps`.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{kill_process, Pid, Signal};

/// Makes the child of `cmd` a session leader (`setsid`), without a controlling terminal: it
/// outlives the process that starts it (a detached VM, a network's switch).
#[allow(unsafe_code)]
pub(crate) fn new_session(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec; setsid is async-signal-safe and nothing
    // is allocated.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(io::Error::from));
    }
}

/// How long a process may take to exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often [`wait_or_kill`] looks whether the process is gone.
const POLL: Duration = Duration::from_millis(50);

/// Whether a recorded pid (a VM's pid file) names a live process of the program that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessStatus {
    /// No pid recorded.
    Stopped,
    /// The pid names a live process of the program (qemu, hyperkit).
    Running {
        /// Its pid.
        pid: u32,
    },
    /// The pid is left over from a run that ended without cleaning up.
    Stale {
        /// The recorded pid.
        pid: u32,
        /// Why it is stale.
        why: StaleReason,
    },
}

/// Why a recorded pid is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    /// No process has that pid (or only a zombie does).
    Gone,
    /// The process with that pid runs another program (the pid was reused); holds its name.
    OtherProgram(String),
}

impl ProcessStatus {
    /// Judges a recorded `pid`: [`ProcessStatus::Stopped`] without one, else
    /// [`ProcessStatus::Running`] when `probe` (e.g. [`process_name`]) names a process that
    /// `is_program` accepts, else [`ProcessStatus::Stale`]. `probe` returns `None` when no process
    /// has the pid.
    pub fn judge(
        pid: Option<u32>,
        is_program: impl Fn(&str) -> bool,
        probe: impl FnOnce(u32) -> io::Result<Option<String>>,
    ) -> io::Result<ProcessStatus> {
        let Some(pid) = pid else {
            return Ok(ProcessStatus::Stopped);
        };
        Ok(match probe(pid)? {
            None => ProcessStatus::Stale {
                pid,
                why: StaleReason::Gone,
            },
            Some(name) if is_program(&name) => ProcessStatus::Running { pid },
            Some(name) => ProcessStatus::Stale {
                pid,
                why: StaleReason::OtherProgram(name),
            },
        })
    }
}

/// Whether this system has a `/proc` (Linux does, macOS does not).
pub fn has_proc() -> bool {
    Path::new("/proc/self").exists()
}

/// What `ps -o FIELD= -p PID` says of process `pid` (trimmed), `None` when no process has that pid.
fn ps(field: &str, pid: u32) -> io::Result<Option<String>> {
    let out = Command::new("ps")
        .args(["-o", &format!("{field}="), "-p", &pid.to_string()])
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// `/proc/PID/FILE`, `None` when no process has that pid.
fn proc_file(pid: u32, file: &str) -> io::Result<Option<Vec<u8>>> {
    match fs::read(format!("/proc/{pid}/{file}")) {
        Ok(content) => Ok(Some(content)),
        // ESRCH: the process went away while its file was read.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The program name of process `pid` (the base name of its argv\[0\]), or `None` when no process
/// has that pid or it is a zombie (whose cmdline is empty): from `/proc/PID/cmdline` where there
/// is a `/proc`, else from `ps -o comm=` (macOS).
pub fn process_name(pid: u32) -> io::Result<Option<String>> {
    let name = if has_proc() {
        match proc_file(pid, "cmdline")? {
            Some(cmdline) => {
                String::from_utf8_lossy(cmdline.split(|&b| b == 0).next().unwrap_or_default()).into_owned()
            }
            None => return Ok(None),
        }
    } else {
        match ps("comm", pid)? {
            Some(name) => name,
            None => return Ok(None),
        }
    };
    let base = name.rsplit('/').next().unwrap_or_default().to_string();
    Ok(Some(base).filter(|b| !b.is_empty()))
}

/// The state letter of process `pid` (`R`, `S`, `Z`, ...), or `None` when no process has that
/// pid: from `/proc/PID/stat` where there is a `/proc`, else from `ps -o stat=` (macOS).
pub fn process_state(pid: u32) -> io::Result<Option<char>> {
    let stat = if has_proc() {
        match proc_file(pid, "stat")? {
            // The command name is in parentheses and may itself contain spaces or parentheses.
            Some(stat) => String::from_utf8_lossy(&stat)
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
                .unwrap_or_default(),
            None => return Ok(None),
        }
    } else {
        match ps("stat", pid)? {
            Some(stat) => stat,
            None => return Ok(None),
        }
    };
    Ok(stat.chars().next())
}

/// Whether process `pid` may still run: unless it is known to be gone or a zombie (a process that
/// cannot be looked up counts as running).
pub fn alive(pid: u32) -> bool {
    !matches!(process_state(pid), Ok(None | Some('Z')))
}

/// Sends `signal` to process `pid`. It may have exited meanwhile: the caller checks, or waits for
/// it either way.
pub fn send(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

/// Waits up to `within` for process `pid` to be gone; whether it is.
async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// How a process [`wait_or_kill`] waited for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited within the time it was given.
    InTime,
    /// It was killed (SIGKILL) after that time.
    Killed,
}

/// Waits up to `within` for process `pid` to exit, then kills it (SIGKILL) and waits for that
/// too. `None` when it is still there even so.
pub async fn wait_or_kill(pid: u32, within: Duration) -> Option<Exit> {
    if wait_gone(pid, within).await {
        return Some(Exit::InTime);
    }
    send(pid, Signal::KILL);
    wait_gone(pid, KILL_WAIT).await.then_some(Exit::Killed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dead_pid;

    /// Waits until `pid` is a zombie (a child that exited and is not reaped yet).
    fn await_zombie(pid: u32) {
        for _ in 0..500 {
            if process_state(pid).unwrap() == Some('Z') {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{pid} did not become a zombie");
    }

    #[test]
    fn process_name_is_argv0_base_name_and_none_for_gone_or_zombie() {
        let name = process_name(std::process::id())
            .expect("own name")
            .expect("own process");
        assert!(!name.is_empty() && !name.contains('/'), "{name}");
        assert_eq!(process_name(dead_pid()).expect("dead pid"), None);
        // A child that exited but is not reaped yet is a zombie: its cmdline is empty.
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        await_zombie(pid);
        assert_eq!(process_name(pid).expect("zombie"), None);
        child.wait().expect("reap");
        assert_eq!(process_name(pid).expect("reaped"), None);
    }

    #[test]
    fn a_zombie_or_a_gone_process_is_not_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(dead_pid()));
        assert_eq!(process_state(dead_pid()).unwrap(), None);
        let mut child = Command::new("true").spawn().expect("spawn true");
        await_zombie(child.id());
        assert!(!alive(child.id()), "a zombie");
        child.wait().expect("reap");
    }

    #[tokio::test]
    async fn wait_or_kill_kills_what_does_not_exit_in_time() {
        let mut slow = Command::new("sleep").arg("600").spawn().expect("spawn sleep");
        let started = Instant::now();
        assert_eq!(
            wait_or_kill(slow.id(), Duration::from_millis(300)).await,
            Some(Exit::Killed)
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!slow.wait().expect("reap").success(), "killed");
        let mut quick = Command::new("true").spawn().expect("spawn true");
        assert_eq!(
            wait_or_kill(quick.id(), Duration::from_secs(10)).await,
            Some(Exit::InTime)
        );
        assert!(quick.wait().expect("reap").success(), "exited on its own");
    }
}
