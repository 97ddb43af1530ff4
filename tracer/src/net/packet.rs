//! Headers of a packet captured by the kernel side of tracer.
//!
//! The eBPF programs copy a bounded prefix (a few hundred bytes) of a packet
//! starting at its network header, so everything here must cope with a copy
//! that ends anywhere: inside the IP header, inside the transport header or
//! inside the payload. Nothing here allocates; a [`Packet`] borrows the
//! captured bytes so the DNS decoder can look at the payload in place.
//!
//! The module also decodes a raw `struct nf_conntrack_tuple`, which the
//! kernel side copies verbatim when it reports conntrack activity (for
//! example the tuple a DNAT rule rewrote a Service address into).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_DCCP: u8 = 33;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_UDPLITE: u8 = 136;

/// Upper bound on IPv6 extension headers we walk before giving up. Real
/// traffic carries at most a handful; the bound keeps a crafted chain from
/// costing more than a few comparisons.
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Transport protocol of a captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    /// TCP with the flags byte (FIN=0x01, SYN=0x02, RST=0x04, PSH=0x08,
    /// ACK=0x10, URG=0x20, ECE=0x40, CWR=0x80), so a drop of a SYN can be told
    /// apart from a drop of data.
    Tcp {
        flags: u8,
    },
    /// Any other IP protocol number; its addresses carry port 0.
    Other(u8),
}

/// The decoded headers of one captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source address; port 0 for protocols without ports.
    pub src: SocketAddr,
    /// Destination address; port 0 for protocols without ports.
    pub dst: SocketAddr,
    pub transport: Transport,
    /// The transport payload bytes that were captured. This may be shorter
    /// than what travelled on the wire because the kernel side copies a
    /// bounded prefix; it never extends past the length the IP (and UDP)
    /// headers declare, so trailing padding is not mistaken for payload.
    pub payload: &'a [u8],
    /// Total length of the IP packet as its header declares it, when known
    /// (IPv6 jumbograms and lengths that do not fit 16 bits give `None`).
    /// Comparing it with the captured length tells a user whether the payload
    /// was cut by the capture.
    pub total_len: Option<u16>,
    /// True for the first fragment of a fragmented datagram: the ports are
    /// real but the payload is only the first part of the message.
    pub fragmented: bool,
}

/// Why a captured packet could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The capture ended inside the named header.
    Truncated(&'static str),
    /// The first nibble is neither 4 nor 6, so this is not an IP packet
    /// (or the kernel side copied from the wrong offset).
    BadVersion(u8),
    /// A header declares a length smaller than its fixed part.
    BadHeaderLength(&'static str),
    /// An IP fragment other than the first: it carries no transport header,
    /// so there are no ports to report. Reassembly is not attempted because
    /// tracer sees single packets, not flows.
    NonFirstFragment,
    /// More IPv6 extension headers than any sane packet carries.
    TooManyExtensionHeaders,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Truncated(what) => write!(f, "capture ends inside the {what} header"),
            PacketError::BadVersion(v) => write!(f, "not an IP packet (version {v})"),
            PacketError::BadHeaderLength(what) => write!(f, "invalid {what} header length"),
            PacketError::NonFirstFragment => f.write_str("non-first IP fragment has no ports"),
            PacketError::TooManyExtensionHeaders => f.write_str("too many IPv6 extension headers"),
        }
    }
}

impl std::error::Error for PacketError {}

/// Human name of a transport for event output.
pub fn protocol_name(transport: &Transport) -> Cow<'static, str> {
    match transport {
        Transport::Udp => Cow::Borrowed("udp"),
        Transport::Tcp { .. } => Cow::Borrowed("tcp"),
        Transport::Other(1) => Cow::Borrowed("icmp"),
        Transport::Other(58) => Cow::Borrowed("icmpv6"),
        Transport::Other(IPPROTO_SCTP) => Cow::Borrowed("sctp"),
        Transport::Other(n) => Cow::Owned(format!("ip proto {n}")),
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Decodes the network and transport headers of a captured packet.
///
/// `bytes` starts at the IP header. Errors are returned for anything that
/// cannot be decoded; the function never panics on arbitrary input.
pub fn parse(bytes: &[u8]) -> Result<Packet<'_>, PacketError> {
    let first = *bytes.first().ok_or(PacketError::Truncated("IP"))?;
    match first >> 4 {
        4 => parse_ipv4(bytes),
        6 => parse_ipv6(bytes),
        v => Err(PacketError::BadVersion(v)),
    }
}

