//! DNS message header and first question (RFC 1035 section 4.1).
//!
//! tracer decodes every port-53 packet it captures, so this is on the
//! userspace hot path: it reads only the 12-byte header and the first
//! question, allocates nothing but the name, and never trusts a length or a
//! compression pointer. The kernel side copies a bounded prefix of each
//! packet, so answers are counted from the header rather than decoded.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

const HEADER_LEN: usize = 12;
/// RFC 1035 section 2.3.4: a name is at most 255 octets on the wire,
/// counting length octets and the root label.
const MAX_NAME_WIRE_LEN: usize = 255;
/// Upper bound on compression pointers followed for one name. Pointers must
/// also move strictly backwards, so this only caps work on crafted input.
const MAX_POINTER_JUMPS: usize = 32;

/// The parts of a DNS message tracer reports on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsMessage {
    pub id: u16,
    /// QR bit: false for a query, true for a response.
    pub is_response: bool,
    /// 0 is a standard query; anything else (NOTIFY, UPDATE) is rare enough
    /// on a node to be worth showing.
    pub opcode: u8,
    /// The 4-bit header RCODE (extended EDNS rcodes are not decoded).
    pub rcode: u8,
    /// TC bit: the answer did not fit UDP, so the client will retry over
    /// TCP, which explains an extra round trip.
    pub truncated: bool,
    /// The first question, if the message has one. Resolvers only ever send
    /// one, and it is what identifies the query across hops.
    pub question: Option<Question>,
    /// ANCOUNT from the header; a NOERROR response with zero answers is the
    /// "NODATA" case (for example AAAA for an IPv4-only name).
    pub answers: u16,
}

/// One entry of the question section.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Question {
    /// Presentation form with a trailing dot (`example.com.`; the root is
    /// `.`). Case is kept as sent. Bytes that would be ambiguous or
    /// unprintable in a log line are escaped as `\DDD`, and a literal dot or
    /// backslash inside a label as `\.` and `\\`, so one wire name always
    /// maps to one string.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// Why a payload is not a decodable DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// The payload ends before the header or the first question does.
    Truncated,
    /// A label length octet uses the reserved 0b01/0b10 prefixes.
    BadLabel,
    /// A compression pointer points forward, at itself, past the end, or
    /// the chain is too long.
    BadPointer,
    /// The name exceeds 255 octets.
    NameTooLong,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsError::Truncated => "DNS message truncated",
            DnsError::BadLabel => "invalid DNS label type",
            DnsError::BadPointer => "invalid DNS compression pointer",
            DnsError::NameTooLong => "DNS name longer than 255 octets",
        })
    }
}

impl std::error::Error for DnsError {}

/// Decodes the header and the first question of a DNS message.
///
/// `payload` is the UDP payload (for DNS over TCP, the caller strips the
/// 2-byte length prefix). Only the header and the first question need to be
/// present; anything after them may be missing.
pub fn parse(payload: &[u8]) -> Result<DnsMessage, DnsError> {
    if payload.len() < HEADER_LEN {
        return Err(DnsError::Truncated);
    }
    let be16 = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    let flags = be16(2);
    let qdcount = be16(4);
    let question = if qdcount == 0 {
        None
    } else {
        let (name, end) = read_name(payload, HEADER_LEN)?;
        let fixed = payload.get(end..end + 4).ok_or(DnsError::Truncated)?;
        Some(Question {
            name,
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
            qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        })
    };
    Ok(DnsMessage {
        id: be16(0),
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        question,
        answers: be16(6),
    })
}

