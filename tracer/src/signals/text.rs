//! The console lines of signals, exits and OOM kills.

use std::fmt::Write as _;

use super::{
    event::{ExitEvent, OomEvent, OomScope, SignalEvent},
    signal_name, ExitStatus, Origin,
};
use crate::{
    output::{
        escape::Escaped,
        text::{label, process},
    },
    size::format_size,
};

pub fn signal(out: &mut String, s: &SignalEvent) {
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
        for (i, a) in s.ancestry.as_slice().iter().rev().enumerate() {
            if i > 0 {
                out.push_str(" => ");
            }
            let _ = write!(out, "{}({})", Escaped(&a.comm), a.pid);
        }
        out.push('\n');
        let sender = &s.sender.attribution;
        if sender.has_label() {
            let _ = writeln!(out, "  sender pod: {}", Escaped(sender.label_text()));
        } else {
            out.push_str("  sender pod: - (host)\n");
        }
    } else if s.code.origin != Origin::Fault || s.sender.pid != s.target.pid {
        let _ = write!(out, "  while running: ");
        process(out, &s.sender);
        label(out, &s.sender.attribution);
        out.push('\n');
    }
}

pub fn exit(out: &mut String, e: &ExitEvent) {
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

pub fn oom(out: &mut String, o: &OomEvent) {
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
