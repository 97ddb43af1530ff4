//! Process lifecycle for userspace's process cache: new processes (not
//! threads), exec, and the exit of a process's last thread with its exit code.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use tracer_common::{ExecRecord, ExitRecord, ForkRecord, RecordKind};

use crate::{
    kernel::{self, KPtr},
    ring,
};

/// `sched_process_fork(parent, child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let parent = ctx.arg::<KPtr>(0);
    let child = ctx.arg::<KPtr>(1);
    let o = kernel::offsets();
    let child_task = kernel::task_identity_with_cgroups(child, o);
    // A new thread shares its creator's process: userspace only tracks processes.
    if child_task.tid != child_task.tgid {
        return 0;
    }
    let Some(mut entry) = ring::reserve::<ForkRecord>(RecordKind::Fork) else {
        return 0;
    };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::Fork);
        (*rec).parent = kernel::task_identity(parent, o);
        (*rec).child = child_task;
    }
    ring::submit_quietly(entry);
    0
}

/// `sched_process_exec(p, old_pid, bprm)`: `p->comm` is already the new name.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let task = ctx.arg::<KPtr>(0);
    let Some(mut entry) = ring::reserve::<ExecRecord>(RecordKind::Exec) else {
        return 0;
    };
    let o = kernel::offsets();
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::Exec);
        (*rec).task = kernel::task_identity_with_cgroups(task, o);
        (*rec).ppid = kernel::tgid(kernel::parent_process(task, o), o);
        (*rec)._pad = 0;
    }
    ring::submit_quietly(entry);
    0
}

/// `sched_process_exit(p, ...)`: reported once per process, when its last
/// thread exits (`signal->live` has just dropped to zero).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let task = ctx.arg::<KPtr>(0);
    let o = kernel::offsets();
    if !kernel::is_last_thread(task, o) {
        return 0;
    }
    let Some(mut entry) = ring::reserve::<ExitRecord>(RecordKind::Exit) else {
        return 0;
    };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::Exit);
        (*rec).task = kernel::task_identity(task, o);
        (*rec).exit_code = kernel::read_or_zero::<u32>(task, o.task_exit_code);
        (*rec).ppid = kernel::tgid(kernel::parent_process(task, o), o);
    }
    ring::submit_quietly(entry);
    0
}
