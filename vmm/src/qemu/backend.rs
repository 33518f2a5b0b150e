//! [`Qemu`]: the qemu backend of [`Backend`], and its default recipe: what a [`Request`] becomes
//! on qemu's command line (the binary for the guest's architecture, boot media, networking and
//! published ports, firmware, the accelerator with its environment overrides, disks, userdata).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::command::SocketNic;
use super::control;
use super::launch::{launch, LaunchOptions, RunEnd as QemuRunEnd, StopResult, Vm};
use super::{check_publish, find_qemu, find_qemu_img, Networking, QemuConfig};
use crate::accel::{self, AccelChoice, ProbeConfig, ACCEL_ENV};
use crate::backend::{attachable, Backend, Ending, LocalBackend, RunEnd, Stopped};
use crate::console::Console;
use crate::error::VmError;
use crate::instance::{BackendKind, InstanceRecord, Request};
use crate::machine::{detect, Arch, BootMedia};
use crate::network::{self, Lease};
use crate::qmp::ShutdownReason;
use crate::records::{self, record_end, record_failure, RunFacts};
use crate::state::{StateDir, StateLock, StateRoot};

/// LinuxKit's name for [`ACCEL_ENV`], honoured too.
pub const LINUXKIT_ACCEL_ENV: &str = "LINUXKIT_QEMU_ACCEL";

/// How long each stage of the KVM probe may take before KVM counts as hanging.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The qemu backend: how this host runs qemu. What differs per instance is in the [`Request`].
#[derive(Debug, Clone)]
pub struct Qemu {
    root: StateRoot,
    /// The qemu binary: a path, or a name looked up in `$PATH`; `None` is `qemu-system-ARCH`.
    pub binary: Option<PathBuf>,
    /// Extra `-device` values.
    pub devices: Vec<String>,
    /// Show the guest's display instead of running headless.
    pub gui: bool,
}

impl Qemu {
    /// qemu from `$PATH`, headless, keeping records under `root`.
    pub fn new(root: StateRoot) -> Qemu {
        Qemu {
            root,
            binary: None,
            devices: Vec::new(),
            gui: false,
        }
    }

    /// Checks the request, takes its state dir and records the start; the returned lock is held
    /// until qemu has its pid file written (or for a foreground run, throughout).
    fn prepare(&self, request: &Request, foreground: bool) -> Result<(StateLock, LaunchOptions), VmError> {
        let arch = match request.arch {
            Some(arch) => arch,
            None => Arch::host().ok_or(VmError::Unsupported {
                backend: BackendKind::Qemu,
                what: "run guests of this host's architecture without an explicit guest architecture",
            })?,
        };
        let qemu = find_qemu(arch, self.binary.as_deref())?;
        let detected = detect(&request.image, request.boot, None)?;
        let networking: Networking = request.networking.as_deref().unwrap_or("user").parse()?;
        check_publish(&networking, &request.publish)?;
        let uefi = match request.uefi || detected.needs_uefi() {
            true => Some(crate::firmware::find(arch, request.firmware.as_deref())?),
            false => None,
        };
        let state = self
            .root
            .prepare(&request.name, BackendKind::Qemu, request.state_dir.as_deref())?;
        let accel = self.accelerator(request, arch, &qemu, &detected.media)?;
        let media = crate::unpack::bootable(detected.media, state.dir())?;

        let mut config = QemuConfig::new(qemu, arch, accel, media);
        config.cpus = request.cpus;
        config.memory_mib = request.memory_mib;
        config.networking = networking;
        config.publish = request.publish.clone();
        config.devices = self.devices.clone();
        config.gui = self.gui;
        config.boot_snapshot = request.shared_image;
        let lock = state.lock()?;
        let joined = match &request.network {
            Some(attachment) => Some(network::join(&self.root, attachment, &request.name)?),
            None => None,
        };
        config.network_nic = joined.as_ref().map(|joined| SocketNic {
            fd: joined.connection.as_raw_fd(),
            mac: joined.lease.mac.clone(),
        });
        let lease = joined.as_ref().map(|joined| joined.lease.clone());
        let options = LaunchOptions {
            config,
            disks: request.disks.clone(),
            userdata: request.userdata.clone(),
            uefi,
            qemu_img: find_qemu_img(),
            detach: !foreground,
            network: joined.map(|joined| Arc::new(joined.connection)),
        };
        record_start(&state, request, &options, lease)?;
        Ok((lock, options))
    }

