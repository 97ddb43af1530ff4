//! The settings the BPF programs read.

use crate::OFFSET_UNKNOWN;

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
    /// How long after the last DNS query sent on the node a received packet
    /// is still read for a response: userspace matches a response only to a
    /// query it still waits for, so after this nothing received can match.
    /// In jiffies counted at 1000 a second, the highest `CONFIG_HZ`: where
    /// the kernel ticks slower the window is longer, which costs reads and
    /// never loses a response.
    pub dns_response_window_jiffies: u64,
}

impl Config {
    /// Everything off: the programs' defaults, which userspace overrides
    /// family by family before the load.
    pub const DEFAULT: Self = Self {
        signal_mask: 0,
        oom_raw_size: 0,
        oom_comm_loc: OFFSET_UNKNOWN,
        page_alloc_stacks: 0,
        dns: 0,
        drop_reasons: [0; DROP_REASON_WORDS],
        iowait_threshold_ns: u64::MAX,
        iowait_stacks: 0,
        _pad_iowait: 0,
        drop_caller_start: 0,
        drop_caller_end: 0,
        drop_caller_reason: 0,
        _pad_drop_caller: 0,
        dns_response_window_jiffies: 0,
    };
}

/// Words of [`Config::drop_reasons`]: room for 256 drop reasons.
pub const DROP_REASON_WORDS: usize = 4;

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}
