//! Member offsets of the kernel structs the BPF programs read, taken from the
//! running kernel's BTF (`/sys/kernel/btf/vmlinux`, or `--btf FILE` for a
//! kernel built without it). rustc emits no CO-RE relocations for BPF, so
//! this is how the same object reads `task_struct` on every kernel.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
mod reader;

pub use reader::Btf;
use reader::{kind, Type, MAX_NESTING};
use tracer_common::{KernelOffsets, OFFSET_UNKNOWN};

pub const DEFAULT_BTF: &str = "/sys/kernel/btf/vmlinux";

const POINTER_SIZE: u32 = 8;
const CGROUPS_EFFECT: &str =
    "cgroups read from /proc later: short-lived processes may lose their pod";

/// The resolved offsets, and the optional members the kernel lacks (each
/// disables only the detail that needs it).
#[derive(Debug, PartialEq)]
pub struct ResolvedOffsets {
    pub offsets: KernelOffsets,
    pub missing: Vec<(&'static str, &'static str)>,
    /// `enum skb_drop_reason` of this kernel: ("NETFILTER_DROP", 12), ...
    pub drop_reasons: Vec<(String, u32)>,
    /// The `task_struct` member holding a task's state on this kernel:
    /// `__state` since 5.14, `state` before; `None` if neither is there.
    pub task_state_member: Option<&'static str>,
}

/// Where the kernel publishes a module's BTF: conntrack is a module on most
/// distribution kernels, and its structs are then not in vmlinux.
const CONNTRACK_MODULE_BTF: &str = "/sys/kernel/btf/nf_conntrack";

pub fn load(path: &Path) -> Result<Btf<'static>> {
    if !path.exists() {
        bail!(
            "no kernel BTF at {}: this kernel was built without CONFIG_DEBUG_INFO_BTF; pass a BTF file for it with --btf FILE",
            path.display()
        );
    }
    std::fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(Btf::parse)
        .with_context(|| format!("cannot parse kernel BTF {}", path.display()))
}

/// The offsets of the running kernel (or of `--btf FILE`'s): what `watch`
/// and `top` need before they load anything. The BTF itself is dropped.
pub fn load_and_resolve(btf: Option<&Path>) -> Result<ResolvedOffsets> {
    resolve(&load(btf.unwrap_or(Path::new(DEFAULT_BTF)))?)
}

