//! The merge of YAML entry, image label and image config into `config.json` and `runtime.json`.
//!
//! Precedence is field by field: a field the YAML sets (even to an empty list) wins over the
//! label's, which wins over the image config's. The few string fields that cannot be "set to
//! empty" (`cwd`, `hostname`, the namespaces) fall back when empty instead.

use std::collections::{BTreeMap, BTreeSet};

use super::json::to_go_json;
use super::spec_types::{
    BindNamespaces, BlockIo, Capabilities, Cpu, Device, DeviceCgroup, HugepageLimit, IdMapping,
    InterfacePriority, Linux, Memory, Namespace, Network, Pids, Process, Resources, Rlimit, Root,
    RuntimeConfig, RuntimeInterface, RuntimeMount, Spec, ThrottleDevice, User, WeightDevice,
    OCI_VERSION,
};
use super::volumes::{options_are_readonly, Volumes};
use super::{Bundle, IdMap, ImageDefaults, OciConfigError, Origin};
use crate::spec::fields::{
    check_capability, expand_capabilities, parse_bind, parse_octal_mode, parse_rlimit, parse_tmpfs,
};
use crate::spec::model::{self, Image, ImageConfig, PageSize};

/// Generates a container's `config.json` and `runtime.json` settings from its YAML entry, its
/// image's `org.mobyproject.config` label (if any) and its image config.
pub fn generate(
    entry: &Image,
    label: Option<&ImageConfig>,
    defaults: &ImageDefaults,
    ids: &IdMap,
    volumes: &Volumes,
) -> Result<Bundle, OciConfigError> {
    let no_label = ImageConfig::default();
    let layers = Layers {
        yaml: &entry.config,
        label: label.unwrap_or(&no_label),
    };
    let spec = build_spec(&layers, defaults, ids, volumes)?;
    Ok(Bundle {
        config_json: to_go_json(&spec),
        runtime: runtime_config(layers.label.runtime.as_ref(), layers.yaml.runtime.as_ref()),
        readonly: spec.root.readonly,
    })
}

/// The two configuration layers, YAML over label.
struct Layers<'a> {
    yaml: &'a ImageConfig,
    label: &'a ImageConfig,
}

impl<'a> Layers<'a> {
    /// The YAML's value of a field if it sets it, else the label's, with where it came from.
    fn pick<T: ?Sized>(
        &self,
        field: impl Fn(&'a ImageConfig) -> Option<&'a T>,
    ) -> Option<(&'a T, Origin)> {
        field(self.yaml)
            .map(|v| (v, Origin::Yaml))
            .or_else(|| field(self.label).map(|v| (v, Origin::Label)))
    }

    /// The YAML's string if non-empty, else the label's if non-empty.
    fn non_empty(&self, field: impl Fn(&'a ImageConfig) -> &'a str) -> Option<&'a str> {
        [field(self.yaml), field(self.label)]
            .into_iter()
            .find(|s| !s.is_empty())
    }
}

/// One string of a list field, with where it came from, for error messages.
#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    value: &'a str,
    origin: Origin,
    field: &'static str,
    index: usize,
}

impl Item<'_> {
    fn invalid(&self, message: String) -> OciConfigError {
        invalid(
            self.origin,
            format!("{}[{}]", self.field, self.index),
            message,
        )
    }
}

fn invalid(origin: Origin, field: impl Into<String>, message: String) -> OciConfigError {
    OciConfigError::Invalid {
        origin,
        field: field.into(),
        message,
    }
}

fn items<'a>(list: &'a [String], origin: Origin, field: &'static str) -> Vec<Item<'a>> {
    list.iter()
        .enumerate()
        .map(|(index, value)| Item {
            value,
            origin,
            field,
            index,
        })
        .collect()
}

