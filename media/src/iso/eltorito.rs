//! El Torito (boot record, boot catalog, boot info table) and the isohybrid MBR.

use super::{HybridMbr, SECTOR};

/// El Torito platform id of x86 BIOS.
const PLATFORM_BIOS: u8 = 0;
/// El Torito platform id of EFI.
const PLATFORM_EFI: u8 = 0xEF;
/// Bytes of `isohdpfx.bin` that go into the MBR (the rest of the first 446 bytes are patched).
pub(super) const MBR_CODE_LEN: usize = 432;
/// Where isolinux with isohybrid support keeps its signature, which `isohdpfx.bin` jumps past.
const HYBRID_SIGNATURE_OFFSET: usize = 0x40;
/// isolinux's isohybrid signature.
const HYBRID_SIGNATURE: u32 = 0x7078_c0fb;
/// The geometry isohybrid assumes: 64 heads, 32 sectors a track (1 MiB cylinders).
const HEADS: u64 = 64;
/// Sectors a track.
const SECTORS_PER_TRACK: u64 = 32;
/// Bytes in a cylinder of that geometry.
pub(super) const CYLINDER: u64 = HEADS * SECTORS_PER_TRACK * 512;

/// The boot record volume descriptor (El Torito 2.0), pointing at the catalog.
pub(super) fn boot_record(catalog_lba: u32) -> Vec<u8> {
    let mut out = vec![0u8; SECTOR as usize];
    out[1..6].copy_from_slice(b"CD001");
    out[6] = 1;
    out[7..7 + 23].copy_from_slice(b"EL TORITO SPECIFICATION");
    out[0x47..0x4b].copy_from_slice(&catalog_lba.to_le_bytes());
    out
}

/// One boot entry of the catalog.
pub(super) struct Entry {
    /// BIOS or EFI.
    pub(super) efi: bool,
    /// Virtual (512-byte) sectors to load.
    pub(super) load_sectors: u16,
    /// The image's sector.
    pub(super) lba: u32,
}

/// The load size of an EFI image of `len` bytes: its 512-byte sectors, or 0 when that does not
/// fit 16 bits (xorriso writes 0 there; OVMF then uses the rest of the volume from the image on).
pub(super) fn efi_load_sectors(len: u64) -> u16 {
    u16::try_from(len.div_ceil(512)).unwrap_or(0)
}

fn entry_bytes(entry: &Entry) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[0] = 0x88; // bootable
    out[1] = 0; // no emulation
                // load segment 0 (the BIOS default, 0x7C0), system type 0
    out[6..8].copy_from_slice(&entry.load_sectors.to_le_bytes());
    out[8..12].copy_from_slice(&entry.lba.to_le_bytes());
    out
}

/// The boot catalog: the first entry is the default one; a second gets a section header of its
/// own platform (EFI), as genisoimage and xorriso write it.
pub(super) fn catalog(entries: &[Entry]) -> Vec<u8> {
    let mut out = vec![0u8; SECTOR as usize];
    let Some(first) = entries.first() else {
        return out;
    };
    // Validation entry.
    out[0] = 1;
    out[1] = if first.efi { PLATFORM_EFI } else { PLATFORM_BIOS };
    out[30] = 0x55;
    out[31] = 0xAA;
    let sum = out[..32].chunks(2).fold(0u16, |sum, word| {
        sum.wrapping_add(u16::from_le_bytes([word[0], word[1]]))
    });
    out[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    out[32..64].copy_from_slice(&entry_bytes(first));
    let mut at = 64;
    let rest = &entries[1..];
    for (index, entry) in rest.iter().enumerate() {
        out[at] = if index + 1 == rest.len() { 0x91 } else { 0x90 };
        out[at + 1] = if entry.efi { PLATFORM_EFI } else { PLATFORM_BIOS };
        out[at + 2..at + 4].copy_from_slice(&1u16.to_le_bytes());
        out[at + 32..at + 64].copy_from_slice(&entry_bytes(entry));
        at += 64;
    }
    out
}

/// Adds `bytes` (the part of the boot file from byte `offset` on) to the boot info table checksum:
/// the 32-bit sum of the file's little-endian words from byte 64 on, the last one zero-padded.
pub(super) struct Checksum {
    offset: u64,
    partial: [u8; 4],
    /// Sum so far.
    pub(super) sum: u32,
}

impl Checksum {
    /// A checksum of nothing yet.
    pub(super) fn new() -> Checksum {
        Checksum {
            offset: 0,
            partial: [0; 4],
            sum: 0,
        }
    }

    /// Adds the next bytes of the file.
    pub(super) fn add(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.offset >= 64 {
                let at = ((self.offset - 64) % 4) as usize;
                self.partial[at] = byte;
                if at == 3 {
                    self.sum = self.sum.wrapping_add(u32::from_le_bytes(self.partial));
                    self.partial = [0; 4];
                }
            }
            self.offset += 1;
        }
    }

    /// The checksum of the whole file.
    pub(super) fn finish(self) -> u32 {
        if self.offset > 64 && !(self.offset - 64).is_multiple_of(4) {
            self.sum.wrapping_add(u32::from_le_bytes(self.partial))
        } else {
            self.sum
        }
    }
}

