//! Parsers for the string-encoded fields of a container entry (`rlimits`, `binds`, `tmpfs`, modes,
//! capabilities), shared by YAML validation (which reports positions) and by OCI config generation
//! (which also meets these fields in image labels), and the rules for `files` paths, shared by
//! validation and by the assembly of the `files` section. Each returns a message without position;
//! the caller adds where the value came from.

use std::collections::HashMap;

use super::model::File;
use crate::tar::gopath;

/// Every capability LinuxKit knows, in kernel order: what `capabilities: [all]` expands to.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every rlimit name the runtime accepts.
pub const RLIMIT_NAMES: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// `unlimited`, as the runtime spec encodes it.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// A parsed `name,soft,hard` rlimit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// Canonical name, e.g. `RLIMIT_NOFILE`.
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Parses `name,soft,hard`: the name in any case with or without `RLIMIT_`, each field trimmed,
/// `unlimited` (any case) for no limit.
pub fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    let parts: Vec<&str> = text.splitn(3, ',').collect();
    let [name, soft, hard] = parts[..] else {
        return Err(format!(
            "cannot parse rlimit {text:?}: expected \"name,soft,hard\", e.g. \"nofile,1024,4096\""
        ));
    };
    let mut kind = name.trim().to_ascii_uppercase();
    if !kind.starts_with("RLIMIT_") {
        kind.insert_str(0, "RLIMIT_");
    }
    if !RLIMIT_NAMES.contains(&kind.as_str()) {
        let hint = did_you_mean(&kind, RLIMIT_NAMES.iter().copied())
            .map(|n| {
                format!(
                    " (did you mean {:?}?)",
                    n.trim_start_matches("RLIMIT_").to_ascii_lowercase()
                )
            })
            .unwrap_or_default();
        return Err(format!("unknown rlimit {:?} in {text:?}{hint}", name.trim()));
    }
    let limit = |value: &str| -> Result<u64, String> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("unlimited") {
            return Ok(RLIM_INFINITY);
        }
        value.parse::<u64>().map_err(|_| {
            format!("cannot parse rlimit {text:?}: {value:?} is neither a non-negative integer nor \"unlimited\"")
        })
    };
    Ok(Rlimit {
        kind,
        soft: limit(soft)?,
        hard: limit(hard)?,
    })
}

/// A parsed `source:destination[:options]` bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path, or a volume name when it does not start with `/`.
    pub source: String,
    /// Path in the container.
    pub destination: String,
    /// Mount options: `rw,rbind,rshared` when none are written, else the written ones plus `rbind`
    /// (LinuxKit appends it even when already present).
    pub options: Vec<String>,
}

/// Parses a bind as LinuxKit does.
pub fn parse_bind(text: &str) -> Result<Bind, String> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts[..] {
        [_] => Err(format!(
            "cannot parse bind {text:?}: missing ':' (expected \"source:destination[:options]\")"
        )),
        [source, destination] => Ok(Bind {
            source: source.to_string(),
            destination: destination.to_string(),
            options: vec!["rw".into(), "rbind".into(), "rshared".into()],
        }),
        [source, destination, options] => {
            let mut options: Vec<String> = options.split(',').map(str::to_string).collect();
            options.push("rbind".into());
            Ok(Bind {
                source: source.to_string(),
                destination: destination.to_string(),
                options,
            })
        }
        _ => Err(format!(
            "cannot parse bind {text:?}: too many ':' (expected \"source:destination[:options]\")"
        )),
    }
}

/// A parsed `destination[:options]` tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Path in the container.
    pub destination: String,
    /// Mount options, if any were written.
    pub options: Option<Vec<String>>,
}

/// Parses a tmpfs entry as LinuxKit does.
pub fn parse_tmpfs(text: &str) -> Result<Tmpfs, String> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts[..] {
        [destination] => Ok(Tmpfs {
            destination: destination.to_string(),
            options: None,
        }),
        [destination, options] => Ok(Tmpfs {
            destination: destination.to_string(),
            options: Some(options.split(',').map(str::to_string).collect()),
        }),
        _ => Err(format!(
            "cannot parse tmpfs {text:?}: too many ':' (expected \"destination[:options]\")"
        )),
    }
}

/// Parses an octal mode string such as `0644` or `755` (the leading 0 is optional).
pub fn parse_octal_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!("cannot parse mode {text:?} as an octal number, e.g. \"0644\""));
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("mode {text:?} is out of range: at most 07777"))
}

/// The entry name of a `files` path: the path without the one leading `/` that LinuxKit drops, and
/// otherwise as written (LinuxKit does not clean it, and the names must match). Refuses every path
/// whose entry would not land strictly inside the image root when extracted.
pub fn file_entry_name(path: &str) -> Result<&str, String> {
    if path.is_empty() {
        return Err("a file entry needs a path".into());
    }
    let name = path.strip_prefix('/').unwrap_or(path);
    if name.contains('\0') {
        return Err(format!("path {path:?} contains a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(format!(
            "path {path:?} stays absolute once its first '/' is dropped, so it would be written outside the image root: write {:?}",
            gopath::clean(path)
        ));
    }
    if name.split('/').any(|element| element == "..") {
        return Err(format!(
            "path {path:?} has a '..' element, which can climb out of the image root: write the path without it"
        ));
    }
    if gopath::clean(name) == "." {
        return Err(format!(
            "path {path:?} names the image root itself: name a file or directory below it"
        ));
    }
    Ok(name)
}

/// The `files` entries seen so far that are not directories, by cleaned name. Nothing may be created
/// below them: below a symlink an extractor would write wherever the link points, below a regular
/// file the entry cannot exist. A later directory entry at the same name does not lift this (an
/// extractor may keep the symlink and follow it).
#[derive(Debug, Default)]
pub(crate) struct FileTree {
    non_dirs: HashMap<String, (usize, bool)>,
}

