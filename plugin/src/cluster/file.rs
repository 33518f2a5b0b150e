//! The cluster file (`docs/cluster.md`): read and checked before anything starts. Every problem
//! of the file is collected, each naming the file, its line and column, and the field
//! (`groups.nodes.size`). Checking the specs themselves (they load) and the host's networks is
//! the caller's, since that needs the builder and the state root.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};
use vmm::network::Subnet;

use super::error::{ClusterError, Problem, Problems};
use super::yaml::{self, Mark, Node, Value};
use crate::instance::properties::Properties;

/// The largest cluster file read (as the builder's largest spec): a file from someone else cannot
/// make us read without end.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The text of the cluster file `path`, at most [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Result<String, ClusterError> {
    use std::io::Read;
    let error = |source| ClusterError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(error)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(error)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(error(std::io::Error::other(format!(
            "it is larger than {MAX_FILE_BYTES} bytes: a cluster file names its specs, it does not hold them all"
        ))));
    }
    Ok(text)
}

/// The most instances one group may ask for (a mistyped size should not start a thousand VMs).
const MAX_SIZE: i64 = 1000;

/// Properties the cluster sets itself, lower-cased (field names match case-insensitively).
const RESERVED: [(&str, &str); 3] = [
    ("moby", "the group's spec is its `spec` field"),
    ("network", "the group's network is its `network` field"),
    ("nameprefix", "instance names are the cluster's and the group's names"),
];

/// A checked cluster file.
#[derive(Debug, Clone)]
pub struct ClusterFile {
    /// The file as it was named (errors name it so).
    path: PathBuf,
    /// Its directory, absolute: relative paths in it and in its specs lead there.
    dir: PathBuf,
    /// The cluster's name.
    name: String,
    /// The networks it declares, in file order.
    pub(super) networks: Vec<Network>,
    /// Its groups, in file order.
    pub(super) groups: Vec<Group>,
}

/// A network the file declares.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Network {
    pub name: String,
    pub subnet: Option<Subnet>,
    /// Where it is declared (its subnet, if given, else its name).
    pub mark: Mark,
}

/// A group of instances of one spec.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Group {
    pub name: String,
    pub spec: SpecRef,
    pub spec_mark: Mark,
    /// Where its `size` or `logicalIDs` is written.
    pub members_mark: Mark,
    pub members: Members,
    pub network: Option<String>,
    /// The machine properties as given (the plugin's vocabulary).
    pub properties: Map<String, Json>,
    /// The format its spec is built in (from its properties).
    pub format: builder::Format,
}

/// Where a group's spec is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SpecRef {
    /// A spec file, absolute.
    File(PathBuf),
    /// A mapping in the cluster file: its text, at its line and column.
    Inline(String),
}

/// How many instances a group has.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Members {
    /// `size: N`: logical IDs `0`..`N-1`.
    Size(usize),
    /// `logicalIDs`: one instance per ID, with where each is written.
    Logical(Vec<(String, Mark)>),
}

/// One instance the file asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    /// Its group's name.
    pub group: String,
    /// Its position in the group.
    pub index: usize,
    /// Its logical ID: the index for a sized group, else the ID as written.
    pub logical_id: String,
    /// Its instance name (`CLUSTER-GROUP-ID`, dots as dashes): its host name on its network.
    pub name: String,
    /// Its static address on the group's network (an IPv4 logical ID).
    pub address: Option<Ipv4Addr>,
}

impl ClusterFile {
    /// Reads and checks the cluster file `path`.
    pub fn read(path: &Path) -> Result<ClusterFile, ClusterError> {
        let text = read_text(path)?;
        ClusterFile::parse(path, &text)
    }

