//! Stage 1 with the root filesystem on a disk (LinuxKit's `kernel+squashfs` and `kernel+iso`):
//! the initramfs holds only `/init` and `lib/modules/<release>`, and the kernel command line says
//! where the system is (`root=`).
//!
//! The contract (read from `/proc/cmdline`; the last occurrence of each word wins):
//!
//! - `root=DEV`: `/dev/NAME` (e.g. `/dev/vda`, `/dev/sr0`, `/dev/vda1`), `LABEL=x` (an ISO 9660
//!   volume id or an ext2/3/4 label), `UUID=x` (ext2/3/4; ISO 9660 as blkid derives it from the
//!   volume's date, `2024-01-02-03-04-05-00`), or `/dev/disk/by-label/x`, `/dev/disk/by-uuid/x`
//!   for the same (there is no udev, so these links never exist). Without `root=`, stage 1 is the
//!   initramfs copy of [`crate::boot`], as before.
//! - `rootfstype=T[,T...]`: the filesystem types to try in order; otherwise the device's superblock
//!   says (squashfs, iso9660, ext4), and an unknown one is tried as squashfs, iso9660, ext4.
//! - `rootflags=OPTS`: mount data for the root device.
//! - `rootwait=SECONDS` bounds the wait for the device (default 30 s); bare `rootwait` waits
//!   forever (a reminder every 30 s).
//!
//! Steps: devtmpfs, proc and sysfs are mounted; the modules of the present devices are loaded
//! ([`crate::coldplug`], pass after pass while waiting: a virtio-scsi CD appears only after the
//! SCSI scan), with the filesystem modules (squashfs, isofs, overlay and `rootfstype=`'s); the
//! device is mounted read-only on `/.moby-root/ro`, a tmpfs on `/.moby-root/rw`, and an overlay
//! (lower: the device, upper and work on the tmpfs) on `/.moby-root/new`, so the system root is
//! writable like an initramfs root. The overlay is moved onto `/`, the API filesystems into it, the
//! initramfs emptied (its memory freed), and `/init` of the new root executed after a `chroot`:
//! that is stage 2, on a root that containers can `pivot_root` away from.
//!
//! Any failure before the switch is reported on the console with what to do; see
//! [`crate::boot::pid1`] for what happens next.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::coldplug::Coldplug;

/// Where the root is assembled in the initramfs.
const WORK: &str = "/.moby-root";
/// The root device, mounted read-only.
const RO: &str = "/.moby-root/ro";
/// The tmpfs with the overlay's upper and work directories.
const RW: &str = "/.moby-root/rw";
/// The overlay: the new root.
const NEW: &str = "/.moby-root/new";
/// How long the root device may take to appear without `rootwait=`.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The filesystem types tried, in order, when neither `rootfstype=` nor the superblock says.
const FALLBACK_TYPES: [&str; 3] = ["squashfs", "iso9660", "ext4"];
/// Bytes read from a device to recognise its filesystem: up to the end of the ISO 9660 primary
/// volume descriptor (sector 16 of 2 KiB).
const PROBE_BYTES: usize = 0x8800;
/// Pause between two looks for the device.
const POLL: Duration = Duration::from_millis(100);

/// Which device `root=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// A device node, `/dev/NAME`.
    Path(String),
    /// A filesystem label.
    Label(String),
    /// A filesystem UUID (compared without regard to case).
    Uuid(String),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Path(path) => write!(f, "{path}"),
            Device::Label(label) => write!(f, "LABEL={label}"),
            Device::Uuid(uuid) => write!(f, "UUID={uuid}"),
        }
    }
}

/// What the kernel command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// `root=`.
    pub device: Device,
    /// `rootfstype=`, split at commas; empty: from the superblock.
    pub fstypes: Vec<String>,
    /// `rootflags=`.
    pub flags: String,
    /// How long to wait for the device; None: forever (bare `rootwait`).
    pub wait: Option<Duration>,
}

