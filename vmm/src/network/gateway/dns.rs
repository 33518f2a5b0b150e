//! The DNS responder: authoritative for the network's domain (members by name, bare or
//! qualified, and by address in `in-addr.arpa`), everything else handed to the switch to forward
//! to the host's resolvers, since a guest's resolv.conf then names the gateway alone.

use std::net::Ipv4Addr;

use super::dns_wire::{error_response, response, same_name, write_name, Name, Query, QueryError, Rcode, Record};
use super::frame::MAX_UDP_PAYLOAD;
use super::{DnsClient, Gateway, Member, Outcome};

/// The server's UDP port.
pub(super) const PORT: u16 = 53;

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// Short: members come and go, and their addresses with them.
const TTL: u32 = 10;

/// What the gateway does with the DNS message `message` from `client`: an answer, a query to
/// forward, or nothing (responses, messages without a header).
pub(super) fn handle(gateway: &Gateway, client: DnsClient, message: &[u8], members: &[Member]) -> Option<Outcome> {
    let query = match Query::parse(message) {
        Ok(query) if !query.header.is_response() => query,
        Err(QueryError::Malformed(header)) if !header.is_response() => {
            tracing::debug!("malformed DNS query from {}: FORMERR", client.ip);
            return Some(Outcome::Send(
                gateway.dns_reply_frame(&client, &error_response(header, Rcode::FormErr)),
            ));
        }
        // Responses are never answered (two servers would answer each other forever), and
        // without a header there is no ID to answer to.
        Ok(_) | Err(_) => return None,
    };
    if query.header.opcode() != 0 {
        let answer = error_response(query.header, Rcode::NotImp);
        return Some(Outcome::Send(gateway.dns_reply_frame(&client, &answer)));
    }
    match resolve(gateway, &query, members) {
        Resolution::Forward => Some(Outcome::Forward {
            client,
            query: with_capped_payload_size(message, &query),
        }),
        Resolution::Answer(rcode, records) => {
            let answer = response(&query, rcode, true, &records);
            Some(Outcome::Send(gateway.dns_reply_frame(&client, &answer)))
        }
    }
}

/// What the gateway knows of a question.
#[derive(Debug, PartialEq, Eq)]
enum Resolution {
    /// An authoritative answer.
    Answer(Rcode, Vec<Record>),
    /// Not the network's name: the host's resolvers know.
    Forward,
}

fn resolve(gateway: &Gateway, query: &Query, members: &[Member]) -> Resolution {
    let question = &query.question;
    if !matches!(question.qclass, CLASS_IN | CLASS_ANY) {
        return Resolution::Forward;
    }
    let asks = |rtype: u16| question.qtype == rtype || question.qtype == TYPE_ANY;
    let name = &question.name;
    let domain = &gateway.domain_name;
    // A member's name, whatever the type: a resolver asking AAAA gets "no such record" at once
    // instead of waiting for the forwarder to say the same.
    if let Some(member) = members.iter().find(|m| names_member(name, m, domain)) {
        let records = match asks(TYPE_A) {
            true => vec![record(TYPE_A, member.ip.octets().to_vec())],
            false => Vec::new(),
        };
        return Resolution::Answer(Rcode::NoError, records);
    }
    if let Some(ip) = reverse_address(name) {
        if let Some(member) = members.iter().find(|m| m.ip == ip) {
            let mut qualified = Vec::new();
            let records = match asks(TYPE_PTR) && write_name(&mut qualified, &qualified_name(member, domain)).is_some()
            {
                true => vec![record(TYPE_PTR, qualified)],
                false => Vec::new(),
            };
            return Resolution::Answer(Rcode::NoError, records);
        }
        // The subnet's addresses exist on this network alone: no one else can name them.
        return match gateway.subnet.contains(ip) {
            true => Resolution::Answer(Rcode::NxDomain, Vec::new()),
            false => Resolution::Forward,
        };
    }
    // Without a domain (not a network's name, but possible), no name is below it.
    if domain.is_empty() {
        return Resolution::Forward;
    }
    // The domain itself exists (its members are below it) but has no records: NOERROR, not
    // NXDOMAIN, which would tell a caching resolver that nothing below it exists either (RFC 8020).
    if same_name(name, domain) {
        return Resolution::Answer(Rcode::NoError, Vec::new());
    }
    if name.len() > domain.len() && same_name(&name[name.len() - domain.len()..], domain) {
        return Resolution::Answer(Rcode::NxDomain, Vec::new());
    }
    Resolution::Forward
}

