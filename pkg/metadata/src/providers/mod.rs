//! Where userdata comes from. As in LinuxKit, providers are tried in three rounds: the network
//! ones (metadata servers), then the local ones (CDs, QEMU's fw_cfg), then files; within a round
//! in the order given on the command line. The first whose probe succeeds is used.

pub mod cdrom;
pub mod ec2;
pub mod file;
pub mod fwcfg;
pub mod gcp;
pub mod iso9660;
pub mod label;

use std::path::Path;

/// A source of userdata.
pub trait Provider {
    /// What is written to `/run/config/provider` (LinuxKit's names: `GCP`, `CDROM /dev/sr0`, ...).
    fn name(&self) -> String;
    /// Whether this provider has userdata here.
    fn probe(&mut self) -> bool;
    /// The userdata (`None`: the provider has none, not an error). May write provider-specific
    /// files (`hostname`, `ssh/authorized_keys`) into `config`.
    fn extract(&mut self, config: &Path) -> Result<Option<Vec<u8>>, String>;
}

/// The round a provider is tried in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Round {
    /// Metadata servers.
    Network,
    /// CDs and fw_cfg.
    Local,
    /// `file=PATH`.
    File,
}
