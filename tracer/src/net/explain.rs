//! Turns packet records into the network family's events: DNS queries are
//! followed to their answers; drops get their packet, conntrack entry, pod
//! and DNS query; netfilter drops are classified by the namespace's own
//! conntrack counters; and each namespace's counters are reported.
//!
//! Netfilter drops wait for the next flush (every 100 ms): the counters of
//! their namespace are then read once for all of them.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use tracer_common::{packet_event, PacketRecord};

use super::{
    drops::{self, DropReasons},
    event::{
        ConntrackEntry, CountersEvent, DnsEvent, DnsQueryRef, DropEvent, NetEvent, NetfilterCause,
        NetnsRef,
    },
    packet::{self, Transport},
};
use crate::{
    attribution::Attribution,
    conntrack::stats::{self, ConntrackStats},
    dns::{
        tracker::{DnsOutcome, DnsTracker, Observation, Settings, Verdict},
        wire,
    },
    family::Context,
    net::netstat::{self, ListenStats},
    netns::{AddressIndex, NetnsHandle, NetnsId, NetnsIndex},
    process::ProcessRef,
};

const DNS_PORT: u16 = 53;
/// `IPS_CONFIRMED_BIT` and `IPS_DST_NAT_BIT` of `enum ip_conntrack_status`
/// (uapi, stable).
const IPS_CONFIRMED: u64 = 1 << 3;
const IPS_DST_NAT: u64 = 1 << 5;
/// How often every namespace's conntrack counters are read and reported
/// when they changed (and once more at the end).
const COUNTERS_EVERY_NS: u64 = 10_000_000_000;
/// The namespace index (one readlink per process) is rebuilt at most this
/// often when a record names a namespace it does not know.
const REINDEX_EVERY_NS: u64 = 1_000_000_000;
/// The address index (a visit to every namespace) at most this often when
/// a packet comes from an address no pod has: addresses outside the node
/// never will, and drops can come in floods.
const READDRESS_EVERY_NS: u64 = 10_000_000_000;

/// One reading of a namespace's own counters.
#[derive(Debug, Default, Clone, Copy)]
struct Readings {
    /// Zeroes where conntrack is not loaded.
    conntrack: ConntrackStats,
    listen: ListenStats,
}

impl Readings {
    fn delta(&self, earlier: &Self) -> Self {
        Self {
            conntrack: self.conntrack.delta(&earlier.conntrack),
            listen: self.listen.delta(&earlier.listen),
        }
    }
}

/// One namespace's counters as tracer follows them.
#[derive(Debug, Default)]
struct Namespace {
    /// When tracer first looked (zeroes for a namespace created later).
    baseline: Readings,
    /// The last reading, against which new drops are classified.
    last: Readings,
    /// Counter increases not yet matched with a drop tracer saw.
    unexplained_insert_failed: u64,
    unexplained_drop: u64,
    clash_drops: u64,
    table_full_drops: u64,
    filter_drops: u64,
    /// Clashes the exact hook saw the kernel resolve without a drop.
    clashes_resolved_seen: u64,
    /// What the last `conntrack_counters` event said, to report changes only.
    reported: Option<[u64; 10]>,
}

impl Namespace {
    /// Why netfilter dropped a packet, spending the counter increases not
    /// yet matched with a drop. A full table drops before an entry exists; a
    /// clash drops a packet whose new entry lost the race to be inserted;
    /// a drop that moved neither counter was a rule's.
    fn classify(&mut self, seen_by_clash_hook: bool, had_entry: bool) -> NetfilterCause {
        if seen_by_clash_hook {
            self.unexplained_insert_failed = self.unexplained_insert_failed.saturating_sub(1);
            self.clash_drops += 1;
            NetfilterCause::ConntrackClash
        } else if !had_entry && self.unexplained_drop > 0 {
            self.unexplained_drop -= 1;
            self.table_full_drops += 1;
            NetfilterCause::ConntrackTableFull
        } else if had_entry && self.unexplained_insert_failed > 0 {
            self.unexplained_insert_failed -= 1;
            self.clash_drops += 1;
            NetfilterCause::ConntrackClash
        } else {
            self.filter_drops += 1;
            NetfilterCause::FilterRule
        }
    }
}

