//! IO wait: which task is blocked, on which device, for how long.
//!
//! `sched_switch` is the hottest hook there is (every context switch), and
//! the only scheduler hook: one program per switch, not two (a wake-up hook
//! as well would double the cost on every switch-heavy workload). For the
//! task going off the CPU it returns after testing the tracepoint's
//! arguments unless the task is going to sleep in D state, and then notes
//! when the sleep began. For the task coming on, one load of the flag the
//! scheduler sets at every sleep (`sched_contributes_to_load`) ends it
//! unless that sleep was in D state; then the wait is added to the thread's
//! totals in `IO_TASKS` (read by userspace every second) and written as a
//! record only when it reached the threshold. The wait ends at the wake-up,
//! which the scheduler stamps itself: the time spent waiting for a CPU after
//! it is not counted. The device is not known at the switch: the block
//! hooks note the device each thread (and each io cgroup) last submitted IO
//! to, and time every request from issue to completion per device and cgroup.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuHashMap},
    programs::{tracing::StackIdContext, BtfTracePointContext, RawTracePointContext},
};
use tracer_common::{
    BlockedTaskRecord, CgroupIoKey, CgroupIoStats, DeviceIoStats, KernelOffsets, RecordKind,
    TaskIoTotals, IO_LATENCY_BUCKETS, OFFSET_UNKNOWN,
};

use crate::{
    kernel::{self, read_or_zero, KPtr},
    ring,
};

const TASK_UNINTERRUPTIBLE: u32 = 0x2;
/// TASK_IDLE is TASK_UNINTERRUPTIBLE | TASK_NOLOAD: idle kernel threads
/// waiting for work, not stalls.
const TASK_NOLOAD: u32 = 0x400;
/// `REQ_OP_MASK`: the low bits of `cmd_flags` are the operation.
const REQ_OP_MASK: u32 = 0xff;

#[repr(C)]
#[derive(Clone, Copy)]
struct BlockedSince {
    start_ns: u64,
    in_iowait: u32,
    state: u32,
    /// Where it went to sleep (with stacks asked for), else -1.
    stack_id: i64,
}

/// Threads in D state now, since when (key: the `task_struct` pointer, which
/// both hooks have without reading anything). LRU: a task that exits while
/// blocked must not hold its slot for ever.
#[map(name = "IO_BLOCKED")]
static BLOCKED: LruHashMap<u64, BlockedSince> = LruHashMap::with_max_entries(16384, 0);

shared_map! {
    static IO_TASKS: LruHashMap<u32, TaskIoTotals> = LruHashMap::with_max_entries(32768, 0);
}

shared_map! {
    static IO_DEVICES: PerCpuHashMap<u32, DeviceIoStats> = PerCpuHashMap::with_max_entries(1024, 0);
}

shared_map! {
    static IO_CGROUPS: LruPerCpuHashMap<CgroupIoKey, CgroupIoStats> =
        LruPerCpuHashMap::with_max_entries(8192, 0);
}

/// Issue time of each request in flight (key: the `struct request *`).
#[map(name = "IO_REQUESTS")]
static REQUESTS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct LastDevice {
    dev: u32,
    _pad: u32,
    at_ns: u64,
}

/// The device each io cgroup last issued to, and when: the device of a
/// stall whose IO a kernel thread submitted on the task's behalf (a bio
/// held back by an IO throttle is resubmitted by a worker thread, so the
/// task's own submission is never seen at `block_bio_queue`).
#[map(name = "IO_CGROUP_DEV")]
static CGROUP_DEV: LruHashMap<u64, LastDevice> = LruHashMap::with_max_entries(8192, 0);

/// `sched_switch(preempt, prev, next[, prev_state])` as a BTF tracepoint:
/// `next`'s fields are plain loads (no helper call), so a switch to a task
/// whose last sleep was not an uninterruptible one costs one load. Where
/// the kernel refuses tp_btf, `sched_switch` below does the same with a read.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_btf(ctx: BtfTracePointContext) -> i32 {
    let next: KPtr = ctx.arg(2);
    let mask = kernel::offsets().task_contributes_to_load_mask;
    let slept_in_d = mask == 0 || {
        let byte = kernel::offsets().task_contributes_to_load_byte;
        let bits = kernel::load::<u8>(next, byte);
        bits as u32 & mask != 0
    };
    if slept_in_d {
        switched_in(next);
    }
    switched_out(&ctx, ctx.arg(0), ctx.arg(1), || ctx.arg::<u64>(3));
    0
}