pub fn resolve(btf: &dyn BtfLookup) -> Result<ResolvedOffsets> {
    let mut r = Resolver {
        btf,
        missing: Vec::new(),
    };
    // `__state` since 5.14, `state` before.
    let (task_state, task_state_member) = match member_offset(btf, "task_struct", "__state")? {
        Some(offset) => (offset, Some("__state")),
        None => {
            let offset = r.optional("task_struct", "state", IOWAIT_EFFECT)?;
            (offset, (offset != OFFSET_UNKNOWN).then_some("state"))
        }
    };
    let offsets = KernelOffsets {
        task_pid: r.required("task_struct", "pid")?,
        task_tgid: r.required("task_struct", "tgid")?,
        task_comm: r.required("task_struct", "comm")?,
        task_real_parent: r.required("task_struct", "real_parent")?,
        task_group_leader: r.required("task_struct", "group_leader")?,
        task_start_time: r.optional("task_struct", "start_time", "process start times unknown")?,
        task_exit_code: r.optional("task_struct", "exit_code", "exit codes unknown")?,
        task_signal: r.optional("task_struct", "signal", "exits reported per group leader")?,
        signal_live: r.optional("signal_struct", "live", "exits reported per group leader")?,
        task_cgroups: r.optional("task_struct", "cgroups", CGROUPS_EFFECT)?,
        css_set_dfl_cgrp: r.optional("css_set", "dfl_cgrp", CGROUPS_EFFECT)?,
        css_set_memory_css: r
            .subsys_css("memory_cgrp_id", "v1 memory cgroups read from /proc later")?,
        css_cgroup: r.optional("cgroup_subsys_state", "cgroup", CGROUPS_EFFECT)?,
        cgroup_kn: r.optional("cgroup", "kn", CGROUPS_EFFECT)?,
        kernfs_node_id: r.optional("kernfs_node", "id", CGROUPS_EFFECT)?,
        css_parent: r.optional("cgroup_subsys_state", "parent", MEMCG_EFFECT)?,
        memcg_css: r.optional("mem_cgroup", "css", MEMCG_EFFECT)?,
        memcg_usage: r.nested(
            "mem_cgroup",
            "memory",
            "page_counter",
            "usage",
            MEMCG_EFFECT,
        )?,
        memcg_max: r.nested("mem_cgroup", "memory", "page_counter", "max", MEMCG_EFFECT)?,
        oom_control_memcg: r.optional("oom_control", "memcg", OOM_CONTROL_EFFECT)?,
        oom_control_order: r.optional("oom_control", "order", OOM_CONTROL_EFFECT)?,
        skb_head: r.optional("sk_buff", "head", PACKET_EFFECT)?,
        skb_data: r.optional("sk_buff", "data", PACKET_EFFECT)?,
        skb_tail: r.optional("sk_buff", "tail", PACKET_EFFECT)?,
        skb_network_header: r.optional("sk_buff", "network_header", PACKET_EFFECT)?,
        skb_dev: r.optional("sk_buff", "dev", NETNS_EFFECT)?,
        skb_sk: r.optional("sk_buff", "sk", DNS_EFFECT)?,
        skb_nfct: r.optional("sk_buff", "_nfct", CONNTRACK_EFFECT)?,
        // possible_net_t holds just the `struct net *`.
        netdev_net: r.optional("net_device", "nd_net", NETNS_EFFECT)?,
        netdev_ifindex: r.optional("net_device", "ifindex", NETNS_EFFECT)?,
        sock_net: r.nested(
            "sock",
            "__sk_common",
            "sock_common",
            "skc_net",
            NETNS_EFFECT,
        )?,
        sock_dport: r.nested(
            "sock",
            "__sk_common",
            "sock_common",
            "skc_dport",
            SOCK_DPORT_EFFECT,
        )?,
        sock_protocol: r.optional("sock", "sk_protocol", SOCK_PROTOCOL_EFFECT)?,
        task_flags: r.optional("task_struct", "flags", DNS_SENDER_EFFECT)?,
        task_nsproxy: r.optional("task_struct", "nsproxy", DNS_SENDER_EFFECT)?,
        nsproxy_net: r.optional("nsproxy", "net_ns", DNS_SENDER_EFFECT)?,
        net_inum: r.nested("net", "ns", "ns_common", "inum", NETNS_EFFECT)?,
        ct_original_tuple: OFFSET_UNKNOWN,
        ct_reply_tuple: OFFSET_UNKNOWN,
        ct_status: OFFSET_UNKNOWN,
        task_state,
        task_in_iowait_byte: OFFSET_UNKNOWN,
        task_in_iowait_mask: 0,
        css_set_io_css: r.subsys_css(
            "io_cgrp_id",
            "IO stalls name their device only from the task's own IO",
        )?,
        rq_q: r.optional("request", "q", BLOCK_DEV_EFFECT)?,
        rq_part: r.optional("request", "part", BLOCK_DEV_EFFECT)?,
        rq_data_len: r.optional("request", "__data_len", BLOCK_BYTES_EFFECT)?,
        rq_cmd_flags: r.optional("request", "cmd_flags", BLOCK_BYTES_EFFECT)?,
        rq_bio: r.optional("request", "bio", BLOCK_CGROUP_EFFECT)?,
        // The disk is the request's own before 5.17, its queue's after.
        queue_disk: OFFSET_UNKNOWN,
        rq_disk: OFFSET_UNKNOWN,
        gendisk_major: r.optional("gendisk", "major", BLOCK_DEV_EFFECT)?,
        gendisk_first_minor: r.optional("gendisk", "first_minor", BLOCK_DEV_EFFECT)?,
        bdev_dev: r.optional("block_device", "bd_dev", BLOCK_DEV_EFFECT)?,
        bio_bdev: OFFSET_UNKNOWN,
        bio_disk: OFFSET_UNKNOWN,
        bio_partno: OFFSET_UNKNOWN,
        part_dev: OFFSET_UNKNOWN,
        bio_blkg: r.optional("bio", "bi_blkg", BLOCK_CGROUP_EFFECT)?,
        blkg_blkcg: r.optional("blkcg_gq", "blkcg", BLOCK_CGROUP_EFFECT)?,
        blkcg_css: r.optional("blkcg", "css", BLOCK_CGROUP_EFFECT)?,
        sched_switch_prev_state_arg: btf
            .tracepoint_arity("sched_switch")
            .is_some_and(|args| args >= 4) as u32,
        // kfree_skb(skb, location, reason...) from 5.17; (skb, location) before.
        kfree_skb_reason_arg: btf
            .tracepoint_arity("kfree_skb")
            .is_none_or(|args| args >= 3) as u32,
        // block_rq_issue(q, rq) and block_bio_queue(q, bio) before 5.11.
        block_rq_issue_rq_arg: (btf.tracepoint_arity("block_rq_issue") == Some(2)) as u32,
        block_bio_queue_bio_arg: (btf.tracepoint_arity("block_bio_queue") == Some(2)) as u32,
        task_contributes_to_load_byte: 0,
        task_contributes_to_load_mask: 0,
        task_last_queued: r.nested(
            "task_struct",
            "sched_info",
            "sched_info",
            "last_queued",
            RUN_DELAY_EFFECT,
        )?,
        task_se_cfs_rq: r.nested(
            "task_struct",
            "se",
            "sched_entity",
            "cfs_rq",
            RUN_DELAY_EFFECT,
        )?,
        cfs_rq_rq: r.optional("cfs_rq", "rq", RUN_DELAY_EFFECT)?,
        rq_clock: r.optional("rq", "clock", RUN_DELAY_EFFECT)?,
    };
    let mut offsets = offsets;
    r.conntrack(&mut offsets)?;
    r.block_devices(&mut offsets)?;
    // Only a filter for switches: without it every switch looks its next task up.
    if let Some(bits) = btf.member_bit_offset("task_struct", "sched_contributes_to_load")? {
        offsets.task_contributes_to_load_byte = bits / 8;
        offsets.task_contributes_to_load_mask = 1 << (bits % 8);
    }
    match btf.member_bit_offset("task_struct", "in_iowait")? {
        Some(bits) => {
            offsets.task_in_iowait_byte = bits / 8;
            offsets.task_in_iowait_mask = 1 << (bits % 8);
        }
        None => r.missing.push((
            "in_iowait",
            "IO stalls cannot tell IO wait from other D-state sleeps",
        )),
    }
    Ok(ResolvedOffsets {
        offsets,
        missing: r.missing,
        drop_reasons: drop_reasons(btf)?,
        task_state_member,
    })
}

