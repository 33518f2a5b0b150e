//! The LinuxKit conformance corpus (`../shared/conformance`): every valid case must build with the
//! corpus cache and give LinuxKit's file tree (config.json/runtime.json equal as JSON, every other
//! file byte for byte), except where `tests/conformance/deviations.txt` records that LinuxKit is
//! wrong; every invalid case must fail with a message naming the problem.
//!
//! Set `MOBY_CONFORMANCE` to run another corpus with the same layout (e.g. a hold-out set).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use builder::{EntryKind, TarReader};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{copy_dir, moby_bin};

fn corpus() -> PathBuf {
    match std::env::var_os("MOBY_CONFORMANCE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    }
}

fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an extracted entry looks like: the comparison key of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    link: String,
    sha256: String,
}

/// The tree after extraction: later entries replace earlier ones at the same (normalised) path.
type Tree = BTreeMap<String, Node>;

fn normalise(path: &str) -> String {
    path.trim_start_matches("./").trim_end_matches('/').to_string()
}

fn kind_char(kind: EntryKind) -> char {
    match kind {
        EntryKind::Regular => '-',
        EntryKind::Directory => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::HardLink => 'h',
        EntryKind::Char => 'c',
        EntryKind::Block => 'b',
        EntryKind::Fifo => 'p',
        EntryKind::Other(_) => '?',
    }
}

/// Our tar, as a tree, plus the contents of every regular file.
fn tree_of_tar(tar: &[u8]) -> (Tree, BTreeMap<String, Vec<u8>>) {
    let mut tree = Tree::new();
    let mut contents = BTreeMap::new();
    let mut reader = TarReader::new(tar);
    while let Some(header) = reader.next_header().expect("our tar must parse") {
        let mut data = Vec::new();
        (&mut reader)
            .take(header.size)
            .read_to_end(&mut data)
            .expect("entry data");
        let path = normalise(&header.name);
        let node = Node {
            kind: kind_char(header.kind),
            mode: header.mode,
            uid: header.uid,
            gid: header.gid,
            size: header.size,
            link: header.link_name.clone(),
            sha256: if header.kind == EntryKind::Regular {
                sha256(&data)
            } else {
                String::new()
            },
        };
        if header.kind == EntryKind::Regular {
            contents.insert(path.clone(), data);
        }
        tree.insert(path, node);
    }
    (tree, contents)
}

/// LinuxKit's tar, as a tree, from `listing.tsv`.
fn tree_of_listing(listing: &str) -> Tree {
    let mut tree = Tree::new();
    for line in listing.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let node = Node {
            kind: f[0].chars().next().unwrap_or('?'),
            mode: u32::from_str_radix(f[1], 8).expect("mode"),
            uid: f[2].parse().expect("uid"),
            gid: f[3].parse().expect("gid"),
            size: f[4].parse().expect("size"),
            link: f[7].to_string(),
            sha256: f[8].to_string(),
        };
        tree.insert(normalise(f[6]), node);
    }
    tree
}

/// `CASE<TAB>PATH<TAB>why` lines: differences LinuxKit gets wrong and we deliberately do not copy.
fn deviations() -> BTreeSet<(String, String)> {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/deviations.txt"))
        .expect("deviations.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let case = f.next().unwrap_or_default().to_string();
            let path = f.next().unwrap_or_default().to_string();
            assert!(
                f.next().is_some_and(|why| !why.trim().is_empty()),
                "deviation without a reason: {l}"
            );
            (case, path)
        })
        .collect()
}

struct Case {
    name: String,
    valid: bool,
    args: Vec<String>,
    formats: Vec<String>,
    tar_sha256: Option<String>,
}

fn cases(root: &Path) -> Vec<Case> {
    let index: Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).expect("index.json")).expect("index.json is JSON");
    index
        .as_array()
        .expect("index.json is a list")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_string(),
            valid: c["valid"].as_bool().expect("valid"),
            args: c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("arg").to_string())
                .collect(),
            formats: c["formats"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            tar_sha256: c["tar_sha256"].as_str().map(str::to_string),
        })
        .collect()
}

fn run_moby(case_dir: &Path, cache: &Path, extra: &[&str], args: &[String]) -> Output {
    Command::new(moby_bin())
        .current_dir(case_dir)
        .arg("build")
        .args(["--cache", cache.to_str().expect("utf-8 path")])
        .args(extra)
        .args(args)
        .env("HOME", cache.parent().expect("cache has a parent"))
        .output()
        .expect("run moby")
}

