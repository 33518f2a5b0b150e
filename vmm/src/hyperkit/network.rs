//! Networking for hyperkit, as LinuxKit's `run hyperkit`: Docker Desktop's vpnkit (the
//! default), a vpnkit of our own or given by its sockets, macOS vmnet, or none.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{HyperkitError, Socket9p, VPNKIT_VSOCK_PORT};
use crate::machine::PublishedPort;

/// Docker Desktop's data directory, relative to `$HOME`; its vpnkit sockets live there.
pub const DOCKER_DATA_DIR: &str = "Library/Containers/com.docker.docker/Data";

/// The networking mode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HyperkitNetworking {
    /// Share Docker Desktop's vpnkit (`default`, `docker-for-mac`).
    #[default]
    DockerForMac,
    /// `vpnkit[,ETH-SOCKET[,PORT-SOCKET]]`: an existing vpnkit by its sockets, or (no sockets) a new
    /// vpnkit started for this VM with its sockets in the state dir.
    Vpnkit {
        /// vpnkit's ethernet socket, if it runs already.
        ethernet: Option<PathBuf>,
        /// vpnkit's port control socket (needed to publish ports with an existing vpnkit).
        port: Option<PathBuf>,
    },
    /// macOS's vmnet framework (`virtio-net`; needs root).
    Vmnet,
    /// No NIC.
    None,
}

impl FromStr for HyperkitNetworking {
    type Err = HyperkitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ',');
        let mode = parts.next().unwrap_or_default();
        let path = |p: Option<&str>| p.filter(|p| !p.is_empty()).map(PathBuf::from);
        let (first, second) = (path(parts.next()), path(parts.next()));
        let plain = |m: HyperkitNetworking| match (&first, &second) {
            (None, None) if !s.contains(',') => Ok(m),
            _ => Err(HyperkitError::UnknownNetworking(s.to_string())),
        };
        match mode {
            "" | "default" | "docker-for-mac" => plain(HyperkitNetworking::DockerForMac),
            "vmnet" => plain(HyperkitNetworking::Vmnet),
            "none" => plain(HyperkitNetworking::None),
            "vpnkit" if first.is_none() && second.is_some() => Err(HyperkitError::UnknownNetworking(s.to_string())),
            "vpnkit" => Ok(HyperkitNetworking::Vpnkit {
                ethernet: first,
                port: second,
            }),
            _ => Err(HyperkitError::UnknownNetworking(s.to_string())),
        }
    }
}

impl fmt::Display for HyperkitNetworking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HyperkitNetworking::DockerForMac => f.write_str("docker-for-mac"),
            HyperkitNetworking::Vpnkit { ethernet, port } => {
                f.write_str("vpnkit")?;
                for p in [ethernet, port].into_iter().flatten() {
                    write!(f, ",{}", p.display())?;
                }
                Ok(())
            }
            HyperkitNetworking::Vmnet => f.write_str("vmnet"),
            HyperkitNetworking::None => f.write_str("none"),
        }
    }
}

/// What a networking mode means for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPlan {
    /// vpnkit's ethernet socket, for the `virtio-vpnkit` NIC.
    pub vpnkit_socket: Option<PathBuf>,
    /// vpnkit's port control socket, for published ports.
    pub port_socket: Option<PathBuf>,
    /// Start a vpnkit that listens on [`NetworkPlan::vpnkit_socket`] and [`NetworkPlan::port_socket`].
    pub launch_vpnkit: bool,
    /// A vmnet NIC.
    pub vmnet: bool,
    /// 9P shares (vpnkit's port socket, tag `port`, for the guest's `vpnkit-forwarder`).
    pub sockets_9p: Vec<Socket9p>,
    /// vsock ports to forward in addition to the ones asked for ([`VPNKIT_VSOCK_PORT`] with vpnkit).
    pub vsock_ports: Vec<u32>,
}

