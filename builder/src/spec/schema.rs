//! LinuxKit's JSON schema (moby/schema.go) as Rust data, and the walk that checks a YAML tree
//! against it.
//!
//! The walk reports what gojsonschema would report (unknown keys, wrong types, missing `name`/`image`)
//! plus what LinuxKit's typed yaml.v3 decoding would reject (integers out of range, non-string keys),
//! and at the same time builds the JSON value that the serde model is read from.
//!
//! One deliberate difference: LinuxKit decodes runtime-spec structures by lower-cased Go field names,
//! so camelCase schema keys such as `kernelTCP`, `hugepageLimits` or `hostID` are accepted and then
//! silently dropped. We keep them (see docs/compat.md).

use std::collections::HashMap;

use serde_json::{Map, Number, Value as Json};

use super::error::ErrorKind;
use super::fields::did_you_mean;
use super::yaml::{JsonType, Mark, Node, Value};

/// The type of a schema position.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Str,
    Bool,
    Int(IntRange),
    /// `anyOf: [string, integer]` (uid, gid). The integer is a 32-bit id: LinuxKit truncates a larger
    /// one silently (`-1` becomes 4294967295), we refuse it here, with its position.
    StrOrInt,
    /// `enum` of strings.
    Enum(&'static [&'static str]),
    List(&'static Ty),
    /// `mapstring`: an object whose values are strings.
    StrMap,
    Object(&'static Object),
}

/// The Go integer type a schema `integer` is decoded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntRange {
    I64,
    U64,
    U32,
    U16,
}

impl IntRange {
    fn bounds(self) -> (i128, i128) {
        match self {
            IntRange::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
            IntRange::U64 => (0, i128::from(u64::MAX)),
            IntRange::U32 => (0, i128::from(u32::MAX)),
            IntRange::U16 => (0, i128::from(u16::MAX)),
        }
    }
}

/// An object type: its fields and which are required.
#[derive(Debug)]
pub(crate) struct Object {
    pub fields: &'static [Field],
    pub required: &'static [&'static str],
}

/// One property of an object type.
#[derive(Debug)]
pub(crate) struct Field {
    pub key: &'static str,
    pub ty: Ty,
}

const fn kept(key: &'static str, ty: Ty) -> Field {
    Field { key, ty }
}

const STRINGS: Ty = Ty::List(&Ty::Str);
const I64: Ty = Ty::Int(IntRange::I64);
const U64: Ty = Ty::Int(IntRange::U64);
const U32: Ty = Ty::Int(IntRange::U32);
const U16: Ty = Ty::Int(IntRange::U16);

static KERNEL: Object = Object {
    fields: &[
        kept("image", Ty::Str),
        kept("cmdline", Ty::Str),
        kept("binary", Ty::Str),
        kept("tar", Ty::Str),
        kept("ucode", Ty::Str),
    ],
    required: &[],
};

static FILE: Object = Object {
    fields: &[
        kept("path", Ty::Str),
        kept("directory", Ty::Bool),
        kept("symlink", Ty::Str),
        kept("contents", Ty::Str),
        kept("source", Ty::Str),
        kept("metadata", Ty::Str),
        kept("optional", Ty::Bool),
        kept("mode", Ty::Str),
        kept("uid", Ty::StrOrInt),
        kept("gid", Ty::StrOrInt),
    ],
    required: &[],
};

static VOLUME: Object = Object {
    fields: &[
        kept("name", Ty::Str),
        kept("image", Ty::Str),
        kept("readonly", Ty::Bool),
        kept("format", Ty::Enum(&["oci", "filesystem"])),
        kept("platforms", STRINGS),
    ],
    required: &[],
};

static TRUST: Object = Object {
    fields: &[kept("image", STRINGS), kept("org", STRINGS)],
    required: &[],
};

static ID_MAPPING: Object = Object {
    fields: &[kept("hostID", U32), kept("containerID", U32), kept("size", U32)],
    required: &[],
};

