//! A streamOptimized VMDK of a raw image (`vmdk`), as VMware's "Virtual Disk Format 5.0"
//! describes it: what LinuxKit's `vmdk` output is (`qemu-img convert -O vmdk -o
//! adapter_type=lsilogic,subformat=streamOptimized,compat6`) and what vSphere, ovftool and
//! OVA packages take.
//!
//! The file is one forward stream:
//!
//! | sectors | what |
//! |---|---|
//! | 0 | the sparse extent header, its grain directory "at the end" |
//! | 1–20 | the embedded descriptor (text, zero padded) |
//! | from 128 | each grain (64 KiB of the disk) that holds data: a marker (its sector, its compressed length) and the zlib-compressed grain, padded to a sector |
//! | | after the grains of each grain table (32 MiB of disk): a grain table marker and the table (512 entries: the sectors of the grain markers) |
//! | | a grain directory marker and the directory (the sectors of the grain tables; 0 for a table without grains, which is not written) |
//! | | a footer marker and the footer: the header again, with the directory's sector |
//! | last | the end-of-stream marker |
//!
//! The descriptor says what LinuxKit's says: `ddb.virtualHWVersion = "6"` (qemu's `compat6`),
//! `ddb.adapterType = "lsilogic"` and the matching 255-head, 63-sector geometry, and qemu's
//! `ddb.toolsVersion = "2147483647"`. Its `CID` (content id) is given by the caller:
//! `qemu-img` picks a random one, which is why we write VMDKs ourselves. Grains are
//! compressed with zlib at a fixed level, so the same input and the same build give the same
//! bytes.

use std::fs::File;
use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::extents::{read_padded, usize_of, Extents};

const SECTOR: u64 = 512;
/// Sectors per grain: 64 KiB grains, as VMware and qemu make them.
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
/// Entries per grain table: one table covers 32 MiB.
const GT_ENTRIES: u64 = 512;
const GT_SECTORS: u64 = GT_ENTRIES * 4 / SECTOR;
const DESCRIPTOR_SECTORS: u64 = 20;
/// The first grain starts here, on a grain boundary, after header and descriptor.
const OVERHEAD: u64 = 128;
/// The zlib level: fixed, so that the output depends on the input only.
const LEVEL: u32 = 6;
const GD_AT_END: u64 = u64::MAX;
/// Grain tables and the directory hold 32-bit sector numbers: disks (and streams) stay
/// below 2 TiB (less a little: a compressed grain can be a sector longer than the grain).
const MAX_SIZE: u64 = (1 << 41) - (1 << 36);
/// Valid newline test, compressed grains, markers.
const FLAGS: u32 = 1 | 1 << 16 | 1 << 17;
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;
/// The disk geometry the descriptor gives for SCSI (lsilogic) disks.
const HEADS: u64 = 255;
const SECTORS_PER_TRACK: u64 = 63;

/// What the caller chooses about a VMDK.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The content id of the descriptor (`CID`), derived from the content; a parent's would
    /// be compared with it by a child disk.
    pub cid: u32,
    /// The file name the descriptor's extent line gives, the image's own (`linuxkit.vmdk`).
    pub file_name: &'a str,
}

/// Why a VMDK could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the raw image failed.
    #[error("cannot read the raw image to convert to VMDK: {source}")]
    Read {
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the VMDK failed.
    #[error("cannot write the VMDK image: {source}")]
    Write {
        /// The I/O error.
        source: io::Error,
    },
    /// The raw image is not a whole number of sectors.
    #[error("a VMDK disk is a whole number of 512-byte sectors, and the raw image has {size} bytes; make the disk a multiple of 1 MiB")]
    NotSectors {
        /// The raw image's length.
        size: u64,
    },
    /// The raw image is larger than a sparse VMDK can be.
    #[error("the raw image has {size} bytes, more than the 1984 GiB we put in a sparse VMDK (its tables count sectors in 32 bits, up to 2 TiB of file); use qcow2 for larger disks")]
    TooLarge {
        /// The raw image's length.
        size: u64,
    },
    /// The file name cannot go into the descriptor.
    #[error("the VMDK file name {name:?} cannot be written in its descriptor: use a name without quotes, control characters or non-ASCII characters")]
    FileName {
        /// The name.
        name: String,
    },
    /// The descriptor does not fit its space.
    #[error("the VMDK descriptor needs {needed} bytes and has room for {room}: use a shorter file name")]
    Descriptor {
        /// Bytes of the descriptor.
        needed: usize,
        /// Bytes of room.
        room: u64,
    },
}

