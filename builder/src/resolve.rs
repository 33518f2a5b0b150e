//! Resolving a spec: every image it names made available in the cache (pulled when missing) and
//! pinned to its digest for the target platform, and the content digest of the result.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Canonical;
use crate::image::{self, ImageError, Platform, PullOptions, ResolvedImage, Store};
use crate::progress::Progress;
use crate::spec::model::Moby;
use crate::spec::Spec;
use crate::{Error, Reference};

/// Where images come from and which platform a build is for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The OCI-layout cache directory.
    pub cache_dir: PathBuf,
    /// Look in the registry before the cache.
    pub always_pull: bool,
    /// Registry mirrors: (registry host, mirror URL); see [`BuildOptions::add_mirror`].
    pub mirrors: Vec<(String, String)>,
    /// The platform to build for.
    pub platform: Platform,
    /// Docker `config.json` with registry credentials, if not the default one.
    pub docker_config: Option<PathBuf>,
    /// Told how the pulls and the writing of the outputs go.
    pub progress: Option<Arc<dyn Progress>>,
}

impl BuildOptions {
    /// Adds a registry mirror written `REGISTRY=URL`, or just `URL` for every registry without
    /// a mirror of its own; the URL starts with `http://` or `https://` and may carry a path.
    pub fn add_mirror(&mut self, mirror: &str) -> Result<(), Error> {
        self.mirrors.push(image::parse_mirror(mirror)?);
        Ok(())
    }
}

/// A spec with every image it names in the cache, pinned to its digest for the build's platform:
/// what [`crate::build()`] and [`crate::build_outputs`] take, so that building never looks an
/// image up again. Made only by [`resolve`].
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    spec: Spec,
    store: Store,
    /// The images unpacked as filesystems, by reference.
    images: HashMap<Reference, ResolvedImage>,
    digest: String,
    progress: Option<Arc<dyn Progress>>,
    /// How the images were found: for the tool images an output needs (the bootloaders).
    pull: PullOptions,
}

impl ResolvedSpec {
    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// `sha256:<hex>` over a canonical form of what the build reads: the spec's meaning (not its
    /// formatting), the platform, each image's pinned digest and the contents of the host files
    /// that `files[].source` copies. The same digest means the same image, so an image built from
    /// a resolution with this digest need not be built again.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The cache the images are in.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The resolved filesystem images, by reference.
    pub(crate) fn images(&self) -> &HashMap<Reference, ResolvedImage> {
        &self.images
    }

    /// Who is told how the build goes.
    pub(crate) fn progress(&self) -> &Option<Arc<dyn Progress>> {
        &self.progress
    }

    /// Where images not yet in the cache come from, and the build's platform.
    pub(crate) fn pull_options(&self) -> &PullOptions {
        &self.pull
    }
}

/// Makes every image `spec` names available in the cache of `options` (pulling what it lacks,
/// or everything with [`BuildOptions::always_pull`]), pins each to its digest for
/// `options.platform`, and reads the host files the spec copies to compute the
/// [digest](ResolvedSpec::digest).
pub fn resolve(spec: &Spec, options: &BuildOptions) -> Result<ResolvedSpec, Error> {
    let store = Store::open(&options.cache_dir)?;
    let pull = PullOptions {
        always_pull: options.always_pull,
        mirrors: options.mirrors.clone(),
        platform: options.platform.clone(),
        docker_config: options.docker_config.clone(),
        stall_timeout: None,
        progress: options.progress.clone(),
    };
    let references = filesystem_references(spec);
    let resolved = image::ensure_images(&store, &references, &pull)?;
    let volumes = oci_volume_references(spec)?;
    image::ensure_layouts(&store, &volumes, &pull)?;

    let image_pins: BTreeMap<String, String> = references
        .iter()
        .zip(&resolved)
        .map(|(reference, image)| (reference.to_string(), image.manifest_digest.clone()))
        .collect();
    let mut volume_pins = BTreeMap::new();
    for (reference, _) in &volumes {
        let entry = store.find_entry(reference)?.ok_or_else(|| ImageError::NotInCache {
            image: reference.to_string(),
            dir: store.dir().to_path_buf(),
        })?;
        volume_pins.insert(reference.to_string(), entry.digest);
    }
    let sources = crate::assemble::source_digests(spec).map_err(crate::assemble::BuildError::from)?;
    let digest = Canonical::new(spec, &options.platform, &image_pins, &volume_pins, &sources)
        .digest()
        .map_err(Error::digest)?;
    Ok(ResolvedSpec {
        spec: spec.clone(),
        store,
        images: references.into_iter().zip(resolved).collect(),
        digest,
        progress: options.progress.clone(),
        pull,
    })
}

/// Every image a spec unpacks as a filesystem (all but `format: oci` volumes), each once, in spec
/// order.
fn filesystem_references(moby: &Moby) -> Vec<Reference> {
    let containers = moby
        .onboot
        .iter()
        .chain(&moby.onshutdown)
        .chain(&moby.services)
        .map(|c| c.image.as_str());
    let volumes = moby
        .volumes
        .iter()
        .filter(|v| v.format != "oci")
        .map(|v| v.image.as_str());
    let names = std::iter::once(moby.kernel.image.as_str())
        .chain(moby.init.iter().map(String::as_str))
        .chain(volumes)
        .chain(containers);
    let mut seen = HashSet::new();
    names
        .filter(|name| !name.is_empty())
        .filter_map(|name| Reference::parse(name).ok())
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

/// The images of `format: oci` volumes, with the platforms each keeps (all when empty).
fn oci_volume_references(moby: &Moby) -> Result<Vec<(Reference, Vec<Platform>)>, ImageError> {
    let mut volumes = Vec::new();
    for volume in moby.volumes.iter().filter(|v| v.format == "oci" && !v.image.is_empty()) {
        let Ok(reference) = Reference::parse(&volume.image) else {
            continue;
        };
        let platforms = volume
            .platforms
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<_, _>>()?;
        volumes.push((reference, platforms));
    }
    Ok(volumes)
}
