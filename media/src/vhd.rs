//! VHD images of a raw image: fixed (`vhd`, what Azure takes) and dynamic (`dynamic-vhd`).
//!
//! Microsoft's "Virtual Hard Disk Image Format Specification" (1.0): a fixed VHD is the raw
//! disk followed by a 512-byte footer; a dynamic VHD is a copy of the footer, a dynamic disk
//! header, the block allocation table (BAT), the 2 MiB blocks that hold data (each a 512-byte
//! sector bitmap and the block's data) and the footer.
//!
//! What goes into the footer:
//! - the virtual size is the length of the raw image exactly (`current_size` and
//!   `original_size`); it must be a multiple of 512 bytes, and Azure wants a multiple of
//!   1 MiB (LinuxKit's `vhd` is a 1 GiB disk, `dynamic-vhd` 25 GiB);
//! - the disk geometry is the spec's CHS for that size (its appendix algorithm, the same as
//!   qemu's); the CHS product is usually a little smaller than the size, so readers that go
//!   by the geometry would cut off the end of the disk (and a GPT's backup header with it);
//! - so the creator application is `qem2`, version 5.3, host `Wi2k`: exactly what
//!   `qemu-img convert -O vpc -o force_size` (LinuxKit's `vhd` output) writes. qemu reads the
//!   size of a `qem2` image (like `win ` from Hyper-V) from `current_size`, and Hyper-V and
//!   Azure always do; with qemu's plain `qemu` creator, qemu would use the geometry;
//! - the time stamp and unique id are given by the caller ([`Identity`]): `qemu-img` puts the
//!   current time and a random UUID there, which is why we write VHDs ourselves.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use crate::extents::{read_padded, usize_of, Extents, CHUNK};

const SECTOR: u64 = 512;
/// The dynamic disk's block size (the spec's default and what every tool uses).
const BLOCK: u64 = 2 << 20;
/// The sector bitmap in front of each block: one bit per sector, rounded up to a sector.
const BITMAP: u64 = (BLOCK / SECTOR / 8).div_ceil(SECTOR) * SECTOR;
/// The largest disk qemu accepts (2040 GiB); the format's own limit is near 2 TiB.
const MAX_SIZE: u64 = 0xff00_0000 * SECTOR;
/// The VHD epoch, 2000-01-01T00:00:00Z, in Unix time.
const VHD_EPOCH: u64 = 946_684_800;
/// Where the BAT of a dynamic VHD starts: after the footer copy and the 1024-byte header.
const BAT_OFFSET: u64 = 3 * SECTOR;
const UNUSED: u32 = 0xffff_ffff;
const FIXED: u32 = 2;
const DYNAMIC: u32 = 3;

/// What tells one VHD from another; given by the caller, derived from the content or
/// `SOURCE_DATE_EPOCH`, so that the same input gives the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Creation time in seconds since the Unix epoch (stored as seconds since 2000-01-01;
    /// earlier times are stored as 0).
    pub time: u64,
    /// The disk's unique id: the 16 bytes of a UUID.
    pub unique_id: [u8; 16],
}

/// Why a VHD could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the raw image failed.
    #[error("cannot read the raw image to convert to VHD: {source}")]
    Read {
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the VHD failed.
    #[error("cannot write the VHD image: {source}")]
    Write {
        /// The I/O error.
        source: io::Error,
    },
    /// The raw image is not a whole number of sectors.
    #[error("a VHD disk is a whole number of 512-byte sectors, and the raw image has {size} bytes; make the disk a multiple of 1 MiB (what Azure requires)")]
    NotSectors {
        /// The raw image's length.
        size: u64,
    },
    /// The raw image is larger than a VHD can be.
    #[error("the raw image has {size} bytes, more than the {max} bytes (2040 GiB) a VHD can hold; use qcow2 or vmdk for larger disks")]
    TooLarge {
        /// The raw image's length.
        size: u64,
        /// The largest size.
        max: u64,
    },
}