/// Compares one valid case; returns the differences not covered by deviations, and whether the tar
/// is byte-identical to LinuxKit's.
fn check_valid(
    root: &Path,
    case: &Case,
    cache: &Path,
    out: &Path,
    allowed: &BTreeSet<(String, String)>,
) -> (Vec<String>, bool) {
    let case_dir = root.join("cases").join(&case.name);
    let expected_dir = root.join("expected").join(&case.name);
    let tar_path = out.join(format!("{}.tar", case.name));
    let output = run_moby(
        &case_dir,
        cache,
        &["--format", "tar", "-o", tar_path.to_str().expect("utf-8")],
        &case.args,
    );
    if !output.status.success() {
        return (
            vec![format!("build failed: {}", String::from_utf8_lossy(&output.stderr))],
            false,
        );
    }
    let tar = fs::read(&tar_path).expect("tar written");
    let identical = case.tar_sha256.as_deref() == Some(sha256(&tar).as_str());
    let (ours, contents) = tree_of_tar(&tar);
    let theirs = tree_of_listing(&fs::read_to_string(expected_dir.join("listing.tsv")).expect("listing.tsv"));
    let is_allowed = |path: &str| allowed.contains(&(case.name.clone(), path.to_string()));

    let mut problems = Vec::new();
    for path in ours.keys().chain(theirs.keys()).collect::<BTreeSet<_>>() {
        if is_allowed(path) {
            continue;
        }
        let (a, b) = (ours.get(path), theirs.get(path));
        let json = path.ends_with("/config.json") || path.ends_with("/runtime.json");
        match (a, b) {
            (Some(a), Some(b)) if json => {
                let mut a_meta = a.clone();
                let mut b_meta = b.clone();
                (a_meta.size, a_meta.sha256, b_meta.size, b_meta.sha256) = (0, String::new(), 0, String::new());
                if a_meta != b_meta {
                    problems.push(format!("{path}: ours {a:?}, LinuxKit's {b:?}"));
                }
                let expected: Value =
                    serde_json::from_slice(&fs::read(expected_dir.join("files").join(path)).expect("saved json"))
                        .expect("json");
                let actual: Value = serde_json::from_slice(&contents[path]).unwrap_or(Value::Null);
                let mut differences = Vec::new();
                json_diff(&actual, &expected, "", &mut differences);
                if !differences.is_empty() {
                    problems.push(format!("{path}: JSON differs at {}", differences.join(", ")));
                }
            }
            (Some(a), Some(b)) if a != b => problems.push(format!("{path}: ours {a:?}, LinuxKit's {b:?}")),
            (Some(_), None) => problems.push(format!("{path}: only in ours")),
            (None, Some(_)) => problems.push(format!("{path}: missing from ours")),
            _ => {}
        }
    }
    if case.formats.iter().any(|f| f == "kernel+initrd") {
        problems.extend(check_kernel_initrd(case, cache, out, &expected_dir, &is_allowed));
    }
    (problems, identical)
}

