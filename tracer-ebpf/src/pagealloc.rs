//! Page-allocation failures, by one of two hooks:
//! - where kprobes are allowed, `warn_alloc`, the allocator's failure path:
//!   every failure of the slow path calls it, before its own `__GFP_NOWARN`
//!   and rate-limit tests, so it sees the failures the kernel never logs
//!   and costs nothing while allocations succeed;
//! - else `mm_page_alloc(page, order, gfp_flags, migratetype)`, which fires
//!   for every page the kernel hands out, one of the hottest hooks there is.
//!   A successful allocation returns at the first instruction; only a
//!   failure (no page) costs anything.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    macros::{kprobe, raw_tracepoint},
    programs::{tracing::StackIdContext, ProbeContext, RawTracePointContext},
};
use tracer_common::{PageAllocRecord, RecordKind};

use crate::{
    kernel::{self, KPtr},
    ring,
};

#[raw_tracepoint(tracepoint = "mm_page_alloc")]
pub fn mm_page_alloc(ctx: RawTracePointContext) -> i32 {
    if ctx.arg::<KPtr>(0) != 0 {
        return 0;
    }
    record(
        &ctx,
        ctx.arg::<u64>(1) as u32,
        ctx.arg::<u64>(2) & 0xffff_ffff,
        ctx.arg::<u64>(3) as i32,
    );
    0
}

/// `warn_alloc(gfp_mask, nodemask, fmt, ...)`: the slow path's failure
/// passes `"page allocation failure: order:%u", order`, so the order is the
/// fourth argument (a register, variadic or not). vmalloc calls it too, with
/// other words, for failures that are not the page allocator's.
#[kprobe]
pub fn warn_alloc(ctx: ProbeContext) -> u32 {
    let fmt: KPtr = ctx.arg(2).unwrap_or(0);
    // "page all": the first eight bytes of the page allocator's format.
    const PAGE_ALLOC: u64 = u64::from_le_bytes(*b"page all");
    let Ok(head) = (unsafe { bpf_probe_read_kernel(fmt as *const u64) }) else {
        return 0;
    };
    if head != PAGE_ALLOC {
        return 0;
    }
    let gfp = ctx.arg::<u64>(0).unwrap_or(0) & 0xffff_ffff;
    // The kernel's gfp_migratetype(): __GFP_MOVABLE (0x08) is MIGRATE_MOVABLE,
    // __GFP_RECLAIMABLE (0x10) MIGRATE_RECLAIMABLE, neither UNMOVABLE.
    let migratetype = ((gfp >> 3) & 3) as i32;
    record(
        &ctx,
        ctx.arg::<u64>(3).unwrap_or(0) as u32,
        gfp,
        migratetype,
    );
    0
}

#[inline(always)]
fn record<C: StackIdContext>(ctx: &C, order: u32, gfp_flags: u64, migratetype: i32) {
    let Some(mut entry) = ring::reserve::<PageAllocRecord>(RecordKind::PageAllocFailure) else {
        return;
    };
    let o = kernel::offsets();
    let stack_id = if kernel::config().page_alloc_stacks != 0 {
        ctx.get_stackid(&ring::STACKS, 0).unwrap_or(-1)
    } else {
        -1
    };
    let current = unsafe { bpf_get_current_task() };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::PageAllocFailure);
        (*rec).task = kernel::task_identity_with_cgroups(current, o);
        (*rec).order = order;
        (*rec).gfp_flags = gfp_flags;
        (*rec).migratetype = migratetype;
        (*rec).stack_id = stack_id;
    }
    entry.submit(0);
}
