//! Pairs DNS queries with their answers, retries and packet drops.
//!
//! The classic Kubernetes symptom is "DNS sometimes takes exactly 5 s": a
//! resolver sends A and AAAA in parallel from one socket, one of the two is
//! dropped on the node (a conntrack insertion race, a full queue, a
//! NetworkPolicy), and the stub resolver only resends it after its 5 s timeout. Seeing
//! the query, the drop, the retry and the late answer as one story is what
//! lets an SRE name the cause. This module keeps that story per query in
//! userspace, from three kinds of observation fed by the caller:
//!
//! * a query sent by a local socket, with the sending process (`C`),
//! * a response delivered (possibly seen at several hops),
//! * a dropped packet that carried a DNS message.
//!
//! It reports only what is worth a line of output (retried, dropped, slow or
//! failing queries) and counts the rest. Memory is bounded and every query
//! that leaves the table without an answer is counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use crate::dns::wire::DnsMessage;

/// At most this many drop ids are kept per query; a client that keeps
/// resending a dropped query would otherwise grow one entry without bound.
/// [`DnsStats::drops_linked`] still counts every linked drop.
const MAX_DROPS_PER_QUERY: usize = 32;

/// Tunables of a [`DnsTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Answers slower than this are reported even without retries; 1 s is
    /// well above a healthy in-cluster lookup yet below the stub resolver's
    /// 5 s timeout.
    pub slow_threshold: Duration,
    /// A query unanswered for this long (since it was first sent) is
    /// reported as unanswered and forgotten. Stub resolvers give up after
    /// attempts x servers x 5 s, so 30 s means the client has given up too.
    pub give_up_after: Duration,
    /// Upper bound on queries in flight; the oldest is evicted beyond it.
    pub max_pending: usize,
    /// How long a drop is kept waiting for its query. Events from different
    /// CPUs arrive slightly out of order, so a drop in the node's namespace
    /// can be read before the query that the pod's socket sent.
    pub orphan_drop_ttl: Duration,
    /// Upper bound on drops waiting for their query.
    pub max_orphan_drops: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            slow_threshold: Duration::from_secs(1),
            give_up_after: Duration::from_secs(30),
            max_pending: 65_536,
            orphan_drop_ttl: Duration::from_secs(1),
            max_orphan_drops: 4_096,
        }
    }
}

impl Settings {
    /// How long after the last query sent a received packet can still be
    /// a response that [`DnsTracker::on_response`] matches: up to
    /// `give_up_after` after the query, plus the time until the next
    /// [`DnsTracker::expire`] runs. The kernel side reads received packets
    /// only within this window, so a node that sends no DNS pays nothing
    /// for the responses it will never get.
    pub fn response_window(&self) -> Duration {
        self.give_up_after + Duration::from_secs(2)
    }
}

/// One DNS packet seen by tracer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Monotonic time of the observation.
    pub time_ns: u64,
    /// Inode of the network namespace the packet was seen in.
    pub netns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub message: DnsMessage,
}

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Answered within the slow threshold.
    Answered,
    /// Answered, but later than the slow threshold (typically after a retry).
    Slow,
    /// Answered with a failing rcode (SERVFAIL, REFUSED, ...). NXDOMAIN is
    /// not a failure: search-list expansion produces it on every lookup.
    Failed,
    /// No answer was seen before tracer gave up on the query.
    Unanswered,
}

/// The story of one query, reported when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsOutcome<C> {
    /// Network namespace of the socket that sent the query.
    pub netns: u64,
    /// The client socket that sent the query (the first one, if the client
    /// reopened its socket for a retry).
    pub client: SocketAddr,
    /// The server address as the client sent to it, before any DNAT; for a
    /// Service this is the ClusterIP, not the DNS pod.
    pub server: SocketAddr,
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    /// Response code of the answer, if one was seen.
    pub rcode: Option<u8>,
    /// The process context the caller attached to the query.
    pub context: C,
    pub first_sent_ns: u64,
    pub answered_ns: Option<u64>,
    /// From the first transmission to the answer: what the application
    /// waited, retries included.
    pub latency_ns: Option<u64>,
    /// Retransmissions of the same query seen after the first.
    pub retries: u32,
    /// Caller ids of the drops linked to this query.
    pub drops: Vec<u64>,
    pub verdict: Verdict,
}

