//! A streaming tar reader for ustar, PAX, GNU and V7 archives, with the semantics of Go's
//! `archive/tar` reader (which is what LinuxKit uses to read image layers).
//!
//! - PAX extended headers (`x`) apply to the next entry: basic keys set the header fields, every other
//!   record lands in [`Header::pax`]. Global headers (`g`) are validated and ignored (Go hands them
//!   to the caller as an entry; no image tool relies on them).
//! - GNU long names (`L`) and long link names (`K`) override the name fields, after PAX records.
//! - Numbers may be octal or GNU base-256.
//! - A NUL type flag with a name ending in `/` is a directory (pre-POSIX convention).
//! - The archive ends at two zero blocks or at the end of input on a block boundary.
//!
//! Extended headers are capped at 1 MiB (Go's limit) and read as their data arrives; entry data is
//! never buffered. No header value makes the reader allocate more than the archive holds, or 1 MiB.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use super::block::{self, Layout, BLOCK_SIZE};
use super::writer::is_header_only;
use super::{EntryKind, Header};

/// Go's limit on the size of PAX extended headers and GNU long names.
const MAX_SPECIAL_SIZE: u64 = 1 << 20;

/// Default capacity of the reader's buffer: large, so that the decompressor behind it runs in big
/// batches and small headers do not each cost a call into it.
pub const DEFAULT_BUFFER: usize = 256 * 1024;

/// Where in the archive something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 0-based index of the entry (meta headers count towards the entry they describe).
    pub index: u64,
    /// Byte offset of the header block in the uncompressed archive.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {} at byte {}", self.index, self.offset)
    }
}

/// Why a tar archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the underlying stream failed (including decompression errors).
    #[error("tar {at}: read failed: {source}")]
    Io {
        /// Where.
        at: Position,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The stream ended inside a header or a meta header.
    #[error("tar {at}: archive ends in the middle of {what}; the file is truncated")]
    Truncated {
        /// Where.
        at: Position,
        /// What was being read.
        what: &'static str,
    },
    /// An entry's data (or the padding after it) breaks off: the archive ends inside it, or the
    /// stream under the archive fails there (a decompression error, say).
    #[error(
        "tar {at}: the data of {name:?} breaks off after {read} of {size} bytes ({}); the file is truncated or corrupt",
        source.as_ref().map_or_else(|| "the archive ends".to_string(), ToString::to_string)
    )]
    EntryData {
        /// Where the entry's header is.
        at: Position,
        /// The entry's name.
        name: String,
        /// Its size.
        size: u64,
        /// How many of its data bytes were read.
        read: u64,
        /// The stream's error, if it was not the end of the archive.
        #[source]
        source: Option<io::Error>,
    },
    /// A header block's checksum does not match: the archive is corrupt (or not a tar at all).
    #[error("tar {at}: header checksum {stored:?} does not match the computed {computed}; the archive is corrupt or not a tar")]
    Checksum {
        /// Where.
        at: Position,
        /// The checksum field as stored.
        stored: String,
        /// The unsigned checksum of the block.
        computed: u64,
    },
    /// A numeric header field or PAX value is malformed or out of range.
    #[error("tar {at}: invalid {field} {value:?} in header of {name:?}")]
    InvalidField {
        /// Where.
        at: Position,
        /// Entry name as far as known.
        name: String,
        /// Field or PAX key.
        field: &'static str,
        /// The raw value.
        value: String,
    },
    /// A PAX extended header is malformed.
    #[error("tar {at}: malformed PAX extended header: {reason}")]
    Pax {
        /// Where.
        at: Position,
        /// What is wrong.
        reason: String,
    },
    /// A PAX header or GNU long name is larger than the 1 MiB limit.
    #[error("tar {at}: {kind} of {size} bytes exceeds the 1 MiB limit")]
    SpecialTooLarge {
        /// Where.
        at: Position,
        /// Which meta header.
        kind: &'static str,
        /// Its announced size.
        size: u64,
    },
    /// A zero block is followed by a non-zero block (Go rejects this too).
    #[error("tar {at}: a zero block is followed by data; the archive is corrupt")]
    ZeroBlockThenData {
        /// Where.
        at: Position,
    },
    /// Sparse files (GNU `S` entries or PAX `GNU.sparse.*` records) are not supported.
    #[error("tar {at}: {name:?} is a sparse file, which is not supported; rebuild the layer without --sparse")]
    Sparse {
        /// Where.
        at: Position,
        /// Entry name.
        name: String,
    },
}