/// The words of a kernel command line as the kernel splits them: at spaces, except inside double
/// quotes (which are dropped); `--` ends the kernel's part.
fn words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    match words.iter().position(|w| w == "--") {
        Some(end) => words[..end].to_vec(),
        None => words,
    }
}

/// The disk root that `cmdline` asks for: None without `root=`; an error (what is wrong and what
/// is understood) for a value that cannot be used.
pub fn parse(cmdline: &str) -> std::result::Result<Option<Root>, String> {
    let (mut device, mut fstypes, mut flags, mut wait) = (None, Vec::new(), String::new(), Some(DEFAULT_WAIT));
    for word in words(cmdline) {
        if let Some(value) = word.strip_prefix("root=") {
            device = Some(value.to_string());
        } else if let Some(value) = word.strip_prefix("rootfstype=") {
            fstypes = value.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect();
        } else if let Some(value) = word.strip_prefix("rootflags=") {
            flags = value.to_string();
        } else if word == "rootwait" {
            wait = None;
        } else if let Some(value) = word.strip_prefix("rootwait=") {
            let seconds: u64 = value
                .parse()
                .map_err(|_| format!("rootwait={value} is not a number of seconds (e.g. rootwait=60)"))?;
            wait = Some(Duration::from_secs(seconds));
        }
    }
    let Some(value) = device else { return Ok(None) };
    let device = if let Some(label) = value
        .strip_prefix("LABEL=")
        .or_else(|| value.strip_prefix("/dev/disk/by-label/"))
    {
        Device::Label(label.to_string())
    } else if let Some(uuid) = value
        .strip_prefix("UUID=")
        .or_else(|| value.strip_prefix("/dev/disk/by-uuid/"))
    {
        Device::Uuid(uuid.to_string())
    } else if value.starts_with("/dev/") && value.len() > "/dev/".len() {
        Device::Path(value.clone())
    } else {
        return Err(format!(
            "root={value} is not understood: give a device node (root=/dev/vda for a squashfs on the first \
             virtio disk, root=/dev/sr0 for an ISO on a CD), root=LABEL=NAME or root=UUID=ID \
             (PARTUUID=, PARTLABEL= and MAJOR:MINOR are not supported)"
        ));
    };
    if let Device::Label(x) | Device::Uuid(x) = &device {
        if x.is_empty() {
            return Err(format!("root={value} names no label or UUID"));
        }
    }
    Ok(Some(Root {
        device,
        fstypes,
        flags,
        wait,
    }))
}

/// What a device's first bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The filesystem type, as `mount(2)` names it.
    pub fstype: &'static str,
    /// Its label (ISO 9660 volume id, ext volume name), if any.
    pub label: Option<String>,
    /// Its UUID (ext; ISO 9660 as blkid makes one from the volume's date), if any.
    pub uuid: Option<String>,
}

/// Recognises squashfs, ISO 9660 and ext2/3/4 from the first [`PROBE_BYTES`] of a device.
pub fn probe(head: &[u8]) -> Option<Probe> {
    if head.starts_with(b"hsqs") {
        return Some(Probe {
            fstype: "squashfs",
            label: None,
            uuid: None,
        });
    }
    let pvd = head.get(0x8000..0x8800);
    if let Some(pvd) = pvd.filter(|pvd| pvd[0] == 1 && &pvd[1..6] == b"CD001") {
        let text = |bytes: &[u8]| {
            let s = String::from_utf8_lossy(bytes);
            let s = s.trim_end_matches([' ', '\0']);
            (!s.is_empty()).then(|| s.to_string())
        };
        // blkid: the modification date, else the creation date, as YYYY-MM-DD-HH-MM-SS-CC.
        let date = |at: usize| {
            let d = &pvd[at..at + 17];
            let unset = d[..16].iter().all(|b| *b == b'0' || *b == 0) && d[16] == 0;
            (!unset && d[..16].iter().all(u8::is_ascii_digit)).then(|| {
                let s = String::from_utf8_lossy(&d[..16]).into_owned();
                format!(
                    "{}-{}-{}-{}-{}-{}-{}",
                    &s[0..4],
                    &s[4..6],
                    &s[6..8],
                    &s[8..10],
                    &s[10..12],
                    &s[12..14],
                    &s[14..16]
                )
            })
        };
        return Some(Probe {
            fstype: "iso9660",
            label: text(&pvd[40..72]),
            uuid: date(830).or_else(|| date(813)),
        });
    }
    if let Some(sb) = head.get(1024..2048).filter(|sb| sb[0x38..0x3A] == [0x53, 0xEF]) {
        let uuid = &sb[0x68..0x78];
        let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
        let label = String::from_utf8_lossy(&sb[0x78..0x88])
            .trim_end_matches('\0')
            .to_string();
        return Some(Probe {
            fstype: "ext4",
            label: (!label.is_empty()).then_some(label),
            uuid: uuid.iter().any(|b| *b != 0).then(|| {
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }),
        });
    }
    None
}