    /// Checks `text`, the cluster file `path` (relative paths in it lead to `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<ClusterFile, ClusterError> {
        let mut reader = Reader::new(path, text);
        let file = reader.file();
        match (file, reader.problems.is_empty()) {
            (Some(file), true) => Ok(file),
            _ => Err(ClusterError::Invalid(Problems(reader.problems))),
        }
    }

    /// Only the name of the cluster in `path` (the rest of the file may be wrong: a cluster
    /// whose spec no longer loads can still be removed).
    pub fn read_name(path: &Path) -> Result<String, ClusterError> {
        let text = read_text(path)?;
        let mut reader = Reader::new(path, &text);
        let name = match reader.root() {
            Some(root) => reader.name(&root),
            None => None,
        };
        name.ok_or(ClusterError::Invalid(Problems(reader.problems)))
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file as it was named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's directory (absolute): where relative spec paths, and `@pkg:` and `files:`
    /// paths inside the specs, lead.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instances the file asks for, group by group in file order.
    pub(super) fn members(&self) -> Vec<Member> {
        self.groups.iter().flat_map(|group| self.members_of(group)).collect()
    }

    /// The instances of `group`.
    pub(super) fn members_of(&self, group: &Group) -> Vec<Member> {
        let ids: Vec<String> = match &group.members {
            Members::Size(n) => (0..*n).map(|i| i.to_string()).collect(),
            Members::Logical(ids) => ids.iter().map(|(id, _)| id.clone()).collect(),
        };
        ids.into_iter()
            .enumerate()
            .map(|(index, logical_id)| Member {
                group: group.name.clone(),
                index,
                name: format!("{}-{}", self.name_prefix(group), logical_id.replace('.', "-")),
                address: group.network.as_ref().and_then(|_| logical_id.parse::<Ipv4Addr>().ok()),
                logical_id,
            })
            .collect()
    }

    /// What the instance names of `group` start with.
    pub(super) fn name_prefix(&self, group: &Group) -> String {
        format!("{}-{}", self.name, group.name)
    }

    /// The plugin properties every instance of `group` is provisioned with: its machine
    /// properties, its spec (`Moby`: an absolute path, or the inline text), its network and
    /// the name prefix.
    pub(super) fn properties(&self, group: &Group) -> Json {
        let mut properties = group.properties.clone();
        let spec = match &group.spec {
            SpecRef::File(path) => path.display().to_string(),
            // Without the lines that put it in place: the plugin names it `Properties.Moby`.
            SpecRef::Inline(text) => text.trim_start_matches('\n').to_string(),
        };
        properties.insert("Moby".into(), Json::String(spec));
        properties.insert("NamePrefix".into(), Json::String(self.name_prefix(group)));
        if let Some(network) = &group.network {
            let subnet = self.networks.iter().find(|n| &n.name == network).and_then(|n| n.subnet);
            let mut value = json!({"Name": network});
            if let Some(subnet) = subnet {
                value["Subnet"] = json!(subnet.to_string());
            }
            properties.insert("Network".into(), value);
        }
        Json::Object(properties)
    }

    /// The spec of `group` as its check shows it: named after the spec file, or after the
    /// cluster file for an inline spec (whose text keeps its place, so that the builder's
    /// positions are the cluster file's), and its text.
    pub(super) fn spec_for_check(&self, group: &Group) -> Result<(String, String), String> {
        match &group.spec {
            SpecRef::File(path) => std::fs::read_to_string(path)
                .map(|text| (path.display().to_string(), text))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            SpecRef::Inline(text) => Ok((self.path.display().to_string(), text.clone())),
        }
    }

    /// A problem at `mark` in this file.
    pub(super) fn problem(&self, mark: Mark, field: String, message: String) -> Problem {
        Problem {
            file: self.path.display().to_string(),
            line: mark.line,
            column: mark.column,
            field,
            message,
        }
    }
}

/// Reads a cluster file, collecting problems.
struct Reader<'t> {
    path: PathBuf,
    text: &'t str,
    problems: Vec<Problem>,
}