static MOUNT: Object = Object {
    fields: &[
        kept("destination", Ty::Str),
        kept("type", Ty::Str),
        kept("source", Ty::Str),
        kept("options", STRINGS),
        kept("uidmappings", Ty::List(&Ty::Object(&ID_MAPPING))),
        kept("gidmappings", Ty::List(&Ty::Object(&ID_MAPPING))),
    ],
    required: &[],
};

static DEVICE: Object = Object {
    fields: &[
        kept("path", Ty::Str),
        kept("type", Ty::Str),
        kept("major", I64),
        kept("minor", I64),
        kept("mode", Ty::Str),
    ],
    required: &[],
};

static DEVICE_CGROUP: Object = Object {
    fields: &[
        kept("allow", Ty::Bool),
        kept("type", Ty::Str),
        kept("major", I64),
        kept("minor", I64),
        kept("access", Ty::Str),
    ],
    required: &[],
};

static MEMORY: Object = Object {
    fields: &[
        kept("limit", I64),
        kept("reservation", I64),
        kept("swap", I64),
        kept("kernel", I64),
        kept("kernelTCP", I64),
        kept("swappiness", U64),
        kept("disableOOMKiller", Ty::Bool),
    ],
    required: &[],
};

static CPU: Object = Object {
    fields: &[
        kept("shares", U64),
        kept("quota", I64),
        kept("period", U64),
        kept("realtimeRuntime", I64),
        kept("realtimePeriod", U64),
        kept("cpus", Ty::Str),
        kept("mems", Ty::Str),
    ],
    required: &[],
};

static PIDS: Object = Object {
    fields: &[kept("limit", I64)],
    required: &[],
};

static WEIGHT_DEVICE: Object = Object {
    fields: &[
        kept("major", I64),
        kept("minor", I64),
        kept("weight", U16),
        kept("leafWeight", U16),
    ],
    required: &[],
};

static THROTTLE_DEVICE: Object = Object {
    fields: &[kept("major", I64), kept("minor", I64), kept("rate", U64)],
    required: &[],
};

const THROTTLE_DEVICES: Ty = Ty::List(&Ty::Object(&THROTTLE_DEVICE));

static BLOCK_IO: Object = Object {
    fields: &[
        kept("weight", U16),
        kept("leafWeight", U16),
        kept("weightDevice", Ty::List(&Ty::Object(&WEIGHT_DEVICE))),
        kept("throttleReadBpsDevice", THROTTLE_DEVICES),
        kept("throttleWriteBpsDevice", THROTTLE_DEVICES),
        kept("throttleReadIOPSDevice", THROTTLE_DEVICES),
        kept("throttleWriteIOPSDevice", THROTTLE_DEVICES),
    ],
    required: &[],
};

static HUGEPAGE_LIMIT: Object = Object {
    fields: &[kept("pageSize", U64), kept("limit", U64)],
    required: &[],
};

static INTERFACE_PRIORITY: Object = Object {
    fields: &[kept("name", Ty::Str), kept("priority", U32)],
    required: &[],
};

static NETWORK: Object = Object {
    fields: &[
        kept("classID", U32),
        kept("priorities", Ty::List(&Ty::Object(&INTERFACE_PRIORITY))),
    ],
    required: &[],
};

static RESOURCES: Object = Object {
    fields: &[
        kept("devices", Ty::List(&Ty::Object(&DEVICE_CGROUP))),
        kept("memory", Ty::Object(&MEMORY)),
        kept("cpu", Ty::Object(&CPU)),
        kept("pids", Ty::Object(&PIDS)),
        kept("blockio", Ty::Object(&BLOCK_IO)),
        kept("hugepageLimits", Ty::List(&Ty::Object(&HUGEPAGE_LIMIT))),
        kept("network", Ty::Object(&NETWORK)),
    ],
    required: &[],
};

static INTERFACE: Object = Object {
    fields: &[
        kept("name", Ty::Str),
        kept("add", Ty::Str),
        kept("peer", Ty::Str),
        kept("createInRoot", Ty::Bool),
    ],
    required: &[],
};

