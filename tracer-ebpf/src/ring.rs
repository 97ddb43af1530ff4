//! The one ring buffer all programs write to, and the per-CPU counters of
//! records that did not fit: a loss is counted here and reported by
//! userspace, never silent.

use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    maps::{PerCpuArray, RingBuf, StackTrace},
};
use tracer_common::{Header, RecordKind, LOST_SLOTS};

shared_map! {
    /// 4 MiB: about 5000 signal records or 35000 lifecycle records of slack
    /// while userspace is descheduled.
    static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);
}

shared_map! {
    static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_SLOTS, 0);
}

shared_map! {
    /// Kernel stacks of page-allocation failures, IO stalls and hung tasks
    /// (with `--stacks`).
    pub static STACKS: StackTrace = StackTrace::with_max_entries(1024, 0);
}

/// Reserves room for a `T`, or counts the loss and returns `None`.
#[inline(always)]
pub fn reserve<T: 'static>(kind: RecordKind) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        if let Some(counter) = LOST.get_ptr_mut(kind.lost_slot()) {
            // Per-CPU slot: no other writer can race this increment.
            unsafe { *counter += 1 };
        }
    }
    entry
}

/// `BPF_RB_NO_WAKEUP`: the record is not worth waking tracer for.
pub const NO_WAKEUP: u64 = 1;

/// Submits a frequent, unhurried record (fork, exec, exit, DNS) without
/// waking tracer: a wake-up is an inter-processor interrupt, which on a
/// virtual machine costs microseconds, more than the program itself. Such
/// records are read with the next urgent one, or at tracer's next tick
/// (every 100 ms), in order either way.
#[inline(always)]
pub fn submit_quietly<T>(entry: aya_ebpf::maps::ring_buf::RingBufEntry<T>) {
    entry.submit(NO_WAKEUP);
}

#[inline(always)]
pub fn header(kind: RecordKind) -> Header {
    Header {
        kind: kind as u32,
        cpu: unsafe { bpf_get_smp_processor_id() },
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    }
}
