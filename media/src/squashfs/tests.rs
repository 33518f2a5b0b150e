//! Tests of the squashfs writer, read back with unsquashfs (squashfs-tools), and with a small
//! reader here for what unsquashfs does not show: link counts, and the directory index that the
//! kernel's lookup follows.

use super::*;
use crate::content::Content;
use crate::tree::{DeviceKind, Metadata, Tree};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

/// moby's fixed time, 2017-04-18T16:30:00Z.
const T: i64 = 1_492_533_000;
const BS: usize = BLOCK_SIZE as usize;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed for this test (scripts/setup.sh installs squashfs-tools): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Deterministic bytes that zlib cannot shrink (xorshift).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Bytes that compress well but differ from block to block.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0;
    while out.len() < len {
        out.extend_from_slice(format!("line {line}: the quick brown fox jumps over the lazy dog\n").as_bytes());
        line += 1;
    }
    out.truncate(len);
    out
}

fn read_all(file: &File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut file = file;
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut out).unwrap();
    out
}

fn meta(mode: u32, uid: u32, gid: u32, mtime: i64) -> Metadata {
    Metadata { mode, uid, gid, mtime }
}

/// `ls -l`'s mode string.
fn ls_mode(kind: char, mode: u32) -> String {
    let mut out = String::from(kind);
    for (i, shift) in [6, 3, 0].into_iter().enumerate() {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        let special = mode & [0o4000, 0o2000, 0o1000][i] != 0;
        out.push(match (special, bits & 1 != 0, i) {
            (true, true, 2) => 't',
            (true, false, 2) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => 'x',
            (false, false, _) => '-',
        });
    }
    out
}

/// `YYYY-MM-DD HH:MM` in UTC, as `unsquashfs -lln` shows times.
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// What one entry of the test tree is, and how `unsquashfs -lln` must show it.
enum What<'a> {
    Dir,
    File(Content<'a>),
    Symlink(String),
    Device(DeviceKind, u32, u32),
    Fifo,
}

struct Entry<'a> {
    path: String,
    what: What<'a>,
    meta: Metadata,
}

impl Entry<'_> {
    /// The `unsquashfs -lln` line with runs of spaces collapsed; `None` for a directory's size.
    fn listed(&self) -> (String, Option<String>) {
        let (kind, size, target) = match &self.what {
            What::Dir => ('d', None, String::new()),
            What::File(content) => ('-', Some(content.len().to_string()), String::new()),
            What::Symlink(target) => ('l', Some(target.len().to_string()), format!(" -> {target}")),
            What::Device(kind, major, minor) => {
                let c = if *kind == DeviceKind::Char { 'c' } else { 'b' };
                (c, Some(format!("{major}, {minor}")), String::new())
            }
            What::Fifo => ('p', Some("0".to_string()), String::new()),
        };
        let owner = format!("{}/{}", self.meta.uid, self.meta.gid);
        let time = utc(self.meta.mtime.clamp(0, i64::from(u32::MAX)));
        let head = format!("{} {owner}", ls_mode(kind, self.meta.mode));
        let tail = format!("{time} squashfs-root/{}{target}", self.path);
        (
            format!("{head} {tail}"),
            size.map(|size| format!("{head} {size} {tail}")),
        )
    }
}

