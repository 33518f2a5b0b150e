//! The two vpnkit protocols LinuxKit's `run hyperkit` speaks to publish ports, and vpnkit's command line.
//!
//! Publishing a port takes the guest's IP address, which vpnkit assigns per UUID:
//! 1. On the ethernet socket, the "vmnet" protocol: both sides send `VMN3T`, a little-endian
//!    version (22) and a 40 byte commit id; we ask for an interface with the VM's UUID (type 1, or
//!    type 8 with a preferred IPv4 address) and vpnkit answers type 1 with the MTU, maximum packet
//!    size and the MAC address (257 bytes), or an error string. Without a preferred address the IP
//!    is learned with one DHCP DISCOVER/OFFER over that interface (frames are a little-endian u16
//!    length then the ethernet frame). vpnkit hands the same IP to hyperkit's NIC with that UUID.
//! 2. On the port socket, HTTP: `POST /forwards/expose/port` (and `/forwards/unexpose/port`) with a
//!    JSON body `{"proto","out_ip","out_port","in_ip","in_port"}`; 200 is success, 400 carries
//!    `{"message": ...}`.
//!
//! The guest needs the `vpnkit-forwarder` service for traffic to arrive (LinuxKit's
//! `examples/vpnkit-forwarder.yml`); Docker Desktop's VM provides it for `docker-for-mac`.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::machine::{Protocol, PublishedPort};

/// Errors talking to vpnkit.
#[derive(Debug, thiserror::Error)]
pub enum VpnkitError {
    /// A socket could not be reached or used.
    #[error("vpnkit socket {path}: {source} (is vpnkit running? check the networking's sockets)")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// vpnkit said something we do not understand.
    #[error("vpnkit socket {path}: unexpected reply: {what}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// vpnkit refused the interface (e.g. the preferred IP is taken).
    #[error("vpnkit refused an interface for UUID {uuid}: {message} (ask for another IP address or vpnkit UUID)")]
    Refused {
        /// The UUID.
        uuid: String,
        /// vpnkit's message.
        message: String,
    },
    /// No DHCP offer in time.
    #[error("vpnkit at {path} sent no DHCP offer for UUID {uuid} within {secs}s: give the VM a preferred IP address")]
    NoDhcpOffer {
        /// The ethernet socket.
        path: PathBuf,
        /// The UUID.
        uuid: String,
        /// The timeout.
        secs: u64,
    },
    /// vpnkit refused to expose a port.
    #[error("vpnkit cannot publish {port}: {message}")]
    Expose {
        /// The port (`HOST:GUEST/PROTO`).
        port: String,
        /// vpnkit's message.
        message: String,
    },
    /// The vpnkit binary is not there.
    #[error(
        "vpnkit not found in $PATH: install it (brew install vpnkit) or give its path, or use docker-for-mac networking"
    )]
    NotFound,
    /// vpnkit did not create its socket.
    #[error("vpnkit did not create {path} within {secs}s{exited}: see its output above")]
    SocketTimeout {
        /// The socket.
        path: PathBuf,
        /// The timeout.
        secs: u64,
        /// `, it exited with ...` when it died.
        exited: String,
    },
}

/// The interface vpnkit assigned to a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vif {
    /// MTU.
    pub mtu: u16,
    /// Maximum packet size.
    pub max_packet_size: u16,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// The guest's IPv4 address.
    pub ip: Ipv4Addr,
}

/// The vmnet protocol's greeting: magic, version 22, a 40 byte commit id.
fn init_message() -> Vec<u8> {
    let mut m = b"VMN3T".to_vec();
    m.extend(22u32.to_le_bytes());
    m.extend(b"0123456789012345678901234567890123456789");
    m
}

/// The request for an interface: type 1 (any address) or 8 (preferred address), the UUID as
/// text, the address as a little-endian u32 of its numeric value.
fn ethernet_request(uuid: &str, ip: Option<Ipv4Addr>) -> Vec<u8> {
    let mut m = vec![if ip.is_some() { 8 } else { 1 }];
    m.extend(uuid.as_bytes());
    m.extend(ip.map_or(0, u32::from).to_le_bytes());
    m
}