/// The same as a raw tracepoint: one read of `next`'s flag byte instead of
/// a load.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    let next: KPtr = ctx.arg(2);
    let mask = kernel::offsets().task_contributes_to_load_mask;
    if mask == 0
        || read_or_zero::<u8>(next, kernel::offsets().task_contributes_to_load_byte) as u32 & mask
            != 0
    {
        switched_in(next);
    }
    switched_out(&ctx, ctx.arg(0), ctx.arg(1), || ctx.arg::<u64>(3));
    0
}

/// `prev` leaves the CPU: a sleep in D state begins. Its state is the
/// tracepoint's fourth argument where the kernel passes it (`prev_state`
/// reads it; never called elsewhere, where the verifier would refuse it).
#[inline(always)]
fn switched_out<C: StackIdContext>(
    ctx: &C,
    preempt: u64,
    prev: KPtr,
    prev_state: impl FnOnce() -> u64,
) {
    // A preempted task is still runnable, whatever its state says.
    if preempt & 0xff != 0 {
        return;
    }
    let state = if kernel::offsets().sched_switch_prev_state_arg != 0 {
        prev_state() as u32
    } else {
        read_or_zero::<u32>(prev, kernel::offsets().task_state)
    };
    if state & TASK_UNINTERRUPTIBLE == 0 || state & TASK_NOLOAD != 0 {
        return;
    }
    let o = kernel::offsets();
    let iowait = read_or_zero::<u8>(prev, o.task_in_iowait_byte) as u32 & o.task_in_iowait_mask;
    // The sleeper is current here, and only here: its stack is taken now,
    // for the few waits that will turn out to be stalls.
    let stack_id = if kernel::config().iowait_stacks != 0 {
        ctx.get_stackid(&crate::ring::STACKS, 0).unwrap_or(-1)
    } else {
        -1
    };
    let since = BlockedSince {
        start_ns: unsafe { bpf_ktime_get_ns() },
        in_iowait: (iowait != 0) as u32,
        state,
        stack_id,
    };
    let _ = BLOCKED.insert(prev, since, 0);
}

/// `task` comes back on a CPU after a sleep that may have been in D state:
/// the wait ended when it was woken, which the scheduler noted (in its run
/// queue's clock) as `sched_info.last_queued`. What came after, waiting for
/// a CPU, is not IO wait.
#[inline(always)]
fn switched_in(task: KPtr) {
    let Some(since) = (unsafe { BLOCKED.get(task) }).copied() else {
        return;
    };
    let _ = BLOCKED.remove(task);
    let o = kernel::offsets();
    let now = unsafe { bpf_ktime_get_ns() };
    let blocked_ns = woken_at(task, now, o).saturating_sub(since.start_ns);
    let tid = read_or_zero::<u32>(task, o.task_pid);
    let iowait_ns = if since.in_iowait != 0 { blocked_ns } else { 0 };
    let iowait_waits = since.in_iowait as u64;
    match IO_TASKS.get_ptr_mut(tid) {
        // One writer per thread: a task is switched in on one CPU at a time.
        Some(totals) => unsafe {
            (*totals).iowait_ns += iowait_ns;
            (*totals).blocked_ns += blocked_ns;
            (*totals).iowait_waits += iowait_waits;
            (*totals).blocked_waits += 1;
        },
        None => {
            let totals = TaskIoTotals {
                tgid: kernel::tgid(task, o),
                dev: 0,
                iowait_ns,
                blocked_ns,
                iowait_waits,
                blocked_waits: 1,
            };
            let _ = IO_TASKS.insert(tid, totals, 0);
        }
    }
    if blocked_ns >= kernel::config().iowait_threshold_ns {
        report(RecordKind::IoStall, task, tid, blocked_ns, &since, o);
    }
}