/// What [`DnsTracker::on_drop`] learned about a dropped DNS packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropMatch<C> {
    /// The context of the query the drop belongs to, so the drop can be
    /// reported with the process that is now waiting for it.
    pub context: C,
    pub first_sent_ns: u64,
    /// Network namespace of the socket that sent the query.
    pub netns: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Retransmissions seen so far.
    pub retries: u32,
}

/// What [`DnsTracker::on_query`] made of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryStatus {
    /// A new query is now pending.
    New,
    /// A retransmission of a pending query; the count includes this one.
    Retry { retries: u32 },
    /// Not a trackable query (a response, or no question section).
    Untracked,
}

/// Counters over the tracker's lifetime, for the periodic summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DnsStats {
    /// Distinct queries tracked (retransmissions excluded).
    pub queries: u64,
    /// Retransmissions of pending queries.
    pub retries: u64,
    /// Queries whose answer was seen (including slow and failed ones).
    pub answered: u64,
    /// Answered later than the slow threshold (and not failed).
    pub slow: u64,
    /// Answered with a failing rcode.
    pub failed: u64,
    /// Given up on after `give_up_after`.
    pub unanswered: u64,
    /// Drops attributed to a query.
    pub drops_linked: u64,
    /// Drops that never found their query.
    pub orphan_drops: u64,
    /// Pending queries pushed out by `max_pending`.
    pub evicted: u64,
    /// Responses that matched no pending query: answers to queries sent
    /// before tracer started or already evicted, the later hops of an
    /// answer that was already matched at an earlier one, and messages
    /// without a question section. Only responses the kernel side read
    /// count: it reads none after [`Settings::response_window`] without a
    /// query.
    pub unmatched_responses: u64,
}

/// A query waiting for its answer.
#[derive(Debug)]
struct Pending<C> {
    netns: u64,
    client: SocketAddr,
    /// Further source ports the same query was resent from, when the
    /// resolver reopens its socket between attempts.
    other_clients: Vec<SocketAddr>,
    server: SocketAddr,
    id: u16,
    qtype: u16,
    name: String,
    context: C,
    first_sent_ns: u64,
    last_sent_ns: u64,
    retries: u32,
    drops: Vec<u64>,
}

/// Lookup key by client socket. The name is not part of the key so lookups
/// need no allocation; (socket, id, type) is nearly unique already and the
/// name is compared on the few candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SocketKey {
    client: SocketAddr,
    id: u16,
    qtype: u16,
}

/// Lookup key by client IP, for retries sent from a fresh source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct HostKey {
    ip: IpAddr,
    id: u16,
    qtype: u16,
}

/// A drop seen before its query.
#[derive(Debug)]
struct OrphanDrop {
    time_ns: u64,
    client: SocketAddr,
    id: u16,
    qtype: u16,
    name: String,
    drop_id: u64,
}

