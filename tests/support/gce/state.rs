//! The fake's Compute resources and what each method does to them, as GCE does: images and
//! instances, long-running operations that finish after a number of polls and apply their
//! effect then, fingerprints, list filters and paging, the serial console.
//!
//! Inserts make their resource visible at once in its first status (an image PENDING, an
//! instance PROVISIONING), as GCE does; a failed insert removes it when its operation ends.
//! Deletes, setLabels and setMetadata change the resource when their operation is DONE.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use regex::Regex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::disk_image::{DiskImage, ImportError};
use super::filter::Filter;

/// An error answer of a Compute method, in Google's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `errors[0].reason`: `notFound`, `alreadyExists`, `conditionNotMet`, `invalid`, ...
    pub reason: String,
    /// The message.
    pub message: String,
    /// Set when GCE refuses the request as malformed: the field at fault (`resource.labels.x`).
    /// Such a refusal is recorded as a violation too.
    pub violation: Option<String>,
}

impl ApiError {
    fn new(status: u16, reason: &str, message: String) -> ApiError {
        ApiError {
            status,
            reason: reason.to_string(),
            message,
            violation: None,
        }
    }

    fn not_found(path: &str) -> ApiError {
        ApiError::new(404, "notFound", format!("The resource '{path}' was not found"))
    }

    /// A request GCE answers 400 to: a client bug, so also a violation.
    fn invalid(field: &str, value: &Value, why: &str) -> ApiError {
        ApiError {
            violation: Some(field.to_string()),
            ..ApiError::new(
                400,
                "invalid",
                format!("Invalid value for field '{field}': {value}. {why}"),
            )
        }
    }

    /// Something GCE would do that the fake does not; not the client's fault.
    fn unsupported(what: &str) -> ApiError {
        ApiError::new(400, "invalid", format!("fake-gce does not support {what}"))
    }
}

/// How an operation fails when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    code: String,
    message: String,
    http_status: u16,
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Failure {
        let http_status = if e.code == "RESOURCE_NOT_FOUND" { 404 } else { 400 };
        Failure {
            code: e.code.to_string(),
            message: e.message,
            http_status,
        }
    }
}

type ImageKey = (String, String);
type InstanceKey = (String, String, String);
type OperationKey = (String, String);

/// What an operation does when it ends DONE without an error (and undoes when it fails).
#[derive(Debug, Clone)]
enum Effect {
    /// A request that failed before it changed anything (its error shows when it ends).
    NoChange,
    ImageReady(ImageKey),
    ImageDeleted(ImageKey),
    InstanceCreated(InstanceKey),
    InstanceDeleted(InstanceKey),
    LabelsSet(InstanceKey, Map<String, Value>),
    MetadataSet(InstanceKey, Vec<Value>),
}

struct Operation {
    resource: Value,
    polls: u32,
    effect: Effect,
    failure: Option<Failure>,
}

struct Instance {
    resource: Value,
    /// Everything written to serial port 1 so far.
    serial: Vec<u8>,
    /// Boot log lines still to come, one per `getSerialPortOutput`.
    boot_log: VecDeque<String>,
}

/// The instance statuses a new instance goes through, one per `get` or serial-port poll.
const BOOT_STATUSES: [&str; 3] = ["PROVISIONING", "STAGING", "RUNNING"];

/// Every resource and operation of the fake.
pub struct Compute {
    /// `{url}/compute/v1/`, the prefix of every selfLink.
    base: String,
    polls_until_done: u32,
    next_id: u64,
    next_address: u32,
    images: BTreeMap<ImageKey, Value>,
    instances: BTreeMap<InstanceKey, Instance>,
    operations: BTreeMap<OperationKey, Operation>,
    request_ids: HashMap<String, OperationKey>,
    failing_operations: HashMap<String, VecDeque<String>>,
    last_operation: Option<OperationKey>,
    patterns: &'static Patterns,
}

/// The regular expressions of the checks below, compiled once for every fake of the process.
struct Patterns {
    uuid: Regex,
    machine_type: Regex,
    image_link: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let regex = |pattern: &str| Regex::new(pattern).expect("a valid regex");
        Patterns {
            uuid: regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
            machine_type: regex(
                r"^(?:(?:https?://[^/]+/compute/v1/)?projects/([^/]+)/)?zones/([^/]+)/machineTypes/([a-z0-9-]+)$",
            ),
            image_link: regex(
                r"^(?:(?:https?://[^/]+/compute/v1/)?projects/([^/]+)/)?global/images/(family/)?([^/]+)$",
            ),
        }
    })
}

/// One Compute call after validation: the method, its path parameters, its query, its body.
pub struct Call<'a> {
    /// `compute.instances.insert`.
    pub method_id: &'a str,
    /// Decoded path parameters.
    pub params: &'a BTreeMap<String, String>,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// The JSON body (`Null` when the method takes none).
    pub body: &'a Value,
    /// For `images.insert`: the result of reading `rawDisk.source`, when it names an object.
    pub import: Option<Result<DiskImage, ImportError>>,
}

