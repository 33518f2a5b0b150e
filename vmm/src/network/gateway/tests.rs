//! The gateway as guests meet it: frames in, every field of the answers checked.

use std::net::Ipv4Addr;

use super::testing::*;
use super::*;

fn sent(outcomes: &[Outcome]) -> Vec<&[u8]> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Send(frame) => Some(frame.as_slice()),
            _ => None,
        })
        .collect()
}

/// The one frame sent, with nothing else done.
fn only_frame(outcomes: Vec<Outcome>) -> Vec<u8> {
    match <[Outcome; 1]>::try_from(outcomes) {
        Ok([Outcome::Send(frame)]) => frame,
        other => panic!("expected one frame, got {other:?}"),
    }
}

#[test]
fn mac_and_wants() {
    let gateway = lab();
    assert_eq!(gateway.mac(), GATEWAY_MAC);
    assert_eq!(gateway.ip(), GATEWAY_IP);
    assert_eq!(mac_string(gateway.mac()), "0e:6d:0a:4d:00:01");
    let other = Gateway::new("192.168.50.0/24".parse().unwrap(), "x");
    assert_eq!(other.mac(), [0x0e, 0x6d, 192, 168, 50, 1]);
    assert!(gateway.wants(&ethernet(GATEWAY_MAC, NODE1_MAC, 0x0800, &[])));
    assert!(gateway.wants(&ethernet([0xff; 6], NODE1_MAC, 0x0806, &[])));
    assert!(!gateway.wants(&ethernet(NODE1_MAC, GATEWAY_MAC, 0x0800, &[])));
    assert!(!gateway.wants(&ethernet([0x01, 0, 0x5e, 0, 0, 1], NODE1_MAC, 0x0800, &[])));
    assert!(!gateway.wants(&GATEWAY_MAC));
}

#[test]
fn arp_who_has_the_gateway() {
    let mut request = vec![0, 1, 8, 0, 6, 4, 0, 1];
    request.extend_from_slice(&NODE1_MAC);
    request.extend_from_slice(&NODE1_IP.octets());
    request.extend_from_slice(&[0; 6]);
    request.extend_from_slice(&GATEWAY_IP.octets());
    let frame = only_frame(lab().handle(&ethernet([0xff; 6], NODE1_MAC, 0x0806, &request), &members()));
    let mut expected = [
        &NODE1_MAC[..],
        &GATEWAY_MAC,
        &[8, 6, 0, 1, 8, 0, 6, 4, 0, 2],
        &GATEWAY_MAC,
    ]
    .concat();
    expected.extend_from_slice(&[10, 77, 0, 1]);
    expected.extend_from_slice(&NODE1_MAC);
    expected.extend_from_slice(&[10, 77, 0, 2]);
    expected.resize(60, 0);
    assert_eq!(frame, expected);
    // Who-has for a member is the member's to answer.
    request[24..28].copy_from_slice(&[10, 77, 0, 3]);
    assert!(lab()
        .handle(&ethernet([0xff; 6], NODE1_MAC, 0x0806, &request), &members())
        .is_empty());
}

fn echo_request(data: &[u8]) -> Vec<u8> {
    let mut icmp = [&[8, 0, 0, 0, 0x12, 0x34, 0x00, 0x07][..], data].concat();
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    icmp
}

