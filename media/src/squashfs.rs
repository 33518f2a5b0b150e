//! Squashfs 4.0 images, as Linux mounts them (LinuxKit's `kernel+squashfs` root filesystem).
//!
//! A [`Squashfs`] is a directory tree (directories, regular files, symlinks, device nodes, fifos,
//! hard links) whose file contents are [`Content`]s: only the tree and its metadata are held in
//! memory. [`Squashfs::write`] writes the image with positioned writes into a file, streaming each
//! file's data block by block (blocks are compressed on one thread per available core, a few
//! blocks in flight per thread, and written in their order, so the bytes do not depend on the
//! number of threads), and returns the [`Layout`].
//!
//! What is written (what LinuxKit's `mksquashfs rootfs rootfs.img` writes with its defaults,
//! except where said):
//! - Blocks of [`BLOCK_SIZE`] (128 KiB), each compressed with zlib (the format's `gzip`) at level
//!   [`COMPRESSION_LEVEL`] (mksquashfs's default, so no compressor options are stored), or stored
//!   as is when compression does not make it smaller. Metadata blocks (8 KiB) likewise.
//! - Files smaller than a block are packed into shared fragment blocks, in the order of the data;
//!   larger files end in a short block (mksquashfs without `-always-use-fragments`).
//! - Blocks of zeros are not stored (sparse blocks, size 0), as mksquashfs does.
//! - Hard links share one inode with its link count; directories count `2 + subdirectories`.
//! - Directories in strcmp order, with directory headers and a directory index (one entry per
//!   8 KiB of listing, as mksquashfs makes them) so that the kernel's lookup can skip ahead in
//!   large directories.
//! - Not written: an NFS export table (mksquashfs writes one by default; only `exportfs` needs
//!   it), extended attributes, duplicate file detection (identical files are stored twice).
//! - Layout: superblock, data and fragment blocks in the order of the files (a depth-first walk
//!   of the tree in name order), inode table, directory table, fragment table, id table; the
//!   image is padded with zeros to a multiple of 4 KiB (mksquashfs's default).
//! - Times are the entries' mtimes, clamped to squashfs's unsigned 32 bits; the superblock's
//!   creation time and directories created implicitly take the time given to [`Squashfs::new`].
//!   Inode numbers follow the order in which inodes are written (children before their
//!   directory, the root last); uids and gids are stored in ascending order. The same tree and
//!   contents thus give the same bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;

use crate::content::Content;
pub use crate::iso::{DeviceKind, Metadata};

mod data;
#[cfg(test)]
mod tests;
mod write;

/// Bytes in a data block (mksquashfs's default, `-b 128K`).
pub const BLOCK_SIZE: u32 = 128 * 1024;

/// zlib compression level of data and metadata blocks (mksquashfs's default for gzip).
pub const COMPRESSION_LEVEL: u32 = 9;

/// Why a squashfs image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    /// A path given for the tree is not a plain relative path.
    #[error("bad path {path:?} for the squashfs image: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries were given the same path.
    #[error("{0:?} is already in the squashfs image: each path can be added once")]
    Exists(String),
    /// A path goes through something that is not a directory.
    #[error("{path:?} cannot be added to the squashfs image: {parent:?} is not a directory")]
    NotADirectory {
        /// The path being added.
        path: String,
        /// Its ancestor that is a file, symlink or device.
        parent: String,
    },
    /// A hard link's target is missing or a directory.
    #[error("hard link {path:?}: its target {target:?} {reason}; add the target before its links")]
    BadLinkTarget {
        /// The link being added.
        path: String,
        /// The target as given.
        target: String,
        /// What is wrong with the target.
        reason: &'static str,
    },
    /// A device number that squashfs cannot store.
    #[error("device {path:?} has number {major}:{minor}: squashfs stores majors up to 4095 and minors up to 1048575")]
    BadDevice {
        /// The device node.
        path: String,
        /// Its major number.
        major: u32,
        /// Its minor number.
        minor: u32,
    },
    /// The image would exceed squashfs's limits.
    #[error("the squashfs image is too large: {0}")]
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

/// What [`Squashfs::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the filesystem (the superblock's `bytes_used`).
    pub bytes_used: u64,
    /// Length of the image file: `bytes_used` padded to a multiple of 4 KiB.
    pub image_len: u64,
    /// Inodes (hard links count once).
    pub inodes: u32,
    /// Fragment blocks.
    pub fragments: u32,
    /// Distinct uids and gids.
    pub ids: u16,
}

/// What a node of the tree is.
#[derive(Debug)]
enum Kind<'a> {
    /// A directory: its entries by name (byte order, which is the kernel's strcmp order).
    Dir {
        children: BTreeMap<String, usize>,
        parent: usize,
    },
    /// A regular file.
    File(Content<'a>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A device node.
    Device { kind: DeviceKind, major: u32, minor: u32 },
    /// A named pipe.
    Fifo,
}

/// A node of the tree (an inode: hard links share one).
#[derive(Debug)]
struct Node<'a> {
    kind: Kind<'a>,
    meta: Metadata,
    /// Directory entries that point at this node (for directories: not used, computed).
    links: u32,
    /// The first path it was added under (for messages).
    path: String,
}

/// A squashfs image being described; [`Squashfs::write`] writes it.
#[derive(Debug)]
pub struct Squashfs<'a> {
    time: i64,
    /// Node 0 is the root directory.
    nodes: Vec<Node<'a>>,
}

/// Mode of directories that are created because a path needs them.
const IMPLICIT_DIR_MODE: u32 = 0o755;

