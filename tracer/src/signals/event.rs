//! What the signals family reports: signals with their senders, exits with
//! the signal they are blamed on, OOM kills with their memory cgroup and
//! victims.

use std::sync::Arc;

use tracer_common::{SignalRecord, MAX_ANCESTRY};

use super::{json, text, Delivery, ExitStatus, SiCode};
use crate::{
    attribution::Attribution,
    output::{json::Line, Event},
    process::{Ancestor, Comm, ProcessRef},
};

#[derive(Debug, Clone)]
pub struct SignalEvent {
    pub mono_ns: u64,
    pub sig: u32,
    pub si_code: i32,
    pub code: SiCode,
    /// tkill/tgkill aimed at one thread rather than the whole process.
    pub thread_directed: bool,
    pub delivery: Delivery,
    /// The task that was running when the signal was generated: the sender
    /// when a process asked for it, the context otherwise.
    pub sender: ProcessRef,
    pub ancestry: Ancestry,
    pub ancestry_truncated: bool,
    pub target: ProcessRef,
}

/// The sender's process first, then its parent, up to init: as many as the
/// kernel walks at most, kept inline, since under a storm there is an event
/// per record and a list on the heap each would be an allocation per record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ancestry {
    len: usize,
    list: [Ancestor; MAX_ANCESTRY],
}

impl Ancestry {
    /// The first `MAX_ANCESTRY` of `list`.
    pub fn from_slice(list: &[Ancestor]) -> Self {
        let len = list.len().min(MAX_ANCESTRY);
        let mut ancestry = Self {
            len,
            ..Self::default()
        };
        ancestry.list[..len].copy_from_slice(&list[..len]);
        ancestry
    }

    /// The kernel's record of it.
    pub fn from_record(r: &SignalRecord) -> Self {
        let len = (r.ancestry_len as usize).min(MAX_ANCESTRY);
        let mut ancestry = Self {
            len,
            ..Self::default()
        };
        for (to, from) in ancestry.list.iter_mut().zip(&r.ancestry[..len]) {
            *to = Ancestor {
                pid: from.tgid,
                comm: Comm::new(from.comm),
                start_ns: from.start_ns,
            };
        }
        ancestry
    }

    pub fn as_slice(&self) -> &[Ancestor] {
        &self.list[..self.len]
    }
}

/// The signal an exit is blamed on.
#[derive(Debug, Clone, Copy)]
pub struct SignalCause {
    pub mono_ns: u64,
    pub sig: u32,
    pub code: SiCode,
    pub sender_pid: u32,
    pub sender_comm: Comm,
    /// The OOM killer's SIGKILL (folded into an OOM event).
    pub oom_kill: bool,
}

#[derive(Debug, Clone)]
pub struct ExitEvent {
    pub mono_ns: u64,
    pub process: ProcessRef,
    pub ppid: u32,
    /// `task_struct.exit_code` as the kernel had it.
    pub wait_status: u32,
    pub status: ExitStatus,
    /// The signal that killed it (same number), or else the last one it got.
    pub cause: Option<SignalCause>,
}

/// Whether the OOM killer acted for one memory cgroup's limit or for the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomScope {
    Cgroup,
    System,
}

impl OomScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cgroup => "cgroup",
            Self::System => "system",
        }
    }
}

/// The memory cgroup whose limit was hit, as the kernel had it at the kill.
#[derive(Debug, Clone)]
pub struct OomMemcg {
    pub path: String,
    pub attribution: Arc<Attribution>,
    pub limit_bytes: u64,
    pub usage_bytes: u64,
    /// The cgroup's own count of OOM kills (memory.oom_control / memory.events), read after the kill.
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct OomVictim {
    pub process: ProcessRef,
    /// RSS and the rest, from the kernel's record (current kernels) or /proc (older ones).
    pub memory: super::oom::VictimFields,
}

/// The node's memory at the kill, for system OOMs (from /proc/meminfo).
#[derive(Debug, Clone, Copy)]
pub struct NodeMemory {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct OomEvent {
    pub mono_ns: u64,
    pub scope: OomScope,
    /// Where the scope came from: "kernel_log" (the kernel's own summary line)
    /// or "memory_counters" (the limits read by the BPF program).
    pub scope_source: &'static str,
    pub memcg: Option<OomMemcg>,
    /// The task whose allocation ran into the OOM.
    pub trigger: ProcessRef,
    /// One per killed process: several for a `memory.oom.group` kill.
    pub victims: Vec<OomVictim>,
    pub kernel_log: Option<crate::kmsg::OomSummary>,
    pub node_memory: Option<NodeMemory>,
}

impl Event for SignalEvent {
    fn kind(&self) -> &'static str {
        "signal"
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        line.write(
            out,
            self.kind(),
            self.mono_ns,
            json::signal_body(self, line),
        )
    }

    fn write_text(&self, out: &mut String) {
        text::signal(out, self);
    }
}

impl Event for ExitEvent {
    fn kind(&self) -> &'static str {
        "exit"
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        line.write(out, self.kind(), self.mono_ns, json::exit_body(self, line))
    }

    fn write_text(&self, out: &mut String) {
        text::exit(out, self);
    }
}

impl Event for OomEvent {
    fn kind(&self) -> &'static str {
        "oom"
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        line.write(out, self.kind(), self.mono_ns, json::oom_body(self, line))
    }

    fn write_text(&self, out: &mut String) {
        text::oom(out, self);
    }
}