/// A list that the YAML may replace (`capabilities`, `binds`) or extend (`capabilities.add`,
/// `binds.add`, ignored when the YAML replaces the list). When both the label's list and the
/// YAML's additions exist they are merged keeping the first of equal strings (LinuxKit means to
/// but does not de-duplicate: a deliberate difference).
fn replace_or_extend<'a>(
    yaml_replacement: Option<&'a Vec<String>>,
    label_base: Option<&'a Vec<String>>,
    yaml_addition: Option<&'a Vec<String>>,
    field: &'static str,
    add_field: &'static str,
) -> Vec<Item<'a>> {
    if let Some(list) = yaml_replacement {
        return items(list, Origin::Yaml, field);
    }
    match (label_base, yaml_addition) {
        (None, None) => Vec::new(),
        (Some(base), None) => items(base, Origin::Label, field),
        (None, Some(added)) => items(added, Origin::Yaml, add_field),
        (Some(base), Some(added)) => {
            let mut seen = BTreeSet::new();
            items(base, Origin::Label, field)
                .into_iter()
                .chain(items(added, Origin::Yaml, add_field))
                .filter(|item| seen.insert(item.value))
                .collect()
        }
    }
}

fn build_spec(
    layers: &Layers,
    defaults: &ImageDefaults,
    ids: &IdMap,
    volumes: &Volumes,
) -> Result<Spec, OciConfigError> {
    let readonly = layers
        .pick(|c| c.readonly.as_ref())
        .is_some_and(|(v, _)| *v);
    let mut resources = layers
        .pick(|c| c.resources.as_ref())
        .map(|(r, _)| resources(r))
        .unwrap_or_default();
    let devices = devices(layers, &mut resources.devices)?;
    Ok(Spec {
        version: OCI_VERSION.into(),
        process: process(layers, defaults, ids)?,
        root: Root {
            path: "rootfs".into(),
            readonly,
        },
        hostname: layers.non_empty(|c| &c.hostname).unwrap_or_default().into(),
        mounts: mounts(layers, readonly, volumes)?,
        annotations: cloned_or_default(layers.pick(|c| c.annotations.as_ref())),
        linux: Linux {
            uid_mappings: id_mappings(layers.pick(|c| c.uid_mappings.as_deref())),
            gid_mappings: id_mappings(layers.pick(|c| c.gid_mappings.as_deref())),
            sysctl: cloned_or_default(layers.pick(|c| c.sysctl.as_ref())),
            resources,
            cgroups_path: cloned_or_default(layers.pick(|c| c.cgroups_path.as_ref())),
            namespaces: namespaces(layers),
            devices,
            rootfs_propagation: cloned_or_default(layers.pick(|c| c.rootfs_propagation.as_ref())),
            masked_paths: cloned_or_default(layers.pick(|c| c.masked_paths.as_ref())),
            readonly_paths: cloned_or_default(layers.pick(|c| c.readonly_paths.as_ref())),
        },
    })
}

fn cloned_or_default<T: Clone + Default>(picked: Option<(&T, Origin)>) -> T {
    picked.map(|(v, _)| v.clone()).unwrap_or_default()
}

fn process(
    layers: &Layers,
    defaults: &ImageDefaults,
    ids: &IdMap,
) -> Result<Process, OciConfigError> {
    // Docker's split of Entrypoint and Cmd is not kept: the command replaces both.
    let args = match layers.pick(|c| c.command.as_ref()) {
        Some((command, _)) => command.clone(),
        None => [defaults.entrypoint, defaults.cmd]
            .into_iter()
            .flatten()
            .flatten()
            .cloned()
            .collect(),
    };
    let env = match layers.pick(|c| c.env.as_ref()) {
        Some((env, _)) => env.clone(),
        None => defaults.env.map(<[String]>::to_vec).unwrap_or_default(),
    };
    // An empty cwd is not valid OCI: `/` is the last fallback.
    let cwd = layers
        .non_empty(|c| &c.cwd)
        .or(Some(defaults.working_dir).filter(|wd| !wd.is_empty()))
        .unwrap_or("/");
    Ok(Process {
        user: user(layers, ids)?,
        args,
        env,
        cwd: cwd.into(),
        capabilities: capabilities(layers)?,
        rlimits: rlimits(layers)?,
        no_new_privileges: layers
            .pick(|c| c.no_new_privileges.as_ref())
            .is_some_and(|(v, _)| *v),
        oom_score_adj: layers.pick(|c| c.oom_score_adj.as_ref()).map(|(v, _)| *v),
    })
}

