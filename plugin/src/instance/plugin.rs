//! The Instance SPI: validate, provision (answered at once, built and booted in the background),
//! label, destroy (in the background, idempotent) and describe.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vmm::{AnyBackend, Backend, InstanceState, Request, StateRoot};

use super::images::Images;
use super::properties::Properties;
use super::store::{Entry, Phase, Store};
use super::types::{Description, Spec, Tags};

/// The instance plugin's state: its records, the images it built, the VMs.
#[derive(Debug)]
pub struct InstancePlugin {
    store: Store,
    images: Images,
    root: StateRoot,
    base_dir: PathBuf,
    stop_timeout: Duration,
}

impl InstancePlugin {
    /// A plugin keeping its records in `store`, images in `images` and VMs under `root`;
    /// relative spec paths are under `base_dir`; a destroyed VM gets `stop_timeout` to power off.
    pub fn new(
        store: Store,
        images: Images,
        root: StateRoot,
        base_dir: PathBuf,
        stop_timeout: Duration,
    ) -> InstancePlugin {
        InstancePlugin {
            store,
            images,
            root,
            base_dir,
            stop_timeout,
        }
    }

    fn properties(&self, value: Option<Value>) -> Result<Properties, String> {
        Properties::parse(value).map_err(|e| e.to_string())
    }

    /// Checks properties and that their spec loads.
    pub async fn validate(&self, properties: Option<Value>) -> Result<(), String> {
        let properties = self.properties(properties)?;
        let (name, text) = properties.spec_text(&self.base_dir).map_err(|e| e.to_string())?;
        self.images.check(name, text).await
    }

    /// Records the instance and answers its ID; the image is built and the VM started in the
    /// background (`Describe` shows how far it got).
    pub async fn provision(self: &Arc<Self>, spec: Spec) -> Result<String, String> {
        let raw = spec.properties.clone();
        self.validate(spec.properties).await?;
        let id = match &spec.logical_id {
            Some(logical) => id_for_logical(logical)?,
            None => new_id()?,
        };
        let entry = Entry {
            id: id.clone(),
            logical_id: spec.logical_id.clone(),
            tags: spec.tags.unwrap_or_default(),
            properties: raw.unwrap_or(Value::Null),
            init: spec.init,
            phase: Phase::Building,
            error: None,
            spec_digest: None,
        };
        // A logical ID comes back after its instance was destroyed or died: its record is reused
        // (and its kept disks with it); one that is alive is not replaced.
        let dead = |old: &Entry| old.phase == Phase::Failed || self.vm_state(&old.id).is_some_and(|s| !s.is_active());
        self.store.create(&entry, dead).await?;
        let plugin = Arc::clone(self);
        tokio::spawn(async move { plugin.bring_up(id).await });
        Ok(entry.id)
    }

    /// Builds the image and starts the VM of `id`, recording how far it got.
    async fn bring_up(self: Arc<Self>, id: String) {
        if let Err(error) = self.try_bring_up(&id).await {
            tracing::warn!("instance {id}: {error}");
            let failed = self
                .store
                .update(&id, |e| {
                    if e.phase != Phase::Destroying {
                        e.phase = Phase::Failed;
                        e.error = Some(error);
                    }
                })
                .await;
            if let Err(e) = failed {
                tracing::warn!("instance {id}: cannot record its failure: {e}");
            }
        }
        // Destroyed while it was coming up: finish the destroy now that nothing else runs.
        if self
            .store
            .get(&id)
            .ok()
            .flatten()
            .is_some_and(|e| e.phase == Phase::Destroying)
        {
            self.tear_down(id).await;
        }
    }

    async fn try_bring_up(&self, id: &str) -> Result<(), String> {
        let Some(entry) = self.store.get(id)? else {
            return Ok(());
        };
        let properties = self.properties(Some(entry.properties.clone()))?;
        let (name, text) = properties.spec_text(&self.base_dir).map_err(|e| e.to_string())?;
        let image = self.images.ensure(name, text, properties.format).await?;
        let entry = self
            .store
            .update(id, |e| {
                e.spec_digest = Some(image.digest.clone());
                if e.phase == Phase::Building {
                    e.phase = Phase::Booting;
                }
            })
            .await?;
        if entry.phase == Phase::Destroying {
            return Ok(());
        }
        let mut request = Request::new(id, image.boot);
        // Every instance of a spec boots the one build: disk images copy-on-write.
        request.shared_image = true;
        request.cpus = properties.cpus;
        request.memory_mib = properties.memory_mib;
        request.disks = properties.disks;
        request.keep_disks = entry.logical_id.is_some();
        request.userdata = Some(entry.init.clone().into_bytes()).filter(|init| !init.is_empty());
        request.publish = properties.publish;
        request.networking = properties.networking;
        request.accel = properties.accel;
        request.tags = entry.tags.clone();
        request.logical_id = entry.logical_id.clone();
        request.spec_digest = Some(image.digest);
        AnyBackend::of_kind(properties.backend, self.root.clone())
            .map_err(|e| e.to_string())?
            .start(&request)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .update(id, |e| {
                if e.phase == Phase::Booting {
                    e.phase = Phase::Started;
                }
            })
            .await?;
        Ok(())
    }

