//! The merge of YAML entry, image label and image config into `config.json` and `runtime.json`.
//!
//! Precedence is field by field: a field the YAML sets (even to an empty list) wins over the
//! label's, which wins over the image config's. The few string fields that cannot be "set to
//! empty" (`cwd`, `hostname`, the namespaces) fall back when empty instead.

use std::collections::{BTreeMap, BTreeSet};

use super::spec_types::{
    BindNamespaces, BlockIo, Capabilities, Cpu, Device, DeviceCgroup, HugepageLimit, IdMapping, InterfacePriority,
    Linux, Memory, Namespace, Network, Pids, Process, Resources, Rlimit, Root, RuntimeConfig, RuntimeInterface,
    RuntimeMount, Spec, ThrottleDevice, User, WeightDevice, OCI_VERSION,
};
use super::volumes::{options_are_readonly, Volumes};
use super::{Bundle, IdMap, ImageDefaults, OciConfigError, Origin};
use crate::gojson::to_go_json;
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
        config_json: to_go_json(&spec).map_err(|e| OciConfigError::Encode {
            file: "config.json",
            reason: e.to_string(),
        })?,
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
    fn pick<T: ?Sized>(&self, field: impl Fn(&'a ImageConfig) -> Option<&'a T>) -> Option<(&'a T, Origin)> {
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
        invalid(self.origin, format!("{}[{}]", self.field, self.index), message)
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
    let readonly = layers.pick(|c| c.readonly.as_ref()).is_some_and(|(v, _)| *v);
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

fn process(layers: &Layers, defaults: &ImageDefaults, ids: &IdMap) -> Result<Process, OciConfigError> {
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
        no_new_privileges: layers.pick(|c| c.no_new_privileges.as_ref()).is_some_and(|(v, _)| *v),
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
            let special = ["all", "none"].into_iter().find(|s| item.value.eq_ignore_ascii_case(s));
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
        let path = if new_words.contains(&value) { "" } else { value };
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
    add("ipc", layers.non_empty(|c| &c.ipc).unwrap_or("root"), &["new"]);
    add("uts", layers.non_empty(|c| &c.uts).unwrap_or("root"), &["new"]);
    add("pid", layers.non_empty(|c| &c.pid).unwrap_or("new"), &["new"]);
    add("user", layers.non_empty(|c| &c.userns).unwrap_or("root"), &["new"]);
    namespaces.push(Namespace {
        kind: "mount",
        path: String::new(),
    });
    namespaces
}

/// Mounts, one per destination, sorted by destination: the defaults, replaced by `tmpfs`, then by
/// binds, then by `mounts`.
fn mounts(layers: &Layers, readonly: bool, volumes: &Volumes) -> Result<Vec<RuntimeMount>, OciConfigError> {
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
        ("/proc", "proc", strings(&["nosuid", "nodev", "noexec", "relatime"])),
        ("/dev", "tmpfs", dev),
        (
            "/dev/pts",
            "devpts",
            strings(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
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
    if source.is_empty() && kind == "bind" {
        return Err(invalid(
            origin,
            field,
            format!(
                "bind mount for destination {:?} has no source: set \"source\" to a host path or \
                 a volume name",
                mount.destination
            ),
        ));
    }
    if source.is_empty() {
        // Pseudo-filesystems name themselves: proc, sysfs, tmpfs...
        source = kind.clone();
    } else if origin == Origin::Yaml && mount.kind == "bind" && !source.starts_with('/') {
        // LinuxKit checks the volume but then loses the rewritten source: a deliberate difference.
        source = volume_source(&source, options.iter().map(String::as_str), field.clone(), volumes)?;
    }
    let destination = match mount.destination.as_str() {
        "" => default_mountpoint(&kind).map(str::to_string).ok_or_else(|| {
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
        let file_mode = parse_octal_mode(&device.mode).map_err(|m| invalid(origin, format!("devices[{i}].mode"), m))?;
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::spec::model::{Moby, Volume};

    fn entry(yaml: Value) -> Image {
        let mut value = json!({"name": "c", "image": "img"});
        if let (Value::Object(target), Value::Object(fields)) = (&mut value, yaml) {
            target.extend(fields);
        }
        serde_json::from_value(value).unwrap()
    }

    fn label(value: Value) -> ImageConfig {
        serde_json::from_value(value).unwrap()
    }

    fn volumes() -> Volumes {
        let volume = |name: &str, readonly| Volume {
            name: name.into(),
            readonly,
            ..Volume::default()
        };
        Volumes::from_moby(&Moby {
            volumes: vec![volume("data", false), volume("ro", true)],
            ..Moby::default()
        })
    }

    /// Generates and returns config.json as a JSON value, plus the bundle.
    fn run(
        yaml: Value,
        label_value: Option<Value>,
        defaults: &ImageDefaults,
    ) -> Result<(Value, Bundle), OciConfigError> {
        let label = label_value.map(label);
        let ids = IdMap::from_names(["c", "other"]);
        let bundle = generate(&entry(yaml), label.as_ref(), defaults, &ids, &volumes())?;
        let config = serde_json::from_slice(&bundle.config_json).unwrap();
        Ok((config, bundle))
    }

    fn config(yaml: Value, label_value: Option<Value>) -> Value {
        run(yaml, label_value, &ImageDefaults::default()).unwrap().0
    }

    fn error(yaml: Value, label_value: Option<Value>) -> OciConfigError {
        run(yaml, label_value, &ImageDefaults::default()).unwrap_err()
    }

    fn mount<'a>(config: &'a Value, destination: &str) -> &'a Value {
        config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == destination)
            .unwrap_or_else(|| panic!("no mount on {destination}"))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_env_cwd_precedence() {
        let entrypoint = strings(&["/ep"]);
        let cmd = strings(&["arg"]);
        let env = strings(&["IMAGE=1"]);
        let defaults = ImageDefaults {
            entrypoint: Some(&entrypoint),
            cmd: Some(&cmd),
            env: Some(&env),
            working_dir: "/image",
        };
        let (image_only, _) = run(json!({}), None, &defaults).unwrap();
        assert_eq!(image_only["process"]["args"], json!(["/ep", "arg"]));
        assert_eq!(image_only["process"]["env"], json!(["IMAGE=1"]));
        assert_eq!(image_only["process"]["cwd"], "/image");

        let label = json!({"command": ["/label"], "env": ["LABEL=1"], "cwd": "/label"});
        let (labelled, _) = run(json!({}), Some(label.clone()), &defaults).unwrap();
        assert_eq!(labelled["process"]["args"], json!(["/label"]));
        assert_eq!(labelled["process"]["env"], json!(["LABEL=1"]));
        assert_eq!(labelled["process"]["cwd"], "/label");

        // An empty list still overrides; an empty cwd falls back.
        let yaml = json!({"command": [], "env": ["YAML=1"], "cwd": ""});
        let (overridden, _) = run(yaml, Some(label), &defaults).unwrap();
        assert_eq!(overridden["process"].get("args"), None);
        assert_eq!(overridden["process"]["env"], json!(["YAML=1"]));
        assert_eq!(overridden["process"]["cwd"], "/label");

        assert_eq!(config(json!({}), None)["process"]["cwd"], "/");
    }

    #[test]
    fn empty_sets_are_written_as_go_writes_them() {
        let (_, bundle) = run(json!({}), None, &ImageDefaults::default()).unwrap();
        let text = String::from_utf8(bundle.config_json).unwrap();
        assert!(text.contains("\"capabilities\": {}"));
        assert!(text.contains("\"resources\": {}"));
        assert!(!text.contains("oomScoreAdj"));
        assert!(!text.contains("hostname"));
        assert!(!text.ends_with('\n'));
        let zero = config(json!({"oomScoreAdj": 0}), None);
        assert_eq!(zero["process"]["oomScoreAdj"], 0);
    }

    #[test]
    fn capabilities_replace_extend_and_expand() {
        let label = Some(json!({"capabilities": ["CAP_NET_RAW", "CAP_CHOWN"]}));
        let extended = config(
            json!({"capabilities.add": ["CAP_CHOWN", "CAP_SYS_TIME"]}),
            label.clone(),
        );
        let caps = &extended["process"]["capabilities"];
        assert_eq!(caps["effective"], json!(["CAP_NET_RAW", "CAP_CHOWN", "CAP_SYS_TIME"]));
        assert_eq!(caps["bounding"], json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_TIME"]));
        assert_eq!(caps["permitted"], caps["bounding"]);
        assert_eq!(caps["inheritable"], caps["bounding"]);

        let replaced = config(
            json!({"capabilities": ["CAP_KILL"], "capabilities.add": ["CAP_SYS_TIME"]}),
            label.clone(),
        );
        assert_eq!(replaced["process"]["capabilities"]["effective"], json!(["CAP_KILL"]));

        let all = config(json!({"capabilities": ["All"]}), None);
        let effective = all["process"]["capabilities"]["effective"].as_array().unwrap();
        assert_eq!(effective.len(), 41);
        assert_eq!(effective[0], "CAP_CHOWN");
        let none = config(json!({"capabilities": ["none"]}), label);
        assert_eq!(none["process"]["capabilities"], json!({}));

        let ambient = config(json!({"capabilities": ["CAP_KILL"], "ambient": ["CAP_NET_RAW"]}), None);
        let caps = &ambient["process"]["capabilities"];
        assert_eq!(caps["ambient"], json!(["CAP_NET_RAW"]));
        assert_eq!(caps["bounding"], json!(["CAP_KILL", "CAP_NET_RAW"]));
    }

    #[test]
    fn capability_errors_say_where() {
        let err = error(json!({}), Some(json!({"capabilities": ["CAP_FOO"]})));
        assert_eq!(err.origin(), Origin::Label);
        assert!(err
            .to_string()
            .starts_with("label org.mobyproject.config: capabilities[0]: "));
        assert!(err.to_string().contains("CAP_FOO"));

        let err = error(json!({"capabilities.add": ["CAP_A"]}), None);
        assert!(err.to_string().starts_with("yaml: capabilities.add[0]: "), "{err}");

        let err = error(
            json!({"capabilities.add": ["CAP_KILL"]}),
            Some(json!({"capabilities": ["all"]})),
        );
        assert!(err.to_string().contains("single entry"), "{err}");
    }

    #[test]
    fn default_mounts_follow_readonly() {
        let rw = config(json!({}), None);
        let destinations: Vec<&str> = rw["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(destinations, ["/dev", "/dev/pts", "/proc", "/sys", "/sys/fs/cgroup"]);
        assert_eq!(rw["root"], json!({"path": "rootfs"}));
        let (ro, bundle) = run(json!({}), Some(json!({"readonly": true})), &ImageDefaults::default()).unwrap();
        assert!(bundle.readonly);
        assert_eq!(mount(&ro, "/dev")["options"][4], "ro");
        assert_eq!(mount(&ro, "/sys")["options"][3], "ro");
        assert_eq!(mount(&ro, "/sys/fs/cgroup")["options"].as_array().unwrap().len(), 5);
        let (_, bundle) = run(
            json!({"readonly": false}),
            Some(json!({"readonly": true})),
            &ImageDefaults::default(),
        )
        .unwrap();
        assert!(!bundle.readonly);
    }

    #[test]
    fn later_mount_sources_replace_earlier_ones() {
        let c = config(
            json!({
                "tmpfs": ["/dev", "/run:size=1m"],
                "binds": ["/host/run:/run"],
                "mounts": [{"type": "tmpfs", "destination": "/proc"}]
            }),
            None,
        );
        assert_eq!(
            mount(&c, "/dev"),
            &json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"})
        );
        assert_eq!(
            mount(&c, "/run"),
            &json!({"destination": "/run", "type": "bind", "source": "/host/run",
                    "options": ["rw", "rbind", "rshared"]})
        );
        assert_eq!(mount(&c, "/proc")["type"], "tmpfs");
    }

    #[test]
    fn binds_replace_or_extend_the_label() {
        let label = Some(json!({"binds": ["/a:/a", "/b:/b:ro"]}));
        let extended = config(json!({"binds.add": ["/c:/c:ro,rslave"]}), label.clone());
        assert_eq!(mount(&extended, "/a")["source"], "/a");
        assert_eq!(mount(&extended, "/c")["options"], json!(["ro", "rslave", "rbind"]));
        let replaced = config(json!({"binds": ["/c:/c"], "binds.add": ["/d:/d"]}), label);
        let binds: Vec<&Value> = replaced["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "bind")
            .collect();
        assert_eq!(binds.len(), 1);
        assert_eq!(binds[0]["destination"], "/c");
    }

    #[test]
    fn bind_errors_say_where() {
        let err = error(json!({"binds.add": ["/x"]}), None);
        assert!(err.to_string().starts_with("yaml: binds.add[0]: "), "{err}");
        let err = error(json!({}), Some(json!({"tmpfs": ["/a:b:c"]})));
        assert!(err.to_string().starts_with("label org.mobyproject.config: tmpfs[0]: "));
    }

    #[test]
    fn volumes_in_binds_and_mounts() {
        let c = config(
            json!({
                "binds": ["data:/data", "ro:/ro:ro", "ro:/ro2:ro,rslave"],
                "mounts": [{"type": "bind", "source": "data", "destination": "/m",
                            "options": ["rbind"]}]
            }),
            None,
        );
        assert_eq!(mount(&c, "/data")["source"], "/containers/volumes/data/merged");
        assert_eq!(mount(&c, "/ro")["source"], "/containers/volumes/ro/merged");
        assert_eq!(mount(&c, "/ro2")["source"], "/containers/volumes/ro/merged");
        assert_eq!(mount(&c, "/m")["source"], "/containers/volumes/data/merged");

        // A label cannot know the spec's volumes: its sources stay as written.
        let labelled = config(json!({}), Some(json!({"binds": ["data:/data"]})));
        assert_eq!(mount(&labelled, "/data")["source"], "data");

        let err = error(json!({"binds": ["/x:/x", "nope:/n"]}), None);
        assert!(matches!(
            &err,
            OciConfigError::VolumeNotFound { field, name, .. } if field == "binds[1]" && name == "nope"
        ));
        assert!(err.to_string().contains("declared: data, ro"), "{err}");
        let err = error(json!({"binds": ["ro:/ro"]}), None);
        assert!(matches!(err, OciConfigError::ReadonlyVolume { .. }));
        let err = error(json!({"binds": ["ro:/ro:rw,ro"]}), None);
        assert!(matches!(err, OciConfigError::ReadonlyVolume { .. }));
        let err = error(
            json!({"mounts": [{"type": "bind", "source": "ro", "destination": "/r"}]}),
            None,
        );
        assert!(matches!(
            err,
            OciConfigError::ReadonlyVolume { field, .. } if field == "mounts[0]"
        ));
    }

    #[test]
    fn mounts_infer_type_source_and_destination() {
        let c = config(
            json!({"mounts": [
                {"source": "mqueue"},
                {"destination": "/dev", "options": ["nosuid"]},
                {"type": "cgroup"},
                {"type": "tmpfs", "destination": "/idmapped",
                 "uidmappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}
            ]}),
            None,
        );
        assert_eq!(
            mount(&c, "/dev/mqueue"),
            &json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"})
        );
        assert_eq!(
            mount(&c, "/dev"),
            &json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid"]})
        );
        assert_eq!(
            mount(&c, "/sys/fs/cgroup"),
            &json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"})
        );
        assert_eq!(
            mount(&c, "/idmapped")["uidMappings"],
            json!([{"containerID": 0, "hostID": 1000, "size": 1}])
        );

        let err = error(json!({"mounts": [{"destination": "/x"}]}), None);
        assert!(err.to_string().starts_with("yaml: mounts[0]: "), "{err}");
        assert!(err.to_string().contains("no type"), "{err}");
        let err = error(json!({}), Some(json!({"mounts": [{"type": "tmpfs"}]})));
        assert!(err.to_string().contains("no destination"), "{err}");
        let err = error(json!({"mounts": [{"type": "bind", "destination": "/x"}]}), None);
        assert!(err.to_string().contains("no source"), "{err}");
    }

    #[test]
    fn namespaces_in_order_with_defaults() {
        let types = |c: &Value| -> Vec<(String, String)> {
            c["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| {
                    let path = n["path"].as_str().unwrap_or_default().to_string();
                    (n["type"].as_str().unwrap().to_string(), path)
                })
                .collect()
        };
        let pair = |t: &str, p: &str| (t.to_string(), p.to_string());
        assert_eq!(types(&config(json!({}), None)), [pair("pid", ""), pair("mount", "")]);
        let every = config(
            json!({"net": "none", "ipc": "none", "uts": "new", "pid": "host", "userns": "/u"}),
            None,
        );
        assert_eq!(
            types(&every),
            [
                pair("network", ""),
                pair("ipc", "none"),
                pair("uts", ""),
                pair("user", "/u"),
                pair("mount", "")
            ]
        );
        // An empty YAML value falls back to the label's.
        let labelled = config(json!({"net": ""}), Some(json!({"net": "/run/netns/x", "pid": "root"})));
        assert_eq!(types(&labelled), [pair("network", "/run/netns/x"), pair("mount", "")]);
    }

    #[test]
    fn rlimits_and_their_errors() {
        let c = config(json!({"rlimits": ["nofile,1,unlimited"]}), None);
        assert_eq!(
            c["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": u64::MAX, "soft": 1}])
        );
        let err = error(json!({}), Some(json!({"rlimits": ["core,0,0", "nofile,x,1"]})));
        assert!(
            err.to_string()
                .starts_with("label org.mobyproject.config: rlimits[1]: "),
            "{err}"
        );
    }

    #[test]
    fn ids_by_number_root_and_name() {
        let c = config(
            json!({"uid": "other", "gid": "root", "additionalGids": [5, "c"]}),
            Some(json!({"uid": 7, "gid": 8})),
        );
        assert_eq!(
            c["process"]["user"],
            json!({"uid": 101, "gid": 0, "additionalGids": [5, 100]})
        );
        let err = error(json!({"additionalGids": [1, "ghost"]}), None);
        assert!(err.to_string().starts_with("yaml: additionalGids[1]: "), "{err}");
        assert!(err.to_string().contains("\"ghost\""));
    }

    #[test]
    fn devices_add_cgroup_rules() {
        let c = config(
            json!({
                "devices": [
                    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "mode": "0666"},
                    {"path": "all", "type": "b"}
                ],
                "resources": {"devices": [{"allow": false, "access": "rwm"}]}
            }),
            None,
        );
        assert_eq!(
            c["linux"]["devices"],
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                    "fileMode": 438}])
        );
        assert_eq!(
            c["linux"]["resources"]["devices"],
            json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                {"allow": true, "type": "b", "access": "rwm"}
            ])
        );
        let err = error(
            json!({"devices": [{"path": "/dev/x", "type": "c", "mode": "rw"}]}),
            None,
        );
        assert!(err.to_string().starts_with("yaml: devices[0].mode: "), "{err}");
    }

    #[test]
    fn camel_case_resources_are_kept() {
        let c = config(
            json!({"resources": {
                "memory": {"kernelTCP": 1, "disableOOMKiller": true},
                "cpu": {"realtimeRuntime": 2, "realtimePeriod": 3},
                "blockio": {"leafWeight": 4},
                "hugepageLimits": [{"pageSize": 1073741824u64, "limit": 5},
                                   {"pageSize": "64KB", "limit": 6}],
                "network": {"classID": 7}
            }}),
            None,
        );
        assert_eq!(
            c["linux"]["resources"],
            json!({
                "memory": {"kernelTCP": 1, "disableOOMKiller": true},
                "cpu": {"realtimeRuntime": 2, "realtimePeriod": 3},
                "blockIO": {"leafWeight": 4},
                "hugepageLimits": [{"pageSize": "1GB", "limit": 5},
                                   {"pageSize": "64KB", "limit": 6}],
                "network": {"classID": 7}
            })
        );
    }

    #[test]
    fn page_sizes_use_the_largest_exact_unit() {
        assert_eq!(page_size_text(&PageSize::Bytes(2 * 1024 * 1024)), "2MB");
        assert_eq!(page_size_text(&PageSize::Bytes(1536)), "1536B");
        assert_eq!(page_size_text(&PageSize::Bytes(0)), "0B");
        assert_eq!(page_size_text(&PageSize::Text("2MB".into())), "2MB");
    }

    #[test]
    fn misc_fields_yaml_over_label() {
        let label = json!({
            "hostname": "label", "noNewPrivileges": true, "maskedPaths": ["/a"],
            "cgroupsPath": "/label", "sysctl": {"b": "1", "a": "2"},
            "annotations": {"k": "label"}
        });
        let c = config(
            json!({"hostname": "", "noNewPrivileges": false, "maskedPaths": [],
                   "cgroupsPath": "", "annotations": {"z": "1", "k": "yaml"}}),
            Some(label),
        );
        assert_eq!(c["hostname"], "label");
        assert_eq!(c["process"].get("noNewPrivileges"), None);
        assert_eq!(c["linux"].get("maskedPaths"), None);
        assert_eq!(c["linux"].get("cgroupsPath"), None);
        assert_eq!(c["annotations"], json!({"k": "yaml", "z": "1"}));
        assert_eq!(c["linux"]["sysctl"], json!({"a": "2", "b": "1"}));
    }

    #[test]
    fn runtime_members_override_whole_and_bind_ns_by_key() {
        let label = json!({"runtime": {
            "cgroups": ["label"], "mkdir": ["/label"], "namespace": "label",
            "interfaces": [{"name": "eth0"}],
            "bindNS": {"net": "/label/net", "uts": "/label/uts"}
        }});
        let yaml = json!({"runtime": {
            "mkdir": [], "bindNS": {"uts": "/yaml/uts"},
            "mounts": [{"type": "bind", "source": "/s", "destination": "/d",
                        "uidmappings": [{"containerID": 1, "hostID": 2, "size": 3}]}]
        }});
        let (_, bundle) = run(yaml, Some(label), &ImageDefaults::default()).unwrap();
        let runtime = bundle.runtime;
        assert_eq!(runtime.cgroups, ["label"]);
        assert!(runtime.mkdir.is_empty());
        assert_eq!(runtime.namespace, "label");
        assert_eq!(runtime.interfaces.len(), 1);
        assert_eq!(runtime.bind_ns.net, "/label/net");
        assert_eq!(runtime.bind_ns.uts, "/yaml/uts");
        assert_eq!(runtime.bind_ns.pid, "");
        assert_eq!(runtime.mounts[0].source, "/s");
        assert_eq!(
            runtime.mounts[0].uid_mappings,
            [IdMapping {
                container_id: 1,
                host_id: 2,
                size: 3
            }]
        );
    }
}