/// The IPv4 header checksum (RFC 791).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A broadcast DHCP DISCOVER from `mac` (UDP 68 -> 67), as an ethernet frame.
fn dhcp_discover(mac: [u8; 6]) -> Vec<u8> {
    let mut dhcp = vec![1, 1, 6, 0]; // BOOTREQUEST, ethernet, 6 byte addresses, 0 hops
    dhcp.extend([0x01, 0, 0, 0]); // xid
    dhcp.extend([0, 0, 0x80, 0]); // secs, flags: broadcast
    dhcp.extend([0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    dhcp.extend(mac);
    dhcp.extend([0; 202]); // rest of chaddr, sname, file
    dhcp.extend([0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255]); // cookie, DHCPDISCOVER, end
    let mut udp = Vec::with_capacity(8 + dhcp.len());
    udp.extend(68u16.to_be_bytes());
    udp.extend(67u16.to_be_bytes());
    udp.extend(((8 + dhcp.len()) as u16).to_be_bytes());
    udp.extend([0, 0]); // no UDP checksum
    udp.extend(dhcp);
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + udp.len()) as u16).to_be_bytes());
    ip.extend([0x7f, 0x61, 0, 0, 64, 17, 0, 0]); // id, no fragments, TTL 64, UDP, checksum below
    ip.extend([0, 0, 0, 0, 255, 255, 255, 255]);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend(udp);
    let mut frame = vec![0xff; 6];
    frame.extend(mac);
    frame.extend(0x0800u16.to_be_bytes());
    frame.extend(ip);
    frame
}

/// The offered address if `frame` is a DHCP OFFER for `mac`.
fn dhcp_offer(frame: &[u8], mac: [u8; 6]) -> Option<Ipv4Addr> {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip.len() < ihl + 8 || ihl < 20 || ip[9] != 17 {
        return None;
    }
    let udp = &ip[ihl..];
    if udp[0..2] != 67u16.to_be_bytes() || udp[2..4] != 68u16.to_be_bytes() {
        return None;
    }
    let dhcp = &udp[8..];
    if dhcp.len() < 240 || dhcp[0] != 2 || dhcp[28..34] != mac || dhcp[236..240] != [0x63, 0x82, 0x53, 0x63] {
        return None;
    }
    let mut options = &dhcp[240..];
    while let Some((&code, rest)) = options.split_first() {
        match code {
            0 => options = rest,
            255 => return None,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..usize::from(len))?;
                if code == 53 && value == [2] {
                    return Some(Ipv4Addr::new(dhcp[16], dhcp[17], dhcp[18], dhcp[19]));
                }
                options = &rest[usize::from(len)..];
            }
        }
    }
    None
}

/// Asks the vpnkit listening on `ethernet` for the interface of `uuid` (with `preferred` as its
/// address if given, else the one vpnkit's DHCP offers), waiting at most `timeout` for replies.
pub fn connect_vif(
    ethernet: &Path,
    uuid: &str,
    preferred: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<Vif, VpnkitError> {
    let io_err = |source| VpnkitError::Io {
        path: ethernet.to_path_buf(),
        source,
    };
    let protocol = |what: String| VpnkitError::Protocol {
        path: ethernet.to_path_buf(),
        what,
    };
    let mut conn = UnixStream::connect(ethernet).map_err(io_err)?;
    conn.set_read_timeout(Some(timeout)).map_err(io_err)?;
    conn.write_all(&init_message()).map_err(io_err)?;
    let mut greeting = [0u8; 49];
    conn.read_exact(&mut greeting).map_err(io_err)?;
    if &greeting[..5] != b"VMN3T" {
        return Err(protocol(format!("greeting {:?} is not VMN3T", &greeting[..5])));
    }
    conn.write_all(&ethernet_request(uuid, preferred)).map_err(io_err)?;
    let mut kind = [0u8; 1];
    conn.read_exact(&mut kind).map_err(io_err)?;
    if kind[0] != 1 {
        let mut len = [0u8; 1];
        conn.read_exact(&mut len).map_err(io_err)?;
        let mut message = vec![0u8; usize::from(len[0])];
        conn.read_exact(&mut message).map_err(io_err)?;
        return Err(VpnkitError::Refused {
            uuid: uuid.to_string(),
            message: String::from_utf8_lossy(&message).into_owned(),
        });
    }
    let mut vif = [0u8; 257];
    conn.read_exact(&mut vif).map_err(io_err)?;
    let mac: [u8; 6] = vif[4..10].try_into().unwrap_or_default();
    let mut result = Vif {
        mtu: u16::from_le_bytes([vif[0], vif[1]]),
        max_packet_size: u16::from_le_bytes([vif[2], vif[3]]),
        mac,
        ip: preferred.unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    if preferred.is_some() {
        return Ok(result);
    }
    let discover = dhcp_discover(mac);
    let mut packet = (discover.len() as u16).to_le_bytes().to_vec();
    packet.extend(&discover);
    let deadline = Instant::now() + timeout;
    let resend = Duration::from_secs(1);
    conn.write_all(&packet).map_err(io_err)?;
    let mut last_sent = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(VpnkitError::NoDhcpOffer {
                path: ethernet.to_path_buf(),
                uuid: uuid.to_string(),
                secs: timeout.as_secs(),
            });
        }
        if now.duration_since(last_sent) >= resend {
            conn.write_all(&packet).map_err(io_err)?;
            last_sent = now;
        }
        let wait = resend.min(deadline - now).max(Duration::from_millis(1));
        conn.set_read_timeout(Some(wait)).map_err(io_err)?;
        let mut len = [0u8; 2];
        match conn.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(io_err(e)),
        }
        // Once a frame has started, read the rest of it with the full timeout.
        conn.set_read_timeout(Some(timeout)).map_err(io_err)?;
        let mut frame = vec![0u8; usize::from(u16::from_le_bytes(len))];
        conn.read_exact(&mut frame).map_err(io_err)?;
        if let Some(ip) = dhcp_offer(&frame, mac) {
            result.ip = ip;
            return Ok(result);
        }
    }
}

