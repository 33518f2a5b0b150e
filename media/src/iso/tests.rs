//! Tests of the ISO writer, read back with isoinfo (genisoimage), xorriso, sfdisk and mtools.

use super::*;
use crate::tree::{DeviceKind, Metadata, Tree, TreeError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::process::Command;

/// moby's fixed time, 2017-04-18T16:30:00Z.
const T: i64 = 1_492_533_000;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test (scripts/setup.sh installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn extract(iso: &std::path::Path, path: &str) -> Vec<u8> {
    let output = Command::new("isoinfo")
        .args(["-R", "-x", path, "-i"])
        .arg(iso)
        .output()
        .expect("isoinfo (genisoimage) is installed");
    assert!(output.status.success());
    output.stdout
}

fn file_meta(mode: u32) -> Metadata {
    Metadata::new(mode, T)
}

/// Bytes that differ from sector to sector, so that a misplaced sector shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn read_all(file: &File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut file = file;
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut out).unwrap();
    out
}

/// A tree with everything a root filesystem has, written twice.
#[test]
fn a_rootfs_tree_reads_back_with_rock_ridge() {
    let dir = tempfile::tempdir().unwrap();
    let mut big_source = tempfile::tempfile().unwrap();
    let big = pattern(5 << 20, 1);
    big_source.write_all(b"HEADER").unwrap();
    big_source.write_all(&big).unwrap();
    let small = pattern(3000, 2);
    let long_name = "n".repeat(200) + ".conf";
    let long_target = format!("/{}/{}", "t".repeat(200), "u".repeat(150));
    let build = || {
        let mut tree = Tree::new(T);
        tree.file(
            "usr/lib/big.bin",
            Content::File {
                file: &big_source,
                offset: 6,
                len: big.len() as u64,
            },
            file_meta(0o644),
        )
        .unwrap();
        tree.file(
            "a/b/c/d/e/f/g/h/i/j/deep.txt",
            Content::Bytes(b"deep\n"),
            file_meta(0o600),
        )
        .unwrap();
        tree.file("etc/small", Content::Bytes(&small), file_meta(0o640))
            .unwrap();
        tree.file("etc/empty", Content::Bytes(b""), file_meta(0o644)).unwrap();
        tree.file(&format!("etc/{long_name}"), Content::Bytes(b"long\n"), file_meta(0o644))
            .unwrap();
        tree.file(
            "bin/busybox",
            Content::Bytes(b"#!bin\n"),
            Metadata {
                mode: 0o4755,
                uid: 0,
                gid: 0,
                mtime: T,
            },
        )
        .unwrap();
        tree.hard_link("bin/sh", "bin/busybox").unwrap();
        tree.symlink("bin/ls", "busybox", file_meta(0o777)).unwrap();
        tree.symlink("lib/far", &long_target, file_meta(0o777)).unwrap();
        tree.symlink("lib/up", "../etc/./small", file_meta(0o777)).unwrap();
        tree.device("dev/console", DeviceKind::Char, 5, 1, file_meta(0o600))
            .unwrap();
        tree.device("dev/sda", DeviceKind::Block, 8, 0, file_meta(0o660))
            .unwrap();
        tree.fifo("run/pipe", file_meta(0o644)).unwrap();
        tree.dir(
            "home/user",
            Metadata {
                mode: 0o750,
                uid: 1000,
                gid: 100,
                mtime: T - 86_400,
            },
        )
        .unwrap();
        tree.file("Kernel", Content::Bytes(b"upper"), file_meta(0o644)).unwrap();
        tree.file("kernel", Content::Bytes(b"lower"), file_meta(0o644)).unwrap();
        tree
    };
    let write = |image: &File| Iso::new("LinuxKit", &build()).unwrap().write(image).unwrap();
    let path = dir.path().join("root.iso");
    let image = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let layout = write(&image);
    let again = tempfile::tempfile().unwrap();
    assert_eq!(write(&again), layout);
    let bytes = read_all(&image);
    assert_eq!(bytes, read_all(&again), "same tree, same bytes");
    assert_eq!(bytes.len() as u64, layout.image_len);
    assert_eq!(layout.image_len, u64::from(layout.volume_sectors) * SECTOR);
    let last_data = layout
        .files
        .iter()
        .map(|f| u64::from(f.lba) + f.len.div_ceil(SECTOR))
        .max()
        .unwrap();
    assert_eq!(u64::from(layout.volume_sectors), last_data + 150, "150 padding sectors");
    assert!(bytes[(last_data * SECTOR) as usize..].iter().all(|&b| b == 0));

    // The layout tells where each file is.
    let placed = |p: &str| layout.files.iter().find(|f| f.path == p).unwrap().clone();
    let big_at = placed("usr/lib/big.bin");
    assert_eq!(
        &bytes[(u64::from(big_at.lba) * SECTOR) as usize..][..big.len()],
        &big[..]
    );
    assert_eq!(
        layout.files.iter().filter(|f| f.path.starts_with("bin/")).count(),
        1,
        "one copy of a hard-linked file"
    );

    let info = run("isoinfo", &["-d", "-i", path.to_str().unwrap()]);
    assert!(info.contains("Volume id: LinuxKit"), "{info}");
    assert!(info.contains("Rock Ridge signatures version 1 found"), "{info}");
    assert!(
        info.contains(&format!("Volume size is: {}", layout.volume_sectors)),
        "{info}"
    );

    let listing = run("isoinfo", &["-R", "-f", "-i", path.to_str().unwrap()]);
    let names: Vec<&str> = listing.lines().collect();
    for expected in [
        "/usr/lib/big.bin",
        "/a/b/c/d/e/f/g/h/i/j/deep.txt",
        &format!("/etc/{long_name}"),
        "/bin/sh",
        "/bin/ls",
        "/dev/console",
        "/run/pipe",
        "/home/user",
        "/Kernel",
        "/kernel",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert_eq!(extract(&path, "/usr/lib/big.bin"), big);
    assert_eq!(extract(&path, "/etc/small"), small);
    assert_eq!(extract(&path, "/etc/empty"), b"");
    assert_eq!(extract(&path, "/a/b/c/d/e/f/g/h/i/j/deep.txt"), b"deep\n");
    assert_eq!(extract(&path, &format!("/etc/{long_name}")), b"long\n");
    assert_eq!(extract(&path, "/bin/sh"), b"#!bin\n");
    assert_eq!(extract(&path, "/Kernel"), b"upper");
    assert_eq!(extract(&path, "/kernel"), b"lower");

    // xorriso reads modes, owners, link counts, symlink targets and device numbers.
    let long = run(
        "xorriso",
        &["-indev", path.to_str().unwrap(), "-find", "/", "-exec", "lsdl", "--"],
    );
    for complaint in ["WARNING", "SORRY", "FAILURE"] {
        assert!(!long.contains(complaint), "xorriso complains:\n{long}");
    }
    let line = |name: &str| {
        long.lines()
            .find(|l| l.ends_with(name) || l.contains(&format!("'{name}'")))
            .unwrap_or_else(|| panic!("{name} not in {long}"))
            .to_string()
    };
    assert!(line("/bin/busybox").starts_with("-rwsr-xr-x    1 0        0"), "{long}");
    assert!(line("/bin/ls").starts_with("lrwxrwxrwx"), "{long}");
    assert!(line("/bin/ls").contains("-> 'busybox'"), "{long}");
    assert!(line("/lib/far").contains(&format!("-> '{long_target}'")), "{long}");
    assert!(line("/lib/up").contains("-> '../etc/./small'"), "{long}");
    assert!(line("/dev/console").starts_with("crw-------"), "{long}");
    assert!(line("/dev/console").contains("5,1"), "{long}");
    assert!(line("/dev/sda").starts_with("brw-rw----"), "{long}");
    assert!(line("/dev/sda").contains("8,0"), "{long}");
    assert!(line("/run/pipe").starts_with("prw-r--r--"), "{long}");
    assert!(line("/home/user").starts_with("drwxr-x---    1 1000     100"), "{long}");
    assert!(
        line("/etc/small").starts_with("-rw-r-----    1 0        0            3000 Apr 18  2017"),
        "{long}"
    );

    // isoinfo shows the link counts: directories 2 + subdirectories, hard links both names.
    let ls = run("isoinfo", &["-R", "-l", "-i", path.to_str().unwrap()]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("drwxr-xr-x  10 ") && l.ends_with("]  . ")),
        "{ls}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("-rwxr-xr-x   2 ") && l.ends_with("]  busybox ")),
        "{ls}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("-rwxr-xr-x   2 ") && l.ends_with("]  sh ")),
        "{ls}"
    );
    // Without Rock Ridge, readers see ISO 9660 names.
    let plain = run("isoinfo", &["-f", "-i", path.to_str().unwrap()]);
    assert!(plain.lines().any(|l| l == "/ETC/SMALL.;1"), "{plain}");
    assert!(
        plain.lines().any(|l| l == "/KERNEL.;1") && plain.lines().any(|l| l == "/KERNEL000.;1"),
        "{plain}"
    );
}

