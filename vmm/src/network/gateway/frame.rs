//! Ethernet II, IPv4 and UDP as the gateway meets them: strict parsing of what guests send (any
//! byte string in, `None` for whatever is malformed) and building of well-formed answers.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The Ethernet broadcast address.
pub(super) const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// EtherType of IPv4.
pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub(super) const ETHERTYPE_ARP: u16 = 0x0806;
/// IPv4 protocol number of ICMP.
pub(super) const PROTOCOL_ICMP: u8 = 1;
/// IPv4 protocol number of UDP.
pub(super) const PROTOCOL_UDP: u8 = 17;
/// The largest UDP payload that fits a standard 1500-byte MTU unfragmented (the guests' NICs
/// have that MTU, and the gateway never fragments).
pub(super) const MAX_UDP_PAYLOAD: usize = 1500 - IPV4_HEADER - UDP_HEADER;

const ETHERNET_HEADER: usize = 14;
/// Ethernet's minimum frame size without the FCS: real stacks pad shorter frames to it.
const MIN_FRAME: usize = 60;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const TTL: u8 = 64;
/// "Don't fragment": the gateway's packets are small, and atomic datagrams need no identification.
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAGMENT_OFFSET: u16 = 0x1fff;

/// An Ethernet II frame (no FCS: qemu neither sends nor expects it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ethernet<'a> {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// What the payload is (802.1Q tags are not unwrapped: the networks carry no VLANs).
    pub ethertype: u16,
    /// Everything after the header, padding included.
    pub payload: &'a [u8],
}

impl<'a> Ethernet<'a> {
    /// The frame's header and payload; `None` when it is shorter than a header.
    pub fn parse(frame: &'a [u8]) -> Option<Ethernet<'a>> {
        let (header, payload) = frame.split_at_checked(ETHERNET_HEADER)?;
        Some(Ethernet {
            dst: array(&header[0..6])?,
            src: array(&header[6..12])?,
            ethertype: u16::from_be_bytes(array(&header[12..14])?),
            payload,
        })
    }
}

/// An unfragmented IPv4 packet whose header checks out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ipv4<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// The protocol of the payload.
    pub protocol: u8,
    /// The payload, cut at the header's total length (Ethernet padding removed).
    pub payload: &'a [u8],
}

impl<'a> Ipv4<'a> {
    /// The packet at the start of `bytes`; `None` when the version is not 4, the header or total
    /// length does not fit, the header checksum is wrong, or it is a fragment (the gateway's
    /// services all fit one datagram, so fragments are not reassembled).
    pub fn parse(bytes: &'a [u8]) -> Option<Ipv4<'a>> {
        let first = *bytes.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < IPV4_HEADER {
            return None;
        }
        let total_len = usize::from(u16::from_be_bytes(array(bytes.get(2..4)?)?));
        if total_len < header_len || total_len > bytes.len() {
            return None;
        }
        let header = &bytes[..header_len];
        if internet_checksum(&[header]) != 0 {
            return None;
        }
        let fragment = u16::from_be_bytes(array(&header[6..8])?);
        if fragment & (FLAG_MF | FRAGMENT_OFFSET) != 0 {
            return None;
        }
        Some(Ipv4 {
            protocol: header[9],
            src: Ipv4Addr::from(array::<4>(&header[12..16])?),
            dst: Ipv4Addr::from(array::<4>(&header[16..20])?),
            payload: &bytes[header_len..total_len],
        })
    }
}

/// A UDP datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Udp<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The payload, cut at the header's length.
    pub payload: &'a [u8],
}