fn read(source: io::Error) -> Error {
    Error::Read { source }
}

fn write_err(source: io::Error) -> Error {
    Error::Write { source }
}

fn check_size(size: u64) -> Result<(), Error> {
    if !size.is_multiple_of(SECTOR) {
        return Err(Error::NotSectors { size });
    }
    if size > MAX_SIZE {
        return Err(Error::TooLarge { size, max: MAX_SIZE });
    }
    Ok(())
}

/// Writes a fixed VHD of `raw` into `out`: the raw disk, then the footer. `out` is truncated
/// first and written with positioned writes, so the holes of `raw` stay holes in `out`.
/// Returns the length of the image.
pub fn write_fixed(raw: &File, out: &File, identity: &Identity) -> Result<u64, Error> {
    let extents = Extents::scan(raw, 1 << 16).map_err(read)?;
    let size = extents.len();
    check_size(size)?;
    out.set_len(0).map_err(write_err)?;
    out.set_len(size + SECTOR).map_err(write_err)?;
    let mut buf = vec![0u8; usize_of(CHUNK).map_err(write_err)?];
    for range in extents.ranges() {
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(CHUNK);
            let chunk = &mut buf[..usize_of(n).map_err(write_err)?];
            read_padded(raw, at, chunk).map_err(read)?;
            out.write_all_at(chunk, at).map_err(write_err)?;
            at += n;
        }
    }
    out.write_all_at(&footer(size, FIXED, identity), size)
        .map_err(write_err)?;
    Ok(size + SECTOR)
}

/// Writes a dynamic VHD of `raw` to `out`, with only the 2 MiB blocks of `raw` that hold
/// data. Returns the number of bytes written.
pub fn write_dynamic(raw: &File, out: &mut dyn Write, identity: &Identity) -> Result<u64, Error> {
    let extents = Extents::scan(raw, BLOCK).map_err(read)?;
    let size = extents.len();
    check_size(size)?;
    let entries = size.div_ceil(BLOCK);
    let first_block = BAT_OFFSET + (entries * 4).div_ceil(SECTOR) * SECTOR;
    let mut out = io::BufWriter::with_capacity(1 << 20, out);

    let footer = footer(size, DYNAMIC, identity);
    out.write_all(&footer).map_err(write_err)?;
    // `entries` fits: a disk of at most 2040 GiB has at most 1044480 blocks.
    out.write_all(&dynamic_header(entries as u32)).map_err(write_err)?;

    // The BAT, in sectors of 128 entries: block n is the n-th block with data.
    let mut blocks = extents.blocks().peekable();
    let mut next = first_block;
    let mut sector = [0u8; SECTOR as usize];
    for first in (0..entries).step_by(128) {
        for (i, slot) in sector.chunks_exact_mut(4).enumerate() {
            let mut entry = UNUSED;
            if blocks.peek() == Some(&(first + i as u64)) {
                blocks.next();
                // Sector numbers fit in 32 bits below 2 TiB.
                entry = (next / SECTOR) as u32;
                next += BITMAP + BLOCK;
            }
            slot.copy_from_slice(&entry.to_be_bytes());
        }
        out.write_all(&sector).map_err(write_err)?;
    }

    // The blocks: every sector present (the bitmap all ones), their data in full.
    let bitmap = [0xffu8; BITMAP as usize];
    let mut buf = vec![0u8; usize_of(BLOCK).map_err(write_err)?];
    for block in extents.blocks() {
        read_padded(raw, block * BLOCK, &mut buf).map_err(read)?;
        out.write_all(&bitmap).map_err(write_err)?;
        out.write_all(&buf).map_err(write_err)?;
    }
    out.write_all(&footer).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(next + SECTOR)
}

