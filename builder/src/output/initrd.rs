//! Turning tar entries into a gzip-compressed newc cpio archive: the initrd.
//!
//! The conversion follows LinuxKit's `initrd` package: entry names, modes, owners and mtimes are
//! kept; hard links become symlinks relative to the link's directory (the kernel's initramfs
//! unpacker would need the target's data repeated for a real cpio hard link); symlink data is the
//! target; devices keep their numbers. Where LinuxKit would emit a broken archive we refuse or
//! repair instead: data of non-regular entries is dropped rather than zero-filled into the cpio,
//! and values that do not fit the 32-bit newc fields are rejected (ids, sizes) or clamped (times).

use std::io::{self, Write};

use super::cpio::{CpioError, FileType, NewcHeader, NewcWriter};
use super::pgzip::{PgzipOptions, PgzipWriter};
use crate::tar::{gopath, EntryKind, Header};

/// Errors converting a tar entry into a cpio entry.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// The tar entry has a type that an initramfs cannot hold.
    #[error("entry {name}: tar type {flag:?} cannot be put into an initrd; remove it from the image")]
    UnsupportedType {
        /// Entry name.
        name: String,
        /// The tar type flag.
        flag: char,
    },
    /// A numeric field is too large for the 32-bit newc format.
    #[error("entry {name}: {field} {value} does not fit the 32-bit cpio header of an initrd")]
    OutOfRange {
        /// Entry name.
        name: String,
        /// Which field (`uid`, `gid`, `size`).
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The cpio writer refused the entry or could not write.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

impl From<InitrdError> for io::Error {
    fn from(err: InitrdError) -> io::Error {
        match err {
            InitrdError::Cpio(inner) => inner.into(),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Writes tar entries as a gzip-compressed newc archive into `W`.
pub struct InitrdWriter<W: Write> {
    cpio: NewcWriter<PgzipWriter<W>>,
    /// Whether data of the current tar entry goes into the archive (regular files only).
    copy_data: bool,
}

impl<W: Write> InitrdWriter<W> {
    /// Starts the compressed archive on `inner`.
    pub fn new(inner: W, gzip: PgzipOptions) -> io::Result<InitrdWriter<W>> {
        Ok(InitrdWriter {
            cpio: NewcWriter::new(PgzipWriter::new(inner, gzip)?),
            copy_data: false,
        })
    }

    /// Writes the cpio header for a tar entry (and, for links, the target as its data).
    pub fn write_entry(&mut self, header: &Header) -> Result<(), InitrdError> {
        let (cpio_header, link) = cpio_header(header)?;
        self.cpio.write_header(&cpio_header)?;
        if let Some(link) = link {
            self.cpio.write_data(link.as_bytes())?;
        }
        self.copy_data = cpio_header.file_type == FileType::Regular;
        Ok(())
    }

    /// Appends data of the current tar entry; ignored for entries that are not regular files.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), InitrdError> {
        if self.copy_data {
            self.cpio.write_data(data)?;
        }
        Ok(())
    }

    /// Ends the archive and the gzip stream and returns the inner writer.
    pub fn finish(self) -> Result<W, InitrdError> {
        let gzip = self.cpio.finish()?;
        Ok(gzip.finish().map_err(CpioError::Io)?)
    }
}

/// The cpio header for a tar entry, plus the symlink target to write as its data.
fn cpio_header(header: &Header) -> Result<(NewcHeader, Option<String>), InitrdError> {
    let name = &header.name;
    let (file_type, link) = match header.kind {
        EntryKind::Regular => (FileType::Regular, None),
        EntryKind::Directory => (FileType::Directory, None),
        EntryKind::Symlink => (FileType::Symlink, Some(header.link_name.clone())),
        EntryKind::HardLink => (FileType::Symlink, Some(hard_link_target(header))),
        EntryKind::Char => (FileType::Char, None),
        EntryKind::Block => (FileType::Block, None),
        EntryKind::Fifo => (FileType::Fifo, None),
        EntryKind::Other(flag) => {
            return Err(InitrdError::UnsupportedType {
                name: name.clone(),
                flag: char::from(flag),
            })
        }
    };
    let size = match (&link, file_type) {
        (Some(target), _) => target.len() as u64,
        (None, FileType::Regular) => header.size,
        // Directories, devices and FIFOs have no data in a cpio archive.
        (None, _) => 0,
    };
    let is_device = matches!(file_type, FileType::Char | FileType::Block);
    let cpio_header = NewcHeader {
        name: name.clone(),
        file_type,
        mode: header.mode,
        uid: fit(name, "uid", header.uid)?,
        gid: fit(name, "gid", header.gid)?,
        mtime: clamp_mtime(name, header.mtime),
        size: fit(name, "size", size)?,
        rdev_major: if is_device { header.dev_major } else { 0 },
        rdev_minor: if is_device { header.dev_minor } else { 0 },
    };
    Ok((cpio_header, link))
}

fn fit(name: &str, field: &'static str, value: u64) -> Result<u32, InitrdError> {
    u32::try_from(value).map_err(|_| InitrdError::OutOfRange {
        name: name.to_string(),
        field,
        value,
    })
}

/// Times before 1970 or after 2106 cannot be stored; clamping beats failing a build over a
/// timestamp.
fn clamp_mtime(name: &str, mtime: i64) -> u32 {
    match u32::try_from(mtime) {
        Ok(value) => value,
        Err(_) => {
            let clamped = if mtime < 0 { 0 } else { u32::MAX };
            tracing::warn!(entry = name, mtime, clamped, "mtime out of the cpio range, clamped");
            clamped
        }
    }
}

/// The symlink target replacing a hard link: the target relative to the link's directory, as Go's
/// `filepath.Rel(filepath.Dir(name), linkname)`; `/` + target when no relative path exists.
fn hard_link_target(header: &Header) -> String {
    gopath::rel(&gopath::dir(&header.name), &header.link_name).unwrap_or_else(|| format!("/{}", header.link_name))
}

#[cfg(test)]
mod tests {
    use super::super::cpio::tests::{parse_newc, ParsedEntry};
    use super::*;
    use std::io::Read;

    fn entry(name: &str, kind: EntryKind, mode: u32) -> Header {
        Header {
            mtime: 1_700_000_000,
            ..Header::new(name, kind, mode)
        }
    }

    fn build(entries: &[(Header, &[u8])]) -> Vec<ParsedEntry> {
        let mut writer = InitrdWriter::new(Vec::new(), PgzipOptions::default()).unwrap();
        for (header, data) in entries {
            writer.write_entry(header).unwrap();
            writer.write_data(data).unwrap();
        }
        let gz = writer.finish().unwrap();
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut cpio)
            .unwrap();
        parse_newc(&cpio)
    }

    #[test]
    fn hard_links_become_relative_symlinks() {
        let mut link = entry("usr/bin/hello-hard", EntryKind::HardLink, 0o755);
        link.link_name = "bin/hello".to_string();
        let mut root = entry("top", EntryKind::HardLink, 0o644);
        root.link_name = "etc/x".to_string();
        let mut odd = entry("../up", EntryKind::HardLink, 0o644);
        odd.link_name = "a".to_string();
        let entries = build(&[(link, b""), (root, b""), (odd, b"")]);
        let links: Vec<_> = entries
            .iter()
            .map(|e| (e.mode, String::from_utf8(e.data.clone()).unwrap()))
            .collect();
        assert_eq!(
            links,
            vec![
                (0o120755, "../../bin/hello".to_string()),
                (0o120644, "etc/x".to_string()),
                // Go cannot make "a" relative to ".."; LinuxKit then uses "/" + the target.
                (0o120644, "/a".to_string()),
            ]
        );
    }

    #[test]
    fn entry_types_map_to_cpio() {
        let mut file = entry("etc/motd", EntryKind::Regular, 0o644);
        file.size = 3;
        file.uid = 1000;
        file.gid = 100;
        let mut symlink = entry("etc/mtab", EntryKind::Symlink, 0o755);
        symlink.link_name = "/proc/mounts".to_string();
        let mut device = entry("dev/console", EntryKind::Char, 0o600);
        (device.dev_major, device.dev_minor) = (5, 1);
        let mut dir_with_data = entry("var/", EntryKind::Directory, 0o755);
        dir_with_data.size = 4;
        let entries = build(&[
            (file, b"hi\n"),
            (symlink, b""),
            (device, b""),
            (dir_with_data, b"junk"),
            (entry("run/fifo", EntryKind::Fifo, 0o600), b""),
        ]);
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.mode, e.nlink, e.data.as_slice(), e.rdev))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("etc/motd", 0o100644, 1, &b"hi\n"[..], (0, 0)),
                ("etc/mtab", 0o120755, 1, &b"/proc/mounts"[..], (0, 0)),
                ("dev/console", 0o020600, 1, &b""[..], (5, 1)),
                ("var/", 0o040755, 2, &b""[..], (0, 0)),
                ("run/fifo", 0o010600, 1, &b""[..], (0, 0)),
            ]
        );
        assert_eq!((entries[0].uid, entries[0].gid), (1000, 100));
        assert!(entries.iter().all(|e| e.mtime == 1_700_000_000));
    }

    #[test]
    fn unsupported_types_and_big_ids_are_rejected() {
        let mut writer = InitrdWriter::new(Vec::new(), PgzipOptions::default()).unwrap();
        let err = writer
            .write_entry(&entry("x", EntryKind::Other(b'S'), 0o644))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry x: tar type 'S' cannot be put into an initrd; remove it from the image"
        );
        let mut big = entry("y", EntryKind::Regular, 0o644);
        big.uid = 1 << 32;
        let err = writer.write_entry(&big).unwrap_err();
        assert!(matches!(err, InitrdError::OutOfRange { field: "uid", .. }));
    }

    #[test]
    fn mtimes_out_of_range_are_clamped() {
        let mut old = entry("old", EntryKind::Directory, 0o755);
        old.mtime = -5;
        let mut future = entry("future", EntryKind::Directory, 0o755);
        future.mtime = 1 << 40;
        let entries = build(&[(old, b""), (future, b"")]);
        assert_eq!(entries[0].mtime, 0);
        assert_eq!(entries[1].mtime, u32::MAX);
    }

    /// Parses listing.tsv lines (the conformance corpus's tar view) into headers, keeping the
    /// sha256 of regular files.
    fn parse_listing(listing: &str) -> Vec<(Header, String)> {
        listing
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                let kind = match cols[0] {
                    "-" => EntryKind::Regular,
                    "d" => EntryKind::Directory,
                    "l" => EntryKind::Symlink,
                    "h" => EntryKind::HardLink,
                    "c" => EntryKind::Char,
                    "b" => EntryKind::Block,
                    "p" => EntryKind::Fifo,
                    other => panic!("unknown type {other}"),
                };
                let mut header = Header::new(cols[6], kind, u32::from_str_radix(cols[1], 8).unwrap());
                header.uid = cols[2].parse().unwrap();
                header.gid = cols[3].parse().unwrap();
                header.size = cols[4].parse().unwrap();
                header.mtime = cols[5].parse().unwrap();
                header.link_name = cols[7].to_string();
                if let Some(dev) = cols
                    .get(11)
                    .and_then(|e| e.split(';').find_map(|p| p.strip_prefix("dev=")))
                {
                    let (major, minor) = dev.split_once(',').unwrap();
                    header.dev_major = major.parse().unwrap();
                    header.dev_minor = minor.parse().unwrap();
                }
                (header, cols[8].to_string())
            })
            .collect()
    }

    fn sha256_hex(data: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(data))
    }

    /// Builds the uncompressed cpio LinuxKit builds from a tar listing (its split rule: every
    /// `boot/...` entry out, the `boot` directory in) and returns it.
    fn linuxkit_cpio(listing: &str, content: &dyn Fn(&str, &str) -> Vec<u8>) -> Vec<u8> {
        let mut writer = InitrdWriter::new(Vec::new(), PgzipOptions::default()).unwrap();
        for (header, sha) in parse_listing(listing) {
            if header.name.starts_with("boot/") {
                continue;
            }
            writer.write_entry(&header).unwrap();
            if header.kind == EntryKind::Regular {
                let data = content(&header.name, &sha);
                assert_eq!(sha256_hex(&data), sha, "content of {}", header.name);
                writer.write_data(&data).unwrap();
            }
        }
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(writer.finish().unwrap().as_slice())
            .read_to_end(&mut cpio)
            .unwrap();
        cpio
    }

    /// LinuxKit's tar for conformance case 003-kernel-ucode-notar (listing.tsv, PAX columns cut).
    const CASE_003_LISTING: &str = "\
d	0755	0	0	0	1492533000	boot		
-	0644	0	0	13	1492533000	boot/cmdline		2b98586d9905a605c295d77c61e8cfd2027ae5b8a04eefa9018436f6ad114297
-	0644	0	0	44	1492533000	boot/kernel		f302621b8b728480cb5c92d14db7cc4b77fdce1ba8463491da5623c0187c0678
-	0644	0	0	1024	1492533000	boot/ucode.cpio		cbf6bdafcfcc0c1f624001ffcc9bd3eda0a187052c9b23cf1b1cd2fb7e151333
-	0755	0	0	60	1700000000	init		a02a0ed6272f2f1ef2dfdabeec6ef0bce61c22b3c8c09e55c119e7420554b1e5
d	0755	0	0	0	1700000000	bin		
-	0755	0	0	23	1700000000	bin/rc.init		cffc3da0d6e0b9a821108a22e30499324cfde541bb4e01d6ba12ab2dd9151371
l	0777	0	0	0	1700000000	bin/rc.shutdown	rc.init	
d	0755	0	0	0	1700000000	sbin		
-	0755	0	0	33	1700000000	sbin/init		f2126ffad36d06aeb7c8a792456ab2647d59a2d5376140df86c230261d217d6b
d	0755	0	0	0	1700000000	dev		
d	0755	0	0	0	1700000000	etc		
-	0644	0	0	23	1700000000	etc/inittab		a5efc8a37e31a4a481afdc21894db68732e894d55897db3ad5e5d97e7f359a4d
-	0644	0	0	39	1700000000	etc/os-release		9bcaf28f73ac9e3e6bcf0ba628695340e8720a8775e519d666840346954024de
-	0644	0	0	160	1492533000	etc/hosts		43037ff87af87fda11c4377e963593a0f55e513702779db721c6ce574c06e88e
l	0644	0	0	0	1492533000	etc/resolv.conf	/run/resolvconf/resolv.conf	
d	0755	0	0	0	1700000000	etc/init.d		
l	0777	0	0	0	1700000000	etc/init.d/010-onboot	/usr/bin/service	
d	0755	0	0	0	1700000000	usr		
d	0755	0	0	0	1700000000	usr/bin		
-	0755	0	0	28	1700000000	usr/bin/service		b145f3975c8a8b43fb17a5f2bac0986067e045497d9f44b2d6bfd42db15b269d
d	0755	0	0	0	1700000000	lib		
d	0755	0	0	0	1700000000	lib/apk		
d	0755	0	0	0	1700000000	lib/apk/db		
-	0644	0	0	28	1700000000	lib/apk/db/installed		0ae7190e16e78f2d0f134ca65bf2da9841db13fdf436f39d740b5d38bf9f70fb
d	0755	0	0	0	1700000000	proc		
d	1777	0	0	0	1700000000	tmp		
d	0755	0	0	0	1700000000	var		
d	0755	0	0	0	1700000000	var/empty		
d	0755	0	0	0	1492533000	dev		
d	0755	0	0	0	1492533000	dev/pts		
d	0755	0	0	0	1492533000	dev/shm		
d	0755	0	0	0	1492533000	etc		
-	0644	0	0	160	1492533000	etc/hosts		43037ff87af87fda11c4377e963593a0f55e513702779db721c6ce574c06e88e
l	0755	0	0	0	1492533000	etc/mtab	/proc/mounts	
l	0644	0	0	0	1492533000	etc/resolv.conf	/run/resolvconf/resolv.conf	
d	0755	0	0	0	1492533000	proc		
d	0755	0	0	0	1492533000	sys		
";

    /// LinuxKit's generated /etc/hosts.
    const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n\
fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";

    #[test]
    fn cpio_is_byte_identical_to_linuxkit_for_case_003() {
        let content = |name: &str, _sha: &str| -> Vec<u8> {
            let text = match name {
                "init" => "#!/bin/sh\n# fake init for conformance tests\nexec /sbin/init\n",
                "bin/rc.init" => "#!/bin/sh\necho rc.init\n",
                "sbin/init" => "#!/bin/sh\necho fake busybox init\n",
                "etc/inittab" => "::sysinit:/bin/rc.init\n",
                "etc/os-release" => "NAME=\"Conformance init\"\nID=conformance\n",
                "etc/hosts" => HOSTS,
                "usr/bin/service" => "#!/bin/sh\necho service \"$@\"\n",
                "lib/apk/db/installed" => "P:conformance-init\nV:1.0-r0\n",
                other => panic!("no content for {other}"),
            };
            text.as_bytes().to_vec()
        };
        let cpio = linuxkit_cpio(CASE_003_LISTING, &content);
        // summary.json "kernel+initrd": cpio_size and cpio_sha256 of LinuxKit v1.7.1's build.
        assert_eq!(cpio.len(), 5120);
        assert_eq!(
            sha256_hex(&cpio),
            "e2998b5fdbb1c883b16910ffa50dba94e66576c9c13fc659ce00a9cba3c281d8"
        );
    }
}
