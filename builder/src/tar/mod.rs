//! Tar reading and writing.
//!
//! [`Header`] is the one entry description used everywhere in the builder: layers are read into it,
//! assembly edits it, and every output sink consumes it.

use std::collections::BTreeMap;
use std::io;

pub(crate) mod block;
#[cfg(test)]
pub(crate) mod corpus_tests;
pub mod gopath;
pub mod reader;
pub mod writer;

pub use reader::{Position, TarError, TarReader};
pub use writer::TarWriter;

/// A consumer of tar entries: a header, then exactly `header.size` bytes of data through
/// [`EntrySink::write_data`] (possibly in several calls), then the next header.
pub trait EntrySink {
    /// Starts a new entry.
    fn write_header(&mut self, header: &Header) -> io::Result<()>;
    /// Appends data to the current entry.
    fn write_data(&mut self, data: &[u8]) -> io::Result<()>;
    /// Ends the stream (writes trailers, flushes, renames temporary files into place).
    fn finish(&mut self) -> io::Result<()>;
}

/// Copies exactly `size` bytes from `data` into the sink's current entry, in bounded chunks.
pub fn copy_data(sink: &mut dyn EntrySink, size: u64, data: &mut dyn io::Read) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = data.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "entry data ended early"));
        }
        sink.write_data(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// The type of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file (`0` or NUL).
    Regular,
    /// Hard link to `link_name`.
    HardLink,
    /// Symbolic link to `link_name`.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Directory.
    Directory,
    /// FIFO.
    Fifo,
    /// Any other type flag, kept verbatim.
    Other(u8),
}

impl EntryKind {
    /// The ustar type flag byte.
    pub fn type_flag(self) -> u8 {
        match self {
            EntryKind::Regular => b'0',
            EntryKind::HardLink => b'1',
            EntryKind::Symlink => b'2',
            EntryKind::Char => b'3',
            EntryKind::Block => b'4',
            EntryKind::Directory => b'5',
            EntryKind::Fifo => b'6',
            EntryKind::Other(flag) => flag,
        }
    }

    /// The kind for a ustar type flag byte (NUL and `7` are regular files).
    pub fn from_type_flag(flag: u8) -> EntryKind {
        match flag {
            b'0' | 0 | b'7' => EntryKind::Regular,
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::Char,
            b'4' => EntryKind::Block,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        }
    }
}

/// One tar entry's metadata, with PAX records already applied to the typed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Entry name exactly as it will be written (a trailing `/` is kept if present).
    pub name: String,
    /// Entry type.
    pub kind: EntryKind,
    /// The raw mode field: permission bits plus setuid/setgid/sticky (and file-type bits if a
    /// foreign writer put them there).
    pub mode: u32,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Data size in bytes (0 for everything but regular files).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Link target for hard and symbolic links.
    pub link_name: String,
    /// Owner name (usually empty).
    pub uname: String,
    /// Group name (usually empty).
    pub gname: String,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// PAX records that are not one of the basic fields above (`path`, `linkpath`, `size`, `uid`,
    /// `gid`, `uname`, `gname`, `mtime`, `atime`, `ctime`), e.g. `LINUXKIT.source` or
    /// `SCHILY.xattr.*`. Sorted by key, as Go's writer sorts them.
    pub pax: BTreeMap<String, String>,
}

/// LinuxKit's fixed time for every entry it generates: 2017-04-18T16:30:00Z.
pub const DEFAULT_MTIME: i64 = 1_492_533_000;

/// PAX record naming the image (or `linuxkit.files`, ...) an entry comes from.
pub const PAX_SOURCE: &str = "LINUXKIT.source";
/// PAX record naming where in the YAML an entry comes from (`onboot[0]`, `files[2]`, ...).
pub const PAX_LOCATION: &str = "LINUXKIT.location";

impl Header {
    /// A generated entry: uid/gid 0, LinuxKit's fixed mtime, no PAX records.
    pub fn new(name: impl Into<String>, kind: EntryKind, mode: u32) -> Header {
        Header {
            name: name.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: DEFAULT_MTIME,
            link_name: String::new(),
            uname: String::new(),
            gname: String::new(),
            dev_major: 0,
            dev_minor: 0,
            pax: BTreeMap::new(),
        }
    }

    /// Sets LinuxKit's `LINUXKIT.source` and `LINUXKIT.location` records.
    pub fn with_origin(mut self, source: &str, location: &str) -> Header {
        self.set_origin(source, location);
        self
    }

    /// Sets LinuxKit's `LINUXKIT.source` and `LINUXKIT.location` records in place.
    pub fn set_origin(&mut self, source: &str, location: &str) {
        self.pax.insert(PAX_SOURCE.to_string(), source.to_string());
        self.pax.insert(PAX_LOCATION.to_string(), location.to_string());
    }
}
