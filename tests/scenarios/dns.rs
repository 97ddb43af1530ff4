//! Family 4: DNS lookups that take 5 seconds. Each scenario builds a small
//! cluster out of network namespaces (`netlab`): a pod, a node with the
//! Service's DNAT, two DNS pods. The kernel does the real thing: conntrack
//! races, a rule dropping AAAA queries, a full conntrack table. They need
//! iptables, conntrack, glibc's resolver and the kernel's netfilter: on the
//! host as installed, in `cargo xtask vm-test`'s guests from the initramfs,
//! which carries those programs and loads the netfilter modules at boot.

use std::{
    path::Path,
    sync::{Barrier, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    harness::{
        hook_attached, require_root, spawn_in_cgroup, start_hook, v1_or_v2_hierarchy, Driver, Pod,
        Tracer, Workdir,
    },
    netlab::{
        init_netns_conntrack_count, set_conntrack_max_guard, stats_delta, DropMode, Lab, Ns,
        DNS_PORT, QTYPE_AAAA,
    },
};

/// The scenarios that fill conntrack tables (hundreds of racing flows, a
/// lowered machine-wide `nf_conntrack_max`) must not run at the same time.
static CONNTRACK_HEAVY: Mutex<()> = Mutex::new(());

const COUNTERS: [&str; 4] = ["insert_failed", "clash_resolve", "drop", "early_drop"];

/// tracer's last `conntrack_counters` record for a namespace (written at stop).
fn counters_for(records: &[Value], inode: u64) -> &Value {
    records
        .iter()
        .rev()
        .find(|r| r["kind"] == "conntrack_counters" && r["netns"]["inode"] == inode)
        .unwrap_or_else(|| {
            panic!(
                "no conntrack_counters record for netns {inode}:\n{}",
                records
                    .iter()
                    .filter(|r| r["kind"] == "conntrack_counters")
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// A DNS query as a stub resolver builds it.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    q
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The glibc pattern at its most racy: A and AAAA sent at the same instant
/// from one socket, by two threads on two CPUs, to the Service address.
/// Returns how many answers came back.
fn race_parallel_queries(lab: &Lab, rounds: u16) -> u32 {
    let service = std::net::SocketAddr::from((lab.service_ip(), DNS_PORT));
    lab.run_in(Ns::Client, move || {
        let mut answered = 0;
        for round in 0..rounds {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            socket.connect(service).expect("connect");
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                for (cpu, qtype) in [(0usize, 1u16), (1, QTYPE_AAAA)] {
                    let (socket, barrier) = (&socket, &barrier);
                    s.spawn(move || {
                        pin_to_cpu(cpu);
                        let q = query(
                            round.wrapping_mul(2).wrapping_add(cpu as u16),
                            "race.test",
                            qtype,
                        );
                        barrier.wait();
                        socket.send(&q).expect("send");
                    });
                }
            });
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                if socket.recv(&mut buf).is_ok() {
                    answered += 1;
                }
            }
        }
        answered
    })
}

/// A and AAAA in parallel from one socket through the Service's DNAT: the
/// conntrack counters tracer reports for the node's namespace equal what
/// `conntrack -S` shows changed there.
#[test]
fn parallel_a_and_aaaa_from_one_socket_counters_equal_conntrack_s() {
    require_root();
    let _heavy = CONNTRACK_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let work = Workdir::new();
    let host = work.host_root();
    let lab = Lab::new();
    let tracer = Tracer::start(&work, &host, &[]);
    let before = lab.conntrack_stats(Ns::Node);

    // The real resolver first, then the race itself.
    for _ in 0..10 {
        assert!(lab.resolve("example.com").success, "lookup through the lab");
    }
    let answered = race_parallel_queries(&lab, 300);
    let after = lab.conntrack_stats(Ns::Node);
    let finished = tracer.stop();
    assert!(finished.status.success(), "{}", finished.stderr);

    let delta = stats_delta(&before, &after);
    assert!(answered > 0, "the responders answered nothing");
    assert!(
        delta["clash_resolve"] > 0,
        "two CPUs sending at once from one socket must make conntrack clash: {delta:?}"
    );
    let reported = counters_for(&finished.records, lab.netns_inode(Ns::Node));
    for counter in COUNTERS {
        assert_eq!(
            reported[counter].as_u64(),
            Some(delta[counter]),
            "{counter}: tracer {reported} vs conntrack -S delta {delta:?}"
        );
    }
    assert_eq!(reported["netns"]["host"], false);
    // Where the kernel allows the exact hook, every clash was seen as it
    // happened; elsewhere the field is left out rather than made up.
    if hook_attached(&finished.records, "conntrack_clash") {
        assert_eq!(
            reported["clash_resolve_seen"].as_u64(),
            Some(delta["clash_resolve"]),
            "{reported}"
        );
    } else {
        assert!(reported["clash_resolve_seen"].is_null(), "{reported}");
    }
}

/// What the drop of one AAAA query looks like for a pod `web` whose
/// resolver talks to `nameserver`.
fn dropped_aaaa_query_is_reported_and_the_retry_linked(v6: bool, tracer_args: &[&str]) {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let lab = Lab::new();
    let service = if v6 {
        std::net::IpAddr::V6(lab.service_ip6())
    } else {
        std::net::IpAddr::V4(lab.service_ip())
    };
    lab.write_resolv_conf(&[service], &[]);
    // A pod talks to its gateway all the time: its address is known. (The
    // first packet to an unresolved next hop leaves from the kernel's
    // context, where tracer does not name a sender.)
    assert!(lab.resolve("warm.up").success, "lookup through the lab");
    // Every other AAAA query: the first try is dropped, its retry passes.
    lab.drop_queries(QTYPE_AAAA, DropMode::Nth(2));
    let mut pod = Pod::create(
        &v1_or_v2_hierarchy(),
        &host,
        Driver::Systemd,
        "default",
        "web-7f9c-x2k4",
    );
    let (_, cgroup) = pod.add_container("app");
    let mut tracer = Tracer::start(&work, &host, tracer_args);
    // The send side as a BTF tracepoint wherever the kernel allows it (all
    // of the suite's kernels), its fallback when skipped.
    let sent = if tracer_args.is_empty() {
        "tp_btf net_dev_queue"
    } else {
        "raw tracepoint net_dev_queue"
    };
    for (name, way) in [
        ("dns_sent", sent),
        ("dns_received", "raw tracepoint netif_receive_skb"),
    ] {
        let hook = start_hook(&tracer.records(), name);
        assert_eq!(
            hook.as_ref().map(|h| h["attached"].clone()),
            Some(way.into()),
            "{hook:?}"
        );
    }
    // Following the pod, and following another one: the lookup and its
    // drop belong to the first only.
    let following = Tracer::start(&work, &host, &["--pod", "default/web-7f9c-x2k4"]);
    let elsewhere = Tracer::start(&work, &host, &["--pod", "default/other-5b6c-z9q1"]);

    let started = Instant::now();
    let mut getent = spawn_in_cgroup(
        &cgroup,
        Path::new("ip"),
        &[
            "netns",
            "exec",
            lab.name(Ns::Client),
            "getent",
            "ahosts",
            "example.com",
        ],
    );
    let status = getent.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "getent through the lab failed");
    assert!(
        took >= Duration::from_secs(4),
        "the lookup must wait for the resolver's 5 s timeout, took {took:?}"
    );

    let in_pod = |p: &Value| p["pod"]["name"] == "web-7f9c-x2k4" && p["comm"] == "getent";
    // Every tracer sees the whole node: other scenarios' labs too.
    let node = lab.netns_inode(Ns::Node);
    let client = lab.netns_inode(Ns::Client);
    let dropped = tracer.wait_for("the dropped AAAA query", |r| {
        r["kind"] == "packet_drop" && r["dns"]["type"] == "AAAA" && r["netns"]["inode"] == node
    });
    assert_eq!(dropped["reason"], "NETFILTER_DROP");
    assert_eq!(dropped["cause"], "filter_rule", "{dropped}");
    assert_eq!(dropped["protocol"], "udp");
    assert_eq!(dropped["dns"]["name"], "example.com.");
    assert!(in_pod(&dropped["dns"]["process"]), "{dropped}");
    // The conntrack entry shows the query as sent, and where DNAT sent it.
    let ct = &dropped["conntrack"];
    assert_eq!(ct["dnat"], true, "{dropped}");
    let service_port = std::net::SocketAddr::new(service, DNS_PORT).to_string();
    assert_eq!(ct["original_dst"], service_port.as_str(), "{dropped}");
    let backends: Vec<String> = [Ns::Dns1, Ns::Dns2]
        .iter()
        .map(|ns| {
            let ip = if v6 {
                std::net::IpAddr::V6(lab.dns_ip6(*ns))
            } else {
                std::net::IpAddr::V4(lab.dns_ip(*ns))
            };
            std::net::SocketAddr::new(ip, DNS_PORT).to_string()
        })
        .collect();
    assert!(
        backends.iter().any(|b| ct["reply_src"] == b.as_str()),
        "DNAT to one of {backends:?}: {dropped}"
    );

    let lookup = tracer.wait_for("the slow AAAA lookup", |r| {
        r["kind"] == "dns"
            && r["type"] == "AAAA"
            && r["netns"] == client
            && r["drops"].as_array().is_some_and(|d| !d.is_empty())
    });
    assert_eq!(lookup["drops"][0], dropped["id"], "{lookup}");
    assert_eq!(lookup["verdict"], "slow");
    assert_eq!(lookup["id"], dropped["dns"]["id"]);
    assert!(lookup["retries"].as_u64().unwrap() >= 1, "{lookup}");
    let latency = lookup["latency_ms"].as_f64().unwrap();
    assert!(
        (4500.0..7000.0).contains(&latency),
        "answered after the resolver's 5 s timeout: {lookup}"
    );
    assert!(in_pod(&lookup["process"]), "{lookup}");
    assert_eq!(lookup["server"], service_port.as_str());
    let finished = tracer.stop();
    assert!(
        finished.stdout.contains("answered after") && finished.stdout.contains("(1 retry)"),
        "console line for the lookup:\n{}",
        finished.stdout
    );
    // The closing summary counts the lookups tracer followed (other
    // scenarios' too: every tracer sees the whole node).
    let summary = finished
        .records
        .iter()
        .find(|r| r["kind"] == "dns_summary")
        .expect("a dns_summary at stop");
    assert!(summary["queries"].as_u64().unwrap() >= 2, "{summary}");
    assert!(summary["drops_linked"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["retries"].as_u64().unwrap() >= 1, "{summary}");
    let ours = |r: &Value| {
        (r["kind"] == "dns" && r["netns"] == client)
            || (r["kind"] == "packet_drop" && r["netns"]["inode"] == node)
    };
    let followed = following.stop().records;
    assert!(
        followed
            .iter()
            .any(|r| r["kind"] == "dns" && r["id"] == lookup["id"]),
        "--pod follows the pod's lookups"
    );
    assert!(
        // Each tracer numbers its own drops: the query's id tells this one.
        followed
            .iter()
            .any(|r| r["kind"] == "packet_drop" && r["dns"]["id"] == dropped["dns"]["id"]),
        "--pod follows the drops of the pod's queries"
    );
    let other: Vec<Value> = elsewhere.stop().records.into_iter().filter(ours).collect();
    assert!(
        other.is_empty(),
        "another pod's tracer shows nothing of this one: {other:?}"
    );
}

#[test]
fn dropped_aaaa_query_is_reported_with_its_pod_and_the_retry_linked() {
    dropped_aaaa_query_is_reported_and_the_retry_linked(false, &[]);
}

/// The same through the DNS hooks' raw-tracepoint fallbacks, the way kernels
/// that refuse tp_btf are followed.
#[test]
fn dropped_aaaa_query_is_reported_through_the_raw_tracepoint_fallbacks_too() {
    dropped_aaaa_query_is_reported_and_the_retry_linked(
        false,
        &["--skip-hook", "tp_btf net_dev_queue"],
    );
}

#[test]
fn ipv6_dropped_aaaa_query_is_reported_with_its_pod_and_the_retry_linked() {
    dropped_aaaa_query_is_reported_and_the_retry_linked(true, &[]);
}

/// A conntrack table at its limit: new flows are dropped before they get an
/// entry, and tracer says "table full" for each, in the node's namespace.
#[test]
fn full_conntrack_table_drops_are_reported_as_table_full() {
    require_root();
    let _heavy = CONNTRACK_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let work = Workdir::new();
    let host = work.host_root();
    let lab = Lab::new();
    lab.write_resolv_conf(
        &[std::net::IpAddr::V4(lab.service_ip())],
        &["timeout:1", "attempts:1"],
    );
    let tracer = Tracer::start(&work, &host, &[]);
    let before = lab.conntrack_stats(Ns::Node);
    let resolution = {
        // The limit is machine-wide; each namespace counts its own entries
        // against it. Just above the node's own count, and the lab's node
        // filled up to it: only the lab hits it.
        // The gateway's address known first, as in a running pod.
        assert!(lab.resolve("warm.up").success, "lookup through the lab");
        let _max = set_conntrack_max_guard(init_netns_conntrack_count() + 64);
        let filled = lab.conntrack_fill(Ns::Node, 100);
        assert!(
            filled > 0,
            "conntrack -R put no entries in the node's table"
        );
        lab.resolve("example.com")
    };
    let after = lab.conntrack_stats(Ns::Node);
    let finished = tracer.stop();
    assert!(
        !resolution.success,
        "the lookup must fail with the table full"
    );

    let delta = stats_delta(&before, &after);
    assert!(delta["drop"] > 0, "{delta:?}");
    let node = lab.netns_inode(Ns::Node);
    let full: Vec<&Value> = finished
        .records
        .iter()
        .filter(|r| r["kind"] == "packet_drop" && r["netns"]["inode"] == node)
        .collect();
    assert!(
        !full.is_empty() && full.iter().all(|r| r["cause"] == "conntrack_table_full"),
        "table-full drops in the node's namespace: {full:?}"
    );
    assert!(
        full.iter().all(|r| r["conntrack"].is_null()),
        "no entry was made: {full:?}"
    );
    assert!(full.iter().any(|r| r["dns"]["process"]["comm"] == "getent"));
    let reported = counters_for(&finished.records, node);
    assert_eq!(reported["drop"].as_u64(), Some(delta["drop"]), "{reported}");
    assert_eq!(
        reported["table_full_drops"].as_u64(),
        Some(full.len() as u64),
        "{reported}"
    );
}

/// Resolvers send from a connected socket (glibc, Go, c-ares) or name the
/// server in each `sendto` on an unconnected one (musl, dnsmasq). The send
/// side decides on a connected socket by the port it is connected to, and
/// reads the packet of an unconnected one: both queries must be followed
/// to their answers. Each loses its first try to the lab's rule and is
/// answered on the retry, so tracer reports both with the retry linked.
#[test]
fn queries_from_connected_and_unconnected_sockets_are_both_followed() {
    require_root();
    let work = Workdir::new();
    let lab = Lab::new();
    lab.drop_queries(QTYPE_AAAA, DropMode::Nth(2));
    let mut tracer = Tracer::start(&work, &work.host_root(), &[]);
    let service = std::net::SocketAddr::from((lab.service_ip(), DNS_PORT));
    let ids: [(u16, &str); 2] = [(0x5eed, "connected"), (0x5eee, "unconnected")];
    for (id, how) in ids {
        let answered = lab.run_in(Ns::Client, move || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            let send = |q: &[u8]| {
                if how == "connected" {
                    socket.send(q)
                } else {
                    socket.send_to(q, service)
                }
            };
            if how == "connected" {
                socket.connect(service).expect("connect");
            }
            socket
                .set_read_timeout(Some(Duration::from_millis(1200)))
                .unwrap();
            let q = query(id, &format!("{how}.sockets.test"), QTYPE_AAAA);
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                send(&q).expect("send");
                if socket.recv(&mut buf).is_ok() {
                    return true;
                }
            }
            false
        });
        assert!(answered, "the {how} socket's retry must be answered");
    }
    let client = lab.netns_inode(Ns::Client);
    for (id, how) in ids {
        let lookup = tracer.wait_for(&format!("the {how} socket's lookup"), |r| {
            r["kind"] == "dns" && r["netns"] == client && r["id"] == id
        });
        assert_eq!(lookup["name"], format!("{how}.sockets.test."), "{lookup}");
        assert_eq!(lookup["retries"], 1, "{lookup}");
        assert_eq!(
            lookup["verdict"], "slow",
            "answered after the 1.2 s retry: {lookup}"
        );
    }
}

