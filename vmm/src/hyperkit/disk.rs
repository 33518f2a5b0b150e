//! Raw disks for hyperkit: disk specs resolved with LinuxKit's hyperkit rules, and created sparse or
//! grown with `File::set_len` as the hyperkit library does (no qemu-img needed).
//!
//! Rules: a disk with a size and no path is `STATE/disk.raw`, `STATE/disk1.raw`, ... (LinuxKit's
//! hyperkit names); only raw images are accepted (`format=raw`, or a path that is not `.qcow2`,
//! `.vhd` or `.vmdk`); an existing disk smaller than its size is grown, never shrunk.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::HyperkitError;
use crate::machine::{DiskFormat, DiskSpec};

/// MiB in bytes.
const MIB: u64 = 1024 * 1024;

/// Growth step in MiB: APFS refuses to grow a sparse file by too much at once, so the hyperkit
/// library grows disks 1000 MiB at a time.
const GROW_STEP_MIB: u64 = 1000;

/// The emulated controller of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskDriver {
    /// `ahci-hd`: supports TRIM on raw files (the library's choice for data disks).
    AhciHd,
    /// `virtio-blk`: no TRIM; used for the squashfs root so it is `/dev/vda`.
    VirtioBlk,
}

impl DiskDriver {
    /// hyperkit's device name.
    pub fn hyperkit_name(self) -> &'static str {
        match self {
            DiskDriver::AhciHd => "ahci-hd",
            DiskDriver::VirtioBlk => "virtio-blk",
        }
    }
}

/// A raw disk image attached to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDisk {
    /// The image file.
    pub path: PathBuf,
    /// The size to create or grow it to, in MiB.
    pub size_mib: Option<u64>,
    /// The controller.
    pub driver: DiskDriver,
}

/// Applies LinuxKit's hyperkit rules to the disk specs (see the module doc).
pub fn resolve_raw_disks(specs: &[DiskSpec], state_dir: &Path) -> Result<Vec<RawDisk>, HyperkitError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let path = match (&spec.path, spec.size_mib) {
                (Some(p), _) if !p.as_os_str().is_empty() => p.clone(),
                (_, Some(_)) => match i {
                    0 => state_dir.join("disk.raw"),
                    n => state_dir.join(format!("disk{n}.raw")),
                },
                _ => return Err(HyperkitError::DiskEmpty),
            };
            match spec.format.or_else(|| DiskFormat::from_extension(&path)) {
                None | Some(DiskFormat::Raw) => {}
                Some(other) => {
                    return Err(HyperkitError::DiskFormat {
                        path,
                        format: other.to_string(),
                    })
                }
            }
            Ok(RawDisk {
                path,
                size_mib: spec.size_mib,
                driver: DiskDriver::AhciHd,
            })
        })
        .collect()
}

/// What [`ensure_raw_disk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskAction {
    /// The disk existed and was big enough (or had no size).
    Kept,
    /// The disk was created (sparse) with its size.
    Created,
    /// The disk existed and was grown from this many MiB.
    Grown {
        /// Its size before, in MiB.
        from_mib: u64,
    },
    /// The disk is bigger than its size and was left alone (shrinking would lose data).
    NotShrunk {
        /// Its current size, in MiB.
        current_mib: u64,
    },
}