/// Reads the name starting at `start`, following compression pointers.
/// Returns the presentation form and the offset just past the name as it
/// appears at `start` (after the first pointer, if any).
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    // Typical names are short; one allocation sized for them.
    let mut name = String::with_capacity(32);
    let mut pos = start;
    // Every pointer must point before the start of the run of labels that
    // contains it, so the walk strictly moves backwards and cannot loop.
    let mut run_start = start;
    let mut end_after_name = None;
    let mut wire_len = 0usize;
    let mut jumps = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                wire_len += 1 + usize::from(len);
                if wire_len > MAX_NAME_WIRE_LEN {
                    return Err(DnsError::NameTooLong);
                }
                if len == 0 {
                    if name.is_empty() {
                        name.push('.');
                    }
                    let end = end_after_name.unwrap_or(pos + 1);
                    return Ok((name, end));
                }
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(DnsError::Truncated)?;
                push_label(&mut name, label);
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                jumps += 1;
                if target >= run_start || jumps > MAX_POINTER_JUMPS {
                    return Err(DnsError::BadPointer);
                }
                end_after_name.get_or_insert(pos + 2);
                pos = target;
                run_start = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(char::from(b));
            }
            0x21..=0x7e => name.push(char::from(b)),
            _ => {
                name.push('\\');
                name.push(char::from(b'0' + b / 100));
                name.push(char::from(b'0' + (b / 10) % 10));
                name.push(char::from(b'0' + b % 10));
            }
        }
    }
    name.push('.');
}

/// Mnemonic of a query type for event output.
pub fn type_name(qtype: u16) -> Cow<'static, str> {
    Cow::Borrowed(match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        n => return Cow::Owned(format!("TYPE{n}")),
    })
}

