//! A FAT16 or FAT32 filesystem holding a few files, each in one contiguous run of clusters, written
//! with positioned writes into a region of an image file.
//!
//! What it writes, and why:
//! - **The FAT type follows the cluster count**, as the Microsoft FAT specification (and syslinux,
//!   which decides by the count too) requires: FAT16 for 4085–65524 clusters, FAT32 from 65525. A
//!   margin is kept from both limits (syslinux's installer counts the FAT16 root directory as one
//!   sector, not 32, so it sees up to 31 clusters more than there are). FAT32 is preferred whenever
//!   the size allows it (from 34,098,688 bytes, 32.5 MiB, up) and it holds the files: the UEFI
//!   specification asks for FAT32 on a hard disk's EFI System Partition, FAT12/16 being for
//!   removable media. Cluster sizes follow the specification's tables (FAT32: 512 bytes up to
//!   260 MB, 4 KiB up to 8 GiB, ...; FAT16: 1 KiB up to 16 MB, 2 KiB up to 128 MB, ...), smaller or
//!   larger ones being used when the preferred one does not give a valid count or does not hold
//!   the files. FAT12 is not written: the smallest
//!   filesystem is about 2.1 MB ([`min_size`]); [`min_size_fat32`] gives the smallest FAT32 one.
//! - **Names**: an uppercase 8.3 name (`BOOTX64.EFI`) is stored as is; an 8.3 name whose base and
//!   extension are each in one case (`syslinux.cfg`, `kernel`, `initrd.img`) gets the Windows NT
//!   lowercase flags, as Linux writes them (Linux, OVMF, mtools and syslinux read them); any other
//!   name (`loader.conf`, `Linux`) gets VFAT long-name entries and a generated short alias
//!   (`LOADER~1.CON`, `LINUX`). FAT names are case-insensitive: two paths that differ only in case
//!   are an error.
//! - **Layout**: entries sorted by name; clusters allocated from cluster 2 in order: directories
//!   (the FAT32 root first) then files, in path order. The same files give the same bytes whatever
//!   their order in the input. The data region is aligned to the cluster size (relative to the
//!   filesystem's start) by padding the reserved sectors.
//! - **Boot sector**: a standard BPB and extended BPB (see [`FatType::boot_code_offset`] for the
//!   byte ranges a boot loader installer may replace), a boot code stub that hands back to the BIOS
//!   (`int 18h`), both FAT copies, and for FAT32 the FSInfo sector (sector 1) with backups of both
//!   sectors at sectors 6 and 7.
//! - **Times**: every timestamp is [`FatOptions::time`].
//!
//! Only metadata and file contents are written: **the region must read as zeros** beforehand (a
//! file just created or extended with `set_len`, or a hole). Free FAT entries, free clusters,
//! unused reserved sectors and the slack after each file's last byte are not written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::content::Content;

/// Bytes per sector: the only size every FAT reader accepts.
const SECTOR: u64 = 512;
/// Bytes per directory entry.
const ENTRY: usize = 32;
/// Sectors per cluster we use: 512 bytes to 32 KiB (64 KiB clusters are not portable).
const CLUSTER_SECTORS: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Clusters kept away from the limits of the FAT types.
const FAT16_MIN_CLUSTERS: u32 = 4085 + 16;
const FAT16_MAX_CLUSTERS: u32 = 65524 - 64;
const FAT32_MIN_CLUSTERS: u32 = 65525 + 16;
const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF4 - 16;
/// Media descriptor of a fixed disk, also the low byte of FAT entry 0.
const MEDIA: u8 = 0xF8;
/// Root directory entries of a FAT16 filesystem, the standard value (more when the root needs it).
const FAT16_ROOT_ENTRIES: u32 = 512;
/// Reserved sectors before the first FAT (before alignment padding).
const FAT16_RESERVED: u32 = 1;
const FAT32_RESERVED: u32 = 32;
/// FAT32: sector of the FSInfo structure and of the backup boot sector.
const FSINFO_SECTOR: u64 = 1;
const BACKUP_BOOT_SECTOR: u64 = 6;
/// Largest size of a file on FAT.
const MAX_FILE_SIZE: u64 = 0xFFFF_FFFF;
/// Most entries in one directory (the specification's limit: 2 MiB of entries).
const MAX_DIR_ENTRIES: u64 = 65536;
/// Boot code stub: `int 18h` (no bootable disk: the BIOS tries the next device), then `hlt` forever.
const BOOT_STUB: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_HIDDEN: u8 = 0x02;
const ATTR_SYSTEM: u8 = 0x04;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_LONG_NAME: u8 = 0x0F;
/// Windows NT flags in a short entry's byte 12: the base name, the extension is lowercase.
const CASE_LOWER_BASE: u8 = 0x08;
const CASE_LOWER_EXT: u8 = 0x10;

/// Attribute bits of a file, beyond the archive bit which every file gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Read-only.
    pub read_only: bool,
    /// Hidden from directory listings.
    pub hidden: bool,
    /// A system file (syslinux marks `ldlinux.sys` read-only, hidden and system).
    pub system: bool,
}

impl Attributes {
    fn bits(self) -> u8 {
        ATTR_ARCHIVE
            | if self.read_only { ATTR_READ_ONLY } else { 0 }
            | if self.hidden { ATTR_HIDDEN } else { 0 }
            | if self.system { ATTR_SYSTEM } else { 0 }
    }
}

/// A file to place on the filesystem.
#[derive(Debug, Clone, Copy)]
pub struct FatFile<'a> {
    /// Its path, `/`-separated (`EFI/BOOT/BOOTX64.EFI`; a leading `/` is ignored); the directories
    /// on the way are created.
    pub path: &'a str,
    /// Its bytes.
    pub content: Content<'a>,
    /// Its attributes.
    pub attributes: Attributes,
}

impl<'a> FatFile<'a> {
    /// A file with no attributes beyond archive.
    pub fn new(path: &'a str, content: Content<'a>) -> FatFile<'a> {
        FatFile {
            path,
            content,
            attributes: Attributes::default(),
        }
    }
}

/// What identifies the filesystem, all given so that the bytes are reproducible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FatOptions {
    /// Volume label: up to 11 characters among uppercase letters, digits, spaces and
    /// `!#$%&'()-@^_{}~`; empty for none ("NO NAME" in the boot sector, like mkfs.fat).
    pub label: String,
    /// Volume serial number.
    pub volume_id: u32,
    /// Every timestamp, in seconds since 1970-01-01 UTC, stored as UTC (FAT has no time zone),
    /// clamped to FAT's range 1980–2107, with FAT's two-second resolution.
    pub time: u64,
    /// The filesystem's first sector on the disk (the partition's first LBA), recorded in the boot
    /// sector for boot code; 0 for a filesystem outside a partition table (an El Torito image).
    pub hidden_sectors: u32,
}

/// The FAT variant written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    /// 16-bit FAT entries, a fixed root directory area.
    Fat16,
    /// 32-bit FAT entries, the root directory in clusters.
    Fat32,
}

impl FatType {
    /// Where the boot code starts in the boot sector, i.e. where the BPB ends: bytes 0..3 are the
    /// jump, 3..11 the OEM name, 11..36 the BPB, then the extended BPB up to 62 (FAT16) or 90
    /// (FAT32); boot code runs from there up to 510, and 510..512 is the signature 55 AA.
    /// (syslinux's installer replaces bytes 0..11 and 90..510 for both types.)
    pub fn boot_code_offset(self) -> usize {
        match self {
            FatType::Fat16 => 62,
            FatType::Fat32 => 90,
        }
    }

    fn entry_bytes(self) -> u64 {
        match self {
            FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        }
    }

    fn base_reserved(self) -> u32 {
        match self {
            FatType::Fat16 => FAT16_RESERVED,
            FatType::Fat32 => FAT32_RESERVED,
        }
    }

    fn cluster_range(self) -> (u32, u32) {
        match self {
            FatType::Fat16 => (FAT16_MIN_CLUSTERS, FAT16_MAX_CLUSTERS),
            FatType::Fat32 => (FAT32_MIN_CLUSTERS, FAT32_MAX_CLUSTERS),
        }
    }

