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