/// Decides sockets and devices for `networking`. `home` is `$HOME`, where Docker Desktop's sockets
/// are looked for (`s50`/`s51` of old releases first, then `vpnkit.eth.sock`/`vpnkit.port.sock`).
pub fn plan_network(
    networking: &HyperkitNetworking,
    state_dir: &Path,
    home: Option<&Path>,
) -> Result<NetworkPlan, HyperkitError> {
    let port_share = |port: &Option<PathBuf>| -> Vec<Socket9p> {
        port.iter()
            .map(|p| Socket9p {
                path: p.clone(),
                tag: "port".into(),
            })
            .collect()
    };
    match networking {
        HyperkitNetworking::DockerForMac => {
            let data = home.unwrap_or(Path::new("")).join(DOCKER_DATA_DIR);
            let (eth, port) = if data.join("s50").exists() {
                (data.join("s50"), data.join("s51"))
            } else if data.join("vpnkit.eth.sock").exists() {
                (data.join("vpnkit.eth.sock"), data.join("vpnkit.port.sock"))
            } else {
                return Err(HyperkitError::NoDockerForMac(data));
            };
            Ok(NetworkPlan {
                vpnkit_socket: Some(eth),
                port_socket: Some(port),
                ..NetworkPlan::default()
            })
        }
        HyperkitNetworking::Vpnkit {
            ethernet: Some(eth),
            port,
        } => Ok(NetworkPlan {
            vpnkit_socket: Some(eth.clone()),
            port_socket: port.clone(),
            sockets_9p: port_share(port),
            vsock_ports: vec![VPNKIT_VSOCK_PORT],
            ..NetworkPlan::default()
        }),
        HyperkitNetworking::Vpnkit { ethernet: None, .. } => {
            let port = Some(state_dir.join("vpnkit_port.sock"));
            Ok(NetworkPlan {
                vpnkit_socket: Some(state_dir.join("vpnkit_eth.sock")),
                sockets_9p: port_share(&port),
                port_socket: port,
                launch_vpnkit: true,
                vsock_ports: vec![VPNKIT_VSOCK_PORT],
                vmnet: false,
            })
        }
        HyperkitNetworking::Vmnet => Ok(NetworkPlan {
            vmnet: true,
            ..NetworkPlan::default()
        }),
        HyperkitNetworking::None => Ok(NetworkPlan::default()),
    }
}

