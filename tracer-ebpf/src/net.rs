//! Packets: drops the user asked about (`skb:kfree_skb` with a drop reason
//! in the configured set, e.g. NETFILTER_DROP behind a conntrack clash) and
//! DNS on its way (queries as a local socket sends them, responses as they
//! arrive). Each record carries the packet's first bytes from its network
//! header, the conntrack entry's tuples (to show a DNAT) and the network
//! namespace; userspace parses and explains them.
//!
//! `kfree_skb` and the two device hooks see every packet of the node, so
//! each returns after a few reads for anything else.

use aya_ebpf::{
    helpers::{bpf_get_current_task, generated as gen},
    macros::{btf_tracepoint, kprobe, kretprobe, map, raw_tracepoint},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, ProbeContext, RawTracePointContext, RetProbeContext},
};
use tracer_common::{
    packet_event, KernelOffsets, PacketRecord, RecordKind, OFFSET_UNKNOWN, PACKET_CAPTURE,
};

use crate::{
    kernel::{self, read_or_zero, KPtr},
    ring,
};

const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
/// The low bits of `skb->_nfct` are the ctinfo, the rest the `nf_conn *`.
const NFCT_PTRMASK: u64 = !7;

/// When the last DNS query on the node was sent, in jiffies; 0 before the
/// first. One for the node, not per CPU: a response can arrive on any CPU.
/// Written by the send side, read by the receive side.
#[unsafe(no_mangle)]
static mut LAST_DNS_QUERY_JIFFIES: u64 = 0;

/// The kernel's tick count: on 64-bit kernels the verifier inlines the
/// helper into one load of `jiffies`, where a nanosecond clock is a call
/// (measured at about 80 ns a packet on a virtual machine's clock).
#[inline(always)]
fn jiffies() -> u64 {
    // SAFETY: no arguments; available to tracing programs since 5.8.
    unsafe { gen::bpf_jiffies64() }
}

/// The send side saw a DNS query: responses are worth reading for a while.
#[inline(always)]
fn dns_query_sent() {
    // SAFETY: an aligned u64 in the program's .bss; a racing writer on
    // another CPU writes a time just as recent.
    unsafe { core::ptr::write_volatile(&raw mut LAST_DNS_QUERY_JIFFIES, jiffies()) };
}

/// Whether a packet received now could be a response userspace still
/// waits for: only within `dns_response_window_jiffies` of the last query
/// sent. Outside it, the receive side costs two loads instead of two
/// helper reads per packet.
#[inline(always)]
fn dns_response_possible() -> bool {
    // SAFETY: as in `dns_query_sent`.
    let last = unsafe { core::ptr::read_volatile(&raw const LAST_DNS_QUERY_JIFFIES) };
    last != 0 && jiffies().wrapping_sub(last) < kernel::config().dns_response_window_jiffies
}

/// Whether a local socket's datagram may be a DNS query. A connected
/// socket sends to the port it is connected to: one load, and no packet to
/// read, decides for most of what a node sends over UDP (`dport` as the
/// socket keeps it, network byte order; 0 when not connected). A program
/// may still name another address in one `sendmsg` on a connected socket;
/// resolvers do not (glibc, Go, c-ares connect, musl does not), and such a
/// query is then not seen as sent: a drop of it still is.
#[inline(always)]
fn may_be_dns_query(dport: u16) -> bool {
    dport == 0 || dport == DNS_PORT.to_be()
}

#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn kfree_skb(ctx: RawTracePointContext) -> i32 {
    // kfree_skb(skb, location[, reason[, rx_sk]]): the reason came in 5.17.
    // Before, the caller's address says who dropped the packet: netfilter's
    // verdicts are dropped from `nf_hook_slow`. The offset is a constant to
    // the verifier, which then never sees the third argument read on a
    // kernel whose tracepoint has two (it would refuse the attach).
    let location = ctx.arg::<u64>(1);
    let reason = if kernel::offsets().kfree_skb_reason_arg != 0 {
        ctx.arg::<u64>(2) as u32
    } else {
        let config = kernel::config();
        if location < config.drop_caller_start || location >= config.drop_caller_end {
            return 0;
        }
        config.drop_caller_reason
    };
    // One branch per word, not an index: compiled to an index into the
    // stack copy, the bound test and the index can land on different
    // registers, and the verifier then refuses a read it cannot bound.
    let mask = &kernel::config().drop_reasons;
    let word = match reason >> 6 {
        0 => mask[0],
        1 => mask[1],
        2 => mask[2],
        3 => mask[3],
        _ => return 0,
    };
    if word & (1u64 << (reason & 63)) == 0 {
        return 0;
    }
    let skb = ctx.arg::<KPtr>(0);
    let o = kernel::offsets();
    let start = read_or_zero::<KPtr>(skb, o.skb_head)
        + read_or_zero::<u16>(skb, o.skb_network_header) as u64;
    emit(o, skb, start, packet_event::DROP, reason, location);
    0
}

