//! MBR and GPT partition tables, written with positioned writes into a disk image.
//!
//! Sectors are 512 bytes. The caller places the partitions (LinuxKit's and every partitioning
//! tool's convention: the first at [`FIRST_PARTITION_LBA`], 1 MiB) and gives every identifier
//! (disk signature, GUIDs), so the same input gives the same bytes. Tables are checked before
//! anything is written: partitions inside the disk's usable sectors, not overlapping, valid types.
//!
//! [`write_mbr`] writes sector 0 only. [`write_gpt`] writes the protective MBR (sector 0), the
//! primary header (LBA 1) and entry array (LBA 2–33, 128 entries), and their backups at the end of
//! the disk (the entry array in the 33rd-to-last to 2nd-to-last sectors, the header in the last).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::str::FromStr;

/// Bytes per sector (logical block).
pub const SECTOR_SIZE: u64 = 512;

/// Where the first partition starts: 1 MiB, the alignment every partitioning tool uses and some
/// firmware expects.
pub const FIRST_PARTITION_LBA: u64 = 2048;

/// MBR partition type of a FAT16 filesystem addressed by LBA.
pub const MBR_TYPE_FAT16_LBA: u8 = 0x0E;
/// MBR partition type of a FAT32 filesystem addressed by LBA.
pub const MBR_TYPE_FAT32_LBA: u8 = 0x0C;
/// MBR partition type of a Linux filesystem (LinuxKit's raw-bios uses it for its FAT partition).
pub const MBR_TYPE_LINUX: u8 = 0x83;
/// MBR partition type of an EFI System Partition.
pub const MBR_TYPE_EFI_SYSTEM: u8 = 0xEF;
/// MBR partition type of the protective partition covering a GPT disk.
const MBR_TYPE_GPT_PROTECTIVE: u8 = 0xEE;

/// Most bytes of boot code in an MBR: what precedes the disk signature.
pub const MBR_BOOT_CODE_MAX: usize = 440;

/// GPT partition attribute: the platform needs the partition to work.
pub const GPT_ATTRIBUTE_REQUIRED: u64 = 1;
/// GPT partition attribute: legacy BIOS bootable (LinuxKit's raw-efi sets it on its ESP).
pub const GPT_ATTRIBUTE_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Entries in a GPT partition entry array, each of 128 bytes: 32 sectors.
const GPT_ENTRIES: u64 = 128;
const GPT_ENTRY_SIZE: u64 = 128;
const GPT_ENTRY_SECTORS: u64 = GPT_ENTRIES * GPT_ENTRY_SIZE / SECTOR_SIZE;
/// First LBA a GPT partition may use: after the protective MBR, header and entries.
const GPT_FIRST_USABLE_LBA: u64 = 2 + GPT_ENTRY_SECTORS;
/// UTF-16 code units of a GPT partition name.
const GPT_NAME_UNITS: usize = 36;

/// An MBR (primary) partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrPartition {
    /// Marked active: what a classic MBR boot code (syslinux's `mbr.bin`) boots.
    pub bootable: bool,
    /// The partition type byte, e.g. [`MBR_TYPE_FAT32_LBA`].
    pub partition_type: u8,
    /// First sector.
    pub first_lba: u32,
    /// Length in sectors.
    pub sectors: u32,
}

/// A GUID, held in its textual byte order (`C12A7328-F81F-...` is `[0xC1, 0x2A, ...]`); GPT stores
/// the first three fields little-endian, which [`write_gpt`] takes care of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The nil GUID (unused entry).
    pub const NIL: Guid = Guid([0; 16]);
    /// Partition type of an EFI System Partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
    pub const EFI_SYSTEM: Guid = Guid([
        0xC1, 0x2A, 0x73, 0x28, 0xF8, 0x1F, 0x11, 0xD2, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
    ]);
    /// Partition type of a Linux filesystem, 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
    pub const LINUX_FILESYSTEM: Guid = Guid([
        0x0F, 0xC6, 0x3D, 0xAF, 0x84, 0x83, 0x47, 0x72, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
    ]);

    /// A GUID made from the first 16 bytes of `hash` (zeros if shorter), e.g. a SHA-256 of what
    /// identifies the disk, with the RFC 9562 variant bits and version 8 ("custom": derived, not
    /// random) set.
    pub fn from_hash(hash: &[u8]) -> Guid {
        let mut bytes = [0u8; 16];
        let n = hash.len().min(16);
        bytes[..n].copy_from_slice(&hash[..n]);
        bytes[6] = (bytes[6] & 0x0F) | 0x80;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        Guid(bytes)
    }

    /// GPT's on-disk order: the first three fields little-endian.
    fn to_gpt_bytes(self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
        ]
    }
}

