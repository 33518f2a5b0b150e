//! The instance properties this plugin takes (`docs/plugin.md`), checked strictly: every problem
//! names the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use vmm::gcp::{GcpError, Location, Machine};
use vmm::machine::{DiskSpec, PublishedPort};
use vmm::BackendKind;

/// The properties as sent: every field optional, unknown ones refused.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Wire {
    #[serde(rename = "Moby")]
    moby: Option<Value>,
    #[serde(rename = "Backend")]
    backend: Option<String>,
    #[serde(rename = "CPUs")]
    cpus: Option<u32>,
    #[serde(rename = "Memory")]
    memory: Option<u64>,
    #[serde(rename = "Disks")]
    disks: Option<Vec<String>>,
    #[serde(rename = "Networking")]
    networking: Option<String>,
    #[serde(rename = "Publish")]
    publish: Option<Vec<String>>,
    #[serde(rename = "Accel")]
    accel: Option<String>,
    #[serde(rename = "Format")]
    format: Option<String>,
    #[serde(rename = "GCP")]
    gcp: Option<GcpWire>,
}

/// `GCP`, as sent: where and how `gcp` instances run.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GcpWire {
    #[serde(rename = "Project")]
    project: Option<String>,
    #[serde(rename = "Zone")]
    zone: Option<String>,
    #[serde(rename = "Bucket")]
    bucket: Option<String>,
    #[serde(rename = "MachineType")]
    machine_type: Option<String>,
    #[serde(rename = "DiskSizeGb")]
    disk_size_gb: Option<u64>,
    #[serde(rename = "Network")]
    network: Option<String>,
    #[serde(rename = "Preemptible")]
    preemptible: Option<bool>,
    #[serde(rename = "NestedVirt")]
    nested_virt: Option<bool>,
    #[serde(rename = "NamePrefix")]
    name_prefix: Option<String>,
}

/// The prefix of `gcp` instance names when `GCP.NamePrefix` is not given.
pub const DEFAULT_NAME_PREFIX: &str = "moby";

/// Where and how a `gcp` instance runs, each setting given or taken from the plugin's
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpProperties {
    /// The project and zone.
    pub location: Location,
    /// The bucket images are uploaded to.
    pub bucket: String,
    /// How instances are made.
    pub machine: Machine,
    /// What instance names start with (`PREFIX-10-0-0-5`, `PREFIX-` and 12 hex digits).
    pub name_prefix: String,
}

/// Where the LinuxKit spec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    /// YAML (or JSON, which is YAML) text given inline.
    Inline(String),
    /// A spec file, relative to the plugin's base directory unless absolute.
    File(PathBuf),
}

/// The image formats the plugin builds and boots: those `moby run` boots (every format but
/// `tar`, `docker` and `tar-kernel-initrd`).
fn bootable_formats() -> impl Iterator<Item = builder::Format> {
    builder::Format::SUPPORTED
        .into_iter()
        .filter(|format| format.boot_path(std::path::Path::new(""), "x").is_some())
}

/// Checked properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// The LinuxKit spec.
    pub spec: SpecSource,
    /// The backend.
    pub backend: BackendKind,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disks, LinuxKit's way (`size=1G`, `file=PATH,size=1G`).
    pub disks: Vec<DiskSpec>,
    /// The backend's networking mode.
    pub networking: Option<String>,
    /// Published ports.
    pub publish: Vec<PublishedPort>,
    /// The accelerator (qemu).
    pub accel: Option<String>,
    /// The output format built and booted.
    pub format: builder::Format,
    /// Where and how the instance runs, for the `gcp` backend (and only for it).
    pub gcp: Option<GcpProperties>,
}

/// Properties that are not right; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PropertiesError(pub String);

