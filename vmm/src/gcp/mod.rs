//! Google Compute Engine: images pushed from `NAME.img.tar.gz` archives ([`push`]) and instances
//! run from them ([`Gcp`], one more [`Backend`]). Nothing is kept on this host: an instance's
//! tags, logical ID and spec digest live in its metadata (and, made to fit, its labels), so it is
//! described and listed from the API alone.
//!
//! Credentials come from a service-account key file or application default credentials
//! (Google's `google-cloud-auth`); the calls are Compute Engine's and Cloud Storage's JSON APIs
//! over reqwest, at endpoints that can be overridden (an emulator, a fake in tests).

mod api;
mod compute;
mod config;
mod error;
mod image;
mod storage;
mod tags;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

pub use config::{
    check_name, is_name, resolve_bucket, CredentialsSource, Endpoints, Location, Settings, BUCKET_ENV,
    COMPUTE_ENDPOINT_ENV, DEFAULT_ZONE, KEYS_ENV, PROJECT_ENV, STORAGE_EMULATOR_ENV, STORAGE_ENDPOINT_ENV, ZONE_ENV,
};
pub use error::GcpError;
pub use image::{check_archive, default_name, PushOptions, ARCHIVE_SUFFIX};

use self::api::Api;
use self::compute::{Compute, Instance};
use self::storage::Storage;
use crate::backend::{Backend, Ending, RunEnd, Stopped};
use crate::console::Console;
use crate::error::VmError;
use crate::instance::{matches, BackendKind, InstanceRecord, InstanceState, Request, Tags};
use crate::stop_signals::StopSignals;

/// LinuxKit's default machine type.
pub const DEFAULT_MACHINE: &str = "g1-small";
/// How often the serial console is polled.
const SERIAL_POLL: Duration = Duration::from_secs(1);
/// How often a foreground run checks that the instance still runs (in serial polls).
const STATUS_EVERY: u32 = 5;

/// How instances are made: what `instances.insert` is given besides the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The machine type (`g1-small`, `e2-medium`).
    pub machine_type: String,
    /// The boot disk's size in GiB; `None` is the image's.
    pub disk_size_gb: Option<u64>,
    /// The VPC network (`default`).
    pub network: String,
    /// Preemptible (spot-priced, stopped by Google at will).
    pub preemptible: bool,
    /// Let the instance run nested VMs (its image needs the `enable-vmx` licence).
    pub nested_virt: bool,
    /// Leave the instance running when a foreground run ends (LinuxKit's `-skip-cleanup`).
    pub keep_after_run: bool,
}

impl Default for Machine {
    fn default() -> Machine {
        Machine {
            machine_type: DEFAULT_MACHINE.to_string(),
            disk_size_gb: None,
            network: "default".to_string(),
            preemptible: false,
            nested_virt: false,
            keep_after_run: false,
        }
    }
}

/// The Compute Engine backend: instances in one project and zone.
#[derive(Debug, Clone)]
pub struct Gcp {
    compute: Compute,
    storage: Storage,
    /// How instances are made.
    pub machine: Machine,
}

impl Gcp {
    /// A backend for `settings` (credentials are checked now; tokens are fetched when needed).
    /// Call it inside a Tokio runtime.
    pub fn new(settings: &Settings, machine: Machine) -> Result<Gcp, GcpError> {
        let api = Api::new(&settings.credentials)?;
        Ok(Gcp {
            compute: Compute::new(api.clone(), &settings.endpoints.compute, settings.location.clone()),
            storage: Storage::new(api, &settings.endpoints.storage),
            machine,
        })
    }

    /// The project and zone.
    pub fn location(&self) -> &Location {
        self.compute.location()
    }

    /// Pushes the archive at `path` as an image (see [`PushOptions`]); `progress(sent, total)`
    /// follows the upload.
    pub async fn push(
        &self,
        path: &std::path::Path,
        options: &PushOptions,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), GcpError> {
        image::push(&self.compute, &self.storage, path, options, progress).await
    }

