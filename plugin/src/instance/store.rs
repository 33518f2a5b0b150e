//! The plugin's record of each instance it was asked for (`DIR/ID.json`), written before
//! Provision answers, so that a restarted plugin knows every instance, including one whose image
//! was still being built. The VM's own state is `vmm`'s record; this one holds what InfraKit
//! gave (properties, init, tags, logical ID) and how far the plugin got.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::Tags;

/// How far the plugin got with an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Its image is being built (or found).
    Building,
    /// Its VM is being started.
    Booting,
    /// Its VM was started: `vmm`'s record says how it is now.
    Started,
    /// Building or starting failed; `error` says why.
    Failed,
    /// It is being destroyed.
    Destroying,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its ID (also the name of its VM).
    pub id: String,
    /// Its logical ID.
    pub logical_id: Option<String>,
    /// Its tags (what InfraKit gave, merged with later labels).
    pub tags: Tags,
    /// The properties it was provisioned with, as given.
    pub properties: Value,
    /// Its init (userdata).
    pub init: String,
    /// How far the plugin got.
    pub phase: Phase,
    /// Why it failed.
    pub error: Option<String>,
    /// The content digest of its spec, once resolved.
    pub spec_digest: Option<String>,
    /// Where a `gcp` instance is: recorded when it is provisioned, so that the plugin finds it
    /// again whatever its environment says later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpPlace>,
}

/// The project and zone of a `gcp` instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcpPlace {
    /// The project.
    pub project: String,
    /// The zone.
    pub zone: String,
}

impl From<&vmm::gcp::Location> for GcpPlace {
    fn from(location: &vmm::gcp::Location) -> GcpPlace {
        GcpPlace {
            project: location.project.clone(),
            zone: location.zone.clone(),
        }
    }
}

impl From<&GcpPlace> for vmm::gcp::Location {
    fn from(place: &GcpPlace) -> vmm::gcp::Location {
        vmm::gcp::Location {
            project: place.project.clone(),
            zone: place.zone.clone(),
        }
    }
}

/// The records, one file each.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Held around every read-modify-write, so concurrent calls lose nothing.
    lock: tokio::sync::Mutex<()>,
}

impl Store {
    /// Records in `dir` (created).
    pub fn open(dir: PathBuf) -> Result<Store, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Store {
            dir,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The record of `id`, if there is one.
    pub fn get(&self, id: &str) -> Result<Option<Entry>, String> {
        read(&self.path(id))
    }

    /// Every record, sorted by ID; a damaged one is skipped with a warning.
    pub fn all(&self) -> Result<Vec<Entry>, String> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read(&path) {
                Ok(Some(record)) => out.push(record),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Writes a new record; refuses when `id` has one and `replace` does not allow replacing it.
    pub async fn create(&self, entry: &Entry, replace: impl FnOnce(&Entry) -> bool) -> Result<(), String> {
        let _held = self.lock.lock().await;
        if let Some(old) = self.get(&entry.id)? {
            if !replace(&old) {
                if old.phase == Phase::Destroying {
                    return Err(format!(
                        "instance {} is being destroyed: provision it again once its destroy has finished \
                         (Describe no longer lists it from the start of the destroy)",
                        entry.id
                    ));
                }
                return Err(format!("instance {} exists already", entry.id));
            }
        }
        write(&self.path(&entry.id), entry)
    }

    /// Changes the record of `id` (none: an error naming the ID) and returns it changed.
    pub async fn update(&self, id: &str, change: impl FnOnce(&mut Entry)) -> Result<Entry, String> {
        let _held = self.lock.lock().await;
        let mut entry = self.get(id)?.ok_or_else(|| format!("no instance {id}"))?;
        change(&mut entry);
        write(&self.path(id), &entry)?;
        Ok(entry)
    }

    /// Removes the record of `id`.
    pub async fn remove(&self, id: &str) -> Result<(), String> {
        let _held = self.lock.lock().await;
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove the record of {id}: {e}")),
        }
    }
}

fn read(path: &Path) -> Result<Option<Entry>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not an instance record: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `entry` to a temporary file renamed over `path`: a crash leaves the old record.
fn write(path: &Path, entry: &Entry) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(entry).map_err(|e| format!("cannot encode a record: {e}"))?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            logical_id: None,
            tags: Tags::new(),
            properties: Value::Null,
            init: String::new(),
            phase: Phase::Building,
            error: None,
            spec_digest: None,
            gcp: None,
        }
    }

    #[tokio::test]
    async fn damaged_or_foreign_files_are_skipped_and_a_live_id_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_path_buf()).unwrap();
        store.create(&entry("a"), |_| false).await.unwrap();
        std::fs::write(dir.path().join("b.json"), "{\"id\": ").unwrap();
        std::fs::write(dir.path().join("c.json"), "[1, 2, 3]").unwrap();
        std::fs::write(dir.path().join("a.json.tmp"), "half a record").unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a"]);
        let e = store.get("b").unwrap_err();
        assert!(e.contains("b.json is not an instance record"), "{e}");
        let e = store.create(&entry("a"), |_| false).await.unwrap_err();
        assert_eq!(e, "instance a exists already");
        let e = store.update("nope", |_| {}).await.unwrap_err();
        assert_eq!(e, "no instance nope");
        let changed = store.update("a", |e| e.phase = Phase::Failed).await.unwrap();
        assert_eq!(store.get("a").unwrap(), Some(changed));
    }
}
