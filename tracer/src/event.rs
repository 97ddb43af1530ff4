//! What tracer reports: signals and the exits that follow them, joined with
//! the processes, containers and pods they concern.

use std::sync::Arc;

use crate::{
    attribution::Attribution,
    process::Comm,
    signals::{Delivery, ExitStatus, SiCode},
};

/// A process (or one of its threads) as it appears in an event.
#[derive(Debug, Clone)]
pub struct ProcessRef {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    pub thread_comm: Comm,
    /// CLOCK_MONOTONIC ns; 0 when unknown.
    pub start_ns: u64,
    pub attribution: Arc<Attribution>,
}

#[derive(Debug, Clone, Copy)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: Comm,
    pub start_ns: u64,
}

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
    /// The sender's process first, then its parent, up to init.
    pub ancestry: Vec<Ancestor>,
    pub ancestry_truncated: bool,
    pub target: ProcessRef,
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
    pub memory: crate::oom::VictimFields,
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

/// A page allocation that returned no page.
#[derive(Debug, Clone)]
pub struct PageAllocEvent {
    pub mono_ns: u64,
    pub process: ProcessRef,
    pub order: u32,
    pub gfp_flags: u64,
    /// The flags by the running kernel's names ("GFP_KERNEL|__GFP_NOWARN").
    pub gfp_names: String,
    pub migratetype: i32,
    /// Why the caller can live with it, when its flags say so.
    pub tolerated: Option<&'static str>,
    /// /proc/buddyinfo around the time (shared by failures within a second).
    pub zones: Vec<crate::pagealloc::ZoneFree>,
    /// /proc/pagetypeinfo's free lists per migrate type, read with it.
    pub types: Vec<crate::pagealloc::MigrateFree>,
    /// Kernel stack, innermost first, with `--stacks`.
    pub stack: Vec<String>,
    /// The kernel's own log line for it, when it printed one.
    pub kernel_log: Option<crate::pagealloc::LoggedFailure>,
}

#[derive(Debug, Clone)]
pub enum Event {
    Signal(SignalEvent),
    Exit(ExitEvent),
    Oom(OomEvent),
    PageAllocFailure(PageAllocEvent),
    /// Packet drops, DNS lookups and conntrack counters (`net`).
    Net(crate::net::event::NetEvent),
    /// An IO stall or a hung task.
    IoWait(crate::iowait::IoWaitEvent),
}

impl Event {
    pub fn mono_ns(&self) -> u64 {
        match self {
            Self::Signal(s) => s.mono_ns,
            Self::Exit(e) => e.mono_ns,
            Self::Oom(o) => o.mono_ns,
            Self::PageAllocFailure(p) => p.mono_ns,
            Self::Net(n) => n.mono_ns(),
            Self::IoWait(w) => w.mono_ns,
        }
    }
}
