//! Page-allocation failures: each one attributed to its process and pod,
//! with the GFP flags by the running kernel's names, the state of the buddy
//! allocator at the time, and whether the caller tolerates the failure by
//! design. A summary per order, per flag set and per pod closes the watch.
//!
//! This module reads the kernel's state (buddyinfo, pagetypeinfo, its log
//! line); [`family`] turns records into [`event`]s.

pub mod event;
pub mod family;
pub mod gfp;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

use gfp::GfpNames;

/// One `/proc/buddyinfo` line: free blocks per order in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneFree {
    pub node: u32,
    pub zone: String,
    pub free_blocks: Vec<u64>,
}

pub fn parse_buddyinfo(text: &str) -> Vec<ZoneFree> {
    text.lines()
        .filter_map(|line| {
            // "Node 0, zone   Normal   3501   2703 ..."
            let rest = line.strip_prefix("Node ")?;
            let (node, rest) = rest.split_once(',')?;
            let rest = rest.trim_start().strip_prefix("zone")?;
            let mut words = rest.split_whitespace();
            let zone = words.next()?.to_owned();
            let free_blocks = words
                .map(|w| w.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            Some(ZoneFree {
                node: node.trim().parse().ok()?,
                zone,
                free_blocks,
            })
        })
        .collect()
}

/// One row of `/proc/pagetypeinfo`'s free-page table: free blocks per order
/// of one migrate type in one zone. A high-order request can fail while
/// buddyinfo shows free blocks, when they all belong to another type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateFree {
    pub node: u32,
    pub zone: String,
    #[serde(rename = "type")]
    pub migratetype: String,
    pub free_blocks: Vec<u64>,
}

/// The "Free pages count per migrate type at order" table of
/// `/proc/pagetypeinfo`; the block-count table after it is left out.
pub fn parse_pagetypeinfo(text: &str) -> Vec<MigrateFree> {
    text.lines()
        .filter_map(|line| {
            // "Node    0, zone   Normal, type    Unmovable    154    551 ..."
            let rest = line.strip_prefix("Node")?;
            let (node, rest) = rest.split_once(',')?;
            let rest = rest.trim_start().strip_prefix("zone")?;
            let (zone, rest) = rest.split_once(',')?;
            let rest = rest.trim_start().strip_prefix("type")?;
            let mut words = rest.split_whitespace();
            let migratetype = words.next()?.to_owned();
            let free_blocks = words
                .map(|w| w.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            Some(MigrateFree {
                node: node.trim().parse().ok()?,
                zone: zone.trim().to_owned(),
                migratetype,
                free_blocks,
            })
        })
        .collect()
}

/// The kernel's name of a migrate type number, as pagetypeinfo lists the
/// types in the kernel's own order (`migratetype_names`).
pub fn migratetype_name(types: &[MigrateFree], migratetype: i32) -> Option<&str> {
    let first = types.first()?;
    types
        .iter()
        .filter(|t| t.node == first.node && t.zone == first.zone)
        .nth(usize::try_from(migratetype).ok()?)
        .map(|t| t.migratetype.as_str())
}

/// Free blocks of at least `order` pages of one migrate type, over all zones.
pub fn free_blocks_of_type_at_or_above(types: &[MigrateFree], name: &str, order: u32) -> u64 {
    types
        .iter()
        .filter(|t| t.migratetype == name)
        .flat_map(|t| t.free_blocks.iter().skip(order as usize))
        .sum()
}

/// Free blocks of at least `order` pages, over all zones.
pub fn free_blocks_at_or_above(zones: &[ZoneFree], order: u32) -> u64 {
    zones
        .iter()
        .flat_map(|z| z.free_blocks.iter().skip(order as usize))
        .sum()
}

/// Why a caller may be fine with a failure: it said so with its flags.
pub fn tolerated_reason(gfp: &GfpNames, flags: u64) -> Option<&'static str> {
    let has = |name: &str| gfp.value(name).is_some_and(|v| v != 0 && flags & v == v);
    if has("__GFP_NOWARN") {
        Some("__GFP_NOWARN: the caller has a fallback")
    } else if has("__GFP_NORETRY") {
        Some("__GFP_NORETRY: the caller gives up on purpose")
    } else {
        None
    }
}

/// The allocator's free lists at one moment: per zone, and per zone and
/// migrate type.
#[derive(Debug, Clone, Default)]
pub struct FreeLists {
    pub zones: Vec<ZoneFree>,
    pub types: Vec<MigrateFree>,
}

/// Reads /proc/buddyinfo and /proc/pagetypeinfo at most once per interval:
/// failures come in storms.
pub struct BuddyInfo {
    path: PathBuf,
    pagetypeinfo: PathBuf,
    last: Option<(u64, FreeLists)>,
}

const SNAPSHOT_EVERY_NS: u64 = 1_000_000_000;

impl BuddyInfo {
    pub fn new(procfs: &Path) -> Self {
        Self {
            path: procfs.join("buddyinfo"),
            pagetypeinfo: procfs.join("pagetypeinfo"),
            last: None,
        }
    }

    pub fn snapshot(&mut self, now_ns: u64) -> FreeLists {
        match &self.last {
            Some((at, lists)) if now_ns.saturating_sub(*at) < SNAPSHOT_EVERY_NS => lists.clone(),
            _ => {
                let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
                let lists = FreeLists {
                    zones: parse_buddyinfo(&read(&self.path)),
                    types: parse_pagetypeinfo(&read(&self.pagetypeinfo)),
                };
                self.last = Some((now_ns, lists.clone()));
                lists
            }
        }
    }
}

