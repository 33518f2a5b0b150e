//! VM backends (qemu via QMP, VMware via vmrun, hyperkit, GCP) that boot the builder's outputs as instances.
//!
//! # Brief overview
//!
//! - [`qemu`] turns what the user asked for (an image to boot, CPUs, memory, disks, networking,
//!   published ports) into a qemu command line; [`accel`] decides between KVM and TCG by probing,
//!   never by the mere presence of `/dev/kvm`; [`firmware`] finds UEFI firmware.
//! - [`qmp`] is a typed client for the QEMU Machine Protocol on a VM's unix socket.
//! - [`state`] owns an instance's state directory (pid, QMP socket, console log, MAC address);
//!   [`instance`] records what runs there.
//! - [`console`] puts the terminal in raw mode and relays the guest's serial console.
//! - [`hyperkit`] is the macOS backend: hyperkit's command line, its own files in the state dir,
//!   vpnkit port publishing.
//! - [`userdata`] writes the `cidata` CD that carries `--data` into the guest.
//! - [`vmware`] writes a `.vmx` for an ISO or VMDK image and drives `vmrun` (Workstation, Fusion).
//! - [`Backend`] is the lifecycle every backend offers; [`qemu::Qemu`], [`hyperkit::Hyperkit`] and
//!   [`vmware::Vmware`] implement it, [`AnyBackend`] is the enum over them.
#![deny(missing_docs)]

pub mod accel;
mod backend;
pub mod console;
mod error;
pub mod firmware;
pub mod hyperkit;
pub mod instance;
pub mod machine;
pub mod qemu;
pub mod qmp;
mod random;
mod records;
pub mod state;
#[cfg(test)]
mod testing;
pub mod userdata;
pub mod vmware;

pub use backend::{AnyBackend, Backend, Ending, RunEnd, Stopped};
pub use error::VmError;
pub use instance::{BackendKind, InstanceRecord, InstanceState, Request, Tags};
pub use state::StateRoot;
