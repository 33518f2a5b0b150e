//! What `images.insert` does with `rawDisk.source`: find the object in the storage endpoint
//! (`{storage}/storage/v1/b/BUCKET/o/OBJECT?alt=media`) and check it the way GCE does: a gzip'd
//! tar whose only member is `disk.raw` (a plain or GNU sparse file), its size a whole number of
//! GiB. The tar reader is our own, independent of the one in `media`, so that it checks it.

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

const BLOCK: usize = 512;
const GIB: u64 = 1 << 30;

/// An object named by `rawDisk.source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// The bucket.
    pub bucket: String,
    /// The object's name inside it.
    pub object: String,
}

/// What GCE reports of an imported disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskImage {
    /// The archive's size in bytes (`archiveSizeBytes`).
    pub archive_bytes: u64,
    /// The raw disk's size in bytes.
    pub disk_bytes: u64,
}

/// Why an image could not be made; becomes the insert operation's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The operation error's `code`.
    pub code: &'static str,
    /// Its message.
    pub message: String,
}

fn invalid_file(message: String) -> ImportError {
    ImportError {
        code: "INVALID_IMAGE_FILE",
        message,
    }
}

/// Parses `https://storage.googleapis.com/BUCKET/OBJECT` (the object name URL-encoded) or
/// `gs://BUCKET/OBJECT` (as is).
pub fn parse_source(source: &str) -> Option<ObjectName> {
    let (bucket, object) = if let Some(rest) = source.strip_prefix("gs://") {
        let (bucket, object) = rest.split_once('/')?;
        (bucket, object.to_string())
    } else {
        let rest = source.strip_prefix("https://storage.googleapis.com/")?;
        let (bucket, object) = rest.split_once('/')?;
        (bucket, super::http::percent_decode(object, false).ok()?)
    };
    (!bucket.is_empty() && !object.is_empty()).then(|| ObjectName {
        bucket: bucket.to_string(),
        object,
    })
}

/// Reads the object and checks it; `sha1` is `rawDisk.sha1Checksum`, when given.
pub fn import(storage: Option<&str>, name: &ObjectName, sha1: Option<&str>) -> Result<DiskImage, ImportError> {
    let gs = format!("gs://{}/{}", name.bucket, name.object);
    let Some(storage) = storage else {
        return Err(ImportError {
            code: "RESOURCE_NOT_FOUND",
            message: format!("The resource '{gs}' was not found (fake-gce was started without a storage endpoint)"),
        });
    };
    let url = format!(
        "{}/storage/v1/b/{}/o/{}?alt=media",
        storage.trim_end_matches('/'),
        super::http::percent_encode(&name.bucket),
        super::http::percent_encode(&name.object)
    );
    let not_found = |why: String| ImportError {
        code: "RESOURCE_NOT_FOUND",
        message: format!("The resource '{gs}' was not found: {why}"),
    };
    let archive = match super::http::get(&url) {
        Ok((200, body)) => body,
        Ok((status, body)) => {
            return Err(not_found(format!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body).chars().take(200).collect::<String>()
            )))
        }
        Err(e) => return Err(not_found(format!("GET {url}: {e}"))),
    };
    if let Some(expected) = sha1 {
        let actual = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &archive);
        let actual: String = actual.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if actual != expected {
            return Err(invalid_file(format!(
                "The SHA1 checksum of '{gs}' is {actual}, not the rawDisk.sha1Checksum {expected}"
            )));
        }
    }
    let disk_bytes =
        inspect(&archive).map_err(|why| invalid_file(format!("'{gs}' is not a valid image file: {why}")))?;
    if disk_bytes == 0 || disk_bytes % GIB != 0 {
        return Err(invalid_file(format!(
            "The disk.raw in '{gs}' is {disk_bytes} bytes; an imported disk must be a whole number of GiB"
        )));
    }
    Ok(DiskImage {
        archive_bytes: archive.len() as u64,
        disk_bytes,
    })
}