fn user(layers: &Layers, ids: &IdMap) -> Result<User, OciConfigError> {
    let resolve = |picked: Option<(&model::IdRef, Origin)>, field: &str| match picked {
        None => Ok(0),
        Some((id, origin)) => ids.resolve(id).map_err(|m| invalid(origin, field, m)),
    };
    let mut additional_gids = Vec::new();
    if let Some((list, origin)) = layers.pick(|c| c.additional_gids.as_ref()) {
        for (i, id) in list.iter().enumerate() {
            let gid = ids
                .resolve(id)
                .map_err(|m| invalid(origin, format!("additionalGids[{i}]"), m))?;
            additional_gids.push(gid);
        }
    }
    Ok(User {
        uid: resolve(layers.pick(|c| c.uid.as_ref()), "uid")?,
        gid: resolve(layers.pick(|c| c.gid.as_ref()), "gid")?,
        additional_gids,
    })
}

fn capabilities(layers: &Layers) -> Result<Capabilities, OciConfigError> {
    let effective = capability_list(replace_or_extend(
        layers.yaml.capabilities.as_ref(),
        layers.label.capabilities.as_ref(),
        layers.yaml.capabilities_add.as_ref(),
        "capabilities",
        "capabilities.add",
    ))?;
    let ambient = match layers.pick(|c| c.ambient.as_ref()) {
        Some((list, origin)) => capability_list(items(list, origin, "ambient"))?,
        None => Vec::new(),
    };
    let bounding: Vec<String> = effective
        .iter()
        .chain(&ambient)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Capabilities {
        inheritable: bounding.clone(),
        permitted: bounding.clone(),
        bounding,
        effective,
        ambient,
    })
}

/// Checks a capability list, expanding a lone `all`/`none`.
fn capability_list(list: Vec<Item>) -> Result<Vec<String>, OciConfigError> {
    if let [only] = list[..] {
        let lone = [only.value.to_string()];
        // A lone entry is either all/none (expanded) or one capability (checked below).
        if let Ok(expanded) = expand_capabilities(&lone) {
            return Ok(expanded);
        }
    }
    for item in &list {
        check_capability(item.value).map_err(|message| {
            let special = ["all", "none"]
                .into_iter()
                .find(|s| item.value.eq_ignore_ascii_case(s));
            item.invalid(match special {
                Some(s) => format!(
                    "{message}: {s:?} is only special as the single entry of the list, and \
                     this list has {} entries",
                    list.len()
                ),
                None => message,
            })
        })?;
    }
    Ok(list.iter().map(|item| item.value.to_string()).collect())
}

fn rlimits(layers: &Layers) -> Result<Vec<Rlimit>, OciConfigError> {
    let Some((list, origin)) = layers.pick(|c| c.rlimits.as_ref()) else {
        return Ok(Vec::new());
    };
    items(list, origin, "rlimits")
        .iter()
        .map(|item| {
            let parsed = parse_rlimit(item.value).map_err(|m| item.invalid(m))?;
            Ok(Rlimit {
                kind: parsed.kind,
                hard: parsed.hard,
                soft: parsed.soft,
            })
        })
        .collect()
}

