//! The machine vocabulary every backend shares: the guest's architecture, what it boots and how
//! that is detected from a path, disks and published ports as LinuxKit's flags write them. No
//! backend owns these; each says which of them it can run.

mod arch;
mod boot;
mod disk;
mod ports;

pub use arch::{Arch, UnknownArch};
pub use boot::{detect, BootError, BootKind, BootMedia, Detected};
pub use disk::{parse_size_mib, DiskFormat, DiskSpec, DiskSpecError};
pub use ports::{check_unique, PortError, Protocol, PublishedPort};