/// Tracks DNS queries from send to answer, retry, drop or give-up.
///
/// `C` is whatever the caller knows about the sending process; it is
/// handed back with outcomes and drop matches.
#[derive(Debug)]
pub struct DnsTracker<C> {
    settings: Settings,
    /// Pending queries in arrival order, so the oldest is first for both
    /// expiry and eviction.
    pending: BTreeMap<u64, Pending<C>>,
    next_seq: u64,
    by_socket: HashMap<SocketKey, Vec<u64>>,
    by_host: HashMap<HostKey, Vec<u64>>,
    orphans: VecDeque<OrphanDrop>,
    stats: DnsStats,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn is_failure(rcode: u8) -> bool {
    // NOERROR and NXDOMAIN are both definite answers.
    rcode != 0 && rcode != 3
}

/// What the caller knows of who sent a query. A query sent from the
/// kernel's context (the first packet to a next hop waits for its address
/// and leaves from a softirq) has no process; its retry usually does.
pub trait QueryContext: Clone {
    fn is_known(&self) -> bool {
        true
    }
}

impl QueryContext for &str {}

impl<T: Clone> QueryContext for Option<T> {
    fn is_known(&self) -> bool {
        self.is_some()
    }
}

impl<C: QueryContext> DnsTracker<C> {
    pub fn new(settings: Settings) -> Self {
        DnsTracker {
            settings,
            pending: BTreeMap::new(),
            next_seq: 0,
            by_socket: HashMap::new(),
            by_host: HashMap::new(),
            orphans: VecDeque::new(),
            stats: DnsStats::default(),
        }
    }

    pub fn stats(&self) -> DnsStats {
        self.stats
    }