/// Checks published ports against the mode: only vpnkit modes publish, they need the port socket, and
/// a host port/protocol pair may appear once.
pub fn check_publish(
    networking: &HyperkitNetworking,
    plan: &NetworkPlan,
    ports: &[PublishedPort],
) -> Result<(), HyperkitError> {
    if ports.is_empty() {
        return Ok(());
    }
    match networking {
        HyperkitNetworking::DockerForMac | HyperkitNetworking::Vpnkit { .. } => {}
        other => return Err(HyperkitError::PublishNeedsVpnkit(other.to_string())),
    }
    if plan.port_socket.is_none() {
        return Err(HyperkitError::PublishNeedsPortSocket);
    }
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.host == p.host && q.protocol == p.protocol) {
            return Err(HyperkitError::DuplicatePublish(p.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        let n = |s: &str| s.parse::<HyperkitNetworking>();
        assert_eq!(n("").unwrap(), HyperkitNetworking::DockerForMac);
        assert_eq!(n("default").unwrap(), HyperkitNetworking::DockerForMac);
        assert_eq!(n("docker-for-mac").unwrap(), HyperkitNetworking::DockerForMac);
        assert_eq!(n("vmnet").unwrap(), HyperkitNetworking::Vmnet);
        assert_eq!(n("none").unwrap(), HyperkitNetworking::None);
        assert_eq!(
            n("vpnkit").unwrap(),
            HyperkitNetworking::Vpnkit {
                ethernet: None,
                port: None
            }
        );
        let v = n("vpnkit,/tmp/eth.sock,/tmp/port.sock").unwrap();
        assert_eq!(
            v,
            HyperkitNetworking::Vpnkit {
                ethernet: Some("/tmp/eth.sock".into()),
                port: Some("/tmp/port.sock".into())
            }
        );
        assert_eq!(v.to_string(), "vpnkit,/tmp/eth.sock,/tmp/port.sock");
        assert_eq!(
            n("user").unwrap_err().to_string(),
            "invalid networking mode \"user\": use default, docker-for-mac, vpnkit[,ETH-SOCKET[,PORT-SOCKET]], vmnet or none"
        );
        assert!(n("none,x").is_err());
        assert!(n("vpnkit,,/tmp/port.sock").is_err());
    }

    #[test]
    fn own_vpnkit_lives_in_the_state_dir() {
        let plan = plan_network(
            &HyperkitNetworking::Vpnkit {
                ethernet: None,
                port: None,
            },
            Path::new("/st"),
            None,
        )
        .unwrap();
        assert_eq!(
            plan,
            NetworkPlan {
                vpnkit_socket: Some("/st/vpnkit_eth.sock".into()),
                port_socket: Some("/st/vpnkit_port.sock".into()),
                launch_vpnkit: true,
                vmnet: false,
                sockets_9p: vec![Socket9p {
                    path: "/st/vpnkit_port.sock".into(),
                    tag: "port".into()
                }],
                vsock_ports: vec![62373],
            }
        );
    }

    #[test]
    fn existing_vpnkit_without_port_socket_has_no_9p_share() {
        let plan = plan_network(&"vpnkit,/v/eth".parse().unwrap(), Path::new("/st"), None).unwrap();
        assert_eq!(plan.vpnkit_socket, Some("/v/eth".into()));
        assert_eq!(plan.port_socket, None);
        assert!(plan.sockets_9p.is_empty());
        assert!(!plan.launch_vpnkit);
        assert_eq!(plan.vsock_ports, [62373]);
    }

    #[test]
    fn docker_for_mac_sockets() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join(DOCKER_DATA_DIR);
        let e = plan_network(&HyperkitNetworking::DockerForMac, Path::new("/st"), Some(home.path())).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "cannot find Docker Desktop's vpnkit sockets ({}/vpnkit.eth.sock or s50): start Docker Desktop",
                data.display()
            )),
            "{e}"
        );
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("vpnkit.eth.sock"), "").unwrap();
        let plan = plan_network(&HyperkitNetworking::DockerForMac, Path::new("/st"), Some(home.path())).unwrap();
        assert_eq!(plan.vpnkit_socket, Some(data.join("vpnkit.eth.sock")));
        assert_eq!(plan.port_socket, Some(data.join("vpnkit.port.sock")));
        assert!(plan.sockets_9p.is_empty() && plan.vsock_ports.is_empty());
        std::fs::write(data.join("s50"), "").unwrap();
        let plan = plan_network(&HyperkitNetworking::DockerForMac, Path::new("/st"), Some(home.path())).unwrap();
        assert_eq!(plan.vpnkit_socket, Some(data.join("s50")));
        assert_eq!(plan.port_socket, Some(data.join("s51")));
    }

    #[test]
    fn publish_needs_vpnkit_and_its_port_socket() {
        let p: Vec<PublishedPort> = vec!["2222:22".parse().unwrap()];
        let none = HyperkitNetworking::None;
        let e = check_publish(&none, &NetworkPlan::default(), &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port publishing requires \"docker-for-mac\" or \"vpnkit\" networking, not \"none\""
        );
        assert!(check_publish(&none, &NetworkPlan::default(), &[]).is_ok());
        let vmnet = HyperkitNetworking::Vmnet;
        assert!(matches!(
            check_publish(&vmnet, &NetworkPlan::default(), &p),
            Err(HyperkitError::PublishNeedsVpnkit(ref m)) if m == "vmnet"
        ));
        let existing: HyperkitNetworking = "vpnkit,/v/eth".parse().unwrap();
        let plan = plan_network(&existing, Path::new("/st"), None).unwrap();
        assert!(matches!(
            check_publish(&existing, &plan, &p),
            Err(HyperkitError::PublishNeedsPortSocket)
        ));
        let own = HyperkitNetworking::Vpnkit {
            ethernet: None,
            port: None,
        };
        let plan = plan_network(&own, Path::new("/st"), None).unwrap();
        assert!(check_publish(&own, &plan, &p).is_ok());
        let twice: Vec<PublishedPort> = vec!["2222:22".parse().unwrap(), "2222:23/tcp".parse().unwrap()];
        assert_eq!(
            check_publish(&own, &plan, &twice).unwrap_err().to_string(),
            "host port 2222:23/tcp is published twice"
        );
    }
}
