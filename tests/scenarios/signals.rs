//! Family 1: who sent which signal to which process and pod, and which exit
//! code followed.

use std::{process::Command, thread, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::Value;

use crate::harness::{
    read_line, require_root, spawn, spawn_in_cgroup, v1_or_v2_hierarchy, v2_hierarchy,
    wait_for_comm, Driver, Pod, Tracer, Workdir,
};

fn kill(pid: u32, signal: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), signal).expect("kill");
}

fn is_signal(r: &Value, target: u32, name: &str) -> bool {
    r["kind"] == "signal" && r["target"]["pid"] == target && r["signal"]["name"] == name
}

fn is_exit(r: &Value, pid: u32) -> bool {
    r["kind"] == "exit" && r["process"]["pid"] == pid
}

fn comms(ancestry: &Value) -> Vec<String> {
    ancestry
        .as_array()
        .expect("ancestry array")
        .iter()
        .map(|a| a["comm"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The case on-call engineers used to need a kernel module for: `server` in a
/// pod is SIGKILLed by `pkill -9`, started from vGhyM0 -> sh -> bash -> pkill.
#[test]
fn pkill_from_a_shell_chain_is_named_with_ancestry_pod_and_exit_code() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut pod = Pod::create(
        &v1_or_v2_hierarchy(),
        &host,
        Driver::Systemd,
        "default",
        "web-7f9c-x2k4",
    );
    let (container_id, cgroup) = pod.add_container("app");
    let mut tracer = Tracer::start(&work, &host, &[]);

    let server_path = work.program("server");
    let mut server = spawn_in_cgroup(&cgroup, &server_path, &["sleep"]);
    let server_pid = server.id();
    wait_for_comm(server_pid, "server");
    let pidfile = work.path().join("server.pid");
    std::fs::write(&pidfile, format!("{server_pid}\n")).unwrap();

    // Each shell runs one more command after its child, so none of them
    // replaces itself with the next (the chain stays four processes deep).
    let vghym0 = work.renamed("/bin/sh", "vGhyM0");
    let script = format!(
        r#"sh -c 'bash -c "pkill -9 -x -F {} server; true"; true'; true"#,
        pidfile.display()
    );
    let status = Command::new(&vghym0)
        .arg("-c")
        .arg(&script)
        .status()
        .expect("running the chain");
    assert!(status.success(), "the kill chain failed: {status}");
    let _ = server.wait();

    let signal = tracer.wait_for("the SIGKILL record", |r| {
        is_signal(r, server_pid, "SIGKILL")
    });
    assert_eq!(signal["sender"]["comm"], "pkill");
    assert_eq!(signal["signal"]["number"], 9);
    assert_eq!(signal["signal"]["origin"], "kill");
    assert_eq!(signal["signal"]["code_name"], "SI_USER");
    assert_eq!(signal["signal"]["directed"], "process");
    assert_eq!(signal["signal"]["result"], "delivered");
    let chain = comms(&signal["sender_ancestry"]);
    let tail: Vec<&str> = chain
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["vGhyM0", "sh", "bash", "pkill"],
        "ancestry {chain:?}"
    );
    assert_eq!(
        signal["sender_ancestry"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["pid"],
        signal["sender"]["pid"]
    );
    assert!(
        signal["sender"].get("pod").is_none(),
        "the sender runs on the host: {signal}"
    );
    assert_eq!(signal["target"]["comm"], "server");
    assert_eq!(signal["target"]["pod"]["namespace"], "default");
    assert_eq!(signal["target"]["pod"]["name"], "web-7f9c-x2k4");
    assert_eq!(signal["target"]["pod"]["uid"], pod.uid.as_str());
    assert_eq!(signal["target"]["pod"]["qos"], "Burstable");
    assert_eq!(signal["target"]["container"]["id"], container_id.as_str());
    assert_eq!(signal["target"]["container"]["name"], "app");
    assert_eq!(signal["target"]["container"]["runtime"], "containerd");

    let exit = tracer.wait_for("the server's exit record", |r| is_exit(r, server_pid));
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["killed_by"], "SIGKILL");
    assert_eq!(exit["after_signal"]["sender_comm"], "pkill");
    assert_eq!(exit["after_signal"]["sender_pid"], signal["sender"]["pid"]);
    assert_eq!(exit["process"]["pod"]["name"], "web-7f9c-x2k4");

    let done = tracer.stop();
    assert!(
        done.status.success(),
        "tracer exit: {}\n{}",
        done.status,
        done.stderr
    );
    let pkill_pid = signal["sender"]["pid"].as_u64().unwrap();
    let text = &done.stdout;
    assert!(
        text.contains(&format!("pkill({pkill_pid}) sent SIGKILL to server({server_pid}) [pod default/web-7f9c-x2k4, container app] via kill(2)")),
        "console:\n{text}"
    );
    assert!(text.contains("=> vGhyM0("), "console:\n{text}");
    assert!(
        text.contains(&format!("=> pkill({pkill_pid})\n")),
        "console:\n{text}"
    );
    assert!(text.contains("  sender pod: - (host)"), "console:\n{text}");
    assert!(
        text.contains(&format!(
            "server({server_pid}) [pod default/web-7f9c-x2k4, container app] exited: killed by SIGKILL from pkill({pkill_pid}) (exit code 137)"
        )),
        "console:\n{text}"
    );
    drop(pod);
}

/// A slow shutdown: TERM is handled and ignored, KILL follows after a grace
/// period, as the kubelet does. Both are recorded, in order, and the exit
/// names the KILL.
#[test]
fn term_then_kill_after_grace_period() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut tracer = Tracer::start(&work, &host, &["--signals", "TERM,KILL"]);
    let mut graceful = spawn(&work.program("graceful"), &["handle-term"]);
    assert_eq!(read_line(&mut graceful), "ready");
    let pid = graceful.id();

    kill(pid, Signal::SIGTERM);
    thread::sleep(Duration::from_millis(700));
    assert!(
        graceful.try_wait().unwrap().is_none(),
        "TERM should have been handled"
    );
    kill(pid, Signal::SIGKILL);
    let _ = graceful.wait();

    let exit = tracer.wait_for("the exit record", |r| is_exit(r, pid));
    let records = tracer.records();
    let term = records
        .iter()
        .position(|r| is_signal(r, pid, "SIGTERM"))
        .expect("TERM recorded");
    let kill_at = records
        .iter()
        .position(|r| is_signal(r, pid, "SIGKILL"))
        .expect("KILL recorded");
    assert!(term < kill_at, "TERM must come first");
    let gap_ns =
        records[kill_at]["mono_ns"].as_u64().unwrap() - records[term]["mono_ns"].as_u64().unwrap();
    assert!(
        gap_ns >= 600_000_000,
        "the grace period shows in the timestamps: {gap_ns} ns"
    );
    assert_eq!(records[term]["sender"]["pid"], std::process::id());
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["after_signal"]["signal"], "SIGKILL");
    tracer.stop();
}

