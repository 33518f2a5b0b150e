//! Fuzz targets for the tar reader (run as described in `fuzzing.rs`): whatever the bytes, the
//! reader returns entries or a typed error and never panics, loops or trusts a claimed size; an
//! entry's data is exactly its size or an error; what our writer writes reads back unchanged.

use std::io::Cursor;

use proptest::prelude::*;

use super::*;
use crate::fuzzing::{bytes, fuzz};
use crate::tar::writer::pax_record;
use crate::tar::{EntrySink, TarWriter};

/// What a size field holds.
#[derive(Debug, Clone)]
enum Size {
    /// Octal, the length of the data that follows.
    Honest,
    /// Octal, anything that fits the field (up to 8 GiB).
    Octal(u64),
    /// GNU base-256, any value (negative ones included).
    Base256(i64),
    /// Arbitrary bytes.
    Garbage(Vec<u8>),
}

/// What follows a header block.
#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// PAX records: `(length adjustment, key, value)`; a non-zero adjustment breaks the record.
    Pax(Vec<(i8, String, String)>),
    /// A GNU long name, NUL-terminated or not.
    Name(Vec<u8>, bool),
}

/// One header block and what follows it.
#[derive(Debug, Clone)]
struct RawEntry {
    name: Vec<u8>,
    prefix: Vec<u8>,
    link: Vec<u8>,
    flag: u8,
    layout: Layout,
    size: Size,
    /// mode, uid, gid, mtime, devmajor, devminor.
    numbers: [Option<Vec<u8>>; 6],
    body: Body,
    /// Whether the data is padded to a block boundary.
    padded: bool,
    /// Whether the checksum is right.
    sealed: bool,
}

/// How the archive ends.
#[derive(Debug, Clone)]
enum End {
    TwoZeroBlocks,
    OneZeroBlock,
    Nothing,
    ZeroBlockThenGarbage(Vec<u8>),
}

/// A hostile archive and how to damage it.
#[derive(Debug, Clone)]
struct Archive {
    entries: Vec<RawEntry>,
    end: End,
    /// Cut the archive at this fraction of its length (per mille).
    cut: Option<u16>,
    /// Bytes to overwrite: (position per mille, value).
    flips: Vec<(u16, u8)>,
}

fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b/".to_vec()),
        Just(b"./".to_vec()),
        Just(b"../".to_vec()),
        Just(b"/".to_vec()),
        Just(b".wh.".to_vec()),
        Just(b".wh..wh..opq".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![0]),
        Just("é".as_bytes().to_vec()),
        Just(vec![b'x'; 99]),
        Just(vec![b'y'; 155]),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(part, 0..5).prop_map(|parts| parts.concat())
}

fn number_field() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        200 => Just(None),
        1 => any::<u32>().prop_map(|v| Some(format!("{v:o}").into_bytes())),
        1 => any::<i64>().prop_map(|v| {
            let mut field = v.to_be_bytes().to_vec();
            field.insert(0, if v < 0 { 0xff } else { 0x80 });
            Some(field)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Some),
    ]
}

fn pax_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "path",
            "linkpath",
            "size",
            "uid",
            "gid",
            "uname",
            "gname",
            "mtime",
            "atime",
            "ctime",
            "GNU.sparse.map",
            "SCHILY.xattr.user.x",
            "LINUXKIT.source",
            "",
            "a=b",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ]
}

fn pax_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "5",
            "-1",
            "1700000000.5",
            "-1.5",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "1e9",
            "a\0b",
            "x/../y",
        ])
        .prop_map(str::to_string),
        "\\PC{0,20}",
        any::<i64>().prop_map(|v| v.to_string()),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        bytes(0..1100).prop_map(Body::Bytes),
        prop::collection::vec(
            (prop_oneof![8 => Just(0i8), 1 => any::<i8>()], pax_key(), pax_value()),
            0..4
        )
        .prop_map(Body::Pax),
        (name_bytes(), any::<bool>()).prop_map(|(name, nul)| Body::Name(name, nul)),
    ]
}

fn raw_entry() -> impl Strategy<Value = RawEntry> {
    let flag = prop_oneof![prop::sample::select(b"0123456\0xgLKS7".to_vec()), any::<u8>(),];
    let layout = prop::sample::select(vec![Layout::V7, Layout::Ustar, Layout::Gnu, Layout::Star]);
    let size = prop_oneof![
        20 => Just(Size::Honest),
        1 => (0u64..(1 << 33)).prop_map(Size::Octal),
        1 => any::<i64>().prop_map(Size::Base256),
        1 => prop::collection::vec(any::<u8>(), 12).prop_map(Size::Garbage),
    ];
    let numbers = [
        number_field(),
        number_field(),
        number_field(),
        number_field(),
        number_field(),
        number_field(),
    ];
    (
        (name_bytes(), name_bytes(), name_bytes(), flag, layout, size),
        (numbers, body(), prop::bool::weighted(0.97), prop::bool::weighted(0.98)),
    )
        .prop_map(
            |((name, prefix, link, flag, layout, size), (numbers, body, padded, sealed))| RawEntry {
                name,
                prefix,
                link,
                flag,
                layout,
                size,
                numbers,
                body,
                padded,
                sealed,
            },
        )
}

