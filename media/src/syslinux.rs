//! syslinux on a FAT filesystem: its boot sector code and a patched `ldlinux.sys`, as syslinux's
//! own installer (`syslinux --install`, libinstaller's `syslinux_patch` and
//! `syslinux_make_bootsect`) leaves them, without mtools, loop devices or root.
//!
//! The filesystem is written first, with `/ldlinux.sys` stored contiguously (its content is
//! [`Syslinux::ldlinux_sys_file`]), `/ldlinux.c32` of the same syslinux build and a
//! `syslinux.cfg`; then [`Syslinux::install`] patches `ldlinux.sys` in place and puts the boot code
//! into the FAT's first sector, keeping its BIOS parameter block.
//!
//! What is patched (all sector numbers count 512-byte sectors from the start of the filesystem;
//! the boot code adds the partition's start, which the MBR passes in DS:SI or, failing that, the
//! BPB's hidden-sectors field holds):
//! - in the boot sector: the sector of `ldlinux.sys`'s first sector (64 bits, at two offsets
//!   that `ldlinux.sys` names);
//! - in `ldlinux.sys`'s patch area: its data sector count, 2 ADV sectors, its length in dwords
//!   and a checksum that makes its dwords sum to `LDLINUX_MAGIC`;
//! - in its extended patch area: the extents (LBA + sector count) where the rest of it is, at
//!   most 64 KiB each and none crossing a 64 KiB boundary of its load address 0x8000, and the two
//!   sectors of the ADV (the "auxiliary data vector", two copies of one 512-byte sector appended
//!   to the file, empty here).
//!
//! As the default installer: no "stupid" mode (transfers of up to 127 sectors), no RAID mode
//! (boot failure prints a message instead of `INT 18h`), no subdirectory.

use crate::le::{le16, le32, put16, put32, put64};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Sector size of syslinux's sector lists, and the only FAT sector size supported here.
const SECTOR: usize = 512;
/// `LDLINUX_MAGIC` (libinstaller/syslxint.h): in `ldlinux.sys`'s patch area and the boot
/// sector's `bsMagic`.
const LDLINUX_MAGIC: u32 = 0x3eb2_02fe;
/// Size of one ADV copy; the file carries two.
const ADV_SIZE: usize = 512;
const ADV_MAGIC1: u32 = 0x5a2d_2fa5;
const ADV_MAGIC2: u32 = 0xa304_1767;
const ADV_MAGIC3: u32 = 0xdd28_bf64;
/// Where `ldlinux.sys`'s second sector is loaded; extents may not cross a 64 KiB boundary of it.
const LOAD_ADDRESS: u64 = 0x8000;
/// The boot sector bytes that syslinux's installer copies from its template (`FAT_bsHead`:
/// the jump and the OEM name, "SYSLINUX"; `FAT_bsCode`: FAT32's code area up to the
/// signature). The rest, the BPB, stays.
const BOOT_HEAD: std::ops::Range<usize> = 0..11;
const BOOT_CODE: std::ops::Range<usize> = 90..510;
/// Value of the boot sector's sector-1 pointers before installation (core/diskstart.inc).
const SECT1PTR0_VAL: u32 = 0xdead_beef;
const SECT1PTR1_VAL: u32 = 0xfeed_face;

pub use crate::fat::Extent;

