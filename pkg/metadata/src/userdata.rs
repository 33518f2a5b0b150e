//! `/run/config/userdata` and the JSON expansion of it, as LinuxKit's metadata does it.
//!
//! The raw userdata is always written to `BASE/userdata` (mode 0644). If it is a JSON object,
//! each member is an entry: `{"perm": "0600", "content": "..."}` is a file,
//! `{"perm": "0700", "entries": {...}}` a directory holding more entries. `perm` is an octal
//! string (default 0644 for files, 0755 for directories). For example
//! `{"ssh": {"entries": {"authorized_keys": {"perm": "0600", "content": "ssh-ed25519 ..."}}}}`
//! creates `BASE/ssh/authorized_keys` with mode 0600.
//!
//! Where this differs from LinuxKit, it is to never write outside `BASE` and never stop on one bad
//! entry:
//! - a name with a `..` component, or one that names `BASE` itself (`""`, `"."`, `"/"`), is refused
//!   (LinuxKit joins it onto the path, so `..` escapes); `a/b` and a leading `/` are cleaned as
//!   LinuxKit's `path.Join` does;
//! - an entry with a field of the wrong type is skipped on its own (LinuxKit's JSON decoding fails
//!   for the whole document and then expands nothing);
//! - modes are exactly the `perm` asked for (LinuxKit's `os.WriteFile` applies the umask, and
//!   keeps the mode of a file that already exists); files are written atomically.
//!
//! Every skipped entry is logged with its path and the reason.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::write::write_file_atomic;

/// The file holding the raw userdata.
pub const USERDATA_FILE: &str = "userdata";
/// Mode of a file entry without `perm`.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Mode of a directory entry without `perm`.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// What the expansion did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Files and directories created or updated, in the order they were written.
    pub written: Vec<PathBuf>,
    /// One line per skipped entry: the JSON path and why.
    pub skipped: Vec<String>,
}

/// Writes `data` to `BASE/userdata`, then, if it is a JSON object of entries, the files and
/// directories it describes under `base`. Only failing to write `BASE/userdata` is an error;
/// bad entries are logged and skipped.
pub fn process_userdata(base: &Path, data: &[u8]) -> io::Result<Expansion> {
    let raw = base.join(USERDATA_FILE);
    write_file_atomic(&raw, data, DEFAULT_FILE_MODE)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", raw.display())))?;
    let mut expansion = Expansion::default();
    let root = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(root)) => root,
        Ok(other) => {
            info!(
                "Userdata is JSON but not an object (it is {}): only {} written",
                kind(&other),
                raw.display()
            );
            return Ok(expansion);
        }
        Err(e) => {
            // Not JSON: the usual case for plain userdata, not an error.
            info!("Userdata is not JSON ({e}): only {} written", raw.display());
            return Ok(expansion);
        }
    };
    expand_entries(base, "", &root, &mut expansion);
    Ok(expansion)
}

/// Expands the entries of one JSON object into `dir`. `json_path` names the object in messages.
fn expand_entries(dir: &Path, json_path: &str, entries: &Map<String, Value>, out: &mut Expansion) {
    for (name, entry) in entries {
        let entry_path = format!("{json_path}/{name}");
        let target = match join_name(dir, name) {
            Ok(target) => target,
            Err(why) => {
                skip(out, &entry_path, &why);
                continue;
            }
        };
        if let Err(why) = expand_entry(&target, &entry_path, entry, out) {
            skip(out, &entry_path, &format!("{} ({})", why, target.display()));
        }
    }
}

/// Writes one entry (a file, or a directory and what it holds) at `target`.
fn expand_entry(target: &Path, entry_path: &str, entry: &Value, out: &mut Expansion) -> Result<(), String> {
    let Value::Object(fields) = entry else {
        return Err(format!(
            "is {}, not an object with \"content\" or \"entries\"",
            kind(entry)
        ));
    };
    let perm = match field(fields, "perm") {
        None | Some(Value::Null) => None,
        Some(Value::String(perm)) if perm.is_empty() => None,
        Some(Value::String(perm)) => Some(perm.as_str()),
        Some(other) => {
            return Err(format!(
                "\"perm\" is {}, expected an octal string like \"0600\"",
                kind(other)
            ))
        }
    };
    let content = match field(fields, "content") {
        None | Some(Value::Null) => None,
        Some(Value::String(content)) => Some(content.as_str()),
        Some(other) => return Err(format!("\"content\" is {}, expected a string", kind(other))),
    };
    let children = match field(fields, "entries") {
        None | Some(Value::Null) => None,
        Some(Value::Object(children)) => Some(children),
        Some(other) => return Err(format!("\"entries\" is {}, expected an object", kind(other))),
    };
    match (content, children) {
        (Some(content), None) => {
            let mode = parse_mode(perm, DEFAULT_FILE_MODE)?;
            write_file_atomic(target, content.as_bytes(), mode).map_err(|e| format!("cannot write the file: {e}"))?;
            debug!("wrote {} (mode {mode:04o})", target.display());
            out.written.push(target.to_path_buf());
            Ok(())
        }
        (None, Some(children)) => {
            let mode = parse_mode(perm, DEFAULT_DIR_MODE)?;
            make_dir(target, mode, perm.is_some()).map_err(|e| format!("cannot create the directory: {e}"))?;
            debug!("created {} (mode {mode:04o})", target.display());
            out.written.push(target.to_path_buf());
            expand_entries(target, entry_path, children, out);
            Ok(())
        }
        (Some(_), Some(_)) => Err("is invalid: it has both \"content\" (a file) and \"entries\" (a directory)".into()),
        (None, None) => Err("is invalid: it has neither \"content\" (a file) nor \"entries\" (a directory)".into()),
    }
}

