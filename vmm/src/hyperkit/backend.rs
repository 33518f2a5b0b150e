//! [`Hyperkit`]: the hyperkit backend of [`Backend`], and its default recipe, LinuxKit's `run
//! hyperkit`: what a [`Request`] becomes (boot media, the `PREFIX-state` state dir next to the
//! image, networking and published ports, raw disks, vsock ports, the vpnkit and DMI UUIDs,
//! userdata, where the console goes, a vpnkit to start).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;

use super::launch::{self, Plan, PublishVia, VpnkitLaunch};
use super::vpnkit::find_vpnkit;
use super::{
    check_publish, files, find_hyperkit, new_uuid, parse_uuid, plan_network, resolve_raw_disks, Console,
    HyperkitConfig, HyperkitError, HyperkitNetworking, UuidOrigin, VpnkitNic, DEFAULT_FIRMWARE,
};
use crate::backend::{attachable, Backend, Ending, LocalBackend, RunEnd, Stopped};
use crate::console::Console as GuestConsole;
use crate::error::VmError;
use crate::instance::{BackendKind, InstanceRecord, Request};
use crate::machine::{detect, Arch};
use crate::process::{send, wait_or_kill, Exit};
use crate::records::{self, record_end, record_failure, RunFacts};
use crate::state::{StateDir, StateLock, StateRoot};

/// Where the serial console of a foreground run ([`Backend::run`]) goes. A detached instance's
/// console is always its pty (`STATE/tty`, for [`Backend::console`]) and `console-ring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForegroundConsole {
    /// hyperkit's pty, relayed to and from the caller's console writer and stdin (LinuxKit's
    /// choice when stdout is not a terminal).
    #[default]
    Relay,
    /// This process's stdin and stdout, handed to hyperkit, which puts the terminal in raw mode
    /// (LinuxKit's choice on a terminal); the caller's console writer is not used.
    Stdio,
    /// hyperkit's pty only, for another process to attach to, and `console-ring` (LinuxKit's
    /// console file).
    File,
}

/// The hyperkit backend: how this host runs hyperkit (and vpnkit). What differs per instance is
/// in the [`Request`]; its networking is hyperkit's (`docker-for-mac` by default, `vpnkit`,
/// `vpnkit,ETH-SOCKET[,PORT-SOCKET]`, `vmnet`, `none`), its firmware defaults to
/// [`DEFAULT_FIRMWARE`], its state dir to LinuxKit's `PREFIX-state` next to the image.
#[derive(Debug, Clone)]
pub struct Hyperkit {
    root: StateRoot,
    /// The hyperkit binary: a path, or a name looked up in `$PATH`; `None` looks in `$PATH` and
    /// the usual places ([`find_hyperkit`]).
    pub binary: Option<PathBuf>,
    /// The vpnkit binary started for `vpnkit` networking without sockets; `None` is `vpnkit`
    /// from `$PATH`.
    pub vpnkit: Option<PathBuf>,
    /// The IPv4 address to ask vpnkit for.
    pub preferred_ipv4: Option<Ipv4Addr>,
    /// Guest vsock ports to forward to unix sockets `STATE/guest.PORT`.
    pub vsock_ports: Vec<u32>,
    /// The UUID vpnkit knows the VM by (its address follows it); `None` keeps one in
    /// `STATE/vpnkit.uuid`.
    pub vpnkit_uuid: Option<String>,
    /// The VM's DMI UUID; `None` makes a new one each start.
    pub uuid: Option<String>,
    /// Where a foreground run's console goes.
    pub console: ForegroundConsole,
    /// Where Docker Desktop's data directory is looked for (`$HOME`).
    pub(crate) home: Option<PathBuf>,
}