/// tgkill(2) to a second thread: attributed to its process, with the
/// thread's own name.
#[test]
fn tgkill_to_a_second_thread_is_attributed_to_the_process() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut tracer = Tracer::start(&work, &host, &[]);
    let mut threaded = spawn(&work.program("threaded"), &["threads"]);
    let tid: u32 = read_line(&mut threaded).parse().expect("worker tid");
    let pid = threaded.id();
    assert_ne!(tid, pid);

    // SAFETY: plain syscall on our own child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid as libc::c_long,
            tid as libc::c_long,
            libc::SIGUSR1 as libc::c_long,
        )
    };
    assert_eq!(rc, 0, "tgkill failed");
    let _ = threaded.wait();

    let signal = tracer.wait_for("the SIGUSR1 record", |r| is_signal(r, pid, "SIGUSR1"));
    assert_eq!(signal["target"]["tid"], tid);
    assert_eq!(signal["target"]["comm"], "threaded");
    assert_eq!(signal["target"]["thread_comm"], "worker");
    assert_eq!(signal["signal"]["directed"], "thread");
    assert_eq!(signal["signal"]["code_name"], "SI_TKILL");
    assert_eq!(signal["signal"]["origin"], "tkill");
    let exit = tracer.wait_for("the exit record", |r| is_exit(r, pid));
    assert_eq!(exit["exit_code"], 128 + 10);
    assert_eq!(exit["killed_by"], "SIGUSR1");
    let done = tracer.stop();
    assert!(
        done.stdout.contains(&format!(
            "sent SIGUSR1 to thread worker({tid}) of threaded({pid}) via tkill(2)/tgkill(2)"
        )),
        "console:\n{}",
        done.stdout
    );
}

