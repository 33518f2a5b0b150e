//! The instance properties this plugin takes (`docs/plugin.md`), checked strictly: every problem
//! names the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use vmm::gcp::{GcpError, Location, Machine};
use vmm::machine::{DiskSpec, PublishedPort};
use vmm::network::Attachment;
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
    #[serde(rename = "Network")]
    network: Option<NetworkWire>,
    #[serde(rename = "NamePrefix")]
    name_prefix: Option<String>,
}

/// `Network`, as sent: the private network a qemu instance joins.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NetworkWire {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Subnet")]
    subnet: Option<String>,
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
    /// The private network the instance joins (qemu only): its name and, when given, its
    /// subnet; the address comes from the logical ID ([`Properties::attachment`]).
    pub network: Option<Attachment>,
    /// What the names of local instances start with (`PREFIX-10-77-0-10`, `PREFIX-` and 12
    /// hex digits); `None`: today's names (the logical ID itself, or `moby-` and 12 hex digits).
    pub name_prefix: Option<String>,
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
        let network = match wire.network.take() {
            None => None,
            Some(_) if backend != BackendKind::Qemu => {
                return Err(err(format!(
                    "Properties.Network: only qemu instances join private networks for now (the backend is {backend})"
                )))
            }
            Some(network) => Some(network_attachment(network)?),
        };
        let name_prefix = match wire.name_prefix.take() {
            Some(prefix) if !is_name_prefix(&prefix) => {
                return Err(err(format!(
                    "Properties.NamePrefix: {prefix:?} cannot start instance names: use up to 47 lower-case \
                     letters, digits and `-`, starting with a letter"
                )))
            }
            prefix => prefix,
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
            network,
            name_prefix,
        })
    }

    /// The network attachment of an instance with these properties and `logical_id`: an IPv4
    /// logical ID is its static address there (as InfraKit's hyperkit plugin did), which must be a
    /// member address of the subnet when one is given. `None` without `Network`.
    pub fn attachment(&self, logical_id: Option<&str>) -> Result<Option<Attachment>, PropertiesError> {
        let Some(network) = &self.network else {
            return Ok(None);
        };
        let address = logical_id.and_then(|id| id.parse::<std::net::Ipv4Addr>().ok());
        if let (Some(ip), Some(subnet)) = (address, network.subnet) {
            if !subnet.is_member_address(ip) {
                return Err(PropertiesError(format!(
                    "Spec.LogicalID: {ip} cannot be a member's address in Properties.Network.Subnet {subnet}: \
                     give an address inside it other than {}, {} and {}",
                    subnet.base(),
                    subnet.gateway(),
                    subnet.broadcast()
                )));
            }
        }
        Ok(Some(Attachment {
            address,
            ..network.clone()
        }))
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

/// `Network` checked: a name (it is the members' DNS domain) and an optional subnet.
fn network_attachment(wire: NetworkWire) -> Result<Attachment, PropertiesError> {
    let err = |text: String| PropertiesError(text);
    let name = match wire.name {
        Some(name) if !name.is_empty() => name,
        _ => return Err(err("Properties.Network.Name: missing: give the network's name".into())),
    };
    let mut attachment = Attachment::named(name).map_err(|e| err(format!("Properties.Network.Name: {e}")))?;
    attachment.subnet = wire
        .subnet
        .map(|cidr| cidr.parse().map_err(|e| err(format!("Properties.Network.Subnet: {e}"))))
        .transpose()?;
    Ok(attachment)
}

/// Whether `prefix` followed by `-` and a dashed IPv4 address is a DNS label (a member's host
/// name on its network is its instance name): lower-case letters, digits and `-`, starting with
/// a letter, at most 47 characters.
fn is_name_prefix(prefix: &str) -> bool {
    prefix.len() <= 47
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && !prefix.ends_with('-')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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
    if wire.networking.is_some() || wire.network.is_some() {
        let field = if wire.networking.is_some() {
            "Networking"
        } else {
            "Network"
        };
        return refuse(field, "gcp instances join a VPC network: set GCP.Network");
    }
    if wire.name_prefix.is_some() {
        return refuse("NamePrefix", "gcp instance names start with GCP.NamePrefix");
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
    fn a_network_is_qemu_s_and_an_ipv4_logical_id_is_the_static_address() {
        let properties = Properties::parse(Some(json!({
            "Moby": "web.yml",
            "network": {"name": "lab", "subnet": "10.77.0.0/24"},
            "NamePrefix": "demo-nodes",
        })))
        .unwrap();
        assert_eq!(properties.name_prefix.as_deref(), Some("demo-nodes"));
        let static_ip = properties.attachment(Some("10.77.0.10")).unwrap().unwrap();
        assert_eq!(static_ip.to_string(), "lab,subnet=10.77.0.0/24,ip=10.77.0.10");
        let named = properties.attachment(Some("db")).unwrap().unwrap();
        assert_eq!(named.to_string(), "lab,subnet=10.77.0.0/24", "a name is no address");
        assert_eq!(properties.attachment(None).unwrap(), Some(named));
        for outside in ["10.78.0.10", "10.77.0.1", "10.77.0.255", "10.77.0.0"] {
            let e = properties.attachment(Some(outside)).unwrap_err().0;
            assert!(
                e.starts_with(&format!(
                    "Spec.LogicalID: {outside} cannot be a member's address in Properties.Network.Subnet 10.77.0.0/24"
                )),
                "{e}"
            );
        }
        // Without a subnet, the network's (or the one vmm picks) decides.
        let any = Properties::parse(Some(json!({"Moby": "web.yml", "Network": {"Name": "lab"}}))).unwrap();
        assert_eq!(
            any.attachment(Some("192.168.9.9")).unwrap().unwrap().to_string(),
            "lab,ip=192.168.9.9"
        );
        let none = Properties::parse(Some(json!({"Moby": "web.yml"}))).unwrap();
        assert_eq!(
            (none.attachment(Some("10.0.0.1")).unwrap(), none.name_prefix),
            (None, None)
        );
    }

    #[test]
    fn network_and_name_prefix_errors_name_the_field() {
        for (value, starts) in [
            (json!({"Network": {}}), "Properties.Network.Name: missing"),
            (
                json!({"Network": {"Name": "Lab"}}),
                "Properties.Network.Name: invalid network name \"Lab\"",
            ),
            (
                json!({"Network": {"Name": "lab", "Subnet": "10.0.0.0/33"}}),
                "Properties.Network.Subnet: 10.0.0.0/33: the prefix length must be 8 to 30",
            ),
            (
                json!({"Network": {"Name": "lab", "Mtu": 9000}}),
                "Properties.Network: unknown field `Mtu`",
            ),
            (json!({"Network": "lab"}), "Properties.Network: invalid type"),
            (
                json!({"Network": {"Name": "lab"}, "Backend": "hyperkit"}),
                "Properties.Network: only qemu instances join private networks for now (the backend is hyperkit)",
            ),
            (
                json!({"Network": {"Name": "lab"}, "Backend": "gcp"}),
                "Properties.Network: gcp instances join a VPC network: set GCP.Network",
            ),
            (
                json!({"NamePrefix": "web", "Backend": "gcp"}),
                "Properties.NamePrefix: gcp instance names start with GCP.NamePrefix",
            ),
            (
                json!({"NamePrefix": "Web"}),
                "Properties.NamePrefix: \"Web\" cannot start instance names",
            ),
            (json!({"NamePrefix": "web-"}), "Properties.NamePrefix: \"web-\""),
            (json!({"NamePrefix": "w".repeat(48)}), "Properties.NamePrefix: "),
        ] {
            let mut value = value;
            value["Moby"] = json!("web.yml");
            let message = error(value.clone());
            assert!(message.starts_with(starts), "{value}: {message}");
        }
        assert!(Properties::parse(Some(json!({"Moby": "x", "NamePrefix": "w".repeat(47)}))).is_ok());
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
