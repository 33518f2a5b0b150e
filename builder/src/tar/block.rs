//! The 512-byte tar header block: field offsets shared by the V7, ustar, GNU and star layouts, and the
//! checksum and number codecs used by both the reader and the writer.

/// Size of a tar block; headers are one block and data is padded to a multiple of it.
pub const BLOCK_SIZE: usize = 512;

/// A range of bytes in the header block.
pub type Field = std::ops::Range<usize>;

/// Entry name (V7).
pub const NAME: Field = 0..100;
/// Permission bits (V7).
pub const MODE: Field = 100..108;
/// Owner id (V7).
pub const UID: Field = 108..116;
/// Group id (V7).
pub const GID: Field = 116..124;
/// Data size (V7).
pub const SIZE: Field = 124..136;
/// Modification time (V7).
pub const MTIME: Field = 136..148;
/// Header checksum (V7).
pub const CHKSUM: Field = 148..156;
/// Type flag byte (V7).
pub const TYPEFLAG: usize = 156;
/// Link target (V7).
pub const LINKNAME: Field = 157..257;
/// `ustar\0` (ustar/PAX/star) or `ustar ` (GNU).
pub const MAGIC: Field = 257..263;
/// `00` (ustar) or ` \0` (GNU).
pub const VERSION: Field = 263..265;
/// Owner name (ustar).
pub const UNAME: Field = 265..297;
/// Group name (ustar).
pub const GNAME: Field = 297..329;
/// Device major number (ustar).
pub const DEVMAJOR: Field = 329..337;
/// Device minor number (ustar).
pub const DEVMINOR: Field = 337..345;
/// Name prefix (ustar).
pub const PREFIX: Field = 345..500;
/// Name prefix (star, shorter because star keeps times after it).
pub const STAR_PREFIX: Field = 345..476;
/// `tar\0` trailer that distinguishes star from ustar.
pub const STAR_TRAILER: Field = 508..512;

/// ustar magic, also used by PAX and star.
pub const MAGIC_USTAR: &[u8] = b"ustar\0";
/// ustar version.
pub const VERSION_USTAR: &[u8] = b"00";
/// GNU magic (magic and version fields together read `ustar  \0`).
pub const MAGIC_GNU: &[u8] = b"ustar ";
/// GNU version.
pub const VERSION_GNU: &[u8] = b" \0";

/// The header layout, detected from the magic fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Unix V7: no magic, no owner names, no device numbers, no prefix.
    V7,
    /// POSIX ustar (and PAX, which is ustar plus extended headers).
    Ustar,
    /// GNU tar's layout (no prefix; access/change times where ustar has the prefix).
    Gnu,
    /// Schily star (ustar magic plus a `tar\0` trailer, shorter prefix).
    Star,
}

impl Layout {
    /// Detects the layout of a header block whose checksum is already verified.
    pub fn detect(block: &[u8; BLOCK_SIZE]) -> Layout {
        let magic = &block[MAGIC];
        if magic == MAGIC_USTAR {
            if &block[STAR_TRAILER] == b"tar\0" {
                Layout::Star
            } else {
                Layout::Ustar
            }
        } else if magic == MAGIC_GNU && &block[VERSION] == VERSION_GNU {
            Layout::Gnu
        } else {
            Layout::V7
        }
    }
}

/// The unsigned and the signed checksum of a block, with the checksum field counted as spaces.
/// Readers accept either, as historic writers used signed chars.
pub fn checksums(block: &[u8; BLOCK_SIZE]) -> (u64, i64) {
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &byte) in block.iter().enumerate() {
        let byte = if CHKSUM.contains(&i) { b' ' } else { byte };
        unsigned += u64::from(byte);
        // Reinterpreting the byte as a C `signed char` is the point here.
        signed += i64::from(byte as i8);
    }
    (unsigned, signed)
}

/// Whether `value` fits a zero-padded octal field of `width` bytes that keeps one byte for a NUL.
pub fn fits_octal(width: usize, value: i128) -> bool {
    let digits = width.saturating_sub(1) as u32;
    value >= 0 && (width >= 22 || value < 1i128 << (3 * digits))
}

/// Writes `value` as zero-padded octal followed by a NUL, exactly as Go's formatter does; a value that
/// does not fit is written as 0 (the real value then travels in a PAX record).
pub fn put_octal(field: &mut [u8], value: i128) {
    let value = if fits_octal(field.len(), value) { value } else { 0 };
    let digits = format!("{value:o}");
    let padded = format!("{digits:0>width$}", width = field.len().saturating_sub(1));
    put_str(field, padded.as_bytes());
}

/// Writes a string into a fixed field as Go's formatter does: truncated to the field, NUL-terminated
/// when shorter, and when truncation leaves trailing slashes the first of them becomes a NUL (so that
/// buggy readers do not take a regular file for a directory).
pub fn put_str(field: &mut [u8], value: &[u8]) {
    let width = field.len();
    let n = value.len().min(width);
    field[..n].copy_from_slice(&value[..n]);
    if value.len() < width {
        field[value.len()] = 0;
    }
    if value.len() > width && field[width - 1] == b'/' {
        let kept = value[..width].iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        field[kept] = 0;
    }
}

