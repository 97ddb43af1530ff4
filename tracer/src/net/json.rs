//! The network family's JSON bodies (kinds `packet_drop`, `dns`,
//! `conntrack_counters`; documented in the README).

use std::net::SocketAddr;

use serde::Serialize;

use super::event::{
    ConntrackEntry, CountersEvent, DnsEvent, DnsQueryRef, DropEvent, NetEvent, NetfilterCause,
    NetnsRef,
};
use crate::{attribution::Attribution, clock::Clock, output::json::ProcessJson};

#[derive(Serialize)]
#[serde(untagged)]
pub enum NetBody<'a> {
    Drop(DropBody<'a>),
    Dns(DnsBody<'a>),
    Counters(CountersBody<'a>),
}

pub fn body<'a>(event: &'a NetEvent, clock: &Clock) -> NetBody<'a> {
    match event {
        NetEvent::Drop(d) => NetBody::Drop(drop_body(d, clock)),
        NetEvent::Dns(d) => NetBody::Dns(dns_body(d, clock)),
        NetEvent::Counters(c) => NetBody::Counters(counters_body(c)),
    }
}

#[derive(Serialize)]
pub struct DropBody<'a> {
    id: u64,
    reason: &'a str,
    meaning: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<NetfilterCause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conntrack: Option<&'a ConntrackEntry>,
    netns: NetnsJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a Attribution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<QueryJson<'a>>,
}

#[derive(Serialize)]
struct NetnsJson<'a> {
    inode: u64,
    host: bool,
    /// The pod whose namespace it is: cgroup, container and pod, flattened.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a Attribution>,
}

fn netns(n: &NetnsRef) -> NetnsJson<'_> {
    NetnsJson {
        inode: n.inode,
        host: n.host,
        owner: n.owner.as_deref(),
    }
}

#[derive(Serialize)]
struct QueryJson<'a> {
    id: u16,
    name: &'a str,
    #[serde(rename = "type")]
    qtype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<ProcessJson<'a>>,
}

#[derive(Serialize)]
pub struct DnsBody<'a> {
    verdict: &'static str,
    id: u16,
    name: &'a str,
    #[serde(rename = "type")]
    qtype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcode: Option<&'a str>,
    client: SocketAddr,
    server: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    retries: u32,
    drops: &'a [u64],
    netns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<ProcessJson<'a>>,
}

#[derive(Serialize)]
pub struct CountersBody<'a> {
    netns: NetnsJson<'a>,
    /// Differences of the namespace's own counters (`conntrack -S`).
    insert_failed: u64,
    clash_resolve: u64,
    drop: u64,
    early_drop: u64,
    /// Drops tracer saw, by cause.
    table_full_drops: u64,
    clash_drops: u64,
    filter_drops: u64,
    /// Resolved clashes the exact hook saw (where the kernel allows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    clash_resolve_seen: Option<u64>,
    listen_overflows: u64,
    listen_drops: u64,
}

fn query<'a>(q: &'a DnsQueryRef, clock: &Clock) -> QueryJson<'a> {
    QueryJson {
        id: q.id,
        name: &q.name,
        qtype: &q.qtype,
        process: q
            .process
            .as_ref()
            .map(|p| crate::output::json::process(p, clock)),
    }
}

fn drop_body<'a>(d: &'a DropEvent, clock: &Clock) -> DropBody<'a> {
    DropBody {
        id: d.id,
        reason: &d.reason,
        meaning: d.meaning,
        cause: d.cause,
        cause_source: d.cause_source,
        protocol: d.protocol.as_deref(),
        src: d.src,
        dst: d.dst,
        conntrack: d.conntrack.as_ref(),
        netns: netns(&d.netns),
        source: d.source.as_deref(),
        dns: d.dns.as_ref().map(|q| query(q, clock)),
    }
}

fn dns_body<'a>(d: &'a DnsEvent, clock: &Clock) -> DnsBody<'a> {
    DnsBody {
        verdict: d.verdict,
        id: d.id,
        name: &d.name,
        qtype: &d.qtype,
        rcode: d.rcode.as_deref(),
        client: d.client,
        server: d.server,
        latency_ms: d.latency_ns.map(|ns| (ns / 1000) as f64 / 1000.0),
        retries: d.retries,
        drops: &d.drops,
        netns: d.netns,
        process: d
            .process
            .as_ref()
            .map(|p| crate::output::json::process(p, clock)),
    }
}

fn counters_body(c: &CountersEvent) -> CountersBody<'_> {
    CountersBody {
        netns: netns(&c.netns),
        insert_failed: c.insert_failed,
        clash_resolve: c.clash_resolve,
        drop: c.drop,
        early_drop: c.early_drop,
        table_full_drops: c.table_full_drops,
        clash_drops: c.clash_drops,
        filter_drops: c.filter_drops,
        clash_resolve_seen: c.clash_resolve_seen,
        listen_overflows: c.listen_overflows,
        listen_drops: c.listen_drops,
    }
}