    fn end_of_chain(self) -> u32 {
        match self {
            FatType::Fat16 => 0xFFFF,
            FatType::Fat32 => 0x0FFF_FFFF,
        }
    }

    /// The cluster size the specification's tables give for a volume of `sectors`.
    fn preferred_cluster_sectors(self, sectors: u64) -> u32 {
        const MB: u64 = 1024 * 1024 / SECTOR;
        match self {
            // FAT32: up to 260 MB 512 bytes, 8 GB 4K, 16 GB 8K, 32 GB 16K, then 32K.
            FatType::Fat32 => match sectors {
                s if s <= 532_480 => 1,
                s if s <= 16_777_216 => 8,
                s if s <= 33_554_432 => 16,
                s if s <= 67_108_864 => 32,
                _ => 64,
            },
            // FAT16: up to 16 MB 1K, 128 MB 2K, 256 MB 4K, 512 MB 8K, 1 GB 16K, then 32K.
            FatType::Fat16 => match sectors {
                s if s <= 16 * MB => 2,
                s if s <= 128 * MB => 4,
                s if s <= 256 * MB => 8,
                s if s <= 512 * MB => 16,
                s if s <= 1024 * MB => 32,
                _ => 64,
            },
        }
    }
}

/// Where a file's bytes are in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset in the image file (not in the filesystem); 0 for an empty file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What [`write()`] wrote: the geometry a boot loader installer needs and where each file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatLayout {
    /// FAT16 or FAT32.
    pub fat_type: FatType,
    /// Byte offset of the boot sector (the filesystem's start) in the image.
    pub offset: u64,
    /// Bytes the filesystem spans (its sector count times 512).
    pub size: u64,
    /// Bytes per sector (512).
    pub bytes_per_sector: u32,
    /// Sectors per cluster.
    pub sectors_per_cluster: u32,
    /// FAT32: byte offset in the image of the backup boot sector, which must stay equal to the
    /// boot sector (patch both).
    pub backup_boot_sector: Option<u64>,
    files: BTreeMap<String, Extent>,
}

impl FatLayout {
    /// Where the file written at `path` (as given to [`write()`]) is.
    pub fn file(&self, path: &str) -> Option<Extent> {
        self.files.get(path.strip_prefix('/').unwrap_or(path)).copied()
    }
}

/// Why a FAT filesystem could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// The files do not fit.
    #[error(
        "the files need a FAT filesystem of at least {needed} bytes ({} MiB), but {given} bytes were given: give a bigger size",
        needed.div_ceil(1024 * 1024)
    )]
    TooSmall {
        /// The smallest size from `given` up that holds the files.
        needed: u64,
        /// The size given.
        given: u64,
    },
    /// The size is beyond FAT32's 2 TiB.
    #[error("a FAT filesystem of {given} bytes is too large: FAT32 ends at 2 TiB")]
    TooLarge {
        /// The size given.
        given: u64,
    },
    /// No FAT16 or FAT32 filesystem can hold the files.
    #[error("no FAT16 or FAT32 filesystem (at most 2 TiB) can hold these files")]
    Unplaceable,
    /// A path that FAT cannot hold.
    #[error("cannot place {path:?} on a FAT filesystem: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Two paths name the same file or directory.
    #[error("{path:?} clashes with {other:?}: {reason}")]
    Conflict {
        /// The later path.
        path: String,
        /// The earlier one.
        other: String,
        /// How they clash.
        reason: &'static str,
    },
    /// A file over 4 GiB - 1 byte.
    #[error("{path:?} has {len} bytes, more than a FAT file can hold (4 GiB - 1)")]
    FileTooLarge {
        /// The path.
        path: String,
        /// Its length.
        len: u64,
    },
    /// A volume label FAT cannot hold.
    #[error("invalid FAT volume label {label:?}: {reason}")]
    InvalidLabel {
        /// The label.
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// Reading a file's content or writing the image failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// The smallest size in bytes (a multiple of 512) of a filesystem that [`write()`] can make for
/// `files` with a volume label.
pub fn min_size(files: &[FatFile]) -> Result<u64, FatError> {
    let tree = Tree::build(files, true)?;
    tree.smallest_fit(0)
        .map(|sectors| sectors * SECTOR)
        .ok_or(FatError::Unplaceable)
}

/// The smallest size in bytes (a multiple of 512, at least 34,098,688) of a filesystem that
/// [`write()`] makes FAT32 for `files` with a volume label: for an EFI System Partition, which the
/// UEFI specification wants FAT32 on hard disks ([`min_size`] may give a smaller FAT16 one).
pub fn min_size_fat32(files: &[FatFile]) -> Result<u64, FatError> {
    let tree = Tree::build(files, true)?;
    tree.smallest_fit_of(&[FatType::Fat32], 0)
        .map(|sectors| sectors * SECTOR)
        .ok_or(FatError::Unplaceable)
}

/// Writes a FAT filesystem of `size` bytes (rounded down to a multiple of 512) holding `files` into
/// `image` from byte `offset`, and tells where everything went.
///
/// The region `offset..offset + size` must read as zeros (see the [module](self) documentation)
/// and the image must already be that long (`set_len`); nothing outside the region is written.
/// Nothing is written either when the files do not fit, or a path or the label is invalid.
pub fn write(
    image: &File,
    offset: u64,
    size: u64,
    files: &[FatFile],
    options: &FatOptions,
) -> Result<FatLayout, FatError> {
    let label = parse_label(&options.label)?;
    let tree = Tree::build(files, label.is_some())?;
    let sectors = size / SECTOR;
    if sectors > u64::from(u32::MAX) {
        return Err(FatError::TooLarge { given: size });
    }
    let Some(geometry) = tree.choose(sectors) else {
        return Err(match tree.smallest_fit(sectors) {
            Some(needed) => FatError::TooSmall {
                needed: needed * SECTOR,
                given: size,
            },
            None => FatError::Unplaceable,
        });
    };
    let allocation = tree.allocate(&geometry);
    let stamp = Stamp::new(options.time);
    let writer = Writer {
        image,
        offset,
        geometry: &geometry,
    };

    let boot = boot_sector(&geometry, options, label);
    writer.put(0, &boot, "the boot sector")?;
    if geometry.fat_type == FatType::Fat32 {
        let used = allocation.next_free - 2;
        let next_free = if allocation.next_free < geometry.clusters + 2 {
            allocation.next_free
        } else {
            u32::MAX
        };
        let info = fsinfo(geometry.clusters - used, next_free);
        writer.put(FSINFO_SECTOR * SECTOR, &info, "the FSInfo sector")?;
        writer.put(BACKUP_BOOT_SECTOR * SECTOR, &boot, "the backup boot sector")?;
        writer.put(
            (BACKUP_BOOT_SECTOR + FSINFO_SECTOR) * SECTOR,
            &info,
            "the backup FSInfo sector",
        )?;
    }
    writer.fats(&allocation)?;
    for (index, dir) in tree.dirs.iter().enumerate() {
        let bytes = tree.directory(index, &allocation, geometry.cluster_bytes(), &stamp, label);
        let at = match allocation.dirs[index] {
            Run { first: 0, .. } => geometry.root_dir_start(),
            run => geometry.cluster_offset(run.first),
        };
        writer.put(at, &bytes, &format!("the directory {:?}", dir.path))?;
    }

    let mut extents = BTreeMap::new();
    for (file, run) in tree.files.iter().zip(&allocation.files) {
        let len = file.content.len();
        let offset = if len == 0 {
            0
        } else {
            offset + geometry.cluster_offset(run.first)
        };
        if len > 0 {
            file.content.write_at(image, offset).map_err(|source| FatError::Io {
                what: format!("copying {:?} into the FAT image", file.path),
                source,
            })?;
        }
        extents.insert(file.path.clone(), Extent { offset, len });
    }

    Ok(FatLayout {
        fat_type: geometry.fat_type,
        offset,
        size: u64::from(geometry.total) * SECTOR,
        bytes_per_sector: SECTOR as u32,
        sectors_per_cluster: geometry.cluster_sectors,
        backup_boot_sector: (geometry.fat_type == FatType::Fat32).then_some(offset + BACKUP_BOOT_SECTOR * SECTOR),
        files: extents,
    })
}

/// The label's 11 bytes, or None for no label.
fn parse_label(label: &str) -> Result<Option<[u8; 11]>, FatError> {
    if label.is_empty() {
        return Ok(None);
    }
    let invalid = |reason| FatError::InvalidLabel {
        label: label.to_string(),
        reason,
    };
    if label.len() > 11 {
        return Err(invalid("longer than 11 characters"));
    }
    if label.starts_with(' ') {
        return Err(invalid("it starts with a space"));
    }
    if !label.bytes().all(|b| b == b' ' || is_short_char(b)) {
        return Err(invalid(
            "only uppercase letters, digits, spaces and !#$%&'()-@^_{}~ are allowed",
        ));
    }
    let mut bytes = [b' '; 11];
    bytes[..label.len()].copy_from_slice(label.as_bytes());
    Ok(Some(bytes))
}

/// Whether `b` may appear in a short (8.3) name as it is stored (uppercase).
fn is_short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'()-@^_`{}~".contains(&b)
}