/// On every kernel of the matrix (this test also runs in the guests): the
/// packet programs pass the verifier and attach, so drops and DNS are
/// watched wherever tracer runs.
#[test]
fn packet_and_dns_hooks_attach() {
    require_root();
    let work = Workdir::new();
    let tracer = Tracer::start(&work, &work.host_root(), &[]);
    let records = tracer.records();
    for name in ["packet_drop", "dns_sent", "dns_received"] {
        let hook = start_hook(&records, name).unwrap_or_else(|| panic!("no hook {name}"));
        assert!(
            hook["attached"].is_string(),
            "{name} did not attach: {hook}"
        );
    }
    // The guests allow kprobes and have conntrack loaded: there the exact
    // clash hook must be the one in use (this host refuses kprobes).
    if std::env::var("TRACER_DISPOSABLE_GUEST").as_deref() == Ok("1") {
        assert!(
            hook_attached(&records, "conntrack_clash"),
            "the exact conntrack clash hook must attach in the guests: {:?}",
            start_hook(&records, "conntrack_clash")
        );
    }
}

/// `--no-dns` keeps the per-packet DNS programs off the kernel's hooks
/// altogether (their cost is per packet); drops stay watched.
#[test]
fn no_dns_leaves_the_dns_hooks_off_and_drops_on() {
    require_root();
    let work = Workdir::new();
    let tracer = Tracer::start(&work, &work.host_root(), &["--no-dns"]);
    let records = tracer.records();
    let start = records.iter().find(|r| r["kind"] == "start").unwrap();
    let hooks: Vec<&str> = start["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert!(!hooks.iter().any(|h| h.starts_with("dns_")), "{start}");
    assert!(hook_attached(&records, "packet_drop"), "{start}");
    let finished = tracer.stop();
    assert!(finished.stderr.contains("--no-dns"), "{}", finished.stderr);
}

/// A pod's server whose accept queue is full refuses connections before
/// any packet is dropped with a reason that says so: the namespace's listen
/// counters are the evidence, and tracer reports them per pod namespace as
/// `nstat` in it would.
#[test]
fn listen_queue_overflows_are_counted_per_namespace() {
    require_root();
    let work = Workdir::new();
    let lab = Lab::new();
    let tracer = Tracer::start(&work, &work.host_root(), &[]);
    let listen_counters = || {
        lab.run_in(Ns::Client, || {
            let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap();
            let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
            let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
            let field = |wanted: &str| {
                names
                    .split_whitespace()
                    .zip(values.split_whitespace())
                    .find(|(n, _)| *n == wanted)
                    .map(|(_, v)| v.parse::<u64>().unwrap())
                    .unwrap()
            };
            (field("ListenOverflows"), field("ListenDrops"))
        })
    };
    let before = listen_counters();
    lab.run_in(Ns::Client, || {
        // Backlog 1 and nobody accepting: the third connection on overflows.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // SAFETY: listen(2) on the listener's own descriptor.
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 1) };
        let clients: Vec<_> = (0..6)
            .map(|_| std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)))
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        drop(clients);
    });
    let after = listen_counters();
    let finished = tracer.stop();
    assert!(
        after.0 > before.0,
        "the accept queue must overflow: {before:?} {after:?}"
    );
    let client = lab.netns_inode(Ns::Client);
    let reported = counters_for(&finished.records, client);
    let all: Vec<&Value> = finished
        .records
        .iter()
        .filter(|r| r["kind"] == "conntrack_counters" && r["netns"]["inode"] == client)
        .collect();
    assert_eq!(
        reported["listen_overflows"].as_u64(),
        Some(after.0 - before.0),
        "{before:?} {after:?} {all:?}\n{}",
        finished.stderr
    );
    assert_eq!(
        reported["listen_drops"].as_u64(),
        Some(after.1 - before.1),
        "{reported}"
    );
}
