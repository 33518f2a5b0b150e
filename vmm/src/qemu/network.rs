//! `--networking` and `--publish`, parsed as LinuxKit's `run qemu` does.

use std::fmt;
use std::str::FromStr;

/// How the guest's single NIC is connected (`--networking`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Networking {
    /// qemu's user-mode network stack (slirp); the only mode that supports `--publish`.
    #[default]
    User,
    /// An existing tap interface, by name.
    Tap(String),
    /// An existing bridge, by name (needs qemu's setuid bridge helper when not root).
    Bridge(String),
    /// No network device at all.
    None,
}

/// Errors from `--networking` and `--publish`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Unknown mode.
    #[error("invalid networking mode {0:?}: use user, tap,IFNAME, bridge,BRIDGE or none")]
    UnknownMode(String),
    /// `tap` or `bridge` without the interface name.
    #[error("networking mode {0:?} needs an interface name, e.g. {0},{1}")]
    MissingName(&'static str, &'static str),
    /// `--publish` with a mode other than `user`.
    #[error("port publishing requires \"user\" networking, not {0:?}")]
    PublishNeedsUser(String),
    /// `--publish` not of the form HOST:GUEST[/tcp|/udp].
    #[error("cannot parse --publish {0:?}: use HOST:GUEST or HOST:GUEST/tcp or HOST:GUEST/udp")]
    PublishSyntax(String),
    /// A port that is not 1-65535.
    #[error("invalid {which} port {value:?} in --publish {spec:?}: use a number from 1 to 65535")]
    BadPort {
        /// `host` or `guest`.
        which: &'static str,
        /// The offending text.
        value: String,
        /// The whole `--publish` value.
        spec: String,
    },
    /// A protocol other than tcp/udp.
    #[error("invalid protocol {proto:?} in --publish {spec:?}: use tcp or udp")]
    BadProtocol {
        /// The offending protocol.
        proto: String,
        /// The whole `--publish` value.
        spec: String,
    },
    /// The same host port and protocol published twice.
    #[error("host port {0} is published twice")]
    Duplicate(PublishedPort),
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

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as qemu's `hostfwd=` wants it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A guest port forwarded from a host port (`--publish HOST:GUEST[/tcp|/udp]`). Like LinuxKit,
/// there is no host IP part; qemu listens on all host addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishedPort {
    /// Port on the host.
    pub host: u16,
    /// Port in the guest.
    pub guest: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.guest, self.protocol.as_str())
    }
}

impl PublishedPort {
    /// The `hostfwd=` option value for qemu's user network (`tcp::8080-:80`).
    pub fn hostfwd(&self) -> String {
        format!("{}::{}-:{}", self.protocol.as_str(), self.host, self.guest)
    }
}

impl FromStr for PublishedPort {
    type Err = NetworkError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let syntax = || NetworkError::PublishSyntax(spec.to_string());
        let (host, rest) = spec.split_once(':').ok_or_else(syntax)?;
        if rest.contains(':') {
            return Err(syntax());
        }
        let (guest, proto) = match rest.split_once('/') {
            Some((g, p)) => (g, Some(p)),
            None => (rest, None),
        };
        let protocol = match proto.map(|p| p.trim().to_ascii_lowercase()) {
            None => Protocol::Tcp,
            Some(p) if p == "tcp" => Protocol::Tcp,
            Some(p) if p == "udp" => Protocol::Udp,
            Some(p) => {
                return Err(NetworkError::BadProtocol {
                    proto: p,
                    spec: spec.to_string(),
                })
            }
        };
        let port = |which, v: &str| match v.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(NetworkError::BadPort {
                which,
                value: v.to_string(),
                spec: spec.to_string(),
            }),
        };
        Ok(PublishedPort {
            host: port("host", host)?,
            guest: port("guest", guest)?,
            protocol,
        })
    }
}

/// Checks a list of published ports against the networking mode: publishing needs `user`
/// networking, and a host port/protocol pair may appear once.
pub fn check_publish(networking: &Networking, ports: &[PublishedPort]) -> Result<(), NetworkError> {
    if !ports.is_empty() && *networking != Networking::User {
        return Err(NetworkError::PublishNeedsUser(networking.to_string()));
    }
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.host == p.host && q.protocol == p.protocol) {
            return Err(NetworkError::Duplicate(*p));
        }
    }
    Ok(())
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
    fn publish_forms() {
        let p: PublishedPort = "8080:80".parse().unwrap();
        assert_eq!(
            p,
            PublishedPort {
                host: 8080,
                guest: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(p.hostfwd(), "tcp::8080-:80");
        let p: PublishedPort = "5353:53/UDP".parse().unwrap();
        assert_eq!(p.hostfwd(), "udp::5353-:53");
        assert_eq!("22:22/tcp".parse::<PublishedPort>().unwrap().to_string(), "22:22/tcp");
    }

    #[test]
    fn publish_errors() {
        assert_eq!(
            "80".parse::<PublishedPort>().unwrap_err(),
            NetworkError::PublishSyntax("80".into())
        );
        // LinuxKit has no IP:HOST:GUEST form.
        assert!(matches!(
            "127.0.0.1:80:80".parse::<PublishedPort>(),
            Err(NetworkError::PublishSyntax(_))
        ));
        let e = "0:80".parse::<PublishedPort>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid host port \"0\" in --publish \"0:80\": use a number from 1 to 65535"
        );
        assert!(matches!(
            "80:70000".parse::<PublishedPort>(),
            Err(NetworkError::BadPort { which: "guest", .. })
        ));
        assert!(matches!(
            "80:80/sctp".parse::<PublishedPort>(),
            Err(NetworkError::BadProtocol { .. })
        ));
    }

    #[test]
    fn publish_checks() {
        let a: PublishedPort = "80:80".parse().unwrap();
        let b: PublishedPort = "80:81".parse().unwrap();
        let u: PublishedPort = "80:80/udp".parse().unwrap();
        assert!(check_publish(&Networking::User, &[a, u]).is_ok());
        assert_eq!(
            check_publish(&Networking::User, &[a, b]).unwrap_err().to_string(),
            "host port 80:81/tcp is published twice"
        );
        assert_eq!(
            check_publish(&Networking::None, &[a]).unwrap_err().to_string(),
            "port publishing requires \"user\" networking, not \"none\""
        );
        assert!(check_publish(&Networking::Tap("t".into()), &[]).is_ok());
    }
}
