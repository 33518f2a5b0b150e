//! [`Vmware`]: the VMware backend of [`Backend`], and its default recipe, LinuxKit's `run
//! vmware`: what a [`Request`] becomes (the image, the `PREFIX-state` state dir next to it, the
//! extra disk, `STATE/linuxkit.vmx`), started with `vmrun start`, followed through
//! `STATE/console.log`, stopped with `vmrun stop` (soft, then hard).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::disk::{ensure_disk, resolve_disk, VmdkDisk};
use super::follow::{copy_new, follow, Follow};
use super::{detect_image, Network, Product, Vmrun, VmwareError, VmxBoot, VmxConfig};
use crate::backend::{Backend, Ending, LocalBackend, RunEnd, Stopped};
use crate::console::Console;
use crate::error::VmError;
use crate::instance::{BackendKind, InstanceRecord, InstanceState, Request};
use crate::machine::{Arch, BootKind};
use crate::records::{self, record_end, record_failure, RunFacts};
use crate::state::{StateDir, StateLock, StateRoot};
use crate::stop_signals::StopSignals;

/// The `.vmx` file in the state dir (LinuxKit's name).
pub const VMX_FILE: &str = "linuxkit.vmx";
/// The serial console's file in the state dir.
pub const CONSOLE_FILE: &str = "console.log";

/// The VMware backend: how this host runs VMware (through `vmrun`). What differs per instance
/// is in the [`Request`]: an ISO or VMDK image, at most one extra VMDK disk, VMware's networking
/// (`nat` by default, `bridged`, `hostonly`, `none`); its state dir defaults to LinuxKit's
/// `PREFIX-state` next to the image. VMware cannot boot a kernel+initrd, publish ports, take
/// userdata or boot through UEFI here: such requests are refused.
#[derive(Debug, Clone)]
pub struct Vmware {
    root: StateRoot,
    /// vmrun: a path, or a name looked up in `$PATH`; `None` looks in `$PATH`, then where
    /// VMware installs it.
    pub vmrun: Option<PathBuf>,
    /// The product vmrun drives; `None` is Fusion on macOS, Workstation elsewhere.
    pub product: Option<Product>,
    /// Open the VMware window instead of running headless.
    pub gui: bool,
    /// How the console file and `vmrun list` are polled.
    pub(crate) follow: Follow,
}

/// What one start needs, decided from the request.
#[derive(Debug, Clone)]
struct Plan {
    vmrun: Vmrun,
    /// The state dir, absolute.
    dir: PathBuf,
    vmx: PathBuf,
    console: PathBuf,
    disk: Option<VmdkDisk>,
    /// The `.vmx` text.
    text: String,
}

/// How `vmrun stop` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    /// It was not running.
    NotRunning,
    /// `vmrun stop VMX soft` shut it down.
    Soft,
    /// It needed `vmrun stop VMX hard`.
    Hard,
}

fn absolute(path: &Path) -> Result<PathBuf, VmwareError> {
    std::path::absolute(path).map_err(VmwareError::io("make absolute", path))
}

/// Writes `text` to `path` through a temporary file renamed into place.
fn write_atomic(path: &Path, text: &str) -> Result<(), VmwareError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(VmwareError::io("create a file in", dir))?;
    tmp.write_all(text.as_bytes())
        .map_err(VmwareError::io("write", tmp.path().to_path_buf()))?;
    tmp.persist(path).map_err(|e| VmwareError::io("write", path)(e.error))?;
    Ok(())
}

/// Stops the VM at `vmx`: `vmrun stop VMX soft` (a guest shutdown, which needs VMware Tools in
/// the guest), waiting up to `wait` for it to leave `vmrun list`, then `vmrun stop VMX hard`.
fn halt_vm(vmrun: &Vmrun, vmx: &Path, wait: Duration) -> Result<Halt, VmwareError> {
    if !vmrun.is_running(vmx)? {
        return Ok(Halt::NotRunning);
    }
    if vmrun.exec(&vmrun.stop_args(vmx, false)).is_ok() {
        let deadline = Instant::now() + wait;
        loop {
            if !vmrun.is_running(vmx)? {
                return Ok(Halt::Soft);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200).min(wait));
        }
    }
    vmrun.exec(&vmrun.stop_args(vmx, true))?;
    Ok(Halt::Hard)
}

