//! Fuzz targets for the layer flattener (run as described in `fuzzing.rs`). On layers made of
//! hostile names, whiteouts, opaque markers, symlinks and hard links, whatever the flattener emits
//! can be extracted as it is, inside the root: clean relative unique names, nothing below an emitted
//! non-directory, hard links only to earlier emitted non-directories, data of the announced size.
//! It emits exactly the entries Go's algorithm keeps (a plain model of it below), in the same order
//! except that hard links follow their target; it refuses only layers with an unsafe entry, always
//! naming image and layer; and it is deterministic. Damaged blobs give errors, never panics.

use std::collections::HashMap;
use std::io::{self, Cursor, Write};

use proptest::prelude::*;

use super::*;
use crate::fuzzing::{bytes, fuzz};
use crate::tar::{EntrySink, TarWriter};

const IMAGE: &str = "fuzz/image:1";

/// One entry of a generated layer.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    HardLink(String),
    Fifo,
}

/// Layers (oldest first), whether each is gzip-compressed, and whether opaque markers count.
#[derive(Debug, Clone)]
struct Image {
    layers: Vec<(Vec<Entry>, bool)>,
    honour_opaque: bool,
}

fn name() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec![
        "a",
        "a",
        "b",
        "b",
        "c",
        ".",
        "..",
        "",
        ".wh.a",
        ".wh.b",
        ".wh..wh..opq",
    ]);
    let lead = prop::sample::select(vec!["", "", "", "./", "/"]);
    let tail = prop::sample::select(vec!["", "", "", "/"]);
    (lead, prop::collection::vec(part, 0..4), tail)
        .prop_map(|(lead, parts, tail)| format!("{lead}{}{tail}", parts.join("/")))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => bytes(0..600).prop_map(Kind::File),
        3 => Just(Kind::Dir),
        1 => prop::sample::select(vec!["a", "/etc", "../x", "b/c", "."]).prop_map(|t| Kind::Symlink(t.to_string())),
        2 => name().prop_map(Kind::HardLink),
        1 => Just(Kind::Fifo),
    ]
}

fn image() -> impl Strategy<Value = Image> {
    let entry = (name(), kind()).prop_map(|(name, kind)| Entry { name, kind });
    let layer = (prop::collection::vec(entry, 0..8), prop::bool::weighted(0.2));
    (prop::collection::vec(layer, 1..4), prop::bool::weighted(0.8))
        .prop_map(|(layers, honour_opaque)| Image { layers, honour_opaque })
}

/// The entry's header; its uid tags it with its layer and index, to find it in the output.
fn header_of(entry: &Entry, tag: u64) -> Header {
    let (kind, mode) = match entry.kind {
        Kind::File(_) => (EntryKind::Regular, 0o644),
        Kind::Dir => (EntryKind::Directory, 0o755),
        Kind::Symlink(_) => (EntryKind::Symlink, 0o777),
        Kind::HardLink(_) => (EntryKind::HardLink, 0o644),
        Kind::Fifo => (EntryKind::Fifo, 0o600),
    };
    let mut header = Header::new(entry.name.clone(), kind, mode);
    header.uid = tag;
    match &entry.kind {
        Kind::File(data) => header.size = data.len() as u64,
        Kind::Symlink(target) | Kind::HardLink(target) => header.link_name.clone_from(target),
        Kind::Dir | Kind::Fifo => {}
    }
    header
}

fn tag(layer: usize, index: usize) -> u64 {
    (layer * 1000 + index) as u64
}

/// A layer's entries that made it into its blob, with their index in the generated layer.
type Kept = Vec<(usize, Entry)>;

/// The entries our writer accepts (it refuses, e.g., a file name ending in `/`), and the blobs.
fn written(image: &Image) -> Vec<(Kept, Vec<u8>)> {
    image
        .layers
        .iter()
        .enumerate()
        .map(|(l, (entries, gzip))| {
            let mut writer = TarWriter::new(Vec::new());
            let mut kept = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                if writer.write_header(&header_of(entry, tag(l, i))).is_err() {
                    // The writer refuses before writing anything.
                    continue;
                }
                if let Kind::File(data) = &entry.kind {
                    writer.write_data(data).unwrap();
                }
                kept.push((i, entry.clone()));
            }
            writer.finish().unwrap();
            let tar = writer.into_inner();
            let blob = if *gzip {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&tar).unwrap();
                encoder.finish().unwrap()
            } else {
                tar
            };
            (kept, blob)
        })
        .collect()
}

