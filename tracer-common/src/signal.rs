//! Signals: `signal:signal_generate`, with the sender's ancestry.

use crate::{Header, Task, COMM_LEN};

/// How many processes above the sender of a signal the kernel walks through
/// `task_struct.real_parent` (the sender itself included).
pub const MAX_ANCESTRY: usize = 16;

/// One process in the sender's ancestry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ancestor {
    pub tgid: u32,
    pub _pad: u32,
    pub start_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// `signal:signal_generate`: a signal was generated for a task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalRecord {
    pub header: Header,
    /// The task running when the signal was generated: the sender for
    /// kill/tkill/sigqueue, the faulting or interrupted task otherwise.
    pub sender: Task,
    pub target: Task,
    pub sig: u32,
    /// `kernel_siginfo.si_code` (SI_USER for `SEND_SIG_NOINFO`, SI_KERNEL for `SEND_SIG_PRIV`).
    pub si_code: i32,
    /// 1 when the whole thread group was targeted (kill), 0 for one thread (tkill/tgkill).
    pub group: u32,
    /// The kernel's `TRACE_SIGNAL_*` result.
    pub result: u32,
    /// Valid entries in `ancestry`, sender first, then its parent, and so on.
    pub ancestry_len: u32,
    /// 1 when the walk stopped at `MAX_ANCESTRY` before reaching pid 1 or 0.
    pub ancestry_truncated: u32,
    pub ancestry: [Ancestor; MAX_ANCESTRY],
}

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SignalRecord {}
