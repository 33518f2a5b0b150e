//! Running hyperkit as a [`Plan`] says: disks, the userdata CD, a vpnkit and published ports
//! first, then hyperkit itself, whose pid goes to `hyperkit.json` at once ([`launch`]); in the
//! foreground, its console relayed from its pty and signals turned into an ACPI shutdown
//! ([`run_foreground`]).

use std::future::Future;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::vpnkit::{self, VpnkitError, VpnkitPort};
use super::{ensure_raw_disk, files, Console, DiskAction, HyperkitConfig, HyperkitError};
use crate::backend::Ending;
use crate::console::{self, RelayEnd};
use crate::machine::PublishedPort;
use crate::process::send;
use crate::state::StateDir;
use crate::stop_signals::StopSignals;

/// How long vpnkit gets to create its sockets, and to answer.
const VPNKIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long hyperkit gets to write its pid file (it does so as it starts); a hyperkit still
/// running after that is taken as started (its pid is in `hyperkit.json`).
const PID_FILE_WAIT: Duration = Duration::from_secs(10);

/// A vpnkit to start for this VM (vpnkit networking without sockets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VpnkitLaunch {
    /// The vpnkit binary (see [`vpnkit::find_vpnkit`]).
    pub binary: PathBuf,
    /// The ethernet socket it listens on.
    pub ethernet: PathBuf,
    /// The port control socket it listens on.
    pub port: PathBuf,
    /// hyperkit's vsock socket it connects to (`STATE/connect`).
    pub vsock: PathBuf,
}

/// vpnkit's ethernet socket, its port socket and the VM's UUID there: what publishing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishVia {
    /// The ethernet socket.
    pub ethernet: PathBuf,
    /// The port control socket.
    pub port: PathBuf,
    /// The UUID vpnkit knows the VM by.
    pub uuid: String,
}

/// Everything one run needs besides the state dir.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The command line.
    pub config: HyperkitConfig,
    /// Userdata for the CD at `STATE/data.iso` (which `config.cdroms` lists).
    pub userdata: Option<Vec<u8>>,
    /// A vpnkit to start first.
    pub vpnkit_launch: Option<VpnkitLaunch>,
    /// Where to publish ports.
    pub publish_via: Option<PublishVia>,
    /// The preferred guest address.
    pub preferred_ipv4: Option<Ipv4Addr>,
    /// Ports to publish through vpnkit.
    pub publish: Vec<PublishedPort>,
    /// In the foreground with [`Console::Tty`]: relay the console between `STATE/tty` and the
    /// caller (LinuxKit copies it to stdout when stdout is not a terminal).
    pub relay: bool,
    /// Leave hyperkit running on its own (console in `STATE/tty` and `console-ring`, its own
    /// output in `hyperkit.log`).
    pub detach: bool,
}

/// Kills the vpnkit we started when the run ends.
struct VpnkitGuard(Child);