/// Creates `disk` if it does not exist (a sparse file of its size) or grows it to its size.
pub fn ensure_raw_disk(disk: &RawDisk) -> Result<DiskAction, HyperkitError> {
    let io = |doing, source| HyperkitError::DiskIo {
        doing,
        path: disk.path.clone(),
        source,
    };
    let (file, current_mib, created) = match std::fs::metadata(&disk.path) {
        Ok(meta) => {
            let Some(size) = disk.size_mib else {
                return Ok(DiskAction::Kept);
            };
            let current = meta.len() / MIB;
            if current >= size {
                return Ok(match current > size {
                    true => DiskAction::NotShrunk { current_mib: current },
                    false => DiskAction::Kept,
                });
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&disk.path)
                .map_err(|e| io("open", e))?;
            (file, current, false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if disk.size_mib.is_none() {
                return Err(HyperkitError::DiskMissingNoSize(disk.path.clone()));
            }
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&disk.path)
                .map_err(|e| io("create", e))?;
            (file, 0, true)
        }
        Err(e) => return Err(io("check", e)),
    };
    let target = disk.size_mib.unwrap_or(0);
    let mut size = current_mib;
    while size < target {
        size = (size + GROW_STEP_MIB).min(target);
        file.set_len(size * MIB).map_err(|e| io("resize", e))?;
    }
    Ok(match created {
        true => DiskAction::Created,
        false => DiskAction::Grown { from_mib: current_mib },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(values: &[&str]) -> Vec<DiskSpec> {
        values.iter().map(|v| v.parse().unwrap()).collect()
    }

    #[test]
    fn resolves_like_linuxkit_hyperkit() {
        let d = resolve_raw_disks(
            &specs(&["size=1G", "size=512M", "data.img", "file=x.bin,format=raw"]),
            Path::new("/st"),
        )
        .unwrap();
        assert_eq!(
            d[0],
            RawDisk {
                path: "/st/disk.raw".into(),
                size_mib: Some(1024),
                driver: DiskDriver::AhciHd
            }
        );
        assert_eq!(d[1].path, Path::new("/st/disk1.raw"));
        assert_eq!(d[1].size_mib, Some(512));
        assert_eq!(d[2].path, Path::new("data.img"));
        assert_eq!(d[2].size_mib, None);
        assert_eq!(d[3].path, Path::new("x.bin"));
    }

    #[test]
    fn other_formats_are_refused_with_a_way_out() {
        let e = resolve_raw_disks(&specs(&["d.qcow2"]), Path::new("/st")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk d.qcow2: hyperkit runs raw disk images only, not qcow2: convert it \
             (qemu-img convert -O raw d.qcow2 DISK.raw) or run the image under qemu"
        );
        let e = resolve_raw_disks(&specs(&["size=1G,format=vmdk"]), Path::new("/st")).unwrap_err();
        assert!(
            matches!(e, HyperkitError::DiskFormat { ref format, .. } if format == "vmdk"),
            "{e}"
        );
        let e = resolve_raw_disks(&specs(&["x.vhd"]), Path::new("/st")).unwrap_err();
        assert!(e.to_string().contains("not vpc"), "{e}");
    }

    #[test]
    fn creates_sparse_and_grows_never_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = RawDisk {
            path: dir.path().join("disk.raw"),
            size_mib: Some(2500),
            driver: DiskDriver::AhciHd,
        };
        assert_eq!(ensure_raw_disk(&disk).unwrap(), DiskAction::Created);
        let meta = std::fs::metadata(&disk.path).unwrap();
        assert_eq!(meta.len(), 2500 * MIB);
        let blocks = std::os::unix::fs::MetadataExt::blocks(&meta);
        assert!(blocks * 512 < MIB, "sparse: {blocks} blocks allocated");
        assert_eq!(ensure_raw_disk(&disk).unwrap(), DiskAction::Kept);
        disk.size_mib = Some(4000);
        assert_eq!(ensure_raw_disk(&disk).unwrap(), DiskAction::Grown { from_mib: 2500 });
        assert_eq!(std::fs::metadata(&disk.path).unwrap().len(), 4000 * MIB);
        disk.size_mib = Some(10);
        assert_eq!(
            ensure_raw_disk(&disk).unwrap(),
            DiskAction::NotShrunk { current_mib: 4000 }
        );
        assert_eq!(std::fs::metadata(&disk.path).unwrap().len(), 4000 * MIB);
        disk.size_mib = None;
        assert_eq!(ensure_raw_disk(&disk).unwrap(), DiskAction::Kept);
    }

    #[test]
    fn missing_disk_without_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.raw");
        let e = ensure_raw_disk(&RawDisk {
            path: path.clone(),
            size_mib: None,
            driver: DiskDriver::AhciHd,
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("disk {0} does not exist: give it a size to create it", path.display())
        );
    }
}
