//! `cdrom`: userdata on a CD or a disk labelled for it, as LinuxKit's cdrom provider.
//!
//! Devices tried: block devices whose filesystem label is `cidata`/`CIDATA` (cloud-init's
//! NoCloud; LinuxKit) or `config-2` (OpenStack's config drive), then every `/dev/sr*`, each once.
//! A device is mounted read-only (iso9660, then vfat) on a temporary directory; the userdata is
//! the first of `user-data`, `config` (and on a config drive `openstack/latest/user_data`) that
//! exists. When mounting fails (no `iso9660` in the kernel, no CAP_SYS_ADMIN) an ISO 9660 device
//! is read directly instead. `meta-data` is not used (LinuxKit reads it and ignores it).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

use super::iso9660::Iso;
use super::label::read_label;
use super::Provider;

/// Labels of userdata disks.
pub const LABELS: [&str; 4] = ["cidata", "CIDATA", "config-2", "CONFIG-2"];
/// Files holding the userdata, in the order they are looked for.
pub const USERDATA_FILES: [&str; 3] = ["user-data", "config", "openstack/latest/user_data"];

static MOUNT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where devices are looked for.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `/dev`.
    pub dev: PathBuf,
    /// `/sys/class/block`.
    pub sys_block: PathBuf,
    /// Where temporary mount points are made (`/tmp`).
    pub mount_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            dev: "/dev".into(),
            sys_block: "/sys/class/block".into(),
            mount_root: std::env::temp_dir(),
        }
    }
}

/// The devices to try: labelled block devices first, then CD drives, without repeats.
pub fn list_devices(paths: &Paths) -> Vec<PathBuf> {
    let mut devices = labelled_devices(paths);
    let mut drives: Vec<PathBuf> = names_in(&paths.dev)
        .into_iter()
        .filter(|n| {
            n.strip_prefix("sr")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|n| paths.dev.join(n))
        .collect();
    drives.sort();
    for drive in drives {
        if !devices.contains(&drive) {
            devices.push(drive);
        }
    }
    debug!("cdrom: devices to check: {devices:?}");
    devices
}

/// Block devices (not loop or ram devices) whose filesystem label is one of [`LABELS`].
fn labelled_devices(paths: &Paths) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut names = names_in(&paths.sys_block);
    names.sort();
    for name in names {
        if name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let device = paths.dev.join(&name);
        match read_label(&device) {
            Ok(Some(label)) if LABELS.contains(&label.as_str()) => {
                debug!("cdrom: {} is labelled {label}", device.display());
                found.push(device);
            }
            Ok(label) => debug!("cdrom: {} has label {label:?}", device.display()),
            Err(e) => debug!("cdrom: cannot read {}: {e}", device.display()),
        }
    }
    found
}

fn names_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
        Err(e) => {
            debug!("cdrom: cannot list {}: {e}", dir.display());
            Vec::new()
        }
    }
}

/// One device of the `cdrom` provider.
#[derive(Debug)]
pub struct Cdrom {
    device: PathBuf,
    mount_root: PathBuf,
    userdata: Option<Vec<u8>>,
    error: Option<String>,
}

impl Cdrom {
    /// The provider for `device`, mounting it under `mount_root`.
    pub fn new(device: impl Into<PathBuf>, mount_root: impl Into<PathBuf>) -> Self {
        Cdrom {
            device: device.into(),
            mount_root: mount_root.into(),
            userdata: None,
            error: None,
        }
    }

    /// Reads the userdata from the device: mounted, else as ISO 9660 directly.
    fn read(&mut self) -> Result<Vec<u8>, String> {
        match self.read_mounted() {
            Ok(userdata) => Ok(userdata),
            Err(MountError::Mount(why)) => {
                debug!("cdrom: {why}; reading {} as ISO 9660 directly", self.device.display());
                self.read_iso()
                    .map_err(|e| format!("{why}; and reading it as ISO 9660: {e}"))
            }
            Err(MountError::Read(why)) => Err(why),
        }
    }

    fn read_mounted(&self) -> Result<Vec<u8>, MountError> {
        let n = MOUNT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let target = self.mount_root.join(format!("metadata-cd.{}.{n}", std::process::id()));
        fs::create_dir(&target)
            .map_err(|e| MountError::Mount(format!("cannot create the mount point {}: {e}", target.display())))?;
        let mut errors = Vec::new();
        let mut mounted = false;
        for fs_type in ["iso9660", "vfat"] {
            match mount(&self.device, &target, fs_type, MountFlags::RDONLY, None) {
                Ok(()) => {
                    mounted = true;
                    break;
                }
                Err(e) => errors.push(format!("{fs_type}: {}", io::Error::from(e))),
            }
        }
        let result = if mounted {
            let found = userdata_from(|path| fs::read(target.join(path)).ok());
            if let Err(e) = unmount(&target, UnmountFlags::empty()) {
                info!("cdrom: cannot unmount {}: {}", target.display(), io::Error::from(e));
            }
            found.ok_or_else(|| MountError::Read(self.no_userdata()))
        } else {
            Err(MountError::Mount(format!(
                "cannot mount {} read-only ({})",
                self.device.display(),
                errors.join("; ")
            )))
        };
        let _ = fs::remove_dir(&target);
        result
    }

    fn read_iso(&self) -> Result<Vec<u8>, String> {
        let file = fs::File::open(&self.device).map_err(|e| format!("cannot open {}: {e}", self.device.display()))?;
        let mut iso = Iso::open(io::BufReader::new(file)).map_err(|e| format!("{}: {e}", self.device.display()))?;
        let mut error = None;
        let found = userdata_from(|path| match iso.read_file(path) {
            Ok(data) => data,
            Err(e) => {
                error = Some(format!("{}: reading {path}: {e}", self.device.display()));
                None
            }
        });
        match (found, error) {
            (Some(userdata), _) => Ok(userdata),
            (None, Some(error)) => Err(error),
            (None, None) => Err(self.no_userdata()),
        }
    }

    fn no_userdata(&self) -> String {
        format!(
            "{}: no userdata file found at any of {USERDATA_FILES:?}",
            self.device.display()
        )
    }
}

/// The first of [`USERDATA_FILES`] that `read` finds (even if it is empty, as LinuxKit).
fn userdata_from(mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    USERDATA_FILES.iter().find_map(|path| read(path))
}

enum MountError {
    /// The device could not be mounted.
    Mount(String),
    /// It was mounted but holds no userdata.
    Read(String),
}

impl Provider for Cdrom {
    fn name(&self) -> String {
        format!("CDROM {}", self.device.display())
    }

    fn probe(&mut self) -> bool {
        match self.read() {
            Ok(userdata) => {
                let found = !userdata.is_empty();
                if !found {
                    debug!("cdrom: {}: the userdata file is empty", self.device.display());
                }
                self.userdata = Some(userdata);
                found
            }
            Err(e) => {
                info!("cdrom: {e}");
                self.error = Some(e);
                false
            }
        }
    }

    fn extract(&mut self, _config: &Path) -> Result<Option<Vec<u8>>, String> {
        match (self.userdata.take(), self.error.take()) {
            (Some(userdata), _) => Ok(Some(userdata)),
            (None, Some(error)) => Err(error),
            (None, None) => Ok(None),
        }
    }
}
