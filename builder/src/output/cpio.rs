//! A writer for the SVR4 "newc" cpio format (magic `070701`), the format the Linux kernel unpacks
//! as an initramfs.
//!
//! The bytes match what LinuxKit produces through `github.com/surma/gocpio`, so that our initrd
//! archives can be compared with LinuxKit's byte for byte:
//!
//! - inode numbers start at 721 and go up by one for every entry, the trailer included;
//! - `nlink` is 2 for directories and 1 for everything else (no hard links are ever written);
//! - the `devmajor`/`devminor` fields (the device holding the file) are always 3 and 1, the
//!   `rdevmajor`/`rdevminor` fields carry the device numbers of device nodes;
//! - the check field is 0, names are NUL-terminated, the header+name and the data are each padded
//!   with NULs to a multiple of 4 bytes;
//! - the archive ends with a `TRAILER!!!` entry (mode 0, nlink 1, mtime 0) and is padded with NULs
//!   to a multiple of 512 bytes.

use std::io::{self, Write};

/// The first inode number gocpio hands out; kept so that our archives equal LinuxKit's.
const FIRST_INODE: u32 = 721;
/// The `devmajor` value gocpio writes for every entry.
const DEV_MAJOR: u32 = 3;
/// The `devminor` value gocpio writes for every entry.
const DEV_MINOR: u32 = 1;
/// Name of the end-of-archive marker entry.
const TRAILER_NAME: &str = "TRAILER!!!";
/// Magic plus 13 eight-digit hex fields.
const HEADER_LEN: usize = 6 + 13 * 8;

/// Errors from [`NewcWriter`].
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing to the underlying writer failed.
    #[error("cannot write the cpio archive: {0}")]
    Io(#[from] io::Error),
    /// An entry was given more data than its header announced.
    #[error("cpio entry {name}: got more than the {size} bytes announced in its header")]
    TooMuchData {
        /// Entry name.
        name: String,
        /// Size from the header.
        size: u32,
    },
    /// A new entry (or the end of the archive) came before the previous entry's data was complete.
    #[error("cpio entry {name}: only {written} of the {size} bytes announced in its header were written")]
    ShortData {
        /// Entry name.
        name: String,
        /// Size from the header.
        size: u32,
        /// Bytes actually written.
        written: u32,
    },
    /// Data was written before any entry was started.
    #[error("cpio data written before any entry header")]
    NoEntry,
    /// An entry name contains a NUL byte, which would end the name early.
    #[error("cpio entry {name:?}: names cannot contain NUL bytes")]
    NulInName {
        /// Entry name.
        name: String,
    },
    /// An entry name is too long for the 32-bit name size field.
    #[error("cpio entry name of {len} bytes is too long for the newc format")]
    NameTooLong {
        /// Name length in bytes.
        len: usize,
    },
}

impl From<CpioError> for io::Error {
    fn from(err: CpioError) -> io::Error {
        match err {
            CpioError::Io(inner) => inner,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// The file type of a cpio entry, stored in the upper bits of the mode field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Regular file (`0100000`).
    Regular,
    /// Directory (`0040000`).
    Directory,
    /// Symbolic link (`0120000`); the data is the link target.
    Symlink,
    /// Character device (`0020000`).
    Char,
    /// Block device (`0060000`).
    Block,
    /// FIFO (`0010000`).
    Fifo,
    /// Socket (`0140000`).
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits of this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Fifo => 0o010000,
            FileType::Char => 0o020000,
            FileType::Directory => 0o040000,
            FileType::Block => 0o060000,
            FileType::Regular => 0o100000,
            FileType::Symlink => 0o120000,
            FileType::Socket => 0o140000,
        }
    }
}

/// The metadata of one cpio entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewcHeader {
    /// Entry name, written as given (no leading `/` added or removed).
    pub name: String,
    /// File type.
    pub file_type: FileType,
    /// Permission bits plus setuid/setgid/sticky; anything above `0o7777` is ignored.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Modification time, Unix seconds.
    pub mtime: u32,
    /// Data size: file length, or the target length for symlinks.
    pub size: u32,
    /// Major number of a device node.
    pub rdev_major: u32,
    /// Minor number of a device node.
    pub rdev_minor: u32,
}