/// A netfilter drop waiting for its namespace's counters.
struct PendingDrop {
    event: DropEvent,
    /// The packet had a conntrack entry: a full table leaves it without one.
    had_entry: bool,
    skb: u64,
}

/// How many packets the exact clash hook saw dropped are remembered until
/// their `kfree_skb` shows up (it follows at once, on the same CPU).
const CLASH_DROPS_KEPT: usize = 64;

pub struct NetworkFamily {
    reasons: DropReasons,
    /// Queries with the process that sent them, when the kernel context
    /// showed it.
    dns: DnsTracker<Option<ProcessRef>>,
    index: NetnsIndex,
    addresses: AddressIndex,
    indexed_at_ns: u64,
    addressed_at_ns: u64,
    namespaces: HashMap<u64, Namespace>,
    pending: Vec<PendingDrop>,
    next_drop_id: u64,
    counters_at_ns: u64,
    /// The exact clash hook attached: clashes are seen, not inferred.
    clash_hook: bool,
    /// Packets the clash hook saw the kernel decide to drop.
    clash_dropped_skbs: std::collections::VecDeque<u64>,
}

impl NetworkFamily {
    /// Reads every namespace's conntrack counters now: what happens from
    /// here on is what tracer reports.
    pub fn new(reasons: DropReasons, dns: Settings, index: NetnsIndex) -> Self {
        let addresses = AddressIndex::build(&index);
        let mut family = Self {
            reasons,
            dns: DnsTracker::new(dns),
            index,
            addresses,
            indexed_at_ns: crate::clock::Clock::now_mono_ns(),
            addressed_at_ns: crate::clock::Clock::now_mono_ns(),
            namespaces: HashMap::new(),
            pending: Vec::new(),
            next_drop_id: 1,
            counters_at_ns: crate::clock::Clock::now_mono_ns(),
            clash_hook: false,
            clash_dropped_skbs: std::collections::VecDeque::with_capacity(CLASH_DROPS_KEPT),
        };
        let known: Vec<NetnsId> = family.index.iter().map(|(id, _)| id).collect();
        for id in known {
            if let Some(now) = family.read_stats(id) {
                family.namespaces.insert(
                    id.0,
                    Namespace {
                        baseline: now,
                        last: now,
                        ..Namespace::default()
                    },
                );
            }
        }
        family
    }

    /// What the DNS tracker counted, for the closing `dns_summary`: queries,
    /// answers, retries, and the ones it had to forget (`evicted`).
    pub fn dns_stats(&self) -> crate::dns::tracker::DnsStats {
        self.dns.stats()
    }

    /// The exact clash hook (`nf_ct_resolve_clash`) attached.
    pub fn set_clash_hook(&mut self, attached: bool) {
        self.clash_hook = attached;
    }

    /// The kernel resolved a clash (the packet goes on) or gave up (it is
    /// dropped next, and `insert_failed` counts it).
    fn on_clash(&mut self, r: &PacketRecord) {
        const NF_ACCEPT: u32 = 1;
        if r.drop_reason == NF_ACCEPT {
            self.namespaces
                .entry(r.netns as u64)
                .or_default()
                .clashes_resolved_seen += 1;
        } else {
            if self.clash_dropped_skbs.len() == CLASH_DROPS_KEPT {
                self.clash_dropped_skbs.pop_front();
            }
            self.clash_dropped_skbs.push_back(r.skb);
        }
    }

