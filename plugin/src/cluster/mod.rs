//! Clusters: one file declares groups of instances (a LinuxKit spec each, a size or a list of
//! logical IDs, machine properties, a private network); [`Cluster::up`] converges the instances to
//! it through the same lifecycle the InfraKit plugin gives its clients (an [`InstancePlugin`] run
//! in this process: provision, describe, destroy), [`Cluster::watch`] keeps doing so, [`down`]
//! removes them all (`docs/cluster.md`).
//!
//! - [`ClusterFile`]: the file, read and checked (`file.rs`, over a small positioned YAML tree,
//!   `yaml.rs`): every problem names the file, line, group and field.
//! - `plan.rs`: what to do next, a pure comparison of the members the file asks for with the
//!   instances described (destroy extras, provision missing, replace dead, roll outdated one at
//!   a time).
//! - `converge.rs`: the checks that need the builder and the host (specs load, networks), the
//!   builds, and the loop that observes, plans, acts and waits for instances to be up.
//! - `status.rs`: [`Status`], one row per instance.
//!
//! State: `CLUSTERS/NAME/` holds the plugin's records (`instances/`), the images built for the
//! cluster (`images/`) and `lock` (held while a process converges or removes the cluster). The
//! VMs live under the state root every `moby` command uses, so that they are listed with the
//! others.

mod converge;
mod error;
mod file;
mod plan;
mod status;
mod yaml;

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use builder::{BuildOptions, HostPaths};
use serde_json::Value as Json;
use vmm::StateRoot;

pub use converge::{Event, UpOptions};
pub use error::{ClusterError, Problem, Problems};
pub use file::ClusterFile;
pub use status::{InstanceStatus, Status};

use crate::instance::{Images, InstancePlugin, Store};
use plan::{Health, Seen};

/// The tag naming an instance's group (InfraKit's).
pub const GROUP_TAG: &str = "infrakit.group";
/// The tag naming an instance's cluster.
pub const CLUSTER_TAG: &str = "moby.cluster";

/// Where clusters keep their state and how they build.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where each cluster keeps its records and images: `CLUSTERS/NAME/`.
    pub clusters_dir: PathBuf,
    /// The state root of the VMs (and of their networks).
    pub root: StateRoot,
    /// How specs are resolved and built (the image cache, the platform).
    pub build: BuildOptions,
    /// What `~/` means in specs.
    pub home_dir: Option<PathBuf>,
    /// How long a destroyed instance's guest gets to power off before it is stopped by force.
    pub stop_timeout: Duration,
}

/// A cluster file and where its cluster lives.
#[derive(Debug)]
pub struct Cluster {
    file: ClusterFile,
    settings: Settings,
    plugin: OnceLock<Arc<InstancePlugin>>,
}

impl Cluster {
    /// The cluster `file` declares, kept as `settings` say. Nothing is read or created yet.
    pub fn new(file: ClusterFile, settings: Settings) -> Cluster {
        Cluster {
            file,
            settings,
            plugin: OnceLock::new(),
        }
    }

    /// The cluster's file.
    pub fn file(&self) -> &ClusterFile {
        &self.file
    }

    /// `CLUSTERS/NAME`.
    fn dir(&self) -> PathBuf {
        self.settings.clusters_dir.join(self.file.name())
    }

    /// How the cluster's specs are read: relative paths lead to the cluster file's directory.
    fn host_paths(&self) -> HostPaths {
        HostPaths {
            base_dir: self.file.dir().to_path_buf(),
            home_dir: self.settings.home_dir.clone(),
        }
    }

    /// The images of the cluster, as its plugin builds them.
    fn images(&self) -> Images {
        Images::new(
            self.dir().join("images"),
            self.settings.build.clone(),
            self.host_paths(),
        )
    }

    /// The plugin that provisions, describes and destroys the cluster's instances (its state
    /// directory is created).
    fn plugin(&self) -> Result<&Arc<InstancePlugin>, ClusterError> {
        if let Some(plugin) = self.plugin.get() {
            return Ok(plugin);
        }
        let plugin = open_plugin(self.file.name(), &self.dir(), self.host_paths(), &self.settings)?;
        Ok(self.plugin.get_or_init(|| plugin))
    }
}

/// The plugin of the cluster `name` whose state is `dir`.
fn open_plugin(
    name: &str,
    dir: &std::path::Path,
    paths: HostPaths,
    settings: &Settings,
) -> Result<Arc<InstancePlugin>, ClusterError> {
    let store = Store::open(dir.join("instances")).map_err(|message| ClusterError::State {
        cluster: name.to_string(),
        message,
    })?;
    let images = Images::new(dir.join("images"), settings.build.clone(), paths.clone());
    Ok(Arc::new(InstancePlugin::new(
        store,
        images,
        settings.root.clone(),
        paths.base_dir,
        settings.stop_timeout,
    )))
}

/// Holds the cluster's `lock` (created with its directory) while it lives: one process
/// converges or removes a cluster at a time.
struct ClusterLock {
    _file: std::fs::File,
}

