//! The records tracer's BPF programs write into the ring buffer, and the kernel
//! struct offsets userspace hands to them.
//!
//! Everything here is `#[repr(C)]`, plain old data, and identical on both
//! sides: the BPF programs fill these structs in place inside a ring-buffer
//! reservation, and userspace reads them back from the same bytes.
#![no_std]

/// Length of `task_struct.comm`, the kernel's process name (with its NUL).
pub const COMM_LEN: usize = 16;

/// How many processes above the sender of a signal the kernel walks through
/// `task_struct.real_parent` (the sender itself included).
pub const MAX_ANCESTRY: usize = 16;

/// The first field of every record: tells userspace which struct follows.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Signal = 1,
    Fork = 2,
    Exec = 3,
    Exit = 4,
    Oom = 5,
    OomControl = 6,
    PageAllocFailure = 7,
    PacketDrop = 8,
    Dns = 9,
    ConntrackClash = 10,
    IoStall = 11,
    HungTask = 12,
}

impl RecordKind {
    pub const ALL: [RecordKind; 12] = [
        Self::Signal,
        Self::Fork,
        Self::Exec,
        Self::Exit,
        Self::Oom,
        Self::OomControl,
        Self::PageAllocFailure,
        Self::PacketDrop,
        Self::Dns,
        Self::ConntrackClash,
        Self::IoStall,
        Self::HungTask,
    ];

    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u32 == raw)
    }

    /// Index of this kind's slot in the per-CPU `LOST` counters.
    pub const fn lost_slot(self) -> u32 {
        self as u32 - 1
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Fork => "fork",
            Self::Exec => "exec",
            Self::Exit => "exit",
            Self::Oom => "oom",
            Self::OomControl => "oom_control",
            Self::PageAllocFailure => "page_alloc_failure",
            Self::PacketDrop => "packet_drop",
            Self::Dns => "dns",
            Self::ConntrackClash => "conntrack_clash",
            Self::IoStall => "io_stall",
            Self::HungTask => "hung_task",
        }
    }
}

/// Number of slots in the `LOST` per-CPU array (one per [`RecordKind`]).
pub const LOST_SLOTS: u32 = RecordKind::ALL.len() as u32;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
}

/// One task as the kernel knows it at the time of the event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Task {
    /// Thread id (`task_struct.pid`, in the initial pid namespace).
    pub tid: u32,
    /// Process id (`task_struct.tgid`).
    pub tgid: u32,
    /// Start of the process (its group leader), CLOCK_MONOTONIC nanoseconds.
    pub start_ns: u64,
    /// The process's name (its group leader's `comm`).
    pub comm: [u8; COMM_LEN],
    /// This thread's own name, which threads often set (`worker-3`).
    pub thread_comm: [u8; COMM_LEN],
    /// Id of the task's cgroup in the cgroup2 hierarchy (its directory's
    /// inode number) at the time of the event; 0 when not read.
    pub cgroup2_id: u64,
    /// Id of the task's cgroup in the hierarchy of the memory controller
    /// (v1 on v1 and hybrid hosts); 0 when not read.
    pub memory_cgroup_id: u64,
}

/// One process in the sender's ancestry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ancestor {
    pub tgid: u32,
    pub _pad: u32,
    pub start_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// `signal:signal_generate`: a signal was generated for a task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalRecord {
    pub header: Header,
    /// The task running when the signal was generated: the sender for
    /// kill/tkill/sigqueue, the faulting or interrupted task otherwise.
    pub sender: Task,
    pub target: Task,
    pub sig: u32,
    /// `kernel_siginfo.si_code` (SI_USER for `SEND_SIG_NOINFO`, SI_KERNEL for `SEND_SIG_PRIV`).
    pub si_code: i32,
    /// 1 when the whole thread group was targeted (kill), 0 for one thread (tkill/tgkill).
    pub group: u32,
    /// The kernel's `TRACE_SIGNAL_*` result.
    pub result: u32,
    /// Valid entries in `ancestry`, sender first, then its parent, and so on.
    pub ancestry_len: u32,
    /// 1 when the walk stopped at `MAX_ANCESTRY` before reaching pid 1 or 0.
    pub ancestry_truncated: u32,
    pub ancestry: [Ancestor; MAX_ANCESTRY],
}

