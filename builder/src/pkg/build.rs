//! `moby pkg build`: a package folder into an image in the store.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::build_yml::BuildYml;
use super::debs::DebCache;
use super::layer::{write_layer, Layer};
use super::rootfs::Rootfs;
use super::steps::{run_steps, StepEnv};
use super::{Package, PkgError};
use crate::image::{oci_architecture, Descriptor, Platform, Store};
use crate::Reference;

/// The label holding an image's default container settings.
const CONFIG_LABEL: &str = "org.mobyproject.config";

/// How to build packages.
#[derive(Debug, Clone)]
pub struct PkgBuildOptions {
    /// Build even when the image is already in the store.
    pub force: bool,
    /// Where `.deb` files are kept.
    pub deb_cache: PathBuf,
    /// Cargo's target directory for `rust:` steps (one subdirectory per package image).
    pub cargo_target: PathBuf,
}

impl PkgBuildOptions {
    /// The defaults: no forcing, `DebCache::default_dir()`, cargo output under `~/.moby/cargo`.
    pub fn new() -> PkgBuildOptions {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        PkgBuildOptions {
            force: false,
            deb_cache: DebCache::default_dir(),
            cargo_target: home.map(PathBuf::from).unwrap_or_default().join(".moby").join("cargo"),
        }
    }
}

impl Default for PkgBuildOptions {
    fn default() -> Self {
        PkgBuildOptions::new()
    }
}

/// What building a package did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    /// The image was built and stored; its manifest.
    Built(Descriptor),
    /// The store already had it.
    Cached,
}

/// The image config of a package: architecture, settings from `build.yml`, the
/// `org.mobyproject.config` label, the layer's diff id; no creation time, so it is reproducible.
pub fn image_config(build: &BuildYml, arch: &str, layer: &Layer) -> Vec<u8> {
    let mut config = Map::new();
    if !build.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(build.entrypoint));
    }
    if !build.cmd.is_empty() {
        config.insert("Cmd".into(), json!(build.cmd));
    }
    config.insert("Env".into(), json!(build.env));
    if !build.workdir.is_empty() {
        config.insert("WorkingDir".into(), json!(build.workdir));
    }
    let mut labels: Map<String, Value> = build.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    if let Some(defaults) = &build.config {
        labels.insert(CONFIG_LABEL.into(), json!(defaults.to_string()));
    }
    if !labels.is_empty() {
        config.insert("Labels".into(), Value::Object(labels));
    }
    let image = json!({
        "architecture": arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    });
    image.to_string().into_bytes()
}

/// The Rust target triple for an OCI architecture.
fn rust_target(arch: &str) -> Option<&'static str> {
    match arch {
        "amd64" => Some("x86_64-unknown-linux-gnu"),
        "arm64" => Some("aarch64-unknown-linux-gnu"),
        _ => None,
    }
}

