//! [`VmError`]: the one error of the instance lifecycle ([`crate::Backend`]), whatever the backend.

use std::path::PathBuf;

use crate::accel::AccelError;
use crate::firmware::FirmwareError;
use crate::hyperkit::HyperkitError;
use crate::instance::{BackendKind, TransitionError};
use crate::machine::{BootError, DiskSpecError, PortError, UnknownArch};
use crate::qemu::LaunchError;
use crate::qemu::{DiskError, NetworkError, QemuError};
use crate::state::StateError;
use crate::vmware::VmwareError;

/// Why an instance could not be started, stopped, listed, labelled, attached to or destroyed.
/// Messages name the instance, file or value and say what to do, in words that fit any caller
/// (no command-line flags).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Its state directory or record.
    #[error(transparent)]
    State(#[from] StateError),
    /// The action is not allowed in the instance's state.
    #[error("instance `{name}`: {source}")]
    Transition {
        /// The instance.
        name: String,
        /// The refused transition.
        #[source]
        source: TransitionError,
    },
    /// The instance runs on another backend than the one asked.
    #[error("instance `{name}` runs on {actual}, not {asked}")]
    WrongBackend {
        /// The instance.
        name: String,
        /// Its backend.
        actual: BackendKind,
        /// The backend asked.
        asked: BackendKind,
    },
    /// The backend cannot do this.
    #[error("{backend} cannot {what}")]
    Unsupported {
        /// The backend.
        backend: BackendKind,
        /// What was asked.
        what: &'static str,
    },
    /// The console cannot be attached to.
    #[error("cannot attach to the console of instance `{name}`: {why}; its output is in {log}")]
    ConsoleUnavailable {
        /// The instance.
        name: String,
        /// Why not.
        why: String,
        /// Where the console's output is kept.
        log: PathBuf,
    },
    /// The VM process survived SIGKILL (it is stuck in the kernel).
    #[error("the VM process (pid {pid}) of instance `{name}` did not exit after SIGKILL")]
    Unkillable {
        /// The instance.
        name: String,
        /// The VM process.
        pid: u32,
    },
    /// The guest architecture.
    #[error(transparent)]
    Arch(#[from] UnknownArch),
    /// What to boot.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A disk.
    #[error(transparent)]
    Disk(#[from] DiskSpecError),
    /// A published port.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The accelerator.
    #[error(transparent)]
    Accel(#[from] AccelError),
    /// UEFI firmware.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// qemu's set-up.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// qemu's disks.
    #[error(transparent)]
    QemuDisk(#[from] DiskError),
    /// A private network.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// qemu's networking.
    #[error(transparent)]
    QemuNetwork(#[from] NetworkError),
    /// Starting or running qemu.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// hyperkit.
    #[error(transparent)]
    Hyperkit(#[from] HyperkitError),
    /// VMware.
    #[error(transparent)]
    Vmware(#[from] VmwareError),
    /// Google Cloud.
    #[error(transparent)]
    Gcp(#[from] crate::gcp::GcpError),
    /// A cloud backend has no instances recorded on this host, nor default settings.
    #[error("{kind} instances are not kept on this host: give the backend's project and zone")]
    NotLocal {
        /// The backend.
        kind: BackendKind,
    },
    /// A GCE image archive could not be unpacked for booting.
    #[error("cannot unpack {}: {source}", archive.display())]
    Unpack {
        /// The `NAME.img.tar.gz`.
        archive: PathBuf,
        /// Why.
        #[source]
        source: media::sparse_tar::ExtractError,
    },
    /// A file or process operation.
    #[error("cannot {doing} {path}: {source}")]
    Io {
        /// What was tried.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
