//! DNS messages (RFC 1035 section 4) as the gateway reads queries and writes answers: the header,
//! names with compression (loops refused), the question, resource records skipped over, and EDNS
//! OPT records (RFC 6891) found so that their payload size can be capped.

/// The header's length.
pub(super) const HEADER_LEN: usize = 12;
/// Where the question's name starts in a message: what answers' compressed names point to.
const QUESTION_OFFSET: u16 = HEADER_LEN as u16;
/// RFC 1035 2.3.4: names are at most 255 bytes on the wire.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
const TYPE_OPT: u16 = 41;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const OPCODE_MASK: u16 = 0x7800;

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rcode {
    /// No error.
    NoError = 0,
    /// The query could not be read.
    FormErr = 1,
    /// The name does not exist.
    NxDomain = 3,
    /// The kind of query is not supported.
    NotImp = 4,
}

/// A message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// The ID the response echoes.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z and RCODE.
    pub flags: u16,
    /// Entries in the question section.
    pub qdcount: u16,
    /// Records in the answer section.
    pub ancount: u16,
    /// Records in the authority section.
    pub nscount: u16,
    /// Records in the additional section.
    pub arcount: u16,
}

impl Header {
    /// The header at the start of `message`; `None` when it is shorter than one.
    pub fn parse(message: &[u8]) -> Option<Header> {
        let word = |at: usize| Some(u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]));
        Some(Header {
            id: word(0)?,
            flags: word(2)?,
            qdcount: word(4)?,
            ancount: word(6)?,
            nscount: word(8)?,
            arcount: word(10)?,
        })
    }

    /// Whether the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    /// The opcode (0: a standard query).
    pub fn opcode(&self) -> u16 {
        (self.flags & OPCODE_MASK) >> 11
    }
}

/// A domain name as a list of labels, as on the wire (compared ASCII-case-insensitively).
pub(super) type Name = Vec<Vec<u8>>;

/// The question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Question {
    /// QNAME, with the case the client wrote.
    pub name: Name,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// A query that could be read whole.
#[derive(Debug)]
pub(super) struct Query {
    /// Its header.
    pub header: Header,
    /// Its one question.
    pub question: Question,
    /// Where the CLASS field (the requestor's UDP payload size) of each OPT record is.
    pub opt_payload_sizes: Vec<usize>,
}

/// Why a message is not a query the gateway can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueryError {
    /// Not even a header: nothing can be answered.
    NoHeader,
    /// A header, then something malformed (or not exactly one question): a FORMERR.
    Malformed(Header),
}

impl Query {
    /// Reads a whole query: header, one question, the records of the other sections.
    pub fn parse(message: &[u8]) -> Result<Query, QueryError> {
        let header = Header::parse(message).ok_or(QueryError::NoHeader)?;
        let malformed = QueryError::Malformed(header);
        if header.qdcount != 1 {
            return Err(malformed);
        }
        let (name, mut at) = read_name(message, HEADER_LEN).ok_or(malformed)?;
        let (qtype, qclass) = match (word(message, at), word(message, at + 2)) {
            (Some(qtype), Some(qclass)) => (qtype, qclass),
            _ => return Err(malformed),
        };
        at += 4;
        let mut opt_payload_sizes = Vec::new();
        let records = u32::from(header.ancount) + u32::from(header.nscount) + u32::from(header.arcount);
        for _ in 0..records {
            let (_, after_name) = read_name(message, at).ok_or(malformed)?;
            let (Some(rtype), Some(rdlength)) = (word(message, after_name), word(message, after_name + 8)) else {
                return Err(malformed);
            };
            if rtype == TYPE_OPT {
                opt_payload_sizes.push(after_name + 2);
            }
            at = after_name + 10 + usize::from(rdlength);
            if at > message.len() {
                return Err(malformed);
            }
        }
        Ok(Query {
            header,
            question: Question { name, qtype, qclass },
            opt_payload_sizes,
        })
    }
}

/// The big-endian 16-bit word at `at`.
fn word(message: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *message.get(at)?,
        *message.get(at.checked_add(1)?)?,
    ]))
}

