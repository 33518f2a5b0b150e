//! The instance lifecycle every backend offers ([`Backend`]) and the enum over the backends
//! ([`AnyBackend`]).
//!
//! A backend implements what differs: starting a VM (detached, or in the caller's foreground),
//! telling whether its process runs, halting it, attaching to its console. What is the same for
//! every backend is implemented once here, on top of those and the records in the
//! [`StateRoot`]: describe and list (the recorded state reconciled with the process), label,
//! stop (with the state transitions around the halt) and destroy.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::console::Console;
use crate::error::VmError;
use crate::instance::{matches, Action, BackendKind, InstanceRecord, InstanceState, Request, Tags};
use crate::process::alive;
use crate::state::{StateDir, StateRoot};

/// How a stop ended the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The guest powered off after the ACPI power button.
    PoweredDown,
    /// The VM shut down after the ACPI power button for another reason (qemu's name for it).
    ShutDown(String),
    /// The guest did not power off within the timeout; the VM program was told to quit.
    Quit,
    /// The VM program did not answer (why); it was terminated by signal.
    Signalled(String),
}

/// How a foreground run ([`Backend::run`]) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// What ended it.
    pub ending: Ending,
    /// The end of the VM program's own messages, when it failed.
    pub failure: Option<String>,
}

/// What ended a foreground run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The caller stopped it (a signal) and the guest powered off after the ACPI power button.
    PoweredDown,
    /// The caller stopped it and the guest did not power off in time: the VM program was told to quit.
    Quit {
        /// How long the guest was given.
        after: Duration,
    },
    /// A second signal killed it.
    Killed,
    /// The guest powered off; `power_button` when the ACPI power button was pressed from outside
    /// (another process stopping it).
    GuestPoweredOff {
        /// Whether the power button had been pressed.
        power_button: bool,
    },
    /// The guest shut down for another reason (reboot with no-reboot, panic, ...).
    GuestShutdown(String),
    /// The host side stopped it (the reason).
    HostStopped(String),
    /// The VM program exited (its exit status).
    Exited(String),
}

/// The lifecycle of instances on one backend: what the CLI, the plugin and clusters use, whatever
/// runs the VMs (processes on this host, or a cloud).
pub trait Backend: Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Starts an instance that outlives the caller and returns its record once the guest runs.
    fn start(&self, request: &Request) -> impl Future<Output = Result<InstanceRecord, VmError>> + Send;

    /// Starts an instance in the caller's foreground: its console goes to `console` (and the
    /// caller's stdin to it, where the backend has an interactive console) until it exits;
    /// SIGINT, SIGTERM or SIGHUP stop it gracefully within `stop_timeout`. It dies with the caller.
    fn run(
        &self,
        request: &Request,
        console: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> impl Future<Output = Result<RunEnd, VmError>> + Send;

    /// The instance `name` as it is now.
    fn describe(&self, name: &str) -> impl Future<Output = Result<InstanceRecord, VmError>> + Send;

    /// Every instance of this backend that carries all the tags of `filter`, sorted by name.
    fn list(&self, filter: &Tags) -> impl Future<Output = Result<Vec<InstanceRecord>, VmError>> + Send;

    /// Merges `tags` into the instance's tags (a tag given again takes the new value).
    fn label(&self, name: &str, tags: &Tags) -> impl Future<Output = Result<InstanceRecord, VmError>> + Send;

    /// Stops the instance: gracefully within `timeout`, then by force; it must be starting or
    /// running.
    fn stop(&self, name: &str, timeout: Duration) -> impl Future<Output = Result<Stopped, VmError>> + Send;

    /// Stops the instance if it runs, then removes it and what was created for it.
    fn destroy(&self, name: &str, timeout: Duration) -> impl Future<Output = Result<(), VmError>> + Send;

    /// Attaches to the running instance's serial console.
    fn console(&self, name: &str) -> impl Future<Output = Result<Console, VmError>> + Send;
}

/// A backend whose VMs are processes on this host, with their records under [`LocalBackend::root`],
/// so any process using the same root (the CLI, a plugin daemon, a restarted daemon) sees the same
/// instances. It implements what differs (telling whether its process runs, halting it); the
/// `local_*` methods implement [`Backend`]'s describe, list, label, stop and destroy on top of
/// those and the records.
pub trait LocalBackend: Backend {
    /// Where the instances' records are.
    fn root(&self) -> &StateRoot;

    /// The pid of the instance's VM process, `None` when none runs.
    fn probe(&self, state: &StateDir) -> impl Future<Output = Result<Option<u32>, VmError>> + Send;