/// What went wrong installing syslinux.
#[derive(Debug, thiserror::Error)]
pub enum SyslinuxError {
    /// `ldlinux.bss` is not syslinux's FAT boot sector.
    #[error("ldlinux.bss is not syslinux's FAT boot sector: {0}; take it from the moby/bootloader image (syslinux/ldlinux.bss)")]
    BootSector(String),
    /// `ldlinux.sys` is not a syslinux loader this installer can patch.
    #[error("ldlinux.sys cannot be patched: {0}; take it from the moby/bootloader image (syslinux/ldlinux.sys)")]
    Ldlinux(String),
    /// The two files are not of the same syslinux build.
    #[error("ldlinux.bss and ldlinux.sys are not of the same syslinux build: {0}")]
    NotAPair(String),
    /// The image holds no FAT filesystem where the caller said.
    #[error("no FAT filesystem with 512-byte sectors at byte {offset} of the image: {reason}")]
    NotFat {
        /// The filesystem offset given.
        offset: u64,
        /// What did not fit.
        reason: String,
    },
    /// `ldlinux.sys` is not stored where and how syslinux needs it.
    #[error("ldlinux.sys at bytes {}..{} of the image: {reason}", .extent.offset, .extent.offset + .extent.len)]
    Placement {
        /// Where the caller said it is.
        extent: Extent,
        /// What did not fit.
        reason: String,
    },
    /// Reading or writing the image failed.
    #[error("syslinux install: {0}")]
    Io(#[from] io::Error),
}

/// syslinux's FAT boot sector template and `ldlinux.sys` of one build, checked against each
/// other: the `syslinux/ldlinux.bss` and `syslinux/ldlinux.sys` of the moby/bootloader image.
#[derive(Debug, Clone)]
pub struct Syslinux<'a> {
    boot_sector: &'a [u8],
    /// `ldlinux.sys` zero-padded to whole sectors, as syslinux's installer embeds it.
    ldlinux: Vec<u8>,
    patch: PatchArea,
}

/// Offsets into `ldlinux.sys` (and the boot sector) read from its patch areas.
#[derive(Debug, Clone, Copy)]
struct PatchArea {
    /// The `struct patch_area` (starts with LDLINUX_MAGIC).
    at: usize,
    adv_pointers: usize,
    extents: usize,
    extent_count: usize,
    sect1ptr0: usize,
    sect1ptr1: usize,
}

impl<'a> Syslinux<'a> {
    /// Checks `boot_sector` (ldlinux.bss, 512 bytes) and `ldlinux_sys` (any length; padded here
    /// to whole sectors) and that they belong together.
    pub fn new(boot_sector: &'a [u8], ldlinux_sys: &[u8]) -> Result<Self, SyslinuxError> {
        if boot_sector.len() != SECTOR {
            return Err(SyslinuxError::BootSector(format!(
                "{} bytes instead of 512",
                boot_sector.len()
            )));
        }
        if boot_sector[0] != 0xeb || boot_sector[510..] != [0x55, 0xaa] {
            return Err(SyslinuxError::BootSector(
                "no short jump at byte 0 or no 55 AA signature".into(),
            ));
        }
        if le32(boot_sector, 504) != LDLINUX_MAGIC {
            return Err(SyslinuxError::BootSector("no LDLINUX_MAGIC at byte 504".into()));
        }
        let bad = |what: String| SyslinuxError::Ldlinux(what);
        let mut ldlinux = ldlinux_sys.to_vec();
        ldlinux.resize(ldlinux_sys.len().div_ceil(SECTOR) * SECTOR, 0);
        if ldlinux.is_empty() || !ldlinux_sys.starts_with(b"\r\nSYSLINUX ") {
            return Err(bad("it does not start with the \"\\r\\nSYSLINUX \" banner".into()));
        }
        // The patch area counts data sectors in 16 bits (the extent table's size is checked at
        // install time, when the extents are known).
        if ldlinux.len() / SECTOR > usize::from(u16::MAX) {
            return Err(bad(format!(
                "{} bytes is more than a 16-bit sector count",
                ldlinux.len()
            )));
        }
        // libinstaller searches dword by dword from the start.
        let at = (0..ldlinux.len() - 3)
            .step_by(4)
            .find(|&i| le32(&ldlinux, i) == LDLINUX_MAGIC)
            .ok_or_else(|| bad("no LDLINUX_MAGIC patch area".into()))?;
        if at + 24 > ldlinux.len() {
            return Err(bad("the patch area runs past the end".into()));
        }
        let field = |offset: usize| usize::from(le16(&ldlinux, offset));
        let epa = field(at + 22);
        if epa + 20 > ldlinux.len() {
            return Err(bad(format!("extended patch area offset {epa} is out of range")));
        }
        let patch = PatchArea {
            at,
            adv_pointers: field(epa),
            extents: field(epa + 10),
            extent_count: field(epa + 12),
            sect1ptr0: field(epa + 14),
            sect1ptr1: field(epa + 16),
        };
        if patch.adv_pointers + 16 > ldlinux.len() {
            return Err(bad(format!("ADV pointers at {} out of range", patch.adv_pointers)));
        }
        if patch.extents + 10 * patch.extent_count > ldlinux.len() {
            return Err(bad(format!(
                "{} extents at {} run past the end",
                patch.extent_count, patch.extents
            )));
        }
        for (name, offset, value) in [
            ("sector-1 pointer (low)", patch.sect1ptr0, SECT1PTR0_VAL),
            ("sector-1 pointer (high)", patch.sect1ptr1, SECT1PTR1_VAL),
        ] {
            if offset < BOOT_CODE.start || offset + 4 > BOOT_CODE.end {
                return Err(SyslinuxError::NotAPair(format!(
                    "ldlinux.sys puts the boot sector's {name} at {offset}, outside its code (90..510)"
                )));
            }
            if le32(boot_sector, offset) != value {
                return Err(SyslinuxError::NotAPair(format!(
                    "the boot sector has {:#010x} instead of {value:#010x} at byte {offset}, where ldlinux.sys puts its {name}",
                    le32(boot_sector, offset)
                )));
            }
        }
        Ok(Syslinux {
            boot_sector,
            ldlinux,
            patch,
        })
    }

