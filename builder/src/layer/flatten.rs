//! Flattening an image's layers into one entry stream, as LinuxKit does with go-containerregistry's
//! `mutate.Extract`, plus opaque directories and escape checks.
//!
//! The rules (newest layer first; every name cleaned with Go's `filepath.Clean`):
//! - An entry is emitted the first time its path is seen; later (older) ones are dropped.
//! - `.wh.NAME` hides `NAME` and everything below it in older layers and is not emitted.
//! - A non-directory entry hides older entries below its path.
//! - `.wh..wh..opq` in a directory hides that directory's content from older layers (LinuxKit ignores
//!   these markers; [`Flattener::honour_opaque`] switches back to that behaviour) and is not emitted.
//! - Hard links are emitted after their target, with the target's cleaned name: a link in a newer
//!   layer to a file of an older one waits until that file has been emitted, since an extractor
//!   creates a link only to an existing file. The target is the newest entry of that name, as in
//!   go-containerregistry (Docker would keep the older file's content for a link of an older layer
//!   whose target a newer layer replaced).
//! - Refused, naming image, layer and entry: entries that are absolute, escape the root with `..`,
//!   have an empty name or make the root a non-directory; entries that would land below a symlink of
//!   the flattened result (from any layer, including the entry's own) or below another non-directory
//!   emitted after them (Go keeps both); hard links leaving the root, to themselves, to a directory,
//!   or to a path the flattened result does not hold.
//!
//! Only the set of seen paths (and the headers of links waiting for their target) is kept in
//! memory; layers are streamed.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::compression::{open_layer, OpenLayerError};
use crate::tar::{gopath, EntryKind, Header, Position, TarError, TarReader};

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
    /// An entry has an empty name, which no extractor can create.
    #[error("image {image}: layer {digest}: tar {at} has an empty name; refusing the image")]
    EmptyName {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// Where the entry is in the layer's tar.
        at: Position,
    },
    /// A non-directory entry names the image root itself (`.`, `./`).
    #[error(
        "image {image}: layer {digest}: entry {entry:?} is the image root but not a directory; refusing the image"
    )]
    RootNotDirectory {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The entry name as written in the layer.
        entry: String,
    },
    /// A hard link points to itself.
    #[error("image {image}: layer {digest}: hard link {entry:?} points to itself; refusing the image")]
    HardlinkToItself {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The (cleaned) entry name.
        entry: String,
    },
    /// A hard link points to a directory, which cannot be hard-linked.
    #[error("image {image}: layer {digest}: hard link {entry:?} points to {target:?}, which is a directory in this image; refusing the image")]
    HardlinkToDirectory {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The (cleaned) entry name.
        entry: String,
        /// The (cleaned) link target.
        target: String,
    },
    /// A hard link points to a path that is not in the flattened image (never there, removed by a
    /// whiteout, or hidden by a newer layer), so extracting it would fail.
    #[error("image {image}: layer {digest}: hard link {entry:?} points to {target:?}, which is not in this image (missing, or removed by a newer layer); refusing the image")]
    HardlinkMissingTarget {
        /// Image reference.
        image: String,
        /// Layer digest.
        digest: String,
        /// The (cleaned) entry name.
        entry: String,
        /// The (cleaned) link target.
        target: String,
    },
    /// An entry lies below a path that is a file (or device, FIFO, hard link) in the flattened image
    /// (from an older layer than the entry, or later in its own layer): no extractor can create both.
    #[error("image {image}: layer {digest}: {parent:?} is not a directory, but the image has {entry:?} below it; no extractor can create both, refusing the image")]
    BelowNonDirectory {
        /// Image reference.
        image: String,
        /// Layer digest (of the non-directory).
        digest: String,
        /// The (cleaned) entry below it.
        entry: String,
        /// The (cleaned) non-directory.
        parent: String,
    },
    /// An entry lies below a path that is a symlink in the flattened image (from an older layer, or
    /// earlier in the entry's own layer), so extracting the image could write it through the symlink.
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
    /// Go's `fileMap`, refined: every path decided so far.
    seen: HashMap<String, Seen>,
    /// Directories made opaque by layers newer than the current one.
    opaque: HashSet<String>,
    /// Strict ancestors of emitted entries, each with the first entry emitted below it.
    parents: HashMap<String, String>,
    /// Hard links held back until their target has been emitted, by target.
    waiting: HashMap<String, Vec<WaitingLink>>,
    /// Digests of the layers streamed so far, newest first; the last is the current layer.
    digests: Vec<String>,
}

