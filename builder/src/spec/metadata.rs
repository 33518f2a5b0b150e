//! `files[].metadata`: the merged spec written back as YAML or JSON, byte for byte as LinuxKit writes
//! it.
//!
//! LinuxKit marshals its `moby.Moby` struct after replacing image references by their expanded form
//! (`UpdateImages`: kernel, init, onboot, onshutdown and services; not volumes), with gopkg.in/yaml.v2
//! or with `json.MarshalIndent(m, "", "    ")`. The two encoders see the same struct differently:
//!
//! * YAML uses the `yaml` tags of LinuxKit's own types, and for the runtime-spec types (which have
//!   only `json` tags) the lower-cased Go field names with no `omitempty`: every field is written,
//!   `null` for a nil pointer, `[]` for a nil slice, `{}` for a nil map. `Moby.Kernel`/`Moby.Init` have
//!   malformed tags, so `kernel` and `init` are always written, and `kernel.image` too.
//! * JSON uses the `json` tags: `omitempty` drops nil pointers and empty strings/slices/maps but never
//!   structs, and the top-level lists are `null` when empty (LinuxKit's merge of config files leaves
//!   them nil).
//!
//! `trust` is not part of LinuxKit's struct and is never written.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::goyaml::{marshal, GoValue};
use super::model::{
    BlockIo, Cpu, Device, DeviceCgroup, File, HugepageLimit, IdMapping, IdRef, Image, Interface, Kernel, Memory, Moby,
    Mount, Network, PageSize, Resources, Runtime, ThrottleDevice, Volume, WeightDevice,
};
use crate::reference::expand;

/// The two formats of a `metadata` file entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataFormat {
    /// `metadata: yaml` (gopkg.in/yaml.v2).
    Yaml,
    /// `metadata: json` (Go's `json.MarshalIndent` with four spaces).
    Json,
}

impl MetadataFormat {
    /// The format a `metadata:` value names, if it is one LinuxKit supports.
    pub fn from_name(name: &str) -> Option<MetadataFormat> {
        match name {
            "yaml" => Some(MetadataFormat::Yaml),
            "json" => Some(MetadataFormat::Json),
            _ => None,
        }
    }
}

/// The contents of a metadata file for the merged spec `m`.
pub fn metadata(m: &Moby, format: MetadataFormat) -> Vec<u8> {
    match format {
        MetadataFormat::Yaml => marshal(&yaml::moby(m)).into_bytes(),
        MetadataFormat::Json => json::render(&json::moby(m)).into_bytes(),
    }
}

fn str(s: &str) -> GoValue {
    GoValue::Str(s.to_string())
}

fn strings(list: &[String]) -> GoValue {
    GoValue::Seq(list.iter().map(|s| str(s)).collect())
}

fn id(value: &IdRef) -> GoValue {
    match value {
        IdRef::Num(n) => GoValue::Int(*n),
        IdRef::Name(name) => str(name),
    }
}

fn opt<T>(value: &Option<T>, f: impl Fn(&T) -> GoValue) -> GoValue {
    value.as_ref().map_or(GoValue::Null, f)
}

fn int(value: &Option<i64>) -> GoValue {
    opt(value, |v| GoValue::Int(*v))
}

fn uint(value: &Option<u64>) -> GoValue {
    opt(value, |v| GoValue::Uint(*v))
}

fn page_size(size: &Option<PageSize>) -> GoValue {
    match size {
        None => str(""),
        Some(PageSize::Bytes(n)) => GoValue::Str(n.to_string()),
        Some(PageSize::Text(text)) => str(text),
    }
}

/// The image reference as `UpdateImages` leaves it.
fn expanded(image: &str) -> GoValue {
    GoValue::Str(expand(image))
}

/// Builds an ordered mapping, leaving out `None` entries (Go's `omitempty`).
struct Fields(Vec<(String, GoValue)>);

impl Fields {
    fn new() -> Fields {
        Fields(Vec::new())
    }

    fn put(mut self, key: &str, value: GoValue) -> Fields {
        self.0.push((key.to_string(), value));
        self
    }

    fn put_if(self, key: &str, value: Option<GoValue>) -> Fields {
        match value {
            Some(value) => self.put(key, value),
            None => self,
        }
    }