static NAMESPACES: Object = Object {
    fields: &[
        kept("cgroup", Ty::Str),
        kept("ipc", Ty::Str),
        kept("mnt", Ty::Str),
        kept("net", Ty::Str),
        kept("pid", Ty::Str),
        kept("user", Ty::Str),
        kept("uts", Ty::Str),
    ],
    required: &[],
};

static RUNTIME: Object = Object {
    fields: &[
        kept("cgroups", STRINGS),
        kept("mounts", Ty::List(&Ty::Object(&MOUNT))),
        kept("mkdir", STRINGS),
        kept("interfaces", Ty::List(&Ty::Object(&INTERFACE))),
        kept("bindNS", Ty::Object(&NAMESPACES)),
        kept("namespace", Ty::Str),
    ],
    required: &[],
};

/// A container entry of `onboot`, `onshutdown` or `services`.
pub(crate) static IMAGE: Object = Object {
    fields: &[
        kept("name", Ty::Str),
        kept("image", Ty::Str),
        kept("capabilities", STRINGS),
        kept("capabilities.add", STRINGS),
        kept("ambient", STRINGS),
        kept("mounts", Ty::List(&Ty::Object(&MOUNT))),
        kept("binds", STRINGS),
        kept("binds.add", STRINGS),
        kept("devices", Ty::List(&Ty::Object(&DEVICE))),
        kept("tmpfs", STRINGS),
        kept("command", STRINGS),
        kept("env", STRINGS),
        kept("cwd", Ty::Str),
        kept("net", Ty::Str),
        kept("pid", Ty::Str),
        kept("ipc", Ty::Str),
        kept("uts", Ty::Str),
        kept("userns", Ty::Str),
        kept("readonly", Ty::Bool),
        kept("maskedPaths", STRINGS),
        kept("readonlyPaths", STRINGS),
        kept("uid", Ty::StrOrInt),
        kept("gid", Ty::StrOrInt),
        kept("additionalGids", Ty::List(&Ty::StrOrInt)),
        kept("noNewPrivileges", Ty::Bool),
        kept("hostname", Ty::Str),
        kept("oomScoreAdj", I64),
        kept("rootfsPropagation", Ty::Str),
        kept("cgroupsPath", Ty::Str),
        kept("resources", Ty::Object(&RESOURCES)),
        kept("sysctl", Ty::StrMap),
        kept("rlimits", STRINGS),
        kept("uidMappings", Ty::List(&Ty::Object(&ID_MAPPING))),
        kept("gidMappings", Ty::List(&Ty::Object(&ID_MAPPING))),
        kept("annotations", Ty::StrMap),
        kept("runtime", Ty::Object(&RUNTIME)),
    ],
    required: &["name", "image"],
};

const IMAGES: Ty = Ty::List(&Ty::Object(&IMAGE));

/// The whole document.
pub(crate) static MOBY: Object = Object {
    fields: &[
        kept("kernel", Ty::Object(&KERNEL)),
        kept("init", STRINGS),
        kept("onboot", IMAGES),
        kept("onshutdown", IMAGES),
        kept("services", IMAGES),
        kept("trust", Ty::Object(&TRUST)),
        kept("files", Ty::List(&Ty::Object(&FILE))),
        kept("volumes", Ty::List(&Ty::Object(&VOLUME))),
    ],
    required: &[],
};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A schema property.
    Field(String),
    /// A list index.
    Index(usize),
    /// A user-chosen key of a string map (sysctl, annotations).
    Key(String),
}

/// Renders a path our way: `onboot[2].capabilities[1]`, `onboot[0].sysctl["net.ipv4.ip_forward"]`.
pub(crate) fn render_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(key) => {
                let simple =
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if simple {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                } else {
                    out.push_str(&format!("[{key:?}]"));
                }
            }
        }
    }
    out
}