    pub fn handle(
        &mut self,
        r: &PacketRecord,
        sender: Option<ProcessRef>,
        cx: &mut Context<'_>,
        out: &mut Vec<NetEvent>,
    ) {
        let captured = &r.packet[..(r.captured as usize).min(r.packet.len())];
        let parsed = packet::parse(captured).ok();
        let netns = r.netns as u64;
        match r.event {
            packet_event::DNS_SENT => {
                let Some(p) = parsed else {
                    return;
                };
                if let Some(obs) = dns_observation(&p, r.header.ktime_ns, netns) {
                    if !obs.message.is_response {
                        self.dns.on_query(obs, sender);
                    }
                }
            }
            packet_event::DNS_RECEIVED => {
                let Some(obs) = parsed.and_then(|p| dns_observation(&p, r.header.ktime_ns, netns))
                else {
                    return;
                };
                if obs.message.is_response {
                    if let Some(outcome) = self.dns.on_response(obs) {
                        self.report_dns(outcome, cx, out);
                    }
                }
            }
            packet_event::DROP => self.on_drop(r, parsed, cx, out),
            packet_event::CONNTRACK_CLASH => self.on_clash(r),
            _ => {}
        }
    }

    fn on_drop(
        &mut self,
        r: &PacketRecord,
        parsed: Option<packet::Packet<'_>>,
        cx: &mut Context<'_>,
        out: &mut Vec<NetEvent>,
    ) {
        let id_of_drop = self.next_drop_id;
        self.next_drop_id += 1;
        let reason = self.reasons.name(r.drop_reason);
        let conntrack = conntrack_entry(r);
        let netns = r.netns as u64;
        let dns = parsed
            .as_ref()
            .and_then(|p| dns_observation(p, r.header.ktime_ns, netns))
            .and_then(|obs| {
                let id = obs.message.id;
                let question = obs.message.question.clone()?;
                let matched = self.dns.on_drop(obs, id_of_drop);
                Some(DnsQueryRef {
                    id,
                    name: question.name,
                    qtype: wire::type_name(question.qtype).into_owned(),
                    process: matched.and_then(|m| m.context),
                })
            });
        let source_ip = conntrack
            .map(|c| c.original_src.ip())
            .or_else(|| parsed.as_ref().map(|p| p.src.ip()));
        let event = DropEvent {
            mono_ns: r.header.ktime_ns,
            id: id_of_drop,
            meaning: drops::meaning(&reason),
            cause: None,
            cause_source: None,
            protocol: parsed
                .as_ref()
                .map(|p| packet::protocol_name(&p.transport).into_owned()),
            src: parsed.as_ref().map(|p| p.src),
            dst: parsed.as_ref().map(|p| p.dst),
            conntrack,
            netns: self.netns_ref(netns, r.header.ktime_ns, cx),
            source: source_ip.and_then(|ip| self.pod_of_address(ip, r.header.ktime_ns, cx)),
            dns,
            reason,
        };
        if event.reason == "NETFILTER_DROP" {
            self.pending.push(PendingDrop {
                had_entry: r.has_ct != 0,
                skb: r.skb,
                event,
            });
        } else if self.drop_in_scope(&event, cx) {
            out.push(NetEvent::Drop(event));
        }
    }

    /// Classifies the waiting netfilter drops, ends DNS queries nobody
    /// answered, and reports counters that changed. `now_ns` of `u64::MAX`
    /// is the end: everything is reported.
    pub fn flush(&mut self, now_ns: u64, cx: &mut Context<'_>, out: &mut Vec<NetEvent>) {
        if !self.pending.is_empty() {
            self.classify_pending(cx, out);
        }
        let final_flush = now_ns == u64::MAX;
        let expire_at = if final_flush {
            crate::clock::Clock::now_mono_ns()
        } else {
            now_ns
        };
        for outcome in self.dns.expire(expire_at) {
            self.report_dns(outcome, cx, out);
        }
        if final_flush || now_ns.saturating_sub(self.counters_at_ns) >= COUNTERS_EVERY_NS {
            self.counters_at_ns = now_ns;
            self.report_counters(now_ns.min(crate::clock::Clock::now_mono_ns()), cx, out);
        }
    }

