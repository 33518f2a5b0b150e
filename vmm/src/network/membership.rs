//! Joining and leaving a network: the network is made on the first join (its subnet checked
//! against the other networks under the root, its switch started), each member gets its MAC and
//! address, and a connection to the switch that its VM's NIC uses.

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::addressing::{assign, member_mac};
use super::registry::{MemberFile, NetworkDir, NetworkFile};
use super::{Attachment, NetworkError, Subnet, SWITCH_ENV};
use crate::state::StateRoot;

/// How long a new switch may take to listen.
const SWITCH_START: Duration = Duration::from_secs(10);

/// Where the subnets of networks created without one are picked: `10.200.N.0/24`.
const PICKED_SUBNETS: [u8; 2] = [10, 200];

/// A member's place on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The network.
    pub network: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// The member's address.
    pub ip: Ipv4Addr,
    /// The MAC of the member's NIC on the network (`06:…`).
    pub mac: String,
    /// Whether the guest took its address (acknowledged by the network's DHCP) since it joined.
    pub leased: bool,
}

/// A member that joined: its place, and its connection to the network's switch (for its NIC).
#[derive(Debug)]
pub struct Joined {
    /// Its place.
    pub lease: Lease,
    /// The connection to the switch: frames, each after its length as 4 bytes big-endian (qemu's
    /// `-netdev socket` protocol).
    pub connection: UnixStream,
}

/// The directory holding the networks of `root`.
fn networks_dir(root: &StateRoot) -> PathBuf {
    root.base().join(crate::state::NETWORKS_DIR)
}

/// Joins `member` to the network of `attachment`, creating it if needed.
pub fn join(root: &StateRoot, attachment: &Attachment, member: &str) -> Result<Joined, NetworkError> {
    super::check_name(&attachment.name)?;
    let networks = networks_dir(root);
    let net = NetworkDir::new(&networks, &attachment.name);
    let _lock = net.lock()?;
    let network = match net.read_network()? {
        Some(existing) => match attachment.subnet {
            Some(asked) if asked != existing.subnet => {
                return Err(NetworkError::SubnetMismatch {
                    network: attachment.name.clone(),
                    has: existing.subnet,
                    asked,
                })
            }
            _ => existing,
        },
        None => {
            let others = existing(root)?;
            let subnet = match attachment.subnet {
                Some(subnet) => check_free(&attachment.name, subnet, &others),
                None => pick_subnet(&attachment.name, &others),
            };
            // A network that cannot be made leaves nothing behind (a joiner waiting for the lock
            // takes it again on a new file).
            let subnet = subnet.inspect_err(|_| {
                let _ = fs::remove_dir_all(net.dir());
            })?;
            let file = NetworkFile {
                name: attachment.name.clone(),
                subnet,
            };
            net.write_network(&file)?;
            file
        }
    };
    let ip = assign(
        &network.name,
        &network.subnet,
        member,
        attachment.address,
        &net.members()?,
    )?;
    let mac = member_mac(&network.name, member);
    net.clear_lease(member)?;
    net.write_member(&MemberFile {
        name: member.to_string(),
        mac: mac.to_string(),
        ip,
        fixed: attachment.address.is_some(),
    })?;
    let connection = connect_or_start(&net, &network.name)?;
    Ok(Joined {
        lease: Lease {
            network: network.name,
            subnet: network.subnet,
            ip,
            mac: mac.to_string(),
            leased: false,
        },
        connection,
    })
}

/// Removes `member` from network `name` (its address is free again). A network with neither
/// members nor a switch is removed.
pub fn leave(root: &StateRoot, name: &str, member: &str) -> Result<(), NetworkError> {
    let net = NetworkDir::new(&networks_dir(root), name);
    if !net.dir().exists() {
        return Ok(());
    }
    let _lock = net.lock()?;
    net.remove_member(member)?;
    if !net.in_use()? {
        fs::remove_dir_all(net.dir()).map_err(NetworkError::io("remove", net.dir()))?;
    }
    Ok(())
}

/// `member`'s place on network `name`, if it is a member.
pub fn lease(root: &StateRoot, name: &str, member: &str) -> Result<Option<Lease>, NetworkError> {
    let net = NetworkDir::new(&networks_dir(root), name);
    let (Some(network), Some(file)) = (net.read_network()?, net.member(member)?) else {
        return Ok(None);
    };
    Ok(Some(Lease {
        network: network.name,
        subnet: network.subnet,
        ip: file.ip,
        mac: file.mac,
        leased: net.leased(member),
    }))
}

