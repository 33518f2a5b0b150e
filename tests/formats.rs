//! Every ISO and disk format, built from examples/minimal.yml with this repository's packages
//! (and the bootloader package) and booted with `moby run` under qemu (TCG): BIOS formats on
//! SeaBIOS, EFI formats on OVMF, each up to init's welcome banner on the serial console. And
//! every format built twice, in other directories at other times, to the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::examples::{package_cache, repo};
use crate::support::moby_bin;
use crate::support::vm::Vm;

/// The ISO and disk formats with the file each writes for the name `img`. `dynamic-vhd` and
/// `vhd` both write `img.vhd`: dynamic-vhd is built under another name.
const FORMATS: [(&str, &str); 16] = [
    ("iso-bios", "img.iso"),
    ("iso-efi", "img-efi.iso"),
    ("iso-efi-initrd", "img-efi-initrd.iso"),
    ("raw-bios", "img-bios.img"),
    ("raw-efi", "img-efi.img"),
    ("aws", "img.raw"),
    ("gcp", "img.img.tar.gz"),
    ("qcow2-bios", "img.qcow2"),
    ("qcow2-efi", "img-efi.qcow2"),
    ("vhd", "img.vhd"),
    ("vmdk", "img.vmdk"),
    ("kernel+initrd", "img-initrd.img"),
    ("dynamic-vhd", "dyn.vhd"),
    ("kernel+iso", "riso.iso"),
    ("kernel+iso", "riso-boot-initrd.img"),
    ("kernel+squashfs", "rsq-squashfs.img"),
];

/// The builds after the first (the formats of another name: their files would clash).
const OTHER_NAMES: [(&str, &str); 3] = [
    ("dyn", "dynamic-vhd"),
    ("riso", "kernel+iso"),
    ("rsq", "kernel+squashfs"),
];

/// `moby build` of examples/minimal.yml in every format into `dir` (those of [`OTHER_NAMES`]
/// under their own names).
fn build_all(dir: &Path) {
    let formats: Vec<&str> = FORMATS
        .iter()
        .map(|(format, _)| *format)
        .filter(|format| OTHER_NAMES.iter().all(|(_, other)| other != format))
        .collect();
    let spec = repo().join("examples/minimal.yml");
    let builds =
        std::iter::once(("img", formats.join(","))).chain(OTHER_NAMES.map(|(name, format)| (name, format.to_string())));
    for (name, formats) in builds {
        let out = Command::new(moby_bin())
            .current_dir(repo())
            .env("MOBY_CACHE", package_cache())
            .args(["build", "--name", name, "--format", &formats, "--dir"])
            .arg(dir)
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moby build --format {formats}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The outputs, built once for every boot test (and tests/rootfs.rs).
pub fn outputs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("moby-formats-")
            .tempdir()
            .unwrap()
            .keep();
        build_all(&dir);
        dir
    })
}

/// Boots `file` of the outputs with `moby run` up to the banner, then stops it.
fn boots(file: &str) {
    let path = outputs().join(file);
    assert!(path.is_file(), "{} was not written", path.display());
    let mut vm = Vm::boot_named(&path, "img", &[]);
    vm.wait("Welcome to moby");
    vm.stop();
}

macro_rules! boot_tests {
    ($($test:ident: $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                boots($file);
            }
        )*
    };
}

boot_tests! {
    iso_bios_boots_on_seabios: "img.iso",
    iso_efi_boots_on_ovmf: "img-efi.iso",
    iso_efi_initrd_boots_on_ovmf: "img-efi-initrd.iso",
    raw_bios_boots_on_seabios: "img-bios.img",
    raw_efi_boots_on_ovmf: "img-efi.img",
    aws_boots_on_seabios: "img.raw",
    gcp_boots_on_seabios: "img.img.tar.gz",
    qcow2_bios_boots_on_seabios: "img.qcow2",
    qcow2_efi_boots_on_ovmf: "img-efi.qcow2",
    vhd_boots_on_seabios: "img.vhd",
    dynamic_vhd_boots_on_seabios: "dyn.vhd",
    vmdk_boots_on_seabios: "img.vmdk",
}