const RUN_DELAY_EFFECT: &str = "IO waits also count the time a woken task then waited for a CPU";
const PACKET_EFFECT: &str = "packet drops and DNS are not reported";
const NETNS_EFFECT: &str = "packets without their network namespace: pods by address only";
const DNS_EFFECT: &str = "DNS queries not reported";
const SOCK_PROTOCOL_EFFECT: &str =
    "every packet a local socket sends is read to find DNS queries, not only UDP ones";
const SOCK_DPORT_EFFECT: &str =
    "every datagram a connected UDP socket sends is read to find DNS queries";
const DNS_SENDER_EFFECT: &str = "DNS queries without the process that sent them";
const CONNTRACK_EFFECT: &str = "drops without the conntrack entry: no DNAT shown";

/// The values of `enum skb_drop_reason`, without their `SKB_DROP_REASON_`
/// prefix; empty on kernels without drop reasons.
fn drop_reasons(btf: &dyn BtfLookup) -> Result<Vec<(String, u32)>> {
    let mut reasons = Vec::new();
    btf.for_each_enum_value("skb_drop_reason", &mut |name, value| {
        if let Some(short) = name.strip_prefix("SKB_DROP_REASON_") {
            reasons.push((short.to_string(), value));
        }
    })?;
    Ok(reasons)
}