#[test]
fn ping_the_gateway() {
    let icmp = echo_request(b"abcdefghijklmnopqrstuvwxyz0123456789!");
    let frame = ethernet(GATEWAY_MAC, NODE1_MAC, 0x0800, &ipv4(NODE1_IP, GATEWAY_IP, 1, &icmp));
    let reply = only_frame(lab().handle(&frame, &members()));
    assert_eq!(reply[..6], NODE1_MAC);
    assert_eq!(reply[6..12], GATEWAY_MAC);
    assert_eq!(reply[12..14], [8, 0]);
    let ip = &reply[14..];
    assert_eq!(ip[..12], [0x45, 0, 0, 20 + 45, 0, 0, 0x40, 0, 64, 1, ip[10], ip[11]]);
    assert_eq!(checksum(&ip[..20]), 0);
    assert_eq!(ip[12..20], [10, 77, 0, 1, 10, 77, 0, 2]);
    let echo = &ip[20..];
    assert_eq!(echo.len(), icmp.len());
    assert_eq!(echo[..2], [0, 0], "echo reply, code 0");
    assert_eq!(echo[4..], icmp[4..], "identifier, sequence and data unchanged");
    assert_eq!(checksum(echo), 0);
    assert_eq!(reply.len(), 14 + 65);

    let gateway = lab();
    // Other addresses, other ICMP messages, corrupt checksums, broadcast sources: no reply.
    let to_member = ethernet(
        GATEWAY_MAC,
        NODE1_MAC,
        0x0800,
        &ipv4(NODE1_IP, Ipv4Addr::new(10, 77, 0, 3), 1, &icmp),
    );
    assert!(gateway.handle(&to_member, &members()).is_empty());
    let mut unreachable = icmp.clone();
    unreachable[0] = 3;
    let sum = checksum(&{
        let mut u = unreachable.clone();
        u[2..4].fill(0);
        u
    });
    unreachable[2..4].copy_from_slice(&sum.to_be_bytes());
    assert!(gateway
        .handle(
            &ethernet(
                GATEWAY_MAC,
                NODE1_MAC,
                0x0800,
                &ipv4(NODE1_IP, GATEWAY_IP, 1, &unreachable)
            ),
            &members()
        )
        .is_empty());
    let mut corrupt = icmp.clone();
    corrupt[10] ^= 0xff;
    assert!(gateway
        .handle(
            &ethernet(GATEWAY_MAC, NODE1_MAC, 0x0800, &ipv4(NODE1_IP, GATEWAY_IP, 1, &corrupt)),
            &members()
        )
        .is_empty());
    let from_nowhere = ipv4(Ipv4Addr::UNSPECIFIED, GATEWAY_IP, 1, &icmp);
    assert!(gateway
        .handle(&ethernet(GATEWAY_MAC, NODE1_MAC, 0x0800, &from_nowhere), &members())
        .is_empty());
    // A frame for someone else, even if it is a ping to the gateway's address.
    assert!(gateway
        .handle(
            &ethernet(NODE1_MAC, NODE1_MAC, 0x0800, &ipv4(NODE1_IP, GATEWAY_IP, 1, &icmp)),
            &members()
        )
        .is_empty());
}

const XID: u32 = 0x3903_f326;
const CLIENT_ID: &[u8] = &[1, 0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01];

/// op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr.
fn fixed(flags: u16, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut fixed = vec![2, 1, 6, 0];
    fixed.extend_from_slice(&XID.to_be_bytes());
    fixed.extend_from_slice(&[0, 0]);
    fixed.extend_from_slice(&flags.to_be_bytes());
    fixed.extend_from_slice(&ciaddr.octets());
    fixed.extend_from_slice(&yiaddr.octets());
    fixed.extend_from_slice(&[0; 8]);
    fixed.extend_from_slice(&NODE1_MAC);
    fixed.extend_from_slice(&[0; 10]);
    fixed
}

/// The options of an OFFER or ACK to node-1.
fn configuration(kind: u8, lease: bool) -> Vec<(u8, Vec<u8>)> {
    let mut options = vec![(53, vec![kind]), (54, vec![10, 77, 0, 1])];
    if lease {
        options.push((51, 3600u32.to_be_bytes().to_vec()));
    }
    options.extend([
        (1, vec![255, 255, 255, 0]),
        (28, vec![10, 77, 0, 255]),
        (6, vec![10, 77, 0, 1]),
        (15, b"lab".to_vec()),
        (12, b"node-1".to_vec()),
        (61, CLIENT_ID.to_vec()),
    ]);
    options
}