/// Reads tar entries one after the other; the reader itself reads the current entry's data.
///
/// ```no_run
/// # use std::io::Read;
/// # fn demo(file: std::fs::File) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tar = builder::TarReader::new(file);
/// while let Some(header) = tar.next_header()? {
///     let mut data = Vec::new();
///     tar.read_to_end(&mut data)?; // optional: unread data is skipped by next_header
///     println!("{} {}", header.name, data.len());
/// }
/// # Ok(()) }
/// ```
pub struct TarReader<R: Read> {
    inner: BufReader<R>,
    /// Bytes consumed from the archive so far.
    offset: u64,
    /// Index of the entry the next header belongs to.
    index: u64,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    /// Where the current entry's header started (for data errors).
    current: Position,
    /// The current entry's name and size, and where its data starts (for data errors).
    current_name: String,
    current_size: u64,
    data_start: u64,
    /// Why reading the current entry's data failed, for [`TarReader::take_data_error`].
    data_error: Option<TarError>,
    done: bool,
}

/// Meta information gathered from `x`, `L` and `K` headers for the next entry.
#[derive(Default)]
struct Pending {
    pax: Option<BTreeMap<String, String>>,
    long_name: Option<String>,
    long_link: Option<String>,
}

impl<R: Read> TarReader<R> {
    /// A reader over `inner` with a 256 KiB buffer.
    pub fn new(inner: R) -> TarReader<R> {
        TarReader::with_capacity(DEFAULT_BUFFER, inner)
    }

    /// A reader over `inner` with a buffer of `capacity` bytes.
    pub fn with_capacity(capacity: usize, inner: R) -> TarReader<R> {
        TarReader {
            inner: BufReader::with_capacity(capacity.max(BLOCK_SIZE), inner),
            offset: 0,
            index: 0,
            remaining: 0,
            padding: 0,
            current: Position { index: 0, offset: 0 },
            current_name: String::new(),
            current_size: 0,
            data_start: 0,
            data_error: None,
            done: false,
        }
    }

    /// Bytes of the archive consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the header of the entry last returned by [`TarReader::next_header`] is.
    pub fn position(&self) -> Position {
        self.current
    }

    /// Why reading the current entry's data through [`Read`] failed, if it did: the typed error
    /// behind the `io::Error` that the reader of the data got (which says the same in words).
    pub fn take_data_error(&mut self) -> Option<TarError> {
        self.data_error.take()
    }