/// When `task`, now being switched in, was woken, on the `bpf_ktime_get_ns`
/// clock. The scheduler stamps the wake-up (the task's enqueue) with its run
/// queue's clock, which it updated for this very switch: the difference of
/// the two is how long the task waited for the CPU. `now` when any of it is
/// unknown (the wait then includes that time).
#[inline(always)]
fn woken_at(task: KPtr, now: u64, o: &KernelOffsets) -> u64 {
    let queued = read_or_zero::<u64>(task, o.task_last_queued);
    // `task` is enqueued on this CPU: its CFS run queue leads to this CPU's.
    let cfs_rq = read_or_zero::<KPtr>(task, o.task_se_cfs_rq);
    let rq_clock = read_or_zero::<u64>(read_or_zero::<KPtr>(cfs_rq, o.cfs_rq_rq), o.rq_clock);
    if queued == 0 || rq_clock < queued {
        return now;
    }
    now.saturating_sub(rq_clock - queued)
}

/// `sched_process_hang(task)`: the kernel's hung-task detector found a task
/// in D state for longer than `kernel.hung_task_timeout_secs`.
#[raw_tracepoint(tracepoint = "sched_process_hang")]
pub fn sched_process_hang(ctx: RawTracePointContext) -> i32 {
    let o = kernel::offsets();
    let task: KPtr = ctx.arg(0);
    let tid = read_or_zero::<u32>(task, o.task_pid);
    let (blocked_ns, since) = match unsafe { BLOCKED.get(task) } {
        Some(since) => (
            unsafe { bpf_ktime_get_ns() }.saturating_sub(since.start_ns),
            *since,
        ),
        None => {
            let iowait =
                read_or_zero::<u8>(task, o.task_in_iowait_byte) as u32 & o.task_in_iowait_mask;
            (
                0,
                BlockedSince {
                    start_ns: 0,
                    in_iowait: (iowait != 0) as u32,
                    state: read_or_zero::<u32>(task, o.task_state),
                    stack_id: -1,
                },
            )
        }
    };
    report(RecordKind::HungTask, task, tid, blocked_ns, &since, o);
    0
}

#[inline(always)]
fn report(
    kind: RecordKind,
    task: KPtr,
    tid: u32,
    blocked_ns: u64,
    since: &BlockedSince,
    o: &KernelOffsets,
) {
    let Some(mut entry) = ring::reserve::<BlockedTaskRecord>(kind) else {
        return;
    };
    let io_css = read_or_zero::<KPtr>(kernel::css_set(task, o), o.css_set_io_css);
    let io_cgroup_id = kernel::cgroup_id(read_or_zero::<KPtr>(io_css, o.css_cgroup), o);
    // IO the task's cgroup issued during the wait explains it better than
    // the task's own last submission, which may be long ago (its exec).
    let mut dev = match unsafe { IO_TASKS.get(tid) } {
        Some(totals) => totals.dev,
        None => 0,
    };
    if let Some(last) = unsafe { CGROUP_DEV.get(io_cgroup_id) } {
        if dev == 0 || last.at_ns >= since.start_ns {
            dev = last.dev;
        }
    }
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = ring::header(kind);
        (*rec).task = kernel::task_identity_with_cgroups(task, o);
        (*rec).blocked_ns = blocked_ns;
        (*rec).io_cgroup_id = io_cgroup_id;
        (*rec).dev = dev;
        (*rec).in_iowait = since.in_iowait;
        (*rec).state = since.state;
        (*rec)._pad = 0;
        (*rec).stack_id = since.stack_id;
    }
    // A stall is reported from inside the scheduler's wake-up path: waking
    // the reader from there (an irq_work that wakes another task) disturbs
    // the kernel's own accounting of the woken task (its delay accounting's
    // IO wait came out 2 to 6 times too long here). Userspace drains the
    // ring buffer on its 100 ms tick instead.
    let flags = if kind == RecordKind::IoStall {
        ring::NO_WAKEUP
    } else {
        0
    };
    entry.submit(flags);
}

