//! The network family's registration and its place in `tracer watch`: its
//! hooks, its settings (DNS on or off, the drop reasons watched), and the
//! [`NetworkFamily`] that explains its records.

use anyhow::Result;
use tracer_common::{Config, PacketRecord, RecordKind};

use super::{
    drops,
    event::NetEvent,
    explain::{sent_by_current_task, NetworkFamily},
};
use crate::{
    clock::Clock,
    ebpf::{Attach, Hook},
    family::{Context, Family, Registration, Settings, Start},
    netns::NetnsIndex,
    output::{EventSink, Output},
    records::Record,
};

pub const REGISTRATION: Registration = Registration {
    name: "net",
    hooks: HOOKS,
    configure,
    wanted,
    start,
};

pub const HOOKS: &[Hook] = &[
    Hook {
        name: "packet_drop",
        candidates: &[Attach::RawTracepoint {
            program: "kfree_skb",
            group: "skb",
            tracepoint: "kfree_skb",
        }],
        without_it: "no packet-drop events (conntrack, neighbour table, listen queue)",
        essential: false,
    },
    Hook {
        name: "dns_sent",
        candidates: &[
            Attach::BtfTracepoint {
                program: "net_dev_queue_btf",
                tracepoint: "net_dev_queue",
            },
            Attach::RawTracepoint {
                program: "net_dev_queue",
                group: "net",
                tracepoint: "net_dev_queue",
            },
        ],
        without_it: "no DNS queries: slow or unanswered lookups are not reported",
        essential: false,
    },
    Hook {
        name: "dns_received",
        candidates: &[Attach::RawTracepoint {
            program: "netif_receive_skb",
            group: "net",
            tracepoint: "netif_receive_skb",
        }],
        without_it: "no DNS responses: every lookup looks unanswered",
        essential: false,
    },
    Hook {
        name: "conntrack_clash",
        candidates: &[Attach::KProbeAndReturn {
            entry: "nf_ct_resolve_clash",
            exit: "nf_ct_resolve_clash_return",
            function: "nf_ct_resolve_clash",
        }],
        without_it: "conntrack clashes told apart by the namespace's counters instead",
        essential: false,
    },
];

fn configure(settings: &Settings, config: &mut Config) {
    config.dns = settings.dns as u32;
    // Counted at HZ=1000, the fastest tick a kernel can have (see Config).
    config.dns_response_window_jiffies = settings.dns_tracking.response_window().as_millis() as u64;
    settings.drops.configure(config);
}

/// `--no-dns` leaves out the two programs that see every packet.
fn wanted(settings: &Settings, hook: &Hook) -> bool {
    settings.dns || !matches!(hook.name, "dns_sent" | "dns_received")
}

/// Every namespace's counters are read here, before tracer says it is
/// watching: what they count from the start record on is reported.
fn start(start: &mut Start<'_>) -> Option<Box<dyn Family>> {
    let reasons = start.settings.drops.reasons.clone();
    let lacking = reasons.missing(drops::WATCHED);
    if !lacking.is_empty() {
        start.notes.push(format!(
            "drop reasons this kernel does not have (not watched): {}",
            lacking.join(", ")
        ));
    }
    let index = NetnsIndex::with_roots(
        &start.args.host.procfs,
        start.args.host.host_root.join("run/netns"),
    );
    match index {
        Ok(index) => {
            let mut family = NetworkFamily::new(reasons, start.settings.dns_tracking, index);
            family.set_clash_hook(start.attached("conntrack_clash"));
            Some(Box::new(Network {
                family,
                events: Vec::new(),
            }))
        }
        Err(e) => {
            start.notes.push(format!(
                "network namespaces cannot be listed ({e}): no packet-drop or DNS events"
            ));
            None
        }
    }
}

/// [`NetworkFamily`] as a [`Family`].
struct Network {
    family: NetworkFamily,
    /// Reused for the events of one record or one flush.
    events: Vec<NetEvent>,
}

impl Network {
    fn hand_over(&mut self, out: &mut dyn EventSink) {
        for event in self.events.drain(..) {
            out.emit(&event);
        }
    }
}

impl Family for Network {
    fn kinds(&self) -> &'static [RecordKind] {
        &[
            RecordKind::PacketDrop,
            RecordKind::Dns,
            RecordKind::ConntrackClash,
        ]
    }

    fn handle(&mut self, record: &Record<'_>, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let Some(r) = record.read::<PacketRecord>() else {
            return;
        };
        let sender = sent_by_current_task(&r).then(|| cx.process_ref(&r.task, true));
        self.family.handle(&r, sender, cx, &mut self.events);
        self.hand_over(out);
    }

    fn flush(&mut self, now_ns: u64, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        self.family.flush(now_ns, cx, &mut self.events);
        self.hand_over(out);
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let dns = self.family.dns_stats();
        if dns.queries > 0 {
            tracing::info!(
                "{} DNS queries: {} answered ({} slow, {} failed), {} unanswered, {} retries, {} linked to drops; {} forgotten to bound memory",
                dns.queries, dns.answered, dns.slow, dns.failed, dns.unanswered, dns.retries, dns.drops_linked, dns.evicted
            );
        }
        out.record("dns_summary", Clock::now_mono_ns(), dns)
    }
}
