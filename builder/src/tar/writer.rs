//! A tar writer whose output is byte-identical to Go's `archive/tar` writing headers with
//! `Format = FormatPAX`, which is what LinuxKit does for every entry of its output tar.
//!
//! Go's rules, as implemented here:
//! - A field that a ustar header cannot hold (name or link name longer than 100 bytes or not ASCII,
//!   uid/gid/size/mtime too large for their octal fields, owner names longer than 32 bytes or not
//!   ASCII) gets a PAX record; `Header::pax` records are added as given (basic keys excepted).
//! - With no PAX record at all (and every field fitting ustar, a long name split into prefix and name)
//!   a plain ustar header is written; otherwise an extended header `x` named
//!   `<dir>/PaxHeaders.0/<base>` precedes a ustar-layout header holding ASCII-only, truncated fields.
//! - Records are sorted by key and formatted `"<len> <key>=<value>\n"`.
//! - The archive ends with two zero blocks and no further padding.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::block::{self, Layout, BLOCK_SIZE};
use super::gopath;
use super::{EntryKind, EntrySink, Header};

/// Go refuses PAX extended headers larger than this.
const MAX_PAX_DATA: usize = 1 << 20;

/// PAX keys that correspond to header fields; Go never copies them from `PAXRecords`.
pub(crate) const BASIC_PAX_KEYS: [&str; 10] = [
    "path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime",
];

/// Why a header cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum HeaderEncodeError {
    /// A value that only a fixed ustar field can carry does not fit it.
    #[error("tar entry {name:?}: {field} {value} does not fit the tar header")]
    FieldTooLarge {
        /// Entry name.
        name: String,
        /// Header field (`mode`, `devmajor`, `devminor`).
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A PAX record is malformed (empty key, `=` in the key, NUL in key or path value).
    #[error("tar entry {name:?}: invalid PAX record {key:?}")]
    InvalidPaxRecord {
        /// Entry name.
        name: String,
        /// Record key.
        key: String,
    },
    /// All PAX records together exceed Go's 1 MiB limit.
    #[error("tar entry {name:?}: PAX records take {size} bytes, more than the 1 MiB limit")]
    PaxTooLarge {
        /// Entry name.
        name: String,
        /// Encoded size of the records.
        size: usize,
    },
    /// Regular files, devices and FIFOs may not have a name ending in `/`.
    #[error("tar entry {name:?}: a {kind:?} entry may not have a name ending in '/'")]
    TrailingSlash {
        /// Entry name.
        name: String,
        /// Entry kind.
        kind: EntryKind,
    },
    /// The type is an archive-internal one (`x`, `g`, `L`, `K`) that callers may not write.
    #[error("tar entry {name:?}: type flag {flag:?} is reserved for the archive format itself")]
    ReservedType {
        /// Entry name.
        name: String,
        /// The type flag as a character.
        flag: char,
    },
}

impl From<HeaderEncodeError> for io::Error {
    fn from(err: HeaderEncodeError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, err)
    }
}

/// Writes tar entries to `W` byte-for-byte as LinuxKit (Go's `archive/tar`, `FormatPAX`) does.
///
/// `W` is written in whole headers and data chunks; wrap a file in a `BufWriter` for small entries.
pub struct TarWriter<W: Write> {
    inner: W,
    /// Data bytes still owed for the current entry.
    remaining: u64,
    /// Zero bytes to write after the current entry's data.
    padding: usize,
    /// Name of the current entry, for error messages.
    current: String,
    finished: bool,
}

impl<W: Write> TarWriter<W> {
    /// A writer that appends the archive to `inner`.
    pub fn new(inner: W) -> TarWriter<W> {
        TarWriter {
            inner,
            remaining: 0,
            padding: 0,
            current: String::new(),
            finished: false,
        }
    }

    /// The underlying writer (call [`EntrySink::finish`] first to get a complete archive).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// A reference to the underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Checks that the current entry got all its data and writes its padding.
    fn close_entry(&mut self) -> io::Result<()> {
        if self.remaining > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tar entry {:?}: {} bytes of data were announced but not written",
                    self.current, self.remaining
                ),
            ));
        }
        if self.padding > 0 {
            self.inner.write_all(&[0u8; BLOCK_SIZE][..self.padding])?;
            self.padding = 0;
        }
        Ok(())
    }

    fn check_open(&self) -> io::Result<()> {
        if self.finished {
            return Err(io::Error::other("tar archive is already finished"));
        }
        Ok(())
    }
}

