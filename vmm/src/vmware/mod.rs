//! The VMware backend (`moby run vmware`): a `.vmx` file for the image, driven with `vmrun`
//! (VMware Workstation on Linux and Windows, Fusion on macOS).
//!
//! # What it does
//!
//! - [`detect_image`] finds what to boot: `P.vmdk` (LinuxKit's only choice) or `P.iso`, or the path
//!   of a `.vmdk`/`.iso` file. VMware has no direct kernel boot, so a kernel+initrd build is refused
//!   with a hint to build `--format iso-bios` or `--format vmdk`.
//! - [`VmxConfig::vmx`] writes the `.vmx` text in a fixed order, every value quoted (`"` and `|`
//!   escaped as VMware does, `|22`, `|7C`). The hardware is LinuxKit's: `virtualHW.version = "12"`
//!   (Workstation 12 / Fusion 8 and later), guest OS `other3xlinux-64`, an LSI Logic SCSI
//!   controller with the boot VMDK on `scsi0:0` and the extra disk after it, an ISO as an IDE
//!   CD-ROM (`ide1:0`), an e1000 NIC in PCI slot 32 behind LinuxKit's PCIe root ports. Additions to
//!   LinuxKit's file: the serial port goes to `console.log` in the state dir (the guest's
//!   `console=ttyS0` output), the NIC is on VMware's NAT network (LinuxKit names a network
//!   `Inside` that a default install does not have), `msg.autoAnswer` so that a headless start
//!   never waits on a dialog, and `bios.bootOrder = "cdrom"` for ISO boots.
//! - [`Vmrun`] finds `vmrun` and builds its argument vectors: `-T ws|fusion|player start VMX
//!   nogui|gui`, `list`, `stop VMX soft|hard`; [`parse_list`] reads `vmrun list`.
//! - [`start`] / [`follow`] / [`run`] / [`stop`]: the runner. The state dir is `PREFIX-state`
//!   (or `--state`) and holds `linuxkit.vmx` (LinuxKit's name), `console.log` and `disk.vmdk` (an
//!   extra disk created with `vmware-vdiskmanager -c -s SIZEMB -a lsilogic -t 0`, as LinuxKit does).
//!
//! # Differences from LinuxKit
//!
//! LinuxKit starts the VM and returns (and with vmrun's default, `gui`). We start it headless
//! (`nogui`, `--gui` for a window) and then copy the serial console to stdout until the VM is no
//! longer in `vmrun list`, unless `--detach`. Interrupting `moby` leaves the VM running; stop it
//! with [`stop`] (`vmrun stop VMX soft`, then `hard`).

mod image;
mod run;
mod vmrun;
mod vmx;

use std::path::PathBuf;

pub use image::{detect_image, VmwareImage};
pub use run::{follow, resolve_disk, run, start, stop, vdiskmanager_args, Follow, RunConfig, Started, Stopped};
pub use run::{CONSOLE_FILE, DEFAULT_DISK_FILE, VMX_FILE};
pub use vmrun::{parse_list, vmrun_locations, Product, Vmrun};
pub use vmx::{vmx_quote, Network, VmxBoot, VmxConfig};

/// Errors of the VMware backend; each names the file, flag or command concerned.
#[derive(Debug, thiserror::Error)]
pub enum VmwareError {
    /// No vmrun where we looked.
    #[error(
        "vmrun not found (looked in {}): install VMware Workstation (Linux, Windows) or Fusion (macOS), \
         or give vmrun's path with --vmrun",
        looked.join(", ")
    )]
    VmrunNotFound {
        /// Where we looked (`$PATH` and fixed install paths).
        looked: Vec<String>,
    },
    /// `--vmrun` names a file that is not there.
    #[error("vmrun {0} does not exist: check the --vmrun path")]
    VmrunPathMissing(PathBuf),
    /// No vmware-vdiskmanager to create a disk with.
    #[error(
        "vmware-vdiskmanager not found (looked in {}): it comes with VMware Workstation and Fusion; \
         create the disk yourself or give an existing .vmdk with --disk",
        looked.join(", ")
    )]
    VdiskmanagerNotFound {
        /// Where we looked.
        looked: Vec<String>,
    },
    /// `--product` is not one vmrun knows.
    #[error("unknown VMware product {0:?}: use ws (Workstation), fusion or player")]
    UnknownProduct(String),
    /// `--networking` is not one we write.
    #[error("unknown VMware networking {0:?}: use nat, bridged, hostonly or none")]
    UnknownNetwork(String),
    /// The image is a kernel+initrd (or squashfs) build.
    #[error(
        "VMware cannot boot a kernel+initrd directly ({0}): build a bootable image instead \
         (--format iso-bios or --format vmdk) and run that"
    )]
    KernelBoot(PathBuf),
    /// The image is a file VMware cannot boot.
    #[error(
        "{0} is not an .iso or .vmdk image, the only kinds VMware boots: build with --format iso-bios \
         or --format vmdk, or convert it (qemu-img convert -O vmdk)"
    )]
    UnsupportedImage(PathBuf),
    /// Nothing to boot.
    #[error(
        "no {name}.vmdk or {name}.iso found: build one first (--format vmdk or --format iso-bios) or give its path"
    )]
    ImageNotFound {
        /// The prefix or path given.
        name: String,
    },
    /// A path that cannot go in a `.vmx` (which is UTF-8).
    #[error("path {0} is not valid UTF-8 and cannot be written to a .vmx file: rename it")]
    NonUtf8Path(PathBuf),
    /// `--cpus 0`.
    #[error("--cpus must be at least 1")]
    BadCpus,
    /// A memory size VMware refuses.
    #[error("--mem {0}: VMware needs a memory size in MiB that is a multiple of 4 and at least 4")]
    BadMemory(u64),
    /// More than one `--disk`.
    #[error("VMware runs take at most one --disk (got {0}), as LinuxKit's")]
    TooManyDisks(usize),
    /// A disk that is not VMDK.
    #[error("disk {path}: VMware needs a VMDK disk (got {got}); use a .vmdk file or format=vmdk")]
    DiskNotVmdk {
        /// The disk.
        path: PathBuf,
        /// What it is instead.
        got: String,
    },
    /// A missing disk without a size to create it with.
    #[error("disk {0} does not exist: give it a size (--disk file={0},size=1G) to create it")]
    DiskMissingNoSize(PathBuf),
    /// A file operation failed.
    #[error("cannot {doing} {path}: {source}")]
    Io {
        /// What we tried.
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line, for the user to re-run.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed (vmrun prints its errors on stdout).
        output: String,
    },
    /// `vmrun list` printed something unexpected.
    #[error("cannot read `vmrun list` output (expected \"Total running VMs: N\" and N paths): {0:?}")]
    BadList(String),
    /// A VM already runs from this state dir.
    #[error("a VM already runs from {vmx}: stop it (`{stop}`) or use another --state dir")]
    AlreadyRunning {
        /// Its .vmx file.
        vmx: PathBuf,
        /// The command that stops it.
        stop: String,
    },
}

impl VmwareError {
    fn io(doing: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VmwareError {
        let path = path.into();
        move |source| VmwareError::Io { doing, path, source }
    }
}
