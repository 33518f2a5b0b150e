//! Container bundles: `containers/<section>/<name>/` with the image's root filesystem (`lower/` for an
//! overlay, or `rootfs/` when read-only), `config.json` and `runtime.json`.

use std::collections::HashMap;

use crate::oci_config::{self, IdMap, ImageDefaults, Volumes};
use crate::spec::model::{Image, Moby};
use crate::tar::{EntryKind, EntrySink, Header};
use crate::Reference;

use super::image_tree::{ImageTree, Resolv};
use super::{write_bytes, write_prefix_dirs, BuildError, Images};

/// The label holding an image's default container settings.
const CONFIG_LABEL: &str = "org.mobyproject.config";

/// Writes bundles, extracting each image (by exact reference string) only once: later containers
/// using the same image point their rootfs mount at the first copy.
pub(super) struct Bundles<'a> {
    ids: &'a IdMap,
    volumes: &'a Volumes,
    extracted: HashMap<String, String>,
}

impl<'a> Bundles<'a> {
    pub fn new(_moby: &'a Moby, ids: &'a IdMap, volumes: &'a Volumes) -> Bundles<'a> {
        Bundles {
            ids,
            volumes,
            extracted: HashMap::new(),
        }
    }

    /// Writes the bundle of entry `index` of `section` (`onboot`, `onshutdown` or `services`).
    pub fn write(
        &mut self,
        section: &str,
        index: usize,
        entry: &Image,
        images: &dyn Images,
        sink: &mut dyn EntrySink,
    ) -> Result<(), BuildError> {
        tracing::info!("  Create OCI config for {}", entry.image);
        let location = format!("{section}[{index}]");
        let Some(image) = super::reference(&entry.image) else {
            // The spec loader rejects entries without an image; nothing to write.
            return Ok(());
        };
        let source = image.to_string();
        let bundle = self.generate(&location, entry, &image, images)?;

        let order = if section == "services" {
            String::new()
        } else {
            format!("{index:03}-")
        };
        let dir = format!("containers/{section}/{order}{}", entry.name);
        let own_root = format!("{dir}/{}", if bundle.readonly { "rootfs" } else { "lower" });
        let (root, reused) = match self.extracted.get(&source) {
            Some(first) => (first.clone(), true),
            None => {
                let tree = ImageTree {
                    location: &location,
                    prefix: &format!("{own_root}/"),
                    resolv: Resolv::File,
                };
                tree.write(Some(&image), images, sink)?;
                self.extracted.insert(source.clone(), own_root.clone());
                (own_root, false)
            }
        };
        if reused {
            write_prefix_dirs(sink, &format!("{dir}/"), &source, &location)?;
        }

        let file = |name: &str, bytes: &[u8]| {
            let mut h = Header::new(format!("{dir}/{name}"), EntryKind::Regular, 0o644).with_origin(&source, &location);
            h.size = bytes.len() as u64;
            h
        };
        let dir_entry = |name: &str| {
            Header::new(format!("{dir}/{name}"), EntryKind::Directory, 0o755).with_origin(&source, &location)
        };

        write_bytes(sink, &file("config.json", &bundle.config_json), &bundle.config_json)?;
        if !bundle.readonly {
            sink.write_header(&dir_entry("tmp"))?;
            sink.write_header(&dir_entry("rootfs"))?;
        } else if reused {
            sink.write_header(&dir_entry("rootfs"))?;
        }
        let mounts = oci_config::rootfs_mounts(&dir, &root, bundle.readonly);
        let runtime_json = oci_config::runtime_json(&bundle.runtime, mounts)
            .map_err(|source| oci_config_error(&location, entry, source))?;
        write_bytes(sink, &file("runtime.json", &runtime_json), &runtime_json)?;
        Ok(())
    }

    /// Generates config.json and the runtime config from the entry, the image's label and its config.
    fn generate(
        &self,
        location: &str,
        entry: &Image,
        image: &Reference,
        images: &dyn Images,
    ) -> Result<oci_config::Bundle, BuildError> {
        let config = images.config(image)?;
        let label = match config.labels.get(CONFIG_LABEL).filter(|text| !text.is_empty()) {
            Some(text) => Some(crate::spec::parse_label(text).map_err(|errors| BuildError::Label {
                image: image.to_string(),
                errors,
            })?),
            None => None,
        };
        let defaults = ImageDefaults {
            entrypoint: Some(&config.entrypoint),
            cmd: Some(&config.cmd),
            env: Some(&config.env),
            working_dir: &config.working_dir,
        };
        oci_config::generate(entry, label.as_ref(), &defaults, self.ids, self.volumes)
            .map_err(|source| oci_config_error(location, entry, source))
    }
}

/// `source`, about the container `entry` at `location` (e.g. `onboot[2]`).
fn oci_config_error(location: &str, entry: &Image, source: oci_config::OciConfigError) -> BuildError {
    BuildError::OciConfig {
        location: location.to_string(),
        image: entry.image.clone(),
        source: Box::new(source),
    }
}