/// The 56 bytes of the boot info table (boot file bytes 8..64): the PVD's sector, the file's
/// sector, its length and checksum, 40 reserved zero bytes.
pub(super) fn boot_info_table(pvd_lba: u32, file_lba: u32, file_len: u32, checksum: u32) -> [u8; 56] {
    let mut out = [0u8; 56];
    out[0..4].copy_from_slice(&pvd_lba.to_le_bytes());
    out[4..8].copy_from_slice(&file_lba.to_le_bytes());
    out[8..12].copy_from_slice(&file_len.to_le_bytes());
    out[12..16].copy_from_slice(&checksum.to_le_bytes());
    out
}

/// Whether the first bytes of a boot file carry isolinux's isohybrid signature.
pub(super) fn has_hybrid_signature(head: &[u8]) -> bool {
    head.get(HYBRID_SIGNATURE_OFFSET..HYBRID_SIGNATURE_OFFSET + 4)
        .is_some_and(|bytes| bytes == HYBRID_SIGNATURE.to_le_bytes())
}

/// Cylinder/head/sector of a 512-byte sector in isohybrid's geometry, as an MBR stores it
/// (clamped to cylinder 1023).
fn chs(lba: u64) -> [u8; 3] {
    let cylinder = (lba / (HEADS * SECTORS_PER_TRACK)).min(1023);
    let head = if cylinder == 1023 {
        HEADS - 1
    } else {
        (lba / SECTORS_PER_TRACK) % HEADS
    };
    let sector = if cylinder == 1023 {
        SECTORS_PER_TRACK
    } else {
        lba % SECTORS_PER_TRACK + 1
    };
    [
        head as u8,
        (sector as u8) | (((cylinder >> 8) as u8) << 6),
        cylinder as u8,
    ]
}

fn partition(active: bool, kind: u8, start: u64, sectors: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0] = if active { 0x80 } else { 0 };
    out[1..4].copy_from_slice(&chs(start));
    out[4] = kind;
    out[5..8].copy_from_slice(&chs((start + sectors).saturating_sub(1)));
    out[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(sectors.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    out
}

/// The isohybrid MBR for an image of `image_len` bytes (whole cylinders), with the BIOS boot
/// file at `bios_lba` and the EFI image at `efi` (sector, 512-byte sectors).
pub(super) fn hybrid_mbr(
    mbr: &HybridMbr<'_>,
    image_len: u64,
    bios_lba: Option<u32>,
    efi: Option<(u32, u64)>,
) -> [u8; 512] {
    let mut out = [0u8; 512];
    if let Some(code) = mbr.boot_code {
        out[..MBR_CODE_LEN].copy_from_slice(&code[..MBR_CODE_LEN]);
    }
    // isohdpfx.bin reads the boot file's 512-byte sector number (64 bits) from byte 432.
    let boot_sector = u64::from(bios_lba.unwrap_or(0)) * 4;
    out[432..440].copy_from_slice(&boot_sector.to_le_bytes());
    out[440..444].copy_from_slice(&mbr.disk_signature.to_le_bytes());
    let efi_partition = efi.filter(|_| mbr.efi_partition);
    let kind = if efi_partition.is_some() { 0x00 } else { 0x17 };
    out[446..462].copy_from_slice(&partition(true, kind, 0, image_len / 512));
    if let Some((lba, sectors)) = efi_partition {
        out[462..478].copy_from_slice(&partition(false, 0xEF, u64::from(lba) * 4, sectors));
    }
    out[510] = 0x55;
    out[511] = 0xAA;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_sums_words_after_byte_64_with_a_padded_tail() {
        let file: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        let expected = file[64..].chunks(4).fold(0u32, |sum, word| {
            let mut padded = [0u8; 4];
            padded[..word.len()].copy_from_slice(word);
            sum.wrapping_add(u32::from_le_bytes(padded))
        });
        let mut split = Checksum::new();
        for piece in file.chunks(13) {
            split.add(piece);
        }
        assert_eq!(split.finish(), expected);
    }

    #[test]
    fn catalog_checksums_to_zero_and_puts_efi_behind_a_final_section_header() {
        let bytes = catalog(&[
            Entry {
                efi: false,
                load_sectors: 4,
                lba: 30,
            },
            Entry {
                efi: true,
                load_sectors: 0,
                lba: 40,
            },
        ]);
        let sum = bytes[..32].chunks(2).fold(0u16, |sum, word| {
            sum.wrapping_add(u16::from_le_bytes([word[0], word[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(&bytes[64..68], &[0x91, 0xEF, 1, 0]);
        assert_eq!(bytes[96], 0x88);
        assert_eq!(u32::from_le_bytes(bytes[104..108].try_into().unwrap()), 40);
        assert_eq!(
            efi_load_sectors(32 << 20),
            0,
            "32 MiB is 65536 sectors: too many for 16 bits"
        );
        assert_eq!(efi_load_sectors((32 << 20) - 512), 65535);
    }

    #[test]
    fn chs_of_isohybrid_geometry() {
        assert_eq!(chs(0), [0, 1, 0]);
        // The last sector of a 1 MiB image: cylinder 0, head 63, sector 32 (what isohybrid writes).
        assert_eq!(chs(2047), [63, 32, 0]);
        assert_eq!(chs(u64::from(u32::MAX)), [63, 32 | 0xC0, 0xFF]);
    }
}