/// Collapses runs of spaces.
fn words(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn add<'a>(fs: &mut Tree<'a>, entry: &Entry<'a>) {
    match &entry.what {
        What::Dir => fs.dir(&entry.path, entry.meta),
        What::File(content) => fs.file(&entry.path, *content, entry.meta),
        What::Symlink(target) => fs.symlink(&entry.path, target, entry.meta),
        What::Device(kind, major, minor) => fs.device(&entry.path, *kind, *major, *minor, entry.meta),
        What::Fifo => fs.fifo(&entry.path, entry.meta),
    }
    .unwrap();
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// A root filesystem with every kind of entry, written twice, listed, extracted and compared.
#[test]
fn a_rootfs_tree_lists_and_extracts_with_unsquashfs() {
    let dir = tempfile::tempdir().unwrap();
    let mut staged = tempfile::tempfile().unwrap();
    let random_data = random(5 * BS + 777, 1);
    staged.write_all(b"HEADER").unwrap();
    staged.write_all(&random_data).unwrap();
    let text_data = text(3 * BS + 100);
    let exact = random(BS, 2);
    let one_less = random(BS - 1, 3);
    let one_more = random(BS + 1, 4);
    let mut sparse = random(BS, 5);
    sparse.extend(vec![0; BS]);
    sparse.extend(random(BS, 6));
    sparse.extend(vec![0; 5000]);
    let zeros = vec![0u8; 2 * BS];
    let smalls: Vec<Vec<u8>> = (0..200).map(|i| random(100 + i * 37, 100 + i as u64)).collect();
    let long_target = format!("/{}/{}", "t".repeat(2000), "u".repeat(1990));
    let deep = (b'a'..=b'z')
        .map(|c| (c as char).to_string())
        .collect::<Vec<_>>()
        .join("/");

    let mut entries = vec![
        Entry {
            path: "etc".into(),
            what: What::Dir,
            meta: meta(0o755, 0, 0, T),
        },
        Entry {
            path: "etc/hostname".into(),
            what: What::File(Content::Bytes(b"moby\n")),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "etc/shadow".into(),
            what: What::File(Content::Bytes(b"root:*:0:0:::::\n")),
            meta: meta(0o640, 0, 42, T + 1),
        },
        Entry {
            path: "tmp".into(),
            what: What::Dir,
            meta: meta(0o1777, 0, 0, T),
        },
        Entry {
            path: "srv".into(),
            what: What::Dir,
            meta: meta(0o2775, 1000, 1000, -5),
        },
        Entry {
            path: "usr/bin/su".into(),
            what: What::File(Content::Bytes(b"#!/bin/sh\nexec true\n")),
            meta: meta(0o4755, 0, 0, T),
        },
        Entry {
            path: "usr/bin/sg".into(),
            what: What::File(Content::Bytes(b"sg")),
            meta: meta(0o2711, 0, 0, T),
        },
        Entry {
            path: "usr/bin/sticky".into(),
            what: What::File(Content::Bytes(b"t")),
            meta: meta(0o1644, 0, 0, T),
        },
        Entry {
            path: "usr/lib/random.bin".into(),
            what: What::File(Content::File {
                file: &staged,
                offset: 6,
                len: random_data.len() as u64,
            }),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "usr/lib/text.txt".into(),
            what: What::File(Content::Bytes(&text_data)),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "usr/lib/exact".into(),
            what: What::File(Content::Bytes(&exact)),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "usr/lib/one-less".into(),
            what: What::File(Content::Bytes(&one_less)),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "usr/lib/one-more".into(),
            what: What::File(Content::Bytes(&one_more)),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "var/empty".into(),
            what: What::File(Content::Bytes(b"")),
            meta: meta(0o600, 0, 0, T),
        },
        Entry {
            path: "var/sparse".into(),
            what: What::File(Content::Bytes(&sparse)),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: "var/zeros".into(),
            what: What::File(Content::Bytes(&zeros)),
            meta: meta(0o644, 0, 0, T),
        },
        Entry {
            path: format!("{deep}/deep.txt"),
            what: What::File(Content::Bytes(b"deep\n")),
            meta: meta(0o444, 0, 0, T),
        },
        Entry {
            path: "bin".into(),
            what: What::Symlink("usr/bin".into()),
            meta: meta(0o777, 0, 0, T),
        },
        Entry {
            path: "long".into(),
            what: What::Symlink(long_target.clone()),
            meta: meta(0o777, 0, 0, T),
        },
        Entry {
            path: "dev/null".into(),
            what: What::Device(DeviceKind::Char, 1, 3),
            meta: meta(0o666, 0, 0, T),
        },
        Entry {
            path: "dev/sda".into(),
            what: What::Device(DeviceKind::Block, 8, 0),
            meta: meta(0o660, 0, 6, T),
        },
        Entry {
            path: "dev/initctl".into(),
            what: What::Fifo,
            meta: meta(0o600, 5, 0, T),
        },
        Entry {
            path: "home/user/file".into(),
            what: What::File(Content::Bytes(b"mine\n")),
            meta: meta(0o600, 100_000, 65_534, 3_000_000_000),
        },
    ];
    for (i, small) in smalls.iter().enumerate() {
        entries.push(Entry {
            path: format!("usr/share/small/f{i:03}"),
            what: What::File(Content::Bytes(small)),
            meta: meta(0o644, 0, 0, T),
        });
    }
    // Two devices whose numbers unsquashfs lists oddly (minor over 255), checked when extracted.
    let odd_devices = [
        ("odd/tty300", DeviceKind::Char, 4, 300),
        ("odd/big", DeviceKind::Block, 259, 70_000),
    ];
    let links = [
        ("sbin/su-link", "usr/bin/su"),
        ("usr/sbin/su2", "usr/bin/su"),
        ("bin2", "bin"),
    ];
    let root = meta(0o755, 0, 0, T - 100);
    let build = || {
        let mut fs = Tree::new(T);
        fs.set_root(root);
        for entry in &entries {
            add(&mut fs, entry);
        }
        for (path, kind, major, minor) in odd_devices {
            fs.device(path, kind, major, minor, meta(0o600, 0, 0, T)).unwrap();
        }
        for (path, target) in links {
            fs.hard_link(path, target).unwrap();
        }
        let image = tempfile::tempfile().unwrap();
        let layout = write(&fs, &image).unwrap();
        (image, layout)
    };
    let (image, layout) = build();
    let (again, layout_again) = build();
    let bytes = read_all(&image);
    assert_eq!(layout, layout_again);
    assert!(bytes == read_all(&again), "the same tree gave different images");
    assert_eq!(bytes.len() as u64, layout.image_len);
    assert_eq!(layout.image_len % 4096, 0);
    assert!(layout.bytes_used <= layout.image_len && layout.image_len - layout.bytes_used < 4096);
    // Random data is stored, text shrinks, zeros take no room: compare with the random bytes.
    let random_bytes = (random_data.len() + exact.len() + one_less.len() + one_more.len() + 2 * BS) as u64
        + smalls.iter().map(|s| s.len() as u64).sum::<u64>();
    assert!(
        layout.bytes_used < random_bytes + text_data.len() as u64 / 5 + 64 * 1024,
        "{layout:?}: {random_bytes} random bytes"
    );
    // 200 small files of 100..7500 bytes: about 750 KB of fragments.
    assert!(layout.fragments >= 6, "{layout:?}");
    // Ids 0, 5, 6, 42, 1000, 65534, 100000.
    assert_eq!(layout.ids, 7);
    let path = dir.path().join("rootfs.img");
    std::fs::write(&path, &bytes).unwrap();
    let image_arg = path.to_str().unwrap();

    let stat = run("unsquashfs", &["-s", image_arg]);
    for expected in [
        "Found a valid SQUASHFS 4:0 superblock",
        "Creation or last append time Tue Apr 18 16:30:00 2017",
        &format!("Filesystem size {} bytes", layout.bytes_used),
        "Compression gzip",
        "Block size 131072",
        "Xattrs are not stored",
        &format!("Number of fragments {}", layout.fragments),
        &format!("Number of inodes {}", layout.inodes),
        "Number of ids 7",
    ] {
        assert!(stat.contains(expected), "unsquashfs -s lacks {expected:?}:\n{stat}");
    }

    let listing = run("unsquashfs", &["-lln", image_arg]);
    let listed: HashMap<String, String> = listing
        .lines()
        .filter(|line| line.contains("squashfs-root"))
        .map(|line| {
            let path = line
                .split_whitespace()
                .find(|w| w.starts_with("squashfs-root"))
                .unwrap();
            (path.to_string(), words(line))
        })
        .collect();
    let mut expected_count = 1;
    for entry in &entries {
        let line = listed
            .get(&format!("squashfs-root/{}", entry.path))
            .unwrap_or_else(|| panic!("{} is not listed:\n{listing}", entry.path));
        match entry.listed() {
            (_, Some(full)) => assert_eq!(line, &full),
            (without_size, None) => {
                let mut got: Vec<&str> = line.split(' ').collect();
                got.remove(2);
                assert_eq!(got.join(" "), without_size);
            }
        }
        expected_count += 1;
    }
    let root_line = words(listing.lines().find(|l| l.ends_with(" squashfs-root")).unwrap());
    assert!(root_line.starts_with("drwxr-xr-x 0/0 "), "{root_line}");
    assert!(
        root_line.ends_with(&format!("{} squashfs-root", utc(T - 100))),
        "{root_line}"
    );
    // Hard links show as their target; implicit directories with the writer's time.
    let su = &listed["squashfs-root/usr/bin/su"];
    assert_eq!(
        listed["squashfs-root/sbin/su-link"],
        su.replace("usr/bin/su", "sbin/su-link")
    );
    assert_eq!(
        listed["squashfs-root/bin2"],
        listed["squashfs-root/bin"].replace("/bin ->", "/bin2 ->")
    );
    assert!(listed["squashfs-root/usr/share"].starts_with("drwxr-xr-x 0/0 "));
    assert!(listed["squashfs-root/usr/share"].contains(&utc(T)));
    // Every directory on the deep path, the odd devices, links and implicit directories.
    expected_count += 25 + 2 + links.len() + ["usr", "usr/bin", "usr/lib", "usr/share", "usr/share/small"].len();
    expected_count += ["var", "dev", "home", "home/user", "odd", "sbin", "usr/sbin", "a"].len();
    assert_eq!(listed.len(), expected_count, "{listing}");

    // Extract (as root: with owners and device nodes) and compare.
    let out = dir.path().join("out");
    let mut args = vec!["-d", out.to_str().unwrap(), "-n"];
    if !is_root() {
        args.extend(["-excludes", image_arg, "dev", "odd"]);
    } else {
        args.push(image_arg);
    }
    run("unsquashfs", &args);
    for entry in &entries {
        let at = out.join(&entry.path);
        if !is_root() && (entry.path.starts_with("dev/") || entry.path.starts_with("odd/")) {
            continue;
        }
        let found = std::fs::symlink_metadata(&at).unwrap_or_else(|e| panic!("{}: {e}", entry.path));
        assert_eq!(found.mode() & 0o7777, entry.meta.mode, "{}", entry.path);
        if is_root() {
            assert_eq!(
                (found.uid(), found.gid()),
                (entry.meta.uid, entry.meta.gid),
                "{}",
                entry.path
            );
        }
        if !matches!(entry.what, What::Dir | What::Symlink(_)) {
            assert_eq!(found.mtime(), entry.meta.mtime.max(0), "{}", entry.path);
        }
        match &entry.what {
            What::Dir => assert!(found.is_dir()),
            What::File(content) => {
                let mut expected = Vec::new();
                content.copy_to(&mut expected).unwrap();
                let got = std::fs::read(&at).unwrap();
                assert!(got == expected, "{} differs after extraction", entry.path);
            }
            What::Symlink(target) => assert_eq!(std::fs::read_link(&at).unwrap(), Path::new(target)),
            What::Device(kind, major, minor) => {
                assert_eq!(found.file_type().is_char_device(), *kind == DeviceKind::Char);
                assert_eq!(found.file_type().is_block_device(), *kind == DeviceKind::Block);
                assert_eq!(rustix::fs::major(found.rdev()), *major);
                assert_eq!(rustix::fs::minor(found.rdev()), *minor);
            }
            What::Fifo => assert!(found.file_type().is_fifo()),
        }
    }
    if is_root() {
        for (path, kind, major, minor) in odd_devices {
            let found = std::fs::symlink_metadata(out.join(path)).unwrap();
            assert_eq!(found.file_type().is_char_device(), kind == DeviceKind::Char, "{path}");
            assert_eq!(
                (rustix::fs::major(found.rdev()), rustix::fs::minor(found.rdev())),
                (major, minor),
                "{path}"
            );
        }
    }
    let su = std::fs::metadata(out.join("usr/bin/su")).unwrap();
    assert_eq!(su.nlink(), 3);
    assert_eq!(std::fs::metadata(out.join("usr/sbin/su2")).unwrap().ino(), su.ino());

    // What unsquashfs does not show: the link counts in the inodes.
    let reader = Reader::new(&bytes);
    let root_inode = reader.inode(reader.root);
    // etc, tmp, srv, usr, var, a, dev, home, odd, sbin.
    assert_eq!(root_inode.nlink, 2 + 10);
    assert_eq!(reader.inode(reader.lookup_path("usr/bin/su")).nlink, 3);
    assert_eq!(
        reader.inode(reader.lookup_path("usr/bin/su")).kind,
        9,
        "a hard-linked file is an extended inode"
    );
    assert_eq!(reader.inode(reader.lookup_path("bin2")).nlink, 2);
    assert_eq!(reader.inode(reader.lookup_path("etc/hostname")).kind, 2);
    assert_eq!(
        reader.inode(reader.lookup_path("var/sparse")).kind,
        9,
        "a sparse file is extended"
    );
    assert_eq!(reader.inode(reader.lookup_path("usr")).nlink, 2 + 4);
    assert_eq!(reader.inode(reader.lookup_path(&deep)).nlink, 2);
}

/// A directory of thousands of entries (files, symlinks, subdirectories, hard links to far-away
/// inodes) gets several headers and a directory index; every name is found following the index
/// as the kernel's lookup does, and unsquashfs lists them all.
#[test]
fn a_large_directory_is_indexed_for_lookup() {
    let mut fs = Tree::new(T);
    fs.file("aaa/target", Content::Bytes(b"far away"), meta(0o644, 0, 0, T))
        .unwrap();
    let name = |i: usize| format!("entry-with-a-rather-long-name-{i:05}");
    let count = 2500;
    for i in 0..count {
        let path = format!("big/{}", name(i));
        match i % 7 {
            0 => fs.symlink(&path, "elsewhere", meta(0o777, 0, 0, T)).unwrap(),
            1 => fs.dir(&path, meta(0o755, 0, 0, T)).unwrap(),
            2 => fs.hard_link(&path, "aaa/target").unwrap(),
            _ => fs
                .file(&path, Content::Bytes(b"x"), meta(0o644, i as u32 % 3, 0, T))
                .unwrap(),
        }
    }
    fs.file("zzz/after", Content::Bytes(b"after"), meta(0o644, 0, 0, T))
        .unwrap();
    let image = tempfile::tempfile().unwrap();
    write(&fs, &image).unwrap();
    let bytes = read_all(&image);
    let reader = Reader::new(&bytes);
    let big = reader.inode(reader.lookup_path("big"));
    let dir = big.dir.as_ref().unwrap();
    assert_eq!(big.kind, 8, "a large directory is an extended directory inode");
    assert!(dir.index.len() >= 10, "{} index entries", dir.index.len());
    assert!(dir.size > 65_535);
    assert_eq!(big.nlink, 2 + (count as u32 - 1).div_ceil(7));
    let target_links = 1 + (count as u32 - 2).div_ceil(7);
    for i in 0..count {
        let found = reader
            .lookup(&big, &name(i))
            .unwrap_or_else(|| panic!("{} is not found through the index", name(i)));
        let inode = reader.inode(found);
        let expected_kind = match i % 7 {
            0 => 3,
            1 => 1,
            2 => 9,
            _ => 2,
        };
        assert_eq!(inode.kind, expected_kind, "{}", name(i));
        if i % 7 == 2 {
            assert_eq!(inode.nlink, target_links);
        }
    }
    for absent in ["a", "entry-with-a-rather-long-name-00500x", "zzzz", "entry"] {
        assert!(reader.lookup(&big, absent).is_none(), "{absent}");
    }
    assert_eq!(reader.inode(reader.lookup_path("zzz/after")).kind, 2);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.img");
    std::fs::write(&path, &bytes).unwrap();
    let listing = run("unsquashfs", &["-l", path.to_str().unwrap()]);
    for i in 0..count {
        assert!(
            listing.contains(&format!("squashfs-root/big/{}\n", name(i))),
            "{}",
            name(i)
        );
    }
    let out = dir.path().join("out");
    run(
        "unsquashfs",
        &["-n", "-d", out.to_str().unwrap(), path.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::metadata(out.join("aaa/target")).unwrap().nlink() as u32,
        target_links
    );
    assert_eq!(std::fs::read_dir(out.join("big")).unwrap().count(), count);
}

/// The bytes do not depend on how many threads compress (blocks finish out of order).
#[test]
fn the_image_does_not_depend_on_the_number_of_threads() {
    let data: Vec<Vec<u8>> = (0..12)
        .map(|i| match i % 3 {
            0 => random(3 * BS + i * 1000, i as u64),
            1 => text(2 * BS + i * 777),
            _ => random(i * 5000 + 1, i as u64),
        })
        .collect();
    let mut fs = Tree::new(T);
    for (i, bytes) in data.iter().enumerate() {
        fs.file(&format!("d{}/f{i}", i % 4), Content::Bytes(bytes), meta(0o644, 0, 0, T))
            .unwrap();
    }
    let images: Vec<Vec<u8>> = [1, 2, 5]
        .into_iter()
        .map(|threads| {
            let image = tempfile::tempfile().unwrap();
            write::write(&fs, &image, threads).unwrap();
            read_all(&image)
        })
        .collect();
    assert!(images[0] == images[1] && images[0] == images[2]);
}

#[test]
fn an_empty_tree_is_a_valid_image() {
    let fs = Tree::new(0);
    let image = tempfile::tempfile().unwrap();
    let layout = write(&fs, &image).unwrap();
    assert_eq!((layout.inodes, layout.fragments, layout.ids), (1, 0, 1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.img");
    std::fs::write(&path, read_all(&image)).unwrap();
    let listing = run("unsquashfs", &["-lln", path.to_str().unwrap()]);
    assert_eq!(
        words(listing.lines().last().unwrap()),
        "drwxr-xr-x 0/0 3 1970-01-01 00:00 squashfs-root"
    );
}

#[test]
fn mistakes_are_refused_with_the_path_in_the_message() {
    let mut fs = Tree::new(T);
    let m = meta(0o644, 0, 0, T);
    fs.file("etc/passwd", Content::Bytes(b"x"), m).unwrap();
    fs.dir("etc", meta(0o700, 0, 0, T)).unwrap();
    let message = |e: crate::tree::TreeError| e.to_string();
    assert!(message(fs.file("/etc/passwd", Content::Bytes(b"y"), m).unwrap_err()).contains("\"etc/passwd\" is already"));
    assert!(message(fs.dir("etc/passwd", m).unwrap_err()).contains("already"));
    assert!(message(fs.fifo("etc/passwd/x", m).unwrap_err()).contains("\"etc/passwd\" is not a directory"));
    assert!(message(fs.fifo("../x", m).unwrap_err()).contains("\"..\""));
    assert!(message(fs.fifo("/", m).unwrap_err()).contains("root"));
    assert!(message(fs.fifo(&"n".repeat(256), m).unwrap_err()).contains("255 bytes"));
    assert!(message(fs.symlink("l", "", m).unwrap_err()).contains("symlink target"));
    assert!(message(fs.hard_link("h", "etc").unwrap_err()).contains("is a directory"));
    assert!(message(fs.hard_link("h", "nope").unwrap_err()).contains("\"nope\" is not in the tree"));
    let message = |e: SquashfsError| e.to_string();
    let image = tempfile::tempfile().unwrap();
    for (major, minor, number) in [(4096, 0, "4096:0"), (1, 1 << 20, "1:1048576")] {
        let mut tree = Tree::new(T);
        tree.device("/dev/d", DeviceKind::Char, major, minor, m).unwrap();
        let err = message(write(&tree, &image).unwrap_err());
        assert!(err.contains(&format!("device \"dev/d\" has number {number}")), "{err}");
    }

    let mut staged = tempfile::tempfile().unwrap();
    staged.write_all(&[1; 1000]).unwrap();
    fs.file(
        "usr/short",
        Content::File {
            file: &staged,
            offset: 0,
            len: 300_000,
        },
        m,
    )
    .unwrap();
    let err = message(write(&fs, &image).unwrap_err());
    assert!(
        err.contains("/usr/short (300000 bytes)") && err.contains("ended"),
        "{err}"
    );
}

/// Just enough of a squashfs reader to check inodes and follow directories like the kernel.
struct Reader {
    inodes: Table,
    dirs: Table,
    root: u64,
}

/// A metadata table, decompressed, with where each block starts in it.
struct Table {
    bytes: Vec<u8>,
    blocks: HashMap<u32, usize>,
}

impl Table {
    fn read(image: &[u8], start: usize, end: usize) -> Table {
        let mut table = Table {
            bytes: Vec::new(),
            blocks: HashMap::new(),
        };
        let mut at = start;
        while at < end {
            let header = u16::from_le_bytes([image[at], image[at + 1]]);
            let len = usize::from(header & 0x7fff);
            table.blocks.insert((at - start) as u32, table.bytes.len());
            let raw = &image[at + 2..at + 2 + len];
            if header & 0x8000 != 0 {
                table.bytes.extend_from_slice(raw);
            } else {
                flate2::read::ZlibDecoder::new(raw)
                    .read_to_end(&mut table.bytes)
                    .unwrap();
            }
            at += 2 + len;
        }
        table
    }

    fn at(&self, block: u32, offset: usize) -> &[u8] {
        &self.bytes[self.blocks[&block] + offset..]
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Inode {
    kind: u16,
    nlink: u32,
    dir: Option<DirInode>,
}

struct DirInode {
    start: u32,
    offset: usize,
    size: usize,
    /// (listing offset, block, first name).
    index: Vec<(usize, u32, String)>,
}

impl Reader {
    fn new(image: &[u8]) -> Reader {
        assert_eq!(&image[..4], b"hsqs");
        let fragments = u32_at(image, 16);
        let (root, id_table, inode_table, dir_table, fragment_table) = (
            u64_at(image, 32),
            u64_at(image, 48) as usize,
            u64_at(image, 64) as usize,
            u64_at(image, 72) as usize,
            u64_at(image, 80) as usize,
        );
        let dir_end = if fragments > 0 {
            u64_at(image, fragment_table)
        } else {
            u64_at(image, id_table)
        };
        Reader {
            inodes: Table::read(image, inode_table, dir_table),
            dirs: Table::read(image, dir_table, dir_end as usize),
            root,
        }
    }

    fn inode(&self, reference: u64) -> Inode {
        let b = self.inodes.at((reference >> 16) as u32, (reference & 0xffff) as usize);
        let kind = u16_at(b, 0);
        let mut inode = Inode {
            kind,
            nlink: 1,
            dir: None,
        };
        match kind {
            1 => {
                inode.nlink = u32_at(b, 20);
                inode.dir = Some(DirInode {
                    start: u32_at(b, 16),
                    offset: usize::from(u16_at(b, 26)),
                    size: usize::from(u16_at(b, 24)),
                    index: Vec::new(),
                });
            }
            8 => {
                inode.nlink = u32_at(b, 16);
                let mut index = Vec::new();
                let mut at = 40;
                for _ in 0..u16_at(b, 32) {
                    let len = u32_at(b, at + 8) as usize + 1;
                    let name = String::from_utf8(b[at + 12..at + 12 + len].to_vec()).unwrap();
                    index.push((u32_at(b, at) as usize, u32_at(b, at + 4), name));
                    at += 12 + len;
                }
                inode.dir = Some(DirInode {
                    start: u32_at(b, 24),
                    offset: usize::from(u16_at(b, 34)),
                    size: u32_at(b, 20) as usize,
                    index,
                });
            }
            2 => {}
            9 => inode.nlink = u32_at(b, 40),
            3..=7 => inode.nlink = u32_at(b, 16),
            _ => panic!("inode type {kind}"),
        }
        inode
    }

    /// The kernel's squashfs_lookup: skip ahead with the index, then scan headers and entries.
    fn lookup(&self, dir: &Inode, name: &str) -> Option<u64> {
        let dir = dir.dir.as_ref()?;
        let (mut block, mut skipped) = (dir.start, 0);
        for (at, start, first) in &dir.index {
            if first.as_str() > name {
                break;
            }
            (block, skipped) = (*start, *at);
        }
        let listing = self.dirs.at(block, (dir.offset + skipped) % 8192);
        let (mut at, mut length) = (0, skipped + 3);
        while length < dir.size {
            let count = u32_at(listing, at) + 1;
            assert!(count <= 256, "a directory header with {count} entries");
            let start = u32_at(listing, at + 4);
            at += 12;
            length += 12;
            for _ in 0..count {
                let offset = u16_at(listing, at);
                let len = usize::from(u16_at(listing, at + 6)) + 1;
                let entry = &listing[at + 8..at + 8 + len];
                at += 8 + len;
                length += 8 + len;
                if entry == name.as_bytes() {
                    return Some((u64::from(start) << 16) | u64::from(offset));
                }
            }
        }
        None
    }

    fn lookup_path(&self, path: &str) -> u64 {
        path.split('/').fold(self.root, |at, name| {
            self.lookup(&self.inode(at), name)
                .unwrap_or_else(|| panic!("{name} of {path} not found"))
        })
    }
}