/// Renders a path as gojsonschema's error field: `onboot.0.sysctl.net.ipv4.ip_forward`, `(root)`.
fn render_linuxkit(root: &[&str], segs: &[Seg]) -> String {
    let parts: Vec<String> = root
        .iter()
        .map(|s| s.to_string())
        .chain(segs.iter().map(|seg| match seg {
            Seg::Field(name) | Seg::Key(name) => name.clone(),
            Seg::Index(i) => i.to_string(),
        }))
        .collect();
    if parts.is_empty() {
        "(root)".to_string()
    } else {
        parts.join(".")
    }
}

/// A problem found by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub mark: Mark,
    pub path: String,
    pub message: String,
    pub kind: ErrorKind,
    pub linuxkit: Vec<String>,
}

/// Where each value of a document was written, by rendered path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Positions {
    marks: HashMap<String, Mark>,
}

impl Positions {
    /// Records a position.
    pub fn insert(&mut self, path: String, mark: Mark) {
        self.marks.entry(path).or_insert(mark);
    }

    /// The mark of `path`, or of its nearest recorded ancestor, or the start of the document.
    pub fn find(&self, path: &str) -> Mark {
        let mut path = path;
        loop {
            if let Some(mark) = self.marks.get(path) {
                return *mark;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.marks.get("").copied().unwrap_or_default(),
            }
        }
    }
}

/// The result of checking one document against the schema.
pub(crate) struct Checked {
    /// The model's view of the document, or `None` when its top level is unusable.
    pub value: Option<Json>,
    pub problems: Vec<Problem>,
    pub positions: Positions,
    /// Paths with a schema problem: semantic checks skip them and everything below them.
    pub poisoned: Vec<String>,
}

/// Checks a document (or a label, with `linuxkit_root` naming where LinuxKit validates it).
pub(crate) struct Walker {
    linuxkit_root: &'static [&'static str],
    segs: Vec<Seg>,
    problems: Vec<Problem>,
    positions: Positions,
    poisoned: Vec<String>,
}

