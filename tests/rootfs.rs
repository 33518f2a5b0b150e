//! A root filesystem on a disk, as LinuxKit's `kernel+squashfs` and `kernel+iso` formats boot:
//! the kernel gets a stage-1 initrd holding only pkg/init's `/init` and the kernel modules, and
//! `root=` names the disk. examples/minimal.yml is built as `tar` from this repository's packages;
//! its tree becomes a squashfs (`mksquashfs`, a virtio disk, `root=/dev/vda`) and a Rock Ridge ISO
//! (`xorriso -as mkisofs -R`, a virtio-scsi CD, `root=/dev/sr0`). qemu (TCG) is run directly: `moby
//! run` passes no initrd with a squashfs. Checked on the serial console: init finds and mounts the
//! device, the system comes up (banner, getty's root shell), `/` is an overlay that can be written,
//! the machine powers off cleanly; a root device that never appears, or holds another filesystem
//! than `rootfstype=` says, is reported and the machine powers off.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use builder::output::cpio::{FileType, NewcHeader, NewcWriter};
use builder::output::{PgzipOptions, PgzipWriter};

use crate::examples::{package_cache, repo};
use crate::support::guest::{self, Console};
use crate::support::moby_bin;
use crate::support::vm::BOUND;

/// Console lines of pkg/init (see pkg/init/src/supervisor.rs and rootdev.rs).
const BANNER: &str = "Welcome to moby: the system is up";
const POWER_OFF: &str = "init: everything stopped; poweroff now";

/// How long a line typed for a shell that is not there yet waits before it is typed again.
const RETYPE_AFTER: Duration = Duration::from_secs(5);

/// minimal.yml's pieces: the kernel, its command line, the stage-1 initrd and the two root images.
struct Images {
    kernel: PathBuf,
    cmdline: String,
    initrd: PathBuf,
    squashfs: PathBuf,
    iso: PathBuf,
}

fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it ({e}); scripts/setup.sh installs the tools"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the images once per test run, into `rootfs` of cargo's temporary directory for
/// integration tests (made afresh each run, so that runs leave no images behind in /tmp).
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let out = &Path::new(env!("CARGO_TARGET_TMPDIR")).join("rootfs");
        if out.exists() {
            std::fs::remove_dir_all(out).unwrap();
        }
        std::fs::create_dir_all(out).unwrap();
        run(
            Command::new(moby_bin())
                .current_dir(repo())
                .env("MOBY_CACHE", package_cache())
                .args(["build", "--format", "tar", "--dir"])
                .arg(out)
                .arg(repo().join("examples/minimal.yml")),
            "moby build --format tar examples/minimal.yml",
        );
        // The tree as the image's root sees it; boot/ (kernel, cmdline) is not part of it.
        let tree = out.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        run(
            Command::new("tar")
                .args(["--warning=no-unknown-keyword", "--numeric-owner", "-xpf"])
                .arg(out.join("minimal.tar"))
                .arg("-C")
                .arg(&tree),
            "extract minimal.tar",
        );
        let kernel = out.join("minimal-kernel");
        std::fs::rename(tree.join("boot/kernel"), &kernel).unwrap();
        let cmdline = std::fs::read_to_string(tree.join("boot/cmdline"))
            .unwrap()
            .trim()
            .to_string();
        std::fs::remove_dir_all(tree.join("boot")).unwrap();

        let squashfs = out.join("minimal-squashfs.img");
        run(
            Command::new("mksquashfs").arg(&tree).arg(&squashfs).args([
                "-noappend",
                "-quiet",
                "-no-progress",
                "-all-root",
            ]),
            "mksquashfs",
        );
        let iso = out.join("minimal.iso");
        run(
            Command::new("xorriso")
                .args([
                    "-as", "mkisofs", "-quiet", "-R", "-uid", "0", "-gid", "0", "-V", "MOBY", "-o",
                ])
                .arg(&iso)
                .arg(&tree),
            "xorriso -as mkisofs -R",
        );
        let initrd = out.join("minimal-initrd.img");
        write_stage1(&tree, &initrd);
        Images {
            kernel,
            cmdline,
            initrd,
            squashfs,
            iso,
        }
    })
}

