//! Checks on values that the schema cannot express, each reported at the offending value: image
//! references, capabilities, rlimits, binds, tmpfs, mounts, device and file modes, the file-entry
//! combinations that LinuxKit's `filesystem()` rejects, uid/gid names, volumes, and unique service and
//! volume names across all files.
//!
//! LinuxKit finds most of these only while building (after writing part of the output); checking
//! them up front reports all of them at once. Where LinuxKit has its own message for a problem it is
//! kept in `Problem::linuxkit`.

use std::collections::{HashMap, HashSet};

use super::error::ErrorKind;
use super::fields::{
    check_capability, did_you_mean, file_entry_name, parse_bind, parse_octal_mode, parse_rlimit, parse_tmpfs, FileTree,
};
use super::model::{File, IdRef, Image, Moby, Mount, Volume};
use super::schema::{Positions, Problem};
use crate::reference::Reference;

/// One decoded file with what the semantic checks need to place their findings.
pub(crate) struct FileSpec {
    /// The source name, for messages that point at another file.
    pub name: String,
    pub moby: Moby,
    pub positions: Positions,
    /// Paths that already have a syntax, schema or decode problem.
    pub poisoned: Vec<String>,
}

/// Names defined anywhere in the merged spec.
struct Names<'a> {
    containers: HashSet<&'a str>,
    /// Volume name to its first declaration.
    volumes: HashMap<&'a str, &'a Volume>,
}

/// Runs every check over every file; returns problems tagged with their file's index.
pub(crate) fn check_files(files: &[FileSpec]) -> Vec<(usize, Problem)> {
    let names = Names {
        containers: files
            .iter()
            .flat_map(|f| sections(&f.moby))
            .flat_map(|(_, images)| images.iter().map(|i| i.name.as_str()))
            .collect(),
        volumes: files
            .iter()
            .flat_map(|f| f.moby.volumes.iter())
            .fold(HashMap::new(), |mut map, v| {
                map.entry(v.name.as_str()).or_insert(v);
                map
            }),
    };
    let mut problems = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let mut checker = Checker {
            file,
            names: &names,
            problems: Vec::new(),
        };
        checker.moby();
        problems.extend(checker.problems.into_iter().map(|p| (index, p)));
    }
    problems.extend(unique_names(files));
    problems.extend(files_below_non_dirs(files));
    problems
}

fn sections(moby: &Moby) -> [(&'static str, &[Image]); 3] {
    [
        ("onboot", &moby.onboot),
        ("onshutdown", &moby.onshutdown),
        ("services", &moby.services),
    ]
}

/// Service names and volume names are unique across all files (LinuxKit checks volumes per file
/// only, which lets a later file silently shadow a volume; we refuse that too).
fn unique_names(files: &[FileSpec]) -> Vec<(usize, Problem)> {
    let mut problems = Vec::new();
    let mut services: HashMap<&str, (usize, String)> = HashMap::new();
    let mut volumes: HashMap<&str, (usize, String)> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        for (i, service) in file.moby.services.iter().enumerate() {
            let path = format!("services[{i}].name");
            if let Some(first) = services.get(service.name.as_str()) {
                problems.push((index, duplicate(file, files, path, "service", &service.name, first)));
            } else {
                services.insert(&service.name, (index, path));
            }
        }
        for (i, volume) in file.moby.volumes.iter().enumerate() {
            let path = format!("volumes[{i}].name");
            if let Some(first) = volumes.get(volume.name.as_str()) {
                problems.push((index, duplicate(file, files, path, "volume", &volume.name, first)));
            } else {
                volumes.insert(&volume.name, (index, path));
            }
        }
    }
    problems
        .into_iter()
        .filter(|(index, p)| !is_poisoned(&files[*index], &p.path))
        .collect()
}