/// [`halt_vm`] on a thread of its own (it waits, and vmrun may take its time).
async fn halt_in_background(vmrun: Vmrun, vmx: PathBuf, wait: Duration) -> Result<Halt, VmError> {
    let path = vmx.clone();
    let joined = tokio::task::spawn_blocking(move || halt_vm(&vmrun, &vmx, wait)).await;
    joined
        .map_err(|e| VmError::Io {
            doing: "stop the VM of",
            path,
            source: io::Error::other(e),
        })?
        .map_err(VmError::from)
}

/// A writer to the console's socket that notices when the reader has gone: its `flush` (which
/// [`follow`] calls at every poll) fails once the other end is closed.
struct ToReader(UnixStream);

impl Write for ToReader {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The reader never writes, so a read sees only the end of the stream.
        self.0.set_nonblocking(true)?;
        let read = self.0.read(&mut [0u8; 1]);
        self.0.set_nonblocking(false)?;
        match read {
            Ok(0) => Err(io::ErrorKind::BrokenPipe.into()),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => self.0.flush(),
        }
    }
}

impl Vmware {
    /// vmrun from `$PATH` or VMware's install path, the host's product, headless, keeping
    /// records under `root`.
    pub fn new(root: StateRoot) -> Vmware {
        Vmware {
            root,
            vmrun: None,
            product: None,
            gui: false,
            follow: Follow::default(),
        }
    }

    fn find_vmrun(&self) -> Result<Vmrun, VmwareError> {
        Vmrun::find(self.vmrun.as_deref(), self.product)
    }

    /// The recipe: checks the request and decides everything the start needs, touching nothing.
    fn plan(&self, request: &Request) -> Result<Plan, VmError> {
        let unsupported = |what| VmError::Unsupported {
            backend: BackendKind::Vmware,
            what,
        };
        if request.arch.is_some_and(|arch| Some(arch) != Arch::host()) {
            return Err(unsupported("run guests of another architecture than the host's"));
        }
        if request.network.is_some() {
            return Err(unsupported("join a private network (qemu can)"));
        }
        if !request.publish.is_empty() {
            return Err(unsupported("publish ports"));
        }
        if request.userdata.is_some() {
            return Err(unsupported("pass userdata to the guest"));
        }
        if request.uefi {
            return Err(unsupported("boot through UEFI firmware"));
        }
        let image = match request.boot {
            BootKind::Kernel | BootKind::Squashfs => return Err(VmwareError::KernelBoot(request.image.clone()).into()),
            BootKind::Detect | BootKind::Iso => detect_image(&request.image)?,
        };
        let vmrun = self.find_vmrun()?;
        let network: Network = request.networking.as_deref().unwrap_or("nat").parse()?;
        let dir = absolute(&request.state_dir.clone().unwrap_or_else(|| image.default_state_dir()))?;
        let disk = resolve_disk(&request.disks, &dir)?;
        let boot = match image.boot {
            VmxBoot::Iso(p) => VmxBoot::Iso(absolute(&p)?),
            VmxBoot::Vmdk(p) => VmxBoot::Vmdk(absolute(&p)?),
        };
        let vmx = dir.join(VMX_FILE);
        let console = dir.join(CONSOLE_FILE);
        let text = VmxConfig {
            display_name: request.name.clone(),
            cpus: request.cpus,
            memory_mib: request.memory_mib,
            boot,
            data_disk: disk.as_ref().map(|d| d.path.clone()),
            console: Some(console.clone()),
            network,
        }
        .vmx()?;
        Ok(Plan {
            vmrun,
            dir,
            vmx,
            console,
            disk,
            text,
        })
    }

