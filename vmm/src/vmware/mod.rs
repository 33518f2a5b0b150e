//! The VMware backend ([`Vmware`]): a `.vmx` file for the image, driven with `vmrun`
//! (VMware Workstation on Linux and Windows, Fusion on macOS).
//!
//! # What it does
//!
//! - [`detect_image`] finds what to boot: `P.vmdk` (LinuxKit's only choice) or `P.iso`, or the path
//!   of a `.vmdk`/`.iso` file. VMware has no direct kernel boot, so a kernel+initrd build is refused
//!   with a hint to build the `iso-bios` or `vmdk` output format.
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
//! - [`Vmware`]: the backend. Its state dir is `PREFIX-state` (or the request's) and holds
//!   `linuxkit.vmx` (LinuxKit's name), `console.log` and `disk.vmdk` (an extra disk created with
//!   `vmware-vdiskmanager -c -s SIZEMB -a lsilogic -t 0`, as LinuxKit does), next to the
//!   instance's record. Whether it runs is whether `vmrun list` shows its `.vmx`; it is stopped
//!   with `vmrun stop VMX soft`, then `hard`; its console is the file, followed as it grows.
//!
//! # Differences from LinuxKit
//!
//! LinuxKit starts the VM and returns (and with vmrun's default, `gui`). We start it headless
//! (`nogui` unless [`Vmware::gui`]); a foreground run ([`crate::Backend::run`]) copies the serial
//! console to its writer until the VM is no longer in `vmrun list`, and a signal stops the VM.

mod backend;
mod disk;
mod follow;
mod image;
mod vmrun;
mod vmx;

pub use backend::Vmware;
pub(crate) use image::detect_image;
pub use vmrun::Product;
pub(crate) use vmrun::Vmrun;
pub use vmx::Network;
pub(crate) use vmx::{VmxBoot, VmxConfig};

use std::path::PathBuf;

/// Errors of the VMware backend; each names the file, value or command concerned.
#[derive(Debug, thiserror::Error)]
pub enum VmwareError {
    /// No vmrun where we looked.
    #[error(
        "vmrun not found (looked in {}): install VMware Workstation (Linux, Windows) or Fusion (macOS), \
         or give vmrun's path",
        looked.join(", ")
    )]
    VmrunNotFound {
        /// Where we looked (`$PATH` and fixed install paths).
        looked: Vec<String>,
    },
    /// The vmrun given is not there.
    #[error("vmrun {0} does not exist: check its path")]
    VmrunPathMissing(PathBuf),
    /// No vmware-vdiskmanager to create a disk with.
    #[error(
        "vmware-vdiskmanager not found (looked in {}): it comes with VMware Workstation and Fusion; \
         create the disk yourself or give an existing .vmdk disk",
        looked.join(", ")
    )]
    VdiskmanagerNotFound {
        /// Where we looked.
        looked: Vec<String>,
    },
    /// A product vmrun does not know.
    #[error("unknown VMware product {0:?}: use ws (Workstation), fusion or player")]
    UnknownProduct(String),
    /// A networking mode we do not write.
    #[error("unknown VMware networking {0:?}: use nat, bridged, hostonly or none")]
    UnknownNetwork(String),
    /// The image is a kernel+initrd (or squashfs) build.
    #[error(
        "VMware cannot boot a kernel+initrd directly ({0}): build a bootable image instead \
         (the iso-bios or vmdk output format) and run that"
    )]
    KernelBoot(PathBuf),
    /// The image is a file VMware cannot boot.
    #[error(
        "{0} is not an .iso or .vmdk image, the only kinds VMware boots: build the iso-bios or vmdk \
         output format, or convert it (qemu-img convert -O vmdk)"
    )]
    UnsupportedImage(PathBuf),
    /// Nothing to boot.
    #[error(
        "no {name}.vmdk or {name}.iso found: build one first (the vmdk or iso-bios output format) or give its path"
    )]
    ImageNotFound {
        /// The prefix or path given.
        name: String,
    },
    /// A path that cannot go in a `.vmx` (which is UTF-8).
    #[error("path {0} is not valid UTF-8 and cannot be written to a .vmx file: rename it")]
    NonUtf8Path(PathBuf),
    /// No vCPUs.
    #[error("VMware needs at least 1 vCPU")]
    BadCpus,
    /// A memory size VMware refuses.
    #[error("memory size {0} MiB: VMware needs a memory size in MiB that is a multiple of 4 and at least 4")]
    BadMemory(u64),
    /// More than one extra disk.
    #[error("VMware runs take at most one extra disk (got {0}), as LinuxKit's")]
    TooManyDisks(usize),
    /// A disk that is not VMDK.
    #[error("disk {path}: VMware needs a VMDK disk (got {got}); give it a .vmdk name or the vmdk format")]
    DiskNotVmdk {
        /// The disk.
        path: PathBuf,
        /// What it is instead.
        got: String,
    },
    /// A missing disk without a size to create it with.
    #[error("disk {0} does not exist: give it a size to create it")]
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
    #[error("a VM already runs from {vmx}: stop it (`{stop}`) or use another state dir")]
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