/// The name at `at` and the offset just after it (after the first pointer, when compressed);
/// `None` when it runs out of the message, has a reserved label type, is longer than 255 bytes,
/// or its pointers could loop.
///
/// Loops are impossible because every pointer must go strictly before the place the previous
/// one led to (the first: before itself), as compressors only point at names written earlier.
pub(super) fn read_name(message: &[u8], mut at: usize) -> Option<(Name, usize)> {
    let mut labels = Vec::new();
    let mut wire_len = 0;
    let mut end = None;
    let mut limit = at;
    loop {
        let len = *message.get(at)?;
        match len & 0xc0 {
            0x00 => {
                let len = usize::from(len);
                wire_len += len + 1;
                if wire_len > MAX_NAME {
                    return None;
                }
                if len == 0 {
                    return Some((labels, end.unwrap_or(at + 1)));
                }
                labels.push(message.get(at + 1..at + 1 + len)?.to_vec());
                at += 1 + len;
            }
            0xc0 => {
                let target = usize::from(u16::from_be_bytes([len & 0x3f, *message.get(at + 1)?]));
                if target >= limit.min(at) {
                    return None;
                }
                end.get_or_insert(at + 2);
                limit = target;
                at = target;
            }
            // 0x40 and 0x80: label types RFC 6891 retired and RFC 1035 reserved.
            _ => return None,
        }
    }
}

