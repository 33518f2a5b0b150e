//! The userdata CD: an ISO 9660 image with Rock Ridge names, volume label `cidata`, holding
//! `user-data` and `meta-data` (cloud-init's NoCloud layout) and `config` (what LinuxKit's
//! `metadata` package reads). Written by hand because it is small and must be byte-reproducible:
//! every timestamp is the epoch, and files are laid out in sorted order.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes per ISO 9660 logical sector.
const SECTOR: usize = 2048;
/// Sector of the primary volume descriptor (the first 16 are the system area).
const PVD_SECTOR: u32 = 16;
/// Sectors of the fixed layout: system area, PVD, terminator, L and M path tables, root directory.
const FIRST_FILE_SECTOR: u32 = 21;
/// Zero sectors after the last file, counted in the volume (genisoimage's `-pad`): Linux reads
/// ahead past the end of a CD's data, and on an image that ends right there the I/O errors make
/// probes fail (busybox `findfs LABEL=cidata` did not find an unpadded image).
const TAIL_PADDING_SECTORS: u32 = 150;
/// Sector of the little-endian path table.
const L_PATH_TABLE: u32 = 18;
/// Sector of the big-endian path table.
const M_PATH_TABLE: u32 = 19;
/// Sector of the root directory.
const ROOT_DIR: u32 = 20;

/// The volume label cloud-init (NoCloud) and LinuxKit's metadata package look for.
pub const VOLUME_LABEL: &str = "cidata";

/// Why the userdata CD could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UserdataError {
    /// The files do not fit the one-sector root directory, or a file is over 4 GiB.
    #[error("userdata is too large for the userdata CD: {0}")]
    TooLarge(String),
    /// Writing the image failed.
    #[error("cannot write the userdata CD {path}: {source}")]
    Write {
        /// The ISO file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// One file on the CD: its Rock Ridge name, its ISO 9660 level-1 identifier and its contents.
struct IsoFile<'a> {
    name: &'a str,
    identifier: &'static str,
    contents: &'a [u8],
}

/// Writes the userdata CD for an instance to `path` (atomically: a temporary file renamed into place).
pub fn write_userdata_iso(path: &Path, userdata: &[u8], instance_id: &str) -> Result<(), UserdataError> {
    let meta_data = format!("instance-id: {instance_id}\nlocal-hostname: {instance_id}\n");
    let image = build_iso(&[
        IsoFile {
            name: "config",
            identifier: "CONFIG.;1",
            contents: userdata,
        },
        IsoFile {
            name: "meta-data",
            identifier: "META_DAT.;1",
            contents: meta_data.as_bytes(),
        },
        IsoFile {
            name: "user-data",
            identifier: "USER_DAT.;1",
            contents: userdata,
        },
    ])?;
    let write_err = |source| UserdataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("iso.tmp");
    let mut file = fs::File::create(&temporary).map_err(write_err)?;
    file.write_all(&image)
        .and_then(|()| file.sync_all())
        .map_err(write_err)?;
    fs::rename(&temporary, path).map_err(write_err)
}

/// The whole image in memory (userdata is small). `files` must be sorted by identifier.
fn build_iso(files: &[IsoFile<'_>]) -> Result<Vec<u8>, UserdataError> {
    let mut extents = Vec::with_capacity(files.len());
    let mut next = FIRST_FILE_SECTOR;
    for file in files {
        let size = u32::try_from(file.contents.len()).map_err(|_| UserdataError::TooLarge(file.name.to_string()))?;
        extents.push((next, size));
        next += size.div_ceil(SECTOR as u32).max(1);
    }
    let total_sectors = next + TAIL_PADDING_SECTORS;

    let mut root = Vec::with_capacity(SECTOR);
    root.extend(directory_record(
        &[0],
        ROOT_DIR,
        SECTOR as u32,
        true,
        &root_system_use(),
    ));
    root.extend(directory_record(
        &[1],
        ROOT_DIR,
        SECTOR as u32,
        true,
        &posix_attributes(0o40555),
    ));
    for (file, (sector, size)) in files.iter().zip(&extents) {
        let mut system_use = posix_attributes(0o100444);
        system_use.extend(alternate_name(file.name));
        root.extend(directory_record(
            file.identifier.as_bytes(),
            *sector,
            *size,
            false,
            &system_use,
        ));
    }
    if root.len() > SECTOR {
        return Err(UserdataError::TooLarge(
            "the root directory needs more than one sector".into(),
        ));
    }

    let mut image = vec![0u8; total_sectors as usize * SECTOR];
    let at = |sector: u32| sector as usize * SECTOR;
    image[at(PVD_SECTOR)..at(PVD_SECTOR + 1)].copy_from_slice(&primary_volume_descriptor(total_sectors));
    image[at(PVD_SECTOR + 1)..at(PVD_SECTOR + 1) + 7].copy_from_slice(b"\xffCD001\x01");
    image[at(L_PATH_TABLE)..at(L_PATH_TABLE) + 10].copy_from_slice(&path_table_root(false));
    image[at(M_PATH_TABLE)..at(M_PATH_TABLE) + 10].copy_from_slice(&path_table_root(true));
    image[at(ROOT_DIR)..at(ROOT_DIR) + root.len()].copy_from_slice(&root);
    for (file, (sector, _)) in files.iter().zip(&extents) {
        image[at(*sector)..at(*sector) + file.contents.len()].copy_from_slice(file.contents);
    }
    Ok(image)
}

/// A 32-bit number in ISO 9660's both-byte-order form.
fn both32(value: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&value.to_le_bytes());
    out[4..].copy_from_slice(&value.to_be_bytes());
    out
}

