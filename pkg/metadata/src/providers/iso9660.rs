//! A small read-only ISO 9660 reader: finds a file by path using Rock Ridge names, plain ISO 9660
//! names (`USER_DAT.;1` is `user_dat`), or the Joliet tree. Used by the `cdrom` provider when the
//! CD cannot be mounted (no `iso9660` filesystem in the kernel, no CAP_SYS_ADMIN), and in tests.

use std::io::{self, Read, Seek, SeekFrom};

/// Largest file or directory read into memory.
const MAX_READ: u32 = 64 << 20;
const SECTOR: u64 = 2048;

/// An opened ISO 9660 image or CD.
#[derive(Debug)]
pub struct Iso<R> {
    source: R,
    block_size: u64,
    root: Record,
    joliet_root: Option<Record>,
    /// Bytes to skip at the start of every System Use area (the SUSP `SP` entry).
    susp_skip: usize,
    /// The volume identifier.
    pub label: String,
}

/// One directory record.
#[derive(Debug, Clone)]
struct Record {
    extent: u32,
    size: u32,
    is_dir: bool,
    /// The Rock Ridge name, if there is one.
    rock_ridge: Option<String>,
    /// The ISO 9660 (or Joliet) identifier.
    identifier: String,
}

impl Record {
    /// Whether this record is called `name` (Rock Ridge name exactly; else the identifier
    /// without its version, compared ignoring case).
    fn is_named(&self, name: &str) -> bool {
        if let Some(rr) = &self.rock_ridge {
            return rr == name;
        }
        let id = self.identifier.split(';').next().unwrap_or_default();
        let id = id.strip_suffix('.').unwrap_or(id);
        id.eq_ignore_ascii_case(name) || id.eq_ignore_ascii_case(&name.replace(['-', '.'], "_"))
    }
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl<R: Read + Seek> Iso<R> {
    /// Reads the volume descriptors of `source`.
    pub fn open(mut source: R) -> io::Result<Self> {
        let mut primary = None;
        let mut joliet = None;
        for index in 16..64u64 {
            let mut descriptor = [0u8; 2048];
            source.seek(SeekFrom::Start(index * SECTOR))?;
            source
                .read_exact(&mut descriptor)
                .map_err(|e| invalid(format!("no ISO 9660 volume descriptor at sector {index}: {e}")))?;
            if &descriptor[1..6] != b"CD001" {
                return Err(invalid(format!("sector {index} is not an ISO 9660 volume descriptor")));
            }
            match descriptor[0] {
                1 if primary.is_none() => primary = Some(descriptor),
                2 if matches!(&descriptor[88..91], b"%/@" | b"%/C" | b"%/E") => joliet = Some(descriptor),
                255 => break,
                _ => {}
            }
        }
        let primary = primary.ok_or_else(|| invalid("no ISO 9660 primary volume descriptor"))?;
        let block_size = u64::from(u16::from_le_bytes([primary[128], primary[129]]));
        if !matches!(block_size, 512 | 1024 | 2048) {
            return Err(invalid(format!("unsupported logical block size {block_size}")));
        }
        let root = parse_record(&primary[156..190], false, 0).ok_or_else(|| invalid("bad root directory record"))?;
        let joliet_root = joliet.and_then(|d| parse_record(&d[156..190], true, 0));
        let label = String::from_utf8_lossy(&primary[40..72]).trim_end().to_string();
        let mut iso = Iso {
            source,
            block_size,
            root,
            joliet_root,
            susp_skip: 0,
            label,
        };
        iso.susp_skip = iso.find_susp_skip().unwrap_or(0);
        Ok(iso)
    }

    /// The contents of the file at `path` (`/`-separated, from the root), `None` if there is none.
    pub fn read_file(&mut self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let root = self.root.clone();
        let mut found = self.lookup(root, path, false)?;
        if found.is_none() {
            if let Some(joliet) = self.joliet_root.clone() {
                found = self.lookup(joliet, path, true)?;
            }
        }
        match found {
            Some(record) if !record.is_dir => self.read_extent(&record).map(Some),
            _ => Ok(None),
        }
    }

    fn lookup(&mut self, mut dir: Record, path: &str, joliet: bool) -> io::Result<Option<Record>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            if !dir.is_dir {
                return Ok(None);
            }
            let entries = self.read_dir(&dir, joliet)?;
            match entries.into_iter().find(|r| r.is_named(part)) {
                Some(record) if i + 1 == parts.len() => return Ok(Some(record)),
                Some(record) => dir = record,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    fn read_extent(&mut self, record: &Record) -> io::Result<Vec<u8>> {
        if record.size > MAX_READ {
            return Err(invalid(format!(
                "{} is {} bytes, more than {MAX_READ}",
                record.identifier, record.size
            )));
        }
        self.source
            .seek(SeekFrom::Start(u64::from(record.extent) * self.block_size))?;
        let mut data = vec![0u8; record.size as usize];
        self.source.read_exact(&mut data)?;
        Ok(data)
    }

    fn read_dir(&mut self, dir: &Record, joliet: bool) -> io::Result<Vec<Record>> {
        let data = self.read_extent(dir)?;
        let mut records = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            let len = data[pos] as usize;
            if len == 0 {
                // Records do not cross sectors: the rest of this one is padding.
                pos = (pos / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let Some(raw) = data.get(pos..pos + len) else {
                break;
            };
            if let Some(record) = parse_record(raw, joliet, self.susp_skip) {
                if record.identifier != "\0" && record.identifier != "\u{1}" {
                    records.push(record);
                }
            }
            pos += len;
        }
        Ok(records)
    }

    /// The `SP` entry of the root's `.` record says how many bytes each System Use area skips.
    fn find_susp_skip(&mut self) -> Option<usize> {
        let root = self.root.clone();
        let data = self.read_extent(&root).ok()?;
        let len = *data.first()? as usize;
        let raw = data.get(..len)?;
        let system_use = raw.get(34..)?;
        (system_use.len() >= 7 && &system_use[..2] == b"SP" && system_use[4..6] == [0xbe, 0xef])
            .then(|| system_use[6] as usize)
    }
}

/// A directory record (`raw` is exactly its bytes).
fn parse_record(raw: &[u8], joliet: bool, susp_skip: usize) -> Option<Record> {
    if raw.len() < 34 {
        return None;
    }
    let extent = u32::from_le_bytes(raw[2..6].try_into().ok()?);
    let size = u32::from_le_bytes(raw[10..14].try_into().ok()?);
    let is_dir = raw[25] & 0x02 != 0;
    let name_len = raw[32] as usize;
    let name = raw.get(33..33 + name_len)?;
    let identifier = if joliet && name != [0] && name != [1] {
        let units: Vec<u16> = name.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(name).into_owned()
    };
    let system_use_start = 33 + name_len + usize::from(name_len.is_multiple_of(2)) + susp_skip;
    let rock_ridge = if joliet {
        None
    } else {
        raw.get(system_use_start..).and_then(rock_ridge_name)
    };
    Some(Record {
        extent,
        size,
        is_dir,
        rock_ridge,
        identifier,
    })
}

/// The Rock Ridge `NM` name in a System Use area (continuation areas are not followed).
fn rock_ridge_name(mut area: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    while area.len() >= 4 {
        let len = area[2] as usize;
        if len < 4 || len > area.len() {
            break;
        }
        match &area[..2] {
            b"NM" if len >= 5 => {
                let flags = area[4];
                if flags & 0x06 == 0 {
                    name.extend_from_slice(&area[5..len]);
                    found = true;
                }
                if flags & 0x01 == 0 && found {
                    break;
                }
            }
            b"ST" => break,
            _ => {}
        }
        area = &area[len..];
    }
    found.then(|| String::from_utf8_lossy(&name).into_owned())
}