    /// Merges `labels` into the instance's tags (its record and its VM's).
    pub async fn label(&self, id: &str, labels: Tags) -> Result<(), String> {
        self.store.update(id, |e| e.tags.extend(labels.clone())).await?;
        if let Ok(backend) = AnyBackend::for_instance(&self.root, id) {
            backend.label(id, &labels).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Destroys the instance in the background: it leaves `Describe` at once; its VM is stopped
    /// (within the stop timeout) and removed with its state. Destroying one being destroyed is
    /// done already; an unknown ID is an error.
    pub async fn destroy(self: &Arc<Self>, id: &str) -> Result<(), String> {
        let mut was = None;
        self.store
            .update(id, |e| {
                was = Some(e.phase);
                e.phase = Phase::Destroying;
            })
            .await?;
        match was {
            // Being destroyed already, or coming up (whoever brings it up finishes the destroy).
            Some(Phase::Destroying | Phase::Building | Phase::Booting) => {}
            _ => {
                let plugin = Arc::clone(self);
                let id = id.to_string();
                tokio::spawn(async move { plugin.tear_down(id).await });
            }
        }
        Ok(())
    }

    async fn tear_down(&self, id: String) {
        match AnyBackend::for_instance(&self.root, &id) {
            Ok(backend) => {
                if let Err(e) = backend.destroy(&id, self.stop_timeout).await {
                    tracing::warn!("instance {id}: cannot destroy its VM: {e}");
                    let recorded = self.store.update(&id, |entry| entry.error = Some(e.to_string())).await;
                    if let Err(e) = recorded {
                        tracing::warn!("instance {id}: {e}");
                    }
                    return;
                }
            }
            Err(vmm::VmError::State(vmm::StateError::Unknown { .. })) => {}
            Err(e) => tracing::warn!("instance {id}: {e}"),
        }
        if let Err(e) = self.store.remove(&id).await {
            tracing::warn!("instance {id}: {e}");
        }
    }

    /// The instances carrying every tag of `filter`. An instance whose build failed or whose VM
    /// stopped or failed matches no filter (InfraKit's group controller lists its members by their
    /// tags, with properties, and replaces the ones missing); it is listed, with its state and
    /// error, when no filter is given, until it is destroyed.
    pub async fn describe(&self, filter: &Tags, with_properties: bool) -> Result<Vec<Description>, String> {
        let mut out = Vec::new();
        for entry in self.store.all()? {
            if entry.phase == Phase::Destroying || !filter.iter().all(|(k, v)| entry.tags.get(k) == Some(v)) {
                continue;
            }
            let vm = match entry.phase {
                Phase::Started => match AnyBackend::for_instance(&self.root, &entry.id) {
                    Ok(backend) => backend.describe(&entry.id).await.ok(),
                    Err(_) => None,
                },
                _ => None,
            };
            let state = match (entry.phase, &vm) {
                (Phase::Building, _) => "building".to_string(),
                (Phase::Booting, _) => "starting".to_string(),
                (Phase::Failed, _) => "failed".to_string(),
                (Phase::Started, Some(vm)) => vm.state.to_string(),
                (Phase::Started, None) => "stopped".to_string(),
                (Phase::Destroying, _) => continue,
            };
            let dead = matches!(entry.phase, Phase::Failed)
                || vm.as_ref().is_some_and(|vm| !vm.state.is_active())
                || (entry.phase == Phase::Started && vm.is_none());
            if dead && !filter.is_empty() {
                continue;
            }
            let properties = with_properties.then(|| {
                let failure = entry
                    .error
                    .clone()
                    .or_else(|| vm.as_ref().and_then(|vm| vm.failure.clone()));
                json!({
                    "Properties": entry.properties,
                    "State": state,
                    "Error": failure,
                    "SpecDigest": entry.spec_digest,
                    "Backend": vm.as_ref().map(|vm| vm.backend.to_string()),
                    "Pid": vm.as_ref().and_then(|vm| vm.pid),
                })
            });
            out.push(Description {
                id: entry.id,
                logical_id: entry.logical_id,
                tags: Some(entry.tags).filter(|tags| !tags.is_empty()),
                properties,
            });
        }
        Ok(out)
    }

    /// Destroys every instance and waits until they are gone (for a plugin told to take its
    /// instances with it when it exits).
    pub async fn destroy_all(&self) {
        let entries = match self.store.all() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        for entry in entries {
            self.tear_down(entry.id).await;
        }
    }

    /// Picks up what a previous plugin process left under way: instances whose image was being
    /// built or VM started are brought up again; destroys are finished.
    pub fn resume(self: &Arc<Self>) -> Result<(), String> {
        for entry in self.store.all()? {
            let plugin = Arc::clone(self);
            match entry.phase {
                Phase::Building | Phase::Booting => {
                    tokio::spawn(async move { plugin.bring_up(entry.id).await });
                }
                Phase::Destroying => {
                    tokio::spawn(async move { plugin.tear_down(entry.id).await });
                }
                Phase::Started | Phase::Failed => {}
            }
        }
        Ok(())
    }

    /// The recorded state of the VM of `id`, if it has one.
    fn vm_state(&self, id: &str) -> Option<InstanceState> {
        self.root.open(id).ok().map(|(_, record)| record.state)
    }
}

/// The ID of an instance with a logical ID: the logical ID itself where it can name a VM (an IP
/// address, a host name), else refused.
fn id_for_logical(logical: &str) -> Result<String, String> {
    let usable = !logical.is_empty()
        && logical.len() <= 64
        && !logical.starts_with('.')
        && logical
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if usable {
        Ok(logical.to_string())
    } else {
        Err(format!(
            "Spec.LogicalID {logical:?} cannot name an instance: use up to 64 letters, digits, `.`, `-` and `_`"
        ))
    }
}

/// A new random ID, `moby-` and 12 hex digits.
fn new_id() -> Result<String, String> {
    let mut bytes = [0u8; 6];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| format!("cannot read /dev/urandom: {e}"))?,
        &mut bytes,
    )
    .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(format!(
        "moby-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}