#[test]
fn dhcp_discover_offer_request_ack() {
    let gateway = lab();
    let members = members();
    let ip = NODE1_IP.octets();

    // DISCOVER, broadcast flag unset, asking for an old address: the member's is offered.
    let discover = dhcp(
        1,
        XID,
        0,
        Ipv4Addr::UNSPECIFIED,
        NODE1_MAC,
        &[(61, CLIENT_ID), (50, &[10, 77, 0, 99])],
    );
    let offer = sent_udp(&only_frame(gateway.handle(&dhcp_broadcast(&discover), &members)));
    assert_eq!(offer.dst_mac, [0xff; 6]);
    assert_eq!(offer.dst_ip, Ipv4Addr::BROADCAST);
    assert_eq!((offer.src_port, offer.dst_port), (67, 68));
    let reply = dhcp_reply(&offer.payload);
    assert_eq!(reply.fixed, fixed(0, Ipv4Addr::UNSPECIFIED, NODE1_IP));
    assert_eq!(reply.options, configuration(2, true));

    // REQUEST (selecting), broadcast flag set.
    let request = dhcp(
        3,
        XID,
        0x8000,
        Ipv4Addr::UNSPECIFIED,
        NODE1_MAC,
        &[(61, CLIENT_ID), (50, &ip), (54, &[10, 77, 0, 1])],
    );
    let outcomes = gateway.handle(&dhcp_broadcast(&request), &members);
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        outcomes[1],
        Outcome::Leased {
            name: "node-1".into(),
            ip: NODE1_IP
        }
    );
    let ack = sent_udp(sent(&outcomes)[0]);
    assert_eq!(
        (ack.dst_mac, ack.dst_ip, ack.dst_port),
        ([0xff; 6], Ipv4Addr::BROADCAST, 68)
    );
    let reply = dhcp_reply(&ack.payload);
    assert_eq!(reply.fixed, fixed(0x8000, Ipv4Addr::UNSPECIFIED, NODE1_IP));
    assert_eq!(reply.options, configuration(5, true));

    // Renewing: unicast to the server, ciaddr set, no option 50; the ACK goes to the client.
    let renew = dhcp(3, XID, 0, NODE1_IP, NODE1_MAC, &[(61, CLIENT_ID)]);
    let frame = guest_udp(GATEWAY_MAC, (NODE1_IP, 68), (GATEWAY_IP, 67), &renew);
    let outcomes = gateway.handle(&frame, &members);
    assert!(matches!(&outcomes[1], Outcome::Leased { name, ip } if name == "node-1" && *ip == NODE1_IP));
    let ack = sent_udp(sent(&outcomes)[0]);
    assert_eq!((ack.dst_mac, ack.dst_ip, ack.dst_port), (NODE1_MAC, NODE1_IP, 68));
    let reply = dhcp_reply(&ack.payload);
    assert_eq!(reply.fixed, fixed(0, NODE1_IP, NODE1_IP));
    assert_eq!(reply.options, configuration(5, true));

    // Rebinding: the same, broadcast; init-reboot: option 50 without a server id.
    let rebind = guest_udp([0xff; 6], (NODE1_IP, 68), (Ipv4Addr::BROADCAST, 67), &renew);
    assert_eq!(gateway.handle(&rebind, &members).len(), 2);
    let reboot = dhcp(3, XID, 0, Ipv4Addr::UNSPECIFIED, NODE1_MAC, &[(50, &ip)]);
    assert_eq!(gateway.handle(&dhcp_broadcast(&reboot), &members).len(), 2);
}