/// The first bytes of a block device (fewer when it is smaller).
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(PROBE_BYTES);
    fs::File::open(path)?.take(PROBE_BYTES as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// The block devices the kernel has registered (`/sys/class/block`), sorted.
fn block_devices() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The present block devices with what they hold, for error messages: `vda (squashfs)`.
fn describe_block_devices() -> String {
    let described: Vec<String> = block_devices()
        .into_iter()
        .filter(|name| !name.starts_with("loop") && !name.starts_with("ram"))
        .map(|name| {
            let what = match read_head(&Path::new("/dev").join(&name)) {
                Ok(head) => match probe(&head) {
                    Some(p) => {
                        let mut s = p.fstype.to_string();
                        if let Some(label) = &p.label {
                            s.push_str(&format!(", LABEL={label}"));
                        }
                        if let Some(uuid) = &p.uuid {
                            s.push_str(&format!(", UUID={uuid}"));
                        }
                        s
                    }
                    None => "no filesystem recognised".to_string(),
                },
                Err(err) => format!("unreadable: {err}"),
            };
            format!("{name} ({what})")
        })
        .collect();
    if described.is_empty() {
        "none".to_string()
    } else {
        described.join(", ")
    }
}

/// Looks for the device once: its path and what it holds, or why not (yet).
fn find(device: &Device) -> std::result::Result<(PathBuf, Option<Probe>), String> {
    match device {
        Device::Path(path) => {
            let path = PathBuf::from(path);
            let meta = fs::metadata(&path).map_err(|err| format!("{}: {err}", path.display()))?;
            if !meta.file_type().is_block_device() {
                return Err(format!("{} is not a block device", path.display()));
            }
            // A CD drive exists before its medium can be read.
            let head = read_head(&path).map_err(|err| format!("{} cannot be read yet: {err}", path.display()))?;
            Ok((path, probe(&head)))
        }
        Device::Label(_) | Device::Uuid(_) => {
            for name in block_devices() {
                let path = Path::new("/dev").join(&name);
                let Ok(head) = read_head(&path) else { continue };
                let Some(found) = probe(&head) else { continue };
                let matches = match device {
                    Device::Label(label) => found.label.as_deref() == Some(label.as_str()),
                    Device::Uuid(uuid) => found.uuid.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(uuid)),
                    Device::Path(_) => false,
                };
                if matches {
                    return Ok((path, Some(found)));
                }
            }
            Err(format!("no block device has {device}"))
        }
    }
}

fn mkdir(path: &str) -> Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(0o755).create(path) {
        Ok(()) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("create {path}")),
    }
}

/// Whether the kernel knows filesystem type `fstype` now (`/proc/filesystems`).
fn kernel_has(fstype: &str) -> bool {
    fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fstype))
}

/// Loads the module of filesystem `fstype` (alias `fs-TYPE`) unless the kernel has it; returns
/// the modules loaded, or why it could not.
fn load_fs(coldplug: &mut Option<Coldplug>, fstype: &str) -> std::result::Result<Vec<String>, String> {
    if kernel_has(fstype) {
        return Ok(Vec::new());
    }
    let Some(coldplug) = coldplug.as_mut() else {
        return Err(format!("no {fstype} driver and no modules to load it from"));
    };
    coldplug.load(&format!("fs-{fstype}")).map_err(|err| format!("{err:#}"))
}