    /// Number of queries currently waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Records a query sent by a local socket.
    pub fn on_query(&mut self, obs: Observation, context: C) -> QueryStatus {
        if obs.message.is_response {
            return QueryStatus::Untracked;
        }
        let Some(question) = obs.message.question else {
            return QueryStatus::Untracked;
        };
        self.prune_orphans(obs.time_ns);
        let id = obs.message.id;
        let qtype = question.qtype;
        let name = question.name;
        let socket_key = SocketKey {
            client: obs.src,
            id,
            qtype,
        };
        let host_key = HostKey {
            ip: obs.src.ip(),
            id,
            qtype,
        };

        let same_socket = self.find(&self.by_socket, &socket_key, Some(obs.netns), &name);
        let status = if let Some(seq) = same_socket.or_else(|| {
            // With the resolv.conf option `single-request-reopen` the retry
            // comes from a new source port.
            self.find(&self.by_host, &host_key, Some(obs.netns), &name)
        }) {
            let entry = self.pending.get_mut(&seq).expect("index points at entry");
            if !entry.context.is_known() && context.is_known() {
                entry.context = context;
            }
            entry.retries += 1;
            entry.last_sent_ns = entry.last_sent_ns.max(obs.time_ns);
            let retries = entry.retries;
            if same_socket.is_none() {
                entry.other_clients.push(obs.src);
                self.by_socket.entry(socket_key).or_default().push(seq);
            }
            self.stats.retries += 1;
            QueryStatus::Retry { retries }
        } else {
            if self.pending.len() >= self.settings.max_pending.max(1) {
                if let Some((_, oldest)) = self.pending.pop_first() {
                    self.unindex(&oldest);
                    self.stats.evicted += 1;
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.by_socket.entry(socket_key).or_default().push(seq);
            self.by_host.entry(host_key).or_default().push(seq);
            self.pending.insert(
                seq,
                Pending {
                    netns: obs.netns,
                    client: obs.src,
                    other_clients: Vec::new(),
                    server: obs.dst,
                    id,
                    qtype,
                    name,
                    context,
                    first_sent_ns: obs.time_ns,
                    last_sent_ns: obs.time_ns,
                    retries: 0,
                    drops: Vec::new(),
                },
            );
            self.stats.queries += 1;
            QueryStatus::New
        };
        self.adopt_orphans(socket_key);
        status
    }

    /// Records a response seen at some hop. Returns an outcome when the
    /// response completes a query worth reporting.
    pub fn on_response(&mut self, obs: Observation) -> Option<DnsOutcome<C>> {
        let question = match &obs.message.question {
            Some(q) if obs.message.is_response => q,
            _ => {
                self.stats.unmatched_responses += 1;
                return None;
            }
        };
        let key = SocketKey {
            client: obs.dst,
            id: obs.message.id,
            qtype: question.qtype,
        };
        // Only an answer in the client's own namespace counts: one seen at
        // an earlier hop (the node's namespace) can still be dropped on the
        // way to the pod, and the client would then still be waiting.
        let found = self.find(&self.by_socket, &key, Some(obs.netns), &question.name);
        let Some(seq) = found else {
            self.stats.unmatched_responses += 1;
            return None;
        };
        let entry = self.pending.remove(&seq).expect("index points at entry");
        self.unindex(&entry);

        let latency = obs.time_ns.saturating_sub(entry.first_sent_ns);
        let rcode = obs.message.rcode;
        let verdict = if is_failure(rcode) {
            Verdict::Failed
        } else if latency >= nanos(self.settings.slow_threshold) {
            Verdict::Slow
        } else {
            Verdict::Answered
        };
        self.stats.answered += 1;
        match verdict {
            Verdict::Failed => self.stats.failed += 1,
            Verdict::Slow => self.stats.slow += 1,
            _ => {}
        }
        let worth_reporting =
            verdict != Verdict::Answered || entry.retries > 0 || !entry.drops.is_empty();
        worth_reporting.then(|| outcome(entry, Some(rcode), Some(obs.time_ns), verdict))
    }

    /// Links a dropped DNS packet to its query. `drop_id` is the caller's
    /// handle for the drop record. Returns the query's context when the
    /// query is known; otherwise the drop waits briefly for it.
    pub fn on_drop(&mut self, obs: Observation, drop_id: u64) -> Option<DropMatch<C>> {
        self.prune_orphans(obs.time_ns);
        let question = obs.message.question?;
        // A dropped response is attributed to the query it answers. The
        // namespace is ignored: drops happen on the node while the query was
        // sent from the pod, and DNAT rewrites only the server side.
        let client = if obs.message.is_response {
            obs.dst
        } else {
            obs.src
        };
        let key = SocketKey {
            client,
            id: obs.message.id,
            qtype: question.qtype,
        };
        if let Some(seq) = self.find(&self.by_socket, &key, None, &question.name) {
            let entry = self.pending.get_mut(&seq).expect("index points at entry");
            if entry.drops.len() < MAX_DROPS_PER_QUERY {
                entry.drops.push(drop_id);
            }
            self.stats.drops_linked += 1;
            return Some(DropMatch {
                context: entry.context.clone(),
                first_sent_ns: entry.first_sent_ns,
                netns: entry.netns,
                client: entry.client,
                server: entry.server,
                retries: entry.retries,
            });
        }
        if self.orphans.len() >= self.settings.max_orphan_drops.max(1) {
            self.orphans.pop_front();
            self.stats.orphan_drops += 1;
        }
        self.orphans.push_back(OrphanDrop {
            time_ns: obs.time_ns,
            client,
            id: key.id,
            qtype: key.qtype,
            name: question.name,
            drop_id,
        });
        None
    }

    /// Gives up on queries sent `give_up_after` or longer before `now_ns`
    /// and returns them as unanswered. Call it periodically.
    pub fn expire(&mut self, now_ns: u64) -> Vec<DnsOutcome<C>> {
        self.prune_orphans(now_ns);
        let give_up = nanos(self.settings.give_up_after);
        let mut expired = Vec::new();
        // Arrival order is first-sent order up to small cross-CPU skew, so
        // stopping at the first young entry only delays an older one by
        // that skew.
        while let Some(entry) = self.pending.first_entry() {
            if now_ns.saturating_sub(entry.get().first_sent_ns) < give_up {
                break;
            }
            let entry = entry.remove();
            self.unindex(&entry);
            self.stats.unanswered += 1;
            expired.push(outcome(entry, None, None, Verdict::Unanswered));
        }
        expired
    }

    /// Finds a pending query under `key` with the given name, in `netns`
    /// when given. Candidates are in arrival order, so the oldest wins.
    fn find<K: std::hash::Hash + Eq>(
        &self,
        index: &HashMap<K, Vec<u64>>,
        key: &K,
        netns: Option<u64>,
        name: &str,
    ) -> Option<u64> {
        index.get(key)?.iter().copied().find(|seq| {
            self.pending
                .get(seq)
                .is_some_and(|p| p.name == name && netns.is_none_or(|n| n == p.netns))
        })
    }

    /// Removes every index entry pointing at a query leaving the table.
    fn unindex(&mut self, entry: &Pending<C>) {
        for &client in std::iter::once(&entry.client).chain(&entry.other_clients) {
            let socket_key = SocketKey {
                client,
                id: entry.id,
                qtype: entry.qtype,
            };
            remove_dead(&mut self.by_socket, socket_key, &self.pending);
            let host_key = HostKey {
                ip: client.ip(),
                id: entry.id,
                qtype: entry.qtype,
            };
            remove_dead(&mut self.by_host, host_key, &self.pending);
        }
    }

    /// Links drops that arrived before the query sent from `key.client`.
    fn adopt_orphans(&mut self, key: SocketKey) {
        if self.orphans.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.orphans.len() {
            let o = &self.orphans[i];
            if o.client == key.client && o.id == key.id && o.qtype == key.qtype {
                let seq = self.find(&self.by_socket, &key, None, &o.name);
                if let Some(entry) = seq.and_then(|seq| self.pending.get_mut(&seq)) {
                    if entry.drops.len() < MAX_DROPS_PER_QUERY {
                        entry.drops.push(o.drop_id);
                    }
                    self.stats.drops_linked += 1;
                    self.orphans.remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Forgets drops that waited longer than `orphan_drop_ttl`.
    fn prune_orphans(&mut self, now_ns: u64) {
        let ttl = nanos(self.settings.orphan_drop_ttl);
        while let Some(o) = self.orphans.front() {
            if now_ns.saturating_sub(o.time_ns) <= ttl {
                break;
            }
            self.orphans.pop_front();
            self.stats.orphan_drops += 1;
        }
    }
}

/// Drops index entries whose query is gone (the caller already removed it
/// from `pending`), and the key once nothing is left under it.
fn remove_dead<K: std::hash::Hash + Eq, V>(
    index: &mut HashMap<K, Vec<u64>>,
    key: K,
    pending: &BTreeMap<u64, V>,
) {
    if let Some(seqs) = index.get_mut(&key) {
        seqs.retain(|seq| pending.contains_key(seq));
        if seqs.is_empty() {
            index.remove(&key);
        }
    }
}

fn outcome<C>(
    entry: Pending<C>,
    rcode: Option<u8>,
    answered_ns: Option<u64>,
    verdict: Verdict,
) -> DnsOutcome<C> {
    DnsOutcome {
        netns: entry.netns,
        client: entry.client,
        server: entry.server,
        id: entry.id,
        name: entry.name,
        qtype: entry.qtype,
        rcode,
        context: entry.context,
        first_sent_ns: entry.first_sent_ns,
        answered_ns,
        latency_ns: answered_ns.map(|t| t.saturating_sub(entry.first_sent_ns)),
        retries: entry.retries,
        drops: entry.drops,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire;

    const POD_NS: u64 = 4_026_532_001;
    const NODE_NS: u64 = 4_026_531_992;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * S;
    const A: u16 = 1;
    const AAAA: u16 = 28;

    /// Builds DNS bytes the way a stub resolver or server lays them out and
    /// decodes them, so the tracker sees what the wire parser produces.
    fn message(id: u16, response: bool, rcode: u8, qtype: u16, name: &str) -> DnsMessage {
        let flags: u16 = if response {
            0x8180 | u16::from(rcode)
        } else {
            0x0100
        };
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0, u8::from(response && rcode == 0), 0, 0, 0, 0]);
        for label in name.trim_end_matches('.').split('.') {
            b.push(label.len() as u8);
            b.extend_from_slice(label.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        wire::parse(&b).unwrap()
    }

    fn client() -> SocketAddr {
        "10.244.1.7:41394".parse().unwrap()
    }
    fn service() -> SocketAddr {
        "10.96.0.10:53".parse().unwrap()
    }
    fn dns_pod() -> SocketAddr {
        "10.244.2.5:53".parse().unwrap()
    }

    fn query(t: u64, ns: u64, src: SocketAddr, id: u16, qtype: u16) -> Observation {
        Observation {
            time_ns: t,
            netns: ns,
            src,
            dst: service(),
            message: message(id, false, 0, qtype, "example.com."),
        }
    }

    fn response(t: u64, ns: u64, dst: SocketAddr, id: u16, qtype: u16, rcode: u8) -> Observation {
        Observation {
            time_ns: t,
            netns: ns,
            src: dns_pod(),
            dst,
            message: message(id, true, rcode, qtype, "example.com."),
        }
    }

    /// The query as the node sees it after DNAT to the DNS pod.
    fn dropped_query(t: u64, id: u16, qtype: u16) -> Observation {
        Observation {
            dst: dns_pod(),
            ..query(t, NODE_NS, client(), id, qtype)
        }
    }

    fn tracker() -> DnsTracker<&'static str> {
        DnsTracker::new(Settings::default())
    }

    #[test]
    fn parallel_a_aaaa_with_dropped_aaaa_is_slow() {
        let mut t = tracker();
        assert_eq!(
            t.on_query(query(T0, POD_NS, client(), 0x1a2b, A), "curl(5512)"),
            QueryStatus::New
        );
        assert_eq!(
            t.on_query(query(T0 + 1, POD_NS, client(), 0x1a2c, AAAA), "curl(5512)"),
            QueryStatus::New
        );
        // The AAAA is dropped on the node (conntrack race): linked at once.
        let link = t
            .on_drop(dropped_query(T0 + MS / 10, 0x1a2c, AAAA), 77)
            .unwrap();
        assert_eq!(link.context, "curl(5512)");
        assert_eq!((link.first_sent_ns, link.netns), (T0 + 1, POD_NS));
        assert_eq!(link.server, service());
        // The A answer is fast and unremarkable.
        assert_eq!(
            t.on_response(response(T0 + 2 * MS, POD_NS, client(), 0x1a2b, A, 0)),
            None
        );
        // The stub resolver resends the AAAA with the same id after 5 s.
        assert_eq!(
            t.on_query(
                query(T0 + 5 * S, POD_NS, client(), 0x1a2c, AAAA),
                "curl(5512)"
            ),
            QueryStatus::Retry { retries: 1 }
        );
        let out = t
            .on_response(response(T0 + 5 * S + MS, POD_NS, client(), 0x1a2c, AAAA, 0))
            .unwrap();
        assert_eq!(out.verdict, Verdict::Slow);
        assert_eq!((out.retries, out.drops.clone()), (1, vec![77]));
        assert_eq!(out.latency_ns, Some(5 * S + MS - 1));
        assert_eq!((out.client, out.server), (client(), service()));
        assert_eq!(
            (out.name.as_str(), out.qtype, out.rcode),
            ("example.com.", AAAA, Some(0))
        );
        let s = t.stats();
        assert_eq!((s.queries, s.retries, s.answered, s.slow), (2, 1, 2, 1));
        assert_eq!((s.drops_linked, s.orphan_drops), (1, 0));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn fast_answer_is_counted_not_reported() {
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 7, A), "dig");
        assert_eq!(
            t.on_response(response(T0 + MS, POD_NS, client(), 7, A, 0)),
            None
        );
        // A fast NXDOMAIN from search-list expansion is not a failure.
        t.on_query(query(T0, POD_NS, client(), 8, A), "dig");
        assert_eq!(
            t.on_response(response(T0 + MS, POD_NS, client(), 8, A, 3)),
            None
        );
        let s = t.stats();
        assert_eq!((s.answered, s.failed, s.slow), (2, 0, 0));
    }

    #[test]
    fn servfail_is_reported_as_failed() {
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 9, A), "dig");
        let out = t
            .on_response(response(T0 + MS, POD_NS, client(), 9, A, 2))
            .unwrap();
        assert_eq!((out.verdict, out.rcode), (Verdict::Failed, Some(2)));
        assert_eq!(t.stats().failed, 1);
    }

    #[test]
    fn a_retry_names_the_sender_the_first_try_could_not() {
        let mut t: DnsTracker<Option<&str>> = DnsTracker::new(Settings::default());
        t.on_query(query(T0, POD_NS, client(), 0x1a2b, AAAA), None);
        t.on_query(
            query(T0 + 5 * S, POD_NS, client(), 0x1a2b, AAAA),
            Some("curl(5512)"),
        );
        t.on_query(query(T0 + 10 * S, POD_NS, client(), 0x1a2b, AAAA), None);
        let out = t
            .on_response(response(
                T0 + 10 * S + MS,
                POD_NS,
                client(),
                0x1a2b,
                AAAA,
                0,
            ))
            .unwrap();
        assert_eq!(out.context, Some("curl(5512)"));
    }

    #[test]
    fn response_seen_at_two_hops_completes_once() {
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 5, A), "dig");
        // First seen in the node namespace on its way back to the pod: not
        // yet an answer, it can still be dropped before the pod.
        assert_eq!(
            t.on_response(response(T0 + 2 * S, NODE_NS, client(), 5, A, 0)),
            None
        );
        let out = t.on_response(response(T0 + 2 * S + 1, POD_NS, client(), 5, A, 0));
        assert_eq!(out.unwrap().answered_ns, Some(T0 + 2 * S + 1));
        assert_eq!(
            t.on_response(response(T0 + 2 * S + 2, POD_NS, client(), 5, A, 0)),
            None
        );
        let s = t.stats();
        assert_eq!((s.answered, s.unmatched_responses), (1, 2));
    }

    #[test]
    fn same_namespace_match_wins() {
        // Two pods each query a node-local cache over loopback with the same
        // port and id; the response in the second namespace is for the second.
        let lo: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let mut t = tracker();
        t.on_query(query(T0, 1, lo, 3, A), "first");
        t.on_query(query(T0 + MS, 2, lo, 3, A), "second");
        let out = t.on_response(response(T0 + 3 * S, 2, lo, 3, A, 0)).unwrap();
        assert_eq!(out.context, "second");
        assert_eq!(t.pending(), 1);
    }

    #[test]
    fn drop_before_query_is_linked() {
        let mut t = tracker();
        assert_eq!(t.on_drop(dropped_query(T0, 0x1a2c, AAAA), 91), None);
        t.on_query(query(T0 + 1, POD_NS, client(), 0x1a2c, AAAA), "curl(5512)");
        assert_eq!(t.stats().drops_linked, 1);
        t.on_query(
            query(T0 + 5 * S, POD_NS, client(), 0x1a2c, AAAA),
            "curl(5512)",
        );
        let out = t
            .on_response(response(T0 + 5 * S + MS, POD_NS, client(), 0x1a2c, AAAA, 0))
            .unwrap();
        assert_eq!((out.drops, out.retries), (vec![91], 1));
        assert_eq!(t.stats().orphan_drops, 0);
    }

    #[test]
    fn dropped_response_is_linked_to_its_query() {
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 4, A), "dig");
        let dropped = Observation {
            netns: NODE_NS,
            ..response(T0 + MS, NODE_NS, client(), 4, A, 0)
        };
        assert_eq!(t.on_drop(dropped, 5).unwrap().context, "dig");
    }

