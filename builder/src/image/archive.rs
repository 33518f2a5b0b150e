//! Export and import of OCI image layout tars (`docker save --format oci`-like archives).

use std::collections::HashSet;
use std::io::{self, Read, Write};

use super::descriptor::{parse_manifest, sha256_hex, Descriptor, Manifest};
use super::layout::{BlobOrigin, IndexEntry, RootIndex, Store, MAX_JSON_BLOB};
use super::{DamagedBlob, ImageError};
use crate::tar::{copy_data, EntryKind, EntrySink, Header, TarReader, TarWriter};

/// `oci-layout` in exported archives.
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

impl Store {
    /// Writes the image named `name` (as [`Store::list`] shows it) as an OCI layout tar: the
    /// `oci-layout` file, every blob it reaches that is cached (platforms of an index that were
    /// never pulled are left out), and an `index.json` naming it. Entries have mtime 0.
    pub fn export(&self, name: &str, out: impl Write) -> Result<(), ImageError> {
        let entry = self.entry_named(name)?.ok_or_else(|| ImageError::NotInCache {
            image: name.to_string(),
            dir: self.dir().to_path_buf(),
        })?;
        let blobs = self.export_blobs(name, &entry.descriptor())?;
        let index = RootIndex::with_entries(vec![IndexEntry::named(name, &entry.descriptor())]);
        let index_json = index.to_json().map_err(|e| ImageError::InvalidLayout {
            dir: self.dir().to_path_buf(),
            reason: format!("cannot serialise index.json: {e}"),
        })?;

        let mut tar = TarWriter::new(out);
        let write_err = |e: io::Error| ImageError::io("write", "the export archive", e);
        append(
            &mut tar,
            "oci-layout",
            &mut OCI_LAYOUT.as_bytes(),
            OCI_LAYOUT.len() as u64,
        )
        .map_err(write_err)?;
        append_dir(&mut tar, "blobs/").map_err(write_err)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(write_err)?;
        for blob in &blobs {
            let hex = sha256_hex(&blob.digest).ok_or_else(|| ImageError::InvalidDigest {
                digest: blob.digest.clone(),
            })?;
            let mut data = self.open_verified(name, blob)?;
            let entry = format!("blobs/sha256/{hex}");
            append(&mut tar, &entry, &mut data, blob.size).map_err(|e| match DamagedBlob::find(&e) {
                Some(damage) => ImageError::CorruptBlob(damage.clone()),
                None => write_err(e),
            })?;
        }
        append(&mut tar, "index.json", &mut &index_json[..], index_json.len() as u64).map_err(write_err)?;
        tar.finish().map_err(write_err)
    }