impl Drop for VpnkitGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unexposes published ports when the run ends.
struct PublishGuard {
    socket: PathBuf,
    ports: Vec<VpnkitPort>,
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        for port in &self.ports {
            if let Err(e) = vpnkit::unexpose(&self.socket, port) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// A hyperkit this process started, with what lives as long as it runs here.
pub(crate) struct Launched {
    child: tokio::process::Child,
    pid: u32,
    _vpnkit: Option<VpnkitGuard>,
    _published: Option<PublishGuard>,
}

impl Launched {
    /// hyperkit's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Waits until `path` exists, or `child` exits, or the timeout passes.
fn wait_for_socket(path: &Path, child: &mut Child) -> Result<(), HyperkitError> {
    let start = Instant::now();
    while !path.exists() {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || start.elapsed() > VPNKIT_TIMEOUT {
            return Err(VpnkitError::SocketTimeout {
                path: path.to_path_buf(),
                secs: VPNKIT_TIMEOUT.as_secs(),
                exited: exited.map(|s| format!(", it exited with {s}")).unwrap_or_default(),
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_vpnkit(launch: &VpnkitLaunch) -> Result<VpnkitGuard, HyperkitError> {
    for socket in [&launch.ethernet, &launch.port] {
        let _ = std::fs::remove_file(socket);
    }
    let child = Command::new(&launch.binary)
        .args(vpnkit::vpnkit_args(&launch.ethernet, &launch.vsock, &launch.port))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| HyperkitError::Spawn {
            binary: launch.binary.clone(),
            source,
        })?;
    let mut guard = VpnkitGuard(child);
    wait_for_socket(&launch.ethernet, &mut guard.0)?;
    wait_for_socket(&launch.port, &mut guard.0)?;
    Ok(guard)
}

fn ensure_disks(config: &HyperkitConfig) -> Result<(), HyperkitError> {
    for disk in &config.disks {
        let size = disk.size_mib.unwrap_or(0);
        let path = disk.path.display();
        match ensure_raw_disk(disk)? {
            DiskAction::Created => tracing::info!("created disk {path} ({size} MiB)"),
            DiskAction::Grown { from_mib } => tracing::info!("grew disk {path} from {from_mib} MiB to {size} MiB"),
            DiskAction::NotShrunk { current_mib } => {
                tracing::warn!("disk {path} is {current_mib} MiB, more than the {size} MiB asked for; not shrinking it")
            }
            DiskAction::Kept => {}
        }
    }
    Ok(())
}

fn publish(plan: &Plan) -> Result<Option<PublishGuard>, HyperkitError> {
    let Some(via) = plan.publish_via.as_ref().filter(|_| !plan.publish.is_empty()) else {
        return Ok(None);
    };
    let vif = vpnkit::connect_vif(&via.ethernet, &via.uuid, plan.preferred_ipv4, VPNKIT_TIMEOUT)?;
    tracing::debug!("vpnkit gives UUID {} the address {}", via.uuid, vif.ip);
    let mut guard = PublishGuard {
        socket: via.port.clone(),
        ports: Vec::new(),
    };
    for publish in &plan.publish {
        let port = VpnkitPort::new(publish, vif.ip);
        vpnkit::expose(&via.port, &port)?;
        guard.ports.push(port);
    }
    Ok(Some(guard))
}

/// The hyperkit command: detached, in a process group of its own with its output in
/// `hyperkit.log`; in the foreground with the console on a pty, in its own process group too (a
/// Ctrl-C reaches the caller, which shuts the VM down) without stdin; with the console on stdio,
/// on the caller's terminal.
fn command(state: &StateDir, plan: &Plan) -> Result<tokio::process::Command, HyperkitError> {
    let config = &plan.config;
    let mut cmd = tokio::process::Command::new(&config.hyperkit);
    cmd.args(config.args());
    if plan.detach {
        let log = files::hyperkit_log(state);
        let io = |doing, source| HyperkitError::Io {
            doing,
            path: log.clone(),
            source,
        };
        let out = std::fs::File::create(&log).map_err(|e| io("create", e))?;
        let err = out.try_clone().map_err(|e| io("open", e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    } else if config.console == Console::Tty {
        cmd.stdin(Stdio::null()).process_group(0);
    }
    Ok(cmd)
}

/// Prepares disks, the userdata CD, vpnkit and published ports, starts hyperkit, records its pid
/// in `hyperkit.json` and waits for its pid file. The caller holds the state dir's lock.
pub(crate) async fn launch(state: &StateDir, plan: &Plan) -> Result<Launched, HyperkitError> {
    let config = &plan.config;
    ensure_disks(config)?;
    if let Some(data) = &plan.userdata {
        crate::userdata::write_userdata_iso(&state.userdata_iso(), data, state.name())?;
    }
    let vpnkit = plan.vpnkit_launch.as_ref().map(start_vpnkit).transpose()?;
    let published = publish(plan)?;
    let mut child = command(state, plan)?.spawn().map_err(|source| HyperkitError::Spawn {
        binary: config.hyperkit.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    if let Err(e) = files::write_json(state, &config.state_json(pid)) {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(e);
    }
    let deadline = Instant::now() + PID_FILE_WAIT;
    while !config.pid_file().exists() && Instant::now() < deadline {
        let exited = child.try_wait().map_err(|source| HyperkitError::Process {
            doing: "wait for",
            pid,
            source,
        })?;
        if let Some(status) = exited.filter(|_| !config.pid_file().exists()) {
            let messages = match plan.detach {
                true => format!("its messages are in {}", files::hyperkit_log(state).display()),
                false => "see its messages above".into(),
            };
            return Err(HyperkitError::EarlyExit {
                status: status.to_string(),
                messages,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Launched {
        child,
        pid,
        _vpnkit: vpnkit,
        _published: published,
    })
}

/// The console relay of a foreground run, once hyperkit has made its pty.
type Relay<'a> = Pin<Box<dyn Future<Output = std::io::Result<RelayEnd>> + Send + 'a>>;

/// Opens hyperkit's console pty (`STATE/tty`) for reading and writing.
pub(crate) async fn open_tty(tty: &Path) -> std::io::Result<console::Console> {
    let from_guest = tokio::fs::File::open(tty).await?;
    let to_guest = tokio::fs::OpenOptions::new().write(true).open(tty).await?;
    Ok(console::Console::new(Box::new(from_guest), Some(Box::new(to_guest))))
}

/// How a foreground run ended: hyperkit's exit status, and the ending when this process stopped it.
pub(crate) struct ForegroundEnd {
    /// hyperkit's exit status.
    pub status: ExitStatus,
    /// How this process stopped it, if it did.
    pub stopped: Option<Ending>,
}

/// Waits for hyperkit to exit, relaying its console to `out` (and stdin to it) when the plan says
/// so. SIGINT, SIGTERM or SIGHUP send hyperkit SIGTERM (an ACPI shutdown) and give the guest
/// `stop_timeout` before SIGKILL; a second signal kills it at once.
pub(crate) async fn run_foreground(
    mut launched: Launched,
    state: &StateDir,
    relay: bool,
    out: &mut (dyn Write + Send),
    stop_timeout: Duration,
) -> Result<ForegroundEnd, HyperkitError> {
    let pid = launched.pid;
    let mut signals = StopSignals::watch().map_err(|source| HyperkitError::Process {
        doing: "watch signals for",
        pid,
        source,
    })?;
    let tty = files::tty(state);
    let mut console: Option<Relay<'_>> = None;
    // Handed to the relay once hyperkit has made its pty.
    let mut out = relay.then_some(out);
    let mut give_up: Option<tokio::time::Instant> = None;
    let mut stopped = None;
    let forever = Duration::from_secs(365 * 24 * 3600);
    let status = loop {
        tokio::select! {
            status = launched.child.wait() => {
                break status.map_err(|source| HyperkitError::Process { doing: "wait for", pid, source })?;
            }
            end = async {
                match console.as_mut() {
                    Some(relay) => relay.await,
                    None => std::future::pending().await,
                }
            } => {
                console = None;
                if let Err(e) = end {
                    tracing::warn!("console: {e}");
                }
            }
            // hyperkit makes its pty as it starts: poll for it.
            _ = tokio::time::sleep(Duration::from_millis(20)), if out.is_some() => {
                if tty.exists() {
                    match (open_tty(&tty).await, out.take()) {
                        (Ok(tty), Some(out)) => console = Some(Box::pin(console::relay(tty, None, out))),
                        (Err(e), _) => tracing::warn!("cannot open the console {}: {e}", tty.display()),
                        (Ok(_), None) => {}
                    }
                }
            }
            _ = signals.recv(), if stopped.is_none() => {
                if give_up.is_none() {
                    tracing::info!("stopping VM `{}`: ACPI shutdown (again to kill it)", state.name());
                    send(pid, Signal::TERM);
                    give_up = Some(tokio::time::Instant::now() + stop_timeout);
                } else {
                    send(pid, Signal::KILL);
                    stopped = Some(Ending::Killed);
                }
            }
            _ = tokio::time::sleep_until(give_up.unwrap_or_else(|| tokio::time::Instant::now() + forever)),
                if give_up.is_some() && stopped.is_none() =>
            {
                send(pid, Signal::KILL);
                stopped = Some(Ending::Quit { after: stop_timeout });
            }
        }
    };
    // hyperkit is gone, so its pty is closed: let the relay write what was left.
    if let Some(relay) = console.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), relay).await;
    }
    let stopped = stopped.or(give_up.map(|_| Ending::PoweredDown));
    Ok(ForegroundEnd { status, stopped })
}