impl NewcHeader {
    /// A header with all numeric fields zero.
    pub fn new(name: impl Into<String>, file_type: FileType, mode: u32) -> NewcHeader {
        NewcHeader {
            name: name.into(),
            file_type,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }
}

/// The entry whose data is being written.
#[derive(Debug)]
struct OpenEntry {
    name: String,
    size: u32,
    written: u32,
}

/// Writes a newc cpio archive: [`NewcWriter::write_header`], then exactly `size` bytes through
/// [`NewcWriter::write_data`], and so on; [`NewcWriter::finish`] writes the trailer.
#[derive(Debug)]
pub struct NewcWriter<W: Write> {
    inner: W,
    /// Bytes written so far, for the 4- and 512-byte alignment.
    offset: u64,
    next_inode: u32,
    open: Option<OpenEntry>,
    /// Reused buffer for header + name + padding.
    scratch: Vec<u8>,
}

impl<W: Write> NewcWriter<W> {
    /// Starts an archive on `inner`.
    pub fn new(inner: W) -> NewcWriter<W> {
        NewcWriter {
            inner,
            offset: 0,
            next_inode: FIRST_INODE,
            open: None,
            scratch: Vec::with_capacity(512),
        }
    }

    /// Starts a new entry; the previous entry must have received all its data.
    pub fn write_header(&mut self, header: &NewcHeader) -> Result<(), CpioError> {
        self.close_entry()?;
        let mode = (header.mode & 0o7777) | header.file_type.mode_bits();
        let nlink = if header.file_type == FileType::Directory { 2 } else { 1 };
        self.write_raw_header(header, mode, nlink)?;
        self.open = Some(OpenEntry {
            name: header.name.clone(),
            size: header.size,
            written: 0,
        });
        Ok(())
    }

    /// Appends data to the current entry.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), CpioError> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(open) = self.open.as_mut() else {
            return Err(CpioError::NoEntry);
        };
        let room = u64::from(open.size - open.written);
        if data.len() as u64 > room {
            return Err(CpioError::TooMuchData {
                name: open.name.clone(),
                size: open.size,
            });
        }
        // Cannot truncate: `data.len() <= room <= u32::MAX` was checked above.
        open.written += data.len() as u32;
        self.inner.write_all(data)?;
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Writes the trailer and the final padding, and returns the underlying writer (not flushed).
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.close_entry()?;
        let trailer = NewcHeader::new(TRAILER_NAME, FileType::Regular, 0);
        // The trailer's mode is 0: gocpio gives it no file-type bits.
        self.write_raw_header(&trailer, 0, 1)?;
        self.pad_to(512)?;
        Ok(self.inner)
    }

    /// Checks that the open entry is complete and pads its data to 4 bytes.
    fn close_entry(&mut self) -> Result<(), CpioError> {
        if let Some(open) = self.open.take() {
            if open.written != open.size {
                return Err(CpioError::ShortData {
                    name: open.name,
                    size: open.size,
                    written: open.written,
                });
            }
            self.pad_to(4)?;
        }
        Ok(())
    }

    /// Writes the 110-byte header, the NUL-terminated name and the padding after it.
    fn write_raw_header(&mut self, header: &NewcHeader, mode: u32, nlink: u32) -> Result<(), CpioError> {
        let name = header.name.as_bytes();
        if name.contains(&0) {
            return Err(CpioError::NulInName {
                name: header.name.clone(),
            });
        }
        let name_size = u32::try_from(name.len() + 1).map_err(|_| CpioError::NameTooLong { len: name.len() })?;
        let inode = self.next_inode;
        self.next_inode = self.next_inode.wrapping_add(1);

        let fields = [
            inode,
            mode,
            header.uid,
            header.gid,
            nlink,
            header.mtime,
            header.size,
            DEV_MAJOR,
            DEV_MINOR,
            header.rdev_major,
            header.rdev_minor,
            name_size,
            0, // check: always 0 in newc (only "crc" archives use it)
        ];
        self.scratch.clear();
        self.scratch.extend_from_slice(b"070701");
        for field in fields {
            push_hex8(&mut self.scratch, field);
        }
        debug_assert_eq!(self.scratch.len(), HEADER_LEN);
        self.scratch.extend_from_slice(name);
        self.scratch.push(0);
        let unaligned = (self.offset + self.scratch.len() as u64) % 4;
        let padding = ((4 - unaligned) % 4) as usize;
        self.scratch.resize(self.scratch.len() + padding, 0);
        self.inner.write_all(&self.scratch)?;
        self.offset += self.scratch.len() as u64;
        Ok(())
    }

    /// Writes NULs until the archive length is a multiple of `align`.
    fn pad_to(&mut self, align: u64) -> Result<(), CpioError> {
        const ZEROS: [u8; 512] = [0; 512];
        let padding = ((align - self.offset % align) % align) as usize;
        self.inner.write_all(&ZEROS[..padding])?;
        self.offset += padding as u64;
        Ok(())
    }
}

