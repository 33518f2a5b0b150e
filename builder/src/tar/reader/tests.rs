use super::*;
use crate::tar::{EntrySink, TarWriter};
use std::io::Cursor;

/// A header block with the given layout, sealed with a correct checksum.
fn raw(name: &[u8], flag: u8, size: u64, layout: Layout) -> [u8; BLOCK_SIZE] {
    let mut blk = [0u8; BLOCK_SIZE];
    block::put_str(&mut blk[block::NAME], name);
    block::put_octal(&mut blk[block::MODE], 0o644);
    block::put_octal(&mut blk[block::UID], 0);
    block::put_octal(&mut blk[block::GID], 0);
    block::put_octal(&mut blk[block::SIZE], i128::from(size));
    block::put_octal(&mut blk[block::MTIME], 1_700_000_000);
    blk[block::TYPEFLAG] = flag;
    block::seal(&mut blk, layout);
    blk
}

fn reseal(blk: &mut [u8; BLOCK_SIZE], layout: Layout) {
    blk[block::CHKSUM].fill(0);
    block::seal(blk, layout);
}

/// Appends a block-padded data section.
fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len() + crate::tar::writer::padding_for(data.len() as u64), 0);
}

fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// Reads every entry with its data.
fn read_all(bytes: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, TarError> {
    let mut reader = TarReader::with_capacity(1024, Cursor::new(bytes));
    let mut out = Vec::new();
    while let Some(header) = reader.next_header()? {
        let mut data = Vec::new();
        if reader.read_to_end(&mut data).is_err() {
            return Err(reader.take_data_error().expect("a typed data error"));
        }
        out.push((header, data));
    }
    Ok(out)
}

#[test]
fn round_trips_our_own_writer() {
    let mut writer = TarWriter::new(Vec::new());
    let long = format!("containers/onboot/{}/file", "n".repeat(150));
    let mut entries = [
        Header::new("boot", EntryKind::Directory, 0o755).with_origin("img", "kernel"),
        Header::new(long.clone(), EntryKind::Regular, 0o600).with_origin("img", "files[0]"),
        Header::new("caf\u{e9}", EntryKind::Regular, 0o644),
        Header::new("bin/hi", EntryKind::Symlink, 0o777),
    ];
    entries[1].size = 5;
    entries[1].uid = 1 << 30;
    entries[1].uname = "u".repeat(40);
    entries[1].pax.insert("SCHILY.xattr.user.x".into(), "y".into());
    entries[2].size = 700;
    entries[3].link_name = format!("/{}", "t".repeat(200));
    let data: Vec<Vec<u8>> = vec![vec![], b"hello".to_vec(), vec![7u8; 700], vec![]];
    for (header, body) in entries.iter().zip(&data) {
        writer.write_header(header).unwrap();
        writer.write_data(body).unwrap();
    }
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    let read = read_all(&bytes).unwrap();
    assert_eq!(read.len(), 4);
    for ((got, got_data), (want, want_data)) in read.iter().zip(entries.iter().zip(&data)) {
        assert_eq!(got, want);
        assert_eq!(got_data, want_data);
    }
}

#[test]
fn skips_unread_data() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"a", b'0', 1000, Layout::Ustar));
    push_data(&mut out, &[1u8; 1000]);
    out.extend_from_slice(&raw(b"b", b'0', 3, Layout::Ustar));
    push_data(&mut out, b"xyz");
    end(&mut out);
    let mut reader = TarReader::with_capacity(600, Cursor::new(&out));
    assert_eq!(reader.next_header().unwrap().unwrap().name, "a");
    let mut two = [0u8; 2];
    reader.read_exact(&mut two).unwrap();
    let b = reader.next_header().unwrap().unwrap();
    assert_eq!((b.name.as_str(), b.size), ("b", 3));
    let mut data = String::new();
    reader.read_to_string(&mut data).unwrap();
    assert_eq!(data, "xyz");
    assert!(reader.next_header().unwrap().is_none());
    assert!(reader.next_header().unwrap().is_none());
}