/// A file's or directory's name component: None if valid, else why not.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty path component (a doubled or trailing '/')".into());
    }
    if name == "." || name == ".." {
        return Some("'.' and '..' components are not allowed".into());
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some(format!("{name:?} ends with '.' or a space, which FAT drops"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| (c as u32) < 0x20 || c == '\u{7f}' || "\"*:<>?\\|".contains(c))
    {
        return Some(format!("{name:?} contains {c:?}, not allowed in FAT names"));
    }
    if name.encode_utf16().count() > 255 {
        return Some(format!("{name:?} is longer than FAT's 255 characters"));
    }
    None
}

/// The 11-byte short form and NT case flags of a name that is itself a valid 8.3 name, each part
/// in one case.
fn exact_short_name(name: &str) -> Option<([u8; 11], u8)> {
    let (base, ext) = match name.split_once('.') {
        Some((base, ext)) => (base, ext),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || ext.contains('.') {
        return None;
    }
    let mut flags = 0;
    for (part, flag) in [(base, CASE_LOWER_BASE), (ext, CASE_LOWER_EXT)] {
        let lower = part.bytes().any(|b| b.is_ascii_lowercase());
        let upper = part.bytes().any(|b| b.is_ascii_uppercase());
        if lower && upper {
            return None;
        }
        if !part.bytes().all(|b| is_short_char(b.to_ascii_uppercase())) {
            return None;
        }
        if lower {
            flags |= flag;
        }
    }
    let mut short = [b' '; 11];
    short[..base.len()].copy_from_slice(base.to_ascii_uppercase().as_bytes());
    short[8..8 + ext.len()].copy_from_slice(ext.to_ascii_uppercase().as_bytes());
    Some((short, flags))
}

/// The short alias of a long name, unique among `taken` (the specification's basis name with a
/// numeric tail `~N` when the name does not fit 8.3 or lost characters).
fn short_alias(name: &str, taken: &HashSet<[u8; 11]>) -> [u8; 11] {
    let trimmed = name.trim_start_matches('.');
    let (base_part, ext_part) = match trimmed.rfind('.') {
        Some(dot) => (&trimmed[..dot], &trimmed[dot + 1..]),
        None => (trimmed, ""),
    };
    let mut lossy = name.starts_with('.');
    let mut convert = |part: &str| -> Vec<u8> {
        let mut out = Vec::new();
        for c in part.chars() {
            if c == ' ' || c == '.' {
                lossy = true;
                continue;
            }
            let b = if c.is_ascii() {
                (c as u8).to_ascii_uppercase()
            } else {
                b'_'
            };
            if is_short_char(b) {
                out.push(b);
            } else {
                lossy = true;
                out.push(b'_');
            }
        }
        out
    };
    let mut base = convert(base_part);
    let mut ext = convert(ext_part);
    if base.is_empty() {
        base.push(b'_');
        lossy = true;
    }
    if base.len() > 8 || ext.len() > 3 {
        lossy = true;
    }
    ext.truncate(3);
    let make = |base: &[u8]| {
        let mut short = [b' '; 11];
        short[..base.len()].copy_from_slice(base);
        short[8..8 + ext.len()].copy_from_slice(&ext);
        short
    };
    if !lossy {
        let short = make(&base);
        if !taken.contains(&short) {
            return short;
        }
    }
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut candidate = base[..keep].to_vec();
        candidate.extend_from_slice(tail.as_bytes());
        let short = make(&candidate);
        if !taken.contains(&short) {
            return short;
        }
    }
    unreachable!("a directory holds at most 65536 entries, fewer than the numeric tails")
}

/// The checksum of a short name that each of its long-name entries carries.
fn short_name_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| (sum >> 1).wrapping_add(sum << 7).wrapping_add(b))
}

/// FAT's date, time and 10 ms creation fraction.
struct Stamp {
    date: u16,
    time: u16,
    tenths: u8,
}

impl Stamp {
    fn new(unix: u64) -> Stamp {
        const FAT_EPOCH: u64 = 315_532_800; // 1980-01-01T00:00:00Z
        let seconds = unix.max(FAT_EPOCH);
        let days = seconds / 86_400;
        let of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        if year > 2107 {
            // The last representable moment: 2107-12-31 23:59:58.
            return Stamp {
                date: (127 << 9) | (12 << 5) | 31,
                time: (23 << 11) | (59 << 5) | 29,
                tenths: 100,
            };
        }
        let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        Stamp {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((hour << 11) | (minute << 5) | (second / 2)) as u16,
            tenths: ((second % 2) * 100) as u8,
        }
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so that leap days fall at the end of the 400-year era's years.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// A directory's entry for a child.
struct Child {
    name: String,
    target: Target,
    short: [u8; 11],
    case_flags: u8,
    /// The UTF-16 long name, empty when the short name says it all.
    long: Vec<u16>,
}

impl Child {
    fn entry_count(&self) -> u64 {
        1 + (self.long.len() as u64).div_ceil(13)
    }
}

#[derive(Clone, Copy)]
enum Target {
    Dir(usize),
    File(usize),
}

struct DirNode {
    /// Its path, for messages ("/" for the root).
    path: String,
    parent: usize,
    children: Vec<Child>,
}

struct FileNode<'f> {
    /// Its path without a leading '/'.
    path: String,
    content: Content<'f>,
    attributes: u8,
}

/// The files and directories to write, in their canonical order: directories in depth-first order
/// from the root (index 0), files in path order.
struct Tree<'f> {
    dirs: Vec<DirNode>,
    files: Vec<FileNode<'f>>,
    /// Whether the root holds a volume label entry.
    label: bool,
}

/// A run of clusters; `first` 0 for none (an empty file, the FAT16 root).
#[derive(Clone, Copy, Default)]
struct Run {
    first: u32,
    count: u32,
}

struct Allocation {
    dirs: Vec<Run>,
    files: Vec<Run>,
    /// The first cluster not allocated.
    next_free: u32,
}

/// Sizes of the regions of one filesystem.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    fat_type: FatType,
    cluster_sectors: u32,
    reserved: u32,
    fat_sectors: u32,
    root_entries: u32,
    total: u32,
    clusters: u32,
}