    /// The blobs to export for a root, children before parents, each once.
    fn export_blobs(&self, image: &str, root: &Descriptor) -> Result<Vec<Descriptor>, ImageError> {
        let missing = |digest: &str| ImageError::BlobMissing {
            image: image.to_string(),
            digest: digest.to_string(),
            dir: self.dir().to_path_buf(),
        };
        let root_bytes = self
            .read_small_blob(image, &root.digest)?
            .ok_or_else(|| missing(&root.digest))?;
        let invalid = |digest: &str, reason: String| ImageError::InvalidManifest {
            what: "manifest",
            image: image.to_string(),
            digest: digest.to_string(),
            reason,
        };
        let mut manifests = Vec::new();
        match parse_manifest(&root_bytes, &root.media_type).map_err(|r| invalid(&root.digest, r))? {
            (_, Manifest::Image(manifest)) => manifests.push((None, manifest)),
            (_, Manifest::Index(index)) => {
                for child in index.image_entries().map(|(_, m)| m.descriptor()) {
                    // Platforms that were never pulled are simply not exported.
                    let Some(bytes) = self.read_small_blob(image, &child.digest)? else {
                        continue;
                    };
                    match parse_manifest(&bytes, &child.media_type).map_err(|r| invalid(&child.digest, r))? {
                        (_, Manifest::Image(manifest)) => manifests.push((Some(child), manifest)),
                        (_, Manifest::Index(_)) => return Err(invalid(&child.digest, "nested index".to_string())),
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        for (descriptor, manifest) in &manifests {
            let parts = std::iter::once(manifest.config.descriptor())
                .chain(manifest.layers.iter().map(|l| l.descriptor()))
                .chain(descriptor.clone());
            for blob in parts {
                if !self.has_blob(&blob.digest, blob.size) {
                    return Err(missing(&blob.digest));
                }
                if seen.insert(blob.digest.clone()) {
                    blobs.push(blob);
                }
            }
        }
        blobs.push(Descriptor {
            size: root_bytes.len() as u64,
            ..root.clone()
        });
        Ok(blobs)
    }

    /// Reads an OCI layout tar: every `blobs/sha256/<hex>` entry is verified against its name
    /// and stored, then every image its `index.json` names (by `org.opencontainers.image.ref.name`)
    /// is added to the cache, replacing entries of the same name. Returns those names.
    pub fn import(&self, archive: impl Read) -> Result<Vec<String>, ImageError> {
        let mut archive = TarReader::new(archive);
        let read_err = |e: &dyn std::fmt::Display| ImageError::InvalidArchive {
            what: "archive".to_string(),
            reason: e.to_string(),
        };
        let mut index_json = None;
        while let Some(header) = archive.next_header().map_err(|e| read_err(&e))? {
            let name = header.name.trim_start_matches("./");
            if header.kind != EntryKind::Regular {
                continue;
            }
            if name == "index.json" {
                let mut bytes = Vec::new();
                (&mut archive)
                    .take(MAX_JSON_BLOB)
                    .read_to_end(&mut bytes)
                    .map_err(|e| read_err(&e))?;
                index_json = Some(bytes);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                self.import_blob(hex, &mut (&mut archive).take(header.size))?;
            }
        }
        let bytes = index_json.ok_or_else(|| ImageError::InvalidArchive {
            what: "archive".to_string(),
            reason: "it has no index.json, so it is not an OCI image layout".to_string(),
        })?;
        let index: RootIndex = serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidArchive {
            what: "index.json".to_string(),
            reason: e.to_string(),
        })?;
        let mut named = Vec::new();
        for entry in &index.manifests {
            let Some(name) = entry.name() else { continue };
            if !self.has_blob(&entry.digest, entry.size) {
                return Err(ImageError::InvalidArchive {
                    what: format!("image {name}"),
                    reason: format!("its blob {} is not in the archive", entry.digest),
                });
            }
            named.push((name.to_string(), entry.descriptor()));
        }
        self.set_entries(&named)?;
        Ok(named.into_iter().map(|(name, _)| name).collect())
    }

    fn import_blob(&self, hex: &str, entry: &mut impl Read) -> Result<(), ImageError> {
        let digest = format!("sha256:{hex}");
        if sha256_hex(&digest).is_none() {
            return Err(ImageError::InvalidArchive {
                what: format!("blobs/sha256/{hex}"),
                reason: "the file name is not a sha256 digest".to_string(),
            });
        }
        let mut writer = self.blob_writer(
            &digest,
            None,
            BlobOrigin {
                image: "(import)".to_string(),
                source: "the imported archive".to_string(),
            },
        )?;
        io::copy(entry, &mut writer).map_err(|e| ImageError::InvalidArchive {
            what: format!("blobs/sha256/{hex}"),
            reason: e.to_string(),
        })?;
        writer.commit()
    }
}

/// Appends a regular file (mode 0644, mtime 0) of `size` bytes read from `data`.
fn append<W: Write>(tar: &mut TarWriter<W>, name: &str, data: &mut dyn Read, size: u64) -> io::Result<()> {
    let mut header = Header::new(name, EntryKind::Regular, 0o644);
    header.mtime = 0;
    header.size = size;
    tar.write_header(&header)?;
    copy_data(tar, size, data)
}

/// Appends a directory (mode 0755, mtime 0).
fn append_dir<W: Write>(tar: &mut TarWriter<W>, name: &str) -> io::Result<()> {
    let mut header = Header::new(name, EntryKind::Directory, 0o755);
    header.mtime = 0;
    tar.write_header(&header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::tests::{corpus, reference};
    use crate::image::Platform;

    fn entry_names(archive: &[u8]) -> Vec<String> {
        let mut tar = TarReader::new(archive);
        let mut names = Vec::new();
        while let Some(header) = tar.next_header().unwrap() {
            names.push(header.name);
        }
        names
    }

    #[test]
    fn exporting_a_damaged_image_fails_naming_the_blob() {
        let (_tmp, store) = crate::image::corpus_copy();
        let name = "localhost:5000/conformance/hello:v1";
        let hello = store
            .resolve(&reference(name), &Platform::linux("amd64"))
            .unwrap()
            .unwrap();
        let path = store.blob_path(&hello.layers[0].digest).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = store.export(name, Vec::new()).unwrap_err();
        let ImageError::CorruptBlob(damage) = &err else {
            panic!("expected a damaged blob, got {err}");
        };
        assert_eq!((damage.image.as_str(), &damage.digest), (name, &hello.layers[0].digest));
    }

    #[test]
    fn export_then_import_round_trips() {
        let source = corpus();
        let name = "localhost:5000/conformance/kernel:6.6.0";
        let mut archive = Vec::new();
        source.export(name, &mut archive).unwrap();
        let names = entry_names(&archive);
        assert_eq!(&names[..3], ["oci-layout", "blobs/", "blobs/sha256/"]);
        assert_eq!(names.last().unwrap(), "index.json");
        // Both platforms: 2 × (config + 3 or more layers... ) — at least config+manifest each, plus the index.
        assert!(names.len() >= 3 + 2 * 3 + 2, "{names:?}");

        let tmp = tempfile::tempdir().unwrap();
        let target = Store::open(tmp.path()).unwrap();
        assert_eq!(target.import(&archive[..]).unwrap(), [name]);
        for arch in ["amd64", "arm64"] {
            let platform = Platform::linux(arch);
            let r = reference(name);
            assert_eq!(
                target.resolve(&r, &platform).unwrap(),
                source.resolve(&r, &platform).unwrap()
            );
        }
        // Exporting is deterministic.
        let mut again = Vec::new();
        target.export(name, &mut again).unwrap();
        assert_eq!(archive, again);
    }

    #[test]
    fn import_rejects_tampered_blobs() {
        let mut archive = Vec::new();
        corpus()
            .export("localhost:5000/conformance/hello:v1", &mut archive)
            .unwrap();
        // Flip a byte inside the first blob's data (the block after its header).
        let mut tar = TarReader::new(&archive[..]);
        let offset = loop {
            let header = tar.next_header().unwrap().expect("a blob entry");
            if header.name.starts_with("blobs/sha256/") && header.size > 0 {
                break tar.offset() as usize;
            }
        };
        archive[offset] ^= 0x20;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let err = store.import(&archive[..]).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn import_needs_an_index() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut empty = TarWriter::new(Vec::new());
        append(
            &mut empty,
            "oci-layout",
            &mut OCI_LAYOUT.as_bytes(),
            OCI_LAYOUT.len() as u64,
        )
        .unwrap();
        empty.finish().unwrap();
        let bytes = empty.into_inner();
        assert!(matches!(
            store.import(&bytes[..]),
            Err(ImageError::InvalidArchive { .. })
        ));
        assert!(matches!(
            corpus().export("no/such:image", Vec::new()),
            Err(ImageError::NotInCache { .. })
        ));
    }
}
