//! A GNU tar archive holding a raw image as one sparse member (`gcp`: `disk.raw` in
//! NAME.img.tar.gz, gzipped by the caller).
//!
//! Google Compute Engine imports a disk from a gzipped tar whose only member is the raw disk,
//! named `disk.raw`, its size a whole number of GiB, in GNU tar's old format with sparse
//! members (Google documents `tar --format=oldgnu -Sczf`). We write what GNU tar 1.34 writes
//! with `--format=oldgnu -S` for a file whose data sits in 4 KiB blocks, byte for byte: an
//! `S` header carrying the first 4 data regions (offset, length) and the file's real size,
//! extension blocks of 21 regions each when there are more, the regions' data one after the
//! other, a final empty region at the end of the file (always there), two zero
//! blocks and zero padding to a 10 KiB record. Numbers too large for octal (sizes and offsets
//! from 8 GiB on) are written in GNU's base-256 form. (LinuxKit's own `make-gcp` forgets `-S`
//! and stores every zero of the 1 GiB disk.)

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;

use crate::extents::{read_padded, usize_of, Extents, CHUNK};

const BLOCK: usize = 512;
/// GNU tar's default record: 20 blocks.
const RECORD: u64 = 10240;
/// The granularity of holes: a filesystem block, as GNU tar finds them with `SEEK_HOLE`.
const GRANULE: u64 = 4096;
/// Sparse map entries in the header and in each extension block.
const IN_HEADER: usize = 4;
const IN_EXTENSION: usize = 21;

/// The tar member's name and metadata, fixed by the caller for reproducibility.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// The member's name (`disk.raw` for GCE), at most 100 bytes.
    pub name: &'a str,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Owner's user name (may be empty), at most 31 bytes.
    pub uname: &'a str,
    /// Owner's group name (may be empty), at most 31 bytes.
    pub gname: &'a str,
}

/// Why the sparse tar could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the raw image failed.
    #[error("cannot read the raw image to put in the tar archive: {source}")]
    Read {
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("cannot write the tar archive: {source}")]
    Write {
        /// The I/O error.
        source: io::Error,
    },
    /// A name does not fit its header field.
    #[error(
        "the tar {field} {value:?} has {len} bytes, more than the {max} an old GNU tar header holds; use a shorter one"
    )]
    TooLong {
        /// Which field: member name, user name, group name.
        field: &'static str,
        /// The value.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// The most the field holds.
        max: usize,
    },
}

fn read(source: io::Error) -> Error {
    Error::Read { source }
}

fn write_err(source: io::Error) -> Error {
    Error::Write { source }
}

