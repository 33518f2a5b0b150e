//! Laying the tree out (ISO 9660 names, sectors) and writing it.
//!
//! Sectors, in this order: 16 system area (the hybrid MBR, or a hole), the primary volume
//! descriptor, the El Torito boot record, the terminator, the little- and big-endian path tables,
//! the boot catalog, the directories (in path table order: by depth, then parent, then name), the
//! Rock Ridge continuation areas, the file data (BIOS boot file, EFI image, then every other file
//! in path order), the padding.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::eltorito::{self, Entry};
use super::rrip::{self, both16, both32, Continuations};
use super::{BootImage, Iso, IsoError, Layout, PlacedFile, SECTOR};
use crate::content::Content;
use crate::tree::{DeviceKind, Kind, Metadata};

/// Sector of the primary volume descriptor.
const PVD_LBA: u32 = 16;
/// Longest ISO 9660 identifier written (genisoimage `-l`), version suffix not counted for files.
const MAX_IDENTIFIER: usize = 31;
/// Largest directory record.
const MAX_RECORD: usize = 255;

/// A directory entry as laid out.
struct Child {
    /// The Rock Ridge name.
    name: String,
    /// ISO 9660 name without the `;1` version: (base, extension); directories have no extension.
    iso: (String, Option<String>),
    /// The node, or the number of nodes for the boot catalog.
    node: usize,
}

impl Child {
    fn identifier(&self) -> Vec<u8> {
        match &self.iso {
            (base, None) => base.as_bytes().to_vec(),
            (base, Some(ext)) => format!("{base}.{ext};1").into_bytes(),
        }
    }
}

/// A directory as laid out.
struct Dir {
    node: usize,
    /// Index of the parent in the directory list (the root is its own parent).
    parent: usize,
    /// Identifier in the path table (the root's is a zero byte).
    identifier: Vec<u8>,
    /// Entries sorted by ISO 9660 identifier.
    children: Vec<Child>,
    /// Subdirectories among the children.
    subdirs: u32,
}

/// Where a boot image's bytes are.
#[derive(Clone, Copy)]
enum Source {
    Node(usize),
    Hidden,
}

/// A boot image: where it comes from, its bytes, and what to call it in messages.
struct Boot<'c> {
    source: Source,
    content: Content<'c>,
    name: String,
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> IsoError {
    let what = what.into();
    move |source| IsoError::Io { what, source }
}

/// Upper-cased `[A-Z0-9_]`, at most `max` characters.
fn d_characters(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(max)
        .collect()
}

/// The ISO 9660 name of `name`: directories `BASE`, files `BASE.EXT` (before `;1`), at most 31 and
/// 30 characters, `taken` not reused (a clash gets a numeric suffix on its base).
fn iso_name(name: &str, directory: bool, taken: &BTreeSet<Vec<u8>>) -> (String, Option<String>) {
    let (base, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && !directory => (&name[..dot], Some(&name[dot + 1..])),
        _ => (name, None),
    };
    let ext = ext
        .map(|ext| d_characters(ext, 8))
        .or(if directory { None } else { Some(String::new()) });
    let room = match &ext {
        None => MAX_IDENTIFIER,
        Some(ext) => MAX_IDENTIFIER - 1 - ext.len(),
    };
    let base = d_characters(base, room);
    let identifier = |base: &str| match &ext {
        None => base.as_bytes().to_vec(),
        Some(ext) => format!("{base}.{ext};1").into_bytes(),
    };
    if !taken.contains(&identifier(&base)) {
        return (base, ext);
    }
    for number in 0u64.. {
        let suffix = format!("{number:03}");
        let keep = room.saturating_sub(suffix.len()).min(base.len());
        let candidate = format!("{}{suffix}", &base[..keep]);
        if !taken.contains(&identifier(&candidate)) {
            return (candidate, ext);
        }
    }
    (base, ext)
}