/// Where two JSON values differ: `path: ours != theirs`, for each leaf that differs.
fn json_diff(ours: &Value, theirs: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                let (x, y) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                json_diff(x, y, &format!("{path}.{key}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ if ours != theirs => out.push(format!("{path}: {ours} != {theirs}")),
        _ => {}
    }
}

/// Builds `kernel+initrd` and compares the kernel, the cmdline and the initrd's cpio entries.
fn check_kernel_initrd(
    case: &Case,
    cache: &Path,
    out: &Path,
    expected_dir: &Path,
    is_allowed: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = out.join(format!("{}-ki", case.name));
    fs::create_dir_all(&dir).expect("output dir");
    let case_dir = expected_dir
        .parent()
        .and_then(Path::parent)
        .expect("corpus root")
        .join("cases")
        .join(&case.name);
    let output = run_moby(
        &case_dir,
        cache,
        &[
            "--format",
            "kernel+initrd",
            "--dir",
            dir.to_str().expect("utf-8"),
            "--name",
            &case.name,
        ],
        &case.args,
    );
    if !output.status.success() {
        return vec![format!(
            "kernel+initrd build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )];
    }
    let sums = fs::read_to_string(expected_dir.join("kernel+initrd/sha256sums")).expect("sha256sums");
    for line in sums.lines() {
        let Some((sum, file)) = line.split_once("  ") else {
            continue;
        };
        if file.ends_with("-initrd.img") {
            continue; // compared entry by entry below: the gzip stream depends on the compressor
        }
        match fs::read(dir.join(file)) {
            Ok(data) if sha256(&data) == sum => {}
            Ok(_) => problems.push(format!("{file}: content differs")),
            Err(err) => problems.push(format!("{file}: {err}")),
        }
    }
    let initrd = fs::read(dir.join(format!("{}-initrd.img", case.name))).expect("initrd written");
    let summary: Value =
        serde_json::from_slice(&fs::read(expected_dir.join("summary.json")).expect("summary")).expect("json");
    let ucode_size = summary["kernel+initrd"]["ucode_prefix_size"].as_u64().unwrap_or(0) as usize;
    if let Some(prefix_sum) = summary["kernel+initrd"]["ucode_prefix_sha256"].as_str() {
        if initrd.len() < ucode_size || sha256(&initrd[..ucode_size]) != prefix_sum {
            problems.push("initrd: microcode prefix differs".into());
        }
    }
    let mut cpio = Vec::new();
    flate2::read::MultiGzDecoder::new(&initrd[ucode_size.min(initrd.len())..])
        .read_to_end(&mut cpio)
        .expect("initrd is gzip");
    // An entry deviates in the initrd when it deviates in the tar, or is listed as initrd:NAME.
    let compared = |line: &String| {
        let name = line.split('\t').next().unwrap_or_default();
        !is_allowed(name) && !is_allowed(&format!("initrd:{name}"))
    };
    let ours: Vec<String> = crate::support::cpio_listing(&cpio)
        .into_iter()
        .filter(compared)
        .collect();
    let theirs: Vec<String> = fs::read_to_string(expected_dir.join("kernel+initrd/initrd-listing.tsv"))
        .expect("initrd listing")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .filter(compared)
        .collect();
    if ours != theirs {
        let first = ours
            .iter()
            .zip(&theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        problems.push(format!(
            "initrd entries differ at #{first}: ours {:?}, LinuxKit's {:?} ({} vs {} entries)",
            ours.get(first),
            theirs.get(first),
            ours.len(),
            theirs.len()
        ));
    }
    problems
}

/// The problems an invalid case reports, as words our message must contain.
fn expected_error_words(error_txt: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut section = "";
    for line in error_txt.lines() {
        match line {
            "--- stdout" | "--- stderr" => section = line,
            _ if section == "--- stdout" && line.starts_with("- ") => {
                let (path, message) = line[2..].split_once(": ").unwrap_or((&line[2..], ""));
                if let Some(prop) = message
                    .strip_prefix("Additional property ")
                    .and_then(|m| m.strip_suffix(" is not allowed"))
                {
                    words.push(prop.to_string());
                } else if let Some(prop) = message.strip_suffix(" is required") {
                    words.push(prop.to_string());
                } else if let Some(last) = path.rsplit('.').next() {
                    words.push(last.to_string());
                }
            }
            _ if section == "--- stderr" && line.starts_with("Error: ") && !line.contains("invalid configuration") => {
                let quoted = line.split('"').nth(1).filter(|q| !q.is_empty());
                let word = quoted
                    .map(str::to_string)
                    .unwrap_or_else(|| line.rsplit(' ').next().unwrap_or_default().to_string());
                words.push(word);
            }
            _ => {}
        }
    }
    words
}

#[test]
fn conformance_corpus() {
    let root = corpus();
    let work = tempfile::tempdir().expect("temp dir");
    let cache = work.path().join("cache");
    copy_dir(&root.join("cache"), &cache);
    let out = work.path().join("out");
    fs::create_dir_all(&out).expect("out dir");
    let allowed = deviations();

    let all = cases(&root);
    let (mut matched, mut identical, mut failures) = (0, 0, Vec::new());
    for case in &all {
        if case.valid {
            let (problems, same_bytes) = check_valid(&root, case, &cache, &out, &allowed);
            identical += usize::from(same_bytes);
            if problems.is_empty() {
                matched += 1;
            } else {
                failures.push(format!("{}:\n  {}", case.name, problems.join("\n  ")));
            }
        } else {
            let output = run_moby(
                &root.join("cases").join(&case.name),
                &cache,
                &["--format", "tar", "-o", out.join("bad.tar").to_str().expect("utf-8")],
                &case.args,
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            let error_txt =
                fs::read_to_string(root.join("expected").join(&case.name).join("error.txt")).expect("error.txt");
            let missing: Vec<String> = expected_error_words(&error_txt)
                .into_iter()
                .filter(|w| !stderr.contains(w.as_str()))
                .collect();
            if output.status.success() {
                failures.push(format!("{}: built, but LinuxKit rejects it", case.name));
            } else if !missing.is_empty() || stderr.contains("panicked") {
                failures.push(format!("{}: error does not name {missing:?}:\n{stderr}", case.name));
            } else {
                matched += 1;
            }
        }
    }
    println!(
        "{matched}/{} cases match ({identical} valid cases byte-identical to LinuxKit's tar)",
        all.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
