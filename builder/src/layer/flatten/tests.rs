use super::*;
use crate::tar::block::{self, Layout, BLOCK_SIZE};
use crate::tar::{EntrySink, TarWriter};
use std::io::{self, Cursor, Write};

/// A layer entry for tests.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
}

fn header_of(entry: &E<'_>) -> (Header, Vec<u8>) {
    let (mut header, data) = match *entry {
        E::File(name, data) => (Header::new(name, EntryKind::Regular, 0o644), data.to_vec()),
        E::Dir(name) => (Header::new(name, EntryKind::Directory, 0o755), Vec::new()),
        E::Sym(name, target) => {
            let mut h = Header::new(name, EntryKind::Symlink, 0o777);
            h.link_name = target.into();
            (h, Vec::new())
        }
        E::Hard(name, target) => {
            let mut h = Header::new(name, EntryKind::HardLink, 0o644);
            h.link_name = target.into();
            (h, Vec::new())
        }
        E::Char(name, major, minor) => {
            let mut h = Header::new(name, EntryKind::Char, 0o600);
            h.dev_major = major;
            h.dev_minor = minor;
            (h, Vec::new())
        }
        E::Fifo(name) => (Header::new(name, EntryKind::Fifo, 0o600), Vec::new()),
    };
    header.size = data.len() as u64;
    (header, data)
}

fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut writer = TarWriter::new(Vec::new());
    for entry in entries {
        let (header, data) = header_of(entry);
        writer.write_header(&header).unwrap();
        writer.write_data(&data).unwrap();
    }
    writer.finish().unwrap();
    writer.into_inner()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn source(index: usize, blob: Vec<u8>) -> LayerSource<'static> {
    LayerSource::new(
        format!("sha256:layer{index}"),
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Cursor::new(blob),
    )
}

/// An emitted entry: name, kind, link target, data.
type Out = (String, EntryKind, String, Vec<u8>);

fn flatten_blobs(blobs: Vec<Vec<u8>>, honour_opaque: bool) -> Result<Vec<Out>, LayerError> {
    let layers = blobs.into_iter().enumerate().map(|(i, b)| source(i, b)).collect();
    let mut out = Vec::new();
    Flattener::new("test/image:1").honour_opaque(honour_opaque).run(
        layers,
        |header: &Header, data: &mut dyn Read| {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            out.push((header.name.clone(), header.kind, header.link_name.clone(), bytes));
            Ok::<(), io::Error>(())
        },
    )?;
    Ok(out)
}