impl<'a> Squashfs<'a> {
    /// An empty tree; `time` (seconds since the epoch) is the image's creation time and the time
    /// of the root and of directories created implicitly.
    pub fn new(time: i64) -> Squashfs<'a> {
        Squashfs {
            time,
            nodes: vec![Node {
                kind: Kind::Dir {
                    children: BTreeMap::new(),
                    parent: 0,
                },
                meta: Metadata::new(IMPLICIT_DIR_MODE, time),
                links: 1,
                path: String::new(),
            }],
        }
    }

    /// Sets the root directory's mode, owner and time.
    pub fn set_root(&mut self, meta: Metadata) {
        self.nodes[0].meta = meta;
    }

    /// Adds a directory (or sets the metadata of one that a longer path created already).
    pub fn dir(&mut self, path: &str, meta: Metadata) -> Result<(), SquashfsError> {
        let (parent, name, clean) = self.parent_of(path)?;
        if let Some(existing) = self.child(parent, &name) {
            if matches!(self.nodes[existing].kind, Kind::Dir { .. }) {
                self.nodes[existing].meta = meta;
                return Ok(());
            }
            return Err(SquashfsError::Exists(clean));
        }
        let kind = Kind::Dir {
            children: BTreeMap::new(),
            parent,
        };
        self.insert(parent, name, clean, kind, meta);
        Ok(())
    }

    /// Adds a regular file whose bytes are `content` (read when the image is written).
    pub fn file(&mut self, path: &str, content: Content<'a>, meta: Metadata) -> Result<(), SquashfsError> {
        self.add(path, Kind::File(content), meta)
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str, meta: Metadata) -> Result<(), SquashfsError> {
        if target.is_empty() || target.len() > 4095 || target.contains('\0') {
            return Err(SquashfsError::BadPath {
                path: path.to_string(),
                reason: "a symlink target must have 1 to 4095 bytes and no NUL",
            });
        }
        self.add(path, Kind::Symlink(target.to_string()), meta)
    }

    /// Adds a device node (Linux's encoding: majors below 4096, minors below 2^20).
    pub fn device(
        &mut self,
        path: &str,
        kind: DeviceKind,
        major: u32,
        minor: u32,
        meta: Metadata,
    ) -> Result<(), SquashfsError> {
        if major > 0xfff || minor > 0xf_ffff {
            return Err(SquashfsError::BadDevice {
                path: path.to_string(),
                major,
                minor,
            });
        }
        self.add(path, Kind::Device { kind, major, minor }, meta)
    }

    /// Adds a named pipe.
    pub fn fifo(&mut self, path: &str, meta: Metadata) -> Result<(), SquashfsError> {
        self.add(path, Kind::Fifo, meta)
    }

    /// Adds `path` as another name of the entry already at `target`, which may be anything but a
    /// directory (a hard link: one inode, its link count counts every name).
    pub fn hard_link(&mut self, path: &str, target: &str) -> Result<(), SquashfsError> {
        let bad = |reason| SquashfsError::BadLinkTarget {
            path: path.to_string(),
            target: target.to_string(),
            reason,
        };
        let node = self.lookup(target).ok_or_else(|| bad("is not in the image"))?;
        if matches!(self.nodes[node].kind, Kind::Dir { .. }) {
            return Err(bad("is a directory"));
        }
        let (parent, name, clean) = self.parent_of(path)?;
        if self.child(parent, &name).is_some() {
            return Err(SquashfsError::Exists(clean));
        }
        self.link(parent, name, node);
        self.nodes[node].links += 1;
        Ok(())
    }

    /// Writes the image into `image` (truncated first) and says what it wrote.
    pub fn write(&self, image: &File) -> Result<Layout, SquashfsError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        write::write(self, image, threads)
    }

    fn add(&mut self, path: &str, kind: Kind<'a>, meta: Metadata) -> Result<(), SquashfsError> {
        let (parent, name, clean) = self.parent_of(path)?;
        if self.child(parent, &name).is_some() {
            return Err(SquashfsError::Exists(clean));
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
    fn parent_of(&mut self, path: &str) -> Result<(usize, String, String), SquashfsError> {
        let components = components(path)?;
        let Some((last, ancestors)) = components.split_last() else {
            return Err(SquashfsError::BadPath {
                path: path.to_string(),
                reason: "it names the root directory (use set_root for its metadata)",
            });
        };
        let mut dir = 0;
        for (depth, name) in ancestors.iter().enumerate() {
            let so_far = ancestors[..=depth].join("/");
            dir = match self.child(dir, name) {
                Some(next) if matches!(self.nodes[next].kind, Kind::Dir { .. }) => next,
                Some(_) => {
                    return Err(SquashfsError::NotADirectory {
                        path: components.join("/"),
                        parent: so_far,
                    })
                }
                None => {
                    let kind = Kind::Dir {
                        children: BTreeMap::new(),
                        parent: dir,
                    };
                    let meta = Metadata::new(IMPLICIT_DIR_MODE, self.time);
                    self.insert(dir, name.to_string(), so_far, kind, meta)
                }
            };
        }
        Ok((dir, last.to_string(), components.join("/")))
    }

    /// The node at `path`.
    fn lookup(&self, path: &str) -> Option<usize> {
        components(path)
            .ok()?
            .iter()
            .try_fold(0, |node, name| self.child(node, name))
    }
}

/// The components of a relative path (a leading `/` or `./` is allowed and dropped).
fn components(path: &str) -> Result<Vec<&str>, SquashfsError> {
    let bad = |reason| SquashfsError::BadPath {
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
