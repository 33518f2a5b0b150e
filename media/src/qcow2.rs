//! A qcow2 image of a raw image (`qcow2-bios`, `qcow2-efi`).
//!
//! Version 3 (qemu's `compat=1.1`): what `qemu-img` has made by default since QEMU 1.7 and
//! what LinuxKit's qcow2 outputs are (`qemu-img convert -O qcow2`, `qemu-img create -f
//! qcow2`); version 2 would only matter to a QEMU older than 1.1 (2012). 64 KiB clusters,
//! 16-bit refcounts, no backing file, no compression, no extensions: only clusters holding
//! data are stored, so an image reads back as the raw image with its holes as zeros.
//!
//! The layout is computed from the raw image's [`Extents`] first, then everything is written
//! in one forward pass, in file order:
//!
//! | clusters | what |
//! |---|---|
//! | 1 | the header |
//! | `l1` | the L1 table (one entry per 512 MiB of virtual disk) |
//! | `rt` | the refcount table |
//! | `rb` | refcount blocks: refcount 1 for each cluster of the file |
//! | `l2` | one L2 table per 512 MiB of virtual disk that holds data |
//! | `d` | the data clusters, in the order of the virtual disk |

use std::fs::File;
use std::io::{self, Write};

use crate::extents::{read_padded, usize_of, Extents, CHUNK};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table (or L1 or refcount table cluster).
const ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const REFCOUNTS: u64 = CLUSTER / 2;
/// "The cluster is used exactly once": may be written in place.
const COPIED: u64 = 1 << 63;
const HEADER_LENGTH: u32 = 104;

/// Why a qcow2 image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the raw image failed.
    #[error("cannot read the raw image to convert to qcow2: {source}")]
    Read {
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the qcow2 image failed.
    #[error("cannot write the qcow2 image: {source}")]
    Write {
        /// The I/O error.
        source: io::Error,
    },
}

fn read(source: io::Error) -> Error {
    Error::Read { source }
}

fn write_err(source: io::Error) -> Error {
    Error::Write { source }
}

/// Where each part of the image goes, in clusters.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    l1_entries: u64,
    l1_clusters: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    /// Indices of the L1 entries (512 MiB regions) that have an L2 table.
    l2_tables: Vec<u64>,
    data_clusters: u64,
}

impl Layout {
    /// The layout of a disk of `size` bytes whose data is in `clusters` (ascending).
    fn new(size: u64, clusters: impl Iterator<Item = u64>) -> Layout {
        let l1_entries = size.div_ceil(CLUSTER * ENTRIES);
        let mut l2_tables: Vec<u64> = Vec::new();
        let mut data_clusters = 0;
        for cluster in clusters {
            let table = cluster / ENTRIES;
            if l2_tables.last() != Some(&table) {
                l2_tables.push(table);
            }
            data_clusters += 1;
        }
        let mut layout = Layout {
            l1_entries,
            l1_clusters: (l1_entries * 8).div_ceil(CLUSTER),
            refcount_table_clusters: 1,
            refcount_blocks: 1,
            l2_tables,
            data_clusters,
        };
        // The refcount blocks count themselves: grow until they cover every cluster.
        loop {
            let blocks = layout.clusters().div_ceil(REFCOUNTS);
            let table = blocks.div_ceil(ENTRIES);
            if blocks == layout.refcount_blocks && table == layout.refcount_table_clusters {
                return layout;
            }
            layout.refcount_blocks = blocks;
            layout.refcount_table_clusters = table;
        }
    }

    fn l1_start(&self) -> u64 {
        1
    }

    fn refcount_table_start(&self) -> u64 {
        self.l1_start() + self.l1_clusters
    }

    fn refcount_blocks_start(&self) -> u64 {
        self.refcount_table_start() + self.refcount_table_clusters
    }

    fn l2_start(&self) -> u64 {
        self.refcount_blocks_start() + self.refcount_blocks
    }

    fn data_start(&self) -> u64 {
        self.l2_start() + self.l2_tables.len() as u64
    }

    /// Clusters in the whole file.
    fn clusters(&self) -> u64 {
        self.data_start() + self.data_clusters
    }
}

