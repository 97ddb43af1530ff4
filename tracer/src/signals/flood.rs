//! A flood of one signal from one process to another, as a summary.
//!
//! A process that sends half a million SIGUSR1 a second makes half a million
//! identical explanations: nobody reads them, and writing them is most of
//! what tracer spends. So per (sender, target, signal, origin), in each second from
//! the first of them, the first `KEEP_WHOLE` events are reported whole and
//! the rest only counted; when the second is over one `signal_flood` record
//! says how many there were in all: "sigstorm(412) sent 1204331 SIGUSR1 to
//! worker(77) in 1.0 s (10 shown)". The origin (kill, tkill, sigqueue, ...)
//! is part of the flow, so the summary says it as the whole events do, and
//! `tracer_signals_total` counts the summed-up signals in the same series
//! as the shown ones.
//!
//! Done in userspace, as the signals family reports its events: the kernel still sends every
//! record, so losses are counted as before, and tracer still explains each
//! one, so the process table and the signals an exit is blamed on stay
//! exact; only the writing is saved. The kernel could count floods itself,
//! but then a single SIGKILL in the middle of a storm would need the same
//! care there, for less gain than this.

use std::{collections::HashMap, fmt::Write as _};

use serde::Serialize;

use super::{event::SignalEvent, signal_name, Origin};
use crate::{
    output::{
        json::{Line, ProcessJson},
        text::{label, process},
        Event,
    },
    process::ProcessRef,
};

/// Events of one flow shown whole per window.
pub const KEEP_WHOLE: u64 = 10;
const WINDOW_NS: u64 = 1_000_000_000;
/// Flows followed at once: beyond, new flows are not summarised (their
/// events are all shown) until the next window frees room.
const FLOWS_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    sender: u32,
    target: u32,
    sig: u32,
    origin: Origin,
}

struct Flow {
    window_start_ns: u64,
    count: u64,
    sender: ProcessRef,
    target: ProcessRef,
}

/// The flood counter; see the module documentation.
pub struct FloodGate {
    /// Events of one flow shown whole per window; 0: every one (no gate).
    keep_whole: u64,
    flows: HashMap<Key, Flow>,
    /// Reused by `report`.
    ended: Vec<Key>,
}

/// A finished window of a flow that had more than `KEEP_WHOLE` events.
pub struct Flood {
    pub sig: u32,
    pub origin: Origin,
    pub sender: ProcessRef,
    pub target: ProcessRef,
    pub count: u64,
    pub shown: u64,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
}

impl Default for FloodGate {
    fn default() -> Self {
        Self::new(KEEP_WHOLE)
    }
}

impl FloodGate {
    pub fn new(keep_whole: u64) -> Self {
        Self {
            keep_whole,
            flows: HashMap::new(),
            ended: Vec::new(),
        }
    }

    /// Whether `s` is shown whole; every signal event is counted.
    pub fn admit(&mut self, s: &SignalEvent) -> bool {
        if self.keep_whole == 0 {
            return true;
        }
        let key = Key {
            sender: s.sender.pid,
            target: s.target.pid,
            sig: s.sig,
            origin: s.code.origin,
        };
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.count += 1;
            return flow.count <= self.keep_whole;
        }
        if self.flows.len() < FLOWS_MAX {
            self.flows.insert(
                key,
                Flow {
                    window_start_ns: s.mono_ns,
                    count: 1,
                    sender: s.sender.clone(),
                    target: s.target.clone(),
                },
            );
        }
        true
    }

    /// Ends the windows that are over by `now_ns` (`u64::MAX`: all of them,
    /// at stop), handing each flood to `report`.
    pub fn report(&mut self, now_ns: u64, mut report: impl FnMut(Flood)) {
        self.ended.clear();
        self.ended.extend(
            self.flows
                .iter()
                .filter(|(_, f)| now_ns == u64::MAX || f.window_start_ns + WINDOW_NS <= now_ns)
                .map(|(k, _)| *k),
        );
        for key in &self.ended {
            let Some(flow) = self.flows.remove(key) else {
                continue;
            };
            if flow.count > self.keep_whole {
                report(Flood {
                    sig: key.sig,
                    origin: key.origin,
                    sender: flow.sender,
                    target: flow.target,
                    count: flow.count,
                    shown: self.keep_whole,
                    window_start_ns: flow.window_start_ns,
                    window_end_ns: now_ns.min(flow.window_start_ns + WINDOW_NS),
                });
            }
        }
    }
}

/// The `signal_flood` record.
#[derive(Serialize)]
pub struct FloodJson<'a> {
    signal: FloodSignal,
    sender: ProcessJson<'a>,
    target: ProcessJson<'a>,
    /// Signals of this kind from sender to target in the window, the shown
    /// ones included.
    count: u64,
    shown: u64,
    window_ms: u64,
}

#[derive(Serialize)]
struct FloodSignal {
    number: u32,
    name: std::borrow::Cow<'static, str>,
    /// As in the `signal` record: kill, tkill, sigqueue, kernel, ...
    origin: &'static str,
}