/// A null-pointer write: the kernel sends SIGSEGV to the faulting process,
/// which exits 139.
#[test]
fn self_inflicted_segfault_is_kernel_generated_and_exits_139() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut tracer = Tracer::start(&work, &host, &[]);
    let mut crasher = spawn(&work.program("crasher"), &["segv"]);
    let pid = crasher.id();
    let _ = crasher.wait();

    let signal = tracer.wait_for("the SIGSEGV record", |r| is_signal(r, pid, "SIGSEGV"));
    assert_eq!(signal["signal"]["origin"], "fault");
    assert_eq!(signal["signal"]["code_name"], "SEGV_MAPERR");
    assert_eq!(
        signal["sender"]["pid"], pid,
        "the faulting process is the context"
    );
    let exit = tracer.wait_for("the exit record", |r| is_exit(r, pid));
    assert_eq!(exit["exit_code"], 139);
    assert_eq!(exit["killed_by"], "SIGSEGV");
    assert_eq!(exit["after_signal"]["origin"], "fault");
    let done = tracer.stop();
    assert!(
        done.stdout.contains(&format!(
            "the kernel sent SIGSEGV (SEGV_MAPERR) to crasher({pid}) via a fault"
        )),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains(&format!(
            "crasher({pid}) exited: killed by SIGSEGV from the kernel (SEGV_MAPERR)"
        )),
        "{}",
        done.stdout
    );
}

/// `--pid` follows the process's pod: other processes' signals are left
/// out, and the pod is still followed after its container restarted with a
/// new PID and a new container id. Here the pod uses the cgroupfs driver on
/// the cgroup2 hierarchy.
#[test]
fn pid_filter_follows_the_pod_across_a_container_restart() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let mut pod = Pod::create(
        &v2_hierarchy(),
        &host,
        Driver::Cgroupfs,
        "shop",
        "cart-5d8f-q2x7",
    );
    let (_, first_cgroup) = pod.add_container("cart");
    let mut first = spawn_in_cgroup(&first_cgroup, &work.program("server"), &["sleep"]);
    let first_pid = first.id();
    wait_for_comm(first_pid, "server");

    let mut tracer = Tracer::start(&work, &host, &["--pid", &first_pid.to_string()]);
    let start = tracer
        .records()
        .into_iter()
        .find(|r| r["kind"] == "start")
        .unwrap();
    assert!(
        start["scope"]
            .as_str()
            .unwrap()
            .contains("pod shop/cart-5d8f-q2x7"),
        "{start}"
    );

    let mut bystander = spawn(&work.program("bystander"), &["sleep"]);
    let bystander_pid = bystander.id();
    wait_for_comm(bystander_pid, "bystander");
    kill(bystander_pid, Signal::SIGKILL);
    let _ = bystander.wait();

    kill(first_pid, Signal::SIGKILL);
    let _ = first.wait();
    tracer.wait_for("the first container's kill", |r| {
        is_signal(r, first_pid, "SIGKILL")
    });

    // The container restarts: new cgroup scope, new PID, same pod.
    let (second_id, second_cgroup) = pod.add_container("cart");
    let mut second = spawn_in_cgroup(&second_cgroup, &work.program("server"), &["sleep"]);
    let second_pid = second.id();
    wait_for_comm(second_pid, "server");
    kill(second_pid, Signal::SIGTERM);
    let _ = second.wait();
    let signal = tracer.wait_for("the restarted container's TERM", |r| {
        is_signal(r, second_pid, "SIGTERM")
    });
    assert_eq!(signal["target"]["container"]["id"], second_id.as_str());
    tracer.wait_for("the restarted container's exit", |r| is_exit(r, second_pid));

    let done = tracer.stop();
    for r in &done.records {
        for side in ["target", "sender", "process"] {
            assert_ne!(
                r[side]["pid"], bystander_pid,
                "a process outside the pod was reported: {r}"
            );
        }
    }
    drop(pod);
}