/// A fake isolinux.bin: a few sectors with the isohybrid signature at 0x40.
fn fake_isolinux() -> Vec<u8> {
    let mut bytes = pattern(5000, 3);
    bytes[0x40..0x44].copy_from_slice(&0x7078_c0fbu32.to_le_bytes());
    bytes
}

#[test]
fn bios_boot_with_boot_info_table_and_isohybrid_mbr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bios.iso");
    let isolinux = fake_isolinux();
    let mbr_code = pattern(432, 4);
    let kernel = pattern(100_000, 5);
    let build = |image: &File| {
        let mut tree = Tree::new(T);
        tree.file("isolinux/isolinux.bin", Content::Bytes(&isolinux), file_meta(0o644))
            .unwrap();
        tree.file("isolinux/ldlinux.c32", Content::Bytes(b"ldlinux"), file_meta(0o644))
            .unwrap();
        tree.file(
            "isolinux/isolinux.cfg",
            Content::Bytes(b"DEFAULT linux\n"),
            file_meta(0o644),
        )
        .unwrap();
        tree.file("boot/kernel", Content::Bytes(&kernel), file_meta(0o644))
            .unwrap();
        let mut iso = Iso::new("LinuxKit", &tree).unwrap();
        iso.set_el_torito(ElTorito {
            bios: Some(BiosBoot {
                image: BootImage::Path("isolinux/isolinux.bin".into()),
                load_sectors: 4,
                boot_info_table: true,
            }),
            efi: None,
            catalog: Some("isolinux/boot.cat".into()),
        });
        iso.set_hybrid_mbr(HybridMbr {
            boot_code: Some(&mbr_code),
            disk_signature: 0x1122_3344,
            efi_partition: false,
        });
        iso.write(image).unwrap()
    };
    let image = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let layout = build(&image);
    let again = tempfile::tempfile().unwrap();
    build(&again);
    let bytes = read_all(&image);
    assert_eq!(bytes, read_all(&again), "same input, same bytes");
    assert_eq!(bytes.len() % (1 << 20), 0, "isohybrid pads to whole 1 MiB cylinders");
    let bios_lba = layout.bios_lba.unwrap();
    assert_eq!(
        layout.files[0].path, "isolinux/isolinux.bin",
        "the boot file comes first"
    );

    // The boot info table, as isolinux checks it.
    let at = (u64::from(bios_lba) * SECTOR) as usize;
    let boot = &bytes[at..at + isolinux.len()];
    let le = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    assert_eq!(le(&boot[8..12]), 16);
    assert_eq!(le(&boot[12..16]), bios_lba);
    assert_eq!(le(&boot[16..20]) as usize, isolinux.len());
    let mut padded = boot[64..].to_vec();
    padded.resize(padded.len().div_ceil(4) * 4, 0);
    let sum = padded.chunks(4).fold(0u32, |s, w| s.wrapping_add(le(w)));
    assert_eq!(le(&boot[20..24]), sum);
    assert!(boot[24..64].iter().all(|&b| b == 0));
    assert_eq!(&boot[64..], &isolinux[64..]);
    assert_eq!(&boot[..8], &isolinux[..8]);

    // The MBR, as isohybrid writes it.
    assert_eq!(&bytes[..432], &mbr_code[..]);
    assert_eq!(
        u64::from_le_bytes(bytes[432..440].try_into().unwrap()),
        u64::from(bios_lba) * 4
    );
    assert_eq!(le(&bytes[440..444]), 0x1122_3344);

    let p = path.to_str().unwrap();
    let info = run("isoinfo", &["-d", "-i", p]);
    assert!(info.contains("El Torito VD version 1 found"), "{info}");
    let report = run(
        "xorriso",
        &[
            "-indev",
            p,
            "-report_el_torito",
            "plain",
            "-report_system_area",
            "plain",
        ],
    );
    let has = |needle: &str| assert!(report.contains(needle), "{needle:?} not in\n{report}");
    has(&format!("El Torito catalog  : {}  1", layout.catalog_lba.unwrap()));
    has("El Torito cat path : /isolinux/boot.cat");
    has(&format!(
        "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4 {bios_lba:>11}"
    ));
    has("El Torito img path :   1  /isolinux/isolinux.bin");
    has("El Torito img opts :   1  boot-info-table isohybrid-suitable");
    has("System area summary: MBR cyl-align-on");
    has(&format!(
        "MBR partition      :   1   0x80  0x17            0 {:>12}",
        bytes.len() / 512
    ));
    let table = run("sfdisk", &["-d", p]);
    assert!(table.contains("label-id: 0x11223344"), "{table}");
    assert!(
        table.contains(&format!(
            "start=           0, size={:>12}, type=17, bootable",
            bytes.len() / 512
        )),
        "{table}"
    );
    assert_eq!(extract(&path, "/isolinux/isolinux.cfg"), b"DEFAULT linux\n");
    assert_eq!(extract(&path, "/isolinux/isolinux.bin"), boot);
}

