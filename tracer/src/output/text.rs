//! The console lines: one explanation per event, in the shape on-call
//! engineers know from kernel probes, plus the pod.

use std::fmt::Write as _;

use crate::{
    attribution::Attribution,
    event::{Event, ExitEvent, ProcessRef, SignalEvent},
    signals::{signal_name, ExitStatus, Origin},
};

/// Renders `event` into `out` (cleared first), lines separated by '\n',
/// ending with one.
pub fn write_event(out: &mut String, event: &Event) {
    out.clear();
    match event {
        Event::Signal(s) => signal(out, s),
        Event::Exit(e) => exit(out, e),
    }
}

fn label(out: &mut String, a: &Attribution) {
    let label = a.label();
    if !label.is_empty() {
        let _ = write!(out, " [{label}]");
    }
}

fn process(out: &mut String, p: &ProcessRef) {
    let _ = write!(out, "{}({})", p.comm, p.pid);
}

fn signal(out: &mut String, s: &SignalEvent) {
    let name = signal_name(s.sig);
    if s.code.origin.is_user_sent() {
        let _ = write!(out, "{}({}) sent {name} to ", s.sender.comm, s.sender.pid);
    } else {
        let _ = write!(out, "the kernel sent {name} ({}) to ", s.code.name);
    }
    if s.thread_directed && s.target.tid != s.target.pid {
        let _ = write!(out, "thread {}({}) of ", s.target.thread_comm, s.target.tid);
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
            let _ = write!(out, "{}({})", a.comm, a.pid);
        }
        out.push('\n');
        let sender_label = s.sender.attribution.label();
        if sender_label.is_empty() {
            out.push_str("  sender pod: - (host)\n");
        } else {
            let _ = writeln!(out, "  sender pod: {sender_label}");
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
        ExitStatus::Signaled { sig, core_dumped } => {
            let _ = write!(out, "killed by {}", signal_name(sig));
            if let Some(c) = &e.cause {
                if c.code.origin.is_user_sent() {
                    let _ = write!(out, " from {}({})", c.sender_comm, c.sender_pid);
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
                    c.sender_comm,
                    c.sender_pid
                );
            }
        }
    }
    let _ = writeln!(out, " (exit code {})", e.status.exit_code());
}
