//! The network's own host on its L2 segment, the "gateway" at the subnet's first address: it
//! answers ARP for that address, pings, DHCP (each member's address from the registry) and DNS
//! (members by name; other names go to the host's resolvers through the switch).
//!
//! Pure packet code: the switch hands it whole Ethernet frames and the members it knows, and gets
//! back frames to send, DNS queries to forward, and leases to record. No sockets, no state: every
//! answer follows from the frame, the subnet and the members. Nothing a guest sends can make it
//! panic; whatever is malformed is dropped (or, for DNS, answered with FORMERR).

mod arp;
mod dhcp;
mod dns;
mod dns_wire;
mod frame;
mod icmp;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddrV4};

use super::Subnet;
use frame::{is_unicast, udp_frame, Ethernet, Ipv4, Udp, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use frame::{MAX_UDP_PAYLOAD, PROTOCOL_ICMP, PROTOCOL_UDP};

/// How long a DHCP lease lasts: udhcpc renews at half of it, which the gateway sees as a
/// unicast REQUEST (and the switch as a fresh `Outcome::Leased`).
const LEASE_SECONDS: u32 = 3600;

/// A member of the network as the registry knows it (the switch reads it from disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Its name: its host name and DNS name (bare and in the network's domain).
    pub name: String,
    /// The MAC of its NIC on the network, which its DHCP messages carry.
    pub mac: [u8; 6],
    /// Its address on the network.
    pub ip: Ipv4Addr,
}

/// Where a DNS query came from, so that the upstream answer can be sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DnsClient {
    /// The client's MAC.
    pub mac: [u8; 6],
    /// The client's address.
    pub ip: Ipv4Addr,
    /// The client's UDP port.
    pub port: u16,
}

/// What the gateway wants done after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send this whole Ethernet frame onto the network.
    Send(Vec<u8>),
    /// Ask the host's resolvers this raw DNS message on behalf of `client`, then give the answer
    /// to [`Gateway::dns_reply_frame`].
    Forward {
        /// Who asked.
        client: DnsClient,
        /// The DNS message as the client wrote it (its EDNS payload size capped at what fits
        /// one frame back).
        query: Vec<u8>,
    },
    /// A DHCPACK giving `ip` to member `name` was sent (for the switch to record).
    Leased {
        /// The member's name.
        name: String,
        /// Its address.
        ip: Ipv4Addr,
    },
}

/// The gateway of one network.
#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    subnet: Subnet,
    mac: [u8; 6],
    /// The network's name, its members' DNS domain.
    domain: String,
    /// The same, as DNS labels.
    domain_name: dns_wire::Name,
    lease_seconds: u32,
}

impl Gateway {
    /// The gateway of `subnet`; `domain` is the network's name (DHCP option 15; DNS answers
    /// NAME and NAME.DOMAIN).
    pub fn new(subnet: Subnet, domain: &str) -> Gateway {
        let ip = subnet.gateway().octets();
        Gateway {
            subnet,
            // Locally administered (bit 1 of the first byte), unicast, and stable for the subnet.
            mac: [0x0e, 0x6d, ip[0], ip[1], ip[2], ip[3]],
            domain: domain.strip_suffix('.').unwrap_or(domain).to_string(),
            domain_name: dns::labels(domain),
            lease_seconds: LEASE_SECONDS,
        }
    }

    /// Its MAC: `0e:6d:` and the four bytes of the gateway's address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Its address: the subnet's first host address.
    pub fn ip(&self) -> Ipv4Addr {
        self.subnet.gateway()
    }

    /// Whether the switch must hand `frame` to the gateway: its destination is the gateway's MAC
    /// or broadcast.
    pub fn wants(&self, frame: &[u8]) -> bool {
        Ethernet::parse(frame).is_some_and(|eth| eth.dst == self.mac || eth.dst == BROADCAST_MAC)
    }

    /// What the gateway does with a frame: frames to send back onto the network, DNS queries to
    /// forward, leases given. Empty for frames that are not for it or are malformed.
    pub fn handle(&self, frame: &[u8], members: &[Member]) -> Vec<Outcome> {
        let Some(eth) = Ethernet::parse(frame) else {
            return Vec::new();
        };
        // A group address as the source is bogus, and its own frames must not come back.
        if !self.wants(frame) || eth.src[0] & 1 != 0 || eth.src == self.mac {
            return Vec::new();
        }
        match eth.ethertype {
            ETHERTYPE_ARP => arp::reply(self.mac, self.ip(), eth.payload)
                .map(Outcome::Send)
                .into_iter()
                .collect(),
            ETHERTYPE_IPV4 => self.handle_ipv4(&eth, members),
            _ => Vec::new(),
        }
    }

    fn handle_ipv4(&self, eth: &Ethernet, members: &[Member]) -> Vec<Outcome> {
        let Some(packet) = Ipv4::parse(eth.payload) else {
            return Vec::new();
        };
        match packet.protocol {
            PROTOCOL_ICMP => icmp::echo_reply(self, eth.src, &packet)
                .map(Outcome::Send)
                .into_iter()
                .collect(),
            PROTOCOL_UDP => {
                let Some(udp) = Udp::parse(packet.payload) else {
                    return Vec::new();
                };
                match udp.dst_port {
                    dhcp::SERVER_PORT if self.is_dhcp_destination(packet.dst) => {
                        dhcp::handle(self, eth.src, udp.payload, members)
                    }
                    dns::PORT if packet.dst == self.ip() && is_unicast(packet.src) && udp.src_port != 0 => {
                        let client = DnsClient {
                            mac: eth.src,
                            ip: packet.src,
                            port: udp.src_port,
                        };
                        dns::handle(self, client, udp.payload, members).into_iter().collect()
                    }
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Where DHCP messages to the server go: broadcast (a client without an address, or
    /// rebinding), or the gateway itself (renewing).
    fn is_dhcp_destination(&self, ip: Ipv4Addr) -> bool {
        ip == Ipv4Addr::BROADCAST || ip == self.ip() || ip == self.subnet.broadcast()
    }

    /// The frame carrying `answer` (a DNS message from the upstream resolver, whose ID has
    /// already been put back to the client's) to the client that asked. An answer too long for
    /// one frame is cut to its question with TC set, as a server truncates.
    pub fn dns_reply_frame(&self, client: &DnsClient, answer: &[u8]) -> Vec<u8> {
        let answer = dns_wire::truncate(answer, MAX_UDP_PAYLOAD);
        udp_frame(
            client.mac,
            self.mac,
            SocketAddrV4::new(self.ip(), dns::PORT),
            SocketAddrV4::new(client.ip, client.port),
            &answer,
        )
    }
}

/// `aa:bb:cc:dd:ee:ff`, for logs.
fn mac_string(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}
