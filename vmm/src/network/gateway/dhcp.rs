//! The DHCP server (RFC 2131, options of RFC 2132): each member gets the address the registry
//! gives its MAC, with the network's mask, the gateway as DNS server and the network's name as
//! domain, and no router (a guest's default route stays on its other NIC). Unknown MACs get no
//! answer: the network only has the addresses of its members.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::frame::{array, udp_frame, BROADCAST_MAC};
use super::{mac_string, Gateway, Member, Outcome};

/// The server's UDP port.
pub(super) const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HARDWARE_ETHERNET: u8 = 1;
/// op .. file: the fixed BOOTP part before the magic cookie.
const FIXED_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Some clients refuse BOOTP messages shorter than BOOTP's original 300 bytes.
const MIN_MESSAGE: usize = 300;

const OPTION_PAD: u8 = 0;
const OPTION_SUBNET_MASK: u8 = 1;
const OPTION_DNS: u8 = 6;
const OPTION_HOST_NAME: u8 = 12;
const OPTION_DOMAIN_NAME: u8 = 15;
const OPTION_BROADCAST: u8 = 28;
const OPTION_REQUESTED_ADDRESS: u8 = 50;
const OPTION_LEASE_TIME: u8 = 51;
const OPTION_MESSAGE_TYPE: u8 = 53;
const OPTION_SERVER_ID: u8 = 54;
const OPTION_MESSAGE: u8 = 56;
const OPTION_CLIENT_ID: u8 = 61;
const OPTION_END: u8 = 255;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
}

impl Kind {
    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::Discover,
            2 => Kind::Offer,
            3 => Kind::Request,
            4 => Kind::Decline,
            5 => Kind::Ack,
            6 => Kind::Nak,
            7 => Kind::Release,
            8 => Kind::Inform,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            Kind::Discover => 1,
            Kind::Offer => 2,
            Kind::Request => 3,
            Kind::Decline => 4,
            Kind::Ack => 5,
            Kind::Nak => 6,
            Kind::Release => 7,
            Kind::Inform => 8,
        }
    }
}

/// A client's message: the fields a reply echoes or depends on.
#[derive(Debug)]
struct Request<'a> {
    kind: Kind,
    xid: [u8; 4],
    flags: [u8; 2],
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 16],
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    client_id: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    /// A BOOTREQUEST from an Ethernet client with a message type; `None` for anything else.
    /// Options overloaded into `sname`/`file` (option 52) are not read: clients do not send them.
    fn parse(message: &'a [u8]) -> Option<Request<'a>> {
        let fixed = message.get(..FIXED_LEN)?;
        if fixed[0] != BOOTREQUEST || fixed[1] != HARDWARE_ETHERNET || fixed[2] != 6 {
            return None;
        }
        if message.get(FIXED_LEN..FIXED_LEN + 4)? != MAGIC_COOKIE {
            return None;
        }
        let (mut kind, mut requested, mut server_id, mut client_id) = (None, None, None, None);
        let mut options = &message[FIXED_LEN + 4..];
        // The end option may be missing when the message ends right after the last option.
        while let Some((&code, rest)) = options.split_first() {
            match code {
                OPTION_END => break,
                OPTION_PAD => {
                    options = rest;
                    continue;
                }
                _ => {}
            }
            let (&len, rest) = rest.split_first()?;
            let (value, rest) = rest.split_at_checked(usize::from(len))?;
            options = rest;
            // A repeated option keeps its first value (RFC 3396 concatenation is for long
            // options, which none of these are).
            match code {
                OPTION_MESSAGE_TYPE if kind.is_none() => kind = Some(Kind::from_code(*exactly::<1>(value)?.first()?)?),
                OPTION_REQUESTED_ADDRESS if requested.is_none() => requested = Some(exactly::<4>(value)?.into()),
                OPTION_SERVER_ID if server_id.is_none() => server_id = Some(exactly::<4>(value)?.into()),
                OPTION_CLIENT_ID if client_id.is_none() && !value.is_empty() => client_id = Some(value),
                _ => {}
            }
        }
        Some(Request {
            kind: kind?,
            xid: array(&fixed[4..8])?,
            flags: array(&fixed[10..12])?,
            ciaddr: array::<4>(&fixed[12..16])?.into(),
            giaddr: array::<4>(&fixed[24..28])?.into(),
            chaddr: array(&fixed[28..44])?,
            requested,
            server_id,
            client_id,
        })
    }

    fn mac(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.chaddr[..6]);
        mac
    }
}