impl Walker {
    /// A walker for documents validated at the root.
    pub fn new(linuxkit_root: &'static [&'static str]) -> Walker {
        Walker {
            linuxkit_root,
            segs: Vec::new(),
            problems: Vec::new(),
            positions: Positions::default(),
            poisoned: Vec::new(),
        }
    }

    /// Checks a whole object, skipping the given keys (handled by the caller) and, when
    /// `check_required` is false, the required list.
    pub fn check_root(mut self, node: &Node, object: &'static Object, skip: &[&str], check_required: bool) -> Checked {
        self.positions.insert(String::new(), node.mark);
        let value = match &node.value {
            Value::Map(pairs) => Some(self.object(node, pairs, object, true, skip, check_required)),
            _ => None,
        };
        self.finish(value)
    }

    /// Finishes with a value computed elsewhere (or none).
    pub fn finish(self, value: Option<Json>) -> Checked {
        Checked {
            value,
            problems: self.problems,
            positions: self.positions,
            poisoned: self.poisoned,
        }
    }

    /// Records a problem at the current path (plus `extra` segments).
    pub fn problem(&mut self, mark: Mark, extra: Option<Seg>, kind: ErrorKind, message: String, linuxkit: Vec<String>) {
        let mut segs = self.segs.clone();
        segs.extend(extra);
        let path = render_path(&segs);
        if kind != ErrorKind::Semantic {
            self.poisoned.push(path.clone());
        }
        self.problems.push(Problem {
            mark,
            path,
            message,
            kind,
            linuxkit,
        });
    }

    fn here_linuxkit(&self) -> String {
        render_linuxkit(self.linuxkit_root, &self.segs)
    }

    /// Checks `node` against `ty`; returns its JSON form when it is valid and `decode` asks for it.
    fn check(&mut self, node: &Node, ty: Ty, decode: bool) -> Option<Json> {
        self.positions.insert(render_path(&self.segs), node.mark);
        let found = node.json_type();
        match ty {
            Ty::Str => self
                .expect(node, found, JsonType::String)
                .then(|| Json::String(node.as_str().unwrap_or_default().to_string())),
            Ty::Bool => match &node.value {
                Value::Scalar(s) if found == JsonType::Boolean => {
                    Some(Json::Bool(matches!(s.kind, super::yaml::ScalarKind::Bool(true))))
                }
                _ => {
                    self.expect(node, found, JsonType::Boolean);
                    None
                }
            },
            Ty::Int(range) => {
                if !self.expect(node, found, JsonType::Integer) {
                    return None;
                }
                if decode {
                    self.integer(node, range)
                } else {
                    Some(Json::Null)
                }
            }
            Ty::StrOrInt => self.string_or_integer(node, found, decode),
            Ty::Enum(allowed) => self.enumeration(node, allowed),
            Ty::List(item) => {
                let Value::Seq(items) = &node.value else {
                    self.expect(node, found, JsonType::Array);
                    return None;
                };
                let mut out = Vec::with_capacity(items.len());
                let mut all_valid = true;
                for (i, child) in items.iter().enumerate() {
                    self.segs.push(Seg::Index(i));
                    match self.check(child, *item, decode) {
                        Some(v) => out.push(v),
                        None => all_valid = false,
                    }
                    self.segs.pop();
                }
                if !all_valid {
                    // Dropping an item shifts the indices of the model's list: later checks must not
                    // report positions in it.
                    self.poisoned.push(render_path(&self.segs));
                }
                Some(Json::Array(out))
            }
            Ty::StrMap => {
                let Value::Map(pairs) = &node.value else {
                    self.expect(node, found, JsonType::Object);
                    return None;
                };
                let mut out = Map::new();
                for (key, value) in pairs {
                    let Some(name) = self.key(key) else { continue };
                    self.segs.push(Seg::Key(name.clone()));
                    if let Some(v) = self.check(value, Ty::Str, decode) {
                        out.insert(name, v);
                    }
                    self.segs.pop();
                }
                Some(Json::Object(out))
            }
            Ty::Object(object) => {
                let Value::Map(pairs) = &node.value else {
                    self.expect(node, found, JsonType::Object);
                    return None;
                };
                Some(self.object(node, pairs, object, decode, &[], true))
            }
        }
    }

    /// Checks the type of a node; reports and returns false on a mismatch.
    fn expect(&mut self, node: &Node, found: JsonType, expected: JsonType) -> bool {
        if found == expected {
            return true;
        }
        let field = self.here_linuxkit();
        // `mode: 0644` or `cmdline: 42` are strings to the user: say how to write them as such.
        let hint = match (&node.value, expected) {
            (Value::Scalar(scalar), JsonType::String) if found != JsonType::Null => {
                format!(" (quote it to make it a string: \"{}\")", scalar.text)
            }
            _ => String::new(),
        };
        self.problem(
            node.mark,
            None,
            ErrorKind::Schema,
            format!("expected {}, found {}{hint}", expected.described(), found.described()),
            vec![format!(
                "{field}: Invalid type. Expected: {}, given: {}",
                expected.schema_name(),
                found.schema_name()
            )],
        );
        false
    }

    fn integer(&mut self, node: &Node, range: IntRange) -> Option<Json> {
        let value = node.as_int()?;
        let (min, max) = range.bounds();
        if value < min || value > max {
            self.problem(
                node.mark,
                None,
                ErrorKind::Decode,
                format!("{value} is out of range: expected an integer from {min} to {max}"),
                Vec::new(),
            );
            return None;
        }
        json_int(value)
    }

    fn string_or_integer(&mut self, node: &Node, found: JsonType, decode: bool) -> Option<Json> {
        match found {
            JsonType::String => Some(Json::String(node.as_str().unwrap_or_default().to_string())),
            JsonType::Integer if decode => self.integer(node, IntRange::U32),
            JsonType::Integer => Some(Json::Null),
            _ => {
                let field = self.here_linuxkit();
                self.problem(
                    node.mark,
                    None,
                    ErrorKind::Schema,
                    format!("expected a string or an integer, found {}", found.described()),
                    vec![
                        format!("{field}: Must validate at least one schema (anyOf)"),
                        format!(
                            "{field}: Invalid type. Expected: string, given: {}",
                            found.schema_name()
                        ),
                    ],
                );
                None
            }
        }
    }

    fn enumeration(&mut self, node: &Node, allowed: &[&str]) -> Option<Json> {
        if let Some(text) = node.as_str() {
            if allowed.contains(&text) {
                return Some(Json::String(text.to_string()));
            }
        }
        let list = allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
        let found = match node.as_str() {
            Some(text) => format!("{text:?}"),
            None => node.json_type().described().to_string(),
        };
        let field = self.here_linuxkit();
        self.problem(
            node.mark,
            None,
            ErrorKind::Schema,
            format!("expected one of {list}, found {found}"),
            vec![format!("{field}: {field} must be one of the following: {list}")],
        );
        None
    }

    /// A mapping key's text; non-string keys are reported (LinuxKit crashes on them).
    fn key(&mut self, key: &Node) -> Option<String> {
        if let Some(text) = key.as_str() {
            return Some(text.to_string());
        }
        self.problem(
            key.mark,
            None,
            ErrorKind::Decode,
            format!(
                "mapping keys must be strings, found {}; quote the key",
                key.json_type().described()
            ),
            Vec::new(),
        );
        None
    }

    fn object(
        &mut self,
        node: &Node,
        pairs: &[(Node, Node)],
        object: &'static Object,
        decode: bool,
        skip: &[&str],
        check_required: bool,
    ) -> Json {
        let mut out = Map::new();
        for (key, value) in pairs {
            let Some(name) = self.key(key) else { continue };
            if skip.contains(&name.as_str()) {
                continue;
            }
            let Some(field) = object.fields.iter().find(|f| f.key == name) else {
                self.unknown_field(key, &name, object);
                continue;
            };
            self.segs.push(Seg::Field(name.clone()));
            if let Some(v) = self.check(value, field.ty, decode) {
                if decode {
                    out.insert(name, v);
                }
            }
            self.segs.pop();
        }
        for required in object.required {
            // The model cannot represent a missing required value; an empty one stands in for a
            // value that is missing or was reported as invalid.
            out.entry(required.to_string())
                .or_insert_with(|| Json::String(String::new()));
        }
        if check_required {
            for required in object.required {
                let present = pairs.iter().any(|(k, _)| k.as_str() == Some(required));
                if !present {
                    // Reported at the entry, but only the missing field is poisoned: the entry's
                    // other values are still checked.
                    let field = self.here_linuxkit();
                    let mut missing = self.segs.clone();
                    missing.push(Seg::Field(required.to_string()));
                    self.poisoned.push(render_path(&missing));
                    self.problems.push(Problem {
                        mark: node.mark,
                        path: render_path(&self.segs),
                        message: format!("missing required field {required:?}"),
                        kind: ErrorKind::Schema,
                        linuxkit: vec![format!("{field}: {required} is required")],
                    });
                }
            }
        }
        Json::Object(out)
    }

    fn unknown_field(&mut self, key: &Node, name: &str, object: &'static Object) {
        let hint = did_you_mean(name, object.fields.iter().map(|f| f.key))
            .map(|f| format!(" (did you mean {f:?}?)"))
            .unwrap_or_default();
        let field = self.here_linuxkit();
        self.problem(
            key.mark,
            Some(Seg::Field(name.to_string())),
            ErrorKind::Schema,
            format!("unknown field{hint}"),
            vec![format!("{field}: Additional property {name} is not allowed")],
        );
    }
}