/// Namespaces in LinuxKit's order. `host`/`root` share the host's; `new` (and for the network
/// `none`) creates one; any other value is the path of a namespace to join.
fn namespaces(layers: &Layers) -> Vec<Namespace> {
    let mut namespaces = Vec::new();
    let mut add = |kind: &'static str, value: &str, new_words: &[&str]| {
        if value == "host" || value == "root" {
            return;
        }
        let path = if new_words.contains(&value) {
            ""
        } else {
            value
        };
        namespaces.push(Namespace {
            kind,
            path: path.into(),
        });
    };
    // net, ipc, uts and user default to the host's namespace, pid to a new one.
    add(
        "network",
        layers.non_empty(|c| &c.net).unwrap_or("root"),
        &["new", "none"],
    );
    add(
        "ipc",
        layers.non_empty(|c| &c.ipc).unwrap_or("root"),
        &["new"],
    );
    add(
        "uts",
        layers.non_empty(|c| &c.uts).unwrap_or("root"),
        &["new"],
    );
    add(
        "pid",
        layers.non_empty(|c| &c.pid).unwrap_or("new"),
        &["new"],
    );
    add(
        "user",
        layers.non_empty(|c| &c.userns).unwrap_or("root"),
        &["new"],
    );
    namespaces.push(Namespace {
        kind: "mount",
        path: String::new(),
    });
    namespaces
}

/// Mounts, one per destination, sorted by destination: the defaults, replaced by `tmpfs`, then by
/// binds, then by `mounts`.
fn mounts(
    layers: &Layers,
    readonly: bool,
    volumes: &Volumes,
) -> Result<Vec<RuntimeMount>, OciConfigError> {
    let mut by_destination = default_mounts(readonly);
    let mut put = |mount: RuntimeMount| {
        by_destination.insert(mount.destination.clone(), mount);
    };
    if let Some((list, origin)) = layers.pick(|c| c.tmpfs.as_ref()) {
        for item in items(list, origin, "tmpfs") {
            let tmpfs = parse_tmpfs(item.value).map_err(|m| item.invalid(m))?;
            put(RuntimeMount {
                destination: tmpfs.destination,
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                options: tmpfs.options.unwrap_or_default(),
                ..RuntimeMount::default()
            });
        }
    }
    let binds = replace_or_extend(
        layers.yaml.binds.as_ref(),
        layers.label.binds.as_ref(),
        layers.yaml.binds_add.as_ref(),
        "binds",
        "binds.add",
    );
    for item in binds {
        put(bind_mount(&item, volumes)?);
    }
    if let Some((list, origin)) = layers.pick(|c| c.mounts.as_ref()) {
        for (i, mount) in list.iter().enumerate() {
            put(explicit_mount(mount, origin, i, volumes)?);
        }
    }
    Ok(by_destination.into_values().collect())
}

