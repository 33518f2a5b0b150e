//! The whole build as one call: resolve (and pull) every image a spec names, then assemble the image
//! into a sink. This is what the `moby` CLI and the plugin use.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::assemble::{self, BuildError, EntryVisitor, Images};
use crate::image::{
    self, DamagedBlob, Descriptor, ImageConfigFile, ImageError, LayoutEntry, Platform, PullOptions, ResolvedImage,
    Store,
};
use crate::layer::{self, LayerError, LayerSource};
use crate::progress::{self, Progress};
use crate::spec::model::Moby;
use crate::tar::{EntrySink, Header};
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
    /// Told how the pulls and the writing of the outputs go.
    pub progress: Option<Arc<dyn Progress>>,
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
        stall_timeout: None,
        progress: options.progress.clone(),
    };
    let references = filesystem_references(moby);
    let resolved = image::ensure_images(&store, &references, &pull)?;
    image::ensure_layouts(&store, &oci_volume_references(moby)?, &pull)?;
    let progress = progress::or_silent(&options.progress);
    let images = StoreImages {
        store: &store,
        resolved: references.into_iter().zip(resolved).collect(),
        progress,
    };
    assemble::assemble(moby, &images, &mut CountingSink { sink, progress })
}

/// Tells `progress` how many bytes of file contents pass on to `sink`.
struct CountingSink<'a> {
    sink: &'a mut dyn EntrySink,
    progress: &'a dyn Progress,
}

impl EntrySink for CountingSink<'_> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.sink.write_header(header)
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.write_data(data)?;
        self.progress.build_bytes(data.len() as u64);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.sink.finish()
    }
}

/// [`Images`] backed by the local store, with layers flattened on the fly.
struct StoreImages<'a> {
    store: &'a Store,
    resolved: HashMap<Reference, ResolvedImage>,
    progress: &'a dyn Progress,
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

    /// Why flattening `resolved` failed, blaming a damaged cached blob when that is the cause: its
    /// report travels inside the read error, or, when the damage broke decompression before the
    /// blob's end, reading the blob again finds it.
    fn layer_error(&self, resolved: &ResolvedImage, err: LayerError) -> BuildError {
        if let Some(damage) = DamagedBlob::find(&err) {
            return ImageError::CorruptBlob(damage.clone()).into();
        }
        match err {
            LayerError::Visit { source, .. } => match source.downcast::<BuildError>() {
                Ok(own) => *own,
                Err(other) => BuildError::Write(io::Error::other(other)),
            },
            LayerError::Open { ref digest, .. }
            | LayerError::Tar { ref digest, .. }
            | LayerError::Read { ref digest, .. } => {
                let damage = resolved
                    .layers
                    .iter()
                    .find(|layer| layer.digest == *digest)
                    .and_then(|layer| self.store.verify_blob(&resolved.name, layer).err());
                match damage {
                    Some(damage @ ImageError::CorruptBlob(_)) => damage.into(),
                    _ => err.into(),
                }
            }
            other => other.into(),
        }
    }
}