#[test]
fn gnu_long_name_and_link_and_base256() {
    let long_name = format!("usr/{}/file", "d".repeat(200));
    let long_link = format!("usr/{}/target", "e".repeat(300));
    let mut out = Vec::new();
    let mut name_data = long_name.clone().into_bytes();
    name_data.push(0);
    out.extend_from_slice(&raw(b"././@LongLink", b'L', name_data.len() as u64, Layout::Gnu));
    push_data(&mut out, &name_data);
    out.extend_from_slice(&raw(b"././@LongLink", b'K', long_link.len() as u64, Layout::Gnu));
    push_data(&mut out, long_link.as_bytes());
    let mut blk = raw(&long_name.as_bytes()[..100], b'1', 0, Layout::Gnu);
    // uid 2^40 in base-256.
    blk[block::UID].fill(0);
    blk[block::UID.start] = 0x80;
    blk[block::UID.end - 6..block::UID.end].copy_from_slice(&(1u64 << 40).to_be_bytes()[2..]);
    block::put_str(&mut blk[block::UNAME], b"root");
    reseal(&mut blk, Layout::Gnu);
    out.extend_from_slice(&blk);
    end(&mut out);
    let read = read_all(&out).unwrap();
    assert_eq!(read.len(), 1);
    let header = &read[0].0;
    assert_eq!(header.name, long_name);
    assert_eq!(header.link_name, long_link);
    assert_eq!(header.kind, EntryKind::HardLink);
    assert_eq!(header.uid, 1 << 40);
    assert_eq!(header.uname, "root");
}

#[test]
fn pax_long_name_size_and_times() {
    let long = format!("opt/{}", "p".repeat(250));
    let records = format!(
        "{}{}{}{}",
        crate::tar::writer::pax_record("path", &long),
        crate::tar::writer::pax_record("mtime", "-5.5"),
        crate::tar::writer::pax_record("atime", "1700000000.25"),
        crate::tar::writer::pax_record("SCHILY.xattr.security.capability", "cap")
    );
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"PaxHeaders.0/x", b'x', records.len() as u64, Layout::Ustar));
    push_data(&mut out, records.as_bytes());
    out.extend_from_slice(&raw(b"short", b'0', 2, Layout::Ustar));
    push_data(&mut out, b"hi");
    // Records apply to one entry only.
    out.extend_from_slice(&raw(b"next", b'0', 0, Layout::Ustar));
    end(&mut out);
    let read = read_all(&out).unwrap();
    assert_eq!(read[0].0.name, long);
    assert_eq!(read[0].0.mtime, -6);
    assert_eq!(read[0].1, b"hi");
    assert_eq!(
        read[0].0.pax.keys().collect::<Vec<_>>(),
        ["SCHILY.xattr.security.capability"]
    );
    assert_eq!(read[1].0.name, "next");
    assert!(read[1].0.pax.is_empty());
    assert_eq!(read[1].0.mtime, 1_700_000_000);
}

#[test]
fn pax_size_record_overrides_the_octal_field() {
    let records = crate::tar::writer::pax_record("size", "5");
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"x", b'x', records.len() as u64, Layout::Ustar));
    push_data(&mut out, records.as_bytes());
    out.extend_from_slice(&raw(b"f", b'0', 0, Layout::Ustar));
    push_data(&mut out, b"12345");
    out.extend_from_slice(&raw(b"g", b'0', 0, Layout::Ustar));
    end(&mut out);
    let read = read_all(&out).unwrap();
    assert_eq!((read[0].0.size, read[0].1.as_slice()), (5, &b"12345"[..]));
    assert_eq!(read[1].0.name, "g");
}

