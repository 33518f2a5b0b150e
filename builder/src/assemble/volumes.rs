//! Volumes: `containers/volumes/<name>/lower` holding the seed image (a filesystem or an OCI layout),
//! plus the `tmp/` and `merged/` mount points init uses for the overlay.

use crate::image::{LayoutContent, LayoutEntryKind};
use crate::spec::model::Volume;
use crate::tar::{EntryKind, EntrySink, Header};

use super::image_tree::{ImageTree, Resolv};
use super::{reference, write_bytes, write_prefix_dirs, BuildError, Images};

/// Writes volume number `index`.
pub(super) fn write_volume(
    index: usize,
    volume: &Volume,
    images: &dyn Images,
    sink: &mut dyn EntrySink,
) -> Result<(), BuildError> {
    tracing::info!("Process volume image: {}", volume.name);
    let location = format!("volume[{index}]");
    let base = format!("containers/volumes/{}", volume.name);
    let lower = format!("{base}/lower/");
    let image = reference(&volume.image);

    match (&image, volume.format.as_str()) {
        (Some(image), "oci") => {
            let source = image.to_string();
            write_prefix_dirs(sink, &lower, &source, &location)?;
            for entry in images.oci_layout(image, &volume.platforms)? {
                let kind = match entry.kind {
                    LayoutEntryKind::Directory => EntryKind::Directory,
                    LayoutEntryKind::File => EntryKind::Regular,
                };
                let mut header =
                    Header::new(format!("{lower}{}", entry.name), kind, entry.mode).with_origin(&source, &location);
                header.mtime = 0;
                header.size = entry.size;
                match &entry.content {
                    LayoutContent::Empty => sink.write_header(&header)?,
                    LayoutContent::Bytes(bytes) => write_bytes(sink, &header, bytes)?,
                    LayoutContent::Blob { image, blob } => {
                        sink.write_header(&header)?;
                        images.copy_blob(image, blob, &mut |chunk| sink.write_data(chunk))?;
                    }
                }
            }
        }
        _ => {
            let tree = ImageTree {
                location: &location,
                prefix: &lower,
                resolv: Resolv::Symlink,
            };
            tree.write(image.as_ref(), images, sink)?;
        }
    }

    for dir in ["tmp/", "merged/"] {
        let header = Header::new(format!("{base}/{dir}"), EntryKind::Directory, 0o755)
            .with_origin("linuxkit.volumes", &location);
        sink.write_header(&header)?;
    }
    Ok(())
}