/// The directories in path table order, with ISO 9660 names; `catalog` (its directory and
/// name) is listed as a file, node number `nodes.len()`.
fn plan_dirs(iso: &Iso<'_, '_>, catalog: Option<&(usize, String)>) -> Result<Vec<Dir>, IsoError> {
    let nodes = iso.tree.nodes();
    let mut dirs: Vec<Dir> = Vec::new();
    let mut queue = VecDeque::from([(0usize, 0usize, vec![0u8])]);
    while let Some((node, parent, identifier)) = queue.pop_front() {
        let Some(names) = iso.tree.children(node) else {
            continue;
        };
        let mut names: Vec<(&str, usize)> = names.iter().map(|(name, &child)| (name.as_str(), child)).collect();
        if let Some((_, name)) = catalog.filter(|(dir, _)| *dir == node) {
            let at = names.partition_point(|(other, _)| *other < name.as_str());
            names.insert(at, (name, nodes.len()));
        }
        let mut taken = BTreeSet::new();
        let mut children: Vec<Child> = names
            .into_iter()
            .map(|(name, child)| {
                let directory = nodes.get(child).is_some_and(|n| matches!(n.kind, Kind::Dir { .. }));
                let iso_name = iso_name(name, directory, &taken);
                let child = Child {
                    name: name.to_string(),
                    iso: iso_name,
                    node: child,
                };
                taken.insert(child.identifier());
                child
            })
            .collect();
        children.sort_by(|a, b| (&a.iso.0, &a.iso.1).cmp(&(&b.iso.0, &b.iso.1)));
        let index = dirs.len();
        if index >= usize::from(u16::MAX) {
            return Err(IsoError::Limit("more than 65535 directories".into()));
        }
        let mut subdirs = 0;
        for child in &children {
            if nodes
                .get(child.node)
                .is_some_and(|n| matches!(n.kind, Kind::Dir { .. }))
            {
                subdirs += 1;
                queue.push_back((child.node, index, child.identifier()));
            }
        }
        dirs.push(Dir {
            node,
            parent,
            identifier,
            children,
            subdirs,
        });
    }
    Ok(dirs)
}

/// Regular file nodes in path order, each once.
fn files_in_path_order(iso: &Iso<'_, '_>) -> Vec<usize> {
    fn walk(iso: &Iso<'_, '_>, node: usize, seen: &mut Vec<bool>, out: &mut Vec<usize>) {
        if let Some(children) = iso.tree.children(node) {
            for &child in children.values() {
                match iso.tree.nodes()[child].kind {
                    Kind::Dir { .. } => walk(iso, child, seen, out),
                    Kind::File(_) if !seen[child] => {
                        seen[child] = true;
                        out.push(child);
                    }
                    _ => {}
                }
            }
        }
    }
    let mut seen = vec![false; iso.tree.nodes().len()];
    let mut out = Vec::new();
    walk(iso, 0, &mut seen, &mut out);
    out
}

/// The file type bits of a node's mode.
fn type_bits(kind: &Kind<'_>) -> u32 {
    match kind {
        Kind::Dir { .. } => 0o040000,
        Kind::File(_) => 0o100000,
        Kind::Symlink(_) => 0o120000,
        Kind::Device {
            kind: DeviceKind::Char, ..
        } => 0o020000,
        Kind::Device {
            kind: DeviceKind::Block,
            ..
        } => 0o060000,
        Kind::Fifo => 0o010000,
    }
}

/// A directory record (ECMA-119 9.1) with its system use bytes.
fn record(identifier: &[u8], lba: u32, len: u32, directory: bool, mtime: i64, system_use: &[u8]) -> Vec<u8> {
    let padding = usize::from(identifier.len().is_multiple_of(2));
    let su_padding = system_use.len() % 2;
    let length = 33 + identifier.len() + padding + system_use.len() + su_padding;
    let mut out = Vec::with_capacity(length);
    out.push(length as u8);
    out.push(0); // extended attribute record length
    out.extend(both32(lba));
    out.extend(both32(len));
    out.extend(rrip::short_date(mtime));
    out.push(if directory { 2 } else { 0 });
    out.extend([0, 0]); // file unit size, interleave gap
    out.extend(both16(1)); // volume sequence number
    out.push(identifier.len() as u8);
    out.extend(identifier);
    out.extend(std::iter::repeat_n(0, padding));
    out.extend(system_use);
    out.extend(std::iter::repeat_n(0, su_padding));
    out
}