const IOWAIT_EFFECT: &str = "no IO wait accounting or IO stall events";
const BLOCK_DEV_EFFECT: &str = "block IO latency per device unknown";
const BLOCK_BYTES_EFFECT: &str = "block IO bytes and latency unknown";
const BLOCK_CGROUP_EFFECT: &str = "block IO not attributed to the cgroup that owns it";
const STALL_DEV_EFFECT: &str = "IO stalls name their device only through their cgroup's IO";
const OOM_CONTROL_EFFECT: &str = "the exact OOM hook is off: scope from memory counters";
const MEMCG_EFFECT: &str = "OOM kills cannot tell cgroup from system OOM by the memory counters";

/// Looks members up and notes the optional ones the kernel lacks.
struct Resolver<'a> {
    btf: &'a dyn BtfLookup,
    missing: Vec<(&'static str, &'static str)>,
}

impl Resolver<'_> {
    fn required(&mut self, strukt: &'static str, member: &'static str) -> Result<u32> {
        member_offset(self.btf, strukt, member)?.with_context(|| {
            format!("kernel BTF has no {strukt}.{member}: tracer cannot identify processes on this kernel")
        })
    }

    fn optional(
        &mut self,
        strukt: &'static str,
        member: &'static str,
        effect: &'static str,
    ) -> Result<u32> {
        let found = member_offset(self.btf, strukt, member)?;
        Ok(self.or_missing(found, member, effect))
    }

    /// `outer.member.inner_member`, where `member` is a `struct inner`.
    fn nested(
        &mut self,
        outer: &'static str,
        member: &'static str,
        inner: &'static str,
        inner_member: &'static str,
        effect: &'static str,
    ) -> Result<u32> {
        let found = match (
            member_offset(self.btf, outer, member)?,
            member_offset(self.btf, inner, inner_member)?,
        ) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        Ok(self.or_missing(found, inner_member, effect))
    }

    /// `css_set.subsys[<controller>]`: the array is indexed by the
    /// controller's value in `enum cgroup_subsys_id` (`memory_cgrp_id`;
    /// `io_cgrp_id`, called blkio on v1 and io on v2 with the same id).
    fn subsys_css(&mut self, controller: &'static str, effect: &'static str) -> Result<u32> {
        let found = match (
            member_offset(self.btf, "css_set", "subsys")?,
            enum_value(self.btf, "cgroup_subsys_id", controller)?,
        ) {
            (Some(subsys), Some(index)) => Some(subsys + index * POINTER_SIZE),
            _ => None,
        };
        Ok(self.or_missing(found, controller, effect))
    }

    /// `nf_conn`'s tuples and status, from vmlinux or, when conntrack is a
    /// module, from the module's BTF (loaded: it exists once conntrack is).
    fn conntrack(&mut self, offsets: &mut KernelOffsets) -> Result<()> {
        let module;
        let btf = if member_offset(self.btf, "nf_conn", "status")?.is_some() {
            self.btf
        } else {
            match self.btf.module(Path::new(CONNTRACK_MODULE_BTF)) {
                Ok(b) => {
                    module = b;
                    &*module
                }
                Err(_) => {
                    self.missing.push(("nf_conn", CONNTRACK_EFFECT));
                    return Ok(());
                }
            }
        };
        let tuplehash = member_offset(btf, "nf_conn", "tuplehash")?;
        let tuple = member_offset(btf, "nf_conntrack_tuple_hash", "tuple")?;
        let hash_size = btf.struct_size("nf_conntrack_tuple_hash")?;
        let status = member_offset(btf, "nf_conn", "status")?;
        match (tuplehash, tuple, hash_size, status) {
            (Some(base), Some(tuple), Some(size), Some(status)) => {
                offsets.ct_original_tuple = base + tuple;
                offsets.ct_reply_tuple = base + size + tuple;
                offsets.ct_status = status;
            }
            _ => self.missing.push(("nf_conn.tuplehash", CONNTRACK_EFFECT)),
        }
        Ok(())
    }

    /// Where the block hooks find a device number, which moved twice:
    /// - `request.part` points to a `block_device` (`bd_dev`) since 5.11,
    ///   to an `hd_struct` (`__dev.devt`) before;
    /// - a bio names its `bi_bdev` since 5.12, its `bi_disk` and
    ///   `bi_partno` before;
    /// - a request's disk is its queue's (`request_queue.disk`) since 5.17,
    ///   its own `rq_disk` before.
    fn block_devices(&mut self, offsets: &mut KernelOffsets) -> Result<()> {
        let btf = self.btf;
        offsets.part_dev = match member_offset(btf, "hd_struct", "__dev")? {
            Some(dev) => match member_offset(btf, "device", "devt")? {
                Some(devt) => dev + devt,
                None => self.or_missing(None, "device.devt", BLOCK_DEV_EFFECT),
            },
            None => offsets.bdev_dev,
        };
        match member_offset(btf, "bio", "bi_bdev")? {
            Some(bdev) => offsets.bio_bdev = bdev,
            None => {
                offsets.bio_disk = self.optional("bio", "bi_disk", STALL_DEV_EFFECT)?;
                offsets.bio_partno = self.optional("bio", "bi_partno", STALL_DEV_EFFECT)?;
            }
        }
        match member_offset(btf, "request", "rq_disk")? {
            Some(disk) => offsets.rq_disk = disk,
            None => {
                offsets.queue_disk = self.optional("request_queue", "disk", BLOCK_DEV_EFFECT)?
            }
        }
        Ok(())
    }

    fn or_missing(&mut self, found: Option<u32>, what: &'static str, effect: &'static str) -> u32 {
        found.unwrap_or_else(|| {
            self.missing.push((what, effect));
            OFFSET_UNKNOWN
        })
    }
}

