//! ISO 9660 images with Rock Ridge, El Torito (BIOS and EFI) and an isohybrid MBR.
//!
//! An [`Iso`] is a directory tree (files, directories, symlinks, device nodes, fifos, hard links)
//! whose file contents are [`Content`]s: nothing is held in memory but the tree itself. [`Iso::write`]
//! lays it out deterministically and writes it into a file with positioned writes; what it does not
//! write (the system area of a plain ISO, the tail padding) stays a hole. It returns the [`Layout`]:
//! where each file landed.
//!
//! What is written:
//! - ISO 9660 names of up to 31 characters (genisoimage's `-l`): upper case, `[A-Z0-9_]`, files as
//!   `NAME.EXT;1`, clashes resolved with a numeric suffix. Readers without Rock Ridge (isolinux on a
//!   disc without it, firmware) see these; isolinux maps them back to lower case.
//! - Rock Ridge (RRIP 1991A, announced by SUSP `SP`/`ER` in the root's `.` record): `NM` real names,
//!   `PX` mode/links/owner, `TF` times, `SL` symlinks, `PN` devices; `CE` continuation areas when a
//!   record's 255 bytes are not enough (long names and symlink targets).
//! - No Joliet tree: Linux, isolinux and firmware do not need it.
//! - Directories deeper than ISO 9660's eight levels are kept where they are (like `mkisofs -D`),
//!   not relocated: Linux, isolinux and xorriso read them.
//! - El Torito: a BIOS no-emulation entry (optionally with a boot info table patched into the boot
//!   file, as `-boot-info-table` does) and/or an EFI entry (platform 0xEF) for a FAT image. The EFI
//!   entry's load size is the image size in 512-byte sectors, or 0 when that does not fit 16 bits
//!   (xorriso's choice; OVMF then takes the boot image to extend to the end of the volume).
//! - An isohybrid MBR (syslinux's `isohdpfx.bin` boot code, the boot file's LBA, a disk signature,
//!   one active partition from sector 0 covering the image, the image padded to whole 1 MiB
//!   cylinders), optionally with a second partition of type 0xEF over the EFI image, as
//!   `isohybrid -u` writes it (without its GPT). OVMF needs none of it to boot the EFI entry from
//!   a disk: edk2's partition driver reads El Torito on any disk whose sector size divides 2048
//!   (checked under qemu: no MBR, the 0x17 MBR, and 0x00 + 0xEF all boot); the 0xEF partition is
//!   for firmware that only reads partition tables.
//! - `pad_sectors` zero sectors at the end, counted in the volume (genisoimage's `-pad`: 150):
//!   Linux reads ahead past the end of the data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;

use crate::content::Content;

mod eltorito;
mod layout;
mod rrip;
#[cfg(test)]
mod tests;

/// Bytes in an ISO 9660 logical sector.
pub const SECTOR: u64 = 2048;

/// Zero sectors appended by default, as genisoimage's `-pad` does.
pub const DEFAULT_PAD_SECTORS: u32 = 150;

/// Why an ISO image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// A path given for the tree is not a plain relative path.
    #[error("bad path {path:?} for the ISO image: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries were given the same path.
    #[error("{0:?} is already in the ISO image: each path can be added once")]
    Exists(String),
    /// A path goes through something that is not a directory.
    #[error("{path:?} cannot be added to the ISO image: {parent:?} is not a directory")]
    NotADirectory {
        /// The path being added.
        path: String,
        /// Its ancestor that is a file, symlink or device.
        parent: String,
    },
    /// A path that must name a regular file in the tree (a boot file, a hard link's target) does not.
    #[error("{role} {path:?} is not a regular file in the ISO image: add it with Iso::file first")]
    NotAFile {
        /// What the path was given as.
        role: &'static str,
        /// The path.
        path: String,
    },
    /// The volume identifier is not up to 32 printable ASCII characters.
    #[error("volume id {0:?} is not valid: use 1 to 32 printable ASCII characters")]
    BadVolumeId(String),
    /// A file is too large for a single ISO 9660 extent.
    #[error("{path} has {size} bytes: ISO 9660 files must stay under 4 GiB (multi-extent files are not written)")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A boot image cannot be used as asked.
    #[error("boot image {path}: {reason}")]
    BootImage {
        /// The boot image's path (or `(hidden EFI image)`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The image would exceed ISO 9660's limits (2^32 sectors, 65535 directories).
    #[error("the ISO image is too large: {0}")]
    Limit(String),
    /// Reading a content or writing the image failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Owner, permissions and modification time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits (`0o7777`: setuid, setgid, sticky, rwx); the file type comes from the entry.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch (also written as access and change time).
    pub mtime: i64,
}