#[test]
fn dhcp_nak_for_another_address() {
    let gateway = lab();
    for request in [
        dhcp(
            3,
            XID,
            0,
            Ipv4Addr::UNSPECIFIED,
            NODE1_MAC,
            &[(50, &[10, 77, 0, 3]), (54, &[10, 77, 0, 1])],
        ),
        dhcp(3, XID, 0, Ipv4Addr::UNSPECIFIED, NODE1_MAC, &[(50, &[192, 168, 1, 20])]),
        dhcp(3, XID, 0, Ipv4Addr::UNSPECIFIED, NODE1_MAC, &[]),
        dhcp(3, XID, 0, Ipv4Addr::new(10, 77, 0, 9), NODE1_MAC, &[]),
    ] {
        let nak = sent_udp(&only_frame(gateway.handle(&dhcp_broadcast(&request), &members())));
        // Broadcast even to a client with an address: it may not have that one.
        assert_eq!(
            (nak.dst_mac, nak.dst_ip, nak.dst_port),
            ([0xff; 6], Ipv4Addr::BROADCAST, 68)
        );
        let reply = dhcp_reply(&nak.payload);
        assert_eq!(reply.fixed, fixed(0, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
        assert_eq!(reply.options[..2], [(53, vec![6]), (54, vec![10, 77, 0, 1])]);
        assert_eq!(
            reply.options[2],
            (56, b"10.77.0.2 is node-1's address on this network".to_vec())
        );
        assert_eq!(reply.options.len(), 3);
    }
}

#[test]
fn dhcp_ignores_unknown_macs_other_servers_and_releases() {
    let gateway = lab();
    let members = members();
    let stranger = [0x52, 0x54, 0, 0, 0, 0x99];
    for kind in [1, 3, 8] {
        let message = dhcp(kind, XID, 0, Ipv4Addr::UNSPECIFIED, stranger, &[(50, &[10, 77, 0, 2])]);
        assert!(
            gateway.handle(&dhcp_broadcast(&message), &members).is_empty(),
            "kind {kind}"
        );
    }
    let elsewhere = dhcp(
        3,
        XID,
        0,
        Ipv4Addr::UNSPECIFIED,
        NODE1_MAC,
        &[(50, &NODE1_IP.octets()), (54, &[10, 0, 2, 2])],
    );
    assert!(gateway.handle(&dhcp_broadcast(&elsewhere), &members).is_empty());
    for kind in [4, 7, 2, 5, 6] {
        let message = dhcp(kind, XID, 0, NODE1_IP, NODE1_MAC, &[(54, &[10, 77, 0, 1])]);
        assert!(
            gateway.handle(&dhcp_broadcast(&message), &members).is_empty(),
            "kind {kind}"
        );
    }
    // Not to the server's port or address, or a reply (op 2): nothing.
    let discover = dhcp(1, XID, 0, Ipv4Addr::UNSPECIFIED, NODE1_MAC, &[]);
    let to_other = guest_udp(
        [0xff; 6],
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::new(10, 77, 0, 3), 67),
        &discover,
    );
    assert!(gateway.handle(&to_other, &members).is_empty());
    let mut reply = discover.clone();
    reply[0] = 2;
    assert!(gateway.handle(&dhcp_broadcast(&reply), &members).is_empty());
    // A member whose registered address is the gateway's gets nothing rather than a conflict.
    let mut broken = members.clone();
    broken[0].ip = GATEWAY_IP;
    assert!(gateway.handle(&dhcp_broadcast(&discover), &broken).is_empty());
    // The minimal DISCOVER is answered.
    assert_eq!(gateway.handle(&dhcp_broadcast(&discover), &members).len(), 1);
}

#[test]
fn dhcp_inform_is_configuration_without_lease() {
    let inform = dhcp(8, XID, 0, NODE1_IP, NODE1_MAC, &[(61, CLIENT_ID)]);
    let frame = guest_udp(GATEWAY_MAC, (NODE1_IP, 68), (GATEWAY_IP, 67), &inform);
    let ack = sent_udp(&only_frame(lab().handle(&frame, &members())));
    assert_eq!((ack.dst_mac, ack.dst_ip, ack.dst_port), (NODE1_MAC, NODE1_IP, 68));
    let reply = dhcp_reply(&ack.payload);
    assert_eq!(reply.fixed, fixed(0, NODE1_IP, Ipv4Addr::UNSPECIFIED));
    assert_eq!(reply.options, configuration(5, false));
}

/// The answer the gateway sends to a DNS query from node-1, as a message.
fn ask(message: &[u8]) -> Vec<u8> {
    let udp = sent_udp(&only_frame(lab().handle(&dns_frame(message), &members())));
    assert_eq!(
        (udp.dst_mac, udp.dst_ip, udp.src_port, udp.dst_port),
        (NODE1_MAC, NODE1_IP, 53, 40000)
    );
    udp.payload
}

/// ID 0xbeef, QR AA RD RA with `rcode`, one question, `ancount` answers, no other records.
fn header(rcode: u8, ancount: u8) -> Vec<u8> {
    vec![0xbe, 0xef, 0x85, 0x80 | rcode, 0, 1, 0, ancount, 0, 0, 0, 0]
}

fn question(name: &str, qtype: u16) -> Vec<u8> {
    [dns_name(name), qtype.to_be_bytes().to_vec(), vec![0, 1]].concat()
}

/// An answer record about the question's name.
fn answer(rtype: u16, data: &[u8]) -> Vec<u8> {
    let mut record = vec![0xc0, 0x0c];
    record.extend_from_slice(&rtype.to_be_bytes());
    record.extend_from_slice(&[0, 1, 0, 0, 0, 10]);
    record.extend_from_slice(&(data.len() as u16).to_be_bytes());
    record.extend_from_slice(data);
    record
}

#[test]
fn dns_members_by_name() {
    for name in ["node-1", "node-1.lab", "NODE-1.Lab.", "web.server", "Web.Server.LAB"] {
        let response = ask(&dns_query(0xbeef, name, 1, 0, &[]));
        let ip = if name.to_lowercase().starts_with("node") {
            [10, 77, 0, 2]
        } else {
            [10, 77, 0, 3]
        };
        // The question comes back as asked, case included.
        let expected = [header(0, 1), question(name, 1), answer(1, &ip)].concat();
        assert_eq!(response, expected, "{name}");
    }
    // AAAA, MX, ANY of a member: no such records, at once.
    for qtype in [28, 15] {
        let response = ask(&dns_query(0xbeef, "node-1.lab", qtype, 0, &[]));
        assert_eq!(response, [header(0, 0), question("node-1.lab", qtype)].concat());
    }
    let response = ask(&dns_query(0xbeef, "node-1", 255, 0, &[]));
    assert_eq!(
        response,
        [header(0, 1), question("node-1", 255), answer(1, &[10, 77, 0, 2])].concat()
    );
}

#[test]
fn dns_the_domain_and_its_unknown_names() {
    let response = ask(&dns_query(0xbeef, "node-9.lab", 1, 0, &[]));
    assert_eq!(response, [header(3, 0), question("node-9.lab", 1)].concat());
    let response = ask(&dns_query(0xbeef, "a.node-1.lab", 1, 0, &[]));
    assert_eq!(response, [header(3, 0), question("a.node-1.lab", 1)].concat());
    // The domain exists (NOERROR) without records of its own.
    let response = ask(&dns_query(0xbeef, "LAB", 1, 0, &[]));
    assert_eq!(response, [header(0, 0), question("LAB", 1)].concat());
}

#[test]
fn dns_reverse() {
    let ptr = [dns_name("node-1.lab")].concat();
    let response = ask(&dns_query(0xbeef, "2.0.77.10.in-addr.arpa", 12, 0, &[]));
    assert_eq!(
        response,
        [header(0, 1), question("2.0.77.10.in-addr.arpa", 12), answer(12, &ptr)].concat()
    );
    let web = dns_name("Web.Server.lab");
    let response = ask(&dns_query(0xbeef, "3.0.77.10.IN-ADDR.ARPA", 12, 0, &[]));
    assert_eq!(
        response,
        [header(0, 1), question("3.0.77.10.IN-ADDR.ARPA", 12), answer(12, &web)].concat()
    );
    // A of a member's reverse name: nothing; the subnet's other addresses: no such name.
    let response = ask(&dns_query(0xbeef, "2.0.77.10.in-addr.arpa", 1, 0, &[]));
    assert_eq!(response, [header(0, 0), question("2.0.77.10.in-addr.arpa", 1)].concat());
    for free in ["9.0.77.10.in-addr.arpa", "1.0.77.10.in-addr.arpa"] {
        let response = ask(&dns_query(0xbeef, free, 12, 0, &[]));
        assert_eq!(response, [header(3, 0), question(free, 12)].concat());
    }
    // Addresses elsewhere, partial and non-canonical names: the host's resolvers'.
    for other in [
        "8.8.8.8.in-addr.arpa",
        "0.77.10.in-addr.arpa",
        "02.0.77.10.in-addr.arpa",
    ] {
        let query = dns_query(0xbeef, other, 12, 0, &[]);
        let outcomes = lab().handle(&dns_frame(&query), &members());
        assert!(matches!(&outcomes[..], [Outcome::Forward { .. }]), "{other}");
    }
}

/// An EDNS OPT record (root name, type 41) advertising `size` bytes.
fn opt(size: u16) -> Vec<u8> {
    let mut record = vec![0, 0, 41];
    record.extend_from_slice(&size.to_be_bytes());
    record.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    record
}

#[test]
fn dns_forwards_other_names() {
    let client = DnsClient {
        mac: NODE1_MAC,
        ip: NODE1_IP,
        port: 40000,
    };
    let query = dns_query(0x1234, "example.com", 1, 0, &[]);
    let outcomes = lab().handle(&dns_frame(&query), &members());
    assert_eq!(
        outcomes,
        [Outcome::Forward {
            client: client.clone(),
            query: query.clone()
        }]
    );
    // The bare domain-less name of no member, and other classes of a member's name.
    for query in [dns_query(7, "router", 1, 0, &[]), {
        let mut chaos = dns_query(7, "node-1", 16, 0, &[]);
        let len = chaos.len();
        chaos[len - 1] = 3;
        chaos
    }] {
        let outcomes = lab().handle(&dns_frame(&query), &members());
        assert!(matches!(&outcomes[..], [Outcome::Forward { query: q, .. }] if *q == query));
    }
    // An EDNS payload size beyond one frame is capped; a small one is left alone.
    let big = dns_query(0x1234, "example.com", 1, 1, &opt(4096));
    let outcomes = lab().handle(&dns_frame(&big), &members());
    let expected = dns_query(0x1234, "example.com", 1, 1, &opt(1472));
    assert!(matches!(&outcomes[..], [Outcome::Forward { query, .. }] if *query == expected));
    let small = dns_query(0x1234, "example.com", 1, 1, &opt(1232));
    let outcomes = lab().handle(&dns_frame(&small), &members());
    assert!(matches!(&outcomes[..], [Outcome::Forward { query, .. }] if *query == small));

    // The answer goes back from port 53 to the client's port.
    let mut answer = [
        vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0],
        question("example.com", 1),
    ]
    .concat();
    answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 93, 184, 216, 34]);
    let udp = sent_udp(&lab().dns_reply_frame(&client, &answer));
    assert_eq!(
        (udp.dst_mac, udp.dst_ip, udp.src_port, udp.dst_port),
        (NODE1_MAC, NODE1_IP, 53, 40000)
    );
    assert_eq!(udp.payload, answer);
    // Too long for a frame: the question alone, TC set.
    let mut long = answer.clone();
    long[7] = 200;
    for _ in 0..199 {
        long.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 10, 0, 0, 1]);
    }
    let udp = sent_udp(&lab().dns_reply_frame(&client, &long));
    let cut = [
        vec![0x12, 0x34, 0x83, 0x80, 0, 1, 0, 0, 0, 0, 0, 0],
        question("example.com", 1),
    ]
    .concat();
    assert_eq!(udp.payload, cut);
}

