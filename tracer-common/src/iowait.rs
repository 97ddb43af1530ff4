//! IO wait: stall and hung-task records, and the totals the kernel keeps
//! in maps for `tracer top`.

use crate::{Header, Task};

/// A task that was blocked in D state (uninterruptible sleep): an IO stall
/// (`RecordKind::IoStall`, at its wake-up, when it was blocked at least the
/// threshold) or a task the kernel's hung-task detector reported
/// (`RecordKind::HungTask`, still blocked).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockedTaskRecord {
    pub header: Header,
    pub task: Task,
    /// How long it was (or has been, for a hung task) blocked; 0 when the
    /// start of a hung task's wait was not seen.
    pub blocked_ns: u64,
    /// The task's cgroup in the io/blkio controller's hierarchy (kernfs id).
    pub io_cgroup_id: u64,
    /// The block device the task (else its io cgroup) last submitted IO
    /// to, as the kernel's dev_t (major << 20 | minor); 0 when unknown.
    pub dev: u32,
    /// 1 when the wait was IO wait (`in_iowait`: io_schedule and friends).
    pub in_iowait: u32,
    /// `task_struct.__state` when it went to sleep (hung tasks: now).
    pub state: u32,
    pub _pad: u32,
    /// Kernel stack id in the `STACKS` map, taken when the task went to
    /// sleep (with stacks asked for), else -1.
    pub stack_id: i64,
}

/// Per-thread blocked time, kept by the kernel in `IO_TASKS` (key: thread
/// id) and read by userspace every second; never streamed per switch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskIoTotals {
    pub tgid: u32,
    /// The block device this thread last submitted IO to (dev_t), or 0.
    pub dev: u32,
    /// Time blocked with `in_iowait` set (what delay accounting calls blkio delay).
    pub iowait_ns: u64,
    /// Time blocked in D state, IO wait or not.
    pub blocked_ns: u64,
    pub iowait_waits: u64,
    pub blocked_waits: u64,
}

/// Indexes of the read and write halves of the per-direction counters.
pub const IO_READ: usize = 0;
pub const IO_WRITE: usize = 1;
/// Latency histogram buckets: bucket `b` counts requests that took
/// [2^(b-1), 2^b) microseconds (bucket 0: under 1 us); the last is open.
pub const IO_LATENCY_BUCKETS: usize = 24;

/// Completed block requests per device (`IO_DEVICES`, per CPU; key: dev_t).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceIoStats {
    pub ios: [u64; 2],
    pub bytes: [u64; 2],
    /// Sum of issue-to-completion times.
    pub latency_ns: [u64; 2],
    pub latency_buckets: [u64; IO_LATENCY_BUCKETS],
}

/// Key of `IO_CGROUPS`: the cgroup that owns the IO (the bio's blkcg: for
/// writeback on cgroup v2, the cgroup that dirtied the pages) and the device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CgroupIoKey {
    pub cgroup_id: u64,
    pub dev: u32,
    pub _pad: u32,
}

/// Block requests issued per (cgroup, device) (`IO_CGROUPS`, per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CgroupIoStats {
    pub ios: [u64; 2],
    pub bytes: [u64; 2],
}

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for BlockedTaskRecord {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for TaskIoTotals {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DeviceIoStats {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CgroupIoKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CgroupIoStats {}