impl Call<'_> {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or_default()
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Compute {
    /// An empty project space whose selfLinks start with `base` (`{url}/compute/v1/`).
    pub fn new(base: &str) -> Compute {
        Compute {
            base: base.to_string(),
            polls_until_done: 2,
            next_id: 0,
            next_address: 2,
            images: BTreeMap::new(),
            instances: BTreeMap::new(),
            operations: BTreeMap::new(),
            request_ids: HashMap::new(),
            failing_operations: HashMap::new(),
            last_operation: None,
            patterns: patterns(),
        }
    }

    /// How many `get`/`wait` polls an operation takes to be DONE (0: done in the insert's answer).
    pub fn set_polls_until_done(&mut self, polls: u32) {
        self.polls_until_done = polls;
    }

    /// Makes the next operation of `method_id` end DONE with an error saying `message`.
    pub fn fail_operation(&mut self, method_id: &str, message: &str) {
        self.failing_operations
            .entry(method_id.to_string())
            .or_default()
            .push_back(message.to_string());
    }

    /// Every image, by project and name.
    pub fn images(&self) -> Vec<Value> {
        self.images.values().cloned().collect()
    }

    /// Every instance, by project, zone and name.
    pub fn instances(&self) -> Vec<Value> {
        self.instances.values().map(|i| i.resource.clone()).collect()
    }

    /// Sets the status of the instance called `name` (any project or zone); false if none.
    pub fn set_instance_status(&mut self, name: &str, status: &str) -> bool {
        let found = self.instances.iter_mut().find(|(key, _)| key.2 == name);
        found.is_some_and(|(_, instance)| {
            instance.resource["status"] = json!(status);
            true
        })
    }

    /// Appends `text` to the serial console of the instance called `name`; false if none.
    pub fn append_serial_output(&mut self, name: &str, text: &str) -> bool {
        let found = self.instances.iter_mut().find(|(key, _)| key.2 == name);
        found.is_some_and(|(_, instance)| {
            instance.serial.extend_from_slice(text.as_bytes());
            true
        })
    }

    /// Runs one validated call.
    pub fn call(&mut self, call: Call<'_>) -> Result<Value, ApiError> {
        let request_id = call.query("requestId").map(str::to_string);
        if let Some(id) = &request_id {
            if !self.patterns.uuid.is_match(id) || id.chars().all(|c| c == '0' || c == '-') {
                return Err(ApiError::invalid(
                    "requestId",
                    &json!(id),
                    "Must be a valid, non-zero UUID.",
                ));
            }
            // A retried request with the same id gets the first one's operation.
            if let Some(operation) = self.request_ids.get(id).and_then(|key| self.operations.get(key)) {
                return Ok(operation.resource.clone());
            }
        }
        self.last_operation = None;
        let project = call.param("project").to_string();
        let result = match call.method_id {
            "compute.images.insert" => self.insert_image(&project, &call),
            "compute.images.get" => self.image(&project, call.param("image")).cloned(),
            "compute.images.delete" => self.delete_image(&project, call.param("image")),
            "compute.instances.insert" => self.insert_instance(&project, &call),
            "compute.instances.get" => self.get_instance(&self.instance_key(&call)?),
            "compute.instances.list" => self.list_instances(&project, call.param("zone"), &call),
            "compute.instances.delete" => self.delete_instance(&self.instance_key(&call)?),
            "compute.instances.setLabels" => self.set_labels(&self.instance_key(&call)?, call.body),
            "compute.instances.setMetadata" => self.set_metadata(&self.instance_key(&call)?, call.body),
            "compute.instances.getSerialPortOutput" => self.serial_port_output(&self.instance_key(&call)?, &call),
            "compute.zoneOperations.get" | "compute.zoneOperations.wait" => {
                let scope = format!("projects/{project}/zones/{}", call.param("zone"));
                self.poll_operation((scope, call.param("operation").to_string()))
            }
            "compute.globalOperations.get" | "compute.globalOperations.wait" => {
                let scope = format!("projects/{project}/global");
                self.poll_operation((scope, call.param("operation").to_string()))
            }
            other => Err(ApiError::unsupported(&format!("the method {other}"))),
        }?;
        if let (Some(id), Some(key)) = (request_id, self.last_operation.take()) {
            self.request_ids.insert(id, key);
        }
        Ok(result)
    }

    // ---- images ----

    fn image(&self, project: &str, name: &str) -> Result<&Value, ApiError> {
        self.images
            .get(&(project.to_string(), name.to_string()))
            .ok_or_else(|| ApiError::not_found(&format!("projects/{project}/global/images/{name}")))
    }

    fn insert_image(&mut self, project: &str, call: &Call<'_>) -> Result<Value, ApiError> {
        let body = call.body;
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let path = format!("projects/{project}/global/images/{name}");
        let other_sources = ["sourceDisk", "sourceImage", "sourceSnapshot"];
        if let Some(source) = other_sources.iter().find(|s| !body[**s].is_null()) {
            if !body["rawDisk"]["source"].is_null() {
                return Err(ApiError::invalid(
                    "resource",
                    &json!(source),
                    "Only one of rawDisk.source, sourceDisk, sourceImage, sourceSnapshot may be given.",
                ));
            }
            return Err(ApiError::unsupported(&format!(
                "images made from {source}, only from rawDisk.source"
            )));
        }
        let source = &body["rawDisk"]["source"];
        if source.is_null() {
            return Err(ApiError::invalid(
                "resource.rawDisk.source",
                &json!(""),
                "An image needs a source: rawDisk.source, sourceDisk, sourceImage or sourceSnapshot.",
            ));
        }
        let Some(import) = call.import.clone() else {
            return Err(ApiError::invalid(
                "resource.rawDisk.source",
                source,
                "Must be https://storage.googleapis.com/BUCKET/OBJECT or gs://BUCKET/OBJECT.",
            ));
        };
        self.check_labels("resource.labels", &body["labels"])?;
        let key = (project.to_string(), name.clone());
        if self.images.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "alreadyExists",
                format!("The resource '{path}' already exists"),
            ));
        }
        let id = self.new_id();
        let mut image = body.as_object().cloned().unwrap_or_default();
        let mut raw_disk = body["rawDisk"].as_object().cloned().unwrap_or_default();
        raw_disk.entry("containerType").or_insert(json!("TAR"));
        let labels = body["labels"].as_object().cloned().unwrap_or_default();
        image.extend([
            ("kind".into(), json!("compute#image")),
            ("id".into(), json!(id.to_string())),
            ("creationTimestamp".into(), json!(timestamp())),
            ("selfLink".into(), json!(format!("{}{path}", self.base))),
            ("status".into(), json!("PENDING")),
            ("sourceType".into(), json!("RAW")),
            ("rawDisk".into(), Value::Object(raw_disk)),
            (
                "labelFingerprint".into(),
                json!(fingerprint(&Value::Object(labels.clone()))),
            ),
            ("storageLocations".into(), json!(["us"])),
        ]);
        set_or_remove(
            &mut image,
            "labels",
            (!labels.is_empty()).then_some(Value::Object(labels)),
        );
        if let Ok(disk) = &import {
            image.insert("archiveSizeBytes".into(), json!(disk.archive_bytes.to_string()));
            image.insert(
                "diskSizeGb".into(),
                json!(disk.disk_bytes.div_ceil(1 << 30).to_string()),
            );
        }
        self.images.insert(key.clone(), Value::Object(image));
        let target = Target {
            project,
            zone: None,
            link: format!("{}{path}", self.base),
            id,
        };
        Ok(self.new_operation(
            call.method_id,
            "insert",
            target,
            Effect::ImageReady(key),
            import.err().map(Failure::from),
        ))
    }

    fn delete_image(&mut self, project: &str, name: &str) -> Result<Value, ApiError> {
        let key = (project.to_string(), name.to_string());
        let image = self.image(project, name)?;
        let target = Target {
            project,
            zone: None,
            link: image["selfLink"].as_str().unwrap_or_default().to_string(),
            id: image["id"].as_str().and_then(|id| id.parse().ok()).unwrap_or_default(),
        };
        if let Some(image) = self.images.get_mut(&key) {
            image["status"] = json!("DELETING");
        }
        Ok(self.new_operation(
            "compute.images.delete",
            "delete",
            target,
            Effect::ImageDeleted(key),
            None,
        ))
    }

    /// The image a boot disk's `sourceImage` names (a name, a family, a partial or full URL).
    fn resolve_image(&self, project: &str, link: &str) -> Result<&Value, Failure> {
        let not_found = |path: String| Failure {
            code: "RESOURCE_NOT_FOUND".into(),
            message: format!("The resource '{path}' was not found"),
            http_status: 404,
        };
        let Some(parts) = self.patterns.image_link.captures(link) else {
            return Err(not_found(link.to_string()));
        };
        let image_project = parts.get(1).map_or(project, |p| p.as_str()).to_string();
        let name = parts.get(3).map_or("", |n| n.as_str());
        let image = if parts.get(2).is_some() {
            self.images
                .iter()
                .filter(|((p, _), image)| *p == image_project && image["family"] == name && image["status"] == "READY")
                .map(|(_, image)| image)
                .max_by_key(|image| image["id"].as_str().and_then(|id| id.parse::<u64>().ok()))
        } else {
            self.images.get(&(image_project.clone(), name.to_string()))
        };
        let path = format!(
            "projects/{image_project}/global/images/{}{name}",
            if parts.get(2).is_some() { "family/" } else { "" }
        );
        let image = image.ok_or_else(|| not_found(path.clone()))?;
        if image["status"] != "READY" {
            return Err(Failure {
                code: "RESOURCE_NOT_READY".into(),
                message: format!("The resource '{path}' is not ready"),
                http_status: 400,
            });
        }
        Ok(image)
    }

    // ---- instances ----

    fn instance_key(&self, call: &Call<'_>) -> Result<InstanceKey, ApiError> {
        let (project, zone, name) = (call.param("project"), call.param("zone"), call.param("instance"));
        let by_name = (project.to_string(), zone.to_string(), name.to_string());
        if self.instances.contains_key(&by_name) {
            return Ok(by_name);
        }
        // The instance path parameter may also be the numeric id.
        self.instances
            .iter()
            .find(|((p, z, _), instance)| p == project && z == zone && instance.resource["id"] == name)
            .map(|(key, _)| key.clone())
            .ok_or_else(|| ApiError::not_found(&format!("projects/{project}/zones/{zone}/instances/{name}")))
    }

    fn insert_instance(&mut self, project: &str, call: &Call<'_>) -> Result<Value, ApiError> {
        let body = call.body;
        let zone = call.param("zone");
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let path = format!("projects/{project}/zones/{zone}/instances/{name}");
        self.check_labels("resource.labels", &body["labels"])?;
        let machine_type = self.machine_type_link(project, zone, &body["machineType"])?;
        let items = body["metadata"]["items"].as_array().cloned().unwrap_or_default();
        check_metadata_items("resource.metadata.items", &items)?;
        let disks = body["disks"].as_array().cloned().unwrap_or_default();
        if disks.is_empty() {
            return Err(ApiError::invalid(
                "resource.disks",
                &json!([]),
                "An instance needs a boot disk.",
            ));
        }
        for (i, disk) in disks.iter().enumerate() {
            if disk["boot"] == true && i != 0 {
                return Err(ApiError::invalid(
                    &format!("resource.disks[{i}].boot"),
                    &json!(true),
                    "Boot disk must be the first disk attached to the instance.",
                ));
            }
            self.check_labels(
                &format!("resource.disks[{i}].initializeParams.labels"),
                &disk["initializeParams"]["labels"],
            )?;
        }
        if disks[0]["boot"] != true {
            return Err(ApiError::invalid(
                "resource.disks[0].boot",
                &disks[0]["boot"],
                "The first disk must be the boot disk (boot: true).",
            ));
        }
        let key = (project.to_string(), zone.to_string(), name.clone());
        if self.instances.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "alreadyExists",
                format!("The resource '{path}' already exists"),
            ));
        }

        // Disks whose image is missing fail the operation, as in GCE, and make no instance.
        let mut failure = None;
        let mut attached = Vec::new();
        for (i, disk) in disks.iter().enumerate() {
            match self.attach_disk(project, zone, &name, i, disk) {
                Ok(disk) => attached.push(disk),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let id = self.new_id();
        let target = Target {
            project,
            zone: Some(zone),
            link: format!("{}{path}", self.base),
            id,
        };
        if let Some(failure) = failure {
            return Ok(self.new_operation(call.method_id, "insert", target, Effect::NoChange, Some(failure)));
        }

        let labels = body["labels"].as_object().cloned().unwrap_or_default();
        let mut instance = body.as_object().cloned().unwrap_or_default();
        let network_interfaces = self.network_interfaces(project, zone, &body["networkInterfaces"]);
        let mut tags = body["tags"].as_object().cloned().unwrap_or_default();
        tags.insert("fingerprint".into(), json!(fingerprint(&json!(tags.get("items")))));
        instance.extend([
            ("kind".into(), json!("compute#instance")),
            ("id".into(), json!(id.to_string())),
            ("creationTimestamp".into(), json!(timestamp())),
            (
                "zone".into(),
                json!(format!("{}projects/{project}/zones/{zone}", self.base)),
            ),
            ("machineType".into(), json!(machine_type)),
            ("status".into(), json!(BOOT_STATUSES[0])),
            ("selfLink".into(), json!(format!("{}{path}", self.base))),
            (
                "labelFingerprint".into(),
                json!(fingerprint(&Value::Object(labels.clone()))),
            ),
            ("metadata".into(), metadata_json(&items)),
            ("networkInterfaces".into(), Value::Array(network_interfaces)),
            ("disks".into(), Value::Array(attached)),
            ("tags".into(), Value::Object(tags)),
            ("fingerprint".into(), json!(fingerprint(&json!(id.to_string())))),
            (
                "canIpForward".into(),
                body.get("canIpForward").cloned().unwrap_or(json!(false)),
            ),
            (
                "deletionProtection".into(),
                body.get("deletionProtection").cloned().unwrap_or(json!(false)),
            ),
            ("startRestricted".into(), json!(false)),
            ("cpuPlatform".into(), json!("Intel Cascade Lake")),
        ]);
        set_or_remove(
            &mut instance,
            "labels",
            (!labels.is_empty()).then_some(Value::Object(labels)),
        );
        let scheduling = instance.entry("scheduling").or_insert_with(|| json!({}));
        if let Some(scheduling) = scheduling.as_object_mut() {
            scheduling.entry("onHostMaintenance").or_insert(json!("MIGRATE"));
            scheduling.entry("automaticRestart").or_insert(json!(true));
            scheduling.entry("preemptible").or_insert(json!(false));
            scheduling.entry("provisioningModel").or_insert(json!("STANDARD"));
        }
        let resource = Value::Object(instance);
        let boot_log = boot_log(&resource, &items);
        self.instances.insert(
            key.clone(),
            Instance {
                resource,
                serial: Vec::new(),
                boot_log,
            },
        );
        Ok(self.new_operation(call.method_id, "insert", target, Effect::InstanceCreated(key), None))
    }

    /// `machineType` as a full URL; it must be a machine type URL of the instance's zone.
    fn machine_type_link(&self, project: &str, zone: &str, value: &Value) -> Result<String, ApiError> {
        let field = "resource.machineType";
        let text = value.as_str().unwrap_or_default();
        let Some(parts) = self.patterns.machine_type.captures(text) else {
            return Err(ApiError::invalid(
                field,
                value,
                "Must be a URL to a valid Compute resource of the correct type (zones/ZONE/machineTypes/TYPE).",
            ));
        };
        let type_project = parts.get(1).map_or(project, |p| p.as_str());
        if &parts[2] != zone {
            return Err(ApiError::invalid(
                field,
                value,
                &format!(
                    "The machine type's zone {} is not the instance's zone {zone}.",
                    &parts[2]
                ),
            ));
        }
        Ok(format!(
            "{}projects/{type_project}/zones/{zone}/machineTypes/{}",
            self.base, &parts[3]
        ))
    }

    /// An attached disk as GCE reports it: `initializeParams` (input only) become a disk `source`.
    fn attach_disk(
        &self,
        project: &str,
        zone: &str,
        instance: &str,
        index: usize,
        disk: &Value,
    ) -> Result<Value, Failure> {
        let mut out = disk.as_object().cloned().unwrap_or_default();
        let params = out.remove("initializeParams").unwrap_or(Value::Null);
        let default_name = if index == 0 {
            instance.to_string()
        } else {
            format!("{instance}-{index}")
        };
        let disk_name = params["diskName"].as_str().map_or(default_name, str::to_string);
        let mut size_gb = params["diskSizeGb"].as_str().and_then(|s| s.parse::<u64>().ok());
        if let Some(source) = disk["source"].as_str() {
            // The fake keeps no disks: attaching an existing one is attaching a missing one.
            return Err(Failure {
                code: "RESOURCE_NOT_FOUND".into(),
                message: format!("The resource '{source}' was not found"),
                http_status: 404,
            });
        }
        if let Some(link) = params["sourceImage"].as_str() {
            let image = self.resolve_image(project, link)?;
            let image_gb = image["diskSizeGb"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1);
            if size_gb.is_some_and(|size| size < image_gb) {
                return Err(Failure {
                    code: "INVALID_FIELD_VALUE".into(),
                    message: format!(
                        "Invalid value for field 'resource.disks[{index}].initializeParams.diskSizeGb': '{}'. \
                         Requested disk size cannot be smaller than the image size ({image_gb} GB)",
                        size_gb.unwrap_or_default()
                    ),
                    http_status: 400,
                });
            }
            size_gb = Some(size_gb.unwrap_or(image_gb));
            if let Some(licenses) = image.get("licenses") {
                out.insert("licenses".into(), licenses.clone());
            }
        } else if index == 0 {
            return Err(Failure {
                code: "INVALID_FIELD_VALUE".into(),
                message: "The boot disk needs initializeParams.sourceImage (fake-gce keeps no disks)".into(),
                http_status: 400,
            });
        }
        out.extend([
            ("kind".into(), json!("compute#attachedDisk")),
            ("index".into(), json!(index)),
            (
                "source".into(),
                json!(format!(
                    "{}projects/{project}/zones/{zone}/disks/{disk_name}",
                    self.base
                )),
            ),
            ("diskSizeGb".into(), json!(size_gb.unwrap_or(10).to_string())),
        ]);
        out.entry("type").or_insert(json!("PERSISTENT"));
        out.entry("mode").or_insert(json!("READ_WRITE"));
        out.entry("deviceName")
            .or_insert(json!(format!("persistent-disk-{index}")));
        out.entry("boot").or_insert(json!(false));
        out.entry("autoDelete").or_insert(json!(false));
        out.entry("interface").or_insert(json!("SCSI"));
        Ok(Value::Object(out))
    }

    /// Network interfaces as GCE reports them: full network URLs, an internal address for
    /// each (the one asked for, or the next 10.128.0.N), an external one for each access config.
    fn network_interfaces(&mut self, project: &str, zone: &str, given: &Value) -> Vec<Value> {
        let given = match given.as_array() {
            Some(list) if !list.is_empty() => list.clone(),
            _ => vec![json!({})],
        };
        let region = zone.rsplit_once('-').map_or(zone, |(region, _)| region);
        given
            .iter()
            .enumerate()
            .map(|(i, nic)| {
                let mut out = nic.as_object().cloned().unwrap_or_default();
                let network = nic["network"].as_str().unwrap_or("global/networks/default");
                out.insert("network".into(), json!(self.full_link(project, network)));
                if let Some(subnetwork) = nic["subnetwork"].as_str() {
                    out.insert("subnetwork".into(), json!(self.full_link(project, subnetwork)));
                } else {
                    out.insert(
                        "subnetwork".into(),
                        json!(format!(
                            "{}projects/{project}/regions/{region}/subnetworks/default",
                            self.base
                        )),
                    );
                }
                if nic["networkIP"].as_str().is_none() {
                    out.insert("networkIP".into(), json!(format!("10.128.0.{}", self.next_address)));
                }
                let configs: Vec<Value> = nic["accessConfigs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|config| {
                        let mut config = config.as_object().cloned().unwrap_or_default();
                        config.insert("kind".into(), json!("compute#accessConfig"));
                        config.entry("type").or_insert(json!("ONE_TO_ONE_NAT"));
                        config.entry("name").or_insert(json!("External NAT"));
                        config.entry("networkTier").or_insert(json!("PREMIUM"));
                        config
                            .entry("natIP")
                            .or_insert(json!(format!("203.0.113.{}", self.next_address)));
                        Value::Object(config)
                    })
                    .collect();
                set_or_remove(
                    &mut out,
                    "accessConfigs",
                    (!configs.is_empty()).then_some(Value::Array(configs)),
                );
                self.next_address += 1;
                out.insert("kind".into(), json!("compute#networkInterface"));
                out.insert("name".into(), json!(format!("nic{i}")));
                out.insert("fingerprint".into(), json!(fingerprint(nic)));
                out.entry("stackType").or_insert(json!("IPV4_ONLY"));
                Value::Object(out)
            })
            .collect()
    }

    /// A partial resource link (`global/networks/N`, `projects/P/...`) as a full URL.
    fn full_link(&self, project: &str, link: &str) -> String {
        if link.starts_with("https://") || link.starts_with("http://") {
            link.to_string()
        } else if link.starts_with("projects/") {
            format!("{}{link}", self.base)
        } else {
            format!("{}projects/{project}/{link}", self.base)
        }
    }

    /// An instance's current state; each look moves a booting instance one status further.
    fn get_instance(&mut self, key: &InstanceKey) -> Result<Value, ApiError> {
        let Some(instance) = self.instances.get_mut(key) else {
            return Err(ApiError::not_found(&format!(
                "projects/{}/zones/{}/instances/{}",
                key.0, key.1, key.2
            )));
        };
        let answer = instance.resource.clone();
        advance_boot(instance);
        Ok(answer)
    }

    fn list_instances(&mut self, project: &str, zone: &str, call: &Call<'_>) -> Result<Value, ApiError> {
        let filter = match call.query("filter") {
            Some(text) => Some(Filter::parse(text).map_err(|why| ApiError {
                violation: Some("query.filter".into()),
                ..ApiError::new(
                    400,
                    "invalid",
                    format!("Invalid value for field 'filter': {text:?}. {why}"),
                )
            })?),
            None => None,
        };
        let max_results = call
            .query("maxResults")
            .and_then(|m| m.parse::<usize>().ok())
            .filter(|&m| m > 0)
            .unwrap_or(500)
            .min(500);
        let page_start = match call.query("pageToken") {
            Some(token) => Some(
                URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "pageToken",
                            &json!(token),
                            "The page token is not one this server gave.",
                        )
                    })?,
            ),
            None => None,
        };
        let mut matching: Vec<&Value> = self
            .instances
            .iter()
            .filter(|((p, z, _), _)| p == project && z == zone)
            .map(|(_, instance)| &instance.resource)
            .filter(|resource| filter.as_ref().is_none_or(|f| f.matches(resource)))
            .collect();
        match call.query("orderBy") {
            None | Some("name") => {}
            Some("creationTimestamp desc") => matching.sort_by(|a, b| {
                let id = |v: &Value| v["id"].as_str().and_then(|id| id.parse::<u64>().ok());
                id(b).cmp(&id(a))
            }),
            Some(other) => {
                return Err(ApiError::unsupported(&format!(
                    "orderBy {other:?} (only name and creationTimestamp desc)"
                )))
            }
        }
        // A page token is the position of the page's first item (base64url of its decimal text).
        let start = page_start.and_then(|a| a.parse::<usize>().ok()).unwrap_or(0);
        let page: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(max_results)
            .map(|v| (*v).clone())
            .collect();
        let mut list = json!({
            "kind": "compute#instanceList",
            "id": format!("projects/{project}/zones/{zone}/instances"),
            "selfLink": format!("{}projects/{project}/zones/{zone}/instances", self.base),
        });
        // GCE leaves `items` out of an empty page.
        if !page.is_empty() {
            list["items"] = Value::Array(page);
        }
        if start + max_results < matching.len() {
            list["nextPageToken"] = json!(URL_SAFE_NO_PAD.encode((start + max_results).to_string()));
        }
        Ok(list)
    }

    fn delete_instance(&mut self, key: &InstanceKey) -> Result<Value, ApiError> {
        let Some(instance) = self.instances.get_mut(key) else {
            return Err(ApiError::not_found(&format!(
                "projects/{}/zones/{}/instances/{}",
                key.0, key.1, key.2
            )));
        };
        instance.resource["status"] = json!("STOPPING");
        let target = self.instance_target(key);
        Ok(self.new_operation(
            "compute.instances.delete",
            "delete",
            target,
            Effect::InstanceDeleted(key.clone()),
            None,
        ))
    }

    fn set_labels(&mut self, key: &InstanceKey, body: &Value) -> Result<Value, ApiError> {
        let current = self.instance_resource(key)?["labelFingerprint"].clone();
        if body["labelFingerprint"] != current {
            return Err(ApiError::new(
                412,
                "conditionNotMet",
                "Labels fingerprint either invalid or resource labels have changed".into(),
            ));
        }
        self.check_labels("resource.labels", &body["labels"])?;
        let labels = body["labels"].as_object().cloned().unwrap_or_default();
        let target = self.instance_target(key);
        Ok(self.new_operation(
            "compute.instances.setLabels",
            "setLabels",
            target,
            Effect::LabelsSet(key.clone(), labels),
            None,
        ))
    }

    fn set_metadata(&mut self, key: &InstanceKey, body: &Value) -> Result<Value, ApiError> {
        let current = self.instance_resource(key)?["metadata"]["fingerprint"].clone();
        if body["fingerprint"] != current {
            return Err(ApiError::new(
                412,
                "conditionNotMet",
                "Supplied fingerprint does not match current metadata fingerprint.".into(),
            ));
        }
        let items = body["items"].as_array().cloned().unwrap_or_default();
        check_metadata_items("resource.items", &items)?;
        let target = self.instance_target(key);
        Ok(self.new_operation(
            "compute.instances.setMetadata",
            "setMetadata",
            target,
            Effect::MetadataSet(key.clone(), items),
            None,
        ))
    }

    /// `getSerialPortOutput`: each call writes the next boot log line first.
    fn serial_port_output(&mut self, key: &InstanceKey, call: &Call<'_>) -> Result<Value, ApiError> {
        let self_link = format!(
            "{}projects/{}/zones/{}/instances/{}/serialPort",
            self.base, key.0, key.1, key.2
        );
        let Some(instance) = self.instances.get_mut(key) else {
            return Err(ApiError::not_found(&format!(
                "projects/{}/zones/{}/instances/{}",
                key.0, key.1, key.2
            )));
        };
        if let Some(line) = instance.boot_log.pop_front() {
            instance.serial.extend_from_slice(line.as_bytes());
        }
        advance_boot(instance);
        let port = call.query("port").and_then(|p| p.parse::<i64>().ok()).unwrap_or(1);
        let empty = Vec::new();
        let output = if port == 1 { &instance.serial } else { &empty };
        let total = output.len() as i64;
        let requested = call.query("start").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        // A negative start counts back from the end; past the end there is nothing yet.
        let start = if requested < 0 {
            (total + requested).max(0)
        } else {
            requested.min(total)
        };
        let contents = String::from_utf8_lossy(&output[start as usize..]).into_owned();
        Ok(json!({
            "kind": "compute#serialPortOutput",
            "contents": contents,
            "start": start.to_string(),
            "next": total.to_string(),
            "selfLink": self_link,
        }))
    }

    fn instance_resource(&self, key: &InstanceKey) -> Result<&Value, ApiError> {
        self.instances
            .get(key)
            .map(|instance| &instance.resource)
            .ok_or_else(|| ApiError::not_found(&format!("projects/{}/zones/{}/instances/{}", key.0, key.1, key.2)))
    }

    fn instance_target<'a>(&self, key: &'a InstanceKey) -> Target<'a> {
        let resource = self.instances.get(key).map(|i| &i.resource);
        Target {
            project: &key.0,
            zone: Some(&key.1),
            link: resource
                .and_then(|r| r["selfLink"].as_str())
                .unwrap_or_default()
                .to_string(),
            id: resource
                .and_then(|r| r["id"].as_str())
                .and_then(|id| id.parse().ok())
                .unwrap_or_default(),
        }
    }

    /// GCE's label rules: at most 64; keys start with a lowercase letter; keys and values of at
    /// most 63 lowercase letters, digits, `_` and `-`.
    fn check_labels(&self, field: &str, labels: &Value) -> Result<(), ApiError> {
        let Some(labels) = labels.as_object() else {
            return Ok(());
        };
        if labels.len() > 64 {
            return Err(ApiError::invalid(
                field,
                &json!(labels.len()),
                "At most 64 labels are allowed.",
            ));
        }
        for (key, value) in labels {
            let starts_with_letter = key
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() && !c.is_uppercase());
            if !starts_with_letter || !is_label_text(key) {
                return Err(ApiError::invalid(
                    &format!("{field}.{key}"),
                    &json!(key),
                    "Label keys start with a lowercase letter and hold at most 63 lowercase letters, digits, '_' and '-'.",
                ));
            }
            if !value.as_str().is_some_and(is_label_text) {
                return Err(ApiError::invalid(
                    &format!("{field}.{key}"),
                    value,
                    "Label values hold at most 63 lowercase letters, digits, '_' and '-'.",
                ));
            }
        }
        Ok(())
    }

    // ---- operations ----

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        // Large, like GCE's, and still exact in a JSON number.
        3_141_592_653_589_793_000 + self.next_id
    }

    fn new_operation(
        &mut self,
        method_id: &str,
        operation_type: &str,
        target: Target<'_>,
        effect: Effect,
        failure: Option<Failure>,
    ) -> Value {
        let injected = self
            .failing_operations
            .get_mut(method_id)
            .and_then(VecDeque::pop_front)
            .map(|message| Failure {
                code: "INTERNAL_ERROR".into(),
                message,
                http_status: 500,
            });
        let id = self.new_id();
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let name = format!("operation-{millis}-{:012x}", id % (1 << 48));
        let scope = match target.zone {
            Some(zone) => format!("projects/{}/zones/{zone}", target.project),
            None => format!("projects/{}/global", target.project),
        };
        let mut resource = json!({
            "kind": "compute#operation",
            "id": id.to_string(),
            "name": name,
            "operationType": operation_type,
            "targetLink": target.link,
            "targetId": target.id.to_string(),
            "status": "PENDING",
            "user": format!("moby-test@{}.iam.gserviceaccount.com", target.project),
            "progress": 0,
            "insertTime": timestamp(),
            "selfLink": format!("{}{scope}/operations/{name}", self.base),
        });
        if target.zone.is_some() {
            resource["zone"] = json!(format!("{}{scope}", self.base));
        }
        let key = (scope, name);
        self.operations.insert(
            key.clone(),
            Operation {
                resource,
                polls: 0,
                effect,
                failure: injected.or(failure),
            },
        );
        self.last_operation = Some(key.clone());
        if self.polls_until_done == 0 {
            self.finish(&key);
        }
        self.operations
            .get(&key)
            .map(|o| o.resource.clone())
            .unwrap_or_default()
    }

    /// `get` or `wait`: one poll more; the operation ends DONE at the configured count.
    fn poll_operation(&mut self, key: OperationKey) -> Result<Value, ApiError> {
        let polls_until_done = self.polls_until_done;
        let Some(operation) = self.operations.get_mut(&key) else {
            return Err(ApiError::not_found(&format!("{}/operations/{}", key.0, key.1)));
        };
        let mut ends_now = false;
        if operation.resource["status"] != "DONE" {
            operation.polls += 1;
            ends_now = operation.polls >= polls_until_done;
            if !ends_now {
                operation.resource["status"] = json!("RUNNING");
                operation.resource["progress"] = json!(50);
                if operation.resource.get("startTime").is_none() {
                    operation.resource["startTime"] = json!(timestamp());
                }
            }
        }
        if ends_now {
            self.finish(&key);
        }
        Ok(self
            .operations
            .get(&key)
            .map(|o| o.resource.clone())
            .unwrap_or_default())
    }

    /// Ends an operation: applies its effect, or undoes its start and records its error.
    fn finish(&mut self, key: &OperationKey) {
        let Some(operation) = self.operations.get_mut(key) else {
            return;
        };
        let now = timestamp();
        let resource = &mut operation.resource;
        resource["status"] = json!("DONE");
        resource["progress"] = json!(100);
        if resource.get("startTime").is_none() {
            resource["startTime"] = json!(now);
        }
        resource["endTime"] = json!(now);
        if let Some(failure) = &operation.failure {
            resource["error"] = json!({ "errors": [{ "code": failure.code, "message": failure.message }] });
            resource["httpErrorStatusCode"] = json!(failure.http_status);
            resource["httpErrorMessage"] = json!(super::http::reason_phrase(failure.http_status).to_uppercase());
        }
        let failed = operation.failure.is_some();
        let effect = operation.effect.clone();
        match effect {
            Effect::NoChange => {}
            Effect::ImageReady(key) if failed => {
                self.images.remove(&key);
            }
            Effect::ImageReady(key) => {
                if let Some(image) = self.images.get_mut(&key) {
                    image["status"] = json!("READY");
                }
            }
            Effect::ImageDeleted(key) if failed => {
                if let Some(image) = self.images.get_mut(&key) {
                    image["status"] = json!("READY");
                }
            }
            Effect::ImageDeleted(key) => {
                self.images.remove(&key);
            }
            Effect::InstanceCreated(key) if failed => {
                self.instances.remove(&key);
            }
            Effect::InstanceCreated(_) => {}
            Effect::InstanceDeleted(key) if failed => {
                if let Some(instance) = self.instances.get_mut(&key) {
                    instance.resource["status"] = json!("RUNNING");
                }
            }
            Effect::InstanceDeleted(key) => {
                self.instances.remove(&key);
            }
            Effect::LabelsSet(..) | Effect::MetadataSet(..) if failed => {}
            Effect::LabelsSet(key, labels) => {
                if let Some(instance) = self.instances.get_mut(&key) {
                    let labels = Value::Object(labels);
                    instance.resource["labelFingerprint"] = json!(fingerprint(&labels));
                    if let Some(resource) = instance.resource.as_object_mut() {
                        let empty = labels.as_object().is_some_and(Map::is_empty);
                        set_or_remove(resource, "labels", (!empty).then_some(labels));
                    }
                }
            }
            Effect::MetadataSet(key, items) => {
                if let Some(instance) = self.instances.get_mut(&key) {
                    instance.resource["metadata"] = metadata_json(&items);
                }
            }
        }
    }
}

