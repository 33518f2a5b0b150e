//! The disk formats: a partitioned raw disk, sparse, in the format's container.
//!
//! BIOS disks (`raw-bios`, `aws`, `gcp`, `qcow2-bios`, `vhd`, `dynamic-vhd`, `vmdk`): an MBR with
//! syslinux's boot code and one active FAT partition from 1 MiB on, holding syslinux
//! (`ldlinux.sys`, `ldlinux.c32`, `syslinux.cfg`), `kernel` and `initrd.img`. EFI disks
//! (`raw-efi`, `qcow2-efi`): a GPT with one EFI system partition from 1 MiB on, holding the
//! unified kernel image as `EFI/BOOT/BOOTX64.EFI`. The partition fills the disk; a disk sized to
//! fit ends 1 MiB after its partition's content.

use std::io::{self, BufWriter, Write};

use media::content::Content;
use media::fat::{self, Attributes, FatFile, FatOptions};
use media::partition::{self, GptPartition, Guid, MbrPartition};
use media::syslinux::Syslinux;

use super::medium::syslinux_config;
use super::medium::{BootFiles, Container, DiskLayout, DiskSize, Firmware, MediumTarget, DEFAULT_SIZE_FLAG, GIB, MIB};
use super::pgzip::PgzipWriter;
use super::{efi, OutputError};

/// The partition's first sector: 1 MiB, where every partitioning tool puts it.
const PARTITION_START: u64 = MIB;
/// Bytes per sector of the partition tables.
const SECTOR: u64 = 512;
/// What LinuxKit's mkimage tools give the disk beyond its content.
const FIT_HEADROOM: u64 = MIB;

/// Writes `boot` as the disk of `layout` into `target`.
pub(crate) fn write(boot: &mut BootFiles, layout: DiskLayout, target: MediumTarget<'_>) -> io::Result<()> {
    let format = target.format;
    let medium_error = |source: Box<dyn std::error::Error + Send + Sync>| OutputError::Medium { format, source };
    let uki = match layout.boot {
        Firmware::Efi => Some(efi::unified_kernel_image(boot, target.bootloader, target.scratch)?),
        Firmware::Bios => None,
    };
    let config = syslinux_config(&boot.cmdline);
    let syslinux = match layout.boot {
        Firmware::Bios => Some(
            Syslinux::new(&target.bootloader.ldlinux_bss, &target.bootloader.ldlinux_sys)
                .map_err(|e| medium_error(e.into()))?,
        ),
        Firmware::Efi => None,
    };
    let ldlinux_sys = syslinux.as_ref().map(Syslinux::ldlinux_sys_file).unwrap_or_default();
    let files = match &uki {
        Some(uki) => vec![FatFile::new(efi::BOOT_FILE, Content::file(uki)?)],
        None => bios_files(boot, target.bootloader, &ldlinux_sys, &config)?,
    };
    // The ESP is FAT32 as the UEFI specification asks; syslinux takes either.
    let fat_min = match layout.boot {
        Firmware::Efi => fat::min_size_fat32(&files),
        Firmware::Bios => fat::min_size(&files),
    }
    .map_err(|e| medium_error(e.into()))?;
    let fit = round_up(PARTITION_START + fat_min + FIT_HEADROOM, MIB);
    let size = match (target.size, layout.default_size) {
        (Some(size), _) => size,
        (None, DiskSize::Fit) => fit,
        (None, DiskSize::SizeFlag) => DEFAULT_SIZE_FLAG,
        (None, DiskSize::Fixed(size)) => size,
    };
    // Azure takes whole MiB, GCE whole GiB.
    let size = round_up(
        size,
        if layout.container == Container::GcpTar {
            GIB
        } else {
            MIB
        },
    );
    let partition_end = match layout.boot {
        // The backup GPT (33 sectors) is in the last MiB.
        Firmware::Efi => size.saturating_sub(MIB),
        Firmware::Bios => size,
    };
    let partition_len = partition_end.saturating_sub(PARTITION_START);
    if partition_len < fat_min {
        return Err(OutputError::TooSmall {
            format,
            size,
            needed: fit,
        }
        .into());
    }

    let raw = match layout.container {
        Container::Raw => target.out.file()?.try_clone()?,
        _ => tempfile::tempfile_in(target.scratch)?,
    };
    raw.set_len(size)?;
    let seed = target.seed;
    let options = FatOptions {
        label: "MOBY".to_string(),
        volume_id: seed.u32("fat volume id"),
        time: crate::tar::DEFAULT_MTIME.unsigned_abs(),
        hidden_sectors: sectors(PARTITION_START)?,
    };
    let fat_layout =
        fat::write(&raw, PARTITION_START, partition_len, &files, &options).map_err(|e| medium_error(e.into()))?;
    match &syslinux {
        Some(syslinux) => {
            let ldlinux = fat_layout
                .file(LDLINUX_SYS)
                .ok_or_else(|| medium_error("ldlinux.sys is not on the FAT filesystem".into()))?;
            syslinux
                .install(&raw, PARTITION_START, ldlinux)
                .map_err(|e| medium_error(e.into()))?;
            let partition = MbrPartition {
                bootable: true,
                partition_type: match fat_layout.fat_type {
                    fat::FatType::Fat16 => partition::MBR_TYPE_FAT16_LBA,
                    fat::FatType::Fat32 => partition::MBR_TYPE_FAT32_LBA,
                },
                first_lba: sectors(PARTITION_START)?,
                sectors: sectors(partition_len)?,
            };
            let boot_code = &target.bootloader.mbr_bin;
            let boot_code = &boot_code[..boot_code.len().min(partition::MBR_BOOT_CODE_MAX)];
            partition::write_mbr(&raw, size, boot_code, seed.u32("disk signature"), &[partition])
                .map_err(|e| medium_error(e.into()))?;
        }
        None => {
            let esp = GptPartition {
                type_guid: Guid::EFI_SYSTEM,
                unique_guid: Guid::from_hash(&seed.bytes16("esp partition guid")),
                first_lba: PARTITION_START / SECTOR,
                sectors: partition_len / SECTOR,
                name: "EFI System",
                attributes: 0,
            };
            partition::write_gpt(&raw, size, Guid::from_hash(&seed.bytes16("disk guid")), &[esp])
                .map_err(|e| medium_error(e.into()))?;
        }
    }
    let sink = |result: Result<u64, Box<dyn std::error::Error + Send + Sync>>| result.map(drop).map_err(medium_error);
    match layout.container {
        Container::Raw => {}
        Container::FixedVhd => {
            sink(media::vhd::write_fixed(&raw, target.out.file()?, &vhd_identity(seed)).map_err(Into::into))?
        }
        Container::DynamicVhd => {
            let mut out = BufWriter::new(&mut *target.out);
            sink(media::vhd::write_dynamic(&raw, &mut out, &vhd_identity(seed)).map_err(Into::into))?;
            out.flush()?;
        }
        Container::Qcow2 => {
            let mut out = BufWriter::new(&mut *target.out);
            sink(media::qcow2::write(&raw, &mut out).map_err(Into::into))?;
            out.flush()?;
        }
        Container::Vmdk => {
            let file_name = target
                .out
                .target()
                .file_name()
                .map_or_else(|| "disk.vmdk".to_string(), |name| name.to_string_lossy().into_owned());
            let options = media::vmdk::Options {
                cid: seed.u32("vmdk cid"),
                file_name: &file_name,
            };
            let mut out = BufWriter::new(&mut *target.out);
            sink(media::vmdk::write(&raw, &mut out, &options).map_err(Into::into))?;
            out.flush()?;
        }
        Container::GcpTar => {
            let member = media::sparse_tar::Member {
                name: "disk.raw",
                mtime: crate::tar::DEFAULT_MTIME.max(0) as u64,
                mode: 0o644,
                uid: 0,
                gid: 0,
                uname: "root",
                gname: "root",
            };
            let mut gzip = PgzipWriter::new(&mut *target.out, target.gzip)?;
            sink(media::sparse_tar::write(&raw, &member, &mut gzip).map_err(Into::into))?;
            gzip.finish()?;
        }
    }
    Ok(())
}

