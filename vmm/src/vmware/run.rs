//! The runner: state dir, extra disk, `.vmx`, `vmrun start`, console, `vmrun stop`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::vmrun::{exe_name, exec, search_path};
use super::{detect_image, Network, Product, Vmrun, VmwareError, VmxConfig};
use crate::qemu::{Disk, DiskFormat, DiskSpec};

/// The `.vmx` file in the state dir (LinuxKit's name).
pub const VMX_FILE: &str = "linuxkit.vmx";
/// The serial console's file in the state dir.
pub const CONSOLE_FILE: &str = "console.log";
/// The extra disk created for `--disk size=N` without a path (LinuxKit's name).
pub const DEFAULT_DISK_FILE: &str = "disk.vmdk";

/// What `moby run vmware` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// The image path or prefix ([`detect_image`]).
    pub image: PathBuf,
    /// `--state`; default `PREFIX-state`.
    pub state_dir: Option<PathBuf>,
    /// `--cpus`.
    pub cpus: u32,
    /// `--mem`, MiB.
    pub memory_mib: u64,
    /// `--disk` values (at most one, VMDK).
    pub disks: Vec<DiskSpec>,
    /// `--networking`.
    pub network: Network,
    /// `--gui`: open a window (vmrun `gui`) instead of running headless (`nogui`).
    pub gui: bool,
    /// `--detach`: return once the VM is started instead of following its console.
    pub detach: bool,
    /// `--vmrun`.
    pub vmrun: Option<PathBuf>,
    /// `--product`; default per host OS.
    pub product: Option<Product>,
}

/// A VM that [`start`] started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The vmrun that drives it.
    pub vmrun: Vmrun,
    /// Its state dir (absolute).
    pub state_dir: PathBuf,
    /// Its `.vmx`.
    pub vmx: PathBuf,
    /// Its serial console file.
    pub console: PathBuf,
    /// The extra disk, if it was created by this run.
    pub created_disk: Option<PathBuf>,
}

/// How [`follow`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follow {
    /// How often the console file is read.
    pub poll: Duration,
    /// How often `vmrun list` is asked whether the VM still runs.
    pub list_every: Duration,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            poll: Duration::from_millis(200),
            list_every: Duration::from_secs(2),
        }
    }
}

/// How [`stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running.
    NotRunning,
    /// `vmrun stop VMX soft` shut it down.
    Soft,
    /// It needed `vmrun stop VMX hard`.
    Hard,
}

fn absolute(path: &Path) -> Result<PathBuf, VmwareError> {
    std::path::absolute(path).map_err(VmwareError::io("make absolute", path))
}

/// The extra disk for `specs` (at most one): without a path it is `STATE/disk.vmdk`; it must be
/// VMDK (`format=vmdk` or a `.vmdk` name). Paths are made absolute.
pub fn resolve_disk(specs: &[DiskSpec], state_dir: &Path) -> Result<Option<Disk>, VmwareError> {
    let spec = match specs {
        [] => return Ok(None),
        [spec] => spec,
        _ => return Err(VmwareError::TooManyDisks(specs.len())),
    };
    let path = match &spec.path {
        Some(p) if !p.as_os_str().is_empty() => absolute(p)?,
        _ => state_dir.join(DEFAULT_DISK_FILE),
    };
    match spec.format.or_else(|| DiskFormat::from_extension(&path)) {
        Some(DiskFormat::Vmdk) => {}
        Some(other) => {
            return Err(VmwareError::DiskNotVmdk {
                path,
                got: format!("format {other}"),
            })
        }
        None => {
            return Err(VmwareError::DiskNotVmdk {
                path,
                got: "a name without .vmdk and no format=".into(),
            })
        }
    }
    Ok(Some(Disk {
        path,
        format: Some(DiskFormat::Vmdk),
        size_mib: spec.size_mib,
    }))
}

/// The arguments of `vmware-vdiskmanager` that create a growable (`-t 0`) LSI Logic VMDK of
/// `size_mib` MiB at `path`, as LinuxKit does.
pub fn vdiskmanager_args(path: &Path, size_mib: u64) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-c", "-s", &format!("{size_mib}MB"), "-a", "lsilogic", "-t", "0"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(path.into());
    args
}

/// vmware-vdiskmanager: next to vmrun (where VMware installs both), else from `$PATH`.
fn find_vdiskmanager(vmrun: &Path, os: &str, path_var: Option<&OsStr>) -> Result<PathBuf, VmwareError> {
    let name = exe_name("vmware-vdiskmanager", os);
    let sibling = vmrun.parent().map(|d| d.join(&name));
    if let Some(p) = sibling.as_ref().filter(|p| p.is_file()) {
        return Ok(p.clone());
    }
    search_path(&name, path_var).ok_or_else(|| {
        let mut looked: Vec<String> = sibling.iter().map(|p| p.display().to_string()).collect();
        looked.push(format!("$PATH for {name}"));
        VmwareError::VdiskmanagerNotFound { looked }
    })
}

/// Creates `disk` with vmware-vdiskmanager if it does not exist. Returns whether it was created.
fn ensure_disk(vmrun: &Vmrun, disk: &Disk) -> Result<bool, VmwareError> {
    match std::fs::symlink_metadata(&disk.path) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(VmwareError::io("check disk", &disk.path)(e)),
    }
    let size = disk
        .size_mib
        .ok_or_else(|| VmwareError::DiskMissingNoSize(disk.path.clone()))?;
    let path_var = std::env::var_os("PATH");
    let manager = find_vdiskmanager(&vmrun.path, std::env::consts::OS, path_var.as_deref())?;
    exec(&manager, &vdiskmanager_args(&disk.path, size))?;
    Ok(true)
}