impl Geometry {
    /// Computes the smallest FAT that covers the clusters of `total` sectors, or None if there is
    /// no room for even one cluster.
    fn new(fat_type: FatType, cluster_sectors: u32, root_entries: u32, total: u64) -> Option<Geometry> {
        let total32 = u32::try_from(total).ok()?;
        let spc = u64::from(cluster_sectors);
        let base = u64::from(fat_type.base_reserved());
        let root = u64::from(root_entries) * ENTRY as u64 / SECTOR;
        let entry = fat_type.entry_bytes();
        // For a FAT of `fat` sectors: the data region's start (aligned to the cluster size) and
        // the number of clusters.
        let layout = |fat: u64| {
            let data_start = (base + 2 * fat + root).next_multiple_of(spc);
            let clusters = total.saturating_sub(data_start) / spc;
            (data_start, clusters)
        };
        let covers = |fat: u64| (layout(fat).1 + 2) * entry <= fat * SECTOR;
        let most_clusters = total.checked_sub(base + root)? / spc;
        let mut high = ((most_clusters + 2) * entry).div_ceil(SECTOR); // always covers
        let mut low = 0; // never covers
        while high - low > 1 {
            let middle = (low + high) / 2;
            if covers(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        let (data_start, clusters) = layout(high);
        if clusters == 0 {
            return None;
        }
        Some(Geometry {
            fat_type,
            cluster_sectors,
            reserved: u32::try_from(data_start - 2 * high - root).ok()?,
            fat_sectors: u32::try_from(high).ok()?,
            root_entries,
            total: total32,
            clusters: u32::try_from(clusters).ok()?,
        })
    }

    fn valid(&self) -> bool {
        let (min, max) = self.fat_type.cluster_range();
        (min..=max).contains(&self.clusters)
    }

    fn cluster_bytes(&self) -> u64 {
        u64::from(self.cluster_sectors) * SECTOR
    }

    fn fat_start(&self, copy: u64) -> u64 {
        (u64::from(self.reserved) + copy * u64::from(self.fat_sectors)) * SECTOR
    }

    fn root_dir_start(&self) -> u64 {
        self.fat_start(2)
    }

    /// Byte offset in the filesystem of cluster `n` (n ≥ 2).
    fn cluster_offset(&self, n: u32) -> u64 {
        self.root_dir_start() + u64::from(self.root_entries) * ENTRY as u64 + u64::from(n - 2) * self.cluster_bytes()
    }
}

impl<'f> Tree<'f> {
    fn build(files: &[FatFile<'f>], label: bool) -> Result<Tree<'f>, FatError> {
        let mut sorted = Vec::with_capacity(files.len());
        for file in files {
            let path = file.path.strip_prefix('/').unwrap_or(file.path);
            let components: Vec<&str> = path.split('/').collect();
            if let Some(reason) = components.iter().find_map(|c| name_problem(c)) {
                return Err(FatError::InvalidPath {
                    path: file.path.to_string(),
                    reason,
                });
            }
            if file.content.len() > MAX_FILE_SIZE {
                return Err(FatError::FileTooLarge {
                    path: file.path.to_string(),
                    len: file.content.len(),
                });
            }
            sorted.push((components, path, file));
        }
        sorted.sort_by(|a, b| a.0.cmp(&b.0));

        let mut tree = Tree {
            dirs: vec![DirNode {
                path: "/".into(),
                parent: 0,
                children: Vec::new(),
            }],
            files: Vec::new(),
            label,
        };
        // (directory, uppercase name) -> the child's path, for case-insensitive clashes.
        let mut seen: HashMap<(usize, String), (Target, String)> = HashMap::new();
        for (components, path, file) in sorted {
            let mut dir = 0;
            let mut so_far = String::new();
            for (i, &name) in components.iter().enumerate() {
                if !so_far.is_empty() {
                    so_far.push('/');
                }
                so_far.push_str(name);
                let last = i + 1 == components.len();
                let key = (dir, name.to_uppercase());
                match seen.get(&key) {
                    Some((Target::Dir(existing), other)) if !last && *other == so_far => dir = *existing,
                    Some((target, other)) => {
                        let reason = match (target, last) {
                            _ if *other != so_far => "FAT names are case-insensitive: they name the same entry",
                            (Target::File(_), true) => "the same file twice",
                            _ => "one path cannot be both a file and a directory",
                        };
                        return Err(FatError::Conflict {
                            path: path.to_string(),
                            other: other.clone(),
                            reason,
                        });
                    }
                    None => {
                        let target = if last {
                            tree.files.push(FileNode {
                                path: path.to_string(),
                                content: file.content,
                                attributes: file.attributes.bits(),
                            });
                            Target::File(tree.files.len() - 1)
                        } else {
                            tree.dirs.push(DirNode {
                                path: so_far.clone(),
                                parent: dir,
                                children: Vec::new(),
                            });
                            Target::Dir(tree.dirs.len() - 1)
                        };
                        tree.dirs[dir].children.push(Child {
                            name: name.to_string(),
                            target,
                            short: [0; 11],
                            case_flags: 0,
                            long: Vec::new(),
                        });
                        seen.insert(key, (target, so_far.clone()));
                        if let Target::Dir(new) = target {
                            dir = new;
                        }
                    }
                }
            }
        }

        for dir in &mut tree.dirs {
            dir.children.sort_by(|a, b| a.name.cmp(&b.name));
            let mut taken = HashSet::new();
            for child in &mut dir.children {
                if let Some((short, flags)) = exact_short_name(&child.name) {
                    child.short = short;
                    child.case_flags = flags;
                    taken.insert(short);
                }
            }
            for child in &mut dir.children {
                if child.short == [0; 11] {
                    child.short = short_alias(&child.name, &taken);
                    child.long = child.name.encode_utf16().collect();
                    taken.insert(child.short);
                }
            }
        }
        for (index, dir) in tree.dirs.iter().enumerate() {
            if tree.entry_count(index) > MAX_DIR_ENTRIES {
                return Err(FatError::InvalidPath {
                    path: dir.path.clone(),
                    reason: format!("more entries in one directory than FAT's {MAX_DIR_ENTRIES}"),
                });
            }
        }
        Ok(tree)
    }

    /// Directory entries of a directory, with ".", ".." and the volume label.
    fn entry_count(&self, dir: usize) -> u64 {
        let own = if dir == 0 { u64::from(self.label) } else { 2 };
        own + self.dirs[dir].children.iter().map(Child::entry_count).sum::<u64>()
    }

    fn root_entries(&self, fat_type: FatType) -> u32 {
        match fat_type {
            // At most 65536 entries (checked in build): fits.
            FatType::Fat16 => (self.entry_count(0).next_multiple_of(16) as u32).max(FAT16_ROOT_ENTRIES),
            FatType::Fat32 => 0,
        }
    }

    /// Clusters of each directory (0 for the FAT16 root) and of each file.
    fn cluster_counts(&self, fat_type: FatType, cluster_sectors: u32) -> (Vec<u64>, Vec<u64>) {
        let cluster = u64::from(cluster_sectors) * SECTOR;
        let dirs = (0..self.dirs.len())
            .map(|d| {
                if d == 0 && fat_type == FatType::Fat16 {
                    0
                } else {
                    (self.entry_count(d) * ENTRY as u64).div_ceil(cluster).max(1)
                }
            })
            .collect();
        let files = self.files.iter().map(|f| f.content.len().div_ceil(cluster)).collect();
        (dirs, files)
    }

    fn clusters_needed(&self, fat_type: FatType, cluster_sectors: u32) -> u64 {
        let (dirs, files) = self.cluster_counts(fat_type, cluster_sectors);
        dirs.iter().chain(&files).sum()
    }

    /// The filesystem written on `sectors`: the first valid layout that holds the files, FAT32
    /// before FAT16, each with its preferred cluster size first, then smaller, then larger ones.
    fn choose(&self, sectors: u64) -> Option<Geometry> {
        for fat_type in [FatType::Fat32, FatType::Fat16] {
            let preferred = fat_type.preferred_cluster_sectors(sectors);
            let smaller = CLUSTER_SECTORS.iter().rev().filter(|&&s| s < preferred);
            let larger = CLUSTER_SECTORS.iter().filter(|&&s| s > preferred);
            for &spc in std::iter::once(&preferred).chain(smaller).chain(larger) {
                if let Some(geometry) = self.fits(fat_type, spc, sectors) {
                    return Some(geometry);
                }
            }
        }
        None
    }

    /// The layout of this type and cluster size on `sectors`, if valid and holding the files.
    fn fits(&self, fat_type: FatType, cluster_sectors: u32, sectors: u64) -> Option<Geometry> {
        let geometry = Geometry::new(fat_type, cluster_sectors, self.root_entries(fat_type), sectors)?;
        (geometry.valid() && u64::from(geometry.clusters) >= self.clusters_needed(fat_type, cluster_sectors))
            .then_some(geometry)
    }

    /// The smallest sector count from `from` up on which [`Tree::choose`] finds a layout.
    fn smallest_fit(&self, from: u64) -> Option<u64> {
        self.smallest_fit_of(&[FatType::Fat32, FatType::Fat16], from)
    }

    /// The smallest sector count from `from` up on which a layout of one of `types` holds the
    /// files (and [`Tree::choose`] finds one of these types, FAT32 being tried first).
    fn smallest_fit_of(&self, types: &[FatType], from: u64) -> Option<u64> {
        types
            .iter()
            .copied()
            .flat_map(|t| CLUSTER_SECTORS.map(|spc| (t, spc)))
            .filter_map(|(t, spc)| self.smallest_fit_with(t, spc, from))
            .min()
    }

    fn smallest_fit_with(&self, fat_type: FatType, cluster_sectors: u32, from: u64) -> Option<u64> {
        let (min, max) = fat_type.cluster_range();
        let target = self.clusters_needed(fat_type, cluster_sectors).max(u64::from(min));
        if target > u64::from(max) {
            return None;
        }
        let root_entries = self.root_entries(fat_type);
        let enough = |sectors: u64| {
            Geometry::new(fat_type, cluster_sectors, root_entries, sectors)
                .is_some_and(|g| u64::from(g.clusters) >= target)
        };
        // The cluster count grows with the size (but for a dip of one cluster where the FAT
        // grows): find where it reaches the target, then check the layout from there.
        let limit = u64::from(u32::MAX);
        let mut high = from.max(1);
        while !enough(high) {
            if high >= limit {
                return None;
            }
            high = (high * 2).min(limit);
        }
        let mut low = from;
        if !enough(low) {
            while high - low > 1 {
                let middle = (low + high) / 2;
                if enough(middle) {
                    high = middle;
                } else {
                    low = middle;
                }
            }
            low = high;
        }
        (low..=(low + 2 * u64::from(cluster_sectors) + 8).min(limit))
            .find(|&sectors| self.fits(fat_type, cluster_sectors, sectors).is_some())
    }

    /// Clusters of each directory and file, allocated in order from cluster 2.
    fn allocate(&self, geometry: &Geometry) -> Allocation {
        let (dirs, files) = self.cluster_counts(geometry.fat_type, geometry.cluster_sectors);
        let mut next = 2u32;
        let mut take = |count: u64| {
            // The counts were checked against the cluster count, a u32.
            let count = count as u32;
            if count == 0 {
                return Run::default();
            }
            let run = Run { first: next, count };
            next += count;
            run
        };
        let dirs = dirs.into_iter().map(&mut take).collect();
        let files = files.into_iter().map(&mut take).collect();
        Allocation {
            dirs,
            files,
            next_free: next,
        }
    }

    /// The bytes of directory `index`: its entries, then zeros up to the end of its clusters (or of
    /// the FAT16 root directory area).
    fn directory(
        &self,
        index: usize,
        allocation: &Allocation,
        cluster_bytes: u64,
        stamp: &Stamp,
        label: Option<[u8; 11]>,
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        let run = allocation.dirs[index];
        if index == 0 {
            if let Some(label) = label {
                bytes.extend_from_slice(&short_entry(&label, ATTR_VOLUME_ID, 0, 0, 0, stamp));
            }
        } else {
            let parent = self.dirs[index].parent;
            let parent_cluster = if parent == 0 { 0 } else { allocation.dirs[parent].first };
            bytes.extend_from_slice(&short_entry(b".          ", ATTR_DIRECTORY, 0, run.first, 0, stamp));
            bytes.extend_from_slice(&short_entry(
                b"..         ",
                ATTR_DIRECTORY,
                0,
                parent_cluster,
                0,
                stamp,
            ));
        }
        for child in &self.dirs[index].children {
            let (attributes, run, size) = match child.target {
                Target::Dir(d) => (ATTR_DIRECTORY, allocation.dirs[d], 0),
                Target::File(f) => {
                    let file = &self.files[f];
                    // At most MAX_FILE_SIZE (checked in build).
                    (file.attributes, allocation.files[f], file.content.len() as u32)
                }
            };
            let checksum = short_name_checksum(&child.short);
            let pieces = child.long.len().div_ceil(13);
            for piece in (0..pieces).rev() {
                bytes.extend_from_slice(&long_entry(&child.long, piece, piece + 1 == pieces, checksum));
            }
            bytes.extend_from_slice(&short_entry(
                &child.short,
                attributes,
                child.case_flags,
                run.first,
                size,
                stamp,
            ));
        }
        let capacity = if run.count == 0 {
            // The FAT16 root directory area.
            self.root_entries(FatType::Fat16) as usize * ENTRY
        } else {
            run.count as usize * cluster_bytes as usize
        };
        bytes.resize(capacity.max(bytes.len()), 0);
        bytes
    }
}

/// A 32-byte short directory entry.
fn short_entry(name: &[u8; 11], attributes: u8, case_flags: u8, cluster: u32, size: u32, stamp: &Stamp) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attributes;
    e[12] = case_flags;
    e[13] = stamp.tenths;
    e[14..16].copy_from_slice(&stamp.time.to_le_bytes()); // created
    e[16..18].copy_from_slice(&stamp.date.to_le_bytes());
    e[18..20].copy_from_slice(&stamp.date.to_le_bytes()); // accessed
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&stamp.time.to_le_bytes()); // written
    e[24..26].copy_from_slice(&stamp.date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// Long-name entry number `piece` (from 0) of `name`: 13 UTF-16 units, the name ending with a NUL
/// then 0xFFFF padding.
fn long_entry(name: &[u16], piece: usize, last: bool, checksum: u8) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0] = (piece as u8 + 1) | if last { 0x40 } else { 0 };
    e[11] = ATTR_LONG_NAME;
    e[13] = checksum;
    const SLOTS: [usize; 13] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
    for (i, slot) in SLOTS.iter().enumerate() {
        let at = piece * 13 + i;
        let unit = match at.cmp(&name.len()) {
            std::cmp::Ordering::Less => name[at],
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 0xFFFF,
        };
        e[*slot..*slot + 2].copy_from_slice(&unit.to_le_bytes());
    }
    e
}

/// The boot sector: jump, OEM name, BPB, extended BPB, boot stub, signature.
fn boot_sector(g: &Geometry, options: &FatOptions, label: Option<[u8; 11]>) -> [u8; 512] {
    let mut s = [0u8; 512];
    let code = g.fat_type.boot_code_offset();
    s[..3].copy_from_slice(&[0xEB, (code - 2) as u8, 0x90]);
    // The OEM name the specification recommends as the most compatible.
    s[3..11].copy_from_slice(b"MSWIN4.1");
    s[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    s[13] = g.cluster_sectors as u8;
    s[14..16].copy_from_slice(&(g.reserved as u16).to_le_bytes());
    s[16] = 2; // FAT copies
    s[17..19].copy_from_slice(&(g.root_entries as u16).to_le_bytes());
    let small_total = g.fat_type == FatType::Fat16 && g.total <= 0xFFFF;
    s[19..21].copy_from_slice(&(if small_total { g.total as u16 } else { 0 }).to_le_bytes());
    s[21] = MEDIA;
    if g.fat_type == FatType::Fat16 {
        s[22..24].copy_from_slice(&(g.fat_sectors as u16).to_le_bytes());
    }
    s[24..26].copy_from_slice(&63u16.to_le_bytes()); // sectors per track
    s[26..28].copy_from_slice(&255u16.to_le_bytes()); // heads
    s[28..32].copy_from_slice(&options.hidden_sectors.to_le_bytes());
    s[32..36].copy_from_slice(&(if small_total { 0 } else { g.total }).to_le_bytes());
    let extended = match g.fat_type {
        FatType::Fat16 => 36,
        FatType::Fat32 => {
            s[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
            // 40: flags 0 (FATs mirrored), 42: version 0.0.
            s[44..48].copy_from_slice(&2u32.to_le_bytes()); // root directory cluster
            s[48..50].copy_from_slice(&(FSINFO_SECTOR as u16).to_le_bytes());
            s[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes());
            64
        }
    };
    s[extended] = 0x80; // drive number: first hard disk
    s[extended + 2] = 0x29; // the next three fields are present
    s[extended + 3..extended + 7].copy_from_slice(&options.volume_id.to_le_bytes());
    s[extended + 7..extended + 18].copy_from_slice(&label.unwrap_or(*b"NO NAME    "));
    s[extended + 18..extended + 26].copy_from_slice(match g.fat_type {
        FatType::Fat16 => b"FAT16   ",
        FatType::Fat32 => b"FAT32   ",
    });
    s[code..code + BOOT_STUB.len()].copy_from_slice(&BOOT_STUB);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// The FAT32 FSInfo sector.
fn fsinfo(free: u32, next_free: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&free.to_le_bytes());
    s[492..496].copy_from_slice(&next_free.to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

/// Positioned writes into the filesystem's region.
struct Writer<'a> {
    image: &'a File,
    offset: u64,
    geometry: &'a Geometry,
}

impl Writer<'_> {
    fn put(&self, at: u64, bytes: &[u8], what: &str) -> Result<(), FatError> {
        self.image
            .write_all_at(bytes, self.offset + at)
            .map_err(|source| FatError::Io {
                what: format!("writing {what} of the FAT image"),
                source,
            })
    }

    /// Both FAT copies, up to the sector holding the last allocated cluster's entry: each run is a
    /// chain of consecutive clusters ending with an end-of-chain mark.
    fn fats(&self, allocation: &Allocation) -> Result<(), FatError> {
        let fat_type = self.geometry.fat_type;
        let eoc = fat_type.end_of_chain();
        let media = u32::from(MEDIA) | (eoc & !0xFF);
        let mut runs: Vec<Run> = allocation.dirs.iter().chain(&allocation.files).copied().collect();
        runs.retain(|r| r.count > 0);
        runs.sort_by_key(|r| r.first);
        let entries = [media, eoc].into_iter().chain(runs.into_iter().flat_map(|r| {
            (r.first..r.first + r.count).map(move |c| if c + 1 == r.first + r.count { eoc } else { c + 1 })
        }));

        const CHUNK: usize = 64 * 1024;
        let mut buffer = Vec::with_capacity(CHUNK);
        let mut written = 0u64;
        let mut flush = |buffer: &mut Vec<u8>, all: bool| -> Result<(), FatError> {
            if all {
                buffer.resize(buffer.len().next_multiple_of(SECTOR as usize), 0);
            }
            for copy in 0..2 {
                self.put(self.geometry.fat_start(copy) + written, buffer, "a FAT")?;
            }
            written += buffer.len() as u64;
            buffer.clear();
            Ok(())
        };
        for entry in entries {
            match fat_type {
                FatType::Fat16 => buffer.extend_from_slice(&(entry as u16).to_le_bytes()),
                FatType::Fat32 => buffer.extend_from_slice(&entry.to_le_bytes()),
            }
            if buffer.len() == CHUNK {
                flush(&mut buffer, false)?;
            }
        }
        flush(&mut buffer, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// LinuxKit's fixed time, 2017-04-18T16:30:00Z.
    const LINUXKIT_TIME: u64 = 1_492_533_000;
    const MIB: u64 = 1024 * 1024;

    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn options() -> FatOptions {
        FatOptions {
            label: "MOBY".into(),
            volume_id: 0x1234_ABCD,
            time: LINUXKIT_TIME,
            hidden_sectors: 2048,
        }
    }

    fn run(command: &mut Command) -> Output {
        let output = command
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// A new sparse image of `len` bytes.
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

    /// `fsck.fat -n -v` on the filesystem at `offset` (copied out: fsck.fat takes no offset):
    /// it must exit 0 and report nothing to fix. Returns its output.
    fn fsck(image: &Path, offset: u64, size: u64) -> String {
        let checked = if offset == 0 {
            image.to_path_buf()
        } else {
            let copy = image.with_extension("fs");
            let mut from = File::open(image).unwrap();
            from.seek(SeekFrom::Start(offset)).unwrap();
            let mut to = File::create(&copy).unwrap();
            std::io::copy(&mut from.take(size), &mut to).unwrap();
            copy
        };
        let output = run(Command::new("fsck.fat").arg("-n").arg("-v").arg(&checked));
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        for bad in [
            "differences",
            "Warning",
            "warning",
            "ERROR",
            "Free cluster summary",
            "Orphan",
            "Dirty",
        ] {
            assert!(!text.contains(bad), "fsck.fat reported {bad:?}:\n{text}");
        }
        text
    }

    /// Every file copied back out with `mcopy -s`, as (path, bytes), sorted.
    fn read_back(image: &Path, offset: u64, dir: &Path) -> Vec<(String, Vec<u8>)> {
        let out = dir.join("out");
        std::fs::create_dir(&out).unwrap();
        run(Command::new("mcopy")
            .args(["-s", "-n", "-m", "-i"])
            .arg(format!("{}@@{offset}", image.display()))
            .arg("::/*")
            .arg(&out));
        let mut found = Vec::new();
        let mut stack = vec![out.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path.strip_prefix(&out).unwrap().to_string_lossy().into_owned();
                    let mtime = path.metadata().unwrap().modified().unwrap();
                    let since = mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    assert_eq!(since, LINUXKIT_TIME, "modification time of {name}");
                    found.push((name, std::fs::read(&path).unwrap()));
                }
            }
        }
        found.sort();
        found
    }

    fn read_at(file: &File, offset: u64, len: u64) -> Vec<u8> {
        let mut buffer = vec![0; len as usize];
        file.read_exact_at(&mut buffer, offset).unwrap();
        buffer
    }

    /// Writes `files` at `offset`, checks it with fsck.fat and mtools, and that each extent holds
    /// its file. Returns the layout and fsck's report.
    fn write_and_check(dir: &Path, offset: u64, size: u64, files: &[FatFile]) -> (FatLayout, String) {
        std::fs::create_dir_all(dir).unwrap();
        let (file, path) = image(dir, "disk.img", offset + size + MIB);
        let layout = write(&file, offset, size, files, &options()).unwrap();
        assert_eq!(layout.offset, offset);
        assert_eq!(layout.size, size / 512 * 512);
        let report = fsck(&path, offset, size);

        let mut expected: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|f| {
                let mut bytes = Vec::new();
                f.content.copy_to(&mut bytes).unwrap();
                (f.path.trim_start_matches('/').to_string(), bytes)
            })
            .collect();
        expected.sort();
        let found = read_back(&path, offset, dir);
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, b)| (n.clone(), b.len())).collect::<Vec<_>>();
        assert_eq!(names(&found), names(&expected));
        assert!(found == expected, "mcopy read back different bytes");

        for (name, bytes) in &expected {
            let extent = layout.file(name).unwrap();
            assert_eq!(extent.len, bytes.len() as u64, "{name}");
            if !bytes.is_empty() {
                assert_eq!(&read_at(&file, extent.offset, extent.len), bytes, "extent of {name}");
            }
        }
        (layout, report)
    }

    fn boot_files<'a>(kernel: &'a [u8], initrd: Content<'a>) -> Vec<FatFile<'a>> {
        let mut ldlinux = FatFile::new("ldlinux.sys", Content::Bytes(b"not really ldlinux.sys"));
        ldlinux.attributes = Attributes {
            read_only: true,
            hidden: true,
            system: true,
        };
        vec![
            FatFile::new(
                "syslinux.cfg",
                Content::Bytes(b"DEFAULT linux\nLABEL linux\n  KERNEL /kernel\n"),
            ),
            FatFile::new("kernel", Content::Bytes(kernel)),
            FatFile::new("initrd.img", initrd),
            ldlinux,
            FatFile::new("ldlinux.c32", Content::Bytes(b"c32")),
            FatFile::new("/EFI/BOOT/BOOTX64.EFI", Content::Bytes(b"MZ efi")),
            FatFile::new("EFI/Linux/linuxkit.efi", Content::Bytes(b"MZ uki")),
            FatFile::new("loader/loader.conf", Content::Bytes(b"timeout 0\n")),
            FatFile::new("a/b/c/Deeply Nested, with+odd=chars;[1].TXT", Content::Bytes(b"deep")),
            FatFile::new("a/b/ünïcødé name", Content::Bytes(b"unicode")),
            FatFile::new("a/empty", Content::Bytes(b"")),
            FatFile::new("a/MiXeD.cAsE", Content::Bytes(b"mixed")),
            FatFile::new("a/long-name-number-1.conf", Content::Bytes(b"1")),
            FatFile::new("a/long-name-number-2.conf", Content::Bytes(b"2")),
            FatFile::new("a/UPPER.TXT", Content::Bytes(b"upper")),
            FatFile::new("a/lower.txt", Content::Bytes(b"lower")),
            FatFile::new("a/Upper.txt2", Content::Bytes(b"not 8.3")),
        ]
    }

    #[test]
    fn fat16_reads_back_with_fsck_and_mtools() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = pattern(5 * MIB as usize + 123, 1);
        let initrd = pattern(3 * MIB as usize, 2);
        let files = boot_files(&kernel, Content::Bytes(&initrd));
        let (layout, report) = write_and_check(dir.path(), MIB, 20 * MIB, &files);
        assert_eq!(layout.fat_type, FatType::Fat16);
        assert!(report.contains("16 bit entries"), "{report}");
        assert_eq!(layout.sectors_per_cluster, 4);
        assert_eq!(layout.backup_boot_sector, None);

        // Names as given, attributes, label and serial as mtools sees them.
        let listing = run(Command::new("mdir").args(["-/", "-a", "-i"]).arg(format!(
            "{}@@{}",
            dir.path().join("disk.img").display(),
            MIB
        )));
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("Volume in drive : is MOBY"), "{listing}");
        assert!(listing.contains("Serial Number is 1234-ABCD"), "{listing}");
        assert!(listing.contains("2017-04-18  16:30"), "{listing}");
        for line in [
            "LOADER~1 CON",
            "loader.conf",
            "syslinux cfg",
            "kernel ",
            "UPPER    TXT",
            "lower    txt",
        ] {
            assert!(listing.contains(line), "{line:?} missing from\n{listing}");
        }
        let attributes = run(Command::new("mattrib")
            .arg("-i")
            .arg(format!("{}@@{}", dir.path().join("disk.img").display(), MIB))
            .arg("::/ldlinux.sys"));
        let attributes = String::from_utf8_lossy(&attributes.stdout);
        assert!(attributes.starts_with("  A  SHR "), "{attributes:?}");
    }