impl Hyperkit {
    /// hyperkit and vpnkit from `$PATH` or the usual places, keeping records under `root`.
    pub fn new(root: StateRoot) -> Hyperkit {
        Hyperkit {
            root,
            binary: None,
            vpnkit: None,
            preferred_ipv4: None,
            vsock_ports: Vec::new(),
            vpnkit_uuid: None,
            uuid: None,
            console: ForegroundConsole::default(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    /// The recipe: checks the request and decides everything the run needs, touching nothing.
    /// Returns the plan (whose paths are in `dir`, the state dir made absolute) and the state
    /// dir to prepare.
    fn plan(&self, request: &Request, foreground: bool) -> Result<(Plan, PathBuf), VmError> {
        if request.arch.is_some_and(|arch| arch != Arch::X86_64) {
            return Err(VmError::Unsupported {
                backend: BackendKind::Hyperkit,
                what: "run guests of another architecture than x86_64",
            });
        }
        if request.network.is_some() {
            return Err(VmError::Unsupported {
                backend: BackendKind::Hyperkit,
                what: "join a private network (qemu can)",
            });
        }
        let binary = find_hyperkit(self.binary.as_deref())?;
        let detected = detect(&request.image, request.boot, None)?;
        let dir = request
            .state_dir
            .clone()
            .unwrap_or_else(|| detected.default_state_dir());
        let dir = std::path::absolute(&dir).map_err(|source| VmError::Io {
            doing: "make absolute",
            path: dir.clone(),
            source,
        })?;
        let firmware = request
            .uefi
            .then(|| request.firmware.clone().unwrap_or_else(|| DEFAULT_FIRMWARE.into()));
        let mut config = HyperkitConfig::new(binary, dir.clone(), detected.media, firmware.as_deref())?;
        let networking: HyperkitNetworking = request.networking.as_deref().unwrap_or_default().parse()?;
        let own_vpnkit = matches!(networking, HyperkitNetworking::Vpnkit { ethernet: None, .. });
        if !foreground && (own_vpnkit || !request.publish.is_empty()) {
            return Err(HyperkitError::DetachUnsupported.into());
        }
        let net = plan_network(&networking, &dir, self.home.as_deref())?;
        check_publish(&networking, &net, &request.publish)?;
        let disks = resolve_raw_disks(&request.disks, &dir)?;
        let uuid = match &self.uuid {
            Some(text) => parse_uuid(text).ok_or_else(|| HyperkitError::BadUuid {
                value: text.clone(),
                origin: UuidOrigin::Vm,
            })?,
            None => new_uuid().map_err(|source| VmError::Io {
                doing: "read",
                path: "/dev/urandom".into(),
                source,
            })?,
        };
        let console = match (foreground, self.console) {
            (true, ForegroundConsole::Stdio) => Console::Stdio,
            _ => Console::Tty,
        };
        config.cpus = request.cpus;
        config.memory_mib = request.memory_mib;
        config.uuid = Some(uuid);
        config.vpnkit = net.vpnkit_socket.clone().map(|socket| VpnkitNic {
            socket,
            uuid: None,
            preferred_ipv4: self.preferred_ipv4,
        });
        config.vmnet = net.vmnet;
        config.disks = disks;
        if request.userdata.is_some() {
            config.cdroms.push(dir.join("data.iso"));
        }
        config.vsock_ports = self.vsock_ports.iter().chain(&net.vsock_ports).copied().collect();
        config.sockets_9p = net.sockets_9p.clone();
        config.console = console;
        config.check_paths()?;
        let vpnkit_launch = match (net.launch_vpnkit, &net.vpnkit_socket, &net.port_socket) {
            (true, Some(ethernet), Some(port)) => Some(VpnkitLaunch {
                binary: find_vpnkit(self.vpnkit.as_deref(), std::env::var_os("PATH").as_deref())
                    .map_err(HyperkitError::from)?,
                ethernet: ethernet.clone(),
                port: port.clone(),
                vsock: dir.join("connect"),
            }),
            _ => None,
        };
        let publish_via = match (&net.vpnkit_socket, &net.port_socket) {
            (Some(ethernet), Some(port)) => Some(PublishVia {
                ethernet: ethernet.clone(),
                port: port.clone(),
                uuid: String::new(),
            }),
            _ => None,
        };
        let plan = Plan {
            config,
            userdata: request.userdata.clone(),
            vpnkit_launch,
            publish_via,
            preferred_ipv4: self.preferred_ipv4,
            publish: request.publish.clone(),
            relay: foreground && self.console == ForegroundConsole::Relay,
            detach: !foreground,
        };
        Ok((plan, dir))
    }

    /// Plans the run, takes its state dir (linked under the root by name), fills in the vpnkit
    /// UUID kept there and records the start; the returned lock is held until hyperkit runs (or
    /// for a foreground run, throughout).
    fn prepare(&self, request: &Request, foreground: bool) -> Result<(StateLock, Plan), VmError> {
        let (mut plan, dir) = self.plan(request, foreground)?;
        let state = self.root.prepare(&request.name, BackendKind::Hyperkit, Some(&dir))?;
        let lock = state.lock()?;
        if let Some(nic) = &mut plan.config.vpnkit {
            let uuid = files::vpnkit_uuid(&state, self.vpnkit_uuid.as_deref())?;
            nic.uuid = Some(uuid.clone());
            if let Some(via) = &mut plan.publish_via {
                via.uuid = uuid;
            }
        }
        let facts = RunFacts {
            kind: BackendKind::Hyperkit,
            holds_console: foreground && self.console != ForegroundConsole::File,
            accel: None,
            created_disks: plan
                .config
                .disks
                .iter()
                .filter(|d| d.size_mib.is_some() && !d.path.exists())
                .map(|d| d.path.clone())
                .collect(),
            lease: None,
        };
        records::record_start(&state, request, facts)?;
        Ok((lock, plan))
    }

    /// Launches and records the outcome: `Running` with hyperkit's pid, or `Failed` with the
    /// error.
    async fn launch(&self, state: &StateDir, plan: &Plan) -> Result<launch::Launched, VmError> {
        match launch::launch(state, plan).await {
            Ok(launched) => {
                records::record_booted(state, Some(launched.pid()))?;
                Ok(launched)
            }
            Err(e) => {
                record_failure(state, &e.to_string());
                let _ = state.clean_runtime();
                Err(e.into())
            }
        }
    }
}

/// The neutral account of a foreground run's end, and the failure when hyperkit failed on its own.
fn ending(end: &launch::ForegroundEnd) -> (Ending, Option<String>) {
    match (&end.stopped, end.status.success()) {
        (Some(stopped), _) => (stopped.clone(), None),
        (None, true) => (Ending::GuestPoweredOff { power_button: false }, None),
        (None, false) => (
            Ending::Exited(end.status.to_string()),
            Some(format!("hyperkit exited with {}", end.status)),
        ),
    }
}

impl Backend for Hyperkit {
    crate::backend::local_lifecycle!();

    fn kind(&self) -> BackendKind {
        BackendKind::Hyperkit
    }

    async fn start(&self, request: &Request) -> Result<InstanceRecord, VmError> {
        let (lock, plan) = self.prepare(request, false)?;
        let state = lock.state().clone();
        self.launch(&state, &plan).await?;
        drop(lock);
        records::current(&state)
    }

    async fn run(
        &self,
        request: &Request,
        console: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<RunEnd, VmError> {
        let (lock, plan) = self.prepare(request, true)?;
        let state = lock.state().clone();
        let launched = self.launch(&state, &plan).await?;
        let end = launch::run_foreground(launched, &state, plan.relay, console, stop_timeout).await;
        // hyperkit is gone: what it left behind would only read as a stale instance.
        let cleaned = state.clean_runtime();
        let end = match end {
            Ok(end) => end,
            Err(e) => {
                record_failure(&state, &e.to_string());
                return Err(e.into());
            }
        };
        cleaned?;
        let (ending, failure) = ending(&end);
        record_end(&state, failure.as_deref())?;
        drop(lock);
        Ok(RunEnd { ending, failure })
    }

    /// hyperkit's console pty, when the console is not on a terminal.
    async fn console(&self, name: &str) -> Result<GuestConsole, VmError> {
        let state = attachable(self, name, files::console_ring).await?;
        if files::read_json(&state)?.is_some_and(|json| json.console == Console::Stdio.json_code()) {
            return Err(VmError::ConsoleUnavailable {
                name: name.to_string(),
                why: "its console is on the terminal it was started from".into(),
                log: files::console_ring(&state),
            });
        }
        let tty = files::tty(&state);
        launch::open_tty(&tty).await.map_err(|source| VmError::Io {
            doing: "open the console",
            path: tty,
            source,
        })
    }
}

impl LocalBackend for Hyperkit {
    fn root(&self) -> &StateRoot {
        &self.root
    }

    async fn probe(&self, state: &StateDir) -> Result<Option<u32>, VmError> {
        Ok(state.running_pid()?)
    }

    /// SIGTERM (hyperkit shuts the guest down through ACPI), then SIGKILL after `timeout`.
    async fn halt(&self, state: &StateDir, timeout: Duration) -> Result<Stopped, VmError> {
        let Some(pid) = state.running_pid()? else {
            if !state.is_owned()? {
                state.clean_runtime()?;
            }
            return Ok(Stopped::Signalled("it had already exited".into()));
        };
        send(pid, Signal::TERM);
        let stopped = match wait_or_kill(pid, timeout).await {
            Some(Exit::InTime) => Stopped::PoweredDown,
            Some(Exit::Killed) => {
                Stopped::Signalled(format!("the guest did not power off within {}s", timeout.as_secs()))
            }
            None => {
                return Err(VmError::Unkillable {
                    name: state.name().to_string(),
                    pid,
                })
            }
        };
        // A foreground run holding the directory cleans up after its hyperkit itself.
        if !state.is_owned()? {
            state.clean_runtime()?;
        }
        Ok(stopped)
    }
}

#[cfg(test)]
mod tests;
