//! Flattening an image's layers into one entry stream, as LinuxKit does with go-containerregistry's
//! `mutate.Extract`, plus opaque directories and escape checks.
//!
//! The rules (newest layer first; every name cleaned with Go's `filepath.Clean`):
//! - An entry is emitted the first time its path is seen; later (older) ones are dropped.
//! - `.wh.NAME` hides `NAME` and everything below it in older layers and is not emitted.
//! - A non-directory entry hides older entries below its path.
//! - `.wh..wh..opq` in a directory hides that directory's content from older layers (LinuxKit ignores
//!   these markers; [`Flattener::honour_opaque`] switches back to that behaviour) and is not emitted.
//! - Entries that are absolute, escape the root with `..`, are hard links to such a target, or would
//!   land below a symlink of the flattened result are refused.
//!
//! Only the set of seen paths is kept in memory; layers are streamed.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::compression::{open_layer, OpenLayerError};
use crate::tar::{gopath, EntryKind, Header, TarError, TarReader};

/// Prefix of whiteout file names.
const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// One layer blob of an image, as listed in its manifest. It is opened (and decompressed) only when
/// the flattening reaches it, so only one decompressor exists at a time.
pub struct LayerSource<'a> {
    /// The blob digest, for error messages.
    pub digest: String,
    /// The media type from the manifest (see [`super::Compression::from_media_type`]).
    pub media_type: String,
    /// The (usually compressed) blob content.
    pub blob: Box<dyn Read + Send + 'a>,
    /// The sha256 the uncompressed tar must have (the image config's `rootfs.diff_ids` entry), if
    /// known; see [`LayerSource::with_diff_id`].
    pub diff_id: Option<String>,
}

impl<'a> LayerSource<'a> {
    /// A layer blob with its digest and media type.
    pub fn new(
        digest: impl Into<String>,
        media_type: impl Into<String>,
        blob: impl Read + Send + 'a,
    ) -> LayerSource<'a> {
        LayerSource {
            digest: digest.into(),
            media_type: media_type.into(),
            blob: Box::new(blob),
            diff_id: None,
        }
    }

    /// Checks the uncompressed tar against `diff_id` (`sha256:<hex>`): flattening fails with
    /// [`LayerError::DiffIdMismatch`] once the layer has been read, if it differs.
    pub fn with_diff_id(mut self, diff_id: impl Into<String>) -> LayerSource<'a> {
        self.diff_id = Some(diff_id.into());
        self
    }
}

