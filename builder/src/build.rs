//! The whole build as one call: resolve (and pull) every image a spec names, then assemble the image
//! into a sink. This is what the `moby` CLI and the plugin use.

use std::collections::HashMap;
use std::io::{self, Read};

use std::path::PathBuf;

use crate::assemble::{self, BuildError, EntryVisitor, Images};
use crate::image::{self, ImageConfigFile, LayoutEntry, Platform, PullOptions, ResolvedImage, Store};
use crate::layer::{self, LayerError, LayerSource};
use crate::spec::model::Moby;
use crate::tar::EntrySink;
use crate::Reference;

/// How to find images.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The OCI-layout cache directory.
    pub cache_dir: PathBuf,
    /// Look in the registry before the cache.
    pub always_pull: bool,
    /// Registry mirrors: (registry host, mirror URL).
    pub mirrors: Vec<(String, String)>,
    /// The platform to build for.
    pub platform: Platform,
    /// Docker `config.json` with registry credentials, if not the default one.
    pub docker_config: Option<PathBuf>,
}

/// Every image a spec unpacks as a filesystem (all but `format: oci` volumes), each once, in spec
/// order.
pub fn filesystem_references(moby: &Moby) -> Vec<Reference> {
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
    let mut seen = std::collections::HashSet::new();
    names
        .filter(|name| !name.is_empty())
        .filter_map(|name| Reference::parse(name).ok())
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

/// The images of `format: oci` volumes, with the platforms each keeps (all when empty).
fn oci_volume_references(moby: &Moby) -> Result<Vec<(Reference, Vec<Platform>)>, BuildError> {
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

/// Resolves every image of `moby` (pulling what the cache lacks) and writes the image into `sink`.
pub fn build(moby: &Moby, options: &BuildOptions, sink: &mut dyn EntrySink) -> Result<(), BuildError> {
    let store = Store::open(&options.cache_dir)?;
    let pull = PullOptions {
        always_pull: options.always_pull,
        mirrors: options.mirrors.clone(),
        platform: options.platform.clone(),
        docker_config: options.docker_config.clone(),
    };
    let references = filesystem_references(moby);
    let resolved = image::ensure_images(&store, &references, &pull)?;
    image::ensure_layouts(&store, &oci_volume_references(moby)?, &pull)?;
    let images = StoreImages {
        store: &store,
        resolved: references.into_iter().zip(resolved).collect(),
    };
    assemble::assemble(moby, &images, sink)
}

/// [`Images`] backed by the local store, with layers flattened on the fly.
struct StoreImages<'a> {
    store: &'a Store,
    resolved: HashMap<Reference, ResolvedImage>,
}

impl StoreImages<'_> {
    fn resolved(&self, image: &Reference) -> Result<&ResolvedImage, BuildError> {
        self.resolved.get(image).ok_or_else(|| {
            BuildError::from(image::ImageError::NotInCache {
                image: image.to_string(),
                dir: self.store.dir().to_path_buf(),
            })
        })
    }
}

impl Images for StoreImages<'_> {
    fn config(&self, image: &Reference) -> Result<ImageConfigFile, BuildError> {
        Ok(self.resolved(image)?.config.clone())
    }

    fn walk(&self, image: &Reference, visit: &mut EntryVisitor<'_>) -> Result<(), BuildError> {
        let resolved = self.resolved(image)?;
        let mut layers = Vec::with_capacity(resolved.layers.len());
        for descriptor in &resolved.layers {
            let blob = io::BufReader::with_capacity(1 << 20, self.store.open_blob(&descriptor.digest)?);
            layers.push(LayerSource::new(&descriptor.digest, &descriptor.media_type, blob));
        }
        layer::flatten(layers, &image.to_string(), |header, data| visit(header, data)).map_err(|err| match err {
            LayerError::Visit { source, .. } => match source.downcast::<BuildError>() {
                Ok(own) => *own,
                Err(other) => BuildError::Write(io::Error::other(other)),
            },
            other => BuildError::from(other),
        })
    }

    fn oci_layout(&self, image: &Reference, platforms: &[String]) -> Result<Vec<LayoutEntry>, BuildError> {
        let platforms = platforms
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(image::oci_layout_entries(self.store, image, &platforms)?)
    }

    fn copy_blob(&self, digest: &str, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<(), BuildError> {
        let mut blob = self.store.open_blob(digest)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = blob.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out(&buf[..n])?;
        }
    }
}