/// Bytes a directory record leaves for system use with an identifier of this length (even, so
/// the record stays even).
fn system_use_room(identifier_len: usize) -> usize {
    let fixed = 33 + identifier_len + usize::from(identifier_len.is_multiple_of(2));
    (MAX_RECORD - 1) - fixed
}

/// Everything laid out: sectors of every node, of the tables and areas.
struct Plan<'c> {
    dirs: Vec<Dir>,
    /// Per node: (sector, length in bytes) of its extent.
    extents: Vec<(u32, u64)>,
    /// Sectors of each directory (by directory index).
    dir_sectors: Vec<u32>,
    /// Per node: how many subdirectories it has (0 for all but directories).
    node_subdirs: Vec<u32>,
    l_path_table: u32,
    m_path_table: u32,
    path_table: Vec<u8>,
    boot_record: bool,
    catalog_lba: Option<u32>,
    ce_start: u32,
    bios: Option<(Boot<'c>, u32)>,
    efi: Option<(Boot<'c>, u32)>,
    /// Regular files other than boot images, in data order.
    files: Vec<usize>,
    volume_sectors: u32,
    image_len: u64,
}

/// Records of directory `index` with the extents known so far; continuation areas from `areas`.
fn dir_records(iso: &Iso<'_, '_>, plan: &Plan<'_>, index: usize, areas: &mut Continuations) -> Vec<Vec<u8>> {
    let nodes = iso.tree.nodes();
    let dir = &plan.dirs[index];
    let parent = &plan.dirs[dir.parent];
    let node = &nodes[dir.node];
    let (lba, len) = plan.extents[dir.node];
    let (parent_lba, parent_len) = plan.extents[parent.node];
    let dir_mode = |node: &crate::tree::Node<'_>| 0o040000 | (node.meta.mode & 0o7777);
    let mut records = Vec::with_capacity(dir.children.len() + 2);

    let mut dot = vec![];
    if index == 0 {
        dot.push(rrip::sp());
    }
    dot.push(rrip::px(dir_mode(node), 2 + dir.subdirs, node.meta.uid, node.meta.gid));
    dot.push(rrip::tf(node.meta.mtime));
    if index == 0 {
        dot.push(rrip::er());
    }
    let su = areas.place(dot, system_use_room(1));
    records.push(record(&[0], lba, len as u32, true, node.meta.mtime, &su));

    let parent_node = &nodes[parent.node];
    let dotdot = vec![
        rrip::px(
            dir_mode(parent_node),
            2 + parent.subdirs,
            parent_node.meta.uid,
            parent_node.meta.gid,
        ),
        rrip::tf(parent_node.meta.mtime),
    ];
    let su = areas.place(dotdot, system_use_room(1));
    records.push(record(
        &[1],
        parent_lba,
        parent_len as u32,
        true,
        parent_node.meta.mtime,
        &su,
    ));

    for child in &dir.children {
        // The boot catalog is a read-only regular file of the tree's time.
        let (kind, meta, links) = match nodes.get(child.node) {
            Some(node) => (Some(&node.kind), node.meta, node.links),
            None => (None, Metadata::new(0o444, iso.tree.time()), 1),
        };
        let identifier = child.identifier();
        let (links, directory) = match kind {
            Some(Kind::Dir { .. }) => (2 + plan.node_subdirs[child.node], true),
            _ => (links, false),
        };
        let mode = kind.map_or(0o100000, type_bits) | (meta.mode & 0o7777);
        let mut entries = vec![rrip::px(mode, links, meta.uid, meta.gid), rrip::tf(meta.mtime)];
        match kind {
            Some(Kind::Device { major, minor, .. }) => entries.push(rrip::pn(*major, *minor)),
            Some(Kind::Symlink(target)) => entries.extend(rrip::sl(target)),
            _ => {}
        }
        entries.extend(rrip::nm(child.name.as_bytes()));
        let su = areas.place(entries, system_use_room(identifier.len()));
        let (lba, len) = plan.extents[child.node];
        records.push(record(&identifier, lba, len as u32, directory, meta.mtime, &su));
    }
    records
}

/// Packs records into whole sectors (a record never crosses a sector boundary).
fn pack(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = 0usize;
    for record in records {
        if used + record.len() > SECTOR as usize {
            out.resize(out.len() + SECTOR as usize - used, 0);
            used = 0;
        }
        out.extend(record);
        used += record.len();
    }
    let tail = (SECTOR as usize - used % SECTOR as usize) % SECTOR as usize;
    out.resize(out.len() + tail, 0);
    out
}

/// Path table (ECMA-119 9.4) in one byte order.
fn path_table(dirs: &[Dir], extents: &[(u32, u64)], big_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for dir in dirs {
        out.push(dir.identifier.len() as u8);
        out.push(0);
        let lba = extents[dir.node].0;
        let parent = (dir.parent + 1) as u16;
        if big_endian {
            out.extend(lba.to_be_bytes());
            out.extend(parent.to_be_bytes());
        } else {
            out.extend(lba.to_le_bytes());
            out.extend(parent.to_le_bytes());
        }
        out.extend(&dir.identifier);
        if dir.identifier.len() % 2 == 1 {
            out.push(0);
        }
    }
    out
}

fn sectors_of(len: u64) -> u64 {
    len.div_ceil(SECTOR)
}

/// The first bytes of a content (fewer if it is shorter).
fn head(content: &Content<'_>, len: usize) -> io::Result<Vec<u8>> {
    let len = len.min(usize::try_from(content.len()).unwrap_or(usize::MAX));
    match *content {
        Content::Bytes(bytes) => Ok(bytes[..len].to_vec()),
        Content::File { file, offset, .. } => {
            let mut out = vec![0u8; len];
            file.read_exact_at(&mut out, offset)?;
            Ok(out)
        }
    }
}

fn resolve_boot<'c>(
    iso: &Iso<'_, 'c>,
    image: &BootImage<'c>,
    role: &'static str,
    hidden_name: &str,
) -> Result<Boot<'c>, IsoError> {
    match image {
        BootImage::Path(path) => {
            let nodes = iso.tree.nodes();
            let node = iso.tree.lookup(path);
            let Some((node, Kind::File(content))) = node.map(|node| (node, &nodes[node].kind)) else {
                return Err(IsoError::NotAFile {
                    role,
                    path: path.clone(),
                });
            };
            Ok(Boot {
                source: Source::Node(node),
                content: *content,
                name: nodes[node].path.clone(),
            })
        }
        BootImage::Hidden(content) => Ok(Boot {
            source: Source::Hidden,
            content: *content,
            name: hidden_name.to_string(),
        }),
    }
}