/// A `files` entry below a symlink or file made by an earlier entry, in any file (they are merged in
/// order). Entries whose path is itself invalid are left to `file_entry`, and a section that lost
/// entries to schema problems is skipped (its indices no longer match the document).
fn files_below_non_dirs(files: &[FileSpec]) -> Vec<(usize, Problem)> {
    let mut tree = FileTree::default();
    let mut entries: Vec<(usize, usize)> = Vec::new();
    let mut problems = Vec::new();
    for (index, file) in files.iter().enumerate() {
        if file.poisoned.iter().any(|bad| bad.is_empty() || bad == "files") {
            continue;
        }
        for (i, entry) in file.moby.files.iter().enumerate() {
            let Ok(name) = file_entry_name(&entry.path) else {
                continue;
            };
            if let Err(blocked) = tree.add(entries.len(), name, entry) {
                let (earlier_file, earlier_index) = entries[blocked.index];
                let mut earlier = format!("files[{earlier_index}]");
                if earlier_file != index {
                    earlier.push_str(&format!(" of {}", files[earlier_file].name));
                }
                let path = format!("files[{i}].path");
                problems.push((
                    index,
                    Problem {
                        mark: file.positions.find(&path),
                        path,
                        message: blocked.message(&entry.path, &earlier),
                        kind: ErrorKind::Semantic,
                        linuxkit: Vec::new(),
                    },
                ));
            }
            entries.push((index, i));
        }
    }
    problems
}

fn duplicate(
    file: &FileSpec,
    files: &[FileSpec],
    path: String,
    what: &str,
    name: &str,
    first: &(usize, String),
) -> Problem {
    let (first_file, first_path) = first;
    let first = &files[*first_file];
    let first_mark = first.positions.find(first_path);
    let where_first = format!(" (first defined at {}:{})", first.name, first_mark.line);
    Problem {
        mark: file.positions.find(&path),
        path,
        message: format!("duplicate {what} name {name:?}{where_first}: {what} names must be unique"),
        kind: ErrorKind::Semantic,
        linuxkit: vec![format!("duplicate {what} name: {name}")],
    }
}

fn is_poisoned(file: &FileSpec, path: &str) -> bool {
    file.poisoned.iter().any(|bad| {
        bad.is_empty()
            || path == bad
            || path
                .strip_prefix(bad.as_str())
                .is_some_and(|rest| rest.starts_with(['.', '[']))
            || bad.strip_prefix(path).is_some_and(|rest| rest.starts_with(['.', '[']))
    })
}