    /// Stops the instance's VM process: gracefully (ACPI) within `timeout`, then by force. Returns
    /// once it has exited.
    fn halt(&self, state: &StateDir, timeout: Duration) -> impl Future<Output = Result<Stopped, VmError>> + Send;

    /// [`Backend::describe`]: the recorded state reconciled with its process.
    fn local_describe(&self, name: &str) -> impl Future<Output = Result<InstanceRecord, VmError>> + Send {
        async move {
            let (state, record) = self.root().open(name)?;
            check_kind(self.kind(), &record)?;
            self.reconcile(&state, record).await
        }
    }

    /// [`Backend::list`]: the records of this backend under the root.
    fn local_list(&self, filter: &Tags) -> impl Future<Output = Result<Vec<InstanceRecord>, VmError>> + Send {
        async move {
            let mut out = Vec::new();
            for (state, record) in self.root().list()? {
                if record.backend == self.kind() && matches(&record.tags, filter) {
                    out.push(self.reconcile(&state, record).await?);
                }
            }
            Ok(out)
        }
    }

    /// [`Backend::label`]: persisted atomically in the record.
    fn local_label(&self, name: &str, tags: &Tags) -> impl Future<Output = Result<InstanceRecord, VmError>> + Send {
        async move {
            let (state, record) = self.root().open(name)?;
            check_kind(self.kind(), &record)?;
            let (record, ()) = state.update_record(|r| {
                r.tags.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(())
            })?;
            Ok(record)
        }
    }

    /// [`Backend::stop`]: [`LocalBackend::halt`] with the state transitions around it.
    fn local_stop(&self, name: &str, timeout: Duration) -> impl Future<Output = Result<Stopped, VmError>> + Send {
        async move {
            let (state, record) = self.root().open(name)?;
            check_kind(self.kind(), &record)?;
            self.reconcile(&state, record).await?;
            transition(&state, Action::Stop)?;
            let stopped = self.halt(&state, timeout).await;
            finish(&state, &stopped);
            stopped
        }
    }

    /// [`Backend::destroy`]: removes its record, its state directory (and the link to it under
    /// the root) and the disks created for it, unless the request said to keep them. Disks it was
    /// given by path are never removed. It leaves its private network (its address is free again).
    fn local_destroy(&self, name: &str, timeout: Duration) -> impl Future<Output = Result<(), VmError>> + Send {
        async move {
            let record = self.local_describe(name).await?;
            if record.state.is_active() {
                self.local_stop(name, timeout).await?;
            }
            let (state, record) = self.root().open(name)?;
            let mut check = record.clone();
            check.apply(Action::Destroy).map_err(|source| VmError::Transition {
                name: name.to_string(),
                source,
            })?;
            let keep: &[_] = if record.keep_disks { &record.created_disks } else { &[] };
            remove_state(self.root(), &state, keep)?;
            if let Some(network) = &record.network {
                crate::network::leave(self.root(), network, name)?;
            }
            Ok(())
        }
    }

    /// `record` with its state brought up to date: an active record whose process is gone (and
    /// that no process is starting or running in its foreground) has exited.
    fn reconcile(
        &self,
        state: &StateDir,
        record: InstanceRecord,
    ) -> impl Future<Output = Result<InstanceRecord, VmError>> + Send {
        async move {
            if !record.state.is_active() || state.is_owned()? {
                return Ok(record);
            }
            if self.probe(state).await?.is_some() {
                return Ok(record);
            }
            let (record, ()) = state.update_record(|r| {
                if r.state.is_active() {
                    let starting = r.state == InstanceState::Starting;
                    // Allowed from every active state.
                    let _ = r.apply(Action::Exited);
                    if starting {
                        r.failure = Some("the VM process exited while starting".into());
                    }
                }
                Ok(())
            })?;
            Ok(record)
        }
    }
}

/// [`Backend`]'s describe, list, label, stop and destroy of a [`LocalBackend`]: its `local_*`
/// methods. Used inside `impl Backend for X`.
macro_rules! local_lifecycle {
    () => {
        async fn describe(&self, name: &str) -> Result<InstanceRecord, VmError> {
            $crate::LocalBackend::local_describe(self, name).await
        }

        async fn list(&self, filter: &$crate::Tags) -> Result<Vec<InstanceRecord>, VmError> {
            $crate::LocalBackend::local_list(self, filter).await
        }

        async fn label(&self, name: &str, tags: &$crate::Tags) -> Result<InstanceRecord, VmError> {
            $crate::LocalBackend::local_label(self, name, tags).await
        }

        async fn stop(&self, name: &str, timeout: Duration) -> Result<$crate::Stopped, VmError> {
            $crate::LocalBackend::local_stop(self, name, timeout).await
        }

        async fn destroy(&self, name: &str, timeout: Duration) -> Result<(), VmError> {
            $crate::LocalBackend::local_destroy(self, name, timeout).await
        }
    };
}
pub(crate) use local_lifecycle;