/// `block_bio_queue(bio)`: runs in the context of whoever submits the bio,
/// so it tells which device each thread last did IO to.
#[raw_tracepoint(tracepoint = "block_bio_queue")]
pub fn block_bio_queue(ctx: RawTracePointContext) -> i32 {
    bio_queued(ctx.arg(0))
}

/// `block_bio_queue(q, bio)` before 5.11. A program of its own: one program
/// choosing its argument by a constant is compiled to a read at a computed
/// context offset, which the verifier refuses.
#[raw_tracepoint(tracepoint = "block_bio_queue")]
pub fn block_bio_queue_q_first(ctx: RawTracePointContext) -> i32 {
    bio_queued(ctx.arg(1))
}

#[inline(always)]
fn bio_queued(bio: KPtr) -> i32 {
    let o = kernel::offsets();
    let dev = if o.bio_bdev != OFFSET_UNKNOWN {
        read_or_zero::<u32>(read_or_zero::<KPtr>(bio, o.bio_bdev), o.bdev_dev)
    } else {
        // Before 5.12: the disk and the partition's number.
        let disk = read_or_zero::<KPtr>(bio, o.bio_disk);
        let partno = read_or_zero::<u8>(bio, o.bio_partno) as u32;
        disk_dev(disk, partno, o)
    };
    if dev == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    match IO_TASKS.get_ptr_mut(tid) {
        Some(totals) => unsafe { (*totals).dev = dev },
        None => {
            let totals = TaskIoTotals {
                tgid: (pid_tgid >> 32) as u32,
                dev,
                ..TaskIoTotals::default()
            };
            let _ = IO_TASKS.insert(tid, totals, 0);
        }
    }
    0
}

/// The request's device: its partition, else its disk.
#[inline(always)]
fn request_dev(rq: KPtr, o: &KernelOffsets) -> u32 {
    let dev = read_or_zero::<u32>(read_or_zero::<KPtr>(rq, o.rq_part), o.part_dev);
    if dev != 0 {
        return dev;
    }
    // The request's own disk before 5.17, its queue's after.
    let disk = if o.rq_disk != OFFSET_UNKNOWN {
        read_or_zero::<KPtr>(rq, o.rq_disk)
    } else {
        read_or_zero::<KPtr>(read_or_zero::<KPtr>(rq, o.rq_q), o.queue_disk)
    };
    disk_dev(disk, 0, o)
}

/// The kernel's `dev_t` of partition `partno` of `disk` (MKDEV: major in
/// the top 12 bits, minor in the low 20).
#[inline(always)]
fn disk_dev(disk: KPtr, partno: u32, o: &KernelOffsets) -> u32 {
    let major = read_or_zero::<u32>(disk, o.gendisk_major);
    let minor = read_or_zero::<u32>(disk, o.gendisk_first_minor) + partno;
    (major << 20) | (minor & 0xfffff)
}

/// Read (0) or write (1), or `None` for flushes, discards and the like.
#[inline(always)]
fn direction(rq: KPtr, o: &KernelOffsets) -> Option<usize> {
    match read_or_zero::<u32>(rq, o.rq_cmd_flags) & REQ_OP_MASK {
        0 => Some(0),
        1 => Some(1),
        _ => None,
    }
}

/// `block_rq_issue(rq)`: the request goes to the driver. Its start time is
/// kept for the completion; its bytes are charged to the cgroup that owns
/// the bio (the blkcg: for writeback on cgroup v2, the one that dirtied the
/// pages, not the flusher thread).
#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn block_rq_issue(ctx: RawTracePointContext) -> i32 {
    rq_issued(ctx.arg(0))
}

/// `block_rq_issue(q, rq)` before 5.11 (see `block_bio_queue_q_first`).
#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn block_rq_issue_q_first(ctx: RawTracePointContext) -> i32 {
    rq_issued(ctx.arg(1))
}

