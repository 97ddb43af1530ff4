//! Signals: `signal_generate(sig, info, task, group, result)` as a raw
//! tracepoint. Signals outside the configured set are dropped here, before
//! any record is reserved.

use aya_ebpf::{
    helpers::bpf_get_current_task, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_common::{Ancestor, RecordKind, SignalRecord, MAX_ANCESTRY};

use crate::{
    kernel::{self, KPtr},
    ring,
};

/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: the kernel passes these small
/// integers instead of a siginfo pointer.
const SEND_SIG_NOINFO: KPtr = 0;
const SEND_SIG_PRIV: KPtr = 1;
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
/// `offsetof(struct kernel_siginfo, si_code)`: fixed by the uapi layout
/// (si_signo, si_errno, si_code).
const SI_CODE_OFFSET: u32 = 8;

#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> i32 {
    let sig = ctx.arg::<u64>(0) as u32;
    if !(1..=64).contains(&sig) || kernel::config().signal_mask & (1u64 << (sig - 1)) == 0 {
        return 0;
    }
    let info = ctx.arg::<KPtr>(1);
    let target = ctx.arg::<KPtr>(2);
    let group = ctx.arg::<u64>(3) as u32;
    let result = ctx.arg::<u64>(4) as u32;

    let si_code = match info {
        SEND_SIG_NOINFO => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        _ => kernel::read::<i32>(info, SI_CODE_OFFSET).unwrap_or(SI_USER),
    };

    let Some(mut entry) = ring::reserve::<SignalRecord>(RecordKind::Signal) else {
        return 0;
    };
    let o = kernel::offsets();
    let current = unsafe { bpf_get_current_task() };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::Signal);
        (*rec).sender = kernel::task_identity_with_cgroups(current, o);
        (*rec).target = kernel::task_identity_with_cgroups(target, o);
        (*rec).sig = sig;
        (*rec).si_code = si_code;
        (*rec).group = group;
        (*rec).result = result;
        let (len, truncated) = walk_ancestry(current, o, &mut (*rec).ancestry);
        (*rec).ancestry_len = len;
        (*rec).ancestry_truncated = truncated as u32;
    }
    entry.submit(0);
    0
}

/// Fills `out` with the sender's process and its ancestors through
/// `real_parent`, up to init (pid 1). Returns how many entries were written
/// and whether the chain went on past the array.
#[inline(always)]
fn walk_ancestry(
    task: KPtr,
    o: &tracer_common::KernelOffsets,
    out: &mut [Ancestor; MAX_ANCESTRY],
) -> (u32, bool) {
    let mut process = kernel::group_leader(task, o);
    let mut len = 0u32;
    for slot in out.iter_mut() {
        if process == 0 {
            return (len, false);
        }
        let tgid = kernel::tgid(process, o);
        *slot = Ancestor {
            tgid,
            _pad: 0,
            start_ns: kernel::start_ns(process, o),
            comm: kernel::comm(process, o),
        };
        len += 1;
        if tgid <= 1 {
            return (len, false);
        }
        process = kernel::parent_process(process, o);
    }
    (len, process != 0 && kernel::tgid(process, o) > 0)
}