    /// The accelerator: the request's, else [`ACCEL_ENV`] (or LinuxKit's [`LINUXKIT_ACCEL_ENV`]),
    /// else KVM where a probe shows it works, else TCG (saying why once).
    fn accelerator(
        &self,
        request: &Request,
        arch: Arch,
        qemu: &std::path::Path,
        media: &BootMedia,
    ) -> Result<accel::Accel, VmError> {
        let explicit = request.accel.as_deref().map(str::parse).transpose()?;
        let env = std::env::var(ACCEL_ENV)
            .ok()
            .or_else(|| std::env::var(LINUXKIT_ACCEL_ENV).ok());
        let kernel = match media {
            BootMedia::Kernel { kernel, .. }
            | BootMedia::Squashfs { kernel, .. }
            | BootMedia::KernelIso { kernel, .. } => Some(kernel.clone()),
            BootMedia::Iso(_) | BootMedia::Disk { .. } => None,
        };
        let probe = ProbeConfig {
            qemu: qemu.to_path_buf(),
            timeout: KVM_PROBE_TIMEOUT,
            kernel,
            cache: Some(self.root.base().join("accel-probe.json")),
        };
        let choice = accel::choose(explicit, env.as_deref(), arch, &probe)?;
        if let AccelChoice::TcgFallback(why) = &choice {
            tracing::warn!(
                "not using KVM: {why}; running under TCG (slow); choose the accelerator explicitly or with {ACCEL_ENV}"
            );
        }
        Ok(choice.accel())
    }

    /// Launches and records the outcome: `Running` with qemu's pid, or `Failed` with the error.
    async fn launch(&self, lock: StateLock, options: LaunchOptions) -> Result<Vm, VmError> {
        let state = lock.state().clone();
        match launch(lock, options).await {
            Ok(vm) => {
                records::record_booted(&state, Some(vm.pid()))?;
                Ok(vm)
            }
            Err(e) => {
                record_failure(&state, &e.to_string());
                Err(e.into())
            }
        }
    }
}

/// The record of this run's start.
fn record_start(
    state: &StateDir,
    request: &Request,
    options: &LaunchOptions,
    lease: Option<Lease>,
) -> Result<(), VmError> {
    let created_disks = super::resolve_disks(&options.disks, state.dir())?
        .into_iter()
        .filter(|d| d.size_mib.is_some() && !d.path.exists())
        .map(|d| d.path)
        .collect();
    let facts = RunFacts {
        kind: BackendKind::Qemu,
        holds_console: !options.detach,
        accel: Some(options.config.accel.to_string()),
        created_disks,
        lease,
    };
    records::record_start(state, request, facts)
}

/// The neutral account of a foreground run's end.
fn ending(end: &QemuRunEnd, stop_timeout: Duration) -> Ending {
    match (&end.stopped, &end.shutdown) {
        (Some(StopResult::PoweredDown), _) => Ending::PoweredDown,
        (Some(StopResult::Quit), _) => Ending::Quit { after: stop_timeout },
        (Some(StopResult::Killed), _) => Ending::Killed,
        (None, Some(s)) if s.reason == ShutdownReason::GuestShutdown => Ending::GuestPoweredOff {
            power_button: end.power_button,
        },
        (None, Some(s)) if s.guest => Ending::GuestShutdown(s.reason.to_string()),
        (None, Some(s)) => Ending::HostStopped(s.reason.to_string()),
        (None, None) => Ending::Exited(end.status.to_string()),
    }
}

impl Backend for Qemu {
    crate::backend::local_lifecycle!();

    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    async fn start(&self, request: &Request) -> Result<InstanceRecord, VmError> {
        let (lock, options) = self.prepare(request, false)?;
        let state = lock.state().clone();
        let vm = self.launch(lock, options).await?;
        vm.detach().await?;
        records::current(&state)
    }

    async fn run(
        &self,
        request: &Request,
        console: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<RunEnd, VmError> {
        let (lock, options) = self.prepare(request, true)?;
        let state = lock.state().clone();
        let vm = self.launch(lock, options).await?;
        let end = match vm.run_foreground(console, stop_timeout).await {
            Ok(end) => end,
            Err(e) => {
                record_failure(&state, &e.to_string());
                return Err(e.into());
            }
        };
        let failure = end.messages.clone().filter(|_| end.stopped != Some(StopResult::Killed));
        record_end(&state, failure.as_deref())?;
        Ok(RunEnd {
            ending: ending(&end, stop_timeout),
            failure,
        })
    }

    async fn console(&self, name: &str) -> Result<Console, VmError> {
        let state = attachable(self, name, StateDir::console_log).await?;
        let console = Console::attach(&state.console_socket())
            .await
            .map_err(|source| VmError::Io {
                doing: "attach to the console",
                path: state.console_socket(),
                source,
            })?;
        Ok(console.with_history(state.console_log()))
    }
}

impl LocalBackend for Qemu {
    fn root(&self) -> &StateRoot {
        &self.root
    }

    async fn probe(&self, state: &StateDir) -> Result<Option<u32>, VmError> {
        Ok(state.running_pid()?)
    }

    async fn halt(&self, state: &StateDir, timeout: Duration) -> Result<Stopped, VmError> {
        control::stop(state, timeout).await
    }
}