/// Flattens layers given oldest first, each gzip-compressed.
fn run(layers: &[&[E<'_>]]) -> Result<Vec<Out>, LayerError> {
    flatten_blobs(layers.iter().map(|l| gzip(&tar(l))).collect(), true)
}

fn names(out: &[Out]) -> Vec<&str> {
    out.iter().map(|o| o.0.as_str()).collect()
}

#[test]
fn newest_layer_wins_and_order_is_newest_first() {
    let old: &[E<'_>] = &[E::Dir("etc/"), E::File("etc/a", b"old"), E::File("etc/b", b"b")];
    let new: &[E<'_>] = &[E::Dir("./etc/"), E::File("./etc/a", b"new")];
    let out = run(&[old, new]).unwrap();
    assert_eq!(names(&out), ["etc", "etc/a", "etc/b"]);
    assert_eq!(out[1].3, b"new");
    assert_eq!(out[2].3, b"b");
}

#[test]
fn whiteouts_hide_files_and_directories_and_are_not_emitted() {
    let old: &[E<'_>] = &[
        E::File("keep", b"k"),
        E::File("gone", b"g"),
        E::Dir("dir/"),
        E::File("dir/child", b"c"),
        E::Dir("dir/sub/"),
        E::File("dir/sub/deep", b"d"),
    ];
    let new: &[E<'_>] = &[E::File(".wh.gone", b""), E::File(".wh.dir", b"")];
    let out = run(&[old, new]).unwrap();
    assert_eq!(names(&out), ["keep"]);
}

#[test]
fn whiteout_does_not_hide_the_same_layer_or_newer_entries() {
    let oldest: &[E<'_>] = &[E::File("x", b"0")];
    let middle: &[E<'_>] = &[E::File(".wh.x", b"")];
    let newest: &[E<'_>] = &[E::File("x", b"2")];
    let out = run(&[oldest, middle, newest]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].3, b"2");
    // In one layer, the first of whiteout and file decides (Go's fileMap).
    let out = run(&[&[E::File("y", b"1"), E::File(".wh.y", b"")]]).unwrap();
    assert_eq!(names(&out), ["y"]);
}

#[test]
fn non_directory_hides_older_children() {
    let old: &[E<'_>] = &[
        E::Dir("opt/"),
        E::File("opt/tool", b"t"),
        E::Dir("lib/"),
        E::File("lib/x", b"x"),
    ];
    let new: &[E<'_>] = &[E::File("opt", b"now a file"), E::Dir("lib/")];
    let out = run(&[old, new]).unwrap();
    assert_eq!(names(&out), ["opt", "lib", "lib/x"]);
}

#[test]
fn opaque_directory_hides_older_content_only() {
    let old: &[E<'_>] = &[
        E::Dir("opt/"),
        E::Dir("opt/app/"),
        E::File("opt/app/old.txt", b"old"),
        E::Dir("opt/app/sub/"),
        E::File("opt/app/sub/deep.txt", b"deep"),
        E::File("opt/other", b"o"),
    ];
    // The marker comes first, and the new file after it in the same layer must survive.
    let new: &[E<'_>] = &[
        E::Dir("./opt/app/"),
        E::File("./opt/app/.wh..wh..opq", b""),
        E::File("./opt/app/new.txt", b"new"),
    ];
    let out = run(&[old, new]).unwrap();
    assert_eq!(names(&out), ["opt/app", "opt/app/new.txt", "opt", "opt/other"]);
    // LinuxKit mode keeps the older content.
    let blobs = vec![gzip(&tar(old)), gzip(&tar(new))];
    let out = flatten_blobs(blobs, false).unwrap();
    assert_eq!(
        names(&out),
        [
            "opt/app",
            "opt/app/new.txt",
            "opt",
            "opt/app/old.txt",
            "opt/app/sub",
            "opt/app/sub/deep.txt",
            "opt/other"
        ]
    );
}

#[test]
fn opaque_root_hides_every_older_entry() {
    let old: &[E<'_>] = &[E::File("a", b"a"), E::Dir("d/")];
    let new: &[E<'_>] = &[E::File(".wh..wh..opq", b""), E::File("b", b"b")];
    assert_eq!(names(&run(&[old, new]).unwrap()), ["b"]);
}

#[test]
fn names_and_hard_link_targets_are_cleaned_symlinks_kept_verbatim() {
    let layer: &[E<'_>] = &[
        E::Dir("./"),
        E::Dir("./bin/"),
        E::File("./bin//hello", b"hi"),
        E::Hard("./bin/hello-hard", "./bin/hello"),
        E::Sym("bin/hi", "../bin/hello"),
        E::Char("dev/console", 5, 1),
        E::Fifo("run/fifo"),
    ];
    let out = run(&[layer]).unwrap();
    assert_eq!(
        names(&out),
        [
            ".",
            "bin",
            "bin/hello",
            "bin/hello-hard",
            "bin/hi",
            "dev/console",
            "run/fifo"
        ]
    );
    assert_eq!(out[3].2, "bin/hello");
    assert_eq!(out[4].2, "../bin/hello");
    assert_eq!(out[5].1, EntryKind::Char);
    assert_eq!(out[6].1, EntryKind::Fifo);
    // An extractor resolves a raw `s/../shadow` through the symlink `s`; the cleaned target cannot.
    let out = run(&[&[
        E::Sym("s", "/etc/ssh"),
        E::File("shadow", b""),
        E::Hard("l", "s/../shadow"),
    ]])
    .unwrap();
    assert_eq!(out[2].2, "shadow");
}

#[test]
fn devices_keep_their_numbers() {
    let layers = vec![gzip(&tar(&[E::Char("dev/null", 1, 3)]))];
    let mut seen = Vec::new();
    flatten(
        layers.into_iter().enumerate().map(|(i, b)| source(i, b)).collect(),
        "img",
        |header: &Header, _data: &mut dyn Read| {
            seen.push((header.dev_major, header.dev_minor));
            Ok::<(), io::Error>(())
        },
    )
    .unwrap();
    assert_eq!(seen, [(1, 3)]);
}

#[test]
fn refuses_absolute_and_escaping_names() {
    for bad in ["/etc/passwd", "../escape", "a/../../escape", ".."] {
        let err = run(&[&[E::File(bad, b"x")]]).unwrap_err();
        assert!(
            matches!(&err, LayerError::AbsolutePath { entry, .. } | LayerError::EscapesRoot { entry, .. } if entry == bad),
            "{bad}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("test/image:1") && text.contains("sha256:layer0"),
            "{text}"
        );
    }
    // Even a whiteout or an entry hidden by a newer layer is refused: the layer is malicious.
    let err = run(&[&[E::File("../x", b"")], &[E::File(".wh...", b"")]]).unwrap_err();
    assert!(matches!(err, LayerError::EscapesRoot { .. }), "{err}");
}

#[test]
fn refuses_hardlinks_leaving_the_root() {
    for target in ["/etc/shadow", "../../etc/shadow", "a/../../x"] {
        let err = run(&[&[E::Hard("innocent", target)]]).unwrap_err();
        assert!(
            matches!(&err, LayerError::HardlinkEscapes { entry, target: t, .. } if entry == "innocent" && t == target),
            "{target}: {err}"
        );
    }
    // A hard link through a symlink reaches outside as well.
    let err = run(&[&[E::Sym("etc", "/etc"), E::Hard("stolen", "etc/shadow")]]).unwrap_err();
    assert!(matches!(err, LayerError::HardlinkEscapes { .. }), "{err}");
}

#[test]
fn refuses_entries_below_a_symlink_of_the_result() {
    // Child in a newer layer (without its directory), symlink in an older one: both are in the
    // result, the child first.
    let err = run(&[&[E::Sym("evil", "/etc")], &[E::File("evil/sub/cron", b"x")]]).unwrap_err();
    assert!(
        matches!(&err, LayerError::ThroughSymlink { entry, symlink, .. } if entry == "evil/sub/cron" && symlink == "evil"),
        "{err}"
    );
    assert!(err.to_string().contains("would write through the symlink"), "{err}");
    // A hard link to a symlink is a symlink too.
    let err = run(&[&[E::Sym("s", "/"), E::Hard("h", "s")], &[E::File("h/a/b", b"")]]).unwrap_err();
    assert!(
        matches!(err, LayerError::ThroughSymlink { ref symlink, .. } if symlink == "h"),
        "{err}"
    );
}

#[test]
fn refuses_entries_below_a_symlink_of_the_same_layer() {
    // Go's rule (a non-directory hides what comes below it) would drop these silently; like the
    // same layout across two layers, the layer is refused.
    let layers: [&[E<'_>]; 4] = [
        &[E::Sym("evil", "/etc"), E::File("evil/cron", b"x")],
        &[E::Sym("evil", "/etc"), E::Dir("evil/sub/")],
        &[E::Sym("evil", "/etc"), E::File("evil/.wh.passwd", b"")],
        &[E::Sym("s", "/etc"), E::Hard("evil", "s"), E::Sym("evil/x", "y")],
    ];
    for layer in layers {
        let err = run(&[&[E::File("ok", b"")], layer]).unwrap_err();
        assert!(
            matches!(&err, LayerError::ThroughSymlink { digest, entry, symlink, .. }
                if digest == "sha256:layer1" && entry.starts_with("evil/") && symlink == "evil"),
            "{err}"
        );
        assert!(err.to_string().contains("test/image:1"), "{err}");
    }
}

#[test]
fn symlink_hidden_by_a_newer_layer_is_harmless() {
    // The newer symlink hides the older directory's children; nothing goes through it.
    let old: &[E<'_>] = &[E::Dir("lib/"), E::File("lib/x", b"x")];
    let new: &[E<'_>] = &[E::Sym("lib", "usr/lib")];
    assert_eq!(names(&run(&[old, new]).unwrap()), ["lib"]);
    // A newer directory replaces an older symlink.
    let old: &[E<'_>] = &[E::Sym("lib", "/etc")];
    let new: &[E<'_>] = &[E::Dir("lib/"), E::File("lib/x", b"x")];
    assert_eq!(names(&run(&[old, new]).unwrap()), ["lib", "lib/x"]);
}

/// A GNU header block with a correct checksum.
fn gnu_block(name: &[u8], flag: u8, size: u64) -> [u8; BLOCK_SIZE] {
    let mut blk = [0u8; BLOCK_SIZE];
    block::put_str(&mut blk[block::NAME], name);
    block::put_octal(&mut blk[block::MODE], 0o644);
    block::put_octal(&mut blk[block::UID], 0);
    block::put_octal(&mut blk[block::GID], 0);
    block::put_octal(&mut blk[block::SIZE], i128::from(size as u32));
    block::put_octal(&mut blk[block::MTIME], 0);
    blk[block::TYPEFLAG] = flag;
    block::seal(&mut blk, Layout::Gnu);
    blk
}

fn padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
}

#[test]
fn gnu_and_pax_long_names_flatten_and_whiteout() {
    let deep = format!("usr/share/{}/file.txt", "x".repeat(180));
    // Older layer: GNU long name.
    let mut gnu = Vec::new();
    gnu.extend_from_slice(&gnu_block(b"././@LongLink", b'L', deep.len() as u64 + 1));
    padded(&mut gnu, format!("{deep}\0").as_bytes());
    gnu.extend_from_slice(&gnu_block(&deep.as_bytes()[..100], b'0', 3));
    padded(&mut gnu, b"gnu");
    let other = format!("usr/share/{}/other.txt", "y".repeat(180));
    gnu.extend_from_slice(&gnu_block(b"././@LongLink", b'L', other.len() as u64 + 1));
    padded(&mut gnu, format!("{other}\0").as_bytes());
    gnu.extend_from_slice(&gnu_block(&other.as_bytes()[..100], b'0', 0));
    gnu.extend_from_slice(&[0u8; 1024]);
    // Newer layer: PAX long names (written by our Go-compatible writer), one a whiteout.
    let whiteout = format!("usr/share/{}/.wh.other.txt", "y".repeat(180));
    let newer = tar(&[E::File(&whiteout, b""), E::File("short", b"s")]);
    let out = flatten_blobs(vec![gzip(&gnu), newer], true).unwrap();
    assert_eq!(names(&out), ["short", deep.as_str()]);
    assert_eq!(out[1].3, b"gnu");
}

#[test]
fn multi_member_gzip_and_zstd_layers() {
    let archive = tar(&[E::Dir("a/"), E::File("a/big", &[7u8; 3000]), E::File("a/small", b"s")]);
    // Split the uncompressed tar at odd places into three gzip members.
    let mut split = gzip(&archive[..700]);
    split.extend(gzip(&archive[700..2100]));
    split.extend(gzip(&archive[2100..]));
    let out = flatten_blobs(vec![split], true).unwrap();
    assert_eq!(names(&out), ["a", "a/big", "a/small"]);
    assert_eq!(out[1].3, vec![7u8; 3000]);

    let zstd_blob = zstd::encode_all(&archive[..], 3).unwrap();
    let layers = vec![LayerSource::new(
        "sha256:z",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        Cursor::new(zstd_blob),
    )];
    let mut count = 0;
    flatten(layers, "img", |_h: &Header, _d: &mut dyn Read| {
        count += 1;
        Ok::<(), io::Error>(())
    })
    .unwrap();
    assert_eq!(count, 3);
}

#[test]
fn visitor_may_read_partially_and_errors_stop_with_context() {
    let layer = gzip(&tar(&[
        E::File("a", &[1u8; 2000]),
        E::File("b", b"bb"),
        E::File("c", b"c"),
    ]));
    let mut seen = Vec::new();
    let err = flatten(
        vec![source(0, layer)],
        "img:tag",
        |header: &Header, data: &mut dyn Read| {
            let mut first = [0u8; 10];
            data.read_exact(&mut first)?;
            seen.push(header.name.clone());
            if header.name == "c" {
                return Err(io::Error::other("disk full"));
            }
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(seen, ["a"]);
    // "b" has only 2 bytes, so read_exact of 10 fails on it.
    assert!(matches!(&err, LayerError::Visit { entry, .. } if entry == "b"), "{err}");
    assert!(err.to_string().contains("img:tag"), "{err}");
}

#[test]
fn corrupt_layer_names_image_and_digest() {
    let mut archive = tar(&[E::File("a", b"x")]);
    archive[0] = b'Z';
    let err = flatten_blobs(vec![archive], true).unwrap_err();
    assert!(matches!(err, LayerError::Tar { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("test/image:1") && text.contains("sha256:layer0") && text.contains("checksum"),
        "{text}"
    );
    let err = flatten_blobs(vec![b"{}".to_vec()], true).unwrap_err();
    assert!(matches!(err, LayerError::Tar { .. }), "{err}");
    let layers = vec![LayerSource::new(
        "sha256:j",
        "application/vnd.in-toto+json",
        Cursor::new(Vec::new()),
    )];
    let err = flatten(layers, "img", |_h: &Header, _d: &mut dyn Read| Ok::<(), io::Error>(())).unwrap_err();
    assert!(matches!(err, LayerError::Open { .. }), "{err}");
}

#[test]
fn corpus_layered_image_matches_linuxkit_order() {
    let Some(corpus) = crate::tar::corpus_tests::corpus_dir() else {
        eprintln!("conformance corpus not found (set MOBY_CONFORMANCE); skipping");
        return;
    };
    let blobs = corpus.join("cache/blobs/sha256");
    let layer = |digest: &str| std::fs::read(blobs.join(digest)).unwrap();
    let read = || {
        vec![
            layer("7872b0c7d0a80e5d2af1d83588ad48854942b8a564c69632528a48b4c8ae2564"),
            layer("d123205f594f1eb6c3c1309bcf6bd2d5d3361531fb510c826e04dc8199949894"),
        ]
    };
    // LinuxKit's order, from expected/005-onboot-image-config/listing.tsv (prefix removed).
    let expected: Vec<String> = std::fs::read_to_string(corpus.join("expected/005-onboot-image-config/listing.tsv"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split('\t').nth(6))
        .filter_map(|path| path.strip_prefix("containers/onboot/001-layered/lower/"))
        .map(str::to_string)
        .collect();
    let linuxkit = flatten_blobs(read(), false).unwrap();
    let got = names(&linuxkit);
    // The listing continues with LinuxKit's appended dev/etc/proc/sys entries.
    assert_eq!(got, expected[..got.len()]);
    assert_eq!(
        got,
        [
            "etc",
            "etc/keep.conf",
            "opt/app",
            "opt/app/new.txt",
            "data",
            "data/b.txt",
            "opt",
            "opt/app/old.txt",
            "opt/app/sub",
            "opt/app/sub/deep.txt",
            "data/a.txt"
        ]
    );
    // Our default honours the opaque marker in opt/app.
    let ours = flatten_blobs(read(), true).unwrap();
    assert_eq!(
        names(&ours),
        [
            "etc",
            "etc/keep.conf",
            "opt/app",
            "opt/app/new.txt",
            "data",
            "data/b.txt",
            "opt",
            "data/a.txt"
        ]
    );
}

/// A tar of one entry with an empty name (our writer keeps names verbatim).
fn empty_name_layer() -> Vec<u8> {
    tar(&[E::File("a", b"x"), E::File("", b"")])
}

#[test]
fn refuses_empty_names_and_a_non_directory_root() {
    let err = flatten_blobs(vec![gzip(&empty_name_layer())], true).unwrap_err();
    assert!(
        matches!(err, LayerError::EmptyName { at, .. } if at == Position { index: 1, offset: 1024 }),
        "{err}"
    );
    assert!(
        err.to_string().contains("sha256:layer0") && err.to_string().contains("entry 1 at byte 1024"),
        "{err}"
    );
    for root in [
        E::File(".", b""),
        E::Sym(".", "/"),
        E::Hard("./.", "a"),
        E::Fifo("x/.."),
    ] {
        let err = run(&[&[E::File("a", b"")], &[root]]).unwrap_err();
        assert!(matches!(err, LayerError::RootNotDirectory { .. }), "{err}");
    }
    // The root as a directory is fine.
    assert_eq!(names(&run(&[&[E::Dir("./"), E::Dir(".")]]).unwrap()), ["."]);
}

#[test]
fn refuses_hard_links_to_themselves() {
    for target in ["l", "./l", "x/../l"] {
        let err = run(&[&[E::Hard("l", target)]]).unwrap_err();
        assert!(
            matches!(&err, LayerError::HardlinkToItself { entry, digest, .. } if entry == "l" && digest == "sha256:layer0"),
            "{target}: {err}"
        );
    }
}

#[test]
fn refuses_hard_links_to_directories() {
    // Same layer, the root, and a directory of an older layer (found when it comes).
    let cases: [&[&[E<'_>]]; 3] = [
        &[&[E::Dir("d/"), E::Hard("l", "d")]],
        &[&[E::Dir("./"), E::Hard("l", "")]],
        &[&[E::Dir("d/")], &[E::File("x", b""), E::Hard("l", "d/")]],
    ];
    for layers in cases {
        let err = run(layers).unwrap_err();
        let last = format!("sha256:layer{}", layers.len() - 1);
        assert!(
            matches!(&err, LayerError::HardlinkToDirectory { entry, digest, .. } if entry == "l" && *digest == last),
            "{err}"
        );
    }
    // A link of an older layer whose target a newer layer made a directory.
    let err = run(&[&[E::File("t", b""), E::Hard("l", "t")], &[E::Dir("t/")]]).unwrap_err();
    assert!(
        matches!(&err, LayerError::HardlinkToDirectory { entry, target, digest, .. }
            if entry == "l" && target == "t" && digest == "sha256:layer0"),
        "{err}"
    );
}

#[test]
fn refuses_hard_links_to_entries_not_in_the_image() {
    let cases: [&[&[E<'_>]]; 4] = [
        // Never there.
        &[&[E::File("a", b""), E::Hard("l", "nowhere")]],
        // Two links waiting for each other.
        &[&[E::Hard("a", "b"), E::Hard("b", "a")]],
        // Removed by a newer layer, with the link in the same older layer.
        &[&[E::File("t", b""), E::Hard("l", "t")], &[E::File(".wh.t", b"")]],
        // Hidden below a newer non-directory.
        &[
            &[E::Dir("d/"), E::File("d/t", b""), E::Hard("l", "d/t")],
            &[E::File("d", b"")],
        ],
    ];
    for layers in cases {
        let err = run(layers).unwrap_err();
        assert!(
            matches!(&err, LayerError::HardlinkMissingTarget { entry, digest, .. }
                if (entry == "l" || entry == "a") && digest == "sha256:layer0"),
            "{err}"
        );
        assert!(err.to_string().contains("test/image:1"), "{err}");
    }
}

#[test]
fn hard_links_to_older_layers_come_after_their_target() {
    // A link in a newer layer to a file of an older one (legitimate in Docker's layer model) is held
    // back until its target is emitted, so that an extractor can create it; chains too.
    let oldest: &[E<'_>] = &[E::Dir("bin/"), E::File("bin/tool", b"t")];
    let middle: &[E<'_>] = &[E::Hard("bin/alias", "bin/tool")];
    let newest: &[E<'_>] = &[E::Hard("bin/again", "bin/alias"), E::File("z", b"")];
    let out = run(&[oldest, middle, newest]).unwrap();
    assert_eq!(names(&out), ["z", "bin", "bin/tool", "bin/alias", "bin/again"]);
    assert_eq!(out[4].2, "bin/alias");
    // Within a layer too: a link written before its target.
    let out = run(&[&[E::Hard("l", "t"), E::File("t", b"data")]]).unwrap();
    assert_eq!(names(&out), ["t", "l"]);
    // A link whose target a newer layer replaced follows the newest target, as in
    // go-containerregistry (Docker would keep the old content under `l`).
    let old: &[E<'_>] = &[E::File("t", b"old"), E::Hard("l", "t")];
    let new: &[E<'_>] = &[E::Hard("t", "u"), E::File("u", b"new")];
    let out = run(&[old, new]).unwrap();
    assert_eq!(names(&out), ["u", "t", "l"]);
    assert_eq!((out[1].2.as_str(), out[2].2.as_str()), ("u", "t"));
}

#[test]
fn refuses_non_directories_above_emitted_entries() {
    // Go keeps both `a/x` and the file `a`; `tar -x` cannot create them. Found by the fuzz target.
    let cases: [&[&[E<'_>]]; 6] = [
        &[&[E::File("a/x", b""), E::File("a", b"")]],
        &[&[E::File("a", b"")], &[E::Dir("a/x/")]],
        &[&[E::Fifo("a")], &[E::File("a/x/y", b"")]],
        &[&[E::File("f", b""), E::Hard("a", "f")], &[E::File("a/x", b"")]],
        // A link waiting for its target, which turns out to be above it (found by the long run).
        &[&[E::Hard("a/x", "a"), E::File("a", b"")]],
        &[&[E::File("a", b"")], &[E::Hard("a/x", "a")]],
    ];
    for layers in cases {
        let err = run(layers).unwrap_err();
        assert!(
            matches!(&err, LayerError::BelowNonDirectory { digest, entry, parent, .. }
                if digest == "sha256:layer0" && entry.starts_with("a/x") && parent == "a"),
            "{err}"
        );
        assert!(err.to_string().contains("test/image:1"), "{err}");
    }
    // A newer directory over an older file is the normal case.
    assert_eq!(
        names(&run(&[&[E::File("a", b"")], &[E::Dir("a/"), E::File("a/x", b"")]]).unwrap()),
        ["a", "a/x"]
    );
}

#[test]
fn truncated_layer_names_image_layer_and_entry() {
    // Found by the fuzz target: a visitor's failed read came back as the visitor's own error,
    // without the layer (and the build reported it as a write error).
    let mut archive = tar(&[E::File("ok", b"1"), E::File("usr/bin/tool", &[7u8; 3000])]);
    archive.truncate(1024 + 2048);
    for read_data in [true, false] {
        let layers = vec![source(0, gzip(&archive))];
        let err = flatten(layers, "img:tag", |_h: &Header, data: &mut dyn Read| {
            if read_data {
                io::copy(data, &mut io::sink())?;
            }
            Ok::<(), io::Error>(())
        })
        .unwrap_err();
        assert!(
            matches!(&err, LayerError::Tar { image, digest, source }
                if image == "img:tag" && digest == "sha256:layer0"
                    && matches!(**source, TarError::EntryData { ref name, size: 3000, read: 1536, source: None, .. } if name == "usr/bin/tool")),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("remove it from the cache and pull again"),
            "{err}"
        );
    }
}

#[test]
fn cut_gzip_layer_names_image_layer_and_entry() {
    // The usual truncated layer: the compressed blob breaks off inside an entry's data.
    let noise: Vec<u8> = (0..30_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let blob = gzip(&tar(&[E::File("ok", b"1"), E::File("usr/bin/tool", &noise)]));
    let err = flatten(
        vec![source(0, blob[..blob.len() / 2].to_vec())],
        "img:tag",
        |_h: &Header, data: &mut dyn Read| io::copy(data, &mut io::sink()).map(drop),
    )
    .unwrap_err();
    assert!(
        matches!(&err, LayerError::Tar { source, .. }
            if matches!(**source, TarError::EntryData { ref name, size: 30_000, source: Some(_), .. } if name == "usr/bin/tool")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("img:tag") && text.contains("sha256:layer0") && text.contains("usr/bin/tool"),
        "{text}"
    );
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn the_uncompressed_layer_must_match_its_diff_id() {
    // Bytes after the end-of-archive marker count too: the whole stream is read.
    let mut archive = tar(&[E::File("a", b"x")]);
    archive.extend_from_slice(&[0u8; 8192]);
    let layer = || source(0, gzip(&archive));
    let visit = |_: &Header, _: &mut dyn Read| Ok::<(), io::Error>(());
    flatten(vec![layer().with_diff_id(sha256(&archive))], "img:1", visit).unwrap();
    let wrong = sha256(b"something else");
    let err = flatten(vec![layer().with_diff_id(wrong.clone())], "img:1", visit).unwrap_err();
    let LayerError::DiffIdMismatch {
        image,
        digest,
        expected,
        actual,
    } = &err
    else {
        panic!("expected a diff_id mismatch, got {err}");
    };
    assert_eq!((image.as_str(), digest.as_str()), ("img:1", "sha256:layer0"));
    assert_eq!((expected, actual), (&wrong, &sha256(&archive)));
}
