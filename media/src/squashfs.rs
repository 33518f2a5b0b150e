//! Squashfs 4.0 images, as Linux mounts them (LinuxKit's `kernel+squashfs` root filesystem).
//!
//! [`write()`] writes a [`Tree`] (directories, regular files, symlinks, device nodes, fifos, hard
//! links) whose file contents are [`Content`](crate::content::Content)s: only the tree and its
//! metadata are held in memory. It writes the image with positioned writes into a file,
//! streaming each file's data block by block (blocks are compressed on one thread per available
//! core, a few blocks in flight per thread, and written in their order, so the bytes do not
//! depend on the number of threads), and returns the [`Layout`]. Device numbers must fit Linux's
//! encoding (majors below 4096, minors below 2^20); hard links may name any non-directory.
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
//!   creation time and directories created implicitly take the time given to [`Tree::new`].
//!   Inode numbers follow the order in which inodes are written (children before their
//!   directory, the root last); uids and gids are stored in ascending order. The same tree and
//!   contents thus give the same bytes.

use std::fs::File;
use std::io;

use crate::tree::Tree;

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
    /// A device number that squashfs cannot store (Linux's encoding: majors below 4096, minors
    /// below 2^20).
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

/// What [`write()`] wrote.
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

/// Writes `tree` as a squashfs image into `image` (truncated first) and says what it wrote.
pub fn write(tree: &Tree<'_>, image: &File) -> Result<Layout, SquashfsError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    write::write(tree, image, threads)
}