/// Builds the package in `dir` into `store` unless the store has it already (see the module doc
/// of [`super`]); returns the package's identity and what was done.
pub fn build_package(
    dir: &Path,
    store: &Store,
    options: &PkgBuildOptions,
) -> Result<(Package, BuildOutcome), PkgError> {
    let build = BuildYml::load(dir)?;
    build.check_buildable(dir)?;
    let pinned = super::lock::pinned(dir, &build)?;
    let package = Package::of(dir, &build)?;
    let reference = Reference::parse(&package.full_tag()).map_err(|e| {
        build.error(
            "image",
            format!("{} is not a valid image name: {e}", package.full_tag()),
        )
    })?;
    let platform = Platform::host();
    let arch = oci_architecture(std::env::consts::ARCH).to_string();
    if !build.arches.is_empty() && !build.arches.contains(&arch) {
        return Err(build.error(
            "arches",
            format!(
                "the package builds for {}, not for this machine ({arch})",
                build.arches.join(", ")
            ),
        ));
    }
    let store_error = |e: crate::image::ImageError| PkgError::Store {
        image: package.full_tag(),
        reason: e.to_string(),
    };
    if !options.force && store.resolve(&reference, &platform).map_err(store_error)?.is_some() {
        return Ok((package, BuildOutcome::Cached));
    }
    let scratch = tempfile::Builder::new()
        .prefix("moby-pkg-")
        .tempdir()
        .map_err(|source| PkgError::Scratch {
            doing: "create a scratch directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let root = scratch.path().join("rootfs");
    std::fs::create_dir(&root).map_err(|source| PkgError::Scratch {
        doing: "create",
        path: root.clone(),
        source,
    })?;
    let mut rootfs = Rootfs::new(&root);
    let debs = DebCache::new(&options.deb_cache);
    let cargo_target = options.cargo_target.join(&build.image);
    let env = StepEnv {
        pkg_dir: dir,
        extra_sources: &build.extra_sources,
        debs: &debs,
        pinned: &pinned,
        cargo_target: &cargo_target,
        rust_target: rust_target(&arch).ok_or_else(|| build.error("arches", format!("no Rust target for {arch}")))?,
    };
    run_steps(&build, &env, &mut rootfs)?;
    let layer = write_layer(&root, rootfs.owners(), &scratch.path().join("layer.tar.gz")).map_err(|source| {
        PkgError::Scratch {
            doing: "write the layer of",
            path: root.clone(),
            source,
        }
    })?;
    let config = image_config(&build, &arch, &layer);
    let manifest = store
        .put_image(&reference, &config, &[layer.file])
        .map_err(store_error)?;
    Ok((package, BuildOutcome::Built(manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path) {
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(
            dir.join("build.yml"),
            "image: hello\norg: moby\nconfig:\n  net: host\n  binds: [/run:/run]\nentrypoint: [/bin/hello]\nrootfs:\n  - copy: files/hello\n    to: /bin/hello\n    mode: \"0755\"\n  - dir: /var/empty\n",
        )
        .unwrap();
        std::fs::write(dir.join("files/hello"), "#!/bin/sh\necho hello\n").unwrap();
    }

    #[test]
    fn builds_once_reproducibly_and_the_builder_reads_the_result() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("hello");
        package(&pkg);
        let options = PkgBuildOptions {
            force: false,
            deb_cache: d.path().join("debs"),
            cargo_target: d.path().join("cargo"),
        };
        let store = Store::open(&d.path().join("cache")).unwrap();
        let (p, first) = build_package(&pkg, &store, &options).unwrap();
        let BuildOutcome::Built(manifest) = first else {
            panic!("built")
        };
        assert_eq!(build_package(&pkg, &store, &options).unwrap().1, BuildOutcome::Cached);
        // Forced, and in another store: the same digest.
        let other = Store::open(&d.path().join("other")).unwrap();
        let forced = PkgBuildOptions { force: true, ..options };
        assert_eq!(
            build_package(&pkg, &other, &forced).unwrap().1,
            BuildOutcome::Built(manifest.clone())
        );

        let reference = Reference::parse(&p.full_tag()).unwrap();
        let resolved = store.resolve(&reference, &Platform::host()).unwrap().unwrap();
        assert_eq!(resolved.root_digest, manifest.digest);
        assert_eq!(resolved.config.entrypoint, ["/bin/hello"]);
        assert_eq!(
            resolved.config.labels[CONFIG_LABEL],
            r#"{"binds":["/run:/run"],"net":"host"}"#
        );
        assert_eq!(resolved.config.architecture, oci_architecture(std::env::consts::ARCH));
    }

    #[test]
    fn other_arches_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("x");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("build.yml"), "image: x\narches: [s390x]\nrootfs: []\n").unwrap();
        let store = Store::open(&d.path().join("cache")).unwrap();
        let e = build_package(&pkg, &store, &PkgBuildOptions::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("arches: the package builds for s390x, not for this machine"),
            "{e}"
        );
    }
}
