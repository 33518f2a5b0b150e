//! Private networks between instances on this host: a named L2 segment that the VMs joining it
//! share, with DHCP (a stable address per instance, or a static one it is given) and
//! DNS (members by name) served by the network itself. No root needed: each network is a small
//! userspace switch process that qemu's NICs connect to over a unix socket (`docs/networking.md`).

mod addressing;
mod error;
mod gateway;
mod membership;
mod registry;
mod subnet;
mod switch;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

pub use error::NetworkError;
pub use membership::{existing, join, lease, leave, Joined, Lease};
pub use subnet::{Subnet, SubnetError};

/// The environment variable that makes a process the switch of the network directory it names
/// (see [`switch_main`]).
pub const SWITCH_ENV: &str = "MOBY_NETWORK_SWITCH";

/// Networks are served by switch processes started from this program: a program that lets
/// instances join networks calls this first thing in `main`. When this process was started as a
/// switch ([`SWITCH_ENV`] is set), it serves the network until the network ends and returns the
/// exit status; otherwise it returns `None` at once.
pub fn switch_main() -> Option<i32> {
    let dir = std::env::var_os(SWITCH_ENV)?;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the switch's runtime: {e}");
            return Some(1);
        }
    };
    match runtime.block_on(switch::serve(dir.into())) {
        Ok(()) => Some(0),
        Err(e) => {
            eprintln!("{e}");
            Some(1)
        }
    }
}

/// A network an instance joins: by name, with the subnet it must have (`None`: the existing
/// network's, or a free one picked for a new network).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub name: String,
    /// Its subnet, when the caller requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Subnet>,
    /// The instance's static address there; `None`: a stable one picked for its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
}

/// An attachment that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// A name that is not a short DNS label.
    #[error(
        "invalid network name {0:?}: use 1 to 32 lower-case letters, digits and '-', starting with a letter or digit"
    )]
    Name(String),
    /// An option other than `subnet=`.
    #[error("unknown network option {0:?}: write NAME[,subnet=A.B.C.D/N][,ip=A.B.C.D]")]
    Option(String),
    /// An `ip=` that is not an IPv4 address.
    #[error("ip={0:?} is not an IPv4 address")]
    Address(String),
    /// A subnet that cannot be used.
    #[error(transparent)]
    Subnet(#[from] SubnetError),
}

impl Attachment {
    /// The network `name`, with whatever subnet it has or gets.
    pub fn named(name: impl Into<String>) -> Result<Attachment, AttachmentError> {
        let name = name.into();
        check_name(&name)?;
        Ok(Attachment {
            name,
            subnet: None,
            address: None,
        })
    }
}

/// Checks a network name: it names a directory and is the members' DNS domain.
pub fn check_name(name: &str) -> Result<(), AttachmentError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    match ok {
        true => Ok(()),
        false => Err(AttachmentError::Name(name.to_string())),
    }
}

impl FromStr for Attachment {
    type Err = AttachmentError;

    /// `NAME[,subnet=A.B.C.D/N][,ip=A.B.C.D]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let mut attachment = Attachment::named(parts.next().unwrap_or_default())?;
        for option in parts {
            match option.split_once('=') {
                Some(("subnet", cidr)) => attachment.subnet = Some(cidr.parse()?),
                Some(("ip", ip)) => {
                    attachment.address = Some(ip.parse().map_err(|_| AttachmentError::Address(ip.to_string()))?)
                }
                _ => return Err(AttachmentError::Option(option.to_string())),
            }
        }
        Ok(attachment)
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(subnet) = &self.subnet {
            write!(f, ",subnet={subnet}")?;
        }
        if let Some(ip) = &self.address {
            write!(f, ",ip={ip}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments() {
        let a: Attachment = "lab".parse().unwrap();
        assert_eq!(a, Attachment::named("lab").unwrap());
        let b: Attachment = "lab-2,subnet=10.9.0.0/16".parse().unwrap();
        assert_eq!(b.subnet.unwrap().to_string(), "10.9.0.0/16");
        assert_eq!(b.to_string(), "lab-2,subnet=10.9.0.0/16");
        let c: Attachment = "lab,ip=10.9.0.7,subnet=10.9.0.0/16".parse().unwrap();
        assert_eq!(c.address, Some(Ipv4Addr::new(10, 9, 0, 7)));
        assert_eq!(c.to_string(), "lab,subnet=10.9.0.0/16,ip=10.9.0.7");
        assert!(matches!(
            "lab,ip=10.9.0".parse::<Attachment>(),
            Err(AttachmentError::Address(_))
        ));
        for bad in ["", "-x", "Lab", "a_b", "a.b", &"x".repeat(33)] {
            assert!(
                matches!(bad.parse::<Attachment>(), Err(AttachmentError::Name(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "lab,mtu=9000".parse::<Attachment>(),
            Err(AttachmentError::Option(_))
        ));
        assert!(matches!(
            "lab,subnet=10.0.0.1/24".parse::<Attachment>(),
            Err(AttachmentError::Subnet(_))
        ));
    }
}
