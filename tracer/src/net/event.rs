//! What the network family reports: packet drops (with the conntrack entry,
//! the pod and the DNS query they carried), DNS lookups that went wrong, and
//! each network namespace's conntrack counters.

use std::{net::SocketAddr, sync::Arc};

use serde::Serialize;

use crate::{
    attribution::Attribution,
    output::{json::Line, Event},
    process::ProcessRef,
};

#[derive(Debug, Clone)]
pub enum NetEvent {
    Drop(DropEvent),
    Dns(DnsEvent),
    Counters(CountersEvent),
}

impl NetEvent {
    pub fn mono_ns(&self) -> u64 {
        match self {
            Self::Drop(d) => d.mono_ns,
            Self::Dns(d) => d.mono_ns,
            Self::Counters(c) => c.mono_ns,
        }
    }

    /// The JSON `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Drop(_) => "packet_drop",
            Self::Dns(_) => "dns",
            Self::Counters(_) => "conntrack_counters",
        }
    }
}

impl Event for NetEvent {
    fn kind(&self) -> &'static str {
        NetEvent::kind(self)
    }

    fn mono_ns(&self) -> u64 {
        NetEvent::mono_ns(self)
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        line.write(
            out,
            NetEvent::kind(self),
            NetEvent::mono_ns(self),
            super::json::body(self, line.clock),
        )
    }

    fn write_text(&self, out: &mut String) {
        super::text::write(out, self);
    }
}

/// Why netfilter dropped a packet, as the namespace's own conntrack
/// statistics confirm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetfilterCause {
    /// Inserting the packet's new conntrack entry failed: another packet
    /// of the same tuple won the race (`insert_failed` moved).
    ConntrackClash,
    /// No room for a new entry (`drop` moved; "nf_conntrack: table full").
    ConntrackTableFull,
    /// Neither counter moved: a rule dropped it.
    FilterRule,
}

impl NetfilterCause {
    pub fn describe(self) -> &'static str {
        match self {
            Self::ConntrackClash => "conntrack insert failed (clash)",
            Self::ConntrackTableFull => "conntrack table full",
            Self::FilterRule => "dropped by a netfilter rule",
        }
    }
}

/// A network namespace and whose it is.
#[derive(Debug, Clone)]
pub struct NetnsRef {
    pub inode: u64,
    /// The node's own namespace (where kube-proxy's rules are).
    pub host: bool,
    /// The pod (or container) whose processes live in it.
    pub owner: Option<Arc<Attribution>>,
}

/// The conntrack entry a dropped packet carried.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConntrackEntry {
    /// As the client sent it.
    pub original_src: SocketAddr,
    pub original_dst: SocketAddr,
    /// As the answer will come back: its source is where DNAT sent it.
    pub reply_src: SocketAddr,
    pub reply_dst: SocketAddr,
    /// The destination was rewritten (a Service's DNAT).
    pub dnat: bool,
    /// The entry was already in the table (only new entries can clash).
    pub confirmed: bool,
}

/// The DNS query inside a packet, and who sent it when tracer saw it leave.
#[derive(Debug, Clone)]
pub struct DnsQueryRef {
    pub id: u16,
    pub name: String,
    pub qtype: String,
    pub process: Option<ProcessRef>,
}

#[derive(Debug, Clone)]
pub struct DropEvent {
    pub mono_ns: u64,
    /// Numbers drops within one run, for `dns.drops` to point at.
    pub id: u64,
    /// The kernel's drop reason ("NETFILTER_DROP").
    pub reason: String,
    pub meaning: &'static str,
    pub cause: Option<NetfilterCause>,
    /// How the cause is known: "kernel_hook" (the exact clash hook saw this
    /// packet lose) or "conntrack_counters" (the namespace's counters moved).
    pub cause_source: Option<&'static str>,
    /// "udp", "tcp", "ip proto 1"; None when the headers were not captured.
    pub protocol: Option<String>,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub conntrack: Option<ConntrackEntry>,
    /// Where the packet was dropped.
    pub netns: NetnsRef,
    /// The pod whose address the packet came from.
    pub source: Option<Arc<Attribution>>,
    pub dns: Option<DnsQueryRef>,
}

/// A DNS lookup worth a line: retried, slow, failed, unanswered, or one of
/// its packets dropped.
#[derive(Debug, Clone)]
pub struct DnsEvent {
    pub mono_ns: u64,
    /// "answered", "slow", "failed", "unanswered".
    pub verdict: &'static str,
    pub id: u16,
    pub name: String,
    pub qtype: String,
    pub rcode: Option<String>,
    pub client: SocketAddr,
    /// Where the query was sent (a Service address before DNAT).
    pub server: SocketAddr,
    pub latency_ns: Option<u64>,
    pub retries: u32,
    /// Ids of the `packet_drop` events of this query.
    pub drops: Vec<u64>,
    /// None when every try left from the kernel's context.
    pub process: Option<ProcessRef>,
    pub netns: u64,
}

/// What one namespace's conntrack (and TCP listen queues) counted since
/// tracer started watching it
/// (or since the namespace was created, if later), as `conntrack -S` in it
/// would show the difference.
#[derive(Debug, Clone)]
pub struct CountersEvent {
    pub mono_ns: u64,
    pub netns: NetnsRef,
    pub insert_failed: u64,
    pub clash_resolve: u64,
    pub drop: u64,
    pub early_drop: u64,
    /// Drops tracer saw and blamed on each cause.
    pub table_full_drops: u64,
    pub clash_drops: u64,
    pub filter_drops: u64,
    /// Clashes the kernel resolved, as the exact hook saw them (None where
    /// the kernel does not allow the hook).
    pub clash_resolve_seen: Option<u64>,
    /// The namespace's TCP listen-queue overflows and drops (`nstat`'s
    /// TcpExtListenOverflows, TcpExtListenDrops) over the same time.
    pub listen_overflows: u64,
    pub listen_drops: u64,
}