/// Proc, devtmpfs and sysfs, mounted as stage 2 mounts them (it keeps what is already mounted).
fn mount_api() -> Result<()> {
    for target in ["/proc", "/dev", "/sys"] {
        crate::boot::mount_api(target).with_context(|| format!("mount {target}"))?;
    }
    crate::boot::reopen_console();
    Ok(())
}

/// Unmounts what stage 1 mounted in the initramfs (before carrying on from it).
pub fn unmount_api() {
    for target in [NEW, RW, RO, "/sys", "/dev", "/proc"] {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir_all(WORK);
}

/// What stage 1 should do, from the kernel command line.
pub enum Request {
    /// No `root=`: the initramfs is the system (`/proc` is left as it was).
    Initramfs,
    /// A disk root (`/proc` stays mounted).
    Disk(Root),
    /// A `root=` that cannot be used: why and what to do.
    Invalid(String),
}

/// Reads `/proc/cmdline` (mounting `/proc` for it, and unmounting it again without `root=`).
pub fn request() -> Request {
    let created = !Path::new("/proc").exists() && fs::DirBuilder::new().mode(0o555).create("/proc").is_ok();
    let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME;
    let mounted = mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>).is_ok();
    let cmdline = fs::read_to_string("/proc/cmdline");
    let request = match &cmdline {
        Ok(cmdline) => match parse(cmdline) {
            Ok(None) => Request::Initramfs,
            Ok(Some(root)) => Request::Disk(root),
            Err(why) => Request::Invalid(why),
        },
        Err(err) => {
            eprintln!("init: cannot read the kernel command line (/proc/cmdline: {err}); booting from the initramfs");
            Request::Initramfs
        }
    };
    if matches!(request, Request::Initramfs) {
        if mounted {
            let _ = umount2("/proc", MntFlags::MNT_DETACH);
        }
        if created {
            let _ = fs::remove_dir("/proc");
        }
    }
    request
}

/// Mounts the disk root and executes its `/init`. Returns only when something failed before the
/// switch (the initramfs is then intact, its API filesystems mounted; see [`unmount_api`]).
pub fn boot(root: &Root) -> Result<std::convert::Infallible> {
    let t = Instant::now();
    let root_dev = fs::metadata("/").context("stat /")?.dev();
    mount_api()?;
    let waiting = match root.wait {
        Some(bound) => format!("up to {} s", bound.as_secs()),
        None => "as long as it takes (rootwait)".to_string(),
    };
    eprintln!("init: root={}: loading modules, waiting {waiting} for it", root.device);
    let mut coldplug = match Coldplug::open() {
        Ok(coldplug) => coldplug,
        Err(err) => {
            eprintln!("init: cannot read the kernel modules: {err:#}");
            None
        }
    };
    let mut loaded: Vec<String> = Vec::new();
    let mut fs_errors = Vec::new();
    let fstypes: Vec<String> = if root.fstypes.is_empty() {
        vec!["squashfs".into(), "iso9660".into()]
    } else {
        root.fstypes.clone()
    };
    for fstype in fstypes.iter().map(String::as_str).chain(["overlay"]) {
        match load_fs(&mut coldplug, fstype) {
            Ok(newly) => loaded.extend(newly),
            Err(why) => fs_errors.push(format!("{fstype}: {why}")),
        }
    }

    let deadline = root.wait.map(|bound| t + bound);
    let mut remind = t + DEFAULT_WAIT;
    let (device, probed) = loop {
        if let Some(coldplug) = coldplug.as_mut() {
            loaded.extend(coldplug.pass());
        }
        let why = match find(&root.device) {
            Ok(found) => break found,
            Err(why) => why,
        };
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            bail!(
                "the root device {} did not appear within {} s ({why}). Block devices present: {}. {}\
                 Check root= on the kernel command line (a squashfs on the first virtio disk is /dev/vda, \
                 an ISO on a virtio-scsi CD is /dev/sr0), that the disk is attached to the machine, and that \
                 the initrd has the modules of its controller; rootwait=SECONDS waits longer",
                root.device,
                root.wait.unwrap_or_default().as_secs(),
                describe_block_devices(),
                modules_summary(&coldplug, &fs_errors)
            );
        }
        if deadline.is_none() && now >= remind {
            eprintln!(
                "init: still waiting for the root device {} ({why}; block devices present: {})",
                root.device,
                describe_block_devices()
            );
            remind = now + DEFAULT_WAIT;
        }
        std::thread::sleep(POLL);
    };
    let found_after = t.elapsed();

    let fstype = match mount_device(&device, probed.as_ref(), root, &mut coldplug) {
        Ok(fstype) => fstype,
        Err(err) => {
            unmount_api_work();
            let summary = modules_summary(&coldplug, &fs_errors);
            return Err(anyhow::anyhow!("{err:#}. {}", summary.trim_end()));
        }
    };
    if let Err(err) = assemble() {
        unmount_api_work();
        return Err(err);
    }
    eprintln!(
        "init: root {} ({fstype}) found in {} ms, mounted read-only under a writable overlay in {} ms; \
         modules loaded: {}",
        device.display(),
        found_after.as_millis(),
        t.elapsed().as_millis(),
        if loaded.is_empty() {
            "none".to_string()
        } else {
            loaded.join(" ")
        }
    );
    switch(root_dev)
}