/// Mnemonic of a response code for event output.
pub fn rcode_name(rcode: u8) -> Cow<'static, str> {
    Cow::Borrowed(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        n => return Cow::Owned(format!("RCODE{n}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stub resolver's A query for example.com: id 0x1a2b, RD, one question.
    const STUB_A_QUERY: &[u8] = &[
        0x1a, 0x2b, // id
        0x01, 0x00, // RD
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // qd=1
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // name
        0x00, 0x01, 0x00, 0x01, // A IN
    ];

    /// AAAA response for www.example.com: a CNAME to example.com and one
    /// AAAA record, both owner names compressed against the question.
    const AAAA_RESPONSE: &[u8] = &[
        0x1a, 0x2c, // id
        0x81, 0x80, // QR RD RA, NOERROR
        0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // qd=1 an=2
        3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
        0, // www.example.com at offset 12
        0x00, 0x1c, 0x00, 0x01, // AAAA IN
        0xc0, 0x0c, // -> www.example.com
        0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x02, // CNAME IN ttl rdlen=2
        0xc0, 0x10, // -> example.com
        0xc0, 0x10, // -> example.com
        0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x10, // AAAA IN ttl rdlen=16
        0x26, 0x06, 0x28, 0x00, 0x02, 0x20, 0x00, 0x01, 0x02, 0x48, 0x18, 0x93, 0x25, 0xc8, 0x19,
        0x46,
    ];

    /// NXDOMAIN for a search-list expansion that the cluster DNS answers
    /// authoritatively, with the SOA in the authority section.
    const NXDOMAIN_RESPONSE: &[u8] = &[
        0x77, 0x01, 0x85, 0x83, // QR AA RD RA, NXDOMAIN
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // qd=1 ns=1
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 3, b's', b'v', b'c', 0,
        0x00, 0x01, 0x00, 0x01, // A IN
        0xc0, 0x18, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, // SOA (cut)
    ];

    #[test]
    fn stub_resolver_a_query() {
        let m = parse(STUB_A_QUERY).unwrap();
        assert_eq!(m.id, 0x1a2b);
        assert!(!m.is_response);
        assert_eq!(
            (m.opcode, m.rcode, m.truncated, m.answers),
            (0, 0, false, 0)
        );
        let q = m.question.unwrap();
        assert_eq!(q.name, "example.com.");
        assert_eq!((q.qtype, q.qclass), (1, 1));
        assert_eq!(type_name(q.qtype), "A");
    }

    #[test]
    fn aaaa_response_with_compression() {
        let m = parse(AAAA_RESPONSE).unwrap();
        assert!(m.is_response);
        assert_eq!(m.answers, 2);
        assert_eq!(rcode_name(m.rcode), "NOERROR");
        let q = m.question.unwrap();
        assert_eq!(q.name, "www.example.com.");
        assert_eq!(type_name(q.qtype), "AAAA");
        // The compressed owner names in the answers decode too.
        assert_eq!(
            read_name(AAAA_RESPONSE, 33).unwrap(),
            ("www.example.com.".into(), 35)
        );
        assert_eq!(
            read_name(AAAA_RESPONSE, 45).unwrap(),
            ("example.com.".into(), 47)
        );
    }

    #[test]
    fn nxdomain() {
        let m = parse(NXDOMAIN_RESPONSE).unwrap();
        assert_eq!(m.rcode, 3);
        assert_eq!(rcode_name(m.rcode), "NXDOMAIN");
        assert_eq!(m.question.unwrap().name, "example.com.svc.");
    }

    #[test]
    fn cut_after_question_is_enough() {
        let m = parse(&AAAA_RESPONSE[..33]).unwrap();
        assert_eq!(m.answers, 2);
        assert_eq!(m.question.unwrap().qtype, 28);
        assert_eq!(parse(&AAAA_RESPONSE[..32]), Err(DnsError::Truncated));
    }

    #[test]
    fn no_question_and_root() {
        let mut header = STUB_A_QUERY[..12].to_vec();
        header[5] = 0;
        assert_eq!(parse(&header).unwrap().question, None);
        let mut root = STUB_A_QUERY[..12].to_vec();
        root.extend_from_slice(&[0, 0x00, 0x02, 0x00, 0x01]);
        let q = parse(&root).unwrap().question.unwrap();
        assert_eq!((q.name.as_str(), type_name(q.qtype)), (".", "NS".into()));
    }

    #[test]
    fn unprintable_bytes_are_escaped() {
        let mut msg = STUB_A_QUERY[..12].to_vec();
        msg.extend_from_slice(&[5, b'a', b'.', b' ', b'\\', 0xff, 0, 0, 16, 0, 1]);
        let q = parse(&msg).unwrap().question.unwrap();
        assert_eq!(q.name, "a\\.\\032\\\\\\255.");
        assert_eq!(type_name(q.qtype), "TXT");
    }

    #[test]
    fn names_and_pointers_are_bounded() {
        // A pointer to itself, and two pointers pointing at each other.
        let mut msg = STUB_A_QUERY[..12].to_vec();
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(DnsError::BadPointer));
        let mut msg = STUB_A_QUERY[..12].to_vec();
        msg.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(DnsError::BadPointer));
        // Forward pointer.
        let mut msg = STUB_A_QUERY[..12].to_vec();
        msg.extend_from_slice(&[0xc0, 40, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(DnsError::BadPointer));
        // Reserved label type.
        let mut msg = STUB_A_QUERY[..12].to_vec();
        msg.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(DnsError::BadLabel));
        // 5 labels of 63 bytes: 320 octets.
        let mut msg = STUB_A_QUERY[..12].to_vec();
        for _ in 0..5 {
            msg.push(63);
            msg.extend_from_slice(&[b'x'; 63]);
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(DnsError::NameTooLong));
        // Exactly 255 octets is fine: 3 * 64 + 62 + root.
        let mut msg = STUB_A_QUERY[..12].to_vec();
        for _ in 0..3 {
            msg.push(63);
            msg.extend_from_slice(&[b'x'; 63]);
        }
        msg.push(61);
        msg.extend_from_slice(&[b'y'; 61]);
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&msg).unwrap().question.unwrap().name.len(), 254);
    }

    #[test]
    fn names_table() {
        assert_eq!(type_name(64), "SVCB");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(255), "ANY");
        assert_eq!(type_name(99), "TYPE99");
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(rcode_name(9), "RCODE9");
        assert!(!DnsError::BadPointer.to_string().is_empty());
    }

    #[test]
    fn fuzz_truncations_and_random_bytes() {
        let seeds = [STUB_A_QUERY, AAAA_RESPONSE, NXDOMAIN_RESPONSE];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            for cut in 0..seed.len() {
                let r = parse(&seed[..cut]);
                // The question must be complete to decode.
                if cut < 12 {
                    assert_eq!(r, Err(DnsError::Truncated));
                }
            }
            for _ in 0..50_000 {
                let mut bytes = seed.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
                let cut = (next() as usize) % (bytes.len() + 1);
                if let Ok(m) = parse(&bytes[..cut]) {
                    if let Some(q) = m.question {
                        assert!(q.name.ends_with('.'));
                        assert!(q.name.len() <= 4 * 255);
                    }
                }
            }
        }
        for _ in 0..50_000 {
            let len = (next() % 80) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(&bytes);
        }
    }
}