fn plan<'c>(iso: &Iso<'_, 'c>) -> Result<Plan<'c>, IsoError> {
    let nodes = iso.tree.nodes();
    // ISO 9660 hard links share a regular file's data: other kinds of inodes have one name.
    if let Some(node) = nodes
        .iter()
        .find(|node| node.links > 1 && !matches!(node.kind, Kind::File(_) | Kind::Dir { .. }))
    {
        return Err(IsoError::NotAFile {
            role: "hard link target",
            path: node.path.clone(),
        });
    }
    let too_large = |path: &str, size: u64| IsoError::TooLarge {
        path: path.to_string(),
        size,
    };
    let boot_error = |name: &str, reason: String| IsoError::BootImage {
        path: name.to_string(),
        reason,
    };
    let el_torito = iso.el_torito.as_ref();
    let bios = match el_torito.and_then(|e| e.bios.as_ref()) {
        Some(bios) => Some(resolve_boot(iso, &bios.image, "BIOS boot file", "(hidden BIOS image)")?),
        None => None,
    };
    let efi = match el_torito.and_then(|e| e.efi.as_ref()) {
        Some(efi) => Some(resolve_boot(iso, &efi.image, "EFI boot image", "(hidden EFI image)")?),
        None => None,
    };
    if let (Some(boot), Some(config)) = (&bios, el_torito.and_then(|e| e.bios.as_ref())) {
        if config.boot_info_table && boot.content.len() < 64 {
            return Err(boot_error(
                &boot.name,
                format!(
                    "{} bytes is too short for a boot info table (bytes 8..64)",
                    boot.content.len()
                ),
            ));
        }
        if config.load_sectors == 0 {
            return Err(boot_error(
                &boot.name,
                "the BIOS load size must be at least one 512-byte sector".into(),
            ));
        }
    }
    if let Some(boot) = &efi {
        if boot.content.is_empty() {
            return Err(boot_error(&boot.name, "the EFI boot image is empty".into()));
        }
    }
    if let Some(mbr) = &iso.hybrid {
        if let Some(code) = mbr.boot_code {
            if code.len() < eltorito::MBR_CODE_LEN {
                return Err(boot_error(
                    "(isohybrid MBR)",
                    format!(
                        "the MBR boot code has {} bytes, {} are needed (isohdpfx.bin)",
                        code.len(),
                        eltorito::MBR_CODE_LEN
                    ),
                ));
            }
            let Some(boot) = &bios else {
                return Err(boot_error(
                    "(isohybrid MBR)",
                    "MBR boot code needs a BIOS boot file to load: add an El Torito BIOS entry or give no boot code"
                        .into(),
                ));
            };
            let first = head(&boot.content, 68).map_err(io_error(format!("cannot read {}", boot.name)))?;
            if !eltorito::has_hybrid_signature(&first) {
                return Err(boot_error(
                    &boot.name,
                    "it has no isohybrid signature at byte 0x40: the MBR code can only start an isolinux.bin built with isohybrid support".into(),
                ));
            }
        }
    }
    for boot in bios.iter().chain(efi.iter()) {
        if u32::try_from(boot.content.len()).is_err() {
            return Err(too_large(&boot.name, boot.content.len()));
        }
    }

    let catalog = match el_torito.and_then(|e| e.catalog.as_deref()) {
        Some(path) => Some(iso.tree.free_path(path)?),
        None => None,
    };
    let dirs = plan_dirs(iso, catalog.as_ref())?;
    // One more slot: the boot catalog's.
    let mut extents = vec![(0u32, 0u64); nodes.len() + 1];
    let mut plan = Plan {
        dirs,
        extents: Vec::new(),
        dir_sectors: Vec::new(),
        node_subdirs: vec![0; nodes.len()],
        l_path_table: 0,
        m_path_table: 0,
        path_table: Vec::new(),
        boot_record: el_torito.is_some_and(|e| e.bios.is_some() || e.efi.is_some()),
        catalog_lba: None,
        ce_start: 0,
        bios: None,
        efi: None,
        files: Vec::new(),
        volume_sectors: 0,
        image_len: 0,
    };
    for dir in &plan.dirs {
        plan.node_subdirs[dir.node] = dir.subdirs;
    }
    // Directory sizes do not depend on where anything is: size them with zero extents.
    plan.extents = extents.clone();
    let mut sizing = Continuations::new(0);
    plan.dir_sectors = (0..plan.dirs.len())
        .map(|index| (pack(&dir_records(iso, &plan, index, &mut sizing)).len() as u64 / SECTOR) as u32)
        .collect();
    let ce_sectors = sizing.sectors_used(0);

    let mut next: u64 = u64::from(PVD_LBA) + 1;
    if plan.boot_record {
        next += 1;
    }
    next += 1; // terminator
    let path_table_len = path_table(&plan.dirs, &extents, false).len() as u64;
    plan.l_path_table = next as u32;
    next += sectors_of(path_table_len);
    plan.m_path_table = next as u32;
    next += sectors_of(path_table_len);
    if plan.boot_record {
        plan.catalog_lba = Some(next as u32);
        next += 1;
    }
    if let (Some(lba), Some(_)) = (plan.catalog_lba, &catalog) {
        extents[nodes.len()] = (lba, SECTOR);
    }
    for (dir, sectors) in plan.dirs.iter().zip(&plan.dir_sectors) {
        extents[dir.node] = (next as u32, u64::from(*sectors) * SECTOR);
        next += u64::from(*sectors);
    }
    plan.ce_start = next as u32;
    next += u64::from(ce_sectors);

    let place = |len: u64, next: &mut u64| -> u32 {
        if len == 0 {
            return 0;
        }
        let lba = *next as u32;
        *next += sectors_of(len);
        lba
    };
    let mut boot_nodes = Vec::new();
    for (boot, slot) in [(bios, &mut plan.bios), (efi, &mut plan.efi)] {
        let Some(boot) = boot else { continue };
        let lba = match boot.source {
            Source::Node(node) if boot_nodes.contains(&node) => extents[node].0,
            Source::Node(node) => {
                boot_nodes.push(node);
                let lba = place(boot.content.len(), &mut next);
                extents[node] = (lba, boot.content.len());
                lba
            }
            Source::Hidden => place(boot.content.len(), &mut next),
        };
        *slot = Some((boot, lba));
    }
    for node in files_in_path_order(iso) {
        if boot_nodes.contains(&node) {
            continue;
        }
        let Kind::File(content) = &nodes[node].kind else {
            continue;
        };
        let len = content.len();
        if u32::try_from(len).is_err() {
            return Err(too_large(&nodes[node].path, len));
        }
        extents[node] = (place(len, &mut next), len);
        plan.files.push(node);
    }
    let volume = next + u64::from(iso.pad_sectors);
    plan.volume_sectors = u32::try_from(volume)
        .map_err(|_| IsoError::Limit(format!("{volume} sectors of 2048 bytes, ISO 9660 counts up to 2^32")))?;
    plan.image_len = volume * SECTOR;
    if iso.hybrid.is_some() {
        plan.image_len = plan.image_len.div_ceil(eltorito::CYLINDER) * eltorito::CYLINDER;
    }
    plan.path_table = path_table(&plan.dirs, &extents, false);
    plan.extents = extents;
    Ok(plan)
}