/// The stage-1 initrd (gzipped newc): `init` and `lib/modules/**` of the image, nothing else.
fn write_stage1(tree: &Path, path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let options = PgzipOptions {
        threads: 1,
        ..PgzipOptions::default()
    };
    let gzip = PgzipWriter::new(BufWriter::new(file), options).unwrap();
    let mut cpio = NewcWriter::new(gzip);
    let init = std::fs::read(tree.join("init")).expect("the image has pkg/init as /init");
    guest::add_file(&mut cpio, "init", 0o755, &init).unwrap();
    for dir in ["lib", "lib/modules"] {
        cpio.write_header(&NewcHeader::new(dir, FileType::Directory, 0o755))
            .unwrap();
    }
    guest::add_tree(&mut cpio, &tree.join("lib/modules"), "lib/modules/").unwrap();
    let gzip = cpio.finish().unwrap();
    gzip.finish().unwrap().flush().unwrap();
}

/// Where the root filesystem image is attached.
enum Disk<'a> {
    /// The first virtio-blk disk (`/dev/vda`).
    Virtio(&'a Path),
    /// A CD on virtio-scsi (`/dev/sr0`).
    ScsiCd(&'a Path),
}

/// A qemu (TCG) booting the kernel with the stage-1 initrd, its serial console on stdio.
struct Guest {
    child: Child,
    console: Console,
    commands: u32,
}

impl Guest {
    fn boot(images: &Images, root_args: &str, disks: &[Disk]) -> Guest {
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-machine", "q35,accel=tcg", "-smp", "1", "-m", "1024"])
            .arg("-kernel")
            .arg(&images.kernel)
            .arg("-initrd")
            .arg(&images.initrd)
            .arg("-append")
            .arg(format!("{} {root_args}", images.cmdline));
        for (i, disk) in disks.iter().enumerate() {
            match disk {
                Disk::Virtio(path) => {
                    qemu.arg("-drive")
                        .arg(format!(
                            "file={},format=raw,if=none,id=disk{i},readonly=on",
                            path.display()
                        ))
                        .arg("-device")
                        .arg(format!("virtio-blk-pci,drive=disk{i}"));
                }
                Disk::ScsiCd(path) => {
                    qemu.args(["-device", &format!("virtio-scsi-pci,id=scsi{i}")])
                        .arg("-drive")
                        .arg(format!(
                            "file={},format=raw,if=none,id=cd{i},media=cdrom,readonly=on",
                            path.display()
                        ))
                        .arg("-device")
                        .arg(format!("scsi-cd,bus=scsi{i}.0,drive=cd{i}"));
                }
            }
        }
        qemu.args([
            "-nic", "none", "-serial", "stdio", "-display", "none", "-monitor", "none",
        ])
        .args(["-no-reboot"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = qemu
            .spawn()
            .expect("run qemu-system-x86_64 (apt-get install qemu-system-x86)");
        let console = Console::new(child.stdout.take().unwrap());
        Guest {
            child,
            console,
            commands: 0,
        }
    }

    fn wait(&mut self, text: &str) -> String {
        self.console.wait_for_text(text, BOUND)
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Runs `command` in getty's root shell; returns its output lines. Typed again until the shell
    /// answers (what is typed before the getty opens the line is lost), as tests/support/vm.rs does.
    fn shell(&mut self, command: &str) -> Vec<String> {
        self.commands += 1;
        let n = self.commands;
        let (begin, end) = (format!("moby-test-begin-{n}"), format!("moby-test-end-{n}"));
        let typed = format!("echo moby-test-begin-$(({n}+0)); {command}; echo moby-test-end-$(({n}+0))");
        let mut waited = Duration::ZERO;
        loop {
            self.type_line(&typed);
            match self.console.try_wait_until(RETYPE_AFTER, |l| l.trim_end() == begin) {
                Ok(_) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if waited < BOUND => waited += RETYPE_AFTER,
                Err(err) => panic!(
                    "the console shell did not run {command:?} ({err}); console so far:\n{}",
                    self.console.seen.join("\n")
                ),
            }
        }
        let from = self.console.seen.len();
        self.console.wait_for(&end, BOUND);
        let seen = &self.console.seen;
        seen[from..seen.len() - 1].to_vec()
    }

    /// Waits until qemu exits (the guest powered off); returns its status and every console line.
    fn wait_exit(mut self) -> (ExitStatus, Vec<String>) {
        self.console.drain(BOUND);
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.console.seen))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // A failed test must not leave its qemu behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots with `root_args`, checks that the root came from `device` as `fstype` under an overlay
/// that the system can write, and powers off from the shell.
fn boot_from_disk(root_args: &str, disks: &[Disk], device: &str, fstype: &str) {
    let images = images();
    let mut guest = Guest::boot(images, root_args, disks);
    let found = guest.wait("init: root ");
    assert!(
        found.contains(&format!("init: root {device} ({fstype}) found in ")),
        "{found}\n{}",
        guest.console.seen.join("\n")
    );
    guest.wait("init: initramfs emptied (");
    guest.wait(BANNER);
    for line in guest.console.seen.iter().filter(|l| l.starts_with("init: ")) {
        eprintln!("{line}");
    }
    // getty shares the host's PID namespace: PID 1's mount table is the system's.
    let mounts = guest.shell("cat /proc/1/mounts");
    let root: Vec<&String> = mounts
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("/"))
        .collect();
    assert_eq!(root.len(), 1, "one mount on /: {mounts:#?}");
    assert!(
        root[0].starts_with("overlay / overlay rw,") && root[0].contains("lowerdir=/.moby-root/ro"),
        "/ is not the writable overlay: {mounts:#?}"
    );
    // The system root is writable (getty binds the host's /containers).
    let written = guest.shell("echo written-to-the-root > /containers/probe && cat /containers/probe");
    assert!(written.contains(&"written-to-the-root".to_string()), "{written:#?}");

    guest.type_line("service poweroff");
    let (status, console) = guest.wait_exit();
    assert!(status.success(), "qemu: {status}");
    assert!(
        console.iter().any(|l| l.contains(POWER_OFF)),
        "no clean power off:\n{}",
        console.join("\n")
    );
}

/// kernel+squashfs: the squashfs on the first virtio disk, `root=/dev/vda` (what vmm appends).
#[test]
fn squashfs_root_on_a_virtio_disk() {
    let images = images();
    boot_from_disk(
        "root=/dev/vda",
        &[Disk::Virtio(&images.squashfs)],
        "/dev/vda",
        "squashfs",
    );
}

/// kernel+iso: the ISO 9660 (Rock Ridge) image as a virtio-scsi CD, `root=/dev/sr0`.
#[test]
fn iso_root_on_a_virtio_scsi_cd() {
    let images = images();
    boot_from_disk("root=/dev/sr0", &[Disk::ScsiCd(&images.iso)], "/dev/sr0", "iso9660");
}

/// Boots with `root_args` a root that cannot be used; returns the console's error line (and the
/// whole console) once the machine has powered off.
fn boot_and_fail(root_args: &str, disks: &[Disk]) -> (String, String) {
    let guest = Guest::boot(images(), root_args, disks);
    let (status, console) = guest.wait_exit();
    assert!(status.success(), "qemu: {status}");
    let text = console.join("\n");
    let failure = console
        .iter()
        .find(|l| l.starts_with("init: cannot boot from the root device: "))
        .unwrap_or_else(|| panic!("no root device error:\n{text}"))
        .clone();
    eprintln!("{failure}");
    // A stage-1 initrd has nothing else to run: it powers off instead of carrying on.
    assert!(text.contains("init: powering off: "), "{text}");
    assert!(!text.contains(BANNER), "{text}");
    (failure, text)
}

/// A root device that never appears, and one that holds another filesystem than `rootfstype=`
/// says: the console says what failed, what is there and what to do, and the machine powers off.
#[test]
fn an_unusable_root_is_reported_and_powers_off() {
    let images = images();
    let (failure, _) = boot_and_fail("root=LABEL=no-such-label rootwait=2", &[Disk::Virtio(&images.squashfs)]);
    for needed in [
        "the root device LABEL=no-such-label did not appear within 2 s",
        "Block devices present: vda (squashfs)",
        "virtio_blk",
        "Check root= on the kernel command line",
    ] {
        assert!(failure.contains(needed), "{needed:?} missing from: {failure}");
    }

    let (failure, _) = boot_and_fail("root=/dev/vda rootfstype=ext4", &[Disk::Virtio(&images.squashfs)]);
    for needed in [
        "cannot mount the root device /dev/vda read-only (ext4: ",
        "it holds squashfs",
        "Give rootfstype= if the type is another",
    ] {
        assert!(failure.contains(needed), "{needed:?} missing from: {failure}");
    }
}