/// Creates the directory `target` (and missing parents, as LinuxKit's `MkdirAll`) with `mode`.
/// An existing directory keeps its mode unless `perm` was given explicitly.
fn make_dir(target: &Path, mode: u32, explicit: bool) -> io::Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            if explicit {
                fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        Ok(meta) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "a {} is in the way",
                if meta.file_type().is_symlink() {
                    "symbolic link"
                } else {
                    "file"
                }
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(mode).create(target)?;
            // The umask applied to DirBuilder's mode: set the one asked for.
            fs::set_permissions(target, fs::Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
    }
}

/// `dir` joined with an entry name, cleaned the way Go's `path.Join` does; `..` and names that
/// clean to nothing are refused so nothing is written outside the base directory.
fn join_name(dir: &Path, name: &str) -> Result<PathBuf, String> {
    if name.contains('\0') {
        return Err("name contains a NUL byte".into());
    }
    let mut target = dir.to_path_buf();
    let mut parts = 0;
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err("name has a \"..\" component: refused, entries stay inside the config directory".into())
            }
            part => {
                target.push(part);
                parts += 1;
            }
        }
    }
    if parts == 0 {
        return Err("name is empty once cleaned: refused, it would replace the directory holding it".into());
    }
    Ok(target)
}

/// `perm` as LinuxKit parses it (`strconv.ParseUint(perm, 8, 32)`), keeping the permission bits.
fn parse_mode(perm: Option<&str>, default: u32) -> Result<u32, String> {
    let Some(perm) = perm else {
        return Ok(default);
    };
    match u32::from_str_radix(perm, 8) {
        Ok(mode) if !perm.starts_with('+') => Ok(mode & 0o777),
        _ => Err(format!("\"perm\" {perm:?} is not an octal mode like \"0600\"")),
    }
}

