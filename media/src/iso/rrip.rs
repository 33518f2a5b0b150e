//! Rock Ridge (RRIP 1991A) entries in SUSP system use fields, continuation areas, and the number
//! and date encodings of ECMA-119.

use super::SECTOR;

/// Length of a `CE` entry.
pub(super) const CE_LEN: usize = 28;
/// Largest SUSP entry (its length is one byte).
const MAX_ENTRY: usize = 255;

/// A 32-bit number in both byte orders (ECMA-119 7.3.3).
pub(super) fn both32(value: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&value.to_le_bytes());
    out[4..].copy_from_slice(&value.to_be_bytes());
    out
}

/// A 16-bit number in both byte orders (ECMA-119 7.2.3).
pub(super) fn both16(value: u16) -> [u8; 4] {
    let mut out = [0u8; 4];
    out[..2].copy_from_slice(&value.to_le_bytes());
    out[2..].copy_from_slice(&value.to_be_bytes());
    out
}

/// Civil date and time (UTC) of seconds since the epoch: (year, month, day, hour, minute, second).
fn civil(seconds: i64) -> (i64, u8, u8, u8, u8, u8) {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Days since 0000-03-01 in 400-year eras (the proleptic Gregorian calendar).
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month as u8,
        day as u8,
        (of_day / 3600) as u8,
        (of_day / 60 % 60) as u8,
        (of_day % 60) as u8,
    )
}

/// The 7-byte recording date of directory records and `TF` (ECMA-119 9.1.5), UTC, clamped to
/// the years it can hold (1900..=2155).
pub(super) fn short_date(seconds: i64) -> [u8; 7] {
    let (year, month, day, hour, minute, second) = match civil(seconds) {
        (year, ..) if year < 1900 => (1900, 1, 1, 0, 0, 0),
        (year, ..) if year > 2155 => (2155, 12, 31, 23, 59, 59),
        date => date,
    };
    [(year - 1900) as u8, month, day, hour, minute, second, 0]
}

/// The 17-byte date of volume descriptors (ECMA-119 8.4.26.1), UTC, years clamped to 1..=9999.
pub(super) fn long_date(seconds: i64) -> [u8; 17] {
    let (year, month, day, hour, minute, second) = civil(seconds);
    let text = format!(
        "{:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}00",
        year.clamp(1, 9999)
    );
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// SUSP `SP`: marks the root's `.` record as using SUSP, with no bytes skipped.
pub(super) fn sp() -> Vec<u8> {
    vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0]
}

/// SUSP `ER`: the extension in use, RRIP 1991A.
pub(super) fn er() -> Vec<u8> {
    const ID: &[u8] = b"RRIP_1991A";
    const DESCRIPTOR: &[u8] = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    const SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.";
    let len = 8 + ID.len() + DESCRIPTOR.len() + SOURCE.len();
    let mut out = vec![
        b'E',
        b'R',
        len as u8,
        1,
        ID.len() as u8,
        DESCRIPTOR.len() as u8,
        SOURCE.len() as u8,
        1,
    ];
    out.extend(ID);
    out.extend(DESCRIPTOR);
    out.extend(SOURCE);
    out
}

/// RRIP `PX`: the full mode (type and permissions), link count and owner.
pub(super) fn px(mode: u32, links: u32, uid: u32, gid: u32) -> Vec<u8> {
    let mut out = vec![b'P', b'X', 36, 1];
    for value in [mode, links, uid, gid] {
        out.extend(both32(value));
    }
    out
}

/// RRIP `TF`: modification, access and attribute-change times, all `mtime`.
pub(super) fn tf(mtime: i64) -> Vec<u8> {
    let mut out = vec![b'T', b'F', 5 + 3 * 7, 1, 0x02 | 0x04 | 0x08];
    for _ in 0..3 {
        out.extend(short_date(mtime));
    }
    out
}

/// RRIP `PN`: a device node's numbers, as the high and low halves of a glibc `dev_t` (what
/// genisoimage and xorriso write and read). Linux reads a zero high half with major and minor in
/// the low 16 bits the same way, so devices with minors under 256 read right everywhere.
pub(super) fn pn(major: u32, minor: u32) -> Vec<u8> {
    let (major, minor) = (u64::from(major), u64::from(minor));
    let dev = ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff);
    let mut out = vec![b'P', b'N', 20, 1];
    out.extend(both32((dev >> 32) as u32));
    out.extend(both32(dev as u32));
    out
}

