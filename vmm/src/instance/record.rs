//! `instance.json`: what an instance is (name, backend, tags, what it boots) and where it is in its
//! life. Written atomically (a temp file renamed into place) at every transition, so the record
//! survives the process that wrote it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::lifecycle::{Action, InstanceState, TransitionError};
use crate::state::StateError;

/// Labels on an instance (InfraKit's tags): sorted, so the record's bytes do not depend on the
/// order they were given in.
pub type Tags = BTreeMap<String, String>;

/// Whether `tags` carries every tag of `filter` with the same value (an empty filter matches all).
pub fn matches(tags: &Tags, filter: &Tags) -> bool {
    filter.iter().all(|(k, v)| tags.get(k) == Some(v))
}

/// The backends an instance can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// qemu, driven over QMP.
    Qemu,
    /// hyperkit (macOS).
    Hyperkit,
    /// VMware Workstation or Fusion, driven through `vmrun`.
    Vmware,
    /// Google Compute Engine.
    Gcp,
}

impl BackendKind {
    /// Every backend.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Qemu,
        BackendKind::Hyperkit,
        BackendKind::Vmware,
        BackendKind::Gcp,
    ];

    /// Its name (`qemu`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Qemu => "qemu",
            BackendKind::Hyperkit => "hyperkit",
            BackendKind::Vmware => "vmware",
            BackendKind::Gcp => "gcp",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown backend {s:?}: use qemu, hyperkit, vmware or gcp"))
    }
}

/// The record of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The instance name, unique on this host.
    pub name: String,
    /// The backend it runs on.
    pub backend: BackendKind,
    /// Where it is in its life, as last recorded.
    pub state: InstanceState,
    /// Why it failed, when [`InstanceState::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// A stable identity given by whoever asked for it (InfraKit's LogicalID), e.g. an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_id: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub tags: Tags,
    /// The content digest of the spec its image was built from, when it was built on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    /// What it boots, as given.
    pub image: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// The VM process, while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process running the VM in its foreground (holding its console), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_pid: Option<u32>,
    /// The accelerator, where the backend has a choice (`kvm`, `tcg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Published ports as `HOST:GUEST/PROTO`.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Disks created for it in its state directory (removed by destroy unless kept).
    #[serde(default)]
    pub created_disks: Vec<PathBuf>,
    /// Keep the disks it was given or created when it is destroyed.
    #[serde(default)]
    pub keep_disks: bool,
    /// When it was last started, seconds since the Unix epoch.
    pub started: u64,
    /// Its address on its network, where the backend knows it (a cloud instance's internal IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The private network it is a member of (its address there is [`InstanceRecord::address`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Its machine type, on a backend that has them (`e2-medium`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

impl InstanceRecord {
    /// Seconds since the Unix epoch, now.
    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Applies `action` to the recorded state (see [`InstanceState::apply`]); a destroy leaves the
    /// state as it is (the caller removes the record).
    pub fn apply(&mut self, action: Action) -> Result<(), TransitionError> {
        if let Some(next) = self.state.apply(action)? {
            self.state = next;
        }
        if self.state != InstanceState::Failed {
            self.failure = None;
        }
        if !self.state.is_active() {
            self.pid = None;
            self.owner_pid = None;
        }
        Ok(())
    }

    /// Writes the record to `path` (a temp file renamed into place).
    pub(crate) fn write_to(&self, path: &Path) -> Result<(), StateError> {
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_string_pretty(self).map_err(|e| StateError::io("serialize", path)(e.into()))?;
        text.push('\n');
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(StateError::io("write", path))
    }

    /// Reads the record at `path`: `None` when there is none; a record we cannot read (damaged,
    /// or written by another version) is an error naming the file.
    pub(crate) fn read_from(path: &Path) -> Result<Option<InstanceRecord>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::BadRecord {
                path: path.to_path_buf(),
                why: e.to_string(),
            })
    }
}

#[cfg(test)]
pub(crate) fn sample(name: &str) -> InstanceRecord {
    InstanceRecord {
        name: name.into(),
        backend: BackendKind::Qemu,
        state: InstanceState::Stopped,
        failure: None,
        logical_id: None,
        tags: Tags::new(),
        spec_digest: None,
        image: format!("out/{name}").into(),
        state_dir: format!("/run/{name}").into(),
        pid: None,
        owner_pid: None,
        accel: Some("tcg".into()),
        cpus: 1,
        memory_mib: 512,
        publish: Vec::new(),
        created_disks: Vec::new(),
        keep_disks: false,
        started: 1_700_000_000,
        address: None,
        network: None,
        machine: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.json");
        assert_eq!(InstanceRecord::read_from(&path).unwrap(), None);
        let mut r = sample("vm1");
        r.tags.insert("role".into(), "web".into());
        r.logical_id = Some("10.0.0.5".into());
        r.spec_digest = Some(format!("sha256:{}", "0".repeat(64)));
        r.publish = vec!["8080:80/tcp".into()];
        r.write_to(&path).unwrap();
        assert_eq!(InstanceRecord::read_from(&path).unwrap(), Some(r));
        std::fs::write(&path, "{\"other\": 1}").unwrap();
        let e = InstanceRecord::read_from(&path).unwrap_err().to_string();
        assert!(e.contains("instance.json") && e.contains("missing field"), "{e}");
    }

    #[test]
    fn tag_filters_match_subsets() {
        let tags: Tags = [("role", "web"), ("zone", "a")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let filter =
            |pairs: &[(&str, &str)]| -> Tags { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        assert!(matches(&tags, &Tags::new()));
        assert!(matches(&tags, &filter(&[("role", "web")])));
        assert!(!matches(&tags, &filter(&[("role", "db")])));
        assert!(!matches(&tags, &filter(&[("role", "web"), ("rack", "1")])));
    }

    #[test]
    fn leaving_an_active_state_forgets_the_processes() {
        let mut r = sample("vm");
        r.apply(Action::Start).unwrap();
        r.pid = Some(42);
        r.owner_pid = Some(7);
        r.apply(Action::Booted).unwrap();
        assert_eq!((r.state, r.pid), (InstanceState::Running, Some(42)));
        r.apply(Action::Exited).unwrap();
        assert_eq!((r.state, r.pid, r.owner_pid), (InstanceState::Stopped, None, None));
        assert!(r.apply(Action::Booted).is_err());
        assert_eq!(r.state, InstanceState::Stopped, "a refused action changes nothing");
    }

    #[test]
    fn backend_names() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.as_str().parse::<BackendKind>().unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        assert!("aws"
            .parse::<BackendKind>()
            .unwrap_err()
            .contains("use qemu, hyperkit, vmware or gcp"));
    }
}