fn parse_ipv4(bytes: &[u8]) -> Result<Packet<'_>, PacketError> {
    if bytes.len() < 20 {
        return Err(PacketError::Truncated("IPv4"));
    }
    // IHL counts 32-bit words and includes options, which routers and some
    // CNIs still add; the transport header starts after them.
    let ihl = usize::from(bytes[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(PacketError::BadHeaderLength("IPv4"));
    }
    if bytes.len() < ihl {
        return Err(PacketError::Truncated("IPv4 options"));
    }
    let total_len = be16(bytes, 2);
    let frag = be16(bytes, 6);
    let more_fragments = frag & 0x2000 != 0;
    if frag & 0x1fff != 0 {
        return Err(PacketError::NonFirstFragment);
    }
    let protocol = bytes[9];
    let src = IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]));
    // GSO/TSO packets captured before segmentation may carry a zero total
    // length; then only the capture bounds the payload.
    let end = if usize::from(total_len) >= ihl {
        bytes.len().min(usize::from(total_len))
    } else {
        bytes.len()
    };
    let l4 = &bytes[ihl..end];
    let mut packet = transport(protocol, src, dst, l4)?;
    packet.total_len = (total_len != 0).then_some(total_len);
    packet.fragmented = more_fragments;
    Ok(packet)
}

fn parse_ipv6(bytes: &[u8]) -> Result<Packet<'_>, PacketError> {
    if bytes.len() < 40 {
        return Err(PacketError::Truncated("IPv6"));
    }
    let payload_len = be16(bytes, 4);
    let mut next = bytes[6];
    let addr = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&bytes[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let src = addr(8);
    let dst = addr(24);
    // A zero payload length means a jumbogram (or a GSO packet); the capture
    // is then the only bound.
    let end = if payload_len != 0 {
        bytes.len().min(40 + usize::from(payload_len))
    } else {
        bytes.len()
    };
    let mut offset = 40;
    let mut fragmented = false;
    let mut walked = 0;
    while matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH
    ) {
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err(PacketError::TooManyExtensionHeaders);
        }
        if end < offset + 8 {
            return Err(PacketError::Truncated("IPv6 extension"));
        }
        let header = &bytes[offset..offset + 8];
        let len = match next {
            IPPROTO_FRAGMENT => {
                if be16(header, 2) & 0xfff8 != 0 {
                    return Err(PacketError::NonFirstFragment);
                }
                fragmented = header[3] & 0x01 != 0;
                8
            }
            // AH counts 32-bit words minus two, unlike the others.
            IPPROTO_AH => (usize::from(header[1]) + 2) * 4,
            _ => (usize::from(header[1]) + 1) * 8,
        };
        next = header[0];
        offset += len;
    }
    if end < offset {
        return Err(PacketError::Truncated("IPv6 extension"));
    }
    let mut packet = transport(next, src, dst, &bytes[offset..end])?;
    packet.total_len = if payload_len == 0 {
        None
    } else {
        payload_len.checked_add(40)
    };
    packet.fragmented = fragmented;
    Ok(packet)
}

/// Decodes the transport header found in `l4`, which is already clamped to
/// the IP-declared length.
fn transport<'a>(
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    l4: &'a [u8],
) -> Result<Packet<'a>, PacketError> {
    let packet = |sport, dport, transport, payload| Packet {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        transport,
        payload,
        total_len: None,
        fragmented: false,
    };
    match protocol {
        IPPROTO_UDP => {
            if l4.len() < 8 {
                return Err(PacketError::Truncated("UDP"));
            }
            let udp_len = usize::from(be16(l4, 4));
            // The UDP length bounds the datagram more tightly than IP when a
            // sender pads; zero (or a bogus short value) leaves IP in charge.
            let end = if udp_len >= 8 {
                l4.len().min(udp_len)
            } else {
                l4.len()
            };
            Ok(packet(
                be16(l4, 0),
                be16(l4, 2),
                Transport::Udp,
                &l4[8..end],
            ))
        }
        IPPROTO_TCP => {
            if l4.len() < 20 {
                return Err(PacketError::Truncated("TCP"));
            }
            let data_offset = usize::from(l4[12] >> 4) * 4;
            if data_offset < 20 {
                return Err(PacketError::BadHeaderLength("TCP"));
            }
            if l4.len() < data_offset {
                return Err(PacketError::Truncated("TCP options"));
            }
            let flags = l4[13];
            Ok(packet(
                be16(l4, 0),
                be16(l4, 2),
                Transport::Tcp { flags },
                &l4[data_offset..],
            ))
        }
        other => Ok(packet(0, 0, Transport::Other(other), l4)),
    }
}

