//! Starting a VM from a state directory ([`launch`]) and owning it while it runs ([`Vm`]).
//!
//! [`launch`] locks the state dir, prepares what qemu needs there (MAC, disks, userdata CD, UEFI
//! vars), checks published ports, starts qemu ([`super::spawn`]) with its console and two QMP
//! sockets in the state dir, and returns once QMP answers. The [`Vm`] is then either run in the
//! foreground ([`Vm::run_foreground`]: console relayed, Ctrl-C or SIGTERM power it down through
//! QMP) or left running ([`Vm::detach`]).

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::time::Instant;

use super::command::{Console, QemuConfig};
use super::disk::{ensure_disk, resolve_disks, DiskError};
use super::spawn::{self, Lifetime};
use crate::console;
use crate::firmware::{Firmware, FirmwareError};
use crate::machine::{DiskSpec, Protocol, PublishedPort};
use crate::qmp::{Qmp, QmpError, Shutdown};
use crate::state::{StateDir, StateError, StateLock, StateRoot};
use crate::stop_signals::StopSignals;
use crate::userdata::{write_userdata_iso, UserdataError};

/// How long qemu may take to open its QMP socket.
const QMP_STARTUP: Duration = Duration::from_secs(30);

/// Longest unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What to launch, beyond what the state directory provides.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The command line so far: binary, arch, accel, boot media, CPUs, memory, networking,
    /// published ports, devices, GUI. [`launch`] fills in MAC, UUID, disks, CDs, firmware, pid file,
    /// QMP and console.
    pub config: QemuConfig,
    /// `--disk` values.
    pub disks: Vec<DiskSpec>,
    /// `--data`/`--data-file` contents, put on the `cidata` CD.
    pub userdata: Option<Vec<u8>>,
    /// UEFI firmware, for `--uefi`.
    pub uefi: Option<Firmware>,
    /// `qemu-img`, needed to create disks that have a size and do not exist yet.
    pub qemu_img: Option<PathBuf>,
    /// Keep running after `moby run` exits.
    pub detach: bool,
    /// The connection to a private network's switch, for the second NIC (handed to qemu).
    pub network: Option<std::sync::Arc<std::os::unix::net::UnixStream>>,
}

