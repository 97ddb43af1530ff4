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