/// Sets the magic/version of `layout` and then the checksum (six octal digits, NUL, space).
pub fn seal(block: &mut [u8; BLOCK_SIZE], layout: Layout) {
    match layout {
        Layout::V7 => {}
        Layout::Gnu => {
            block[MAGIC].copy_from_slice(MAGIC_GNU);
            block[VERSION].copy_from_slice(VERSION_GNU);
        }
        Layout::Ustar | Layout::Star => {
            block[MAGIC].copy_from_slice(MAGIC_USTAR);
            block[VERSION].copy_from_slice(VERSION_USTAR);
            if layout == Layout::Star {
                block[STAR_TRAILER].copy_from_slice(b"tar\0");
            }
        }
    }
    let (sum, _) = checksums(block);
    put_octal(&mut block[CHKSUM.start..CHKSUM.start + 7], i128::from(sum));
    block[CHKSUM.end - 1] = b' ';
}

/// The bytes of a string field up to the first NUL.
pub fn get_str(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// Parses a numeric field: base-256 (GNU/star binary, first bit set) or octal padded with spaces and
/// NULs. `None` when the field is malformed or the value does not fit an `i64`.
pub fn get_number(field: &[u8]) -> Option<i64> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => get_base256(field),
        _ => get_octal(field),
    }
}

/// Parses a space/NUL padded octal field (an empty field is 0).
pub fn get_octal(field: &[u8]) -> Option<i64> {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !is_pad(b)).map_or(start, |i| i + 1);
    let digits = get_str(&field[start..end]);
    if digits.is_empty() {
        return Some(0);
    }
    let text = std::str::from_utf8(digits).ok()?;
    let value = u64::from_str_radix(text, 8).ok()?;
    i64::try_from(value).ok()
}

/// Parses a big-endian two's complement base-256 number (the first bit only marks the encoding).
fn get_base256(field: &[u8]) -> Option<i64> {
    let negative = field.first().is_some_and(|b| b & 0x40 != 0);
    let invert = if negative { 0xff } else { 0x00 };
    let mut value: u64 = 0;
    for (i, &byte) in field.iter().enumerate() {
        let mut byte = byte ^ invert;
        if i == 0 {
            byte &= 0x7f;
        }
        if value >> 56 != 0 {
            return None;
        }
        value = (value << 8) | u64::from(byte);
    }
    if value >> 63 != 0 {
        return None;
    }
    // `value` < 2^63 here, so the conversion cannot fail; `!x` is `-x - 1`, undoing the inversion.
    let value = i64::try_from(value).ok()?;
    Some(if negative { !value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_formatting_matches_go() {
        let mut field = [0xffu8; 8];
        put_octal(&mut field, 0o755);
        assert_eq!(&field, b"0000755\0");
        let mut size = [0u8; 12];
        put_octal(&mut size, 44);
        assert_eq!(&size, b"00000000054\0");
        // 8 GiB does not fit 11 octal digits: Go writes zero.
        put_octal(&mut size, 1 << 33);
        assert_eq!(&size, b"00000000000\0");
        put_octal(&mut size, (1 << 33) - 1);
        assert_eq!(&size, b"77777777777\0");
        put_octal(&mut size, -1);
        assert_eq!(&size, b"00000000000\0");
    }

    #[test]
    fn string_formatting_replaces_trailing_slash_of_truncated_names() {
        let mut field = [0xffu8; 4];
        put_str(&mut field, b"ab");
        assert_eq!(&field, b"ab\0\xff");
        put_str(&mut field, b"abcd");
        assert_eq!(&field, b"abcd");
        put_str(&mut field, b"ab//x");
        assert_eq!(&field, b"ab\0/");
        put_str(&mut field, b"abc/x");
        assert_eq!(&field, b"abc\0");
    }

    #[test]
    fn parses_octal_and_base256() {
        assert_eq!(get_number(b"0000644\0"), Some(0o644));
        assert_eq!(get_number(b"  644 \0"), Some(0o644));
        assert_eq!(get_number(b"\0\0\0\0"), Some(0));
        assert_eq!(get_number(b"0008\0"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(get_number(&big), Some(1 << 40));
        // -1 in base-256: all bits set.
        assert_eq!(get_number(&[0xff; 8]), Some(-1));
        // Too large for an i64.
        let mut huge = [0xffu8; 12];
        huge[0] = 0x80;
        assert_eq!(get_number(&huge), None);
    }

    #[test]
    fn checksum_counts_the_field_as_spaces() {
        let block = [0u8; BLOCK_SIZE];
        assert_eq!(checksums(&block), (8 * 32, 8 * 32));
        let mut high = [0u8; BLOCK_SIZE];
        high[0] = 0xff;
        assert_eq!(checksums(&high), (8 * 32 + 255, 8 * 32 - 1));
    }
}