fn check_kind(asked: BackendKind, record: &InstanceRecord) -> Result<(), VmError> {
    if record.backend == asked {
        Ok(())
    } else {
        Err(VmError::WrongBackend {
            name: record.name.clone(),
            actual: record.backend,
            asked,
        })
    }
}

/// The state dir of instance `name` when a console can attach to it: it runs, and not in the
/// foreground of a live process (which holds its console). Else [`VmError::ConsoleUnavailable`],
/// naming where its console's output is kept (`log`).
pub(crate) async fn attachable<B: LocalBackend + ?Sized>(
    backend: &B,
    name: &str,
    log: impl Fn(&StateDir) -> PathBuf,
) -> Result<StateDir, VmError> {
    let record = backend.describe(name).await?;
    let (state, _) = backend.root().open(name)?;
    let why = if record.state != InstanceState::Running {
        format!("it is {}", record.state)
    } else if let Some(owner) = record.owner_pid.filter(|&pid| alive(pid)) {
        format!("it runs in the foreground of process {owner}, which holds its console")
    } else {
        return Ok(state);
    };
    Err(VmError::ConsoleUnavailable {
        name: name.to_string(),
        why,
        log: log(&state),
    })
}

/// Applies `action` to the instance's persisted record.
pub(crate) fn transition(state: &StateDir, action: Action) -> Result<InstanceRecord, VmError> {
    let (record, outcome) = state.update_record(|r| Ok(r.apply(action)))?;
    outcome.map_err(|source| VmError::Transition {
        name: state.name().to_string(),
        source,
    })?;
    Ok(record)
}

/// Records how a halt ended: exited, or failed with the error.
fn finish<T>(state: &StateDir, result: &Result<T, VmError>) {
    let outcome = state.update_record(|r| {
        if r.state.is_active() {
            match result {
                Ok(_) => {
                    let _ = r.apply(Action::Exited);
                }
                Err(e) => {
                    let _ = r.apply(Action::Fail);
                    r.failure = Some(e.to_string());
                }
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        tracing::warn!("instance `{}`: cannot record the end of its VM: {e}", state.name());
    }
}

/// Removes an instance's state: its directory (everything but `keep`), and its link under `root`.
/// The directory is the one the link leads to when the state lives elsewhere (an explicit state
/// dir, LinuxKit's `PREFIX-state`).
fn remove_state(root: &StateRoot, state: &StateDir, keep: &[std::path::PathBuf]) -> Result<(), VmError> {
    let io = |doing, path: &Path| {
        let path = path.to_path_buf();
        move |source| VmError::Io { doing, path, source }
    };
    let dir = std::fs::canonicalize(state.dir()).map_err(io("resolve", state.dir()))?;
    let keep: Vec<_> = keep.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    let entries = std::fs::read_dir(&dir).map_err(io("read", &dir))?;
    for entry in entries {
        let path = entry.map_err(io("read", &dir))?.path();
        if keep.contains(&path) {
            continue;
        }
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io("remove", &path))?;
    }
    if keep.is_empty() {
        std::fs::remove_dir(&dir).map_err(io("remove", &dir))?;
    }
    let link = root.base().join(state.name());
    if link.is_symlink() {
        std::fs::remove_file(&link).map_err(io("remove", &link))?;
    }
    Ok(())
}

/// One of the backends, chosen at run time (by the CLI's subcommand, by the plugin's properties,
/// or by the backend a record names).
#[derive(Debug)]
pub enum AnyBackend {
    /// qemu.
    Qemu(crate::qemu::Qemu),
    /// hyperkit.
    Hyperkit(crate::hyperkit::Hyperkit),
    /// VMware.
    Vmware(crate::vmware::Vmware),
    /// Google Compute Engine.
    Gcp(crate::gcp::Gcp),
}

impl AnyBackend {
    /// The local backend `kind` with its default settings, keeping records under `root`: what
    /// acting on an existing instance needs. A cloud backend has no default settings (its
    /// project and zone): [`VmError::NotLocal`].
    pub fn of_kind(kind: BackendKind, root: StateRoot) -> Result<AnyBackend, VmError> {
        match kind {
            BackendKind::Qemu => Ok(AnyBackend::Qemu(crate::qemu::Qemu::new(root))),
            BackendKind::Hyperkit => Ok(AnyBackend::Hyperkit(crate::hyperkit::Hyperkit::new(root))),
            BackendKind::Vmware => Ok(AnyBackend::Vmware(crate::vmware::Vmware::new(root))),
            BackendKind::Gcp => Err(VmError::NotLocal { kind }),
        }
    }

    /// The backend of the instance `name` recorded under `root`, with its default settings.
    pub fn for_instance(root: &StateRoot, name: &str) -> Result<AnyBackend, VmError> {
        let (_, record) = root.open(name)?;
        AnyBackend::of_kind(record.backend, root.clone())
    }

    /// Every instance recorded under `root`, whatever its backend, that carries the tags of
    /// `filter`. The root is read once (sorted by name) and each record is reconciled by its own
    /// backend.
    pub async fn list_all(root: &StateRoot, filter: &Tags) -> Result<Vec<InstanceRecord>, VmError> {
        let mut out = Vec::new();
        for (state, record) in root.list()? {
            if !matches(&record.tags, filter) {
                continue;
            }
            let record = match AnyBackend::of_kind(record.backend, root.clone())? {
                AnyBackend::Qemu(b) => b.reconcile(&state, record).await?,
                AnyBackend::Hyperkit(b) => b.reconcile(&state, record).await?,
                AnyBackend::Vmware(b) => b.reconcile(&state, record).await?,
                AnyBackend::Gcp(_) => record,
            };
            out.push(record);
        }
        Ok(out)
    }
}

macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Qemu($b) => $e,
            AnyBackend::Hyperkit($b) => $e,
            AnyBackend::Vmware($b) => $e,
            AnyBackend::Gcp($b) => $e,
        }
    };
}

