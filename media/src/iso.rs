//! ISO 9660 images with Rock Ridge, El Torito (BIOS and EFI) and an isohybrid MBR.
//!
//! An [`Iso`] is a [`Tree`] (files, directories, symlinks, device nodes, fifos, hard links: of
//! regular files only) with a volume id and boot options; file contents are [`Content`]s:
//! nothing is held in memory but the tree itself. [`Iso::write`] lays it out deterministically
//! and writes it into a file with positioned writes; what it does not write (the system area of
//! a plain ISO, the tail padding) stays a hole. It returns the [`Layout`]: where each file landed.
//!
//! What is written:
//! - ISO 9660 names of up to 31 characters (genisoimage's `-l`): upper case, `[A-Z0-9_]`, files as
//!   `NAME.EXT;1`, clashes resolved with a numeric suffix. Readers without Rock Ridge (isolinux on a
//!   disc without it, firmware) see these; isolinux maps them back to lower case.
//! - Rock Ridge (RRIP 1991A, announced by SUSP `SP`/`ER` in the root's `.` record): `NM` real names,
//!   `PX` mode/links/owner, `TF` times, `SL` symlinks, `PN` devices; `CE` continuation areas when a
//!   record's 255 bytes are not enough (long names and symlink targets).
//! - No Joliet tree: Linux, isolinux and firmware do not need it.
//! - Directories deeper than ISO 9660's eight levels are kept where they are (like `mkisofs -D`),
//!   not relocated: Linux, isolinux and xorriso read them.
//! - El Torito: a BIOS no-emulation entry (optionally with a boot info table patched into the boot
//!   file, as `-boot-info-table` does) and/or an EFI entry (platform 0xEF) for a FAT image. The EFI
//!   entry's load size is the image size in 512-byte sectors, or 0 when that does not fit 16 bits
//!   (xorriso's choice; OVMF then takes the boot image to extend to the end of the volume).
//! - An isohybrid MBR (syslinux's `isohdpfx.bin` boot code, the boot file's LBA, a disk signature,
//!   one active partition from sector 0 covering the image, the image padded to whole 1 MiB
//!   cylinders), optionally with a second partition of type 0xEF over the EFI image, as
//!   `isohybrid -u` writes it (without its GPT). OVMF needs none of it to boot the EFI entry from
//!   a disk: edk2's partition driver reads El Torito on any disk whose sector size divides 2048
//!   (checked under qemu: no MBR, the 0x17 MBR, and 0x00 + 0xEF all boot); the 0xEF partition is
//!   for firmware that only reads partition tables.
//! - `pad_sectors` zero sectors at the end, counted in the volume (genisoimage's `-pad`: 150):
//!   Linux reads ahead past the end of the data.

use std::fs::File;
use std::io;

use crate::content::Content;
use crate::tree::{Tree, TreeError};

mod eltorito;
mod layout;
mod rrip;
#[cfg(test)]
mod tests;

/// Bytes in an ISO 9660 logical sector.
pub const SECTOR: u64 = 2048;

/// Zero sectors appended by default, as genisoimage's `-pad` does.
pub const DEFAULT_PAD_SECTORS: u32 = 150;

/// Why an ISO image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// The boot catalog's path cannot be placed in the tree.
    #[error("boot catalog: {0}")]
    Tree(#[from] TreeError),
    /// A path that must name a regular file in the tree (a boot file, a hard link's target) does not.
    #[error("{role} {path:?} is not a regular file in the ISO image: add it with Tree::file first")]
    NotAFile {
        /// What the path was given as.
        role: &'static str,
        /// The path.
        path: String,
    },
    /// The volume identifier is not up to 32 printable ASCII characters.
    #[error("volume id {0:?} is not valid: use 1 to 32 printable ASCII characters")]
    BadVolumeId(String),
    /// A file is too large for a single ISO 9660 extent.
    #[error("{path} has {size} bytes: ISO 9660 files must stay under 4 GiB (multi-extent files are not written)")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A boot image cannot be used as asked.
    #[error("boot image {path}: {reason}")]
    BootImage {
        /// The boot image's path (or `(hidden EFI image)`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The image would exceed ISO 9660's limits (2^32 sectors, 65535 directories).
    #[error("the ISO image is too large: {0}")]
    Limit(String),
    /// Reading a content or writing the image failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Where a boot image comes from.
#[derive(Debug, Clone)]
pub enum BootImage<'a> {
    /// A regular file of the tree, by path.
    Path(String),
    /// Bytes placed on the disc without a directory entry (`mkisofs -hide`).
    Hidden(Content<'a>),
}

/// The BIOS El Torito entry: a no-emulation boot file such as `isolinux.bin`.
#[derive(Debug, Clone)]
pub struct BiosBoot<'a> {
    /// The boot file.
    pub image: BootImage<'a>,
    /// 512-byte sectors the BIOS loads (`-boot-load-size`; isolinux: 4).
    pub load_sectors: u16,
    /// Patch a boot info table into bytes 8..64 of the boot file (`-boot-info-table`; isolinux needs it).
    pub boot_info_table: bool,
}

/// The EFI El Torito entry: a FAT image holding `EFI/BOOT/BOOTX64.EFI`.
#[derive(Debug, Clone)]
pub struct EfiBoot<'a> {
    /// The FAT image.
    pub image: BootImage<'a>,
}