/// A member of a JSON object the way Go's `encoding/json` finds it: the exact name, else the
/// first member equal to it ignoring case.
fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).or_else(|| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn skip(out: &mut Expansion, entry_path: &str, why: &str) {
    let line = format!("userdata entry {entry_path} skipped: {why}");
    info!("{line}");
    out.skipped.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A base directory inside a scratch directory, so writes outside the base can be seen.
    struct Scratch {
        _dir: tempfile::TempDir,
        outer: PathBuf,
        base: PathBuf,
    }

    fn scratch() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().to_path_buf();
        let base = outer.join("config");
        fs::create_dir(&base).unwrap();
        Scratch { _dir: dir, outer, base }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every path under `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                if path.is_dir() {
                    walk(root, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn linuxkit_sample_config() {
        let s = scratch();
        let json = r#"{
          "ssh": {"entries": {"sshd_config": {"perm": "0600", "content": "PermitRootLogin yes\nPasswordAuthentication no"}}},
          "foo": {"entries": {"bar": {"content": "foobar"}, "baz": {"perm": "0600", "content": "bar"}}}
        }"#;
        let expansion = process_userdata(&s.base, json.as_bytes()).unwrap();
        assert!(expansion.skipped.is_empty(), "{:?}", expansion.skipped);
        let sshd = s.base.join("ssh/sshd_config");
        assert_eq!(read(&sshd), "PermitRootLogin yes\nPasswordAuthentication no");
        assert_eq!(mode(&sshd), 0o600);
        assert_eq!(read(&s.base.join("foo/bar")), "foobar");
        assert_eq!(mode(&s.base.join("foo/bar")), 0o644);
        assert_eq!(read(&s.base.join("foo/baz")), "bar");
        assert_eq!(mode(&s.base.join("foo")), 0o755);
        assert_eq!(
            read(&s.base.join("userdata")),
            json,
            "the raw userdata is always written"
        );
        assert_eq!(mode(&s.base.join("userdata")), 0o644);
        assert_eq!(
            tree(&s.base),
            ["foo", "foo/bar", "foo/baz", "ssh", "ssh/sshd_config", "userdata"]
        );
    }

    #[test]
    fn authorized_keys_from_the_brief() {
        let s = scratch();
        let json = r#"{"ssh":{"entries":{"authorized_keys":{"perm":"0600","content":"ssh-ed25519 AAAA me@host\n"}}}}"#;
        process_userdata(&s.base, json.as_bytes()).unwrap();
        let keys = s.base.join("ssh/authorized_keys");
        assert_eq!(read(&keys), "ssh-ed25519 AAAA me@host\n");
        assert_eq!(mode(&keys), 0o600);
    }

    #[test]
    fn single_empty_file_and_empty_directory() {
        let s = scratch();
        let json = r#"{"hostname": {"content": "foobar"}, "empty": {"content": ""}, "dir": {"entries": {}}}"#;
        let expansion = process_userdata(&s.base, json.as_bytes()).unwrap();
        assert_eq!(read(&s.base.join("hostname")), "foobar");
        assert_eq!(read(&s.base.join("empty")), "");
        assert!(s.base.join("dir").is_dir());
        assert_eq!(fs::read_dir(s.base.join("dir")).unwrap().count(), 0);
        assert_eq!(expansion.written.len(), 3);
    }

    #[test]
    fn permissions_of_directories_and_files_are_exact() {
        let s = scratch();
        let json = r#"{
          "restricted": {"perm": "0700", "entries": {"password": {"perm": "0600", "content": "secret"}}},
          "open": {"perm": "0666", "content": "everyone"},
          "setuid": {"perm": "4755", "content": "no setuid"},
          "short": {"perm": "640", "content": "x"}
        }"#;
        process_userdata(&s.base, json.as_bytes()).unwrap();
        assert_eq!(mode(&s.base.join("restricted")), 0o700);
        assert_eq!(mode(&s.base.join("restricted/password")), 0o600);
        assert_eq!(mode(&s.base.join("open")), 0o666, "the umask does not apply");
        assert_eq!(mode(&s.base.join("setuid")), 0o755, "only permission bits, as LinuxKit");
        assert_eq!(mode(&s.base.join("short")), 0o640);
    }

    #[test]
    fn deep_tree() {
        let s = scratch();
        let json = r#"{"level1": {"entries": {"level2": {"entries": {
            "file2": {"content": "depth2"},
            "level3": {"perm": "0750", "entries": {"file3": {"content": "depth3"}}}}}}}}"#;
        process_userdata(&s.base, json.as_bytes()).unwrap();
        assert_eq!(read(&s.base.join("level1/level2/level3/file3")), "depth3");
        assert_eq!(read(&s.base.join("level1/level2/file2")), "depth2");
        assert_eq!(mode(&s.base.join("level1/level2/level3")), 0o750);
    }

    #[test]
    fn not_json_writes_only_the_raw_userdata() {
        let s = scratch();
        let data = b"#!/bin/sh\necho hello\n\xff\xfe binary too";
        let expansion = process_userdata(&s.base, data).unwrap();
        assert_eq!(expansion, Expansion::default());
        assert_eq!(fs::read(s.base.join("userdata")).unwrap(), data);
        assert_eq!(tree(&s.base), ["userdata"]);
    }

    #[test]
    fn json_that_is_not_an_object_writes_only_the_raw_userdata() {
        for data in [&b"[1, 2]"[..], b"\"text\"", b"42", b"null", b""] {
            let s = scratch();
            process_userdata(&s.base, data).unwrap();
            assert_eq!(fs::read(s.base.join("userdata")).unwrap(), data);
            assert_eq!(tree(&s.base), ["userdata"], "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn dot_dot_is_refused_at_any_depth() {
        let s = scratch();
        let json = r#"{
          "..": {"content": "escaped"},
          "../escaped": {"content": "escaped"},
          "a/../../escaped": {"content": "escaped"},
          "d": {"entries": {"..": {"entries": {"escaped": {"content": "x"}}}, "../../escaped": {"content": "x"}, "ok": {"content": "fine"}}},
          "": {"content": "replaces the base"},
          ".": {"entries": {}},
          "/": {"content": "x"}
        }"#;
        let expansion = process_userdata(&s.base, json.as_bytes()).unwrap();
        assert_eq!(tree(&s.outer), ["config", "config/d", "config/d/ok", "config/userdata"]);
        assert_eq!(expansion.skipped.len(), 8, "{:#?}", expansion.skipped);
        assert!(expansion
            .skipped
            .iter()
            .any(|l| l.contains("/d/..") && l.contains("\"..\"")));
        assert!(expansion.skipped.iter().any(|l| l.contains("empty once cleaned")));
    }

    #[test]
    fn names_are_cleaned_like_go_path_join() {
        let s = scratch();
        let json = r#"{"/etc": {"entries": {"./x//y": {"entries": {}}}}, "sub": {"entries": {}}, "sub/file": {"content": "c"}}"#;
        let expansion = process_userdata(&s.base, json.as_bytes()).unwrap();
        assert!(expansion.skipped.is_empty(), "{:?}", expansion.skipped);
        assert!(
            s.base.join("etc/x/y").is_dir(),
            "a directory name with slashes creates its parents"
        );
        assert_eq!(read(&s.base.join("sub/file")), "c");
    }

    #[test]
    fn bad_entries_are_skipped_and_the_rest_written() {
        let s = scratch();
        let json = r#"{
          "badperm": {"perm": "rw-r--r--", "content": "x"},
          "numperm": {"perm": 600, "content": "x"},
          "plusperm": {"perm": "+600", "content": "x"},
          "numcontent": {"content": 5},
          "both": {"content": "x", "entries": {}},
          "neither": {"perm": "0600"},
          "scalar": "just a string",
          "nullentry": null,
          "listentries": {"entries": ["a"]},
          "baddir": {"perm": "9", "entries": {"inner": {"content": "not written"}}},
          "good": {"content": "written"},
          "gooddir": {"entries": {"bad": 1, "good": {"content": "written"}}}
        }"#;
        let expansion = process_userdata(&s.base, json.as_bytes()).unwrap();
        assert_eq!(tree(&s.base), ["good", "gooddir", "gooddir/good", "userdata"]);
        assert_eq!(expansion.skipped.len(), 11, "{:#?}", expansion.skipped);
        let reason = |name: &str| {
            expansion
                .skipped
                .iter()
                .find(|l| l.starts_with(&format!("userdata entry /{name} ")))
                .unwrap_or_else(|| panic!("no message for {name}: {:#?}", expansion.skipped))
                .clone()
        };
        assert!(reason("badperm").contains("not an octal mode"));
        assert!(reason("numperm").contains("\"perm\" is a number"));
        assert!(reason("numcontent").contains("\"content\" is a number"));
        assert!(reason("both").contains("both"));
        assert!(reason("neither").contains("neither"));
        assert!(reason("scalar").contains("is a string"));
        assert!(reason("gooddir/bad").contains("is a number"));
        assert!(reason("baddir").contains(&s.base.join("baddir").display().to_string()));
    }

    #[test]
    fn field_names_match_case_insensitively_like_go() {
        let s = scratch();
        process_userdata(&s.base, br#"{"f": {"Perm": "0600", "CONTENT": "x"}}"#).unwrap();
        assert_eq!(read(&s.base.join("f")), "x");
        assert_eq!(mode(&s.base.join("f")), 0o600);
    }

    #[test]
    fn existing_paths() {
        let s = scratch();
        fs::write(s.base.join("file"), "old").unwrap();
        fs::create_dir(s.base.join("dir")).unwrap();
        fs::set_permissions(s.base.join("dir"), fs::Permissions::from_mode(0o711)).unwrap();
        fs::create_dir(s.base.join("keep")).unwrap();
        fs::set_permissions(s.base.join("keep"), fs::Permissions::from_mode(0o711)).unwrap();
        let json = r#"{
          "file": {"entries": {}},
          "dir": {"content": "a directory is not replaced"},
          "keep": {"entries": {"new": {"content": "n"}}},
          "dir2": {"entries": {}}
        }"#;
        let expansion = process_userdata(&s.base, json.as_bytes()).unwrap();
        assert_eq!(read(&s.base.join("file")), "old");
        assert!(s.base.join("dir").is_dir());
        assert_eq!(
            mode(&s.base.join("keep")),
            0o711,
            "no perm: an existing directory keeps its mode"
        );
        assert_eq!(read(&s.base.join("keep/new")), "n");
        assert_eq!(expansion.skipped.len(), 2, "{:#?}", expansion.skipped);
        process_userdata(
            &s.base,
            br#"{"keep": {"perm": "0700", "entries": {}}, "file": {"content": "new"}}"#,
        )
        .unwrap();
        assert_eq!(
            mode(&s.base.join("keep")),
            0o700,
            "an explicit perm applies to an existing directory"
        );
        assert_eq!(read(&s.base.join("file")), "new");
    }

    #[test]
    fn unwritable_base_is_an_error_naming_the_file() {
        let s = scratch();
        let err = process_userdata(&s.base.join("missing"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing/userdata"), "{err}");
    }
}