    /// Whether the image `name` exists and is ready.
    pub async fn image_ready(&self, name: &str) -> Result<bool, GcpError> {
        Ok(self.compute.image(name).await?.is_some_and(|i| i.status == "READY"))
    }

    /// The Instance resource for `request`.
    fn instance_resource(&self, request: &Request) -> Result<Value, VmError> {
        refuse_local_only(request)?;
        check_name("the instance name", &request.name)?;
        let location = self.location();
        let image = request.image.to_string_lossy().into_owned();
        let source_image = if image.contains('/') {
            image.clone()
        } else {
            check_name("the image name", &image)?;
            format!("projects/{}/global/images/{image}", location.project)
        };
        let mut metadata = vec![
            ("serial-port-enable".to_string(), "1".to_string()),
            (tags::TAGS_KEY.to_string(), tags::to_metadata(&request.tags)),
            (tags::IMAGE_KEY.to_string(), image),
        ];
        if let Some(data) = &request.userdata {
            let text = String::from_utf8(data.clone()).map_err(|_| GcpError::Invalid {
                what: "the userdata",
                value: String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned(),
                why: "GCE metadata is text: give UTF-8",
            })?;
            metadata.push((tags::USER_DATA_KEY.to_string(), text));
        }
        if let Some(id) = &request.logical_id {
            metadata.push((tags::LOGICAL_ID_KEY.to_string(), id.clone()));
        }
        if let Some(digest) = &request.spec_digest {
            metadata.push((tags::SPEC_DIGEST_KEY.to_string(), digest.clone()));
        }
        let mut initialize = json!({ "sourceImage": source_image });
        if let Some(size) = self.machine.disk_size_gb {
            initialize["diskSizeGb"] = json!(size.to_string());
        }
        let mut interface = json!({
            "network": format!("global/networks/{}", self.machine.network),
            "accessConfigs": [{ "type": "ONE_TO_ONE_NAT", "name": "External NAT" }],
        });
        // A logical ID that is an address is the instance's internal address (InfraKit's way).
        if let Some(ip) = request.logical_id.as_deref().and_then(|id| id.parse::<Ipv4Addr>().ok()) {
            interface["networkIP"] = json!(ip.to_string());
        }
        let mut instance = json!({
            "name": request.name,
            "machineType": format!("zones/{}/machineTypes/{}", location.zone, self.machine.machine_type),
            "disks": [{ "boot": true, "autoDelete": true, "initializeParams": initialize }],
            "networkInterfaces": [interface],
            "metadata": { "items": compute::metadata_items(&metadata) },
            "labels": tags::labels(&request.tags),
        });
        if self.machine.preemptible {
            instance["scheduling"] =
                json!({ "preemptible": true, "automaticRestart": false, "onHostMaintenance": "TERMINATE" });
        }
        if self.machine.nested_virt {
            instance["advancedMachineFeatures"] = json!({ "enableNestedVirtualization": true });
            instance["minCpuPlatform"] = json!("Intel Haswell");
        }
        Ok(instance)
    }

    async fn get(&self, name: &str) -> Result<Instance, VmError> {
        self.compute
            .instance(name)
            .await?
            .ok_or_else(|| unknown(self.location(), name))
    }

    /// Streams the serial console of `name` to `console` until the instance stops or one of
    /// `signals` arrives; `true` when a signal ended it.
    async fn follow(
        &self,
        name: &str,
        console: &mut (dyn Write + Send),
        signals: &mut StopSignals,
    ) -> Result<bool, VmError> {
        let mut next = 0;
        let mut polls = 0u32;
        loop {
            next = self.copy_serial(name, next, console).await?;
            polls += 1;
            if polls.is_multiple_of(STATUS_EVERY) {
                let status = self.get(name).await?.status;
                if !matches!(status.as_str(), "PROVISIONING" | "STAGING" | "RUNNING") {
                    // What the guest wrote since the last poll.
                    self.copy_serial(name, next, console).await?;
                    return Ok(false);
                }
            }
            tokio::select! {
                () = signals.recv() => return Ok(true),
                () = tokio::time::sleep(SERIAL_POLL) => {}
            }
        }
    }

