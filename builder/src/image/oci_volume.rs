//! The OCI image layout that LinuxKit writes into a `format: oci` volume's `lower/` directory.
//!
//! LinuxKit's IndexSource.OCITarReader writes, in this order: `oci-layout` (its own
//! tab-indented text), `blobs/`, `blobs/sha256/`, then for every image manifest of the index
//! that matches the requested platforms (all of them when none are given) the config, each
//! layer and the manifest, then the index blob itself, then an `index.json` naming the index.
//! Blobs shared by several platforms are written once per platform, as LinuxKit does.

use super::descriptor::{media_type, Descriptor, Manifest, WireDescriptor};
use super::layout::{parse_child, parse_root, Store};
use super::platform::Platform;
use super::ImageError;
use crate::reference::Reference;

/// `oci-layout` exactly as LinuxKit writes it into volumes (36 bytes).
const LINUXKIT_OCI_LAYOUT: &str = "{\n\t\t\"imageLayoutVersion\": \"1.0.0\"\n\t}";

/// Whether a layout entry is a directory or a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutEntryKind {
    /// A directory (its name ends with `/`).
    Directory,
    /// A regular file.
    File,
}

/// Where a layout entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutContent {
    /// No content (directories).
    Empty,
    /// Generated content (`oci-layout`, `index.json`).
    Bytes(Vec<u8>),
    /// A blob of the store, streamed with [`Store::open_verified`].
    Blob {
        /// The image, as `index.json` names it (for error messages).
        image: String,
        /// The blob.
        blob: Descriptor,
    },
}

/// One entry of an OCI layout written into a volume. Its mtime is 0, uid/gid 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutEntry {
    /// Path inside the layout, e.g. `blobs/sha256/<hex>` or `blobs/` (directories end in `/`).
    pub name: String,
    /// Directory or file.
    pub kind: LayoutEntryKind,
    /// Permission bits: 0755 for directories, 0644 for files.
    pub mode: u32,
    /// Content size in bytes (0 for directories).
    pub size: u64,
    /// The content.
    pub content: LayoutContent,
}

impl LayoutEntry {
    fn dir(name: &str) -> LayoutEntry {
        LayoutEntry {
            name: name.to_string(),
            kind: LayoutEntryKind::Directory,
            mode: 0o755,
            size: 0,
            content: LayoutContent::Empty,
        }
    }

    fn bytes(name: &str, bytes: Vec<u8>) -> LayoutEntry {
        LayoutEntry {
            name: name.to_string(),
            kind: LayoutEntryKind::File,
            mode: 0o644,
            size: bytes.len() as u64,
            content: LayoutContent::Bytes(bytes),
        }
    }

    fn blob(image: &str, descriptor: &Descriptor, hex: &str) -> LayoutEntry {
        LayoutEntry {
            name: format!("blobs/sha256/{hex}"),
            kind: LayoutEntryKind::File,
            mode: 0o644,
            size: descriptor.size,
            content: LayoutContent::Blob {
                image: image.to_string(),
                blob: descriptor.clone(),
            },
        }
    }

    /// A reader over the entry's content (empty for directories).
    #[cfg(test)]
    pub(crate) fn open(&self, store: &Store) -> Result<Box<dyn std::io::Read + Send>, ImageError> {
        Ok(match &self.content {
            LayoutContent::Empty => Box::new(std::io::empty()),
            LayoutContent::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
            LayoutContent::Blob { image, blob } => Box::new(store.open_verified(image, blob)?),
        })
    }
}

/// The entries of the OCI layout that LinuxKit writes for a `format: oci` volume of image `r`,
/// restricted to `platforms` (every platform when empty). The image must be an index in the
/// cache with every selected blob present (see [`super::ensure_layouts`]).
pub fn oci_layout_entries(
    store: &Store,
    r: &Reference,
    platforms: &[Platform],
) -> Result<Vec<LayoutEntry>, ImageError> {
    let image = r.to_string();
    let not_cached = || ImageError::NotInCache {
        image: image.clone(),
        dir: store.dir().to_path_buf(),
    };
    let entry = store.find_entry(r)?.ok_or_else(not_cached)?;
    // Blob errors name the cache entry, which `moby cache rm` takes.
    let entry_name = entry.name().map_or_else(|| image.clone(), str::to_string);
    let root = store
        .read_small_blob(&image, &entry.digest)?
        .ok_or_else(|| missing(store, &image, &entry.digest))?;
    let Manifest::Index(index) = parse_root(&image, &entry, &root)? else {
        return Err(ImageError::NotAnIndex {
            image,
            digest: entry.digest,
        });
    };

    let mut entries = vec![
        LayoutEntry::bytes("oci-layout", LINUXKIT_OCI_LAYOUT.as_bytes().to_vec()),
        LayoutEntry::dir("blobs/"),
        LayoutEntry::dir("blobs/sha256/"),
    ];
    for child in index.manifests.iter().filter(|m| wanted(m, platforms)) {
        let descriptor = child.descriptor();
        let bytes = store
            .read_small_blob(&image, &descriptor.digest)?
            .ok_or_else(|| missing(store, &image, &descriptor.digest))?;
        let manifest = parse_child(&image, &descriptor, &bytes)?;
        let blobs = std::iter::once(manifest.config.descriptor())
            .chain(manifest.layers.iter().map(WireDescriptor::descriptor))
            .chain(std::iter::once(descriptor));
        for blob in blobs {
            entries.push(blob_entry(store, &entry_name, &blob)?);
        }
    }
    let index_descriptor = Descriptor {
        media_type: media_type::OCI_INDEX.to_string(),
        digest: entry.digest.clone(),
        size: root.len() as u64,
    };
    entries.push(blob_entry(store, &entry_name, &index_descriptor)?);
    entries.push(LayoutEntry::bytes(
        "index.json",
        layout_index_json(&index_descriptor, &image).into_bytes(),
    ));
    Ok(entries)
}