/// `ldlinux.sys` on the FAT filesystem (syslinux's installer needs where it is).
const LDLINUX_SYS: &str = "ldlinux.sys";

/// syslinux's files, the kernel and the initrd, for a BIOS disk.
fn bios_files<'a>(
    boot: &'a mut BootFiles,
    bootloader: &'a super::Bootloader,
    ldlinux_sys: &'a [u8],
    config: &'a str,
) -> io::Result<Vec<FatFile<'a>>> {
    let kernel = Content::file(boot.kernel.file()?)?;
    let initrd = Content::file(boot.initrd.file()?)?;
    Ok(vec![
        FatFile {
            // As syslinux's installer marks it.
            attributes: Attributes {
                read_only: true,
                hidden: true,
                system: true,
            },
            ..FatFile::new(LDLINUX_SYS, Content::Bytes(ldlinux_sys))
        },
        FatFile::new("ldlinux.c32", Content::Bytes(&bootloader.syslinux_ldlinux_c32)),
        FatFile::new("syslinux.cfg", Content::Bytes(config.as_bytes())),
        FatFile::new("kernel", kernel),
        FatFile::new("initrd.img", initrd),
    ])
}

/// A VHD's creation time and unique id, from the seed and LinuxKit's fixed time.
fn vhd_identity(seed: &super::medium::Seed) -> media::vhd::Identity {
    media::vhd::Identity {
        time: crate::tar::DEFAULT_MTIME.max(0) as u64,
        unique_id: seed.bytes16("vhd unique id"),
    }
}

/// `bytes` in 512-byte sectors, for an MBR (at most 2 TiB).
fn sectors(bytes: u64) -> io::Result<u32> {
    u32::try_from(bytes / SECTOR).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a BIOS (MBR) disk cannot be larger than 2 TiB; make the disk smaller",
        )
    })
}

fn round_up(value: u64, unit: u64) -> u64 {
    value.div_ceil(unit) * unit
}
