//! The build: the image of a resolved spec assembled into a sink, or into the files of several
//! formats at once. This is what the `moby` CLI and the plugin use.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::assemble::{self, BuildError, EntryVisitor, Images};
use crate::image::{
    self, DamagedBlob, Descriptor, ImageConfigFile, ImageError, LayoutEntry, Platform, ResolvedImage, Store,
};
use crate::layer::{self, LayerError, LayerSource};
use crate::output::{Bootloader, Outputs};
use crate::progress::{self, Progress};
use crate::resolve::ResolvedSpec;
use crate::tar::{EntrySink, Header};
use crate::{Error, Reference};

/// Writes the image of `resolved` into `sink`, then finishes the sink.
pub fn build(resolved: &ResolvedSpec, sink: &mut dyn EntrySink) -> Result<(), Error> {
    let progress = progress::or_silent(resolved.progress());
    let images = StoreImages {
        store: resolved.store(),
        resolved: resolved.images(),
        progress,
    };
    assemble::assemble(resolved.spec(), &images, &mut CountingSink { sink, progress })?;
    Ok(())
}

/// Writes the image of `resolved` in every format of `outputs`, from one pass over the images;
/// returns the files written. Each file appears under its final name only once the whole build
/// succeeded, replacing those of an earlier build.
pub fn build_outputs(resolved: &ResolvedSpec, outputs: &Outputs) -> Result<Vec<PathBuf>, Error> {
    let pull = resolved.pull_options();
    outputs.check_arch(&pull.platform.architecture)?;
    let bootloader = match outputs.needs_bootloader() {
        true => Some(Arc::new(Bootloader::load(resolved.store(), pull)?)),
        false => None,
    };
    let mut sink = outputs.open(bootloader)?;
    build(resolved, sink.as_mut())?;
    Ok(outputs.written())
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
    resolved: &'a HashMap<Reference, ResolvedImage>,
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
    use crate::resolve::{resolve, BuildOptions};
    use crate::spec::{HostPaths, Source};
    use crate::tar::TarWriter;
    use std::sync::Arc;

    const HELLO: &str = "localhost:5000/conformance/hello:v1";
    const INIT: &str = "localhost:5000/conformance/init:v1";
    const KERNEL: &str = "localhost:5000/conformance/kernel:6.6.0";

    /// Builds `spec` from the cache `store` into a tar held in memory.
    fn build_tar(store: &Store, spec: &str) -> Result<Vec<u8>, Error> {
        build_tar_telling(store, spec, None)
    }

    /// The options of a build for linux/amd64 from the cache `store`.
    pub(crate) fn options(store: &Store, progress: Option<Arc<dyn Progress>>) -> BuildOptions {
        BuildOptions {
            cache_dir: store.dir().to_path_buf(),
            always_pull: false,
            mirrors: Vec::new(),
            platform: Platform::linux("amd64"),
            docker_config: None,
            progress,
        }
    }

    /// `text` loaded as the spec `test.yml`, its host paths under `base_dir`.
    pub(crate) fn load(text: &str, base_dir: &std::path::Path) -> crate::spec::Spec {
        let source = Source {
            name: "test.yml".into(),
            text: text.into(),
        };
        let paths = HostPaths {
            base_dir: base_dir.to_path_buf(),
            home_dir: None,
        };
        crate::spec::load(&[source], paths, None).unwrap()
    }

    /// [`build_tar`], telling `progress`.
    fn build_tar_telling(store: &Store, spec: &str, progress: Option<Arc<dyn Progress>>) -> Result<Vec<u8>, Error> {
        let spec = load(spec, std::path::Path::new("/nonexistent"));
        let resolved = resolve(&spec, &options(store, progress))?;
        let mut tar = TarWriter::new(Vec::new());
        build(&resolved, &mut tar)?;
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

    /// The digest of the resolution of `text` (host paths under `base_dir`) from `store`.
    fn digest_of(store: &Store, text: &str, base_dir: &std::path::Path) -> String {
        let resolved = resolve(&load(text, base_dir), &options(store, None)).unwrap();
        resolved.digest().to_string()
    }

    #[test]
    fn the_digest_follows_the_meaning_of_the_spec_not_its_writing() {
        let (_tmp, store) = corpus_copy();
        let base = std::path::Path::new("/nonexistent");
        let first = digest_of(&store, &onboot(HELLO), base);
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        assert_eq!(digest_of(&store, &onboot(HELLO), base), first);
        let rewritten = format!("# the same spec\nonboot: [{{name: one, image: \"{HELLO}\"}}]  # one container\n");
        assert_eq!(digest_of(&store, &rewritten, base), first);
        let renamed = format!("onboot:\n  - name: two\n    image: {HELLO}\n");
        assert_ne!(digest_of(&store, &renamed, base), first);
        let mut other = options(&store, None);
        other.platform = Platform::linux("arm64");
        let arm = resolve(&load(&onboot(HELLO), base), &other).unwrap();
        assert_ne!(arm.digest(), first);
    }

    #[test]
    fn the_digest_follows_the_image_a_reference_names() {
        let (_tmp, store) = corpus_copy();
        let base = std::path::Path::new("/nonexistent");
        let first = digest_of(&store, &onboot(HELLO), base);
        // The tag now names another image: same layers, another config.
        let hello = resolved(&store, HELLO);
        let config_path = store.blob_path(&hello.config_descriptor.digest).unwrap();
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(config_path).unwrap()).unwrap();
        config["author"] = "someone else".into();
        let layers: Vec<LayerFile> = hello
            .layers
            .iter()
            .map(|layer| LayerFile {
                path: store.blob_path(&layer.digest).unwrap(),
                digest: layer.digest.clone(),
                size: layer.size,
            })
            .collect();
        let config = serde_json::to_vec(&config).unwrap();
        store
            .put_image(&Reference::parse(HELLO).unwrap(), &config, &layers)
            .unwrap();
        assert_ne!(resolved(&store, HELLO).manifest_digest, hello.manifest_digest);
        assert_ne!(digest_of(&store, &onboot(HELLO), base), first);
    }

    /// A relative `source:` is read under the base directory given when loading, whatever the
    /// process's working directory; the digest covers the file's contents.
    #[test]
    fn relative_sources_are_read_under_the_base_directory() {
        let (_tmp, store) = corpus_copy();
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("moby-base-dir-test");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("motd"), b"from the base directory\n").unwrap();
        assert!(!std::path::Path::new("moby-base-dir-test/motd").exists());
        let text = "files:\n  - path: etc/motd\n    source: moby-base-dir-test/motd\n";
        let resolved = resolve(&load(text, base.path()), &options(&store, None)).unwrap();
        let mut tar = TarWriter::new(Vec::new());
        build(&resolved, &mut tar).unwrap();
        let tar = tar.into_inner();
        let mut reader = crate::tar::TarReader::new(tar.as_slice());
        let mut motd = String::new();
        while let Some(header) = reader.next_header().unwrap() {
            if header.name == "etc/motd" {
                reader.read_to_string(&mut motd).unwrap();
            }
        }
        assert_eq!(motd, "from the base directory\n");

        std::fs::write(dir.join("motd"), b"changed\n").unwrap();
        assert_ne!(digest_of(&store, text, base.path()), resolved.digest());
        std::fs::remove_file(dir.join("motd")).unwrap();
        let err = resolve(&load(text, base.path()), &options(&store, None)).unwrap_err();
        let expected = format!("files[0] (etc/motd): cannot read source {}", dir.join("motd").display());
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn several_formats_are_built_into_a_directory_in_one_call() {
        let (_tmp, store) = corpus_copy();
        let out = tempfile::tempdir().unwrap();
        let text = format!("kernel:\n  image: {KERNEL}\n  cmdline: console=ttyS0\ninit:\n  - {INIT}\n");
        let resolved = resolve(&load(&text, out.path()), &options(&store, None)).unwrap();
        let dir = out.path().join("images");
        let outputs = Outputs::in_dir(&dir, "img", &[crate::Format::Tar, crate::Format::KernelInitrd]).unwrap();
        let written = build_outputs(&resolved, &outputs).unwrap();
        let expected = ["img.tar", "img-kernel", "img-initrd.img", "img-cmdline"].map(|name| dir.join(name));
        assert_eq!(written, expected);
        let mut tar = TarWriter::new(Vec::new());
        build(&resolved, &mut tar).unwrap();
        assert_eq!(std::fs::read(dir.join("img.tar")).unwrap(), tar.into_inner());
        assert_eq!(
            std::fs::read_to_string(dir.join("img-cmdline")).unwrap(),
            "console=ttyS0"
        );
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

    fn damage_of(err: Error) -> image::DamagedBlob {
        match err.damaged_blob() {
            Some(damage) => damage.clone(),
            None => panic!("expected a damaged blob, got {err}"),
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
        assert!(matches!(err.build_error(), Some(BuildError::Layer(_))), "{text}");
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
        let Some(BuildError::Layer(layer_error)) = err.build_error() else {
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