/// El Torito boot entries.
#[derive(Debug, Clone, Default)]
pub struct ElTorito<'a> {
    /// The BIOS entry (the default entry when present).
    pub bios: Option<BiosBoot<'a>>,
    /// The EFI entry.
    pub efi: Option<EfiBoot<'a>>,
    /// Path of the boot catalog (e.g. `isolinux/boot.cat`), shown as a read-only file: free in
    /// the tree, in a directory of the tree; or `None` to hide it.
    pub catalog: Option<String>,
}

/// An isohybrid MBR in the system area, so that the image also boots when written to a disk.
#[derive(Debug, Clone, Copy)]
pub struct HybridMbr<'a> {
    /// Boot code: syslinux's `isohdpfx.bin` (its first 432 bytes are used; 440 or 512 bytes are
    /// fine). It loads the BIOS boot file, which must be isolinux with isohybrid support. `None`
    /// leaves the boot code zero (a partition table only).
    pub boot_code: Option<&'a [u8]>,
    /// The MBR disk signature (bytes 440..444).
    pub disk_signature: u32,
    /// Add partition 2 of type 0xEF over the EFI boot image, and give partition 1 type 0 instead of
    /// 0x17 so that the two do not overlap for UEFI firmware (what `isohybrid -u` does).
    pub efi_partition: bool,
}

/// Where one file of the tree landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFile {
    /// Its path in the tree (for hidden boot images: `(hidden BIOS image)`/`(hidden EFI image)`).
    pub path: String,
    /// Its first 2048-byte sector (0 for an empty file).
    pub lba: u32,
    /// Its length in bytes.
    pub len: u64,
}

/// What [`Iso::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Regular files in the order of their data, boot images first; hard links appear once.
    pub files: Vec<PlacedFile>,
    /// Sector of the boot catalog, if any.
    pub catalog_lba: Option<u32>,
    /// Sector of the BIOS boot file, if any.
    pub bios_lba: Option<u32>,
    /// Sector of the EFI boot image, if any.
    pub efi_lba: Option<u32>,
    /// Sectors in the volume (the PVD's volume space size), padding included.
    pub volume_sectors: u32,
    /// Length of the image file in bytes (rounded up to whole MiB with a hybrid MBR).
    pub image_len: u64,
}

/// An ISO 9660 image of a [`Tree`] being described; [`Iso::write`] writes it.
#[derive(Debug)]
pub struct Iso<'t, 'a> {
    pub(crate) tree: &'t Tree<'a>,
    pub(crate) volume_id: String,
    pub(crate) publisher: String,
    pub(crate) pad_sectors: u32,
    pub(crate) el_torito: Option<ElTorito<'a>>,
    pub(crate) hybrid: Option<HybridMbr<'a>>,
}

impl<'t, 'a> Iso<'t, 'a> {
    /// An image of `tree` with this volume id (what `blkid` shows as LABEL); the tree's time is
    /// the volume's dates and the boot catalog's time.
    pub fn new(volume_id: &str, tree: &'t Tree<'a>) -> Result<Iso<'t, 'a>, IsoError> {
        if volume_id.is_empty() || volume_id.len() > 32 || !volume_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(IsoError::BadVolumeId(volume_id.to_string()));
        }
        Ok(Iso {
            tree,
            volume_id: volume_id.to_string(),
            publisher: String::new(),
            pad_sectors: DEFAULT_PAD_SECTORS,
            el_torito: None,
            hybrid: None,
        })
    }

    /// Sets the publisher field of the primary volume descriptor (at most 128 characters kept).
    pub fn set_publisher(&mut self, publisher: &str) {
        self.publisher = publisher
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(128)
            .collect();
    }

    /// Sets how many zero sectors end the volume (default [`DEFAULT_PAD_SECTORS`]).
    pub fn set_pad_sectors(&mut self, sectors: u32) {
        self.pad_sectors = sectors;
    }

    /// Makes the image bootable with these El Torito entries (replacing earlier ones). The boot
    /// catalog's path, if given, must be free in the tree and its directory there.
    pub fn set_el_torito(&mut self, el_torito: ElTorito<'a>) {
        self.el_torito = Some(el_torito);
    }

    /// Writes an isohybrid MBR into the system area.
    pub fn set_hybrid_mbr(&mut self, mbr: HybridMbr<'a>) {
        self.hybrid = Some(mbr);
    }

    /// Lays the image out and writes it into `image` (truncated first), returning where files went.
    pub fn write(&self, image: &File) -> Result<Layout, IsoError> {
        layout::write(self, image)
    }
}