/// A 16-bit number in both byte orders.
fn both16(value: u16) -> [u8; 4] {
    let mut out = [0u8; 4];
    out[..2].copy_from_slice(&value.to_le_bytes());
    out[2..].copy_from_slice(&value.to_be_bytes());
    out
}

/// A directory record (ECMA-119 9.1) with its Rock Ridge system use area.
fn directory_record(identifier: &[u8], sector: u32, size: u32, directory: bool, system_use: &[u8]) -> Vec<u8> {
    let padding = usize::from(identifier.len().is_multiple_of(2));
    let length = 33 + identifier.len() + padding + system_use.len();
    let mut record = Vec::with_capacity(length);
    record.push(u8::try_from(length).unwrap_or(u8::MAX));
    record.push(0); // extended attribute record length
    record.extend(both32(sector));
    record.extend(both32(size));
    record.extend([70, 1, 1, 0, 0, 0, 0]); // 1970-01-01 00:00:00 UTC
    record.push(if directory { 2 } else { 0 });
    record.extend([0, 0]); // file unit size, interleave gap
    record.extend(both16(1)); // volume sequence number
    record.push(identifier.len() as u8);
    record.extend(identifier);
    record.extend(std::iter::repeat_n(0, padding));
    record.extend(system_use);
    record
}

/// The root's `.` system use: SUSP's `SP` marker and the `ER` entry announcing Rock Ridge.
fn root_system_use() -> Vec<u8> {
    const ID: &[u8] = b"RRIP_1991A";
    const DESCRIPTOR: &[u8] = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    const SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.";
    let mut out = vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0];
    out.extend(posix_attributes(0o40555));
    let length = 8 + ID.len() + DESCRIPTOR.len() + SOURCE.len();
    out.extend([
        b'E',
        b'R',
        length as u8,
        1,
        ID.len() as u8,
        DESCRIPTOR.len() as u8,
        SOURCE.len() as u8,
        1,
    ]);
    out.extend(ID);
    out.extend(DESCRIPTOR);
    out.extend(SOURCE);
    out
}

/// Rock Ridge `PX`: POSIX mode, one link, owner root.
fn posix_attributes(mode: u32) -> Vec<u8> {
    let mut out = vec![b'P', b'X', 36, 1];
    out.extend(both32(mode));
    out.extend(both32(1));
    out.extend(both32(0));
    out.extend(both32(0));
    out
}

/// Rock Ridge `NM`: the real (lower-case, dashed) file name.
fn alternate_name(name: &str) -> Vec<u8> {
    let mut out = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
    out.extend(name.as_bytes());
    out
}

/// The path table's single entry, the root directory (its own parent, number 1), with numbers in
/// the table's byte order.
fn path_table_root(big_endian: bool) -> [u8; 10] {
    let mut entry = [0u8; 10];
    entry[0] = 1; // identifier length; the identifier byte (and the padding byte) stay 0
    let (extent, parent) = match big_endian {
        true => (ROOT_DIR.to_be_bytes(), 1u16.to_be_bytes()),
        false => (ROOT_DIR.to_le_bytes(), 1u16.to_le_bytes()),
    };
    entry[2..6].copy_from_slice(&extent);
    entry[6..8].copy_from_slice(&parent);
    entry
}