/// An answer record about the question's name.
fn record(rtype: u16, data: Vec<u8>) -> Record {
    Record {
        rtype,
        class: CLASS_IN,
        ttl: TTL,
        data,
    }
}

/// Whether `name` is the member's, bare (`node-1`) or in the domain (`node-1.lab`).
fn names_member(name: &[Vec<u8>], member: &Member, domain: &[Vec<u8>]) -> bool {
    let bare = labels(&member.name);
    !bare.is_empty() && (same_name(name, &bare) || same_name(name, &qualified_name(member, domain)))
}

/// The member's name in the domain.
fn qualified_name(member: &Member, domain: &[Vec<u8>]) -> Name {
    let mut name = labels(&member.name);
    name.extend_from_slice(domain);
    name
}

/// The labels of a dotted name (a trailing dot, the root, ignored).
pub(super) fn labels(dotted: &str) -> Name {
    let dotted = dotted.strip_suffix('.').unwrap_or(dotted);
    match dotted.is_empty() {
        true => Vec::new(),
        false => dotted.split('.').map(|label| label.as_bytes().to_vec()).collect(),
    }
}

/// The address `d.c.b.a.in-addr.arpa` names (RFC 1035 3.5), written canonically.
fn reverse_address(name: &[Vec<u8>]) -> Option<Ipv4Addr> {
    let [d, c, b, a, in_addr, arpa] = name else {
        return None;
    };
    if !in_addr.eq_ignore_ascii_case(b"in-addr") || !arpa.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let octet = |label: &[u8]| -> Option<u8> {
        let canonical =
            !label.is_empty() && label.iter().all(u8::is_ascii_digit) && (label.len() == 1 || label[0] != b'0');
        match canonical {
            true => std::str::from_utf8(label).ok()?.parse().ok(),
            false => None,
        }
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

/// The query to forward: as the client wrote it, except that an EDNS payload size above what
/// one unfragmented packet to the guest holds is lowered to it, so that the upstream answer fits
/// the one frame the gateway sends.
fn with_capped_payload_size(message: &[u8], query: &Query) -> Vec<u8> {
    let mut message = message.to_vec();
    let cap = MAX_UDP_PAYLOAD as u16;
    for &at in &query.opt_payload_sizes {
        if let Some(field) = message.get_mut(at..at + 2) {
            if u16::from_be_bytes([field[0], field[1]]) > cap {
                field.copy_from_slice(&cap.to_be_bytes());
            }
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::gateway::testing::{dns_query, members};

    fn resolution(gateway: &Gateway, name: &str) -> Resolution {
        let query = Query::parse(&dns_query(1, name, TYPE_A, 0, &[])).unwrap();
        resolve(gateway, &query, &members())
    }

    #[test]
    fn without_a_domain_only_bare_names_are_answered() {
        let gateway = Gateway::new("10.77.0.0/24".parse().unwrap(), "");
        assert!(matches!(resolution(&gateway, "node-1"), Resolution::Answer(Rcode::NoError, r) if r.len() == 1));
        assert_eq!(resolution(&gateway, "example.com"), Resolution::Forward);
        assert_eq!(resolution(&gateway, "x"), Resolution::Forward);
    }

    #[test]
    fn reverse_names() {
        let name = |s: &str| labels(s);
        assert_eq!(
            reverse_address(&name("4.3.2.1.in-addr.arpa")),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(
            reverse_address(&name("0.0.0.255.In-Addr.Arpa.")),
            Some(Ipv4Addr::new(255, 0, 0, 0))
        );
        for bad in [
            "256.0.0.1.in-addr.arpa",
            "1.0.0.01.in-addr.arpa",
            "a.0.0.1.in-addr.arpa",
            "+1.0.0.1.in-addr.arpa",
            "0.0.1.in-addr.arpa",
            "1.0.0.1.ip6.arpa",
        ] {
            assert_eq!(reverse_address(&name(bad)), None, "{bad}");
        }
    }
}
