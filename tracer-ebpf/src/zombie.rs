//! Zombies: a process enters `ZOMBIES` when its last thread exits and leaves
//! it when the kernel frees it, once its parent reaped it. What stays is a
//! zombie (`<defunct>` in ps); userspace reads the map every second and
//! reports those older than `--zombie-age`, so an exit costs one map update
//! here and nothing in the ring buffer.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns, macros::raw_tracepoint, maps::LruHashMap,
    programs::RawTracePointContext,
};
use tracer_common::ExitedProcess;

use crate::kernel::{self, KPtr};

shared_map! {
    /// LRU: a flood of unreaped processes pushes out the oldest entries
    /// rather than failing the newest.
    static ZOMBIES: LruHashMap<u32, ExitedProcess> = LruHashMap::with_max_entries(8192, 0);
}

/// `sched_process_exit(p, ...)`, for the last thread of a process.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn zombie_exit(ctx: RawTracePointContext) -> i32 {
    let task = ctx.arg::<KPtr>(0);
    let o = kernel::offsets();
    if !kernel::is_last_thread(task, o) {
        return 0;
    }
    let exited = ExitedProcess {
        task: kernel::task_identity_with_cgroups(task, o),
        exited_ns: unsafe { bpf_ktime_get_ns() },
        exit_code: kernel::read_or_zero::<u32>(task, o.task_exit_code),
        ppid: kernel::tgid(kernel::parent_process(task, o), o),
    };
    let _ = ZOMBIES.insert(exited.task.tgid, exited, 0);
    0
}

/// `sched_process_free(p)`: the kernel frees a task after it was reaped.
/// Only a process's leader is in the map (by its pid), and only with the
/// same start time (the pid may have been reused meanwhile).
#[raw_tracepoint(tracepoint = "sched_process_free")]
pub fn zombie_free(ctx: RawTracePointContext) -> i32 {
    let task = ctx.arg::<KPtr>(0);
    let o = kernel::offsets();
    let Some(pid) = kernel::read::<u32>(task, o.task_pid) else {
        return 0;
    };
    let same = match unsafe { ZOMBIES.get(pid) } {
        Some(exited) => exited.task.start_ns == kernel::start_ns(task, o),
        None => false,
    };
    if same {
        let _ = ZOMBIES.remove(pid);
    }
    0
}