/// The primary volume descriptor (ECMA-119 8.4).
fn primary_volume_descriptor(total_sectors: u32) -> [u8; SECTOR] {
    let mut pvd = [0u8; SECTOR];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    let padded = |field: &mut [u8], text: &str| {
        field.fill(b' ');
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    padded(&mut pvd[8..40], "LINUX");
    padded(&mut pvd[40..72], VOLUME_LABEL);
    pvd[80..88].copy_from_slice(&both32(total_sectors));
    pvd[120..124].copy_from_slice(&both16(1)); // volume set size
    pvd[124..128].copy_from_slice(&both16(1)); // volume sequence number
    pvd[128..132].copy_from_slice(&both16(SECTOR as u16));
    pvd[132..140].copy_from_slice(&both32(10)); // path table size
    pvd[140..144].copy_from_slice(&L_PATH_TABLE.to_le_bytes());
    pvd[148..152].copy_from_slice(&M_PATH_TABLE.to_be_bytes());
    pvd[156..190].copy_from_slice(&directory_record(&[0], ROOT_DIR, SECTOR as u32, true, &[]));
    for field in [190..318, 318..446, 446..574, 574..702, 702..739, 739..776, 776..813] {
        padded(&mut pvd[field], "");
    }
    padded(&mut pvd[318..446], "MOBY");
    for start in [813, 830, 864] {
        pvd[start..start + 16].copy_from_slice(b"1970010100000000");
    }
    pvd[847..863].copy_from_slice(b"0000000000000000"); // no expiration
    pvd[881] = 1; // file structure version
    pvd
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tool(name: &str) -> bool {
        Command::new(name).arg("-version").output().is_ok() || Command::new(name).arg("--help").output().is_ok()
    }

    #[test]
    fn layout_is_reproducible_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.iso"), dir.path().join("b.iso"));
        write_userdata_iso(&a, b"{\"ssh\":{}}\n", "vm1").unwrap();
        write_userdata_iso(&b, b"{\"ssh\":{}}\n", "vm1").unwrap();
        let image = fs::read(&a).unwrap();
        assert_eq!(image, fs::read(&b).unwrap(), "same input, same bytes");
        assert_eq!(image.len() % SECTOR, 0);
        assert_eq!(&image[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&image[16 * SECTOR + 40..16 * SECTOR + 46], b"cidata");
        assert_eq!(
            u32::from_le_bytes(image[16 * SECTOR + 80..16 * SECTOR + 84].try_into().unwrap()) as usize,
            image.len() / SECTOR
        );
        assert!(!dir.path().join("a.iso.tmp").exists());
    }

    #[test]
    fn linux_tools_read_the_label_and_the_rock_ridge_names() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("userdata.iso");
        let userdata = b"#cloud-config\nhostname: test\n";
        write_userdata_iso(&iso, userdata, "vm-7").unwrap();
        let blkid = Command::new("blkid")
            .args(["-o", "value", "-s", "LABEL"])
            .arg(&iso)
            .output()
            .expect("blkid (util-linux) is installed");
        assert_eq!(String::from_utf8_lossy(&blkid.stdout).trim(), "cidata");
        assert!(
            tool("isoinfo"),
            "isoinfo (apt genisoimage) is needed to check Rock Ridge names"
        );
        let listing = Command::new("isoinfo")
            .args(["-R", "-f", "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(names, ["/config", "/meta-data", "/user-data"]);
        for (name, expected) in [
            ("/user-data", &userdata[..]),
            ("/config", &userdata[..]),
            ("/meta-data", b"instance-id: vm-7\nlocal-hostname: vm-7\n"),
        ] {
            let extracted = Command::new("isoinfo")
                .args(["-R", "-x", name, "-i"])
                .arg(&iso)
                .output()
                .unwrap();
            assert_eq!(extracted.stdout, expected, "{name}");
        }
    }

    #[test]
    fn empty_userdata_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("empty.iso");
        write_userdata_iso(&iso, b"", "x").unwrap();
        assert_eq!(
            fs::metadata(&iso).unwrap().len() as usize,
            (FIRST_FILE_SECTOR + 3 + TAIL_PADDING_SECTORS) as usize * SECTOR
        );
    }
}