    fn done(self) -> GoValue {
        GoValue::Map(self.0)
    }
}

fn non_empty(s: &str) -> Option<GoValue> {
    (!s.is_empty()).then(|| str(s))
}

/// A Go `map[string]string` as yaml.v2 orders it.
fn yaml_string_map(map: &BTreeMap<String, String>) -> GoValue {
    let mut pairs: Vec<(String, GoValue)> = map.iter().map(|(k, v)| (k.clone(), str(v))).collect();
    pairs.sort_by(|(a, _), (b, _)| yaml_key_order(a, b));
    GoValue::Map(pairs)
}

/// yaml.v2's key order for strings: letters sort before other characters, and runs of digits
/// compare by numeric value.
fn yaml_key_order(a: &str, b: &str) -> Ordering {
    if yaml_key_less(a, b) {
        Ordering::Less
    } else if yaml_key_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn yaml_key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let digit_value = |c: char| i64::from(u32::from(c)).wrapping_sub(i64::from(u32::from('0')));
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            for j in (0..i).rev() {
                if !ar[j].is_numeric() {
                    break;
                }
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_numeric() {
            an = an.wrapping_mul(10).wrapping_add(digit_value(ar[ai]));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_numeric() {
            bn = bn.wrapping_mul(10).wrapping_add(digit_value(br[bi]));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// LinuxKit's own structs carry the same yaml and json tags, so both views write them alike.
/// A `runtime.interfaces` entry.
fn interface(i: &Interface) -> GoValue {
    Fields::new()
        .put_if("name", non_empty(&i.name))
        .put_if("add", non_empty(&i.add))
        .put_if("peer", non_empty(&i.peer))
        .put("createInRoot", GoValue::Bool(i.create_in_root))
        .done()
}

/// A `files` entry.
fn file(f: &File) -> GoValue {
    Fields::new()
        .put("path", str(&f.path))
        .put("directory", GoValue::Bool(f.directory))
        .put_if("symlink", non_empty(&f.symlink))
        .put_if("contents", f.contents.as_deref().map(str))
        .put_if("source", non_empty(&f.source))
        .put_if("metadata", non_empty(&f.metadata))
        .put("optional", GoValue::Bool(f.optional))
        .put_if("mode", non_empty(&f.mode))
        .put_if("uid", f.uid.as_ref().map(id))
        .put_if("gid", f.gid.as_ref().map(id))
        .done()
}

/// A `volumes` entry.
fn volume(v: &Volume) -> GoValue {
    Fields::new()
        .put("name", str(&v.name))
        .put_if("image", non_empty(&v.image))
        .put_if("readonly", v.readonly.then_some(GoValue::Bool(true)))
        .put_if("format", non_empty(&v.format))
        .put_if("platforms", (!v.platforms.is_empty()).then(|| strings(&v.platforms)))
        .done()
}

/// The YAML view (yaml.v2 rules).
mod yaml {
    use super::*;

    pub(super) fn moby(m: &Moby) -> GoValue {
        let images = |list: &[Image]| GoValue::Seq(list.iter().map(image).collect());
        Fields::new()
            .put("kernel", kernel(&m.kernel))
            .put("init", GoValue::Seq(m.init.iter().map(|i| expanded(i)).collect()))
            .put("onboot", images(&m.onboot))
            .put("onshutdown", images(&m.onshutdown))
            .put("services", images(&m.services))
            .put("files", GoValue::Seq(m.files.iter().map(file).collect()))
            .put("volumes", GoValue::Seq(m.volumes.iter().map(volume).collect()))
            .done()
    }

    fn kernel(k: &Kernel) -> GoValue {
        let image = if k.image.is_empty() {
            str("")
        } else {
            expanded(&k.image)
        };
        Fields::new()
            .put("image", image)
            .put_if("cmdline", non_empty(&k.cmdline))
            .put_if("binary", non_empty(&k.binary))
            .put_if("tar", k.tar.as_deref().map(str))
            .put_if("ucode", k.ucode.as_deref().map(str))
            .done()
    }

    fn list(value: &Option<Vec<String>>) -> Option<GoValue> {
        value.as_deref().map(strings)
    }

    fn image(i: &Image) -> GoValue {
        let c = &i.config;
        Fields::new()
            .put("name", str(&i.name))
            .put("image", expanded(&i.image))
            .put_if("capabilities", list(&c.capabilities))
            .put_if("capabilities.add", list(&c.capabilities_add))
            .put_if("ambient", list(&c.ambient))
            .put_if("mounts", c.mounts.as_deref().map(mounts))
            .put_if("binds", list(&c.binds))
            .put_if("binds.add", list(&c.binds_add))
            .put_if(
                "devices",
                c.devices
                    .as_deref()
                    .map(|d| GoValue::Seq(d.iter().map(device).collect())),
            )
            .put_if("tmpfs", list(&c.tmpfs))
            .put_if("command", list(&c.command))
            .put_if("env", list(&c.env))
            .put_if("cwd", non_empty(&c.cwd))
            .put_if("net", non_empty(&c.net))
            .put_if("pid", non_empty(&c.pid))
            .put_if("ipc", non_empty(&c.ipc))
            .put_if("uts", non_empty(&c.uts))
            .put_if("userns", non_empty(&c.userns))
            .put_if("hostname", non_empty(&c.hostname))
            .put_if("readonly", c.readonly.map(GoValue::Bool))
            .put_if("maskedPaths", list(&c.masked_paths))
            .put_if("readonlyPaths", list(&c.readonly_paths))
            .put_if("uid", c.uid.as_ref().map(id))
            .put_if("gid", c.gid.as_ref().map(id))
            .put_if(
                "additionalGids",
                c.additional_gids
                    .as_deref()
                    .map(|g| GoValue::Seq(g.iter().map(id).collect())),
            )
            .put_if("noNewPrivileges", c.no_new_privileges.map(GoValue::Bool))
            .put_if("oomScoreAdj", c.oom_score_adj.map(GoValue::Int))
            .put_if("rootfsPropagation", c.rootfs_propagation.as_deref().map(str))
            .put_if("cgroupsPath", c.cgroups_path.as_deref().map(str))
            .put_if("resources", c.resources.as_ref().map(resources))
            .put_if("sysctl", c.sysctl.as_ref().map(yaml_string_map))
            .put_if("rlimits", list(&c.rlimits))
            .put_if("uidMappings", c.uid_mappings.as_deref().map(id_mappings))
            .put_if("gidMappings", c.gid_mappings.as_deref().map(id_mappings))
            .put_if("annotations", c.annotations.as_ref().map(yaml_string_map))
            .put_if("runtime", c.runtime.as_ref().map(runtime))
            .done()
    }

    fn mounts(list: &[Mount]) -> GoValue {
        GoValue::Seq(list.iter().map(mount).collect())
    }

    /// runtime-spec `Mount`: lower-cased field names, every field.
    fn mount(m: &Mount) -> GoValue {
        Fields::new()
            .put("destination", str(&m.destination))
            .put("type", str(&m.kind))
            .put("source", str(&m.source))
            .put("options", strings(m.options.as_deref().unwrap_or_default()))
            .put("uidmappings", id_mappings(m.uidmappings.as_deref().unwrap_or_default()))
            .put("gidmappings", id_mappings(m.gidmappings.as_deref().unwrap_or_default()))
            .done()
    }

    fn id_mappings(list: &[IdMapping]) -> GoValue {
        GoValue::Seq(
            list.iter()
                .map(|m| {
                    Fields::new()
                        .put("containerid", GoValue::Uint(u64::from(m.container_id)))
                        .put("hostid", GoValue::Uint(u64::from(m.host_id)))
                        .put("size", GoValue::Uint(u64::from(m.size)))
                        .done()
                })
                .collect(),
        )
    }

    fn device(d: &Device) -> GoValue {
        Fields::new()
            .put("path", str(&d.path))
            .put("type", str(&d.kind))
            .put("major", GoValue::Int(d.major))
            .put("minor", GoValue::Int(d.minor))
            .put_if("mode", non_empty(&d.mode))
            .done()
    }

    /// runtime-spec `LinuxResources` (v1.2.1), every field.
    fn resources(r: &Resources) -> GoValue {
        let seq = |items: Vec<GoValue>| GoValue::Seq(items);
        Fields::new()
            .put("devices", seq(r.devices.iter().flatten().map(device_cgroup).collect()))
            .put("memory", opt(&r.memory, memory))
            .put("cpu", opt(&r.cpu, cpu))
            .put(
                "pids",
                opt(&r.pids, |p| Fields::new().put("limit", GoValue::Int(p.limit)).done()),
            )
            .put("blockio", opt(&r.blockio, block_io))
            .put(
                "hugepagelimits",
                seq(r.hugepage_limits.iter().flatten().map(hugepage).collect()),
            )
            .put("network", opt(&r.network, network))
            .put("rdma", GoValue::Map(Vec::new()))
            .put("unified", GoValue::Map(Vec::new()))
            .done()
    }

    fn device_cgroup(d: &DeviceCgroup) -> GoValue {
        Fields::new()
            .put("allow", GoValue::Bool(d.allow))
            .put("type", str(d.kind.as_deref().unwrap_or_default()))
            .put("major", int(&d.major))
            .put("minor", int(&d.minor))
            .put("access", str(d.access.as_deref().unwrap_or_default()))
            .done()
    }

    fn memory(m: &Memory) -> GoValue {
        Fields::new()
            .put("limit", int(&m.limit))
            .put("reservation", int(&m.reservation))
            .put("swap", int(&m.swap))
            .put("kernel", int(&m.kernel))
            .put("kerneltcp", int(&m.kernel_tcp))
            .put("swappiness", uint(&m.swappiness))
            .put("disableoomkiller", opt(&m.disable_oom_killer, |b| GoValue::Bool(*b)))
            .put("usehierarchy", GoValue::Null)
            .put("checkbeforeupdate", GoValue::Null)
            .done()
    }

    fn cpu(c: &Cpu) -> GoValue {
        Fields::new()
            .put("shares", uint(&c.shares))
            .put("quota", int(&c.quota))
            .put("burst", GoValue::Null)
            .put("period", uint(&c.period))
            .put("realtimeruntime", int(&c.realtime_runtime))
            .put("realtimeperiod", uint(&c.realtime_period))
            .put("cpus", str(c.cpus.as_deref().unwrap_or_default()))
            .put("mems", str(c.mems.as_deref().unwrap_or_default()))
            .put("idle", GoValue::Null)
            .done()
    }

    fn block_io(b: &BlockIo) -> GoValue {
        let weight = |w: &Option<u16>| opt(w, |w| GoValue::Uint(u64::from(*w)));
        let throttle =
            |list: &Option<Vec<ThrottleDevice>>| GoValue::Seq(list.iter().flatten().map(throttle_device).collect());
        Fields::new()
            .put("weight", weight(&b.weight))
            .put("leafweight", weight(&b.leaf_weight))
            .put(
                "weightdevice",
                GoValue::Seq(b.weight_device.iter().flatten().map(weight_device).collect()),
            )
            .put("throttlereadbpsdevice", throttle(&b.throttle_read_bps_device))
            .put("throttlewritebpsdevice", throttle(&b.throttle_write_bps_device))
            .put("throttlereadiopsdevice", throttle(&b.throttle_read_iops_device))
            .put("throttlewriteiopsdevice", throttle(&b.throttle_write_iops_device))
            .done()
    }

    /// The embedded `LinuxBlockIODevice` has no `inline` tag, so yaml.v2 nests it under its
    /// lower-cased type name.
    fn block_io_device(major: i64, minor: i64) -> GoValue {
        Fields::new()
            .put("major", GoValue::Int(major))
            .put("minor", GoValue::Int(minor))
            .done()
    }

    fn weight_device(d: &WeightDevice) -> GoValue {
        let weight = |w: &Option<u16>| opt(w, |w| GoValue::Uint(u64::from(*w)));
        Fields::new()
            .put("linuxblockiodevice", block_io_device(d.major, d.minor))
            .put("weight", weight(&d.weight))
            .put("leafweight", weight(&d.leaf_weight))
            .done()
    }

    fn throttle_device(d: &ThrottleDevice) -> GoValue {
        Fields::new()
            .put("linuxblockiodevice", block_io_device(d.major, d.minor))
            .put("rate", GoValue::Uint(d.rate))
            .done()
    }

    fn hugepage(h: &HugepageLimit) -> GoValue {
        Fields::new()
            .put("pagesize", page_size(&h.page_size))
            .put("limit", GoValue::Uint(h.limit))
            .done()
    }

    fn network(n: &Network) -> GoValue {
        Fields::new()
            .put("classid", opt(&n.class_id, |c| GoValue::Uint(u64::from(*c))))
            .put(
                "priorities",
                GoValue::Seq(
                    n.priorities
                        .iter()
                        .flatten()
                        .map(|p| {
                            Fields::new()
                                .put("name", str(&p.name))
                                .put("priority", GoValue::Uint(u64::from(p.priority)))
                                .done()
                        })
                        .collect(),
                ),
            )
            .done()
    }

    fn runtime(r: &Runtime) -> GoValue {
        let ns = &r.bind_ns;
        let bind_ns = Fields::new()
            .put_if("cgroup", ns.cgroup.as_deref().map(str))
            .put_if("ipc", ns.ipc.as_deref().map(str))
            .put_if("mnt", ns.mnt.as_deref().map(str))
            .put_if("net", ns.net.as_deref().map(str))
            .put_if("pid", ns.pid.as_deref().map(str))
            .put_if("user", ns.user.as_deref().map(str))
            .put_if("uts", ns.uts.as_deref().map(str));
        // `bindNS,omitempty` on a struct: yaml.v2 leaves it out when every field is nil.
        let bind_ns = (!bind_ns.0.is_empty()).then(|| bind_ns.done());
        Fields::new()
            .put_if("cgroups", list(&r.cgroups))
            .put_if("mounts", r.mounts.as_deref().map(mounts))
            .put_if("mkdir", list(&r.mkdir))
            .put_if(
                "interfaces",
                r.interfaces
                    .as_deref()
                    .map(|i| GoValue::Seq(i.iter().map(interface).collect())),
            )
            .put_if("bindNS", bind_ns)
            .put_if("namespace", r.namespace.as_deref().map(str))
            .done()
    }
}

/// The JSON view (encoding/json rules) and Go's indented JSON writer.
mod json {
    use super::*;

    /// A list that LinuxKit's merge leaves nil when empty.
    fn nil_if_empty(items: Vec<GoValue>) -> GoValue {
        if items.is_empty() {
            GoValue::Null
        } else {
            GoValue::Seq(items)
        }
    }

    /// `omitempty` on a slice: absent when nil or empty.
    fn non_empty_seq(items: Vec<GoValue>) -> Option<GoValue> {
        (!items.is_empty()).then_some(GoValue::Seq(items))
    }

    pub(super) fn moby(m: &Moby) -> GoValue {
        let images = |list: &[Image]| nil_if_empty(list.iter().map(image).collect());
        Fields::new()
            .put("kernel", kernel(&m.kernel))
            .put("init", nil_if_empty(m.init.iter().map(|i| expanded(i)).collect()))
            .put("onboot", images(&m.onboot))
            .put("onshutdown", images(&m.onshutdown))
            .put("services", images(&m.services))
            .put("files", nil_if_empty(m.files.iter().map(file).collect()))
            .put("volumes", nil_if_empty(m.volumes.iter().map(volume).collect()))
            .done()
    }

    fn kernel(k: &Kernel) -> GoValue {
        let image = if k.image.is_empty() {
            str("")
        } else {
            expanded(&k.image)
        };
        Fields::new()
            .put("image", image)
            .put_if("cmdline", non_empty(&k.cmdline))
            .put_if("binary", non_empty(&k.binary))
            .put_if("tar", k.tar.as_deref().map(str))
            .put_if("ucode", k.ucode.as_deref().map(str))
            .done()
    }

    fn list(value: &Option<Vec<String>>) -> Option<GoValue> {
        value.as_deref().map(strings)
    }

    fn string_map(map: &BTreeMap<String, String>) -> GoValue {
        // encoding/json sorts map keys by their bytes, as a BTreeMap iterates.
        GoValue::Map(map.iter().map(|(k, v)| (k.clone(), str(v))).collect())
    }

    fn image(i: &Image) -> GoValue {
        let c = &i.config;
        Fields::new()
            .put("name", str(&i.name))
            .put("image", expanded(&i.image))
            .put_if("capabilities", list(&c.capabilities))
            .put_if("capabilities.add", list(&c.capabilities_add))
            .put_if("ambient", list(&c.ambient))
            .put_if(
                "mounts",
                c.mounts.as_deref().map(|m| GoValue::Seq(m.iter().map(mount).collect())),
            )
            .put_if("binds", list(&c.binds))
            .put_if("binds.add", list(&c.binds_add))
            .put_if(
                "devices",
                c.devices
                    .as_deref()
                    .map(|d| GoValue::Seq(d.iter().map(device).collect())),
            )
            .put_if("tmpfs", list(&c.tmpfs))
            .put_if("command", list(&c.command))
            .put_if("env", list(&c.env))
            .put_if("cwd", non_empty(&c.cwd))
            .put_if("net", non_empty(&c.net))
            .put_if("pid", non_empty(&c.pid))
            .put_if("ipc", non_empty(&c.ipc))
            .put_if("uts", non_empty(&c.uts))
            .put_if("userns", non_empty(&c.userns))
            .put_if("hostname", non_empty(&c.hostname))
            .put_if("readonly", c.readonly.map(GoValue::Bool))
            .put_if("maskedPaths", list(&c.masked_paths))
            .put_if("readonlyPaths", list(&c.readonly_paths))
            .put_if("uid", c.uid.as_ref().map(id))
            .put_if("gid", c.gid.as_ref().map(id))
            .put_if(
                "additionalGids",
                c.additional_gids
                    .as_deref()
                    .map(|g| GoValue::Seq(g.iter().map(id).collect())),
            )
            .put_if("noNewPrivileges", c.no_new_privileges.map(GoValue::Bool))
            .put_if("oomScoreAdj", c.oom_score_adj.map(GoValue::Int))
            .put_if("rootfsPropagation", c.rootfs_propagation.as_deref().map(str))
            .put_if("cgroupsPath", c.cgroups_path.as_deref().map(str))
            .put_if("resources", c.resources.as_ref().map(resources))
            .put_if("sysctl", c.sysctl.as_ref().map(string_map))
            .put_if("rlimits", list(&c.rlimits))
            .put_if(
                "uidMappings",
                c.uid_mappings
                    .as_deref()
                    .map(|m| GoValue::Seq(m.iter().map(id_mapping).collect())),
            )
            .put_if(
                "gidMappings",
                c.gid_mappings
                    .as_deref()
                    .map(|m| GoValue::Seq(m.iter().map(id_mapping).collect())),
            )
            .put_if("annotations", c.annotations.as_ref().map(string_map))
            .put_if("runtime", c.runtime.as_ref().map(runtime))
            .done()
    }

    fn mount(m: &Mount) -> GoValue {
        let mappings = |list: &Option<Vec<IdMapping>>| non_empty_seq(list.iter().flatten().map(id_mapping).collect());
        Fields::new()
            .put("destination", str(&m.destination))
            .put_if("type", non_empty(&m.kind))
            .put_if("source", non_empty(&m.source))
            .put_if(
                "options",
                non_empty_seq(m.options.iter().flatten().map(|o| str(o)).collect()),
            )
            .put_if("uidMappings", mappings(&m.uidmappings))
            .put_if("gidMappings", mappings(&m.gidmappings))
            .done()
    }

    fn id_mapping(m: &IdMapping) -> GoValue {
        Fields::new()
            .put("containerID", GoValue::Uint(u64::from(m.container_id)))
            .put("hostID", GoValue::Uint(u64::from(m.host_id)))
            .put("size", GoValue::Uint(u64::from(m.size)))
            .done()
    }

    fn device(d: &Device) -> GoValue {
        Fields::new()
            .put("path", str(&d.path))
            .put("type", str(&d.kind))
            .put("major", GoValue::Int(d.major))
            .put("minor", GoValue::Int(d.minor))
            .put_if("mode", non_empty(&d.mode))
            .done()
    }

    fn resources(r: &Resources) -> GoValue {
        Fields::new()
            .put_if(
                "devices",
                non_empty_seq(r.devices.iter().flatten().map(device_cgroup).collect()),
            )
            .put_if("memory", r.memory.as_ref().map(memory))
            .put_if("cpu", r.cpu.as_ref().map(cpu))
            .put_if(
                "pids",
                r.pids
                    .as_ref()
                    .map(|p| Fields::new().put("limit", GoValue::Int(p.limit)).done()),
            )
            .put_if("blockIO", r.blockio.as_ref().map(block_io))
            .put_if(
                "hugepageLimits",
                non_empty_seq(r.hugepage_limits.iter().flatten().map(hugepage).collect()),
            )
            .put_if("network", r.network.as_ref().map(network))
            .done()
    }

    fn device_cgroup(d: &DeviceCgroup) -> GoValue {
        Fields::new()
            .put("allow", GoValue::Bool(d.allow))
            .put_if("type", d.kind.as_deref().and_then(non_empty))
            .put_if("major", d.major.map(GoValue::Int))
            .put_if("minor", d.minor.map(GoValue::Int))
            .put_if("access", d.access.as_deref().and_then(non_empty))
            .done()
    }

    fn memory(m: &Memory) -> GoValue {
        Fields::new()
            .put_if("limit", m.limit.map(GoValue::Int))
            .put_if("reservation", m.reservation.map(GoValue::Int))
            .put_if("swap", m.swap.map(GoValue::Int))
            .put_if("kernel", m.kernel.map(GoValue::Int))
            .put_if("kernelTCP", m.kernel_tcp.map(GoValue::Int))
            .put_if("swappiness", m.swappiness.map(GoValue::Uint))
            .put_if("disableOOMKiller", m.disable_oom_killer.map(GoValue::Bool))
            .done()
    }

    fn cpu(c: &Cpu) -> GoValue {
        Fields::new()
            .put_if("shares", c.shares.map(GoValue::Uint))
            .put_if("quota", c.quota.map(GoValue::Int))
            .put_if("period", c.period.map(GoValue::Uint))
            .put_if("realtimeRuntime", c.realtime_runtime.map(GoValue::Int))
            .put_if("realtimePeriod", c.realtime_period.map(GoValue::Uint))
            .put_if("cpus", c.cpus.as_deref().and_then(non_empty))
            .put_if("mems", c.mems.as_deref().and_then(non_empty))
            .done()
    }

    fn block_io(b: &BlockIo) -> GoValue {
        let weight = |w: &Option<u16>| w.map(|w| GoValue::Uint(u64::from(w)));
        let throttle = |list: &Option<Vec<ThrottleDevice>>| {
            non_empty_seq(
                list.iter()
                    .flatten()
                    .map(|d| {
                        Fields::new()
                            .put("major", GoValue::Int(d.major))
                            .put("minor", GoValue::Int(d.minor))
                            .put("rate", GoValue::Uint(d.rate))
                            .done()
                    })
                    .collect(),
            )
        };
        Fields::new()
            .put_if("weight", weight(&b.weight))
            .put_if("leafWeight", weight(&b.leaf_weight))
            .put_if(
                "weightDevice",
                non_empty_seq(
                    b.weight_device
                        .iter()
                        .flatten()
                        .map(|d| {
                            Fields::new()
                                .put("major", GoValue::Int(d.major))
                                .put("minor", GoValue::Int(d.minor))
                                .put_if("weight", weight(&d.weight))
                                .put_if("leafWeight", weight(&d.leaf_weight))
                                .done()
                        })
                        .collect(),
                ),
            )
            .put_if("throttleReadBpsDevice", throttle(&b.throttle_read_bps_device))
            .put_if("throttleWriteBpsDevice", throttle(&b.throttle_write_bps_device))
            .put_if("throttleReadIOPSDevice", throttle(&b.throttle_read_iops_device))
            .put_if("throttleWriteIOPSDevice", throttle(&b.throttle_write_iops_device))
            .done()
    }

    fn hugepage(h: &HugepageLimit) -> GoValue {
        Fields::new()
            .put("pageSize", page_size(&h.page_size))
            .put("limit", GoValue::Uint(h.limit))
            .done()
    }

    fn network(n: &Network) -> GoValue {
        Fields::new()
            .put_if("classID", n.class_id.map(|c| GoValue::Uint(u64::from(c))))
            .put_if(
                "priorities",
                non_empty_seq(
                    n.priorities
                        .iter()
                        .flatten()
                        .map(|p| {
                            Fields::new()
                                .put("name", str(&p.name))
                                .put("priority", GoValue::Uint(u64::from(p.priority)))
                                .done()
                        })
                        .collect(),
                ),
            )
            .done()
    }

    fn runtime(r: &Runtime) -> GoValue {
        let ns = &r.bind_ns;
        // A struct is never omitted by encoding/json: `bindNS` is always written.
        let bind_ns = Fields::new()
            .put_if("cgroup", ns.cgroup.as_deref().map(str))
            .put_if("ipc", ns.ipc.as_deref().map(str))
            .put_if("mnt", ns.mnt.as_deref().map(str))
            .put_if("net", ns.net.as_deref().map(str))
            .put_if("pid", ns.pid.as_deref().map(str))
            .put_if("user", ns.user.as_deref().map(str))
            .put_if("uts", ns.uts.as_deref().map(str))
            .done();
        Fields::new()
            .put_if("cgroups", list(&r.cgroups))
            .put_if(
                "mounts",
                r.mounts.as_deref().map(|m| GoValue::Seq(m.iter().map(mount).collect())),
            )
            .put_if("mkdir", list(&r.mkdir))
            .put_if(
                "interfaces",
                r.interfaces
                    .as_deref()
                    .map(|i| GoValue::Seq(i.iter().map(interface).collect())),
            )
            .put("bindNS", bind_ns)
            .put_if("namespace", r.namespace.as_deref().map(str))
            .done()
    }

    /// `json.MarshalIndent(v, "", "    ")`.
    pub(super) fn render(value: &GoValue) -> String {
        let mut out = String::new();
        write(value, 0, &mut out);
        out
    }

    fn indent(level: usize, out: &mut String) {
        out.push('\n');
        for _ in 0..level {
            out.push_str("    ");
        }
    }

    fn write(value: &GoValue, level: usize, out: &mut String) {
        match value {
            GoValue::Null => out.push_str("null"),
            GoValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            GoValue::Int(i) => out.push_str(&i.to_string()),
            GoValue::Uint(u) => out.push_str(&u.to_string()),
            GoValue::Str(s) => crate::gojson::quote(s, out),
            GoValue::Seq(items) if items.is_empty() => out.push_str("[]"),
            GoValue::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(level + 1, out);
                    write(item, level + 1, out);
                }
                indent(level, out);
                out.push(']');
            }
            GoValue::Map(pairs) if pairs.is_empty() => out.push_str("{}"),
            GoValue::Map(pairs) => {
                out.push('{');
                for (i, (key, item)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(level + 1, out);
                    crate::gojson::quote(key, out);
                    out.push_str(": ");
                    write(item, level + 1, out);
                }
                indent(level, out);
                out.push('}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_v2_sorts_keys_naturally() {
        let mut keys = vec!["b", "a10", "a9", "A", "_x", "a", "a09", "1"];
        keys.sort_by(|a, b| yaml_key_order(a, b));
        assert_eq!(keys, ["_x", "1", "A", "a", "a9", "a09", "a10", "b"]);
    }

    #[test]
    fn empty_spec() {
        let m = Moby::default();
        assert_eq!(
            String::from_utf8(metadata(&m, MetadataFormat::Yaml)).unwrap(),
            "kernel:\n  image: \"\"\ninit: []\nonboot: []\nonshutdown: []\nservices: []\nfiles: []\nvolumes: []\n"
        );
        assert_eq!(
            String::from_utf8(metadata(&m, MetadataFormat::Json)).unwrap(),
            "{\n    \"kernel\": {\n        \"image\": \"\"\n    },\n    \"init\": null,\n    \"onboot\": null,\n    \"onshutdown\": null,\n    \"services\": null,\n    \"files\": null,\n    \"volumes\": null\n}"
        );
    }
}
