//! VM backends (qemu via QMP, VMware via vmrun, hyperkit, GCP) that boot the builder's outputs as instances.
//!
//! # Brief overview
//!
//! The API: a [`Request`] says what to start; the [`Backend`] trait is the lifecycle every backend
//! offers (start, run in the foreground, stop, destroy, describe, list by tag, label, console);
//! [`qemu::Qemu`], [`hyperkit::Hyperkit`] and [`vmware::Vmware`] implement it for VMs on this host
//! (each a [`LocalBackend`], with records under a [`StateRoot`]), [`gcp::Gcp`] for Compute
//! Engine (its instances described from the API alone), and [`AnyBackend`] is the enum over them. An [`InstanceRecord`] (with its [`InstanceState`]) is what a backend
//! knows of an instance, kept under a [`StateRoot`]; [`VmError`] is the one error.
//!
//! The vocabulary every backend shares is in [`machine`] (architecture, boot media, disks,
//! published ports); [`console`] relays a guest's serial console; [`qmp`] is a typed client for
//! the QEMU Machine Protocol. Inside: the accelerator probe (KVM only where a guest really runs,
//! never by the mere presence of `/dev/kvm`), UEFI firmware, the `cidata` userdata CD and the
//! state directories are shared by the backends and depend on none.
#![deny(missing_docs)]

mod accel;
mod backend;
pub mod console;
mod error;
mod firmware;
pub mod gcp;
pub mod hyperkit;
mod instance;
pub mod machine;
pub mod network;
mod process;
pub mod qemu;
pub mod qmp;
mod random;
mod records;
mod state;
mod stop_signals;
#[cfg(test)]
mod testing;
mod unpack;
// Public: the `cidata` CD's format is a contract with the in-guest reader (`pkg/metadata`, tested
// in `pkg/metadata/vmm-cd`).
pub mod userdata;
pub mod vmware;

pub use accel::{Accel, AccelError, ACCEL_ENV};
pub use backend::{AnyBackend, Backend, Ending, LocalBackend, RunEnd, Stopped};
pub use error::VmError;
pub use firmware::FirmwareError;
pub use instance::{Action, BackendKind, InstanceRecord, InstanceState, Request, Tags, TransitionError};
pub use state::{StateError, StateRoot};
