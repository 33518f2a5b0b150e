//! Pushing a GCE image: the `NAME.img.tar.gz` is checked here first, uploaded to Cloud Storage
//! and imported with `images.insert`; a push that fails leaves neither the upload nor an image
//! behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::{json, Value};

use super::compute::Compute;
use super::config::check_name;
use super::error::GcpError;
use super::storage::Storage;
use super::tags::CREATED_BY;
use crate::unpack::GCE_DISK;

/// GCE imports disks that are a whole number of GiB.
const GIB: u64 = 1 << 30;
/// The licence that lets an image's instances run nested VMs.
const NESTED_VIRT_LICENCE: &str = "projects/vm-options/global/licenses/enable-vmx";
/// The archive suffix LinuxKit and moby give GCE images.
pub const ARCHIVE_SUFFIX: &str = ".img.tar.gz";

/// What to push, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// The image name (and the object's, with [`ARCHIVE_SUFFIX`]).
    pub name: String,
    /// The bucket the archive is uploaded to.
    pub bucket: String,
    /// The image family.
    pub family: Option<String>,
    /// Let instances of the image run nested VMs (the `enable-vmx` licence).
    pub nested_virt: bool,
    /// Mark the image as booting with UEFI (`UEFI_COMPATIBLE`).
    pub uefi: bool,
    /// Replace an image of that name; else one that exists is an error.
    pub replace: bool,
    /// Labels for the image, besides `created-by=moby`, which every image moby pushes carries.
    pub labels: BTreeMap<String, String>,
}

/// The image name LinuxKit gives an archive: its file name without `.img.tar.gz`.
pub fn default_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    Some(file.strip_suffix(ARCHIVE_SUFFIX).unwrap_or(file).to_string())
}

/// Checks that `path` is what GCE imports: a gzip-compressed tar whose only member is
/// `disk.raw`, a whole number of GiB, with a boot sector. Every byte is read (gzip's checksum
/// included), so a damaged archive is found here rather than by GCE after the upload.
pub fn check_archive(path: &Path) -> Result<u64, GcpError> {
    let not_an_image = |why: String| GcpError::NotAnImage {
        path: path.to_path_buf(),
        why,
    };
    let io = |doing, source| GcpError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|e| io("open", e))?;
    let mut magic = [0u8; 2];
    file.read_exact_at(&mut magic, 0)
        .map_err(|_| not_an_image("it is not gzip-compressed (a GCE image is a .tar.gz)".into()))?;
    if magic != [0x1f, 0x8b] {
        return Err(not_an_image(
            "it is not gzip-compressed (a GCE image is a .tar.gz)".into(),
        ));
    }
    let mut gunzip = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let scratch = tempfile::tempfile().map_err(|e| io("create a scratch file for", e))?;
    let size = media::sparse_tar::extract(&mut gunzip, GCE_DISK, &scratch).map_err(|e| not_an_image(e.to_string()))?;
    // Only the end-of-archive blocks may follow: GCE refuses archives with other members.
    let mut rest = [0u8; 64 << 10];
    loop {
        let n = gunzip
            .read(&mut rest)
            .map_err(|e| not_an_image(format!("cannot read the tar archive: {e}")))?;
        if n == 0 {
            break;
        }
        if rest[..n].iter().any(|&b| b != 0) {
            return Err(not_an_image("the archive holds more than disk.raw".into()));
        }
    }
    if size == 0 || !size.is_multiple_of(GIB) {
        return Err(not_an_image(format!(
            "disk.raw is {size} bytes; GCE imports disks of a whole number of GiB"
        )));
    }
    let mut sector = [0u8; 512];
    scratch
        .read_exact_at(&mut sector, 0)
        .map_err(|e| io("read the disk of", e))?;
    if sector[510..] != [0x55, 0xaa] {
        return Err(not_an_image("disk.raw has no boot sector (no 0x55AA signature)".into()));
    }
    Ok(size)
}

