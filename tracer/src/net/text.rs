//! The network family's console lines.

use std::fmt::Write as _;

use crate::output::escape::Escaped;

use super::event::{CountersEvent, DnsEvent, DropEvent, NetEvent, NetnsRef};

pub fn write(out: &mut String, event: &NetEvent) {
    match event {
        NetEvent::Drop(d) => drop_line(out, d),
        NetEvent::Dns(d) => dns_line(out, d),
        NetEvent::Counters(c) => counters_line(out, c),
    }
}

fn netns(out: &mut String, n: &NetnsRef) {
    match &n.owner {
        _ if n.host => out.push_str("in the node's netns"),
        Some(owner) if !owner.label().is_empty() => {
            let _ = write!(out, "in netns of {}", Escaped(owner.label()));
        }
        _ => {
            let _ = write!(out, "in netns {}", n.inode);
        }
    }
}

/// `conntrack insert failed (clash): dropped UDP 10.244.1.7:41234 ->
/// 10.96.0.10:53 (DNAT to 10.244.2.3:53) in the node's netns`, then the DNS
/// query it carried on a second line.
fn drop_line(out: &mut String, d: &DropEvent) {
    match d.cause {
        Some(cause) => out.push_str(cause.describe()),
        None => out.push_str(d.meaning),
    }
    let protocol = d.protocol.as_deref().unwrap_or("packet").to_uppercase();
    // The conntrack entry shows the packet as sent, before DNAT.
    match (&d.conntrack, d.src, d.dst) {
        (Some(ct), _, _) => {
            let _ = write!(
                out,
                ": dropped {protocol} {} -> {}",
                ct.original_src, ct.original_dst
            );
            if ct.dnat {
                let _ = write!(out, " (DNAT to {})", ct.reply_src);
            }
        }
        (None, Some(src), Some(dst)) => {
            let _ = write!(out, ": dropped {protocol} {src} -> {dst}");
        }
        _ => out.push_str(": dropped a packet"),
    }
    out.push(' ');
    netns(out, &d.netns);
    let _ = write!(out, " [{} #{}]", d.reason, d.id);
    if let Some(source) = d.source.as_ref().filter(|s| !s.label().is_empty()) {
        let _ = write!(out, " from {}", Escaped(source.label()));
    }
    out.push('\n');
    if let Some(q) = &d.dns {
        let _ = write!(
            out,
            "  DNS query {:#06x} {} {}",
            q.id,
            q.qtype,
            Escaped(&q.name)
        );
        if let Some(p) = &q.process {
            let _ = write!(out, " from {}({})", Escaped(&p.comm), p.pid);
            let label = p.attribution.label();
            if !label.is_empty() {
                let _ = write!(out, " [{}]", Escaped(&label));
            }
        }
        out.push_str("; the resolver will retry after its timeout (5 s by default)\n");
    }
}

/// `DNS query 0x1a2b AAAA example.com. from curl(5512) [pod default/web]
/// answered after 5.004 s (1 retry)`.
fn dns_line(out: &mut String, d: &DnsEvent) {
    let _ = write!(
        out,
        "DNS query {:#06x} {} {}",
        d.id,
        d.qtype,
        Escaped(&d.name)
    );
    match &d.process {
        Some(p) => {
            let _ = write!(out, " from {}({})", Escaped(&p.comm), p.pid);
            let label = p.attribution.label();
            if !label.is_empty() {
                let _ = write!(out, " [{}]", Escaped(&label));
            }
        }
        None => {
            let _ = write!(out, " from {} (sent from the kernel's context)", d.client);
        }
    }
    match (d.verdict, d.latency_ns) {
        ("unanswered", _) | (_, None) => {
            let _ = write!(out, " to {} was never answered", d.server);
        }
        (_, Some(ns)) => {
            let _ = write!(out, " answered after {:.3} s", ns as f64 / 1e9);
            if let Some(rcode) = &d.rcode {
                if rcode != "NOERROR" {
                    let _ = write!(out, " with {rcode}");
                }
            }
        }
    }
    match d.retries {
        0 => {}
        1 => out.push_str(" (1 retry)"),
        n => {
            let _ = write!(out, " ({n} retries)");
        }
    }
    if !d.drops.is_empty() {
        let ids: Vec<String> = d.drops.iter().map(|id| format!("#{id}")).collect();
        let _ = write!(out, " after drop {}", ids.join(", "));
    }
    out.push('\n');
}

fn counters_line(out: &mut String, c: &CountersEvent) {
    out.push_str("conntrack ");
    netns(out, &c.netns);
    let _ = writeln!(
        out,
        ": insert_failed {} clash_resolve {} drop {} early_drop {}; drops seen: clash {} table-full {} rule {}; listen overflows {} (drops {})",
        c.insert_failed,
        c.clash_resolve,
        c.drop,
        c.early_drop,
        c.clash_drops,
        c.table_full_drops,
        c.filter_drops,
        c.listen_overflows,
        c.listen_drops
    );
}
