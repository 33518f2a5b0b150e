//! The runner: state dir, extra disk, `.vmx`, `vmrun start`, console, `vmrun stop`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::vmrun::{exe_name, exec, search_path};
use super::{detect_image, Network, Product, Vmrun, VmwareError, VmxConfig};
use crate::machine::{DiskFormat, DiskSpec};
use crate::qemu::Disk;

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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A fake vmrun: logs its arguments to `calls`; `start` records the .vmx, writes a line to the
    /// console and lets the VM stay listed for `ticks` more `list` calls (each appends a console
    /// line); `stop` unlists it (`stop soft` fails while a `nosoft` file exists); `start` fails
    /// while `failstart` exists. A `vmware-vdiskmanager` next to it logs and creates its file.
    struct Fake {
        dir: tempfile::TempDir,
    }

    fn write_exe(path: &Path, text: &str) {
        crate::testing::write_script(path, text);
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            write_exe(
                &dir.path().join("vmrun"),
                &format!(
                    r#"#!/bin/sh
D='{d}'
echo "$*" >> "$D/calls"
case "$3" in
start)
  if [ -f "$D/failstart" ]; then echo "Error: Cannot open VM: $4"; exit 255; fi
  echo "$4" > "$D/vmx"; echo "${{TICKS:-2}}" > "$D/ticks"
  printf 'Linux version 6.6\n' >> "$(dirname "$4")/console.log" ;;
list)
  t=$(cat "$D/ticks" 2>/dev/null || echo 0)
  if [ "$t" -gt 0 ]; then
    echo $((t-1)) > "$D/ticks"
    printf 'tick %s\n' "$t" >> "$(dirname "$(cat "$D/vmx")")/console.log"
    echo "Total running VMs: 1"; cat "$D/vmx"
  else
    echo "Total running VMs: 0"
  fi ;;
stop)
  if [ "$5" = soft ] && [ -f "$D/nosoft" ]; then echo "Error: The VMware Tools are not running"; exit 255; fi
  echo 0 > "$D/ticks" ;;
