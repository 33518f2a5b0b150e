//! [`Extents`]: where the data of a sparse raw image is, block by block.
//!
//! The container writers ([`crate::qcow2`], [`crate::vhd`], [`crate::vmdk`],
//! [`crate::sparse_tar`]) store only the blocks of a raw image that hold data. A scan asks the
//! filesystem for the file's data regions (`SEEK_DATA`/`SEEK_HOLE`), so that the holes of a
//! mostly empty 25 GiB image cost nothing, and then reads those regions to drop the blocks
//! that read as zeros, so that a raw image that is not sparse on disk (copied by a tool that
//! fills holes, or on a filesystem without hole support) still converts to a compact image.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

/// Largest read a scan or a writer does at once.
pub(crate) const CHUNK: u64 = 1 << 20;

/// The blocks of a raw image that hold data: sorted, disjoint byte ranges, each starting on a
/// block boundary and ending on one (or at the end of the file), two ranges never touching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extents {
    len: u64,
    block: u64,
    ranges: Vec<Range<u64>>,
}

impl Extents {
    /// Scans `file` (its length as it is now) in blocks of `block` bytes (a power of two, at
    /// least 512): a block is data when it lies in a data region of the file and does not
    /// read as all zeros. Moves the file's cursor (its data regions are found with `lseek`).
    pub fn scan(file: &File, block: u64) -> io::Result<Extents> {
        if block < 512 || !block.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("block size {block} is not a power of two of at least 512 bytes"),
            ));
        }
        let len = file.metadata()?.len();
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let chunk = CHUNK.max(block);
        let mut buf = vec![0u8; usize_of(chunk)?];
        // Everything before this has been looked at (a block may straddle two regions).
        let mut scanned = 0u64;
        for region in data_regions(file, len)? {
            // Whole blocks around the region, clipped to the file.
            let mut at = (region.start / block * block).max(scanned);
            let end = region.end.div_ceil(block).saturating_mul(block).min(len);
            while at < end {
                let n = (end - at).min(chunk);
                let data = &mut buf[..usize_of(n)?];
                read_padded(file, at, data)?;
                for (i, piece) in data.chunks(usize_of(block)?).enumerate() {
                    if is_zero(piece) {
                        continue;
                    }
                    let start = at + i as u64 * block;
                    let stop = (start + block).min(len);
                    match ranges.last_mut() {
                        Some(last) if last.end == start => last.end = stop,
                        _ => ranges.push(start..stop),
                    }
                }
                at += n;
            }
            scanned = scanned.max(end);
        }
        Ok(Extents { len, block, ranges })
    }

    /// Length of the scanned file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the scanned file was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block size of the scan.
    pub fn block_size(&self) -> u64 {
        self.block
    }

    /// The data ranges in bytes.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// How many bytes the data ranges hold.
    pub fn data_len(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// How many blocks hold data.
    pub fn block_count(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| r.end.div_ceil(self.block) - r.start / self.block)
            .sum()
    }

    /// Indices of the blocks that hold data, ascending.
    pub fn blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges
            .iter()
            .flat_map(|r| r.start / self.block..r.end.div_ceil(self.block))
    }
}