/// `Modules loaded: ...; failed: ...; filesystem drivers: ... ` for error messages.
fn modules_summary(coldplug: &Option<Coldplug>, fs_errors: &[String]) -> String {
    let Some(coldplug) = coldplug else {
        return "No kernel modules in the initramfs (/lib/modules/<release>/modules.dep is missing): \
                the initrd must carry the kernel's modules. "
            .to_string();
    };
    let loaded: Vec<&str> = coldplug.loaded().collect();
    let failed: Vec<String> = coldplug.failures().map(|(m, why)| format!("{m} ({why})")).collect();
    let mut s = format!(
        "Modules loaded (from {}): {}. ",
        coldplug.dir().display(),
        if loaded.is_empty() {
            "none".to_string()
        } else {
            loaded.join(" ")
        }
    );
    if !failed.is_empty() {
        s.push_str(&format!("Modules that failed: {}. ", failed.join("; ")));
    }
    if !fs_errors.is_empty() {
        s.push_str(&format!("Filesystem drivers missing: {}. ", fs_errors.join("; ")));
    }
    s
}

/// Unmounts the work mounts after a failure (the API filesystems stay for the caller).
fn unmount_api_work() {
    for target in [NEW, RW, RO] {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
}

/// Mounts `device` read-only on [`RO`]; returns the filesystem type that worked.
fn mount_device(device: &Path, probed: Option<&Probe>, root: &Root, coldplug: &mut Option<Coldplug>) -> Result<String> {
    mkdir(RO)?;
    let candidates: Vec<String> = if !root.fstypes.is_empty() {
        root.fstypes.clone()
    } else if let Some(probed) = probed {
        vec![probed.fstype.to_string()]
    } else {
        FALLBACK_TYPES.iter().map(|t| t.to_string()).collect()
    };
    let data = (!root.flags.is_empty()).then_some(root.flags.as_str());
    let mut errors = Vec::new();
    for fstype in &candidates {
        let _ = load_fs(coldplug, fstype);
        match mount(Some(device), RO, Some(fstype.as_str()), MsFlags::MS_RDONLY, data) {
            Ok(()) => return Ok(fstype.clone()),
            Err(nix::errno::Errno::ENODEV) => errors.push(format!("{fstype}: the kernel has no such filesystem")),
            Err(err) => errors.push(format!("{fstype}: {err}")),
        }
    }
    let holds = match probed {
        Some(p) => format!("it holds {}", p.fstype),
        None => "its first bytes are no squashfs, ISO 9660 or ext2/3/4".to_string(),
    };
    bail!(
        "cannot mount the root device {} read-only ({}; {holds}). Give rootfstype= if the type is another, \
         or check that root= names the disk with the system",
        device.display(),
        errors.join("; ")
    )
}

/// The tmpfs and the overlay on [`NEW`]; checks that the new root has an `/init`.
fn assemble() -> Result<()> {
    mkdir(RW)?;
    mount(Some("tmpfs"), RW, Some("tmpfs"), MsFlags::empty(), Some("mode=755"))
        .context("mount a tmpfs for the writable layer")?;
    let lower = fs::metadata(RO).with_context(|| format!("stat {RO}"))?;
    let upper = format!("{RW}/upper");
    let work = format!("{RW}/work");
    mkdir(&upper)?;
    mkdir(&work)?;
    // The merged root shows the upper directory's owner and mode: those of the device's root.
    let _ = std::os::unix::fs::chown(&upper, Some(lower.uid()), Some(lower.gid()));
    let _ = fs::set_permissions(&upper, fs::Permissions::from_mode(lower.mode() & 0o7777));
    mkdir(NEW)?;
    let options = format!("lowerdir={RO},upperdir={upper},workdir={work}");
    mount(
        Some("overlay"),
        NEW,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .context("mount the overlay (is the overlay module in the initramfs?)")?;
    let init = Path::new(NEW).join("init");
    if fs::symlink_metadata(&init).is_err() {
        bail!("the root device has no /init: it is not a moby image's root filesystem (root= names another disk?)");
    }
    Ok(())
}

/// Moves the overlay onto `/` and the API filesystems into it, empties the initramfs, `chroot`s
/// and executes the new root's `/init`. Past the move there is no way back: a failure then powers
/// off.
fn switch(root_dev: u64) -> Result<std::convert::Infallible> {
    std::env::set_current_dir(NEW).with_context(|| format!("enter {NEW}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).context("move the new root onto /")?;
    // Until the chroot, absolute paths still resolve in the initramfs; relative ones in the new root.
    for api in ["dev", "proc", "sys"] {
        let _ = fs::DirBuilder::new().mode(0o755).create(api);
        if let Err(err) = mount(
            Some(format!("/{api}").as_str()),
            api,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        ) {
            eprintln!("init: moving /{api} into the new root failed ({err}); stage 2 mounts it again");
            let _ = umount2(format!("/{api}").as_str(), MntFlags::MNT_DETACH);
        }
    }
    let (files, bytes) = crate::boot::remove_tree(Path::new("/"), root_dev, Path::new(WORK));
    eprintln!(
        "init: initramfs emptied ({files} files, {} KiB freed); starting the new root's /init",
        bytes / 1024
    );
    if let Err(err) = nix::unistd::chroot(".") {
        no_way_back(&format!("chroot into the new root failed: {err}"));
    }
    let _ = std::env::set_current_dir("/");
    match crate::boot::exec_stage2() {
        Ok(never) => match never {},
        Err(err) => no_way_back(&format!("{err:#}")),
    }
}

fn no_way_back(what: &str) -> ! {
    eprintln!(
        "init: {what}; the initramfs is gone, nothing else can be started: powering off. Check the image's /init"
    );
    crate::supervisor::final_power_off(nix::sys::reboot::RebootMode::RB_POWER_OFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn command_line_words_follow_the_kernel() {
        assert_eq!(
            words(r#"console=ttyS0  root="LABEL=my disk" quiet -- root=/dev/ignored"#),
            ["console=ttyS0", "root=LABEL=my disk", "quiet"]
        );
        assert!(words("  ").is_empty());
    }

    #[test]
    fn root_requests_are_parsed() {
        assert_eq!(parse("console=ttyS0 quiet"), Ok(None));
        let root = parse("console=ttyS0 root=/dev/vda").unwrap().unwrap();
        assert_eq!(
            root,
            Root {
                device: Device::Path("/dev/vda".into()),
                fstypes: Vec::new(),
                flags: String::new(),
                wait: Some(DEFAULT_WAIT)
            }
        );
        // The last root= wins (vmm appends its own).
        let root = parse("root=/dev/sda rootfstype=iso9660,squashfs rootflags=norock rootwait=5 root=/dev/sr0")
            .unwrap()
            .unwrap();
        assert_eq!(root.device, Device::Path("/dev/sr0".into()));
        assert_eq!(root.fstypes, ["iso9660", "squashfs"]);
        assert_eq!(root.flags, "norock");
        assert_eq!(root.wait, Some(Duration::from_secs(5)));
        assert_eq!(parse("root=/dev/vda rootwait").unwrap().unwrap().wait, None);
        assert_eq!(
            parse("root=LABEL=MOBY").unwrap().unwrap().device,
            Device::Label("MOBY".into())
        );
        assert_eq!(
            parse("root=/dev/disk/by-label/MOBY").unwrap().unwrap().device,
            Device::Label("MOBY".into())
        );
        assert_eq!(
            parse("root=UUID=0b1c").unwrap().unwrap().device,
            Device::Uuid("0b1c".into())
        );
        for bad in [
            "root=8:1",
            "root=PARTUUID=abc",
            "root=vda",
            "root=/dev/",
            "root=LABEL=",
            "root=",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("root="), "{bad}: {err}");
        }
        assert!(parse("root=/dev/vda rootwait=soon")
            .unwrap_err()
            .contains("rootwait=soon"));
    }

    fn tool(name: &str, args: &[&str]) {
        let out = Command::new(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {name} (scripts/setup.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn blkid(image: &Path, tag: &str) -> String {
        let out = Command::new("blkid")
            .args(["-p", "-o", "value", "-s", tag])
            .arg(image)
            .output()
            .expect("run blkid (util-linux)");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn head(image: &Path) -> Vec<u8> {
        read_head(image).unwrap()
    }

    /// Images made by the real tools: the type, label and UUID agree with blkid's.
    #[test]
    fn filesystems_are_recognised_like_blkid() {
        let dir = std::env::temp_dir().join(format!("moby-init-probe-{}", std::process::id()));
        let tree = dir.join("tree");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("init"), b"#!/bin/sh\n").unwrap();

        let iso = dir.join("root.iso");
        tool(
            "xorriso",
            &[
                "-as",
                "mkisofs",
                "-quiet",
                "-R",
                "-V",
                "MOBY_ROOT",
                "--modification-date=2024010203040506",
                "-o",
                iso.to_str().unwrap(),
                tree.to_str().unwrap(),
            ],
        );
        let found = probe(&head(&iso)).unwrap();
        assert_eq!(found.fstype, "iso9660");
        assert_eq!(found.label.as_deref(), Some("MOBY_ROOT"));
        assert_eq!(found.label.clone().unwrap(), blkid(&iso, "LABEL"));
        assert_eq!(found.uuid.as_deref(), Some("2024-01-02-03-04-05-06"));
        assert_eq!(found.uuid.unwrap(), blkid(&iso, "UUID"));

        let sqfs = dir.join("root.squashfs");
        tool(
            "mksquashfs",
            &[
                tree.to_str().unwrap(),
                sqfs.to_str().unwrap(),
                "-noappend",
                "-quiet",
                "-no-progress",
            ],
        );
        assert_eq!(
            probe(&head(&sqfs)),
            Some(Probe {
                fstype: "squashfs",
                label: None,
                uuid: None
            })
        );
        assert_eq!(blkid(&sqfs, "TYPE"), "squashfs");

        let ext = dir.join("root.ext4");
        fs::File::create(&ext).unwrap().set_len(8 << 20).unwrap();
        tool(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-L",
                "moby-data",
                "-U",
                "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
                ext.to_str().unwrap(),
            ],
        );
        let found = probe(&head(&ext)).unwrap();
        assert_eq!(found.fstype, "ext4");
        assert_eq!(found.label.as_deref(), Some("moby-data"));
        assert_eq!(found.uuid.as_deref(), Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"));
        assert_eq!(found.uuid.unwrap(), blkid(&ext, "UUID"));

        // Nothing recognisable: zeros, and a short device.
        assert_eq!(probe(&vec![0u8; PROBE_BYTES]), None);
        assert_eq!(probe(b"hsq"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