/// `sched:sched_process_fork` for a new process (new threads are filtered out in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: Header,
    pub parent: Task,
    pub child: Task,
}

/// `sched:sched_process_exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: Header,
    /// After the exec: `comm` is the new program's name.
    pub task: Task,
    /// The process's parent (`real_parent->tgid`).
    pub ppid: u32,
    pub _pad: u32,
}

/// `sched:sched_process_exit` when the last thread of a process exits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: Header,
    pub task: Task,
    /// `task_struct.exit_code`: the wait status (signal in the low 7 bits,
    /// 0x80 for a core dump, exit status in bits 8-15).
    pub exit_code: u32,
    pub ppid: u32,
}

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

/// `kmem:mm_page_alloc` that returned no page: an allocation failed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PageAllocRecord {
    pub header: Header,
    /// The task that asked.
    pub task: Task,
    pub gfp_flags: u64,
    pub order: u32,
    pub migratetype: i32,
    /// Kernel stack id in the `STACKS` map when stacks were asked for, else -1.
    pub stack_id: i64,
}

/// Bytes of a packet copied from its network header on: enough for the IP
/// and UDP headers and a DNS question with a long Kubernetes search name.
pub const PACKET_CAPTURE: usize = 256;
/// `struct nf_conntrack_tuple`: two `nf_inet_addr` + ports, l3num, protonum, dir.
pub const CT_TUPLE_LEN: usize = 40;

/// Where a [`PacketRecord`] was taken.
pub mod packet_event {
    /// `skb:kfree_skb` with one of the drop reasons asked for.
    pub const DROP: u32 = 1;
    /// `net:net_dev_queue` of a UDP packet to port 53 sent by a local socket:
    /// a DNS query, in the sending process's context.
    pub const DNS_SENT: u32 = 2;
    /// `net:netif_receive_skb` of a UDP packet from port 53: a DNS response
    /// arriving in a network namespace.
    pub const DNS_RECEIVED: u32 = 3;
    /// `nf_ct_resolve_clash` returned (an optional exact hook, kprobe and
    /// kretprobe, where the kernel allows them): a new conntrack entry found
    /// another of the same tuple already in the table. `drop_reason` holds
    /// its verdict: `NF_ACCEPT` (1, resolved) or `NF_DROP` (0, the packet is
    /// dropped and `insert_failed` counts it).
    pub const CONNTRACK_CLASH: u32 = 4;
}

/// A packet the kernel dropped, or a DNS packet on its way: its headers as
/// captured, the conntrack entry it carried, and the network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketRecord {
    pub header: Header,
    /// The task running at the time: the sender for [`packet_event::DNS_SENT`];
    /// for drops and received packets often whoever the softirq interrupted.
    pub task: Task,
    /// One of [`packet_event`].
    pub event: u32,
    /// `enum skb_drop_reason` (drops only).
    pub drop_reason: u32,
    /// Inode of the network namespace of the packet's device (or socket).
    pub netns: u32,
    pub ifindex: u32,
    /// Kernel address that freed the packet (drops only).
    pub location: u64,
    /// The `sk_buff` itself, to join a clash with the drop that follows it.
    pub skb: u64,
    /// `nf_conn.status` bits; meaningful when `has_ct` is 1.
    pub ct_status: u64,
    pub has_ct: u32,
    /// Valid bytes in `packet`, from the network header on.
    pub captured: u32,
    /// The running task's network namespace and `PF_*` flags: a DNS query
    /// is the task's only when it is no kernel thread and in the packet's
    /// namespace (a packet that waited for its next hop's address leaves
    /// from a softirq, in whatever task that interrupted).
    pub task_netns: u32,
    pub task_flags: u32,
    /// The conntrack entry's original and reply tuples (raw `nf_conntrack_tuple`).
    pub ct_original: [u8; CT_TUPLE_LEN],
    pub ct_reply: [u8; CT_TUPLE_LEN],
    pub packet: [u8; PACKET_CAPTURE],
}

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