*) echo "Error: unknown command $3"; exit 255 ;;
esac
"#
                ),
            );
            write_exe(
                &dir.path().join("vmware-vdiskmanager"),
                &format!(
                    "#!/bin/sh\necho \"vdiskmanager $*\" >> '{d}/calls'\nfor a; do last=$a; done\n: > \"$last\"\n"
                ),
            );
            Fake { dir }
        }

        fn vmrun(&self) -> PathBuf {
            self.dir.path().join("vmrun")
        }

        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("calls"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }

        fn touch(&self, name: &str) {
            std::fs::write(self.dir.path().join(name), "").unwrap();
        }

        fn config(&self, image: &Path) -> RunConfig {
            RunConfig {
                image: image.into(),
                state_dir: None,
                cpus: 1,
                memory_mib: 1024,
                disks: Vec::new(),
                network: Network::Nat,
                gui: false,
                detach: false,
                vmrun: Some(self.vmrun()),
                product: Some(Product::Workstation),
            }
        }
    }

    const FAST: Follow = Follow {
        poll: Duration::from_millis(5),
        list_every: Duration::from_millis(20),
    };

    #[test]
    fn runs_an_iso_and_follows_its_console_until_it_stops() {
        let fake = Fake::new();
        let img = tempfile::tempdir().unwrap();
        let iso = img.path().join("lk.iso");
        std::fs::write(&iso, "iso").unwrap();
        let state = img.path().join("lk-state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join(CONSOLE_FILE), "old run\n").unwrap();

        let mut out = Vec::new();
        let started = run(&fake.config(&img.path().join("lk")), &mut out, &FAST).unwrap();
        let vmx = state.join(VMX_FILE);
        assert_eq!(started.vmx, vmx);
        assert_eq!(started.state_dir, state);
        assert_eq!(started.console, state.join(CONSOLE_FILE));
        assert_eq!(started.created_disk, None);
        // The old console was removed; the fake VM printed a line at start and one per `list`
        // while it was running.
        assert_eq!(String::from_utf8(out).unwrap(), "Linux version 6.6\ntick 2\ntick 1\n");
        let v = vmx.display();
        assert_eq!(
            fake.calls(),
            [
                "-T ws list".to_string(),
                format!("-T ws start {v} nogui"),
                "-T ws list".into(),
                "-T ws list".into(),
                "-T ws list".into(),
            ]
        );
        let text = std::fs::read_to_string(&vmx).unwrap();
        assert!(
            text.contains(&format!("ide1:0.fileName = \"{}\"\n", iso.display())),
            "{text}"
        );
        assert!(text.contains(&format!(
            "serial0.fileName = \"{}\"\n",
            state.join(CONSOLE_FILE).display()
        )));
        assert!(text.contains("displayName = \"lk\"\n"), "{text}");
        // No temporary file is left next to it.
        let mut names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [CONSOLE_FILE, VMX_FILE]);
    }

    #[test]
    fn detach_creates_the_disk_and_returns_after_start() {
        let fake = Fake::new();
        let img = tempfile::tempdir().unwrap();
        let vmdk = img.path().join("lk.vmdk");
        std::fs::write(&vmdk, "vmdk").unwrap();
        let mut cfg = fake.config(&vmdk);
        cfg.detach = true;
        cfg.gui = true;
        cfg.cpus = 4;
        cfg.memory_mib = 4096;
        cfg.product = Some(Product::Fusion);
        cfg.state_dir = Some(img.path().join("st"));
        cfg.disks = vec!["size=2G".parse().unwrap()];
        let mut out = Vec::new();
        let started = run(&cfg, &mut out, &FAST).unwrap();
        assert!(out.is_empty());
        let st = img.path().join("st");
        let disk = st.join(DEFAULT_DISK_FILE);
        assert_eq!(started.created_disk.as_deref(), Some(disk.as_path()));
        assert!(disk.is_file());
        assert_eq!(
            fake.calls(),
            [
                "-T fusion list".to_string(),
                format!("vdiskmanager -c -s 2048MB -a lsilogic -t 0 {}", disk.display()),
                format!("-T fusion start {} gui", st.join(VMX_FILE).display()),
            ]
        );
        let text = std::fs::read_to_string(st.join(VMX_FILE)).unwrap();
        let disks = format!(
            "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"{}\"\nscsi0:0.deviceType = \"scsi-hardDisk\"\n\
             scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"{}\"\nscsi0:1.deviceType = \"scsi-hardDisk\"\n",
            vmdk.display(),
            disk.display()
        );
        assert!(text.contains(&disks), "{text}");
        assert!(text.contains("numvcpus = \"4\"\nmemsize = \"4096\"\n"), "{text}");

        // A detached VM keeps running: stop it (soft works here), then a second run reuses the disk.
        assert_eq!(
            stop(&started.vmrun, &started.vmx, Duration::from_secs(1)).unwrap(),
            Stopped::Soft
        );
        let again = start(&cfg).unwrap();
        assert_eq!(again.created_disk, None);
        let v = st.join(VMX_FILE);
        assert_eq!(
            fake.calls()[3..],
            [
                "-T fusion list".to_string(),
                format!("-T fusion stop {} soft", v.display()),
                "-T fusion list".into(),
                "-T fusion list".into(),
                format!("-T fusion start {} gui", v.display()),
            ]
        );
        assert_eq!(stop(&again.vmrun, &v, Duration::ZERO).unwrap(), Stopped::Soft);
        assert_eq!(stop(&again.vmrun, &v, Duration::ZERO).unwrap(), Stopped::NotRunning);
    }

    #[test]
    fn stop_falls_back_to_hard() {
        let fake = Fake::new();
        let img = tempfile::tempdir().unwrap();
        std::fs::write(img.path().join("lk.vmdk"), "").unwrap();
        let mut cfg = fake.config(&img.path().join("lk"));
        cfg.detach = true;
        let started = start(&cfg).unwrap();
        fake.touch("nosoft");
        assert_eq!(
            stop(&started.vmrun, &started.vmx, Duration::from_secs(1)).unwrap(),
            Stopped::Hard
        );
        let v = started.vmx.display();
        assert_eq!(
            fake.calls()[2..],
            [
                "-T ws list".to_string(),
                format!("-T ws stop {v} soft"),
                format!("-T ws stop {v} hard"),
            ]
        );
    }

    #[test]
    fn refuses_a_running_vm_and_reports_vmrun_errors() {
        let fake = Fake::new();
        let img = tempfile::tempdir().unwrap();
        std::fs::write(img.path().join("lk.iso"), "").unwrap();
        let mut cfg = fake.config(&img.path().join("lk"));
        cfg.detach = true;
        let started = start(&cfg).unwrap();
        let e = start(&cfg).unwrap_err();
        let stop = format!("{} -T ws stop {} soft", fake.vmrun().display(), started.vmx.display());
        assert_eq!(
            e.to_string(),
            format!(
                "a VM already runs from {}: stop it (`{stop}`) or use another --state dir",
                started.vmx.display()
            )
        );
        assert_eq!(fake.calls().len(), 3, "no second start: {:?}", fake.calls());

        let fake = Fake::new();
        fake.touch("failstart");
        let e = start(&fake.config(&img.path().join("lk"))).unwrap_err();
        let vmx = img.path().join("lk-state").join(VMX_FILE);
        assert!(matches!(e, VmwareError::CommandFailed { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "`{} -T ws start {} nogui` failed (exit status: 255): Error: Cannot open VM: {}",
                fake.vmrun().display(),
                vmx.display(),
                vmx.display()
            )
        );
    }

    #[test]
    fn bad_inputs_fail_before_anything_is_written() {
        let fake = Fake::new();
        let img = tempfile::tempdir().unwrap();
        std::fs::write(img.path().join("lk.iso"), "").unwrap();
        let mut cfg = fake.config(&img.path().join("lk"));
        cfg.memory_mib = 1000 + 1;
        assert!(matches!(start(&cfg), Err(VmwareError::BadMemory(1001))));
        cfg.memory_mib = 1024;
        cfg.disks = vec!["a.vmdk".parse().unwrap(), "b.vmdk".parse().unwrap()];
        assert!(matches!(start(&cfg), Err(VmwareError::TooManyDisks(2))));
        cfg.disks = vec!["file=/x/d.qcow2,size=1G".parse().unwrap()];
        assert_eq!(
            start(&cfg).unwrap_err().to_string(),
            "disk /x/d.qcow2: VMware needs a VMDK disk (got format qcow2); use a .vmdk file or format=vmdk"
        );
        cfg.disks = vec![format!("file={}/missing.vmdk", img.path().display()).parse().unwrap()];
        assert_eq!(
            start(&cfg).unwrap_err().to_string(),
            format!(
                "disk {0}/missing.vmdk does not exist: give it a size (--disk file={0}/missing.vmdk,size=1G) to create it",
                img.path().display()
            )
        );
        // Only the last one got as far as `vmrun list`; nothing was started or written.
        assert_eq!(fake.calls(), ["-T ws list"]);
        assert!(!img.path().join("lk-state").join(VMX_FILE).exists());
        cfg.disks.clear();
        cfg.vmrun = Some(img.path().join("no-vmrun"));
        assert!(matches!(start(&cfg), Err(VmwareError::VmrunPathMissing(_))));
    }

    #[test]
    fn disk_resolution() {
        let st = Path::new("/s/st");
        assert_eq!(resolve_disk(&[], st).unwrap(), None);
        let d = resolve_disk(&["size=512M".parse().unwrap()], st).unwrap().unwrap();
        assert_eq!(
            d,
            Disk {
                path: st.join("disk.vmdk"),
                format: Some(DiskFormat::Vmdk),
                size_mib: Some(512)
            }
        );
        let d = resolve_disk(&["file=/d/data,format=vmdk".parse().unwrap()], st)
            .unwrap()
            .unwrap();
        assert_eq!(d.path, Path::new("/d/data"));
        let e = resolve_disk(&["/d/data".parse().unwrap()], st).unwrap_err().to_string();
        assert_eq!(
            e,
            "disk /d/data: VMware needs a VMDK disk (got a name without .vmdk and no format=); use a .vmdk file or format=vmdk"
        );
        let d = resolve_disk(&["rel.vmdk".parse().unwrap()], st).unwrap().unwrap();
        assert_eq!(d.path, std::env::current_dir().unwrap().join("rel.vmdk"));
        assert_eq!(
            vdiskmanager_args(Path::new("/s/st/disk.vmdk"), 1024),
            ["-c", "-s", "1024MB", "-a", "lsilogic", "-t", "0", "/s/st/disk.vmdk"]
        );
    }

    #[test]
    fn vdiskmanager_is_found_next_to_vmrun_or_in_path() {
        let fake = Fake::new();
        let vm = fake.vmrun();
        assert_eq!(
            find_vdiskmanager(&vm, "linux", None).unwrap(),
            fake.dir.path().join("vmware-vdiskmanager")
        );
        let empty = tempfile::tempdir().unwrap();
        let lone = empty.path().join("vmrun");
        let e = find_vdiskmanager(&lone, "linux", Some(empty.path().as_os_str())).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "vmware-vdiskmanager not found (looked in {}/vmware-vdiskmanager, $PATH for vmware-vdiskmanager): \
                 it comes with VMware Workstation and Fusion; create the disk yourself or give an existing .vmdk with --disk",
                empty.path().display()
            )
        );
        assert_eq!(
            find_vdiskmanager(&lone, "linux", Some(fake.dir.path().as_os_str())).unwrap(),
            fake.dir.path().join("vmware-vdiskmanager")
        );
    }
}