impl<W: Write> EntrySink for TarWriter<W> {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.check_open()?;
        self.close_entry()?;
        let encoded = encode_header(header)?;
        self.inner.write_all(&encoded)?;
        self.remaining = data_size(header);
        self.padding = padding_for(self.remaining);
        self.current.clone_from(&header.name);
        Ok(())
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_open()?;
        let len = data.len() as u64;
        if len > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tar entry {:?}: {} bytes of data written but only {} remained of its size",
                    self.current, len, self.remaining
                ),
            ));
        }
        self.inner.write_all(data)?;
        self.remaining -= len;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.check_open()?;
        self.close_entry()?;
        self.inner.write_all(&[0u8; 2 * BLOCK_SIZE])?;
        self.inner.flush()?;
        self.finished = true;
        Ok(())
    }
}

/// Bytes of data that follow a header of this kind (links, directories, devices and FIFOs have none,
/// whatever their size field says).
pub(crate) fn data_size(header: &Header) -> u64 {
    if is_header_only(header.kind) {
        0
    } else {
        header.size
    }
}

/// Whether entries of this kind never carry data.
pub(crate) fn is_header_only(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::HardLink
            | EntryKind::Symlink
            | EntryKind::Char
            | EntryKind::Block
            | EntryKind::Directory
            | EntryKind::Fifo
    )
}

/// Zero bytes needed after `size` data bytes to reach a block boundary.
pub(crate) fn padding_for(size: u64) -> usize {
    // The remainder is below 512, so the conversion is lossless.
    ((BLOCK_SIZE as u64 - size % BLOCK_SIZE as u64) % BLOCK_SIZE as u64) as usize
}

/// Go's `isASCII`: no byte at or above 0x80 and no NUL.
fn is_ascii(s: &str) -> bool {
    s.bytes().all(|b| b != 0 && b < 0x80)
}

/// Go's `toASCII`: drops every non-ASCII character and every NUL.
fn to_ascii(s: &str) -> String {
    s.chars().filter(|&c| c != '\0' && c.is_ascii()).collect()
}