impl<'t> Reader<'t> {
    fn new(path: &Path, text: &'t str) -> Reader<'t> {
        Reader {
            path: path.to_path_buf(),
            text,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, mark: Mark, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.path.display().to_string(),
            line: mark.line,
            column: mark.column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// The document's root mapping.
    fn root(&mut self) -> Option<Node> {
        match yaml::parse(self.text) {
            Ok(Some(root)) if matches!(root.value, Value::Map(_)) => Some(root),
            Ok(Some(root)) => {
                let kind = root.kind();
                self.problem(
                    root.mark,
                    "",
                    format!("a cluster file is a mapping (name, networks, groups), not {kind}"),
                );
                None
            }
            Ok(None) => {
                self.problem(Mark::default(), "", "the file is empty: give name and groups");
                None
            }
            Err(e) => {
                self.problem(e.mark, "", e.message);
                None
            }
        }
    }

    /// The pairs of mapping `node` (named `field`) whose keys are among `known`; others are
    /// problems.
    fn fields<'n>(&mut self, node: &'n Node, field: &str, known: &[&str]) -> Option<BTreeMap<&'n str, &'n Node>> {
        let Value::Map(pairs) = &node.value else {
            let kind = node.kind();
            self.problem(
                node.mark,
                field,
                format!("expected a mapping with {}, not {kind}", known.join(", ")),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (key, value) in pairs {
            let name = key.as_str().unwrap_or_default();
            if known.contains(&name) {
                out.insert(name, value);
            } else {
                let at = join(field, name);
                self.problem(
                    key.mark,
                    at,
                    format!("unknown field: the fields are {}", known.join(", ")),
                );
            }
        }
        Some(out)
    }

    /// The cluster's name (reported when missing or not a name).
    fn name(&mut self, root: &Node) -> Option<String> {
        let Value::Map(pairs) = &root.value else {
            return None;
        };
        match pairs.iter().find(|(k, _)| k.as_str() == Some("name")) {
            Some((_, value)) => self.label(value, "name", "the cluster's name"),
            None => {
                self.problem(
                    root.mark,
                    "name",
                    "missing: give the cluster a name (its instances' names start with it)",
                );
                None
            }
        }
    }

    /// A scalar that is a short DNS label starting with a letter (a cluster's or group's name).
    fn label(&mut self, node: &Node, field: &str, what: &str) -> Option<String> {
        let text = node.as_str().filter(|_| !node.is_null()).unwrap_or_default();
        let ok = (1..=32).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && !text.ends_with('-')
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Some(text.to_string())
        } else {
            self.problem(
                node.mark,
                field,
                format!(
                    "{text:?} cannot be {what}: use 1 to 32 lower-case letters, digits and '-', starting with a letter"
                ),
            );
            None
        }
    }

    fn file(&mut self) -> Option<ClusterFile> {
        let root = self.root()?;
        let name = self.name(&root);
        let fields = self.fields(&root, "", &["name", "networks", "groups"])?;
        let networks = match fields.get("networks") {
            Some(node) if !node.is_null() => self.networks(node),
            _ => Vec::new(),
        };
        let groups = match fields.get("groups") {
            Some(node) => self.groups(node, &networks),
            None => {
                self.problem(root.mark, "groups", "missing: give at least one group");
                Vec::new()
            }
        };
        let file = ClusterFile {
            path: self.path.clone(),
            dir: dir_of(&self.path),
            name: name?,
            networks,
            groups,
        };
        self.across_groups(&file);
        Some(file)
    }

    fn networks(&mut self, node: &Node) -> Vec<Network> {
        let Value::Map(pairs) = &node.value else {
            let kind = node.kind();
            self.problem(
                node.mark,
                "networks",
                format!("expected a mapping of network names, not {kind}"),
            );
            return Vec::new();
        };
        let mut out: Vec<Network> = Vec::new();
        for (key, value) in pairs {
            let name = key.as_str().unwrap_or_default().to_string();
            let field = format!("networks.{name}");
            if let Err(e) = vmm::network::check_name(&name) {
                self.problem(key.mark, &field, e.to_string());
                continue;
            }
            let mut network = Network {
                name,
                subnet: None,
                mark: key.mark,
            };
            if !value.is_null() {
                let Some(fields) = self.fields(value, &field, &["subnet"]) else {
                    continue;
                };
                if let Some(subnet) = fields.get("subnet") {
                    match subnet.as_str().unwrap_or_default().parse::<Subnet>() {
                        Ok(parsed) => {
                            network.subnet = Some(parsed);
                            network.mark = subnet.mark;
                        }
                        Err(e) => {
                            self.problem(subnet.mark, format!("{field}.subnet"), e.to_string());
                            continue;
                        }
                    }
                }
            }
            if let Some(subnet) = network.subnet {
                let overlapping = out
                    .iter()
                    .find(|other| other.subnet.is_some_and(|s| s.overlaps(&subnet)));
                if let Some(other) = overlapping {
                    let message = format!(
                        "{subnet} overlaps network {}'s subnet {}: give each network its own range",
                        other.name,
                        other.subnet.map(|s| s.to_string()).unwrap_or_default()
                    );
                    self.problem(network.mark, format!("{field}.subnet"), message);
                }
            }
            out.push(network);
        }
        out
    }

    fn groups(&mut self, node: &Node, networks: &[Network]) -> Vec<Group> {
        let Value::Map(pairs) = &node.value else {
            let kind = node.kind();
            self.problem(
                node.mark,
                "groups",
                format!("expected a mapping of group names, not {kind}"),
            );
            return Vec::new();
        };
        if pairs.is_empty() {
            self.problem(node.mark, "groups", "no groups: give at least one");
        }
        pairs
            .iter()
            .filter_map(|(key, value)| {
                let field = format!("groups.{}", key.as_str().unwrap_or_default());
                let name = self.label(key, &field, "a group's name")?;
                self.group(name, value, networks)
            })
            .collect()
    }

    fn group(&mut self, name: String, node: &Node, networks: &[Network]) -> Option<Group> {
        let field = format!("groups.{name}");
        let known = ["spec", "size", "logicalIDs", "network", "properties"];
        let fields = self.fields(node, &field, &known)?;
        let at = |sub: &str| format!("{field}.{sub}");
        let spec = match fields.get("spec") {
            None => {
                self.problem(
                    node.mark,
                    at("spec"),
                    "missing: give a LinuxKit spec file (relative to this file) or an inline spec",
                );
                None
            }
            Some(spec) => self.spec(spec, &at("spec")),
        };
        let members = match (fields.get("size"), fields.get("logicalIDs")) {
            (Some(_), Some(ids)) => {
                self.problem(ids.mark, at("logicalIDs"), "give either size or logicalIDs, not both");
                None
            }
            (None, None) => {
                self.problem(
                    node.mark,
                    &field,
                    "give size (how many instances) or logicalIDs (one instance per ID)",
                );
                None
            }
            (Some(size), None) => self.size(size, &at("size")).map(Members::Size),
            (None, Some(ids)) => self.logical_ids(ids, &at("logicalIDs")).map(Members::Logical),
        };
        let network = match fields.get("network") {
            None => None,
            Some(node) => {
                let text = node.as_str().filter(|_| !node.is_null()).unwrap_or_default();
                if networks.iter().any(|n| n.name == text) {
                    Some(text.to_string())
                } else {
                    self.problem(
                        node.mark,
                        at("network"),
                        format!(
                            "{text:?} is not declared under networks: declare it there (networks: {{{text}: {{}}}})"
                        ),
                    );
                    None
                }
            }
        };
        let (properties, format) =
            self.properties(fields.get("properties").copied(), &at("properties"), network.is_some())?;
        Some(Group {
            name,
            spec: spec?,
            spec_mark: fields.get("spec").map(|n| n.mark).unwrap_or_default(),
            members_mark: fields
                .get("size")
                .or_else(|| fields.get("logicalIDs"))
                .map(|n| n.mark)
                .unwrap_or_default(),
            members: members?,
            network,
            properties,
            format,
        })
    }

    fn spec(&mut self, node: &Node, field: &str) -> Option<SpecRef> {
        match &node.value {
            Value::Map(_) => {
                let text = node.mapping_text(self.text)?;
                Some(SpecRef::Inline(text))
            }
            Value::Scalar(path, _) if !node.is_null() && !path.trim().is_empty() => {
                Some(SpecRef::File(dir_of(&self.path).join(path)))
            }
            _ => {
                let kind = node.kind();
                self.problem(
                    node.mark,
                    field,
                    format!("expected a spec file's path or an inline spec (a mapping), not {kind}"),
                );
                None
            }
        }
    }

    fn size(&mut self, node: &Node, field: &str) -> Option<usize> {
        let text = node.as_str().unwrap_or_default();
        match node.to_json().as_i64() {
            Some(n) if n < 0 => self.problem(node.mark, field, format!("{n} is below zero: give 0 or more")),
            Some(n) if n > MAX_SIZE => self.problem(
                node.mark,
                field,
                format!("{n} is more than a group may have ({MAX_SIZE})"),
            ),
            Some(n) => return usize::try_from(n).ok(),
            None if node.as_str().is_some() => self.problem(
                node.mark,
                field,
                format!("{text:?} is not a number: give how many instances (0 or more)"),
            ),
            None => {
                let kind = node.kind();
                self.problem(node.mark, field, format!("expected a number, not {kind}"))
            }
        }
        None
    }

    fn logical_ids(&mut self, node: &Node, field: &str) -> Option<Vec<(String, Mark)>> {
        let Value::Seq(items) = &node.value else {
            let kind = node.kind();
            self.problem(node.mark, field, format!("expected a list of logical IDs, not {kind}"));
            return None;
        };
        let mut out: Vec<(String, Mark)> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let text = item.as_str().filter(|_| !item.is_null()).unwrap_or_default();
            let usable = !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !text.starts_with(['-', '.'])
                && !text.ends_with(['-', '.']);
            if !usable {
                self.problem(
                    item.mark,
                    at,
                    format!(
                        "{text:?} cannot be a logical ID: use lower-case letters, digits, '-' and '.' (an IPv4 address, a pet's name)"
                    ),
                );
                ok = false;
            } else if let Some(first) = out.iter().position(|(id, _)| id == text) {
                self.problem(item.mark, at, format!("{text} is given twice (also {field}[{first}])"));
                ok = false;
            } else {
                out.push((text.to_string(), item.mark));
            }
        }
        ok.then_some(out)
    }

    /// The machine properties, checked by the plugin's own rules with what the cluster adds.
    fn properties(
        &mut self,
        node: Option<&Node>,
        field: &str,
        networked: bool,
    ) -> Option<(Map<String, Json>, builder::Format)> {
        let (map, mark) = match node {
            None => (Map::new(), Mark::default()),
            Some(node) if node.is_null() => (Map::new(), node.mark),
            Some(node) => match node.to_json() {
                Json::Object(map) => (map, node.mark),
                _ => {
                    let kind = node.kind();
                    self.problem(
                        node.mark,
                        field,
                        format!("expected a mapping of the plugin's properties (CPUs, Memory, ...), not {kind}"),
                    );
                    return None;
                }
            },
        };
        for key in map.keys() {
            if let Some((_, why)) = RESERVED.iter().find(|(name, _)| key.eq_ignore_ascii_case(name)) {
                self.problem(mark, format!("{field}.{key}"), format!("set by the cluster: {why}"));
                return None;
            }
        }
        let gcp = map
            .iter()
            .any(|(key, value)| key.eq_ignore_ascii_case("backend") && value.as_str() == Some("gcp"));
        if gcp {
            self.problem(
                mark,
                format!("{field}.Backend"),
                "cluster groups run on this host: gcp is not supported (use qemu)",
            );
            return None;
        }
        let mut full = map.clone();
        full.insert("Moby".into(), Json::String("spec.yml".into()));
        if networked {
            full.insert("Network".into(), json!({"Name": "checked"}));
        }
        match Properties::parse(Some(Json::Object(full))) {
            Ok(parsed) => Some((map, parsed.format)),
            Err(e) => {
                let text = e.to_string();
                // The plugin's refusal of a network for another backend is the group's network's.
                let (at, message) = match text.strip_prefix("Properties.Network: ") {
                    Some(rest) => (field.replace("properties", "network"), rest.to_string()),
                    None => match (text.strip_prefix("Properties."), text.strip_prefix("Properties: ")) {
                        (Some(rest), _) => match rest.split_once(": ") {
                            Some((name, message)) => (format!("{field}.{name}"), message.to_string()),
                            None => (field.to_string(), rest.to_string()),
                        },
                        (None, Some(message)) => (field.to_string(), message.to_string()),
                        (None, None) => (field.to_string(), text),
                    },
                };
                self.problem(mark, at, message);
                None
            }
        }
    }

    /// Checks that need every group: instance names unique, static addresses used once per
    /// network and inside its subnet.
    fn across_groups(&mut self, file: &ClusterFile) {
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut addresses: BTreeMap<(String, Ipv4Addr), String> = BTreeMap::new();
        for group in &file.groups {
            let marks: Vec<Mark> = match &group.members {
                Members::Logical(ids) => ids.iter().map(|(_, mark)| *mark).collect(),
                Members::Size(_) => Vec::new(),
            };
            for member in file.members_of(group) {
                let field = match &group.members {
                    Members::Logical(_) => format!("groups.{}.logicalIDs[{}]", group.name, member.index),
                    Members::Size(_) => format!("groups.{}.size", group.name),
                };
                let mark = marks.get(member.index).copied().unwrap_or(group.members_mark);
                if member.name.len() > 63 {
                    let message = format!(
                        "the instance name {} is longer than a host name may be (63): shorten the cluster's or group's name, or the ID",
                        member.name
                    );
                    self.problem(mark, &field, message);
                }
                if let Some(other) = names.insert(member.name.clone(), field.clone()) {
                    self.problem(
                        mark,
                        &field,
                        format!("makes the instance name {}, as {other} does", member.name),
                    );
                }
                let (Some(ip), Some(network)) = (member.address, &group.network) else {
                    continue;
                };
                let subnet = file.networks.iter().find(|n| &n.name == network).and_then(|n| n.subnet);
                if let Some(subnet) = subnet.filter(|s| !s.is_member_address(ip)) {
                    let message = format!(
                        "{ip} is not a member address of network {network} ({subnet}; {} is the network's own)",
                        subnet.gateway()
                    );
                    self.problem(mark, &field, message);
                }
                if let Some(other) = addresses.insert((network.clone(), ip), field.clone()) {
                    self.problem(
                        mark,
                        &field,
                        format!("{ip} is also {other}'s address on network {network}"),
                    );
                }
            }
        }
    }
}

/// `parent.name`, or `name` at the top.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// The directory of the file `path`, absolute (against the current directory; as it is if that
/// cannot be found).
fn dir_of(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
name: demo
networks:
  lab: {subnet: 10.77.0.0/24}
  spare:
groups:
  leader:
    spec: ../linuxkit.yml
    logicalIDs: [10.77.0.10]
    network: lab
    properties: {CPUs: 2, Memory: 512}
  nodes:
    spec:
      kernel:
        image: linuxkit/kernel:6.6
      init: [linuxkit/init:v1]
    size: 2
    network: lab
";

    fn parse(text: &str) -> Result<ClusterFile, ClusterError> {
        ClusterFile::parse(Path::new("/c/cluster.yml"), text)
    }

    /// The problems of `text`, one line each.
    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Err(ClusterError::Invalid(problems)) => problems.0.iter().map(ToString::to_string).collect(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn a_good_file_gives_members_names_addresses_and_properties() {
        let file = parse(GOOD).unwrap();
        assert_eq!(file.name(), "demo");
        assert_eq!(file.dir(), Path::new("/c"));
        let members: Vec<(String, String, Option<Ipv4Addr>)> = file
            .members()
            .into_iter()
            .map(|m| (m.name, m.logical_id, m.address))
            .collect();
        assert_eq!(
            members,
            [
                (
                    "demo-leader-10-77-0-10".into(),
                    "10.77.0.10".into(),
                    Some(Ipv4Addr::new(10, 77, 0, 10))
                ),
                ("demo-nodes-0".into(), "0".into(), None),
                ("demo-nodes-1".into(), "1".into(), None),
            ]
        );
        assert_eq!(
            file.networks
                .iter()
                .map(|n| (n.name.as_str(), n.subnet.map(|s| s.to_string())))
                .collect::<Vec<_>>(),
            [("lab", Some("10.77.0.0/24".to_string())), ("spare", None)]
        );
        let leader = &file.groups[0];
        assert_eq!(
            file.properties(leader),
            json!({
                "CPUs": 2, "Memory": 512, "Moby": "/c/../linuxkit.yml", "NamePrefix": "demo-leader",
                "Network": {"Name": "lab", "Subnet": "10.77.0.0/24"},
            })
        );
        // The inline spec keeps its place: parsed alone, its lines are the cluster file's.
        let SpecRef::Inline(text) = &file.groups[1].spec else {
            panic!("not inline")
        };
        assert_eq!(text.lines().nth(12), Some("      kernel:"), "{text:?}");
        assert_eq!(text.lines().nth(14), Some("      init: [linuxkit/init:v1]"));
        let properties = file.properties(&file.groups[1]);
        assert_eq!(
            properties["Moby"],
            json!("kernel:\n        image: linuxkit/kernel:6.6\n      init: [linuxkit/init:v1]\n    size: 2\n    network: lab\n")
                .as_str()
                .map(|_| properties["Moby"].clone())
                .unwrap()
        );
        assert!(properties["Moby"]
            .as_str()
            .unwrap()
            .starts_with("      kernel:\n        image: linuxkit/kernel:6.6\n"));
        // What the plugin will make of it: the same names and the network with its subnet.
        let parsed = Properties::parse(Some(properties)).unwrap();
        assert_eq!(parsed.name_prefix.as_deref(), Some("demo-nodes"));
        assert_eq!(parsed.network.unwrap().to_string(), "lab,subnet=10.77.0.0/24");
    }

    #[test]
    fn each_problem_names_the_file_line_group_and_field() {
        let cases: &[(&str, &str)] = &[
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: -1}\n", "/c/cluster.yml:3:26: groups.a.size: -1 is below zero: give 0 or more"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: two}\n", "/c/cluster.yml:3:26: groups.a.size: \"two\" is not a number: give how many instances (0 or more)"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1.5}\n", "/c/cluster.yml:3:26: groups.a.size: \"1.5\" is not a number"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, logicalIDs: [x]}\n", "/c/cluster.yml:3:41: groups.a.logicalIDs: give either size or logicalIDs, not both"),
            ("name: demo\ngroups:\n  a: {spec: x.yml}\n", "/c/cluster.yml:3:6: groups.a: give size (how many instances) or logicalIDs (one instance per ID)"),
            ("name: demo\ngroups:\n  a: {size: 1}\n", "/c/cluster.yml:3:6: groups.a.spec: missing"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, logicalIDs: [p, q, p]}\n", "/c/cluster.yml:3:39: groups.a.logicalIDs[2]: p is given twice (also groups.a.logicalIDs[0])"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, logicalIDs: [Pet_1]}\n", "/c/cluster.yml:3:33: groups.a.logicalIDs[0]: \"Pet_1\" cannot be a logical ID"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, network: lab}\n", "/c/cluster.yml:3:38: groups.a.network: \"lab\" is not declared under networks"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, colour: red}\n", "/c/cluster.yml:3:29: groups.a.colour: unknown field: the fields are spec, size, logicalIDs, network, properties"),
            ("name: demo\ncolour: red\ngroups:\n  a: {spec: x.yml, size: 1}\n", "/c/cluster.yml:2:1: colour: unknown field"),
            ("groups:\n  a: {spec: x.yml, size: 1}\n", "/c/cluster.yml:1:1: name: missing"),
            ("name: Demo\ngroups:\n  a: {spec: x.yml, size: 1}\n", "/c/cluster.yml:1:7: name: \"Demo\" cannot be the cluster's name"),
            ("name: demo\ngroups:\n  A: {spec: x.yml, size: 1}\n", "/c/cluster.yml:3:3: groups.A: \"A\" cannot be a group's name"),
            ("name: demo\ngroups: {}\n", "/c/cluster.yml:2:9: groups: no groups: give at least one"),
            ("name: demo\ngroups:\n  a: {spec: [x], size: 1}\n", "/c/cluster.yml:3:13: groups.a.spec: expected a spec file's path or an inline spec (a mapping), not a list"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, properties: {CPUs: 0}}\n", "/c/cluster.yml:3:41: groups.a.properties.CPUs: 0: give at least 1"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, properties: {Colour: red}}\n", "/c/cluster.yml:3:41: groups.a.properties: unknown field `Colour`, expected one of `Moby`"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, properties: {moby: y.yml}}\n", "/c/cluster.yml:3:41: groups.a.properties.moby: set by the cluster: the group's spec is its `spec` field"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1, properties: {Backend: gcp}}\n", "/c/cluster.yml:3:41: groups.a.properties.Backend: cluster groups run on this host: gcp is not supported (use qemu)"),
            ("name: demo\nnetworks: {lab: {}}\ngroups:\n  a: {spec: x.yml, size: 1, network: lab, properties: {Backend: vmware}}\n", "/c/cluster.yml:4:55: groups.a.network: only qemu instances join private networks for now (the backend is vmware)"),
            ("name: demo\nnetworks: {Lab: {}}\ngroups:\n  a: {spec: x.yml, size: 1}\n", "/c/cluster.yml:2:12: networks.Lab: invalid network name \"Lab\""),
            ("name: demo\nnetworks: {lab: {subnet: 10.77.0.1/24}}\ngroups:\n  a: {spec: x.yml, size: 1}\n", "/c/cluster.yml:2:26: networks.lab.subnet: 10.77.0.1/24: host bits are set; the subnet is 10.77.0.0/24"),
            ("name: demo\nnetworks:\n  a: {subnet: 10.0.0.0/8}\n  b: {subnet: 10.77.0.0/24}\ngroups:\n  g: {spec: x.yml, size: 1}\n", "/c/cluster.yml:4:15: networks.b.subnet: 10.77.0.0/24 overlaps network a's subnet 10.0.0.0/8: give each network its own range"),
            ("name: demo\nnetworks: {lab: {subnet: 10.77.0.0/24}}\ngroups:\n  a: {spec: x.yml, logicalIDs: [10.78.0.5], network: lab}\n", "/c/cluster.yml:4:33: groups.a.logicalIDs[0]: 10.78.0.5 is not a member address of network lab (10.77.0.0/24; 10.77.0.1 is the network's own)"),
            ("name: demo\nnetworks: {lab: {subnet: 10.77.0.0/24}}\ngroups:\n  a: {spec: x.yml, logicalIDs: [10.77.0.1], network: lab}\n", "/c/cluster.yml:4:33: groups.a.logicalIDs[0]: 10.77.0.1 is not a member address"),
            ("name: demo\nnetworks: {lab: {}}\ngroups:\n  a: {spec: x.yml, logicalIDs: [10.77.0.5], network: lab}\n  b: {spec: x.yml, logicalIDs: [10.77.0.5], network: lab}\n", "/c/cluster.yml:5:33: groups.b.logicalIDs[0]: 10.77.0.5 is also groups.a.logicalIDs[0]'s address on network lab"),
            ("name: demo\ngroups:\n  a-b: {spec: x.yml, logicalIDs: [c]}\n  a: {spec: x.yml, logicalIDs: [b-c]}\n", "/c/cluster.yml:4:33: groups.a.logicalIDs[0]: makes the instance name demo-a-b-c, as groups.a-b.logicalIDs[0] does"),
            ("name: demo\ngroups:\n  a: {spec: x.yml, size: 1}\n  a: {spec: y.yml, size: 1}\n", "/c/cluster.yml:4:3: \"a\" is written twice in this mapping"),
            ("", "/c/cluster.yml: the file is empty: give name and groups"),
            ("[1]\n", "/c/cluster.yml:1:1: a cluster file is a mapping (name, networks, groups), not a list"),
        ];
        let mut wrong = Vec::new();
        for (text, expected) in cases {
            let found = problems(text);
            if !found.iter().any(|p| p.starts_with(expected)) {
                wrong.push(format!("{text:?}\n  expected: {expected}\n  found: {found:#?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems("name: demo\ngroups:\n  a: {spec: x.yml, size: -1}\n  b: {spec: x.yml}\n  c: {size: 1}\n");
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn a_long_name_is_refused_where_it_is_made() {
        let long = "p".repeat(32);
        let text = format!("name: {long}\ngroups:\n  {long}:\n    spec: x.yml\n    size: 1\n");
        let found = problems(&text);
        assert!(
            found[0].contains(&format!(
                "cluster.yml:5:11: groups.{long}.size: the instance name {long}-{long}-0 is longer than a host name may be (63)"
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn the_name_alone_is_read_from_a_file_otherwise_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        std::fs::write(&path, "name: demo\ngroups:\n  a: {size: -3}\n").unwrap();
        assert_eq!(ClusterFile::read_name(&path).unwrap(), "demo");
        assert!(ClusterFile::read(&path).is_err());
        std::fs::write(&path, "groups: {}\n").unwrap();
        let e = ClusterFile::read_name(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("c.yml:1:1: name: missing: give the cluster a name (its instances' names start with it)"),
            "{e}"
        );
        let e = ClusterFile::read(&dir.path().join("none.yml")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the cluster file "), "{e}");
    }
}
