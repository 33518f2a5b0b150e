//! The QMP client against a real qemu (no guest needed: `-machine none` or `-S`).

// Test helpers outside #[test] functions fail loudly too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vmm::qmp::{Qmp, RunState, ShutdownOutcome, ShutdownReason};

/// A bound on how long qemu may take to start or exit before the test gives up (not a timing
/// assertion: a healthy run takes a small fraction of it).
const PATIENCE: Duration = Duration::from_secs(60);

/// A qemu child process, stopped on drop (SIGTERM, then SIGKILL) even when the test fails.
struct QemuGuard {
    child: Child,
    dir: tempfile::TempDir,
}

impl QemuGuard {
    fn start(machine: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("qmp.sock");
        let log = std::fs::File::create(dir.path().join("qemu.log")).expect("qemu log");
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", machine, "-nodefaults", "-display", "none", "-S", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("qemu log"))
            .stderr(log)
            .spawn()
            .expect("qemu-system-x86_64 must be installed (apt install qemu-system-x86)");
        QemuGuard { child, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("qmp.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }

    /// Waits for qemu to exit, up to [`PATIENCE`].
    fn wait_exit(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(socket: &Path) -> Qmp {
    Qmp::connect_within(socket, PATIENCE)
        .await
        .expect("connect to qemu's QMP socket")
}

#[tokio::test]
async fn status_cont_stop_quit_on_machine_none() {
    let mut qemu = QemuGuard::start("none");
    let mut qmp = connect(&qemu.socket()).await;
    assert!(qmp.version().major >= 2, "greeting version: {:?}", qmp.version());

    let status = qmp.query_status().await.expect("query-status");
    assert_eq!(status.status, RunState::Prelaunch, "{}", qemu.log());
    assert!(!status.running);

    qmp.cont().await.expect("cont");
    let status = qmp.query_status().await.expect("query-status");
    assert_eq!((status.running, status.status), (true, RunState::Running));
    // `cont` emits RESUME; it is queued, not lost, while we wait for replies.
    qmp.wait_event("RESUME", PATIENCE)
        .await
        .expect("RESUME event after cont");

    qmp.stop().await.expect("stop");
    let status = qmp.query_status().await.expect("query-status");
    assert_eq!((status.running, status.status), (false, RunState::Paused));
    qmp.wait_event("STOP", PATIENCE).await.expect("STOP event after stop");

    qmp.quit().await.expect("quit");
    qmp.wait_closed(PATIENCE)
        .await
        .expect("qemu closes the socket after quit");
    let exit = qemu.wait_exit().expect("qemu exits after quit");
    assert!(exit.success(), "qemu exit {exit:?}: {}", qemu.log());
    let events = qmp.take_events();
    let shutdown = events
        .iter()
        .find_map(|e| e.shutdown())
        .unwrap_or_else(|| panic!("no SHUTDOWN in {events:?}"));
    assert_eq!(shutdown.reason, ShutdownReason::HostQmpQuit);
    assert!(!shutdown.guest);
    // Commands after qemu is gone name the socket and the command.
    let err = qmp.query_status().await.expect_err("qemu is gone");
    let text = err.to_string();
    assert!(text.contains("qmp.sock") && text.contains("query-status"), "{text}");
}

#[tokio::test]
async fn unknown_command_reports_class_and_desc() {
    let qemu = QemuGuard::start("none");
    let mut qmp = connect(&qemu.socket()).await;
    let err = qmp.execute("no-such-command", None).await.expect_err("unknown command");
    let text = err.to_string();
    assert!(text.contains("`no-such-command` failed: CommandNotFound"), "{text}");
    assert!(text.contains(&qemu.socket().display().to_string()), "{text}");
    // The session is still usable after an error reply.
    qmp.query_status().await.expect("query-status after an error");
}

#[tokio::test]
async fn graceful_shutdown_without_guest_falls_back_to_quit() {
    let mut qemu = QemuGuard::start("q35");
    let mut qmp = connect(&qemu.socket()).await;
    qmp.cont().await.expect("cont");
    // No guest OS answers the ACPI power button, so no SHUTDOWN comes and we quit.
    let outcome = qmp
        .graceful_shutdown(Duration::from_secs(1))
        .await
        .expect("graceful shutdown");
    assert_eq!(outcome, ShutdownOutcome::Quit);
    qmp.wait_closed(PATIENCE)
        .await
        .expect("qemu closes the socket after quit");
    let exit = qemu.wait_exit().expect("qemu exits after quit");
    assert!(exit.success(), "qemu exit {exit:?}: {}", qemu.log());
}

#[tokio::test]
async fn sigterm_is_reported_as_host_signal() {
    let mut qemu = QemuGuard::start("none");
    let mut qmp = connect(&qemu.socket()).await;
    let status = Command::new("kill")
        .args(["-TERM", &qemu.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let event = qmp
        .wait_event("SHUTDOWN", PATIENCE)
        .await
        .expect("SHUTDOWN after SIGTERM");
    let shutdown = event.shutdown().expect("SHUTDOWN data");
    assert_eq!(shutdown.reason, ShutdownReason::HostSignal);
    assert!(!shutdown.guest);
    assert!(qemu.wait_exit().is_some(), "qemu exits after SIGTERM");
}

#[tokio::test]
async fn connect_to_missing_socket_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("qmp.sock");
    let err = Qmp::connect(&socket).await.expect_err("no socket");
    let text = err.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
}