/// Writes a qcow2 image of `raw` (its virtual size is the length of `raw`) to `out`.
/// Returns the number of bytes written.
pub fn write(raw: &File, out: &mut dyn Write) -> Result<u64, Error> {
    let extents = Extents::scan(raw, CLUSTER).map_err(read)?;
    let layout = Layout::new(extents.len(), extents.blocks());
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut cluster = vec![0u8; usize_of(CLUSTER).map_err(write_err)?];

    // Header.
    put(&mut cluster, 0, &header(&layout, extents.len()));
    out.write_all(&cluster).map_err(write_err)?;

    // L1 table: the L2 tables in order.
    let mut l1 = Vec::with_capacity(usize_of(layout.l1_clusters * CLUSTER).map_err(write_err)?);
    let mut tables = layout.l2_tables.iter().peekable();
    let mut next_table = layout.l2_start();
    for entry in 0..layout.l1_entries {
        let mut value = 0;
        if tables.peek() == Some(&&entry) {
            tables.next();
            value = (next_table * CLUSTER) | COPIED;
            next_table += 1;
        }
        l1.extend_from_slice(&value.to_be_bytes());
    }
    l1.resize(l1.capacity(), 0);
    out.write_all(&l1).map_err(write_err)?;
    drop(l1);

    // Refcount table and blocks: every cluster of the file is used once.
    write_entries(&mut out, layout.refcount_table_clusters, |i| {
        (i < layout.refcount_blocks).then(|| (layout.refcount_blocks_start() + i) * CLUSTER)
    })
    .map_err(write_err)?;
    let clusters = layout.clusters();
    for block in 0..layout.refcount_blocks {
        cluster.fill(0);
        let first = block * REFCOUNTS;
        let used = clusters.saturating_sub(first).min(REFCOUNTS);
        for entry in cluster.chunks_exact_mut(2).take(usize_of(used).map_err(write_err)?) {
            entry.copy_from_slice(&1u16.to_be_bytes());
        }
        out.write_all(&cluster).map_err(write_err)?;
    }

    // L2 tables: the data clusters in order.
    let mut data = extents.blocks().peekable();
    let mut next_data = layout.data_start();
    for &table in &layout.l2_tables {
        let first = table * ENTRIES;
        cluster.fill(0);
        for (i, entry) in cluster.chunks_exact_mut(8).enumerate() {
            if data.peek() == Some(&(first + i as u64)) {
                data.next();
                entry.copy_from_slice(&((next_data * CLUSTER) | COPIED).to_be_bytes());
                next_data += 1;
            }
        }
        out.write_all(&cluster).map_err(write_err)?;
    }

    // Data, in whole clusters (the last one of an odd-sized disk padded with zeros).
    let mut buf = vec![0u8; usize_of(CHUNK).map_err(write_err)?];
    for range in extents.ranges() {
        let end = range.end.div_ceil(CLUSTER) * CLUSTER;
        let mut at = range.start;
        while at < end {
            let n = (end - at).min(CHUNK);
            let chunk = &mut buf[..usize_of(n).map_err(write_err)?];
            read_padded(raw, at, chunk).map_err(read)?;
            out.write_all(chunk).map_err(write_err)?;
            at += n;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(clusters * CLUSTER)
}

/// The header fields (version 3, header length 104, no extensions).
fn header(layout: &Layout, size: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LENGTH as usize];
    put(&mut h, 0, b"QFI\xfb");
    put(&mut h, 4, &3u32.to_be_bytes());
    put(&mut h, 20, &CLUSTER_BITS.to_be_bytes());
    put(&mut h, 24, &size.to_be_bytes());
    // l1_size is a 32-bit count of entries: 2^32 entries of 512 MiB is beyond any disk.
    put(&mut h, 36, &(layout.l1_entries as u32).to_be_bytes());
    // An empty disk has no L1 table (qemu then counts no cluster for it, and neither do we).
    let l1_offset = if layout.l1_entries == 0 {
        0
    } else {
        layout.l1_start() * CLUSTER
    };
    put(&mut h, 40, &l1_offset.to_be_bytes());
    put(&mut h, 48, &(layout.refcount_table_start() * CLUSTER).to_be_bytes());
    put(&mut h, 56, &(layout.refcount_table_clusters as u32).to_be_bytes());
    put(&mut h, 96, &4u32.to_be_bytes()); // refcount_order: 16-bit refcounts
    put(&mut h, 100, &HEADER_LENGTH.to_be_bytes());
    h
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Writes `clusters` clusters of big-endian 8-byte entries, `entry(i)` or 0.
fn write_entries(out: &mut dyn Write, clusters: u64, entry: impl Fn(u64) -> Option<u64>) -> io::Result<()> {
    let mut buf = vec![0u8; usize_of(CLUSTER)?];
    for c in 0..clusters {
        for (i, slot) in buf.chunks_exact_mut(8).enumerate() {
            let value = entry(c * ENTRIES + i as u64).unwrap_or(0);
            slot.copy_from_slice(&value.to_be_bytes());
        }
        out.write_all(&buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extents::test_support::*;
    use std::process::Command;

    fn convert(raw: &File, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut out = File::create(&path).unwrap();
        let written = write(raw, &mut out).unwrap();
        assert_eq!(written, std::fs::metadata(&path).unwrap().len());
        path
    }

    fn check(path: &std::path::Path) {
        let report = run(Command::new("qemu-img").args(["check", "-f", "qcow2"]).arg(path), None);
        assert!(report.contains("No errors were found"), "{report}");
    }

    #[test]
    fn qemu_reads_back_a_sparse_image_with_odd_data() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("raw");
        let noise = noise(300_000, 1);
        // Data in the first cluster, across a cluster boundary, at the start of the second
        // L2 table (512 MiB), and in a partial last cluster of an odd-sized disk.
        let len = (600 << 20) + 512 * 3;
        let raw = raw_image(
            &raw_path,
            len,
            &[
                (0, b"\xeb\x3c\x90MBR"),
                ((5 << 20) - 1000, &noise),
                (512 << 20, b"second table"),
                (len - 100, b"end"),
            ],
        );
        let image = convert(&raw, dir.path(), "a.qcow2");
        check(&image);
        assert_qemu_reads_raw(&raw_path, "qcow2", &image);
        // Header, L1, refcount table, one refcount block, two L2 tables, and the data:
        // 1 + 6 (noise spans 6 clusters) + 1 + 1.
        let extents = Extents::scan(&raw, CLUSTER).unwrap();
        let layout = Layout::new(extents.len(), extents.blocks());
        assert_eq!(layout.l2_tables, vec![0, 1]);
        assert_eq!(layout.data_clusters, 9);
        assert_eq!(std::fs::metadata(&image).unwrap().len(), (6 + 9) * CLUSTER);
    }

    #[test]
    fn a_fat_disk_converts_and_the_output_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        let raw = fat_disk(&raw_path, 64);
        let first = convert(&raw, dir.path(), "1.qcow2");
        let second = convert(&raw, dir.path(), "2.qcow2");
        check(&first);
        assert_qemu_reads_raw(&raw_path, "qcow2", &first);
        assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
        let info = run(Command::new("qemu-img").args(["info", "-f", "qcow2"]).arg(&first), None);
        assert!(info.contains("compat: 1.1"), "{info}");
    }

    #[test]
    fn empty_and_hole_only_disks_are_valid_images() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len, clusters) in [("empty", 0u64, 3), ("holes", 3 << 30, 4)] {
            let raw_path = dir.path().join(name);
            let raw = raw_image(&raw_path, len, &[]);
            let image = convert(&raw, dir.path(), &format!("{name}.qcow2"));
            check(&image);
            assert_qemu_reads_raw(&raw_path, "qcow2", &image);
            // Header, L1 (none when empty), refcount table and block.
            assert_eq!(std::fs::metadata(&image).unwrap().len(), clusters * CLUSTER);
        }
    }

    #[test]
    fn refcount_blocks_grow_with_the_image() {
        // 25 GiB with data in 40000 clusters spread over 50 L2 tables: one refcount block
        // covers 32768 clusters, so two are needed, and they count themselves.
        let clusters = (0..40_000u64).map(|i| i * 10);
        let layout = Layout::new(25 << 30, clusters);
        assert_eq!(layout.l1_entries, 50);
        assert_eq!(layout.l2_tables.len(), 49);
        assert_eq!(layout.refcount_blocks, 2);
        assert_eq!(layout.refcount_table_clusters, 1);
        assert_eq!(layout.data_start(), 1 + 1 + 1 + 2 + 49);
        assert_eq!(layout.clusters(), layout.data_start() + 40_000);
        // Exactly at the edge (8 clusters of metadata): 32768 clusters in all fit one block,
        // one more needs a second block, which is one more cluster.
        let fits = Layout::new(1 << 40, 0..32768 - 8);
        assert_eq!((fits.clusters(), fits.refcount_blocks), (32768, 1));
        let over = Layout::new(1 << 40, 0..32768 - 7);
        assert_eq!((over.clusters(), over.refcount_blocks), (32770, 2));
    }
}