/// `name` on the wire, uncompressed; `None` when a label is empty or longer than 63 bytes, or the
/// name longer than 255 bytes.
pub(super) fn write_name(out: &mut Vec<u8>, name: &[Vec<u8>]) -> Option<()> {
    let wire_len: usize = name.iter().map(|label| label.len() + 1).sum::<usize>() + 1;
    if wire_len > MAX_NAME || name.iter().any(|label| label.is_empty() || label.len() > MAX_LABEL) {
        return None;
    }
    for label in name {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    Some(())
}

/// Whether two names are equal, ignoring ASCII case (RFC 4343).
pub(super) fn same_name(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// A resource record of an answer, always about the question's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA, on the wire.
    pub data: Vec<u8>,
}

/// The response to `query` from the server authoritative for the name (or not): its ID, opcode
/// and RD echoed, RA set, the question repeated, then `answers`. EDNS is not echoed: the
/// gateway's answers are small and it speaks plain DNS.
pub(super) fn response(query: &Query, rcode: Rcode, authoritative: bool, answers: &[Record]) -> Vec<u8> {
    let mut flags = FLAG_QR | FLAG_RA | (query.header.flags & (OPCODE_MASK | FLAG_RD)) | rcode as u16;
    if authoritative {
        flags |= FLAG_AA;
    }
    let mut message = header_bytes(query.header.id, flags, 1, answers.len() as u16);
    // Written uncompressed, so that the answers' pointers to offset 12 find it.
    if write_name(&mut message, &query.question.name).is_none() {
        // Unreachable for a name `read_name` accepted (labels of 1 to 63 bytes, 255 in all).
        return error_response(query.header, Rcode::FormErr);
    }
    message.extend_from_slice(&query.question.qtype.to_be_bytes());
    message.extend_from_slice(&query.question.qclass.to_be_bytes());
    for record in answers {
        message.extend_from_slice(&(0xc000 | QUESTION_OFFSET).to_be_bytes());
        message.extend_from_slice(&record.rtype.to_be_bytes());
        message.extend_from_slice(&record.class.to_be_bytes());
        message.extend_from_slice(&record.ttl.to_be_bytes());
        message.extend_from_slice(&(record.data.len() as u16).to_be_bytes());
        message.extend_from_slice(&record.data);
    }
    message
}

/// A response with `rcode` and no question to the message with `header` (FORMERR, NOTIMP).
pub(super) fn error_response(header: Header, rcode: Rcode) -> Vec<u8> {
    let flags = FLAG_QR | FLAG_RA | (header.flags & (OPCODE_MASK | FLAG_RD)) | rcode as u16;
    header_bytes(header.id, flags, 0, 0)
}

fn header_bytes(id: u16, flags: u16, qdcount: u16, ancount: u16) -> Vec<u8> {
    let mut header = Vec::with_capacity(512);
    for field in [id, flags, qdcount, ancount, 0, 0] {
        header.extend_from_slice(&field.to_be_bytes());
    }
    header
}

/// `message` cut to `max` bytes the way a server truncates (RFC 2181 9): the header with TC set
/// and no records, and the question when it can be read. Shorter messages are returned as is.
pub(super) fn truncate(message: &[u8], max: usize) -> Vec<u8> {
    if message.len() <= max {
        return message.to_vec();
    }
    let Some(header) = Header::parse(message) else {
        return message[..max].to_vec();
    };
    let question_end = match header.qdcount {
        1 => read_name(message, HEADER_LEN)
            .map(|(_, at)| at + 4)
            .filter(|&end| end <= max),
        _ => None,
    };
    let mut cut = header_bytes(header.id, header.flags | FLAG_TC, u16::from(question_end.is_some()), 0);
    if let Some(end) = question_end {
        cut.extend_from_slice(&message[HEADER_LEN..end]);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(dotted: &str) -> Name {
        dotted.split('.').map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn reads_compressed_names() {
        // RFC 1035 4.1.4's example: F.ISI.ARPA at 20, FOO.F.ISI.ARPA at 40, ARPA at 64, root at 92.
        let mut message = vec![0; 100];
        message[20..32].copy_from_slice(b"\x01F\x03ISI\x04ARPA\x00");
        message[40..46].copy_from_slice(b"\x03FOO\xc0\x14");
        message[64..66].copy_from_slice(b"\xc0\x1a");
        message[92] = 0;
        assert_eq!(read_name(&message, 20), Some((name("F.ISI.ARPA"), 32)));
        assert_eq!(read_name(&message, 40), Some((name("FOO.F.ISI.ARPA"), 46)));
        assert_eq!(read_name(&message, 64), Some((name("ARPA"), 66)));
        assert_eq!(read_name(&message, 92), Some((Vec::new(), 93)));
    }

    #[test]
    fn refuses_pointer_loops_and_bad_names() {
        let to_itself = b"\xc0\x00";
        assert_eq!(read_name(to_itself, 0), None);
        // a → b → a: the second pointer goes forward again.
        let mut cycle = vec![0; 20];
        cycle[4..6].copy_from_slice(b"\xc0\x0a");
        cycle[10..14].copy_from_slice(b"\x01x\xc0\x04");
        assert_eq!(read_name(&cycle, 4), None);
        assert_eq!(read_name(&cycle, 10), None);
        // A pointer forward.
        assert_eq!(read_name(b"\xc0\x02\x00", 0), None);
        // Reserved label types.
        assert_eq!(read_name(b"\x41x\x00", 0), None);
        assert_eq!(read_name(b"\x81x\x00", 0), None);
        // Running out.
        assert_eq!(read_name(b"\x05abc", 0), None);
        assert_eq!(read_name(b"\x01a", 0), None);
        assert_eq!(read_name(b"\xc0", 1), None);
        // 256 bytes: four labels of 63 and the root make 257.
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(read_name(&long, 0), None);
        assert!(read_name(&long[64..], 0).is_some());
    }

    #[test]
    fn writes_names() {
        let mut out = Vec::new();
        write_name(&mut out, &name("node-1.lab")).unwrap();
        assert_eq!(out, b"\x06node-1\x03lab\x00");
        assert_eq!(write_name(&mut Vec::new(), &[vec![b'a'; 64]]), None);
        assert_eq!(write_name(&mut Vec::new(), &[Vec::new()]), None);
        assert!(same_name(&name("Node-1.LAB"), &name("node-1.lab")));
        assert!(!same_name(&name("node-1"), &name("node-1.lab")));
    }

    #[test]
    fn truncates_to_the_question() {
        let mut message = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 9, 0, 0, 0, 1];
        message.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        message.resize(2000, 0xab);
        let cut = truncate(&message, 1472);
        assert_eq!(cut[..12], [0x12, 0x34, 0x83, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(cut[12..], *b"\x01a\x00\x00\x01\x00\x01");
        assert_eq!(truncate(&message[..100], 1472), message[..100]);
        assert_eq!(truncate(&[1, 2, 3, 4], 2), [1, 2]);
    }
}
