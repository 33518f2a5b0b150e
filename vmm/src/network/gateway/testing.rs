//! The guest's side, for tests: frames built as a guest's stack writes them and answers decoded
//! with every header field checked, written apart from the gateway's own parsers and builders
//! so that a mistake in those cannot hide itself.

use std::net::Ipv4Addr;

use super::{Gateway, Member};

/// node-1's MAC (qemu's default prefix).
pub const NODE1_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01];
/// node-1's address.
pub const NODE1_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The gateway's address on 10.77.0.0/24.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The gateway's MAC on 10.77.0.0/24.
pub const GATEWAY_MAC: [u8; 6] = [0x0e, 0x6d, 10, 77, 0, 1];

/// The network `lab` on 10.77.0.0/24.
pub fn lab() -> Gateway {
    Gateway::new("10.77.0.0/24".parse().unwrap(), "lab")
}

/// Its members node-1 (10.77.0.2) and Web.Server (10.77.0.3).
pub fn members() -> Vec<Member> {
    vec![
        Member {
            name: "node-1".into(),
            mac: NODE1_MAC,
            ip: NODE1_IP,
        },
        Member {
            name: "Web.Server".into(),
            mac: [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02],
            ip: Ipv4Addr::new(10, 77, 0, 3),
        },
    ]
}

/// RFC 1071's sum, the plain way.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        sum += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

/// An Ethernet frame from `src_mac` (not padded: the gateway must cope with short frames).
pub fn ethernet(dst_mac: [u8; 6], src_mac: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst_mac[..], &src_mac, &ethertype.to_be_bytes(), payload].concat()
}

/// An IPv4 packet with a random-looking identification, as guests send.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut header = vec![0x45, 0x10];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0xbe, 0xef, 0, 0, 64, protocol, 0, 0]);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    [header, payload.to_vec()].concat()
}

/// A UDP datagram in an IPv4 packet in a frame from node-1's MAC.
pub fn guest_udp(dst_mac: [u8; 6], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut datagram = [
        &src.1.to_be_bytes()[..],
        &dst.1.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat();
    let pseudo = [&src.0.octets()[..], &dst.0.octets(), &[0, 17], &len.to_be_bytes()].concat();
    let sum = checksum(&[pseudo, datagram.clone()].concat());
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    ethernet(dst_mac, NODE1_MAC, 0x0800, &ipv4(src.0, dst.0, 17, &datagram))
}

/// A DHCP message from a client with `chaddr` (the fixed part, the cookie, then `options` as
/// (code, value) in order, and the end option).
pub fn dhcp(op_kind: u8, xid: u32, flags: u16, ciaddr: Ipv4Addr, chaddr: [u8; 6], options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut message = vec![1, 1, 6, 0];
    message.extend_from_slice(&xid.to_be_bytes());
    message.extend_from_slice(&[0, 3]); // secs
    message.extend_from_slice(&flags.to_be_bytes());
    message.extend_from_slice(&ciaddr.octets());
    message.extend_from_slice(&[0; 12]); // yiaddr, siaddr, giaddr
    message.extend_from_slice(&chaddr);
    message.resize(236, 0);
    message.extend_from_slice(&[99, 130, 83, 99, 53, 1, op_kind]);
    for (code, value) in options {
        message.push(*code);
        message.push(value.len() as u8);
        message.extend_from_slice(value);
    }
    message.push(255);
    message
}

/// A DHCP message from node-1, broadcast as udhcpc sends it before it has an address.
pub fn dhcp_broadcast(message: &[u8]) -> Vec<u8> {
    guest_udp(
        [0xff; 6],
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::BROADCAST, 67),
        message,
    )
}

/// A DNS query (RD set) for `name` (dotted) of `qtype`, class IN, with `additional` appended
/// and counted in ARCOUNT as `arcount`.
pub fn dns_query(id: u16, name: &str, qtype: u16, arcount: u16, additional: &[u8]) -> Vec<u8> {
    let mut message = id.to_be_bytes().to_vec();
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0]);
    message.extend_from_slice(&arcount.to_be_bytes());
    message.extend_from_slice(&dns_name(name));
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&[0, 1]);
    message.extend_from_slice(additional);
    message
}