/// Counts for the closing summary.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub failures: u64,
    pub tolerated: u64,
    pub by_order: BTreeMap<u32, u64>,
    pub by_gfp: BTreeMap<String, u64>,
    /// "namespace/name" of the pod, or "-" for host processes.
    pub by_pod: BTreeMap<String, u64>,
}

impl Summary {
    pub fn add(&mut self, order: u32, gfp: &str, pod: &str, tolerated: bool) {
        self.failures += 1;
        self.tolerated += tolerated as u64;
        *self.by_order.entry(order).or_default() += 1;
        *self.by_gfp.entry(gfp.to_owned()).or_default() += 1;
        *self.by_pod.entry(pod.to_owned()).or_default() += 1;
    }
}

/// A "page allocation failure" line from the kernel log, in any of the
/// three shapes kernels have printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedFailure {
    pub comm: String,
    pub order: u32,
    pub mode: u64,
    /// The names the kernel printed after the value, on newer kernels.
    pub mode_names: Option<String>,
}

pub fn parse_logged_failure(line: &str) -> Option<LoggedFailure> {
    let at = line.find(": page allocation failure")?;
    let comm = line[..at].trim().to_owned();
    let rest = &line[at + ": page allocation failure".len()..];
    let rest = rest.trim_start_matches([':', '.', ' ']);
    let order_text = rest.strip_prefix("order:")?;
    let (order, rest) = order_text.split_once(',')?;
    let mode_text = rest.trim_start().strip_prefix("mode:")?;
    let hex = mode_text.strip_prefix("0x")?;
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    let mode = u64::from_str_radix(&hex[..end], 16).ok()?;
    let mode_names = hex[end..]
        .strip_prefix('(')
        .and_then(|names| names.split_once(')'))
        .map(|(names, _)| names.to_owned());
    Some(LoggedFailure {
        comm,
        order: order.trim().parse().ok()?,
        mode,
        mode_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from this machine's /proc/pagetypeinfo (6.18, one node).
    const PAGETYPEINFO: &str = "Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 
Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      1      0      0 
Node    0, zone      DMA, type      Movable      0      0      0      0      0      0      0      0      0      1      3 
Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone   Normal, type    Unmovable    154    551    355    572    385    198    112     43     22      1      0 
Node    0, zone   Normal, type      Movable   6570   2407   1330    642    568   2520   1652    818    308    129    196 

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate 
Node 0, zone      DMA            1            7            0            0            0 
Node 0, zone   Normal          118         2275          103            0            0 
";

    #[test]
    fn pagetypeinfo_free_table_only() {
        let types = parse_pagetypeinfo(PAGETYPEINFO);
        assert_eq!(types.len(), 7);
        assert_eq!(types[5].zone, "Normal");
        assert_eq!(types[5].migratetype, "Unmovable");
        assert_eq!(types[5].free_blocks[..3], [154, 551, 355]);
        assert_eq!(types[6].free_blocks.len(), 11);
        assert_eq!(migratetype_name(&types, 0), Some("Unmovable"));
        assert_eq!(migratetype_name(&types, 2), Some("Reclaimable"));
        assert_eq!(migratetype_name(&types, -1), None);
        assert_eq!(
            free_blocks_of_type_at_or_above(&types, "Unmovable", 8),
            22 + 1 + 1
        );
    }

    #[test]
    fn parses_the_three_log_formats() {
        assert_eq!(
            parse_logged_failure("mysqld: page allocation failure. order:4, mode:0x10c0d0"),
            Some(LoggedFailure {
                comm: "mysqld".into(),
                order: 4,
                mode: 0x10c0d0,
                mode_names: None
            })
        );
        assert_eq!(
            parse_logged_failure("runc:[1:CHILD]: page allocation failure: order:6, mode:0x10c0d0"),
            Some(LoggedFailure {
                comm: "runc:[1:CHILD]".into(),
                order: 6,
                mode: 0x10c0d0,
                mode_names: None
            })
        );
        assert_eq!(
            parse_logged_failure(
                "kworker/u8:2: page allocation failure: order:4, mode:0x2cc0(GFP_KERNEL|__GFP_NOWARN), nodemask=(null),cpuset=/,mems_allowed=0"
            ),
            Some(LoggedFailure {
                comm: "kworker/u8:2".into(),
                order: 4,
                mode: 0x2cc0,
                mode_names: Some("GFP_KERNEL|__GFP_NOWARN".into())
            })
        );
        assert_eq!(
            parse_logged_failure("Out of memory: Killed process 1"),
            None
        );
        assert_eq!(
            parse_logged_failure("x: page allocation failure: order:z, mode:0x1"),
            None
        );
    }

    #[test]
    fn buddyinfo_and_free_blocks() {
        let zones = parse_buddyinfo(
            "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n\
             Node 0, zone   Normal   1163   1101    932    222      0      0      0      0      0      0      0 \n",
        );
        assert_eq!(zones.len(), 2);
        assert_eq!(zones[1].zone, "Normal");
        assert_eq!(zones[1].free_blocks[3], 222);
        assert_eq!(free_blocks_at_or_above(&zones, 6), 5);
        assert_eq!(free_blocks_at_or_above(&zones, 11), 0);
        assert!(!parse_buddyinfo(&fs::read_to_string("/proc/buddyinfo").unwrap()).is_empty());
    }

    #[test]
    fn tolerated_failures_are_named() {
        let gfp = GfpNames::from_format(include_str!(
            "../../tests/fixtures/mm_page_alloc-6.18.format"
        ))
        .unwrap();
        assert!(tolerated_reason(&gfp, 0x2cc0).is_some());
        assert!(tolerated_reason(&gfp, 0xcc0).is_none());
    }
}