/// A kill from a process in another pod names the sender's pod; `--pod`
/// and `--container` each keep only their own pod's events; `--format json`
/// prints the same records on stdout.
#[test]
fn kill_across_pods_and_the_pod_and_container_filters() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let hierarchy = v1_or_v2_hierarchy();
    let mut victim_pod = Pod::create(&hierarchy, &host, Driver::Systemd, "shop", "api-5d8f-q2x7");
    let (_, victim_cgroup) = victim_pod.add_container("api");
    let mut attacker_pod = Pod::create(
        &hierarchy,
        &host,
        Driver::Cgroupfs,
        "tools",
        "debug-6c9b-z1z1",
    );
    let (attacker_id, attacker_cgroup) = attacker_pod.add_container("shell");

    let mut by_pod = Tracer::start(
        &work,
        &host,
        &["--pod", "shop/api-5d8f-q2x7", "--format", "json"],
    );
    let mut by_container = Tracer::start(&work, &host, &["--container", &attacker_id[..12]]);

    let mut victim = spawn_in_cgroup(&victim_cgroup, &work.program("server"), &["sleep"]);
    let victim_pid = victim.id();
    wait_for_comm(victim_pid, "server");
    let mut other = spawn(&work.program("bystander"), &["sleep"]);
    let other_pid = other.id();
    wait_for_comm(other_pid, "bystander");

    // A shell inside the attacker's pod kills the server in the victim's pod,
    // and then a process outside both pods.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"echo $$ > "{}/cgroup.procs" && kill -TERM {victim_pid} && kill -KILL {other_pid}"#,
            attacker_cgroup.display()
        ))
        .status()
        .expect("running the attacker");
    assert!(status.success());
    let _ = victim.wait();
    let _ = other.wait();

    let seen = by_pod.wait_for("the cross-pod TERM", |r| {
        is_signal(r, victim_pid, "SIGTERM")
    });
    assert_eq!(seen["target"]["pod"]["name"], "api-5d8f-q2x7");
    assert_eq!(seen["sender"]["pod"]["namespace"], "tools");
    assert_eq!(seen["sender"]["pod"]["name"], "debug-6c9b-z1z1");
    assert_eq!(seen["sender"]["container"]["name"], "shell");
    by_pod.wait_for("the victim's exit", |r| is_exit(r, victim_pid));
    // The container filter matches the sender: both of its kills are there.
    by_container.wait_for("the TERM sent from the container", |r| {
        is_signal(r, victim_pid, "SIGTERM")
    });
    by_container.wait_for("the KILL sent from the container", |r| {
        is_signal(r, other_pid, "SIGKILL")
    });

    let pod_view = by_pod.stop();
    assert!(
        !pod_view
            .records
            .iter()
            .any(|r| is_signal(r, other_pid, "SIGKILL")),
        "--pod reported a kill between two processes outside the pod"
    );
    // --format json: stdout holds the same JSON lines as the file.
    let stdout_records: Vec<Value> = pod_view
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line on stdout"))
        .collect();
    assert_eq!(stdout_records, pod_view.records);
    let container_view = by_container.stop();
    assert!(
        container_view
            .stdout
            .contains("sender pod: pod tools/debug-6c9b-z1z1, container shell"),
        "{}",
        container_view.stdout
    );
    drop(victim_pod);
    drop(attacker_pod);
}

/// Losses are never silent: with a one-page ring buffer and tracer stopped
/// while processes start, the records that did not fit are counted and
/// reported.
#[test]
fn ring_buffer_losses_are_counted_and_reported() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let tracer = Tracer::start(&work, &host, &["--ring-buffer-size", "4KiB"]);
    let tracer_pid = tracer.pid();
    kill(tracer_pid, Signal::SIGSTOP);
    let forks = 300;
    for _ in 0..forks {
        Command::new("true").status().expect("running true");
    }
    kill(tracer_pid, Signal::SIGCONT);
    let mut tracer = tracer;
    let lost = tracer.wait_for("a lost record", |r| r["kind"] == "lost");
    assert!(lost["lost"].as_u64().unwrap() > 0, "{lost}");
    assert!(lost["by_kind"]["fork"].as_u64().unwrap() > 0, "{lost}");
    let done = tracer.stop();
    let stop = done.records.last().unwrap();
    assert_eq!(stop["kind"], "stop");
    let lost_total = stop["lost"].as_u64().unwrap();
    // Each `true` is one fork, one exec and one exit: what did not arrive was counted.
    assert!(
        lost_total > 0 && stop["records"].as_u64().unwrap() + lost_total >= 3 * forks,
        "{stop}"
    );
    assert!(
        done.stderr
            .contains("kernel records lost (ring buffer full)"),
        "{}",
        done.stderr
    );
}