/// Why an image's layers could not be flattened. Every variant names the image and layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The blob could not be opened or decompressed.
    #[error("image {image}: layer {digest}: {source}")]
    Open {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// Cause.
        #[source]
        source: OpenLayerError,
    },
    /// The layer is not a readable tar (corrupt, truncated, or a decompression error).
    #[error(
        "image {image}: layer {digest}: {source}; the layer blob is corrupt, remove it from the cache and pull again"
    )]
    Tar {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// Cause.
        #[source]
        source: Box<TarError>,
    },
    /// An entry name is absolute.
    #[error("image {image}: layer {digest}: entry {entry:?} has an absolute path, which could overwrite files outside the image; refusing the image")]
    AbsolutePath {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The entry name as written in the layer.
        entry: String,
    },
    /// An entry name climbs out of the root with `..`.
    #[error("image {image}: layer {digest}: entry {entry:?} escapes the image root through '..'; refusing the image")]
    EscapesRoot {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The entry name as written in the layer.
        entry: String,
    },
    /// A hard link points outside the root (absolute, `..`, or through a symlink).
    #[error("image {image}: layer {digest}: hard link {entry:?} points to {target:?}, outside the image root; refusing the image")]
    HardlinkEscapes {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The (cleaned) entry name.
        entry: String,
        /// The link target as written.
        target: String,
    },
    /// An entry lies below a path that is a symlink in the flattened image (the symlink comes from an
    /// older layer than the entry), so extracting the image could write it through the symlink.
    #[error("image {image}: layer {digest}: entry {entry:?} lies below {symlink:?}, which is a symlink in this image; extracting it would write through the symlink, refusing the image")]
    ThroughSymlink {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The (cleaned) entry name.
        entry: String,
        /// The symlink ancestor.
        symlink: String,
    },
    /// Reading the layer's data failed after its headers were read: the blob breaks off, its
    /// compression is damaged, or a verifying reader found it damaged.
    #[error("image {image}: layer {digest}: {source}; the layer blob is damaged or truncated")]
    Read {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The uncompressed layer does not hash to the `diff_id` the image config lists for it.
    #[error("image {image}: layer {digest} uncompresses to {actual}, but the image config lists {expected} for it; the image is inconsistent (damaged or tampered with), pull or build it again")]
    DiffIdMismatch {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The config's `diff_ids` entry.
        expected: String,
        /// What the uncompressed tar hashes to.
        actual: String,
    },
    /// The caller's visitor failed on an entry; flattening stopped there.
    #[error("image {image}: entry {entry:?}: {source}")]
    Visit {
        /// Image reference.
        image: String,
        /// The (cleaned) entry name being visited.
        entry: String,
        /// The visitor's error (downcast it to recover the caller's own type).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Flattens layers (oldest first, as listed in the manifest) and calls `visit` for every surviving
/// entry, newest layer first, with a reader of the entry's data. `image` names the image in errors.
///
/// Unread data is skipped, so the visitor may ignore it. A visitor error stops flattening and comes
/// back as [`LayerError::Visit`].
pub fn flatten<E, F>(layers: Vec<LayerSource<'_>>, image: &str, visit: F) -> Result<(), LayerError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnMut(&Header, &mut dyn Read) -> Result<(), E>,
{
    Flattener::new(image).run(layers, visit)
}

/// The state of one image's flattening; see the module documentation for the rules.
#[derive(Debug)]
pub struct Flattener {
    image: String,
    honour_opaque: bool,
    /// Go's `fileMap`: every path decided so far, `true` when it hides everything below it.
    seen: HashMap<String, bool>,
    /// Directories made opaque by layers newer than the current one.
    opaque: HashSet<String>,
    /// Emitted symlinks (and hard links to them).
    symlinks: HashSet<String>,
    /// Strict ancestors of emitted entries, each with the first entry emitted below it.
    parents: HashMap<String, String>,
}

/// What to do with one entry.
enum Decision {
    /// Not emitted (hidden, duplicate or whiteout).
    Skip,
    /// Emitted under its cleaned name.
    Emit(Header),
}

impl Flattener {
    /// A flattener for the image `image` (used in error messages) that honours opaque markers.
    pub fn new(image: &str) -> Flattener {
        Flattener {
            image: image.to_string(),
            honour_opaque: true,
            seen: HashMap::new(),
            opaque: HashSet::new(),
            symlinks: HashSet::new(),
            parents: HashMap::new(),
        }
    }

    /// Whether `.wh..wh..opq` hides older content of its directory (default `true`). `false`
    /// reproduces LinuxKit v1.7.1 exactly, which drops the marker and keeps the older content.
    pub fn honour_opaque(mut self, honour: bool) -> Flattener {
        self.honour_opaque = honour;
        self
    }

    /// Flattens `layers` (oldest first, as in the manifest), calling `visit` for each surviving
    /// entry; see [`flatten`].
    pub fn run<E, F>(mut self, layers: Vec<LayerSource<'_>>, mut visit: F) -> Result<(), LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(&Header, &mut dyn Read) -> Result<(), E>,
    {
        for layer in layers.into_iter().rev() {
            self.layer(layer, &mut visit)?;
        }
        Ok(())
    }

    /// Streams one layer, then reads it to its end so that a digest-verifying blob reader and the
    /// `diff_id` check see every byte.
    fn layer<E, F>(&mut self, layer: LayerSource<'_>, visit: &mut F) -> Result<(), LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(&Header, &mut dyn Read) -> Result<(), E>,
    {
        let digest = layer.digest;
        let stream = open_layer(&layer.media_type, layer.blob).map_err(|source| LayerError::Open {
            image: self.image.clone(),
            digest: digest.clone(),
            source,
        })?;
        let read_error = |image: &str, source| LayerError::Read {
            image: image.to_string(),
            digest: digest.clone(),
            source,
        };
        let mut tar = TarReader::new(Sha256Reader::new(stream));
        // Opaque markers only hide older layers, so they take effect once this layer is done.
        let mut new_opaque = Vec::new();
        loop {
            let header = match tar.next_header() {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(source) => {
                    return Err(LayerError::Tar {
                        image: self.image.clone(),
                        digest,
                        source: Box::new(source),
                    })
                }
            };
            match self.decide(header, &digest, &mut new_opaque)? {
                Decision::Skip => {}
                Decision::Emit(header) => {
                    let mut data = DataReader {
                        inner: &mut tar,
                        error: None,
                    };
                    let visited = visit(&header, &mut data);
                    // A visitor fails when the data it reads breaks off: that is the layer's fault.
                    if let Some(source) = data.error {
                        return Err(read_error(&self.image, source));
                    }
                    visited.map_err(|err| LayerError::Visit {
                        image: self.image.clone(),
                        entry: header.name.clone(),
                        source: err.into(),
                    })?;
                }
            }
        }
        let mut rest = tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|source| read_error(&self.image, source))?;
        let actual = rest.digest();
        if let Some(expected) = layer.diff_id.filter(|expected| *expected != actual) {
            return Err(LayerError::DiffIdMismatch {
                image: self.image.clone(),
                digest,
                expected,
                actual,
            });
        }
        self.opaque.extend(new_opaque);
        Ok(())
    }

    /// Applies the flattening rules to one entry.
    fn decide(
        &mut self,
        mut header: Header,
        digest: &str,
        new_opaque: &mut Vec<String>,
    ) -> Result<Decision, LayerError> {
        let cleaned = gopath::clean(&header.name);
        self.check_inside_root(&cleaned, &header, digest)?;

        let dir = gopath::parent(&cleaned);
        let base = gopath::base(&cleaned);
        let (tombstone, hidden_name) = match base.strip_prefix(WHITEOUT_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, base),
        };
        // Go keys directories by their own name (even a `.wh.` one) and everything else by the
        // name with the whiteout prefix removed.
        let key = if header.kind == EntryKind::Directory {
            cleaned.clone()
        } else {
            gopath::join(&[dir, hidden_name])
        };
        if self.seen.contains_key(&key) || self.in_whiteout_dir(&key) || self.in_opaque_dir(&key) {
            return Ok(Decision::Skip);
        }
        self.seen.insert(key, tombstone || header.kind != EntryKind::Directory);
        if tombstone {
            if base == OPAQUE_MARKER && self.honour_opaque {
                new_opaque.push(dir.to_string());
            }
            return Ok(Decision::Skip);
        }
        header.name = cleaned;
        self.check_symlinks(&header, digest)?;
        self.record_emitted(&header);
        Ok(Decision::Emit(header))
    }

    /// Go's `inWhiteoutDir`: whether an ancestor hides everything below it.
    fn in_whiteout_dir(&self, key: &str) -> bool {
        gopath::ancestors(key).any(|dir| self.seen.get(dir) == Some(&true))
    }

    /// Whether a newer layer made an ancestor directory opaque.
    fn in_opaque_dir(&self, key: &str) -> bool {
        !self.opaque.is_empty() && gopath::ancestors(key).any(|dir| self.opaque.contains(dir))
    }

    /// Refuses absolute names, names escaping through `..` and hard links whose target does.
    fn check_inside_root(&self, cleaned: &str, header: &Header, digest: &str) -> Result<(), LayerError> {
        if cleaned.starts_with('/') {
            return Err(LayerError::AbsolutePath {
                image: self.image.clone(),
                digest: digest.to_string(),
                entry: header.name.clone(),
            });
        }
        if escapes(cleaned) {
            return Err(LayerError::EscapesRoot {
                image: self.image.clone(),
                digest: digest.to_string(),
                entry: header.name.clone(),
            });
        }
        if header.kind == EntryKind::HardLink {
            let target = gopath::clean(&header.link_name);
            if target.starts_with('/') || escapes(&target) {
                return Err(self.hardlink_escapes(cleaned, header, digest));
            }
        }
        Ok(())
    }

    /// Refuses a symlink that lands above already emitted entries, and a hard link whose target lies
    /// below an emitted symlink.
    ///
    /// The opposite order needs no check: an emitted symlink (like any non-directory) hides every
    /// later entry below it.
    fn check_symlinks(&self, header: &Header, digest: &str) -> Result<(), LayerError> {
        if self.becomes_symlink(header) {
            if let Some(below) = self.parents.get(&header.name) {
                return Err(LayerError::ThroughSymlink {
                    image: self.image.clone(),
                    digest: digest.to_string(),
                    entry: below.clone(),
                    symlink: header.name.clone(),
                });
            }
        }
        if header.kind == EntryKind::HardLink {
            let target = gopath::clean(&header.link_name);
            if gopath::ancestors(&target).any(|dir| self.symlinks.contains(dir)) {
                return Err(self.hardlink_escapes(&header.name, header, digest));
            }
        }
        Ok(())
    }

    /// Whether the entry is a symlink on extraction (directly or as a hard link to one).
    fn becomes_symlink(&self, header: &Header) -> bool {
        match header.kind {
            EntryKind::Symlink => true,
            EntryKind::HardLink => self.symlinks.contains(&gopath::clean(&header.link_name)),
            _ => false,
        }
    }

    /// Remembers an emitted entry for the symlink checks.
    fn record_emitted(&mut self, header: &Header) {
        if self.becomes_symlink(header) {
            self.symlinks.insert(header.name.clone());
        }
        for dir in gopath::ancestors(&header.name) {
            // Once an ancestor is known, all of its own ancestors are too.
            if self.parents.contains_key(dir) {
                break;
            }
            self.parents.insert(dir.to_string(), header.name.clone());
        }
    }

    fn hardlink_escapes(&self, entry: &str, header: &Header, digest: &str) -> LayerError {
        LayerError::HardlinkEscapes {
            image: self.image.clone(),
            digest: digest.to_string(),
            entry: entry.to_string(),
            target: header.link_name.clone(),
        }
    }
}

/// Hashes what is read through it (the uncompressed layer, for its `diff_id`).
struct Sha256Reader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Sha256Reader<R> {
    fn new(inner: R) -> Self {
        Sha256Reader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// `sha256:<hex>` of everything read so far.
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// An entry's data as the visitor reads it, keeping the first read error for the layer's report
/// (the visitor gets a copy of it).
struct DataReader<'a, R> {
    inner: &'a mut R,
    error: Option<io::Error>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|err| match self.error {
            Some(_) => err,
            None => {
                let copy = io::Error::new(err.kind(), err.to_string());
                self.error = Some(err);
                copy
            }
        })
    }
}

/// Whether a cleaned relative path climbs above its root.
fn escapes(cleaned: &str) -> bool {
    cleaned == ".." || cleaned.starts_with("../")
}

#[cfg(test)]
mod tests;