/// An emitted entry: header and data.
type Out = (Header, Vec<u8>);

fn run(blobs: &[Vec<u8>], honour_opaque: bool) -> Result<Vec<Out>, LayerError> {
    let layers = blobs
        .iter()
        .enumerate()
        .map(|(l, blob)| LayerSource::new(format!("sha256:layer{l}"), "", Cursor::new(blob.clone())))
        .collect();
    let mut out = Vec::new();
    Flattener::new(IMAGE)
        .honour_opaque(honour_opaque)
        .run(layers, |header: &Header, data: &mut dyn Read| {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            out.push((header.clone(), bytes));
            Ok::<(), io::Error>(())
        })?;
    Ok(out)
}

/// Go's algorithm (go-containerregistry's `extract`, plus opaque markers when honoured), quadratic
/// and without safety checks: the tags of the entries it keeps, in its order.
fn model(layers: &[Kept], honour_opaque: bool) -> Vec<u64> {
    let mut kept = Vec::new();
    let mut file_map: HashMap<String, bool> = HashMap::new();
    let mut opaque: Vec<String> = Vec::new();
    for (l, entries) in layers.iter().enumerate().rev() {
        let mut new_opaque = Vec::new();
        for (i, entry) in entries {
            let cleaned = gopath::clean(&entry.name);
            let (dir, base) = (gopath::parent(&cleaned), gopath::base(&cleaned));
            let hidden_base = base.strip_prefix(WHITEOUT_PREFIX);
            let is_dir = matches!(entry.kind, Kind::Dir);
            let key = if is_dir {
                cleaned.clone()
            } else {
                gopath::join(&[dir, hidden_base.unwrap_or(base)])
            };
            let below = |set: &dyn Fn(&str) -> bool| gopath::ancestors(&key).any(set);
            if file_map.contains_key(&key)
                || below(&|d| file_map.get(d) == Some(&true))
                || below(&|d| opaque.iter().any(|o| o == d))
            {
                continue;
            }
            file_map.insert(key.clone(), hidden_base.is_some() || !is_dir);
            if hidden_base.is_some() {
                if base == OPAQUE_MARKER && honour_opaque {
                    new_opaque.push(dir.to_string());
                }
                continue;
            }
            kept.push(tag(l, *i));
        }
        opaque.extend(new_opaque);
    }
    kept
}

/// Whether an entry is one the flattener must refuse wherever it is: a name or link target that is
/// empty, absolute or climbs out, or a non-directory root.
fn unsafe_name(entry: &Entry) -> bool {
    let bad = |path: &str| {
        let cleaned = gopath::clean(path);
        cleaned.starts_with('/') || cleaned == ".." || cleaned.starts_with("../")
    };
    let root = gopath::clean(&entry.name) == ".";
    entry.name.is_empty()
        || bad(&entry.name)
        || (root && !matches!(entry.kind, Kind::Dir))
        || matches!(&entry.kind, Kind::HardLink(target) if bad(target))
}