    /// Copies the serial output of `name` from byte `from` to `console`; returns where the next
    /// read starts.
    async fn copy_serial(&self, name: &str, from: u64, console: &mut (dyn Write + Send)) -> Result<u64, VmError> {
        let output = self.compute.serial_output(name, from).await?;
        if output.start > from && from > 0 {
            let lost = output.start - from;
            let _ = write!(console, "\r\n[moby: {lost} bytes of console output were lost]\r\n");
        }
        let _ = console.write_all(output.contents.as_bytes());
        let _ = console.flush();
        Ok(output.next.max(from))
    }
}

/// Request fields that only a VM on this host can honour.
fn refuse_local_only(request: &Request) -> Result<(), VmError> {
    let refuse = |what| {
        Err(VmError::Unsupported {
            backend: BackendKind::Gcp,
            what,
        })
    };
    if !request.disks.is_empty() {
        return refuse("attach extra disks (the boot disk's size is a machine setting)");
    }
    if request.network.is_some() {
        return refuse("join a private network of this host (use the VPC network setting)");
    }
    if !request.publish.is_empty() {
        return refuse("publish ports (instances have their own addresses; open them with firewall rules)");
    }
    if request.uefi {
        return refuse("choose UEFI per instance (an image pushed as UEFI-compatible boots with it)");
    }
    if request.accel.is_some() || request.networking.is_some() || request.firmware.is_some() {
        return refuse("take an accelerator, networking mode or firmware (they are machine settings)");
    }
    Ok(())
}

fn unknown(location: &Location, name: &str) -> VmError {
    VmError::Gcp(GcpError::Api {
        service: "Compute Engine",
        call: format!("instances.get {name}"),
        status: 404,
        reason: Some("notFound".into()),
        message: format!(
            "no instance named `{name}` in project {} zone {}",
            location.project, location.zone
        ),
    })
}