fn read(source: io::Error) -> Error {
    Error::Read { source }
}

fn write_err(source: io::Error) -> Error {
    Error::Write { source }
}

/// Counts the sectors written, to know where each grain and table lands.
struct Stream<'a> {
    out: io::BufWriter<&'a mut dyn Write>,
    sector: u64,
}

impl Stream<'_> {
    /// Writes `bytes` padded with zeros to a whole sector.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes).map_err(write_err)?;
        let pad = (SECTOR - bytes.len() as u64 % SECTOR) % SECTOR;
        self.out
            .write_all(&[0u8; SECTOR as usize][..pad as usize])
            .map_err(write_err)?;
        self.sector += (bytes.len() as u64).div_ceil(SECTOR);
        Ok(())
    }

    /// Writes a metadata marker and the `sectors` sectors of `data` that follow it.
    fn metadata(&mut self, kind: u32, sectors: u64, data: &[u8]) -> Result<(), Error> {
        let mut marker = [0u8; SECTOR as usize];
        marker[0..8].copy_from_slice(&sectors.to_le_bytes());
        marker[12..16].copy_from_slice(&kind.to_le_bytes());
        self.write(&marker)?;
        self.write(data)
    }
}

/// Writes a streamOptimized VMDK of `raw` (its capacity is the length of `raw`) to `out`.
/// Returns the number of bytes written.
pub fn write(raw: &File, out: &mut dyn Write, options: &Options) -> Result<u64, Error> {
    let extents = Extents::scan(raw, GRAIN).map_err(read)?;
    let size = extents.len();
    if !size.is_multiple_of(SECTOR) {
        return Err(Error::NotSectors { size });
    }
    if size > MAX_SIZE {
        return Err(Error::TooLarge { size });
    }
    let capacity = size / SECTOR;
    let descriptor = descriptor(capacity, options)?;

    let mut stream = Stream {
        out: io::BufWriter::with_capacity(1 << 20, out),
        sector: 0,
    };
    stream.write(&header(capacity, GD_AT_END))?;
    let mut start = descriptor.into_bytes();
    start.resize(usize_of((OVERHEAD - 1) * SECTOR).map_err(write_err)?, 0);
    stream.write(&start)?;

    let tables = capacity.div_ceil(GRAIN_SECTORS * GT_ENTRIES);
    let mut directory = vec![0u32; usize_of(tables).map_err(write_err)?];
    let mut table = vec![0u32; GT_ENTRIES as usize];
    let mut current: Option<u64> = None;
    let mut grain = vec![0u8; usize_of(GRAIN).map_err(write_err)?];
    let mut compressor = Compress::new(Compression::new(LEVEL), true);
    let mut packed = Vec::with_capacity(usize_of(GRAIN * 2).map_err(write_err)?);
    for index in extents.blocks() {
        let table_index = index / GT_ENTRIES;
        if current.is_some_and(|t| t != table_index) {
            flush_table(&mut stream, &mut table, &mut directory, current)?;
        }
        current = Some(table_index);
        // A partial last grain is read as a whole one, zeros past the end of the disk.
        read_padded(raw, index * GRAIN, &mut grain).map_err(read)?;
        compress(&mut compressor, &grain, &mut packed).map_err(write_err)?;
        // Grain markers and table entries are sector numbers (32-bit in the tables: VMDKs
        // end at 2 TiB, and a compressed grain is never longer than its sector count).
        table[(index % GT_ENTRIES) as usize] = stream.sector as u32;
        let mut marked = Vec::with_capacity(12 + packed.len());
        marked.extend_from_slice(&(index * GRAIN_SECTORS).to_le_bytes());
        marked.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        marked.extend_from_slice(&packed);
        stream.write(&marked)?;
    }
    flush_table(&mut stream, &mut table, &mut directory, current)?;

    let directory_sector = stream.sector + 1;
    let directory_sectors = (tables * 4).div_ceil(SECTOR);
    let bytes: Vec<u8> = directory.iter().flat_map(|e| e.to_le_bytes()).collect();
    stream.metadata(MARKER_GD, directory_sectors, &bytes)?;
    stream.metadata(MARKER_FOOTER, 1, &header(capacity, directory_sector))?;
    stream.metadata(MARKER_EOS, 0, &[])?;
    stream.out.flush().map_err(write_err)?;
    Ok(stream.sector * SECTOR)
}