    fn classify_pending(&mut self, cx: &mut Context<'_>, out: &mut Vec<NetEvent>) {
        let pending = std::mem::take(&mut self.pending);
        let mut netns: Vec<u64> = pending.iter().map(|p| p.event.netns.inode).collect();
        netns.sort_unstable();
        netns.dedup();
        for id in netns {
            self.refresh_namespace(id);
        }
        for PendingDrop {
            mut event,
            had_entry,
            skb,
        } in pending
        {
            let seen = self.clash_dropped_skbs.iter().position(|s| *s == skb);
            if let Some(at) = seen {
                self.clash_dropped_skbs.remove(at);
            }
            let ns = self.namespaces.entry(event.netns.inode).or_default();
            let cause = ns.classify(seen.is_some(), had_entry);
            event.cause = Some(cause);
            event.cause_source = Some(if seen.is_some() {
                "kernel_hook"
            } else {
                "conntrack_counters"
            });
            event.meaning = cause.describe();
            if self.drop_in_scope(&event, cx) {
                out.push(NetEvent::Drop(event));
            }
        }
    }

    /// Reads a namespace's counters and notes how much they moved since the
    /// last reading: the budget that drops are classified against.
    fn refresh_namespace(&mut self, inode: u64) {
        let Some(now) = self.read_stats(NetnsId(inode)) else {
            return;
        };
        let ns = self.namespaces.entry(inode).or_default();
        let moved = now.conntrack.delta(&ns.last.conntrack);
        ns.unexplained_insert_failed += moved.insert_failed;
        ns.unexplained_drop += moved.drop;
        ns.last = now;
    }

    /// The namespace's conntrack and listen-queue counters, read on a thread
    /// inside it.
    fn read_stats(&mut self, id: NetnsId) -> Option<Readings> {
        let handle = match self.index.lookup(id) {
            Some(entry) => NetnsHandle::open(entry, id).ok(),
            None => None,
        };
        let handle = match handle {
            Some(h) => h,
            None => {
                // A namespace created since the last scan.
                let _ = self.index.refresh();
                NetnsHandle::open(self.index.lookup(id)?, id).ok()?
            }
        };
        let (conntrack, listen) =
            crate::netns::in_netns(&handle, || (stats::read_current(), netstat::read_current()))
                .ok()?;
        Some(Readings {
            conntrack: conntrack.ok().flatten().unwrap_or_default(),
            listen: listen.ok()?,
        })
    }

