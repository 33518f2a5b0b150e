//! The ISO formats, isohybrid (they boot from a CD and, written to a disk or USB stick, from a
//! disk too).
//!
//! `iso-bios`: El Torito boots `isolinux/isolinux.bin` (with its `ldlinux.c32` and
//! `isolinux.cfg`), which loads `/kernel` and `/initrd.img`; syslinux's isohybrid MBR boots the
//! same from a disk. `iso-efi` and `iso-efi-initrd`: El Torito's EFI entry is a FAT image holding
//! the unified kernel image as `EFI/BOOT/BOOTX64.EFI`; an MBR partition of type 0xEF over that
//! image lets UEFI boot it from a disk too.

use std::io;

use media::content::Content;
use media::fat::{self, FatFile, FatOptions};
use media::iso::{BiosBoot, BootImage, EfiBoot, ElTorito, HybridMbr, Iso};
use media::tree::{Metadata, Tree};

use super::medium::{syslinux_config, BootFiles, Firmware, MediumTarget};
use super::{efi, Format, OutputError};
use crate::tar::DEFAULT_MTIME;

/// The volume id (what `blkid` shows as LABEL).
const VOLUME_ID: &str = "MOBY";
/// Where the EFI boot image is on the ISO.
const EFI_IMAGE: &str = "boot/efi.img";

/// Writes `boot` as the ISO of `firmware` into `target`.
pub(crate) fn write(boot: &mut BootFiles, firmware: Firmware, target: MediumTarget<'_>) -> io::Result<()> {
    let format = target.format;
    let medium_error = |source: Box<dyn std::error::Error + Send + Sync>| OutputError::Medium { format, source };
    let file = Metadata::new(0o444, DEFAULT_MTIME);
    let bootloader = target.bootloader;
    let config = syslinux_config(&boot.cmdline);
    let efi_image = match firmware {
        Firmware::Efi => Some(efi_boot_image(
            boot,
            target.bootloader,
            target.scratch,
            target.seed.u32("efi fat"),
        )?),
        Firmware::Bios => None,
    };
    let mut files: Vec<(&str, Content<'_>)> = Vec::new();
    // iso-efi-initrd: LinuxKit's variant has kernel and initrd as files (for GRUB); ours has
    // them too, beside the unified kernel image that boots.
    if efi_image.is_none() || format == Format::IsoEfiInitrd {
        files.push(("kernel", Content::file(boot.kernel.file()?)?));
        files.push(("initrd.img", Content::file(boot.initrd.file()?)?));
    }
    let (el_torito, hybrid) = match &efi_image {
        None => {
            files.push(("isolinux/isolinux.bin", Content::Bytes(&bootloader.isolinux_bin)));
            files.push(("isolinux/ldlinux.c32", Content::Bytes(&bootloader.isolinux_ldlinux_c32)));
            files.push(("isolinux/isolinux.cfg", Content::Bytes(config.as_bytes())));
            let el_torito = ElTorito {
                bios: Some(BiosBoot {
                    image: BootImage::Path("isolinux/isolinux.bin".to_string()),
                    load_sectors: 4,
                    boot_info_table: true,
                }),
                efi: None,
                catalog: Some("isolinux/boot.cat".to_string()),
            };
            let hybrid = HybridMbr {
                boot_code: Some(&bootloader.isohdpfx_bin),
                disk_signature: target.seed.u32("disk signature"),
                efi_partition: false,
            };
            (el_torito, hybrid)
        }
        Some(image) => {
            files.push((EFI_IMAGE, Content::file(image)?));
            let el_torito = ElTorito {
                bios: None,
                efi: Some(EfiBoot {
                    image: BootImage::Path(EFI_IMAGE.to_string()),
                }),
                catalog: Some("boot/boot.cat".to_string()),
            };
            let hybrid = HybridMbr {
                boot_code: None,
                disk_signature: target.seed.u32("disk signature"),
                efi_partition: true,
            };
            (el_torito, hybrid)
        }
    };
    let mut tree = Tree::new(DEFAULT_MTIME);
    for (path, content) in files {
        tree.file(path, content, file).map_err(|e| medium_error(e.into()))?;
    }
    let mut iso = Iso::new(VOLUME_ID, &tree).map_err(|e| medium_error(e.into()))?;
    iso.set_el_torito(el_torito);
    iso.set_hybrid_mbr(hybrid);
    iso.write(target.out.file()?).map_err(|e| medium_error(e.into()))?;
    Ok(())
}

/// The El Torito EFI image: a FAT filesystem just big enough for the unified kernel image, in
/// a new unnamed file in `scratch`.
fn efi_boot_image(
    boot: &mut BootFiles,
    bootloader: &super::Bootloader,
    scratch: &std::path::Path,
    volume_id: u32,
) -> io::Result<std::fs::File> {
    let format = boot.format;
    let medium_error = |source: Box<dyn std::error::Error + Send + Sync>| OutputError::Medium { format, source };
    let uki = efi::unified_kernel_image(boot, bootloader, scratch)?;
    let files = [FatFile::new(efi::BOOT_FILE, Content::file(&uki)?)];
    let size = fat::min_size(&files).map_err(|e| medium_error(e.into()))?;
    let image = tempfile::tempfile_in(scratch)?;
    image.set_len(size)?;
    let options = FatOptions {
        label: "EFIBOOT".to_string(),
        volume_id,
        time: DEFAULT_MTIME.unsigned_abs(),
        hidden_sectors: 0,
    };
    fat::write(&image, 0, size, &files, &options).map_err(|e| medium_error(e.into()))?;
    Ok(image)
}
