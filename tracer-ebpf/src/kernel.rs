//! Reading `task_struct` and friends without CO-RE: every member offset comes
//! from the running kernel's BTF, found by userspace and stored in `OFFSETS`.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated as gen};
use tracer_common::{Config, KernelOffsets, Task, COMM_LEN, OFFSET_UNKNOWN};

/// Overwritten by userspace at load time (a `.rodata` global, so the verifier
/// sees constants).
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::UNKNOWN;

#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    signal_mask: 0,
    oom_raw_size: 0,
    oom_comm_loc: tracer_common::OFFSET_UNKNOWN,
    page_alloc_stacks: 0,
    dns: 0,
    drop_reasons: [0; tracer_common::DROP_REASON_WORDS],
    iowait_threshold_ns: u64::MAX,
    iowait_stacks: 0,
    _pad_iowait: 0,
    drop_caller_start: 0,
    drop_caller_end: 0,
    drop_caller_reason: 0,
    _pad_drop_caller: 0,
};

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // Volatile: otherwise the compiler folds the default value in.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// One member of `OFFSETS`, read on its own (`pick` gives its address).
#[inline(always)]
pub fn offset_of(pick: impl Fn(&KernelOffsets) -> *const u32) -> u32 {
    unsafe { core::ptr::read_volatile(pick(&OFFSETS)) }
}

#[inline(always)]
pub fn config() -> Config {
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// A kernel pointer as the programs pass it around (raw tracepoint arguments
/// are plain u64s).
pub type KPtr = u64;

/// Reads a `T` at `base + offset`, or `None` when the offset is unknown, the
/// pointer is null or the read faults.
#[inline(always)]
pub fn read<T: Copy>(base: KPtr, offset: u32) -> Option<T> {
    if base == 0 || offset == OFFSET_UNKNOWN {
        return None;
    }
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

/// [`read`] for the long chains of reads where zero is as good as nothing:
/// no branch on the outcome (a failed read leaves zeroes), so older
/// verifiers do not have to follow two paths per read.
#[inline(always)]
pub fn read_or_zero<T: Copy + Default>(base: KPtr, offset: u32) -> T {
    let mut value = T::default();
    if offset != OFFSET_UNKNOWN {
        unsafe {
            gen::bpf_probe_read_kernel(
                (&mut value as *mut T).cast(),
                core::mem::size_of::<T>() as u32,
                (base + offset as u64) as *const core::ffi::c_void,
            )
        };
    }
    value
}

/// Copies `N` bytes at `base + offset` into `dst` (a ring-buffer record's
/// field, too big for the stack). The kernel zeroes `dst` when the read
/// faults; an unknown offset reads from address 0, which faults.
#[inline(always)]
pub fn read_bytes_into<const N: usize>(dst: &mut [u8; N], base: KPtr, offset: u32) {
    let at = if offset == OFFSET_UNKNOWN {
        0
    } else {
        base + offset as u64
    };
    unsafe {
        gen::bpf_probe_read_kernel(
            dst.as_mut_ptr().cast(),
            N as u32,
            at as *const core::ffi::c_void,
        )
    };
}

/// The task's thread-group leader, i.e. the process it belongs to.
#[inline(always)]
pub fn group_leader(task: KPtr, o: &KernelOffsets) -> KPtr {
    read_or_zero::<KPtr>(task, o.task_group_leader)
}

/// The process that forked this one (`real_parent`, not the ptracer), as its leader.
#[inline(always)]
pub fn parent_process(task: KPtr, o: &KernelOffsets) -> KPtr {
    group_leader(read_or_zero::<KPtr>(task, o.task_real_parent), o)
}

#[inline(always)]
pub fn tgid(task: KPtr, o: &KernelOffsets) -> u32 {
    read_or_zero::<u32>(task, o.task_tgid)
}

#[inline(always)]
pub fn comm(task: KPtr, o: &KernelOffsets) -> [u8; COMM_LEN] {
    read_or_zero::<[u8; COMM_LEN]>(task, o.task_comm)
}

#[inline(always)]
pub fn start_ns(task: KPtr, o: &KernelOffsets) -> u64 {
    read_or_zero::<u64>(task, o.task_start_time)
}

/// Identity of `task`: thread id, process id, the process's start time and
/// name, and the thread's own name.
#[inline(always)]
pub fn task_identity(task: KPtr, o: &KernelOffsets) -> Task {
    let leader = group_leader(task, o);
    Task {
        tid: read_or_zero::<u32>(task, o.task_pid),
        tgid: tgid(task, o),
        start_ns: start_ns(leader, o),
        comm: comm(leader, o),
        thread_comm: comm(task, o),
        cgroup2_id: 0,
        memory_cgroup_id: 0,
    }
}

/// [`task_identity`] plus the task's cgroups as they are now, for events
/// whose process may be gone before userspace could look it up in /proc.
#[inline(always)]
pub fn task_identity_with_cgroups(task: KPtr, o: &KernelOffsets) -> Task {
    let mut identity = task_identity(task, o);
    let css_set = css_set(task, o);
    identity.cgroup2_id = cgroup_id(read_or_zero::<KPtr>(css_set, o.css_set_dfl_cgrp), o);
    let memory_css = read_or_zero::<KPtr>(css_set, o.css_set_memory_css);
    identity.memory_cgroup_id = cgroup_id(read_or_zero::<KPtr>(memory_css, o.css_cgroup), o);
    identity
}

/// `task->cgroups`: the task's set of cgroup states.
#[inline(always)]
pub fn css_set(task: KPtr, o: &KernelOffsets) -> KPtr {
    read_or_zero::<KPtr>(task, o.task_cgroups)
}

/// `cgroup->kn->id`: the cgroup directory's inode number.
#[inline(always)]
pub fn cgroup_id(cgroup: KPtr, o: &KernelOffsets) -> u64 {
    read_or_zero::<u64>(read_or_zero::<KPtr>(cgroup, o.cgroup_kn), o.kernfs_node_id)
}