/// A packet handed to a device for transmission. Local sockets' packets
/// still carry their socket here and run in the sender's context, which is
/// how a DNS query gets its process.
///
/// As a BTF tracepoint, the socket, its protocol and the port it is
/// connected to are plain loads: a packet that is not UDP, or that a socket
/// connected to another port sends, costs no helper call; any other UDP
/// packet two (where it starts, and its ports). `skb->head` is read, not
/// loaded: 7.x verifiers type a loaded `unsigned char *` as a pointer,
/// which they then refuse as a helper's argument. Where the kernel refuses
/// tp_btf, `net_dev_queue` below does the same with reads.
#[btf_tracepoint(function = "net_dev_queue")]
pub fn net_dev_queue_btf(ctx: BtfTracePointContext) -> i32 {
    let o = kernel::offsets();
    // Unknown members would be loads the verifier refuses: userspace then
    // attaches the raw tracepoint.
    if kernel::config().dns == 0
        || o.skb_sk == OFFSET_UNKNOWN
        || o.skb_head == OFFSET_UNKNOWN
        || o.skb_network_header == OFFSET_UNKNOWN
    {
        return 0;
    }
    let skb: KPtr = ctx.arg(0);
    let sk: KPtr = kernel::load(skb, o.skb_sk);
    if sk == 0
        || o.sock_protocol != OFFSET_UNKNOWN
            && kernel::load::<u16>(sk, o.sock_protocol) != IPPROTO_UDP as u16
        || o.sock_dport != OFFSET_UNKNOWN && !may_be_dns_query(kernel::load(sk, o.sock_dport))
    {
        return 0;
    }
    let start = read_or_zero::<KPtr>(skb, o.skb_head)
        + kernel::load::<u16>(skb, o.skb_network_header) as u64;
    if udp_ports(start).1 == DNS_PORT {
        dns_query_sent();
        emit(o, skb, start, packet_event::DNS_SENT, 0, 0);
    }
    0
}

#[raw_tracepoint(tracepoint = "net_dev_queue")]
pub fn net_dev_queue(ctx: RawTracePointContext) -> i32 {
    if kernel::config().dns == 0 {
        return 0;
    }
    let skb = ctx.arg::<KPtr>(0);
    let o = kernel::offsets();
    let sk = read_or_zero::<KPtr>(skb, o.skb_sk);
    if sk == 0 {
        return 0;
    }
    // Most of what local sockets send is TCP: one read of the socket's
    // protocol spares reading the packet.
    if o.sock_protocol != OFFSET_UNKNOWN
        && read_or_zero::<u16>(sk, o.sock_protocol) != IPPROTO_UDP as u16
    {
        return 0;
    }
    if o.sock_dport != OFFSET_UNKNOWN && !may_be_dns_query(read_or_zero(sk, o.sock_dport)) {
        return 0;
    }
    let start = read_or_zero::<KPtr>(skb, o.skb_head)
        + read_or_zero::<u16>(skb, o.skb_network_header) as u64;
    if udp_ports(start).1 == DNS_PORT {
        dns_query_sent();
        emit(o, skb, start, packet_event::DNS_SENT, 0, 0);
    }
    0
}

/// A packet received by a device: `skb->data` is at its network header.
/// Read only while a response can still match a query (see
/// `dns_response_possible`).
/// A raw tracepoint on every kernel: as a BTF tracepoint it would still
/// read `skb->data` (see `net_dev_queue_btf`), and save nothing.
#[raw_tracepoint(tracepoint = "netif_receive_skb")]
pub fn netif_receive_skb(ctx: RawTracePointContext) -> i32 {
    if kernel::config().dns == 0 || !dns_response_possible() {
        return 0;
    }
    let skb = ctx.arg::<KPtr>(0);
    let o = kernel::offsets();
    let start = read_or_zero::<KPtr>(skb, o.skb_data);
    if udp_ports(start).0 == DNS_PORT {
        emit(o, skb, start, packet_event::DNS_RECEIVED, 0, 0);
    }
    0
}

/// The packet whose conntrack entry is being resolved against a clashing
/// one, per CPU: the confirm path runs with bottom halves off, so entry and
/// return of `nf_ct_resolve_clash` happen on one CPU with nothing between.
#[map(name = "CLASH_SKB")]
static CLASH_SKB: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `nf_ct_resolve_clash(skb, h, repl_idx)`: two packets of one tuple raced
/// to create their conntrack entry, and this one lost. The exact hook behind
/// the DNS 5-second delay, where the kernel allows kprobes.
#[kprobe]
pub fn nf_ct_resolve_clash(ctx: ProbeContext) -> u32 {
    if let Some(slot) = CLASH_SKB.get_ptr_mut(0) {
        unsafe { *slot = ctx.arg::<KPtr>(0).unwrap_or(0) };
    }
    0
}

#[kretprobe]
pub fn nf_ct_resolve_clash_return(ctx: RetProbeContext) -> u32 {
    let Some(slot) = CLASH_SKB.get_ptr_mut(0) else {
        return 0;
    };
    let skb = unsafe { *slot };
    if skb == 0 {
        return 0;
    }
    unsafe { *slot = 0 };
    let verdict = ctx.ret::<u64>() as u32;
    let o = kernel::offsets();
    let start = read_or_zero::<KPtr>(skb, o.skb_head)
        + read_or_zero::<u16>(skb, o.skb_network_header) as u64;
    emit(o, skb, start, packet_event::CONNTRACK_CLASH, verdict, 0);
    0
}