    /// The underlying reader (its position is unspecified because of buffering).
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    /// Advances to the next entry, skipping unread data of the current one. `None` at the end.
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest_of_entry()?;
        let mut pending = Pending::default();
        loop {
            let at = Position {
                index: self.index,
                offset: self.offset,
            };
            let mut blk = [0u8; BLOCK_SIZE];
            if !self.read_block(&mut blk, at)? {
                self.done = true;
                return Ok(None);
            }
            verify_checksum(&blk, at)?;
            let layout = Layout::detect(&blk);
            let flag = blk[block::TYPEFLAG];
            let size = number(&blk, block::SIZE, "size", at, &blk[block::NAME])?;
            let size = u64::try_from(size).map_err(|_| invalid(at, &blk, "size", size))?;
            match flag {
                b'x' | b'g' => {
                    let data = self.read_special(size, "PAX extended header", at)?;
                    let records = parse_pax(&data, at)?;
                    if flag == b'x' {
                        pending.pax = Some(records);
                    }
                }
                b'L' | b'K' => {
                    let data = self.read_special(size, "GNU long name", at)?;
                    let text = lossy(block::get_str(&data), at);
                    if flag == b'L' {
                        pending.long_name = Some(text);
                    } else {
                        pending.long_link = Some(text);
                    }
                }
                _ => {
                    let header = build_header(&blk, layout, size, pending, at)?;
                    // After PAX records: a `size` record overrides the octal field.
                    self.remaining = header.size;
                    self.padding = super::writer::padding_for(self.remaining) as u64;
                    self.current = at;
                    self.current_name.clone_from(&header.name);
                    self.current_size = header.size;
                    self.data_start = self.offset;
                    self.data_error = None;
                    self.index += 1;
                    return Ok(Some(header));
                }
            }
        }
    }

    /// Reads one header block; `false` at the end of the archive (two zero blocks, or the end of
    /// input on a block boundary).
    fn read_block(&mut self, blk: &mut [u8; BLOCK_SIZE], at: Position) -> Result<bool, TarError> {
        if !self.fill(&mut blk[..], at, "a header")? {
            return Ok(false);
        }
        if blk.iter().all(|&b| b == 0) {
            let next_at = Position {
                index: at.index,
                offset: self.offset,
            };
            if !self.fill(&mut blk[..], next_at, "the end-of-archive marker")? {
                return Ok(false);
            }
            if blk.iter().all(|&b| b == 0) {
                return Ok(false);
            }
            return Err(TarError::ZeroBlockThenData { at: next_at });
        }
        Ok(true)
    }

    /// Fills `buf` completely; `false` on a clean end of input before its first byte.
    fn fill(&mut self, buf: &mut [u8], at: Position, what: &'static str) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Truncated { at, what }),
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(TarError::Io { at, source }),
            }
        }
        Ok(true)
    }

    /// Reads the data of a meta header, refusing more than [`MAX_SPECIAL_SIZE`] bytes. The buffer
    /// grows with the data that arrives, so a header claiming 1 MiB at the end of a short archive
    /// costs what the archive holds.
    fn read_special(&mut self, size: u64, kind: &'static str, at: Position) -> Result<Vec<u8>, TarError> {
        if size > MAX_SPECIAL_SIZE {
            return Err(TarError::SpecialTooLarge { at, kind, size });
        }
        let mut data = Vec::new();
        let read = (&mut self.inner)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|source| TarError::Io { at, source })?;
        self.offset += read as u64;
        if (read as u64) < size {
            return Err(TarError::Truncated { at, what: kind });
        }
        let padding = super::writer::padding_for(size) as u64;
        self.skip(padding, at, kind)?;
        Ok(data)
    }

    /// Discards the unread data and padding of the current entry.
    fn skip_rest_of_entry(&mut self) -> Result<(), TarError> {
        let count = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        let at = self.current;
        self.skip(count, at, "an entry's data").map_err(|err| match err {
            TarError::Io { source, .. } => self.entry_data_error(Some(source)),
            _ => self.entry_data_error(None),
        })
    }

    /// The current entry's data breaks off here, because of `source` or the end of the archive.
    fn entry_data_error(&self, source: Option<io::Error>) -> TarError {
        TarError::EntryData {
            at: self.current,
            name: self.current_name.clone(),
            size: self.current_size,
            read: (self.offset - self.data_start).min(self.current_size),
            source,
        }
    }

    /// Keeps why the current entry's data cannot be read (`cause`, or the end of the archive), and
    /// returns it as the `io::Error` for the reader of the data.
    fn fail_data(&mut self, cause: Option<io::Error>) -> io::Error {
        let kind = cause.as_ref().map_or(io::ErrorKind::UnexpectedEof, io::Error::kind);
        let error = self.entry_data_error(cause);
        let err = io::Error::new(kind, error.to_string());
        self.data_error = Some(error);
        err
    }

    /// Discards `count` bytes straight out of the buffer, without copying them.
    fn skip(&mut self, mut count: u64, at: Position, what: &'static str) -> Result<(), TarError> {
        while count > 0 {
            let available = match self.inner.fill_buf() {
                Ok(buf) => buf.len(),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(TarError::Io { at, source }),
            };
            if available == 0 {
                return Err(TarError::Truncated { at, what });
            }
            let step = available.min(usize::try_from(count).unwrap_or(usize::MAX));
            self.inner.consume(step);
            self.offset += step as u64;
            count -= step as u64;
        }
        Ok(())
    }
}

