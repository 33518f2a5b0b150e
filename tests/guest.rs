//! The test guest (tests/support/guest.rs) on its own: its files, and booting it with a bare qemu
//! command line like the one `moby run qemu` builds (TCG: KVM guests hang on the CI machines).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::guest::{self, marker, Console};

/// Generous: a TCG boot takes ~5 s alone, much longer on a busy 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn the_guest_files_hold_the_kernel_init_busybox_and_the_modules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = guest::write_guest(dir.path(), "tiny");
    assert_eq!(prefix, dir.path().join("tiny"));
    let fixture = guest::fixture();

    let kernel = std::fs::read(dir.path().join("tiny-kernel")).expect("read kernel");
    assert_eq!(kernel, std::fs::read(fixture.join("vmlinuz")).expect("read vmlinuz"));
    let cmdline = std::fs::read_to_string(dir.path().join("tiny-cmdline")).expect("read cmdline");
    assert_eq!(cmdline, "console=ttyS0 quiet");

    let gz = std::fs::read(dir.path().join("tiny-initrd.img")).expect("read initrd");
    assert!(
        gz.len() < 4 << 20,
        "the initrd should stay small, it is {} bytes",
        gz.len()
    );
    let mut cpio = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut cpio)
        .expect("gunzip initrd");
    assert_eq!(cpio, guest::initrd_cpio(), "the initrd is the gzip of initrd_cpio()");

    let listing = crate::support::cpio_listing(&cpio);
    let entry = |name: &str| {
        listing
            .iter()
            .find(|line| line.split('\t').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from the initrd:\n{}", listing.join("\n")))
            .split('\t')
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(entry("init")[1], "100755");
    assert_eq!(entry("init")[4], guest::INIT.len().to_string());
    assert_eq!(entry("bin/busybox")[1], "100755");
    assert_eq!(entry("dev/console")[1], "020600");

    let modules = fixture.join("modules/lib/modules");
    let kver = std::fs::read_dir(&modules)
        .expect("read modules dir")
        .next()
        .expect("one kernel version")
        .expect("dir entry")
        .file_name()
        .into_string()
        .expect("utf-8 kernel version");
    let dep = std::fs::read_to_string(modules.join(&kver).join("modules.dep")).expect("read modules.dep");
    entry(&format!("lib/modules/{kver}/modules.dep"));
    // Every module the init loads is there, and so is everything modules.dep says they need.
    for wanted in [
        "evdev",
        "button",
        "isofs",
        "sr_mod",
        "virtio_blk",
        "virtio_net",
        "virtio_scsi",
        "virtio_pci",
    ] {
        assert!(
            dep.lines()
                .any(|line| line.split(':').next().unwrap().ends_with(&format!("/{wanted}.ko"))),
            "{wanted} missing from modules.dep:\n{dep}"
        );
    }
    for line in dep.lines() {
        let (module, deps) = line.split_once(':').expect("modules.dep line has a colon");
        for path in std::iter::once(module).chain(deps.split_whitespace()) {
            entry(&format!("lib/modules/{kver}/{path}"));
        }
    }
}

/// A qemu process killed on drop.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts qemu on the guest at `prefix` with the arguments `moby run qemu` uses, console on stdout.
fn start_qemu(prefix: &Path, extra_cmdline: &str, devices: &[String]) -> (Qemu, Console) {
    let file = |suffix: &str| format!("{}{suffix}", prefix.display());
    let cmdline = std::fs::read_to_string(file("-cmdline")).expect("read cmdline");
    let mut command = Command::new("qemu-system-x86_64");
    command.args(["-machine", "q35,accel=tcg", "-smp", "1", "-m", "1024"]);
    command.args([
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
    ]);
    command.args(["-kernel", &file("-kernel"), "-initrd", &file("-initrd.img")]);
    command.args(["-append", &format!("{cmdline} {extra_cmdline}")]);
    command.args(devices).arg("-nographic");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .expect("start qemu-system-x86_64 (run scripts/setup.sh)");
    let console = Console::new(child.stdout.take().expect("qemu stdout"));
    (Qemu(child), console)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Reads QMP messages until one has `key`.
fn qmp_until(reader: &mut impl BufRead, key: &str) -> serde_json::Value {
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("read QMP") > 0,
            "QMP closed before {key}"
        );
        let message: serde_json::Value = serde_json::from_str(&line).expect("QMP message is JSON");
        if message.get(key).is_some() {
            return message;
        }
    }
}