/// Member offsets in kernel structs, read from the running kernel's BTF by
/// userspace and passed to the BPF programs as a read-only global: rustc emits
/// no CO-RE relocations, so the programs cannot ask the loader for them.
///
/// An offset of [`OFFSET_UNKNOWN`] means the member was not found; the
/// programs then leave the corresponding field zeroed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_time: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    /// `task_struct.cgroups` (a `css_set *`).
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp`: the task's cgroup2 cgroup.
    pub css_set_dfl_cgrp: u32,
    /// `css_set.subsys[memory_cgrp_id]`: the memory controller's state.
    pub css_set_memory_css: u32,
    /// `cgroup_subsys_state.cgroup`.
    pub css_cgroup: u32,
    /// `cgroup.kn`.
    pub cgroup_kn: u32,
    /// `kernfs_node.id`.
    pub kernfs_node_id: u32,
    /// `cgroup_subsys_state.parent`.
    pub css_parent: u32,
    /// `mem_cgroup.css`: where the css sits in its memory cgroup.
    pub memcg_css: u32,
    /// `mem_cgroup.memory.usage` and `mem_cgroup.memory.max` (a page_counter).
    pub memcg_usage: u32,
    pub memcg_max: u32,
    /// `oom_control.memcg` and `oom_control.order`.
    pub oom_control_memcg: u32,
    pub oom_control_order: u32,
    /// `sk_buff`: head, data and tail (an offset from head on 64-bit),
    /// network header (an offset from head), device, socket and
    /// conntrack entry (`_nfct`, the low bits are the ctinfo).
    pub skb_head: u32,
    pub skb_data: u32,
    pub skb_tail: u32,
    pub skb_network_header: u32,
    pub skb_dev: u32,
    pub skb_sk: u32,
    pub skb_nfct: u32,
    /// `net_device.nd_net` and `net_device.ifindex`.
    pub netdev_net: u32,
    pub netdev_ifindex: u32,
    /// `sock.__sk_common.skc_net`.
    pub sock_net: u32,
    /// `task_struct.flags`, `task_struct.nsproxy` and `nsproxy.net_ns`.
    pub task_flags: u32,
    pub task_nsproxy: u32,
    pub nsproxy_net: u32,
    /// `sock.sk_protocol` (a u16 since 5.6; older kernels pack it in a
    /// bitfield, where this stays unknown).
    pub sock_protocol: u32,
    /// `net.ns.inum`: the namespace's inode number.
    pub net_inum: u32,
    /// `nf_conn.tuplehash[0].tuple`, `nf_conn.tuplehash[1].tuple`, `nf_conn.status`.
    pub ct_original_tuple: u32,
    pub ct_reply_tuple: u32,
    pub ct_status: u32,
    /// `task_struct.__state`, `state` before 5.14 (TASK_UNINTERRUPTIBLE is
    /// a task in D state; the older `long` is read by its low 32 bits).
    pub task_state: u32,
    /// `task_struct.in_iowait` is a one-bit bitfield: the byte it is in and
    /// its mask there (0 when unknown: no wait is then taken for IO wait).
    pub task_in_iowait_byte: u32,
    pub task_in_iowait_mask: u32,
    /// `css_set.subsys[io_cgrp_id]`: the task's blkio/io controller state.
    pub css_set_io_css: u32,
    /// `request.q`, `.part`, `.__data_len`, `.cmd_flags`, `.bio`.
    pub rq_q: u32,
    pub rq_part: u32,
    pub rq_data_len: u32,
    pub rq_cmd_flags: u32,
    pub rq_bio: u32,
    /// `request_queue.disk`, `gendisk.major`, `gendisk.first_minor`.
    pub queue_disk: u32,
    pub gendisk_major: u32,
    pub gendisk_first_minor: u32,
    /// `block_device.bd_dev`.
    pub bdev_dev: u32,
    /// `bio.bi_bdev`, `bio.bi_blkg`.
    pub bio_bdev: u32,
    pub bio_blkg: u32,
    /// `blkcg_gq.blkcg`, `blkcg.css`.
    pub blkg_blkcg: u32,
    pub blkcg_css: u32,
    /// 1 when the raw `sched_switch` tracepoint passes `prev_state` as its
    /// fourth argument (5.18 and later): no read of `__state` is then needed
    /// on the hottest path there is.
    pub sched_switch_prev_state_arg: u32,
    /// `task_struct.sched_contributes_to_load` (a one-bit bitfield, set by
    /// the scheduler at every sleep to whether it was an uninterruptible
    /// one): its byte and mask; mask 0 when unknown.
    pub task_contributes_to_load_byte: u32,
    pub task_contributes_to_load_mask: u32,
    /// `task_struct.sched_info.last_queued`: when the scheduler last queued
    /// the task to run (its wake-up), on its run queue's clock.
    pub task_last_queued: u32,
    /// `task_struct.se.cfs_rq`, `cfs_rq.rq` and `rq.clock`: the way from a
    /// task to its run queue's clock, to compare with `last_queued`.
    pub task_se_cfs_rq: u32,
    pub cfs_rq_rq: u32,
    pub rq_clock: u32,
    /// `request.rq_disk` (before 5.17: the disk without the queue's).
    pub rq_disk: u32,
    /// The `dev_t` of what `request.part` points to: `block_device.bd_dev`,
    /// or before 5.11 `hd_struct.__dev.devt`.
    pub part_dev: u32,
    /// `bio.bi_disk` and `bio.bi_partno` (before 5.12, no `bi_bdev`).
    pub bio_disk: u32,
    pub bio_partno: u32,
    /// 1 when the raw `kfree_skb` tracepoint passes a drop reason as its
    /// third argument (5.17 and later). Before, only the caller's address
    /// (second argument) tells why: [`Config::drop_caller_start`].
    pub kfree_skb_reason_arg: u32,
    /// The raw tracepoint argument holding the request of `block_rq_issue`
    /// and the bio of `block_bio_queue`: 1 before 5.11, where the request
    /// queue came first; 0 after.
    pub block_rq_issue_rq_arg: u32,
    pub block_bio_queue_bio_arg: u32,
}

pub const OFFSET_UNKNOWN: u32 = u32::MAX;

impl KernelOffsets {
    pub const UNKNOWN: Self = Self {
        task_pid: OFFSET_UNKNOWN,
        task_tgid: OFFSET_UNKNOWN,
        task_comm: OFFSET_UNKNOWN,
        task_real_parent: OFFSET_UNKNOWN,
        task_group_leader: OFFSET_UNKNOWN,
        task_start_time: OFFSET_UNKNOWN,
        task_exit_code: OFFSET_UNKNOWN,
        task_signal: OFFSET_UNKNOWN,
        signal_live: OFFSET_UNKNOWN,
        task_cgroups: OFFSET_UNKNOWN,
        css_set_dfl_cgrp: OFFSET_UNKNOWN,
        css_set_memory_css: OFFSET_UNKNOWN,
        css_cgroup: OFFSET_UNKNOWN,
        cgroup_kn: OFFSET_UNKNOWN,
        kernfs_node_id: OFFSET_UNKNOWN,
        css_parent: OFFSET_UNKNOWN,
        memcg_css: OFFSET_UNKNOWN,
        memcg_usage: OFFSET_UNKNOWN,
        memcg_max: OFFSET_UNKNOWN,
        oom_control_memcg: OFFSET_UNKNOWN,
        oom_control_order: OFFSET_UNKNOWN,
        skb_head: OFFSET_UNKNOWN,
        skb_data: OFFSET_UNKNOWN,
        skb_tail: OFFSET_UNKNOWN,
        skb_network_header: OFFSET_UNKNOWN,
        skb_dev: OFFSET_UNKNOWN,
        skb_sk: OFFSET_UNKNOWN,
        skb_nfct: OFFSET_UNKNOWN,
        netdev_net: OFFSET_UNKNOWN,
        netdev_ifindex: OFFSET_UNKNOWN,
        sock_net: OFFSET_UNKNOWN,
        sock_protocol: OFFSET_UNKNOWN,
        task_flags: OFFSET_UNKNOWN,
        task_nsproxy: OFFSET_UNKNOWN,
        nsproxy_net: OFFSET_UNKNOWN,
        net_inum: OFFSET_UNKNOWN,
        ct_original_tuple: OFFSET_UNKNOWN,
        ct_reply_tuple: OFFSET_UNKNOWN,
        ct_status: OFFSET_UNKNOWN,
        task_state: OFFSET_UNKNOWN,
        task_in_iowait_byte: OFFSET_UNKNOWN,
        task_in_iowait_mask: 0,
        css_set_io_css: OFFSET_UNKNOWN,
        rq_q: OFFSET_UNKNOWN,
        rq_part: OFFSET_UNKNOWN,
        rq_data_len: OFFSET_UNKNOWN,
        rq_cmd_flags: OFFSET_UNKNOWN,
        rq_bio: OFFSET_UNKNOWN,
        queue_disk: OFFSET_UNKNOWN,
        gendisk_major: OFFSET_UNKNOWN,
        gendisk_first_minor: OFFSET_UNKNOWN,
        bdev_dev: OFFSET_UNKNOWN,
        bio_bdev: OFFSET_UNKNOWN,
        bio_blkg: OFFSET_UNKNOWN,
        blkg_blkcg: OFFSET_UNKNOWN,
        blkcg_css: OFFSET_UNKNOWN,
        sched_switch_prev_state_arg: 0,
        task_contributes_to_load_byte: 0,
        task_contributes_to_load_mask: 0,
        task_last_queued: OFFSET_UNKNOWN,
        task_se_cfs_rq: OFFSET_UNKNOWN,
        cfs_rq_rq: OFFSET_UNKNOWN,
        rq_clock: OFFSET_UNKNOWN,
        rq_disk: OFFSET_UNKNOWN,
        part_dev: OFFSET_UNKNOWN,
        bio_disk: OFFSET_UNKNOWN,
        bio_partno: OFFSET_UNKNOWN,
        kfree_skb_reason_arg: 1,
        block_rq_issue_rq_arg: 0,
        block_bio_queue_bio_arg: 0,
    };
}

/// Settings userspace passes to the BPF programs as read-only globals.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bit `sig - 1` set for each signal to report; the rest are dropped in the kernel.
    pub signal_mask: u64,
    /// Bytes of the `oom:mark_victim` record to copy (at most [`OOM_RAW_MAX`]).
    pub oom_raw_size: u32,
    /// Offset of its `__data_loc char[] comm` field, or [`OFFSET_UNKNOWN`].
    pub oom_comm_loc: u32,
    /// 1: record the kernel stack of each failed page allocation.
    pub page_alloc_stacks: u32,
    /// 1: report DNS queries sent and responses received (UDP port 53).
    pub dns: u32,
    /// Bit `reason % 64` of word `reason / 64` set for each `enum
    /// skb_drop_reason` value to report; other drops return at once.
    pub drop_reasons: [u64; DROP_REASON_WORDS],
    /// A task blocked (D state) at least this long is reported as an IO
    /// stall; shorter waits are only added to the per-task totals.
    pub iowait_threshold_ns: u64,
    /// 1: record the kernel stack of each IO stall and hung task.
    pub iowait_stacks: u32,
    pub _pad_iowait: u32,
    /// On kernels whose `kfree_skb` passes no drop reason: a drop whose
    /// caller's address is in `[start, end)` (netfilter's `nf_hook_slow`,
    /// from `/proc/kallsyms`) is taken for the reason `drop_caller_reason`;
    /// other drops return at once. Both 0 where unused.
    pub drop_caller_start: u64,
    pub drop_caller_end: u64,
    pub drop_caller_reason: u32,
    pub _pad_drop_caller: u32,
}

/// Words of [`Config::drop_reasons`]: room for 256 drop reasons.
pub const DROP_REASON_WORDS: usize = 4;

/// Names of the globals and maps, shared so that a rename breaks the build
/// rather than the load.
pub mod names {
    pub const OFFSETS: &str = "OFFSETS";
    pub const CONFIG: &str = "CONFIG";
    pub const EVENTS: &str = "EVENTS";
    pub const LOST: &str = "LOST";
    pub const STACKS: &str = "STACKS";
    pub const IO_TASKS: &str = "IO_TASKS";
    pub const IO_DEVICES: &str = "IO_DEVICES";
    pub const IO_CGROUPS: &str = "IO_CGROUPS";
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are #[repr(C)] plain data without padding holes
    // that could leak uninitialised bytes into the kernel, and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for TaskIoTotals {}
    unsafe impl aya::Pod for DeviceIoStats {}
    unsafe impl aya::Pod for CgroupIoKey {}
    unsafe impl aya::Pod for CgroupIoStats {}
}
