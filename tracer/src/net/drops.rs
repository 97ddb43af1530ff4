//! Drop reasons: which of the kernel's `enum skb_drop_reason` values tracer
//! watches, their values on this kernel (they change between kernels, so
//! they come from BTF), and what each means to someone on call.

use std::collections::HashMap;

use tracer_common::DROP_REASON_WORDS;

/// The drops users meet when hunting lost packets on a node: netfilter
/// (conntrack clash, table full, a filter rule), neighbour table overflow,
/// listen-queue overflow, full receive buffers and CPU backlogs. Reasons a
/// kernel lacks are left out.
pub const WATCHED: &[&str] = &[
    "NETFILTER_DROP",
    "NEIGH_CREATEFAIL",
    "NEIGH_QUEUEFULL",
    "TCP_LISTEN_OVERFLOW",
    "SOCKET_RCVBUFF",
    "CPU_BACKLOG",
];

/// This kernel's drop reasons, by value.
#[derive(Debug, Default, Clone)]
pub struct DropReasons {
    names: HashMap<u32, String>,
}

impl DropReasons {
    pub fn new(kernel: &[(String, u32)]) -> Self {
        Self {
            names: kernel.iter().map(|(n, v)| (*v, n.clone())).collect(),
        }
    }

    /// The in-kernel filter: one bit per watched reason this kernel has.
    pub fn mask(&self, watched: &[&str]) -> [u64; DROP_REASON_WORDS] {
        let mut mask = [0u64; DROP_REASON_WORDS];
        for (value, name) in &self.names {
            let word = (*value / 64) as usize;
            if word < DROP_REASON_WORDS && watched.contains(&name.as_str()) {
                mask[word] |= 1 << (value % 64);
            }
        }
        mask
    }

    /// "NETFILTER_DROP", or the number when this kernel has no name for it.
    pub fn name(&self, value: u32) -> String {
        self.names
            .get(&value)
            .cloned()
            .unwrap_or_else(|| format!("reason {value}"))
    }

    /// The watched reasons this kernel lacks, for the start-up banner.
    pub fn missing<'a>(&self, watched: &[&'a str]) -> Vec<&'a str> {
        watched
            .iter()
            .copied()
            .filter(|w| !self.names.values().any(|n| n == w))
            .collect()
    }
}

/// What stands for NETFILTER_DROP on kernels without drop reasons, in the
/// records and the in-kernel filter: any value does, as both sides agree.
const CALLER_NETFILTER_DROP: u32 = 1;

/// The drops tracer can tell apart on this kernel, and how.
#[derive(Debug, Clone)]
pub struct DropSetup {
    pub reasons: DropReasons,
    /// Before 5.17: the address range of `nf_hook_slow`, the caller of every
    /// `kfree_skb` that carries out a netfilter verdict (a filter rule's
    /// DROP, a conntrack clash or a full table).
    pub netfilter_caller: Option<(u64, u64)>,
    /// How drops are recognised when not by the kernel's reason, for the
    /// banner, `tracer doctor` and the start record.
    pub degraded: Option<String>,
}

impl DropSetup {
    /// `kernel` is the kernel's `enum skb_drop_reason`; `reason_arg` whether
    /// its `kfree_skb` tracepoint passes one (5.17 and later).
    pub fn new(kernel: &[(String, u32)], reason_arg: bool, procfs: &std::path::Path) -> Self {
        if reason_arg {
            return Self {
                reasons: DropReasons::new(kernel),
                netfilter_caller: None,
                degraded: None,
            };
        }
        let kallsyms = procfs.join("kallsyms");
        let found = std::fs::read_to_string(&kallsyms)
            .map_err(|e| format!("cannot read {}: {e}", kallsyms.display()))
            .and_then(|text| function_range(&text, "nf_hook_slow"));
        match found {
            Ok(range) => Self {
                reasons: DropReasons::new(&[("NETFILTER_DROP".to_owned(), CALLER_NETFILTER_DROP)]),
                netfilter_caller: Some(range),
                degraded: Some(
                    "kfree_skb passes no drop reason before 5.17: netfilter drops are told by \
                     their caller (nf_hook_slow in /proc/kallsyms), other drops are not reported"
                        .to_owned(),
                ),
            },
            Err(why) => Self {
                reasons: DropReasons::default(),
                netfilter_caller: None,
                degraded: Some(format!(
                    "kfree_skb passes no drop reason before 5.17 and netfilter's caller \
                     address is unknown ({why}): no drop is reported"
                )),
            },
        }
    }

    /// As [`DropSetup::new`] for the kernel whose BTF was resolved.
    pub fn for_kernel(
        kernel: &crate::kernel_btf::ResolvedOffsets,
        procfs: &std::path::Path,
    ) -> Self {
        Self::new(
            &kernel.drop_reasons,
            kernel.offsets.kfree_skb_reason_arg != 0,
            procfs,
        )
    }

