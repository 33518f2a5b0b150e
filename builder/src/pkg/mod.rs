//! Packages: a folder with a `build.yml`, built without a container engine into an OCI image named
//! `ORG/IMAGE:TAG`, where the tag derives from a hash of the folder's contents (and its
//! `extra-sources`), so that `@pkg:DIR` in a spec names exactly the image built from those sources.
//!
//! - [`build_yml`] reads `build.yml` (LinuxKit's fields and our `rootfs:` steps, see `docs/pkg.md`).
//! - [`rootfs`] is the staging directory the steps write into, confined to itself.
//! - [`debs`] resolves, downloads (once, into the deb cache) and unpacks Debian packages;
//!   [`lock`] pins them (`debs.lock`).
//! - [`steps`] runs the steps; [`layer`] writes the staged tree as one reproducible layer;
//!   [`build`] puts it all into the image store.

mod build;
mod build_yml;
mod debs;
mod layer;
mod lock;
mod rootfs;
mod steps;

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use build::{build_package, BuildOutcome, PkgBuildOptions};
use build_yml::BuildYml;
pub use lock::{update_lock, LockUpdate, LOCK_FILE};
pub use steps::static_rustflags;

/// Length of the hash in a tag, as long as a git tree hash.
const HASH_LEN: usize = 40;