/// The data regions of `file` (of length `len`) as the filesystem reports them; the whole
/// file where the filesystem cannot tell.
fn data_regions(file: &File, len: u64) -> io::Result<Vec<Range<u64>>> {
    let mut regions = Vec::new();
    let mut at = 0u64;
    while at < len {
        let start = match rustix::fs::seek(file, SeekFrom::Data(at)) {
            Ok(start) => start,
            // No data after `at`: the rest is a hole.
            Err(Errno::NXIO) => break,
            // The filesystem or kernel does not know SEEK_DATA: treat everything as data.
            Err(Errno::INVAL | Errno::OPNOTSUPP) if regions.is_empty() => return Ok(std::iter::once(0..len).collect()),
            Err(e) => return Err(e.into()),
        };
        if start >= len {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
            Ok(end) => end.min(len),
            Err(Errno::NXIO) => len,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        regions.push(start..end);
        at = end;
    }
    Ok(regions)
}

/// Fills `buf` with the bytes of `file` from `offset`, zeros past the end of the file.
pub(crate) fn read_padded(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// Whether every byte is zero (in 64-byte strides the compiler vectorises).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let mut strides = bytes.chunks_exact(64);
    strides.all(|s| s.iter().fold(0u8, |acc, &b| acc | b) == 0) && strides.remainder().iter().all(|&b| b == 0)
}

/// `n` as a `usize` (block and chunk sizes, which fit on any 64-bit host).
pub(crate) fn usize_of(n: u64) -> io::Result<usize> {
    usize::try_from(n)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{n} bytes do not fit in memory")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn sparse_file(len: u64, writes: &[(u64, &[u8])]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.set_len(len).unwrap();
        for (at, bytes) in writes {
            file.write_all_at(bytes, *at).unwrap();
        }
        file
    }

    #[test]
    fn finds_data_blocks_in_a_sparse_file() {
        let file = sparse_file(
            10 << 20,
            &[(0, b"mbr"), (3 << 20, &[7u8; 100_000]), ((10 << 20) - 1, b"z")],
        );
        let extents = Extents::scan(&file, 65536).unwrap();
        assert_eq!(extents.len(), 10 << 20);
        // 100_000 bytes from 3 MiB cover two 64 KiB blocks.
        assert_eq!(
            extents.ranges(),
            &[0..65536, (3 << 20)..(3 << 20) + 131072, (10 << 20) - 65536..10 << 20]
        );
        assert_eq!(extents.block_count(), 4);
        assert_eq!(extents.data_len(), 4 * 65536);
        let blocks: Vec<u64> = extents.blocks().collect();
        assert_eq!(blocks, vec![0, 48, 49, 159]);
    }

    #[test]
    fn zero_blocks_of_a_dense_file_are_holes_too() {
        // Written in full, as `cp --sparse=never` would leave it: the filesystem reports one
        // data region, and the scan still finds only the two blocks with non-zero bytes.
        let mut bytes = vec![0u8; 4 << 20];
        bytes[5000] = 1;
        bytes[(2 << 20) + 4096] = 2;
        let file = sparse_file(4 << 20, &[(0, &bytes)]);
        assert!(
            file.metadata().unwrap().blocks() * 512 >= 4 << 20,
            "the file is not dense"
        );
        let extents = Extents::scan(&file, 4096).unwrap();
        assert_eq!(extents.ranges(), &[4096..8192, (2 << 20) + 4096..(2 << 20) + 8192]);
    }

    #[test]
    fn a_partial_last_block_ends_at_the_end_of_the_file() {
        let file = sparse_file(70_000, &[(69_999, b"x")]);
        let extents = Extents::scan(&file, 65536).unwrap();
        assert_eq!(extents.ranges(), std::slice::from_ref(&(65536..70_000)));
        assert_eq!(extents.blocks().collect::<Vec<_>>(), vec![1]);
        assert_eq!(extents.block_count(), 1);
    }

    #[test]
    fn empty_and_all_hole_files_have_no_data() {
        let empty = Extents::scan(&sparse_file(0, &[]), 512).unwrap();
        assert!(empty.is_empty());
        assert!(empty.ranges().is_empty());
        let holes = Extents::scan(&sparse_file(1 << 30, &[]), 2 << 20).unwrap();
        assert_eq!(holes.len(), 1 << 30);
        assert!(holes.ranges().is_empty());
    }

    #[test]
    fn adjacent_data_blocks_merge_and_bad_block_sizes_are_refused() {
        let file = sparse_file(1 << 20, &[(4095, b"ab"), (8192, b"c")]);
        let extents = Extents::scan(&file, 4096).unwrap();
        assert_eq!(extents.ranges(), std::slice::from_ref(&(0..12288)));
        assert_eq!(
            Extents::scan(&file, 1000).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            Extents::scan(&file, 256).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    /// The peak resident memory of this process, from /proc (kB).
    fn peak_rss_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A 25 GiB disk with a few MB of data (LinuxKit's `dynamic-vhd` size) converts to every
    /// container, each read back by qemu-img (or GNU tar); the figures are printed (run
    /// alone with `--test-threads=1 --nocapture` for a meaningful peak RSS).
    #[test]
    fn a_25_gib_sparse_disk_converts_to_every_container() {
        use crate::extents::test_support::*;
        use std::process::Command;
        use std::time::Instant;

        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.raw");
        let len = 25u64 << 30;
        let kernel = noise(6 << 20, 1);
        let raw = raw_image(
            &raw_path,
            len,
            &[
                (0, b"\xeb\x58\x90"),
                (1 << 20, &kernel),
                (12 << 30, &kernel[..300_000]),
                (len - 16384, &[9u8; 16384]),
            ],
        );
        let identity = crate::vhd::Identity {
            time: 1_492_533_000,
            unique_id: [7; 16],
        };
        let timed = |name: &str, convert: &mut dyn FnMut() -> u64| {
            let start = Instant::now();
            let written = convert();
            eprintln!(
                "{name:12} {:>8.3} s  {:>12} bytes out, peak RSS so far {} kB",
                start.elapsed().as_secs_f64(),
                written,
                peak_rss_kb()
            );
        };
        let create = |name: &str| File::create(dir.path().join(name)).unwrap();
        timed("scan", &mut || Extents::scan(&raw, 65536).unwrap().data_len());
        timed("qcow2", &mut || {
            crate::qcow2::write(&raw, &mut create("disk.qcow2")).unwrap()
        });
        timed("vhd", &mut || {
            crate::vhd::write_fixed(&raw, &create("fixed.vhd"), &identity).unwrap()
        });
        timed("dynamic-vhd", &mut || {
            crate::vhd::write_dynamic(&raw, &mut create("dynamic.vhd"), &identity).unwrap()
        });
        timed("vmdk", &mut || {
            let options = crate::vmdk::Options {
                cid: 1,
                file_name: "disk.vmdk",
            };
            crate::vmdk::write(&raw, &mut create("disk.vmdk"), &options).unwrap()
        });
        timed("gcp tar", &mut || {
            let member = crate::sparse_tar::Member {
                name: "disk.raw",
                mtime: 1_492_533_000,
                mode: 0o644,
                uid: 0,
                gid: 0,
                uname: "",
                gname: "",
            };
            crate::sparse_tar::write(&raw, &member, &mut create("disk.tar")).unwrap()
        });

        let start = Instant::now();
        for (format, name) in [
            ("qcow2", "disk.qcow2"),
            ("vpc", "fixed.vhd"),
            ("vpc", "dynamic.vhd"),
            ("vmdk", "disk.vmdk"),
        ] {
            assert_qemu_reads_raw(&raw_path, format, &dir.path().join(name));
        }
        let out = tempfile::tempdir().unwrap();
        run(
            Command::new("tar")
                .arg("-xSf")
                .arg(dir.path().join("disk.tar"))
                .arg("-C")
                .arg(out.path()),
            None,
        );
        assert_qemu_reads_raw(&raw_path, "raw", &out.path().join("disk.raw"));
        eprintln!("checks with qemu-img and tar: {:.3} s", start.elapsed().as_secs_f64());
        for name in ["disk.qcow2", "dynamic.vhd", "disk.vmdk", "disk.tar"] {
            let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(size < 32 << 20, "{name} has {size} bytes");
        }
    }

    #[test]
    fn zero_test_sees_every_byte() {
        let mut bytes = vec![0u8; 200];
        assert!(is_zero(&bytes));
        for i in [0, 63, 64, 127, 199] {
            bytes[i] = 1;
            assert!(!is_zero(&bytes), "byte {i}");
            bytes[i] = 0;
        }
    }
}

/// Helpers for the tests of the container writers: raw images to convert, and `qemu-img`.
#[cfg(test)]
pub(crate) mod test_support {
    use std::fs::File;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::Command;

    /// A sparse file of `len` bytes at `path` with `writes` in it.
    pub fn raw_image(path: &Path, len: u64, writes: &[(u64, &[u8])]) -> File {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.set_len(len).unwrap();
        for (at, bytes) in writes {
            file.write_all_at(bytes, *at).unwrap();
        }
        file
    }

    /// Bytes that do not compress and are never a zero block: a simple xorshift stream.
    pub fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8 | 1
            })
            .collect()
    }

    /// A disk as the builder makes them: an MBR partition table and a FAT32 filesystem in
    /// its partition with a few files, made with sfdisk, mkfs.fat and mcopy.
    pub fn fat_disk(path: &Path, len_mib: u64) -> File {
        let file = raw_image(path, len_mib << 20, &[]);
        run(Command::new("sfdisk").arg("--quiet").arg(path), Some(b"2048,,c,*\n"));
        let sectors = (len_mib << 20) / 512 - 2048;
        run(
            Command::new("mkfs.fat")
                .args(["-F", "32", "-i", "12345678", "--offset", "2048"])
                .arg(path)
                .arg((sectors / 2).to_string()),
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("kernel");
        std::fs::write(&kernel, noise(3 << 20, 11)).unwrap();
        let config = dir.path().join("syslinux.cfg");
        std::fs::write(&config, b"DEFAULT linux\n").unwrap();
        let image = format!("{}@@1M", path.display());
        run(
            Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", &image])
                .arg(&kernel)
                .arg(&config)
                .arg("::"),
            None,
        );
        file
    }

    /// Runs `command`, feeding it `stdin`, and returns its standard output; panics with its
    /// output when it fails.
    pub fn run(command: &mut Command, stdin: Option<&[u8]>) -> String {
        use std::process::Stdio;
        let mut child = command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        if let Some(bytes) = stdin {
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{command:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Asserts that qemu reads `image` (in qemu's format `format`) as exactly the bytes of
    /// `raw`, with the same virtual size.
    pub fn assert_qemu_reads_raw(raw: &Path, format: &str, image: &Path) {
        let info = run(
            Command::new("qemu-img")
                .args(["info", "--output=json", "-f", format])
                .arg(image),
            None,
        );
        let size = std::fs::metadata(raw).unwrap().len();
        assert!(
            info.contains(&format!("\"virtual-size\": {size},")),
            "qemu sees another size than {size}:\n{info}"
        );
        let compare = run(
            Command::new("qemu-img")
                .args(["compare", "-f", "raw", "-F", format])
                .arg(raw)
                .arg(image),
            None,
        );
        assert!(compare.contains("Images are identical"), "{compare}");
    }
}