/// Source and destination port of a UDP packet whose IP header is at
/// `start` (host byte order), or zeroes for anything else. One read of the
/// first 48 bytes covers an IPv4 header without options or an IPv6 header,
/// and the UDP ports after it: these hooks see every packet, and each
/// helper call costs more than the bytes. IPv6 extension headers are not
/// followed: DNS packets do not carry them.
#[inline(always)]
fn udp_ports(start: KPtr) -> (u16, u16) {
    let mut header = core::mem::MaybeUninit::<[u8; 48]>::uninit();
    // SAFETY: the helper writes all 48 bytes, zeroes when the read faults.
    // Not zeroed first: that is a call to memset on every packet.
    let h = unsafe {
        gen::bpf_probe_read_kernel(
            header.as_mut_ptr().cast(),
            48,
            start as *const core::ffi::c_void,
        );
        header.assume_init()
    };
    let ports = match h[0] >> 4 {
        4 if h[9] == IPPROTO_UDP => {
            let header_len = ((h[0] & 0x0f) as u64) * 4;
            if header_len == 20 {
                [h[20], h[21], h[22], h[23]]
            } else {
                // IP options: rare enough for a second read.
                read_or_zero::<[u8; 4]>(start + header_len, 0)
            }
        }
        6 if h[6] == IPPROTO_UDP => [h[40], h[41], h[42], h[43]],
        _ => return (0, 0),
    };
    (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    )
}

#[inline(always)]
fn emit(o: &KernelOffsets, skb: KPtr, start: KPtr, event: u32, reason: u32, location: u64) {
    let kind = match event {
        packet_event::DROP => RecordKind::PacketDrop,
        packet_event::CONNTRACK_CLASH => RecordKind::ConntrackClash,
        _ => RecordKind::Dns,
    };
    let Some(mut entry) = ring::reserve::<PacketRecord>(kind) else {
        return;
    };
    let rec = entry.as_mut_ptr();
    // The packet first, while its length is still in a register: bounds of
    // a value spilled to the stack and filled again are lost on older
    // verifiers (5.10, 6.1), which then refuse it as the read's size.
    // Up to the end of the packet's linear data: tail is an offset from head.
    let end = read_or_zero::<KPtr>(skb, o.skb_head) + read_or_zero::<u32>(skb, o.skb_tail) as u64;
    let mut len = end.wrapping_sub(start);
    if start == 0 || end < start {
        len = 0;
    }
    if len > PACKET_CAPTURE as u64 {
        len = PACKET_CAPTURE as u64;
    }
    unsafe {
        let copied = gen::bpf_probe_read_kernel(
            (*rec).packet.as_mut_ptr().cast(),
            len as u32,
            start as *const core::ffi::c_void,
        );
        (*rec).captured = if copied == 0 { len as u32 } else { 0 };
    }
    let current = unsafe { bpf_get_current_task() };
    let dev = read_or_zero::<KPtr>(skb, o.skb_dev);
    // The device's namespace; a packet without one (freed at a socket) is
    // in its socket's.
    let net = if dev != 0 {
        read_or_zero::<KPtr>(dev, o.netdev_net)
    } else {
        read_or_zero::<KPtr>(read_or_zero::<KPtr>(skb, o.skb_sk), o.sock_net)
    };
    let ct = read_or_zero::<u64>(skb, o.skb_nfct) & NFCT_PTRMASK;
    unsafe {
        (*rec).header = ring::header(kind);
        (*rec).task = kernel::task_identity_with_cgroups(current, o);
        (*rec).task_flags = read_or_zero::<u32>(current, o.task_flags);
        (*rec).task_netns = read_or_zero::<u32>(
            read_or_zero::<KPtr>(read_or_zero::<KPtr>(current, o.task_nsproxy), o.nsproxy_net),
            o.net_inum,
        );
        (*rec).event = event;
        (*rec).drop_reason = reason;
        (*rec).location = location;
        (*rec).skb = skb;
        (*rec).netns = read_or_zero::<u32>(net, o.net_inum);
        (*rec).ifindex = read_or_zero::<u32>(dev, o.netdev_ifindex);
        (*rec).has_ct = (ct != 0 && o.ct_status != OFFSET_UNKNOWN) as u32;
        (*rec).ct_status = read_or_zero::<u64>(ct, o.ct_status);
        // Without an entry both read from near address 0 and come out zeroed.
        kernel::read_bytes_into(&mut (*rec).ct_original, ct, o.ct_original_tuple);
        kernel::read_bytes_into(&mut (*rec).ct_reply, ct, o.ct_reply_tuple);
    }
    if event == packet_event::DNS_SENT || event == packet_event::DNS_RECEIVED {
        ring::submit_quietly(entry);
    } else {
        entry.submit(0);
    }
}
