//! The network family: packet drops, DNS packets and conntrack clashes.

use crate::{Header, Task};

/// Bytes of a packet copied from its network header on: enough for the IP
/// and UDP headers and a DNS question with a long Kubernetes search name.
pub const PACKET_CAPTURE: usize = 256;
/// `struct nf_conntrack_tuple`: two `nf_inet_addr` + ports, l3num, protonum, dir.
pub const CT_TUPLE_LEN: usize = 40;

/// Where a [`PacketRecord`] was taken.
pub mod packet_event {
    /// `skb:kfree_skb` with one of the drop reasons asked for.
    pub const DROP: u32 = 1;
    /// `net:net_dev_queue` of a UDP packet to port 53 sent by a local socket:
    /// a DNS query, in the sending process's context.
    pub const DNS_SENT: u32 = 2;
    /// `net:netif_receive_skb` of a UDP packet from port 53: a DNS response
    /// arriving in a network namespace.
    pub const DNS_RECEIVED: u32 = 3;
    /// `nf_ct_resolve_clash` returned (an optional exact hook, kprobe and
    /// kretprobe, where the kernel allows them): a new conntrack entry found
    /// another of the same tuple already in the table. `drop_reason` holds
    /// its verdict: `NF_ACCEPT` (1, resolved) or `NF_DROP` (0, the packet is
    /// dropped and `insert_failed` counts it).
    pub const CONNTRACK_CLASH: u32 = 4;
}

/// A packet the kernel dropped, or a DNS packet on its way: its headers as
/// captured, the conntrack entry it carried, and the network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketRecord {
    pub header: Header,
    /// The task running at the time: the sender for [`packet_event::DNS_SENT`];
    /// for drops and received packets often whoever the softirq interrupted.
    pub task: Task,
    /// One of [`packet_event`].
    pub event: u32,
    /// `enum skb_drop_reason` (drops only).
    pub drop_reason: u32,
    /// Inode of the network namespace of the packet's device (or socket).
    pub netns: u32,
    pub ifindex: u32,
    /// Kernel address that freed the packet (drops only).
    pub location: u64,
    /// The `sk_buff` itself, to join a clash with the drop that follows it.
    pub skb: u64,
    /// `nf_conn.status` bits; meaningful when `has_ct` is 1.
    pub ct_status: u64,
    pub has_ct: u32,
    /// Valid bytes in `packet`, from the network header on.
    pub captured: u32,
    /// The running task's network namespace and `PF_*` flags: a DNS query
    /// is the task's only when it is no kernel thread and in the packet's
    /// namespace (a packet that waited for its next hop's address leaves
    /// from a softirq, in whatever task that interrupted).
    pub task_netns: u32,
    pub task_flags: u32,
    /// The conntrack entry's original and reply tuples (raw `nf_conntrack_tuple`).
    pub ct_original: [u8; CT_TUPLE_LEN],
    pub ct_reply: [u8; CT_TUPLE_LEN],
    pub packet: [u8; PACKET_CAPTURE],
}

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PacketRecord {}
