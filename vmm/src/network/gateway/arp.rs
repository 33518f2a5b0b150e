//! ARP (RFC 826) for Ethernet and IPv4: the gateway answers who-has for its own address, so that
//! guests can reach it by unicast (DHCP renewals, DNS, ping).

use std::net::Ipv4Addr;

use super::frame::{array, ethernet_frame, ETHERTYPE_ARP, ETHERTYPE_IPV4};

const HARDWARE_ETHERNET: u16 = 1;
const REQUEST: u16 = 1;
const REPLY: u16 = 2;
const PACKET_LEN: usize = 28;

/// The reply frame to an ARP request for `ip` (the gateway's address, at `mac`); `None` for
/// anything else: other targets, replies, other protocols, malformed packets.
pub(super) fn reply(mac: [u8; 6], ip: Ipv4Addr, payload: &[u8]) -> Option<Vec<u8>> {
    let packet = payload.get(..PACKET_LEN)?;
    let field = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    let is_request_for_ip = field(0) == HARDWARE_ETHERNET
        && field(2) == ETHERTYPE_IPV4
        && packet[4] == 6
        && packet[5] == 4
        && field(6) == REQUEST
        && packet[24..28] == ip.octets();
    let sender_mac: [u8; 6] = array(&packet[8..14])?;
    // A group address as the sender is bogus: answering it would flood the network.
    if !is_request_for_ip || sender_mac[0] & 1 != 0 {
        return None;
    }
    let mut answer = Vec::with_capacity(PACKET_LEN);
    answer.extend_from_slice(&packet[0..6]); // hardware and protocol types and lengths, as asked
    answer.extend_from_slice(&REPLY.to_be_bytes());
    answer.extend_from_slice(&mac);
    answer.extend_from_slice(&ip.octets());
    // The target is the asker (an RFC 5227 probe's sender address 0.0.0.0 included: that is how
    // a guest learns that the gateway's address is taken).
    answer.extend_from_slice(&packet[8..18]);
    Some(ethernet_frame(sender_mac, mac, ETHERTYPE_ARP, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY_MAC: [u8; 6] = [0x0e, 0x6d, 10, 77, 0, 1];
    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn request(target: [u8; 4]) -> Vec<u8> {
        let mut packet = vec![0, 1, 8, 0, 6, 4, 0, 1];
        packet.extend_from_slice(&GUEST_MAC);
        packet.extend_from_slice(&[10, 77, 0, 5]);
        packet.extend_from_slice(&[0; 6]);
        packet.extend_from_slice(&target);
        packet.extend_from_slice(&[0; 18]); // Ethernet padding
        packet
    }

    #[test]
    fn answers_who_has_the_gateway() {
        let frame = reply(GATEWAY_MAC, Ipv4Addr::new(10, 77, 0, 1), &request([10, 77, 0, 1])).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&GUEST_MAC);
        expected.extend_from_slice(&GATEWAY_MAC);
        expected.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
        expected.extend_from_slice(&GATEWAY_MAC);
        expected.extend_from_slice(&[10, 77, 0, 1]);
        expected.extend_from_slice(&GUEST_MAC);
        expected.extend_from_slice(&[10, 77, 0, 5]);
        expected.resize(60, 0);
        assert_eq!(frame, expected);
    }

    #[test]
    fn ignores_the_rest() {
        let gateway = Ipv4Addr::new(10, 77, 0, 1);
        assert!(
            reply(GATEWAY_MAC, gateway, &request([10, 77, 0, 2])).is_none(),
            "another target"
        );
        let mut answer = request([10, 77, 0, 1]);
        answer[7] = 2;
        assert!(reply(GATEWAY_MAC, gateway, &answer).is_none(), "a reply");
        let mut ipv6 = request([10, 77, 0, 1]);
        ipv6[2] = 0x86;
        assert!(reply(GATEWAY_MAC, gateway, &ipv6).is_none(), "another protocol");
        let mut multicast = request([10, 77, 0, 1]);
        multicast[8] = 1;
        assert!(reply(GATEWAY_MAC, gateway, &multicast).is_none(), "a group sender");
        let valid = request([10, 77, 0, 1]);
        for len in 0..PACKET_LEN {
            assert!(
                reply(GATEWAY_MAC, gateway, &valid[..len]).is_none(),
                "truncated to {len}"
            );
        }
    }
}