/// A port forward from the host into the guest, as vpnkit's port API wants it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VpnkitPort {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// The host address to listen on.
    pub out_ip: Ipv4Addr,
    /// The host port.
    pub out_port: u16,
    /// The guest's address.
    pub in_ip: Ipv4Addr,
    /// The guest port.
    pub in_port: u16,
}

impl VpnkitPort {
    /// A published port `HOST:GUEST/PROTO` to the guest at `guest_ip`, listening on 127.0.0.1 as LinuxKit.
    pub fn new(publish: &PublishedPort, guest_ip: Ipv4Addr) -> VpnkitPort {
        VpnkitPort {
            proto: match publish.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            },
            out_ip: Ipv4Addr::LOCALHOST,
            out_port: publish.host,
            in_ip: guest_ip,
            in_port: publish.guest,
        }
    }

    fn describe(&self) -> String {
        format!("{}:{}/{}", self.out_port, self.in_port, self.proto)
    }
}

/// Sends one HTTP request over the unix socket `path`; returns the status and the body.
fn http_post(path: &Path, target: &str, body: &[u8]) -> Result<(u16, Vec<u8>), VpnkitError> {
    let io_err = |source| VpnkitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = UnixStream::connect(path).map_err(io_err)?;
    conn.set_read_timeout(Some(Duration::from_secs(120))).map_err(io_err)?;
    // HTTP/1.0 so the reply is not chunked and ends when the connection closes.
    let head = format!(
        "POST {target} HTTP/1.0\r\nHost: unix\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).map_err(io_err)?;
    conn.write_all(body).map_err(io_err)?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).map_err(io_err)?;
    let protocol = |what: &str| VpnkitError::Protocol {
        path: path.to_path_buf(),
        what: format!("{what}: {:?}", String::from_utf8_lossy(&reply[..reply.len().min(200)])),
    };
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| protocol("no end of HTTP headers"))?;
    let status_line = String::from_utf8_lossy(&reply[..split]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| protocol("not an HTTP reply"))?;
    Ok((status, reply[split + 4..].to_vec()))
}

fn port_request(socket: &Path, target: &str, port: &VpnkitPort) -> Result<(), VpnkitError> {
    let body = serde_json::to_vec(port).unwrap_or_default();
    let (status, reply) = http_post(socket, target, &body)?;
    match status {
        200 => Ok(()),
        400 => {
            #[derive(serde::Deserialize)]
            struct Message {
                message: String,
            }
            let message = serde_json::from_slice::<Message>(&reply)
                .map(|m| m.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&reply).trim().to_string());
            Err(VpnkitError::Expose {
                port: port.describe(),
                message,
            })
        }
        other => Err(VpnkitError::Expose {
            port: port.describe(),
            message: format!("{target} returned HTTP status {other}"),
        }),
    }
}

/// Asks the vpnkit behind the port socket `socket` to forward `port`.
pub fn expose(socket: &Path, port: &VpnkitPort) -> Result<(), VpnkitError> {
    port_request(socket, "/forwards/expose/port", port)
}

/// Asks vpnkit to stop forwarding `port`.
pub fn unexpose(socket: &Path, port: &VpnkitPort) -> Result<(), VpnkitError> {
    port_request(socket, "/forwards/unexpose/port", port)
}