/// Reads the current entry's data; returns 0 at its end. A premature end of the archive is an
/// `UnexpectedEof` error whose message names the entry; [`TarReader::take_data_error`] returns it
/// typed.
impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(0) => return Err(self.fail_data(None)),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Err(err),
            Err(err) => return Err(self.fail_data(Some(err))),
        };
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn verify_checksum(blk: &[u8; BLOCK_SIZE], at: Position) -> Result<(), TarError> {
    let stored = block::get_octal(&blk[block::CHKSUM]);
    let (unsigned, signed) = block::checksums(blk);
    let ok = match stored {
        Some(value) => u64::try_from(value) == Ok(unsigned) || value == signed,
        None => false,
    };
    if ok {
        return Ok(());
    }
    Err(TarError::Checksum {
        at,
        stored: String::from_utf8_lossy(&blk[block::CHKSUM]).into_owned(),
        computed: unsigned,
    })
}

/// Converts bytes to a `String`; non-UTF-8 bytes become U+FFFD, with a warning because the name then
/// differs from the original.
fn lossy(bytes: &[u8], at: Position) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            tracing::warn!(%at, name = %text, "tar name is not UTF-8; invalid bytes replaced");
            text
        }
    }
}

fn invalid(at: Position, blk: &[u8; BLOCK_SIZE], field: &'static str, value: impl ToString) -> TarError {
    TarError::InvalidField {
        at,
        name: String::from_utf8_lossy(block::get_str(&blk[block::NAME])).into_owned(),
        field,
        value: value.to_string(),
    }
}

/// Parses a numeric field, naming it in the error.
fn number(
    blk: &[u8; BLOCK_SIZE],
    field: block::Field,
    label: &'static str,
    at: Position,
    name: &[u8],
) -> Result<i64, TarError> {
    block::get_number(&blk[field.clone()]).ok_or_else(|| TarError::InvalidField {
        at,
        name: String::from_utf8_lossy(block::get_str(name)).into_owned(),
        field: label,
        value: String::from_utf8_lossy(&blk[field]).into_owned(),
    })
}

/// A numeric field that must fit `T` (ids, mode, device numbers).
fn bounded<T: TryFrom<i64>>(
    blk: &[u8; BLOCK_SIZE],
    field: block::Field,
    label: &'static str,
    at: Position,
) -> Result<T, TarError> {
    let value = number(blk, field, label, at, &blk[block::NAME])?;
    T::try_from(value).map_err(|_| invalid(at, blk, label, value))
}