#[test]
fn ustar_prefix_v7_and_old_directories() {
    let mut out = Vec::new();
    let mut blk = raw(b"name", b'0', 0, Layout::Ustar);
    block::put_str(&mut blk[block::PREFIX], b"some/prefix");
    block::put_str(&mut blk[block::UNAME], b"alice");
    reseal(&mut blk, Layout::Ustar);
    out.extend_from_slice(&blk);
    // V7: owner fields are not read.
    let mut v7 = raw(b"olddir/", 0, 0, Layout::V7);
    block::put_str(&mut v7[block::UNAME], b"ignored");
    reseal(&mut v7, Layout::V7);
    out.extend_from_slice(&v7);
    end(&mut out);
    let read = read_all(&out).unwrap();
    assert_eq!(read[0].0.name, "some/prefix/name");
    assert_eq!(read[0].0.uname, "alice");
    assert_eq!(read[1].0.name, "olddir/");
    assert_eq!(read[1].0.kind, EntryKind::Directory);
    assert_eq!(read[1].0.uname, "");
}

#[test]
fn directory_with_size_has_no_data() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"d/", b'5', 4096, Layout::Ustar));
    out.extend_from_slice(&raw(b"f", b'0', 0, Layout::Ustar));
    end(&mut out);
    let read = read_all(&out).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].0.size, 0);
    assert_eq!(read[1].0.name, "f");
}

#[test]
fn end_of_input_without_trailer_is_accepted() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"f", b'0', 1, Layout::Ustar));
    push_data(&mut out, b"x");
    assert_eq!(read_all(&out).unwrap().len(), 1);
    out.extend_from_slice(&[0u8; 512]);
    assert_eq!(read_all(&out).unwrap().len(), 1);
}

#[test]
fn global_headers_are_skipped() {
    let records = crate::tar::writer::pax_record("comment", "git archive");
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"pax_global_header", b'g', records.len() as u64, Layout::Ustar));
    push_data(&mut out, records.as_bytes());
    out.extend_from_slice(&raw(b"f", b'0', 0, Layout::Ustar));
    end(&mut out);
    let read = read_all(&out).unwrap();
    assert_eq!(read.len(), 1);
    assert!(read[0].0.pax.is_empty());
}

#[test]
fn corrupt_checksum_names_entry_and_offset() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"a", b'0', 1, Layout::Ustar));
    push_data(&mut out, b"x");
    let mut bad = raw(b"b", b'0', 0, Layout::Ustar);
    bad[0] = b'c';
    out.extend_from_slice(&bad);
    end(&mut out);
    let err = read_all(&out).unwrap_err();
    match &err {
        TarError::Checksum { at, .. } => assert_eq!(*at, Position { index: 1, offset: 1024 }),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("entry 1 at byte 1024"), "{err}");
}

#[test]
fn truncated_archives_name_the_entry_and_offset() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"first", b'0', 3, Layout::Ustar));
    push_data(&mut out, b"abc");
    out.extend_from_slice(&raw(b"usr/bin/tool", b'0', 100, Layout::Ustar));
    out.extend_from_slice(&[1u8; 50]);
    let expected = |err: &TarError| {
        matches!(err, TarError::EntryData { at, name, size: 100, read: 50, source: None }
            if *at == Position { index: 1, offset: 1024 } && name == "usr/bin/tool")
    };
    // Reading the data: the io::Error says it in words, take_data_error gives it typed.
    let mut reader = TarReader::new(Cursor::new(&out));
    reader.next_header().unwrap();
    reader.next_header().unwrap();
    let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(
        err.to_string().contains("entry 1 at byte 1024") && err.to_string().contains("usr/bin/tool"),
        "{err}"
    );
    let typed = reader.take_data_error().unwrap();
    assert!(expected(&typed), "{typed:?}");
    assert_eq!(
        typed.to_string(),
        "tar entry 1 at byte 1024: the data of \"usr/bin/tool\" breaks off after 50 of 100 bytes (the archive ends); the file is truncated or corrupt"
    );
    // Skipping the rest of a truncated entry fails the same way.
    let mut reader = TarReader::new(Cursor::new(&out));
    reader.next_header().unwrap();
    reader.next_header().unwrap();
    let err = reader.next_header().unwrap_err();
    assert!(expected(&err), "{err:?}");
    // Inside a header.
    assert!(matches!(
        read_all(&out[..1024 + 300]),
        Err(TarError::Truncated {
            at: Position { index: 1, offset: 1024 },
            ..
        })
    ));
}