impl Properties {
    /// Checks `value` (the `Properties` of a spec), decoded as the RPC layer decodes params (Go's
    /// rules: field names case-insensitive, null is absent).
    pub fn parse(value: Option<Value>) -> Result<Properties, PropertiesError> {
        let err = |text: String| PropertiesError(text);
        let value = value.ok_or_else(|| err("Properties: missing: give at least {\"Moby\": SPEC}".into()))?;
        let mut wire: Wire = crate::rpc::decode(value).map_err(|e| err(e.under("Properties")))?;
        let spec = match wire.moby.take() {
            None | Some(Value::Null) => {
                return Err(err(
                    "Properties.Moby: missing: give the LinuxKit spec (an object, YAML text, or a file path)".into(),
                ))
            }
            Some(Value::String(text)) if text.contains('\n') => SpecSource::Inline(text),
            Some(Value::String(path)) if !path.trim().is_empty() => SpecSource::File(PathBuf::from(path)),
            Some(Value::Object(map)) => SpecSource::Inline(Value::Object(map).to_string()),
            Some(other) => {
                return Err(err(format!(
                    "Properties.Moby: {other} is not a spec: give an object, YAML text, or a file path"
                )))
            }
        };
        let backend = match wire.backend.as_deref() {
            None => BackendKind::Qemu,
            Some(name) => name
                .parse()
                .map_err(|e: String| err(format!("Properties.Backend: {e}")))?,
        };
        let gcp = match (backend, wire.gcp.take()) {
            (BackendKind::Gcp, given) => {
                refuse_local_settings(&wire)?;
                Some(GcpProperties::resolve(given.unwrap_or_default())?)
            }
            (_, None) => None,
            (other, Some(_)) => {
                return Err(err(format!(
                    "Properties.GCP: only the gcp backend takes GCP settings (the backend is {other})"
                )))
            }
        };
        let cpus = wire.cpus.unwrap_or(1);
        if cpus == 0 {
            return Err(err("Properties.CPUs: 0: give at least 1".into()));
        }
        let memory_mib = wire.memory.unwrap_or(1024);
        if memory_mib < 64 {
            return Err(err(format!(
                "Properties.Memory: {memory_mib} MiB is too little: give at least 64"
            )));
        }
        let disks = wire
            .disks
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.parse::<DiskSpec>()
                    .map_err(|e| err(format!("Properties.Disks[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let publish = wire
            .publish
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<PublishedPort>()
                    .map_err(|e| err(format!("Properties.Publish[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let format = match wire.format {
            None if backend == BackendKind::Gcp => builder::Format::Gcp,
            None => builder::Format::KernelInitrd,
            Some(name) if backend == BackendKind::Gcp && name != builder::Format::Gcp.name() => {
                return Err(err(format!(
                    "Properties.Format: {name:?}: the gcp backend boots the gcp format only (leave Format out)"
                )))
            }
            Some(name) => bootable_formats()
                .find(|bootable| bootable.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = bootable_formats().map(builder::Format::name).collect();
                    err(format!(
                        "Properties.Format: {name:?} is not a format the plugin builds and boots: use one of {}",
                        names.join(", ")
                    ))
                })?,
        };
        Ok(Properties {
            spec,
            backend,
            cpus,
            memory_mib,
            disks,
            networking: wire.networking,
            publish,
            accel: wire.accel,
            format,
            gcp,
        })
    }

    /// The spec's text and the name errors give it: inline text is `Properties.Moby`, a file its
    /// path (relative ones under `base_dir`).
    pub fn spec_text(&self, base_dir: &Path) -> Result<(String, String), PropertiesError> {
        match &self.spec {
            SpecSource::Inline(text) => Ok(("Properties.Moby".to_string(), text.clone())),
            SpecSource::File(path) => {
                let path = base_dir.join(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| PropertiesError(format!("Properties.Moby: cannot read {}: {e}", path.display())))?;
                Ok((path.display().to_string(), text))
            }
        }
    }
}

/// Refuses the settings only a VM on this host takes, naming the field and what `gcp` takes
/// instead.
fn refuse_local_settings(wire: &Wire) -> Result<(), PropertiesError> {
    let refuse = |field: &str, why: &str| Err(PropertiesError(format!("Properties.{field}: {why}")));
    if wire.cpus.is_some() || wire.memory.is_some() {
        let field = if wire.cpus.is_some() { "CPUs" } else { "Memory" };
        return refuse(
            field,
            "gcp instances get their CPUs and memory from their machine type: set GCP.MachineType",
        );
    }
    if wire.disks.as_ref().is_some_and(|d| !d.is_empty()) {
        return refuse(
            "Disks",
            "gcp instances have their boot disk only: size it with GCP.DiskSizeGb",
        );
    }
    if wire.publish.as_ref().is_some_and(|p| !p.is_empty()) {
        return refuse(
            "Publish",
            "gcp instances have addresses of their own: open their ports with firewall rules",
        );
    }
    if wire.accel.is_some() {
        return refuse(
            "Accel",
            "gcp instances have no accelerator to choose (see GCP.NestedVirt)",
        );
    }
    if wire.networking.is_some() {
        return refuse("Networking", "gcp instances join a VPC network: set GCP.Network");
    }
    Ok(())
}

impl GcpProperties {
    /// `given` checked, with the project, zone and bucket it leaves out taken from the
    /// environment (`CLOUDSDK_CORE_PROJECT`, `CLOUDSDK_COMPUTE_ZONE`, `CLOUDSDK_IMAGE_BUCKET`).
    fn resolve(given: GcpWire) -> Result<GcpProperties, PropertiesError> {
        let is_given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
        let location = Location::resolve(given.project.clone(), given.zone.clone()).map_err(|e| {
            // The zone's is the one error that names the zone; every other is the project's.
            let (field, variable, from_here) = match &e {
                GcpError::Invalid { what: "the zone", .. } => ("Zone", vmm::gcp::ZONE_ENV, is_given(&given.zone)),
                _ => ("Project", vmm::gcp::PROJECT_ENV, is_given(&given.project)),
            };
            setting_error(field, variable, from_here, &e)
        })?;
        let bucket = vmm::gcp::resolve_bucket(given.bucket.clone())
            .map_err(|e| setting_error("Bucket", vmm::gcp::BUCKET_ENV, is_given(&given.bucket), &e))?;
        let defaults = Machine::default();
        let machine_type = given.machine_type.unwrap_or(defaults.machine_type);
        vmm::gcp::check_name("the machine type", &machine_type)
            .map_err(|e| PropertiesError(format!("Properties.GCP.MachineType: {e}")))?;
        let network = given.network.unwrap_or(defaults.network);
        vmm::gcp::check_name("the network", &network)
            .map_err(|e| PropertiesError(format!("Properties.GCP.Network: {e}")))?;
        if given.disk_size_gb == Some(0) {
            return Err(PropertiesError(
                "Properties.GCP.DiskSizeGb: 0: give at least 1 (GiB), or leave it out for the image's size".into(),
            ));
        }
        let name_prefix = given.name_prefix.unwrap_or_else(|| DEFAULT_NAME_PREFIX.to_string());
        // The longest name made from it: the prefix and an IPv4 address.
        if !vmm::gcp::is_name(&format!("{name_prefix}-255-255-255-255")) {
            return Err(PropertiesError(format!(
                "Properties.GCP.NamePrefix: {name_prefix:?} cannot start instance names: use up to 47 \
                 lower-case letters, digits and `-`, starting with a letter"
            )));
        }
        Ok(GcpProperties {
            location,
            bucket,
            machine: Machine {
                machine_type,
                disk_size_gb: given.disk_size_gb,
                network,
                preemptible: given.preemptible.unwrap_or(false),
                nested_virt: given.nested_virt.unwrap_or(false),
                keep_after_run: false,
            },
            name_prefix,
        })
    }
}

/// A project, zone or bucket that is missing or not valid: the message names the field and the
/// variable that can give it.
fn setting_error(field: &str, variable: &str, from_here: bool, error: &GcpError) -> PropertiesError {
    PropertiesError(match error {
        GcpError::Missing { .. } => {
            format!("Properties.GCP.{field}: missing: give it, or set {variable} in the plugin's environment")
        }
        _ if from_here => format!("Properties.GCP.{field}: {error}"),
        _ => format!("Properties.GCP.{field} (from {variable}): {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// GCP settings that leave nothing to the environment.
    fn placed(extra: Value) -> Value {
        let mut gcp = json!({"Project": "proj-1", "Zone": "us-east1-b", "Bucket": "images-1"});
        if let (Some(gcp), Value::Object(extra)) = (gcp.as_object_mut(), extra) {
            gcp.extend(extra);
        }
        gcp
    }

    fn error(value: Value) -> String {
        Properties::parse(Some(value)).unwrap_err().0
    }

    #[test]
    fn gcp_settings_are_read_with_go_s_rules_and_defaults() {
        let properties = Properties::parse(Some(json!({
            "Moby": "web.yml",
            "backend": "gcp",
            "gcp": placed(json!({"machinetype": "e2-medium", "DiskSizeGb": 10, "Preemptible": true, "NamePrefix": "web"})),
        })))
        .unwrap();
        assert_eq!(properties.format, builder::Format::Gcp, "gcp boots its own format");
        let gcp = properties.gcp.unwrap();
        assert_eq!(
            gcp.location,
            Location {
                project: "proj-1".into(),
                zone: "us-east1-b".into()
            }
        );
        assert_eq!(gcp.bucket, "images-1");
        assert_eq!(gcp.name_prefix, "web");
        assert_eq!(
            gcp.machine,
            Machine {
                machine_type: "e2-medium".into(),
                disk_size_gb: Some(10),
                preemptible: true,
                ..Machine::default()
            }
        );
        let plain = Properties::parse(Some(
            json!({"Moby": "web.yml", "Backend": "gcp", "GCP": placed(json!({}))}),
        ));
        let plain = plain.unwrap().gcp.unwrap();
        assert_eq!(
            (plain.name_prefix.as_str(), plain.machine),
            (DEFAULT_NAME_PREFIX, Machine::default())
        );
    }

    #[test]
    fn gcp_errors_name_the_field() {
        let gcp = |extra: Value| json!({"Moby": "web.yml", "Backend": "gcp", "GCP": placed(extra)});
        for (value, starts) in [
            (
                gcp(json!({"Zone": "Europe"})),
                "Properties.GCP.Zone: the zone \"Europe\" is not valid",
            ),
            (
                gcp(json!({"Project": "Proj"})),
                "Properties.GCP.Project: the project \"Proj\"",
            ),
            (gcp(json!({"Bucket": "B"})), "Properties.GCP.Bucket: the bucket \"B\""),
            (gcp(json!({"MachineType": "big one"})), "Properties.GCP.MachineType: "),
            (gcp(json!({"Network": "Net"})), "Properties.GCP.Network: "),
            (gcp(json!({"DiskSizeGb": 0})), "Properties.GCP.DiskSizeGb: 0"),
            (
                gcp(json!({"DiskSizeGb": "ten"})),
                "Properties.GCP.DiskSizeGb: invalid type",
            ),
            (gcp(json!({"NamePrefix": "Web"})), "Properties.GCP.NamePrefix: \"Web\""),
            (
                gcp(json!({"NamePrefix": "w".repeat(48)})),
                "Properties.GCP.NamePrefix: ",
            ),
            (gcp(json!({"Colour": "red"})), "Properties.GCP: unknown field `Colour`"),
            (
                json!({"Moby": "web.yml", "Backend": "gcp", "GCP": placed(json!({})), "Format": "qcow2-bios"}),
                "Properties.Format: \"qcow2-bios\": the gcp backend boots the gcp format only",
            ),
            (
                json!({"Moby": "web.yml", "GCP": placed(json!({}))}),
                "Properties.GCP: only the gcp backend takes GCP settings (the backend is qemu)",
            ),
        ] {
            let message = error(value.clone());
            assert!(message.starts_with(starts), "{value}: {message}");
        }
        // Settings only a VM on this host takes are refused before anything is resolved.
        for (field, value) in [
            ("Disks", json!(["size=1G"])),
            ("Publish", json!(["80:80"])),
            ("Accel", json!("kvm")),
            ("Networking", json!("user")),
            ("CPUs", json!(2)),
            ("Memory", json!(2048)),
        ] {
            let message = error(json!({"Moby": "web.yml", "Backend": "gcp", field: value}));
            assert!(message.starts_with(&format!("Properties.{field}: ")), "{message}");
        }
    }

    #[test]
    fn a_missing_setting_names_the_field_and_the_variable() {
        let e = setting_error(
            "Bucket",
            vmm::gcp::BUCKET_ENV,
            false,
            &GcpError::Missing {
                what: "bucket",
                variable: vmm::gcp::BUCKET_ENV,
            },
        );
        assert_eq!(
            e.0,
            "Properties.GCP.Bucket: missing: give it, or set CLOUDSDK_IMAGE_BUCKET in the plugin's environment"
        );
        let invalid = vmm::gcp::resolve_bucket(Some("B".into())).unwrap_err();
        let e = setting_error("Bucket", vmm::gcp::BUCKET_ENV, false, &invalid);
        assert!(
            e.0.starts_with("Properties.GCP.Bucket (from CLOUDSDK_IMAGE_BUCKET): the bucket"),
            "{e}"
        );
    }
}
