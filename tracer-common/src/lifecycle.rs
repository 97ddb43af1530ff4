//! Process lifecycle: fork, exec and exit, which keep userspace's process
//! table current.

use crate::{Header, Task};

/// `sched:sched_process_fork` for a new process (new threads are filtered out in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: Header,
    pub parent: Task,
    pub child: Task,
}

/// `sched:sched_process_exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: Header,
    /// After the exec: `comm` is the new program's name.
    pub task: Task,
    /// The process's parent (`real_parent->tgid`).
    pub ppid: u32,
    pub _pad: u32,
}

/// `sched:sched_process_exit` when the last thread of a process exits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: Header,
    pub task: Task,
    /// `task_struct.exit_code`: the wait status (signal in the low 7 bits,
    /// 0x80 for a core dump, exit status in bits 8-15).
    pub exit_code: u32,
    pub ppid: u32,
}

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ForkRecord {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ExecRecord {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ExitRecord {}