/// RRIP `NM` entries spelling `name` (more than one, flagged CONTINUE, past 250 bytes).
pub(super) fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let pieces: Vec<&[u8]> = name.chunks(MAX_ENTRY - 5).collect();
    let last = pieces.len().saturating_sub(1);
    pieces
        .iter()
        .enumerate()
        .map(|(index, piece)| {
            let mut out = vec![b'N', b'M', (5 + piece.len()) as u8, 1, u8::from(index < last)];
            out.extend(*piece);
            out
        })
        .collect()
}

/// RRIP `SL` entries spelling the symlink `target`: component records (root, `.`, `..` or a
/// name, split with CONTINUE when longer than an entry holds), packed into entries of at most 255
/// bytes, each but the last flagged CONTINUE.
pub(super) fn sl(target: &str) -> Vec<Vec<u8>> {
    // (component flags, bytes)
    let mut records: Vec<(u8, &[u8])> = Vec::new();
    if target.starts_with('/') {
        records.push((0x08, b""));
    }
    for part in target.split('/') {
        match part {
            "" => {}
            "." => records.push((0x02, b"")),
            ".." => records.push((0x04, b"")),
            name => records.push((0, name.as_bytes())),
        }
    }
    if records.is_empty() {
        records.push((0x02, b""));
    }
    const ROOM: usize = MAX_ENTRY - 5;
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for (flags, mut bytes) in records {
        loop {
            // A record needs 2 header bytes and should carry at least one byte of a name.
            if body.len() + 2 + usize::from(!bytes.is_empty()) > ROOM {
                entries.push(std::mem::take(&mut body));
            }
            let fits = ROOM - body.len() - 2;
            if bytes.len() <= fits {
                body.extend([flags, bytes.len() as u8]);
                body.extend(bytes);
                break;
            }
            body.extend([flags | 0x01, fits as u8]);
            body.extend(&bytes[..fits]);
            bytes = &bytes[fits..];
        }
    }
    entries.push(body);
    let last = entries.len() - 1;
    entries
        .into_iter()
        .enumerate()
        .map(|(index, body)| {
            let mut out = vec![b'S', b'L', (5 + body.len()) as u8, 1, u8::from(index < last)];
            out.extend(body);
            out
        })
        .collect()
}

/// SUSP `CE`: the next part of the system use field is `len` bytes at `sector`:`offset`.
fn ce(sector: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut out = vec![b'C', b'E', CE_LEN as u8, 1];
    out.extend(both32(sector));
    out.extend(both32(offset));
    out.extend(both32(len));
    out
}

/// Hands out continuation areas: consecutive pieces of whole sectors from `first_sector` on, none
/// crossing a sector boundary. Areas are collected so that they can be written a sector at a time.
pub(super) struct Continuations {
    sector: u32,
    used: usize,
    /// Bytes of the current sector.
    current: Vec<u8>,
    /// Finished sectors not yet taken by [`Continuations::take_finished`].
    finished: Vec<(u32, Vec<u8>)>,
    any: bool,
}

impl Continuations {
    /// Areas from `first_sector` on.
    pub(super) fn new(first_sector: u32) -> Continuations {
        Continuations {
            sector: first_sector,
            used: 0,
            current: Vec::new(),
            finished: Vec::new(),
            any: false,
        }
    }

    fn alloc(&mut self, len: usize) -> (u32, u32) {
        if self.used + len > SECTOR as usize {
            let done = std::mem::take(&mut self.current);
            self.finished.push((self.sector, done));
            self.sector += 1;
            self.used = 0;
        }
        self.any = true;
        let at = (self.sector, self.used as u32);
        self.used += len;
        at
    }

    /// Sectors used so far (the current one included).
    pub(super) fn sectors_used(&self, first_sector: u32) -> u32 {
        self.sector - first_sector + u32::from(self.any)
    }

    /// Finished sectors and their bytes (shorter than a sector: the rest is zero).
    pub(super) fn take_finished(&mut self) -> Vec<(u32, Vec<u8>)> {
        std::mem::take(&mut self.finished)
    }

    /// All sectors, the current one included.
    pub(super) fn finish(mut self) -> Vec<(u32, Vec<u8>)> {
        if self.any {
            let done = std::mem::take(&mut self.current);
            self.finished.push((self.sector, done));
        }
        self.finished
    }