/// An option's value when it has exactly `N` bytes.
fn exactly<const N: usize>(value: &[u8]) -> Option<[u8; N]> {
    value.try_into().ok()
}

/// What the gateway does with the DHCP message `payload`, which came from `src_mac`.
pub(super) fn handle(gateway: &Gateway, src_mac: [u8; 6], payload: &[u8], members: &[Member]) -> Vec<Outcome> {
    let Some(request) = Request::parse(payload) else {
        tracing::debug!("dropped a malformed DHCP message from {}", mac_string(src_mac));
        return Vec::new();
    };
    let client = mac_string(request.mac());
    let Some(member) = members.iter().find(|m| m.mac == request.mac()) else {
        tracing::debug!(
            "DHCP {:?} from {client}: no member of the network has this MAC; not answered",
            request.kind
        );
        return Vec::new();
    };
    if !gateway.subnet.is_member_address(member.ip) {
        tracing::warn!(
            "DHCP {:?} from {} ({client}): its address {} is not a member address of {}; not answered",
            request.kind,
            member.name,
            member.ip,
            gateway.subnet
        );
        return Vec::new();
    }
    let reply = |kind, ciaddr, yiaddr, options: Options| {
        let (dst_mac, dst) = destination(&request, kind, src_mac);
        let message = bootp_reply(&request, ciaddr, yiaddr, options);
        let src = SocketAddrV4::new(gateway.ip(), SERVER_PORT);
        Outcome::Send(udp_frame(dst_mac, gateway.mac(), src, dst, &message))
    };
    match request.kind {
        Kind::Discover => {
            let options = configuration(gateway, &request, Kind::Offer, member, true);
            vec![reply(Kind::Offer, Ipv4Addr::UNSPECIFIED, member.ip, options)]
        }
        Kind::Request => {
            if let Some(server) = request.server_id.filter(|&s| s != gateway.ip()) {
                tracing::debug!("DHCP REQUEST from {client} selects the server {server}, not this network's");
                return Vec::new();
            }
            // Selecting and init-reboot name the address in option 50, renewing and rebinding in ciaddr.
            let requested = request
                .requested
                .or(Some(request.ciaddr).filter(|ip| !ip.is_unspecified()));
            if requested == Some(member.ip) {
                let options = configuration(gateway, &request, Kind::Ack, member, true);
                vec![
                    reply(Kind::Ack, request.ciaddr, member.ip, options),
                    Outcome::Leased {
                        name: member.name.clone(),
                        ip: member.ip,
                    },
                ]
            } else {
                tracing::debug!(
                    "DHCP REQUEST from {} ({client}) for {requested:?}: its address is {}; NAK",
                    member.name,
                    member.ip
                );
                let mut options = Options::new(Kind::Nak, gateway.ip());
                options.put(
                    OPTION_MESSAGE,
                    format!("{} is {}'s address on this network", member.ip, member.name).as_bytes(),
                );
                vec![reply(Kind::Nak, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, options)]
            }
        }
        Kind::Inform => {
            // The client has an address already: configuration only, no lease (RFC 2131 3.4).
            let options = configuration(gateway, &request, Kind::Ack, member, false);
            vec![reply(Kind::Ack, request.ciaddr, Ipv4Addr::UNSPECIFIED, options)]
        }
        Kind::Decline => {
            tracing::warn!(
                "{} ({client}) declined its address {}: another host on the network uses it",
                member.name,
                member.ip
            );
            Vec::new()
        }
        Kind::Release => {
            tracing::debug!("{} ({client}) released {}", member.name, member.ip);
            Vec::new()
        }
        Kind::Offer | Kind::Ack | Kind::Nak => Vec::new(),
    }
}

