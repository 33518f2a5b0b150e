//! A tiny bootable guest for `moby run` tests: the Debian cloud kernel, a static busybox and a shell
//! init (`guest-init.sh`) that reports on the serial console what it finds, as lines starting with
//! `moby-guest: ` (see [`marker`]).
//!
//! The pieces come from `scripts/test-guest.sh` (run by `scripts/setup.sh`), into
//! `<repo>/target/test-guest` or `$MOBY_TEST_GUEST`. [`write_guest`] turns them into
//! `NAME-kernel`, `NAME-initrd.img` and `NAME-cmdline`, the files `moby run` boots from a prefix.

#![allow(dead_code)]

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use builder::output::cpio::{FileType, NewcHeader, NewcWriter};
use builder::output::{PgzipOptions, PgzipWriter};

/// The guest's PID 1.
pub const INIT: &str = include_str!("guest-init.sh");

/// Kernel command line written by [`write_guest`]: console on the first serial port, kernel
/// messages at warning level and up only.
pub const CMDLINE: &str = "console=ttyS0 quiet";

/// Kernel command line option that makes the guest power itself off right after `ready`.
pub const POWEROFF_OPTION: &str = "moby_guest.poweroff";

/// Kernel command line option: the guest reports the ACPI power button but does not power off.
pub const DEAF_OPTION: &str = "moby_guest.deaf";

/// TCP port the guest answers on: a connection's first line `L` gets `pong L\n`.
pub const PONG_PORT: u16 = 7777;

/// Console lines printed by the guest init, in the order they appear. With `moby_guest.trace` on
/// the kernel command line the init also prints `moby-guest-trace: <uptime> <step>` lines.
pub mod marker {
    /// Prefix of every line printed by the init.
    pub const PREFIX: &str = "moby-guest: ";
    /// First line, before any module is loaded.
    pub const INIT: &str = "moby-guest: init";
    /// Followed by the CD's `user-data`, every `\` written as `\\` and every newline as `\n`.
    pub const USERDATA: &str = "moby-guest: userdata ";
    /// No CD labelled `cidata`.
    pub const NO_USERDATA: &str = "moby-guest: no userdata";
    /// Followed by `vdX <size in bytes>`, one line per virtio disk.
    pub const DISK: &str = "moby-guest: disk ";
    /// eth0 configured as 10.0.2.15/24 via 10.0.2.2 (qemu user networking).
    pub const NET: &str = "moby-guest: net eth0 10.0.2.15";
    /// The pong server listens on port 7777.
    pub const LISTENING: &str = "moby-guest: listening 7777";
    /// Everything above is done.
    pub const READY: &str = "moby-guest: ready";
    /// The ACPI power button was pressed; the guest syncs and powers off.
    pub const POWER_BUTTON: &str = "moby-guest: acpi power-button";
    /// The guest ignored the power button ([`super::DEAF_OPTION`]).
    pub const IGNORED: &str = "moby-guest: ignoring the power button";
    /// The command line had `moby_guest.poweroff`; the guest powers off.
    pub const POWEROFF: &str = "moby-guest: poweroff";
    /// Followed by what failed; the init carries on.
    pub const ERROR: &str = "moby-guest: error ";
}

/// The text of a [`marker::USERDATA`] line for `user-data` content `data`.
pub fn userdata_line(data: &str) -> String {
    format!(
        "{}{}",
        marker::USERDATA,
        data.replace('\\', "\\\\").replace('\n', "\\n")
    )
}

/// The directory made by `scripts/test-guest.sh`: `$MOBY_TEST_GUEST`, else `<repo>/target/test-guest`.
/// Panics (the test fails, it is not skipped) when it has not been made.
pub fn fixture() -> PathBuf {
    let dir = match std::env::var_os("MOBY_TEST_GUEST") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-guest"),
    };
    for piece in ["STAMP", "vmlinuz", "busybox", "modules"] {
        assert!(
            dir.join(piece).exists(),
            "the test guest is missing {}: run scripts/test-guest.sh {} (or scripts/setup.sh)",
            dir.join(piece).display(),
            dir.display()
        );
    }
    dir
}

/// Writes `out_dir/NAME-kernel`, `NAME-initrd.img` and `NAME-cmdline` (= [`CMDLINE`]) and returns
/// the prefix `out_dir/NAME`.
pub fn write_guest(out_dir: &Path, name: &str) -> PathBuf {
    write_guest_with_cmdline(out_dir, name, CMDLINE)
}