/// Why a `files` entry cannot be created: an earlier entry made one of its ancestors a non-directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// The ancestor, cleaned.
    pub ancestor: String,
    /// The index of the earlier entry (in the order given to [`FileTree::add`]).
    pub index: usize,
    /// Whether that entry is a symlink (else a regular file).
    pub symlink: bool,
}

impl Blocked {
    /// The message for the entry at `path`; `earlier` names the entry that made the ancestor.
    pub fn message(&self, path: &str, earlier: &str) -> String {
        let (what, why) = if self.symlink {
            ("a symlink", "extracting the image would write wherever the link points")
        } else {
            ("a regular file", "nothing can be created below a file")
        };
        format!(
            "path {path:?} lies below {:?}, which {earlier} makes {what}: {why}",
            self.ancestor
        )
    }
}

impl FileTree {
    /// Adds entry `index` with the entry name `name` (see [`file_entry_name`]), unless an earlier
    /// entry made one of its ancestors a symlink or a file.
    pub fn add(&mut self, index: usize, name: &str, file: &File) -> Result<(), Blocked> {
        let cleaned = gopath::clean(name);
        let blocked = gopath::ancestors(&cleaned).find_map(|dir| {
            self.non_dirs.get(dir).map(|&(index, symlink)| Blocked {
                ancestor: dir.to_string(),
                index,
                symlink,
            })
        });
        if let Some(blocked) = blocked {
            return Err(blocked);
        }
        // LinuxKit's precedence: a directory, else a symlink, else a file.
        if !file.directory {
            self.non_dirs
                .entry(cleaned)
                .or_insert((index, !file.symlink.is_empty()));
        }
        Ok(())
    }
}

/// Expands a capability list: a single `all`/`none` (any case) is special; every other entry must
/// be a known `CAP_*` name. Order and duplicates are kept.
pub fn expand_capabilities(list: &[String]) -> Result<Vec<String>, String> {
    if let [only] = list {
        if only.eq_ignore_ascii_case("all") {
            return Ok(ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect());
        }
        if only.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
    }
    for cap in list {
        check_capability(cap)?;
    }
    Ok(list.to_vec())
}

/// Checks one capability name.
pub fn check_capability(cap: &str) -> Result<(), String> {
    if ALL_CAPABILITIES.contains(&cap) {
        return Ok(());
    }
    let normalized = {
        let upper = cap.to_ascii_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let hint = if ALL_CAPABILITIES.contains(&normalized.as_str()) {
        format!(" (did you mean {normalized:?}?)")
    } else {
        did_you_mean(&normalized, ALL_CAPABILITIES.iter().copied())
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default()
    };
    Err(format!("unknown capability {cap:?}{hint}"))
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimits_accept_every_spelling() {
        let r = parse_rlimit(" nofile , 1024 , UNLIMITED").unwrap();
        assert_eq!(
            r,
            Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                soft: 1024,
                hard: RLIM_INFINITY
            }
        );
        assert_eq!(parse_rlimit("RLIMIT_core,0,0").unwrap().kind, "RLIMIT_CORE");
    }

    #[test]
    fn rlimits_reject_bad_values_with_a_hint() {
        assert!(parse_rlimit("nofile,abc,4096").unwrap_err().contains("\"abc\""));
        assert!(parse_rlimit("nofile,1").unwrap_err().contains("name,soft,hard"));
        assert!(parse_rlimit("nofil,1,2")
            .unwrap_err()
            .contains("did you mean \"nofile\""));
        assert!(parse_rlimit("nofile,1,2,3").is_err());
    }

    #[test]
    fn binds_default_and_append_rbind() {
        assert_eq!(parse_bind("/a:/b").unwrap().options, ["rw", "rbind", "rshared"]);
        assert_eq!(parse_bind("/a:/b:ro,rbind").unwrap().options, ["ro", "rbind", "rbind"]);
        assert!(parse_bind("/a").is_err());
        assert!(parse_bind("/a:/b:c:d").is_err());
    }

    #[test]
    fn tmpfs_options_are_optional() {
        assert_eq!(parse_tmpfs("/run").unwrap().options, None);
        assert_eq!(
            parse_tmpfs("/tmp:size=1m,mode=1777").unwrap().options.unwrap(),
            ["size=1m", "mode=1777"]
        );
        assert!(parse_tmpfs("/a:b:c").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_octal_mode("0644"), Ok(0o644));
        assert_eq!(parse_octal_mode("755"), Ok(0o755));
        assert_eq!(parse_octal_mode("04755"), Ok(0o4755));
        for bad in ["", "rw-r--r--", "0855", "-1", "077777"] {
            assert!(parse_octal_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn capabilities_expand_and_check() {
        assert_eq!(expand_capabilities(&["ALL".into()]).unwrap().len(), 41);
        assert!(expand_capabilities(&["None".into()]).unwrap().is_empty());
        let err = expand_capabilities(&["CAP_NET_ADMIN".into(), "CAP_FOO".into()]).unwrap_err();
        assert!(err.contains("CAP_FOO"));
        assert!(check_capability("net_admin").unwrap_err().contains("CAP_NET_ADMIN"));
        assert!(check_capability("CAP_SYS_ADMN").unwrap_err().contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(
            did_you_mean("capabilites", ["capabilities", "command"]),
            Some("capabilities")
        );
        assert_eq!(did_you_mean("kernal", ["kernel", "init"]), Some("kernel"));
        assert_eq!(did_you_mean("zzzzzz", ["kernel", "init"]), None);
    }
}
