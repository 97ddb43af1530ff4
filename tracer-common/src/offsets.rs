//! Kernel struct member offsets, found by userspace in BTF.

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
    /// `sock.__sk_common.skc_dport`: the port a connected socket sends to
    /// (network byte order), 0 on a socket that is not connected.
    pub sock_dport: u32,
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
    /// (second argument) tells why: [`crate::Config::drop_caller_start`].
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
        sock_dport: OFFSET_UNKNOWN,
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

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}
