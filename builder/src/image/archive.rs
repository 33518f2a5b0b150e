//! Export and import of OCI image layout tars (`docker save --format oci`-like archives).

use std::collections::HashSet;
use std::io::{self, Read, Write};

use super::descriptor::{parse_manifest, sha256_hex, Descriptor, Manifest};
use super::layout::{BlobOrigin, IndexEntry, RootIndex, Store, MAX_JSON_BLOB};
use super::ImageError;

/// `oci-layout` in exported archives.
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

impl Store {
    /// Writes the image named `name` (as [`Store::list`] shows it) as an OCI layout tar: the
    /// `oci-layout` file, every blob it reaches that is cached (platforms of an index that were
    /// never pulled are left out), and an `index.json` naming it. Entries have mtime 0.
    pub fn export(&self, name: &str, out: impl Write) -> Result<(), ImageError> {
        let entry = self
            .entry_named(name)?
            .ok_or_else(|| ImageError::NotInCache {
                image: name.to_string(),
                dir: self.dir().to_path_buf(),
            })?;
        let blobs = self.export_blobs(name, &entry.descriptor())?;
        let index = RootIndex::with_entries(vec![IndexEntry::named(name, &entry.descriptor())]);
        let index_json = index.to_json().map_err(|e| ImageError::InvalidLayout {
            dir: self.dir().to_path_buf(),
            reason: format!("cannot serialise index.json: {e}"),
        })?;

        let mut tar = tar::Builder::new(out);
        let write_err = |e: io::Error| ImageError::io("write", "the export archive", e);
        append(&mut tar, "oci-layout", OCI_LAYOUT.as_bytes()).map_err(write_err)?;
        append_dir(&mut tar, "blobs/").map_err(write_err)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(write_err)?;
        for blob in &blobs {
            let hex = sha256_hex(&blob.digest).ok_or_else(|| ImageError::InvalidDigest {
                digest: blob.digest.clone(),
            })?;
            let file = self.open_blob(&blob.digest)?;
            let mut header = file_header(blob.size);
            tar.append_data(
                &mut header,
                format!("blobs/sha256/{hex}"),
                file.take(blob.size),
            )
            .map_err(write_err)?;
        }
        append(&mut tar, "index.json", &index_json).map_err(write_err)?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(write_err)
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
                    match parse_manifest(&bytes, &child.media_type)
                        .map_err(|r| invalid(&child.digest, r))?
                    {
                        (_, Manifest::Image(manifest)) => manifests.push((Some(child), manifest)),
                        (_, Manifest::Index(_)) => {
                            return Err(invalid(&child.digest, "nested index".to_string()))
                        }
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
        let mut archive = tar::Archive::new(archive);
        let read_err = |e: io::Error| ImageError::InvalidArchive {
            what: "archive".to_string(),
            reason: e.to_string(),
        };
        let mut index_json = None;
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let path = entry
                .path()
                .map_err(read_err)?
                .to_string_lossy()
                .into_owned();
            let name = path.trim_start_matches("./");
            if name == "index.json" {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MAX_JSON_BLOB)
                    .read_to_end(&mut bytes)
                    .map_err(read_err)?;
                index_json = Some(bytes);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                self.import_blob(hex, &mut entry)?;
            }
        }
        let bytes = index_json.ok_or_else(|| ImageError::InvalidArchive {
            what: "archive".to_string(),
            reason: "it has no index.json, so it is not an OCI image layout".to_string(),
        })?;
        let index: RootIndex =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidArchive {
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

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(0);
    tar.append_data(&mut header, name, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::tests::{corpus, reference};
    use crate::image::Platform;

    fn entry_names(archive: &[u8]) -> Vec<String> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
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
        let mut tar = tar::Archive::new(&archive[..]);
        let offset = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| {
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("blobs/sha256/")
                    && e.size() > 0
            })
            .map(|e| e.raw_file_position())
            .unwrap() as usize;
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
        let mut empty = tar::Builder::new(Vec::new());
        append(&mut empty, "oci-layout", OCI_LAYOUT.as_bytes()).unwrap();
        let bytes = empty.into_inner().unwrap();
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