/// Why a package could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PkgError {
    /// `build.yml` is missing or unreadable.
    #[error("package {dir}: cannot read build.yml: {source}")]
    Read {
        /// Package folder.
        dir: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The scratch space where the image is put together cannot be used.
    #[error("cannot {doing} {}: {source}", path.display())]
    Scratch {
        /// What was being done.
        doing: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The package's sources cannot be hashed.
    #[error("package {dir}: cannot hash its sources: {source}")]
    Sources {
        /// Package folder.
        dir: PathBuf,
        /// Underlying error (it names the file).
        source: std::io::Error,
    },
    /// `build.yml` is not valid, or asks for what cannot be built.
    #[error("{}{problem}", place(file, *line, *column, field))]
    Invalid {
        /// The `build.yml`.
        file: PathBuf,
        /// 1-based line (0: unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field, e.g. `rootfs[2].to`; empty for the file as a whole.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A `rootfs:` step failed.
    #[error("{}{reason}", place(file, *line, *column, &format!("rootfs[{index}] ({kind})")))]
    Step {
        /// The `build.yml`.
        file: PathBuf,
        /// 1-based line of the step.
        line: usize,
        /// 1-based column of the step.
        column: usize,
        /// The step's index.
        index: usize,
        /// The step's kind.
        kind: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// `debs.lock` is missing, unreadable or does not match `build.yml`.
    #[error("{}{problem}", place(file, *line, 1, ""))]
    Lock {
        /// The lock file.
        file: PathBuf,
        /// 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The image store.
    #[error("package image {image}: {reason}")]
    Store {
        /// `ORG/IMAGE:TAG`.
        image: String,
        /// What went wrong.
        reason: String,
    },
}

/// `FILE:LINE:COLUMN: FIELD: ` in front of a problem (without the parts that are unknown).
fn place(file: &Path, line: usize, column: usize, field: &str) -> String {
    let mut at = file.display().to_string();
    if line > 0 {
        at += &format!(":{line}:{column}");
    }
    at += ": ";
    if !field.is_empty() {
        at += &format!("{field}: ");
    }
    at
}

/// A package's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Organisation, e.g. `linuxkit`.
    pub org: String,
    /// Image name, e.g. `init`.
    pub image: String,
    /// Tag, with `{{.Hash}}` expanded.
    pub tag: String,
}

impl Package {
    /// Reads `DIR/build.yml` and hashes the package's sources.
    pub fn load(dir: &Path) -> Result<Package, crate::Error> {
        Ok(Package::read(dir)?)
    }

    /// [`Package::load`], with the package's own error.
    fn read(dir: &Path) -> Result<Package, PkgError> {
        Package::of(dir, &BuildYml::load(dir)?)
    }

    /// The identity of the package in `dir` described by `build`.
    pub fn of(dir: &Path, build: &BuildYml) -> Result<Package, PkgError> {
        let hash = source_hash(dir, &build.extra_sources).map_err(|source| PkgError::Sources {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(Package {
            org: build.org.clone(),
            image: build.image.clone(),
            tag: build.tag.replace("{{.Hash}}", &hash),
        })
    }

    /// `ORG/IMAGE:TAG`.
    pub fn full_tag(&self) -> String {
        format!("{}/{}:{}", self.org, self.image, self.tag)
    }
}

/// A content hash of every file under `dir` and of each `extra-sources` entry (under its
/// destination name): relative path, type, executable bit and contents, in sorted order, so that
/// the same sources give the same tag on every machine. A symbolic link hashes as its target text,
/// as `copy:` copies it; only a declared `extra-sources` path itself is followed.
pub fn source_hash(dir: &Path, extra_sources: &[(PathBuf, String)]) -> std::io::Result<String> {
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    for (src, name) in extra_sources {
        let src = fs::canonicalize(dir.join(src)).map_err(|e| with_path(&dir.join(src), e))?;
        let extra = Path::new("..extra").join(name);
        if src.is_dir() {
            let mut inner = Vec::new();
            collect(&src, Path::new(""), &mut inner)?;
            files.extend(inner.into_iter().map(|(rel, path)| (extra.join(rel), path)));
        } else {
            files.push((extra, src));
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for (relative, path) in &files {
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hash_entry(path, &mut hasher).map_err(|e| with_path(path, e))?;
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    Ok(digest[..HASH_LEN].to_string())
}

/// Feeds one file or symbolic link (not followed) to `hasher`; anything else is refused, since
/// reading a FIFO or a device would block or never end.
fn hash_entry(path: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        hasher.update(b"l");
        hasher.update(fs::read_link(path)?.to_string_lossy().as_bytes());
    } else if meta.is_file() {
        hasher.update(if meta.permissions().mode() & 0o111 != 0 {
            b"x"
        } else {
            b"f"
        });
        feed(&mut fs::File::open(path)?, hasher)?;
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file, folder or symbolic link (a package cannot hold FIFOs, sockets or devices)",
        ));
    }
    Ok(())
}

/// The real path of `dir/name`, which must be a regular file inside the package: a symbolic link
/// pointing out would have moby read a host file that the tag (hashing the link) does not cover.
pub(crate) fn package_file(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let real = fs::canonicalize(&path).map_err(|e| with_path(&path, e))?;
    if !real.starts_with(fs::canonicalize(dir)?) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {}, outside the package", path.display(), real.display()),
        ));
    }
    if !fs::metadata(&real)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(real)
}

/// The sha256 (hex) of the file at `path`.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    feed(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Hashes everything `reader` gives, in bounded chunks.
fn feed(reader: &mut impl std::io::Read, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `e` with the path it is about in front.
fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Collects (relative path, path) of everything but directories under `root` (directories
/// themselves carry no content), without following symbolic links.
fn collect(root: &Path, relative: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> std::io::Result<()> {
    let here = root.join(relative);
    for entry in fs::read_dir(&here).map_err(|e| with_path(&here, e))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push((path.clone(), root.join(path)));
        }
    }
    Ok(())
}

/// Resolves `@pkg:DIR` references (DIR already joined to the spec file's folder) to package tags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Packages;

impl crate::spec::PkgResolver for Packages {
    fn resolve(&self, dir: &Path) -> Result<String, String> {
        Package::read(dir).map(|p| p.full_tag()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_follows_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("build.yml"), "image: hello\norg: example\n").unwrap();
        fs::write(dir.path().join("main.sh"), "echo hi\n").unwrap();
        let first = Package::load(dir.path()).unwrap();
        assert_eq!(
            (first.org.as_str(), first.image.as_str(), first.tag.len()),
            ("example", "hello", 40)
        );
        assert_eq!(Package::load(dir.path()).unwrap(), first, "same sources, same tag");
        fs::write(dir.path().join("main.sh"), "echo bye\n").unwrap();
        assert_ne!(
            Package::load(dir.path()).unwrap().tag,
            first.tag,
            "changed sources, new tag"
        );
    }

    #[test]
    fn tag_template_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("build.yml"), "image: x\ntag: v1-{{.Hash}}\n").unwrap();
        let pkg = Package::load(dir.path()).unwrap();
        assert!(pkg.full_tag().starts_with("linuxkit/x:v1-"));
        fs::write(dir.path().join("build.yml"), "org: x\n").unwrap();
        assert!(Package::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("image: required"));
        assert!(Package::load(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn links_hash_as_links_and_only_declared_extra_sources_are_followed() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let (pkg, host, common) = (d.path().join("pkg"), d.path().join("host"), d.path().join("common"));
        for dir in [&pkg, &host, &common] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(host.join("shadow"), "one").unwrap();
        fs::write(common.join("motd"), "one").unwrap();
        symlink(&common, d.path().join("linked-common")).unwrap();
        fs::write(
            pkg.join("build.yml"),
            "image: x\nextra-sources: [\"../linked-common:common\"]\n",
        )
        .unwrap();
        symlink(host.join("shadow"), pkg.join("shadow")).unwrap();
        let tag = || Package::load(&pkg).unwrap().tag;
        let first = tag();
        fs::write(host.join("shadow"), "two").unwrap();
        assert_eq!(
            tag(),
            first,
            "the link is hashed, not the host file it names (copy: copies the link)"
        );
        fs::write(common.join("motd"), "two").unwrap();
        let second = tag();
        assert_ne!(second, first, "a declared extra source is followed to its contents");
        fs::remove_file(pkg.join("shadow")).unwrap();
        symlink(host.join("other"), pkg.join("shadow")).unwrap();
        assert_ne!(tag(), second, "a link's target is part of the tag");
    }

    #[test]
    fn what_moby_reads_from_a_package_stays_in_it() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("pkg");
        fs::create_dir_all(&pkg).unwrap();
        fs::write(d.path().join("outside.yml"), "image: x\n").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside.yml"), pkg.join("build.yml")).unwrap();
        let e = Package::load(&pkg).unwrap_err().to_string();
        assert!(e.contains("build.yml is ") && e.contains("outside the package"), "{e}");
        fs::remove_file(pkg.join("build.yml")).unwrap();
        fs::write(pkg.join("build.yml"), "image: x\n").unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(pkg.join("pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        let e = Package::load(&pkg).unwrap_err().to_string();
        assert!(
            e.contains("cannot hash its sources") && e.contains("pipe: not a file, folder or symbolic link"),
            "{e}"
        );
    }
}