    /// The content of `/ldlinux.sys` to store on the filesystem: `ldlinux.sys` padded to whole
    /// sectors, then two empty ADV sectors. Store it contiguously; [`install`](Self::install)
    /// rewrites it, patched.
    pub fn ldlinux_sys_file(&self) -> Vec<u8> {
        let mut file = self.ldlinux.clone();
        file.extend_from_slice(&empty_adv());
        file
    }

    /// Length of [`ldlinux_sys_file`](Self::ldlinux_sys_file).
    pub fn ldlinux_sys_len(&self) -> u64 {
        (self.ldlinux.len() + 2 * ADV_SIZE) as u64
    }

    /// Installs syslinux on the FAT filesystem at byte `fat_offset` of `image`, whose
    /// `/ldlinux.sys` lies at `ldlinux_sys` (contiguous, [`ldlinux_sys_len`](Self::ldlinux_sys_len)
    /// bytes, sector-aligned within the filesystem): writes the patched file there and the boot
    /// code into the filesystem's first sector. Same input, same bytes.
    pub fn install(&self, image: &File, fat_offset: u64, ldlinux_sys: Extent) -> Result<(), SyslinuxError> {
        let mut sector0 = [0u8; SECTOR];
        image.read_exact_at(&mut sector0, fat_offset)?;
        let fat = Bpb::parse(&sector0).map_err(|reason| SyslinuxError::NotFat {
            offset: fat_offset,
            reason,
        })?;
        let placement = |reason: String| SyslinuxError::Placement {
            extent: ldlinux_sys,
            reason,
        };
        if ldlinux_sys.len != self.ldlinux_sys_len() {
            return Err(placement(format!(
                "{} bytes, but the file must be exactly {} (ldlinux.sys and two ADV sectors: Syslinux::ldlinux_sys_file)",
                ldlinux_sys.len,
                self.ldlinux_sys_len()
            )));
        }
        let relative = ldlinux_sys
            .offset
            .checked_sub(fat_offset)
            .ok_or_else(|| placement(format!("before the filesystem, which starts at {fat_offset}")))?;
        if relative % SECTOR as u64 != 0 {
            return Err(placement(format!(
                "{relative} bytes into the filesystem, not on a 512-byte sector"
            )));
        }
        let first = relative / SECTOR as u64;
        let count = ldlinux_sys.len / SECTOR as u64;
        if first < fat.first_data_sector || first + count > fat.total_sectors {
            return Err(placement(format!(
                "sectors {first}..{} are not in the filesystem's data area (sectors {}..{})",
                first + count,
                fat.first_data_sector,
                fat.total_sectors
            )));
        }
        let sectors: Vec<u64> = (first..first + count).collect();
        let (file, boot_template) = self.patched(&sectors).map_err(placement)?;
        image.write_all_at(&file, ldlinux_sys.offset)?;

        let mut boot = sector0;
        boot[BOOT_HEAD].copy_from_slice(&boot_template[BOOT_HEAD]);
        boot[BOOT_CODE].copy_from_slice(&boot_template[BOOT_CODE]);
        image.write_all_at(&boot, fat_offset)?;
        // FAT32 keeps a copy of the boot sector; keep it a copy (syslinux's installer leaves it
        // alone, fsck.fat then reports the difference).
        if let Some(backup) = fat.backup_boot_sector {
            let at = fat_offset + backup * SECTOR as u64;
            let mut old = [0u8; SECTOR];
            image.read_exact_at(&mut old, at)?;
            if old == sector0 {
                image.write_all_at(&boot, at)?;
            }
        }
        Ok(())
    }