/// A FAT image with EFI/BOOT/BOOTX64.EFI, made with dosfstools and mtools.
fn fat_image(dir: &std::path::Path, kib: u32, efi: &[u8]) -> File {
    let image = dir.join("efi.img");
    let app = dir.join("BOOTX64.EFI");
    std::fs::write(&app, efi).unwrap();
    let (image_s, app_s) = (image.to_str().unwrap(), app.to_str().unwrap());
    run("mkfs.fat", &["-C", image_s, &kib.to_string()]);
    run("mmd", &["-i", image_s, "::/EFI", "::/EFI/BOOT"]);
    run("mcopy", &["-i", image_s, app_s, "::/EFI/BOOT/BOOTX64.EFI"]);
    File::open(&image).unwrap()
}

#[test]
fn efi_boot_image_hidden_with_an_efi_partition() {
    let dir = tempfile::tempdir().unwrap();
    let app = pattern(300_000, 6);
    let fat = fat_image(dir.path(), 2048, &app);
    let path = dir.path().join("efi.iso");
    let image = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut tree = Tree::new(T);
    tree.file(
        "EFI/BOOT/grub.cfg",
        Content::Bytes(b"set timeout=0\n"),
        file_meta(0o644),
    )
    .unwrap();
    tree.file("boot/kernel", Content::Bytes(b"kernel"), file_meta(0o644))
        .unwrap();
    let mut iso = Iso::new("LinuxKit", &tree).unwrap();
    iso.set_el_torito(ElTorito {
        bios: None,
        efi: Some(EfiBoot {
            image: BootImage::Hidden(Content::file(&fat).unwrap()),
        }),
        catalog: None,
    });
    iso.set_hybrid_mbr(HybridMbr {
        boot_code: None,
        disk_signature: 7,
        efi_partition: true,
    });
    let layout = iso.write(&image).unwrap();
    let efi_lba = layout.efi_lba.unwrap();
    let p = path.to_str().unwrap();

    let report = run(
        "xorriso",
        &[
            "-indev",
            p,
            "-report_el_torito",
            "plain",
            "-report_system_area",
            "plain",
        ],
    );
    let has = |needle: &str| assert!(report.contains(needle), "{needle:?} not in\n{report}");
    has(&format!(
        "El Torito boot img :   1  UEFI  y   none  0x0000  0x00   4096 {efi_lba:>11}"
    ));
    has(&format!(
        "MBR partition      :   2   0x00  0xef {:>12}         4096",
        efi_lba * 4
    ));
    let listing = run("isoinfo", &["-R", "-f", "-i", p]);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["/boot", "/EFI", "/boot/kernel", "/EFI/BOOT", "/EFI/BOOT/grub.cfg"]
    );
    let table = run("sfdisk", &["-d", p]);
    assert!(
        table.contains(&format!("start= {:>11}, size=        4096, type=ef", efi_lba * 4)),
        "{table}"
    );

    // The FAT image inside the ISO is intact: mtools reads the EFI application from it.
    let out = dir.path().join("back.efi");
    let at = format!("{p}@@{}", u64::from(efi_lba) * SECTOR);
    run("mcopy", &["-i", &at, "::/EFI/BOOT/BOOTX64.EFI", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), app);
}

