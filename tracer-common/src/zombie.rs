//! Zombies: processes that exited and that their parent has not reaped
//! (waited for) yet.

use crate::Task;

/// A process between its exit and its reaping, kept by the kernel in
/// `ZOMBIES` (key: its pid) from the exit of its last thread until the
/// kernel frees it, which it does once the parent has waited for it (or at
/// once, for a parent that ignores SIGCHLD). Userspace reads the map every
/// second: nothing is written to the ring buffer per exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitedProcess {
    /// The process at its exit, with its cgroups (its pod).
    pub task: Task,
    /// When it exited, CLOCK_MONOTONIC nanoseconds.
    pub exited_ns: u64,
    /// `task_struct.exit_code`: the wait status the parent has not collected.
    pub exit_code: u32,
    /// Its parent at the exit (`real_parent->tgid`).
    pub ppid: u32,
}

// SAFETY: #[repr(C)] plain data without padding, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ExitedProcess {}