    /// Places `entries` in a directory record's system use field of `room` bytes, moving what does
    /// not fit into continuation areas; returns the bytes for the record.
    pub(super) fn place(&mut self, entries: Vec<Vec<u8>>, room: usize) -> Vec<u8> {
        let total: usize = entries.iter().map(Vec::len).sum();
        if total <= room {
            return entries.concat();
        }
        let mut rest = entries.into_iter().peekable();
        let mut record = Vec::new();
        while let Some(entry) = rest.peek() {
            if record.len() + entry.len() + CE_LEN > room {
                break;
            }
            record.extend(rest.next().into_iter().flatten());
        }
        // Group the rest into areas of at most a sector, each but the last ending in a CE.
        let mut areas: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
        let mut used = 0;
        let remaining: Vec<Vec<u8>> = rest.collect();
        for (index, entry) in remaining.iter().enumerate() {
            let more_after = index + 1 < remaining.len();
            let needed = entry.len() + if more_after { CE_LEN } else { 0 };
            if used + needed > SECTOR as usize {
                areas.push(Vec::new());
                used = 0;
            }
            used += entry.len();
            if let Some(area) = areas.last_mut() {
                area.push(entry.clone());
            }
        }
        let lens: Vec<usize> = (0..areas.len())
            .map(|index| {
                areas[index].iter().map(Vec::len).sum::<usize>() + if index + 1 < areas.len() { CE_LEN } else { 0 }
            })
            .collect();
        let places: Vec<(u32, u32)> = lens.iter().map(|len| self.alloc(*len)).collect();
        record.extend(ce(places[0].0, places[0].1, lens[0] as u32));
        for (index, area) in areas.into_iter().enumerate() {
            let mut bytes = area.concat();
            if let (Some(next), Some(next_len)) = (places.get(index + 1), lens.get(index + 1)) {
                bytes.extend(ce(next.0, next.1, *next_len as u32));
            }
            self.put(places[index], &bytes);
        }
        record
    }

    fn put(&mut self, (sector, offset): (u32, u32), bytes: &[u8]) {
        let buffer = if sector == self.sector {
            &mut self.current
        } else {
            match self.finished.iter_mut().find(|(s, _)| *s == sector) {
                Some((_, buffer)) => buffer,
                None => return,
            }
        };
        let end = offset as usize + bytes.len();
        if buffer.len() < end {
            buffer.resize(end, 0);
        }
        buffer[offset as usize..end].copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(short_date(0), [70, 1, 1, 0, 0, 0, 0]);
        // moby's fixed time, 2017-04-18T16:30:00Z
        assert_eq!(short_date(1_492_533_000), [117, 4, 18, 16, 30, 0, 0]);
        assert_eq!(&long_date(1_492_533_000)[..16], b"2017041816300000");
        assert_eq!(short_date(951_782_400), [100, 2, 29, 0, 0, 0, 0]); // 2000-02-29
        assert_eq!(short_date(-1), [69, 12, 31, 23, 59, 59, 0]);
        assert_eq!(short_date(i64::MIN / 2)[0], 0, "clamped to 1900");
    }

    #[test]
    fn long_symlinks_and_names_split_into_entries_of_at_most_255_bytes() {
        let long = format!("/{}/../x/./{}", "a".repeat(300), "b".repeat(40));
        let entries = sl(&long);
        assert!(entries.len() >= 2);
        assert!(entries
            .iter()
            .all(|entry| entry.len() <= 255 && usize::from(entry[2]) == entry.len()));
        assert_eq!(entries.last().map(|entry| entry[4]), Some(0));
        assert!(entries[..entries.len() - 1].iter().all(|entry| entry[4] == 1));
        let names = nm(&[b'n'; 255]);
        assert_eq!(names.len(), 2);
        assert_eq!((names[0][4], names[1][4]), (1, 0));
        assert_eq!(names[0].len() - 5 + names[1].len() - 5, 255);
    }

    #[test]
    fn what_does_not_fit_a_record_goes_to_chained_continuation_areas() {
        let mut areas = Continuations::new(40);
        let small = areas.place(vec![px(0o100644, 1, 0, 0), tf(0)], 200);
        assert_eq!(small.len(), 36 + 26);
        assert_eq!(areas.sectors_used(40), 0);
        let big: Vec<Vec<u8>> = (0..12).map(|_| vec![b'X'; 250]).collect();
        let record = areas.place(big, 100);
        assert_eq!(&record[record.len() - CE_LEN..record.len() - CE_LEN + 2], b"CE");
        assert_eq!(areas.sectors_used(40), 2, "3000 bytes need two sectors");
        let sectors = areas.finish();
        assert_eq!(sectors[0].0, 40);
        assert!(sectors.iter().all(|(_, bytes)| bytes.len() <= 2048));
        // The first area ends with a CE pointing at the second.
        let first = &sectors[0].1;
        let ce_at = first.len() - CE_LEN;
        assert_eq!(&first[ce_at..ce_at + 2], b"CE");
        assert_eq!(u32::from_le_bytes(first[ce_at + 4..ce_at + 8].try_into().unwrap()), 41);
    }
}
