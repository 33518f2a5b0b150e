//! `debs.lock`: the exact `.deb` files of a package's `debs:` steps, so that one tag means one
//! image whatever apt offers later. The lock lies in the package folder, so it is part of the
//! sources and of the tag; builds install what it says and nothing else, verified by digest.
//!
//! The format (docs/pkg.md), one line each, `#` comments:
//!
//! ```text
//! rootfs[1] debs: linux-image-cloud-amd64          what the step asks for, as in build.yml
//! rootfs[1] skip: gcc-12-base libc6                its skip list (no line when empty)
//! rootfs[1] linux-image-cloud-amd64 6.1.192-3 amd64 SHA256   one line per package, by name
//! ```
//!
//! Packages are kept per step, not as one list: each step unpacks its own closure in its place
//! among the steps, and a closure cannot be recomputed offline from names alone once apt's
//! lists have moved on.

use std::collections::BTreeMap;
use std::path::Path;

use super::build_yml::{BuildYml, Step};
use super::debs::{DebCache, DebPackage};
use super::{PkgBuildOptions, PkgError};

/// The lock's file name in the package folder.
pub const LOCK_FILE: &str = "debs.lock";

const HEADER: &str = "\
# debs.lock: the exact Debian packages of the debs: steps of build.yml (docs/pkg.md).
# Part of the package's sources, so of its tag. Written by `moby pkg lock`; builds install only
# what it says, verified by sha256. Per step: what it asks for, then NAME VERSION ARCH SHA256.
";

/// What one `debs:` step asks for and the packages pinned for it (sorted by name, then arch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockedStep {
    /// The step's `debs:` names.
    pub names: Vec<String>,
    /// The step's `skip:` names.
    pub skip: Vec<String>,
    /// The pinned closure.
    pub debs: Vec<DebPackage>,
}

/// A parsed `debs.lock`, by step index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebLock {
    /// The steps.
    pub steps: BTreeMap<usize, LockedStep>,
}

/// What [`update_lock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockUpdate {
    /// The lock was written (or rewritten with other contents); so many packages.
    Written(usize),
    /// The lock already said this; so many packages.
    Unchanged(usize),
    /// The package has no `debs:` steps; a lock that was there was removed.
    Removed,
    /// The package has no `debs:` steps and no lock.
    NotNeeded,
}

fn lock_error(file: &Path, line: usize, problem: impl std::fmt::Display) -> PkgError {
    PkgError::Lock {
        file: file.to_path_buf(),
        line,
        problem: problem.to_string(),
    }
}

/// `rootfs[N]` → N.
fn step_index(token: &str) -> Option<usize> {
    token.strip_prefix("rootfs[")?.strip_suffix(']')?.parse().ok()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl DebLock {
    /// Parses the text of the lock `file` (named in errors, with the line).
    pub fn parse(file: &Path, text: &str) -> Result<DebLock, PkgError> {
        let mut lock = DebLock::default();
        let mut asked: BTreeMap<usize, usize> = BTreeMap::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let index = step_index(fields[0])
                .ok_or_else(|| lock_error(file, n, format!("{:?} is not rootfs[INDEX]", fields[0])))?;
            let step = lock.steps.entry(index).or_default();
            let names = || fields[2..].iter().map(|s| s.to_string()).collect::<Vec<_>>();
            match fields.get(1).copied() {
                Some("debs:") if asked.contains_key(&index) => {
                    return Err(lock_error(file, n, format!("a second `debs:` line for rootfs[{index}]")))
                }
                Some("debs:") => {
                    asked.insert(index, n);
                    step.names = names();
                }
                Some("skip:") => step.skip = names(),
                _ => match fields[1..] {
                    [name, version, arch, sha256] if is_sha256(sha256) => step.debs.push(DebPackage {
                        name: name.into(),
                        version: version.into(),
                        arch: arch.into(),
                        sha256: sha256.into(),
                    }),
                    _ => {
                        return Err(lock_error(
                            file,
                            n,
                            "expected `rootfs[N] debs: NAMES`, `rootfs[N] skip: NAMES` or `rootfs[N] NAME VERSION ARCH SHA256` (64 hex digits)",
                        ))
                    }
                },
            }
        }
        if let Some(index) = lock.steps.keys().find(|i| !asked.contains_key(i)) {
            return Err(lock_error(file, 0, format!("rootfs[{index}] has no `debs:` line")));
        }
        Ok(lock)
    }

    /// The lock's text: a header, then each step's request and packages, sorted.
    pub fn render(&self) -> String {
        let mut out = HEADER.to_string();
        for (index, step) in &self.steps {
            out += &format!("rootfs[{index}] debs: {}\n", step.names.join(" "));
            if !step.skip.is_empty() {
                out += &format!("rootfs[{index}] skip: {}\n", step.skip.join(" "));
            }
            let mut debs: Vec<&DebPackage> = step.debs.iter().collect();
            debs.sort();
            for d in debs {
                out += &format!("rootfs[{index}] {} {} {} {}\n", d.name, d.version, d.arch, d.sha256);
            }
        }
        out
    }

    /// The `debs:` steps of `build`, as a lock without packages.
    fn requests(build: &BuildYml) -> BTreeMap<usize, (&[String], &[String])> {
        build
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, step)| match step {
                Step::Debs { names, skip } => Some((i, (names.as_slice(), skip.as_slice()))),
                _ => None,
            })
            .collect()
    }
}