#[test]
fn dns_edns_queries_are_answered_without_opt() {
    let response = ask(&dns_query(0xbeef, "node-1.lab", 1, 1, &opt(1232)));
    assert_eq!(
        response,
        [header(0, 1), question("node-1.lab", 1), answer(1, &[10, 77, 0, 2])].concat()
    );
}

#[test]
fn dns_malformed_queries() {
    let formerr = [0xbe, 0xef, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0];
    // A question whose name points at itself, a truncated question, two questions, an
    // additional record that runs out: FORMERR.
    let mut looping = dns_query(0xbeef, "x", 1, 0, &[]);
    looping.truncate(12);
    looping.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    let mut two = dns_query(0xbeef, "node-1", 1, 0, &[]);
    two[5] = 2;
    let truncated = dns_query(0xbeef, "node-1", 1, 0, &[])[..20].to_vec();
    let short_opt = dns_query(0xbeef, "node-1", 1, 1, &opt(1232)[..8]);
    for (what, query) in [
        ("loop", looping),
        ("two", two),
        ("truncated", truncated),
        ("opt", short_opt),
    ] {
        assert_eq!(ask(&query), formerr, "{what}");
    }
    // Another opcode (2: status): NOTIMP.
    let mut status = dns_query(0xbeef, "node-1", 1, 0, &[]);
    status[2] = 0x10;
    assert_eq!(ask(&status), [0xbe, 0xef, 0x90, 0x84, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Less than a header, or a response: silence.
    let gateway = lab();
    assert!(gateway.handle(&dns_frame(&[0xbe, 0xef, 1]), &members()).is_empty());
    let mut response = dns_query(0xbeef, "node-1", 1, 0, &[]);
    response[2] |= 0x80;
    assert!(gateway.handle(&dns_frame(&response), &members()).is_empty());
    response.truncate(14);
    assert!(gateway.handle(&dns_frame(&response), &members()).is_empty());
    // Not to the gateway's address: not its business.
    let query = dns_query(0xbeef, "node-1", 1, 0, &[]);
    let elsewhere = guest_udp(GATEWAY_MAC, (NODE1_IP, 40000), (Ipv4Addr::new(10, 0, 2, 3), 53), &query);
    assert!(gateway.handle(&elsewhere, &members()).is_empty());
}

/// The frames a guest might send, for the robustness tests.
fn valid_frames() -> Vec<Vec<u8>> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&NODE1_MAC);
    arp.extend_from_slice(&NODE1_IP.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&GATEWAY_IP.octets());
    let ip = NODE1_IP.octets();
    vec![
        ethernet([0xff; 6], NODE1_MAC, 0x0806, &arp),
        ethernet(
            GATEWAY_MAC,
            NODE1_MAC,
            0x0800,
            &ipv4(NODE1_IP, GATEWAY_IP, 1, &echo_request(b"ping")),
        ),
        dhcp_broadcast(&dhcp(1, XID, 0, Ipv4Addr::UNSPECIFIED, NODE1_MAC, &[(61, CLIENT_ID)])),
        dhcp_broadcast(&dhcp(
            3,
            XID,
            0,
            Ipv4Addr::UNSPECIFIED,
            NODE1_MAC,
            &[(50, &ip), (54, &[10, 77, 0, 1])],
        )),
        dns_frame(&dns_query(1, "node-1.lab", 1, 1, &opt(4096))),
        dns_frame(&dns_query(2, "2.0.77.10.in-addr.arpa", 12, 0, &[])),
        // A compressed name in the additional section: "x" then a pointer to the question's.
        dns_frame(&dns_query(
            3,
            "example.com",
            1,
            1,
            &[1, b'x', 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0],
        )),
    ]
}