/// The size of the only member, `disk.raw`, of a gzip'd tar; or why the file is not one.
pub fn inspect(archive: &[u8]) -> Result<u64, String> {
    if !archive.starts_with(&[0x1f, 0x8b]) {
        return Err("it is not gzip-compressed".into());
    }
    let mut tar = MultiGzDecoder::new(archive);
    let mut members = Vec::new();
    let mut long_name: Option<String> = None;
    loop {
        let mut header = [0u8; BLOCK];
        if let Err(e) = tar.read_exact(&mut header) {
            return Err(format!("the tar archive ends without its end-of-archive blocks ({e})"));
        }
        if header.iter().all(|&b| b == 0) {
            break;
        }
        check_checksum(&header)?;
        let kind = header[156];
        let stored = number(&header[124..136]).ok_or("a tar header has a bad size field")?;
        match kind {
            // GNU long name: the next member's name is this member's data.
            b'L' => {
                let data = read_data(&mut tar, stored)?;
                long_name = Some(c_string(&data));
            }
            // PAX extended headers: a `path` record renames the next member.
            b'x' | b'g' => {
                let data = read_data(&mut tar, stored)?;
                if let Some(path) = pax_path(&data) {
                    long_name = Some(path);
                }
            }
            _ => {
                let name = long_name.take().unwrap_or_else(|| header_name(&header));
                let real_size = match kind {
                    b'0' | 0 | b'7' => stored,
                    b'S' => sparse_real_size(&header, &mut tar, stored)?,
                    other => {
                        members.push((name, format!("a member of type {:?}", char::from(other)), 0));
                        skip(&mut tar, stored)?;
                        continue;
                    }
                };
                skip(&mut tar, stored)?;
                members.push((name, "a file".to_string(), real_size));
            }
        }
    }
    match members.as_slice() {
        [(name, kind, size)] if name == "disk.raw" && kind == "a file" => Ok(*size),
        [] => Err("the tar archive is empty; it must hold one file, disk.raw".into()),
        [(name, kind, _)] => Err(format!(
            "the tar archive holds {kind} named {name:?}; it must hold one file named disk.raw"
        )),
        many => Err(format!(
            "the tar archive holds {} members ({}); it must hold only disk.raw",
            many.len(),
            many.iter()
                .map(|(name, _, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The real size of an old-GNU sparse member, after reading its extension blocks and checking
/// that the map's regions add up to the stored data.
fn sparse_real_size(header: &[u8; BLOCK], tar: &mut impl Read, stored: u64) -> Result<u64, String> {
    let real_size = number(&header[483..495]).ok_or("a sparse member has a bad real size")?;
    let mut regions = Vec::new();
    read_sparse_map(&header[386..482], &mut regions)?;
    let mut extended = header[482] != 0;
    while extended {
        let mut block = [0u8; BLOCK];
        tar.read_exact(&mut block)
            .map_err(|e| format!("a sparse member's map extension is cut short ({e})"))?;
        read_sparse_map(&block[..504], &mut regions)?;
        extended = block[504] != 0;
    }
    let mut end = 0;
    let mut total = 0u64;
    for &(offset, length) in &regions {
        if offset < end || offset.saturating_add(length) > real_size {
            return Err(format!(
                "a sparse member's region {offset}+{length} overlaps or passes its size {real_size}"
            ));
        }
        end = offset + length;
        total += length;
    }
    if total != stored {
        return Err(format!(
            "a sparse member's regions hold {total} bytes but its header says {stored}"
        ));
    }
    Ok(real_size)
}

/// Appends the (offset, length) entries of a sparse map area (24 bytes each; zero offset and
/// length fields end it).
fn read_sparse_map(area: &[u8], regions: &mut Vec<(u64, u64)>) -> Result<(), String> {
    for entry in area.chunks_exact(24) {
        if entry[0] == 0 {
            break;
        }
        let offset = number(&entry[..12]).ok_or("a sparse map offset is not a number")?;
        let length = number(&entry[12..]).ok_or("a sparse map length is not a number")?;
        regions.push((offset, length));
    }
    Ok(())
}

fn read_data(tar: &mut impl Read, size: u64) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    tar.take(padded)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read the tar archive: {e}"))?;
    if (data.len() as u64) < padded {
        return Err("the tar archive ends inside a member".into());
    }
    data.truncate(size as usize);
    Ok(data)
}

fn skip(tar: &mut impl Read, size: u64) -> Result<(), String> {
    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    let copied =
        io::copy(&mut tar.take(padded), &mut io::sink()).map_err(|e| format!("cannot read the tar archive: {e}"))?;
    if copied < padded {
        return Err("the tar archive ends inside a member's data".into());
    }
    Ok(())
}

/// A tar number: octal text, or GNU's base-256 form (high bit of the first byte set).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return field.iter().enumerate().try_fold(0u64, |value, (i, &byte)| {
            let byte = if i == 0 { byte & 0x7f } else { byte };
            value.checked_mul(256)?.checked_add(u64::from(byte))
        });
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn check_checksum(header: &[u8; BLOCK]) -> Result<(), String> {
    let recorded = number(&header[148..156]).ok_or("a tar header has a bad checksum field")?;
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != recorded {
        return Err(format!("a tar header's checksum is {recorded}, its bytes sum to {sum}"));
    }
    Ok(())
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The member name: POSIX ustar joins `prefix/name`; old GNU headers use that area for times.
fn header_name(header: &[u8; BLOCK]) -> String {
    let name = c_string(&header[..100]);
    if &header[257..263] == b"ustar\0" {
        let prefix = c_string(&header[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

/// The `path` record of PAX extended header data (`LEN path=VALUE\n` records).
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|record| {
        let (_, keyword_value) = record.split_once(' ')?;
        keyword_value.strip_prefix("path=").map(str::to_string)
    })
}
