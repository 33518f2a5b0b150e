//! media::syslinux and media::uki with the real boot loader files of the moby/bootloader image
//! (pkg/bootloader, built into the image cache by `scripts/build-packages.sh`, which
//! `scripts/setup.sh` runs): syslinux installed as Debian's installer does it, byte for byte;
//! a disk that boots under SeaBIOS; a UKI that objdump reads and that boots under OVMF.
//!
//! The guest is the test kernel of `scripts/test-guest.sh` with a tiny initrd (busybox + a
//! shell init) that prints its kernel command line on the serial console and powers off.
//! Missing pieces fail the tests (with what to run), they do not skip them.

// Test helpers outside #[test] functions, where clippy's allow-unwrap-in-tests does not reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use media::content::Content;
use media::syslinux::{Extent, Syslinux};
use media::uki::{Uki, UkiSections};

/// Printed by the guest's init, followed by its kernel command line.
const MARKER: &str = "media-boot-test: cmdline ";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The unpacked moby/bootloader image whose files match pkg/bootloader/files.sha256.
fn bootloader() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cache = match std::env::var_os("MOBY_CACHE") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".moby/cache"),
        };
        let sums = repo().join("pkg/bootloader/files.sha256");
        let index: serde_json::Value = fs::read(cache.join("index.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null);
        let blob = |digest: &str| cache.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        for manifest in manifests.iter().rev() {
            let name = manifest["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or("");
            if !name.contains("/moby/bootloader:") {
                continue;
            }
            let Some(digest) = manifest["digest"].as_str() else { continue };
            let Ok(body) = fs::read(blob(digest)) else { continue };
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
            let Some(layer) = body["layers"][0]["digest"].as_str() else { continue };
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bootloader-{}", &layer[7..19]));
            if !dir.join("efi/linuxx64.efi.stub").exists() {
                let partial = dir.with_extension("partial");
                let _ = fs::remove_dir_all(&partial);
                fs::create_dir_all(&partial).unwrap();
                let tar = Command::new("tar").arg("-xzf").arg(blob(layer)).arg("-C").arg(&partial).status().unwrap();
                assert!(tar.success(), "tar -xzf of the layer of {name}");
                let _ = fs::remove_dir_all(&dir);
                fs::rename(&partial, &dir).unwrap();
            }
            let check = Command::new("sha256sum")
                .args(["--quiet", "--strict", "-c"])
                .arg(&sums)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if check.success() {
                return dir;
            }
        }
        panic!(
            "no moby/bootloader image in {} has the files of {}: run `cargo build --bin moby && target/debug/moby pkg build pkg/bootloader`",
            cache.display(),
            sums.display()
        );
    })
}

fn boot_file(name: &str) -> Vec<u8> {
    fs::read(bootloader().join(name)).unwrap_or_else(|e| panic!("{name} of the bootloader image: {e}"))
}

/// The pieces made by scripts/test-guest.sh.
fn guest_file(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MOBY_TEST_GUEST") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("target/test-guest"),
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test-guest.sh",
        path.display()
    );
    path
}

/// A newc cpio: busybox, /dev/console and an init that prints [`MARKER`] and the command line,
/// then powers off.
fn initrd() -> Vec<u8> {
    const INIT: &str = "#!/bin/busybox sh\n\
        /bin/busybox mount -t proc proc /proc\n\
        echo\n\
        echo \"media-boot-test: cmdline $(/bin/busybox cat /proc/cmdline)\"\n\
        /bin/busybox poweroff -f\n";
    let busybox = fs::read(guest_file("busybox")).unwrap();
    let mut out = Vec::new();
    let entries: [(&str, u32, &[u8], u32); 6] = [
        ("bin", 0o040755, b"", 0),
        ("bin/busybox", 0o100755, &busybox, 0),
        ("dev", 0o040755, b"", 0),
        ("dev/console", 0o020600, b"", 0x0501),
        ("proc", 0o040755, b"", 0),
        ("init", 0o100755, INIT.as_bytes(), 0),
    ];
    let mut entry = |ino: usize, name: &str, mode: u32, data: &[u8], rdev: u32| {
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev >> 8,
            rdev & 0xff,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(4) * 4, 0);
    };
    for (i, (name, mode, data, rdev)) in entries.iter().enumerate() {
        entry(i + 1, name, *mode, data, *rdev);
    }
    entry(0, "TRAILER!!!", 0, b"", 0);
    out
}

