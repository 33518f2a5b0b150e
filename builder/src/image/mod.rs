//! The local OCI image-layout cache and registry pulls.
//!
//! The cache is an OCI image layout, laid out as LinuxKit's (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`): `index.json` names each image by its expanded reference in the
//! `org.opencontainers.image.ref.name` annotation, so a LinuxKit cache can be used as ours.
//!
//! - [`Store`] reads and writes the layout: lookups ([`Store::resolve`]), blobs, listing,
//!   removal, garbage collection, export and import of OCI layout tars.
//! - [`ensure_images`] resolves references, pulling what the cache lacks from registries
//!   (anonymous or with Docker credentials, plain HTTP for loopback, mirrors, multi-arch indexes).
//! - [`oci_layout_entries`] lists the entries LinuxKit writes for a `format: oci` volume.
//!
//! # Crash safety
//!
//! Blobs are written to `.tmp/` inside the store while their sha256 is computed, checked against
//! the expected digest and size, fsynced and only then renamed to `blobs/sha256/<hex>`; a blob
//! under its final name is therefore always complete and correct. `index.json` is rewritten to a
//! temporary file and renamed over the old one under an exclusive `flock` on `.lock` (the lock
//! file LinuxKit uses), and an image's entry is only added after all its blobs are in place. A
//! process killed at any point leaves a valid cache; at worst some unreferenced blobs remain,
//! which [`Store::gc`] removes, and temporary files: every writer holds a `flock` on its own, so
//! the next process that opens the store for writing removes those whose lock died with their
//! writer (even while other processes are writing theirs).
//!
//! # Integrity
//!
//! What is on disk is checked again whenever it is read, since disks fail and caches get copied
//! around: small JSON blobs are hashed when read, every other blob is read through a
//! [`VerifiedBlob`], and a blob found damaged is removed from the cache (see [`DamagedBlob`]).

mod archive;
mod auth;
mod descriptor;
mod layout;
mod local;
mod oci_volume;
mod platform;
mod pull;
mod push;
mod registry;

use std::path::PathBuf;

pub(crate) use descriptor::sha256_read;
pub use descriptor::{media_type, sha256_digest, Descriptor, ImageConfigFile};
pub use layout::{ResolvedImage, Store, VerifiedBlob};
#[cfg(test)]
pub(crate) use local::manifest_json;
pub use local::LayerFile;
pub use oci_volume::{oci_layout_entries, LayoutContent, LayoutEntry, LayoutEntryKind};
pub use platform::{oci_architecture, Platform};
pub use pull::{ensure_images, ensure_layouts, parse_mirror, PullOptions};
pub use push::{push_image, PushOptions};
pub use registry::{DEFAULT_STALL_TIMEOUT, STALL_TIMEOUT_ENV};

#[cfg(test)]
pub(crate) use layout::tests::corpus_copy;

