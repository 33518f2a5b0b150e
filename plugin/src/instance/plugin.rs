//! The Instance SPI: validate, provision (answered at once, built and booted in the background),
//! label, destroy (in the background, idempotent) and describe.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use vmm::gcp::Location;
use vmm::{AnyBackend, Backend, InstanceRecord, InstanceState, Request, StateRoot};

use super::gcp::{self, GcpClouds};
use super::images::{Image, Images};
use super::properties::{GcpProperties, Properties};
use super::store::{Entry, GcpPlace, Phase, Store};
use super::types::{Description, Spec, Tags};

/// The instance plugin's state: its records, the images it built, the VMs.
#[derive(Debug)]
pub struct InstancePlugin {
    store: Store,
    images: Images,
    root: StateRoot,
    base_dir: PathBuf,
    stop_timeout: Duration,
    gcp: GcpClouds,
    /// Where moby's instances that have no record here are looked for.
    gcp_default: Option<Location>,
    /// The instances this process is building or starting now.
    bringing_up: Mutex<HashSet<String>>,
}

/// A listing of the moby instances in one project and zone, by name, or why it failed.
type CloudListing = Result<BTreeMap<String, InstanceRecord>, String>;

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
            gcp: GcpClouds::default(),
            gcp_default: None,
            bringing_up: Mutex::new(HashSet::new()),
        }
    }

    /// Also answers for the moby instances in `location` (a project and zone) that have no record
    /// here: `DescribeInstances` lists them from the Compute Engine API, and `Label` and
    /// `Destroy` take their names; so a plugin whose records were lost still has its cloud
    /// instances.
    pub fn with_gcp_default(mut self, location: Location) -> InstancePlugin {
        self.gcp_default = Some(location);
        self
    }

    fn properties(&self, value: Option<Value>) -> Result<Properties, String> {
        Properties::parse(value).map_err(|e| e.to_string())
    }

    /// Checks properties (for `gcp`, that the credentials can be read) and that their spec loads.
    pub async fn validate(&self, properties: Option<Value>) -> Result<(), String> {
        let properties = self.properties(properties)?;
        if let Some(gcp) = &properties.gcp {
            self.gcp.backend(&gcp.location)?;
        }
        let (name, text) = properties.spec_text(&self.base_dir).map_err(|e| e.to_string())?;
        self.images.check(name, text).await
    }

    /// Records the instance and answers its ID; the image is built and the VM started in the
    /// background (`Describe` shows how far it got).
    pub async fn provision(self: &Arc<Self>, spec: Spec) -> Result<String, String> {
        let raw = spec.properties.clone();
        self.validate(spec.properties.clone()).await?;
        let properties = self.properties(spec.properties)?;
        // A static address outside the network's subnet fails here, not in the background.
        properties
            .attachment(spec.logical_id.as_deref())
            .map_err(|e| e.to_string())?;
        let id = match &properties.gcp {
            Some(gcp) => gcp::instance_name(&gcp.name_prefix, spec.logical_id.as_deref())?,
            None => local_id(properties.name_prefix.as_deref(), spec.logical_id.as_deref())?,
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
            gcp: properties.gcp.as_ref().map(|gcp| GcpPlace::from(&gcp.location)),
        };
        // A cloud instance is looked up now, outside the store's lock.
        let cloud_instance_gone = match self.store.get(&id)? {
            Some(old) if old.phase == Phase::Started => match &old.gcp {
                Some(place) => self.gcp_instance_gone(place, &old.id).await,
                None => false,
            },
            _ => false,
        };
        // A logical ID comes back after its instance was destroyed or died: its record is reused
        // (and its kept disks with it); one that is alive is not replaced.
        let dead = |old: &Entry| {
            old.phase == Phase::Failed
                || match old.gcp {
                    Some(_) => old.phase == Phase::Started && cloud_instance_gone,
                    None => self.vm_state(&old.id).is_some_and(|s| !s.is_active()),
                }
        };
        self.store.create(&entry, dead).await?;
        self.spawn_bring_up(id);
        Ok(entry.id)
    }

    /// Brings `id` up in the background; it counts as being brought up from now on.
    fn spawn_bring_up(self: &Arc<Self>, id: String) {
        self.bringing_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        let plugin = Arc::clone(self);
        tokio::spawn(async move { plugin.bring_up(id).await });
    }

    /// Builds the image and starts the VM of `id`, recording how far it got (see
    /// [`InstancePlugin::spawn_bring_up`]).
    async fn bring_up(self: Arc<Self>, id: String) {
        self.try_bring_up_and_record(&id).await;
        self.bringing_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
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

    /// Brings `id` up, recording a failure in its record.
    async fn try_bring_up_and_record(&self, id: &str) {
        let id = id.to_string();
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
        if let (Some(gcp), Some(place)) = (&properties.gcp, &entry.gcp) {
            self.start_gcp(&entry, gcp, place, image).await?;
        } else {
            self.start_local(&entry, properties, image).await?;
        }
        self.store
            .update(id, |e| {
                if e.phase == Phase::Booting {
                    e.phase = Phase::Started;
                }
            })
            .await?;
        Ok(())
    }

    /// Starts the VM of `entry` on this host, booting `image`.
    async fn start_local(&self, entry: &Entry, properties: Properties, image: Image) -> Result<(), String> {
        let id = entry.id.as_str();
        let mut request = Request::new(id, image.boot);
        request.network = properties
            .attachment(entry.logical_id.as_deref())
            .map_err(|e| e.to_string())?;
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
        Ok(())
    }

    /// Starts the GCE instance of `entry` in `place`, from `image` pushed as a GCE image unless
    /// it is there already.
    async fn start_gcp(
        &self,
        entry: &Entry,
        properties: &GcpProperties,
        place: &GcpPlace,
        image: Image,
    ) -> Result<(), String> {
        let mut backend = self.gcp.backend(&place.into())?;
        backend.machine = properties.machine.clone();
        let image_name = self.gcp.ensure_image(&backend, &image, properties).await?;
        // A plugin process that stopped while starting it may have created it; a dead one of
        // the same logical ID makes way.
        match backend.describe(&entry.id).await {
            Ok(vm) if vm.state.is_active() => return Ok(()),
            Ok(_) => backend
                .destroy(&entry.id, self.stop_timeout)
                .await
                .map_err(|e| e.to_string())?,
            Err(e) if gcp::is_gone(&e) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut request = Request::new(&entry.id, image_name);
        request.userdata = Some(entry.init.clone().into_bytes()).filter(|init| !init.is_empty());
        request.tags = entry.tags.clone();
        request.logical_id = entry.logical_id.clone();
        request.spec_digest = Some(image.digest);
        backend.start(&request).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Whether the GCE instance `id` in `place` is gone or dead (a failure to ask is neither).
    async fn gcp_instance_gone(&self, place: &GcpPlace, id: &str) -> bool {
        let Ok(backend) = self.gcp.backend(&place.into()) else {
            return false;
        };
        match backend.describe(id).await {
            Ok(vm) => !vm.state.is_active(),
            Err(e) => gcp::is_gone(&e),
        }
    }

    /// Merges `labels` into the instance's tags (its record and its VM's).
    pub async fn label(&self, id: &str, labels: Tags) -> Result<(), String> {
        if self.store.get(id)?.is_none() {
            return self.label_unrecorded(id, &labels).await;
        }
        let entry = self.store.update(id, |e| e.tags.extend(labels.clone())).await?;
        match &entry.gcp {
            // Not started: its instance gets the recorded tags when it is created.
            Some(place) if entry.phase == Phase::Started => {
                match self.gcp.backend(&place.into())?.label(id, &labels).await {
                    Err(e) if !gcp::is_gone(&e) => return Err(e.to_string()),
                    _ => {}
                }
            }
            Some(_) => {}
            None => {
                if let Ok(backend) = AnyBackend::for_instance(&self.root, id) {
                    backend.label(id, &labels).await.map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Labels one of moby's instances in the default project and zone that has no record here.
    async fn label_unrecorded(&self, id: &str, labels: &Tags) -> Result<(), String> {
        let unknown = || format!("no instance {id}");
        let Some(location) = &self.gcp_default else {
            return Err(unknown());
        };
        let backend = self.gcp.backend(location)?;
        if gcp::moby_instance(&backend, id).await?.is_none() {
            return Err(unknown());
        }
        backend.label(id, labels).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Destroys the instance in the background: it leaves `Describe` at once; its VM is stopped
    /// (within the stop timeout) and removed with its state. Destroying one being destroyed is
    /// done already; an unknown ID is an error.
    pub async fn destroy(self: &Arc<Self>, id: &str) -> Result<(), String> {
        if self.store.get(id)?.is_none() && self.adopt_for_destroy(id).await? {
            let plugin = Arc::clone(self);
            let id = id.to_string();
            tokio::spawn(async move { plugin.tear_down(id).await });
            return Ok(());
        }
        let mut was = None;
        self.store
            .update(id, |e| {
                was = Some(e.phase);
                e.phase = Phase::Destroying;
                // From now on an error is the destroy's own (`destroy_and_wait` reports it).
                e.error = None;
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

    /// Destroys the instance and returns once it is gone: its VM removed and its record with it,
    /// so that its logical ID can be provisioned again at once. An unknown ID is gone already; a
    /// destroy that fails is the error (the instance stays, being destroyed, until a later destroy
    /// succeeds). The VM is torn down here, unless this plugin is still bringing it up (then that
    /// finishes the destroy, and this waits for it).
    pub async fn destroy_and_wait(self: &Arc<Self>, id: &str) -> Result<(), String> {
        if self.store.get(id)?.is_none() {
            return Ok(());
        }
        self.store
            .update(id, |e| {
                e.phase = Phase::Destroying;
                e.error = None;
            })
            .await?;
        if !self.bringing_up(id) {
            self.tear_down(id.to_string()).await;
        }
        loop {
            match self.store.get(id)? {
                None => return Ok(()),
                Some(Entry { error: Some(error), .. }) => {
                    return Err(format!("instance {id}: cannot destroy its VM: {error}"))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Whether this plugin is building or starting `id` now.
    fn bringing_up(&self, id: &str) -> bool {
        self.bringing_up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// Records one of moby's instances in the default project and zone that has no record here
    /// as being destroyed; false when there is no such instance.
    async fn adopt_for_destroy(&self, id: &str) -> Result<bool, String> {
        let Some(location) = &self.gcp_default else {
            return Ok(false);
        };
        let Some(vm) = gcp::moby_instance(&self.gcp.backend(location)?, id).await? else {
            return Ok(false);
        };
        let entry = Entry {
            id: vm.name,
            logical_id: vm.logical_id,
            tags: vm.tags,
            properties: json!({"Backend": "gcp"}),
            init: String::new(),
            phase: Phase::Destroying,
            error: None,
            spec_digest: vm.spec_digest,
            gcp: Some(GcpPlace::from(location)),
        };
        self.store.create(&entry, |_| false).await?;
        Ok(true)
    }

    async fn tear_down(&self, id: String) {
        let place = self.store.get(&id).ok().flatten().and_then(|entry| entry.gcp);
        let destroyed = match place {
            Some(place) => self.destroy_gcp(&place, &id).await,
            None => self.destroy_local(&id).await,
        };
        if let Err(e) = destroyed {
            tracing::warn!("instance {id}: cannot destroy its VM: {e}");
            let recorded = self.store.update(&id, |entry| entry.error = Some(e)).await;
            if let Err(e) = recorded {
                tracing::warn!("instance {id}: {e}");
            }
            return;
        }
        if let Err(e) = self.store.remove(&id).await {
            tracing::warn!("instance {id}: {e}");
        }
    }

    /// Destroys the VM of `id` on this host; one that has no record is done.
    async fn destroy_local(&self, id: &str) -> Result<(), String> {
        match AnyBackend::for_instance(&self.root, id) {
            Ok(backend) => backend.destroy(id, self.stop_timeout).await.map_err(|e| e.to_string()),
            Err(vmm::VmError::State(vmm::StateError::Unknown { .. })) => Ok(()),
            Err(e) => {
                tracing::warn!("instance {id}: {e}");
                Ok(())
            }
        }
    }

    /// Deletes the GCE instance `id` in `place`; one the API no longer has is done.
    async fn destroy_gcp(&self, place: &GcpPlace, id: &str) -> Result<(), String> {
        match self.gcp.backend(&place.into())?.destroy(id, self.stop_timeout).await {
            Err(e) if !gcp::is_gone(&e) => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// The instances carrying every tag of `filter`. An instance whose build failed or whose VM
    /// stopped or failed matches no filter (InfraKit's group controller lists its members by their
    /// tags, with properties, and replaces the ones missing); it is listed, with its state and
    /// error, when no filter is given, until it is destroyed. With a default GCP project and zone,
    /// moby's instances there that have no record here are listed too, from the API.
    pub async fn describe(&self, filter: &Tags, with_properties: bool) -> Result<Vec<Description>, String> {
        let entries = self.store.all()?;
        let clouds = self.list_clouds(&entries).await;
        let mut out = Vec::new();
        for entry in &entries {
            if entry.phase == Phase::Destroying || !carries(&entry.tags, filter) {
                continue;
            }
            // Why a cloud instance's state is not known (its zone could not be listed).
            let mut unknown = None;
            let vm = match (entry.phase, &entry.gcp) {
                (Phase::Started, None) => match AnyBackend::for_instance(&self.root, &entry.id) {
                    Ok(backend) => backend.describe(&entry.id).await.ok(),
                    Err(_) => None,
                },
                (Phase::Started, Some(place)) => match clouds.get(place) {
                    Some(Ok(instances)) => instances.get(&entry.id).cloned(),
                    Some(Err(e)) => {
                        unknown = Some(e.clone());
                        None
                    }
                    None => None,
                },
                _ => None,
            };
            let state = match (entry.phase, &vm) {
                (Phase::Building, _) => "building".to_string(),
                (Phase::Booting, _) => "starting".to_string(),
                (Phase::Failed, _) => "failed".to_string(),
                (Phase::Started, Some(vm)) => vm.state.to_string(),
                // Not known is not dead (InfraKit replaces the dead ones).
                (Phase::Started, None) if unknown.is_some() => "unknown".to_string(),
                (Phase::Started, None) => "stopped".to_string(),
                (Phase::Destroying, _) => continue,
            };
            let dead = matches!(entry.phase, Phase::Failed)
                || vm.as_ref().is_some_and(|vm| !vm.state.is_active())
                || (entry.phase == Phase::Started && vm.is_none() && unknown.is_none());
            if dead && !filter.is_empty() {
                continue;
            }
            let properties = with_properties.then(|| {
                let gone = entry
                    .gcp
                    .as_ref()
                    .filter(|_| entry.phase == Phase::Started && vm.is_none())
                    .map(|place| {
                        format!(
                            "no instance named {} in project {} zone {}",
                            entry.id, place.project, place.zone
                        )
                    });
                let failure = entry
                    .error
                    .clone()
                    .or_else(|| vm.as_ref().and_then(|vm| vm.failure.clone()))
                    .or_else(|| unknown.clone())
                    .or(gone);
                let mut properties = json!({
                    "Properties": entry.properties,
                    "State": state,
                    "Error": failure,
                    "SpecDigest": entry.spec_digest,
                    "Backend": vm.as_ref().map(|vm| vm.backend.to_string()),
                    "Pid": vm.as_ref().and_then(|vm| vm.pid),
                });
                properties["Address"] = json!(vm.as_ref().and_then(|vm| vm.address.clone()));
                if let Some(place) = &entry.gcp {
                    properties["Backend"] = json!("gcp");
                    properties["Zone"] = json!(place.zone);
                } else {
                    properties["Network"] = json!(network_name(&entry.properties));
                }
                properties
            });
            out.push(Description {
                id: entry.id.clone(),
                logical_id: entry.logical_id.clone(),
                tags: Some(entry.tags.clone()).filter(|tags| !tags.is_empty()),
                properties,
            });
        }
        out.extend(self.describe_unrecorded(&entries, &clouds, filter, with_properties));
        Ok(out)
    }

    /// moby's instances in the default project and zone that have no record here.
    fn describe_unrecorded(
        &self,
        entries: &[Entry],
        clouds: &HashMap<GcpPlace, CloudListing>,
        filter: &Tags,
        with_properties: bool,
    ) -> Vec<Description> {
        let Some(location) = &self.gcp_default else {
            return Vec::new();
        };
        let instances = match clouds.get(&GcpPlace::from(location)) {
            Some(Ok(instances)) => instances,
            Some(Err(e)) => {
                tracing::warn!(
                    "cannot list moby's instances in project {} zone {}: {e}",
                    location.project,
                    location.zone
                );
                return Vec::new();
            }
            None => return Vec::new(),
        };
        instances
            .values()
            .filter(|vm| !entries.iter().any(|entry| entry.id == vm.name))
            .filter(|vm| carries(&vm.tags, filter))
            .filter(|vm| vm.state.is_active() || filter.is_empty())
            .map(|vm| Description {
                id: vm.name.clone(),
                logical_id: vm.logical_id.clone(),
                tags: Some(vm.tags.clone()).filter(|tags| !tags.is_empty()),
                properties: with_properties.then(|| {
                    json!({
                        "Properties": null,
                        "State": vm.state.to_string(),
                        "Error": vm.failure,
                        "SpecDigest": vm.spec_digest,
                        "Backend": "gcp",
                        "Pid": null,
                        "Address": vm.address,
                        "Zone": location.zone,
                    })
                }),
            })
            .collect()
    }

    /// moby's instances in each project and zone that started instances of `entries` are in,
    /// and in the default one: one listing each.
    async fn list_clouds(&self, entries: &[Entry]) -> HashMap<GcpPlace, CloudListing> {
        let mut places: Vec<GcpPlace> = entries
            .iter()
            .filter(|entry| entry.phase == Phase::Started)
            .filter_map(|entry| entry.gcp.clone())
            .collect();
        places.extend(self.gcp_default.as_ref().map(GcpPlace::from));
        let mut out = HashMap::new();
        for place in places {
            if out.contains_key(&place) {
                continue;
            }
            let listing = match self.gcp.backend(&(&place).into()) {
                Ok(backend) => backend
                    .list(&Tags::new())
                    .await
                    .map(|all| all.into_iter().map(|vm| (vm.name.clone(), vm)).collect())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            out.insert(place, listing);
        }
        out
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
                Phase::Building | Phase::Booting => plugin.spawn_bring_up(entry.id),
                Phase::Destroying => {
                    tokio::spawn(async move { plugin.tear_down(entry.id).await });
                }
                Phase::Started | Phase::Failed => {}
            }
        }
        Ok(())
    }

    /// The images this plugin builds and boots.
    pub fn images(&self) -> &Images {
        &self.images
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

/// The ID of a new instance on this host: with a name prefix, `PREFIX-` and the logical ID with
/// its dots as dashes (`PREFIX-10-77-0-10`, as GCP names are made) or 12 random hex digits;
/// without one, the logical ID itself or `moby-` and 12 random hex digits.
fn local_id(prefix: Option<&str>, logical: Option<&str>) -> Result<String, String> {
    match (prefix, logical) {
        (Some(prefix), Some(logical)) => {
            id_for_logical(logical)?;
            let id = format!("{prefix}-{}", logical.replace('.', "-"));
            id_for_logical(&id).map_err(|_| {
                format!(
                    "Spec.LogicalID {logical:?} after Properties.NamePrefix makes {id:?}, longer than an \
                     instance name can be (64 characters): shorten either"
                )
            })?;
            Ok(id)
        }
        (Some(prefix), None) => new_id(prefix),
        (None, Some(logical)) => id_for_logical(logical),
        (None, None) => new_id("moby"),
    }
}

/// The name of the network in the properties an instance was provisioned with, if any.
fn network_name(properties: &Value) -> Option<String> {
    Properties::parse(Some(properties.clone()))
        .ok()?
        .network
        .map(|network| network.name)
}

/// A new random ID, `PREFIX-` and 12 hex digits.
pub(super) fn new_id(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 6];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| format!("cannot read /dev/urandom: {e}"))?,
        &mut bytes,
    )
    .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(format!(
        "{prefix}-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Whether `tags` carries every tag of `filter`.
fn carries(tags: &Tags, filter: &Tags) -> bool {
    filter.iter().all(|(k, v)| tags.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_prefix_names_instances_as_gcp_names_are_made() {
        assert_eq!(
            local_id(Some("demo-nodes"), Some("10.77.0.10")).unwrap(),
            "demo-nodes-10-77-0-10"
        );
        assert_eq!(local_id(Some("demo-nodes"), Some("0")).unwrap(), "demo-nodes-0");
        let random = local_id(Some("demo-nodes"), None).unwrap();
        assert!(
            random.starts_with("demo-nodes-") && random.len() == "demo-nodes-".len() + 12,
            "{random}"
        );
        // Without a prefix, the names stay as they were.
        assert_eq!(local_id(None, Some("10.77.0.10")).unwrap(), "10.77.0.10");
        assert!(local_id(None, None).unwrap().starts_with("moby-"));
        let e = local_id(Some("demo"), Some("a b")).unwrap_err();
        assert!(e.starts_with("Spec.LogicalID \"a b\" cannot name an instance"), "{e}");
        let e = local_id(Some(&"p".repeat(40)), Some(&"x".repeat(30))).unwrap_err();
        assert!(e.contains("after Properties.NamePrefix makes"), "{e}");
    }

    #[test]
    fn the_network_of_recorded_properties() {
        let properties = json!({"Moby": "x.yml", "Network": {"Name": "lab"}});
        assert_eq!(network_name(&properties).as_deref(), Some("lab"));
        assert_eq!(network_name(&json!({"Moby": "x.yml"})), None);
        assert_eq!(network_name(&Value::Null), None);
    }
}