fn json_int(value: i128) -> Option<Json> {
    if let Ok(i) = i64::try_from(value) {
        Some(Json::Number(Number::from(i)))
    } else {
        u64::try_from(value).ok().map(|u| Json::Number(Number::from(u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    fn walk(text: &str) -> Checked {
        let node = parse(text).unwrap().unwrap();
        Walker::new(&[]).check_root(&node, &MOBY, &[], true)
    }

    fn lines(checked: &Checked) -> Vec<String> {
        let mut lines: Vec<String> = checked.problems.iter().flat_map(|p| p.linuxkit.clone()).collect();
        lines.sort();
        lines
    }

    #[test]
    fn paths_render_both_ways() {
        let segs = [
            Seg::Field("onboot".into()),
            Seg::Index(0),
            Seg::Field("sysctl".into()),
            Seg::Key("net.ipv4.ip_forward".into()),
        ];
        assert_eq!(render_path(&segs), "onboot[0].sysctl[\"net.ipv4.ip_forward\"]");
        assert_eq!(render_linuxkit(&[], &segs), "onboot.0.sysctl.net.ipv4.ip_forward");
        assert_eq!(render_linuxkit(&[], &[]), "(root)");
    }

    #[test]
    fn camel_case_keys_are_checked_and_kept() {
        let checked = walk(
            "onboot:\n- name: a\n  image: b\n  resources:\n    memory: {limit: 5, kernelTCP: 6}\n  uidMappings: [{hostID: 1, containerID: 2, size: 3}]\n",
        );
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        let value = checked.value.unwrap();
        assert_eq!(
            value["onboot"][0]["resources"]["memory"],
            serde_json::json!({"limit": 5, "kernelTCP": 6})
        );
        assert_eq!(
            value["onboot"][0]["uidMappings"],
            serde_json::json!([{"hostID": 1, "containerID": 2, "size": 3}])
        );
        let checked = walk("onboot:\n- name: a\n  image: b\n  resources:\n    memory: {kernelTCP: x}\n");
        assert_eq!(
            lines(&checked),
            ["onboot.0.resources.memory.kernelTCP: Invalid type. Expected: integer, given: string"]
        );
    }

    #[test]
    fn integers_must_fit_their_go_type() {
        let checked =
            walk("onboot:\n- name: a\n  image: b\n  resources: {blockio: {weight: 70000}}\n  oomScoreAdj: 1.0\n");
        assert_eq!(checked.problems.len(), 1);
        assert_eq!(checked.problems[0].kind, ErrorKind::Decode);
        assert_eq!(checked.problems[0].path, "onboot[0].resources.blockio.weight");
        assert_eq!(checked.value.unwrap()["onboot"][0]["oomScoreAdj"], 1);
    }

    #[test]
    fn any_of_reports_two_linuxkit_lines() {
        let checked = walk("files:\n- path: a\n  uid: true\n");
        assert_eq!(
            lines(&checked),
            [
                "files.0.uid: Invalid type. Expected: string, given: boolean",
                "files.0.uid: Must validate at least one schema (anyOf)"
            ]
        );
        assert_eq!(
            checked.problems[0].message,
            "expected a string or an integer, found a boolean"
        );
    }

    #[test]
    fn enums_and_keys() {
        let checked = walk("volumes:\n- name: v\n  format: tar\n1: x\n");
        assert_eq!(
            lines(&checked),
            ["volumes.0.format: volumes.0.format must be one of the following: \"oci\", \"filesystem\""]
        );
        assert_eq!(checked.problems.len(), 2);
        assert!(checked.problems[1].message.starts_with("mapping keys must be strings"));
    }

    #[test]
    fn positions_fall_back_to_ancestors() {
        let checked = walk("onboot:\n  - name: a\n    image: b\n");
        assert_eq!(checked.positions.find("onboot[0].image"), Mark { line: 3, column: 12 });
        assert_eq!(
            checked.positions.find("onboot[0].capabilities[3]"),
            Mark { line: 2, column: 5 }
        );
        assert_eq!(checked.positions.find("zzz"), Mark { line: 1, column: 1 });
    }
}