/// Pushes the archive at `path` as the image `options.name`: checked (on a blocking thread),
/// uploaded (with `progress(sent, total)`), imported, waited for. When anything fails after the upload, the
/// uploaded object (and an image left failed) is removed.
pub async fn push(
    compute: &Compute,
    storage: &Storage,
    path: &Path,
    options: &PushOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), GcpError> {
    check_name("the image name", &options.name)?;
    if let Some(family) = &options.family {
        check_name("the image family", family)?;
    }
    // Reading the whole archive is long work: off the async threads.
    let archive = path.to_path_buf();
    tokio::task::spawn_blocking(move || check_archive(&archive))
        .await
        .map_err(|e| GcpError::NotAnImage {
            path: path.to_path_buf(),
            why: format!("the check stopped: {e}"),
        })??;
    if !options.replace {
        if let Some(image) = compute.image(&options.name).await? {
            return Err(GcpError::ImageExists {
                name: image.name,
                project: compute.location().project.clone(),
            });
        }
    }
    let object = format!("{}{ARCHIVE_SUFFIX}", options.name);
    storage.upload(path, &options.bucket, &object, progress).await?;
    let imported = import(compute, &object, options).await;
    if let Err(e) = &imported {
        tracing::info!("the import failed ({e}); removing gs://{}/{object}", options.bucket);
        if let Err(cleanup) = storage.delete(&options.bucket, &object).await {
            tracing::warn!("cannot remove gs://{}/{object}: {cleanup}", options.bucket);
        }
    }
    imported
}

async fn import(compute: &Compute, object: &str, options: &PushOptions) -> Result<(), GcpError> {
    if options.replace && compute.delete_image(&options.name).await? {
        tracing::info!("replaced the image {}", options.name);
    }
    let body = image_resource(object, options);
    let inserted = compute.insert_image(body).await;
    if inserted.is_err() {
        // A failed import may leave an image in FAILED state behind.
        if let Ok(Some(image)) = compute.image(&options.name).await {
            if image.status != "READY" {
                let _ = compute.delete_image(&options.name).await;
            }
        }
    }
    inserted
}

/// The Image resource `images.insert` is given.
fn image_resource(object: &str, options: &PushOptions) -> Value {
    let mut image = json!({
        "name": options.name,
        "rawDisk": { "source": format!("https://storage.googleapis.com/{}/{object}", options.bucket) },
    });
    if let Some(family) = &options.family {
        image["family"] = json!(family);
    }
    if options.nested_virt {
        image["licenses"] = json!([NESTED_VIRT_LICENCE]);
    }
    if options.uefi {
        image["guestOsFeatures"] = json!([{ "type": "UEFI_COMPATIBLE" }]);
    }
    let mut labels = options.labels.clone();
    labels.insert(CREATED_BY.0.to_string(), CREATED_BY.1.to_string());
    image["labels"] = json!(labels);
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(dir: &Path, member: &str, size: u64, boot: bool) -> std::path::PathBuf {
        let raw = dir.join("raw");
        let file = File::create(&raw).unwrap();
        file.set_len(size).unwrap();
        if boot {
            file.write_all_at(&[0x55, 0xaa], 510).unwrap();
        }
        let path = dir.join(format!("{member}.img.tar.gz"));
        let mut gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        let member_info = media::sparse_tar::Member {
            name: member,
            mtime: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: "",
            gname: "",
        };
        media::sparse_tar::write(&File::open(&raw).unwrap(), &member_info, &mut gz).unwrap();
        gz.finish().unwrap().flush().unwrap();
        path
    }

    #[test]
    fn only_a_gzipped_disk_raw_of_whole_gib_with_a_boot_sector_is_an_image() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_archive(&archive(dir.path(), "disk.raw", GIB, true)).unwrap(), GIB);
        let why = |path: std::path::PathBuf| check_archive(&path).unwrap_err().to_string();
        assert!(why(archive(dir.path(), "disk.raw", GIB, false)).contains("no boot sector"));
        assert!(why(archive(dir.path(), "disk.raw", GIB + 512, true)).contains("whole number of GiB"));
        assert!(why(archive(dir.path(), "other", GIB, true)).contains("no member \"disk.raw\""));
        let plain = dir.path().join("plain.img.tar.gz");
        std::fs::write(&plain, b"not gzip").unwrap();
        assert!(why(plain).contains("not gzip-compressed"));
    }

    #[test]
    fn the_image_resource_carries_what_was_asked() {
        let options = PushOptions {
            name: "web".into(),
            bucket: "b".into(),
            family: Some("moby".into()),
            nested_virt: true,
            uefi: true,
            ..PushOptions::default()
        };
        let image = image_resource("web.img.tar.gz", &options);
        assert_eq!(
            image["rawDisk"]["source"],
            "https://storage.googleapis.com/b/web.img.tar.gz"
        );
        assert_eq!(image["licenses"][0], NESTED_VIRT_LICENCE);
        assert_eq!(image["guestOsFeatures"][0]["type"], "UEFI_COMPATIBLE");
        assert_eq!(image["family"], "moby");
        assert_eq!(image["labels"]["created-by"], "moby");
        assert_eq!(default_name(Path::new("out/web.img.tar.gz")).as_deref(), Some("web"));
    }
}