/// The arguments of a vpnkit serving one VM: it listens on `ethernet` and `port` itself and
/// connects to the guest through hyperkit's vsock socket `vsock` (`STATE/connect`).
///
/// LinuxKit creates the listening sockets and passes them as `fd:3`/`fd:4`; passing descriptors
/// needs `unsafe` here, so we give vpnkit the paths and wait for them to appear instead.
pub fn vpnkit_args(ethernet: &Path, vsock: &Path, port: &Path) -> Vec<OsString> {
    vec![
        "--ethernet".into(),
        ethernet.into(),
        "--vsock-path".into(),
        vsock.into(),
        "--port".into(),
        port.into(),
    ]
}

/// The vpnkit binary: `explicit` if given, else `vpnkit` from `$PATH`.
pub fn find_vpnkit(explicit: Option<&Path>, path_var: Option<&std::ffi::OsStr>) -> Result<PathBuf, VpnkitError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    std::env::split_paths(path_var.ok_or(VpnkitError::NotFound)?)
        .map(|d| d.join("vpnkit"))
        .find(|p| p.is_file())
        .ok_or(VpnkitError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    const UUID: &str = "0123abcd-89ab-cdef-0123-456789abcdef";
    const MAC: [u8; 6] = [0x02, 0x50, 0x00, 0x00, 0x00, 0x07];

    /// An offer frame as vpnkit's DHCP server would send it.
    fn offer(mac: [u8; 6], ip: [u8; 4], kind: u8) -> Vec<u8> {
        let mut dhcp = vec![2, 1, 6, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dhcp.extend(ip);
        dhcp.extend([0; 8]);
        dhcp.extend(mac);
        dhcp.extend([0; 202]);
        dhcp.extend([0x63, 0x82, 0x53, 0x63, 1, 4, 255, 255, 255, 0, 53, 1, kind, 255]);
        let mut udp = vec![0, 67, 0, 68, 0, 0, 0, 0];
        udp.extend(dhcp);
        let mut ip_packet = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 65, 1, 255, 255, 255, 255,
        ];
        ip_packet.extend(udp);
        let mut frame = mac.to_vec();
        frame.extend([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6, 0x08, 0x00]);
        frame.extend(ip_packet);
        frame
    }

    /// A vpnkit stand-in for the vmnet protocol: checks what the client sends, answers with `MAC`
    /// and, for a DHCP DISCOVER, first a frame for someone else, then a NAK-like non-offer, then an
    /// offer of 192.168.65.3.
    fn fake_vmnet(listener: UnixListener, expect_ip: Option<[u8; 4]>) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut init = [0u8; 49];
            c.read_exact(&mut init).unwrap();
            assert_eq!(&init[..9], b"VMN3T\x16\0\0\0");
            c.write_all(&init_message()).unwrap();
            let mut req = [0u8; 41];
            c.read_exact(&mut req).unwrap();
            assert_eq!(&req[1..37], UUID.as_bytes());
            match expect_ip {
                Some(ip) => {
                    assert_eq!(req[0], 8);
                    let mut le = ip;
                    le.reverse();
                    assert_eq!(req[37..], le, "address as a little-endian u32");
                }
                None => assert_eq!(req[..1], [1]),
            }
            let mut vif = vec![1u8];
            vif.extend(1500u16.to_le_bytes());
            vif.extend(1550u16.to_le_bytes());
            vif.extend(MAC);
            vif.extend([0; 247]);
            c.write_all(&vif).unwrap();
            if expect_ip.is_some() {
                return Vec::new();
            }
            let mut len = [0u8; 2];
            c.read_exact(&mut len).unwrap();
            let mut discover = vec![0u8; usize::from(u16::from_le_bytes(len))];
            c.read_exact(&mut discover).unwrap();
            for frame in [
                offer([9; 6], [10, 0, 0, 9], 2),
                offer(MAC, [10, 0, 0, 8], 6),
                offer(MAC, [192, 168, 65, 3], 2),
            ] {
                c.write_all(&(frame.len() as u16).to_le_bytes()).unwrap();
                c.write_all(&frame).unwrap();
            }
            discover
        })
    }

    #[test]
    fn dhcp_learns_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("eth.sock");
        let server = fake_vmnet(UnixListener::bind(&sock).unwrap(), None);
        let vif = connect_vif(&sock, UUID, None, Duration::from_secs(10)).unwrap();
        assert_eq!(
            vif,
            Vif {
                mtu: 1500,
                max_packet_size: 1550,
                mac: MAC,
                ip: Ipv4Addr::new(192, 168, 65, 3)
            }
        );
        let discover = server.join().unwrap();
        assert_eq!(discover.len(), 14 + 20 + 8 + 244);
        assert_eq!(discover[..6], [0xff; 6]);
        assert_eq!(discover[6..12], MAC);
        assert_eq!(ipv4_checksum(&discover[14..34]), 0, "the IPv4 header checksum verifies");
        assert_eq!(discover[34..38], [0, 68, 0, 67]);
        assert_eq!(discover[14 + 20 + 8 + 28..14 + 20 + 8 + 34], MAC, "chaddr");
        assert_eq!(discover[discover.len() - 4..], [53, 1, 1, 255]);
    }

    #[test]
    fn preferred_address_skips_dhcp() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("eth.sock");
        let server = fake_vmnet(UnixListener::bind(&sock).unwrap(), Some([192, 168, 65, 10]));
        let vif = connect_vif(
            &sock,
            UUID,
            Some(Ipv4Addr::new(192, 168, 65, 10)),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(vif.ip, Ipv4Addr::new(192, 168, 65, 10));
        server.join().unwrap();
    }

    #[test]
    fn refusal_and_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("eth.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut init = [0u8; 49];
            c.read_exact(&mut init).unwrap();
            c.write_all(&init_message()).unwrap();
            let mut req = [0u8; 41];
            c.read_exact(&mut req).unwrap();
            assert_eq!(req[0], 8);
            let msg = b"IP address 192.168.65.10 already in use";
            c.write_all(&[0, msg.len() as u8]).unwrap();
            c.write_all(msg).unwrap();
        });
        let e = connect_vif(
            &sock,
            UUID,
            Some(Ipv4Addr::new(192, 168, 65, 10)),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("vpnkit refused an interface for UUID {UUID}: IP address 192.168.65.10 already in use (ask for another IP address or vpnkit UUID)")
        );
        server.join().unwrap();
        let e = connect_vif(&dir.path().join("none"), UUID, None, Duration::from_secs(1)).unwrap_err();
        assert!(
            e.to_string()
                .contains("(is vpnkit running? check the networking's sockets)"),
            "{e}"
        );
    }

    /// Serves one HTTP exchange; returns the request it got.
    fn fake_port_api(listener: UnixListener, reply: &'static str) -> thread::JoinHandle<String> {
        thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = c.read(&mut buf).unwrap();
                req.extend(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if let Some(at) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if req.len() >= at + 4 + len {
                        break;
                    }
                }
            }
            c.write_all(reply.as_bytes()).unwrap();
            String::from_utf8(req).unwrap()
        })
    }

    #[test]
    fn expose_posts_json() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("port.sock");
        let server = fake_port_api(UnixListener::bind(&sock).unwrap(), "HTTP/1.0 200 OK\r\n\r\n");
        let publish: PublishedPort = "2222:22".parse().unwrap();
        let port = VpnkitPort::new(&publish, Ipv4Addr::new(192, 168, 65, 3));
        expose(&sock, &port).unwrap();
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /forwards/expose/port HTTP/1.0\r\n"), "{req}");
        assert!(req.ends_with(
            "\r\n\r\n{\"proto\":\"tcp\",\"out_ip\":\"127.0.0.1\",\"out_port\":2222,\"in_ip\":\"192.168.65.3\",\"in_port\":22}"
        ));
        let server = fake_port_api(
            UnixListener::bind(dir.path().join("p2")).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        unexpose(&dir.path().join("p2"), &port).unwrap();
        assert!(server.join().unwrap().starts_with("POST /forwards/unexpose/port "));
    }

    #[test]
    fn expose_reports_vpnkits_message() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("port.sock");
        let server = fake_port_api(
            UnixListener::bind(&sock).unwrap(),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{\"message\":\"Bind for 127.0.0.1:5353 failed: port is already allocated\"}",
        );
        let publish: PublishedPort = "5353:53/udp".parse().unwrap();
        let e = expose(&sock, &VpnkitPort::new(&publish, Ipv4Addr::new(192, 168, 65, 3))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vpnkit cannot publish 5353:53/udp: Bind for 127.0.0.1:5353 failed: port is already allocated"
        );
        assert!(server.join().unwrap().contains("\"proto\":\"udp\""));
    }

    #[test]
    fn vpnkit_command_line() {
        let args = vpnkit_args(
            Path::new("/st/vpnkit_eth.sock"),
            Path::new("/st/connect"),
            Path::new("/st/vpnkit_port.sock"),
        );
        assert_eq!(
            args,
            [
                "--ethernet",
                "/st/vpnkit_eth.sock",
                "--vsock-path",
                "/st/connect",
                "--port",
                "/st/vpnkit_port.sock"
            ]
            .map(OsString::from)
        );
        let empty = tempfile::tempdir().unwrap();
        let e = find_vpnkit(None, Some(empty.path().as_os_str())).unwrap_err();
        assert!(e.to_string().starts_with("vpnkit not found in $PATH"), "{e}");
    }
}
