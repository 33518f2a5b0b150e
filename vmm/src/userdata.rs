//! The userdata CD: an ISO 9660 image with Rock Ridge names, volume label `cidata`, holding
//! `user-data` and `meta-data` (cloud-init's NoCloud layout) and `config` (what LinuxKit's
//! `metadata` package reads). Written with `media::iso`; byte-reproducible: every timestamp is the
//! epoch and the layout is sorted. 150 zero sectors end the volume (genisoimage's `-pad`): Linux
//! reads ahead past the end of a CD's data, and on an image that ends right there the I/O errors
//! make probes fail (busybox `findfs LABEL=cidata` did not find an unpadded image).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use media::content::Content;
use media::iso::{Iso, IsoError, DEFAULT_PAD_SECTORS};
use media::tree::{Metadata, Tree};

/// The volume label cloud-init (NoCloud) and LinuxKit's metadata package look for.
pub const VOLUME_LABEL: &str = "cidata";

/// Zero sectors after the last file, counted in the volume.
const TAIL_PADDING_SECTORS: u32 = DEFAULT_PAD_SECTORS;

/// Why the userdata CD could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UserdataError {
    /// A file is over 4 GiB.
    #[error("userdata is too large for the userdata CD: {0}")]
    TooLarge(String),
    /// Writing the image failed.
    #[error("cannot write the userdata CD {path}: {source}")]
    Write {
        /// The ISO file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Writes the userdata CD for an instance to `path` (atomically: a temporary file renamed into place).
pub fn write_userdata_iso(path: &Path, userdata: &[u8], instance_id: &str) -> Result<(), UserdataError> {
    let meta_data = format!("instance-id: {instance_id}\nlocal-hostname: {instance_id}\n");
    let write_err = |source| UserdataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let iso_err = |error: IsoError| match error {
        IsoError::TooLarge { .. } => UserdataError::TooLarge(error.to_string()),
        IsoError::Io { source, .. } => write_err(source),
        other => write_err(io::Error::other(other)),
    };
    let mut tree = Tree::new(0);
    tree.set_root(Metadata::new(0o555, 0));
    for (name, contents) in [
        ("config", userdata),
        ("meta-data", meta_data.as_bytes()),
        ("user-data", userdata),
    ] {
        tree.file(name, Content::Bytes(contents), Metadata::new(0o444, 0))
            .map_err(|e| write_err(io::Error::other(e)))?;
    }
    let mut iso = Iso::new(VOLUME_LABEL, &tree).map_err(iso_err)?;
    iso.set_publisher("MOBY");
    iso.set_pad_sectors(TAIL_PADDING_SECTORS);
    let temporary = path.with_extension("iso.tmp");
    let file = fs::File::create(&temporary).map_err(write_err)?;
    iso.write(&file).map_err(iso_err)?;
    file.sync_all().map_err(write_err)?;
    fs::rename(&temporary, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Bytes per ISO 9660 logical sector.
    const SECTOR: usize = media::iso::SECTOR as usize;

    fn tool(name: &str) -> bool {
        Command::new(name).arg("-version").output().is_ok() || Command::new(name).arg("--help").output().is_ok()
    }

    #[test]
    fn layout_is_reproducible_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.iso"), dir.path().join("b.iso"));
        write_userdata_iso(&a, b"{\"ssh\":{}}\n", "vm1").unwrap();
        write_userdata_iso(&b, b"{\"ssh\":{}}\n", "vm1").unwrap();
        let image = fs::read(&a).unwrap();
        assert_eq!(image, fs::read(&b).unwrap(), "same input, same bytes");
        assert_eq!(image.len() % SECTOR, 0);
        assert_eq!(&image[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&image[16 * SECTOR + 40..16 * SECTOR + 46], b"cidata");
        assert_eq!(
            u32::from_le_bytes(image[16 * SECTOR + 80..16 * SECTOR + 84].try_into().unwrap()) as usize,
            image.len() / SECTOR
        );
        assert!(!dir.path().join("a.iso.tmp").exists());
    }

    #[test]
    fn linux_tools_read_the_label_and_the_rock_ridge_names() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("userdata.iso");
        let userdata = b"#cloud-config\nhostname: test\n";
        write_userdata_iso(&iso, userdata, "vm-7").unwrap();
        let blkid = Command::new("blkid")
            .args(["-o", "value", "-s", "LABEL"])
            .arg(&iso)
            .output()
            .expect("blkid (util-linux) is installed");
        assert_eq!(String::from_utf8_lossy(&blkid.stdout).trim(), "cidata");
        assert!(
            tool("isoinfo"),
            "isoinfo (apt genisoimage) is needed to check Rock Ridge names"
        );
        let listing = Command::new("isoinfo")
            .args(["-R", "-f", "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(names, ["/config", "/meta-data", "/user-data"]);
        for (name, expected) in [
            ("/user-data", &userdata[..]),
            ("/config", &userdata[..]),
            ("/meta-data", b"instance-id: vm-7\nlocal-hostname: vm-7\n"),
        ] {
            let extracted = Command::new("isoinfo")
                .args(["-R", "-x", name, "-i"])
                .arg(&iso)
                .output()
                .unwrap();
            assert_eq!(extracted.stdout, expected, "{name}");
        }
    }

    #[test]
    fn empty_userdata_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("empty.iso");
        write_userdata_iso(&iso, b"", "x").unwrap();
        let image = fs::read(&iso).unwrap();
        let volume = u32::from_le_bytes(image[16 * SECTOR + 80..16 * SECTOR + 84].try_into().unwrap()) as usize;
        assert_eq!(image.len(), volume * SECTOR);
        // System area, descriptors, path tables, the root directory and its Rock Ridge
        // continuation area (22 sectors), one sector of meta-data (the empty files take none), then
        // the padding.
        assert_eq!(volume, 23 + TAIL_PADDING_SECTORS as usize);
        assert!(image[23 * SECTOR..].iter().all(|&b| b == 0));
        let extracted = Command::new("isoinfo")
            .args(["-R", "-x", "/meta-data", "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        assert_eq!(extracted.stdout, b"instance-id: x\nlocal-hostname: x\n");
    }
}