/// LinuxKit's platform filter: OS and architecture equal, and the variant equal when one is
/// requested. Entries without a platform (attestations) only go in when no filter is given,
/// and only image manifests are written.
fn wanted(manifest: &WireDescriptor, platforms: &[Platform]) -> bool {
    if !media_type::is_manifest(&manifest.media_type) {
        return false;
    }
    if platforms.is_empty() {
        return true;
    }
    manifest
        .platform()
        .is_some_and(|candidate| platforms.iter().any(|p| p.matches(&candidate)))
}

fn missing(store: &Store, image: &str, digest: &str) -> ImageError {
    ImageError::BlobMissing {
        image: image.to_string(),
        digest: digest.to_string(),
        dir: store.dir().to_path_buf(),
    }
}

fn blob_entry(store: &Store, image: &str, blob: &Descriptor) -> Result<LayoutEntry, ImageError> {
    let hex = super::descriptor::sha256_hex(&blob.digest).ok_or_else(|| ImageError::InvalidDigest {
        digest: blob.digest.clone(),
    })?;
    if !store.has_blob(&blob.digest, blob.size) {
        return Err(missing(store, image, &blob.digest));
    }
    Ok(LayoutEntry::blob(image, blob, hex))
}

/// `index.json` as Go's `json.MarshalIndent(index, "", "   ")` writes LinuxKit's one-entry index.
fn layout_index_json(index: &Descriptor, name: &str) -> String {
    format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": {oci_index},\n   \"manifests\": [\n      {{\n         \"mediaType\": {oci_index},\n         \"size\": {size},\n         \"digest\": {digest},\n         \"annotations\": {{\n            \"org.opencontainers.image.ref.name\": {name}\n         }}\n      }}\n   ]\n}}",
        oci_index = go_json_string(media_type::OCI_INDEX),
        size = index.size,
        digest = go_json_string(&index.digest),
        name = go_json_string(name),
    )
}

/// A JSON string literal escaped as Go's encoding/json escapes it.
fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::gojson::quote(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::tests::{corpus, corpus_dir, reference};
    use crate::image::sha256_digest;

    /// `(name, size, sha256)` of the `ocidata` volume's `lower/` entries in 022-volumes.
    fn expected_listing() -> Vec<(String, u64, String)> {
        let listing = std::fs::read_to_string(corpus_dir().join("expected/022-volumes/listing.tsv"))
            .expect("022-volumes listing");
        let prefix = "containers/volumes/ocidata/lower/";
        listing
            .lines()
            .filter_map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                let name = cols.get(6)?.strip_prefix(prefix)?;
                let size = cols.get(4)?.parse().ok()?;
                assert_eq!(cols[5], "0", "OCI layout entries have mtime 0: {line}");
                let mode = if cols[0] == "d" { "0755" } else { "0644" };
                assert_eq!(cols[1], mode, "{line}");
                Some((name.to_string(), size, cols.get(8).unwrap_or(&"").to_string()))
            })
            .collect()
    }

    fn content_sha256(store: &Store, entry: &LayoutEntry) -> String {
        let mut bytes = Vec::new();
        entry.open(store).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, entry.size, "{}", entry.name);
        sha256_digest(&bytes).trim_start_matches("sha256:").to_string()
    }

    #[test]
    fn matches_linuxkit_volume_listing_byte_for_byte() {
        let store = corpus();
        let r = reference("localhost:5000/conformance/voldata:v1");
        let entries = oci_layout_entries(&store, &r, &[Platform::parse("linux/arm64").unwrap()]).unwrap();
        let expected = expected_listing();
        assert_eq!(entries.len(), expected.len());
        for (entry, (name, size, sha)) in entries.iter().zip(&expected) {
            assert_eq!(&entry.name, name);
            assert_eq!(entry.size, *size, "{name}");
            match entry.kind {
                LayoutEntryKind::Directory => assert!(sha.is_empty()),
                LayoutEntryKind::File => assert_eq!(&content_sha256(&store, entry), sha, "{name}"),
            }
        }
    }

    #[test]
    fn all_platforms_when_none_are_given() {
        let store = corpus();
        let r = reference("localhost:5000/conformance/voldata:v1");
        let all = oci_layout_entries(&store, &r, &[]).unwrap();
        // Header (3) + two platforms × (config, layer, manifest) + index blob + index.json.
        assert_eq!(all.len(), 3 + 2 * 3 + 2);
        let amd = oci_layout_entries(&store, &r, &[Platform::linux("amd64")]).unwrap();
        assert_eq!(amd.len(), 3 + 3 + 2);
        assert_ne!(
            amd[3],
            oci_layout_entries(&store, &r, &[Platform::linux("arm64")]).unwrap()[3]
        );
        let none = oci_layout_entries(&store, &r, &[Platform::linux("s390x")]).unwrap();
        assert_eq!(none.len(), 3 + 2);
    }

    #[test]
    fn single_manifests_are_refused_like_linuxkit() {
        let store = corpus();
        let err = oci_layout_entries(&store, &reference("localhost:5000/conformance/hello:v1"), &[]).unwrap_err();
        assert!(matches!(err, ImageError::NotAnIndex { .. }), "{err}");
        let err = oci_layout_entries(&store, &reference("localhost:5000/conformance/absent:v1"), &[]).unwrap_err();
        assert!(matches!(err, ImageError::NotInCache { .. }), "{err}");
    }
}