impl Event for Flood {
    fn kind(&self) -> &'static str {
        "signal_flood"
    }

    fn mono_ns(&self) -> u64 {
        self.window_end_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        let body = FloodJson {
            signal: FloodSignal {
                number: self.sig,
                name: signal_name(self.sig),
                origin: self.origin.as_str(),
            },
            sender: line.process(&self.sender),
            target: line.process(&self.target),
            count: self.count,
            shown: self.shown,
            window_ms: self.window_end_ns.saturating_sub(self.window_start_ns) / 1_000_000,
        };
        line.write(out, self.kind(), self.mono_ns(), body)
    }

    /// `sigstorm(412) sent 1204331 SIGUSR1 to worker(77) in 1.0 s (10 shown)`.
    fn write_text(&self, out: &mut String) {
        process(out, &self.sender);
        label(out, &self.sender.attribution);
        let _ = write!(out, " sent {} {} to ", self.count, signal_name(self.sig));
        process(out, &self.target);
        label(out, &self.target.attribution);
        let _ = writeln!(
            out,
            " in {:.1} s ({} shown)",
            self.window_end_ns.saturating_sub(self.window_start_ns) as f64 / 1e9,
            self.shown
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        attribution::Attribution,
        process::Comm,
        signals::{decode_si_code, Delivery},
    };

    fn signal(mono_ns: u64, sender: u32, target: u32, sig: u32) -> SignalEvent {
        let process = |pid: u32, name: &str| ProcessRef {
            pid,
            tid: pid,
            comm: Comm::from_str_lossy(name),
            thread_comm: Comm::from_str_lossy(name),
            start_ns: 0,
            attribution: Arc::new(Attribution::host()),
        };
        SignalEvent {
            mono_ns,
            sig,
            si_code: 0,
            code: decode_si_code(sig, 0),
            thread_directed: false,
            delivery: Delivery::Ignored,
            sender: process(sender, "sigstorm"),
            ancestry: Default::default(),
            ancestry_truncated: false,
            target: process(target, "worker"),
        }
    }

    #[test]
    fn the_first_ten_a_second_are_shown_and_the_rest_summed_up() {
        let mut gate = FloodGate::default();
        let mut shown = 0;
        for i in 0..1000u64 {
            shown += u64::from(gate.admit(&signal(i * 1000, 412, 77, 10)));
            // Another pair, and another signal: flows of their own.
            assert!(gate.admit(&signal(i * 1000, 413, 77, 10)) == (i < KEEP_WHOLE));
        }
        assert!(gate.admit(&signal(5, 412, 77, 12)));
        assert_eq!(shown, KEEP_WHOLE);
        let mut floods = Vec::new();
        gate.report(WINDOW_NS / 2, |f| floods.push(f));
        assert!(floods.is_empty(), "the second is not over");
        gate.report(WINDOW_NS, |f| floods.push(f));
        floods.sort_by_key(|f| f.sender.pid);
        assert_eq!(floods.len(), 2, "the single SIGUSR2 is no flood");
        assert_eq!(floods[0].count, 1000);
        assert_eq!(floods[0].shown, KEEP_WHOLE);
        assert_eq!(floods[0].sender.pid, 412);
        assert_eq!(floods[0].target.pid, 77);
        let mut line = Vec::new();
        crate::output::json::write_event(&mut line, &floods[0], &crate::clock::Clock::new(), "n")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["kind"], "signal_flood");
        assert_eq!(v["signal"]["name"], "SIGUSR1");
        assert_eq!(v["signal"]["origin"], "kill");
        assert_eq!(v["sender"]["comm"], "sigstorm");
        assert_eq!(v["count"], 1000);
        assert_eq!(v["window_ms"], 1000);
        // A new window shows the first ten again.
        assert!(gate.admit(&signal(WINDOW_NS + 1, 412, 77, 10)));
    }

    #[test]
    fn each_origin_is_a_flow_of_its_own() {
        let mut gate = FloodGate::default();
        let mut tkill = signal(0, 412, 77, 10);
        tkill.si_code = -6;
        tkill.code = decode_si_code(10, -6);
        for _ in 0..KEEP_WHOLE {
            assert!(gate.admit(&signal(0, 412, 77, 10)));
        }
        assert!(
            gate.admit(&tkill),
            "a tkill() is not part of the kill() flood"
        );
        assert!(!gate.admit(&signal(0, 412, 77, 10)));
        let mut floods = Vec::new();
        gate.report(u64::MAX, |f| floods.push(f));
        assert_eq!(floods.len(), 1);
        assert_eq!(floods[0].origin, crate::signals::Origin::Kill);
        assert_eq!(floods[0].count, KEEP_WHOLE + 1);
    }

    #[test]
    fn other_events_pass() {
        let mut gate = FloodGate::default();
        let mut floods = 0;
        gate.report(u64::MAX, |_| floods += 1);
        assert_eq!(floods, 0);
        for _ in 0..100 {
            assert!(gate.admit(&signal(1, 1, 2, 9)) || gate.flows.len() == 1);
        }
        gate.report(u64::MAX, |_| floods += 1);
        assert_eq!(floods, 1, "at stop, every open window is reported");
    }
}
