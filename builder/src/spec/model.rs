//! The typed model of a LinuxKit YAML spec, after parsing and validation.
//!
//! Field names and optionality mirror LinuxKit's `moby.Moby`/`moby.Image` so that the precedence rules
//! (yaml > image label > image config) can tell "unset" from "set to empty": every field that LinuxKit
//! keeps as a pointer is an `Option` here. Serde names are the YAML keys users write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole spec: one YAML file, or several merged in command-line order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Moby {
    /// The kernel image and how to take the kernel out of it.
    #[serde(default)]
    pub kernel: Kernel,
    /// Images unpacked at the root of the filesystem, in order.
    #[serde(default)]
    pub init: Vec<String>,
    /// Containers run one after another at boot.
    #[serde(default)]
    pub onboot: Vec<Image>,
    /// Containers run one after another at shutdown.
    #[serde(default)]
    pub onshutdown: Vec<Image>,
    /// Long-running containers, started concurrently.
    #[serde(default)]
    pub services: Vec<Image>,
    /// Files, directories and symlinks added to the root filesystem.
    #[serde(default)]
    pub files: Vec<File>,
    /// Named volumes that containers can bind or mount.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Accepted for compatibility and ignored, as LinuxKit ignores it.
    #[serde(default, skip_serializing)]
    pub trust: Option<Trust>,
}

/// The `kernel` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Image holding the kernel; empty means no kernel.
    #[serde(default)]
    pub image: String,
    /// Kernel command line, written to `boot/cmdline`.
    #[serde(default)]
    pub cmdline: String,
    /// Name of the kernel file in the image; empty means `kernel`.
    #[serde(default)]
    pub binary: String,
    /// Name of the modules tar in the image; `None` means `kernel.tar`, `"none"` means no tar.
    #[serde(default)]
    pub tar: Option<String>,
    /// Name of a microcode cpio in the image, prepended to the initrd.
    #[serde(default)]
    pub ucode: Option<String>,
}

/// A uid or gid: a number, `root`/`""` (0), or the name of a container (ids from 100).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IdRef {
    /// A numeric id.
    Num(i64),
    /// `root`, `""`, or a container name.
    Name(String),
}

/// One entry of the `files` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Path in the image; a leading `/` is dropped.
    #[serde(default)]
    pub path: String,
    /// Create a directory.
    #[serde(default)]
    pub directory: bool,
    /// Create a symlink to this target.
    #[serde(default)]
    pub symlink: String,
    /// Literal file contents.
    #[serde(default)]
    pub contents: Option<String>,
    /// Host file to copy, relative to [`HostPaths::base_dir`](super::HostPaths::base_dir) (`~/`
    /// stands for [`HostPaths::home_dir`](super::HostPaths::home_dir)).
    #[serde(default)]
    pub source: String,
    /// `yaml` or `json`: write the merged spec itself.
    #[serde(default)]
    pub metadata: String,
    /// Skip a missing `source` silently.
    #[serde(default)]
    pub optional: bool,
    /// Octal mode string; default 0600 (0700 for directories).
    #[serde(default)]
    pub mode: String,
    /// Owner.
    #[serde(default)]
    pub uid: Option<IdRef>,
    /// Group.
    #[serde(default)]
    pub gid: Option<IdRef>,
}

/// One entry of the `volumes` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name (`[a-z0-9_-]*`), referenced from binds and mounts.
    #[serde(default)]
    pub name: String,
    /// Image whose contents seed the volume; empty for a blank volume.
    #[serde(default)]
    pub image: String,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
    /// `filesystem` (default) or `oci`.
    #[serde(default)]
    pub format: String,
    /// Platforms kept in an `oci` volume; empty keeps all.
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// The `trust` section (ignored).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Image names.
    #[serde(default)]
    pub image: Vec<String>,
    /// Organisations.
    #[serde(default)]
    pub org: Vec<String>,
}

/// A container entry of `onboot`, `onshutdown` or `services`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Image {
    /// Container name; unique among services.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Everything else: the fields that an `org.mobyproject.config` label may also set.
    #[serde(flatten)]
    pub config: ImageConfig,
}