/// What an operation is about.
struct Target<'a> {
    project: &'a str,
    zone: Option<&'a str>,
    link: String,
    id: u64,
}

/// At most 63 characters, each a lowercase or caseless letter, a digit, `_` or `-` (GCE's
/// `\p{Ll}\p{Lo}\p{N}_-`; a Unicode regex would take long to compile in a debug build).
fn is_label_text(text: &str) -> bool {
    text.chars().count() <= 63
        && text
            .chars()
            .all(|c| (c.is_alphabetic() && !c.is_uppercase()) || c.is_numeric() || c == '_' || c == '-')
}

/// Moves a booting instance one status on (PROVISIONING → STAGING → RUNNING).
fn advance_boot(instance: &mut Instance) {
    let status = instance.resource["status"].as_str().unwrap_or_default();
    if let Some(step) = BOOT_STATUSES.iter().position(|s| *s == status) {
        if let Some(next) = BOOT_STATUSES.get(step + 1) {
            instance.resource["status"] = json!(next);
        }
    }
}

/// The fake boot log: a few lines, one with the `user-data` metadata item when there is one.
fn boot_log(instance: &Value, items: &[Value]) -> VecDeque<String> {
    let name = instance["name"].as_str().unwrap_or_default();
    let short = |link: &Value| {
        link.as_str()
            .and_then(|l| l.rsplit('/').next())
            .unwrap_or_default()
            .to_string()
    };
    let image = instance["disks"][0]["source"].clone();
    let mut lines = VecDeque::from([
        format!(
            "fake-gce: {name}: powering on a {}\r\n",
            short(&instance["machineType"])
        ),
        format!("fake-gce: {name}: booting from disk {}\r\n", short(&image)),
    ]);
    if let Some(user_data) = items.iter().find(|item| item["key"] == "user-data") {
        lines.push_back(format!(
            "fake-gce: user-data: {}\r\n",
            user_data["value"].as_str().unwrap_or_default()
        ));
    }
    lines.push_back(format!("fake-gce: {name}: boot finished\r\n"));
    lines
}

