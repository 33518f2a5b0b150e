//! Images built on demand, once per spec: outputs are kept under `DIR/<digest>-<format>/` by the
//! content digest of the resolved spec, so that instances of one spec share one build, and
//! concurrent provisions of one spec wait for the same build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use builder::{BuildOptions, Format, HostPaths, Outputs, Packages, Source};
use tokio::sync::OnceCell;

/// The name of the outputs in an image directory (`moby-kernel`, `moby-initrd.img`, ...).
pub const IMAGE_NAME: &str = "moby";

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The content digest of the resolved spec (`sha256:...`).
    pub digest: String,
    /// What to boot: the path prefix of `kernel+initrd` (`DIR/<digest>-<format>/moby`), the file
    /// of an ISO or disk format (`DIR/<digest>-<format>/moby.iso`, ...).
    pub boot: PathBuf,
}

/// The result of one build, shared by everyone waiting for it.
type Shared = Arc<OnceCell<Result<PathBuf, String>>>;

/// The image directory and the builds under way.
pub struct Images {
    dir: PathBuf,
    options: BuildOptions,
    paths: HostPaths,
    building: Mutex<HashMap<String, Shared>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Images {
    /// Images kept in `dir`, built with `options` (the image cache, platform), spec paths
    /// resolved with `paths`.
    pub fn new(dir: PathBuf, options: BuildOptions, paths: HostPaths) -> Images {
        Images {
            dir,
            options,
            paths,
            building: Mutex::new(HashMap::new()),
        }
    }

    /// Checks that spec `text` (named `name` in errors) loads: YAML, fields, `@pkg:` paths (whose
    /// tags hash the package's sources: done off the async threads); the error names the file,
    /// line and column.
    pub async fn check(&self, name: String, text: String) -> Result<(), String> {
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || {
            let source = Source::read(&name, text.as_bytes())?;
            builder::load(&[source], paths, Some(&Packages)).map(drop)
        })
        .await
        .map_err(|e| format!("the check stopped: {e}"))?
        .map_err(|e| e.to_string())
    }

    /// The image of spec `text` (named `name` in errors) in `format`: resolved (images pulled
    /// or found in the cache) and digested, then built unless already there. The error is the
    /// builder's message (a spec error names its file, line and column).
    pub async fn ensure(&self, name: String, text: String, format: Format) -> Result<Image, String> {
        let resolved = self.resolve(name, text).await?;
        let digest = resolved.digest().to_string();
        let hex = digest.trim_start_matches("sha256:");
        let dir = self.dir.join(format!("{hex}-{format}"));
        let boot = |dir: &Path| {
            format
                .boot_path(dir, IMAGE_NAME)
                .ok_or_else(|| format!("format {format} does not boot"))
        };
        if dir.is_dir() {
            return Ok(Image {
                digest,
                boot: boot(&dir)?,
            });
        }
        let key = dir.display().to_string();
        let cell = {
            let mut building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(building.entry(key.clone()).or_default())
        };
        let built = cell
            .get_or_init(|| async {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || build_into(&dir, &resolved, format))
                    .await
                    .map_err(|e| format!("the build stopped: {e}"))?
            })
            .await
            .clone();
        self.building
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        Ok(Image {
            digest,
            boot: boot(&built?)?,
        })
    }

    /// The content digest of spec `text` (named `name` in errors), as [`Images::ensure`] would
    /// build it: resolved (images pulled when the cache lacks them), not built.
    pub async fn digest(&self, name: String, text: String) -> Result<String, String> {
        Ok(self.resolve(name, text).await?.digest().to_string())
    }

    /// Loads and resolves spec `text`, off the async threads.
    async fn resolve(&self, name: String, text: String) -> Result<builder::ResolvedSpec, String> {
        let options = self.options.clone();
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || {
            let source = Source::read(&name, text.as_bytes())?;
            let spec = builder::load(&[source], paths, Some(&Packages))?;
            builder::resolve(&spec, &options)
        })
        .await
        .map_err(|e| format!("the build stopped: {e}"))?
        .map_err(|e| e.to_string())
    }
}

/// Builds into a temporary directory beside `dir`, renamed to `dir` when complete, so that a
/// directory under its final name is always a whole image.
fn build_into(dir: &Path, resolved: &builder::ResolvedSpec, format: Format) -> Result<PathBuf, String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(parent)
        .map_err(|e| format!("cannot create a build directory in {}: {e}", parent.display()))?;
    let outputs = Outputs::in_dir(tmp.path(), IMAGE_NAME, &[format]).map_err(|e| e.to_string())?;
    builder::build_outputs(resolved, &outputs).map_err(|e| e.to_string())?;
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(|e| format!("cannot move the image into {}: {e}", dir.display()))?;
    Ok(dir.to_path_buf())
}