/// The networks under `root` that exist (a switch runs, or members are recorded), with their
/// subnets, sorted by name.
pub fn existing(root: &StateRoot) -> Result<Vec<(String, Subnet)>, NetworkError> {
    let networks = networks_dir(root);
    let entries = match fs::read_dir(&networks) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetworkError::io("read", &networks)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(NetworkError::io("read", &networks))?;
        let net = NetworkDir::at(entry.path());
        let Some(file) = net.read_network()? else { continue };
        if net.in_use()? {
            out.push((file.name, file.subnet));
        }
    }
    out.sort();
    Ok(out)
}

/// `subnet` if no other network's overlaps it.
fn check_free(name: &str, subnet: Subnet, others: &[(String, Subnet)]) -> Result<Subnet, NetworkError> {
    match others.iter().find(|(other, s)| other != name && s.overlaps(&subnet)) {
        Some((other, other_subnet)) => Err(NetworkError::Overlap {
            network: name.to_string(),
            subnet,
            other: other.clone(),
            other_subnet: *other_subnet,
        }),
        None => Ok(subnet),
    }
}

/// A free `10.200.N.0/24` for a new network, starting at a place given by its name.
fn pick_subnet(name: &str, others: &[(String, Subnet)]) -> Result<Subnet, NetworkError> {
    let start = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 256;
    let [a, b] = PICKED_SUBNETS;
    (0..256u32)
        .filter_map(|i| {
            let c = u8::try_from((start + i) % 256).ok()?;
            Subnet::new(Ipv4Addr::new(a, b, c, 0), 24).ok()
        })
        .find(|subnet| check_free(name, *subnet, others).is_ok())
        .ok_or_else(|| NetworkError::NoFreeSubnet {
            network: name.to_string(),
        })
}

/// A connection to the network's switch, starting the switch when none listens.
fn connect_or_start(net: &NetworkDir, name: &str) -> Result<UnixStream, NetworkError> {
    if let Ok(connection) = UnixStream::connect(net.socket()) {
        return Ok(connection);
    }
    let log = net.log_file();
    let failed = |why: String| NetworkError::Switch {
        network: name.to_string(),
        why,
        log: log.clone(),
    };
    let _ = fs::remove_file(net.socket());
    let mut child = spawn_switch(net.dir(), &log).map_err(|e| failed(format!("cannot run it: {e}")))?;
    let deadline = Instant::now() + SWITCH_START;
    loop {
        if let Ok(connection) = UnixStream::connect(net.socket()) {
            return Ok(connection);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("it exited ({status}): {}", log_tail(&log))));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(failed(format!(
                "it did not listen on {} within {}s",
                net.socket().display(),
                SWITCH_START.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts this program as the switch of network directory `dir` (see [`super::switch_main`]), in
/// a session of its own so that it outlives its starter.
fn spawn_switch(dir: &Path, log: &Path) -> io::Result<std::process::Child> {
    // /proc/self/exe runs this very program even after an upgrade replaced its file (a long-lived
    // plugin daemon); elsewhere, the program's path.
    let proc_exe = Path::new("/proc/self/exe");
    let exe = match proc_exe.exists() {
        true => proc_exe.to_path_buf(),
        false => std::env::current_exe()?,
    };
    let log = File::create(log)?;
    let mut cmd = Command::new(exe);
    cmd.arg0("moby-switch")
        .arg(dir)
        .env(SWITCH_ENV, dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    crate::process::new_session(&mut cmd);
    cmd.spawn()
}

/// The last lines of the switch's log, for an error.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    match lines.is_empty() {
        true => "no message".to_string(),
        false => lines.into_iter().rev().collect::<Vec<_>>().join(" / "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn overlapping_subnets_are_refused() {
        let others = vec![("a".to_string(), net("10.77.0.0/16"))];
        let err = check_free("b", net("10.77.3.0/24"), &others).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network b: subnet 10.77.3.0/24 overlaps 10.77.0.0/16 of network a: give it a range of its own"
        );
        assert!(check_free("b", net("10.78.0.0/24"), &others).is_ok());
    }

    #[test]
    fn picked_subnets_are_stable_and_free() {
        let first = pick_subnet("lab", &[]).unwrap();
        assert_eq!(first, pick_subnet("lab", &[]).unwrap());
        assert_eq!(first.prefix(), 24);
        let others = vec![("x".to_string(), first)];
        let second = pick_subnet("lab", &others).unwrap();
        assert_ne!(first, second);
        assert!(!second.overlaps(&first));
        let all = vec![("x".to_string(), net("10.200.0.0/16"))];
        assert!(matches!(
            pick_subnet("lab", &all),
            Err(NetworkError::NoFreeSubnet { .. })
        ));
    }
}