fn archive() -> impl Strategy<Value = Archive> {
    let end = prop_oneof![
        3 => Just(End::TwoZeroBlocks),
        1 => Just(End::OneZeroBlock),
        1 => Just(End::Nothing),
        1 => bytes(1..600).prop_map(End::ZeroBlockThenGarbage),
    ];
    (
        prop::collection::vec(raw_entry(), 0..6),
        end,
        prop::option::weighted(0.2, 0u16..1000),
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((0u16..1000, any::<u8>()), 1..3)],
    )
        .prop_map(|(entries, end, cut, flips)| Archive {
            entries,
            end,
            cut,
            flips,
        })
}

fn body_bytes(body: &Body) -> Vec<u8> {
    match body {
        Body::Bytes(bytes) => bytes.clone(),
        Body::Pax(records) => {
            let mut out = String::new();
            for (adjust, key, value) in records {
                let record = pax_record(key, value);
                let (len, rest) = record.split_once(' ').unwrap_or(("0", ""));
                let len = len.parse::<i64>().unwrap_or(0) + i64::from(*adjust);
                out.push_str(&format!("{len} {rest}"));
            }
            out.into_bytes()
        }
        Body::Name(name, nul) => {
            let mut out = name.clone();
            if *nul {
                out.push(0);
            }
            out
        }
    }
}

fn put_field(blk: &mut [u8; BLOCK_SIZE], field: block::Field, value: &[u8]) {
    let width = field.len();
    let n = value.len().min(width);
    blk[field.start..field.start + n].copy_from_slice(&value[..n]);
}

fn encode(archive: &Archive) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in &archive.entries {
        let mut data = body_bytes(&entry.body);
        // Header-only types have no data (the size field notwithstanding): an honest one has none.
        if matches!(entry.size, Size::Honest) && is_header_only(EntryKind::from_type_flag(entry.flag)) {
            data.clear();
        }
        let mut blk = [0u8; BLOCK_SIZE];
        block::put_str(&mut blk[block::NAME], &entry.name);
        block::put_str(&mut blk[block::LINKNAME], &entry.link);
        let fields = [
            block::MODE,
            block::UID,
            block::GID,
            block::MTIME,
            block::DEVMAJOR,
            block::DEVMINOR,
        ];
        for (field, value) in fields.into_iter().zip(&entry.numbers) {
            match value {
                Some(value) => put_field(&mut blk, field, value),
                None => block::put_octal(&mut blk[field], 0o644),
            }
        }
        match &entry.size {
            Size::Honest => block::put_octal(&mut blk[block::SIZE], data.len() as i128),
            Size::Octal(size) => block::put_octal(&mut blk[block::SIZE], i128::from(*size)),
            Size::Base256(size) => {
                let mut field = size.to_be_bytes().to_vec();
                field.splice(0..0, [if *size < 0 { 0xff } else { 0x80 }; 4]);
                put_field(&mut blk, block::SIZE, &field);
            }
            Size::Garbage(bytes) => put_field(&mut blk, block::SIZE, bytes),
        }
        blk[block::TYPEFLAG] = entry.flag;
        if entry.layout == Layout::Ustar {
            block::put_str(&mut blk[block::PREFIX], &entry.prefix);
        }
        block::seal(&mut blk, entry.layout);
        if !entry.sealed {
            blk[block::CHKSUM.start] ^= 1;
        }
        out.extend_from_slice(&blk);
        out.extend_from_slice(&data);
        if entry.padded {
            out.resize(out.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
        }
    }
    match &archive.end {
        End::TwoZeroBlocks => out.extend_from_slice(&[0; 2 * BLOCK_SIZE]),
        End::OneZeroBlock => out.extend_from_slice(&[0; BLOCK_SIZE]),
        End::Nothing => {}
        End::ZeroBlockThenGarbage(garbage) => {
            out.extend_from_slice(&[0; BLOCK_SIZE]);
            out.extend_from_slice(garbage);
        }
    }
    let at = |per_mille: u16, len: usize| len * usize::from(per_mille) / 1000;
    for (position, value) in &archive.flips {
        let i = at(*position, out.len());
        if let Some(byte) = out.get_mut(i) {
            *byte = *value;
        }
    }
    if let Some(cut) = archive.cut {
        out.truncate(at(cut, out.len()));
    }
    out
}