/// Where a reply goes (RFC 2131 4.1): back to a relay; a NAK to everyone, since the client may
/// have no address; to the client's address when it has one; else broadcast, because clients
/// often leave the broadcast flag unset yet cannot receive unicast before they have an address.
fn destination(request: &Request, kind: Kind, src_mac: [u8; 6]) -> ([u8; 6], SocketAddrV4) {
    if !request.giaddr.is_unspecified() {
        (src_mac, SocketAddrV4::new(request.giaddr, SERVER_PORT))
    } else if kind != Kind::Nak && !request.ciaddr.is_unspecified() {
        (request.mac(), SocketAddrV4::new(request.ciaddr, CLIENT_PORT))
    } else {
        (BROADCAST_MAC, SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT))
    }
}

/// The options of an OFFER or ACK: the member's configuration on the network.
fn configuration(gateway: &Gateway, request: &Request, kind: Kind, member: &Member, lease: bool) -> Options {
    let mut options = Options::new(kind, gateway.ip());
    if lease {
        options.put(OPTION_LEASE_TIME, &gateway.lease_seconds.to_be_bytes());
    }
    options.put(OPTION_SUBNET_MASK, &gateway.subnet.mask().octets());
    options.put(OPTION_BROADCAST, &gateway.subnet.broadcast().octets());
    options.put(OPTION_DNS, &gateway.ip().octets());
    options.put(OPTION_DOMAIN_NAME, gateway.domain.as_bytes());
    options.put(OPTION_HOST_NAME, member.name.as_bytes());
    // RFC 6842: a server echoes the client identifier.
    if let Some(id) = request.client_id {
        options.put(OPTION_CLIENT_ID, id);
    }
    options
}

/// The options field of a reply, starting with the message type and the server identifier.
struct Options(Vec<u8>);

impl Options {
    fn new(kind: Kind, server: Ipv4Addr) -> Options {
        let mut options = Options(Vec::new());
        options.put(OPTION_MESSAGE_TYPE, &[kind.code()]);
        options.put(OPTION_SERVER_ID, &server.octets());
        options
    }

    /// Adds an option; an empty value or one longer than an option holds is left out (a name,
    /// whose absence the client copes with, is the only value that could be).
    fn put(&mut self, code: u8, value: &[u8]) {
        match u8::try_from(value.len()) {
            Ok(len) if len > 0 => {
                self.0.push(code);
                self.0.push(len);
                self.0.extend_from_slice(value);
            }
            _ => tracing::debug!("DHCP option {code} left out: its value has {} bytes", value.len()),
        }
    }
}

/// A BOOTREPLY to `request` (its xid, flags, giaddr and chaddr echoed) with `options`, padded to
/// 300 bytes.
fn bootp_reply(request: &Request, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr, options: Options) -> Vec<u8> {
    let mut message = vec![0; FIXED_LEN];
    message[..4].copy_from_slice(&[BOOTREPLY, HARDWARE_ETHERNET, 6, 0]);
    message[4..8].copy_from_slice(&request.xid);
    message[10..12].copy_from_slice(&request.flags);
    message[12..16].copy_from_slice(&ciaddr.octets());
    message[16..20].copy_from_slice(&yiaddr.octets());
    message[24..28].copy_from_slice(&request.giaddr.octets());
    message[28..44].copy_from_slice(&request.chaddr);
    message.extend_from_slice(&MAGIC_COOKIE);
    message.extend_from_slice(&options.0);
    message.push(OPTION_END);
    if message.len() < MIN_MESSAGE {
        message.resize(MIN_MESSAGE, OPTION_PAD);
    }
    message
}