/// The primary volume descriptor (ECMA-119 8.4).
fn primary_volume_descriptor(iso: &Iso<'_, '_>, plan: &Plan<'_>) -> Vec<u8> {
    let mut pvd = vec![0u8; SECTOR as usize];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    let padded = |field: &mut [u8], text: &str| {
        field.fill(b' ');
        let len = text.len().min(field.len());
        field[..len].copy_from_slice(&text.as_bytes()[..len]);
    };
    padded(&mut pvd[8..40], "LINUX");
    padded(&mut pvd[40..72], &iso.volume_id);
    pvd[80..88].copy_from_slice(&both32(plan.volume_sectors));
    pvd[120..124].copy_from_slice(&both16(1)); // volume set size
    pvd[124..128].copy_from_slice(&both16(1)); // volume sequence number
    pvd[128..132].copy_from_slice(&both16(SECTOR as u16));
    pvd[132..140].copy_from_slice(&both32(plan.path_table.len() as u32));
    pvd[140..144].copy_from_slice(&plan.l_path_table.to_le_bytes());
    pvd[148..152].copy_from_slice(&plan.m_path_table.to_be_bytes());
    let (root_lba, root_len) = plan.extents[0];
    pvd[156..190].copy_from_slice(&record(
        &[0],
        root_lba,
        root_len as u32,
        true,
        iso.tree.nodes()[0].meta.mtime,
        &[],
    ));
    for field in [190..318, 446..574, 574..702, 702..739, 739..776, 776..813] {
        padded(&mut pvd[field], "");
    }
    padded(&mut pvd[318..446], &iso.publisher);
    let date = rrip::long_date(iso.tree.time());
    for start in [813, 830, 864] {
        pvd[start..start + 17].copy_from_slice(&date);
    }
    pvd[847..863].copy_from_slice(b"0000000000000000"); // never expires
    pvd[881] = 1; // file structure version
    pvd
}