/// Runs qemu until the guest powers off; returns the serial console.
fn boot(name: &str, dir: &Path, args: &[&str]) -> String {
    let console = dir.join(format!("{name}.console"));
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .args(["-monitor", "none", "-serial"])
        .arg(format!("file:{}", console.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    // A guard against a guest that hangs, not a time limit on booting.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name}: the guest did not power off within 10 minutes; console:\n{}",
                fs::read_to_string(&console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&fs::read(&console).unwrap_or_default()).into_owned();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "{name}: qemu failed ({status}): {stderr}\nconsole:\n{text}"
    );
    text
}

/// The command line the guest printed, if it got that far.
fn guest_cmdline(console: &str) -> Option<&str> {
    console
        .lines()
        .find_map(|line| line.trim_end_matches('\r').strip_prefix(MARKER))
}

fn mtools(image: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(args[0])
        .env("MTOOLS_SKIP_CHECK", "1")
        // Directory entries get this time instead of the clock's: images made a second apart
        // stay comparable byte for byte.
        .env("SOURCE_DATE_EPOCH", "0")
        .arg("-i")
        .arg(image)
        .args(&args[1..])
        .output()
        .expect("mtools runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An empty FAT16 filesystem image of `kib` KiB made by mkfs.vfat (fixed volume id and times).
fn mkfs(path: &Path, kib: u64, hidden_sectors: u64) {
    let status = Command::new("mkfs.vfat")
        .args(["--invariant", "-F", "16", "-h", &hidden_sectors.to_string(), "-C"])
        .arg(path)
        .arg(kib.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("mkfs.vfat (dosfstools) runs");
    assert!(status.success());
}

/// Copies `content` into the empty FAT16 `image` as /ldlinux.sys, its first file: that starts the
/// data area. Returns its extent (checked later by reading the file back with mtools).
fn add_ldlinux_sys(image: &Path, dir: &Path, content: &[u8]) -> Extent {
    let source = dir.join("ldlinux.sys");
    fs::write(&source, content).unwrap();
    mtools(image, &["mcopy", source.to_str().unwrap(), "::/ldlinux.sys"]);
    let mut bpb = [0u8; 512];
    File::open(image).unwrap().read_exact_at(&mut bpb, 0).unwrap();
    let le16 = |at: usize| u64::from(u16::from_le_bytes([bpb[at], bpb[at + 1]]));
    let first_data_sector = le16(14) + u64::from(bpb[16]) * le16(22) + (le16(17) * 32).div_ceil(512);
    Extent {
        offset: first_data_sector * 512,
        len: content.len() as u64,
    }
}

/// Asserts equal bytes, naming the first differences.
fn same_bytes(what: &str, theirs: &[u8], ours: &[u8]) {
    let differences: Vec<String> = theirs
        .iter()
        .zip(ours)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .take(16)
        .map(|(i, (a, b))| format!("{i}: {a:02x}/{b:02x}"))
        .collect();
    assert!(
        differences.is_empty() && theirs.len() == ours.len(),
        "{what} differs (offset: Debian's/ours): {differences:?}, lengths {}/{}",
        theirs.len(),
        ours.len()
    );
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).unwrap()
}

#[test]
fn syslinux_install_is_byte_identical_to_debians_installer() {
    let dir = tempfile::tempdir().unwrap();
    let bss = boot_file("syslinux/ldlinux.bss");
    let sys = boot_file("syslinux/ldlinux.sys");
    let syslinux = Syslinux::new(&bss, &sys).unwrap();

    // Debian's installer, from the deb that pkg/bootloader pinned (the deb cache keeps it).
    let debs = match std::env::var_os("MOBY_DEB_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".moby/debs"),
    };
    let lock = fs::read_to_string(repo().join("pkg/bootloader/debs.lock")).unwrap();
    let version = lock
        .lines()
        .find_map(|l| l.strip_prefix("rootfs[0] syslinux "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("debs.lock pins syslinux");
    let deb = debs.join(format!("syslinux_{}_amd64.deb", version.replace(':', "%3a")));
    assert!(deb.exists(), "{} is missing: build pkg/bootloader first", deb.display());
    let unpacked = dir.path().join("deb");
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .unwrap()
        .success());

    let theirs = dir.path().join("theirs.img");
    mkfs(&theirs, 16 * 1024, 0);
    let out = Command::new(unpacked.join("usr/bin/syslinux"))
        .arg("--install")
        .arg(&theirs)
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Debian's syslinux --install: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ours = dir.path().join("ours.img");
    mkfs(&ours, 16 * 1024, 0);
    let extent = add_ldlinux_sys(&ours, dir.path(), &syslinux.ldlinux_sys_file());
    syslinux.install(&open_rw(&ours), 0, extent).unwrap();

    let read = |image: &Path, at: u64, len: usize| {
        let mut buf = vec![0u8; len];
        File::open(image).unwrap().read_exact_at(&mut buf, at).unwrap();
        buf
    };
    same_bytes("the boot sector", &read(&theirs, 0, 512), &read(&ours, 0, 512));
    let their_file = mtools(&theirs, &["mtype", "::/ldlinux.sys"]);
    let our_file = mtools(&ours, &["mtype", "::/ldlinux.sys"]);
    assert_eq!(their_file.len() as u64, syslinux.ldlinux_sys_len());
    same_bytes("ldlinux.sys", &their_file, &our_file);
    assert!(
        read(&theirs, extent.offset, extent.len as usize) == our_file,
        "Debian's installer stored ldlinux.sys where ours is"
    );
    // The ldlinux.c32 it writes is the one the image carries beside ldlinux.sys.
    assert!(mtools(&theirs, &["mtype", "::/ldlinux.c32"]) == boot_file("syslinux/ldlinux.c32"));
}

#[test]
fn syslinux_disk_boots_under_seabios() {
    let dir = tempfile::tempdir().unwrap();
    let bss = boot_file("syslinux/ldlinux.bss");
    let syslinux = Syslinux::new(&bss, &boot_file("syslinux/ldlinux.sys")).unwrap();
    const START: u64 = 2048;
    const KIB: u64 = 40 * 1024;
    let part = dir.path().join("part.img");
    mkfs(&part, KIB, START);
    let extent = add_ldlinux_sys(&part, dir.path(), &syslinux.ldlinux_sys_file());
    let files = [
        ("ldlinux.c32", bootloader().join("syslinux/ldlinux.c32")),
        ("kernel", guest_file("vmlinuz")),
        ("initrd.img", {
            let path = dir.path().join("initrd.img");
            fs::write(&path, initrd()).unwrap();
            path
        }),
        ("syslinux.cfg", {
            // LinuxKit's (tools/mkimage-raw-bios).
            let path = dir.path().join("syslinux.cfg");
            let cfg = "DEFAULT linux\nLABEL linux\n    KERNEL /kernel\n    INITRD /initrd.img\n    APPEND console=ttyS0 media_test=syslinux\n";
            fs::write(&path, cfg).unwrap();
            path
        }),
    ];
    for (name, source) in &files {
        mtools(&part, &["mcopy", source.to_str().unwrap(), &format!("::/{name}")]);
    }

    // The disk: syslinux's MBR code, one active FAT16 (LBA) partition at 1 MiB.
    let disk = dir.path().join("disk.img");
    let image = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&disk)
        .unwrap();
    image.write_all_at(&fs::read(&part).unwrap(), START * 512).unwrap();
    let mbr_code = boot_file("syslinux/mbr.bin");
    assert_eq!(mbr_code.len(), 440);
    let mut mbr = [0u8; 512];
    mbr[..440].copy_from_slice(&mbr_code);
    mbr[440..444].copy_from_slice(&0x6d6f_6279u32.to_le_bytes());
    let sectors = KIB * 2;
    let mut entry = [0u8; 16];
    entry[0] = 0x80;
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x0e;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&(START as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    mbr[446..462].copy_from_slice(&entry);
    mbr[510..].copy_from_slice(&[0x55, 0xaa]);
    image.write_all_at(&mbr, 0).unwrap();
    syslinux
        .install(
            &image,
            START * 512,
            Extent {
                offset: extent.offset + START * 512,
                ..extent
            },
        )
        .unwrap();
    drop(image);

    let sfdisk = Command::new("sfdisk").arg("--dump").arg(&disk).output().unwrap();
    let table = String::from_utf8_lossy(&sfdisk.stdout);
    assert!(
        table.contains("start=        2048, size=       81920, type=e, bootable"),
        "{table}"
    );

    let console = boot(
        "syslinux",
        dir.path(),
        &["-drive", &format!("file={},format=raw,if=ide", disk.display())],
    );
    let cmdline = guest_cmdline(&console).unwrap_or_else(|| panic!("the guest did not start; console:\n{console}"));
    assert!(cmdline.contains("console=ttyS0 media_test=syslinux"), "{cmdline}");
}

/// A UKI of the test kernel and initrd made with the image's systemd-stub.
fn guest_uki(initrd: &[u8], kernel: &File, cmdline: &[u8]) -> Vec<u8> {
    let stub = boot_file("efi/linuxx64.efi.stub");
    let uki = Uki::new(
        &stub,
        UkiSections {
            os_release: b"NAME=\"moby\"\nID=moby\n",
            cmdline,
            initrd: Content::Bytes(initrd),
            linux: Content::file(kernel).unwrap(),
        },
    )
    .unwrap();
    let mut out = Vec::new();
    uki.write_to(&mut out).unwrap();
    out
}

#[test]
fn uki_sections_as_objdump_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = initrd();
    let kernel = File::open(guest_file("vmlinuz")).unwrap();
    let kernel_len = kernel.metadata().unwrap().len();
    let cmdline = b"console=ttyS0 media_test=uki";
    let uki = guest_uki(&initrd, &kernel, cmdline);
    assert!(
        uki == guest_uki(&initrd, &kernel, cmdline),
        "the same input gives the same bytes"
    );

    let objdump = |path: &Path| {
        let out = Command::new("objdump")
            .arg("-h")
            .arg(path)
            .output()
            .expect("objdump runs");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() == 7 && f[0].parse::<u32>().is_ok()).then(|| {
                    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
                    (f[1].to_string(), hex(f[2]), hex(f[3]), hex(f[5]))
                })
            })
            .collect::<Vec<_>>()
    };
    let path = dir.path().join("uki.efi");
    fs::write(&path, &uki).unwrap();
    let stub_sections = objdump(&bootloader().join("efi/linuxx64.efi.stub"));
    let sections = objdump(&path);
    assert_eq!(sections[..stub_sections.len()], stub_sections[..]);
    let added = &sections[stub_sections.len()..];
    let names: Vec<&str> = added.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, [".osrel", ".cmdline", ".initrd", ".linux"]);
    let sizes: Vec<u64> = added.iter().map(|s| s.1).collect();
    assert_eq!(sizes, [20, cmdline.len() as u64, initrd.len() as u64, kernel_len]);
    // Addresses: one after the other from the end of the stub's last section, 512-aligned (the
    // stub's SectionAlignment); file offsets likewise.
    let (_, size, vma, _) = stub_sections.last().unwrap();
    let mut next_vma = vma + size;
    for (name, size, vma, offset) in added {
        assert_eq!(*vma, next_vma.div_ceil(512) * 512, "{name}");
        assert_eq!(offset % 512, 0, "{name}");
        next_vma = vma + size;
    }
    let (_, _, _, linux_at) = added[3];
    let mut start = vec![0u8; 1024];
    kernel.read_exact_at(&mut start, 0).unwrap();
    assert!(uki[linux_at as usize..linux_at as usize + 1024] == start[..]);

    let headers = Command::new("objdump").arg("-p").arg(&path).output().unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout);
    assert!(headers.contains("CheckSum\t\t00000000"), "{headers}");
    let image_size = headers.lines().find_map(|l| l.strip_prefix("SizeOfImage\t\t")).unwrap();
    assert_eq!(
        u64::from_str_radix(image_size.trim(), 16).unwrap(),
        next_vma.div_ceil(512) * 512
    );
}

#[test]
fn uki_boots_under_ovmf() {
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp");
    fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
    let kernel = File::open(guest_file("vmlinuz")).unwrap();
    let uki = guest_uki(&initrd(), &kernel, b"console=ttyS0 media_test=uki");
    fs::write(esp.join("EFI/BOOT/BOOTX64.EFI"), &uki).unwrap();
    let vars = dir.path().join("OVMF_VARS.fd");
    fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).expect("ovmf is installed");
    let console = boot(
        "uki",
        dir.path(),
        &[
            "-drive",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            "-drive",
            &format!("file=fat:{},format=raw,if=virtio,readonly=on", esp.display()),
        ],
    );
    let cmdline = guest_cmdline(&console).unwrap_or_else(|| panic!("the guest did not start; console:\n{console}"));
    assert!(cmdline.contains("console=ttyS0 media_test=uki"), "{cmdline}");
}