/// Writes the grain table of `current` (if any) and records it in the directory.
fn flush_table(
    stream: &mut Stream,
    table: &mut [u32],
    directory: &mut [u32],
    current: Option<u64>,
) -> Result<(), Error> {
    let Some(index) = current else { return Ok(()) };
    directory[index as usize] = (stream.sector + 1) as u32;
    let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
    stream.metadata(MARKER_GT, GT_SECTORS, &bytes)?;
    table.fill(0);
    Ok(())
}

/// Compresses `grain` into `packed` as one zlib stream.
fn compress(compressor: &mut Compress, grain: &[u8], packed: &mut Vec<u8>) -> io::Result<()> {
    compressor.reset();
    packed.clear();
    loop {
        let consumed = usize::try_from(compressor.total_in()).unwrap_or(usize::MAX);
        let input = grain.get(consumed..).unwrap_or(&[]);
        if packed.capacity() == packed.len() {
            packed.reserve(GRAIN as usize);
        }
        match compressor.compress_vec(input, packed, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return Ok(()),
            Ok(Status::Ok | Status::BufError) => {}
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// The sparse extent header (also the footer, with the grain directory's sector).
fn header(capacity: u64, directory: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..4].copy_from_slice(b"KDMV");
    h[4..8].copy_from_slice(&3u32.to_le_bytes());
    h[8..12].copy_from_slice(&FLAGS.to_le_bytes());
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h[28..36].copy_from_slice(&1u64.to_le_bytes()); // descriptor offset
    h[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    h[44..48].copy_from_slice(&(GT_ENTRIES as u32).to_le_bytes());
    // 48..56: no redundant grain directory.
    h[56..64].copy_from_slice(&directory.to_le_bytes());
    h[64..72].copy_from_slice(&OVERHEAD.to_le_bytes());
    // 72: cleanly closed. 73..77: the characters a text-mode transfer would mangle.
    h[73..77].copy_from_slice(b"\n \r\n");
    h[77..79].copy_from_slice(&1u16.to_le_bytes()); // deflate
    h
}

/// The embedded descriptor.
fn descriptor(capacity: u64, options: &Options) -> Result<String, Error> {
    let name = options.file_name;
    if name.is_empty() || !name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"') {
        return Err(Error::FileName { name: name.to_string() });
    }
    let cylinders = (capacity / (HEADS * SECTORS_PER_TRACK)).min(65535);
    let text = format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"6\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"{HEADS}\"\n\
         ddb.geometry.sectors = \"{SECTORS_PER_TRACK}\"\n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.toolsVersion = \"2147483647\"\n",
        cid = options.cid,
    );
    let room = DESCRIPTOR_SECTORS * SECTOR;
    if text.len() as u64 > room {
        return Err(Error::Descriptor {
            needed: text.len(),
            room,
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extents::test_support::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn convert(raw: &File, dir: &Path, name: &str, cid: u32) -> PathBuf {
        let path = dir.join(name);
        let mut out = File::create(&path).unwrap();
        let options = Options { cid, file_name: name };
        let len = write(raw, &mut out, &options).unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        path
    }

    fn check(path: &Path) {
        let report = run(Command::new("qemu-img").args(["check", "-f", "vmdk"]).arg(path), None);
        assert!(report.contains("No errors were found"), "{report}");
    }

    fn le(bytes: &[u8], at: usize, len: usize) -> u64 {
        bytes[at..at + len].iter().rev().fold(0, |v, &b| v << 8 | u64::from(b))
    }

    /// Walks the stream from sector 128: (kind, sector) of each grain (`G`) and marker.
    fn walk(bytes: &[u8]) -> Vec<(char, u64, u64)> {
        let mut seen = Vec::new();
        let mut at = (OVERHEAD * SECTOR) as usize;
        while at < bytes.len() {
            let value = le(bytes, at, 8);
            let size = le(bytes, at + 8, 4);
            let sector = (at / 512) as u64;
            if size > 0 {
                seen.push(('G', sector, value));
                at += (12 + size as usize).div_ceil(512) * 512;
            } else {
                let kind = ['E', 'T', 'D', 'F'][le(bytes, at + 12, 4) as usize];
                seen.push((kind, sector, value));
                at += 512 + value as usize * 512;
            }
        }
        seen
    }

    #[test]
    fn qemu_reads_back_grains_tables_and_partial_grains() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        let noise = noise(200_000, 3);
        // Grains in the first table, the third table (from 64 MiB), and a partial last one.
        let len = (70 << 20) + 1024;
        let raw = raw_image(
            &raw_path,
            len,
            &[(446, b"\x80partition"), ((64 << 20) - 7, &noise), (len - 2, b"!!")],
        );
        let image = convert(&raw, dir.path(), "disk.vmdk", 0x1234_abcd);
        check(&image);
        assert_qemu_reads_raw(&raw_path, "vmdk", &image);
        let info = run(Command::new("qemu-img").args(["info", "-f", "vmdk"]).arg(&image), None);
        assert!(info.contains("cid: 305441741"), "{info}");
        assert!(info.contains("create type: streamOptimized"), "{info}");
        assert!(info.contains("compressed: true"), "{info}");

        let bytes = std::fs::read(&image).unwrap();
        let kinds: String = walk(&bytes).iter().map(|w| w.0).collect();
        // One grain, its table; the grain before 64 MiB, its table; the four after it and
        // the last one, in the same table; directory, footer, end of stream.
        assert_eq!(kinds, "GTGTGGGGGTDFE");
        let walked = walk(&bytes);
        let directory = walked.iter().find(|w| w.0 == 'D').unwrap();
        assert_eq!(directory.2, 1); // 3 tables: one sector
        assert_eq!(le(&bytes, 56, 8), u64::MAX);
        let footer = &bytes[bytes.len() - 1024..bytes.len() - 512];
        assert_eq!(le(footer, 56, 8), directory.1 + 1);
        assert_eq!(&footer[..56], &bytes[..56]);
        let descriptor = String::from_utf8_lossy(&bytes[512..1536]);
        assert!(descriptor.contains("CID=1234abcd\n"), "{descriptor}");
        assert!(descriptor.contains("RW 143362 SPARSE \"disk.vmdk\"\n"), "{descriptor}");
        assert!(descriptor.contains("ddb.adapterType = \"lsilogic\"\n"), "{descriptor}");
        assert!(descriptor.contains("ddb.geometry.cylinders = \"8\"\n"), "{descriptor}");
    }

    #[test]
    fn a_fat_disk_converts_reproducibly_and_the_cid_is_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        let raw = fat_disk(&raw_path, 64);
        let first = convert(&raw, dir.path(), "disk.vmdk", 7);
        check(&first);
        assert_qemu_reads_raw(&raw_path, "vmdk", &first);
        let mut second = Vec::new();
        write(
            &raw,
            &mut second,
            &Options {
                cid: 7,
                file_name: "disk.vmdk",
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), second);
        let mut other = Vec::new();
        write(
            &raw,
            &mut other,
            &Options {
                cid: 8,
                file_name: "disk.vmdk",
            },
        )
        .unwrap();
        assert_ne!(second, other);
        // Compressed: the 3 MiB of noise in the FAT disk do not shrink, the rest does.
        assert!(second.len() < 4 << 20, "{} bytes", second.len());
    }

    #[test]
    fn an_empty_disk_is_a_valid_stream() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("holes.img");
        let raw = raw_image(&raw_path, 100 << 20, &[]);
        let image = convert(&raw, dir.path(), "holes.vmdk", 1);
        check(&image);
        assert_qemu_reads_raw(&raw_path, "vmdk", &image);
        let kinds: String = walk(&std::fs::read(&image).unwrap()).iter().map(|w| w.0).collect();
        assert_eq!(kinds, "DFE");
    }

    #[test]
    fn bad_sizes_and_names_are_refused() {
        let raw = tempfile::tempfile().unwrap();
        raw.set_len(513).unwrap();
        let options = Options {
            cid: 0,
            file_name: "a.vmdk",
        };
        let err = write(&raw, &mut Vec::new(), &options).unwrap_err();
        assert!(matches!(err, Error::NotSectors { size: 513 }), "{err}");
        raw.set_len(2 << 40).unwrap();
        let err = write(&raw, &mut Vec::new(), &options).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        raw.set_len(512).unwrap();
        for name in ["", "a\"b.vmdk", "a\nb.vmdk", "é.vmdk"] {
            let err = write(
                &raw,
                &mut Vec::new(),
                &Options {
                    cid: 0,
                    file_name: name,
                },
            );
            assert!(matches!(err, Err(Error::FileName { .. })), "{name:?}");
        }
        let long = "x".repeat(10_000);
        let err = write(
            &raw,
            &mut Vec::new(),
            &Options {
                cid: 0,
                file_name: &long,
            },
        );
        assert!(matches!(err, Err(Error::Descriptor { .. })));
    }
}