/// Writes `iso` into `image`.
pub(super) fn write(iso: &Iso<'_, '_>, image: &File) -> Result<Layout, IsoError> {
    let plan = plan(iso)?;
    let nodes = iso.tree.nodes();
    let write_at = |bytes: &[u8], lba: u64, what: &str| {
        image
            .write_all_at(bytes, lba * SECTOR)
            .map_err(io_error(format!("cannot write {what} into the ISO image")))
    };
    image
        .set_len(0)
        .and_then(|()| image.set_len(plan.image_len))
        .map_err(io_error(format!(
            "cannot size the ISO image to {} bytes",
            plan.image_len
        )))?;

    write_at(
        &primary_volume_descriptor(iso, &plan),
        u64::from(PVD_LBA),
        "the volume descriptor",
    )?;
    let mut next = u64::from(PVD_LBA) + 1;
    if let Some(catalog_lba) = plan.catalog_lba {
        write_at(&eltorito::boot_record(catalog_lba), next, "the El Torito boot record")?;
        next += 1;
    }
    let mut terminator = vec![0u8; 7];
    terminator[0] = 255;
    terminator[1..6].copy_from_slice(b"CD001");
    terminator[6] = 1;
    write_at(&terminator, next, "the volume descriptor terminator")?;
    write_at(&plan.path_table, u64::from(plan.l_path_table), "the path table")?;
    write_at(
        &path_table(&plan.dirs, &plan.extents, true),
        u64::from(plan.m_path_table),
        "the path table",
    )?;

    let el_torito = iso.el_torito.as_ref();
    if let Some(catalog_lba) = plan.catalog_lba {
        let mut entries = Vec::new();
        if let (Some((_, lba)), Some(config)) = (&plan.bios, el_torito.and_then(|e| e.bios.as_ref())) {
            entries.push(Entry {
                efi: false,
                load_sectors: config.load_sectors,
                lba: *lba,
            });
        }
        if let Some((boot, lba)) = &plan.efi {
            entries.push(Entry {
                efi: true,
                load_sectors: eltorito::efi_load_sectors(boot.content.len()),
                lba: *lba,
            });
        }
        write_at(
            &eltorito::catalog(&entries),
            u64::from(catalog_lba),
            "the El Torito boot catalog",
        )?;
    }

    let mut areas = Continuations::new(plan.ce_start);
    for index in 0..plan.dirs.len() {
        let records = dir_records(iso, &plan, index, &mut areas);
        let bytes = pack(&records);
        let what = format!("directory /{}", nodes[plan.dirs[index].node].path);
        write_at(&bytes, u64::from(plan.extents[plan.dirs[index].node].0), &what)?;
        for (sector, bytes) in areas.take_finished() {
            write_at(&bytes, u64::from(sector), "Rock Ridge continuation areas")?;
        }
    }
    for (sector, bytes) in areas.finish() {
        write_at(&bytes, u64::from(sector), "Rock Ridge continuation areas")?;
    }

    let mut placed = Vec::new();
    for (boot, lba) in [&plan.bios, &plan.efi].into_iter().flatten() {
        write_content(&boot.content, image, *lba, &boot.name)?;
        placed.push(PlacedFile {
            path: boot.name.clone(),
            lba: *lba,
            len: boot.content.len(),
        });
    }
    if let (Some((boot, lba)), Some(config)) = (&plan.bios, el_torito.and_then(|e| e.bios.as_ref())) {
        if config.boot_info_table {
            let mut checksum = eltorito::Checksum::new();
            boot.content
                .for_each_chunk(|chunk| {
                    checksum.add(chunk);
                    Ok(())
                })
                .map_err(io_error(format!("cannot read {}", boot.name)))?;
            let table = eltorito::boot_info_table(PVD_LBA, *lba, boot.content.len() as u32, checksum.finish());
            image
                .write_all_at(&table, u64::from(*lba) * SECTOR + 8)
                .map_err(io_error("cannot write the boot info table into the ISO image"))?;
        }
    }
    for &node in &plan.files {
        let Kind::File(content) = &nodes[node].kind else {
            continue;
        };
        let (lba, len) = plan.extents[node];
        let path = &nodes[node].path;
        write_content(content, image, lba, path)?;
        placed.push(PlacedFile {
            path: path.clone(),
            lba,
            len,
        });
    }

    if let Some(mbr) = &iso.hybrid {
        let bios_lba = plan.bios.as_ref().map(|(_, lba)| *lba);
        let efi = plan
            .efi
            .as_ref()
            .map(|(boot, lba)| (*lba, boot.content.len().div_ceil(512)));
        let bytes = eltorito::hybrid_mbr(mbr, plan.image_len, bios_lba, efi);
        image
            .write_all_at(&bytes, 0)
            .map_err(io_error("cannot write the isohybrid MBR"))?;
    }

    Ok(Layout {
        files: placed,
        catalog_lba: plan.catalog_lba,
        bios_lba: plan.bios.as_ref().map(|(_, lba)| *lba),
        efi_lba: plan.efi.as_ref().map(|(_, lba)| *lba),
        volume_sectors: plan.volume_sectors,
        image_len: plan.image_len,
    })
}

