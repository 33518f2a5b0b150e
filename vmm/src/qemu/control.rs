//! Stopping a qemu VM from any process ([`stop`]): ACPI power-down through QMP, then quit, then
//! signals.

use std::time::Duration;

use rustix::process::Signal;

use crate::backend::Stopped;
use crate::error::VmError;
use crate::process::{alive, send, wait_or_kill};
use crate::qmp::{Qmp, QmpError, ShutdownOutcome, ShutdownReason};
use crate::state::StateDir;

/// How long a QMP greeting may take before the socket counts as busy or hung.
const QMP_CONNECT: Duration = Duration::from_secs(5);

/// How long qemu may take to exit after `quit` or a signal.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Stops the VM running from `state`: presses the ACPI power button over QMP and waits up to
/// `timeout` for the guest to power off, then tells qemu to quit; if QMP does not answer, sends
/// SIGTERM and, after a while, SIGKILL. Waits until qemu has exited. A foreground `moby run`
/// owning the VM sees it exit and returns.
pub async fn stop(state: &StateDir, timeout: Duration) -> Result<Stopped, VmError> {
    let Some(pid) = state.running_pid()? else {
        state.clean_runtime()?;
        return Ok(Stopped::Signalled("it had already exited".into()));
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
        Ok(ShutdownOutcome::PoweredDown(s)) if s.reason == ShutdownReason::GuestShutdown => Stopped::PoweredDown,
        Ok(ShutdownOutcome::PoweredDown(s)) => Stopped::ShutDown(s.reason.to_string()),
        Ok(ShutdownOutcome::Quit) => Stopped::Quit,
        Err(why) => {
            send(pid, Signal::TERM);
            Stopped::Signalled(why)
        }
    };
    if wait_or_kill(pid, EXIT_WAIT).await.is_none() {
        return Err(VmError::Unkillable {
            name: state.name().to_string(),
            pid,
        });
    }
    let owned_elsewhere = state
        .read_record()?
        .and_then(|r| r.owner_pid)
        .is_some_and(|owner| owner != std::process::id() && alive(owner));
    if !owned_elsewhere {
        state.clean_runtime()?;
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::BackendKind;

    #[tokio::test]
    async fn stopping_a_vm_whose_qemu_is_gone_cleans_up() {
        let base = tempfile::tempdir().unwrap();
        let state = StateDir::new(base.path().join("old"), "old", BackendKind::Qemu);
        std::fs::create_dir_all(state.dir()).unwrap();
        // A pid file left by a run that was killed: the pid is gone.
        std::fs::write(state.pid_file(), "999999999").unwrap();
        let stopped = stop(&state, Duration::from_secs(1)).await.unwrap();
        assert!(matches!(stopped, Stopped::Signalled(_)), "{stopped:?}");
        assert!(!state.pid_file().exists(), "stale pid file is cleaned");
    }
}
