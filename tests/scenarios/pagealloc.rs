//! Family 3: page-allocation failures, including the ones the kernel never
//! logs. Run in the qemu guests with little memory (they exhaust it).

use std::{fs, process::Command};

use crate::harness::{require_disposable_guest, Tracer, Workdir};

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// Asking for more huge pages than the guest has: the kernel tries order-9
/// allocations (without warning, with a fallback) until they fail, on behalf
/// of the process that wrote the request. The same shell gives the pool back
/// at once: a guest left without memory would OOM-kill the test itself. After the pool is given back and
/// memory compacted, a modest request succeeds and nothing is reported.
#[test]
fn guest_only_hugepage_overcommit_fails_at_order_9_then_compaction_helps() {
    require_disposable_guest();
    let work = Workdir::new();
    let host = work.host_root();
    let mut tracer = Tracer::start(&work, &host, &["--stacks"]);
    tracer.protect_from_oom_killer();
    let huge_order = (fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        * 1024
        / 4096)
        .trailing_zeros();

    let asker = work.renamed("/bin/sh", "hugeasker");
    let status = Command::new(&asker)
        .arg("-c")
        .arg(format!(
            "echo 100000 > {NR_HUGEPAGES}; echo 0 > {NR_HUGEPAGES}"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let failure = tracer.wait_for("a page allocation failure", |r| {
        r["kind"] == "page_alloc_failure" && r["process"]["comm"] == "hugeasker"
    });
    assert_eq!(failure["order"], huge_order);
    assert_eq!(
        failure["tolerated"], true,
        "hugetlb pool growth has __GFP_NOWARN: {failure}"
    );
    assert!(
        failure["gfp_names"]
            .as_str()
            .unwrap()
            .contains("__GFP_NOWARN"),
        "{failure}"
    );
    assert!(failure["buddyinfo"]
        .as_array()
        .is_some_and(|z| !z.is_empty()));
    // The buddy allocator's state is a snapshot taken just after, at most
    // once a second: blocks come and go meanwhile, so only its shape is checked.
    assert!(failure["free_blocks_at_order"].is_u64(), "{failure}");
    // Huge pages for user space are movable; pagetypeinfo says how many
    // free blocks of that type there were.
    assert_eq!(failure["migratetype_name"], "Movable", "{failure}");
    assert!(
        failure["free_blocks_at_order_of_type"].is_u64(),
        "{failure}"
    );
    assert!(failure["pagetypeinfo"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));

    fs::write(NR_HUGEPAGES, "0").unwrap();
    fs::write("/proc/sys/vm/compact_memory", "1").unwrap();
    let modest = work.renamed("/bin/sh", "modestasker");
    let status = Command::new(&modest)
        .arg("-c")
        .arg(format!("echo 4 > {NR_HUGEPAGES}"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read_to_string(NR_HUGEPAGES).unwrap().trim(),
        "4",
        "the modest request was met"
    );
    fs::write(NR_HUGEPAGES, "0").unwrap();

    let done = tracer.stop();
    assert!(
        !done
            .records
            .iter()
            .any(|r| r["kind"] == "page_alloc_failure" && r["process"]["comm"] == "modestasker"),
        "after compaction the modest request must not fail"
    );
    let summary = done
        .records
        .iter()
        .find(|r| r["kind"] == "page_alloc_summary")
        .expect("summary record");
    assert!(summary["failures"].as_u64().unwrap() > 0);
    assert!(
        summary["by_order"][huge_order.to_string()]
            .as_u64()
            .unwrap()
            > 0,
        "{summary}"
    );
}

/// A sysctl or sysfs setting for the test, restored on drop.
struct Setting {
    path: &'static str,
    saved: String,
}

impl Setting {
    fn set(path: &'static str, value: &str) -> Self {
        let saved = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // sysfs shows a choice as "always [madvise] never".
        let saved = match (saved.find('['), saved.find(']')) {
            (Some(a), Some(b)) => saved[a + 1..b].to_owned(),
            _ => saved.trim().to_owned(),
        };
        fs::write(path, value).unwrap_or_else(|e| panic!("setting {path}: {e}"));
        Self { path, saved }
    }
}

impl Drop for Setting {
    fn drop(&mut self) {
        let _ = fs::write(self.path, &self.saved);
    }
}

/// tracer with `args`, checked to follow page allocations through `hook`
/// and spared by the OOM killer, on memory set up to be fragmented: huge
/// pages only where asked, no defragmentation at fault, no proactive
/// compaction (it would rebuild the blocks the tests take apart). The
/// settings are restored when their guards drop.
fn tracer_on_fragmentable_memory(
    work: &Workdir,
    args: &[&str],
    hook: &str,
) -> (Tracer, [Setting; 3]) {
    let tracer = Tracer::start(work, &work.host_root(), args);
    let used = crate::harness::start_hook(&tracer.records(), "page_alloc");
    assert_eq!(
        used.as_ref().map(|h| h["attached"].clone()),
        Some(hook.into()),
        "{used:?}"
    );
    tracer.protect_from_oom_killer();
    let settings = [
        Setting::set("/sys/kernel/mm/transparent_hugepage/defrag", "never"),
        Setting::set("/sys/kernel/mm/transparent_hugepage/enabled", "madvise"),
        Setting::set("/proc/sys/vm/compaction_proactiveness", "0"),
    ];
    (tracer, settings)
}

fn free_mib() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemFree:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        >> 10
}

fn vmstat(name: &str) -> u64 {
    fs::read_to_string("/proc/vmstat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/vmstat"))
}

/// A huge-page fault that may not reclaim: with THP defrag off the kernel
/// asks for an order-9 block with GFP_TRANSHUGE_LIGHT (no direct reclaim,
/// no kswapd, `__GFP_NOWARN`) and quietly falls back to small pages when
/// none is free. Memory is fragmented first, so that it fails with plenty
/// of single pages free. The kernel counts each fallback
/// (`thp_fault_fallback`): tracer must report exactly as many failures,
/// none missed by its hook (the failure path, where kprobes are allowed).
#[test]
fn guest_only_nowait_huge_page_fault_failure_is_reported_as_often_as_the_kernel_falls_back() {
    nowait_huge_page_fault_failures(&[], "kprobe warn_alloc");
}

/// The same with the fallback hook, `mm_page_alloc`, which must not miss
/// any either.
#[test]
fn guest_only_nowait_huge_page_fault_failures_are_all_seen_by_the_fallback_hook_too() {
    nowait_huge_page_fault_failures(
        &["--skip-hook", "kprobe warn_alloc"],
        "raw tracepoint mm_page_alloc",
    );
}

fn nowait_huge_page_fault_failures(args: &[&str], hook: &str) {
    require_disposable_guest();
    let work = Workdir::new();
    let (mut tracer, _settings) = tracer_on_fragmentable_memory(&work, args, hook);
    // Leave 160 MiB contiguous for the huge pages to use up.
    let fragmented = free_mib().saturating_sub(160);
    let before = vmstat("thp_fault_fallback");
    let faulter = work.program("thpfaulter");
    let out = Command::new(&faulter)
        .args(["thp-fallback", &fragmented.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let fallbacks = vmstat("thp_fault_fallback") - before;
    assert!(fallbacks >= 1);
    tracer.wait_for("the huge-page fault's failure", |r| {
        r["kind"] == "page_alloc_failure" && r["process"]["comm"] == "thpfaulter"
    });
    let done = tracer.stop();
    let failures: Vec<_> = done
        .records
        .iter()
        .filter(|r| r["kind"] == "page_alloc_failure" && r["process"]["comm"] == "thpfaulter")
        .collect();
    assert_eq!(
        failures.len() as u64,
        fallbacks,
        "one failure per fallback the kernel counted: {failures:#?}"
    );
    for failure in failures {
        assert_eq!(failure["order"], 9, "{failure}");
        assert_eq!(failure["tolerated"], true, "{failure}");
        let names = failure["gfp_names"].as_str().unwrap();
        assert!(names.contains("GFP_TRANSHUGE_LIGHT"), "{failure}");
        assert!(!names.contains("__GFP_DIRECT_RECLAIM"), "{failure}");
    }
}

/// The kernel's own record of failed page allocations, independent of
/// tracer: a tracefs instance of its own with the `kmem:mm_page_alloc`
/// event, filtered in the kernel to the allocations that returned no page
/// (`pfn` is -1 then). Removed on drop.
struct KernelFailureTrace {
    dir: std::path::PathBuf,
}

impl KernelFailureTrace {
    fn start() -> Self {
        let dir = std::path::PathBuf::from(format!(
            "/sys/kernel/tracing/instances/tracer-scenario-{}",
            crate::harness::random_hex(4)
        ));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let trace = Self { dir };
        let event = trace.dir.join("events/kmem/mm_page_alloc");
        fs::write(event.join("filter"), "pfn == 18446744073709551615")
            .unwrap_or_else(|e| panic!("filtering {}: {e}", event.display()));
        fs::write(event.join("enable"), "1")
            .unwrap_or_else(|e| panic!("enabling {}: {e}", event.display()));
        trace
    }

    /// The orders of the failures the kernel recorded for `pid`, once the
    /// event is switched off.
    fn failures_of(&self, pid: u32) -> Vec<u32> {
        fs::write(self.dir.join("events/kmem/mm_page_alloc/enable"), "0").unwrap();
        let text = fs::read_to_string(self.dir.join("trace")).unwrap();
        // `# entries-in-buffer/entries-written: 12/12   #P:2`: fewer in the
        // buffer than written means some were overwritten.
        let (kept, written) = text
            .lines()
            .find_map(|l| l.strip_prefix("# entries-in-buffer/entries-written: "))
            .and_then(|l| l.split_whitespace().next()?.split_once('/'))
            .unwrap_or_else(|| panic!("no entry count in the kernel's trace:\n{text}"));
        assert_eq!(kept, written, "the kernel's trace buffer overflowed");
        // `   comm-PID     [CPU] ....  TIME: mm_page_alloc: page=... order=N ...`
        let pid = pid.to_string();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.split('[')
                    .next()
                    .and_then(|task| task.trim().rsplit_once('-'))
                    .is_some_and(|(_, p)| p == pid)
            })
            .map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("order="))
                    .and_then(|o| o.parse().ok())
                    .unwrap_or_else(|| panic!("no order in the kernel's line {l}"))
            })
            .collect()
    }
}

