//! ICMP echo (RFC 792): the gateway answers pings to its address, the first thing anyone tries
//! when a network seems down.

use super::frame::{ethernet_frame, internet_checksum, ipv4_packet, is_unicast, Ipv4, ETHERTYPE_IPV4, PROTOCOL_ICMP};
use super::Gateway;

const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
const HEADER: usize = 8;

/// The echo reply frame to `packet`, an ICMP echo request to the gateway from `src_mac`; `None`
/// for other ICMP messages, requests to other addresses or from ones that cannot be answered, and
/// corrupt messages.
pub(super) fn echo_reply(gateway: &Gateway, src_mac: [u8; 6], packet: &Ipv4) -> Option<Vec<u8>> {
    let message = packet.payload;
    let is_request = message.len() >= HEADER && message[0] == ECHO_REQUEST && message[1] == 0;
    // ICMP checksums are computed in software by every stack: a wrong one is a corrupt message.
    if !is_request || packet.dst != gateway.ip() || !is_unicast(packet.src) || internet_checksum(&[message]) != 0 {
        return None;
    }
    // Identifier, sequence number and data come back unchanged.
    let mut reply = message.to_vec();
    reply[0] = ECHO_REPLY;
    reply[2..4].fill(0);
    let checksum = internet_checksum(&[&reply]);
    reply[2..4].copy_from_slice(&checksum.to_be_bytes());
    let ip = ipv4_packet(gateway.ip(), packet.src, PROTOCOL_ICMP, &reply);
    Some(ethernet_frame(src_mac, gateway.mac(), ETHERTYPE_IPV4, &ip))
}