fn write_atomic(path: &Path, text: &str) -> Result<(), VmwareError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(VmwareError::io("create a file in", dir))?;
    tmp.write_all(text.as_bytes())
        .map_err(VmwareError::io("write", tmp.path().to_path_buf()))?;
    tmp.persist(path).map_err(|e| VmwareError::io("write", path)(e.error))?;
    Ok(())
}

/// Starts the VM: finds the image and vmrun, checks that no VM runs from the state dir, creates
/// the extra disk if needed, writes `STATE/linuxkit.vmx` (atomically, after removing the previous
/// console log) and runs `vmrun start`.
pub fn start(cfg: &RunConfig) -> Result<Started, VmwareError> {
    let image = detect_image(&cfg.image)?;
    let vmrun = Vmrun::find(cfg.vmrun.as_deref(), cfg.product)?;
    let state_dir = absolute(&cfg.state_dir.clone().unwrap_or_else(|| image.default_state_dir()))?;
    let vmx = state_dir.join(VMX_FILE);
    let console = state_dir.join(CONSOLE_FILE);
    let disk = resolve_disk(&cfg.disks, &state_dir)?;
    let boot = match image.boot {
        super::VmxBoot::Iso(p) => super::VmxBoot::Iso(absolute(&p)?),
        super::VmxBoot::Vmdk(p) => super::VmxBoot::Vmdk(absolute(&p)?),
    };
    let display_name = image
        .prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "moby".into());
    let text = VmxConfig {
        display_name,
        cpus: cfg.cpus,
        memory_mib: cfg.memory_mib,
        boot,
        data_disk: disk.as_ref().map(|d| d.path.clone()),
        console: Some(console.clone()),
        network: cfg.network,
    }
    .vmx()?;

    std::fs::create_dir_all(&state_dir).map_err(VmwareError::io("create state dir", &state_dir))?;
    if vmrun.is_running(&vmx)? {
        return Err(VmwareError::AlreadyRunning {
            stop: vmrun.command_line(&vmrun.stop_args(&vmx, false)),
            vmx,
        });
    }
    let created_disk = match &disk {
        Some(d) if ensure_disk(&vmrun, d)? => Some(d.path.clone()),
        _ => None,
    };
    match std::fs::remove_file(&console) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(VmwareError::io("remove the old console log", &console)(e)),
    }
    write_atomic(&vmx, &text)?;
    vmrun.exec(&vmrun.start_args(&vmx, cfg.gui))?;
    Ok(Started {
        vmrun,
        state_dir,
        vmx,
        console,
        created_disk,
    })
}

/// Copies what was appended to `path` since the last call to `out`; nothing while the file does
/// not exist yet.
fn copy_new(file: &mut Option<File>, path: &Path, out: &mut dyn Write) -> Result<(), VmwareError> {
    if file.is_none() {
        match File::open(path) {
            Ok(f) => *file = Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(VmwareError::io("open", path)(e)),
        }
    }
    let Some(f) = file.as_mut() else { return Ok(()) };
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf).map_err(VmwareError::io("read", path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(VmwareError::io("copy to the output the console of", path))?;
    }
    out.flush()
        .map_err(VmwareError::io("copy to the output the console of", path))
}

/// Copies the console file of the VM at `vmx` to `out` until `vmrun list` no longer lists it.
pub fn follow(vmrun: &Vmrun, vmx: &Path, console: &Path, out: &mut dyn Write, how: &Follow) -> Result<(), VmwareError> {
    let mut file = None;
    let mut listed = Instant::now();
    loop {
        copy_new(&mut file, console, out)?;
        if listed.elapsed() >= how.list_every {
            let running = vmrun.is_running(vmx)?;
            listed = Instant::now();
            if !running {
                return copy_new(&mut file, console, out);
            }
        }
        sleep(how.poll);
    }
}

/// [`start`], then (unless `cfg.detach`) [`follow`] the console to `out` until the VM stops.
pub fn run(cfg: &RunConfig, out: &mut dyn Write, how: &Follow) -> Result<Started, VmwareError> {
    let started = start(cfg)?;
    if !cfg.detach {
        follow(&started.vmrun, &started.vmx, &started.console, out, how)?;
    }
    Ok(started)
}

/// Stops the VM at `vmx`: `vmrun stop VMX soft` (a guest shutdown, which needs VMware Tools in
/// the guest), waiting up to `wait` for it to leave `vmrun list`, then `vmrun stop VMX hard`.
pub fn stop(vmrun: &Vmrun, vmx: &Path, wait: Duration) -> Result<Stopped, VmwareError> {
    if !vmrun.is_running(vmx)? {
        return Ok(Stopped::NotRunning);
    }
    if vmrun.exec(&vmrun.stop_args(vmx, false)).is_ok() {
        let deadline = Instant::now() + wait;
        loop {
            if !vmrun.is_running(vmx)? {
                return Ok(Stopped::Soft);
            }
            if Instant::now() >= deadline {
                break;
            }
            sleep(Duration::from_millis(200).min(wait));
        }
    }
    vmrun.exec(&vmrun.stop_args(vmx, true))?;
    Ok(Stopped::Hard)
}
