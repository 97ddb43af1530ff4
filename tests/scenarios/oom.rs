//! Family 2: OOM kills, with the victim, the trigger, cgroup or system OOM,
//! the limit, and the pod; the victim's exit says OOM-killed.

use serde_json::Value;

use crate::harness::{
    read_line, require_disposable_guest, require_root, spawn_in_cgroup,
    spawn_in_cgroup_with_oom_score_adj, v1_or_v2_hierarchy, Driver, Pod, Tracer, Workdir,
};

const MIB: u64 = 1 << 20;

fn pids(record: &Value) -> Vec<u64> {
    record["victims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["process"]["pid"].as_u64().unwrap())
        .collect()
}

/// A container over its memory limit: one `oom` record naming the victim,
/// its pod and container, scope=cgroup and the limit; the exit says
/// OOM-killed; the kernel's SIGKILL is folded in, not a mystery kill; as
/// many records as the cgroup's own oom_kill counter.
#[test]
fn container_over_its_limit_is_a_cgroup_oom_in_its_pod() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut pod = Pod::create(
        &v1_or_v2_hierarchy(),
        &host,
        Driver::Systemd,
        "default",
        "api-5d8f-q2x7",
    );
    let (container_id, cgroup) = pod.add_container("app");
    pod.set_memory_limit(&cgroup, 32 * MIB);
    let mut tracer = Tracer::start(&work, &host, &[]);

    let mut memhog = spawn_in_cgroup(&cgroup, &work.program("memhog"), &["hog", "256"]);
    let pid = memhog.id();
    let status = memhog.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "memhog must be OOM-killed"
    );

    let oom = tracer.wait_for("the oom record", |r| {
        r["kind"] == "oom" && pids(r).contains(&(pid as u64))
    });
    assert_eq!(oom["scope"], "cgroup");
    assert_eq!(oom["memcg"]["limit_bytes"], 32 * MIB);
    assert!(
        oom["memcg"]["usage_bytes"].as_u64().unwrap() > 30 * MIB,
        "{oom}"
    );
    assert_eq!(oom["memcg"]["container"]["id"], container_id.as_str());
    let victim = &oom["victims"][0];
    assert_eq!(victim["process"]["comm"], "memhog");
    assert_eq!(victim["process"]["pod"]["namespace"], "default");
    assert_eq!(victim["process"]["pod"]["name"], "api-5d8f-q2x7");
    assert_eq!(victim["process"]["container"]["name"], "app");
    assert!(
        victim["anon_rss_bytes"].as_u64().unwrap() > 20 * MIB,
        "{oom}"
    );
    assert_eq!(victim["oom_score_adj"], 0);
    assert_eq!(oom["trigger"]["pid"], pid);

    let exit = tracer.wait_for("the exit record", |r| {
        r["kind"] == "exit" && r["process"]["pid"] == pid
    });
    assert_eq!(exit["oom_killed"], true);
    assert_eq!(exit["exit_code"], 137);

    let done = tracer.stop();
    let oom_records = done
        .records
        .iter()
        .filter(|r| r["kind"] == "oom")
        .filter(|r| r["memcg"]["path"] == oom["memcg"]["path"])
        .count();
    assert_eq!(
        oom_records as u64,
        Pod::oom_kills(&cgroup),
        "one record per kill the cgroup counted"
    );
    assert!(
        !done
            .records
            .iter()
            .any(|r| r["kind"] == "signal" && r["target"]["pid"] == pid),
        "the OOM killer's SIGKILL must be part of the oom record, not a separate kill"
    );
    assert!(
        done.stdout.contains(
            "OOM kill (cgroup OOM in pod default/api-5d8f-q2x7, container app: limit 32.0 MiB"
        ),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains(&format!("memhog({pid}) [pod default/api-5d8f-q2x7, container app] exited: OOM-killed (exit code 137)")), "{}", done.stdout);
    drop(pod);
}

