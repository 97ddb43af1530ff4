//! Zombies: a parent that never waits for its child leaves a real zombie
//! (`<defunct>`); tracer names it with its pod, its age and that parent,
//! once, and leaves alone the children that are reaped.

use std::{fs, path::Path, thread, time::Duration};

use crate::harness::{
    require_root, spawn_in_cgroup, v1_or_v2_hierarchy, wait_for_comm, Driver, Pod, Tracer, Workdir,
};

/// The children of `pid` (its threads' children; it has one thread).
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// The state letter of `/proc/PID/stat` (after the name in parentheses).
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn a_child_its_parent_never_reaps_is_reported_with_parent_pod_and_age() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut pod = Pod::create(
        &v1_or_v2_hierarchy(),
        &host,
        Driver::Systemd,
        "default",
        "reaper-5b7d-q8w2",
    );
    let (_, cgroup) = pod.add_container("app");
    let mut tracer = Tracer::start(&work, &host, &["--zombie-age", "2s"]);

    let reaped = work.renamed("/bin/true", "reapedchild");
    let lost = work.renamed("/bin/true", "lostchild");
    let unreaper = work.renamed("/bin/sleep", "unreaper");
    // The shell waits for `reapedchild` (a foreground command), starts
    // `lostchild` in the background, then replaces itself with `unreaper`,
    // a sleep that never waits: `lostchild` stays a zombie until it ends.
    let script = format!(
        "{}; {} & exec {} 60",
        reaped.display(),
        lost.display(),
        unreaper.display()
    );
    let mut parent = spawn_in_cgroup(&cgroup, Path::new("/bin/sh"), &["-c", &script]);
    let parent_pid = parent.id();
    wait_for_comm(parent_pid, "unreaper");
    let mut zombie = None;
    for _ in 0..200 {
        zombie = children(parent_pid)
            .into_iter()
            .find(|c| state(*c) == Some('Z'));
        if zombie.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let zombie = zombie.expect("lostchild became a zombie of unreaper");
    assert_eq!(
        fs::read_to_string(format!("/proc/{zombie}/comm"))
            .unwrap()
            .trim(),
        "lostchild"
    );

    let seen = tracer.wait_for("the zombie", |r| {
        r["kind"] == "zombie" && r["process"]["pid"] == zombie
    });
    assert_eq!(seen["process"]["comm"], "lostchild");
    assert_eq!(seen["process"]["pod"]["name"], "reaper-5b7d-q8w2");
    assert_eq!(seen["process"]["container"]["name"], "app");
    assert_eq!(seen["parent"]["pid"], parent_pid);
    assert_eq!(seen["parent"]["comm"], "unreaper");
    assert_eq!(seen["parent"]["pod"]["name"], "reaper-5b7d-q8w2");
    assert_eq!(seen["exit_code"], 0);
    let age = seen["age_s"].as_f64().expect("age_s");
    assert!((2.0..20.0).contains(&age), "age {age}");
    assert_eq!(state(zombie), Some('Z'), "still unreaped when reported");

    // Two more scans: reported once, and the reaped child never.
    thread::sleep(Duration::from_millis(2500));
    let _ = parent.kill();
    let _ = parent.wait();
    let finished = tracer.stop();
    let zombies: Vec<_> = finished
        .records
        .iter()
        .filter(|r| r["kind"] == "zombie")
        .collect();
    assert_eq!(
        zombies
            .iter()
            .filter(|r| r["process"]["pid"] == zombie)
            .count(),
        1,
        "reported once: {zombies:#?}"
    );
    assert!(
        zombies
            .iter()
            .all(|r| r["process"]["comm"] != "reapedchild"),
        "a reaped child is no zombie: {zombies:#?}"
    );
}
