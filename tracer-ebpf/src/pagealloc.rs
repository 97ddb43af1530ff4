//! Page-allocation failures: `mm_page_alloc(page, order, gfp_flags,
//! migratetype)` fires for every page the kernel hands out, so this is one of
//! the hottest hooks there is. A successful allocation returns at the first
//! instruction; only a failure (no page) costs anything, including the ones
//! the kernel never logs (`__GFP_NOWARN`, rate limits).

use aya_ebpf::{
    helpers::bpf_get_current_task,
    macros::raw_tracepoint,
    programs::{tracing::StackIdContext as _, RawTracePointContext},
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
    let Some(mut entry) = ring::reserve::<PageAllocRecord>(RecordKind::PageAllocFailure) else {
        return 0;
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
        (*rec).task = kernel::task_identity_with_cgroups(current, &o);
        (*rec).order = ctx.arg::<u64>(1) as u32;
        (*rec).gfp_flags = ctx.arg::<u64>(2) & 0xffff_ffff;
        (*rec).migratetype = ctx.arg::<u64>(3) as i32;
        (*rec).stack_id = stack_id;
    }
    entry.submit(0);
    0
}
