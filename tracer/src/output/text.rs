//! The console lines: one explanation per event, in the shape on-call
//! engineers know from kernel probes, plus the pod.

use std::fmt::Write as _;

use super::escape::Escaped;
use crate::{
    attribution::Attribution,
    event::{Event, ExitEvent, OomEvent, OomScope, PageAllocEvent, ProcessRef, SignalEvent},
    signals::{signal_name, ExitStatus, Origin},
    size::format_size,
};

/// Renders `event` into `out` (cleared first), lines separated by '\n',
/// ending with one.
pub fn write_event(out: &mut String, event: &Event) {
    out.clear();
    match event {
        Event::Signal(s) => signal(out, s),
        Event::Exit(e) => exit(out, e),
        Event::Oom(o) => oom(out, o),
        Event::PageAllocFailure(p) => page_alloc(out, p),
        Event::Net(n) => crate::net::text::write(out, n),
        Event::IoWait(w) => crate::iowait::text::write(out, w),
    }
}

/// `sigstorm(412) sent 1204331 SIGUSR1 to worker(77) in 1.0 s (10 shown)`.
pub fn write_flood(out: &mut String, f: &crate::flood::Flood) {
    out.clear();
    process(out, &f.sender);
    label(out, &f.sender.attribution);
    let _ = write!(out, " sent {} {} to ", f.count, signal_name(f.sig));
    process(out, &f.target);
    label(out, &f.target.attribution);
    let _ = writeln!(
        out,
        " in {:.1} s ({} shown)",
        f.window_end_ns.saturating_sub(f.window_start_ns) as f64 / 1e9,
        f.shown
    );
}

fn label(out: &mut String, a: &Attribution) {
    let label = a.label();
    if !label.is_empty() {
        let _ = write!(out, " [{}]", Escaped(&label));
    }
}

fn process(out: &mut String, p: &ProcessRef) {
    let _ = write!(out, "{}({})", Escaped(&p.comm), p.pid);
}

fn signal(out: &mut String, s: &SignalEvent) {
    let name = signal_name(s.sig);
    if s.code.origin.is_user_sent() {
        let _ = write!(
            out,
            "{}({}) sent {name} to ",
            Escaped(&s.sender.comm),
            s.sender.pid
        );
    } else {
        let _ = write!(out, "the kernel sent {name} ({}) to ", s.code.name);
    }
    if s.thread_directed && s.target.tid != s.target.pid {
        let _ = write!(
            out,
            "thread {}({}) of ",
            Escaped(&s.target.thread_comm),
            s.target.tid
        );
    }
    process(out, &s.target);
    label(out, &s.target.attribution);
    let _ = write!(out, " via {}", s.code.origin.via());
    match s.delivery.as_str() {
        "delivered" => {}
        "ignored" => out.push_str(" (ignored by the target)"),
        "already_pending" => out.push_str(" (one was already pending)"),
        other => {
            let _ = write!(out, " (not delivered: {other})");
        }
    }
    out.push('\n');
    if s.code.origin.is_user_sent() {
        out.push_str("  sender ancestry: ");
        if s.ancestry_truncated {
            out.push_str("... => ");
        }
        for (i, a) in s.ancestry.iter().rev().enumerate() {
            if i > 0 {
                out.push_str(" => ");
            }
            let _ = write!(out, "{}({})", Escaped(&a.comm), a.pid);
        }
        out.push('\n');
        let sender_label = s.sender.attribution.label();
        if sender_label.is_empty() {
            out.push_str("  sender pod: - (host)\n");
        } else {
            let _ = writeln!(out, "  sender pod: {}", Escaped(&sender_label));
        }
    } else if s.code.origin != Origin::Fault || s.sender.pid != s.target.pid {
        let _ = write!(out, "  while running: ");
        process(out, &s.sender);
        label(out, &s.sender.attribution);
        out.push('\n');
    }
}