/// What a record says of a GCE instance.
fn record(instance: &Instance) -> InstanceRecord {
    let metadata = &instance.metadata;
    let (state, failure) = match instance.status.as_str() {
        "PROVISIONING" | "STAGING" | "REPAIRING" => (InstanceState::Starting, None),
        "RUNNING" => (InstanceState::Running, None),
        "STOPPING" | "SUSPENDING" | "PENDING_STOP" => (InstanceState::Stopping, None),
        "TERMINATED" | "STOPPED" | "SUSPENDED" => (InstanceState::Stopped, None),
        other => (
            InstanceState::Failed,
            Some(format!("GCE reports the instance as {other:?}")),
        ),
    };
    InstanceRecord {
        name: instance.name.clone(),
        backend: BackendKind::Gcp,
        state,
        failure,
        logical_id: metadata.get(tags::LOGICAL_ID_KEY).map(str::to_string),
        tags: tags::from_metadata(metadata.get(tags::TAGS_KEY)),
        spec_digest: metadata.get(tags::SPEC_DIGEST_KEY).map(str::to_string),
        image: PathBuf::from(metadata.get(tags::IMAGE_KEY).unwrap_or_default()),
        state_dir: PathBuf::new(),
        pid: None,
        owner_pid: None,
        accel: None,
        cpus: 0,
        memory_mib: 0,
        publish: Vec::new(),
        created_disks: Vec::new(),
        keep_disks: false,
        started: rfc3339_seconds(&instance.creation_timestamp).unwrap_or(0),
        address: instance.network_interfaces.first().and_then(|i| i.network_ip.clone()),
        network: None,
        machine: instance
            .machine_type
            .rsplit('/')
            .next()
            .map(str::to_string)
            .filter(|m| !m.is_empty()),
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time (`2026-12-07T15:12:01.123-08:00`).
fn rfc3339_seconds(text: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let zone = text[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hours: i64 = z.get(1..3)?.parse().ok()?;
            let minutes: i64 = z.get(4..6)?.parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second - offset).ok()
}

impl Backend for Gcp {
    fn kind(&self) -> BackendKind {
        BackendKind::Gcp
    }

    async fn start(&self, request: &Request) -> Result<InstanceRecord, VmError> {
        let resource = self.instance_resource(request)?;
        self.compute.insert_instance(resource).await?;
        self.describe(&request.name).await
    }

    /// Starts the instance, streams its serial console (polled) until it stops or a stop signal
    /// arrives, then deletes it unless [`Machine::keep_after_run`]. A signal while it is being
    /// created lets the creation finish, then deletes it: no instance is left running unasked.
    async fn run(
        &self,
        request: &Request,
        console: &mut (dyn Write + Send),
        stop_timeout: Duration,
    ) -> Result<RunEnd, VmError> {
        let mut signals = StopSignals::watch().map_err(|source| VmError::Io {
            doing: "watch the stop signals of",
            path: PathBuf::from(&request.name),
            source,
        })?;
        let start = self.start(request);
        tokio::pin!(start);
        let (started, interrupted) = tokio::select! {
            started = &mut start => (started, false),
            () = signals.recv() => (start.await, true),
        };
        started?;
        let followed = if interrupted {
            Ok(true)
        } else {
            self.follow(&request.name, console, &mut signals).await
        };
        let ending = match &followed {
            Ok(true) => Ending::HostStopped("stopped on request".into()),
            Ok(false) => Ending::GuestPoweredOff { power_button: false },
            Err(_) => Ending::HostStopped("the console could not be followed".into()),
        };
        if !self.machine.keep_after_run {
            self.destroy(&request.name, stop_timeout).await?;
        }
        followed?;
        Ok(RunEnd { ending, failure: None })
    }

    async fn describe(&self, name: &str) -> Result<InstanceRecord, VmError> {
        Ok(record(&self.get(name).await?))
    }

    async fn list(&self, filter: &Tags) -> Result<Vec<InstanceRecord>, VmError> {
        let (key, value) = tags::CREATED_BY;
        let instances = self.compute.instances(&format!("labels.{key} = \"{value}\"")).await?;
        let mut out: Vec<InstanceRecord> = instances
            .iter()
            .map(record)
            .filter(|r| matches(&r.tags, filter))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn label(&self, name: &str, new: &Tags) -> Result<InstanceRecord, VmError> {
        let instance = self.get(name).await?;
        let mut all = tags::from_metadata(instance.metadata.get(tags::TAGS_KEY));
        all.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut items: Vec<(String, String)> = instance
            .metadata
            .items
            .iter()
            .filter(|i| i.key != tags::TAGS_KEY)
            .map(|i| (i.key.clone(), i.value.clone().unwrap_or_default()))
            .collect();
        items.push((tags::TAGS_KEY.to_string(), tags::to_metadata(&all)));
        self.compute
            .set_metadata(name, &items, instance.metadata.fingerprint.as_deref())
            .await?;
        // Labels the user set by other means are kept.
        let mut labels = instance.labels.clone();
        labels.extend(tags::labels(&all));
        self.compute
            .set_labels(name, &labels, instance.label_fingerprint.as_deref())
            .await?;
        self.describe(name).await
    }

    async fn stop(&self, _name: &str, _timeout: Duration) -> Result<Stopped, VmError> {
        Err(VmError::Unsupported {
            backend: BackendKind::Gcp,
            what: "stop an instance and keep it (destroying it deletes it)",
        })
    }

    async fn destroy(&self, name: &str, _timeout: Duration) -> Result<(), VmError> {
        if self.compute.delete_instance(name).await? {
            Ok(())
        } else {
            Err(unknown(self.location(), name))
        }
    }

    async fn console(&self, _name: &str) -> Result<Console, VmError> {
        Err(VmError::Unsupported {
            backend: BackendKind::Gcp,
            what: "attach to a console (a foreground run streams the serial output)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_with_their_offset() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_seconds("2026-12-07T15:12:01.123-08:00"),
            Some(1_796_656_321 + 8 * 3600)
        );
        assert_eq!(rfc3339_seconds("garbage"), None);
    }
}
