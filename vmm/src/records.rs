//! How every backend records a run in the instance's `instance.json`: the start (a new record,
//! or the last run's moved to `Starting`), the boot (`Running`, with the VM process's pid when
//! there is one), a failure (`Failed`, with why) and the end of a foreground run (`Stopped`).

use std::path::PathBuf;

use crate::backend::transition;
use crate::error::VmError;
use crate::instance::{Action, BackendKind, InstanceRecord, InstanceState, Request};
use crate::network::Lease;
use crate::state::{StateDir, StateError};

/// What one run of an instance is, beyond its [`Request`].
#[derive(Debug, Clone)]
pub(crate) struct RunFacts {
    /// The backend starting it.
    pub kind: BackendKind,
    /// Whether this process runs it in its foreground, holding its console.
    pub holds_console: bool,
    /// The accelerator chosen, where the backend has a choice.
    pub accel: Option<String>,
    /// Disks this run creates in the state dir.
    pub created_disks: Vec<PathBuf>,
    /// Its place on a private network.
    pub lease: Option<Lease>,
}

/// Writes the record of a start: a new one, or the last run's moved to `Starting` with what this
/// run asks for (tags merge). The caller holds the state dir's lock, so nothing runs from it.
pub(crate) fn record_start(state: &StateDir, request: &Request, facts: RunFacts) -> Result<(), VmError> {
    let mut record = match state.read_record()? {
        Some(old) => old,
        None => InstanceRecord {
            name: request.name.clone(),
            backend: facts.kind,
            state: InstanceState::Stopped,
            failure: None,
            logical_id: None,
            tags: Default::default(),
            spec_digest: None,
            image: PathBuf::new(),
            state_dir: PathBuf::new(),
            pid: None,
            owner_pid: None,
            accel: None,
            cpus: 0,
            memory_mib: 0,
            publish: Vec::new(),
            created_disks: Vec::new(),
            keep_disks: false,
            started: 0,
            address: None,
            network: None,
            machine: None,
        },
    };
    if record.backend != facts.kind {
        return Err(VmError::WrongBackend {
            name: request.name.clone(),
            actual: record.backend,
            asked: facts.kind,
        });
    }
    // The lock is ours, so nothing runs from here: a record still active is left from a crash.
    if record.state.is_active() {
        let _ = record.apply(Action::Exited);
    }
    record.apply(Action::Start).map_err(|source| VmError::Transition {
        name: request.name.clone(),
        source,
    })?;
    record.tags.extend(request.tags.clone());
    record.logical_id = request.logical_id.clone().or(record.logical_id);
    record.spec_digest = request.spec_digest.clone();
    record.image = request.image.clone();
    record.state_dir = state.dir().to_path_buf();
    record.owner_pid = facts.holds_console.then(std::process::id);
    record.accel = facts.accel;
    record.cpus = request.cpus;
    record.memory_mib = request.memory_mib;
    record.publish = request.publish.iter().map(ToString::to_string).collect();
    record.created_disks = facts.created_disks;
    record.keep_disks = request.keep_disks;
    record.started = InstanceRecord::now();
    record.network = facts.lease.as_ref().map(|lease| lease.network.clone());
    record.address = facts.lease.as_ref().map(|lease| lease.ip.to_string());
    state.write_record(&record)?;
    Ok(())
}

/// Records that the guest runs: `Running`, with the VM process's pid when the backend knows it.
pub(crate) fn record_booted(state: &StateDir, pid: Option<u32>) -> Result<(), VmError> {
    state.update_record(|r| {
        r.pid = pid;
        Ok(())
    })?;
    transition(state, Action::Booted)?;
    Ok(())
}

/// Marks the instance failed with `why` (a failure to record is only logged: the original error
/// is what the caller needs).
pub(crate) fn record_failure(state: &StateDir, why: &str) {
    let recorded = state.update_record(|r| {
        if r.state.is_active() {
            let _ = r.apply(Action::Fail);
            r.failure = Some(why.to_string());
        }
        Ok(())
    });
    if let Err(e) = recorded {
        tracing::warn!("instance `{}`: cannot record its failure: {e}", state.name());
    }
}

/// Records the end of a foreground run: `Failed` with `failure`, else `Stopped`.
pub(crate) fn record_end(state: &StateDir, failure: Option<&str>) -> Result<(), VmError> {
    match failure {
        Some(why) => record_failure(state, why),
        None => {
            state.update_record(|r| {
                if r.state.is_active() {
                    let _ = r.apply(Action::Exited);
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// The instance's record, which a started instance always has.
pub(crate) fn current(state: &StateDir) -> Result<InstanceRecord, VmError> {
    Ok(state.read_record()?.ok_or_else(|| StateError::NoRecord {
        dir: state.dir().to_path_buf(),
    })?)
}