#[test]
fn an_efi_image_over_32_mib_gets_load_size_zero_and_both_entries_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let fat = tempfile::tempfile().unwrap();
    fat.set_len(40 << 20).unwrap();
    fat.write_all_at(b"FAT", 0).unwrap();
    let isolinux = fake_isolinux();
    let path = dir.path().join("both.iso");
    let image = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut tree = Tree::new(T);
    tree.file("isolinux/isolinux.bin", Content::Bytes(&isolinux), file_meta(0o644))
        .unwrap();
    tree.file("boot.img", Content::file(&fat).unwrap(), file_meta(0o644))
        .unwrap();
    let mut iso = Iso::new("BOTH", &tree).unwrap();
    iso.set_el_torito(ElTorito {
        bios: Some(BiosBoot {
            image: BootImage::Path("isolinux/isolinux.bin".into()),
            load_sectors: 4,
            boot_info_table: true,
        }),
        efi: Some(EfiBoot {
            image: BootImage::Path("boot.img".into()),
        }),
        catalog: Some("boot.catalog".into()),
    });
    let layout = iso.write(&image).unwrap();
    let report = run(
        "xorriso",
        &["-indev", path.to_str().unwrap(), "-report_el_torito", "plain"],
    );
    let has = |needle: &str| assert!(report.contains(needle), "{needle:?} not in\n{report}");
    has(&format!(
        "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4 {:>11}",
        layout.bios_lba.unwrap()
    ));
    has(&format!(
        "El Torito boot img :   2  UEFI  y   none  0x0000  0x00      0 {:>11}",
        layout.efi_lba.unwrap()
    ));
    has("El Torito img path :   2  /boot.img");
    // No hybrid MBR: the system area stays a hole.
    assert!(read_all(&image)[..16 * 2048].iter().all(|&b| b == 0));
    // The zero MiBs of the FAT image and the padding stay holes: the image is sparse.
    use std::os::unix::fs::MetadataExt;
    let meta = image.metadata().unwrap();
    assert!(meta.len() > 40 << 20);
    assert!(meta.blocks() * 512 < 4 << 20, "{} bytes allocated", meta.blocks() * 512);
}