/// Copies a content to its sectors; all-zero chunks are skipped, so that they stay holes (the
/// image was truncated to its length first).
fn write_content(content: &Content<'_>, image: &File, lba: u32, path: &str) -> Result<(), IsoError> {
    let mut at = u64::from(lba) * SECTOR;
    content
        .for_each_chunk(|chunk| {
            if chunk.iter().any(|&b| b != 0) {
                image.write_all_at(chunk, at)?;
            }
            at += chunk.len() as u64;
            Ok(())
        })
        .map_err(io_error(format!("cannot copy {path} into the ISO image")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_names_are_d_characters_and_unique() {
        let mut taken = BTreeSet::new();
        let name = |n: &str, dir: bool, taken: &mut BTreeSet<Vec<u8>>| {
            let (base, ext) = iso_name(n, dir, taken);
            let id = match &ext {
                None => base.clone(),
                Some(ext) => format!("{base}.{ext};1"),
            };
            taken.insert(id.clone().into_bytes());
            id
        };
        assert_eq!(name("isolinux.cfg", false, &mut taken), "ISOLINUX.CFG;1");
        assert_eq!(name("kernel", false, &mut taken), "KERNEL.;1");
        assert_eq!(name("Kernel", false, &mut taken), "KERNEL000.;1");
        assert_eq!(name("meta-data", false, &mut taken), "META_DATA.;1");
        assert_eq!(name("lib.d", true, &mut taken), "LIB_D");
        assert_eq!(name(".profile", false, &mut taken), "_PROFILE.;1");
        let long = name(&"x".repeat(100), false, &mut taken);
        assert_eq!(long.len(), 30 + 3, "name and extension have 30 characters, then '.;1'");
        let long2 = name(&"x".repeat(101), false, &mut taken);
        assert_ne!(long, long2);
        assert_eq!(long2.len(), 33);
    }

    #[test]
    fn records_are_even_and_pad_after_the_system_use_field() {
        let odd = record(b"A.;1", 5, 10, false, 0, b"NM\x06\x01\x00x");
        assert_eq!(odd.len() % 2, 0);
        assert_eq!(usize::from(odd[0]), odd.len());
        assert_eq!(&odd[33 + 4 + 1..33 + 4 + 1 + 6], b"NM\x06\x01\x00x");
    }
}
