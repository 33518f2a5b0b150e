//! Acting on VMs by name from any process: [`stop`] (ACPI power-down through QMP, then quit, then
//! kill) and [`list`] (every instance with what it runs and its QMP run state).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::instance::InstanceRecord;
use crate::qmp::{Qmp, QmpError, Shutdown, ShutdownOutcome};
use crate::state::{process_alive as alive, ProcessStatus, StateDir, StateError, StateRoot};

/// How long a QMP greeting may take before the socket counts as busy or hung.
const QMP_CONNECT: Duration = Duration::from_secs(5);

/// How long qemu may take to exit after `quit` or a signal.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Errors of [`stop`].
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// No VM runs from the directory.
    #[error("VM `{name}` is not running ({dir}); `moby ps` lists VMs")]
    NotRunning {
        /// Instance name.
        name: String,
        /// State directory.
        dir: PathBuf,
    },
    /// No state directory of that name.
    #[error("no VM named `{name}` (no {dir}); `moby ps` lists VMs")]
    Unknown {
        /// Instance name.
        name: String,
        /// The directory looked for.
        dir: PathBuf,
    },
    /// qemu survived SIGKILL (it is stuck in the kernel).
    #[error("qemu (pid {pid}) of VM `{name}` did not exit after SIGKILL")]
    Unkillable {
        /// Instance name.
        name: String,
        /// qemu's pid.
        pid: u32,
    },
}

/// How [`stop`] ended the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The guest answered the ACPI power button; the `SHUTDOWN` event's data.
    PoweredDown(Shutdown),
    /// The guest did not power off within the timeout; qemu was told to quit.
    Quit,
    /// QMP did not answer (the error says why); qemu got SIGTERM, then SIGKILL if needed.
    Signalled(String),
}

/// The instance's state dir, checked to exist.
pub fn existing(root: &StateRoot, name: &str) -> Result<StateDir, ControlError> {
    let state = root.instance(name)?;
    if !state.dir().is_dir() {
        return Err(ControlError::Unknown {
            name: name.to_string(),
            dir: state.dir().to_path_buf(),
        });
    }
    Ok(state)
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn send(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // It may have exited meanwhile; the caller checks.
        let _ = kill_process(pid, signal);
    }
}

/// Stops the VM running from `state`: presses the ACPI power button over QMP and waits up to
/// `timeout` for the guest to power off, then tells qemu to quit; if QMP does not answer, sends
/// SIGTERM and, after a while, SIGKILL. Waits until qemu has exited. A foreground `moby run`
/// owning the VM sees it exit and returns.
pub async fn stop(state: &StateDir, timeout: Duration) -> Result<Stopped, ControlError> {
    let pid = match state.status()? {
        ProcessStatus::Running { pid } => pid,
        ProcessStatus::Stale { .. } | ProcessStatus::Stopped => {
            state.clean_runtime()?;
            return Err(ControlError::NotRunning {
                name: state.name().to_string(),
                dir: state.dir().to_path_buf(),
            });
        }
    };
    let attempt = async {
        let mut qmp = tokio::time::timeout(QMP_CONNECT, Qmp::connect(state.qmp_socket()))
            .await
            .map_err(|_| {
                format!(
                    "no QMP greeting on {} within {QMP_CONNECT:?}",
                    state.qmp_socket().display()
                )
            })?
            .map_err(|e: QmpError| e.to_string())?;
        qmp.graceful_shutdown(timeout).await.map_err(|e| e.to_string())
    };
    let stopped = match attempt.await {
        Ok(ShutdownOutcome::PoweredDown(s)) => Stopped::PoweredDown(s),
        Ok(ShutdownOutcome::Quit) => Stopped::Quit,
        Err(why) => {
            send(pid, Signal::TERM);
            Stopped::Signalled(why)
        }
    };
    if !wait_gone(pid, EXIT_WAIT).await {
        send(pid, Signal::KILL);
        if !wait_gone(pid, EXIT_WAIT).await {
            return Err(ControlError::Unkillable {
                name: state.name().to_string(),
                pid,
            });
        }
    }
    let owned_elsewhere = InstanceRecord::read(state)?
        .and_then(|r| r.owner_pid)
        .is_some_and(|owner| owner != std::process::id() && alive(owner));
    if !owned_elsewhere {
        state.clean_runtime()?;
    }
    Ok(stopped)
}

/// One row of [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Instance name.
    pub name: String,
    /// State directory.
    pub dir: PathBuf,
    /// From the pid file.
    pub status: ProcessStatus,
    /// The record of the current or last run.
    pub record: Option<InstanceRecord>,
    /// qemu's run state (`running`, `paused`, ...) for a running VM whose QMP socket answered.
    pub run_state: Option<String>,
}

/// Every instance under `root`, with its QMP run state when it runs.
pub async fn list(root: &StateRoot) -> Result<Vec<Listing>, ControlError> {
    let mut out = Vec::new();
    for info in root.list()? {
        let state = root.instance(&info.name)?;
        let record = InstanceRecord::read(&state)?;
        let run_state = match info.status {
            ProcessStatus::Running { .. } => query_run_state(&state).await,
            _ => None,
        };
        out.push(Listing {
            name: info.name,
            dir: info.dir,
            status: info.status,
            record,
            run_state,
        });
    }
    Ok(out)
}

async fn query_run_state(state: &StateDir) -> Option<String> {
    let query = async {
        let mut qmp = Qmp::connect(state.qmp_socket()).await.ok()?;
        qmp.query_status().await.ok().map(|s| s.status.as_str().to_string())
    };
    tokio::time::timeout(QMP_CONNECT, query).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_what_does_not_run_says_so() {
        let base = tempfile::tempdir().unwrap();
        let root = StateRoot::new(base.path());
        let e = existing(&root, "nope").unwrap_err().to_string();
        assert!(e.starts_with("no VM named `nope`"), "{e}");
        let state = root.instance("old").unwrap();
        std::fs::create_dir_all(state.dir()).unwrap();
        // A pid file left by a run that was killed: the pid is gone.
        std::fs::write(state.pid_file(), "999999999").unwrap();
        let e = stop(&state, Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(e.starts_with("VM `old` is not running"), "{e}");
        assert!(!state.pid_file().exists(), "stale pid file is cleaned");
        let rows = list(&root).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, ProcessStatus::Stopped);
        assert_eq!(rows[0].run_state, None);
    }
}
