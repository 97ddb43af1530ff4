//! OOM kills: `oom:mark_victim` and the exact `out_of_memory` hook.

use crate::{Header, Task, COMM_LEN};

/// How much of the `oom:mark_victim` trace record is copied (its fixed part
/// is 72 bytes on current kernels, 12 on older ones).
pub const OOM_RAW_MAX: usize = 128;
/// Memory cgroups walked upwards from the task that hit the OOM.
pub const MEMCG_LEVELS: usize = 8;

/// One memory cgroup on the way from the OOM trigger's cgroup to the root.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemcgLevel {
    /// The cgroup's kernfs id (directory inode) in the memory controller's hierarchy.
    pub cgroup_id: u64,
    /// `memory` page counter: usage and limit, in pages.
    pub usage_pages: u64,
    pub max_pages: u64,
}

/// `oom:mark_victim`: the OOM killer chose a victim. The trace record is
/// copied raw and decoded in userspace with the tracepoint's format (its
/// fields differ between kernels); the memory cgroups are read here, at the
/// moment of the kill.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomRecord {
    pub header: Header,
    /// The task that ran into the OOM (the one allocating).
    pub trigger: Task,
    pub raw_len: u32,
    pub levels_len: u32,
    /// The victim's name, from the record's `__data_loc` comm when it has one.
    pub victim_comm: [u8; COMM_LEN],
    pub raw: [u8; OOM_RAW_MAX],
    /// The trigger's memory cgroup first, then its ancestors.
    pub levels: [MemcgLevel; MEMCG_LEVELS],
}

/// `out_of_memory(oc)` entered (an optional exact hook: fentry or kprobe,
/// where the kernel allows them). `oc->memcg` says exactly whether this is a
/// cgroup OOM and for which memory cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomControlRecord {
    pub header: Header,
    /// The task that ran into the OOM.
    pub trigger_tgid: u32,
    /// 1 when `oc->memcg` is set: a memory cgroup's limit was hit.
    pub cgroup_oom: u32,
    /// That memory cgroup's kernfs id (0 for a system OOM).
    pub memcg_cgroup_id: u64,
    /// `oc->order` of the allocation that failed (-1 for a forced OOM).
    pub order: i32,
    pub _pad: u32,
}

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for OomRecord {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for OomControlRecord {}
