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

#[derive(Debug, Clone)]
pub enum Event {
    Signal(SignalEvent),
    Exit(ExitEvent),
}

impl Event {
    pub fn mono_ns(&self) -> u64 {
        match self {
            Self::Signal(s) => s.mono_ns,
            Self::Exit(e) => e.mono_ns,
        }
    }
}