#[test]
fn the_guest_boots_under_bare_qemu_and_powers_off_on_the_acpi_button() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = guest::write_guest(dir.path(), "tiny");
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .expect("create disk")
        .set_len(3 << 20)
        .expect("size disk");
    let userdata = "#cloud-config\nanswer: \"42\" \\ done\n";
    let iso_dir = dir.path().join("iso");
    std::fs::create_dir(&iso_dir).expect("mkdir iso");
    std::fs::write(iso_dir.join("user-data"), userdata).expect("write user-data");
    std::fs::write(iso_dir.join("meta-data"), "instance-id: tiny\n").expect("write meta-data");
    let iso = dir.path().join("data.iso");
    let status = Command::new("genisoimage")
        .args(["-quiet", "-V", "cidata", "-r", "-J", "-o"])
        .arg(&iso)
        .arg(&iso_dir)
        .status()
        .expect("run genisoimage (run scripts/setup.sh)");
    assert!(status.success(), "genisoimage failed");
    let port = free_port();
    let qmp = dir.path().join("qmp.sock");
    let devices = [
        "-drive".into(),
        format!("file={},format=raw,if=none,id=disk0", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=disk0".into(),
        "-device".into(),
        "virtio-scsi-pci,id=scsi0".into(),
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=cd0,media=cdrom,readonly=on",
            iso.display()
        ),
        "-device".into(),
        "scsi-cd,bus=scsi0.0,drive=cd0".into(),
        "-device".into(),
        "virtio-net-pci,netdev=t0,mac=02:00:00:00:00:01".into(),
        "-netdev".into(),
        format!("user,id=t0,hostfwd=tcp:127.0.0.1:{port}-:{}", guest::PONG_PORT),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ];
    let (mut qemu, mut console) = start_qemu(&prefix, "", &devices);

    console.wait_for(marker::READY, BOOT_TIMEOUT);
    assert_eq!(
        console.markers(),
        [
            marker::INIT.to_string(),
            guest::userdata_line(userdata),
            format!("{}vda {}", marker::DISK, 3 << 20),
            marker::NET.into(),
            marker::LISTENING.into(),
            marker::READY.into(),
        ],
        "console:\n{}",
        console.seen.join("\n")
    );
    assert_eq!(
        guest::userdata_line(userdata),
        r#"moby-guest: userdata #cloud-config\nanswer: "42" \\ done\n"#
    );

    // Two round trips: the server keeps listening after the first connection.
    for text in ["first", "second one"] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set timeout");
        stream.write_all(format!("{text}\n").as_bytes()).expect("send a line");
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).expect("read the reply");
        assert_eq!(reply, format!("pong {text}\n"));
    }

    let stream = UnixStream::connect(&qmp).expect("connect QMP");
    let mut reader = BufReader::new(stream.try_clone().expect("clone QMP stream"));
    let mut writer = stream;
    qmp_until(&mut reader, "QMP");
    writer
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .expect("send qmp_capabilities");
    qmp_until(&mut reader, "return");
    writer
        .write_all(b"{\"execute\":\"system_powerdown\"}\n")
        .expect("send system_powerdown");
    console.wait_for(marker::POWER_BUTTON, BOOT_TIMEOUT);
    let shutdown = loop {
        let event = qmp_until(&mut reader, "event");
        if event["event"] == "SHUTDOWN" {
            break event;
        }
    };
    assert_eq!(shutdown["data"]["guest"], true, "{shutdown}");
    assert_eq!(shutdown["data"]["reason"], "guest-shutdown", "{shutdown}");
    console.drain(BOOT_TIMEOUT);
    let status = qemu.0.wait().expect("wait for qemu");
    assert!(status.success(), "qemu exited with {status}");
}

#[test]
fn the_poweroff_option_powers_the_guest_off_after_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = guest::write_guest(dir.path(), "tiny");
    // A network card but no disk and no CD.
    let devices = ["-nic".to_string(), "user,model=virtio-net-pci".to_string()];
    let started = Instant::now();
    let (mut qemu, mut console) = start_qemu(&prefix, guest::POWEROFF_OPTION, &devices);
    console.drain(BOOT_TIMEOUT);
    let status = qemu.0.wait().expect("wait for qemu");
    assert!(status.success(), "qemu exited with {status}");
    assert_eq!(
        console.markers(),
        [
            marker::INIT,
            marker::NO_USERDATA,
            marker::NET,
            marker::LISTENING,
            marker::READY,
            marker::POWEROFF
        ],
        "console:\n{}",
        console.seen.join("\n")
    );
    eprintln!("guest booted and powered off in {:?}", started.elapsed());
}
