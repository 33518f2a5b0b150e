//! Packages: a folder with a `build.yml`, named `ORG/IMAGE:TAG` where the tag derives from a hash of
//! the folder's contents, so that `@pkg:DIR` in a spec names exactly the image built from those
//! sources.
//!
//! Only what `@pkg:` resolution needs lives here so far: reading `build.yml`'s naming fields and
//! hashing the sources. Building packages is a later stage.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

/// LinuxKit's default organisation.
const DEFAULT_ORG: &str = "linuxkit";
/// LinuxKit's default tag template.
const DEFAULT_TAG: &str = "{{.Hash}}";
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
    /// `build.yml` is not valid.
    #[error("package {dir}: build.yml: {problem}")]
    Invalid {
        /// Package folder.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
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
    /// Reads `DIR/build.yml` and hashes the folder.
    pub fn load(dir: &Path) -> Result<Package, PkgError> {
        let invalid = |problem: String| PkgError::Invalid {
            dir: dir.to_path_buf(),
            problem,
        };
        let text = fs::read_to_string(dir.join("build.yml")).map_err(|source| PkgError::Read {
            dir: dir.to_path_buf(),
            source,
        })?;
        let docs = YamlLoader::load_from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let doc = docs.into_iter().next().unwrap_or(Yaml::Null);
        let field = |key: &str| -> Result<Option<String>, PkgError> {
            match &doc[key] {
                Yaml::BadValue | Yaml::Null => Ok(None),
                Yaml::String(s) => Ok(Some(s.clone())),
                other => Err(invalid(format!("{key}: expected a string, found {other:?}"))),
            }
        };
        let image = field("image")?.ok_or_else(|| invalid("image: required field is missing".into()))?;
        let org = field("org")?.unwrap_or_else(|| DEFAULT_ORG.to_string());
        let template = field("tag")?.unwrap_or_else(|| DEFAULT_TAG.to_string());
        let hash = source_hash(dir).map_err(|source| PkgError::Read {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(Package {
            org,
            image,
            tag: template.replace("{{.Hash}}", &hash),
        })
    }

    /// `ORG/IMAGE:TAG`.
    pub fn full_tag(&self) -> String {
        format!("{}/{}:{}", self.org, self.image, self.tag)
    }
}

/// A content hash of every file under `dir`: relative path, type, executable bit and contents, in
/// sorted order, so that the same sources give the same tag on every machine.
pub fn source_hash(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for relative in &files {
        let path = dir.join(relative);
        let meta = fs::symlink_metadata(&path)?;
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        if meta.file_type().is_symlink() {
            hasher.update(b"l");
            hasher.update(fs::read_link(&path)?.to_string_lossy().as_bytes());
        } else {
            use std::os::unix::fs::PermissionsExt;
            hasher.update(if meta.permissions().mode() & 0o111 != 0 {
                b"x"
            } else {
                b"f"
            });
            hasher.update(fs::read(&path)?);
        }
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    Ok(digest[..HASH_LEN].to_string())
}

/// Collects the relative paths of files and symlinks (directories themselves carry no content).
fn collect(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Resolves `@pkg:DIR` references (DIR already joined to the spec file's folder) to package tags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Packages;

impl crate::spec::PkgResolver for Packages {
    fn resolve(&self, dir: &str) -> Result<String, String> {
        Package::load(Path::new(dir))
            .map(|p| p.full_tag())
            .map_err(|e| e.to_string())
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
}
