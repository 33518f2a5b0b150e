//! Images made here (by `moby pkg build`) go into the store: blobs first, then the manifest, then
//! the `index.json` entry, so that a build killed half way leaves no entry pointing at nothing.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use serde_json::json;

use super::descriptor::{media_type, sha256_digest, Descriptor};
use super::layout::{BlobOrigin, Store};
use super::ImageError;
use crate::Reference;

/// Media type of a gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A layer written to a file, with its digest and size already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// The compressed layer.
    pub path: PathBuf,
    /// `sha256:` digest of the file.
    pub digest: String,
    /// Size of the file.
    pub size: u64,
}

/// The OCI image manifest of a config and layers, as canonical (sorted-key, compact) JSON.
pub fn manifest_json(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let descriptor = |d: &Descriptor| json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    manifest.to_string().into_bytes()
}

impl Store {
    /// Stores an image made of `config` (an image config blob) and `layers`, and names it
    /// `reference` in `index.json` (its cache name, replacing an entry of that name). Returns the
    /// manifest's descriptor.
    pub fn put_image(
        &self,
        reference: &Reference,
        config: &[u8],
        layers: &[LayerFile],
    ) -> Result<Descriptor, ImageError> {
        let name = reference.cache_name();
        let origin = || BlobOrigin {
            image: name.to_string(),
            source: "a local build".to_string(),
        };
        for layer in layers {
            if self.has_blob(&layer.digest, layer.size) {
                continue;
            }
            let mut file = File::open(&layer.path).map_err(|e| ImageError::io("open layer", &layer.path, e))?;
            let mut writer = self.blob_writer(&layer.digest, Some(layer.size), origin())?;
            io::copy(&mut file, &mut writer).map_err(|e| ImageError::io("read layer", &layer.path, e))?;
            writer.commit()?;
        }
        let config_descriptor = Descriptor {
            media_type: media_type::OCI_CONFIG.to_string(),
            digest: sha256_digest(config),
            size: config.len() as u64,
        };
        self.write_blob_bytes(&config_descriptor.digest, config, origin())?;
        let layer_descriptors: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor {
                media_type: OCI_LAYER_GZIP.to_string(),
                digest: l.digest.clone(),
                size: l.size,
            })
            .collect();
        let manifest = manifest_json(&config_descriptor, &layer_descriptors);
        let descriptor = Descriptor {
            media_type: media_type::OCI_MANIFEST.to_string(),
            digest: sha256_digest(&manifest),
            size: manifest.len() as u64,
        };
        self.write_blob_bytes(&descriptor.digest, &manifest, origin())?;
        self.set_entries(&[(name, descriptor.clone())])?;
        Ok(descriptor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Platform;

    /// An empty store, and a layer file holding `bytes` that claims the digest of `claimed`.
    fn store_and_layer(bytes: &[u8], claimed: &[u8]) -> (tempfile::TempDir, Store, LayerFile) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("cache")).unwrap();
        let path = tmp.path().join("layer.tar.gz");
        std::fs::write(&path, bytes).unwrap();
        let layer = LayerFile {
            path,
            digest: sha256_digest(claimed),
            size: bytes.len() as u64,
        };
        (tmp, store, layer)
    }

    #[test]
    fn a_stored_image_resolves_with_its_config_and_layer() {
        let blob = b"not really a tar, but a blob";
        let (_tmp, store, layer) = store_and_layer(blob, blob);
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let reference = Reference::parse("moby/x:1").unwrap();
        let manifest = store
            .put_image(&reference, config, std::slice::from_ref(&layer))
            .unwrap();
        let resolved = store.resolve(&reference, &Platform::host()).unwrap().expect("stored");
        assert_eq!(resolved.root_digest, manifest.digest);
        assert_eq!(resolved.layers.len(), 1);
        assert_eq!(resolved.layers[0].digest, layer.digest);
        assert_eq!(resolved.config.labels["a"], "b");
        // The same image again: same digest, one entry.
        assert_eq!(store.put_image(&reference, config, &[layer]).unwrap(), manifest);
        assert_eq!(
            store.list().unwrap(),
            [("docker.io/moby/x:1".to_string(), manifest.digest)]
        );
    }

    #[test]
    fn a_config_without_one_diff_id_per_layer_does_not_resolve() {
        let (_tmp, store, layer) = store_and_layer(b"abc", b"abc");
        let reference = Reference::parse("moby/x:1").unwrap();
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        store.put_image(&reference, config, &[layer]).unwrap();
        let err = store.resolve(&reference, &Platform::host()).unwrap_err();
        assert!(
            matches!(err, ImageError::InvalidManifest { what: "config", .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("diff_ids lists 0 layers, but the manifest has 1"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_layer_digest_is_refused_and_nothing_is_named() {
        let (_tmp, store, layer) = store_and_layer(b"abc", b"abd");
        assert!(store
            .put_image(&Reference::parse("moby/x:1").unwrap(), b"{}", &[layer])
            .is_err());
        assert!(store.list().unwrap().is_empty());
    }
}
