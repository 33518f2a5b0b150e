//! IPv4 subnets of private networks: parsing `A.B.C.D/N`, the gateway and the usable host range.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 subnet given by its network address and prefix length (8..=30: a gateway and at least
/// one member fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

/// A subnet that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// Not `A.B.C.D/N`.
    #[error("{0:?} is not an IPv4 subnet: write it as A.B.C.D/N, e.g. 10.77.0.0/24")]
    Syntax(String),
    /// A prefix out of 8..=30.
    #[error("{0}: the prefix length must be 8 to 30 (a gateway and at least one member must fit)")]
    Prefix(String),
    /// Host bits set in the address.
    #[error("{given}: host bits are set; the subnet is {canonical}")]
    HostBits {
        /// As given.
        given: String,
        /// With the host bits cleared.
        canonical: String,
    },
}

impl Subnet {
    /// The subnet `base/prefix`, checked as [`FromStr`] checks it.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Result<Subnet, SubnetError> {
        format!("{base}/{prefix}").parse()
    }

    /// The network address.
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask (`255.255.255.0` for a /24).
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) | !mask_bits(self.prefix))
    }

    /// The network's own address on it (DHCP, DNS): the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// Whether `ip` is in the subnet (network and broadcast addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_bits(self.prefix) == u32::from(self.base)
    }

    /// Whether `ip` can be given to a member: in the subnet, neither the network nor the
    /// broadcast address, nor the gateway.
    pub fn is_member_address(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.base && ip != self.broadcast() && ip != self.gateway()
    }

    /// How many addresses members can have.
    pub fn member_count(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 3
    }

    /// The `i`-th member address (`i < member_count()`), counting from the one after the gateway.
    pub fn member(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 2 + i % self.member_count())
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        u32::from(self.base) & mask_bits(shorter) == u32::from(other.base) & mask_bits(shorter)
    }
}

fn mask_bits(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || SubnetError::Syntax(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let base: Ipv4Addr = ip.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 2 {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if !(8..=30).contains(&prefix) {
            return Err(SubnetError::Prefix(s.to_string()));
        }
        let canonical = Ipv4Addr::from(u32::from(base) & mask_bits(prefix));
        if canonical != base {
            return Err(SubnetError::HostBits {
                given: s.to_string(),
                canonical: format!("{canonical}/{prefix}"),
            });
        }
        Ok(Subnet { base, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = SubnetError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_computes() {
        let n = net("10.77.3.0/24");
        assert_eq!(n.to_string(), "10.77.3.0/24");
        assert_eq!(n.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 77, 3, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 77, 3, 255));
        assert_eq!(n.member_count(), 253);
        assert_eq!(n.member(0), Ipv4Addr::new(10, 77, 3, 2));
        assert_eq!(n.member(252), Ipv4Addr::new(10, 77, 3, 254));
        assert_eq!(n.member(253), Ipv4Addr::new(10, 77, 3, 2));
        assert!(n.is_member_address(Ipv4Addr::new(10, 77, 3, 9)));
        for not in ["10.77.3.0", "10.77.3.1", "10.77.3.255", "10.77.4.9"] {
            assert!(!n.is_member_address(not.parse().unwrap()), "{not}");
        }
        assert_eq!(net("192.168.0.0/30").member_count(), 1);
    }

    #[test]
    fn refuses_what_cannot_be_used() {
        assert_eq!(
            "10.77.3.1/24".parse::<Subnet>().unwrap_err().to_string(),
            "10.77.3.1/24: host bits are set; the subnet is 10.77.3.0/24"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0/24",
            "10.0.0.0/+8",
            "10.0.0.0/024",
            "x/24",
        ] {
            assert!(matches!(bad.parse::<Subnet>(), Err(SubnetError::Syntax(_))), "{bad}");
        }
        for bad in ["10.0.0.0/31", "10.0.0.0/7", "0.0.0.0/0"] {
            assert!(matches!(bad.parse::<Subnet>(), Err(SubnetError::Prefix(_))), "{bad}");
        }
    }

    #[test]
    fn overlaps() {
        assert!(net("10.0.0.0/8").overlaps(&net("10.77.0.0/24")));
        assert!(net("10.77.0.0/24").overlaps(&net("10.0.0.0/8")));
        assert!(!net("10.77.0.0/24").overlaps(&net("10.77.1.0/24")));
        assert!(net("10.77.0.0/23").overlaps(&net("10.77.1.0/24")));
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&net("10.1.0.0/16")).unwrap();
        assert_eq!(json, "\"10.1.0.0/16\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), net("10.1.0.0/16"));
        assert!(serde_json::from_str::<Subnet>("\"10.1.0.1/16\"").is_err());
    }
}