/// The questions [`resolve`] asks of a BTF object.
pub trait BtfLookup {
    /// Bit offset of `member` in `struct strukt`, looking through anonymous
    /// structs and unions (`task_struct` keeps many members in them).
    fn member_bit_offset(&self, strukt: &str, member: &str) -> Result<Option<u32>>;
    /// Size in bytes of `struct strukt`.
    fn struct_size(&self, strukt: &str) -> Result<Option<u32>>;
    /// Calls `f` with each name and value of `enum enum_name`.
    fn for_each_enum_value(&self, enum_name: &str, f: &mut dyn FnMut(&str, u32)) -> Result<()>;
    /// How many arguments the raw tracepoint `name` passes, from its
    /// `btf_trace_<name>` typedef (a pointer to a function whose first
    /// parameter is the probe's own data, then the tracepoint's arguments).
    fn tracepoint_arity(&self, name: &str) -> Option<usize>;
    /// A module's BTF on top of this one (`/sys/kernel/btf/<module>`).
    fn module(&self, path: &Path) -> Result<Box<dyn BtfLookup + '_>>;
}

impl BtfLookup for Btf<'_> {
    fn member_bit_offset(&self, strukt: &str, member: &str) -> Result<Option<u32>> {
        for id in self.ids_by_name(strukt) {
            let ty = self.type_by_id(id)?;
            if ty.kind == kind::STRUCT {
                if let Some(bits) = find_member(self, ty, member, 0)? {
                    return Ok(Some(bits));
                }
            }
        }
        Ok(None)
    }

    fn struct_size(&self, strukt: &str) -> Result<Option<u32>> {
        for id in self.ids_by_name(strukt) {
            let ty = self.type_by_id(id)?;
            if ty.kind == kind::STRUCT {
                return Ok(Some(ty.size_or_type));
            }
        }
        Ok(None)
    }

    fn for_each_enum_value(&self, enum_name: &str, f: &mut dyn FnMut(&str, u32)) -> Result<()> {
        for id in self.ids_by_name(enum_name) {
            for (name_off, value) in self.type_by_id(id)?.enum_values() {
                f(self.string(name_off)?, value);
            }
        }
        Ok(())
    }

    fn tracepoint_arity(&self, name: &str) -> Option<usize> {
        let typedef_name = format!("btf_trace_{name}");
        let arity = self.ids_by_name(&typedef_name).find_map(|id| {
            let typedef = self
                .type_by_id(id)
                .ok()
                .filter(|t| t.kind == kind::TYPEDEF)?;
            let ptr = self
                .type_by_id(typedef.size_or_type)
                .ok()
                .filter(|t| t.kind == kind::PTR)?;
            let proto = self
                .type_by_id(ptr.size_or_type)
                .ok()
                .filter(|t| t.kind == kind::FUNC_PROTO)?;
            Some(proto.vlen.saturating_sub(1))
        });
        arity
    }

    fn module(&self, path: &Path) -> Result<Box<dyn BtfLookup + '_>> {
        Ok(Box::new(Btf::parse_split(std::fs::read(path)?, self)?))
    }
}