/// `kernel+iso` and `kernel+squashfs`: `moby run PREFIX` boots the kernel with the first-stage
/// initrd, which finds the root disk, mounts it under a writable overlay and starts the system.
fn boots_from_a_root_disk(prefix: &str, device: &str, fstype: &str) {
    let mut vm = Vm::boot_named(&outputs().join(prefix), prefix, &[]);
    let found = vm.wait("init: root ");
    assert!(
        found.contains(&format!("init: root {device} ({fstype}) found in ")),
        "{found}"
    );
    vm.wait("Welcome to moby");
    // getty binds the system's /containers: there the system root shows as the overlay over the
    // read-only disk.
    let mounts = vm.shell("cat /proc/mounts");
    assert!(
        mounts
            .iter()
            .any(|l| l.starts_with("overlay /containers overlay rw,") && l.contains("lowerdir=/.moby-root/ro")),
        "the system root is not the writable overlay over the disk: {mounts:#?}"
    );
    let written = vm.shell("echo written-to-the-root > /containers/probe && cat /containers/probe");
    assert!(written.contains(&"written-to-the-root".to_string()), "{written:#?}");
    vm.stop();
}

#[test]
fn kernel_iso_boots_from_its_cd() {
    boots_from_a_root_disk("riso", "/dev/sr0", "iso9660");
}

#[test]
fn kernel_squashfs_boots_from_its_disk() {
    boots_from_a_root_disk("rsq", "/dev/vda", "squashfs");
}

#[test]
fn every_format_is_reproducible() {
    let second = tempfile::tempdir().unwrap();
    // Another second on the clock, another directory.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build_all(second.path());
    for (format, file) in FORMATS {
        assert!(
            same_bytes(&outputs().join(file), &second.path().join(file)),
            "{format}: {file} differs between two builds"
        );
    }
}

/// Whether two files hold the same bytes (read in chunks: disk images are large).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    if a.metadata().unwrap().len() != b.metadata().unwrap().len() {
        return false;
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return true;
        }
        b.read_exact(&mut y[..n]).unwrap();
        if x[..n] != y[..n] {
            return false;
        }
    }
}

/// `moby build` of `spec` (a YAML text) with `args` into a fresh directory: (directory, output).
fn build_spec(spec: &str, args: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.yml");
    // @pkg paths relative to the examples, as in examples/minimal.yml.
    let spec = spec.replace("@pkg:../", &format!("@pkg:{}/", repo().display()));
    std::fs::write(&file, spec).unwrap();
    let out = Command::new(moby_bin())
        .env("MOBY_CACHE", package_cache())
        .args(["build", "--name", "img", "--dir"])
        .arg(dir.path().join("out"))
        .args(args)
        .arg(&file)
        .output()
        .unwrap();
    (dir, out)
}

/// What is in `dir/out` (nothing, not even a temporary file, after a failed build).
fn outputs_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("out")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_size_too_small_fails_naming_the_size_needed_and_writes_nothing() {
    let spec = std::fs::read_to_string(repo().join("examples/minimal.yml")).unwrap();
    let (dir, out) = build_spec(&spec, &["--format", "aws", "--size", "4M"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "format aws: the disk of 4 MiB is too small for the kernel, the initrd and the bootloader, which need"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("; make the disk ") && stderr.contains("M or more"),
        "{stderr}"
    );
    assert_eq!(outputs_in(dir.path()), Vec::<String>::new());

    let (_dir, out) = build_spec(&spec, &["--format", "vhd", "--size", "lots"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid disk size \"lots\""), "{stderr}");
}

#[test]
fn bootable_formats_need_a_kernel_and_x86() {
    let spec = "init:\n  - \"@pkg:../pkg/init\"\n";
    let (dir, out) = build_spec(spec, &["--format", "raw-efi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("format raw-efi boots a kernel, but the image has none (no boot/kernel)"),
        "{stderr}"
    );
    assert_eq!(outputs_in(dir.path()), Vec::<String>::new());

    // No images: the refusal comes before anything is looked up for arm64.
    let (dir, out) = build_spec("onboot: []\n", &["--format", "iso-bios", "--arch", "arm64"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("format iso-bios boots x86 machines only"), "{stderr}");
    assert_eq!(outputs_in(dir.path()), Vec::<String>::new());
}

/// The builder reads the bootloaders from the image `pkg/bootloader` builds: the pin in the
/// builder is that package's tag.
#[test]
fn the_bootloader_pin_is_the_package_tag() {
    let out = Command::new(moby_bin())
        .current_dir(repo())
        .args(["pkg", "show-tag", "pkg/bootloader"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tag = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        tag.trim(),
        builder::output::BOOTLOADER_IMAGE,
        "pkg/bootloader changed: set BOOTLOADER_IMAGE in builder/src/output/bootloader.rs to its new tag"
    );
}
