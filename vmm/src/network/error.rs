//! What can go wrong with a private network.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{AttachmentError, Subnet};

/// An error of a private network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A file or directory of the network could not be read or written.
    #[error("network: cannot {doing} {path}: {source}")]
    Io {
        /// What we tried.
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// A file of the network holds something else than it should.
    #[error("network: {path} is damaged ({why}); remove it (or the network's directory when no member runs)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The attachment is not usable.
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// The network exists with another subnet.
    #[error("network {network} exists with subnet {has}, not {asked}: ask for {has}, or use another network name")]
    SubnetMismatch {
        /// The network.
        network: String,
        /// Its subnet.
        has: Subnet,
        /// The one asked for.
        asked: Subnet,
    },
    /// A new network's subnet overlaps another network's.
    #[error(
        "network {network}: subnet {subnet} overlaps {other_subnet} of network {other}: give it a range of its own"
    )]
    Overlap {
        /// The network being created.
        network: String,
        /// Its subnet.
        subnet: Subnet,
        /// The network already using the range.
        other: String,
        /// That network's subnet.
        other_subnet: Subnet,
    },
    /// No free /24 was found for a new network.
    #[error("network {network}: no free subnet left to pick: give one")]
    NoFreeSubnet {
        /// The network.
        network: String,
    },
    /// A static address not usable in the subnet.
    #[error("network {network}: {ip} is not a member address of {subnet} (the network's own address is {}, and the network and broadcast addresses cannot be used)", subnet.gateway())]
    AddressOutside {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Subnet,
        /// The address asked for.
        ip: Ipv4Addr,
    },
    /// A static address another member has.
    #[error("network {network}: {ip} is already the address of `{holder}`: give each member its own address")]
    AddressTaken {
        /// The network.
        network: String,
        /// The address.
        ip: Ipv4Addr,
        /// The member holding it.
        holder: String,
    },
    /// Every address is taken.
    #[error("network {network}: every address of {subnet} is taken: give it a larger subnet")]
    Full {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Subnet,
    },
    /// The switch could not be started.
    #[error("network {network}: its switch did not start: {why}; its messages are in {}", log.display())]
    Switch {
        /// The network.
        network: String,
        /// What happened.
        why: String,
        /// The switch's log.
        log: PathBuf,
    },
}

impl NetworkError {
    /// [`NetworkError::Io`] for doing `doing` to `path`, to map an [`io::Error`] with.
    pub(crate) fn io(doing: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> NetworkError {
        let path = path.as_ref().to_path_buf();
        move |source| NetworkError::Io { doing, path, source }
    }
}
