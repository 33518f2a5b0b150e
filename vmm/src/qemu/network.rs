//! qemu's networking modes, parsed as LinuxKit's `run qemu` does, and which of them publish ports.

use std::fmt;
use std::str::FromStr;

use crate::machine::{check_unique, PortError, PublishedPort};

/// How the guest's single NIC is connected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Networking {
    /// qemu's user-mode network stack (slirp); the only mode that publishes ports.
    #[default]
    User,
    /// An existing tap interface, by name.
    Tap(String),
    /// An existing bridge, by name (needs qemu's setuid bridge helper when not root).
    Bridge(String),
    /// No network device at all.
    None,
}

/// Errors of qemu's networking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Unknown mode.
    #[error("invalid networking mode {0:?}: use user, tap,IFNAME, bridge,BRIDGE or none")]
    UnknownMode(String),
    /// `tap` or `bridge` without the interface name.
    #[error("networking mode {0:?} needs an interface name, e.g. {0},{1}")]
    MissingName(&'static str, &'static str),
    /// Published ports with a mode other than `user`.
    #[error("port publishing requires \"user\" networking, not {0:?}")]
    PublishNeedsUser(String),
    /// A published port that cannot be used.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl FromStr for Networking {
    type Err = NetworkError;

    /// Parses `user`, `default` (= user), `tap,IF`, `bridge,BR`, `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mode, name) = match s.split_once(',') {
            Some((m, n)) => (m, Some(n)),
            None => (s, None),
        };
        let name = name.filter(|n| !n.is_empty()).map(str::to_string);
        match mode {
            "" | "default" | "user" => Ok(Networking::User),
            "none" => Ok(Networking::None),
            "tap" => name
                .map(Networking::Tap)
                .ok_or(NetworkError::MissingName("tap", "tap0")),
            "bridge" => name
                .map(Networking::Bridge)
                .ok_or(NetworkError::MissingName("bridge", "br0")),
            _ => Err(NetworkError::UnknownMode(s.to_string())),
        }
    }
}

impl fmt::Display for Networking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Networking::User => f.write_str("user"),
            Networking::Tap(n) => write!(f, "tap,{n}"),
            Networking::Bridge(n) => write!(f, "bridge,{n}"),
            Networking::None => f.write_str("none"),
        }
    }
}

/// Checks a list of published ports against the networking mode: publishing needs `user`
/// networking, and a host port/protocol pair may appear once.
pub fn check_publish(networking: &Networking, ports: &[PublishedPort]) -> Result<(), NetworkError> {
    if !ports.is_empty() && *networking != Networking::User {
        return Err(NetworkError::PublishNeedsUser(networking.to_string()));
    }
    Ok(check_unique(ports)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networking_modes() {
        assert_eq!("user".parse::<Networking>().unwrap(), Networking::User);
        assert_eq!("default".parse::<Networking>().unwrap(), Networking::User);
        assert_eq!("none".parse::<Networking>().unwrap(), Networking::None);
        assert_eq!(
            "tap,tap0".parse::<Networking>().unwrap(),
            Networking::Tap("tap0".into())
        );
        assert_eq!(
            "bridge,br0".parse::<Networking>().unwrap(),
            Networking::Bridge("br0".into())
        );
        assert_eq!(
            "tap".parse::<Networking>().unwrap_err(),
            NetworkError::MissingName("tap", "tap0")
        );
        assert_eq!(
            "bridge,".parse::<Networking>().unwrap_err(),
            NetworkError::MissingName("bridge", "br0")
        );
        assert_eq!(
            "vde".parse::<Networking>().unwrap_err(),
            NetworkError::UnknownMode("vde".into())
        );
    }

    #[test]
    fn publish_checks() {
        let a: PublishedPort = "80:80".parse().unwrap();
        let b: PublishedPort = "80:81".parse().unwrap();
        let u: PublishedPort = "80:80/udp".parse().unwrap();
        assert!(check_publish(&Networking::User, &[a, u]).is_ok());
        assert!(matches!(
            check_publish(&Networking::User, &[a, b]),
            Err(NetworkError::Port(_))
        ));
        assert_eq!(
            check_publish(&Networking::None, &[a]).unwrap_err().to_string(),
            "port publishing requires \"user\" networking, not \"none\""
        );
        assert!(check_publish(&Networking::Tap("t".into()), &[]).is_ok());
    }
}
