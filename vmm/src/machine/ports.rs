//! Guest ports published on the host: `HOST:GUEST[/tcp|/udp]`, as LinuxKit's `--publish`.

use std::fmt;
use std::str::FromStr;

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
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A guest port forwarded from a host port (`HOST:GUEST[/tcp|/udp]`, LinuxKit's `--publish`). Like LinuxKit,
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

impl FromStr for PublishedPort {
    type Err = PortError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let syntax = || PortError::Syntax(spec.to_string());
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
                return Err(PortError::BadProtocol {
                    proto: p,
                    spec: spec.to_string(),
                })
            }
        };
        let port = |which, v: &str| match v.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(PortError::BadPort {
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

/// A published port that does not parse, or a list that publishes one host port twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Not of the form HOST:GUEST[/tcp|/udp].
    #[error("cannot parse published port {0:?}: use HOST:GUEST or HOST:GUEST/tcp or HOST:GUEST/udp")]
    Syntax(String),
    /// A port that is not 1-65535.
    #[error("invalid {which} port {value:?} in published port {spec:?}: use a number from 1 to 65535")]
    BadPort {
        /// `host` or `guest`.
        which: &'static str,
        /// The offending text.
        value: String,
        /// The whole value.
        spec: String,
    },
    /// A protocol other than tcp/udp.
    #[error("invalid protocol {proto:?} in published port {spec:?}: use tcp or udp")]
    BadProtocol {
        /// The offending protocol.
        proto: String,
        /// The whole value.
        spec: String,
    },
    /// The same host port and protocol published twice.
    #[error("host port {0} is published twice")]
    Duplicate(PublishedPort),
}

/// Checks that no host port and protocol pair is published twice.
pub fn check_unique(ports: &[PublishedPort]) -> Result<(), PortError> {
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.host == p.host && q.protocol == p.protocol) {
            return Err(PortError::Duplicate(*p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p: PublishedPort = "5353:53/UDP".parse().unwrap();
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!("22:22/tcp".parse::<PublishedPort>().unwrap().to_string(), "22:22/tcp");
    }

    #[test]
    fn publish_errors() {
        assert_eq!(
            "80".parse::<PublishedPort>().unwrap_err(),
            PortError::Syntax("80".into())
        );
        // LinuxKit has no IP:HOST:GUEST form.
        assert!(matches!(
            "127.0.0.1:80:80".parse::<PublishedPort>(),
            Err(PortError::Syntax(_))
        ));
        let e = "0:80".parse::<PublishedPort>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid host port \"0\" in published port \"0:80\": use a number from 1 to 65535"
        );
        assert!(matches!(
            "80:70000".parse::<PublishedPort>(),
            Err(PortError::BadPort { which: "guest", .. })
        ));
        assert!(matches!(
            "80:80/sctp".parse::<PublishedPort>(),
            Err(PortError::BadProtocol { .. })
        ));
    }

    #[test]
    fn a_host_port_is_published_once_per_protocol() {
        let a: PublishedPort = "80:80".parse().unwrap();
        let b: PublishedPort = "80:81".parse().unwrap();
        let u: PublishedPort = "80:80/udp".parse().unwrap();
        assert!(check_unique(&[a, u]).is_ok());
        assert_eq!(
            check_unique(&[a, b]).unwrap_err().to_string(),
            "host port 80:81/tcp is published twice"
        );
    }
}