impl Metadata {
    /// `mode`, owned by root, modified at `mtime`.
    pub fn new(mode: u32, mtime: i64) -> Metadata {
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            mtime,
        }
    }
}

/// A device node's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// Where a boot image comes from.
#[derive(Debug, Clone)]
pub enum BootImage<'a> {
    /// A regular file of the tree, by path.
    Path(String),
    /// Bytes placed on the disc without a directory entry (`mkisofs -hide`).
    Hidden(Content<'a>),
}

/// The BIOS El Torito entry: a no-emulation boot file such as `isolinux.bin`.
#[derive(Debug, Clone)]
pub struct BiosBoot<'a> {
    /// The boot file.
    pub image: BootImage<'a>,
    /// 512-byte sectors the BIOS loads (`-boot-load-size`; isolinux: 4).
    pub load_sectors: u16,
    /// Patch a boot info table into bytes 8..64 of the boot file (`-boot-info-table`; isolinux needs it).
    pub boot_info_table: bool,
}

/// The EFI El Torito entry: a FAT image holding `EFI/BOOT/BOOTX64.EFI`.
#[derive(Debug, Clone)]
pub struct EfiBoot<'a> {
    /// The FAT image.
    pub image: BootImage<'a>,
}

/// El Torito boot entries.
#[derive(Debug, Clone, Default)]
pub struct ElTorito<'a> {
    /// The BIOS entry (the default entry when present).
    pub bios: Option<BiosBoot<'a>>,
    /// The EFI entry.
    pub efi: Option<EfiBoot<'a>>,
    /// Path of the boot catalog in the tree (e.g. `isolinux/boot.cat`), or `None` to hide it.
    pub catalog: Option<String>,
}

/// An isohybrid MBR in the system area, so that the image also boots when written to a disk.
#[derive(Debug, Clone, Copy)]
pub struct HybridMbr<'a> {
    /// Boot code: syslinux's `isohdpfx.bin` (its first 432 bytes are used; 440 or 512 bytes are
    /// fine). It loads the BIOS boot file, which must be isolinux with isohybrid support. `None`
    /// leaves the boot code zero (a partition table only).
    pub boot_code: Option<&'a [u8]>,
    /// The MBR disk signature (bytes 440..444).
    pub disk_signature: u32,
    /// Add partition 2 of type 0xEF over the EFI boot image, and give partition 1 type 0 instead of
    /// 0x17 so that the two do not overlap for UEFI firmware (what `isohybrid -u` does).
    pub efi_partition: bool,
}

/// Where one file of the tree landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFile {
    /// Its path in the tree (for hidden boot images: `(hidden BIOS image)`/`(hidden EFI image)`).
    pub path: String,
    /// Its first 2048-byte sector (0 for an empty file).
    pub lba: u32,
    /// Its length in bytes.
    pub len: u64,
}

/// What [`Iso::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Regular files in the order of their data, boot images first; hard links appear once.
    pub files: Vec<PlacedFile>,
    /// Sector of the boot catalog, if any.
    pub catalog_lba: Option<u32>,
    /// Sector of the BIOS boot file, if any.
    pub bios_lba: Option<u32>,
    /// Sector of the EFI boot image, if any.
    pub efi_lba: Option<u32>,
    /// Sectors in the volume (the PVD's volume space size), padding included.
    pub volume_sectors: u32,
    /// Length of the image file in bytes (rounded up to whole MiB with a hybrid MBR).
    pub image_len: u64,
}

/// What a node of the tree is.
#[derive(Debug)]
pub(crate) enum Kind<'a> {
    /// A directory: its entries by name.
    Dir { children: BTreeMap<String, usize> },
    /// A regular file.
    File(Content<'a>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A device node.
    Device { kind: DeviceKind, major: u32, minor: u32 },
    /// A named pipe.
    Fifo,
    /// The El Torito boot catalog, shown as a file.
    Catalog,
}

/// A node of the tree (an inode: hard links share one).
#[derive(Debug)]
pub(crate) struct Node<'a> {
    pub(crate) kind: Kind<'a>,
    pub(crate) meta: Metadata,
    /// Directory entries that point at this node.
    pub(crate) links: u32,
    /// The first path it was added under (for messages and the layout).
    pub(crate) path: String,
}