/// Appends `value` as eight lower-case hex digits (what Go's `%08x` gives for values below 2^32).
fn push_hex8(out: &mut Vec<u8>, value: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One entry parsed back from a newc archive.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct ParsedEntry {
        pub inode: u32,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub nlink: u32,
        pub mtime: u32,
        pub dev: (u32, u32),
        pub rdev: (u32, u32),
        pub check: u32,
        pub name: String,
        pub data: Vec<u8>,
    }

    /// A strict newc reader for tests: checks magic, NUL terminators, zero padding, the trailer
    /// and the final 512-byte padding. Returns the entries without the trailer.
    pub(crate) fn parse_newc(archive: &[u8]) -> Vec<ParsedEntry> {
        let mut entries = Vec::new();
        let mut pos = 0usize;
        loop {
            let head = &archive[pos..pos + HEADER_LEN];
            assert_eq!(&head[..6], b"070701", "bad magic at offset {pos}");
            let field = |i: usize| {
                let text = std::str::from_utf8(&head[6 + i * 8..14 + i * 8]).unwrap();
                assert!(text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
                u32::from_str_radix(text, 16).unwrap()
            };
            let name_size = field(11) as usize;
            let size = field(6) as usize;
            let name_start = pos + HEADER_LEN;
            let name_bytes = &archive[name_start..name_start + name_size];
            assert_eq!(name_bytes.last(), Some(&0), "name not NUL-terminated");
            let name = String::from_utf8(name_bytes[..name_size - 1].to_vec()).unwrap();
            let mut data_start = name_start + name_size;
            while !data_start.is_multiple_of(4) {
                assert_eq!(archive[data_start], 0, "non-zero padding after name {name}");
                data_start += 1;
            }
            let data = archive[data_start..data_start + size].to_vec();
            let mut next = data_start + size;
            while !next.is_multiple_of(4) {
                assert_eq!(archive[next], 0, "non-zero padding after data of {name}");
                next += 1;
            }
            let entry = ParsedEntry {
                inode: field(0),
                mode: field(1),
                uid: field(2),
                gid: field(3),
                nlink: field(4),
                mtime: field(5),
                dev: (field(7), field(8)),
                rdev: (field(9), field(10)),
                check: field(12),
                name,
                data,
            };
            pos = next;
            if entry.name == TRAILER_NAME {
                assert_eq!(entry.mode, 0);
                assert_eq!(entry.nlink, 1);
                assert_eq!(archive.len() % 512, 0, "archive not padded to 512 bytes");
                assert!(archive[pos..].iter().all(|&b| b == 0), "junk after trailer");
                return entries;
            }
            entries.push(entry);
        }
    }

    fn file(name: &str, data: &[u8]) -> NewcHeader {
        NewcHeader {
            size: data.len() as u32,
            mtime: 1_700_000_000,
            ..NewcHeader::new(name, FileType::Regular, 0o644)
        }
    }

    #[test]
    fn header_bytes_match_gocpio_layout() {
        let mut writer = NewcWriter::new(Vec::new());
        let header = NewcHeader {
            uid: 1000,
            gid: 50,
            mtime: 1_492_533_000,
            ..NewcHeader::new("etc", FileType::Directory, 0o40755)
        };
        writer.write_header(&header).unwrap();
        let archive = writer.finish().unwrap();
        let expected_head = concat!(
            "070701",
            "000002d1",
            "000041ed",
            "000003e8",
            "00000032",
            "00000002",
            "58f63f08",
            "00000000",
            "00000003",
            "00000001",
            "00000000",
            "00000000",
            "00000004",
            "00000000",
            "etc\0\0\0" // 110 + 4 bytes, padded to 116
        );
        assert_eq!(&archive[..expected_head.len()], expected_head.as_bytes());
        let trailer = concat!(
            "070701",
            "000002d2",
            "00000000",
            "00000000",
            "00000000",
            "00000001",
            "00000000",
            "00000000",
            "00000003",
            "00000001",
            "00000000",
            "00000000",
            "0000000b",
            "00000000",
            "TRAILER!!!\0"
        );
        let at = expected_head.len();
        assert_eq!(&archive[at..at + trailer.len()], trailer.as_bytes());
        assert_eq!(archive.len(), 512);
    }

    #[test]
    fn entries_round_trip_with_padding_and_types() {
        let mut writer = NewcWriter::new(Vec::new());
        writer.write_header(&file("a", b"hello")).unwrap();
        writer.write_data(b"hel").unwrap();
        writer.write_data(b"lo").unwrap();
        let link = NewcHeader {
            size: 7,
            ..NewcHeader::new("bin/sh", FileType::Symlink, 0o777)
        };
        writer.write_header(&link).unwrap();
        writer.write_data(b"busybox").unwrap();
        let dev = NewcHeader {
            rdev_major: 5,
            rdev_minor: 1,
            ..NewcHeader::new("dev/console", FileType::Char, 0o600)
        };
        writer.write_header(&dev).unwrap();
        writer.write_header(&file("empty", b"")).unwrap();
        let archive = writer.finish().unwrap();

        let entries = parse_newc(&archive);
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.inode, e.mode, e.nlink, e.name.as_str(), e.data.as_slice()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (721, 0o100644, 1, "a", &b"hello"[..]),
                (722, 0o120777, 1, "bin/sh", &b"busybox"[..]),
                (723, 0o020600, 1, "dev/console", &b""[..]),
                (724, 0o100644, 1, "empty", &b""[..]),
            ]
        );
        assert_eq!(entries[2].rdev, (5, 1));
        assert!(entries.iter().all(|e| e.dev == (3, 1) && e.check == 0));
    }

    #[test]
    fn type_bits_in_mode_are_replaced_by_the_file_type() {
        let mut writer = NewcWriter::new(Vec::new());
        // A foreign tar writer may leave S_IFDIR in the mode of a file; the type decides.
        writer
            .write_header(&NewcHeader::new("x", FileType::Fifo, 0o40644 | 0o4000))
            .unwrap();
        let entries = parse_newc(&writer.finish().unwrap());
        assert_eq!(entries[0].mode, 0o014644);
    }

    #[test]
    fn too_much_data_is_rejected() {
        let mut writer = NewcWriter::new(Vec::new());
        writer.write_header(&file("a", b"ab")).unwrap();
        let err = writer.write_data(b"abc").unwrap_err();
        assert!(matches!(err, CpioError::TooMuchData { ref name, size: 2 } if name == "a"));
    }

    #[test]
    fn short_data_is_rejected_at_next_header_and_at_finish() {
        let mut writer = NewcWriter::new(Vec::new());
        writer.write_header(&file("a", b"ab")).unwrap();
        writer.write_data(b"a").unwrap();
        let err = writer.write_header(&file("b", b"")).unwrap_err();
        assert!(matches!(
            err,
            CpioError::ShortData {
                written: 1,
                size: 2,
                ..
            }
        ));

        let mut writer = NewcWriter::new(Vec::new());
        writer.write_header(&file("a", b"ab")).unwrap();
        assert!(matches!(
            writer.finish().unwrap_err(),
            CpioError::ShortData { written: 0, .. }
        ));
    }

    #[test]
    fn data_without_header_is_rejected() {
        let mut writer = NewcWriter::new(Vec::new());
        assert!(matches!(writer.write_data(b"x"), Err(CpioError::NoEntry)));
        assert!(writer.write_data(b"").is_ok());
    }

    #[test]
    fn nul_in_name_is_rejected() {
        let mut writer = NewcWriter::new(Vec::new());
        let err = writer.write_header(&file("a\0b", b"")).unwrap_err();
        assert!(matches!(err, CpioError::NulInName { .. }));
    }

    #[test]
    fn empty_archive_is_just_the_trailer() {
        let archive = NewcWriter::new(Vec::new()).finish().unwrap();
        assert_eq!(archive.len(), 512);
        assert!(parse_newc(&archive).is_empty());
        assert_eq!(&archive[6..14], b"000002d1");
    }
}
