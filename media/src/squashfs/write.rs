//! Lays out and writes a [`Tree`]: data and fragment blocks first, streamed from the
//! contents, then the inode, directory, fragment and id tables, built in memory, then the
//! superblock.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::data::{self, Compressor};
use super::{Layout, SquashfsError, BLOCK_SIZE};
use crate::tree::{DeviceKind, Kind, Tree};

/// `hsqs`.
const MAGIC: u32 = 0x7371_7368;
/// log2 of [`BLOCK_SIZE`].
const BLOCK_LOG: u16 = 17;
const SUPERBLOCK_LEN: u64 = 96;
/// Uncompressed bytes in a metadata block.
const METADATA_SIZE: usize = 8192;
/// The superblock's compression id for zlib.
const GZIP: u16 = 1;
/// Superblock flag: no extended attributes are stored.
const NO_XATTRS: u16 = 0x0200;
/// A metadata block's header: the block is stored uncompressed.
const UNCOMPRESSED_METADATA: u16 = 0x8000;
/// An inode without extended attributes.
const NO_XATTR: u32 = 0xffff_ffff;
/// A table that is not there.
const NO_TABLE: u64 = u64::MAX;
/// The image is padded to a multiple of this (mksquashfs's default).
const PAD: u64 = 4096;
/// Entries in one directory header at most.
const DIR_HEADER_ENTRIES: u32 = 256;

/// Inode types (the extended ones carry link counts, 64-bit sizes and directory indexes).
const DIR: u16 = 1;
const FILE: u16 = 2;
const SYMLINK: u16 = 3;
const BLOCK_DEV: u16 = 4;
const CHAR_DEV: u16 = 5;
const FIFO: u16 = 6;
const EXT_DIR: u16 = 8;
const EXT_FILE: u16 = 9;