/// The 512-byte footer of a disk of `size` bytes.
fn footer(size: u64, disk_type: u32, identity: &Identity) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: the reserved bit, always set
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // format version 1.0
    let data_offset = if disk_type == DYNAMIC { SECTOR } else { u64::MAX };
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    let time = u32::try_from(identity.time.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX);
    f[24..28].copy_from_slice(&time.to_be_bytes());
    f[28..32].copy_from_slice(b"qem2");
    f[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (cylinders, heads, sectors) = geometry(size / SECTOR);
    f[56..58].copy_from_slice(&cylinders.to_be_bytes());
    f[58] = heads;
    f[59] = sectors;
    f[60..64].copy_from_slice(&disk_type.to_be_bytes());
    f[68..84].copy_from_slice(&identity.unique_id);
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The 1024-byte dynamic disk header for a BAT of `entries` entries.
fn dynamic_header(entries: u32) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(b"cxsparse");
    // No further structure: all 64 bits set (the spec's text says 0xFFFFFFFF, its tools
    // and Hyper-V want all of them).
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&BAT_OFFSET.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    h[28..32].copy_from_slice(&entries.to_be_bytes());
    h[32..36].copy_from_slice(&(BLOCK as u32).to_be_bytes());
    let sum = checksum(&h);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
    h
}