/// Bit offset of `wanted` in the struct or union `s`, or in one of its
/// anonymous members.
fn find_member(btf: &Btf, s: Type, wanted: &str, depth: u32) -> Result<Option<u32>> {
    if depth > MAX_NESTING {
        bail!("BTF nests anonymous members over {MAX_NESTING} deep");
    }
    for m in s.members() {
        let name = btf.string(m.name_off)?;
        if name == wanted {
            return Ok(Some(m.bit_offset));
        }
        if name.is_empty() {
            let inner = btf.type_by_id(m.type_id)?;
            if matches!(inner.kind, kind::STRUCT | kind::UNION) {
                if let Some(bits) = find_member(btf, inner, wanted, depth + 1)? {
                    return Ok(Some(m.bit_offset + bits));
                }
            }
        }
    }
    Ok(None)
}

/// Byte offset of `member` in `struct strukt`.
pub fn member_offset(btf: &dyn BtfLookup, strukt: &str, member: &str) -> Result<Option<u32>> {
    Ok(btf.member_bit_offset(strukt, member)?.map(|bits| bits / 8))
}

/// The value of `name` in `enum enum_name`.
pub fn enum_value(btf: &dyn BtfLookup, enum_name: &str, name: &str) -> Result<Option<u32>> {
    let mut found = None;
    btf.for_each_enum_value(enum_name, &mut |n, value| {
        if found.is_none() && n == name {
            found = Some(value);
        }
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the running kernel's own BTF: the offsets must be found and
    /// must be plausible for a `task_struct`.
    #[test]
    fn resolves_task_struct_on_this_kernel() {
        let btf = load(Path::new(DEFAULT_BTF)).expect("this machine's kernel has BTF");
        let r = resolve(&btf).expect("offsets");
        let o = r.offsets;
        assert!(r.missing.is_empty(), "missing: {:?}", r.missing);
        assert_ne!(o.task_pid, o.task_tgid);
        // pid_t pid; pid_t tgid; are adjacent in every kernel's task_struct.
        assert_eq!(o.task_tgid, o.task_pid + 4);
        for off in [
            o.task_comm,
            o.task_real_parent,
            o.task_group_leader,
            o.task_start_time,
        ] {
            assert!(off > 0 && off < 16384, "implausible offset {off}");
        }
    }

    /// The packet offsets on this kernel (conntrack is built in here).
    #[test]
    fn resolves_packet_and_conntrack_offsets_on_this_kernel() {
        let btf = load(Path::new(DEFAULT_BTF)).expect("kernel BTF");
        let r = resolve(&btf).expect("offsets");
        let o = r.offsets;
        for off in [
            o.skb_head,
            o.skb_data,
            o.skb_tail,
            o.skb_network_header,
            o.skb_dev,
            o.skb_sk,
            o.skb_nfct,
            o.netdev_net,
            o.sock_net,
            o.sock_dport,
            o.sock_protocol,
            o.task_flags,
            o.task_nsproxy,
            o.nsproxy_net,
            o.net_inum,
            o.ct_original_tuple,
            o.ct_status,
        ] {
            assert!(off < 4096, "implausible offset {off}: {o:?}");
        }
        // Two hlist_nulls_node + tuple pairs: 56 bytes apart on 64-bit.
        assert_eq!(o.ct_reply_tuple - o.ct_original_tuple, 56);
        let netfilter = r.drop_reasons.iter().find(|(n, _)| n == "NETFILTER_DROP");
        assert!(netfilter.is_some(), "{:?}", r.drop_reasons);
    }

    /// The IO-wait members: `in_iowait` is a one-bit bitfield, so its
    /// mask must be a single bit in its byte.
    #[test]
    fn resolves_io_wait_members_on_this_kernel() {
        let btf = load(Path::new(DEFAULT_BTF)).expect("kernel BTF");
        let o = resolve(&btf).expect("offsets").offsets;
        assert!(o.task_in_iowait_mask.is_power_of_two() && o.task_in_iowait_mask < 256);
        assert!(o.task_in_iowait_byte > 0 && o.task_in_iowait_byte < 16384);
        for off in [
            o.task_state,
            o.css_set_io_css,
            o.rq_q,
            o.rq_data_len,
            o.bdev_dev,
            o.bio_bdev,
            o.blkcg_css,
        ] {
            assert_ne!(off, OFFSET_UNKNOWN);
        }
        assert_ne!(o.css_set_io_css, o.css_set_memory_css);
        // (preempt, prev, next, prev_state) since 5.18.
        assert_eq!(btf.tracepoint_arity("sched_switch"), Some(4));
        assert_eq!(o.sched_switch_prev_state_arg, 1);
        assert!(o.task_contributes_to_load_mask.is_power_of_two());
        // The way from a task to its run queue's clock, all inside their structs.
        assert!(
            o.task_last_queued < 16384 && o.task_se_cfs_rq < 16384,
            "{o:?}"
        );
        assert!(o.cfs_rq_rq < 4096 && o.rq_clock < 4096, "{o:?}");
    }

    /// The answers btf-rs (the crate tracer used before its own reader)
    /// gives to the same questions: the oracle of the tests below.
    pub(crate) mod btf_rs_oracle {
        use super::*;
        use btf_rs::Type as T;

        pub struct Oracle(pub btf_rs::Btf);

        impl BtfLookup for Oracle {
            fn member_bit_offset(&self, strukt: &str, member: &str) -> Result<Option<u32>> {
                let Ok(types) = self.0.resolve_types_by_name(strukt) else {
                    return Ok(None);
                };
                Ok(types.into_iter().find_map(|ty| match ty {
                    T::Struct(s) => find(&self.0, &s, member),
                    _ => None,
                }))
            }

            fn struct_size(&self, strukt: &str) -> Result<Option<u32>> {
                let types = self.0.resolve_types_by_name(strukt).unwrap_or_default();
                Ok(types.into_iter().find_map(|ty| match ty {
                    T::Struct(s) => Some(s.size() as u32),
                    _ => None,
                }))
            }

            fn for_each_enum_value(
                &self,
                enum_name: &str,
                f: &mut dyn FnMut(&str, u32),
            ) -> Result<()> {
                for ty in self.0.resolve_types_by_name(enum_name).unwrap_or_default() {
                    if let T::Enum(e) = ty {
                        for m in &e.members {
                            f(&self.0.resolve_name(m)?, m.val());
                        }
                    }
                }
                Ok(())
            }

            fn tracepoint_arity(&self, name: &str) -> Option<usize> {
                let types = self.0.resolve_types_by_name(&format!("btf_trace_{name}"));
                types.ok()?.into_iter().find_map(|ty| {
                    let T::Typedef(typedef) = ty else { return None };
                    let Ok(T::Ptr(ptr)) = self.0.resolve_chained_type(&typedef) else {
                        return None;
                    };
                    match self.0.resolve_chained_type(&ptr) {
                        Ok(T::FuncProto(p)) => Some(p.parameters.len().saturating_sub(1)),
                        _ => None,
                    }
                })
            }

            fn module(&self, path: &Path) -> Result<Box<dyn BtfLookup + '_>> {
                let bytes = std::fs::read(path)?;
                Ok(Box::new(Oracle(btf_rs::Btf::from_split_bytes(
                    &bytes, &self.0,
                )?)))
            }
        }

        fn find(btf: &btf_rs::Btf, s: &btf_rs::Struct, wanted: &str) -> Option<u32> {
            s.members.iter().find_map(|m| {
                let name = btf.resolve_name(m).unwrap_or_default();
                if name == wanted {
                    return Some(m.bit_offset());
                }
                if !name.is_empty() {
                    return None;
                }
                match btf.resolve_chained_type(m) {
                    Ok(T::Struct(inner) | T::Union(inner)) => {
                        find(btf, &inner, wanted).map(|bits| m.bit_offset() + bits)
                    }
                    _ => None,
                }
            })
        }
    }

    /// Everything tracer resolves on this kernel (with nf_conntrack's
    /// module BTF when conntrack is a module here) is what btf-rs finds.
    #[test]
    fn same_offsets_as_btf_rs_on_this_kernel() {
        let ours = resolve(&load(Path::new(DEFAULT_BTF)).expect("kernel BTF")).expect("offsets");
        let bytes = std::fs::read(DEFAULT_BTF).expect("kernel BTF");
        let oracle = btf_rs_oracle::Oracle(btf_rs::Btf::from_bytes(&bytes).expect("btf-rs"));
        let theirs = resolve(&oracle).expect("offsets from btf-rs");
        assert_eq!(ours, theirs);
        assert!(ours.drop_reasons.len() > 10, "{:?}", ours.drop_reasons);
    }

    /// Bitfields (with and without sizes in their offsets), members of
    /// anonymous unions and structs, both byte orders: as btf-rs reads them.
    #[test]
    fn same_members_as_btf_rs_in_hand_built_btf() {
        for big_endian in [false, true] {
            for flag in [false, true] {
                let blob = reader::tests::task_blob(big_endian, flag);
                let ours = Btf::parse(blob.clone()).unwrap();
                let theirs = btf_rs_oracle::Oracle(btf_rs::Btf::from_bytes(&blob).unwrap());
                let bits = |btf: &dyn BtfLookup, m| btf.member_bit_offset("task", m).unwrap();
                for member in ["pid", "in_iowait", "a", "b", "none"] {
                    assert_eq!(bits(&ours, member), bits(&theirs, member), "{member}");
                }
                assert_eq!(bits(&ours, "in_iowait"), Some(35));
                assert_eq!(bits(&ours, "b"), Some(64 + 32));
                assert_eq!(ours.struct_size("task").unwrap(), Some(24));
            }
        }
    }

    /// A module's BTF, read from its file on top of vmlinux's.
    #[test]
    fn same_module_members_as_btf_rs_in_hand_built_split_btf() {
        let (base, module) = reader::tests::conntrack_blobs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nf_conntrack");
        std::fs::write(&path, module).unwrap();
        let ours = Btf::parse(base.clone()).unwrap();
        let theirs = btf_rs_oracle::Oracle(btf_rs::Btf::from_bytes(&base).unwrap());
        let (ours, theirs) = (ours.module(&path).unwrap(), theirs.module(&path).unwrap());
        for (s, m) in [("conn", "status"), ("conn", "tuple"), ("tuple", "dst")] {
            assert_eq!(
                ours.member_bit_offset(s, m).unwrap(),
                theirs.member_bit_offset(s, m).unwrap()
            );
        }
        assert_eq!(ours.member_bit_offset("conn", "status").unwrap(), Some(128));
        assert_eq!(ours.member_bit_offset("conn", "tuple").unwrap(), Some(0));
        assert_eq!(ours.struct_size("tuple").unwrap(), Some(8));
        assert!(Btf::parse(base)
            .unwrap()
            .module(&dir.path().join("none"))
            .is_err());
    }

    /// A corrupt file whose anonymous member contains its own struct: an
    /// error, not a stack overflow.
    #[test]
    fn anonymous_member_cycle_is_an_error() {
        let mut b = reader::tests::Builder::new();
        let id = b.strukt("loop", kind::STRUCT, false, 8, &[("", 1, 0)]);
        assert_eq!(id, 1);
        let btf = Btf::parse(b.build()).unwrap();
        let err = btf.member_bit_offset("loop", "x").unwrap_err();
        assert!(err.to_string().contains("deep"), "{err}");
    }

    #[test]
    fn missing_btf_file_says_how_to_fix() {
        let err = match load(Path::new("/nonexistent/vmlinux")) {
            Ok(_) => panic!("a missing BTF file must be an error"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("--btf"), "{err}");
    }

    #[test]
    fn unknown_member_is_none() {
        let btf = load(Path::new(DEFAULT_BTF)).expect("kernel BTF");
        assert_eq!(
            member_offset(&btf, "task_struct", "no_such_member").unwrap(),
            None
        );
    }
}
