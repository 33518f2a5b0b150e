//! `instance.json`: what a state directory's current (or last) run is, for `moby ps`,
//! `moby stop` and `moby console`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError};

/// The record of one run, written when the VM has started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The instance name.
    pub name: String,
    /// The backend (`qemu`).
    pub backend: String,
    /// What was booted, as the user named it.
    pub image: PathBuf,
    /// The VM process's pid.
    pub pid: u32,
    /// The `moby run` holding the console in the foreground; `None` for a detached VM.
    pub owner_pid: Option<u32>,
    /// The accelerator (`kvm`, `tcg`).
    pub accel: String,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Published ports as `HOST:GUEST/PROTO`.
    pub publish: Vec<String>,
    /// Start time, seconds since the Unix epoch.
    pub started: u64,
}

impl InstanceRecord {
    /// Seconds since the Unix epoch, now.
    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Writes the record to `state`'s `instance.json` (a temp file renamed into place).
    pub fn write(&self, state: &StateDir) -> Result<(), StateError> {
        let path = state.instance_file();
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_string_pretty(self).expect("a record always serializes");
        text.push('\n');
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| StateError::Io {
                doing: "write",
                path,
                source,
            })
    }

    /// Reads `state`'s `instance.json`; `None` when there is none (the VM never started) or it is
    /// not a record we can read (written by another version).
    pub fn read(state: &StateDir) -> Result<Option<InstanceRecord>, StateError> {
        read_from(&state.instance_file())
    }
}

fn read_from(path: &Path) -> Result<Option<InstanceRecord>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            doing: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateRoot;

    #[test]
    fn round_trip_and_missing() {
        let base = tempfile::tempdir().unwrap();
        let state = StateRoot::new(base.path()).instance("vm1").unwrap();
        std::fs::create_dir_all(state.dir()).unwrap();
        assert_eq!(InstanceRecord::read(&state).unwrap(), None);
        let r = InstanceRecord {
            name: "vm1".into(),
            backend: "qemu".into(),
            image: "out/vm1".into(),
            pid: 42,
            owner_pid: None,
            accel: "tcg".into(),
            cpus: 2,
            memory_mib: 512,
            publish: vec!["8080:80/tcp".into()],
            started: 1_700_000_000,
        };
        r.write(&state).unwrap();
        assert_eq!(InstanceRecord::read(&state).unwrap(), Some(r));
        std::fs::write(state.instance_file(), "{\"other\": 1}").unwrap();
        assert_eq!(InstanceRecord::read(&state).unwrap(), None);
    }
}