#[test]
fn huge_pax_header_is_refused_without_allocating() {
    // 1 TiB needs the GNU base-256 encoding.
    let mut blk = raw(b"x", b'x', 0, Layout::Gnu);
    blk[block::SIZE].fill(0);
    blk[block::SIZE.start] = 0x80;
    blk[block::SIZE.end - 8..block::SIZE.end].copy_from_slice(&(1u64 << 40).to_be_bytes());
    reseal(&mut blk, Layout::Gnu);
    let out = blk.to_vec();
    let err = read_all(&out).unwrap_err();
    assert!(
        matches!(err, TarError::SpecialTooLarge { size, .. } if size == 1 << 40),
        "{err}"
    );
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"L", b'L', 2 << 20, Layout::Gnu));
    assert!(matches!(read_all(&out), Err(TarError::SpecialTooLarge { .. })));
}

#[test]
fn malformed_pax_records_are_refused() {
    for records in ["5 a=b\n", "x path=a\n", "20 path=a\n", "11 path=a\nX", "9 patha\n"] {
        let mut out = Vec::new();
        out.extend_from_slice(&raw(b"x", b'x', records.len() as u64, Layout::Ustar));
        push_data(&mut out, records.as_bytes());
        out.extend_from_slice(&raw(b"f", b'0', 0, Layout::Ustar));
        end(&mut out);
        assert!(matches!(read_all(&out), Err(TarError::Pax { .. })), "{records:?}");
    }
    let records = crate::tar::writer::pax_record("uid", "abc");
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"x", b'x', records.len() as u64, Layout::Ustar));
    push_data(&mut out, records.as_bytes());
    out.extend_from_slice(&raw(b"f", b'0', 0, Layout::Ustar));
    end(&mut out);
    assert!(matches!(
        read_all(&out),
        Err(TarError::InvalidField { field: "uid", .. })
    ));
}

#[test]
fn zero_block_followed_by_data_is_refused() {
    let mut out = vec![0u8; 512];
    out.extend_from_slice(&raw(b"f", b'0', 0, Layout::Ustar));
    assert!(matches!(read_all(&out), Err(TarError::ZeroBlockThenData { .. })));
}

#[test]
fn sparse_files_are_refused() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw(b"s", b'S', 0, Layout::Gnu));
    end(&mut out);
    assert!(matches!(read_all(&out), Err(TarError::Sparse { .. })));
}

#[test]
fn bad_numbers_are_refused() {
    let mut blk = raw(b"f", b'0', 0, Layout::Ustar);
    blk[block::MODE].copy_from_slice(b"0009999\0");
    reseal(&mut blk, Layout::Ustar);
    let mut out = blk.to_vec();
    end(&mut out);
    let err = read_all(&out).unwrap_err();
    assert!(matches!(err, TarError::InvalidField { field: "mode", .. }), "{err}");
}

#[test]
fn pax_time_rounds_like_go() {
    assert_eq!(parse_pax_time("1700000000"), Some(1_700_000_000));
    assert_eq!(parse_pax_time("1700000000.999"), Some(1_700_000_000));
    assert_eq!(parse_pax_time("-1.5"), Some(-2));
    assert_eq!(parse_pax_time("-1.000"), Some(-1));
    assert_eq!(parse_pax_time("1.x"), None);
    assert_eq!(parse_pax_time(""), None);
}