/// A connection as conntrack records it in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CtTuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, ...).
    pub protocol: u8,
}

/// Size of `struct nf_conntrack_tuple` as copied by the kernel side.
pub const CT_TUPLE_LEN: usize = 40;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Decodes a raw `struct nf_conntrack_tuple` (include/net/netfilter/
/// nf_conntrack_tuple.h):
///
/// ```text
///  0  src.u3     union nf_inet_addr (16 bytes; IPv4 uses the first 4)
/// 16  src.u      __be16 port (tcp/udp/sctp/dccp), icmp id otherwise
/// 18  src.l3num  u16, host byte order: AF_INET=2, AF_INET6=10
/// 20  dst.u3     union nf_inet_addr
/// 36  dst.u      __be16 port, or icmp type and code
/// 38  dst.protonum u8
/// 39  dst.dir    u8 (0 original, 1 reply)
/// ```
///
/// Ports are only reported for protocols that have them; for ICMP the union
/// holds the echo id and type/code, which would read as nonsense ports.
/// Returns `None` for an unknown address family or an all-zero tuple, which
/// is what an unset map slot or a failed kernel read looks like.
pub fn decode_ct_tuple(raw: &[u8; CT_TUPLE_LEN]) -> Option<CtTuple> {
    if raw.iter().all(|&b| b == 0) {
        return None;
    }
    // l3num is stored in host order; tracer runs on the same machine as the
    // kernel it reads, so native endianness is the right interpretation.
    let l3num = u16::from_ne_bytes([raw[18], raw[19]]);
    let addr = |at: usize| -> Option<IpAddr> {
        match l3num {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                raw[at],
                raw[at + 1],
                raw[at + 2],
                raw[at + 3],
            ))),
            AF_INET6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&raw[at..at + 16]);
                Some(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => None,
        }
    };
    let src = addr(0)?;
    let dst = addr(20)?;
    let protocol = raw[38];
    let has_ports = matches!(
        protocol,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_DCCP | IPPROTO_UDPLITE
    );
    let (sport, dport) = if has_ports {
        (be16(raw, 16), be16(raw, 36))
    } else {
        (0, 0)
    };
    Some(CtTuple {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS query for example.com A as a stub resolver sends it (id 0x1a2b, RD set).
    const DNS_QUERY: [u8; 29] = [
        0x1a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 7, b'e', b'x',
        b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00, 0x01, 0x00, 0x01,
    ];

    fn ipv4_udp(options: &[u8], payload: &[u8]) -> Vec<u8> {
        let ihl = 20 + options.len();
        let total = ihl + 8 + payload.len();
        let mut p = vec![
            0x40 | (ihl / 4) as u8,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40, // DF
            0,
            64,
            IPPROTO_UDP,
            0,
            0,
            10,
            244,
            1,
            7,
            10,
            96,
            0,
            10,
        ];
        p.extend_from_slice(options);
        let udp_len = 8 + payload.len();
        p.extend_from_slice(&[0xa1, 0xb2, 0, 53, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn ipv6_header(next: u8, payload_len: usize) -> Vec<u8> {
        let mut p = vec![
            0x60,
            0,
            0,
            0,
            (payload_len >> 8) as u8,
            payload_len as u8,
            next,
            64,
        ];
        p.extend_from_slice(&"fd00::1:7".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::a".parse::<Ipv6Addr>().unwrap().octets());
        p
    }

    #[test]
    fn ipv4_udp_dns_query() {
        let bytes = ipv4_udp(&[], &DNS_QUERY);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.src, "10.244.1.7:41394".parse().unwrap());
        assert_eq!(p.dst, "10.96.0.10:53".parse().unwrap());
        assert_eq!(p.transport, Transport::Udp);
        assert_eq!(p.payload, &DNS_QUERY);
        assert_eq!(p.total_len, Some(57));
        assert!(!p.fragmented);
        assert_eq!(protocol_name(&p.transport), "udp");
    }

    #[test]
    fn ipv4_options_are_skipped() {
        // Router alert option padded to a 4-byte boundary.
        let bytes = ipv4_udp(&[0x94, 0x04, 0x00, 0x00], &DNS_QUERY);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.dst.port(), 53);
        assert_eq!(p.payload, &DNS_QUERY);
    }

    #[test]
    fn capture_cut_inside_payload_keeps_what_was_seen() {
        let bytes = ipv4_udp(&[], &DNS_QUERY);
        let p = parse(&bytes[..40]).unwrap();
        assert_eq!(p.payload, &DNS_QUERY[..12]);
        assert_eq!(p.total_len, Some(57));
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut bytes = ipv4_udp(&[], &DNS_QUERY);
        bytes.extend_from_slice(&[0; 6]);
        assert_eq!(parse(&bytes).unwrap().payload, &DNS_QUERY);
    }

    #[test]
    fn ipv4_fragments() {
        let mut first = ipv4_udp(&[], &DNS_QUERY);
        first[6] = 0x20; // MF, offset 0
        assert!(parse(&first).unwrap().fragmented);
        let mut later = ipv4_udp(&[], &DNS_QUERY);
        later[6] = 0x00;
        later[7] = 0xb9; // offset 185 * 8
        assert_eq!(parse(&later), Err(PacketError::NonFirstFragment));
    }

    #[test]
    fn ipv4_tcp_syn() {
        let mut bytes = ipv4_udp(&[], &[]);
        bytes.truncate(20);
        bytes[9] = IPPROTO_TCP;
        bytes[2] = 0;
        bytes[3] = 44;
        // 20-byte header plus a 4-byte MSS option.
        bytes.extend_from_slice(&[
            0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0, 0, 0, 0,
            0x02, 0x04, 0x05, 0xb4,
        ]);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.transport, Transport::Tcp { flags: 0x02 });
        assert_eq!(p.src.port(), 40000);
        assert_eq!(p.dst.port(), 443);
        assert!(p.payload.is_empty());
        assert_eq!(protocol_name(&p.transport), "tcp");
    }

    #[test]
    fn other_protocol_has_port_zero() {
        let mut bytes = ipv4_udp(&[], &[]);
        bytes[9] = 47; // GRE
        let p = parse(&bytes).unwrap();
        assert_eq!(p.transport, Transport::Other(47));
        assert_eq!(p.src.port(), 0);
        assert_eq!(protocol_name(&p.transport), "ip proto 47");
    }

    #[test]
    fn ipv6_with_extension_headers() {
        let mut udp = vec![0xa1, 0xb2, 0, 53, 0, 8 + DNS_QUERY.len() as u8, 0, 0];
        udp.extend_from_slice(&DNS_QUERY);
        // hop-by-hop (8 bytes) -> destination options (16 bytes) -> fragment
        // (first fragment, MF set) -> UDP
        let mut ext = vec![IPPROTO_DSTOPTS, 0, 5, 2, 0, 0, 1, 0];
        ext.extend_from_slice(&[IPPROTO_FRAGMENT, 1, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 8]);
        ext.extend_from_slice(&[IPPROTO_UDP, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        let mut bytes = ipv6_header(IPPROTO_HOPOPTS, ext.len() + udp.len());
        bytes.extend_from_slice(&ext);
        bytes.extend_from_slice(&udp);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.src, "[fd00::1:7]:41394".parse().unwrap());
        assert_eq!(p.dst, "[fd00::a]:53".parse().unwrap());
        assert_eq!(p.payload, &DNS_QUERY);
        assert!(p.fragmented);
        assert_eq!(p.total_len, Some(bytes.len() as u16));
    }

    #[test]
    fn ipv6_non_first_fragment_and_loops() {
        let mut bytes = ipv6_header(IPPROTO_FRAGMENT, 16);
        bytes.extend_from_slice(&[IPPROTO_UDP, 0, 0x05, 0x00, 0, 0, 0, 1]);
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(parse(&bytes), Err(PacketError::NonFirstFragment));

        let mut chain = ipv6_header(IPPROTO_DSTOPTS, 8 * 12);
        for _ in 0..12 {
            chain.extend_from_slice(&[IPPROTO_DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(parse(&chain), Err(PacketError::TooManyExtensionHeaders));
    }

    #[test]
    fn short_and_garbage_input_is_an_error() {
        assert_eq!(parse(&[]), Err(PacketError::Truncated("IP")));
        assert_eq!(parse(&[0x20; 30]), Err(PacketError::BadVersion(2)));
        assert_eq!(
            parse(&[0x41; 30]),
            Err(PacketError::BadHeaderLength("IPv4"))
        );
        let bytes = ipv4_udp(&[], &DNS_QUERY);
        assert_eq!(parse(&bytes[..25]), Err(PacketError::Truncated("UDP")));
        assert!(!PacketError::NonFirstFragment.to_string().is_empty());
    }

    #[test]
    fn fuzz_truncations_and_random_bytes() {
        let mut seeds = vec![ipv4_udp(&[0x94, 4, 0, 0], &DNS_QUERY)];
        let mut v6 = ipv6_header(IPPROTO_HOPOPTS, 8 + 8 + DNS_QUERY.len());
        v6.extend_from_slice(&[IPPROTO_UDP, 0, 0, 0, 0, 0, 0, 0]);
        v6.extend_from_slice(&[0xa1, 0xb2, 0, 53, 0, 37, 0, 0]);
        v6.extend_from_slice(&DNS_QUERY);
        seeds.push(v6);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for cut in 0..=seed.len() {
                let _ = parse(&seed[..cut]);
            }
            for _ in 0..20_000 {
                let mut bytes = seed.clone();
                for _ in 0..(next() % 6 + 1) {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
                let cut = (next() as usize) % (bytes.len() + 1);
                if let Ok(p) = parse(&bytes[..cut]) {
                    assert!(p.payload.len() <= cut);
                }
            }
        }
        for _ in 0..20_000 {
            let len = (next() % 120) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(&bytes);
        }
    }

    fn raw_tuple(
        l3num: u16,
        src: &[u8],
        sport: u16,
        dst: &[u8],
        dport: u16,
        proto: u8,
    ) -> [u8; 40] {
        let mut raw = [0u8; 40];
        raw[..src.len()].copy_from_slice(src);
        raw[16..18].copy_from_slice(&sport.to_be_bytes());
        raw[18..20].copy_from_slice(&l3num.to_ne_bytes());
        raw[20..20 + dst.len()].copy_from_slice(dst);
        raw[36..38].copy_from_slice(&dport.to_be_bytes());
        raw[38] = proto;
        raw[39] = 1;
        raw
    }

    #[test]
    fn conntrack_tuple_ipv4_udp() {
        // The reply tuple of a DNAT'ed DNS query: cluster DNS pod -> client pod.
        let raw = raw_tuple(
            2,
            &[10, 244, 2, 5],
            53,
            &[10, 244, 1, 7],
            41394,
            IPPROTO_UDP,
        );
        let t = decode_ct_tuple(&raw).unwrap();
        assert_eq!(t.src, "10.244.2.5:53".parse().unwrap());
        assert_eq!(t.dst, "10.244.1.7:41394".parse().unwrap());
        assert_eq!(t.protocol, IPPROTO_UDP);
    }

    #[test]
    fn conntrack_tuple_ipv6_icmp_and_invalid() {
        let a = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let b = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let t = decode_ct_tuple(&raw_tuple(10, &a, 6006, &b, 6006, 6)).unwrap();
        assert_eq!(t.src, "[fd00::1]:6006".parse().unwrap());
        let icmp = decode_ct_tuple(&raw_tuple(10, &a, 77, &b, 0x0800, 58)).unwrap();
        assert_eq!(
            (icmp.src.port(), icmp.dst.port(), icmp.protocol),
            (0, 0, 58)
        );
        assert_eq!(decode_ct_tuple(&[0; 40]), None);
        assert_eq!(decode_ct_tuple(&raw_tuple(7, &a, 1, &b, 2, 6)), None);
    }
}