pub(super) fn write(tree: &Tree<'_>, image: &File, threads: usize) -> Result<Layout, SquashfsError> {
    let nodes = tree.nodes();
    for node in nodes {
        if let Kind::Device { major, minor, .. } = node.kind {
            if major > 0xfff || minor > 0xf_ffff {
                return Err(SquashfsError::BadDevice {
                    path: node.path.clone(),
                    major,
                    minor,
                });
            }
        }
    }
    image.set_len(0).map_err(io_error("truncating the squashfs image"))?;
    let order = post_order(tree);
    let inodes = u32::try_from(order.len())
        .ok()
        .filter(|n| *n < u32::MAX)
        .ok_or_else(|| SquashfsError::Limit(format!("{} inodes (at most 2^32 - 2)", order.len())))?;
    let mut number = vec![0u32; nodes.len()];
    for (i, &node) in order.iter().enumerate() {
        number[node] = i as u32 + 1;
    }
    let ids: Vec<u32> = order
        .iter()
        .flat_map(|&node| [nodes[node].meta.uid, nodes[node].meta.gid])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let id_count = u16::try_from(ids.len())
        .map_err(|_| SquashfsError::Limit(format!("{} distinct uids and gids (at most 65535)", ids.len())))?;
    let id_index = |id: u32| ids.binary_search(&id).unwrap_or(0) as u16;

    let mut data = data::write(tree, &order, image, SUPERBLOCK_LEN, threads)?;
    let mut comp = Compressor::new();
    let mut inode_table = MetaWriter::default();
    let mut dir_table = MetaWriter::default();
    let mut refs = vec![0u64; nodes.len()];
    let mut inode = Vec::new();
    for &id in &order {
        let node = &nodes[id];
        let header = |inode: &mut Vec<u8>, kind: u16| {
            inode.clear();
            put16(inode, kind);
            put16(inode, (node.meta.mode & 0o7777) as u16);
            put16(inode, id_index(node.meta.uid));
            put16(inode, id_index(node.meta.gid));
            put32(inode, node.meta.mtime.clamp(0, i64::from(u32::MAX)) as u32);
            put32(inode, number[id]);
        };
        match &node.kind {
            Kind::File(content) => {
                let placed = data.files[id]
                    .take()
                    .ok_or_else(|| SquashfsError::Limit(format!("/{}: its data was not written", node.path)))?;
                let size = content.len();
                let basic = node.links == 1
                    && size <= u64::from(u32::MAX)
                    && placed.start <= u64::from(u32::MAX)
                    && placed.sparse == 0;
                if basic {
                    header(&mut inode, FILE);
                    put32(&mut inode, placed.start as u32);
                    put32(&mut inode, placed.fragment);
                    put32(&mut inode, placed.offset);
                    put32(&mut inode, size as u32);
                } else {
                    header(&mut inode, EXT_FILE);
                    put64(&mut inode, placed.start);
                    put64(&mut inode, size);
                    put64(&mut inode, placed.sparse);
                    put32(&mut inode, node.links);
                    put32(&mut inode, placed.fragment);
                    put32(&mut inode, placed.offset);
                    put32(&mut inode, NO_XATTR);
                }
                for word in &placed.blocks {
                    put32(&mut inode, *word);
                }
            }
            Kind::Dir { children, parent } => {
                let listing = listing(tree, children, &refs, &number);
                let (start_block, start_offset) = dir_table.position("the directory table")?;
                let mut index = Vec::with_capacity(listing.index.len());
                let mut written = 0;
                for &(at, name) in &listing.index {
                    dir_table.write(&listing.bytes[written..at], &mut comp);
                    written = at;
                    index.push((at as u32, dir_table.position("the directory table")?.0, name));
                }
                dir_table.write(&listing.bytes[written..], &mut comp);
                let subdirs = children
                    .values()
                    .filter(|&&child| matches!(nodes[child].kind, Kind::Dir { .. }))
                    .count() as u32;
                let nlink = 2 + subdirs;
                let parent = if id == 0 { inodes + 1 } else { number[*parent] };
                let file_size = u32::try_from(listing.bytes.len() + 3)
                    .map_err(|_| SquashfsError::Limit(format!("directory {:?} has a listing over 4 GiB", node.path)))?;
                if index.is_empty() && file_size <= 0xffff {
                    header(&mut inode, DIR);
                    put32(&mut inode, start_block);
                    put32(&mut inode, nlink);
                    put16(&mut inode, file_size as u16);
                    put16(&mut inode, start_offset);
                    put32(&mut inode, parent);
                } else {
                    let count = u16::try_from(index.len()).map_err(|_| {
                        SquashfsError::Limit(format!("directory {:?} needs over 65535 index entries", node.path))
                    })?;
                    header(&mut inode, EXT_DIR);
                    put32(&mut inode, nlink);
                    put32(&mut inode, file_size);
                    put32(&mut inode, start_block);
                    put32(&mut inode, parent);
                    put16(&mut inode, count);
                    put16(&mut inode, start_offset);
                    put32(&mut inode, NO_XATTR);
                    for (at, block, name) in index {
                        put32(&mut inode, at);
                        put32(&mut inode, block);
                        put32(&mut inode, name.len() as u32 - 1);
                        inode.extend_from_slice(name.as_bytes());
                    }
                }
            }
            Kind::Symlink(target) => {
                header(&mut inode, SYMLINK);
                put32(&mut inode, node.links);
                put32(&mut inode, target.len() as u32);
                inode.extend_from_slice(target.as_bytes());
            }
            Kind::Device { kind, major, minor } => {
                header(
                    &mut inode,
                    match kind {
                        DeviceKind::Block => BLOCK_DEV,
                        DeviceKind::Char => CHAR_DEV,
                    },
                );
                put32(&mut inode, node.links);
                // Linux's new_encode_dev, which the kernel's squashfs decodes.
                put32(&mut inode, (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12));
            }
            Kind::Fifo => {
                header(&mut inode, FIFO);
                put32(&mut inode, node.links);
            }
        }
        let (block, offset) = inode_table.position("the inode table")?;
        refs[id] = (u64::from(block) << 16) | u64::from(offset);
        inode_table.write(&inode, &mut comp);
    }
    let fragments = data.fragments;
    let mut out = Out { image, pos: data.end };

    let inode_table_start = out.pos;
    let (bytes, _) = inode_table.finish(&mut comp);
    out.write(&bytes)?;
    let dir_table_start = out.pos;
    let (bytes, _) = dir_table.finish(&mut comp);
    out.write(&bytes)?;

    let fragment_count = fragments.len() as u32;
    let mut entries = Vec::with_capacity(fragments.len() * 16);
    for (start, size) in fragments {
        put64(&mut entries, start);
        put32(&mut entries, size);
        put32(&mut entries, 0);
    }
    let fragment_table_start = out.lookup_table(&entries, &mut comp)?;
    let mut id_entries = Vec::with_capacity(ids.len() * 4);
    for id in &ids {
        put32(&mut id_entries, *id);
    }
    let id_table_start = out.lookup_table(&id_entries, &mut comp)?;
    let bytes_used = out.pos;
    let image_len = bytes_used.div_ceil(PAD) * PAD;
    image
        .set_len(image_len)
        .map_err(io_error("padding the squashfs image"))?;

    let mut superblock = Vec::with_capacity(SUPERBLOCK_LEN as usize);
    put32(&mut superblock, MAGIC);
    put32(&mut superblock, inodes);
    put32(&mut superblock, tree.time().clamp(0, i64::from(u32::MAX)) as u32);
    put32(&mut superblock, BLOCK_SIZE);
    put32(&mut superblock, fragment_count);
    put16(&mut superblock, GZIP);
    put16(&mut superblock, BLOCK_LOG);
    put16(&mut superblock, NO_XATTRS);
    put16(&mut superblock, id_count);
    put16(&mut superblock, 4);
    put16(&mut superblock, 0);
    put64(&mut superblock, refs[0]);
    put64(&mut superblock, bytes_used);
    put64(&mut superblock, id_table_start);
    put64(&mut superblock, NO_TABLE);
    put64(&mut superblock, inode_table_start);
    put64(&mut superblock, dir_table_start);
    put64(&mut superblock, fragment_table_start);
    put64(&mut superblock, NO_TABLE);
    image
        .write_all_at(&superblock, 0)
        .map_err(io_error("writing the squashfs superblock"))?;
    Ok(Layout {
        bytes_used,
        image_len,
        inodes,
        fragments: fragment_count,
        ids: id_count,
    })
}