    /// `ldlinux.sys` + ADV patched for a file at `sectors` (filesystem-relative), and the boot
    /// sector template with the sector-1 pointer (libinstaller's `syslinux_patch`).
    fn patched(&self, sectors: &[u64]) -> Result<(Vec<u8>, [u8; SECTOR]), String> {
        let p = self.patch;
        let data_sectors = self.ldlinux.len() / SECTOR;
        debug_assert_eq!(sectors.len(), data_sectors + 2);
        let mut sys = self.ldlinux.clone();
        let mut boot = [0u8; SECTOR];
        boot.copy_from_slice(self.boot_sector);
        put32(&mut boot, p.sect1ptr0, sectors[0] as u32);
        put32(&mut boot, p.sect1ptr1, (sectors[0] >> 32) as u32);

        put16(&mut sys, p.at + 8, data_sectors as u16);
        put16(&mut sys, p.at + 10, 2);
        let dwords = (sys.len() / 4) as u32;
        put32(&mut sys, p.at + 12, dwords);

        // The rest of the data sectors (the first is named by the boot sector), as extents.
        let extents = extents(&sectors[1..data_sectors]);
        if extents.len() > p.extent_count {
            return Err(format!(
                "it needs {} extents, ldlinux.sys has room for {}",
                extents.len(),
                p.extent_count
            ));
        }
        sys[p.extents..p.extents + 10 * p.extent_count].fill(0);
        for (i, (lba, len)) in extents.iter().enumerate() {
            put64(&mut sys, p.extents + 10 * i, *lba);
            put16(&mut sys, p.extents + 10 * i + 8, *len);
        }
        put64(&mut sys, p.adv_pointers, sectors[data_sectors]);
        put64(&mut sys, p.adv_pointers + 8, sectors[data_sectors + 1]);

        put32(&mut sys, p.at + 16, 0);
        let sum = sys
            .chunks_exact(4)
            .fold(0u32, |sum, dword| sum.wrapping_add(le32(dword, 0)));
        put32(&mut sys, p.at + 16, LDLINUX_MAGIC.wrapping_sub(sum));

        sys.extend_from_slice(&empty_adv());
        Ok((sys, boot))
    }
}

/// Runs of consecutive sectors, as syslinux's `generate_extents`: an extent grows while the
/// next sector follows on disk and it stays under 64 KiB (at most 127 sectors); memory addresses
/// count from 0x8000, sector after sector.
fn extents(sectors: &[u64]) -> Vec<(u64, u16)> {
    let mut out: Vec<(u64, u16)> = Vec::new();
    let mut address = LOAD_ADDRESS;
    let mut base = address;
    for &sector in sectors {
        if let Some((lba, len)) = out.last_mut() {
            let bytes = (u64::from(*len) + 1) * SECTOR as u64;
            // As libinstaller writes it: the current sector's address against the end of the
            // grown extent (a sector never straddles a 64 KiB boundary, so in effect only the
            // 127-sector limit bites; the same test keeps the same extents).
            if sector == *lba + u64::from(*len) && bytes < 65536 && (address ^ (base + bytes - 1)) & !0xffff == 0 {
                *len += 1;
                address += SECTOR as u64;
                continue;
            }
        }
        base = address;
        out.push((sector, 1));
        address += SECTOR as u64;
    }
    out
}