/// Errors while starting or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// A disk.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The userdata CD.
    #[error(transparent)]
    Userdata(#[from] UserdataError),
    /// UEFI firmware.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// QMP.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// A disk needs creating and qemu-img is not installed.
    #[error("disk {0} does not exist and qemu-img is not installed to create it (Debian package qemu-utils)")]
    NoQemuImg(PathBuf),
    /// A socket path would be longer than unix sockets allow.
    #[error("state dir {dir} is too deep for unix sockets ({path} is {len} bytes, at most {MAX_SOCKET_PATH}): the state dir needs a shorter path")]
    SocketPathTooLong {
        /// The state directory.
        dir: PathBuf,
        /// The socket path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A published host port is taken.
    #[error("cannot publish {port}: host port {host}/{proto} is already in use{by}; pick another host port")]
    PortInUse {
        /// The `--publish` value.
        port: PublishedPort,
        /// The host port.
        host: u16,
        /// `tcp` or `udp`.
        proto: &'static str,
        /// ` by VM NAME` when another of our VMs publishes it.
        by: String,
    },
    /// qemu could not be started at all.
    #[error("cannot start {qemu}: {source}")]
    Spawn {
        /// The qemu binary.
        qemu: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// qemu exited before its QMP socket answered.
    #[error("qemu exited while starting ({status}); its messages ({log}):\n{messages}")]
    EarlyExit {
        /// qemu's exit status.
        status: ExitStatus,
        /// qemu's log file.
        log: PathBuf,
        /// The end of that log.
        messages: String,
    },
    /// Waiting for or signalling qemu failed.
    #[error("cannot {doing} qemu (pid {pid}): {source}")]
    Process {
        /// What we tried.
        doing: &'static str,
        /// qemu's pid.
        pid: u32,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The last lines of qemu's log, for errors.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    if tail.is_empty() {
        "(nothing)".into()
    } else {
        tail.join("\n")
    }
}

/// qemu's log file in the state dir.
pub fn qemu_log(state: &StateDir) -> PathBuf {
    state.dir().join("qemu.log")
}

fn check_socket_paths(state: &StateDir) -> Result<(), LaunchError> {
    for path in [state.qmp_socket(), state.owner_qmp_socket(), state.console_socket()] {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(LaunchError::SocketPathTooLong {
                dir: state.dir().to_path_buf(),
                path,
                len,
            });
        }
    }
    Ok(())
}

/// Checks that every published host port can be bound now (qemu binds them on all addresses),
/// naming the VM of ours that holds a taken one when there is one under `siblings`.
fn check_ports_free(ports: &[PublishedPort], siblings: Option<&Path>) -> Result<(), LaunchError> {
    for &port in ports {
        let free = match port.protocol {
            Protocol::Tcp => TcpListener::bind(("0.0.0.0", port.host)).map(drop),
            Protocol::Udp => UdpSocket::bind(("0.0.0.0", port.host)).map(drop),
        };
        if let Err(e) = free {
            if e.kind() != std::io::ErrorKind::AddrInUse {
                continue; // e.g. a privileged port: let qemu report it
            }
            let by = siblings
                .and_then(|base| publisher_of(base, &port.to_string()))
                .map(|name| format!(" by VM `{name}`"))
                .unwrap_or_default();
            return Err(LaunchError::PortInUse {
                port,
                host: port.host,
                proto: port.protocol.as_str(),
                by,
            });
        }
    }
    Ok(())
}

/// The running instance under `base` that publishes `port` (`HOST:GUEST/PROTO`).
fn publisher_of(base: &Path, port: &str) -> Option<String> {
    let host = port.split(':').next()?;
    let proto = port.rsplit('/').next()?;
    let instances = StateRoot::new(base).list().ok()?;
    instances.into_iter().find_map(|(state, record)| {
        let publishes = record
            .publish
            .iter()
            .any(|p| p.split(':').next() == Some(host) && p.rsplit('/').next() == Some(proto));
        let running = matches!(state.running_pid(), Ok(Some(_)));
        (running && publishes).then_some(record.name)
    })
}

/// Starts a VM from the locked state dir (see the module doc). Must be called from the thread
/// that lives as long as the run (the main thread): a foreground qemu dies with that thread.
pub async fn launch(lock: StateLock, mut opts: LaunchOptions) -> Result<Vm, LaunchError> {
    let state = &lock.state().clone();
    check_socket_paths(state)?;
    let cfg = &mut opts.config;
    check_ports_free(&cfg.publish, state.dir().parent())?;

    if cfg.networking != super::Networking::None {
        cfg.mac = Some(state.mac()?.to_string());
    }
    cfg.uuid = Some(crate::random::uuid_v4().map_err(StateError::io("read", "/dev/urandom"))?);
    cfg.disks = resolve_disks(&opts.disks, state.dir())?;
    for disk in &cfg.disks {
        if disk.size_mib.is_some() && !disk.path.exists() {
            let qemu_img = opts
                .qemu_img
                .as_deref()
                .ok_or_else(|| LaunchError::NoQemuImg(disk.path.clone()))?;
            ensure_disk(qemu_img, disk)?;
        } else if !disk.path.exists() {
            return Err(DiskError::MissingNoSize(disk.path.clone()).into());
        }
    }
    if let Some(data) = &opts.userdata {
        let iso = state.userdata_iso();
        write_userdata_iso(&iso, data, state.name())?;
        cfg.cdroms.push(iso);
    }
    if let Some(fw) = &opts.uefi {
        cfg.firmware = Some(fw.for_vm(state.dir())?);
    }
    // Paused until the console is attached (foreground) or qemu is on its own (detached).
    cfg.start_paused = true;
    cfg.pidfile = Some(state.pid_file());
    cfg.qmp_sockets = vec![state.owner_qmp_socket(), state.qmp_socket()];
    cfg.console = Console::Socket {
        socket: state.console_socket(),
        log: state.console_log(),
    };

    let log = qemu_log(state);
    let lifetime = if opts.detach {
        Lifetime::Detached
    } else {
        Lifetime::TiedToParent
    };
    let spawn_error = |source| LaunchError::Spawn {
        qemu: cfg.qemu.clone(),
        source,
    };
    let command = spawn::command(cfg, lifetime, &log).map_err(spawn_error)?;
    let mut child = tokio::process::Command::from(command).spawn().map_err(spawn_error)?;
    // qemu has its own copy of the network connection now.
    drop(opts.network.take());
    let pid = child.id().unwrap_or(0);

    let qmp = tokio::select! {
        qmp = Qmp::connect_within(state.owner_qmp_socket(), QMP_STARTUP) => qmp,
        status = child.wait() => {
            let status = status.map_err(|source| LaunchError::Process { doing: "wait for", pid, source })?;
            let _ = state.clean_runtime();
            return Err(LaunchError::EarlyExit { status, messages: log_tail(&log), log });
        }
    };
    let qmp = match qmp {
        Ok(qmp) => qmp,
        Err(e) => {
            // Usually qemu hit an error in its configuration right after opening QMP: its own
            // message says more than the broken connection.
            let exited = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            if let Ok(Ok(status)) = exited {
                let _ = state.clean_runtime();
                return Err(LaunchError::EarlyExit {
                    status,
                    messages: log_tail(&log),
                    log,
                });
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            let _ = state.clean_runtime();
            return Err(e.into());
        }
    };
    Ok(Vm {
        child,
        pid,
        qmp,
        state: state.clone(),
        lock,
    })
}

/// How a foreground run ended.
#[derive(Debug)]
pub struct RunEnd {
    /// qemu's exit status.
    pub status: ExitStatus,
    /// The `SHUTDOWN` event, when qemu sent one (it says who shut the VM down and why).
    pub shutdown: Option<Shutdown>,
    /// Set when we stopped the VM (Ctrl-C, SIGTERM, SIGHUP): what the guest did about it.
    pub stopped: Option<StopResult>,
    /// qemu reported the ACPI power button pressed (its `POWERDOWN` event), by this run or by
    /// another QMP client such as `moby stop`.
    pub power_button: bool,
    /// The end of qemu's own messages, when it failed.
    pub messages: Option<String>,
}

/// What happened when `moby run` stopped its VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResult {
    /// The guest answered the ACPI power button.
    PoweredDown,
    /// The guest did not power off in time; qemu was told to quit.
    Quit,
    /// A second signal arrived; qemu was killed.
    Killed,
}

/// A VM this process started.
#[derive(Debug)]
pub struct Vm {
    child: tokio::process::Child,
    pid: u32,
    qmp: Qmp,
    state: StateDir,
    lock: StateLock,
}

impl Vm {
    /// qemu's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts the guest and leaves the VM running on its own, releasing the state dir's lock;
    /// `moby stop` and `moby console` find it by name.
    pub async fn detach(mut self) -> Result<(), LaunchError> {
        self.qmp.cont().await?;
        let Vm { child, lock, .. } = self;
        drop(lock);
        // Not killed on drop; qemu is in a session of its own and is reaped by init.
        drop(child);
        Ok(())
    }

    /// Relays the console to `out` (and stdin to the guest) until qemu exits. SIGINT, SIGTERM or
    /// SIGHUP press the ACPI power button and wait up to `stop_timeout` before telling qemu to
    /// quit; a second signal kills it. The runtime files are removed at the end.
    pub async fn run_foreground(
        mut self,
        out: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<RunEnd, LaunchError> {
        let process_error = |doing, source| LaunchError::Process {
            doing,
            pid: self.pid,
            source,
        };
        let mut signals = StopSignals::watch().map_err(|e| process_error("watch signals for", e))?;

        // The guest starts once its console is attached, so not a byte of it is lost.
        let console = console::Console::attach(&self.state.console_socket())
            .await
            .map_err(|e| process_error("attach to the console of", e))?;
        self.qmp.cont().await?;
        let relay = console::relay(console, None, out);
        tokio::pin!(relay);
        let mut relay_done = false;
        let mut shutdown = None;
        let mut qmp_open = true;
        let mut stopped = None;
        // Set when the power button was pressed: when to give up on the guest and quit.
        let mut give_up: Option<Instant> = None;
        let forever = Duration::from_secs(365 * 24 * 3600);

        // One loop keeps the console flowing while the VM is being stopped.
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status.map_err(|e| process_error("wait for", e))?,
                end = &mut relay, if !relay_done => {
                    relay_done = true;
                    if let Err(e) = end {
                        tracing::warn!("console: {e}");
                    }
                }
                event = self.qmp.wait_event("SHUTDOWN", forever), if qmp_open => match event {
                    Ok(event) => {
                        shutdown = event.shutdown();
                        if give_up.is_some() && stopped.is_none() {
                            stopped = Some(StopResult::PoweredDown);
                        }
                    }
                    Err(_) => qmp_open = false,
                },
                _ = signals.recv(), if stopped.is_none() => {
                    let pressed = give_up.is_none() && qmp_open && self.qmp.system_powerdown().await.is_ok();
                    if pressed {
                        tracing::info!("stopping VM `{}`: ACPI power button (again to kill it)", self.state.name());
                        give_up = Some(Instant::now() + stop_timeout);
                    } else {
                        self.child.start_kill().map_err(|e| process_error("kill", e))?;
                        stopped = Some(StopResult::Killed);
                    }
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or_else(|| Instant::now() + forever)),
                    if give_up.is_some() && stopped.is_none() =>
                {
                    stopped = Some(StopResult::Quit);
                    if self.qmp.quit().await.is_err() {
                        self.child.start_kill().map_err(|e| process_error("kill", e))?;
                    }
                }
            }
        };
        // qemu is gone, so the console socket is closed: let the relay write what was left.
        if !relay_done {
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut relay).await;
        }
        // Events qemu sent just before closing QMP.
        if shutdown.is_none() {
            let _ = self.qmp.wait_closed(Duration::from_secs(1)).await;
        }
        let events = self.qmp.take_events();
        shutdown = shutdown.or_else(|| events.iter().find_map(|e| e.shutdown()));
        let power_button = give_up.is_some() || events.iter().any(|e| e.name == "POWERDOWN");
        self.state.clean_runtime()?;
        let messages = (!status.success()).then(|| log_tail(&qemu_log(&self.state)));
        Ok(RunEnd {
            status,
            shutdown,
            stopped,
            power_button,
            messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_reported_with_protocol() {
        let held = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let host = held.local_addr().unwrap().port();
        let port = PublishedPort {
            host,
            guest: 80,
            protocol: Protocol::Tcp,
        };
        let e = check_ports_free(&[port], None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("cannot publish {host}:80/tcp: host port {host}/tcp is already in use; pick another host port")
        );
        // The same number over UDP is free.
        let udp = PublishedPort {
            protocol: Protocol::Udp,
            ..port
        };
        check_ports_free(&[udp], None).unwrap();
    }

    #[test]
    fn taken_port_names_our_vm_holding_it() {
        let base = tempfile::tempdir().unwrap();
        let root = crate::state::StateRoot::new(base.path());
        let state = root.instance("web", crate::instance::BackendKind::Qemu).unwrap();
        std::fs::create_dir_all(state.dir()).unwrap();
        // A "running" VM: our own pid is not qemu, so pretend with a sleep named qemu-system-x86_64.
        let bin = base.path().join("qemu-system-x86_64");
        std::os::unix::fs::symlink("/bin/sleep", &bin).unwrap();
        let mut child = std::process::Command::new(&bin).arg("30").spawn().unwrap();
        // Until it has exec'd, the child's command line is ours.
        while !std::fs::read(format!("/proc/{}/cmdline", child.id()))
            .is_ok_and(|c| c.starts_with(bin.as_os_str().as_encoded_bytes()))
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::fs::write(state.pid_file(), child.id().to_string()).unwrap();
        let mut record = crate::instance::sample("web");
        record.publish = vec!["8080:80/tcp".into()];
        state.write_record(&record).unwrap();
        let by = publisher_of(base.path(), "8080:8080/tcp");
        let udp = publisher_of(base.path(), "8080:80/udp");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(by.as_deref(), Some("web"));
        assert_eq!(udp, None);
    }

    #[test]
    fn deep_state_dirs_are_refused() {
        let deep = format!("/tmp/{}", "d".repeat(100));
        let state = StateDir::new(&deep, "x", crate::instance::BackendKind::Qemu);
        let e = check_socket_paths(&state).unwrap_err().to_string();
        assert!(e.contains("too deep for unix sockets") && !e.contains("--"), "{e}");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("qemu.log");
        assert_eq!(log_tail(&log), "(nothing)");
        let text: String = (0..30).map(|i| format!("line {i}\n\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.starts_with("line 10\n") && tail.ends_with("line 29"), "{tail}");
    }
}