    /// Plans the start, takes its state dir (linked under the root by name), checks that no VM
    /// runs from it and records the start.
    fn prepare(&self, request: &Request) -> Result<(StateLock, Plan), VmError> {
        let plan = self.plan(request)?;
        let state = self.root.prepare(&request.name, BackendKind::Vmware, Some(&plan.dir))?;
        let lock = state.lock()?;
        if plan.vmrun.is_running(&plan.vmx)? {
            return Err(VmwareError::AlreadyRunning {
                stop: plan.vmrun.command_line(&plan.vmrun.stop_args(&plan.vmx, false)),
                vmx: plan.vmx.clone(),
            }
            .into());
        }
        // The console is a file: a foreground run does not keep it from other readers.
        let facts = RunFacts {
            kind: BackendKind::Vmware,
            holds_console: false,
            accel: None,
            created_disks: plan
                .disk
                .iter()
                .filter(|d| d.size_mib.is_some() && !d.path.exists())
                .map(|d| d.path.clone())
                .collect(),
            lease: None,
        };
        records::record_start(&state, request, facts)?;
        Ok((lock, plan))
    }

    /// Creates the disk, writes the `.vmx` (after removing the last run's console log) and runs
    /// `vmrun start`; records `Running`, or `Failed` with the error.
    fn launch(&self, state: &StateDir, plan: &Plan) -> Result<(), VmError> {
        let started = (|| {
            if let Some(disk) = &plan.disk {
                if ensure_disk(&plan.vmrun, disk)? {
                    tracing::info!("created disk {}", disk.path.display());
                }
            }
            match std::fs::remove_file(&plan.console) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(VmwareError::io("remove the old console log", &plan.console)(e)),
            }
            write_atomic(&plan.vmx, &plan.text)?;
            plan.vmrun.exec(&plan.vmrun.start_args(&plan.vmx, self.gui))
        })();
        match started {
            Ok(_) => records::record_booted(state, None),
            Err(e) => {
                record_failure(state, &e.to_string());
                Err(e.into())
            }
        }
    }

    /// Copies the console file to `out` until the VM leaves `vmrun list`. SIGINT, SIGTERM or
    /// SIGHUP stop it (soft, then hard after `stop_timeout`); a second one powers it off at once.
    async fn follow_foreground(
        &self,
        plan: &Plan,
        out: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<Ending, VmError> {
        let mut signals = StopSignals::watch().map_err(|source| VmError::Io {
            doing: "watch signals for the VM of",
            path: plan.vmx.clone(),
            source,
        })?;
        let vmrun = &plan.vmrun;
        let mut file: Option<File> = None;
        let mut listed = Instant::now();
        let mut halting: Option<tokio::task::JoinHandle<Result<Halt, VmError>>> = None;
        let mut stopped: Option<Ending> = None;
        let mut asked = false;
        loop {
            copy_new(&mut file, &plan.console, out)?;
            if listed.elapsed() >= self.follow.list_every {
                listed = Instant::now();
                if !vmrun.is_running(&plan.vmx)? {
                    copy_new(&mut file, &plan.console, out)?;
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.follow.poll) => {}
                halted = async {
                    match halting.as_mut() {
                        Some(handle) => handle.await,
                        None => std::future::pending().await,
                    }
                } => {
                    halting = None;
                    match halted {
                        Ok(Ok(Halt::Soft)) => stopped = stopped.or(Some(Ending::PoweredDown)),
                        Ok(Ok(Halt::Hard)) => stopped = stopped.or(Some(Ending::Quit { after: stop_timeout })),
                        Ok(Ok(Halt::NotRunning)) => {}
                        Ok(Err(e)) => tracing::warn!("stopping VM `{}`: {e}", plan.vmx.display()),
                        Err(e) => tracing::warn!("stopping VM `{}`: {e}", plan.vmx.display()),
                    }
                }
                _ = signals.recv(), if stopped.is_none() => {
                    if asked {
                        vmrun.exec(&vmrun.stop_args(&plan.vmx, true))?;
                        stopped = Some(Ending::Killed);
                    } else {
                        asked = true;
                        tracing::info!("stopping VM {}: vmrun stop soft (again to power it off)", plan.vmx.display());
                        let task = halt_in_background(vmrun.clone(), plan.vmx.clone(), stop_timeout);
                        halting = Some(tokio::spawn(task));
                    }
                }
            }
        }
        Ok(stopped.unwrap_or(Ending::GuestPoweredOff { power_button: asked }))
    }

    /// The `.vmx` of the instance whose state dir is `state`, by the path it was started with
    /// (the state dir the link under the root leads to): vmrun knows a VM by that path.
    fn vmx(state: &StateDir) -> PathBuf {
        let dir = std::fs::canonicalize(state.dir()).unwrap_or_else(|_| state.dir().to_path_buf());
        dir.join(VMX_FILE)
    }
}