fn exit(out: &mut String, e: &ExitEvent) {
    process(out, &e.process);
    label(out, &e.process.attribution);
    out.push_str(" exited: ");
    match e.status {
        ExitStatus::Signaled { .. } if e.cause.is_some_and(|c| c.oom_kill) => {
            out.push_str("OOM-killed")
        }
        ExitStatus::Signaled { sig, core_dumped } => {
            let _ = write!(out, "killed by {}", signal_name(sig));
            if let Some(c) = &e.cause {
                if c.code.origin.is_user_sent() {
                    let _ = write!(out, " from {}({})", Escaped(&c.sender_comm), c.sender_pid);
                } else {
                    let _ = write!(out, " from the kernel ({})", c.code.name);
                }
            }
            if core_dumped {
                out.push_str(", core dumped");
            }
        }
        ExitStatus::Exited(code) => {
            let _ = write!(out, "status {code}");
            if let Some(c) = &e.cause {
                let _ = write!(
                    out,
                    " after {} from {}({})",
                    signal_name(c.sig),
                    Escaped(&c.sender_comm),
                    c.sender_pid
                );
            }
        }
    }
    let _ = writeln!(out, " (exit code {})", e.status.exit_code());
}

fn size(bytes: Option<u64>) -> String {
    bytes.map(format_size).unwrap_or_else(|| "?".into())
}

fn oom(out: &mut String, o: &OomEvent) {
    out.push_str("OOM kill (");
    match (o.scope, &o.memcg) {
        (OomScope::Cgroup, Some(m)) => {
            let label = m.attribution.label();
            let place = if label.is_empty() {
                "memory cgroup".to_owned()
            } else {
                label
            };
            let _ = write!(
                out,
                "cgroup OOM in {}: limit {}, usage {}, memcg {}",
                Escaped(&place),
                format_size(m.limit_bytes),
                format_size(m.usage_bytes),
                Escaped(&m.path)
            );
        }
        (OomScope::Cgroup, None) => out.push_str("cgroup OOM"),
        (OomScope::System, _) => {
            out.push_str("system OOM");
            if let Some(n) = &o.node_memory {
                let _ = write!(
                    out,
                    ": node memory {}, available {}, free {}",
                    format_size(n.total_bytes),
                    format_size(n.available_bytes),
                    format_size(n.free_bytes)
                );
            }
        }
    }
    out.push_str("): killed ");
    for (i, v) in o.victims.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        process(out, &v.process);
        label(out, &v.process.attribution);
    }
    out.push('\n');
    for v in &o.victims {
        let _ = write!(
            out,
            "  {}({}): rss anon {}, file {}, shmem {}; oom_score_adj {}",
            Escaped(&v.process.comm),
            v.process.pid,
            size(v.memory.anon_rss_bytes),
            size(v.memory.file_rss_bytes),
            size(v.memory.shmem_rss_bytes),
            v.memory
                .oom_score_adj
                .map(|a| a.to_string())
                .unwrap_or_else(|| "?".into())
        );
        out.push_str("; triggered by ");
        process(out, &o.trigger);
        out.push('\n');
    }
}

fn page_alloc(out: &mut String, p: &PageAllocEvent) {
    let pages = 1u64 << p.order.min(20);
    let _ = write!(
        out,
        "page allocation failure: order {} ({pages} pages, {}), {}, by ",
        p.order,
        format_size(pages * crate::oom::page_size()),
        p.gfp_names
    );
    process(out, &p.process);
    label(out, &p.process.attribution);
    if let Some(reason) = p.tolerated {
        let _ = write!(out, " (tolerated: {reason})");
    }
    out.push('\n');
    let _ = write!(
        out,
        "  free blocks at order>={}: {}",
        p.order,
        crate::pagealloc::free_blocks_at_or_above(&p.zones, p.order)
    );
    if let Some(name) = crate::pagealloc::migratetype_name(&p.types, p.migratetype) {
        let _ = write!(
            out,
            " ({} of them {name}, the type asked for)",
            crate::pagealloc::free_blocks_of_type_at_or_above(&p.types, name, p.order)
        );
    }
    for zone in &p.zones {
        let _ = write!(out, "; node {} {}:", zone.node, zone.zone);
        for free in &zone.free_blocks {
            let _ = write!(out, " {free}");
        }
    }
    out.push('\n');
    for frame in &p.stack {
        let _ = writeln!(out, "    {frame}");
    }
}