impl fmt::Display for Guid {
    /// Lowercase `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as Linux shows PARTUUIDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Guid {
    type Err = PartitionError;

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, in either case.
    fn from_str(text: &str) -> Result<Guid, PartitionError> {
        let invalid = || PartitionError::InvalidGuid { text: text.to_string() };
        let groups: Vec<&str> = text.split('-').collect();
        if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(invalid());
        }
        let hex: String = groups.concat();
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(invalid)?, 16).map_err(|_| invalid())?;
        }
        Ok(Guid(bytes))
    }
}

/// A GPT partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptPartition<'a> {
    /// What it holds, e.g. [`Guid::EFI_SYSTEM`].
    pub type_guid: Guid,
    /// Its own GUID (Linux's PARTUUID).
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// Its name, at most 36 UTF-16 code units (LinuxKit names its ESP "EFI System").
    pub name: &'a str,
    /// Attribute bits, e.g. [`GPT_ATTRIBUTE_LEGACY_BIOS_BOOTABLE`].
    pub attributes: u64,
}

/// Why a partition table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The disk size is not a whole number of sectors.
    #[error("the disk size {size} is not a multiple of 512 bytes")]
    UnalignedDisk {
        /// The size given.
        size: u64,
    },
    /// The disk is too small for the table itself.
    #[error("a disk of {size} bytes is too small for a partition table: it needs at least {needed} bytes")]
    DiskTooSmall {
        /// The size given.
        size: u64,
        /// The smallest size.
        needed: u64,
    },
    /// The MBR boot code does not fit before the disk signature.
    #[error("the MBR boot code has {len} bytes, more than the {MBR_BOOT_CODE_MAX} before the disk signature")]
    BootCodeTooLong {
        /// Its length.
        len: usize,
    },
    /// More partitions than the table holds.
    #[error("{count} partitions given, the table holds at most {max}")]
    TooManyPartitions {
        /// How many were given.
        count: usize,
        /// The table's limit.
        max: usize,
    },
    /// A partition that is empty, has the unused type, or a nil GUID.
    #[error("partition {number}: {reason}")]
    InvalidPartition {
        /// Its number (from 1).
        number: usize,
        /// What is wrong.
        reason: String,
    },
    /// A partition outside the sectors partitions may use.
    #[error(
        "partition {number} (sectors {first}..={last}) does not fit: partitions may use sectors {first_usable}..={last_usable} of this disk; make the disk bigger or the partition smaller"
    )]
    OutOfDisk {
        /// Its number (from 1).
        number: usize,
        /// Its first sector.
        first: u64,
        /// Its last sector.
        last: u64,
        /// The first sector a partition may use.
        first_usable: u64,
        /// The last sector a partition may use.
        last_usable: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions {a} and {b} overlap")]
    Overlap {
        /// One partition's number.
        a: usize,
        /// The other's.
        b: usize,
    },
    /// The same GUID used twice.
    #[error("the GUID {guid} is used more than once (disk and partition GUIDs must be unique)")]
    DuplicateGuid {
        /// The GUID.
        guid: Guid,
    },
    /// The disk GUID is nil.
    #[error("the disk GUID is nil: give one derived from the image's content")]
    NilDiskGuid,
    /// Text that is not a GUID.
    #[error("{text:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    InvalidGuid {
        /// The text.
        text: String,
    },
    /// Writing the image failed.
    #[error("writing the {what}: {source}")]
    Io {
        /// What was being written.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Writes an MBR into sector 0 of a disk image of `disk_size` bytes: `boot_code` (at most 440
/// bytes, e.g. syslinux's `mbr.bin`; the rest of those bytes are zeros), the disk signature and up to
/// four primary partitions, numbered in the given order.
pub fn write_mbr(
    image: &File,
    disk_size: u64,
    boot_code: &[u8],
    disk_signature: u32,
    partitions: &[MbrPartition],
) -> Result<(), PartitionError> {
    let sectors = disk_sectors(disk_size, 2)?;
    if boot_code.len() > MBR_BOOT_CODE_MAX {
        return Err(PartitionError::BootCodeTooLong { len: boot_code.len() });
    }
    if partitions.len() > 4 {
        return Err(PartitionError::TooManyPartitions {
            count: partitions.len(),
            max: 4,
        });
    }
    // MBR entries address at most 2^32 sectors.
    let last_usable = sectors.min(1 << 32) - 1;
    let mut spans = Vec::new();
    for (i, p) in partitions.iter().enumerate() {
        let number = i + 1;
        let invalid = |reason: &str| PartitionError::InvalidPartition {
            number,
            reason: reason.to_string(),
        };
        if p.partition_type == 0 {
            return Err(invalid("type 0 marks an unused entry"));
        }
        if p.sectors == 0 {
            return Err(invalid("it has no sectors"));
        }
        if p.bootable && partitions[..i].iter().any(|q| q.bootable) {
            return Err(invalid("only one partition can be marked bootable"));
        }
        spans.push(check_span(
            number,
            u64::from(p.first_lba),
            u64::from(p.sectors),
            1,
            last_usable,
        )?);
    }
    check_overlaps(&mut spans)?;

    let mut sector = [0u8; 512];
    sector[..boot_code.len()].copy_from_slice(boot_code);
    sector[440..444].copy_from_slice(&disk_signature.to_le_bytes());
    for (i, p) in partitions.iter().enumerate() {
        let first = u64::from(p.first_lba);
        let last = first + u64::from(p.sectors) - 1;
        let entry = mbr_entry(
            p.bootable,
            p.partition_type,
            chs(first),
            chs(last),
            p.first_lba,
            p.sectors,
        );
        sector[446 + 16 * i..446 + 16 * (i + 1)].copy_from_slice(&entry);
    }
    sector[510] = 0x55;
    sector[511] = 0xAA;
    put(image, 0, &sector, "MBR")
}

/// The last sector a GPT partition may use on a disk of `disk_size` bytes (before the backup entry
/// array and header), or None if the disk is too small for a GPT.
pub fn gpt_last_usable_lba(disk_size: u64) -> Option<u64> {
    (disk_size / SECTOR_SIZE).checked_sub(2 + GPT_ENTRY_SECTORS)
}

/// Writes a GPT (with its protective MBR and its backup at the end) onto a disk image of
/// `disk_size` bytes, with up to 128 partitions numbered in the given order.
pub fn write_gpt(
    image: &File,
    disk_size: u64,
    disk_guid: Guid,
    partitions: &[GptPartition],
) -> Result<(), PartitionError> {
    // Protective MBR, two headers, two entry arrays, one usable sector.
    let sectors = disk_sectors(disk_size, 3 + 2 * GPT_ENTRY_SECTORS + 1)?;
    let last_lba = sectors - 1;
    let last_usable = last_lba - 1 - GPT_ENTRY_SECTORS;
    if partitions.len() > GPT_ENTRIES as usize {
        return Err(PartitionError::TooManyPartitions {
            count: partitions.len(),
            max: GPT_ENTRIES as usize,
        });
    }
    let mut guids = vec![disk_guid];
    let mut spans = Vec::new();
    for (i, p) in partitions.iter().enumerate() {
        let number = i + 1;
        let invalid = |reason: &str| PartitionError::InvalidPartition {
            number,
            reason: reason.to_string(),
        };
        if p.type_guid == Guid::NIL {
            return Err(invalid("the nil type GUID marks an unused entry"));
        }
        if p.unique_guid == Guid::NIL {
            return Err(invalid("its unique GUID is nil"));
        }
        if p.name.encode_utf16().count() > GPT_NAME_UNITS || p.name.contains('\0') {
            return Err(invalid("its name has more than 36 UTF-16 code units, or a NUL"));
        }
        if p.sectors == 0 {
            return Err(invalid("it has no sectors"));
        }
        spans.push(check_span(
            number,
            p.first_lba,
            p.sectors,
            GPT_FIRST_USABLE_LBA,
            last_usable,
        )?);
        guids.push(p.unique_guid);
    }
    if disk_guid == Guid::NIL {
        return Err(PartitionError::NilDiskGuid);
    }
    guids.sort();
    if let Some(pair) = guids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(PartitionError::DuplicateGuid { guid: pair[0] });
    }
    check_overlaps(&mut spans)?;

    let mut entries = vec![0u8; (GPT_ENTRIES * GPT_ENTRY_SIZE) as usize];
    for (p, entry) in partitions.iter().zip(entries.chunks_exact_mut(GPT_ENTRY_SIZE as usize)) {
        entry[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
        entry[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
        entry[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&(p.first_lba + p.sectors - 1).to_le_bytes());
        entry[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (unit, slot) in p.name.encode_utf16().zip(entry[56..].chunks_exact_mut(2)) {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);
    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes()); // revision 1.0
        h[12..16].copy_from_slice(&92u32.to_le_bytes()); // header size
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&GPT_FIRST_USABLE_LBA.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_gpt_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(GPT_ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let header_crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&header_crc.to_le_bytes());
        h
    };

    // The protective MBR covers the whole disk (or its first 2 TiB) with one partition of type EE.
    let mut mbr = [0u8; 512];
    let covered = u32::try_from(last_lba).unwrap_or(u32::MAX);
    let end_chs = if last_lba < 1024 * 255 * 63 {
        chs(last_lba)
    } else {
        [0xFF; 3]
    };
    mbr[446..462].copy_from_slice(&mbr_entry(false, MBR_TYPE_GPT_PROTECTIVE, chs(1), end_chs, 1, covered));
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    let backup_entries_lba = last_lba - GPT_ENTRY_SECTORS;
    put(image, 2 * SECTOR_SIZE, &entries, "GPT partition entries")?;
    put(
        image,
        backup_entries_lba * SECTOR_SIZE,
        &entries,
        "backup GPT partition entries",
    )?;
    put(image, SECTOR_SIZE, &header(1, last_lba, 2), "GPT header")?;
    put(
        image,
        last_lba * SECTOR_SIZE,
        &header(last_lba, 1, backup_entries_lba),
        "backup GPT header",
    )?;
    put(image, 0, &mbr, "protective MBR")
}

/// The disk's sector count, if its size is whole sectors and at least `min` of them.
fn disk_sectors(disk_size: u64, min: u64) -> Result<u64, PartitionError> {
    if !disk_size.is_multiple_of(SECTOR_SIZE) {
        return Err(PartitionError::UnalignedDisk { size: disk_size });
    }
    let sectors = disk_size / SECTOR_SIZE;
    if sectors < min {
        return Err(PartitionError::DiskTooSmall {
            size: disk_size,
            needed: min * SECTOR_SIZE,
        });
    }
    Ok(sectors)
}

/// A partition's (first, last, number), if within `first_usable..=last_usable`.
fn check_span(
    number: usize,
    first: u64,
    sectors: u64,
    first_usable: u64,
    last_usable: u64,
) -> Result<(u64, u64, usize), PartitionError> {
    let last = first.saturating_add(sectors - 1);
    if first < first_usable || last > last_usable {
        return Err(PartitionError::OutOfDisk {
            number,
            first,
            last,
            first_usable,
            last_usable,
        });
    }
    Ok((first, last, number))
}

fn check_overlaps(spans: &mut [(u64, u64, usize)]) -> Result<(), PartitionError> {
    spans.sort();
    match spans.windows(2).find(|pair| pair[1].0 <= pair[0].1) {
        Some(pair) => Err(PartitionError::Overlap {
            a: pair[0].2.min(pair[1].2),
            b: pair[0].2.max(pair[1].2),
        }),
        None => Ok(()),
    }
}

/// A 16-byte MBR partition entry.
fn mbr_entry(
    bootable: bool,
    partition_type: u8,
    first_chs: [u8; 3],
    last_chs: [u8; 3],
    first: u32,
    sectors: u32,
) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = if bootable { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&first_chs);
    e[4] = partition_type;
    e[5..8].copy_from_slice(&last_chs);
    e[8..12].copy_from_slice(&first.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    e
}

/// The cylinder/head/sector address of `lba` with 255 heads and 63 sectors per track, as the MBR
/// stores it (head, sector with the cylinder's two high bits, cylinder's low byte); beyond cylinder
/// 1023, the largest address, as is conventional.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [254, 0xFF, 0xFF];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xC0) as u8),
        cylinder as u8,
    ]
}

