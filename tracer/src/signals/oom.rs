//! OOM kills: decoding `oom:mark_victim` records and deciding what the OOM
//! was: a memory cgroup's limit (which one, at what usage) or the node.

use std::{fs, path::Path};

use tracer_common::{MemcgLevel, OomRecord};

use crate::tracefs::Format;

/// The victim's details as the kernel's record has them (sizes in bytes;
/// `None` where neither the record nor /proc had them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct VictimFields {
    #[serde(skip)]
    pub pid: u32,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    pub total_vm_bytes: Option<u64>,
    pub pgtables_bytes: Option<u64>,
    pub oom_score_adj: Option<i64>,
    pub uid: Option<u32>,
}

/// Decodes the raw record with the tracepoint's format. The kernel stores
/// the sizes in kB.
pub fn victim_fields(format: &Format, record: &OomRecord) -> VictimFields {
    let raw = &record.raw[..(record.raw_len as usize).min(record.raw.len())];
    let kib = |name: &str| format.int(raw, name).map(|v| v.max(0) as u64 * 1024);
    VictimFields {
        pid: format.int(raw, "pid").unwrap_or(0).max(0) as u32,
        anon_rss_bytes: kib("anon_rss"),
        file_rss_bytes: kib("file_rss"),
        shmem_rss_bytes: kib("shmem_rss"),
        total_vm_bytes: kib("total_vm"),
        pgtables_bytes: kib("pgtables"),
        oom_score_adj: format.int(raw, "oom_score_adj"),
        uid: format.int(raw, "uid").map(|v| v as u32),
    }
}

/// `Key:   1234 kB` lines of /proc files, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|v| v * 1024)
}

/// Older kernels' records carry only the pid: the rest comes from /proc
/// while the victim is still there (it is being killed, not yet reaped).
pub fn fill_from_proc(procfs: &Path, fields: &mut VictimFields) {
    let dir = procfs.join(fields.pid.to_string());
    if let Ok(status) = fs::read_to_string(dir.join("status")) {
        let kib = |key: &str| kib_field(&status, key);
        fields.anon_rss_bytes = fields.anon_rss_bytes.or_else(|| kib("RssAnon:"));
        fields.file_rss_bytes = fields.file_rss_bytes.or_else(|| kib("RssFile:"));
        fields.shmem_rss_bytes = fields.shmem_rss_bytes.or_else(|| kib("RssShmem:"));
        fields.total_vm_bytes = fields.total_vm_bytes.or_else(|| kib("VmSize:"));
        fields.pgtables_bytes = fields.pgtables_bytes.or_else(|| kib("VmPTE:"));
    }
    if fields.oom_score_adj.is_none() {
        fields.oom_score_adj = fs::read_to_string(dir.join("oom_score_adj"))
            .ok()
            .and_then(|v| v.trim().parse().ok());
    }
}

/// The kernel's "no limit" for a page counter is LONG_MAX bytes in pages;
/// anything this large is unlimited.
const UNLIMITED_PAGES: u64 = 1 << 50;
/// How close to its limit a cgroup must be to be the one that was hit: an
/// allocation fails when usage plus the request (up to a 2 MiB huge page)
/// would pass the limit.
const AT_LIMIT_SLACK_PAGES: u64 = 512;

/// Index (into `levels`, the trigger's memory cgroup first) of the cgroup
/// whose limit the OOM hit: the deepest one at its limit. None: no limit
/// reached on the way up, a system OOM.
pub fn limit_hit(levels: &[MemcgLevel]) -> Option<usize> {
    levels.iter().position(|l| {
        l.max_pages > 0
            && l.max_pages < UNLIMITED_PAGES
            && l.usage_pages + AT_LIMIT_SLACK_PAGES >= l.max_pages
    })
}

/// The memory cgroup's own OOM-kill count: `oom_kill` in memory.oom_control
/// (v1) or memory.events (v2).
pub fn oom_kill_count(dir: &Path) -> Option<u64> {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|file| {
            fs::read_to_string(dir.join(file)).ok().and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
}

/// The node's memory from /proc/meminfo.
pub fn node_memory(procfs: &Path) -> Option<super::event::NodeMemory> {
    let text = fs::read_to_string(procfs.join("meminfo")).ok()?;
    let kib = |key: &str| kib_field(&text, key);
    Some(super::event::NodeMemory {
        total_bytes: kib("MemTotal:")?,
        free_bytes: kib("MemFree:")?,
        available_bytes: kib("MemAvailable:").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(usage: u64, max: u64) -> MemcgLevel {
        MemcgLevel {
            cgroup_id: 1,
            usage_pages: usage,
            max_pages: max,
        }
    }

    #[test]
    fn the_deepest_cgroup_at_its_limit_is_the_one() {
        let unlimited = u64::MAX / 4096;
        // Container without a limit, pod at its 64 MiB limit, kubepods unlimited.
        let levels = [
            level(16_000, unlimited),
            level(16_384, 16_384),
            level(20_000, unlimited),
        ];
        assert_eq!(limit_hit(&levels), Some(1));
        // Container at its own limit below a pod limit that is not reached.
        let levels = [level(8_190, 8_192), level(9_000, 65_536)];
        assert_eq!(limit_hit(&levels), Some(0));
        // Nowhere near any limit: the node ran out.
        let levels = [level(100, unlimited), level(100, 1_000_000)];
        assert_eq!(limit_hit(&levels), None);
        assert_eq!(limit_hit(&[]), None);
    }

    #[test]
    fn counts_and_meminfo_from_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(oom_kill_count(dir.path()), Some(3));
        fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_kill_count(dir.path()), Some(2));
        let node = node_memory(Path::new("/proc")).expect("this machine's meminfo");
        assert!(node.total_bytes > 0 && node.free_bytes <= node.total_bytes);
    }

    #[test]
    fn proc_fills_what_old_records_lack() {
        let mut fields = VictimFields {
            pid: std::process::id(),
            ..Default::default()
        };
        fill_from_proc(Path::new("/proc"), &mut fields);
        assert!(fields.anon_rss_bytes.unwrap() > 0);
        assert!(fields.oom_score_adj.is_some());
    }
}