    fn report_counters(&mut self, mono_ns: u64, cx: &mut Context<'_>, out: &mut Vec<NetEvent>) {
        let refreshed = self.index.refresh().is_ok();
        let ids: Vec<NetnsId> = self.index.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.refresh_namespace(id.0);
        }
        let mut inodes: Vec<u64> = self.namespaces.keys().copied().collect();
        inodes.sort_unstable();
        for inode in inodes {
            let values = {
                let ns = &self.namespaces[&inode];
                let d = ns.last.delta(&ns.baseline);
                [
                    d.conntrack.insert_failed,
                    d.conntrack.clash_resolve,
                    d.conntrack.drop,
                    d.conntrack.early_drop,
                    ns.table_full_drops,
                    ns.clash_drops,
                    ns.filter_drops,
                    ns.clashes_resolved_seen,
                    d.listen.overflows,
                    d.listen.drops,
                ]
            };
            let ns = self.namespaces.get_mut(&inode).expect("present");
            let changed = ns
                .reported
                .map_or(values.iter().any(|v| *v != 0), |r| r != values);
            if !changed {
                continue;
            }
            ns.reported = Some(values);
            let netns = self.netns_ref(inode, mono_ns, cx);
            let event = CountersEvent {
                mono_ns,
                netns,
                insert_failed: values[0],
                clash_resolve: values[1],
                drop: values[2],
                early_drop: values[3],
                table_full_drops: values[4],
                clash_drops: values[5],
                filter_drops: values[6],
                clash_resolve_seen: self.clash_hook.then_some(values[7]),
                listen_overflows: values[8],
                listen_drops: values[9],
            };
            // Without --pid/--pod/--container every namespace is followed.
            let followed = cx.attribution_in_scope(&Attribution::host())
                || event
                    .netns
                    .owner
                    .as_ref()
                    .is_some_and(|o| cx.attribution_in_scope(o));
            if followed {
                out.push(NetEvent::Counters(event));
            }
        }
        // Namespaces that are gone (pods deleted) had their last word above;
        // only a complete scan can tell that they are gone.
        if refreshed {
            let index = &self.index;
            self.namespaces
                .retain(|inode, _| index.lookup(NetnsId(*inode)).is_some());
        }
    }

    fn report_dns(
        &mut self,
        outcome: DnsOutcome<Option<ProcessRef>>,
        cx: &mut Context<'_>,
        out: &mut Vec<NetEvent>,
    ) {
        let followed = match &outcome.context {
            Some(process) => cx.in_scope(process),
            // Sent from the kernel's context every time: shown when
            // nothing is filtered.
            None => cx.attribution_in_scope(&Attribution::host()),
        };
        if !followed {
            return;
        }
        let verdict = match outcome.verdict {
            Verdict::Answered => "answered",
            Verdict::Slow => "slow",
            Verdict::Failed => "failed",
            Verdict::Unanswered => "unanswered",
        };
        out.push(NetEvent::Dns(DnsEvent {
            mono_ns: outcome.answered_ns.unwrap_or(outcome.first_sent_ns),
            verdict,
            id: outcome.id,
            qtype: wire::type_name(outcome.qtype).into_owned(),
            rcode: outcome.rcode.map(|r| wire::rcode_name(r).into_owned()),
            name: outcome.name,
            client: outcome.client,
            server: outcome.server,
            latency_ns: outcome.latency_ns,
            retries: outcome.retries,
            drops: outcome.drops,
            process: outcome.context,
            netns: outcome.netns,
        }));
    }

    fn drop_in_scope(&self, event: &DropEvent, cx: &Context<'_>) -> bool {
        event
            .dns
            .as_ref()
            .and_then(|q| q.process.as_ref())
            .is_some_and(|p| cx.in_scope(p))
            || event
                .source
                .as_ref()
                .is_some_and(|s| cx.attribution_in_scope(s))
            || event
                .netns
                .owner
                .as_ref()
                .is_some_and(|o| cx.attribution_in_scope(o))
            || (event.netns.host && cx.attribution_in_scope(&Attribution::host()))
    }

    /// The namespace and the pod whose processes live in it.
    fn netns_ref(&mut self, inode: u64, now_ns: u64, cx: &mut Context<'_>) -> NetnsRef {
        if self.index.lookup(NetnsId(inode)).is_none() {
            self.reindex(now_ns);
        }
        let host = self.index.host().0 == inode;
        let owner = if host {
            None
        } else {
            self.index.lookup(NetnsId(inode)).and_then(|e| {
                e.pids
                    .iter()
                    .find_map(|pid| cx.attributor.for_pid(*pid).ok())
            })
        };
        NetnsRef { inode, host, owner }
    }

    /// The pod a packet's source address belongs to.
    fn pod_of_address(
        &mut self,
        ip: std::net::IpAddr,
        now_ns: u64,
        cx: &mut Context<'_>,
    ) -> Option<Arc<Attribution>> {
        if self.addresses.lookup(ip).is_none()
            && now_ns.saturating_sub(self.addressed_at_ns) >= READDRESS_EVERY_NS
        {
            self.addressed_at_ns = now_ns;
            self.reindex(now_ns);
            self.addresses = AddressIndex::build(&self.index);
        }
        let netns = self.addresses.lookup(ip)?;
        self.netns_ref(netns.0, now_ns, cx).owner
    }

    fn reindex(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.indexed_at_ns) < REINDEX_EVERY_NS {
            return;
        }
        self.indexed_at_ns = now_ns;
        let _ = self.index.refresh();
    }
}

/// Whether a record's task is the one that sent the packet: a DNS query
/// leaves in its sender's context unless it had to wait (for its next
/// hop's address), and then a softirq sends it, in a kernel thread or in
/// whichever task it interrupted, most likely in another namespace.
pub fn sent_by_current_task(r: &PacketRecord) -> bool {
    const PF_KTHREAD: u32 = 0x0020_0000;
    r.event == packet_event::DNS_SENT
        && r.task_flags & PF_KTHREAD == 0
        && r.task_netns != 0
        && r.task_netns == r.netns
}