fn put(image: &File, at: u64, bytes: &[u8], what: &'static str) -> Result<(), PartitionError> {
    image
        .write_all_at(bytes, at)
        .map_err(|source| PartitionError::Io { what, source })
}

/// CRC-32 as GPT uses it (IEEE 802.3, reflected, polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    const MIB: u64 = 1024 * 1024;

    fn run(command: &mut Command) -> String {
        let output: Output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command:?} failed: {}\n{text}", output.status);
        text
    }

    fn image(dir: &Path, name: &str, len: u64) -> (File, PathBuf) {
        let path = dir.join(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(len).unwrap();
        (file, path)
    }

    fn esp_guid() -> Guid {
        "0E1D2C3B-4A59-4867-8796-A5B4C3D2E1F0".parse().unwrap()
    }

    fn gpt_partitions() -> Vec<GptPartition<'static>> {
        vec![
            GptPartition {
                type_guid: Guid::EFI_SYSTEM,
                unique_guid: esp_guid(),
                first_lba: FIRST_PARTITION_LBA,
                sectors: 40 * MIB / SECTOR_SIZE,
                name: "EFI System",
                attributes: GPT_ATTRIBUTE_LEGACY_BIOS_BOOTABLE,
            },
            GptPartition {
                type_guid: Guid::LINUX_FILESYSTEM,
                unique_guid: Guid::from_hash(b"a hash of the second partition"),
                first_lba: FIRST_PARTITION_LBA + 40 * MIB / SECTOR_SIZE,
                sectors: 20 * MIB / SECTOR_SIZE,
                name: "données",
                attributes: 0,
            },
        ]
    }

    fn disk_guid() -> Guid {
        Guid::from_hash(&[0x5A; 32])
    }

    #[test]
    fn mbr_reads_back_with_sfdisk() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 * MIB;
        let (file, path) = image(dir.path(), "mbr.img", size);
        let boot_code: Vec<u8> = (0..440).map(|i| (i % 200) as u8 + 1).collect();
        let partitions = [
            MbrPartition {
                bootable: true,
                partition_type: MBR_TYPE_FAT32_LBA,
                first_lba: 2048,
                sectors: 100_000,
            },
            MbrPartition {
                bootable: false,
                partition_type: MBR_TYPE_LINUX,
                first_lba: 102_048,
                sectors: (size / 512 - 102_048) as u32,
            },
        ];
        write_mbr(&file, size, &boot_code, 0x1234_5678, &partitions).unwrap();
        let dump = run(Command::new("sfdisk").arg("--dump").arg(&path));
        let p = path.display();
        for line in [
            "label: dos".to_string(),
            "label-id: 0x12345678".to_string(),
            format!("{p}1 : start=        2048, size=      100000, type=c, bootable"),
            format!("{p}2 : start=      102048, size=       29024, type=83"),
        ] {
            assert!(dump.contains(&line), "{line:?} missing from\n{dump}");
        }
        let verify = run(Command::new("sfdisk").arg("--verify").arg(&path));
        assert!(verify.contains("No errors detected"), "{verify}");
        let mut first = [0u8; 512];
        file.read_exact_at(&mut first, 0).unwrap();
        assert_eq!(&first[..440], &boot_code[..]);
        // CHS of LBA 2048 with 255 heads, 63 sectors: cylinder 0, head 32, sector 33.
        assert_eq!(&first[447..450], &[32, 33, 0]);

        // The same input, the same bytes.
        let (again, again_path) = image(dir.path(), "again.img", size);
        write_mbr(&again, size, &boot_code, 0x1234_5678, &partitions).unwrap();
        assert!(std::fs::read(&path).unwrap() == std::fs::read(&again_path).unwrap());
    }

    #[test]
    fn bad_mbr_tables_are_refused() {
        let file = tempfile::tempfile().unwrap();
        let part = |first_lba, sectors| MbrPartition {
            bootable: false,
            partition_type: MBR_TYPE_LINUX,
            first_lba,
            sectors,
        };
        let size = 10 * MIB; // 20480 sectors
        let error =
            |boot: &[u8], parts: &[MbrPartition]| write_mbr(&file, size, boot, 1, parts).unwrap_err().to_string();
        assert!(error(&[0; 441], &[]).contains("441 bytes"));
        assert!(error(&[], &[part(2048, 10_000), part(12_047, 10)]).contains("partitions 1 and 2 overlap"));
        assert!(error(&[], &[part(2048, 18_433)]).contains("does not fit"));
        assert!(error(&[], &[part(0, 10)]).contains("does not fit"));
        assert!(error(&[], &[part(2048, 0)]).contains("no sectors"));
        assert!(error(&[], &[part(1, 1); 5]).contains("at most 4"));
        let mut typeless = part(2048, 10);
        typeless.partition_type = 0;
        assert!(error(&[], &[typeless]).contains("unused"));
        let mut bootable = part(2048, 10);
        bootable.bootable = true;
        let mut other = part(4096, 10);
        other.bootable = true;
        assert!(error(&[], &[bootable, other]).contains("only one"));
        assert!(write_mbr(&file, size + 1, &[], 1, &[])
            .unwrap_err()
            .to_string()
            .contains("multiple of 512"));
        // Nothing was written.
        assert_eq!(file.metadata().unwrap().len(), 0);
        // Exactly up to the last sector is fine.
        write_mbr(&file, size, &[], 1, &[part(2048, 18_432)]).unwrap();
    }

    #[test]
    fn gpt_reads_back_with_sgdisk_and_sfdisk() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 * MIB;
        let (file, path) = image(dir.path(), "gpt.img", size);
        write_gpt(&file, size, disk_guid(), &gpt_partitions()).unwrap();

        let verify = run(Command::new("sgdisk").arg("-v").arg(&path));
        assert!(verify.contains("No problems found"), "{verify}");
        let print = run(Command::new("sgdisk").arg("-p").arg(&path));
        let upper = |g: Guid| g.to_string().to_uppercase();
        for line in [
            format!("Disk identifier (GUID): {}", upper(disk_guid())),
            "Partition table holds up to 128 entries".into(),
            "First usable sector is 34, last usable sector is 131038".into(),
            "   1            2048           83967   40.0 MiB    EF00  EFI System".into(),
            "   2           83968          124927   20.0 MiB    8300  données".into(),
        ] {
            assert!(print.contains(&line), "{line:?} missing from\n{print}");
        }
        let first = run(Command::new("sgdisk").args(["-i", "1"]).arg(&path));
        for line in [
            "Partition GUID code: C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)".to_string(),
            format!("Partition unique GUID: {}", upper(esp_guid())),
            "Attribute flags: 0000000000000004".into(),
            "Partition name: 'EFI System'".into(),
        ] {
            assert!(first.contains(&line), "{line:?} missing from\n{first}");
        }
        let second = run(Command::new("sgdisk").args(["-i", "2"]).arg(&path));
        assert!(second.contains(&format!(
            "Partition unique GUID: {}",
            upper(gpt_partitions()[1].unique_guid)
        )));

        let dump = run(Command::new("sfdisk").arg("--dump").arg(&path));
        assert!(dump.contains(&format!("label-id: {}", upper(disk_guid()))), "{dump}");
        assert!(dump.contains("attrs=\"LegacyBIOSBootable\""), "{dump}");
        let verify = run(Command::new("sfdisk").arg("--verify").arg(&path));
        assert!(verify.contains("No errors detected"), "{verify}");

        let (again, again_path) = image(dir.path(), "again.img", size);
        write_gpt(&again, size, disk_guid(), &gpt_partitions()).unwrap();
        assert!(std::fs::read(&path).unwrap() == std::fs::read(&again_path).unwrap());
        let (other, other_path) = image(dir.path(), "other.img", size);
        write_gpt(&other, size, Guid::from_hash(b"other"), &gpt_partitions()).unwrap();
        assert!(std::fs::read(&path).unwrap() != std::fs::read(&other_path).unwrap());
    }

    #[test]
    fn bad_gpt_tables_are_refused() {
        let file = tempfile::tempfile().unwrap();
        let size = 10 * MIB; // 20480 sectors, last usable 20446
        let mut base = gpt_partitions()[0];
        base.sectors = 1000;
        let with = |change: &dyn Fn(&mut GptPartition)| {
            let mut p = base;
            change(&mut p);
            p
        };
        let error = |parts: &[GptPartition]| write_gpt(&file, size, disk_guid(), parts).unwrap_err().to_string();
        let fits = with(&|p| p.sectors = 20_446 - 2048 + 1);
        assert!(error(&[with(&|p| p.sectors = 20_446 - 2048 + 2)]).contains("does not fit"));
        assert!(error(&[with(&|p| p.first_lba = 33)]).contains("does not fit"));
        assert!(error(&[with(&|p| p.sectors = 0)]).contains("no sectors"));
        assert!(error(&[with(&|p| p.type_guid = Guid::NIL)]).contains("unused"));
        assert!(error(&[with(&|p| p.unique_guid = Guid::NIL)]).contains("nil"));
        assert!(error(&[with(&|p| p.name = "a name longer than thirty-six characters")]).contains("36"));
        assert!(error(&[with(&|p| p.unique_guid = disk_guid())]).contains("more than once"));
        let second = with(&|p| {
            p.first_lba = 4000;
            p.sectors = 10;
            p.unique_guid = Guid::from_hash(b"2");
        });
        assert!(error(&[fits, second]).contains("partitions 1 and 2 overlap"));
        let second_same_guid = with(&|p| {
            p.first_lba = 4000;
            p.sectors = 10;
        });
        assert!(error(&[with(&|p| p.sectors = 10), second_same_guid]).contains("more than once"));
        assert!(error(&vec![base; 129]).contains("at most 128"));
        assert!(write_gpt(&file, 67 * 512, disk_guid(), &[])
            .unwrap_err()
            .to_string()
            .contains("too small"));
        assert_eq!(file.metadata().unwrap().len(), 0, "nothing was written");
        write_gpt(&file, size, disk_guid(), &[fits]).unwrap();
        assert_eq!(gpt_last_usable_lba(size), Some(20_446));
    }

    #[test]
    fn guids_print_parse_and_derive() {
        let text = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
        assert_eq!(Guid::EFI_SYSTEM.to_string(), text);
        assert_eq!(text.to_uppercase().parse::<Guid>().unwrap(), Guid::EFI_SYSTEM);
        assert!("c12a7328f81f-11d2-ba4b-00a0c93ec93b".parse::<Guid>().is_err());
        assert!("g12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse::<Guid>().is_err());
        assert!("é2a7328-f81f-11d2-ba4b-00a0c93ec93b".parse::<Guid>().is_err());
        assert_eq!(
            Guid::EFI_SYSTEM.to_gpt_bytes(),
            [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]
        );
        let derived = Guid::from_hash(&[0xFF; 32]);
        assert_eq!(derived.to_string(), "ffffffff-ffff-8fff-bfff-ffffffffffff");
        assert_eq!(
            Guid::from_hash(&[0; 3]).to_string(),
            "00000000-0000-8000-8000-000000000000"
        );
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// OVMF finds both FAT types on a GPT disk and reads long, lowercase and nested names: its UEFI
    /// shell runs `startup.nsh` from the ESP, which prints files from both partitions on the serial
    /// console.
    #[test]
    fn ovmf_reads_fat32_and_fat16_partitions_of_a_gpt_disk() {
        use crate::content::Content;
        use crate::fat::{self, FatFile, FatOptions, FatType};
        let dir = tempfile::tempdir().unwrap();
        let partitions = gpt_partitions();
        let size = (partitions[1].first_lba + partitions[1].sectors) * SECTOR_SIZE + MIB;
        let (file, path) = image(dir.path(), "disk.img", size);
        write_gpt(&file, size, disk_guid(), &partitions).unwrap();
        let script = "echo START-OF-TEST\r\n\
                      type fs0:\\EFI\\Linux\\loader.conf\r\n\
                      type \"fs0:\\A Long Directory\\Nested File.txt\"\r\n\
                      type fs0:\\kernel\r\n\
                      type fs1:\\syslinux.cfg\r\n\
                      type \"fs1:\\lower\\Mixed Case Name.Text\"\r\n\
                      echo END-OF-TEST\r\n\
                      reset -s\r\n";
        let big: Vec<u8> = (0..6 * MIB).map(|i| (i % 253) as u8).collect();
        let esp = [
            FatFile::new("startup.nsh", Content::Bytes(script.as_bytes())),
            FatFile::new("EFI/Linux/loader.conf", Content::Bytes(b"content of loader.conf\r\n")),
            FatFile::new(
                "A Long Directory/Nested File.txt",
                Content::Bytes(b"content of Nested File.txt\r\n"),
            ),
            FatFile::new("kernel", Content::Bytes(b"content of kernel\r\n")),
            FatFile::new("big", Content::Bytes(&big)),
        ];
        let data = [
            FatFile::new("syslinux.cfg", Content::Bytes(b"content of syslinux.cfg\r\n")),
            FatFile::new(
                "lower/Mixed Case Name.Text",
                Content::Bytes(b"content of Mixed Case Name.Text\r\n"),
            ),
        ];
        let options = FatOptions {
            label: "EFI".into(),
            volume_id: 1,
            time: 1_492_533_000,
            hidden_sectors: FIRST_PARTITION_LBA as u32,
        };
        for (p, files, fat_type) in [
            (&partitions[0], &esp[..], FatType::Fat32),
            (&partitions[1], &data[..], FatType::Fat16),
        ] {
            let layout = fat::write(
                &file,
                p.first_lba * SECTOR_SIZE,
                p.sectors * SECTOR_SIZE,
                files,
                &options,
            )
            .unwrap();
            assert_eq!(layout.fat_type, fat_type);
        }

        let output = run(Command::new("timeout")
            .args(["--kill-after=10", "300", "qemu-system-x86_64"])
            .args([
                "-machine",
                "q35",
                "-m",
                "256",
                "-nographic",
                "-net",
                "none",
                "-no-reboot",
            ])
            .args(["-bios", "/usr/share/ovmf/OVMF.fd", "-drive"])
            .arg(format!("file={},format=raw,if=virtio", path.display())));
        let start = output.rfind("START-OF-TEST").expect("the shell ran startup.nsh");
        let shown = &output[start..];
        for name in [
            "loader.conf",
            "Nested File.txt",
            "kernel",
            "syslinux.cfg",
            "Mixed Case Name.Text",
        ] {
            assert!(
                shown.contains(&format!("content of {name}")),
                "{name} not shown:\n{shown}"
            );
        }
        assert!(shown.contains("END-OF-TEST"), "{shown}");
    }
}
