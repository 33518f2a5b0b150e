//! Who gets which MAC and address on a network: stable for a member's name, static where the
//! caller gives one, never two members on one address.
//!
//! Addresses picked for names come from the upper half of the subnet's member range, so that static
//! addresses in the lower half never meet a picked one (see `docs/networking.md`).

use std::net::Ipv4Addr;

use super::registry::MemberFile;
use super::{NetworkError, Subnet};
use crate::state::MacAddr;

/// FNV-1a, 64 bits: a small stable hash (the same name gives the same MAC and address on every
/// host and version).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The MAC of member `name`'s NIC on network `network`: locally administered, stable.
pub(crate) fn member_mac(network: &str, name: &str) -> MacAddr {
    let h = fnv1a(&[network, name]).to_be_bytes();
    MacAddr::local_unicast([0x06, h[0], h[1], h[2], h[3], h[4]])
}

/// The address member `name` gets: `fixed` if given (it must be a member address of the subnet
/// and not another member's), else the one it has, else a free one of the picked range starting
/// at a place given by its name.
pub(crate) fn assign(
    network: &str,
    subnet: &Subnet,
    name: &str,
    fixed: Option<Ipv4Addr>,
    members: &[MemberFile],
) -> Result<Ipv4Addr, NetworkError> {
    let others = || members.iter().filter(|m| m.name != name);
    if let Some(ip) = fixed {
        if !subnet.is_member_address(ip) {
            return Err(NetworkError::AddressOutside {
                network: network.to_string(),
                subnet: *subnet,
                ip,
            });
        }
        if let Some(holder) = others().find(|m| m.ip == ip) {
            return Err(NetworkError::AddressTaken {
                network: network.to_string(),
                ip,
                holder: holder.name.clone(),
            });
        }
        return Ok(ip);
    }
    if let Some(own) = members.iter().find(|m| m.name == name && !m.fixed) {
        if subnet.is_member_address(own.ip) && others().all(|m| m.ip != own.ip) {
            return Ok(own.ip);
        }
    }
    let (first, count) = picked_range(subnet);
    let start = (fnv1a(&[name]) % u64::from(count)) as u32;
    (0..count)
        .map(|i| subnet.member(first + (start + i) % count))
        .find(|ip| others().all(|m| m.ip != *ip))
        .ok_or_else(|| NetworkError::Full {
            network: network.to_string(),
            subnet: *subnet,
        })
}

/// The member indexes addresses are picked from: the upper half (all of a tiny subnet).
fn picked_range(subnet: &Subnet) -> (u32, u32) {
    let all = subnet.member_count();
    match all >= 8 {
        true => (all / 2, all - all / 2),
        false => (0, all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, ip: &str, fixed: bool) -> MemberFile {
        MemberFile {
            name: name.into(),
            mac: member_mac("lab", name).to_string(),
            ip: ip.parse().unwrap(),
            fixed,
        }
    }

    #[test]
    fn macs_are_stable_local_and_distinct() {
        let a = member_mac("lab", "node-0");
        assert_eq!(a, member_mac("lab", "node-0"));
        assert_ne!(a, member_mac("lab", "node-1"));
        assert_ne!(a, member_mac("lab2", "node-0"));
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered unicast");
    }

    #[test]
    fn picked_addresses_are_stable_and_in_the_upper_half() {
        let subnet: Subnet = "10.77.0.0/24".parse().unwrap();
        let ip = assign("lab", &subnet, "node-0", None, &[]).unwrap();
        assert_eq!(ip, assign("lab", &subnet, "node-0", None, &[]).unwrap());
        assert!(u32::from(ip) >= u32::from(Ipv4Addr::new(10, 77, 0, 128)), "{ip}");
        assert!(subnet.is_member_address(ip));
        // The same name keeps its address; another name never gets it.
        let members = [member("node-0", &ip.to_string(), false)];
        assert_eq!(assign("lab", &subnet, "node-0", None, &members).unwrap(), ip);
        let mut taken = members.to_vec();
        for i in 1..120 {
            let name = format!("node-{i}");
            let got = assign("lab", &subnet, &name, None, &taken).unwrap();
            assert!(taken.iter().all(|m| m.ip != got), "{name} got a taken {got}");
            taken.push(member(&name, &got.to_string(), false));
        }
    }

    #[test]
    fn static_addresses_are_checked() {
        let subnet: Subnet = "10.77.0.0/24".parse().unwrap();
        let ip = Ipv4Addr::new(10, 77, 0, 10);
        let fixed = Some(ip);
        assert_eq!(assign("lab", &subnet, "a", fixed, &[]).unwrap(), ip);
        let members = [member("b", "10.77.0.10", true)];
        let err = assign("lab", &subnet, "a", fixed, &members).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network lab: 10.77.0.10 is already the address of `b`: give each member its own address"
        );
        // Its own static address again is fine.
        assert!(assign("lab", &subnet, "b", fixed, &members).is_ok());
        for outside in ["10.77.1.10", "10.77.0.1", "10.77.0.0", "10.77.0.255"] {
            let err = assign("lab", &subnet, "a", Some(outside.parse().unwrap()), &[]).unwrap_err();
            assert!(matches!(err, NetworkError::AddressOutside { .. }), "{outside}");
        }
    }

    #[test]
    fn a_full_network_says_so() {
        let subnet: Subnet = "10.0.0.0/30".parse().unwrap();
        let members = [member("a", "10.0.0.2", false)];
        assert!(matches!(
            assign("lab", &subnet, "b", None, &members),
            Err(NetworkError::Full { .. })
        ));
    }
}