/// What the flattening decided about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Whited out: gone, with everything below it, from older layers.
    Whiteout,
    /// An emitted directory: older entries below it survive.
    Directory,
    /// An emitted non-directory, which hides older entries below it; `symlink` when it is a symlink
    /// on extraction (directly or as a hard link to one). `layer` indexes [`Flattener::digests`].
    Entry { symlink: bool, layer: usize },
    /// A hard link waiting for its target.
    Waiting,
}

impl Seen {
    /// Go's `fileMap` value: whether the path hides everything below it in older layers.
    fn hides(self) -> bool {
        self != Seen::Directory
    }
}

/// A hard link held back until its target has been emitted.
#[derive(Debug)]
struct WaitingLink {
    /// Its header, names cleaned.
    header: Header,
    /// Its layer, as an index into [`Flattener::digests`].
    layer: usize,
}

/// What to do with one entry.
enum Decision {
    /// Not emitted (hidden, duplicate or whiteout), or not yet (a hard link waiting for its target).
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
            parents: HashMap::new(),
            waiting: HashMap::new(),
            digests: Vec::new(),
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
        self.refuse_waiting_links()
    }

    /// Streams one layer, then reads it to its end so that a digest-verifying blob reader and the
    /// `diff_id` check see every byte.
    fn layer<E, F>(&mut self, layer: LayerSource<'_>, visit: &mut F) -> Result<(), LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(&Header, &mut dyn Read) -> Result<(), E>,
    {
        self.digests.push(layer.digest);
        let stream = open_layer(&layer.media_type, layer.blob).map_err(|source| LayerError::Open {
            image: self.image.clone(),
            digest: self.current_digest(),
            source,
        })?;
        let mut tar = TarReader::new(Sha256Reader::new(stream));
        // Opaque markers only hide older layers, so they take effect once this layer is done.
        let mut new_opaque = Vec::new();
        loop {
            let header = match tar.next_header() {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(source) => return Err(self.tar_error(source)),
            };
            match self.decide(header, tar.position(), &mut new_opaque)? {
                Decision::Skip => {}
                Decision::Emit(header) => {
                    if let Err(err) = self.emit(header, &mut tar, visit) {
                        // A visitor fails when the layer's data does: then the layer is to blame.
                        return Err(tar.take_data_error().map_or(err, |source| self.tar_error(source)));
                    }
                }
            }
        }
        let mut rest = tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|source| LayerError::Read {
            image: self.image.clone(),
            digest: self.current_digest(),
            source,
        })?;
        let actual = rest.digest();
        if let Some(expected) = layer.diff_id.filter(|expected| *expected != actual) {
            return Err(LayerError::DiffIdMismatch {
                image: self.image.clone(),
                digest: self.current_digest(),
                expected,
                actual,
            });
        }
        self.opaque.extend(new_opaque);
        Ok(())
    }

    /// Applies the flattening rules to one entry of the current layer, found at `at` in its tar.
    fn decide(
        &mut self,
        mut header: Header,
        at: Position,
        new_opaque: &mut Vec<String>,
    ) -> Result<Decision, LayerError> {
        let layer = self.current_layer();
        let cleaned = gopath::clean(&header.name);
        self.check_name(&cleaned, &header, at)?;

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
        if self.seen.contains_key(&key) || self.in_whiteout_dir(&key, &cleaned)? || self.in_opaque_dir(&key) {
            return Ok(Decision::Skip);
        }
        if tombstone {
            self.seen.insert(key, Seen::Whiteout);
            if base == OPAQUE_MARKER && self.honour_opaque {
                new_opaque.push(dir.to_string());
            }
            return Ok(Decision::Skip);
        }
        header.name = cleaned;
        if header.kind == EntryKind::HardLink {
            header.link_name = gopath::clean(&header.link_name);
            self.check_link_target(&header)?;
            if !matches!(
                self.seen.get(&header.link_name),
                Some(Seen::Directory | Seen::Entry { .. })
            ) {
                self.seen.insert(header.name.clone(), Seen::Waiting);
                let target = header.link_name.clone();
                self.waiting
                    .entry(target)
                    .or_default()
                    .push(WaitingLink { header, layer });
                return Ok(Decision::Skip);
            }
        }
        self.admit(&header, layer)?;
        Ok(Decision::Emit(header))
    }

    /// Hands an admitted entry to the visitor, then the hard links that were waiting for it (and
    /// those waiting for them).
    fn emit<E, F>(&mut self, header: Header, data: &mut dyn Read, visit: &mut F) -> Result<(), LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(&Header, &mut dyn Read) -> Result<(), E>,
    {
        self.visit(&header, data, visit)?;
        let mut emitted = vec![header.name];
        while let Some(target) = emitted.pop() {
            for link in self.waiting.remove(&target).unwrap_or_default() {
                self.check_released_link(&link)?;
                self.admit(&link.header, link.layer)?;
                self.visit(&link.header, &mut io::empty(), visit)?;
                emitted.push(link.header.name);
            }
        }
        Ok(())
    }

    fn visit<E, F>(&self, header: &Header, data: &mut dyn Read, visit: &mut F) -> Result<(), LayerError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnMut(&Header, &mut dyn Read) -> Result<(), E>,
    {
        visit(header, data).map_err(|err| LayerError::Visit {
            image: self.image.clone(),
            entry: header.name.clone(),
            source: err.into(),
        })
    }

    /// Go's `inWhiteoutDir`: whether an ancestor of `key` hides everything below it. The entry
    /// (`entry`, of the current layer) is refused instead when an ancestor is a symlink of the
    /// current layer: an extractor would write it through the symlink. (A symlink of a newer layer
    /// merely hides older entries below it; one of an older layer is caught by [`Self::admit`].)
    fn in_whiteout_dir(&self, key: &str, entry: &str) -> Result<bool, LayerError> {
        let current = self.current_layer();
        let mut hidden = false;
        for dir in gopath::ancestors(key) {
            match self.seen.get(dir) {
                Some(Seen::Entry { symlink: true, layer }) if *layer == current => {
                    return Err(self.through_symlink(entry, dir, current));
                }
                Some(seen) => hidden |= seen.hides(),
                None => {}
            }
        }
        Ok(hidden)
    }

    /// Whether a newer layer made an ancestor directory opaque.
    fn in_opaque_dir(&self, key: &str) -> bool {
        !self.opaque.is_empty() && gopath::ancestors(key).any(|dir| self.opaque.contains(dir))
    }

    /// Refuses names no extractor can create safely, even for entries a newer layer hides (the layer
    /// is malicious or broken): empty, absolute, escaping through `..`, a non-directory root, and
    /// hard links whose target is absolute or escapes.
    fn check_name(&self, cleaned: &str, header: &Header, at: Position) -> Result<(), LayerError> {
        let image = self.image.clone();
        let digest = self.current_digest();
        let entry = header.name.clone();
        if entry.is_empty() {
            return Err(LayerError::EmptyName { image, digest, at });
        }
        if cleaned.starts_with('/') {
            return Err(LayerError::AbsolutePath { image, digest, entry });
        }
        if escapes(cleaned) {
            return Err(LayerError::EscapesRoot { image, digest, entry });
        }
        if cleaned == "." && header.kind != EntryKind::Directory {
            return Err(LayerError::RootNotDirectory { image, digest, entry });
        }
        if header.kind == EntryKind::HardLink {
            let target = gopath::clean(&header.link_name);
            if target.starts_with('/') || escapes(&target) {
                return Err(LayerError::HardlinkEscapes {
                    image,
                    digest,
                    entry: cleaned.to_string(),
                    target: header.link_name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a hard link (of the current layer, names cleaned) to itself, or to a path below an
    /// emitted symlink (which no later entry can fill, and which would reach outside).
    fn check_link_target(&self, header: &Header) -> Result<(), LayerError> {
        let image = self.image.clone();
        let digest = self.current_digest();
        let entry = header.name.clone();
        if header.link_name == header.name {
            return Err(LayerError::HardlinkToItself { image, digest, entry });
        }
        let below_symlink = gopath::ancestors(&header.link_name)
            .any(|dir| matches!(self.seen.get(dir), Some(Seen::Entry { symlink: true, .. })));
        if below_symlink {
            return Err(LayerError::HardlinkEscapes {
                image,
                digest,
                entry,
                target: header.link_name.clone(),
            });
        }
        Ok(())
    }

    /// Refuses a hard link that waited for its target while a non-directory was emitted above it
    /// (had that come first, it would have hidden the link).
    fn check_released_link(&self, link: &WaitingLink) -> Result<(), LayerError> {
        let entry = &link.header.name;
        for dir in gopath::ancestors(entry) {
            if let Some(Seen::Entry { symlink, layer }) = self.seen.get(dir) {
                if *symlink {
                    return Err(self.through_symlink(entry, dir, *layer));
                }
                return Err(LayerError::BelowNonDirectory {
                    image: self.image.clone(),
                    digest: self.digests[*layer].clone(),
                    entry: entry.clone(),
                    parent: dir.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Records an entry of `layer` about to be emitted (a hard link once its target is), refusing a
    /// hard link to a directory and a non-directory that lands above already emitted entries.
    ///
    /// The opposite order needs no check here: an emitted symlink (like any non-directory) hides
    /// every older entry below it, and one of the same layer is refused by `in_whiteout_dir`.
    fn admit(&mut self, header: &Header, layer: usize) -> Result<(), LayerError> {
        let seen = match header.kind {
            EntryKind::Directory => Seen::Directory,
            EntryKind::Symlink => Seen::Entry { symlink: true, layer },
            EntryKind::HardLink => match self.seen.get(&header.link_name) {
                Some(Seen::Entry { symlink, .. }) => Seen::Entry {
                    symlink: *symlink,
                    layer,
                },
                Some(Seen::Directory) => return Err(self.bad_link(header, layer, LinkProblem::Directory)),
                _ => return Err(self.bad_link(header, layer, LinkProblem::Missing)),
            },
            _ => Seen::Entry { symlink: false, layer },
        };
        if let (Seen::Entry { symlink, .. }, Some(below)) = (seen, self.parents.get(&header.name)) {
            if symlink {
                return Err(self.through_symlink(below, &header.name, layer));
            }
            return Err(LayerError::BelowNonDirectory {
                image: self.image.clone(),
                digest: self.digests[layer].clone(),
                entry: below.clone(),
                parent: header.name.clone(),
            });
        }
        self.seen.insert(header.name.clone(), seen);
        for dir in gopath::ancestors(&header.name) {
            // Once an ancestor is known, all of its own ancestors are too.
            if self.parents.contains_key(dir) {
                break;
            }
            self.parents.insert(dir.to_string(), header.name.clone());
        }
        Ok(())
    }

    /// Refuses the hard links still waiting once every layer is read: their targets are not in the
    /// image. The first by layer and name is named, so that the error is reproducible.
    fn refuse_waiting_links(&self) -> Result<(), LayerError> {
        match self
            .waiting
            .values()
            .flatten()
            .min_by_key(|link| (link.layer, &link.header.name))
        {
            Some(link) => Err(self.bad_link(&link.header, link.layer, LinkProblem::Missing)),
            None => Ok(()),
        }
    }

    /// The index of the layer being streamed in [`Flattener::digests`].
    fn current_layer(&self) -> usize {
        self.digests.len().saturating_sub(1)
    }

    fn current_digest(&self) -> String {
        self.digests.last().cloned().unwrap_or_default()
    }

    fn tar_error(&self, source: TarError) -> LayerError {
        LayerError::Tar {
            image: self.image.clone(),
            digest: self.current_digest(),
            source: Box::new(source),
        }
    }

    fn through_symlink(&self, entry: &str, symlink: &str, layer: usize) -> LayerError {
        LayerError::ThroughSymlink {
            image: self.image.clone(),
            digest: self.digests[layer].clone(),
            entry: entry.to_string(),
            symlink: symlink.to_string(),
        }
    }

    fn bad_link(&self, header: &Header, layer: usize, problem: LinkProblem) -> LayerError {
        let (image, digest) = (self.image.clone(), self.digests[layer].clone());
        let (entry, target) = (header.name.clone(), header.link_name.clone());
        match problem {
            LinkProblem::Directory => LayerError::HardlinkToDirectory {
                image,
                digest,
                entry,
                target,
            },
            LinkProblem::Missing => LayerError::HardlinkMissingTarget {
                image,
                digest,
                entry,
                target,
            },
        }
    }
}

/// Why a hard link's target cannot be linked to.
enum LinkProblem {
    Directory,
    Missing,
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

/// Whether a cleaned relative path climbs above its root.
fn escapes(cleaned: &str) -> bool {
    cleaned == ".." || cleaned.starts_with("../")
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