/// The nodes in the order their inodes are written: a depth-first walk in name order, each
/// directory after its entries (its listing points at theirs), each inode once (hard links).
fn post_order(tree: &Tree<'_>) -> Vec<usize> {
    let children = |dir: usize| -> Vec<usize> {
        tree.children(dir)
            .map_or_else(Vec::new, |children| children.values().copied().collect())
    };
    let nodes = tree.nodes();
    let mut order = Vec::with_capacity(nodes.len());
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![(0, children(0), 0)];
    while let Some((dir, entries, next)) = stack.last_mut() {
        let Some(&child) = entries.get(*next) else {
            order.push(*dir);
            stack.pop();
            continue;
        };
        *next += 1;
        if std::mem::replace(&mut seen[child], true) {
            continue;
        }
        if matches!(nodes[child].kind, Kind::Dir { .. }) {
            stack.push((child, children(child), 0));
        } else {
            order.push(child);
        }
    }
    order
}

/// A directory's entries as the directory table holds them, and where its index points.
struct Listing<'t> {
    bytes: Vec<u8>,
    /// Offsets of directory headers in `bytes` that the index lists, with their first names.
    index: Vec<(usize, &'t str)>,
}

/// Groups a directory's entries under headers (each covers at most 256 entries whose inodes are
/// in one metadata block, with inode numbers within ±32767 of its own), starting a header and an
/// index entry whenever the listing since the last index entry would pass 8 KiB, as mksquashfs
/// does.
fn listing<'t>(
    tree: &Tree<'_>,
    children: &'t std::collections::BTreeMap<String, usize>,
    refs: &[u64],
    number: &[u32],
) -> Listing<'t> {
    struct Header {
        at: usize,
        count: u32,
        block: u32,
        base: u32,
    }
    let mut bytes = Vec::new();
    let mut index = Vec::new();
    let mut header: Option<Header> = None;
    let mut indexed_at = 0;
    for (name, &child) in children {
        let block = (refs[child] >> 16) as u32;
        let offset = refs[child] as u16;
        let num = number[child];
        let past_index = bytes.len() + 8 + name.len() - indexed_at > METADATA_SIZE;
        let delta = |base: u32| i64::from(num) - i64::from(base);
        let fits = header.as_ref().is_some_and(|h| {
            h.count < DIR_HEADER_ENTRIES && h.block == block && i16::try_from(delta(h.base)).is_ok() && !past_index
        });
        if !fits {
            if let Some(h) = header.take() {
                bytes[h.at..h.at + 4].copy_from_slice(&(h.count - 1).to_le_bytes());
                if past_index {
                    index.push((bytes.len(), name.as_str()));
                    indexed_at = bytes.len();
                }
            }
            header = Some(Header {
                at: bytes.len(),
                count: 0,
                block,
                base: num,
            });
            put32(&mut bytes, 0);
            put32(&mut bytes, block);
            put32(&mut bytes, num);
        }
        let Some(h) = header.as_mut() else {
            continue;
        };
        h.count += 1;
        put16(&mut bytes, offset);
        put16(&mut bytes, delta(h.base) as i16 as u16);
        put16(&mut bytes, basic_type(&tree.nodes()[child].kind));
        put16(&mut bytes, name.len() as u16 - 1);
        bytes.extend_from_slice(name.as_bytes());
    }
    if let Some(h) = header {
        bytes[h.at..h.at + 4].copy_from_slice(&(h.count - 1).to_le_bytes());
    }
    Listing { bytes, index }
}