    #[test]
    fn unmatched_drop_becomes_an_orphan() {
        let mut t = tracker();
        assert_eq!(t.on_drop(dropped_query(T0, 1, A), 1), None);
        assert!(t.expire(T0 + S).is_empty());
        assert_eq!(t.stats().orphan_drops, 0);
        t.expire(T0 + 2 * S);
        assert_eq!(t.stats().orphan_drops, 1);
        // A query arriving after the orphan expired is not linked.
        t.on_query(query(T0 + 2 * S, POD_NS, client(), 1, A), "dig");
        assert_eq!(t.stats().drops_linked, 0);
    }

    #[test]
    fn retry_from_a_reopened_socket() {
        let reopened: SocketAddr = "10.244.1.7:51000".parse().unwrap();
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 0x99, AAAA), "wget");
        assert_eq!(
            t.on_query(query(T0 + 5 * S, POD_NS, reopened, 0x99, AAAA), "wget"),
            QueryStatus::Retry { retries: 1 }
        );
        let out = t
            .on_response(response(T0 + 5 * S + MS, POD_NS, reopened, 0x99, AAAA, 0))
            .unwrap();
        assert_eq!(
            (out.client, out.retries, out.verdict),
            (client(), 1, Verdict::Slow)
        );
        assert_eq!(t.pending(), 0);
        assert!(t.by_socket.is_empty() && t.by_host.is_empty());
    }

    #[test]
    fn expiry_reports_unanswered() {
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 1, A), "dig");
        t.on_query(query(T0 + 10 * S, POD_NS, client(), 2, A), "dig");
        assert!(t.expire(T0 + 29 * S).is_empty());
        let out = t.expire(T0 + 30 * S);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].id, out[0].verdict), (1, Verdict::Unanswered));
        assert_eq!(
            (out[0].answered_ns, out[0].latency_ns, out[0].rcode),
            (None, None, None)
        );
        assert_eq!(t.stats().unanswered, 1);
        assert_eq!(t.pending(), 1);
        assert_eq!(
            t.on_response(response(T0 + 31 * S, POD_NS, client(), 1, A, 0)),
            None
        );
        assert_eq!(t.stats().unmatched_responses, 1);
    }

    #[test]
    fn eviction_is_counted() {
        let mut t = DnsTracker::new(Settings {
            max_pending: 2,
            ..Settings::default()
        });
        for id in 1..=3 {
            t.on_query(query(T0 + u64::from(id), POD_NS, client(), id, A), "dig");
        }
        assert_eq!((t.pending(), t.stats().evicted), (2, 1));
        // The oldest is gone; the others still complete.
        assert_eq!(
            t.on_response(response(T0 + 2 * S, POD_NS, client(), 1, A, 0)),
            None
        );
        assert_eq!(t.stats().unmatched_responses, 1);
        assert!(t
            .on_response(response(T0 + 2 * S, POD_NS, client(), 3, A, 0))
            .is_some());
    }

    #[test]
    fn responses_and_nameless_messages_are_not_queries() {
        let mut t = tracker();
        let r = response(T0, POD_NS, client(), 1, A, 0);
        assert_eq!(t.on_query(r, "dig"), QueryStatus::Untracked);
        let mut q = query(T0, POD_NS, client(), 1, A);
        q.message.question = None;
        assert_eq!(t.on_query(q, "dig"), QueryStatus::Untracked);
        assert_eq!(t.stats().queries, 0);
    }

    #[test]
    fn different_name_is_a_different_query() {
        let mut t = tracker();
        t.on_query(query(T0, POD_NS, client(), 1, A), "dig");
        let mut other = query(T0 + MS, POD_NS, client(), 1, A);
        other.message = message(1, false, 0, A, "example.com.svc.cluster.local.");
        assert_eq!(t.on_query(other, "dig"), QueryStatus::New);
        assert_eq!(t.pending(), 2);
    }
}