impl Images for StoreImages<'_> {
    fn config(&self, image: &Reference) -> Result<ImageConfigFile, BuildError> {
        Ok(self.resolved(image)?.config.clone())
    }

    fn walk(&self, image: &Reference, visit: &mut EntryVisitor<'_>) -> Result<(), BuildError> {
        let resolved = self.resolved(image)?;
        self.progress.build_image(&image.to_string());
        let mut layers = Vec::with_capacity(resolved.layers.len());
        // `resolve` checked that there is one diff_id per layer.
        for (descriptor, diff_id) in resolved.layers.iter().zip(&resolved.config.diff_ids) {
            let blob = self.store.open_verified(&resolved.name, descriptor)?;
            let blob = io::BufReader::with_capacity(1 << 20, blob);
            layers.push(LayerSource::new(&descriptor.digest, &descriptor.media_type, blob).with_diff_id(diff_id));
        }
        layer::flatten(layers, &image.to_string(), |header, data| visit(header, data))
            .map_err(|err| self.layer_error(resolved, err))
    }

    fn oci_layout(&self, image: &Reference, platforms: &[String]) -> Result<Vec<LayoutEntry>, BuildError> {
        let platforms = platforms
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(image::oci_layout_entries(self.store, image, &platforms)?)
    }

    fn copy_blob(
        &self,
        image: &str,
        blob: &Descriptor,
        out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), BuildError> {
        let mut blob = self.store.open_verified(image, blob)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = blob.read(&mut buf).map_err(|e| blob.error(e))?;
            if n == 0 {
                return Ok(());
            }
            out(&buf[..n])?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{corpus_copy, LayerFile};
    use crate::spec::Source;
    use crate::tar::TarWriter;

    const HELLO: &str = "localhost:5000/conformance/hello:v1";
    const INIT: &str = "localhost:5000/conformance/init:v1";
    const KERNEL: &str = "localhost:5000/conformance/kernel:6.6.0";

    /// Builds `spec` from the cache `store` into a tar held in memory.
    fn build_tar(store: &Store, spec: &str) -> Result<Vec<u8>, BuildError> {
        build_tar_telling(store, spec, None)
    }

    /// [`build_tar`], telling `progress`.
    fn build_tar_telling(
        store: &Store,
        spec: &str,
        progress: Option<Arc<dyn crate::progress::Progress>>,
    ) -> Result<Vec<u8>, BuildError> {
        let source = Source {
            name: "test.yml".into(),
            text: spec.into(),
        };
        let moby = crate::spec::load(&[source], None).unwrap();
        let options = BuildOptions {
            cache_dir: store.dir().to_path_buf(),
            always_pull: false,
            mirrors: Vec::new(),
            platform: Platform::linux("amd64"),
            docker_config: None,
            progress,
        };
        let mut tar = TarWriter::new(Vec::new());
        build(&moby, &options, &mut tar)?;
        Ok(tar.into_inner())
    }

    #[test]
    fn progress_names_each_image_and_counts_every_byte_written() {
        use crate::progress::tests::{Recorder, Seen};
        let (_tmp, store) = corpus_copy();
        let spec = format!(
            "kernel:\n  image: {KERNEL}\ninit:\n  - {INIT}\nonboot:\n  - name: one\n    image: {HELLO}\nservices:\n  - name: two\n    image: {INIT}\n"
        );
        let recorder = Arc::new(Recorder::default());
        let tar = build_tar_telling(&store, &spec, Some(recorder.clone())).unwrap();

        let seen = recorder.seen();
        let mut images: Vec<&str> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Image(image) => Some(image.as_str()),
                _ => None,
            })
            .collect();
        images.dedup();
        assert_eq!(images, [KERNEL, INIT, HELLO, INIT]);
        // Everything in the cache already: no pull to tell of.
        assert!(!seen.iter().any(|s| matches!(s, Seen::Started(..))), "{seen:?}");
        let written: u64 = seen
            .iter()
            .map(|s| match s {
                Seen::Written(bytes) => *bytes,
                _ => 0,
            })
            .sum();
        let mut reader = crate::tar::TarReader::new(tar.as_slice());
        let mut contents = 0;
        while let Some(header) = reader.next_header().unwrap() {
            contents += header.size;
        }
        assert_eq!(written, contents);
    }

    fn onboot(image: &str) -> String {
        format!("onboot:\n  - name: one\n    image: {image}\n")
    }

    fn resolved(store: &Store, image: &str) -> ResolvedImage {
        let reference = Reference::parse(image).unwrap();
        store.resolve(&reference, &Platform::linux("amd64")).unwrap().unwrap()
    }

    /// Changes byte `at` of `blob` in the cache.
    fn flip(store: &Store, blob: &Descriptor, at: usize) {
        let path = store.blob_path(&blob.digest).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
    }

    fn damage_of(err: BuildError) -> image::DamagedBlob {
        match err {
            BuildError::Image(image) => match *image {
                ImageError::CorruptBlob(damage) => damage,
                other => panic!("expected a damaged blob, got {other}"),
            },
            other => panic!("expected a damaged blob, got {other}"),
        }
    }

    #[test]
    fn a_damaged_layer_fails_the_build_naming_image_and_blob() {
        let (_tmp, store) = corpus_copy();
        build_tar(&store, &onboot(HELLO)).unwrap();
        let layer = resolved(&store, HELLO).layers[0].clone();
        // Byte 9 is gzip's OS field: the layer still decompresses to the same tar, so only the
        // digest shows the change. The middle of the blob breaks decompression itself.
        for at in [9, layer.size as usize / 2] {
            let (_tmp, store) = corpus_copy();
            flip(&store, &layer, at);
            let damage = damage_of(build_tar(&store, &onboot(HELLO)).unwrap_err());
            assert_eq!(
                (damage.image.as_str(), damage.digest.as_str()),
                (HELLO, layer.digest.as_str())
            );
            assert!(damage.removed, "{damage}");
        }
    }

    #[test]
    fn a_damaged_blob_of_an_oci_volume_fails_the_build() {
        let (_tmp, store) = corpus_copy();
        let image = "localhost:5000/conformance/voldata:v1";
        let spec = format!("volumes:\n  - name: v\n    image: {image}\n    format: oci\n");
        build_tar(&store, &spec).unwrap();
        let layer = resolved(&store, image).layers[0].clone();
        flip(&store, &layer, 9);
        let damage = damage_of(build_tar(&store, &spec).unwrap_err());
        assert_eq!(damage.digest, layer.digest);
    }

    #[test]
    fn a_layer_published_truncated_is_named_with_its_image() {
        use std::io::Write as _;
        // A layer holding one file of 64 KiB that does not compress, cut inside that file.
        let data: Vec<u8> = (0..64u32 << 10)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut tar = TarWriter::new(Vec::new());
        let mut header = crate::tar::Header::new("big", crate::tar::EntryKind::Regular, 0o644);
        header.size = data.len() as u64;
        tar.write_header(&header).unwrap();
        tar.write_data(&data).unwrap();
        tar.finish().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar.into_inner()).unwrap();
        let gzip = gzip.finish().unwrap();
        let cut = &gzip[..gzip.len() / 2];

        let (tmp, store) = corpus_copy();
        let path = tmp.path().join("cut.tar.gz");
        std::fs::write(&path, cut).unwrap();
        let layer = LayerFile {
            path,
            digest: image::sha256_digest(cut),
            size: cut.len() as u64,
        };
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let truncated = "example.org/truncated:v1";
        store
            .put_image(
                &Reference::parse(truncated).unwrap(),
                config,
                std::slice::from_ref(&layer),
            )
            .unwrap();
        let err = build_tar(&store, &onboot(truncated)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(&err, BuildError::Layer(_)), "{text}");
        assert!(text.contains(truncated) && text.contains(&layer.digest), "{text}");
    }

    #[test]
    fn a_layer_not_matching_its_diff_id_fails_the_build() {
        let (_tmp, store) = corpus_copy();
        let hello = resolved(&store, HELLO);
        let config_path = store.blob_path(&hello.config_descriptor.digest).unwrap();
        let config = std::fs::read_to_string(config_path).unwrap();
        let wrong = image::sha256_digest(b"not the layer");
        let config = config.replace(&hello.config.diff_ids[0], &wrong);
        let layer = LayerFile {
            path: store.blob_path(&hello.layers[0].digest).unwrap(),
            digest: hello.layers[0].digest.clone(),
            size: hello.layers[0].size,
        };
        let tampered = "example.org/tampered:v1";
        store
            .put_image(&Reference::parse(tampered).unwrap(), config.as_bytes(), &[layer])
            .unwrap();
        let err = build_tar(&store, &onboot(tampered)).unwrap_err();
        let BuildError::Layer(layer_error) = &err else {
            panic!("expected a layer error, got {err}");
        };
        let LayerError::DiffIdMismatch {
            image,
            digest,
            expected,
            ..
        } = &**layer_error
        else {
            panic!("expected a diff_id mismatch, got {err}");
        };
        assert_eq!(
            (image.as_str(), digest, expected),
            (tampered, &hello.layers[0].digest, &wrong)
        );
    }
}