/// The limit is on the pod, shared by two containers: the one with the
/// higher oom_score_adj dies although the other one asked for the memory,
/// and the memory cgroup named is the pod's.
#[test]
fn pod_limit_kills_the_container_with_the_higher_oom_score_adj() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut pod = Pod::create(
        &v1_or_v2_hierarchy(),
        &host,
        Driver::Cgroupfs,
        "shop",
        "cart-7c4d-k9p2",
    );
    let (_, cache_cgroup) = pod.add_container("cache");
    let (_, worker_cgroup) = pod.add_container("worker");
    let pod_dir = pod.dir.clone();
    pod.set_memory_limit(&pod_dir, 64 * MIB);
    let mut tracer = Tracer::start(&work, &host, &["--pod", "shop/cart-7c4d-k9p2"]);

    let mut cache = spawn_in_cgroup_with_oom_score_adj(
        &cache_cgroup,
        1000,
        &work.program("cache"),
        &["hog", "24", "hold"],
    );
    assert_eq!(read_line(&mut cache), "held");
    let cache_pid = cache.id();
    let mut worker = spawn_in_cgroup_with_oom_score_adj(
        &worker_cgroup,
        0,
        &work.program("worker"),
        &["hog", "56", "hold"],
    );
    let worker_pid = worker.id();
    let _ = cache.wait();

    let oom = tracer.wait_for("the oom record", |r| r["kind"] == "oom");
    assert_eq!(oom["scope"], "cgroup");
    assert_eq!(pids(&oom), [cache_pid as u64], "{oom}");
    assert_eq!(oom["victims"][0]["oom_score_adj"], 1000);
    assert_eq!(
        oom["victims"][0]["process"]["container"]["name"], "cache",
        "{oom}"
    );
    assert_eq!(
        oom["trigger"]["pid"], worker_pid,
        "the worker asked for the memory"
    );
    assert_eq!(oom["memcg"]["limit_bytes"], 64 * MIB);
    assert_eq!(oom["memcg"]["pod"]["uid"], pod.uid.as_str(), "{oom}");
    assert!(
        oom["memcg"].get("container").is_none(),
        "the pod's cgroup, not a container's: {oom}"
    );
    assert!(
        oom["memcg"]["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("pod{}", pod.uid)),
        "{oom}"
    );
    let _ = worker.kill();
    let _ = worker.wait();
    tracer.stop();
    drop(pod);
}

/// memory.oom.group: the kernel kills every process of the cgroup at once;
/// tracer reports one event with every victim.
#[test]
fn guest_only_oom_group_kill_is_one_event_with_every_victim() {
    require_disposable_guest();
    let work = Workdir::new();
    let host = work.host_root();
    let mut pod = Pod::create(
        &v1_or_v2_hierarchy(),
        &host,
        Driver::Systemd,
        "batch",
        "job-2f6h-m4n8",
    );
    let (_, cgroup) = pod.add_container("job");
    pod.set_memory_limit(&cgroup, 48 * MIB);
    std::fs::write(cgroup.join("memory.oom.group"), "1").expect("memory.oom.group (cgroup v2)");
    let mut tracer = Tracer::start(&work, &host, &[]);
    tracer.protect_from_oom_killer();

    let mut sidecar = spawn_in_cgroup(&cgroup, &work.program("sidecar"), &["hog", "8", "hold"]);
    assert_eq!(read_line(&mut sidecar), "held");
    let mut memhog = spawn_in_cgroup(&cgroup, &work.program("memhog"), &["hog", "256"]);
    let _ = memhog.wait();
    let _ = sidecar.wait();

    let oom = tracer.wait_for("the oom record", |r| {
        r["kind"] == "oom" && pids(r).contains(&(memhog.id() as u64))
    });
    let victims = pids(&oom);
    assert!(
        victims.contains(&(sidecar.id() as u64)),
        "every process of the group is a victim: {oom}"
    );
    assert_eq!(oom["scope"], "cgroup");
    let done = tracer.stop();
    assert_eq!(
        done.records.iter().filter(|r| r["kind"] == "oom").count(),
        1,
        "one event for the group kill"
    );
    drop(pod);
}

/// The node itself runs out: scope=system, with the victim, the trigger,
/// its oom_score_adj and the node's memory.
#[test]
fn guest_only_system_oom_is_reported_with_the_node_memory() {
    require_disposable_guest();
    let work = Workdir::new();
    let host = work.host_root();
    let mut tracer = Tracer::start(&work, &host, &[]);
    tracer.protect_from_oom_killer();
    let total_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024;
    let mut hog = crate::harness::spawn(
        &work.program("memhog"),
        &["hog", &(total_mib * 2).to_string()],
    );
    let pid = hog.id();
    let _ = hog.wait();

    let oom = tracer.wait_for("the oom record", |r| r["kind"] == "oom");
    assert_eq!(oom["scope"], "system", "{oom}");
    assert!(oom.get("memcg").is_none(), "{oom}");
    assert!(oom["node_memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        pids(&oom),
        [pid as u64],
        "the allocating process is the biggest: {oom}"
    );
    assert_eq!(oom["trigger"]["pid"], pid);
    assert!(oom["victims"][0]["oom_score_adj"].is_i64(), "{oom}");
    let exit = tracer.wait_for("the exit record", |r| {
        r["kind"] == "exit" && r["process"]["pid"] == pid
    });
    assert_eq!(exit["oom_killed"], true);
    tracer.stop();
}