    #[test]
    fn fat32_reads_back_with_fsck_and_mtools() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = pattern(8 * MIB as usize + 5, 3);
        // An initrd read from a file, as the builder stages it.
        let mut staged = tempfile::tempfile().unwrap();
        staged.write_all(&[0xAA; 100]).unwrap();
        staged.write_all(&pattern(30 * MIB as usize + 7, 4)).unwrap();
        let initrd = Content::File {
            file: &staged,
            offset: 100,
            len: 30 * MIB + 7,
        };
        let files = boot_files(&kernel, initrd);
        let (layout, report) = write_and_check(dir.path(), MIB, 64 * MIB, &files);
        assert_eq!(layout.fat_type, FatType::Fat32);
        assert!(report.contains("32 bit entries"), "{report}");
        assert_eq!(layout.sectors_per_cluster, 1);
        assert_eq!(layout.backup_boot_sector, Some(MIB + 6 * 512));
    }

    #[test]
    fn large_fat32_uses_4k_clusters() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = pattern(MIB as usize, 5);
        let files = boot_files(&kernel, Content::Bytes(b"initrd"));
        let (layout, report) = write_and_check(dir.path(), 0, 300 * MIB, &files);
        assert_eq!(layout.fat_type, FatType::Fat32);
        assert_eq!(layout.sectors_per_cluster, 8);
        assert!(report.contains("4096 bytes per cluster"), "{report}");
    }

    #[test]
    fn big_directories_span_clusters() {
        // 600 entries in a FAT16 root (more than the usual 512), 300 long names in a FAT32
        // subdirectory (several clusters of 512 bytes), with aliases numbered up to ~300.
        let names: Vec<String> = (0..600).map(|i| format!("F{i}")).collect();
        let long: Vec<String> = (0..300)
            .map(|i| format!("sub/a rather long file name {i}.conf"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let root: Vec<FatFile> = names
            .iter()
            .map(|n| FatFile::new(n, Content::Bytes(n.as_bytes())))
            .collect();
        let (layout, _) = write_and_check(&dir.path().join("16"), 0, 8 * MIB, &root);
        assert_eq!(layout.fat_type, FatType::Fat16);
        let nested: Vec<FatFile> = long
            .iter()
            .map(|n| FatFile::new(n, Content::Bytes(n.as_bytes())))
            .collect();
        let (layout, _) = write_and_check(&dir.path().join("32"), 0, 40 * MIB, &nested);
        assert_eq!(layout.fat_type, FatType::Fat32);
    }

    #[test]
    fn the_boot_sector_has_a_standard_bpb() {
        let dir = tempfile::tempdir().unwrap();
        for (size, fat_type) in [(8 * MIB, FatType::Fat16), (40 * MIB, FatType::Fat32)] {
            let (file, _) = image(dir.path(), &format!("{size}.img"), size);
            let layout = write(&file, 0, size, &[], &options()).unwrap();
            assert_eq!(layout.fat_type, fat_type);
            let sector = read_at(&file, 0, 512);
            let code = fat_type.boot_code_offset();
            assert_eq!(sector[0], 0xEB);
            assert_eq!(usize::from(sector[1]) + 2, code, "the jump lands on the boot code");
            assert_eq!(&sector[11..13], &512u16.to_le_bytes());
            assert_eq!(&sector[28..32], &2048u32.to_le_bytes(), "hidden sectors");
            assert_eq!(sector[code - 24], 0x29, "extended boot signature");
            assert_eq!(&sector[code - 23..code - 19], &0x1234_ABCDu32.to_le_bytes());
            assert_eq!(&sector[code - 19..code - 8], b"MOBY       ");
            assert_eq!(&sector[code..code + 2], &[0xCD, 0x18]);
            assert_eq!(&sector[510..], &[0x55, 0xAA]);
            if fat_type == FatType::Fat32 {
                assert_eq!(
                    read_at(&file, 6 * 512, 1024),
                    read_at(&file, 0, 1024),
                    "backup boot sectors"
                );
            }
        }
    }

    #[test]
    fn the_same_files_give_the_same_bytes_whatever_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = pattern(2 * MIB as usize, 6);
        let files = boot_files(&kernel, Content::Bytes(b"initrd"));
        let mut reversed = files.clone();
        reversed.reverse();
        let mut images = Vec::new();
        for (name, files) in [("a", &files), ("b", &reversed)] {
            for size in [16 * MIB, 48 * MIB] {
                let (file, path) = image(dir.path(), &format!("{name}{size}"), size);
                let layout = write(&file, 0, size, files, &options()).unwrap();
                images.push((size, std::fs::read(path).unwrap(), layout));
            }
        }
        assert!(images[0] == images[2] && images[1] == images[3]);
        // And a different volume id changes the bytes (the comparison can fail).
        let (file, path) = image(dir.path(), "c", 16 * MIB);
        let other = FatOptions {
            volume_id: 1,
            ..options()
        };
        write(&file, 0, 16 * MIB, &files, &other).unwrap();
        assert!(std::fs::read(path).unwrap() != images[0].1);
    }

    #[test]
    fn min_size_fits_and_less_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let big = pattern(40 * MIB as usize, 7);
        let cases: Vec<Vec<FatFile>> = vec![
            vec![],
            vec![FatFile::new("EFI/BOOT/BOOTX64.EFI", Content::Bytes(&big[..700_000]))],
            vec![FatFile::new("EFI/BOOT/BOOTX64.EFI", Content::Bytes(&big[..20_000_000]))],
            vec![
                FatFile::new("kernel", Content::Bytes(&big[..8_000_000])),
                FatFile::new("initrd.img", Content::Bytes(&big)),
            ],
        ];
        for (i, files) in cases.iter().enumerate() {
            let needed = min_size(files).unwrap();
            assert_eq!(needed % 512, 0);
            let (file, path) = image(dir.path(), &format!("{i}"), needed);
            write(&file, 0, needed, files, &options()).unwrap();
            fsck(&path, 0, needed);
            let (file, _) = image(dir.path(), &format!("{i}-small"), needed);
            match write(&file, 0, needed - 512, files, &options()) {
                Err(FatError::TooSmall { needed: n, given }) => {
                    assert_eq!((n, given), (needed, needed - 512));
                }
                other => panic!("case {i}: {other:?}"),
            }
        }
        // The smallest filesystem: FAT16 with just over 4085 clusters of 512 bytes.
        let smallest = min_size(&[]).unwrap();
        assert!((2_000_000..2_300_000).contains(&smallest), "{smallest}");
        let err = write(&File::open(dir.path().join("0")).unwrap(), 0, MIB, &[], &options()).unwrap_err();
        assert!(err.to_string().contains(&format!("at least {smallest} bytes")), "{err}");
    }

    #[test]
    fn the_fat_type_follows_the_cluster_count() {
        // FAT32 from 65541 clusters of 512 bytes; one sector less is FAT16 with 2 KiB clusters.
        let dir = tempfile::tempdir().unwrap();
        for (size, fat_type, clusters) in [
            (34_098_688, FatType::Fat32, "65541 data clusters"),
            (34_098_176, FatType::Fat16, "16608 data clusters"),
        ] {
            let (file, path) = image(dir.path(), &format!("{size}"), size);
            assert_eq!(write(&file, 0, size, &[], &options()).unwrap().fat_type, fat_type);
            let report = fsck(&path, 0, size);
            assert!(report.contains(clusters), "{report}");
        }
    }

    #[test]
    fn min_size_fat32_gives_fat32() {
        let dir = tempfile::tempdir().unwrap();
        let big = pattern(50 * MIB as usize, 8);
        for len in [0, 1_000_000, 50 * MIB as usize] {
            let files = [FatFile::new("EFI/BOOT/BOOTX64.EFI", Content::Bytes(&big[..len]))];
            let (fat16, fat32) = (min_size(&files).unwrap(), min_size_fat32(&files).unwrap());
            assert!(fat16 < fat32 && fat32 >= 34_098_688, "{fat16} {fat32}");
            for (size, fat_type) in [(fat16, FatType::Fat16), (fat32, FatType::Fat32)] {
                let (file, path) = image(dir.path(), &format!("{len}-{size}"), size);
                assert_eq!(write(&file, 0, size, &files, &options()).unwrap().fat_type, fat_type);
                fsck(&path, 0, size);
            }
        }
    }

    #[test]
    fn every_size_from_min_size_up_fits() {
        // Around the switches of cluster size and FAT type.
        let files = [
            FatFile::new("a", Content::Bytes(&[1; 3000])),
            FatFile::new("b/c", Content::Bytes(&[2; 70000])),
        ];
        let tree = Tree::build(&files, true).unwrap();
        let start = min_size(&files).unwrap() / 512;
        for sectors in (start..start + 200_000).step_by(7) {
            assert!(tree.choose(sectors).is_some(), "{sectors} sectors");
        }
    }

    #[test]
    fn bad_paths_and_labels_are_refused() {
        let file = tempfile::tempfile().unwrap();
        let content = Content::Bytes(b"x");
        let attempt = |paths: &[&str], label: &str| {
            let files: Vec<FatFile> = paths.iter().map(|p| FatFile::new(p, content)).collect();
            let options = FatOptions {
                label: label.into(),
                ..options()
            };
            write(&file, 0, 8 * MIB, &files, &options).unwrap_err().to_string()
        };
        assert!(attempt(&["a//b"], "").contains("empty path component"));
        assert!(attempt(&["a/"], "").contains("empty path component"));
        assert!(attempt(&["a/../b"], "").contains("'..'"));
        assert!(attempt(&["what?"], "").contains("not allowed"));
        assert!(attempt(&["dot."], "").contains("ends with"));
        assert!(attempt(&[&"x".repeat(256)], "").contains("255"));
        assert!(attempt(&["kernel", "KERNEL"], "").contains("case-insensitive"));
        assert!(attempt(&["EFI/a", "efi/b"], "").contains("case-insensitive"));
        assert!(attempt(&["a", "a"], "").contains("the same file twice"));
        assert!(attempt(&["a", "a/b"], "").contains("both a file and a directory"));
        assert!(attempt(&["a/b", "a"], "").contains("both a file and a directory"));
        assert!(attempt(&[], "lower").contains("uppercase"));
        assert!(attempt(&[], "TWELVE CHARS").contains("11"));
    }

    #[test]
    fn short_names_and_aliases() {
        let none = HashSet::new();
        assert_eq!(exact_short_name("BOOTX64.EFI"), Some((*b"BOOTX64 EFI", 0)));
        assert_eq!(exact_short_name("syslinux.cfg"), Some((*b"SYSLINUXCFG", 0x18)));
        assert_eq!(exact_short_name("kernel"), Some((*b"KERNEL     ", 0x08)));
        assert_eq!(exact_short_name("README.md"), Some((*b"README  MD ", 0x10)));
        assert_eq!(exact_short_name("Linux"), None);
        assert_eq!(exact_short_name("loader.conf"), None);
        assert_eq!(exact_short_name("a.b.c"), None);
        assert_eq!(exact_short_name("a+b"), None);
        assert_eq!(&short_alias("Linux", &none), b"LINUX      ");
        assert_eq!(&short_alias("loader.conf", &none), b"LOADER~1CON");
        assert_eq!(&short_alias(".hidden", &none), b"HIDDEN~1   ");
        assert_eq!(&short_alias("a b+c.tar.gz", &none), b"AB_CTA~1GZ ");
        let taken = HashSet::from([*b"LOADER~1CON", *b"LINUX      "]);
        assert_eq!(&short_alias("loader.config", &taken), b"LOADER~2CON");
        assert_eq!(&short_alias("LinuX", &taken), b"LINUX~1    ");
        // The checksum of the specification's example algorithm, worked by hand for "A".
        let mut short = [b' '; 11];
        short[0] = b'A';
        let by_hand = short
            .iter()
            .fold(0u8, |s, &b| (((s & 1) << 7) | (s >> 1)).wrapping_add(b));
        assert_eq!(short_name_checksum(&short), by_hand);
    }

    #[test]
    fn times_convert_to_fat_fields() {
        let stamp = Stamp::new(LINUXKIT_TIME);
        assert_eq!(stamp.date, (37 << 9) | (4 << 5) | 18);
        assert_eq!(stamp.time, (16 << 11) | (30 << 5));
        assert_eq!(stamp.tenths, 0);
        // 2000-02-29T23:59:59Z: a leap day, an odd second.
        let stamp = Stamp::new(951_868_799);
        assert_eq!(stamp.date, (20 << 9) | (2 << 5) | 29);
        assert_eq!(stamp.time, (23 << 11) | (59 << 5) | 29);
        assert_eq!(stamp.tenths, 100);
        // Before 1980: FAT's epoch.
        assert_eq!(Stamp::new(0).date, (1 << 5) | 1);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