/// The type a directory entry gives for a node (always the basic one).
fn basic_type(kind: &Kind<'_>) -> u16 {
    match kind {
        Kind::Dir { .. } => DIR,
        Kind::File(_) => FILE,
        Kind::Symlink(_) => SYMLINK,
        Kind::Device {
            kind: DeviceKind::Block,
            ..
        } => BLOCK_DEV,
        Kind::Device {
            kind: DeviceKind::Char, ..
        } => CHAR_DEV,
        Kind::Fifo => FIFO,
    }
}

/// Sequential positioned writes into the image.
struct Out<'f> {
    image: &'f File,
    pos: u64,
}

impl Out<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SquashfsError> {
        self.image
            .write_all_at(bytes, self.pos)
            .map_err(io_error("writing the squashfs image"))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes a table of fixed-size entries (fragments, ids) as metadata blocks followed by the
    /// positions of those blocks; returns where the positions start (what the superblock points at).
    fn lookup_table(&mut self, entries: &[u8], comp: &mut Compressor) -> Result<u64, SquashfsError> {
        let start = self.pos;
        let mut table = MetaWriter::default();
        table.write(entries, comp);
        let (bytes, blocks) = table.finish(comp);
        self.write(&bytes)?;
        let mut index = Vec::with_capacity(blocks.len() * 8);
        for block in blocks {
            put64(&mut index, start + block);
        }
        let index_start = self.pos;
        self.write(&index)?;
        Ok(index_start)
    }
}

/// A metadata table (inodes, directories, lookup tables) as 8 KiB blocks, each compressed if
/// that makes it smaller and preceded by its 16-bit header.
#[derive(Default)]
struct MetaWriter {
    out: Vec<u8>,
    pending: Vec<u8>,
    /// Where each block starts in `out`.
    blocks: Vec<u64>,
}

impl MetaWriter {
    /// Where the next byte goes: its block's position in the table and the offset in that block.
    fn position(&self, table: &str) -> Result<(u32, u16), SquashfsError> {
        let block =
            u32::try_from(self.out.len()).map_err(|_| SquashfsError::Limit(format!("{table} would pass 4 GiB")))?;
        Ok((block, self.pending.len() as u16))
    }

    fn write(&mut self, bytes: &[u8], comp: &mut Compressor) {
        self.pending.extend_from_slice(bytes);
        let mut done = 0;
        while self.pending.len() - done >= METADATA_SIZE {
            self.emit(done, METADATA_SIZE, comp);
            done += METADATA_SIZE;
        }
        self.pending.drain(..done);
    }

    fn emit(&mut self, from: usize, len: usize, comp: &mut Compressor) {
        self.blocks.push(self.out.len() as u64);
        let raw = &self.pending[from..from + len];
        if comp.compress(raw) {
            put16(&mut self.out, comp.out.len() as u16);
            self.out.extend_from_slice(&comp.out);
        } else {
            put16(&mut self.out, len as u16 | UNCOMPRESSED_METADATA);
            self.out.extend_from_slice(raw);
        }
    }

    /// The table's bytes and where its blocks start.
    fn finish(mut self, comp: &mut Compressor) -> (Vec<u8>, Vec<u64>) {
        if !self.pending.is_empty() {
            self.emit(0, self.pending.len(), comp);
        }
        (self.out, self.blocks)
    }
}

fn io_error(what: &'static str) -> impl Fn(io::Error) -> SquashfsError {
    move |source| SquashfsError::Io {
        what: what.to_string(),
        source,
    }
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}
