//! A root filesystem on a disk that cannot be used (`kernel+squashfs` and `kernel+iso` boot
//! through our init's first stage, `root=DEV`): the builder's `kernel+squashfs` output of
//! examples/minimal.yml (tests/formats.rs) is booted by qemu (TCG) directly with a `root=` that
//! `moby run` would not give: a device that never appears, and a `rootfstype=` that does not match
//! what the disk holds. The console says what failed, what is there and what to do, and the
//! machine powers off (the first-stage initrd has nothing else to run). The booting cases are in
//! tests/formats.rs, started with `moby run`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::guest::Console;
use crate::support::vm::BOUND;

/// Console line of pkg/init's banner (pkg/init/src/supervisor.rs).
const BANNER: &str = "Welcome to moby: the system is up";

/// Boots the `kernel+squashfs` outputs with `root_args` appended; returns the console's error
/// line and the whole console once qemu has exited.
fn boot_and_fail(root_args: &str) -> (String, String) {
    let outputs = crate::formats::outputs();
    let file = |suffix: &str| outputs.join(format!("rsq{suffix}"));
    let cmdline = std::fs::read_to_string(file("-cmdline")).unwrap();
    let squashfs = file("-squashfs.img");
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,accel=tcg", "-smp", "1", "-m", "1024", "-kernel"])
        .arg(file("-kernel"))
        .arg("-initrd")
        .arg(file("-boot-initrd.img"))
        .arg("-append")
        .arg(format!("{} {root_args}", cmdline.trim()))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=disk0,readonly=on",
            path(&squashfs)
        ))
        .args(["-device", "virtio-blk-pci,drive=disk0"])
        .args([
            "-nic",
            "none",
            "-serial",
            "stdio",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run qemu-system-x86_64 (apt-get install qemu-system-x86)");
    let mut console = Console::new(child.stdout.take().unwrap());
    console.drain(BOUND);
    let status = child.wait().unwrap();
    assert!(status.success(), "qemu: {status}");
    let text = console.seen.join("\n");
    let failure = console
        .seen
        .iter()
        .find(|l| l.starts_with("init: cannot boot from the root device: "))
        .unwrap_or_else(|| panic!("no root device error:\n{text}"))
        .clone();
    assert!(text.contains("init: powering off: "), "{text}");
    assert!(!text.contains(BANNER), "{text}");
    (failure, text)
}

fn path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

#[test]
fn an_unusable_root_is_reported_and_powers_off() {
    let (failure, _) = boot_and_fail("root=LABEL=no-such-label rootwait=2");
    for needed in [
        "the root device LABEL=no-such-label did not appear within 2 s",
        "Block devices present: vda (squashfs)",
        "virtio_blk",
        "Check root= on the kernel command line",
    ] {
        assert!(failure.contains(needed), "{needed:?} missing from: {failure}");
    }

    let (failure, _) = boot_and_fail("root=/dev/vda rootfstype=ext4");
    for needed in [
        "cannot mount the root device /dev/vda read-only (ext4: ",
        "it holds squashfs",
        "Give rootfstype= if the type is another",
    ] {
        assert!(failure.contains(needed), "{needed:?} missing from: {failure}");
    }
}