/// Builds the entry header from a block plus pending meta headers.
fn build_header(
    blk: &[u8; BLOCK_SIZE],
    layout: Layout,
    size: u64,
    pending: Pending,
    at: Position,
) -> Result<Header, TarError> {
    let flag = blk[block::TYPEFLAG];
    let mut name = block::get_str(&blk[block::NAME]).to_vec();
    let prefix = match layout {
        Layout::Ustar => block::get_str(&blk[block::PREFIX]),
        Layout::Star => block::get_str(&blk[block::STAR_PREFIX]),
        Layout::V7 | Layout::Gnu => &[],
    };
    if !prefix.is_empty() {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    let has_owner_fields = layout != Layout::V7;
    let mut header = Header {
        name: lossy(&name, at),
        kind: EntryKind::from_type_flag(flag),
        mode: bounded(blk, block::MODE, "mode", at)?,
        uid: bounded(blk, block::UID, "uid", at)?,
        gid: bounded(blk, block::GID, "gid", at)?,
        size,
        mtime: number(blk, block::MTIME, "mtime", at, &blk[block::NAME])?,
        link_name: lossy(block::get_str(&blk[block::LINKNAME]), at),
        uname: String::new(),
        gname: String::new(),
        dev_major: 0,
        dev_minor: 0,
        pax: BTreeMap::new(),
    };
    if has_owner_fields {
        header.uname = lossy(block::get_str(&blk[block::UNAME]), at);
        header.gname = lossy(block::get_str(&blk[block::GNAME]), at);
        header.dev_major = bounded(blk, block::DEVMAJOR, "devmajor", at)?;
        header.dev_minor = bounded(blk, block::DEVMINOR, "devminor", at)?;
    }
    if let Some(records) = pending.pax {
        apply_pax(&mut header, records, at)?;
    }
    if let Some(long) = pending.long_name.filter(|n| !n.is_empty()) {
        header.name = long;
    }
    if let Some(long) = pending.long_link.filter(|n| !n.is_empty()) {
        header.link_name = long;
    }
    if flag == 0 && header.name.ends_with('/') {
        header.kind = EntryKind::Directory;
    }
    if flag == b'S' || header.pax.keys().any(|k| k.starts_with("GNU.sparse.")) {
        return Err(TarError::Sparse { at, name: header.name });
    }
    if is_header_only(header.kind) {
        header.size = 0;
    }
    Ok(header)
}

/// Applies PAX records as Go's `mergePAX` does: basic keys set fields (an empty value keeps the
/// header's own), all other records are kept.
fn apply_pax(header: &mut Header, records: BTreeMap<String, String>, at: Position) -> Result<(), TarError> {
    let bad = |field: &'static str, value: &str, name: &str| TarError::InvalidField {
        at,
        name: name.to_string(),
        field,
        value: value.to_string(),
    };
    for (key, value) in records {
        if value.is_empty() {
            if !super::writer::BASIC_PAX_KEYS.contains(&key.as_str()) {
                header.pax.insert(key, value);
            }
            continue;
        }
        match key.as_str() {
            "path" => header.name = value,
            "linkpath" => header.link_name = value,
            "uname" => header.uname = value,
            "gname" => header.gname = value,
            "uid" => header.uid = value.parse().map_err(|_| bad("uid", &value, &header.name))?,
            "gid" => header.gid = value.parse().map_err(|_| bad("gid", &value, &header.name))?,
            "size" => {
                header.size = value
                    .parse::<i64>()
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| bad("size", &value, &header.name))?;
            }
            "mtime" => {
                header.mtime = parse_pax_time(&value).ok_or_else(|| bad("mtime", &value, &header.name))?;
            }
            "atime" | "ctime" => {
                // Validated like Go does; the shared Header has no field for them.
                parse_pax_time(&value).ok_or_else(|| bad("atime/ctime", &value, &header.name))?;
            }
            _ => {
                header.pax.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Parses a PAX time (`seconds[.fraction]`) to whole seconds, rounding towards negative infinity
/// as Go's `time.Unix(secs, -nsecs).Unix()` does for negative times.
fn parse_pax_time(value: &str) -> Option<i64> {
    let (secs, frac) = match value.split_once('.') {
        Some((secs, frac)) => (secs, frac),
        None => (value, ""),
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = secs.strip_prefix('-').unwrap_or(secs);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = secs.parse().ok()?;
    let has_fraction = frac.bytes().any(|b| b != b'0');
    if secs.starts_with('-') && has_fraction {
        whole.checked_sub(1)
    } else {
        Some(whole)
    }
}

/// Parses PAX records `"<len> <key>=<value>\n"`. Trailing NUL padding (written by some tools) is
/// tolerated.
fn parse_pax(data: &[u8], at: Position) -> Result<BTreeMap<String, String>, TarError> {
    let err = |reason: String| TarError::Pax { at, reason };
    let mut records = BTreeMap::new();
    let mut rest = data;
    while !rest.is_empty() && !rest.iter().all(|&b| b == 0) {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| err("a record has no length".into()))?;
        let len_text = std::str::from_utf8(&rest[..space]).map_err(|_| err("non-numeric record length".into()))?;
        let len: usize = len_text
            .parse()
            .map_err(|_| err(format!("invalid record length {len_text:?}")))?;
        if len < 5 || len > rest.len() || len <= space + 1 {
            return Err(err(format!("record length {len} out of range")));
        }
        let record = &rest[space + 1..len];
        rest = &rest[len..];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err(err("a record does not end with a newline".into()));
        };
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| err("a record has no '='".into()))?;
        let key = std::str::from_utf8(&body[..eq]).map_err(|_| err("a key is not UTF-8".into()))?;
        let value = lossy(&body[eq + 1..], at);
        if key.is_empty() || key.contains('\0') {
            return Err(err(format!("invalid key {key:?}")));
        }
        if matches!(key, "path" | "linkpath" | "uname" | "gname") && value.contains('\0') {
            return Err(err(format!("NUL in the value of {key:?}")));
        }
        records.insert(key.to_string(), value);
    }
    Ok(records)
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