#[inline(always)]
fn rq_issued(rq: KPtr) -> i32 {
    let o = kernel::offsets();
    let Some(dir) = direction(rq, o) else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = REQUESTS.insert(rq, now, 0);
    let dev = request_dev(rq, o);
    let blkg = read_or_zero::<KPtr>(read_or_zero::<KPtr>(rq, o.rq_bio), o.bio_blkg);
    let blkcg = read_or_zero::<KPtr>(blkg, o.blkg_blkcg);
    let cgroup_id = if blkcg != 0 && o.blkcg_css != OFFSET_UNKNOWN {
        kernel::cgroup_id(
            read_or_zero::<KPtr>(blkcg + o.blkcg_css as u64, o.css_cgroup),
            o,
        )
    } else {
        0
    };
    let bytes = read_or_zero::<u32>(rq, o.rq_data_len) as u64;
    let key = CgroupIoKey {
        cgroup_id,
        dev,
        _pad: 0,
    };
    match IO_CGROUPS.get_ptr_mut(key) {
        Some(stats) => unsafe {
            if let (Some(ios), Some(b)) = ((*stats).ios.get_mut(dir), (*stats).bytes.get_mut(dir)) {
                *ios += 1;
                *b += bytes;
            }
        },
        None => {
            let mut stats = CgroupIoStats::default();
            if let (Some(ios), Some(b)) = (stats.ios.get_mut(dir), stats.bytes.get_mut(dir)) {
                *ios = 1;
                *b = bytes;
            }
            let _ = IO_CGROUPS.insert(key, stats, 0);
        }
    }
    if cgroup_id != 0 {
        let last = LastDevice {
            dev,
            _pad: 0,
            at_ns: now,
        };
        let _ = CGROUP_DEV.insert(cgroup_id, last, 0);
    }
    0
}

/// `block_rq_complete(rq, error, nr_bytes)`: issue-to-completion latency
/// per device and direction, with a log2 histogram.
#[raw_tracepoint(tracepoint = "block_rq_complete")]
pub fn block_rq_complete(ctx: RawTracePointContext) -> i32 {
    let o = kernel::offsets();
    let rq: KPtr = ctx.arg(0);
    let Some(start) = (unsafe { REQUESTS.get(rq) }).copied() else {
        return 0;
    };
    let _ = REQUESTS.remove(rq);
    let Some(dir) = direction(rq, o) else {
        return 0;
    };
    let latency = unsafe { bpf_ktime_get_ns() }.saturating_sub(start);
    let bytes = ctx.arg::<u64>(2) & 0xffff_ffff;
    let bucket = latency_bucket(latency / 1000);
    let dev = request_dev(rq, o);
    let stats = match IO_DEVICES.get_ptr_mut(dev) {
        Some(stats) => stats,
        None => {
            let _ = IO_DEVICES.insert(dev, DeviceIoStats::default(), 0);
            match IO_DEVICES.get_ptr_mut(dev) {
                Some(stats) => stats,
                None => return 0,
            }
        }
    };
    // Per CPU: this CPU's copy has no other writer.
    unsafe {
        if let Some(v) = (*stats).ios.get_mut(dir) {
            *v += 1;
        }
        if let Some(v) = (*stats).bytes.get_mut(dir) {
            *v += bytes;
        }
        if let Some(v) = (*stats).latency_ns.get_mut(dir) {
            *v += latency;
        }
        if let Some(v) = (*stats).latency_buckets.get_mut(bucket) {
            *v += 1;
        }
    }
    0
}

/// Bucket of a latency in microseconds: the number of bits it needs,
/// clamped to the last bucket. Without a branch per bit: the compiler
/// expands the leading-zero count into shifts and a population count, so the
/// verifier walks one path instead of one per possible bucket (a loop that
/// broke out at each bit made it verify the rest of the program 24 times,
/// the slowest load of tracer's start-up). The clamp is one comparison, and
/// the histogram's `get_mut` checks the index again.
#[inline(always)]
fn latency_bucket(us: u64) -> usize {
    let bits = (u64::BITS - us.leading_zeros()) as usize;
    if bits > IO_LATENCY_BUCKETS - 1 {
        IO_LATENCY_BUCKETS - 1
    } else {
        bits
    }
}