/// Reads every entry of `bytes`, reading `reads[i]` bytes of the i-th entry's data (all of it when
/// there is no such element), and checks what the reader promises.
fn check_reader(bytes: &[u8], capacity: usize, reads: &[usize]) -> Result<(), TestCaseError> {
    let mut reader = TarReader::with_capacity(capacity, Cursor::new(bytes));
    let len = bytes.len() as u64;
    let mut entries = 0usize;
    loop {
        match reader.next_header() {
            Ok(None) => {
                // The end is sticky.
                prop_assert!(matches!(reader.next_header(), Ok(None)));
                return Ok(());
            }
            Ok(Some(header)) => {
                entries += 1;
                // Every entry costs at least its header block, so the reader cannot loop.
                prop_assert!(entries <= bytes.len() / BLOCK_SIZE);
                let at = reader.position();
                prop_assert!(at.offset + BLOCK_SIZE as u64 <= reader.offset());
                prop_assert!(reader.offset() <= len);
                if is_header_only(header.kind) {
                    prop_assert_eq!(header.size, 0);
                }
                let want = reads.get(entries - 1).copied().unwrap_or(usize::MAX);
                let (got, complete) = read_data(&mut reader, want)?;
                prop_assert!(got <= header.size);
                if complete {
                    prop_assert_eq!(got, header.size);
                }
                prop_assert!(reader.offset() <= len);
            }
            Err(err) => {
                // Every error says where; the position is inside the archive.
                let text = err.to_string();
                prop_assert!(text.contains(" at byte "), "{}", text);
                prop_assert!(reader.offset() <= len);
                // Going on after an error must not panic or loop either.
                for _ in 0..3 {
                    if !matches!(reader.next_header(), Ok(Some(_))) {
                        break;
                    }
                }
                return Ok(());
            }
        }
    }
}

/// Reads up to `want` bytes of the current entry in odd-sized chunks: the count, and whether the
/// end of the data was reached without error.
fn read_data(reader: &mut TarReader<Cursor<&[u8]>>, want: usize) -> Result<(u64, bool), TestCaseError> {
    let mut buf = [0u8; 700];
    let mut got = 0u64;
    while (got as usize) < want {
        let chunk = buf.len().min(want - got as usize);
        match reader.read(&mut buf[..chunk]) {
            Ok(0) => return Ok((got, true)),
            Ok(n) => got += n as u64,
            Err(err) => {
                prop_assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
                prop_assert!(err.to_string().contains("truncated"), "{}", err);
                return Ok((got, false));
            }
        }
    }
    Ok((got, false))
}

#[test]
fn arbitrary_bytes() {
    let strategy = (bytes(0..3000), 512usize..2048);
    fuzz("tar reader: arbitrary bytes", 3000, strategy, |(bytes, capacity)| {
        check_reader(&bytes, capacity, &[])
    });
}

#[test]
fn hostile_archives() {
    let strategy = (archive(), 512usize..4096, prop::collection::vec(0usize..1500, 0..6));
    fuzz(
        "tar reader: hostile archives",
        600,
        strategy,
        |(archive, capacity, reads)| check_reader(&encode(&archive), capacity, &reads),
    );
}

fn header() -> impl Strategy<Value = Header> {
    let text = || prop_oneof!["\\PC{0,12}", "[a-z/.]{90,260}", Just(String::new())];
    let kind = prop::sample::select(vec![
        EntryKind::Regular,
        EntryKind::Directory,
        EntryKind::Symlink,
        EntryKind::HardLink,
        EntryKind::Char,
        EntryKind::Block,
        EntryKind::Fifo,
    ]);
    let pax = prop::collection::btree_map(
        "SCHILY\\.xattr\\.[a-z.]{1,10}|LINUXKIT\\.[a-z]{1,6}",
        "\\PC{0,12}",
        0..3,
    );
    (
        (text(), kind, 0u32..0o10000, any::<u64>(), any::<u64>(), 0u64..1500),
        (any::<i64>(), text(), text(), text(), 0u32..1 << 21, 0u32..1 << 21, pax),
    )
        .prop_map(
            |((name, kind, mode, uid, gid, size), (mtime, link_name, uname, gname, dev_major, dev_minor, pax))| {
                Header {
                    name,
                    kind,
                    mode,
                    uid,
                    gid,
                    size: if is_header_only(kind) { 0 } else { size },
                    mtime,
                    link_name,
                    uname,
                    gname,
                    dev_major,
                    dev_minor,
                    pax,
                }
            },
        )
}

#[test]
fn written_entries_read_back() {
    let strategy = prop::collection::vec(header(), 1..5);
    fuzz("tar reader: written entries read back", 300, strategy, |headers| {
        let mut writer = TarWriter::new(Vec::new());
        let mut written = Vec::new();
        for header in headers {
            // Headers the writer refuses (e.g. a trailing slash on a file) are not our subject.
            if writer.write_header(&header).is_err() {
                return Ok(());
            }
            let data: Vec<u8> = (0..header.size).map(|i| i as u8).collect();
            writer.write_data(&data).unwrap();
            written.push((header, data));
        }
        writer.finish().unwrap();
        let bytes = writer.into_inner();
        let mut reader = TarReader::with_capacity(BLOCK_SIZE, Cursor::new(&bytes[..]));
        for (header, data) in &written {
            let read = reader.next_header().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(read.as_ref(), Some(header));
            let mut read_data = Vec::new();
            reader.read_to_end(&mut read_data).unwrap();
            prop_assert_eq!(&read_data, data);
        }
        prop_assert!(matches!(reader.next_header(), Ok(None)));
        Ok(())
    });
}