/// Everything that can go wrong in the image store and in pulls.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory of the store could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "read" or "create directory".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory is not a usable OCI image layout.
    #[error("{dir} is not a usable image cache: {reason}; fix or remove it (or use another --cache directory)")]
    InvalidLayout {
        /// The cache directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store was opened read-only and an operation needed to write.
    #[error("the image cache {dir} was opened read-only and cannot {action}")]
    ReadOnly {
        /// The cache directory.
        dir: PathBuf,
        /// What would have been written.
        action: &'static str,
    },
    /// A digest string is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {digest:?}: only sha256:<64 hex digits> digests are supported")]
    InvalidDigest {
        /// The offending digest.
        digest: String,
    },
    /// A platform string could not be parsed.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform {
        /// The offending text.
        platform: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A `--mirror` value could not be parsed.
    #[error("invalid mirror {mirror:?}: {reason}")]
    InvalidMirror {
        /// The offending text.
        mirror: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No image of that name is in the cache.
    #[error("image {image} is not in the cache {dir}")]
    NotInCache {
        /// The image name.
        image: String,
        /// The cache directory.
        dir: PathBuf,
    },
    /// A blob that an image needs is missing from the cache.
    #[error("blob {digest} of image {image} is missing from the cache {dir}; pull the image again")]
    BlobMissing {
        /// The image.
        image: String,
        /// The missing blob.
        digest: String,
        /// The cache directory.
        dir: PathBuf,
    },
    /// A blob in the cache is not what its descriptor says (disk damage or tampering).
    #[error(transparent)]
    CorruptBlob(DamagedBlob),
    /// A manifest, index or config blob could not be parsed.
    #[error("{what} {digest} of image {image} is invalid: {reason}")]
    InvalidManifest {
        /// "manifest", "index" or "config".
        what: &'static str,
        /// The image.
        image: String,
        /// The blob.
        digest: String,
        /// Why.
        reason: String,
    },
    /// An index has no manifest for the requested platform.
    #[error("image {image} has no manifest for platform {platform} (it offers: {available})")]
    NoPlatform {
        /// The image.
        image: String,
        /// The requested platform.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// An operation that needs a multi-platform index found a single manifest.
    #[error("image {image} is not a multi-platform index, which a format: oci volume needs ({digest} is a single image manifest)")]
    NotAnIndex {
        /// The image.
        image: String,
        /// The digest of its manifest.
        digest: String,
    },
    /// Downloaded or imported content does not match its digest; nothing was cached for it.
    #[error("blob {expected} of image {image} from {source_url} has the wrong content (it hashes to {actual}); nothing was cached for it: retry, and if it persists the source's copy is damaged")]
    DigestMismatch {
        /// The image.
        image: String,
        /// Registry URL or archive the blob came from.
        source_url: String,
        /// The expected digest.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// Downloaded or imported content has the wrong size; nothing was cached for it.
    #[error("blob {digest} of image {image} from {source_url} has {actual} bytes instead of {expected}; nothing was cached for it: retry")]
    SizeMismatch {
        /// The image.
        image: String,
        /// Registry URL or archive the blob came from.
        source_url: String,
        /// The blob's digest.
        digest: String,
        /// Expected size.
        expected: u64,
        /// Bytes received so far.
        actual: u64,
    },
    /// The registry could not be reached at all.
    #[error("image {image} {cached}, and registry {registry} is unreachable: {detail}; check the name or run with network access")]
    Unreachable {
        /// The image.
        image: String,
        /// What the cache lacked, that made the registry necessary.
        cached: CacheGap,
        /// Registry URL.
        registry: String,
        /// The transport error.
        detail: String,
    },
    /// The registry refused access.
    #[error("registry {registry} refused access to image {image}: {detail}; add credentials for {host} with `docker login {host}` or to ~/.docker/config.json (see --docker-config)")]
    Unauthorized {
        /// The image.
        image: String,
        /// Registry URL.
        registry: String,
        /// Registry host, for the hint.
        host: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry does not have the image (or the blob).
    #[error("image {image} was not found in registry {registry} ({what} {object}); check the name and tag")]
    NotFound {
        /// The image.
        image: String,
        /// Registry URL.
        registry: String,
        /// "manifest" or "blob".
        what: &'static str,
        /// Tag or digest that was asked for.
        object: String,
    },
    /// A download broke off or the registry answered with an error.
    #[error("pulling {what} {object} of image {image} from {registry} failed: {detail}; the cache is unchanged for it, retry")]
    Registry {
        /// The image.
        image: String,
        /// Registry URL.
        registry: String,
        /// "manifest" or "blob".
        what: &'static str,
        /// Tag or digest.
        object: String,
        /// What went wrong.
        detail: String,
    },
    /// A transfer from a registry stopped moving.
    #[error("pulling {what} {object} of image {image} from {registry} stalled: less than {progress} bytes arrived in {seconds} s; check the network and the registry (MOBY_PULL_STALL_TIMEOUT sets the seconds)")]
    Stalled {
        /// The image.
        image: String,
        /// Registry URL.
        registry: String,
        /// "manifest" or "blob".
        what: &'static str,
        /// Tag or digest.
        object: String,
        /// The bytes that count as progress.
        progress: u64,
        /// The stall timeout.
        seconds: u64,
    },
    /// A registry sent more than a document of its kind can hold; it was not read further.
    #[error("the {what} for {object} of image {image} from {registry} is larger than {limit} bytes, more than any real one: the registry is broken or hostile, refusing it")]
    TooLarge {
        /// The image.
        image: String,
        /// Registry URL.
        registry: String,
        /// "manifest", "config" or "token response".
        what: &'static str,
        /// Tag or digest.
        object: String,
        /// The bound.
        limit: u64,
    },
    /// An environment variable moby reads has a value it cannot use.
    #[error("{name}={value:?} is invalid: {reason}")]
    InvalidEnvironment {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        reason: &'static str,
    },
    /// A push to a registry failed.
    #[error("pushing {what} {object} of image {image} to {registry} failed: {detail}")]
    Push {
        /// The image.
        image: String,
        /// Registry URL.
        registry: String,
        /// "manifest" or "blob".
        what: &'static str,
        /// Tag or digest.
        object: String,
        /// What went wrong.
        detail: String,
    },
    /// Docker credentials could not be read.
    #[error("cannot use Docker credentials from {path}: {reason}")]
    Credentials {
        /// The config file or helper.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An archive to import is not an OCI layout tar.
    #[error("cannot import {what}: {reason}")]
    InvalidArchive {
        /// The archive entry or "archive".
        what: String,
        /// Why.
        reason: String,
    },
    /// Several images failed; each error is listed.
    #[error("{} images could not be made available:\n  {}", .0.len(), list_errors(.0))]
    Several(Vec<ImageError>),
}

/// What the cache lacks for an image, so that it has to be pulled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheGap {
    /// No `index.json` entry names it.
    #[error("is not in the cache")]
    NotCached,
    /// It is pulled again on request, whatever the cache holds.
    #[error("was to be pulled again")]
    Refresh,
    /// The cached index has no manifest for the platform (the tag may have moved to one that has).
    #[error("is in the cache without a manifest for {platform} (it offers: {available})")]
    NoPlatform {
        /// The requested platform.
        platform: String,
        /// The platforms the cached index offers.
        available: String,
    },
    /// A blob it needs is not in the cache.
    #[error("is in the cache without its blob {digest}")]
    MissingBlob {
        /// The blob.
        digest: String,
    },
    /// A blob it needs has the wrong size in the cache (damaged; a pull replaces it).
    #[error("is in the cache with a damaged blob {digest} ({actual} bytes instead of {expected})")]
    DamagedBlob {
        /// The blob.
        digest: String,
        /// Its descriptor's size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
}

/// A blob of the cache whose content or size is not what its digest and descriptor say. It is
/// found while the blob is read (see [`Store::open_verified`]) and, in a writable cache, removed
/// there and then, so that the next pull fetches it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {digest} of image {image} in the cache is damaged: {problem} ({path}); {}", removal_note(*.removed))]
pub struct DamagedBlob {
    /// The image being read, as `index.json` names it (what `Store::remove` takes).
    pub image: String,
    /// The blob's digest.
    pub digest: String,
    /// What is wrong with it.
    pub problem: BlobDamage,
    /// The blob file.
    pub path: PathBuf,
    /// Whether the damaged file was removed from the cache.
    pub removed: bool,
}

fn removal_note(removed: bool) -> &'static str {
    if removed {
        "it was removed from the cache, so pulling the image again fetches a good copy"
    } else {
        "remove the image from the cache and pull it again"
    }
}

/// How a cached blob differs from its descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobDamage {
    /// The content hashes to another digest.
    #[error("its content hashes to {actual}")]
    Content {
        /// What the content hashes to.
        actual: String,
    },
    /// The file is shorter or longer than the descriptor says.
    #[error("it has {actual} bytes instead of {expected}")]
    Size {
        /// The descriptor's size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
}

impl DamagedBlob {
    /// The damage report inside `error` or one of its causes (also inside `io::Error`s, as
    /// readers of a [`VerifiedBlob`] get it), if there is one.
    pub fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e DamagedBlob> {
        let mut next = Some(error);
        while let Some(error) = next {
            let inner = error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .map(|inner| inner as &(dyn std::error::Error + 'static));
            let found = std::iter::once(error).chain(inner).find_map(|candidate| {
                match candidate.downcast_ref::<ImageError>() {
                    Some(ImageError::CorruptBlob(damage)) => Some(damage),
                    _ => candidate.downcast_ref::<DamagedBlob>(),
                }
            });
            if found.is_some() {
                return found;
            }
            next = error.source();
        }
        None
    }
}

fn list_errors(errors: &[ImageError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
}

impl ImageError {
    /// An I/O error on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