/// Docker's default mounts (without `/dev/shm` and `/dev/mqueue`).
fn default_mounts(readonly: bool) -> BTreeMap<String, RuntimeMount> {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut dev = strings(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
    let mut sys = strings(&["nosuid", "noexec", "nodev"]);
    if readonly {
        dev.push("ro".into());
        sys.push("ro".into());
    }
    let defaults = [
        (
            "/proc",
            "proc",
            strings(&["nosuid", "nodev", "noexec", "relatime"]),
        ),
        ("/dev", "tmpfs", dev),
        (
            "/dev/pts",
            "devpts",
            strings(&[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ]),
        ),
        ("/sys", "sysfs", sys),
        (
            "/sys/fs/cgroup",
            "cgroup",
            strings(&["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ),
    ];
    defaults
        .into_iter()
        .map(|(destination, kind, options)| {
            let mount = RuntimeMount {
                destination: destination.into(),
                kind: kind.into(),
                source: kind.into(),
                options,
                ..RuntimeMount::default()
            };
            (destination.to_string(), mount)
        })
        .collect()
}

/// A `src:dst[:opts]` bind; from the YAML, a source without a leading `/` names a volume.
fn bind_mount(item: &Item, volumes: &Volumes) -> Result<RuntimeMount, OciConfigError> {
    let bind = parse_bind(item.value).map_err(|m| item.invalid(m))?;
    let mut source = bind.source;
    // Labels cannot know the spec's volumes: only the YAML's sources are volume names.
    if item.origin == Origin::Yaml && !source.starts_with('/') {
        let field = format!("{}[{}]", item.field, item.index);
        // The written options, without the `rbind` that parsing appends.
        let written = item.value.splitn(3, ':').nth(2).unwrap_or_default();
        source = volume_source(&source, written.split(','), field, volumes)?;
    }
    Ok(RuntimeMount {
        destination: bind.destination,
        kind: "bind".into(),
        source,
        options: bind.options,
        ..RuntimeMount::default()
    })
}

/// The merged directory of a volume, checking that it exists and that a read-only volume is
/// mounted read-only.
fn volume_source<'a>(
    name: &str,
    options: impl IntoIterator<Item = &'a str>,
    field: String,
    volumes: &Volumes,
) -> Result<String, OciConfigError> {
    match volumes.readonly(name) {
        None => {
            let names = volumes.names();
            let declared = if names.is_empty() {
                "no volumes are declared".to_string()
            } else {
                format!("declared: {}", names.join(", "))
            };
            Err(OciConfigError::VolumeNotFound {
                field,
                name: name.into(),
                declared,
            })
        }
        Some(true) if !options_are_readonly(options) => Err(OciConfigError::ReadonlyVolume {
            field,
            name: name.into(),
        }),
        Some(_) => Ok(Volumes::merged_dir(name)),
    }
}

/// The default destination of a mount type.
fn default_mountpoint(kind: &str) -> Option<&'static str> {
    match kind {
        "proc" => Some("/proc"),
        "devpts" => Some("/dev/pts"),
        "sysfs" => Some("/sys"),
        "cgroup" => Some("/sys/fs/cgroup"),
        "mqueue" => Some("/dev/mqueue"),
        _ => None,
    }
}

/// An entry of `mounts`: the type is inferred from a pseudo-filesystem source (or is tmpfs on
/// `/dev`), the source defaults to the type and the destination to the type's usual place.
fn explicit_mount(
    mount: &model::Mount,
    origin: Origin,
    index: usize,
    volumes: &Volumes,
) -> Result<RuntimeMount, OciConfigError> {
    let field = format!("mounts[{index}]");
    let mut kind = mount.kind.clone();
    if kind.is_empty() {
        if let "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup" = mount.source.as_str() {
            kind = mount.source.clone();
        } else if mount.destination == "/dev" {
            kind = "tmpfs".into();
        } else {
            return Err(invalid(
                origin,
                field,
                format!(
                    "mount for destination {:?} has no type and none can be inferred from its \
                     source: set \"type\" (e.g. bind, tmpfs, proc)",
                    mount.destination
                ),
            ));
        }
    }
    let options = mount.options.clone().unwrap_or_default();
    let mut source = mount.source.clone();
    if source.is_empty() {
        source = kind.clone();
    } else if origin == Origin::Yaml && mount.kind == "bind" && !source.starts_with('/') {
        // LinuxKit checks the volume but then loses the rewritten source: a deliberate difference.
        source = volume_source(
            &source,
            options.iter().map(String::as_str),
            field.clone(),
            volumes,
        )?;
    }
    let destination = match mount.destination.as_str() {
        "" => default_mountpoint(&kind)
            .map(str::to_string)
            .ok_or_else(|| {
                invalid(
                    origin,
                    field,
                    format!("mount of type {kind:?} has no destination: set \"destination\""),
                )
            })?,
        destination => destination.to_string(),
    };
    Ok(RuntimeMount {
        destination,
        kind,
        source,
        options,
        uid_mappings: id_mappings(mount.uidmappings.as_deref().map(|m| (m, origin))),
        gid_mappings: id_mappings(mount.gidmappings.as_deref().map(|m| (m, origin))),
    })
}

fn id_mappings(picked: Option<(&[model::IdMapping], Origin)>) -> Vec<IdMapping> {
    picked
        .map(|(list, _)| list.iter().map(id_mapping).collect())
        .unwrap_or_default()
}

fn id_mapping(mapping: &model::IdMapping) -> IdMapping {
    IdMapping {
        container_id: mapping.container_id,
        host_id: mapping.host_id,
        size: mapping.size,
    }
}

/// `linux.devices`, adding to `rules` the device cgroup rule that lets the container use each.
fn devices(layers: &Layers, rules: &mut Vec<DeviceCgroup>) -> Result<Vec<Device>, OciConfigError> {
    let Some((list, origin)) = layers.pick(|c| c.devices.as_ref()) else {
        return Ok(Vec::new());
    };
    let mut devices = Vec::new();
    for (i, device) in list.iter().enumerate() {
        if device.path == "all" {
            // A whole category: only a cgroup rule, no device node.
            rules.push(DeviceCgroup {
                allow: true,
                kind: device.kind.clone(),
                major: None,
                minor: None,
                access: "rwm".into(),
            });
            continue;
        }
        let file_mode = parse_octal_mode(&device.mode)
            .map_err(|m| invalid(origin, format!("devices[{i}].mode"), m))?;
        rules.push(DeviceCgroup {
            allow: true,
            kind: device.kind.clone(),
            major: Some(device.major),
            minor: Some(device.minor),
            access: "rwm".into(),
        });
        devices.push(Device {
            path: device.path.clone(),
            kind: device.kind.clone(),
            major: device.major,
            minor: device.minor,
            file_mode,
        });
    }
    Ok(devices)
}

fn resources(r: &model::Resources) -> Resources {
    Resources {
        devices: r
            .devices
            .iter()
            .flatten()
            .map(|d| DeviceCgroup {
                allow: d.allow,
                kind: d.kind.clone().unwrap_or_default(),
                major: d.major,
                minor: d.minor,
                access: d.access.clone().unwrap_or_default(),
            })
            .collect(),
        memory: r.memory.as_ref().map(|m| Memory {
            limit: m.limit,
            reservation: m.reservation,
            swap: m.swap,
            kernel: m.kernel,
            kernel_tcp: m.kernel_tcp,
            swappiness: m.swappiness,
            disable_oom_killer: m.disable_oom_killer,
        }),
        cpu: r.cpu.as_ref().map(|c| Cpu {
            shares: c.shares,
            quota: c.quota,
            period: c.period,
            realtime_runtime: c.realtime_runtime,
            realtime_period: c.realtime_period,
            cpus: c.cpus.clone().unwrap_or_default(),
            mems: c.mems.clone().unwrap_or_default(),
        }),
        pids: r.pids.as_ref().map(|p| Pids { limit: p.limit }),
        block_io: r.blockio.as_ref().map(block_io),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .flatten()
            .map(|h| HugepageLimit {
                page_size: h.page_size.as_ref().map(page_size_text).unwrap_or_default(),
                limit: h.limit,
            })
            .collect(),
        network: r.network.as_ref().map(|n| Network {
            class_id: n.class_id,
            priorities: n
                .priorities
                .iter()
                .flatten()
                .map(|p| InterfacePriority {
                    name: p.name.clone(),
                    priority: p.priority,
                })
                .collect(),
        }),
    }
}

fn block_io(b: &model::BlockIo) -> BlockIo {
    let throttle = |list: &Option<Vec<model::ThrottleDevice>>| -> Vec<ThrottleDevice> {
        list.iter()
            .flatten()
            .map(|t| ThrottleDevice {
                major: t.major,
                minor: t.minor,
                rate: t.rate,
            })
            .collect()
    };
    BlockIo {
        weight: b.weight,
        leaf_weight: b.leaf_weight,
        weight_device: b
            .weight_device
            .iter()
            .flatten()
            .map(|w| WeightDevice {
                major: w.major,
                minor: w.minor,
                weight: w.weight,
                leaf_weight: w.leaf_weight,
            })
            .collect(),
        throttle_read_bps_device: throttle(&b.throttle_read_bps_device),
        throttle_write_bps_device: throttle(&b.throttle_write_bps_device),
        throttle_read_iops_device: throttle(&b.throttle_read_iops_device),
        throttle_write_iops_device: throttle(&b.throttle_write_iops_device),
    }
}

/// A hugepage size in the runtime spec's form (`2MB`, `1GB`, as runc names them); LinuxKit's
/// schema asks for a byte count, which is converted to the largest exact binary unit.
fn page_size_text(size: &PageSize) -> String {
    match size {
        PageSize::Text(text) => text.clone(),
        PageSize::Bytes(bytes) => {
            const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
            let mut value = *bytes;
            let mut unit = 0;
            while value != 0 && value % 1024 == 0 && unit + 1 < UNITS.len() {
                value /= 1024;
                unit += 1;
            }
            format!("{value}{}", UNITS[unit])
        }
    }
}

/// `runtime.json` settings: the YAML's runtime over the label's, each member as a whole except
/// `bindNS`, which is merged key by key.
fn runtime_config(label: Option<&model::Runtime>, yaml: Option<&model::Runtime>) -> RuntimeConfig {
    let no_runtime = model::Runtime::default();
    let label = label.unwrap_or(&no_runtime);
    let yaml = yaml.unwrap_or(&no_runtime);
    let strings = |field: fn(&model::Runtime) -> &Option<Vec<String>>| -> Vec<String> {
        field(yaml)
            .as_ref()
            .or(field(label).as_ref())
            .cloned()
            .unwrap_or_default()
    };
    let bind_ns = |field: fn(&model::BindNamespaces) -> &Option<String>| -> String {
        field(&yaml.bind_ns)
            .as_ref()
            .or(field(&label.bind_ns).as_ref())
            .cloned()
            .unwrap_or_default()
    };
    RuntimeConfig {
        cgroups: strings(|r| &r.cgroups),
        mounts: yaml
            .mounts
            .as_ref()
            .or(label.mounts.as_ref())
            .iter()
            .copied()
            .flatten()
            .map(runtime_mount)
            .collect(),
        mkdir: strings(|r| &r.mkdir),
        interfaces: yaml
            .interfaces
            .as_ref()
            .or(label.interfaces.as_ref())
            .iter()
            .copied()
            .flatten()
            .map(|i| RuntimeInterface {
                name: i.name.clone(),
                add: i.add.clone(),
                peer: i.peer.clone(),
                create_in_root: i.create_in_root,
            })
            .collect(),
        bind_ns: BindNamespaces {
            cgroup: bind_ns(|b| &b.cgroup),
            ipc: bind_ns(|b| &b.ipc),
            mnt: bind_ns(|b| &b.mnt),
            net: bind_ns(|b| &b.net),
            pid: bind_ns(|b| &b.pid),
            user: bind_ns(|b| &b.user),
            uts: bind_ns(|b| &b.uts),
        },
        namespace: yaml
            .namespace
            .as_ref()
            .or(label.namespace.as_ref())
            .cloned()
            .unwrap_or_default(),
    }
}

/// A `runtime.mounts` entry, kept as written (init mounts it; nothing is inferred).
fn runtime_mount(mount: &model::Mount) -> RuntimeMount {
    RuntimeMount {
        destination: mount.destination.clone(),
        kind: mount.kind.clone(),
        source: mount.source.clone(),
        options: mount.options.clone().unwrap_or_default(),
        uid_mappings: mount.uidmappings.iter().flatten().map(id_mapping).collect(),
        gid_mappings: mount.gidmappings.iter().flatten().map(id_mapping).collect(),
    }
}