impl<'a> Udp<'a> {
    /// The datagram in an IPv4 payload; `None` when its length field does not fit.
    ///
    /// The checksum is not verified: the link is a unix socket, which does not corrupt, and a
    /// guest NIC with checksum offload may hand over a partial one.
    pub fn parse(bytes: &'a [u8]) -> Option<Udp<'a>> {
        let len = usize::from(u16::from_be_bytes(array(bytes.get(4..6)?)?));
        if len < UDP_HEADER || len > bytes.len() {
            return None;
        }
        Some(Udp {
            src_port: u16::from_be_bytes(array(&bytes[0..2])?),
            dst_port: u16::from_be_bytes(array(&bytes[2..4])?),
            payload: &bytes[UDP_HEADER..len],
        })
    }
}

/// An Ethernet frame around `payload`, padded to the 60-byte minimum.
pub(super) fn ethernet_frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity((ETHERNET_HEADER + payload.len()).max(MIN_FRAME));
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// An IPv4 packet (no options, TTL 64, don't-fragment) around `payload`, which callers keep
/// within one packet's 65515 bytes (every payload the gateway sends is bounded by an MTU).
pub(super) fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total_len = u16::try_from(IPV4_HEADER + payload.len()).unwrap_or(u16::MAX);
    let mut packet = Vec::with_capacity(IPV4_HEADER + payload.len());
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&total_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // identification
    packet.extend_from_slice(&FLAG_DF.to_be_bytes());
    packet.extend_from_slice(&[TTL, protocol, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&[&packet]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A UDP datagram (header with its checksum, then `payload`) from `src` to `dst`.
pub(super) fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(UDP_HEADER + payload.len()).unwrap_or(u16::MAX);
    let mut datagram = Vec::with_capacity(UDP_HEADER + payload.len());
    datagram.extend_from_slice(&src.port().to_be_bytes());
    datagram.extend_from_slice(&dst.port().to_be_bytes());
    datagram.extend_from_slice(&len.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    let pseudo_header = [
        &src.ip().octets()[..],
        &dst.ip().octets()[..],
        &[0, PROTOCOL_UDP],
        &len.to_be_bytes(),
    ]
    .concat();
    // 0 would mean "no checksum": a computed 0 is sent as its other representation (RFC 768).
    let checksum = match internet_checksum(&[&pseudo_header, &datagram]) {
        0 => 0xffff,
        sum => sum,
    };
    datagram[6..8].copy_from_slice(&checksum.to_be_bytes());
    datagram
}

/// The whole frame of a UDP datagram from the gateway (`src`, `src_mac`) to `dst` at `dst_mac`.
pub(super) fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let datagram = udp_datagram(src, dst, payload);
    let packet = ipv4_packet(*src.ip(), *dst.ip(), PROTOCOL_UDP, &datagram);
    ethernet_frame(dst_mac, src_mac, ETHERTYPE_IPV4, &packet)
}

/// The Internet checksum (RFC 1071) of the concatenation of `chunks`: the one's complement of the
/// one's complement sum of its 16-bit words. Over data that carries its own checksum, 0 means valid.
pub(super) fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    // A chunk of odd length leaves a byte that pairs with the next chunk's first.
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        for &byte in chunk.iter() {
            match odd.take() {
                Some(high) => sum += u64::from(u16::from_be_bytes([high, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(high) = odd {
        sum += u64::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether a packet from `ip` can be answered: not the unspecified, broadcast or a multicast
/// address, to which no reply can be sent.
pub(super) fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

/// The first `N` bytes of `bytes` as an array; `None` when shorter.
pub(super) fn array<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.get(..N)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example header of RFC 1071's usual illustration (a UDP packet 192.168.0.1 →
    /// 192.168.0.199), whose checksum is 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    fn packet_with(header: [u8; 20]) -> Vec<u8> {
        let mut packet = header.to_vec();
        packet.resize(0x73, 0);
        packet
    }

    #[test]
    fn checksum_matches_a_known_header() {
        let mut zeroed = HEADER;
        zeroed[10..12].fill(0);
        assert_eq!(internet_checksum(&[&zeroed]), 0xb861);
        assert_eq!(internet_checksum(&[&HEADER]), 0);
        // Split anywhere, even at an odd offset, the sum is the same.
        for at in 0..20 {
            assert_eq!(
                internet_checksum(&[&zeroed[..at], &zeroed[at..]]),
                0xb861,
                "split at {at}"
            );
        }
        assert_eq!(internet_checksum(&[&[0x01]]), !0x0100);
    }

    #[test]
    fn builds_the_known_header() {
        let packet = ipv4_packet(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            PROTOCOL_UDP,
            &[0; 0x73 - 20],
        );
        assert_eq!(packet[..20], HEADER);
        assert_eq!(packet.len(), 0x73);
    }

    #[test]
    fn parses_ipv4_and_refuses_what_is_wrong() {
        let mut padded = packet_with(HEADER);
        padded.extend_from_slice(&[0xee; 9]);
        let ip = Ipv4::parse(&padded).unwrap();
        assert_eq!(ip.src, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(ip.dst, Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(ip.protocol, PROTOCOL_UDP);
        assert_eq!(ip.payload.len(), 0x73 - 20, "cut at the total length");

        let mut bad_sum = HEADER;
        bad_sum[11] ^= 1;
        let mut version6 = HEADER;
        version6[0] = 0x65;
        let mut short_ihl = HEADER;
        short_ihl[0] = 0x44;
        let mut long_ihl = HEADER;
        long_ihl[0] = 0x4f;
        long_ihl[2..4].copy_from_slice(&40u16.to_be_bytes());
        let mut long_total = HEADER;
        long_total[2..4].copy_from_slice(&0x74u16.to_be_bytes());
        let mut more_fragments = HEADER;
        more_fragments[6] = 0x20;
        let mut offset = HEADER;
        offset[7] = 0x01;
        for (what, header) in [
            ("checksum", bad_sum),
            ("version", version6),
            ("short header length", short_ihl),
            ("long header length", long_ihl),
            ("total length", long_total),
            ("more fragments", more_fragments),
            ("fragment offset", offset),
        ] {
            // Fix the checksum of everything but the checksum case, so that only the field is wrong.
            let mut header = header;
            if what != "checksum" {
                header[10..12].fill(0);
                let sum = internet_checksum(&[&header]);
                header[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            assert!(Ipv4::parse(&packet_with(header)).is_none(), "{what}");
        }
        for len in 0..0x73 {
            assert!(Ipv4::parse(&packet_with(HEADER)[..len]).is_none(), "truncated to {len}");
        }
    }

    #[test]
    fn udp_checksum_verifies_over_the_pseudo_header() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 53);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 9), 40000);
        let datagram = udp_datagram(src, dst, b"odd");
        assert_eq!(datagram[..6], [0, 53, 0x9c, 0x40, 0, 11]);
        let pseudo = [&[10, 77, 0, 1, 10, 77, 0, 9, 0, 17][..], &[0, 11]].concat();
        assert_eq!(internet_checksum(&[&pseudo, &datagram]), 0);
        let udp = Udp::parse(&datagram).unwrap();
        assert_eq!((udp.src_port, udp.dst_port, udp.payload), (53, 40000, &b"odd"[..]));
        let mut lying = datagram.clone();
        lying[5] = 12;
        assert!(Udp::parse(&lying).is_none());
        lying[5] = 7;
        assert!(Udp::parse(&lying).is_none());
    }

    #[test]
    fn frames_are_padded() {
        let frame = ethernet_frame(BROADCAST_MAC, [2, 0, 0, 0, 0, 1], ETHERTYPE_ARP, &[1, 2, 3]);
        assert_eq!(frame.len(), 60);
        assert_eq!(
            frame[..17],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6, 1, 2, 3]
        );
        assert!(frame[17..].iter().all(|&b| b == 0));
        let eth = Ethernet::parse(&frame).unwrap();
        assert_eq!(
            (eth.dst, eth.ethertype, eth.payload.len()),
            (BROADCAST_MAC, ETHERTYPE_ARP, 46)
        );
        assert!(Ethernet::parse(&frame[..13]).is_none());
        assert_eq!(ethernet_frame(BROADCAST_MAC, BROADCAST_MAC, 1, &[0; 100]).len(), 114);
    }
}