    /// No drop watched (`tracer top`).
    pub fn none() -> Self {
        Self {
            reasons: DropReasons::default(),
            netfilter_caller: None,
            degraded: None,
        }
    }

    /// Notes on the packet-drop hook what it cannot tell on this kernel.
    pub fn mark(&self, hooks: &mut [crate::ebpf::HookStatus]) {
        for status in hooks.iter_mut().filter(|h| h.hook.name == "packet_drop") {
            status.degraded.clone_from(&self.degraded);
        }
    }

    /// The in-kernel filter for the watched reasons.
    pub fn configure(&self, config: &mut tracer_common::Config) {
        config.drop_reasons = self.reasons.mask(WATCHED);
        if let Some((start, end)) = self.netfilter_caller {
            config.drop_caller_start = start;
            config.drop_caller_end = end;
            config.drop_caller_reason = CALLER_NETFILTER_DROP;
        }
    }
}

/// `[start, end)` of the kernel function `name` in `/proc/kallsyms`: its
/// address to the next higher symbol's. Zero addresses mean the reader may
/// not see them (`kernel.kptr_restrict`).
fn function_range(kallsyms: &str, name: &str) -> Result<(u64, u64), String> {
    let symbols: Vec<(u64, &str)> = kallsyms
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let address = u64::from_str_radix(words.next()?, 16).ok()?;
            let _kind = words.next()?;
            Some((address, words.next()?))
        })
        .collect();
    let start = symbols
        .iter()
        .find(|(_, symbol)| *symbol == name)
        .map(|(address, _)| *address)
        .ok_or_else(|| format!("no {name} in /proc/kallsyms"))?;
    if start == 0 {
        return Err(format!(
            "/proc/kallsyms shows {name} at 0: kernel.kptr_restrict hides addresses"
        ));
    }
    let end = symbols
        .iter()
        .map(|(address, _)| *address)
        .filter(|address| *address > start)
        .min()
        .ok_or_else(|| format!("no symbol follows {name} in /proc/kallsyms"))?;
    Ok((start, end))
}

/// What a drop reason means, in the words of the kernel log line users
/// know where there is one.
pub fn meaning(name: &str) -> &'static str {
    match name {
        "NETFILTER_DROP" => "dropped by netfilter",
        "NEIGH_CREATEFAIL" => "neighbour table overflow (gc_thresh3 reached)",
        "NEIGH_QUEUEFULL" => "neighbour queue full while resolving the next hop",
        "TCP_LISTEN_OVERFLOW" => "listen queue overflow (accept backlog full)",
        "SOCKET_RCVBUFF" => "socket receive buffer full",
        "CPU_BACKLOG" => "CPU backlog full (net.core.netdev_max_backlog)",
        _ => "dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> DropReasons {
        DropReasons::new(&[
            ("NOT_SPECIFIED".into(), 2),
            ("NETFILTER_DROP".into(), 12),
            ("NEIGH_QUEUEFULL".into(), 59),
            ("TCP_LISTEN_OVERFLOW".into(), 70),
        ])
    }

    #[test]
    fn mask_has_one_bit_per_watched_reason_present() {
        let mask = kernel().mask(WATCHED);
        assert_eq!(mask[0], (1 << 12) | (1 << 59));
        assert_eq!(mask[1], 1 << (70 - 64));
        assert_eq!(mask[2..], [0, 0]);
    }

    #[test]
    fn a_function_spans_to_the_next_symbol() {
        let kallsyms = "ffffffff81000000 T _stext\n\
            ffffffff81a0c100 T nf_hook_slow\n\
            ffffffff81a0c0f0 t before\n\
            ffffffff81a0c1e0 T nf_hook_slow_list\n\
            ffffffffc0001000 t nf_conntrack_in\t[nf_conntrack]\n";
        assert_eq!(
            function_range(kallsyms, "nf_hook_slow"),
            Ok((0xffffffff81a0c100, 0xffffffff81a0c1e0))
        );
        assert!(function_range(kallsyms, "missing").is_err());
        let hidden = "0000000000000000 T nf_hook_slow\n0000000000000000 T other\n";
        assert!(function_range(hidden, "nf_hook_slow")
            .unwrap_err()
            .contains("kptr_restrict"));
    }

    #[test]
    fn names_and_missing() {
        let k = kernel();
        assert_eq!(k.name(12), "NETFILTER_DROP");
        assert_eq!(k.name(999), "reason 999");
        assert_eq!(
            k.missing(WATCHED),
            ["NEIGH_CREATEFAIL", "SOCKET_RCVBUFF", "CPU_BACKLOG"]
        );
    }

    #[test]
    fn on_this_kernel_netfilter_drops_are_watchable() {
        let btf = crate::kernel_btf::load(std::path::Path::new(crate::kernel_btf::DEFAULT_BTF))
            .expect("kernel BTF");
        let reasons = DropReasons::new(&crate::kernel_btf::resolve(&btf).unwrap().drop_reasons);
        assert!(reasons.mask(&["NETFILTER_DROP"]).iter().any(|w| *w != 0));
    }
}