/// What must hold of a successful flattening.
fn check_output(out: &[Out], layers: &[Kept], honour_opaque: bool) -> Result<(), TestCaseError> {
    let mut kinds: HashMap<&str, EntryKind> = HashMap::new();
    for (header, data) in out {
        let name = header.name.as_str();
        prop_assert!(!name.is_empty() && !name.starts_with('/'), "{:?}", name);
        prop_assert!(name != ".." && !name.starts_with("../"), "{:?}", name);
        prop_assert_eq!(&gopath::clean(name), name);
        prop_assert!(name != "." || header.kind == EntryKind::Directory, "{:?}", header);
        if header.kind == EntryKind::HardLink {
            let target = kinds.get(header.link_name.as_str());
            prop_assert!(
                target.is_some_and(|kind| *kind != EntryKind::Directory),
                "hard link {:?} to {:?}, not an earlier non-directory",
                name,
                header.link_name
            );
        }
        prop_assert!(kinds.insert(name, header.kind).is_none(), "{:?} emitted twice", name);
        prop_assert_eq!(data.len() as u64, header.size);
        let (l, i) = ((header.uid / 1000) as usize, (header.uid % 1000) as usize);
        let input = layers[l].iter().find(|(index, _)| *index == i).map(|(_, e)| e);
        let expected: &[u8] = match input.map(|e| &e.kind) {
            Some(Kind::File(bytes)) => bytes,
            _ => &[],
        };
        prop_assert_eq!(data.as_slice(), expected);
    }
    // Nothing lies below an emitted non-directory (symlink or not), whatever the order.
    for (header, _) in out {
        for dir in gopath::ancestors(&header.name) {
            let kind = kinds.get(dir).copied().unwrap_or(EntryKind::Directory);
            prop_assert_eq!(kind, EntryKind::Directory, "{:?} is below {:?}", header.name, dir);
        }
    }
    // Go's entries and order, with hard links moved after their targets.
    let tags: Vec<u64> = out.iter().map(|(h, _)| h.uid).collect();
    let mut expected = model(layers, honour_opaque);
    let mut got_sorted = tags.clone();
    got_sorted.sort_unstable();
    expected.sort_unstable();
    prop_assert_eq!(got_sorted, expected);
    let not_links = |tags: Vec<u64>| -> Vec<u64> {
        tags.into_iter()
            .filter(|t| {
                let (l, i) = ((*t / 1000) as usize, (*t % 1000) as usize);
                !layers[l]
                    .iter()
                    .any(|(index, e)| *index == i && matches!(e.kind, Kind::HardLink(_)))
            })
            .collect()
    };
    prop_assert_eq!(not_links(tags), not_links(model(layers, honour_opaque)));
    Ok(())
}

#[test]
fn hostile_layers() {
    fuzz("layer flattener: hostile layers", 800, image(), |image| {
        let layers = written(&image);
        let entries: Vec<Kept> = layers.iter().map(|(kept, _)| kept.clone()).collect();
        let blobs: Vec<Vec<u8>> = layers.into_iter().map(|(_, blob)| blob).collect();
        let result = run(&blobs, image.honour_opaque);
        // Deterministic, although every run hashes differently.
        let again = run(&blobs, image.honour_opaque);
        prop_assert_eq!(
            result.as_ref().map_err(ToString::to_string),
            again.as_ref().map_err(ToString::to_string)
        );
        match result {
            Ok(out) => {
                prop_assert!(!entries.iter().flatten().any(|(_, e)| unsafe_name(e)));
                check_output(&out, &entries, image.honour_opaque)
            }
            Err(err) => {
                let text = err.to_string();
                prop_assert!(text.contains(IMAGE) && text.contains("sha256:layer"), "{}", text);
                // Layers of plain files and directories under safe names are refused only when a
                // non-directory would land above another entry.
                let plain = entries
                    .iter()
                    .flatten()
                    .all(|(_, e)| !unsafe_name(e) && matches!(e.kind, Kind::File(_) | Kind::Dir | Kind::Fifo));
                prop_assert!(
                    !plain || matches!(err, LayerError::BelowNonDirectory { .. }),
                    "plain layers refused: {}",
                    text
                );
                Ok(())
            }
        }
    });
}

/// A blob: a valid layer damaged, or bytes behind a compression magic.
fn damaged_blob() -> impl Strategy<Value = Vec<u8>> {
    let magic = prop::sample::select(vec![
        &[][..],
        &[0x1f, 0x8b][..],
        &[0x1f, 0x8b, 8, 0][..],
        &[0x28, 0xb5, 0x2f, 0xfd][..],
    ]);
    let noise = (magic, bytes(0..2000)).prop_map(|(magic, bytes)| [magic, &bytes].concat());
    let damaged = (
        image(),
        0u16..1000,
        prop::collection::vec((0u16..1000, any::<u8>()), 0..3),
    )
        .prop_map(|(image, cut, flips)| {
            let mut blob = written(&image).swap_remove(0).1;
            for (at, value) in flips {
                let i = blob.len() * usize::from(at) / 1000;
                if let Some(byte) = blob.get_mut(i) {
                    *byte = value;
                }
            }
            blob.truncate(blob.len() * usize::from(cut) / 1000 + 1);
            blob
        });
    prop_oneof![noise, damaged]
}

#[test]
fn damaged_blobs() {
    let strategy = prop::collection::vec(damaged_blob(), 1..3);
    fuzz("layer flattener: damaged blobs", 400, strategy, |blobs| {
        if let Err(err) = run(&blobs, true) {
            let text = err.to_string();
            prop_assert!(text.contains(IMAGE) && text.contains("sha256:layer"), "{}", text);
        }
        Ok(())
    });
}