struct Checker<'a> {
    file: &'a FileSpec,
    names: &'a Names<'a>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, path: String, message: String, linuxkit: Option<String>) {
        if is_poisoned(self.file, &path) {
            return;
        }
        self.problems.push(Problem {
            mark: self.file.positions.find(&path),
            path,
            message,
            kind: ErrorKind::Semantic,
            linuxkit: linuxkit.into_iter().collect(),
        });
    }

    fn moby(&mut self) {
        let moby = &self.file.moby;
        if !moby.kernel.image.is_empty() {
            self.reference("kernel.image".into(), &moby.kernel.image);
        }
        for (i, image) in moby.init.iter().enumerate() {
            self.reference(format!("init[{i}]"), image);
        }
        for (section, images) in sections(moby) {
            for (i, image) in images.iter().enumerate() {
                self.container(&format!("{section}[{i}]"), image);
            }
        }
        for (i, file) in moby.files.iter().enumerate() {
            self.file_entry(&format!("files[{i}]"), file);
        }
        for (i, volume) in moby.volumes.iter().enumerate() {
            self.volume(&format!("volumes[{i}]"), volume);
        }
    }

    fn reference(&mut self, path: String, image: &str) {
        if let Err(e) = Reference::parse(image) {
            self.report(path, format!("{e}"), None);
        }
    }

    fn container(&mut self, path: &str, image: &Image) {
        let name = &image.name;
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            self.report(
                format!("{path}.name"),
                format!("invalid container name {name:?}: it names a directory in the image, so it must be non-empty and contain no '/'"),
                None,
            );
        }
        self.reference(format!("{path}.image"), &image.image);
        let config = &image.config;
        for (key, list) in [
            ("capabilities", &config.capabilities),
            ("capabilities.add", &config.capabilities_add),
            ("ambient", &config.ambient),
        ] {
            if let Some(list) = list {
                self.capabilities(&format!("{path}.{key}"), list);
            }
        }
        for (j, rlimit) in config.rlimits.iter().flatten().enumerate() {
            if let Err(message) = parse_rlimit(rlimit) {
                let linuxkit = linuxkit_rlimit_error(rlimit, config.rlimits.as_deref());
                self.report(format!("{path}.rlimits[{j}]"), message, linuxkit);
            }
        }
        for (key, list) in [("binds", &config.binds), ("binds.add", &config.binds_add)] {
            for (j, bind) in list.iter().flatten().enumerate() {
                self.bind(&format!("{path}.{key}[{j}]"), bind, j);
            }
        }
        for (j, tmpfs) in config.tmpfs.iter().flatten().enumerate() {
            if let Err(message) = parse_tmpfs(tmpfs) {
                self.report(
                    format!("{path}.tmpfs[{j}]"),
                    message,
                    Some(format!("cannot parse tmpfs, too many ':': {tmpfs}")),
                );
            }
        }
        for (j, mount) in config.mounts.iter().flatten().enumerate() {
            self.mount(&format!("{path}.mounts[{j}]"), mount, j);
        }
        for (j, device) in config.devices.iter().flatten().enumerate() {
            if device.path != "all" {
                if let Err(message) = parse_octal_mode(&device.mode) {
                    self.report(
                        format!("{path}.devices[{j}].mode"),
                        format!("device {:?}: {message}", device.path),
                        Some(format!(
                            "cannot parse device mode as octal value: {}",
                            go_parse_int_error(&device.mode)
                        )),
                    );
                }
            }
        }
        if let Some(uid) = &config.uid {
            self.id(format!("{path}.uid"), uid);
        }
        if let Some(gid) = &config.gid {
            self.id(format!("{path}.gid"), gid);
        }
        for (j, gid) in config.additional_gids.iter().flatten().enumerate() {
            self.id(format!("{path}.additionalGids[{j}]"), gid);
        }
    }

    /// A single `all` or `none` (any case) stands for every or no capability; anything else must be
    /// a known `CAP_*` name.
    fn capabilities(&mut self, path: &str, list: &[String]) {
        if let [only] = list {
            if only.eq_ignore_ascii_case("all") || only.eq_ignore_ascii_case("none") {
                return;
            }
        }
        for (j, cap) in list.iter().enumerate() {
            if let Err(message) = check_capability(cap) {
                self.report(
                    format!("{path}[{j}]"),
                    message,
                    Some(format!("unknown capability: {cap}")),
                );
            }
        }
    }

    /// Checks a bind's syntax and, when its source is a volume name, that the volume exists and that
    /// a read-only volume is bound `:ro` (exactly `ro` as the whole option list, as LinuxKit checks).
    fn bind(&mut self, path: &str, bind: &str, index: usize) {
        if let Err(message) = parse_bind(bind) {
            let linuxkit = if bind.contains(':') {
                format!("cannot parse bind, too many ':': {bind}")
            } else {
                format!("cannot parse bind, missing ':': {bind}")
            };
            self.report(path.to_string(), message, Some(linuxkit));
            return;
        }
        let parts: Vec<&str> = bind.split(':').collect();
        let source = parts[0];
        if source.starts_with('/') {
            return;
        }
        let Some(volume) = self.volume_named(path, source, "bin", index) else {
            return;
        };
        if volume.readonly && parts.get(2) != Some(&"ro") {
            self.report(
                path.to_string(),
                format!(
                    "volume {source:?} is read-only: bind it read-only with \":ro\", e.g. \"{source}:{}:ro\"",
                    parts[1]
                ),
                Some(format!(
                    "volume {source} is read-only, but attempting to write into container read-write"
                )),
            );
        }
    }

    /// Looks a volume up, reporting an unknown name.
    fn volume_named(&mut self, path: &str, name: &str, what: &str, index: usize) -> Option<&Volume> {
        if let Some(volume) = self.names.volumes.get(name) {
            return Some(volume);
        }
        let known: Vec<&str> = self.names.volumes.keys().copied().collect();
        let hint = did_you_mean(name, known.iter().copied())
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default();
        self.report(
            path.to_string(),
            format!("no volume named {name:?}{hint}: a source without a leading '/' names a volume from the volumes section"),
            Some(format!("volume {name} not found in onboot image {what} {index}")),
        );
        None
    }

    /// LinuxKit infers a missing type from the source (or `/dev`) and a missing destination from
    /// the type; a mount where neither works is rejected.
    fn mount(&mut self, path: &str, mount: &Mount, index: usize) {
        let mut kind = mount.kind.as_str();
        if kind.is_empty() && ["mqueue", "devpts", "proc", "sysfs", "cgroup"].contains(&mount.source.as_str()) {
            kind = &mount.source;
        }
        if kind.is_empty() && mount.destination == "/dev" {
            kind = "tmpfs";
        }
        if kind.is_empty() {
            self.report(
                path.to_string(),
                format!("mount for destination {:?} needs a type (it can only be inferred from a source of proc, sysfs, devpts, mqueue or cgroup, or a destination of /dev)", mount.destination),
                Some(format!("mount for destination {} is missing type", mount.destination)),
            );
            return;
        }
        let default_destination = matches!(kind, "proc" | "devpts" | "sysfs" | "cgroup" | "mqueue");
        if mount.destination.is_empty() && !default_destination {
            self.report(
                path.to_string(),
                format!("mount of type {kind:?} needs a destination (only proc, devpts, sysfs, cgroup and mqueue have a default)"),
                Some(format!("mount type {kind} is missing destination")),
            );
        }
        if mount.kind != "bind" || mount.source.starts_with('/') {
            return;
        }
        let Some(volume) = self.volume_named(path, &mount.source, "mount", index) else {
            return;
        };
        let options = mount.options.as_deref().unwrap_or_default();
        let first_access = options.iter().find(|o| *o == "rw" || *o == "ro");
        if volume.readonly && first_access.map(String::as_str) != Some("ro") {
            self.report(
                path.to_string(),
                format!(
                    "volume {:?} is read-only: mount it with the option \"ro\"",
                    mount.source
                ),
                Some(format!(
                    "volume {} is read-only, but attempting to write into container read-write",
                    mount.source
                )),
            );
        }
    }

    /// A uid or gid name must be `root`, empty, or a container name.
    fn id(&mut self, path: String, id: &IdRef) {
        let IdRef::Name(name) = id else { return };
        if name.is_empty() || name == "root" || self.names.containers.contains(name.as_str()) {
            return;
        }
        let hint = did_you_mean(name, self.names.containers.iter().copied())
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default();
        self.report(
            path,
            format!("unknown id {name:?}{hint}: use a number, \"root\", or the name of a container in onboot, onshutdown or services"),
            Some(format!("cannot find id: {name}")),
        );
    }

    /// The path, mode, owners and body of a `files` entry.
    fn file_entry(&mut self, path: &str, file: &File) {
        if let Err(message) = file_entry_name(&file.path) {
            let linuxkit = file
                .path
                .is_empty()
                .then(|| "did not specify path for file".to_string());
            self.report(format!("{path}.path"), message, linuxkit);
        }
        if file.symlink.contains('\0') {
            self.report(
                format!("{path}.symlink"),
                format!("symlink target {:?} contains a NUL byte", file.symlink),
                None,
            );
        }
        if !file.mode.is_empty() {
            if let Err(message) = parse_octal_mode(&file.mode) {
                self.report(
                    format!("{path}.mode"),
                    message,
                    Some(format!(
                        "cannot parse file mode as octal value: {}",
                        go_parse_int_error(&file.mode)
                    )),
                );
            }
        }
        self.file_body(path, file);
        if let Some(uid) = &file.uid {
            self.id(format!("{path}.uid"), uid);
        }
        if let Some(gid) = &file.gid {
            self.id(format!("{path}.gid"), gid);
        }
    }

    /// Exactly one of `directory`, `symlink`, `contents`, `source` and `metadata` is set. LinuxKit
    /// rejects some pairs and silently prefers the first of that list for the others.
    fn file_body(&mut self, path: &str, file: &File) {
        let p = &file.path;
        let set: Vec<&str> = [
            ("directory", file.directory),
            ("symlink", !file.symlink.is_empty()),
            ("contents", file.contents.is_some()),
            ("source", !file.source.is_empty()),
            ("metadata", !file.metadata.is_empty()),
        ]
        .into_iter()
        .filter_map(|(field, is_set)| is_set.then_some(field))
        .collect();
        match set[..] {
            [] => self.report(
                path.to_string(),
                format!("file {p:?} has no content: set one of contents, source, metadata, directory or symlink"),
                Some(format!("contents of file ({p}) not specified")),
            ),
            [_] => {}
            [.., last] => self.report(
                format!("{path}.{last}"),
                format!(
                    "file {p:?} sets {}: set only one of contents, source, metadata, directory or symlink",
                    english_list(&set)
                ),
                linuxkit_body_error(file),
            ),
        }
        if !file.metadata.is_empty() && file.metadata != "yaml" && file.metadata != "json" {
            self.report(
                format!("{path}.metadata"),
                format!("metadata must be \"yaml\" or \"json\", found {:?}", file.metadata),
                Some(format!("unsupported metadata type: {}", file.metadata)),
            );
        }
    }

    fn volume(&mut self, path: &str, volume: &Volume) {
        let name = &volume.name;
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            self.report(
                format!("{path}.name"),
                format!("invalid volume name {name:?}: use lower-case letters, digits, '_' and '-'"),
                Some(format!("invalid volume name: {name}")),
            );
        }
        if !volume.image.is_empty() {
            self.reference(format!("{path}.image"), &volume.image);
        }
    }
}