#[test]
fn mistakes_are_refused_with_the_path_in_the_message() {
    assert!(matches!(Iso::new("", &Tree::new(T)), Err(IsoError::BadVolumeId(_))));
    assert!(matches!(
        Iso::new(&"V".repeat(33), &Tree::new(T)),
        Err(IsoError::BadVolumeId(_))
    ));

    let mut tree = Tree::new(T);
    tree.file("a/b", Content::Bytes(b"x"), file_meta(0o644)).unwrap();
    let not_isolinux = pattern(4096, 9);
    tree.file("boot.bin", Content::Bytes(&not_isolinux), file_meta(0o644))
        .unwrap();
    let image = tempfile::tempfile().unwrap();
    let bios = |path: &str| ElTorito {
        bios: Some(BiosBoot {
            image: BootImage::Path(path.into()),
            load_sectors: 4,
            boot_info_table: true,
        }),
        efi: None,
        catalog: None,
    };
    let mut iso = Iso::new("X", &tree).unwrap();
    iso.set_el_torito(bios("isolinux.bin"));
    let err = iso.write(&image).unwrap_err();
    assert!(err.to_string().contains("BIOS boot file \"isolinux.bin\""), "{err}");
    iso.set_el_torito(bios("a/b"));
    let err = iso.write(&image).unwrap_err();
    assert!(err.to_string().contains("too short for a boot info table"), "{err}");

    iso.set_el_torito(bios("boot.bin"));
    let code = [0u8; 440];
    iso.set_hybrid_mbr(HybridMbr {
        boot_code: Some(&code),
        disk_signature: 1,
        efi_partition: false,
    });
    let err = iso.write(&image).unwrap_err();
    assert!(err.to_string().contains("no isohybrid signature"), "{err}");
    iso.set_el_torito(ElTorito::default());
    let err = iso.write(&image).unwrap_err();
    assert!(err.to_string().contains("needs a BIOS boot file"), "{err}");

    // The boot catalog needs a free path in a directory of the tree.
    let mut iso = Iso::new("X", &tree).unwrap();
    for (catalog, expected) in [
        ("a/b", "\"a/b\" is already in the file tree"),
        ("a/b/boot.cat", "\"a/b\" is not a directory"),
        ("nope/boot.cat", "its directory is not in the tree"),
        ("/", "root"),
    ] {
        iso.set_el_torito(ElTorito {
            catalog: Some(catalog.into()),
            ..bios("boot.bin")
        });
        let err = iso.write(&image).unwrap_err();
        assert!(matches!(err, IsoError::Tree(_)), "{err}");
        assert!(err.to_string().contains(expected), "{catalog}: {err}");
    }
}

/// The tree accepts hard links to any non-directory; ISO 9660 only shares a regular file's data.
#[test]
fn a_hard_link_to_a_non_regular_file_is_refused_when_writing() {
    let mut tree = Tree::new(T);
    tree.symlink("bin/ls", "busybox", file_meta(0o777)).unwrap();
    tree.hard_link("bin/dir", "bin/ls").unwrap();
    assert!(matches!(
        tree.hard_link("c", "bin"),
        Err(TreeError::BadLinkTarget {
            reason: "is a directory",
            ..
        })
    ));
    let err = Iso::new("X", &tree)
        .unwrap()
        .write(&tempfile::tempfile().unwrap())
        .unwrap_err();
    assert!(
        matches!(err, IsoError::NotAFile { role: "hard link target", ref path } if path == "bin/ls"),
        "{err}"
    );
}