impl ClusterLock {
    fn take(name: &str, dir: &std::path::Path) -> Result<ClusterLock, ClusterError> {
        let state = |message: String| ClusterError::State {
            cluster: name.to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| state(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| state(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(ClusterLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ClusterError::Busy {
                cluster: name.to_string(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(state(format!("cannot lock {}: {e}", path.display()))),
        }
    }
}

/// The instances the cluster has, as its plugin describes them; `network_of` says which
/// network an instance's group is on (its health then needs its DHCP lease).
async fn observe(
    plugin: &InstancePlugin,
    root: &StateRoot,
    cluster: &str,
    network_of: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Seen>, ClusterError> {
    let descriptions = plugin
        .describe(&Default::default(), true)
        .await
        .map_err(|message| ClusterError::State {
            cluster: cluster.to_string(),
            message,
        })?;
    let mut out = Vec::new();
    for description in descriptions {
        let properties = description.properties.unwrap_or(Json::Null);
        let text = |key: &str| properties.get(key).and_then(Json::as_str).map(str::to_string);
        let group = description.tags.as_ref().and_then(|t| t.get(GROUP_TAG)).cloned();
        let state = text("State").unwrap_or_else(|| "unknown".into());
        let network = group.as_deref().and_then(&network_of);
        let lease = match (&network, state.as_str()) {
            (Some(network), "running") => Some(vmm::network::lease(root, network, &description.id)),
            _ => None,
        };
        let (health, note) = match (state.as_str(), &lease, &network) {
            ("running", None, _) => (Health::Up, None),
            ("running", Some(Ok(Some(lease))), _) if lease.leased => (Health::Up, None),
            ("running", Some(Err(e)), Some(network)) => (
                Health::Pending,
                Some(format!("its lease on network {network} cannot be read: {e}")),
            ),
            ("running", _, network) => (
                Health::Pending,
                Some(format!(
                    "no DHCP lease on network {} yet",
                    network.as_deref().unwrap_or_default()
                )),
            ),
            ("stopped" | "failed", _, _) => (Health::Dead, None),
            _ => (Health::Pending, None),
        };
        let leased_ip = match &lease {
            Some(Ok(Some(lease))) => Some(lease.ip.to_string()),
            _ => None,
        };
        out.push(Seen {
            id: description.id,
            group,
            logical_id: description.logical_id,
            health,
            state,
            note,
            address: text("Address").or(leased_ip),
            error: text("Error"),
            digest: text("SpecDigest"),
            config: without_spec(properties.get("Properties").cloned().unwrap_or(Json::Null)),
        });
    }
    Ok(out)
}

/// Properties without their spec (`Moby`): what decides, with the spec's digest, whether an
/// instance is up to date.
fn without_spec(mut properties: Json) -> Json {
    if let Some(map) = properties.as_object_mut() {
        map.retain(|key, _| !key.eq_ignore_ascii_case("moby"));
    }
    properties
}

/// The last lines of the console log of instance `name`, or nothing.
fn console_tail(root: &StateRoot, name: &str) -> String {
    const BYTES: u64 = 4096;
    const LINES: usize = 20;
    let Ok((dir, _)) = root.open(name) else {
        return String::new();
    };
    let Ok(mut file) = std::fs::File::open(dir.console_log()) else {
        return String::new();
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(length.saturating_sub(BYTES))).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// Destroys every instance of the cluster `name` (together) and removes its state directory.
/// A cluster that has no state is gone already. `events` hears of each instance destroyed.
pub async fn down(name: &str, settings: &Settings, events: &(dyn Fn(Event) + Sync)) -> Result<(), ClusterError> {
    let dir = settings.clusters_dir.join(name);
    if !dir.join("instances").is_dir() {
        if dir.is_dir() {
            remove_dir(name, &dir)?;
        }
        events(Event::Gone { instances: 0 });
        return Ok(());
    }
    let _lock = ClusterLock::take(name, &dir)?;
    let paths = HostPaths {
        base_dir: dir.clone(),
        home_dir: settings.home_dir.clone(),
    };
    let plugin = open_plugin(name, &dir, paths, settings)?;
    let ids: Vec<String> = Store::open(dir.join("instances"))
        .and_then(|store| store.all())
        .map_err(|message| ClusterError::State {
            cluster: name.to_string(),
            message,
        })?
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.iter().cloned() {
        let plugin = Arc::clone(&plugin);
        tasks.spawn(async move {
            let result = plugin.destroy_and_wait(&id).await;
            (id, result)
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((id, Ok(()))) => events(Event::Destroyed { instance: id }),
            Ok((instance, Err(message))) => failures.push(ClusterError::Instance { instance, message }),
            Err(e) => failures.push(ClusterError::State {
                cluster: name.to_string(),
                message: format!("a destroy stopped: {e}"),
            }),
        }
    }
    if let Some(first) = failures.into_iter().next() {
        return Err(first);
    }
    remove_dir(name, &dir)?;
    events(Event::Gone { instances: ids.len() });
    Ok(())
}

/// Removes the state directory `dir` of cluster `name`.
fn remove_dir(name: &str, dir: &std::path::Path) -> Result<(), ClusterError> {
    std::fs::remove_dir_all(dir).map_err(|e| ClusterError::State {
        cluster: name.to_string(),
        message: format!("cannot remove {}: {e}", dir.display()),
    })
}