/// The one's complement of the sum of all bytes (the checksum field being zero).
fn checksum(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// The spec's CHS geometry (cylinders, heads, sectors per track) for `total` sectors.
fn geometry(total: u64) -> (u16, u8, u8) {
    let total = total.min(65535 * 16 * 255);
    let (sectors, heads, cylinders_times_heads) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut sectors = 17;
        let mut cth = total / sectors;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            sectors = 31;
            heads = 16;
            cth = total / sectors;
        }
        if cth >= heads * 1024 {
            sectors = 63;
            heads = 16;
            cth = total / sectors;
        }
        (sectors, heads, cth)
    };
    // Bounded above: cylinders ≤ 65535, heads ≤ 16, sectors ≤ 255.
    ((cylinders_times_heads / heads) as u16, heads as u8, sectors as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extents::test_support::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const ID: Identity = Identity {
        time: 1_492_533_000, // 2017-04-18T16:30:00Z, LinuxKit's fixed time
        unique_id: *b"0123456789abcdef",
    };

    fn fixed(raw: &File, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let out = File::create(&path).unwrap();
        let len = write_fixed(raw, &out, &ID).unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        path
    }

    fn dynamic(raw: &File, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let mut out = File::create(&path).unwrap();
        let len = write_dynamic(raw, &mut out, &ID).unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        path
    }

    fn be32(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn geometry_follows_the_spec() {
        // 1 GiB: 2080 cylinders of 16 heads and 63 sectors (2096640 sectors, 256 KiB less
        // than the disk: why the size must come from the footer).
        assert_eq!(geometry(2 << 20), (2080, 16, 63));
        // Small disks use 17 sectors per track and at least 4 heads.
        assert_eq!(geometry(20480), (301, 4, 17));
        // From 65535*16*63 sectors on (about 31.5 GiB), 255 sectors per track.
        assert_eq!(geometry(65535 * 16 * 63), (16191, 16, 255));
        assert_eq!(geometry(50 << 21), (25700, 16, 255));
        // Capped at 65535 x 16 x 255.
        assert_eq!(geometry(u64::MAX / 512), (65535, 16, 255));
    }

    #[test]
    fn a_fixed_vhd_reads_back_at_its_exact_size_and_stays_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        let raw = fat_disk(&raw_path, 64);
        let image = fixed(&raw, dir.path(), "a.vhd");
        assert_qemu_reads_raw(&raw_path, "vpc", &image);
        let bytes = std::fs::read(&image).unwrap();
        let footer = &bytes[64 << 20..];
        assert_eq!(&footer[..8], b"conectix");
        assert_eq!(be32(footer, 60), FIXED);
        assert_eq!(&footer[28..40], b"qem2\0\x05\0\x03Wi2k");
        // 2017-04-18T16:30:00Z is 545848200 seconds after 2000-01-01.
        assert_eq!(be32(footer, 24), 545_848_200);
        assert_eq!(&footer[68..84], b"0123456789abcdef");
        let mut zeroed = footer.to_vec();
        zeroed[64..68].fill(0);
        assert_eq!(be32(footer, 64), checksum(&zeroed));
        // The FAT disk has a few MiB of data; the image keeps the holes.
        let allocated = std::fs::metadata(&image).unwrap().blocks() * 512;
        assert!(allocated < 16 << 20, "{allocated} bytes allocated");
        // Same input, same bytes.
        let again = fixed(&raw, dir.path(), "b.vhd");
        assert_eq!(bytes, std::fs::read(&again).unwrap());
    }

    #[test]
    fn a_dynamic_vhd_is_what_qemu_img_makes_but_for_time_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        let noise = noise(3 << 20, 5);
        // Data in blocks 0, 2, 3 (a run across a block boundary) and the last, partial one.
        let len = (9 << 20) + 4096;
        let raw = raw_image(
            &raw_path,
            len,
            &[(0, b"boot"), ((4 << 20) + 17, &noise), (len - 512, b"end")],
        );
        let ours = dynamic(&raw, dir.path(), "ours.vhd");
        assert_qemu_reads_raw(&raw_path, "vpc", &ours);
        let theirs = dir.path().join("theirs.vhd");
        run(
            Command::new("qemu-img")
                .args([
                    "convert",
                    "-f",
                    "raw",
                    "-O",
                    "vpc",
                    "-o",
                    "subformat=dynamic,force_size",
                ])
                .arg(&raw_path)
                .arg(&theirs),
            None,
        );
        let ours = std::fs::read(&ours).unwrap();
        let theirs = std::fs::read(&theirs).unwrap();
        // Header, BAT, blocks: the same bytes. The footers differ in time, id, checksum
        // and geometry (qemu's force_size writes the maximum geometry instead of the spec's).
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[512..ours.len() - 512], theirs[512..theirs.len() - 512]);
        assert_eq!(ours[..512], ours[ours.len() - 512..]);
        assert_eq!(be32(&ours, 512 + 28), 5); // BAT entries
                                              // 1536 + one BAT sector, then blocks 0, 2, 3 and 4 of (512 + 2 MiB) each.
        let block = |n: u32| (2048 + n as u64 * (BITMAP + BLOCK)) / 512;
        let bat: Vec<u32> = (0..5).map(|i| be32(&ours, 1536 + 4 * i)).collect();
        assert_eq!(
            bat,
            [
                block(0) as u32,
                UNUSED,
                block(1) as u32,
                block(2) as u32,
                block(3) as u32
            ]
        );
        assert_eq!(ours.len() as u64, 2048 + 4 * (BITMAP + BLOCK) + 512);
    }

    #[test]
    fn a_dynamic_vhd_of_a_fat_disk_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        let raw = fat_disk(&raw_path, 64);
        let first = dynamic(&raw, dir.path(), "1.vhd");
        assert_qemu_reads_raw(&raw_path, "vpc", &first);
        let second = dynamic(&raw, dir.path(), "2.vhd");
        assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
        let other = Identity {
            time: ID.time + 1,
            ..ID
        };
        let mut third = Vec::new();
        write_dynamic(&raw, &mut third, &other).unwrap();
        assert_ne!(std::fs::read(&first).unwrap(), third);
    }

    #[test]
    fn sizes_a_vhd_cannot_hold_are_refused() {
        let raw = tempfile::tempfile().unwrap();
        raw.set_len(1000).unwrap();
        let err = write_dynamic(&raw, &mut Vec::new(), &ID).unwrap_err();
        assert!(matches!(err, Error::NotSectors { size: 1000 }), "{err}");
        let out = tempfile::tempfile().unwrap();
        assert!(matches!(write_fixed(&raw, &out, &ID), Err(Error::NotSectors { .. })));
        raw.set_len(MAX_SIZE + SECTOR).unwrap();
        let err = write_dynamic(&raw, &mut Vec::new(), &ID).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("2040 GiB"));
    }
}