/// A DNS message in a UDP packet to or from port 53.
fn dns_observation(p: &packet::Packet<'_>, time_ns: u64, netns: u64) -> Option<Observation> {
    if !matches!(p.transport, Transport::Udp)
        || (p.src.port() != DNS_PORT && p.dst.port() != DNS_PORT)
    {
        return None;
    }
    let message = wire::parse(p.payload).ok()?;
    Some(Observation {
        time_ns,
        netns,
        src: p.src,
        dst: p.dst,
        message,
    })
}

fn conntrack_entry(r: &PacketRecord) -> Option<ConntrackEntry> {
    if r.has_ct == 0 {
        return None;
    }
    let original = packet::decode_ct_tuple(&r.ct_original)?;
    let reply = packet::decode_ct_tuple(&r.ct_reply)?;
    Some(ConntrackEntry {
        original_src: original.src,
        original_dst: original.dst,
        reply_src: reply.src,
        reply_dst: reply.dst,
        dnat: r.ct_status & IPS_DST_NAT != 0
            || reply.src != SocketAddr::new(original.dst.ip(), original.dst.port()),
        confirmed: r.ct_status & IPS_CONFIRMED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(src: &str, dst: &str) -> [u8; tracer_common::CT_TUPLE_LEN] {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut raw = [0u8; tracer_common::CT_TUPLE_LEN];
        let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            unreachable!()
        };
        raw[0..4].copy_from_slice(&s.octets());
        raw[16..18].copy_from_slice(&src.port().to_be_bytes());
        raw[18..20].copy_from_slice(&2u16.to_ne_bytes());
        raw[20..24].copy_from_slice(&d.octets());
        raw[36..38].copy_from_slice(&dst.port().to_be_bytes());
        raw[38] = 17;
        raw
    }

    #[test]
    fn counters_are_spent_one_drop_at_a_time() {
        let mut ns = Namespace {
            unexplained_insert_failed: 1,
            unexplained_drop: 1,
            ..Namespace::default()
        };
        // No entry and `drop` moved: the table was full.
        assert_eq!(
            ns.classify(false, false),
            NetfilterCause::ConntrackTableFull
        );
        // The budget is spent: the next entry-less drop was a rule's.
        assert_eq!(ns.classify(false, false), NetfilterCause::FilterRule);
        assert_eq!(ns.classify(false, true), NetfilterCause::ConntrackClash);
        assert_eq!(ns.classify(false, true), NetfilterCause::FilterRule);
        // The exact hook needs no budget, and spends what the counters owe it.
        ns.unexplained_insert_failed = 1;
        assert_eq!(ns.classify(true, true), NetfilterCause::ConntrackClash);
        assert_eq!(ns.unexplained_insert_failed, 0);
        assert_eq!(
            (ns.table_full_drops, ns.clash_drops, ns.filter_drops),
            (1, 2, 2)
        );
    }

    #[test]
    fn a_service_dnat_shows_in_the_entry() {
        let mut r: PacketRecord = unsafe { std::mem::zeroed() };
        assert!(conntrack_entry(&r).is_none(), "no entry, nothing made up");
        r.has_ct = 1;
        r.ct_status = IPS_CONFIRMED | IPS_DST_NAT;
        r.ct_original = entry("10.244.1.7:41234", "10.96.0.10:53");
        r.ct_reply = entry("10.244.2.3:53", "10.244.1.7:41234");
        let ct = conntrack_entry(&r).unwrap();
        assert!(ct.dnat && ct.confirmed);
        assert_eq!(ct.original_dst.to_string(), "10.96.0.10:53");
        assert_eq!(ct.reply_src.to_string(), "10.244.2.3:53");
        // Without DNAT the reply comes from where the packet went.
        r.ct_status = 0;
        r.ct_reply = entry("10.96.0.10:53", "10.244.1.7:41234");
        let ct = conntrack_entry(&r).unwrap();
        assert!(!ct.dnat && !ct.confirmed);
    }
}