/// The message of Go's `strconv.ParseInt(text, 8, 32)` failure.
fn go_parse_int_error(text: &str) -> String {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let syntax = digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let why = if syntax { "invalid syntax" } else { "value out of range" };
    format!("strconv.ParseInt: parsing {text:?}: {why}")
}

/// `a`, `a and b`, `a, b and c`.
fn english_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => only.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// LinuxKit's error for a `files` entry with more than one body, where it has one (it silently
/// prefers a directory over a symlink over contents for the other pairs).
fn linuxkit_body_error(file: &File) -> Option<String> {
    let p = &file.path;
    let has_body = file.directory || !file.symlink.is_empty() || file.contents.is_some();
    if !has_body {
        return Some(format!("specified Source and Metadata for file: {p}"));
    }
    if !file.metadata.is_empty() {
        return Some(format!("specified Contents and Metadata for file: {p}"));
    }
    if !file.source.is_empty() {
        return Some(format!("specified Contents and Source for file: {p}"));
    }
    (file.directory && file.contents.is_some()).then(|| "directory with contents not allowed".to_string())
}

/// LinuxKit's message for a bad rlimit, in the order its parser meets the problems (soft, hard, name).
fn linuxkit_rlimit_error(text: &str, all: Option<&[String]>) -> Option<String> {
    let parts: Vec<&str> = text.splitn(3, ',').collect();
    let [_, soft, hard] = parts[..] else {
        return Some(format!("cannot parse rlimit: [{}]", all.unwrap_or_default().join(" ")));
    };
    for value in [soft.trim(), hard.trim()] {
        if value.eq_ignore_ascii_case("unlimited") {
            continue;
        }
        if value.parse::<u64>().is_err() {
            let why = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            return Some(format!(
                "cannot parse {value} as uint64: strconv.ParseUint: parsing {value:?}: {why}"
            ));
        }
    }
    // LinuxKit prints an empty name here (it formats the wrong variable).
    Some("unknown limit: ".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linuxkit_messages_match_the_corpus() {
        assert_eq!(
            linuxkit_rlimit_error("nofile,abc,4096", None).unwrap(),
            "cannot parse abc as uint64: strconv.ParseUint: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            go_parse_int_error("rw-r--r--"),
            "strconv.ParseInt: parsing \"rw-r--r--\": invalid syntax"
        );
        assert_eq!(
            linuxkit_rlimit_error("a,1", Some(&["a,1".into(), "b".into()])).unwrap(),
            "cannot parse rlimit: [a,1 b]"
        );
    }
}