/// Reads `DIR/debs.lock`, `None` when there is none.
fn read_lock(dir: &Path) -> Result<Option<DebLock>, PkgError> {
    let file = dir.join(LOCK_FILE);
    match std::fs::symlink_metadata(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(lock_error(&file, 0, e)),
        Ok(_) => {}
    }
    let text = super::package_file(dir, LOCK_FILE)
        .and_then(std::fs::read_to_string)
        .map_err(|e| lock_error(&file, 0, e))?;
    DebLock::parse(&file, &text).map(Some)
}

/// The pinned packages of each `debs:` step of `build` (by step index), from `DIR/debs.lock`,
/// which must exist when there are `debs:` steps and say what they ask for now.
pub fn pinned(dir: &Path, build: &BuildYml) -> Result<BTreeMap<usize, Vec<DebPackage>>, PkgError> {
    let file = dir.join(LOCK_FILE);
    let requests = DebLock::requests(build);
    let Some(lock) = read_lock(dir)? else {
        if requests.is_empty() {
            return Ok(BTreeMap::new());
        }
        let steps: Vec<String> = requests.keys().map(|i| format!("rootfs[{i}]")).collect();
        return Err(lock_error(
            &file,
            0,
            format!(
                "missing: the debs: steps ({}) install only what a lock pins (exact versions and digests, docs/pkg.md)",
                steps.join(", ")
            ),
        ));
    };
    for (index, step) in &lock.steps {
        match requests.get(index) {
            None => {
                return Err(lock_error(
                    &file,
                    0,
                    format!("out of date: it pins rootfs[{index}], which is not a debs: step of build.yml"),
                ))
            }
            Some((names, skip)) if *names != step.names.as_slice() || *skip != step.skip.as_slice() => {
                return Err(lock_error(
                    &file,
                    0,
                    format!(
                        "out of date: rootfs[{index}] asks for debs [{}] skip [{}], the lock was made for debs [{}] skip [{}]",
                        names.join(" "),
                        skip.join(" "),
                        step.names.join(" "),
                        step.skip.join(" ")
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(index) = requests.keys().find(|i| !lock.steps.contains_key(i)) {
        return Err(lock_error(
            &file,
            0,
            format!("out of date: it pins nothing for the debs: step rootfs[{index}]"),
        ));
    }
    Ok(lock.steps.into_iter().map(|(i, step)| (i, step.debs)).collect())
}

/// Pins what apt offers now for the `debs:` steps of the package in `dir`: writes `DIR/debs.lock`
/// (atomically), or removes it when there are no `debs:` steps. The `.deb` files are kept in
/// `options.deb_cache`.
pub fn update_lock(dir: &Path, options: &PkgBuildOptions) -> Result<LockUpdate, crate::Error> {
    Ok(write_lock(dir, &DebCache::new(&options.deb_cache))?)
}

/// [`update_lock`] with the deb cache `debs`.
fn write_lock(dir: &Path, debs: &DebCache) -> Result<LockUpdate, PkgError> {
    let build = BuildYml::load(dir)?;
    let file = dir.join(LOCK_FILE);
    let requests = DebLock::requests(&build);
    if requests.is_empty() {
        if std::fs::symlink_metadata(&file).is_err() {
            return Ok(LockUpdate::NotNeeded);
        }
        std::fs::remove_file(&file).map_err(|e| lock_error(&file, 0, e))?;
        return Ok(LockUpdate::Removed);
    }
    let mut lock = DebLock::default();
    for (index, (names, skip)) in requests {
        let resolved = debs
            .resolve(names, skip)
            .map_err(|e| build.step_error(index, "debs", e.to_string()))?;
        lock.steps.insert(
            index,
            LockedStep {
                names: names.to_vec(),
                skip: skip.to_vec(),
                debs: resolved,
            },
        );
    }
    let count = lock.steps.values().map(|s| s.debs.len()).sum();
    let text = lock.render();
    if std::fs::read_to_string(&file).is_ok_and(|t| t == text) {
        return Ok(LockUpdate::Unchanged(count));
    }
    write_atomically(dir, &file, &text).map_err(|e| lock_error(&file, 0, e))?;
    Ok(LockUpdate::Written(count))
}

/// Writes `text` to `file` under a temporary name in `dir`, then renames it into place.
fn write_atomically(dir: &Path, file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::Builder::new().prefix(".debs.lock.").tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, version: &str, digit: char) -> DebPackage {
        DebPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: std::iter::repeat_n(digit, 64).collect(),
        }
    }

    #[test]
    fn the_lock_is_written_sorted_and_reads_back() {
        let mut lock = DebLock::default();
        lock.steps.insert(
            3,
            LockedStep {
                names: vec!["zlib1g".into()],
                skip: Vec::new(),
                debs: vec![deb("zlib1g", "1:1.2", 'c')],
            },
        );
        lock.steps.insert(
            1,
            LockedStep {
                names: vec!["dropbear-bin".into(), "busybox-static".into()],
                skip: vec!["debconf".into()],
                debs: vec![
                    deb("libc6", "2.36", 'a'),
                    deb("dropbear-bin", "2022", 'b'),
                    deb("busybox-static", "1:1.35", 'd'),
                ],
            },
        );
        let text = lock.render();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let (a, b, c, d) = ("a".repeat(64), "b".repeat(64), "c".repeat(64), "d".repeat(64));
        assert_eq!(
            lines,
            [
                "rootfs[1] debs: dropbear-bin busybox-static".to_string(),
                "rootfs[1] skip: debconf".into(),
                format!("rootfs[1] busybox-static 1:1.35 amd64 {d}"),
                format!("rootfs[1] dropbear-bin 2022 amd64 {b}"),
                format!("rootfs[1] libc6 2.36 amd64 {a}"),
                "rootfs[3] debs: zlib1g".into(),
                format!("rootfs[3] zlib1g 1:1.2 amd64 {c}"),
            ]
        );
        let back = DebLock::parse(Path::new("debs.lock"), &text).unwrap();
        assert_eq!(back.render(), text);
        assert_eq!(
            back.steps[&1].debs[0].name, "busybox-static",
            "read in the file's (sorted) order"
        );
    }

    #[test]
    fn lock_syntax_errors_name_the_line() {
        let file = Path::new("p/debs.lock");
        for (text, want) in [
            (
                "# c\nrootfs[0] debs: a\nrootfs[0] a 1 amd64 abc\n",
                "p/debs.lock:3:1: expected",
            ),
            ("step0 debs: a\n", "p/debs.lock:1:1: \"step0\" is not rootfs[INDEX]"),
            (
                "rootfs[0] debs: a\nrootfs[0] debs: b\n",
                "p/debs.lock:2:1: a second `debs:` line",
            ),
            ("rootfs[0] skip: a\n", "p/debs.lock: rootfs[0] has no `debs:` line"),
        ] {
            let e = DebLock::parse(file, text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    /// A package with two `debs:` steps, a lock written for them, and the lock's text.
    fn locked_package(dir: &Path) -> String {
        std::fs::write(
            dir.join("build.yml"),
            "image: x\nrootfs:\n  - debs: [a]\n  - dir: /x\n  - debs: [b]\n    skip: [c]\n",
        )
        .unwrap();
        let mut lock = DebLock::default();
        lock.steps.insert(
            0,
            LockedStep {
                names: vec!["a".into()],
                skip: vec![],
                debs: vec![deb("a", "1", 'a')],
            },
        );
        lock.steps.insert(
            2,
            LockedStep {
                names: vec!["b".into()],
                skip: vec!["c".into()],
                debs: vec![deb("b", "2", 'b')],
            },
        );
        let text = lock.render();
        std::fs::write(dir.join(LOCK_FILE), &text).unwrap();
        text
    }

    #[test]
    fn builds_take_the_lock_and_only_a_lock_that_matches_build_yml() {
        let d = tempfile::tempdir().unwrap();
        let text = locked_package(d.path());
        let pin = |dir: &Path| pinned(dir, &BuildYml::load(dir).unwrap()).map_err(|e| e.to_string());
        let got = pin(d.path()).unwrap();
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(got[&2], [deb("b", "2", 'b')]);

        let lock = d.path().join(LOCK_FILE);
        let stale = [
            (
                text.replace("rootfs[2] skip: c\n", ""),
                "rootfs[2] asks for debs [b] skip [c], the lock was made for debs [b] skip []",
            ),
            (
                text.replace("rootfs[0] debs: a", "rootfs[0] debs: a z"),
                "rootfs[0] asks for debs [a] skip []",
            ),
            (
                text.replace("rootfs[2]", "rootfs[1]"),
                "it pins rootfs[1], which is not a debs: step",
            ),
        ];
        for (changed, want) in stale {
            std::fs::write(&lock, changed).unwrap();
            let e = pin(d.path()).unwrap_err();
            assert!(e.contains("debs.lock: out of date: ") && e.contains(want), "{e}");
        }
        std::fs::remove_file(&lock).unwrap();
        let e = pin(d.path()).unwrap_err();
        assert!(
            e.contains("debs.lock: missing: the debs: steps (rootfs[0], rootfs[2])"),
            "{e}"
        );
    }

    #[test]
    fn the_lock_is_part_of_the_tag() {
        let d = tempfile::tempdir().unwrap();
        let text = locked_package(d.path());
        let first = super::super::Package::load(d.path()).unwrap().tag;
        std::fs::write(
            d.path().join(LOCK_FILE),
            text.replace("rootfs[0] a 1 ", "rootfs[0] a 1.1 "),
        )
        .unwrap();
        assert_ne!(super::super::Package::load(d.path()).unwrap().tag, first);
    }
}
