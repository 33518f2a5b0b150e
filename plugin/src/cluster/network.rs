//! What the cluster asks of the host's private networks (`vmm::network`): whether a member took
//! its DHCP lease (it is up on the network), and which networks exist with which subnets.
//!
//! STUB (h-cluster): `vmm::network::lease` and `vmm::network::existing` are not on main yet.
//! Until they land, `lease` answers that every member is leased (so that `up` waits for the VM
//! to run, as without a network) and `existing` that there are no networks. Replace the two
//! bodies with the calls in the comments; nothing else in the cluster changes.

use std::net::Ipv4Addr;

use vmm::network::Subnet;
use vmm::StateRoot;

/// A member's lease on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lease {
    /// Its address there.
    pub ip: Option<Ipv4Addr>,
    /// Whether the guest took the lease (it is up on the network).
    pub leased: bool,
}

/// The lease of `member` on `network` under `root`, if the network knows the member.
pub(super) fn lease(root: &StateRoot, network: &str, member: &str) -> Result<Option<Lease>, String> {
    // vmm::network::lease(root, network, member)
    //     .map(|lease| lease.map(|l| Lease { ip: Some(l.ip), leased: l.leased }))
    //     .map_err(|e| e.to_string())
    let _ = (root, network, member);
    Ok(Some(Lease { ip: None, leased: true }))
}

/// The networks under `root`, by name, with their subnets.
pub(super) fn existing(root: &StateRoot) -> Result<Vec<(String, Subnet)>, String> {
    // Ok(vmm::network::existing(root))
    let _ = root;
    Ok(Vec::new())
}