/// Checks what the gateway sends: whole, well-formed frames.
fn check_outcomes(outcomes: &[Outcome]) {
    for frame in sent(outcomes) {
        if frame[12..14] == [8, 6] {
            assert_eq!(frame.len(), 60);
        } else {
            assert!(frame.len() >= 60);
            let ip = &frame[14..];
            assert_eq!(ip[0], 0x45);
            assert_eq!(checksum(&ip[..20]), 0);
            if ip[9] == 17 {
                sent_udp(frame);
            }
        }
    }
}

#[test]
fn truncated_and_garbage_frames_never_panic() {
    let gateway = lab();
    let members = members();
    for frame in valid_frames() {
        assert!(
            !gateway.handle(&frame, &members).is_empty(),
            "the valid frame is answered"
        );
        for len in 0..frame.len() {
            check_outcomes(&gateway.handle(&frame[..len], &members));
        }
    }
    for garbage in [
        vec![],
        vec![0xff; 14],
        vec![0xff; 1600],
        vec![0; 60],
        (0..=255).collect::<Vec<u8>>(),
    ] {
        assert!(gateway.handle(&garbage, &members).is_empty());
        sent_udp(&gateway.dns_reply_frame(
            &DnsClient {
                mac: NODE1_MAC,
                ip: NODE1_IP,
                port: 1,
            },
            &garbage,
        ));
    }
}

