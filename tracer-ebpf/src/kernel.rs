//! Reading `task_struct` and friends without CO-RE: every member offset comes
//! from the running kernel's BTF, found by userspace and stored in `OFFSETS`.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated as gen};
use tracer_common::{Config, KernelOffsets, Task, COMM_LEN, OFFSET_UNKNOWN};

/// Overwritten by userspace at load time (a `.rodata` global, so the verifier
/// sees constants). Unmangled: the symbol is the identifier, which
/// `tracer_common::names` must list (checked here at compile time).
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::UNKNOWN;
const _: &str = tracer_common::names::OFFSETS;

#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;
const _: &str = tracer_common::names::CONFIG;

/// The offsets, each member loaded where it is used and only then: a
/// copy of the whole struct is a load per member, some ninety instructions
/// before the first test of the hottest hooks. Through a pointer the
/// compiler cannot see through, which would otherwise fold the default
/// values in (userspace writes `OFFSETS` at load time); the verifier still
/// knows the read-only values, and prunes the branches they decide.
#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    opaque(&OFFSETS)
}

/// The configuration, as [`offsets`]: each setting loaded where it is used.
#[inline(always)]
pub fn config() -> &'static Config {
    opaque(&CONFIG)
}

/// `value`, through a pointer read back from the stack with a volatile
/// load: the compiler can no longer tell which static it points to.
#[inline(always)]
fn opaque<T>(value: &'static T) -> &'static T {
    let at: *const T = value;
    // SAFETY: `at` points to a static, which lives for ever.
    unsafe { &*core::ptr::read_volatile(&at) }
}

/// A load through a BTF-typed kernel pointer, the argument of a tp_btf
/// program or a pointer member loaded from one: a plain load, no helper
/// call. The verifier checks it against the member's type (so `offset`
/// must be known: test it against `OFFSET_UNKNOWN` first, and the verifier
/// drops the load on a kernel without the member), and a faulting load
/// reads zero.
#[inline(always)]
pub fn load<T: Copy>(btf_pointer: KPtr, offset: u32) -> T {
    // SAFETY: see above; the verifier turns it into a fault-tolerant load.
    unsafe { core::ptr::read_volatile((btf_pointer + offset as u64) as *const T) }
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

/// At `sched_process_exit`: whether `task` is the last thread of its
/// process to exit (`signal->live` has just dropped to zero).
#[inline(always)]
pub fn is_last_thread(task: KPtr, o: &KernelOffsets) -> bool {
    if let Some(live) =
        read::<KPtr>(task, o.task_signal).and_then(|signal| read::<i32>(signal, o.signal_live))
    {
        return live == 0;
    }
    // Without `signal->live`, fall back to the group leader's exit. Plain
    // integers, no `Option` compared: LLVM may leave the payload of a
    // `None` undefined, and the verifier refuses a read of it.
    read_or_zero::<u32>(task, o.task_pid) == tgid(task, o)
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
