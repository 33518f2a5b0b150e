//! Assembly of the image as one ordered, deterministic stream of tar entries.
//!
//! The order is LinuxKit's: kernel, init images, volumes, onboot, onshutdown, services, files. Every
//! entry carries LinuxKit's `LINUXKIT.source`/`LINUXKIT.location` PAX records, so that a tar we write
//! for a spec LinuxKit handles correctly is byte-identical to LinuxKit's.
//!
//! Images reach this module only through the [`Images`] trait: assembly neither knows about registries
//! nor about layer formats, and tests can feed it synthetic images.

mod apk;
mod bundle;
mod confine;
mod files;
mod image_tree;
mod kernel;
mod volumes;

use std::io::{self, Read};

use crate::image::{Descriptor, ImageConfigFile, LayoutEntry};
use crate::oci_config::{IdMap, Volumes};
use crate::spec::Spec;
use crate::tar::{copy_data, EntrySink, Header};
use crate::Reference;

pub use self::confine::EscapeError;
pub(crate) use self::files::source_digests;
pub use self::files::FilesError;
pub use self::image_tree::ImageTreeError;
pub use self::kernel::KernelError;

/// Where assembly gets image contents from.
pub trait Images {
    /// The image configuration (entrypoint, cmd, env, working dir, labels) for the build platform.
    fn config(&self, image: &Reference) -> Result<ImageConfigFile, BuildError>;
    /// Streams the image's flattened filesystem for the build platform, entry by entry.
    fn walk(&self, image: &Reference, visit: &mut EntryVisitor<'_>) -> Result<(), BuildError>;
    /// The entries of an OCI image layout holding `image` for `platforms` (all when empty).
    fn oci_layout(&self, image: &Reference, platforms: &[String]) -> Result<Vec<LayoutEntry>, BuildError>;
    /// Copies blob `blob` of `image` (as the cache names it) into `out`, verified against its
    /// descriptor (used for OCI layout entries).
    fn copy_blob(
        &self,
        image: &str,
        blob: &Descriptor,
        out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), BuildError>;
}

/// A callback that receives one entry: its header, and a reader of exactly `header.size` bytes.
pub type EntryVisitor<'a> = dyn FnMut(&Header, &mut dyn Read) -> Result<(), BuildError> + 'a;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An image could not be found, pulled or read.
    #[error(transparent)]
    Image(Box<crate::image::ImageError>),
    /// An image layer could not be read or is unsafe.
    #[error(transparent)]
    Layer(Box<crate::layer::LayerError>),
    /// The kernel image lacks what the spec asks for.
    #[error("kernel image {image}: {source}")]
    Kernel {
        /// Kernel image reference.
        image: String,
        /// What is wrong.
        source: Box<KernelError>,
    },
    /// The image's `org.mobyproject.config` label is invalid.
    #[error("image {image}: invalid org.mobyproject.config label:\n{errors}")]
    Label {
        /// Image reference.
        image: String,
        /// Every problem found in the label.
        errors: crate::spec::SpecErrors,
    },
    /// `config.json`/`runtime.json` could not be generated for a container.
    #[error("{location} ({image}): {source}")]
    OciConfig {
        /// Where the container is in the spec, e.g. `onboot[2]`.
        location: String,
        /// Image reference.
        image: String,
        /// What is wrong.
        source: Box<crate::oci_config::OciConfigError>,
    },
    /// An image's filesystem cannot get LinuxKit's adjustments safely.
    #[error("image {image}: {source}; refusing the image")]
    ImageTree {
        /// Image reference.
        image: String,
        /// What is wrong.
        source: Box<ImageTreeError>,
    },
    /// A `files` entry could not be added.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// An entry would be extracted outside the image root or through a symbolic link.
    #[error(transparent)]
    Escape(Box<EscapeError>),
    /// Writing the output failed.
    #[error("writing the image: {0}")]
    Write(#[source] io::Error),
}

impl From<crate::image::ImageError> for BuildError {
    fn from(err: crate::image::ImageError) -> BuildError {
        BuildError::Image(Box::new(err))
    }
}

impl From<crate::layer::LayerError> for BuildError {
    fn from(err: crate::layer::LayerError) -> BuildError {
        BuildError::Layer(Box::new(err))
    }
}

impl From<io::Error> for BuildError {
    fn from(err: io::Error) -> BuildError {
        match err.downcast::<EscapeError>() {
            Ok(escape) => BuildError::Escape(Box::new(escape)),
            Err(err) => BuildError::Write(err),
        }
    }
}

/// Writes the whole image described by `spec` into `sink`, then finishes the sink.
pub fn assemble(spec: &Spec, images: &dyn Images, sink: &mut dyn EntrySink) -> Result<(), BuildError> {
    let moby = &**spec;
    let sink = &mut confine::Confined::new(sink);
    let ids = IdMap::from_moby(moby);
    let volume_table = Volumes::from_moby(moby);

    if let Some(kernel_ref) = reference(&moby.kernel.image) {
        tracing::info!("Extract kernel image: {kernel_ref}");
        kernel::write_kernel(&moby.kernel, &kernel_ref, images, sink)?;
    }

    if !moby.init.is_empty() {
        tracing::info!("Add init containers:");
    }
    let mut init_sink = apk::ApkMerger::new(sink);
    for (i, init) in moby.init.iter().enumerate() {
        let Some(init_ref) = reference(init) else { continue };
        tracing::info!("Process init image: {init_ref}");
        let tree = image_tree::ImageTree {
            location: &format!("init[{i}]"),
            prefix: "",
            resolv: image_tree::Resolv::Symlink,
        };
        tree.write(Some(&init_ref), images, &mut init_sink)?;
    }
    init_sink.write_merged_db()?;

    if !moby.volumes.is_empty() {
        tracing::info!("Add volumes:");
    }
    for (i, volume) in moby.volumes.iter().enumerate() {
        volumes::write_volume(i, volume, images, sink)?;
    }

    let mut bundles = bundle::Bundles::new(moby, &ids, &volume_table);
    for (section, entries) in [
        ("onboot", &moby.onboot),
        ("onshutdown", &moby.onshutdown),
        ("services", &moby.services),
    ] {
        if !entries.is_empty() {
            // LinuxKit's wording: "Add onboot containers:", ..., "Add service containers:".
            tracing::info!("Add {} containers:", section.trim_end_matches('s'));
        }
        for (i, entry) in entries.iter().enumerate() {
            bundles.write(section, i, entry, images, sink)?;
        }
    }

    files::write_files(spec, &ids, sink)?;
    sink.finish()?;
    Ok(())
}

/// The parsed reference of an image the spec names (already validated by the spec loader), or `None`
/// for an empty string.
fn reference(image: &str) -> Option<Reference> {
    if image.is_empty() {
        return None;
    }
    Reference::parse(image).ok()
}

/// Writes one entry whose data is in memory.
fn write_bytes(sink: &mut dyn EntrySink, header: &Header, data: &[u8]) -> io::Result<()> {
    debug_assert_eq!(header.size, data.len() as u64);
    sink.write_header(header)?;
    if !data.is_empty() {
        sink.write_data(data)?;
    }
    Ok(())
}

/// Copies exactly `header.size` bytes from `data` into the sink after writing the header.
fn copy_entry(sink: &mut dyn EntrySink, header: &Header, data: &mut dyn Read) -> io::Result<()> {
    sink.write_header(header)?;
    copy_data(sink, header.size, data)
}

/// Writes the directories of `prefix` (`a/b/c/` → `a`, `a/b`, `a/b/c`), as LinuxKit's tarPrefix does.
fn write_prefix_dirs(sink: &mut dyn EntrySink, prefix: &str, source: &str, location: &str) -> io::Result<()> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    let mut path = String::new();
    for component in trimmed.split('/') {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(component);
        let header = Header::new(path.clone(), crate::tar::EntryKind::Directory, 0o755).with_origin(source, location);
        sink.write_header(&header)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