/// `name` (dotted, maybe with the root's trailing dot) on the wire.
pub fn dns_name(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name.strip_suffix('.').unwrap_or(name).split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

/// A DNS message to the gateway from node-1's port 40000.
pub fn dns_frame(message: &[u8]) -> Vec<u8> {
    guest_udp(GATEWAY_MAC, (NODE1_IP, 40000), (GATEWAY_IP, 53), message)
}

/// A UDP frame from the gateway, its headers checked field by field.
#[derive(Debug)]
pub struct SentUdp {
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// Decodes a UDP frame the gateway sent, asserting what every one must be: at least 60 bytes,
/// from the gateway's MAC and address, IPv4 without options, DF, TTL 64, right lengths and
/// checksums.
pub fn sent_udp(frame: &[u8]) -> SentUdp {
    assert!(frame.len() >= 60, "a frame of {} bytes", frame.len());
    assert_eq!(frame[6..12], GATEWAY_MAC, "source MAC");
    assert_eq!(frame[12..14], [0x08, 0x00], "EtherType");
    let ip = &frame[14..];
    assert_eq!(ip[0], 0x45, "version and header length");
    assert_eq!(ip[1], 0, "TOS");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(ip[6..8], [0x40, 0], "DF, no fragment offset");
    assert_eq!(ip[8], 64, "TTL");
    assert_eq!(ip[9], 17, "protocol");
    assert_eq!(checksum(&ip[..20]), 0, "IPv4 header checksum");
    assert_eq!(ip[12..16], GATEWAY_IP.octets(), "source address");
    let udp = &ip[20..total];
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    assert_eq!(len, udp.len(), "UDP length");
    assert!(len <= 1480, "fits a 1500-byte MTU");
    if 14 + total < 60 {
        assert!(frame[14 + total..].iter().all(|&b| b == 0), "zero padding");
    } else {
        assert_eq!(frame.len(), 14 + total, "no trailing bytes");
    }
    let pseudo = [&ip[12..20], &[0, 17], &udp[4..6]].concat();
    assert_ne!(udp[6..8], [0, 0], "a UDP checksum");
    assert_eq!(checksum(&[pseudo, udp.to_vec()].concat()), 0, "UDP checksum");
    SentUdp {
        dst_mac: frame[..6].try_into().unwrap(),
        dst_ip: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload: udp[8..].to_vec(),
    }
}

/// A DHCP reply's fixed fields and options (in order, pads skipped, up to the end option).
#[derive(Debug)]
pub struct DhcpReply {
    /// op .. chaddr (the first 44 bytes).
    pub fixed: Vec<u8>,
    /// (code, value) in order.
    pub options: Vec<(u8, Vec<u8>)>,
}

/// Decodes a DHCP reply, asserting the BOOTP layout: 300 bytes at least, sname and file empty,
/// the magic cookie, the end option followed by pads only.
pub fn dhcp_reply(message: &[u8]) -> DhcpReply {
    assert!(message.len() >= 300, "a BOOTP message of {} bytes", message.len());
    assert!(message[44..236].iter().all(|&b| b == 0), "sname and file");
    assert_eq!(message[236..240], [99, 130, 83, 99], "magic cookie");
    let mut options = Vec::new();
    let mut at = 240;
    loop {
        match message[at] {
            255 => break,
            0 => at += 1,
            code => {
                let len = usize::from(message[at + 1]);
                options.push((code, message[at + 2..at + 2 + len].to_vec()));
                at += 2 + len;
            }
        }
    }
    assert!(message[at + 1..].iter().all(|&b| b == 0), "pads after the end option");
    DhcpReply {
        fixed: message[..44].to_vec(),
        options,
    }
}