/// Two copies of an ADV sector with no data (libinstaller's `syslinux_reset_adv`).
fn empty_adv() -> [u8; 2 * ADV_SIZE] {
    let mut adv = [0u8; 2 * ADV_SIZE];
    for copy in adv.chunks_exact_mut(ADV_SIZE) {
        put32(copy, 0, ADV_MAGIC1);
        let sum = copy[8..ADV_SIZE - 4]
            .chunks_exact(4)
            .fold(0u32, |sum, dword| sum.wrapping_add(le32(dword, 0)));
        put32(copy, 4, ADV_MAGIC2.wrapping_sub(sum));
        put32(copy, ADV_SIZE - 4, ADV_MAGIC3);
    }
    adv
}

/// What installing needs from a FAT boot sector.
#[derive(Debug)]
struct Bpb {
    total_sectors: u64,
    first_data_sector: u64,
    /// FAT32's backup boot sector, when it has one.
    backup_boot_sector: Option<u64>,
}

impl Bpb {
    fn parse(sector: &[u8; SECTOR]) -> Result<Bpb, String> {
        let bytes_per_sector = le16(sector, 11);
        if bytes_per_sector != SECTOR as u16 {
            return Err(format!("{bytes_per_sector} bytes per sector"));
        }
        if sector[510..] != [0x55, 0xaa] {
            return Err("no 55 AA signature in its first sector".into());
        }
        let per_cluster = sector[13];
        if per_cluster == 0 || !per_cluster.is_power_of_two() {
            return Err(format!("{per_cluster} sectors per cluster"));
        }
        let reserved = u64::from(le16(sector, 14));
        let fats = u64::from(sector[16]);
        if reserved == 0 || fats == 0 {
            return Err(format!("{reserved} reserved sectors, {fats} FATs"));
        }
        let root_entries = u64::from(le16(sector, 17));
        let total = match le16(sector, 19) {
            0 => u64::from(le32(sector, 32)),
            n => u64::from(n),
        };
        let fat16_size = le16(sector, 22);
        let fat_size = match fat16_size {
            0 => u64::from(le32(sector, 36)),
            n => u64::from(n),
        };
        if fat_size == 0 || total == 0 {
            return Err(format!("{fat_size} sectors per FAT, {total} sectors in all"));
        }
        let first_data_sector = reserved + fats * fat_size + (root_entries * 32).div_ceil(SECTOR as u64);
        if first_data_sector >= total {
            return Err(format!(
                "its data area would start at sector {first_data_sector}, past its {total} sectors"
            ));
        }
        let backup_boot_sector = match (fat16_size, u64::from(le16(sector, 50))) {
            (0, backup) if backup != 0 && backup < reserved => Some(backup),
            _ => None,
        };
        Ok(Bpb {
            total_sectors: total,
            first_data_sector,
            backup_boot_sector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    const SECT1PTR0: usize = 200;
    const SECT1PTR1: usize = 204;
    const EXTENTS: usize = 700;
    const EXTENT_COUNT: usize = 64;
    const ADV_POINTERS: usize = 600;
    const PATCH_AREA: usize = 24;

    /// A boot sector and an ldlinux.sys laid out like syslinux's (patch area after the banner,
    /// extended patch area in the second sector), `len` bytes of it.
    fn fake_pair(len: usize) -> (Vec<u8>, Vec<u8>) {
        let mut bss = vec![0u8; 512];
        bss[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        bss[3..11].copy_from_slice(b"SYSLINUX");
        for (i, b) in bss[90..504].iter_mut().enumerate() {
            *b = (i * 7 + 1) as u8;
        }
        put32(&mut bss, SECT1PTR0, SECT1PTR0_VAL);
        put32(&mut bss, SECT1PTR1, SECT1PTR1_VAL);
        put32(&mut bss, 504, LDLINUX_MAGIC);
        bss[510..].copy_from_slice(&[0x55, 0xaa]);

        let mut sys: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        sys[..16].copy_from_slice(b"\r\nSYSLINUX 6.04 ");
        put32(&mut sys, PATCH_AREA, LDLINUX_MAGIC);
        put32(&mut sys, PATCH_AREA + 4, LDLINUX_MAGIC ^ 0x60c6_0d8f);
        sys[PATCH_AREA + 8..PATCH_AREA + 20].fill(0);
        put16(&mut sys, PATCH_AREA + 20, 127);
        put16(&mut sys, PATCH_AREA + 22, 512);
        let epa = [
            ADV_POINTERS,
            620,
            16,
            640,
            16,
            EXTENTS,
            EXTENT_COUNT,
            SECT1PTR0,
            SECT1PTR1,
            300,
        ];
        for (i, v) in epa.iter().enumerate() {
            put16(&mut sys, 512 + 2 * i, *v as u16);
        }
        (bss, sys)
    }

    fn mkfs(dir: &Path, name: &str, fat_bits: u32, kib: u64) -> std::path::PathBuf {
        let path = dir.join(name);
        let status = Command::new("mkfs.vfat")
            .args(["--invariant", "-F", &fat_bits.to_string(), "-s", "1", "-C"])
            .arg(&path)
            .arg(kib.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("mkfs.vfat (dosfstools) runs");
        assert!(status.success());
        path
    }

    fn mtools(args: &[&str], image: &Path) -> std::process::Output {
        let out = Command::new(args[0])
            .env("MTOOLS_SKIP_CHECK", "1")
            // Directory entries get this time instead of the clock's: two rounds of a test that
            // straddle a second write the same bytes.
            .env("SOURCE_DATE_EPOCH", "0")
            .arg("-i")
            .arg(image)
            .args(&args[1..])
            .output()
            .expect("mtools runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A fresh FAT image with `content` as its first file /ldlinux.sys; its extent, found from
    /// the BPB (the first file of an empty FAT16 starts the data area; FAT32's root directory
    /// takes the first cluster). The tests read the file back with mtools, which checks this.
    fn fat_with_ldlinux(dir: &Path, name: &str, fat_bits: u32, content: &[u8]) -> (std::path::PathBuf, Extent) {
        let image = mkfs(dir, name, fat_bits, if fat_bits == 32 { 66_000 } else { 8_192 });
        let source = dir.join(format!("{name}.ldlinux.sys"));
        std::fs::write(&source, content).unwrap();
        mtools(&["mcopy", source.to_str().unwrap(), "::/ldlinux.sys"], &image);
        let mut sector = [0u8; 512];
        File::open(&image).unwrap().read_exact_at(&mut sector, 0).unwrap();
        let bpb = Bpb::parse(&sector).unwrap();
        let first = bpb.first_data_sector + if fat_bits == 32 { u64::from(sector[13]) } else { 0 };
        let extent = Extent {
            offset: first * 512,
            len: content.len() as u64,
        };
        (image, extent)
    }

    fn sum32(bytes: &[u8]) -> u32 {
        bytes.chunks_exact(4).fold(0u32, |s, d| s.wrapping_add(le32(d, 0)))
    }

    fn check_installed(image: &Path, extent: Extent, bss: &[u8], sys_len: usize, fat_bits: u32) {
        let fsck = Command::new("fsck.fat")
            .arg("-n")
            .arg(image)
            .output()
            .expect("fsck.fat runs");
        assert!(
            fsck.status.success(),
            "fsck.fat -n: {}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        let stored = mtools(&["mtype", "::/ldlinux.sys"], image).stdout;
        assert_eq!(stored.len() as u64, extent.len);
        let padded = sys_len.div_ceil(512) * 512;
        let (sys, adv) = stored.split_at(padded);
        let first = extent.offset / 512;

        // The patch area and the checksum over the padded file.
        assert_eq!(le32(sys, PATCH_AREA), LDLINUX_MAGIC);
        assert_eq!(usize::from(le16(sys, PATCH_AREA + 8)), padded / 512);
        assert_eq!(le16(sys, PATCH_AREA + 10), 2);
        assert_eq!(le32(sys, PATCH_AREA + 12) as usize, padded / 4);
        assert_eq!(le16(sys, PATCH_AREA + 20), 127, "no stupid mode");
        assert_eq!(sum32(sys), LDLINUX_MAGIC);

        // Extents: sectors 2..n of the file, in runs of at most 127, then zeros.
        let mut next = first + 1;
        let mut i = 0;
        while next < first + (padded / 512) as u64 {
            let lba = u64::from_le_bytes(sys[EXTENTS + 10 * i..EXTENTS + 10 * i + 8].try_into().unwrap());
            let len = le16(sys, EXTENTS + 10 * i + 8);
            assert_eq!(lba, next, "extent {i}");
            assert!((1..=127).contains(&len), "extent {i} has {len} sectors");
            next += u64::from(len);
            i += 1;
        }
        assert_eq!(next, first + (padded / 512) as u64);
        assert!(sys[EXTENTS + 10 * i..EXTENTS + 10 * EXTENT_COUNT]
            .iter()
            .all(|&b| b == 0));
        let adv_at = first + (padded / 512) as u64;
        assert_eq!(
            u64::from_le_bytes(sys[ADV_POINTERS..ADV_POINTERS + 8].try_into().unwrap()),
            adv_at
        );
        assert_eq!(
            u64::from_le_bytes(sys[ADV_POINTERS + 8..ADV_POINTERS + 16].try_into().unwrap()),
            adv_at + 1
        );
        // The ADV: two equal, consistent copies.
        assert_eq!(adv[..512], adv[512..]);
        assert_eq!(le32(adv, 0), ADV_MAGIC1);
        assert_eq!(le32(adv, 508), ADV_MAGIC3);
        assert_eq!(sum32(&adv[8..508]).wrapping_add(le32(adv, 4)), ADV_MAGIC2);

        // The boot sector: the template's jump, OEM name and code, the sector-1 pointer, mkfs's BPB.
        let mut boot = [0u8; 512];
        File::open(image).unwrap().read_exact_at(&mut boot, 0).unwrap();
        assert_eq!(boot[..11], bss[..11]);
        assert_eq!(
            u64::from(le32(&boot, SECT1PTR0)) | u64::from(le32(&boot, SECT1PTR1)) << 32,
            first
        );
        for i in BOOT_CODE {
            if !(SECT1PTR0..SECT1PTR1 + 4).contains(&i) {
                assert_eq!(boot[i], bss[i], "boot code byte {i}");
            }
        }
        assert_eq!(le16(&boot, 11), 512, "the BPB stays");
        let label_at = if fat_bits == 32 { 82 } else { 54 };
        assert_eq!(
            &boot[label_at..label_at + 3],
            b"FAT",
            "{:?}",
            &boot[label_at..label_at + 8]
        );
        if fat_bits == 32 {
            let mut backup = [0u8; 512];
            File::open(image).unwrap().read_exact_at(&mut backup, 6 * 512).unwrap();
            assert_eq!(backup, boot, "FAT32's backup boot sector follows");
        }
    }

    #[test]
    fn installs_like_syslinux_on_fat16_and_fat32() {
        let dir = tempfile::tempdir().unwrap();
        // 150 sectors, not a whole number of them: two extents, padding.
        let (bss, sys) = fake_pair(150 * 512 - 100);
        let syslinux = Syslinux::new(&bss, &sys).unwrap();
        let file = syslinux.ldlinux_sys_file();
        assert_eq!(file.len() as u64, syslinux.ldlinux_sys_len());
        assert_eq!(file.len(), 150 * 512 + 1024);
        for fat_bits in [16, 32] {
            let mut images = Vec::new();
            for round in 0..2 {
                let (image, extent) =
                    fat_with_ldlinux(dir.path(), &format!("fat{fat_bits}-{round}.img"), fat_bits, &file);
                let f = std::fs::OpenOptions::new().read(true).write(true).open(&image).unwrap();
                syslinux.install(&f, 0, extent).unwrap();
                drop(f);
                check_installed(&image, extent, &bss, sys.len(), fat_bits);
                images.push(std::fs::read(&image).unwrap());
            }
            assert!(
                images[0] == images[1],
                "FAT{fat_bits}: the same install twice gives the same bytes"
            );
        }
    }

    #[test]
    fn installs_into_a_filesystem_inside_a_disk_image() {
        let dir = tempfile::tempdir().unwrap();
        let (bss, sys) = fake_pair(20 * 512);
        let syslinux = Syslinux::new(&bss, &sys).unwrap();
        let (fs, extent) = fat_with_ldlinux(dir.path(), "fs.img", 16, &syslinux.ldlinux_sys_file());
        // The filesystem 1 MiB into a disk: sector numbers stay filesystem-relative.
        let disk = dir.path().join("disk.img");
        let fs_bytes = std::fs::read(&fs).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&disk)
            .unwrap();
        file.write_all_at(&fs_bytes, 1 << 20).unwrap();
        let moved = Extent {
            offset: extent.offset + (1 << 20),
            len: extent.len,
        };
        syslinux.install(&file, 1 << 20, moved).unwrap();
        let mut back = vec![0u8; fs_bytes.len()];
        file.read_exact_at(&mut back, 1 << 20).unwrap();
        std::fs::write(&fs, &back).unwrap();
        check_installed(&fs, extent, &bss, sys.len(), 16);
        // Nothing written before the filesystem.
        let mut head = vec![0u8; 1 << 20];
        file.read_exact_at(&mut head, 0).unwrap();
        assert!(head.iter().all(|&b| b == 0));
    }

    #[test]
    fn extents_follow_libinstaller() {
        let run: Vec<u64> = (100..400).collect();
        assert_eq!(extents(&run), vec![(100, 127), (227, 127), (354, 46)]);
        assert_eq!(extents(&[5, 6, 9, 10, 11, 3]), vec![(5, 2), (9, 3), (3, 1)]);
        assert!(extents(&[]).is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_install() {
        let dir = tempfile::tempdir().unwrap();
        let (bss, sys) = fake_pair(20 * 512);
        let syslinux = Syslinux::new(&bss, &sys).unwrap();
        let (image, extent) = fat_with_ldlinux(dir.path(), "fs.img", 16, &syslinux.ldlinux_sys_file());
        let before = std::fs::read(&image).unwrap();
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&image).unwrap();
        let shorter = Extent {
            len: extent.len - 512,
            ..extent
        };
        let err = syslinux.install(&f, 0, shorter).unwrap_err();
        assert!(err.to_string().contains("must be exactly 11264"), "{err}");
        let unaligned = Extent {
            offset: extent.offset + 1,
            ..extent
        };
        assert!(syslinux
            .install(&f, 0, unaligned)
            .unwrap_err()
            .to_string()
            .contains("not on a 512-byte sector"));
        let in_fat = Extent { offset: 512, ..extent };
        assert!(syslinux
            .install(&f, 0, in_fat)
            .unwrap_err()
            .to_string()
            .contains("data area"));
        let err = syslinux.install(&f, 4096, extent).unwrap_err();
        assert!(matches!(err, SyslinuxError::NotFat { offset: 4096, .. }), "{err}");
        assert_eq!(std::fs::read(&image).unwrap(), before, "nothing written on errors");

        // Files that are not syslinux's, or not of one build.
        assert!(matches!(
            Syslinux::new(&bss[..511], &sys),
            Err(SyslinuxError::BootSector(_))
        ));
        assert!(matches!(
            Syslinux::new(&sys[..512], &sys),
            Err(SyslinuxError::BootSector(_))
        ));
        assert!(matches!(Syslinux::new(&bss, &bss), Err(SyslinuxError::Ldlinux(_))));
        let mut no_magic = sys.clone();
        put32(&mut no_magic, PATCH_AREA, 0);
        assert!(matches!(Syslinux::new(&bss, &no_magic), Err(SyslinuxError::Ldlinux(_))));
        let mut other_build = bss.clone();
        put32(&mut other_build, SECT1PTR0, 0x1234_5678);
        let err = Syslinux::new(&other_build, &sys).unwrap_err();
        assert!(matches!(err, SyslinuxError::NotAPair(_)), "{err}");
        let mut far_epa = sys.clone();
        put16(&mut far_epa, PATCH_AREA + 22, 60_000);
        assert!(matches!(Syslinux::new(&bss, &far_epa), Err(SyslinuxError::Ldlinux(_))));
    }
}