/// Metadata keys must be unique (the schema checks each key's pattern).
fn check_metadata_items(field: &str, items: &[Value]) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for (i, item) in items.iter().enumerate() {
        let key = item["key"].as_str().unwrap_or_default();
        if !seen.insert(key) {
            return Err(ApiError::invalid(
                &format!("{field}[{i}].key"),
                &json!(key),
                "Duplicate keys are not allowed.",
            ));
        }
        total += key.len() + item["value"].as_str().map_or(0, str::len);
    }
    if total > 512 * 1024 {
        return Err(ApiError::invalid(
            field,
            &json!(total),
            "Metadata is limited to 512 KiB in total.",
        ));
    }
    Ok(())
}

fn metadata_json(items: &[Value]) -> Value {
    let mut metadata = json!({ "kind": "compute#metadata", "fingerprint": fingerprint(&json!(items)) });
    if !items.is_empty() {
        metadata["items"] = json!(items);
    }
    metadata
}

/// GCE-like fingerprint: base64 of 8 bytes of a hash of the content.
fn fingerprint(value: &Value) -> String {
    STANDARD.encode(&Sha256::digest(value.to_string().as_bytes())[..8])
}

fn set_or_remove(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(value) => {
            object.insert(key.to_string(), value);
        }
        None => {
            object.remove(key);
        }
    }
}

/// Now as RFC 3339 with milliseconds, as GCE writes timestamps.
pub fn timestamp() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}-00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}