/// An ISO 9660 image being described; [`Iso::write`] writes it.
#[derive(Debug)]
pub struct Iso<'a> {
    pub(crate) volume_id: String,
    pub(crate) publisher: String,
    pub(crate) time: i64,
    pub(crate) pad_sectors: u32,
    /// Node 0 is the root directory.
    pub(crate) nodes: Vec<Node<'a>>,
    pub(crate) el_torito: Option<ElTorito<'a>>,
    pub(crate) hybrid: Option<HybridMbr<'a>>,
}

/// Mode of directories that are created because a path needs them.
const IMPLICIT_DIR_MODE: u32 = 0o755;

impl<'a> Iso<'a> {
    /// An empty image with this volume id (what `blkid` shows as LABEL) and `time` (seconds since
    /// the epoch) for the volume dates, the root and implicitly created directories.
    pub fn new(volume_id: &str, time: i64) -> Result<Iso<'a>, IsoError> {
        if volume_id.is_empty() || volume_id.len() > 32 || !volume_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(IsoError::BadVolumeId(volume_id.to_string()));
        }
        Ok(Iso {
            volume_id: volume_id.to_string(),
            publisher: String::new(),
            time,
            pad_sectors: DEFAULT_PAD_SECTORS,
            nodes: vec![Node {
                kind: Kind::Dir {
                    children: BTreeMap::new(),
                },
                meta: Metadata::new(IMPLICIT_DIR_MODE, time),
                links: 1,
                path: String::new(),
            }],
            el_torito: None,
            hybrid: None,
        })
    }

    /// Sets the publisher field of the primary volume descriptor (at most 128 characters kept).
    pub fn set_publisher(&mut self, publisher: &str) {
        self.publisher = publisher
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(128)
            .collect();
    }

    /// Sets how many zero sectors end the volume (default [`DEFAULT_PAD_SECTORS`]).
    pub fn set_pad_sectors(&mut self, sectors: u32) {
        self.pad_sectors = sectors;
    }

    /// Sets the root directory's mode, owner and time.
    pub fn set_root(&mut self, meta: Metadata) {
        self.nodes[0].meta = meta;
    }

    /// Adds a directory (or sets the metadata of one that a longer path created already).
    pub fn dir(&mut self, path: &str, meta: Metadata) -> Result<(), IsoError> {
        let (parent, name, clean) = self.parent_of(path)?;
        if let Some(existing) = self.child(parent, &name) {
            if matches!(self.nodes[existing].kind, Kind::Dir { .. }) {
                self.nodes[existing].meta = meta;
                return Ok(());
            }
            return Err(IsoError::Exists(clean));
        }
        let kind = Kind::Dir {
            children: BTreeMap::new(),
        };
        self.insert(parent, name, clean, kind, meta);
        Ok(())
    }

    /// Adds a regular file whose bytes are `content` (copied when the image is written).
    pub fn file(&mut self, path: &str, content: Content<'a>, meta: Metadata) -> Result<(), IsoError> {
        self.add(path, Kind::File(content), meta)
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str, meta: Metadata) -> Result<(), IsoError> {
        if target.is_empty() || target.len() > 4095 || target.contains('\0') {
            return Err(IsoError::BadPath {
                path: path.to_string(),
                reason: "a symlink target must have 1 to 4095 bytes and no NUL",
            });
        }
        self.add(path, Kind::Symlink(target.to_string()), meta)
    }

    /// Adds a device node.
    pub fn device(
        &mut self,
        path: &str,
        kind: DeviceKind,
        major: u32,
        minor: u32,
        meta: Metadata,
    ) -> Result<(), IsoError> {
        self.add(path, Kind::Device { kind, major, minor }, meta)
    }

    /// Adds a named pipe.
    pub fn fifo(&mut self, path: &str, meta: Metadata) -> Result<(), IsoError> {
        self.add(path, Kind::Fifo, meta)
    }

    /// Adds `path` as another name of the regular file already at `target` (a hard link: one copy of
    /// the data, both directory entries point at it, its link count counts both).
    pub fn hard_link(&mut self, path: &str, target: &str) -> Result<(), IsoError> {
        let node = self.regular_file(target, "hard link target")?;
        let (parent, name, clean) = self.parent_of(path)?;
        if self.child(parent, &name).is_some() {
            return Err(IsoError::Exists(clean));
        }
        self.link(parent, name, node);
        self.nodes[node].links += 1;
        Ok(())
    }

    /// Makes the image bootable with these El Torito entries (replacing earlier ones); the boot
    /// catalog's path, if given, must be free.
    pub fn set_el_torito(&mut self, el_torito: ElTorito<'a>) -> Result<(), IsoError> {
        if let Some(old) = self.el_torito.take().and_then(|old| old.catalog) {
            if let Some(dir) = self.lookup(&old, true) {
                if let (Kind::Dir { children }, Some(name)) = (&mut self.nodes[dir].kind, old.rsplit('/').next()) {
                    children.remove(name);
                }
            }
        }
        if let Some(catalog) = &el_torito.catalog {
            self.add(catalog, Kind::Catalog, Metadata::new(0o444, self.time))?;
        }
        self.el_torito = Some(el_torito);
        Ok(())
    }

    /// Writes an isohybrid MBR into the system area.
    pub fn set_hybrid_mbr(&mut self, mbr: HybridMbr<'a>) {
        self.hybrid = Some(mbr);
    }

    /// Lays the image out and writes it into `image` (truncated first), returning where files went.
    pub fn write(&self, image: &File) -> Result<Layout, IsoError> {
        layout::write(self, image)
    }

    fn add(&mut self, path: &str, kind: Kind<'a>, meta: Metadata) -> Result<(), IsoError> {
        let (parent, name, clean) = self.parent_of(path)?;
        if self.child(parent, &name).is_some() {
            return Err(IsoError::Exists(clean));
        }
        self.insert(parent, name, clean, kind, meta);
        Ok(())
    }

    fn insert(&mut self, parent: usize, name: String, path: String, kind: Kind<'a>, meta: Metadata) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            kind,
            meta,
            links: 1,
            path,
        });
        self.link(parent, name, id);
        id
    }

    fn link(&mut self, parent: usize, name: String, node: usize) {
        if let Kind::Dir { children, .. } = &mut self.nodes[parent].kind {
            children.insert(name, node);
        }
    }

    fn child(&self, dir: usize, name: &str) -> Option<usize> {
        match &self.nodes[dir].kind {
            Kind::Dir { children, .. } => children.get(name).copied(),
            _ => None,
        }
    }

    /// The directory that `path` goes into (created with its ancestors as needed), the last
    /// component, and the cleaned path.
    fn parent_of(&mut self, path: &str) -> Result<(usize, String, String), IsoError> {
        let components = components(path)?;
        let Some((last, ancestors)) = components.split_last() else {
            return Err(IsoError::BadPath {
                path: path.to_string(),
                reason: "it names the root directory",
            });
        };
        let mut dir = 0;
        for (depth, name) in ancestors.iter().enumerate() {
            let so_far = ancestors[..=depth].join("/");
            dir = match self.child(dir, name) {
                Some(next) if matches!(self.nodes[next].kind, Kind::Dir { .. }) => next,
                Some(_) => {
                    return Err(IsoError::NotADirectory {
                        path: components.join("/"),
                        parent: so_far,
                    })
                }
                None => {
                    let kind = Kind::Dir {
                        children: BTreeMap::new(),
                    };
                    let meta = Metadata::new(IMPLICIT_DIR_MODE, self.time);
                    self.insert(dir, name.to_string(), so_far, kind, meta)
                }
            };
        }
        Ok((dir, last.to_string(), components.join("/")))
    }

    /// The node at `path` (or at its parent directory).
    fn lookup(&self, path: &str, parent: bool) -> Option<usize> {
        let components = components(path).ok()?;
        let components = if parent {
            components.split_last()?.1
        } else {
            &components[..]
        };
        components.iter().try_fold(0, |node, name| self.child(node, name))
    }

    /// The node of the regular file at `path`.
    pub(crate) fn regular_file(&self, path: &str, role: &'static str) -> Result<usize, IsoError> {
        let not_a_file = || IsoError::NotAFile {
            role,
            path: path.to_string(),
        };
        let node = self.lookup(path, false).ok_or_else(not_a_file)?;
        match self.nodes[node].kind {
            Kind::File(_) => Ok(node),
            _ => Err(not_a_file()),
        }
    }
}

/// The components of a relative path (a leading `/` or `./` is allowed and dropped).
fn components(path: &str) -> Result<Vec<&str>, IsoError> {
    let bad = |reason| IsoError::BadPath {
        path: path.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => continue,
            ".." => return Err(bad("\"..\" is not allowed")),
            _ if name.len() > 255 => return Err(bad("a name has more than 255 bytes")),
            _ if name.contains('\0') => return Err(bad("a name contains NUL")),
            _ => out.push(name),
        }
    }
    Ok(out)
}