/// The per-container settings, valid both in YAML and in an image's `org.mobyproject.config` label.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ImageConfig {
    pub capabilities: Option<Vec<String>>,
    #[serde(rename = "capabilities.add")]
    pub capabilities_add: Option<Vec<String>>,
    pub ambient: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub binds: Option<Vec<String>>,
    #[serde(rename = "binds.add")]
    pub binds_add: Option<Vec<String>>,
    pub devices: Option<Vec<Device>>,
    pub tmpfs: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub net: String,
    #[serde(default)]
    pub pid: String,
    #[serde(default)]
    pub ipc: String,
    #[serde(default)]
    pub uts: String,
    #[serde(default)]
    pub userns: String,
    #[serde(default)]
    pub hostname: String,
    pub readonly: Option<bool>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub uid: Option<IdRef>,
    pub gid: Option<IdRef>,
    pub additional_gids: Option<Vec<IdRef>>,
    pub no_new_privileges: Option<bool>,
    pub oom_score_adj: Option<i64>,
    pub rootfs_propagation: Option<String>,
    pub cgroups_path: Option<String>,
    pub resources: Option<Resources>,
    pub sysctl: Option<BTreeMap<String, String>>,
    pub rlimits: Option<Vec<String>>,
    pub uid_mappings: Option<Vec<IdMapping>>,
    pub gid_mappings: Option<Vec<IdMapping>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub runtime: Option<Runtime>,
}

/// A mount, in the YAML's (runtime-spec, lower-case) spelling.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Mount {
    #[serde(default)]
    pub destination: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    pub options: Option<Vec<String>>,
    pub uidmappings: Option<Vec<IdMapping>>,
    pub gidmappings: Option<Vec<IdMapping>>,
}

/// A user-namespace id mapping.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct IdMapping {
    #[serde(default, rename = "containerID")]
    pub container_id: u32,
    #[serde(default, rename = "hostID")]
    pub host_id: u32,
    #[serde(default)]
    pub size: u32,
}

/// A device node exposed to a container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Device {
    #[serde(default)]
    pub path: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(default)]
    pub mode: String,
}

/// `resources`: the runtime-spec `LinuxResources` subset that LinuxKit's schema accepts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Resources {
    pub devices: Option<Vec<DeviceCgroup>>,
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub pids: Option<Pids>,
    pub blockio: Option<BlockIo>,
    pub hugepage_limits: Option<Vec<HugepageLimit>>,
    pub network: Option<Network>,
}

/// A device cgroup rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DeviceCgroup {
    #[serde(default)]
    pub allow: bool,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: Option<String>,
}

/// Memory limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Memory {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    pub swap: Option<i64>,
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: Option<i64>,
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    pub disable_oom_killer: Option<bool>,
}

/// CPU limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

/// Process-count limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Pids {
    #[serde(default)]
    pub limit: i64,
}

/// Block I/O weights and throttles.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    pub weight_device: Option<Vec<WeightDevice>>,
    pub throttle_read_bps_device: Option<Vec<ThrottleDevice>>,
    pub throttle_write_bps_device: Option<Vec<ThrottleDevice>>,
    #[serde(rename = "throttleReadIOPSDevice")]
    pub throttle_read_iops_device: Option<Vec<ThrottleDevice>>,
    #[serde(rename = "throttleWriteIOPSDevice")]
    pub throttle_write_iops_device: Option<Vec<ThrottleDevice>>,
}

/// A per-device block I/O weight.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct WeightDevice {
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

/// A per-device block I/O throttle.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ThrottleDevice {
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    #[serde(default)]
    pub rate: u64,
}

/// A hugepage limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct HugepageLimit {
    /// LinuxKit's schema says integer; the runtime spec wants a string such as `2MB`: both are accepted.
    pub page_size: Option<PageSize>,
    #[serde(default)]
    pub limit: u64,
}

/// A hugepage size, as a byte count or as the runtime spec's text form (`2MB`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PageSize {
    /// A size in bytes.
    Bytes(u64),
    /// A size such as `2MB`.
    Text(String),
}

/// Network class and priorities.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Network {
    #[serde(rename = "classID")]
    pub class_id: Option<u32>,
    pub priorities: Option<Vec<InterfacePriority>>,
}

/// A network interface priority.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct InterfacePriority {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub priority: u32,
}

/// The `runtime` section: what init does around a container, written to `runtime.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Runtime {
    pub cgroups: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub mkdir: Option<Vec<String>>,
    pub interfaces: Option<Vec<Interface>>,
    #[serde(default, rename = "bindNS")]
    pub bind_ns: BindNamespaces,
    pub namespace: Option<String>,
}

/// Paths where init bind-mounts a container's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BindNamespaces {
    pub cgroup: Option<String>,
    pub ipc: Option<String>,
    pub mnt: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub user: Option<String>,
    pub uts: Option<String>,
}

/// A network interface that init creates or moves into a container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Interface {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub add: String,
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub create_in_root: bool,
}