impl Drop for KernelFailureTrace {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("events/kmem/mm_page_alloc/enable"), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Allocations that may neither sleep nor reclaim, failing: a TCP sender's
/// page fragments are order-3 blocks taken without direct reclaim
/// (`skb_page_frag_refill`: `__GFP_NORETRY | __GFP_NOWARN`, the caller's
/// GFP_KERNEL less `__GFP_DIRECT_RECLAIM`), with one page as the fallback.
/// Memory is fragmented (the kept pages mlocked, compaction told to leave
/// them), its contiguous rest taken by huge pages, then loopback
/// connections nobody reads are filled until no order-3 block is left.
/// The same sender's slab allocations fail too, at order 2 with no reclaim
/// flag at all (SLUB's first try at a larger slab drops `__GFP_RECLAIM`).
/// The kernel's own trace of failed allocations, filtered in the kernel,
/// is the count tracer must match, failure for failure and order for order.
#[test]
fn guest_only_nowait_order_3_failures_are_all_reported_by_the_failure_path_hook() {
    nowait_fragment_failures(&[], "kprobe warn_alloc");
}

/// The same with the fallback hook, `mm_page_alloc`.
#[test]
fn guest_only_nowait_order_3_failures_are_all_reported_by_the_fallback_hook_too() {
    nowait_fragment_failures(
        &["--skip-hook", "kprobe warn_alloc"],
        "raw tracepoint mm_page_alloc",
    );
}

fn nowait_fragment_failures(args: &[&str], hook: &str) {
    require_disposable_guest();
    let work = Workdir::new();
    let (mut tracer, _settings) = tracer_on_fragmentable_memory(&work, args, hook);
    let _unevictable = Setting::set("/proc/sys/vm/compact_unevictable_allowed", "0");
    let fragmented = free_mib().saturating_sub(160);
    let sender = work.program("nowaitsender");
    // The trigger is the kernel's, not tracer's: order-3 blocks may still
    // come from a CPU's free lists or from kswapd after /proc/buddyinfo
    // showed none, and a sender then fails only at other orders. Another
    // sender (another pid) tries again; each is compared on its own.
    let mut tries = Vec::new();
    let (pid, kernel_orders) = loop {
        let kernel = KernelFailureTrace::start();
        let child = Command::new(&sender)
            .args(["nowait-tcp", &fragmented.to_string(), "64"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let kernel_orders = kernel.failures_of(pid);
        if kernel_orders.contains(&3) {
            break (pid, kernel_orders);
        }
        tries.push(format!(
            "connections filled: {}, the kernel's failures: {kernel_orders:?}",
            String::from_utf8_lossy(&out.stdout).trim()
        ));
        assert!(
            tries.len() < 3,
            "the kernel recorded no order-3 failure of any sender: {tries:?}"
        );
    };
    let last = tracer.wait_for("the last order-3 failure", |r| {
        r["kind"] == "page_alloc_failure" && r["process"]["pid"] == pid && r["order"] == 3
    });
    let done = tracer.stop();
    let reported: Vec<&serde_json::Value> = done
        .records
        .iter()
        .filter(|r| r["kind"] == "page_alloc_failure" && r["process"]["pid"] == pid)
        .collect();
    let mut reported_orders: Vec<u32> = reported
        .iter()
        .map(|r| r["order"].as_u64().unwrap() as u32)
        .collect();
    let mut kernel_sorted = kernel_orders.clone();
    reported_orders.sort_unstable();
    kernel_sorted.sort_unstable();
    assert_eq!(
        reported_orders, kernel_sorted,
        "every failure the kernel recorded for the sender, reported once: {last}"
    );
    for failure in reported.iter().filter(|r| r["order"] == 3) {
        assert_eq!(failure["tolerated"], true, "{failure}");
        let names = failure["gfp_names"].as_str().unwrap();
        assert!(names.contains("__GFP_NORETRY"), "{failure}");
        assert!(!names.contains("__GFP_DIRECT_RECLAIM"), "{failure}");
    }
}
