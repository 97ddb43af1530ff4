//! OOM kills: the classic `oom:mark_victim` tracepoint, whose record the
//! kernel fills with the victim's details (pid, name, RSS, oom_score_adj on
//! current kernels). The record is copied raw; the memory cgroups from the
//! task that hit the OOM up to the root are read here, at the moment of the
//! kill, with their usage and limit: that is how userspace tells a cgroup OOM
//! (a limit reached on the way up) from a system OOM, and which limit it was.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
    EbpfContext as _,
};
use tracer_common::{
    MemcgLevel, OomControlRecord, OomRecord, RecordKind, COMM_LEN, MEMCG_LEVELS, OFFSET_UNKNOWN,
    OOM_RAW_MAX,
};

use crate::{
    kernel::{self, KPtr},
    ring,
};

#[tracepoint(category = "oom", name = "mark_victim")]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    let Some(mut entry) = ring::reserve::<OomRecord>(RecordKind::Oom) else {
        return 0;
    };
    let o = kernel::offsets();
    let config = kernel::config();
    let current = unsafe { bpf_get_current_task() };
    let record = ctx.as_ptr() as KPtr;
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::Oom);
        (*rec).trigger = kernel::task_identity_with_cgroups(current, o);

        // Eight bytes at a time: the verifier wants a bounded loop, and a
        // read past the record's end must not be attempted.
        let want = (config.oom_raw_size as usize).min(OOM_RAW_MAX);
        let raw = core::ptr::addr_of_mut!((*rec).raw).cast::<u8>();
        let mut copied = 0usize;
        for chunk in 0..OOM_RAW_MAX / 8 {
            let at = chunk * 8;
            if at + 8 > want {
                break;
            }
            let word = kernel::read_or_zero::<u64>(record, at as u32);
            raw.add(at).cast::<u64>().write_unaligned(word);
            copied = at + 8;
        }
        (*rec).raw_len = copied as u32;

        (*rec).victim_comm = [0; COMM_LEN];
        if config.oom_comm_loc != OFFSET_UNKNOWN {
            // __data_loc: low 16 bits offset from the record start, high 16 the length.
            if let Some(loc) = kernel::read::<u32>(record, config.oom_comm_loc) {
                let at = record + (loc & 0xffff) as u64;
                let _ = bpf_probe_read_kernel_str_bytes(at as *const u8, &mut (*rec).victim_comm);
            }
        }

        (*rec).levels_len = walk_memcgs(current, o, &mut (*rec).levels);
    }
    entry.submit(0);
    0
}

/// The trigger's memory cgroup and its ancestors, each with the `memory`
/// page counter's usage and limit.
#[inline(always)]
fn walk_memcgs(
    task: KPtr,
    o: &tracer_common::KernelOffsets,
    out: &mut [MemcgLevel; MEMCG_LEVELS],
) -> u32 {
    let mut css = kernel::read_or_zero::<KPtr>(kernel::css_set(task, o), o.css_set_memory_css);
    let mut len = 0u32;
    for slot in out.iter_mut() {
        if css == 0 || o.memcg_css == OFFSET_UNKNOWN {
            break;
        }
        let memcg = css - o.memcg_css as u64;
        *slot = MemcgLevel {
            cgroup_id: kernel::cgroup_id(kernel::read_or_zero::<KPtr>(css, o.css_cgroup), o),
            usage_pages: kernel::read_or_zero::<u64>(memcg, o.memcg_usage),
            max_pages: kernel::read_or_zero::<u64>(memcg, o.memcg_max),
        };
        len += 1;
        css = kernel::read_or_zero::<KPtr>(css, o.css_parent);
    }
    len
}

/// The exact hook, as fentry (cheapest; needs the kernel's BTF and a policy
/// that allows it) ...
#[fentry(function = "out_of_memory")]
pub fn out_of_memory_fentry(ctx: FEntryContext) -> i32 {
    record_oom_control(ctx.arg::<KPtr>(0));
    0
}

/// ... or as a kprobe where fentry is refused. Without either, the scope comes
/// from the memory counters read at `mark_victim`.
#[kprobe]
pub fn out_of_memory_kprobe(ctx: ProbeContext) -> u32 {
    record_oom_control(ctx.arg::<KPtr>(0).unwrap_or(0));
    0
}

#[inline(always)]
fn record_oom_control(oc: KPtr) {
    if oc == 0 {
        return;
    }
    let Some(mut entry) = ring::reserve::<OomControlRecord>(RecordKind::OomControl) else {
        return;
    };
    let o = kernel::offsets();
    let memcg = kernel::read_or_zero::<KPtr>(oc, o.oom_control_memcg);
    let memcg_cgroup_id = if memcg != 0 && o.memcg_css != OFFSET_UNKNOWN {
        kernel::cgroup_id(
            kernel::read_or_zero::<KPtr>(memcg + o.memcg_css as u64, o.css_cgroup),
            o,
        )
    } else {
        0
    };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(RecordKind::OomControl);
        (*rec).trigger_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        (*rec).cgroup_oom = (memcg != 0) as u32;
        (*rec).memcg_cgroup_id = memcg_cgroup_id;
        (*rec).order = kernel::read::<i32>(oc, o.oom_control_order).unwrap_or(-1);
        (*rec)._pad = 0;
    }
    entry.submit(0);
}