/// [`write_guest`] with another kernel command line (e.g. `CMDLINE` plus [`POWEROFF_OPTION`]).
pub fn write_guest_with_cmdline(out_dir: &Path, name: &str, cmdline: &str) -> PathBuf {
    let fixture = fixture();
    fs::create_dir_all(out_dir).expect("create the guest output directory");
    let prefix = out_dir.join(name);
    let with_suffix = |suffix: &str| PathBuf::from(format!("{}{suffix}", prefix.display()));
    fs::copy(fixture.join("vmlinuz"), with_suffix("-kernel")).expect("copy the test guest kernel");
    fs::write(with_suffix("-cmdline"), cmdline).expect("write the guest cmdline");
    let file = fs::File::create(with_suffix("-initrd.img")).expect("create the guest initrd");
    let options = PgzipOptions {
        threads: 1,
        ..PgzipOptions::default()
    };
    let gzip = PgzipWriter::new(BufWriter::new(file), options).expect("start gzip");
    let gzip = write_initrd(&fixture, gzip).expect("write the guest initrd");
    gzip.finish()
        .expect("finish gzip")
        .flush()
        .expect("flush the guest initrd");
    prefix
}

/// The initrd as an uncompressed newc cpio archive.
pub fn initrd_cpio() -> Vec<u8> {
    write_initrd(&fixture(), Vec::new()).expect("write the guest initrd")
}

/// Writes the initrd cpio (init, busybox, `/dev/console`, empty mount points, the modules) to `out`.
fn write_initrd<W: Write>(fixture: &Path, out: W) -> std::io::Result<W> {
    let mut cpio = NewcWriter::new(out);
    for dir in ["bin", "dev", "mnt", "proc", "run", "sys", "tmp"] {
        cpio.write_header(&NewcHeader::new(dir, FileType::Directory, 0o755))?;
    }
    // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    let mut console = NewcHeader::new("dev/console", FileType::Char, 0o600);
    console.rdev_major = 5;
    console.rdev_minor = 1;
    cpio.write_header(&console)?;
    add_file(&mut cpio, "init", 0o755, INIT.as_bytes())?;
    add_file(&mut cpio, "bin/busybox", 0o755, &fs::read(fixture.join("busybox"))?)?;
    add_tree(&mut cpio, &fixture.join("modules"), "")?;
    Ok(cpio.finish()?)
}

pub fn add_file<W: Write>(cpio: &mut NewcWriter<W>, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
    let mut header = NewcHeader::new(name, FileType::Regular, mode);
    header.size = u32::try_from(data.len()).expect("guest file under 4 GiB");
    cpio.write_header(&header)?;
    cpio.write_data(data)?;
    Ok(())
}

/// Adds the directories and regular files under `dir` as `prefix...`, sorted by name (e.g. the
/// kernel modules, `lib/modules/<kver>/...`).
pub fn add_tree<W: Write>(cpio: &mut NewcWriter<W>, dir: &Path, prefix: &str) -> std::io::Result<()> {
    let mut entries = fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type()?.is_dir() {
            cpio.write_header(&NewcHeader::new(name.as_str(), FileType::Directory, 0o755))?;
            add_tree(cpio, &entry.path(), &format!("{name}/"))?;
        } else {
            add_file(cpio, &name, 0o644, &fs::read(entry.path())?)?;
        }
    }
    Ok(())
}

/// The console output of a booting guest, read line by line on a thread.
pub struct Console {
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line received so far (`\r` removed), for failure messages.
    pub seen: Vec<String>,
}

impl Console {
    /// Starts reading `source` (a child's stdout, a pipe, ...) on a thread.
    pub fn new(source: impl std::io::Read + Send + 'static) -> Console {
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(source);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if tx.send(text).is_err() {
                    return;
                }
                line.clear();
            }
        });
        Console {
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line starting with `prefix`; panics with the console so far after `timeout` or when
    /// the output ends first.
    pub fn wait_for(&mut self, prefix: &str, timeout: std::time::Duration) -> String {
        self.wait_until(prefix, timeout, |line| line.starts_with(prefix))
    }

    /// The next line containing `text` (kernel messages may share a line with it).
    pub fn wait_for_text(&mut self, text: &str, timeout: std::time::Duration) -> String {
        self.wait_until(text, timeout, |line| line.contains(text))
    }

    fn wait_until(&mut self, what: &str, timeout: std::time::Duration, found: impl Fn(&str) -> bool) -> String {
        match self.try_wait_until(timeout, found) {
            Ok(line) => line,
            Err(err) => panic!(
                "no console line with {what:?} ({err}); console so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// The next line for which `found` holds, or why there was none: the timeout passed, or the
    /// output ended.
    pub fn try_wait_until(
        &mut self,
        timeout: std::time::Duration,
        found: impl Fn(&str) -> bool,
    ) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left)?;
            self.seen.push(line.clone());
            if found(&line) {
                return Ok(line);
            }
        }
    }

    /// The `moby-guest: ` lines seen so far.
    pub fn markers(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter(|line| line.starts_with(marker::PREFIX))
            .map(String::as_str)
            .collect()
    }

    /// Reads the rest of the output (until the source closes) into [`Console::seen`].
    pub fn drain(&mut self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(err) => panic!("console still open ({err}); console so far:\n{}", self.seen.join("\n")),
            }
        }
    }
}