/// xorshift64: a deterministic stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Valid frames mutated (bytes changed, cut, grown), their IPv4 header checksum usually fixed
/// up so that the damage reaches ICMP, DHCP and DNS: nothing panics, and whatever is sent is
/// well formed.
#[test]
fn mutated_frames_fuzz() {
    let gateway = lab();
    let members = members();
    let client = DnsClient {
        mac: NODE1_MAC,
        ip: NODE1_IP,
        port: 40000,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut answered = 0;
    for base in valid_frames() {
        for _ in 0..3000 {
            let mut frame = base.clone();
            for _ in 0..=rng.below(4) {
                match rng.below(6) {
                    0 => frame.truncate(rng.below(frame.len() + 1)),
                    1 => frame.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                    // Mostly past the Ethernet and IPv4 headers, where the parsers are.
                    _ if frame.len() > 34 => {
                        let at = 34 + rng.below(frame.len() - 34);
                        frame[at] = rng.next() as u8;
                    }
                    _ if !frame.is_empty() => {
                        let at = rng.below(frame.len());
                        frame[at] ^= 1 << rng.below(8);
                    }
                    _ => {}
                }
            }
            if frame.len() >= 34 && frame[12..14] == [8, 0] && frame[14] == 0x45 && rng.below(8) != 0 {
                frame[24..26].fill(0);
                let sum = checksum(&frame[14..34]);
                frame[24..26].copy_from_slice(&sum.to_be_bytes());
            }
            let outcomes = gateway.handle(&frame, &members);
            answered += usize::from(!outcomes.is_empty());
            check_outcomes(&outcomes);
            for outcome in &outcomes {
                if let Outcome::Forward { query, .. } = outcome {
                    sent_udp(&gateway.dns_reply_frame(&client, query));
                }
            }
            if frame.len() > 42 {
                sent_udp(&gateway.dns_reply_frame(&client, &frame[42..]));
            }
        }
    }
    // The mutations are not all fatal: the fuzzing reaches the answering code.
    assert!(answered > 1000, "{answered} mutated frames answered");
}