impl Backend for Vmware {
    crate::backend::local_lifecycle!();

    fn kind(&self) -> BackendKind {
        BackendKind::Vmware
    }

    async fn start(&self, request: &Request) -> Result<InstanceRecord, VmError> {
        let (lock, plan) = self.prepare(request)?;
        let state = lock.state().clone();
        self.launch(&state, &plan)?;
        drop(lock);
        records::current(&state)
    }

    async fn run(
        &self,
        request: &Request,
        console: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<RunEnd, VmError> {
        let (lock, plan) = self.prepare(request)?;
        let state = lock.state().clone();
        self.launch(&state, &plan)?;
        let ending = match self.follow_foreground(&plan, console, stop_timeout).await {
            Ok(ending) => ending,
            Err(e) => {
                record_failure(&state, &e.to_string());
                return Err(e);
            }
        };
        record_end(&state, None)?;
        drop(lock);
        Ok(RunEnd { ending, failure: None })
    }

    /// The console file, from its start and as it grows, until the VM stops: output only.
    async fn console(&self, name: &str) -> Result<Console, VmError> {
        let record = self.describe(name).await?;
        let (state, _) = self.root.open(name)?;
        let log = state.dir().join(CONSOLE_FILE);
        if record.state != InstanceState::Running {
            return Err(VmError::ConsoleUnavailable {
                name: name.to_string(),
                why: format!("it is {}", record.state),
                log,
            });
        }
        let io = |doing| {
            let path = log.clone();
            move |source| VmError::Io { doing, path, source }
        };
        let (ours, theirs) = UnixStream::pair().map_err(io("make a socket to follow"))?;
        ours.set_nonblocking(true).map_err(io("make a socket to follow"))?;
        let reader = tokio::net::UnixStream::from_std(ours).map_err(io("make a socket to follow"))?;
        let (vmrun, vmx, how) = (self.find_vmrun()?, Self::vmx(&state), self.follow);
        let console_log = log.clone();
        std::thread::spawn(move || {
            if let Err(e) = follow(&vmrun, &vmx, &console_log, &mut ToReader(theirs), &how) {
                tracing::debug!("following {}: {e}", console_log.display());
            }
        });
        Ok(Console::new(Box::new(reader), None))
    }
}

impl LocalBackend for Vmware {
    fn root(&self) -> &StateRoot {
        &self.root
    }

    /// Whether `vmrun list` shows the instance's `.vmx`. VMware's VM process is not ours to
    /// know, so a running VM's pid is given as 0.
    async fn probe(&self, state: &StateDir) -> Result<Option<u32>, VmError> {
        Ok(self.find_vmrun()?.is_running(&Self::vmx(state))?.then_some(0))
    }

    /// `vmrun stop soft`, then `vmrun stop hard` after `timeout`.
    async fn halt(&self, state: &StateDir, timeout: Duration) -> Result<Stopped, VmError> {
        let halted = halt_in_background(self.find_vmrun()?, Self::vmx(state), timeout).await?;
        Ok(match halted {
            Halt::Soft => Stopped::PoweredDown,
            Halt::Hard => Stopped::Quit,
            Halt::NotRunning => Stopped::Signalled("it had already exited".into()),
        })
    }
}

#[cfg(test)]
mod tests;