/// Go's `splitUSTARPath`: splits a long ASCII name at a `/` into a prefix of at most 155 bytes and a
/// name of at most 100 bytes.
fn split_ustar_path(name: &str) -> Option<(&str, &str)> {
    let bytes = name.as_bytes();
    let mut length = bytes.len();
    if length <= block::NAME.len() || !is_ascii(name) {
        return None;
    }
    if length > block::PREFIX.len() + 1 {
        length = block::PREFIX.len() + 1;
    } else if bytes[length - 1] == b'/' {
        length -= 1;
    }
    let i = bytes[..length].iter().rposition(|&b| b == b'/')?;
    let name_len = bytes.len() - i - 1;
    if i == 0 || name_len > block::NAME.len() || name_len == 0 || i > block::PREFIX.len() {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// The outcome of Go's `allowedFormats` for one header.
struct Plan {
    /// A plain ustar header can hold the header (possibly with the name split into prefix/name).
    ustar: bool,
    /// Records for the extended header.
    records: BTreeMap<String, String>,
}

/// Decides, like Go, which fields need PAX records and whether plain ustar suffices.
fn plan(header: &Header) -> Result<Plan, HeaderEncodeError> {
    let mut plan = Plan {
        ustar: true,
        records: BTreeMap::new(),
    };
    let given = &header.pax;

    let mut string_field = |value: &str, width: usize, key: &str, splittable: bool| {
        if !is_ascii(value) || value.len() > width {
            if !(splittable && split_ustar_path(value).is_some()) {
                plan.ustar = false;
            }
            plan.records.insert(key.to_string(), value.to_string());
        }
        if given.get(key).is_some_and(|v| v == value) {
            plan.records.insert(key.to_string(), value.to_string());
        }
    };
    string_field(&header.name, block::NAME.len(), "path", true);
    string_field(&header.link_name, block::LINKNAME.len(), "linkpath", false);
    string_field(&header.uname, block::UNAME.len(), "uname", false);
    string_field(&header.gname, block::GNAME.len(), "gname", false);

    let mut number_field = |value: i128, width: usize, key: &str| {
        if !block::fits_octal(width, value) {
            plan.ustar = false;
            plan.records.insert(key.to_string(), value.to_string());
        }
        if given.get(key).is_some_and(|v| *v == value.to_string()) {
            plan.records.insert(key.to_string(), value.to_string());
        }
    };
    number_field(i128::from(header.uid), block::UID.len(), "uid");
    number_field(i128::from(header.gid), block::GID.len(), "gid");
    number_field(i128::from(header.size), block::SIZE.len(), "size");
    number_field(i128::from(header.mtime), block::MTIME.len(), "mtime");

    let fixed = [
        ("mode", u64::from(header.mode), block::MODE.len()),
        ("devmajor", u64::from(header.dev_major), block::DEVMAJOR.len()),
        ("devminor", u64::from(header.dev_minor), block::DEVMINOR.len()),
    ];
    for (field, value, width) in fixed {
        if !block::fits_octal(width, i128::from(value)) {
            return Err(HeaderEncodeError::FieldTooLarge {
                name: header.name.clone(),
                field,
                value,
            });
        }
    }

    if !given.is_empty() {
        plan.ustar = false;
        for (key, value) in given {
            let basic = BASIC_PAX_KEYS.contains(&key.as_str());
            if !basic && !key.starts_with("GNU.sparse.") {
                plan.records.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    Ok(plan)
}

/// Checks the header kind and name the way Go does before writing anything.
fn validate(header: &Header) -> Result<(), HeaderEncodeError> {
    let flag = header.kind.type_flag();
    if matches!(flag, b'x' | b'g' | b'L' | b'K') {
        return Err(HeaderEncodeError::ReservedType {
            name: header.name.clone(),
            flag: char::from(flag),
        });
    }
    let no_slash = matches!(
        header.kind,
        EntryKind::Regular | EntryKind::Char | EntryKind::Block | EntryKind::Fifo
    );
    if no_slash && header.name.ends_with('/') {
        return Err(HeaderEncodeError::TrailingSlash {
            name: header.name.clone(),
            kind: header.kind,
        });
    }
    Ok(())
}

/// Encodes one PAX record: `"<len> <key>=<value>\n"` where `<len>` counts the whole record.
pub(crate) fn pax_record(key: &str, value: &str) -> String {
    // 3 bytes for the space, the `=` and the newline.
    let body = key.len() + value.len() + 3;
    let mut size = body + body.to_string().len();
    if size.to_string().len() + body != size {
        size = size.to_string().len() + body;
    }
    format!("{size} {key}={value}\n")
}

/// Go's `validPAXRecord`.
fn valid_pax_record(key: &str, value: &str) -> bool {
    if key.is_empty() || key.contains('=') {
        return false;
    }
    match key {
        "path" | "linkpath" | "uname" | "gname" => !value.contains('\0'),
        _ => !key.contains('\0'),
    }
}

/// Encodes a header: optionally an extended header with its data and padding, then the main header.
pub fn encode_header(header: &Header) -> Result<Vec<u8>, HeaderEncodeError> {
    validate(header)?;
    let plan = plan(header)?;
    if plan.ustar {
        return Ok(ustar_block(header).to_vec());
    }
    let mut out = Vec::with_capacity(3 * BLOCK_SIZE);
    if !plan.records.is_empty() {
        let mut data = String::new();
        for (key, value) in &plan.records {
            if !valid_pax_record(key, value) {
                return Err(HeaderEncodeError::InvalidPaxRecord {
                    name: header.name.clone(),
                    key: key.clone(),
                });
            }
            data.push_str(&pax_record(key, value));
        }
        if data.len() > MAX_PAX_DATA {
            return Err(HeaderEncodeError::PaxTooLarge {
                name: header.name.clone(),
                size: data.len(),
            });
        }
        out.extend_from_slice(&extended_block(&header.name, data.len()));
        out.extend_from_slice(data.as_bytes());
        out.resize(out.len() + padding_for(data.len() as u64), 0);
    }
    out.extend_from_slice(&pax_main_block(header));
    Ok(out)
}

/// The `x` header announcing `size` bytes of records for the entry `name`.
fn extended_block(name: &str, size: usize) -> [u8; BLOCK_SIZE] {
    let (dir, file) = gopath::split(name);
    let pax_name = to_ascii(&gopath::join(&[dir, "PaxHeaders.0", file]));
    let truncated = &pax_name.as_bytes()[..pax_name.len().min(block::NAME.len())];
    let kept = truncated.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let mut blk = [0u8; BLOCK_SIZE];
    blk[block::TYPEFLAG] = b'x';
    block::put_str(&mut blk[block::NAME], &truncated[..kept]);
    block::put_octal(&mut blk[block::MODE], 0);
    block::put_octal(&mut blk[block::UID], 0);
    block::put_octal(&mut blk[block::GID], 0);
    block::put_octal(&mut blk[block::SIZE], size as i128);
    block::put_octal(&mut blk[block::MTIME], 0);
    block::seal(&mut blk, Layout::Ustar);
    blk
}

/// Go's `templateV7Plus`: the fields every ustar-layout header shares.
fn template(header: &Header, name: &[u8], link: &[u8], uname: &[u8], gname: &[u8]) -> [u8; 512] {
    let mut blk = [0u8; BLOCK_SIZE];
    blk[block::TYPEFLAG] = header.kind.type_flag();
    block::put_str(&mut blk[block::NAME], name);
    block::put_str(&mut blk[block::LINKNAME], link);
    block::put_octal(&mut blk[block::MODE], i128::from(header.mode));
    block::put_octal(&mut blk[block::UID], i128::from(header.uid));
    block::put_octal(&mut blk[block::GID], i128::from(header.gid));
    block::put_octal(&mut blk[block::SIZE], i128::from(header.size));
    block::put_octal(&mut blk[block::MTIME], i128::from(header.mtime));
    block::put_str(&mut blk[block::UNAME], uname);
    block::put_str(&mut blk[block::GNAME], gname);
    block::put_octal(&mut blk[block::DEVMAJOR], i128::from(header.dev_major));
    block::put_octal(&mut blk[block::DEVMINOR], i128::from(header.dev_minor));
    blk
}

/// The main header after an extended header: ASCII-only, truncated fields.
fn pax_main_block(header: &Header) -> [u8; BLOCK_SIZE] {
    let mut blk = template(
        header,
        to_ascii(&header.name).as_bytes(),
        to_ascii(&header.link_name).as_bytes(),
        to_ascii(&header.uname).as_bytes(),
        to_ascii(&header.gname).as_bytes(),
    );
    block::seal(&mut blk, Layout::Ustar);
    blk
}

/// A plain ustar header (the planner guaranteed every field fits).
fn ustar_block(header: &Header) -> [u8; BLOCK_SIZE] {
    let (prefix, name) = split_ustar_path(&header.name).unwrap_or(("", &header.name));
    let mut blk = template(
        header,
        name.as_bytes(),
        header.link_name.as_bytes(),
        header.uname.as_bytes(),
        header.gname.as_bytes(),
    );
    block::put_str(&mut blk[block::PREFIX], prefix.as_bytes());
    block::seal(&mut blk, Layout::Ustar);
    blk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::{DEFAULT_MTIME, PAX_LOCATION, PAX_SOURCE};

    fn field(blk: &[u8], range: std::ops::Range<usize>) -> &[u8] {
        &blk[range]
    }

    fn origin_header(name: &str, kind: EntryKind, mode: u32) -> Header {
        Header::new(name, kind, mode).with_origin("localhost:5000/conformance/kernel:6.6.0", "kernel")
    }

    #[test]
    fn empty_archive_is_two_zero_blocks() {
        let mut writer = TarWriter::new(Vec::new());
        writer.finish().unwrap();
        assert_eq!(writer.into_inner(), vec![0u8; 1024]);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", "a"), "9 path=a\n");
        // 98 bytes of key, value, separators and a 3-digit length make 101, so the length must be
        // recomputed once (Go's "final adjustment").
        let rec = pax_record("k", &"v".repeat(94));
        assert_eq!(rec.len(), 101);
        assert!(rec.starts_with("101 k="), "{rec}");
        let rec = pax_record("k", &"v".repeat(93));
        assert_eq!(rec.len(), 99);
        assert!(rec.starts_with("99 k="), "{rec}");
    }

    #[test]
    fn entry_with_origin_gets_extended_header_like_go() {
        let header = origin_header("boot", EntryKind::Directory, 0o755);
        let bytes = encode_header(&header).unwrap();
        assert_eq!(bytes.len(), 3 * BLOCK_SIZE);
        let ext = &bytes[..BLOCK_SIZE];
        assert_eq!(block::get_str(field(ext, block::NAME)), b"PaxHeaders.0/boot");
        assert_eq!(ext[block::TYPEFLAG], b'x');
        assert_eq!(field(ext, block::MODE), b"0000000\0");
        assert_eq!(field(ext, block::MTIME), b"00000000000\0");
        assert_eq!(field(ext, block::MAGIC), b"ustar\0");
        assert_eq!(field(ext, block::VERSION), b"00");
        // Go's writeRawFile leaves the device fields of the extended header unset.
        assert_eq!(field(ext, block::DEVMAJOR), &[0u8; 8]);
        let data = std::str::from_utf8(block::get_str(&bytes[BLOCK_SIZE..2 * BLOCK_SIZE])).unwrap();
        assert_eq!(
            data,
            "28 LINUXKIT.location=kernel\n59 LINUXKIT.source=localhost:5000/conformance/kernel:6.6.0\n"
        );
        let size = block::get_number(field(ext, block::SIZE)).unwrap();
        assert_eq!(size as usize, data.len());
        let main = &bytes[2 * BLOCK_SIZE..];
        assert_eq!(block::get_str(field(main, block::NAME)), b"boot");
        assert_eq!(main[block::TYPEFLAG], b'5');
        assert_eq!(field(main, block::MODE), b"0000755\0");
        assert_eq!(field(main, block::DEVMAJOR), b"0000000\0");
        assert_eq!(field(main, block::MTIME), format!("{DEFAULT_MTIME:011o}\0").as_bytes());
        let (sum, _) = block::checksums(main.try_into().unwrap());
        assert_eq!(field(main, block::CHKSUM), format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn directory_name_with_trailing_slash_gets_pax_name_without_it() {
        let header = origin_header("lib/modules/", EntryKind::Directory, 0o755);
        let bytes = encode_header(&header).unwrap();
        assert_eq!(block::get_str(&bytes[..100]), b"lib/modules/PaxHeaders.0");
    }

    #[test]
    fn header_without_records_is_plain_ustar() {
        let header = Header::new("etc/hosts", EntryKind::Regular, 0o644);
        let bytes = encode_header(&header).unwrap();
        assert_eq!(bytes.len(), BLOCK_SIZE);
        assert_eq!(block::get_str(&bytes[..100]), b"etc/hosts");
        // A long but splittable name uses the ustar prefix and no PAX record.
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let bytes = encode_header(&Header::new(long.clone(), EntryKind::Regular, 0o644)).unwrap();
        assert_eq!(bytes.len(), BLOCK_SIZE);
        assert_eq!(block::get_str(&bytes[block::PREFIX]), "d".repeat(120).as_bytes());
        assert_eq!(block::get_str(&bytes[block::NAME]), "f".repeat(50).as_bytes());
    }

    #[test]
    fn long_and_non_ascii_names_get_path_records() {
        let long = format!("containers/{}", "x".repeat(120));
        let header = Header::new(long.clone(), EntryKind::Regular, 0o644).with_origin("s", "l");
        let bytes = encode_header(&header).unwrap();
        let data = String::from_utf8_lossy(block::get_str(&bytes[BLOCK_SIZE..2 * BLOCK_SIZE]));
        assert!(data.ends_with(&format!("path={long}\n")), "{data}");
        // The extended header's own name is truncated to 100 bytes.
        assert_eq!(block::get_str(&bytes[..100]).len(), 100);
        // The main header keeps the first 100 bytes of the name.
        assert_eq!(
            block::get_str(&bytes[2 * BLOCK_SIZE..2 * BLOCK_SIZE + 100]),
            &long.as_bytes()[..100]
        );

        let header = Header::new("etc/caf\u{e9}", EntryKind::Regular, 0o644);
        let bytes = encode_header(&header).unwrap();
        let data = String::from_utf8_lossy(&bytes[BLOCK_SIZE..2 * BLOCK_SIZE]);
        assert!(data.starts_with("18 path=etc/caf\u{e9}\n"), "{data}");
        assert_eq!(block::get_str(&bytes[2 * BLOCK_SIZE..2 * BLOCK_SIZE + 100]), b"etc/caf");
        assert_eq!(block::get_str(&bytes[..100]), b"etc/PaxHeaders.0/caf");
    }

    #[test]
    fn large_numbers_get_records_and_zero_fields() {
        let mut header = Header::new("big", EntryKind::Regular, 0o644);
        header.size = 1 << 33;
        header.uid = 1 << 21;
        header.mtime = -1;
        let bytes = encode_header(&header).unwrap();
        let data = String::from_utf8_lossy(block::get_str(&bytes[BLOCK_SIZE..2 * BLOCK_SIZE]));
        assert_eq!(data, "12 mtime=-1\n19 size=8589934592\n15 uid=2097152\n");
        let main = &bytes[2 * BLOCK_SIZE..];
        assert_eq!(&main[block::SIZE], b"00000000000\0");
        assert_eq!(&main[block::UID], b"0000000\0");
        assert_eq!(&main[block::MTIME], b"00000000000\0");
    }

    #[test]
    fn basic_keys_in_pax_are_not_copied_but_others_are_sorted() {
        let mut header = Header::new("f", EntryKind::Regular, 0o644);
        header.pax.insert("path".into(), "other".into());
        header.pax.insert("SCHILY.xattr.user.a".into(), "1".into());
        header.set_origin("src", "loc");
        let bytes = encode_header(&header).unwrap();
        let data = String::from_utf8_lossy(block::get_str(&bytes[BLOCK_SIZE..2 * BLOCK_SIZE]));
        assert_eq!(
            data,
            "25 LINUXKIT.location=loc\n23 LINUXKIT.source=src\n25 SCHILY.xattr.user.a=1\n"
        );
        assert_eq!(PAX_SOURCE, "LINUXKIT.source");
        assert_eq!(PAX_LOCATION, "LINUXKIT.location");
    }

    #[test]
    fn rejects_what_go_rejects() {
        let header = Header::new("file/", EntryKind::Regular, 0o644);
        assert!(matches!(
            encode_header(&header),
            Err(HeaderEncodeError::TrailingSlash { .. })
        ));
        let mut header = Header::new("dev/x", EntryKind::Char, 0o600);
        header.dev_major = 1 << 21;
        assert!(matches!(
            encode_header(&header),
            Err(HeaderEncodeError::FieldTooLarge { .. })
        ));
        let header = Header::new("x", EntryKind::Other(b'L'), 0o600);
        assert!(matches!(
            encode_header(&header),
            Err(HeaderEncodeError::ReservedType { .. })
        ));
        let mut header = Header::new("x", EntryKind::Regular, 0o600);
        header.pax.insert("a=b".into(), "c".into());
        assert!(matches!(
            encode_header(&header),
            Err(HeaderEncodeError::InvalidPaxRecord { .. })
        ));
    }

    #[test]
    fn writer_pads_data_and_checks_sizes() {
        let mut writer = TarWriter::new(Vec::new());
        let mut header = Header::new("a", EntryKind::Regular, 0o644);
        header.size = 3;
        writer.write_header(&header).unwrap();
        writer.write_data(b"ab").unwrap();
        assert!(writer.write_data(b"cd").is_err());
        writer.write_data(b"c").unwrap();
        writer.finish().unwrap();
        let out = writer.into_inner();
        assert_eq!(out.len(), 512 + 512 + 1024);
        assert_eq!(&out[512..515], b"abc");
        assert!(out[515..].iter().all(|&b| b == 0));

        let mut writer = TarWriter::new(Vec::new());
        writer.write_header(&header).unwrap();
        writer.write_data(b"a").unwrap();
        let err = writer.finish().unwrap_err();
        assert!(err.to_string().contains("2 bytes"), "{err}");
    }

    #[test]
    fn header_only_entries_take_no_data_even_with_a_size() {
        let mut writer = TarWriter::new(Vec::new());
        let mut header = Header::new("d", EntryKind::Directory, 0o755);
        header.size = 10;
        writer.write_header(&header).unwrap();
        assert!(writer.write_data(b"x").is_err());
        writer.finish().unwrap();
        assert_eq!(writer.into_inner().len(), 512 + 1024);
    }
}