/// Writes a tar archive to `out` whose one member, described by `member`, is `raw` with its
/// holes recorded as sparse regions. Returns the number of bytes written.
pub fn write(raw: &File, member: &Member, out: &mut dyn Write) -> Result<u64, Error> {
    check_len("member name", member.name, 100)?;
    check_len("user name", member.uname, 31)?;
    check_len("group name", member.gname, 31)?;
    let extents = Extents::scan(raw, GRANULE).map_err(read)?;
    let size = extents.len();
    let mut map: Vec<Range<u64>> = extents.ranges().to_vec();
    // The map ends with an empty region at the end of the file (as GNU tar writes it), so
    // that extraction makes a file that ends in a hole as long as it was.
    map.push(size..size);
    let stored = extents.data_len();

    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut header = [0u8; BLOCK];
    put_text(&mut header[0..100], member.name);
    number(&mut header[100..108], u64::from(member.mode & 0o7777));
    number(&mut header[108..116], u64::from(member.uid));
    number(&mut header[116..124], u64::from(member.gid));
    number(&mut header[136..148], member.mtime);
    header[257..265].copy_from_slice(b"ustar  \0");
    put_text(&mut header[265..297], member.uname);
    put_text(&mut header[297..329], member.gname);
    if size == 0 {
        // An empty file is a regular member, as GNU tar writes it.
        number(&mut header[124..136], 0);
        header[156] = b'0';
    } else {
        number(&mut header[124..136], stored);
        header[156] = b'S';
        put_map(&mut header[386..482], &map[..map.len().min(IN_HEADER)]);
        header[482] = u8::from(map.len() > IN_HEADER);
        number(&mut header[483..495], size);
    }
    seal(&mut header);
    out.write_all(&header).map_err(write_err)?;
    let mut written = BLOCK as u64;

    if size > 0 {
        let rest = map.get(IN_HEADER..).unwrap_or(&[]);
        let count = rest.len().div_ceil(IN_EXTENSION);
        for (i, entries) in rest.chunks(IN_EXTENSION).enumerate() {
            let mut extension = [0u8; BLOCK];
            put_map(&mut extension[..504], entries);
            extension[504] = u8::from(i + 1 < count);
            out.write_all(&extension).map_err(write_err)?;
            written += BLOCK as u64;
        }
        let mut buf = vec![0u8; usize_of(CHUNK).map_err(write_err)?];
        for range in extents.ranges() {
            let mut at = range.start;
            while at < range.end {
                let n = (range.end - at).min(CHUNK);
                let chunk = &mut buf[..usize_of(n).map_err(write_err)?];
                read_padded(raw, at, chunk).map_err(read)?;
                out.write_all(chunk).map_err(write_err)?;
                at += n;
            }
        }
        written += stored;
    }
    // Data padding, the two zero blocks that end an archive, and zeros to a whole record.
    let end = (written.next_multiple_of(BLOCK as u64) + 2 * BLOCK as u64).next_multiple_of(RECORD);
    let zeros = [0u8; BLOCK];
    while written < end {
        let n = (end - written).min(BLOCK as u64 - written % BLOCK as u64);
        out.write_all(&zeros[..n as usize]).map_err(write_err)?;
        written += n;
    }
    out.flush().map_err(write_err)?;
    Ok(written)
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::TooLong {
            field,
            value: value.to_string(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn put_text(field: &mut [u8], text: &str) {
    field[..text.len()].copy_from_slice(text.as_bytes());
}

/// Sparse map entries: 12-byte offset, 12-byte length.
fn put_map(field: &mut [u8], entries: &[Range<u64>]) {
    for (slot, entry) in field.chunks_exact_mut(24).zip(entries) {
        number(&mut slot[..12], entry.start);
        number(&mut slot[12..], entry.end - entry.start);
    }
}

/// Writes `value` into a numeric field: octal digits filling all but the last byte, which is
/// NUL, as GNU tar does; GNU's base-256 (high bit set, big-endian) when octal does not fit.
fn number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits * 3 >= 64 || value < 1 << (3 * digits) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let bytes = value.to_be_bytes();
        let len = field.len();
        let take = bytes.len().min(len - 1);
        field[len - take..].copy_from_slice(&bytes[bytes.len() - take..]);
        field[0] = 0x80;
    }
}

/// Fills in the header checksum: the sum of the header's bytes with the checksum field as
/// spaces, in 6 octal digits, a NUL and a space.
fn seal(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    header[154] = 0;
}

/// Why a member could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Reading the archive failed (a gzip error shows here too).
    #[error("cannot read the tar archive: {0}")]
    Read(io::Error),
    /// Writing the extracted file failed.
    #[error("cannot write the extracted {name}: {source}")]
    Write {
        /// The member.
        name: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The archive ended before the member was found.
    #[error("the tar archive has no member {0:?} (GCE images hold disk.raw)")]
    NotFound(String),
    /// A header or sparse map that is not tar.
    #[error("the tar archive is damaged at byte {offset}: {problem}")]
    Damaged {
        /// Where the bad block starts.
        offset: u64,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Extracts the member `name` (a regular or an old GNU sparse member) from the uncompressed tar
/// stream `input` into `out`, keeping its holes; returns its size. Everything in the archive is
/// checked (checksums, sparse regions in order and inside the file, sizes that agree), since
/// images come from anywhere.
pub fn extract(input: &mut dyn io::Read, name: &str, out: &File) -> Result<u64, ExtractError> {
    use std::os::unix::fs::FileExt;
    let mut reader = BlockReader { input, offset: 0 };
    loop {
        let at = reader.offset;
        let header = reader.block()?;
        if header.iter().all(|&b| b == 0) {
            return Err(ExtractError::NotFound(name.to_string()));
        }
        let damaged = |problem| ExtractError::Damaged { offset: at, problem };
        let stored_sum: u32 = header[148..156].iter().map(|&b| u32::from(b)).sum();
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum::<u32>() - stored_sum + 8 * u32::from(b' ');
        if parse_number(&header[148..156]) != Some(u64::from(sum)) {
            return Err(damaged("header checksum mismatch"));
        }
        let stored = parse_number(&header[124..136]).ok_or(damaged("bad size field"))?;
        let member_name = header[..100].split(|&b| b == 0).next().unwrap_or(&[]);
        let kind = header[156];
        if member_name != name.as_bytes() || !matches!(kind, b'0' | 0 | b'S') {
            reader.skip(stored.next_multiple_of(BLOCK as u64))?;
            continue;
        }
        let write = |source| ExtractError::Write {
            name: name.to_string(),
            source,
        };
        if kind != b'S' {
            let mut at_out = 0;
            reader
                .copy(stored, |chunk| {
                    let result = out.write_all_at(chunk, at_out);
                    at_out += chunk.len() as u64;
                    result
                })
                .map_err(|e| match e {
                    CopyError::Read(e) => e,
                    CopyError::Write(e) => write(e),
                })?;
            out.set_len(stored).map_err(write)?;
            return Ok(stored);
        }
        let real_size = parse_number(&header[483..495]).ok_or(damaged("bad real size in the sparse header"))?;
        let mut map = Vec::new();
        read_map(&header[386..482], &mut map).ok_or(damaged("bad sparse map"))?;
        let mut extended = header[482] != 0;
        while extended {
            let at = reader.offset;
            let block = reader.block()?;
            if map.len() > 1 << 20 {
                return Err(ExtractError::Damaged {
                    offset: at,
                    problem: "more than a million sparse regions",
                });
            }
            read_map(&block[..504], &mut map).ok_or(ExtractError::Damaged {
                offset: at,
                problem: "bad sparse map",
            })?;
            extended = block[504] != 0;
        }
        let mut end = 0;
        let mut total = 0u64;
        for region in &map {
            if region.start < end || region.end > real_size {
                return Err(damaged("sparse regions out of order or past the end of the file"));
            }
            end = region.end;
            total += region.end - region.start;
        }
        if total != stored {
            return Err(damaged("the sparse regions do not add up to the stored size"));
        }
        out.set_len(real_size).map_err(write)?;
        for region in &map {
            let mut at_out = region.start;
            reader
                .copy(region.end - region.start, |chunk| {
                    let result = out.write_all_at(chunk, at_out);
                    at_out += chunk.len() as u64;
                    result
                })
                .map_err(|e| match e {
                    CopyError::Read(e) => e,
                    CopyError::Write(e) => write(e),
                })?;
        }
        return Ok(real_size);
    }
}

/// Sparse map entries until the first empty slot.
fn read_map(field: &[u8], map: &mut Vec<Range<u64>>) -> Option<()> {
    for slot in field.chunks_exact(24) {
        if slot.iter().all(|&b| b == 0) {
            break;
        }
        let start = parse_number(&slot[..12])?;
        let len = parse_number(&slot[12..])?;
        map.push(start..start.checked_add(len)?);
    }
    Some(())
}

/// A numeric field: octal (spaces and NULs around it allowed) or GNU base-256.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A tar stream read in blocks, counting its offset.
struct BlockReader<'a> {
    input: &'a mut dyn io::Read,
    offset: u64,
}

enum CopyError {
    Read(ExtractError),
    Write(io::Error),
}

impl BlockReader<'_> {
    fn block(&mut self) -> Result<[u8; BLOCK], ExtractError> {
        let mut block = [0u8; BLOCK];
        self.input.read_exact(&mut block).map_err(ExtractError::Read)?;
        self.offset += BLOCK as u64;
        Ok(block)
    }

    fn skip(&mut self, len: u64) -> Result<(), ExtractError> {
        let copied =
            io::copy(&mut io::Read::take(&mut *self.input, len), &mut io::sink()).map_err(ExtractError::Read)?;
        self.offset += copied;
        if copied < len {
            return Err(ExtractError::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// Passes `len` bytes on, then skips the padding to the next block.
    fn copy(&mut self, len: u64, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> Result<(), CopyError> {
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self
                .input
                .read(&mut buf[..want])
                .map_err(|e| CopyError::Read(ExtractError::Read(e)))?;
            if n == 0 {
                return Err(CopyError::Read(ExtractError::Read(io::ErrorKind::UnexpectedEof.into())));
            }
            each(&buf[..n]).map_err(CopyError::Write)?;
            left -= n as u64;
            self.offset += n as u64;
        }
        let padding = len.next_multiple_of(BLOCK as u64) - len;
        self.skip(padding).map_err(CopyError::Read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extents::test_support::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::Command;

    const MEMBER: Member = Member {
        name: "disk.raw",
        mtime: 1_492_533_000,
        mode: 0o644,
        uid: 0,
        gid: 0,
        uname: "",
        gname: "",
    };

    fn archive(raw: &File, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("disk.tar");
        let mut out = File::create(&path).unwrap();
        let len = write(raw, &MEMBER, &mut out).unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        assert_eq!(len % RECORD, 0);
        path
    }

    /// Extracts with GNU tar into a fresh directory and returns the extracted file's path.
    fn extract(tar: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("tar").arg("-xSf").arg(tar).arg("-C").arg(dir.path()), None);
        let path = dir.path().join("disk.raw");
        (dir, path)
    }

    /// Asserts equal bytes, saying where they first differ.
    fn assert_same(ours: &[u8], theirs: &[u8]) {
        let at = ours.iter().zip(theirs).position(|(a, b)| a != b);
        assert!(
            at.is_none() && ours.len() == theirs.len(),
            "archives differ at byte {at:?} (lengths {} and {})",
            ours.len(),
            theirs.len()
        );
    }

    /// GNU tar's own archive of `raw_path` with the same metadata.
    fn gnu_tar(raw_path: &Path) -> Vec<u8> {
        let listing = Command::new("tar")
            .args(["--format=oldgnu", "-S", "-c", "-f", "-", "--mtime=@1492533000"])
            .args(["--owner=0", "--group=0", "--numeric-owner", "--mode=0644"])
            .arg("-C")
            .arg(raw_path.parent().unwrap())
            .arg(raw_path.file_name().unwrap())
            .output()
            .unwrap();
        assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
        listing.stdout
    }

    #[test]
    fn gnu_tar_lists_and_extracts_the_image_sparse_and_identical() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.raw");
        let raw = fat_disk(&raw_path, 64);
        let tar = archive(&raw, dir.path());
        let listing = run(Command::new("tar").arg("-tvf").arg(&tar), None);
        let fields: Vec<&str> = listing.split_whitespace().collect();
        assert_eq!(
            fields,
            ["-rw-r--r--", "0/0", "67108864", "2017-04-18", "16:30", "disk.raw"]
        );
        let (_keep, extracted) = extract(&tar);
        run(Command::new("cmp").arg(&raw_path).arg(&extracted), None);
        let allocated = std::fs::metadata(&extracted).unwrap().blocks() * 512;
        assert!(
            allocated < 16 << 20,
            "extracted file not sparse: {allocated} bytes allocated"
        );
        // The archive stores the data, not the holes.
        assert!(std::fs::metadata(&tar).unwrap().len() < 16 << 20);
        // Same input, same bytes.
        let mut again = Vec::new();
        write(&raw, &MEMBER, &mut again).unwrap();
        assert_same(&std::fs::read(&tar).unwrap(), &again);
    }

    #[test]
    fn many_regions_need_extension_headers_and_match_gnu_tar_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.raw");
        // 30 data regions of whole non-zero 4 KiB blocks (so that GNU tar finds the same
        // regions whether it asks the filesystem or reads zeros): header + 2 extensions.
        let blocks: Vec<(u64, Vec<u8>)> = (0..30u64)
            .map(|i| (i * 16384, noise(4096 * (1 + i as usize % 2), i + 1)))
            .collect();
        let writes: Vec<(u64, &[u8])> = blocks.iter().map(|(at, b)| (*at, b.as_slice())).collect();
        let raw = raw_image(&raw_path, 1 << 20, &writes);
        let tar = archive(&raw, dir.path());
        let ours = std::fs::read(&tar).unwrap();
        assert_eq!(ours[156], b'S');
        assert_eq!(ours[482], 1);
        assert_eq!(ours[1024 + 504], 0, "the second extension is the last");
        assert_same(&ours, &gnu_tar(&raw_path));
        let (_keep, extracted) = extract(&tar);
        run(Command::new("cmp").arg(&raw_path).arg(&extracted), None);
    }

    #[test]
    fn a_large_sparse_image_uses_base_256_numbers_like_gnu_tar() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.raw");
        let data = noise(8192, 9);
        // 20 GiB: size and offsets beyond 8 GiB do not fit 11 octal digits.
        let raw = raw_image(
            &raw_path,
            20 << 30,
            &[(0, &data), (9 << 30, &data), ((20 << 30) - 4096, &data[..4096])],
        );
        let tar = archive(&raw, dir.path());
        let ours = std::fs::read(&tar).unwrap();
        assert_eq!(ours[483], 0x80);
        assert_same(&ours, &gnu_tar(&raw_path));
        let listing = run(Command::new("tar").arg("-tvf").arg(&tar), None);
        assert!(listing.contains(" 21474836480 "), "{listing}");
    }

    #[test]
    fn holes_only_and_empty_images_match_gnu_tar() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.raw");
        for len in [1 << 30, 0] {
            let raw = raw_image(&raw_path, len, &[]);
            let tar = archive(&raw, dir.path());
            assert_same(&std::fs::read(&tar).unwrap(), &gnu_tar(&raw_path));
            let (_keep, extracted) = extract(&tar);
            assert_eq!(std::fs::metadata(&extracted).unwrap().len(), len);
        }
    }

    #[test]
    fn numbers_and_names() {
        let mut field = [0u8; 12];
        number(&mut field, 0o77_777_777_777);
        assert_eq!(&field, b"77777777777\0");
        number(&mut field, 8 << 30);
        assert_eq!(field, [0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        let mut mode = [0u8; 8];
        number(&mut mode, 0o644);
        assert_eq!(&mode, b"0000644\0");
        let long = "d".repeat(101);
        let raw = tempfile::tempfile().unwrap();
        let err = write(&raw, &Member { name: &long, ..MEMBER }, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::TooLong { len: 101, max: 100, .. }), "{err}");
    }

    #[test]
    fn extraction_gives_back_the_sparse_image() {
        let dir = tempfile::tempdir().unwrap();
        let raw = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("raw"))
            .unwrap();
        raw.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        for (i, at) in [0u64, 5 << 20, 9 << 20, 13 << 20, 17 << 20, 40 << 20]
            .iter()
            .enumerate()
        {
            raw.write_all_at(&vec![i as u8 + 1; 10_000], *at).unwrap();
        }
        let member = Member {
            name: "disk.raw",
            mtime: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: "",
            gname: "",
        };
        let mut archive = Vec::new();
        write(&raw, &member, &mut archive).unwrap();
        // Another member first, as any tool might put one.
        let mut other = [0u8; BLOCK];
        other[..5].copy_from_slice(b"other");
        number(&mut other[124..136], 3);
        other[156] = b'0';
        seal(&mut other);
        let mut stream = other.to_vec();
        stream.extend_from_slice(&[7u8; BLOCK]);
        stream.extend_from_slice(&archive);

        let out = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("out"))
            .unwrap();
        assert_eq!(
            super::extract(&mut stream.as_slice(), "disk.raw", &out).unwrap(),
            64 << 20
        );
        assert!(std::fs::read(dir.path().join("raw")).unwrap() == std::fs::read(dir.path().join("out")).unwrap());
        assert!(out.metadata().unwrap().blocks() * 512 < 1 << 20, "holes stay holes");

        let err = super::extract(&mut stream.as_slice(), "nothing", &out).unwrap_err();
        assert!(matches!(err, ExtractError::NotFound(_)), "{err}");
        let mut damaged = stream.clone();
        damaged[BLOCK * 2 + 390] ^= 1;
        let err = super::extract(&mut damaged.as_slice(), "disk.raw", &out).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = super::extract(&mut &stream[..stream.len() / 3], "disk.raw", &out).unwrap_err();
        assert!(matches!(err, ExtractError::Read(_)), "{err}");
    }

    #[test]
    fn extraction_reads_gnu_tars_own_sparse_archives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let raw = File::create(&path).unwrap();
        raw.set_len(8 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        raw.write_all_at(b"hello", 3 << 20).unwrap();
        let tar = dir.path().join("a.tar");
        let status = Command::new("tar")
            .args(["--format=oldgnu", "-S", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .arg("disk.raw")
            .status()
            .unwrap();
        assert!(status.success());
        let out = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("out"))
            .unwrap();
        let mut archive = File::open(&tar).unwrap();
        assert_eq!(super::extract(&mut archive, "disk.raw", &out).unwrap(), 8 << 20);
        assert!(std::fs::read(&path).unwrap() == std::fs::read(dir.path().join("out")).unwrap());
    }
}
