//! The subset of the OCI runtime-spec (v1.2.1) that LinuxKit writes into `config.json`, plus the
//! `runtime.json` structure that LinuxKit's init reads.
//!
//! Field order is the Go struct order (Go's encoder writes fields in declaration order) and every
//! `skip_serializing_if` mirrors a Go `omitempty`: nil/empty slices and maps, empty strings, `false`
//! and nil pointers are left out, while a present `Option` (a non-nil Go pointer) is written even
//! when it holds zero.

use std::collections::BTreeMap;

use serde::Serialize;

/// `specs.Version` of the runtime-spec release vendored by LinuxKit v1.7.1.
pub const OCI_VERSION: &str = "1.2.1";

/// A runtime-spec `Spec`: the whole `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// Always [`OCI_VERSION`].
    #[serde(rename = "ociVersion")]
    pub version: String,
    /// The container process.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// Container host name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Mounts, sorted by destination.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<RuntimeMount>,
    /// Free-form annotations (sorted by key, as Go sorts map keys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Linux-specific settings.
    pub linux: Linux,
}

/// A runtime-spec `Process`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    /// User and groups the process runs as.
    pub user: User,
    /// Command line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment, `KEY=value` strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capability sets; LinuxKit always writes the object, even when every set is empty.
    pub capabilities: Capabilities,
    /// Resource limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    /// `no_new_privs`.
    #[serde(rename = "noNewPrivileges", skip_serializing_if = "is_false")]
    pub no_new_privileges: bool,
    /// OOM score adjustment; written whenever set, even to 0.
    #[serde(rename = "oomScoreAdj", skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
}

/// A runtime-spec `User`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary group ids.
    #[serde(rename = "additionalGids", skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// A runtime-spec `LinuxCapabilities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounding: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

/// A runtime-spec `POSIXRlimit` (note: `hard` before `soft`, as in the Go struct).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// `RLIMIT_*` name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// A runtime-spec `Root`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Root {
    /// Always `rootfs`, relative to the bundle.
    pub path: String,
    /// Read-only root filesystem.
    #[serde(skip_serializing_if = "is_false")]
    pub readonly: bool,
}

/// A runtime-spec `Mount`, as written both in `config.json` and in `runtime.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeMount {
    /// Mount point.
    pub destination: String,
    /// Filesystem type.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Device, path or pseudo-filesystem name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Mount options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Id-mapped mount: user ids.
    #[serde(rename = "uidMappings", skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    /// Id-mapped mount: group ids.
    #[serde(rename = "gidMappings", skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
}

/// A runtime-spec `LinuxIDMapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

/// A runtime-spec `Linux`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Linux {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Always written (LinuxKit always sets the pointer), `{}` when empty.
    pub resources: Resources,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroups_path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rootfs_propagation: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
}

/// A runtime-spec `LinuxNamespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// `network`, `ipc`, `uts`, `pid`, `user` or `mount`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Join the namespace at this path instead of creating one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// A runtime-spec `LinuxDevice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    /// Permission bits, written as a decimal number (Go's `os.FileMode`).
    #[serde(rename = "fileMode")]
    pub file_mode: u32,
}

/// A runtime-spec `LinuxResources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct Resources {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceCgroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(rename = "blockIO", skip_serializing_if = "Option::is_none")]
    pub block_io: Option<BlockIo>,
    #[serde(rename = "hugepageLimits", skip_serializing_if = "Vec::is_empty")]
    pub hugepage_limits: Vec<HugepageLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

/// A runtime-spec `LinuxDeviceCgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct DeviceCgroup {
    pub allow: bool,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access: String,
}

/// A runtime-spec `LinuxMemory`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP", skip_serializing_if = "Option::is_none")]
    pub kernel_tcp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller", skip_serializing_if = "Option::is_none")]
    pub disable_oom_killer: Option<bool>,
}

/// A runtime-spec `LinuxCPU`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Cpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_period: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpus: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mems: String,
}

/// A runtime-spec `LinuxPids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    /// Maximum number of tasks.
    pub limit: i64,
}

/// A runtime-spec `LinuxBlockIO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct BlockIo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(rename = "throttleReadIOPSDevice", skip_serializing_if = "Vec::is_empty")]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(rename = "throttleWriteIOPSDevice", skip_serializing_if = "Vec::is_empty")]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

/// A runtime-spec `LinuxWeightDevice` (the embedded `LinuxBlockIODevice` fields come first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
}

/// A runtime-spec `LinuxThrottleDevice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

/// A runtime-spec `LinuxHugepageLimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HugepageLimit {
    /// Page size in the runtime-spec text form, e.g. `2MB`.
    #[serde(rename = "pageSize")]
    pub page_size: String,
    /// Limit in bytes.
    pub limit: u64,
}

/// A runtime-spec `LinuxNetwork`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct Network {
    #[serde(rename = "classID", skip_serializing_if = "Option::is_none")]
    pub class_id: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<InterfacePriority>,
}

/// A runtime-spec `LinuxInterfacePriority`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct InterfacePriority {
    pub name: String,
    pub priority: u32,
}

/// `runtime.json`: what LinuxKit's init does around a container. Every member is always written,
/// as LinuxKit fills each one in (empty lists as `[]`, unset strings as `""`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeConfig {
    /// Cgroups to create.
    pub cgroups: Vec<String>,
    /// Mounts to make before starting the container (the rootfs mounts first, once marshalled).
    pub mounts: Vec<RuntimeMount>,
    /// Directories to create.
    pub mkdir: Vec<String>,
    /// Network interfaces to create or move.
    pub interfaces: Vec<RuntimeInterface>,
    /// Where to bind-mount the container's namespaces.
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNamespaces,
    /// containerd namespace.
    pub namespace: String,
}

/// The `bindNS` object of `runtime.json`; every key is always written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct BindNamespaces {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

/// One entry of `runtime.json` `interfaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeInterface {
    /// Interface name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Kind of interface to create (`veth`, `dummy`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub add: String,
    /// Peer name of a veth pair.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Create in the root namespace, then move it; always written.
    #[serde(rename = "createInRoot")]
    pub create_in_root: bool,
}

/// For `skip_serializing_if`: Go's `omitempty` on a `bool`.
fn is_false(value: &bool) -> bool {
    !*value
}