impl Backend for AnyBackend {
    fn kind(&self) -> BackendKind {
        each!(self, b => b.kind())
    }

    async fn start(&self, request: &Request) -> Result<InstanceRecord, VmError> {
        each!(self, b => b.start(request).await)
    }

    async fn run(
        &self,
        request: &Request,
        console: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<RunEnd, VmError> {
        each!(self, b => b.run(request, console, stop_timeout).await)
    }

    async fn describe(&self, name: &str) -> Result<InstanceRecord, VmError> {
        each!(self, b => b.describe(name).await)
    }

    async fn list(&self, filter: &Tags) -> Result<Vec<InstanceRecord>, VmError> {
        each!(self, b => b.list(filter).await)
    }

    async fn label(&self, name: &str, tags: &Tags) -> Result<InstanceRecord, VmError> {
        each!(self, b => b.label(name, tags).await)
    }

    async fn stop(&self, name: &str, timeout: Duration) -> Result<Stopped, VmError> {
        each!(self, b => b.stop(name, timeout).await)
    }

    async fn destroy(&self, name: &str, timeout: Duration) -> Result<(), VmError> {
        each!(self, b => b.destroy(name, timeout).await)
    }

    async fn console(&self, name: &str) -> Result<Console, VmError> {
        each!(self, b => b.console(name).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dead_pid;

    #[tokio::test]
    async fn a_console_attaches_to_a_running_instance_no_foreground_run_holds() {
        let base = tempfile::tempdir().unwrap();
        let root = StateRoot::new(base.path());
        let qemu = crate::qemu::Qemu::new(root.clone());
        let state = root.instance("vm", BackendKind::Qemu).unwrap();
        let mut record = crate::instance::sample("vm");
        record.state = InstanceState::Running;
        record.owner_pid = Some(std::process::id());
        std::fs::create_dir_all(state.dir()).unwrap();
        state.write_record(&record).unwrap();
        // Held as a foreground run holds it, so the record is left as it is.
        let lock = state.lock().unwrap();
        let e = attachable(&qemu, "vm", StateDir::console_log).await.unwrap_err();
        let pid = std::process::id();
        assert_eq!(
            e.to_string(),
            VmError::ConsoleUnavailable {
                name: "vm".into(),
                why: format!("it runs in the foreground of process {pid}, which holds its console"),
                log: state.console_log(),
            }
            .to_string()
        );
        // Its owner is gone: attachable.
        record.owner_pid = Some(dead_pid());
        state.write_record(&record).unwrap();
        assert_eq!(attachable(&qemu, "vm", StateDir::console_log).await.unwrap(), state);
        // No process holds it and no qemu runs: it has exited.
        drop(lock);
        let e = attachable(&qemu, "vm", StateDir::console_log).await.unwrap_err();
        assert!(
            matches!(&e, VmError::ConsoleUnavailable { why, .. } if why == "it is stopped"),
            "{e}"
        );
    }
}
