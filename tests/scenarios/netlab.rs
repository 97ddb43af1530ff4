//! A Kubernetes-like network lab for the DNS/conntrack scenarios, entirely
//! inside network namespaces so nothing leaves the machine.
//!
//! Topology of one lab (every lab gets its own namespaces, so identical
//! address ranges in parallel labs never meet):
//!
//! ```text
//!   client (pod)                node                       dns1 / dns2
//!   eth0 10.244.1.7  <-> to-client 10.244.1.1
//!                              to-dns1 10.244.2.1  <->  eth0 10.244.2.3
//!                              to-dns2 10.244.3.1  <->  eth0 10.244.3.3
//!   service 10.96.0.10:53 / [fd00:96::a]:53 is DNATed in node's
//!   nat PREROUTING to dns1 or dns2 at random, as a service proxy in
//!   iptables mode does.
//! ```
//!
//! The DNS responders run as threads of the test process that joined the
//! dns namespaces, so tests read their counters and query logs directly.
//!
//! Everything is undone on Drop, including when a test panics; a lab whose
//! construction fails half-way cleans up what it had made.

// The lab offers more than any single scenario uses.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
        mpsc, Arc, Mutex, MutexGuard,
    },
    thread,
    time::{Duration, Instant},
};

use crate::harness::random_hex;

/// DNS record types the responder answers.
pub const QTYPE_A: u16 = 1;
pub const QTYPE_AAAA: u16 = 28;

/// The cluster DNS service, as pods see it in resolv.conf.
pub const SERVICE_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const SERVICE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0xa);
pub const DNS_PORT: u16 = 53;

/// The four namespaces of a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ns {
    Node,
    Client,
    Dns1,
    Dns2,
}

impl Ns {
    pub const ALL: [Ns; 4] = [Ns::Node, Ns::Client, Ns::Dns1, Ns::Dns2];

    fn index(self) -> usize {
        self as usize
    }

    fn suffix(self) -> &'static str {
        match self {
            Ns::Node => "node",
            Ns::Client => "client",
            Ns::Dns1 => "dns1",
            Ns::Dns2 => "dns2",
        }
    }

    /// The pod's or DNS server's own addresses; for the node, its gateway
    /// address on the client's link.
    pub fn ipv4(self) -> Ipv4Addr {
        match self {
            Ns::Node => Ipv4Addr::new(10, 244, 1, 1),
            Ns::Client => Ipv4Addr::new(10, 244, 1, 7),
            Ns::Dns1 => Ipv4Addr::new(10, 244, 2, 3),
            Ns::Dns2 => Ipv4Addr::new(10, 244, 3, 3),
        }
    }

    pub fn ipv6(self) -> Ipv6Addr {
        match self {
            Ns::Node => Ipv6Addr::new(0xfd00, 0x244, 1, 0, 0, 0, 0, 1),
            Ns::Client => Ipv6Addr::new(0xfd00, 0x244, 1, 0, 0, 0, 0, 7),
            Ns::Dns1 => Ipv6Addr::new(0xfd00, 0x244, 2, 0, 0, 0, 0, 3),
            Ns::Dns2 => Ipv6Addr::new(0xfd00, 0x244, 3, 0, 0, 0, 0, 3),
        }
    }

    /// The number a DNS namespace puts in its answers (192.0.2.<n>,
    /// 2001:db8::<n>), so a test can tell which backend the DNAT chose.
    pub fn responder_number(self) -> Option<u8> {
        match self {
            Ns::Dns1 => Some(1),
            Ns::Dns2 => Some(2),
            _ => None,
        }
    }
}

/// One query as the responder saw it (after DNAT, so `src` is the pod's
/// address and source port).
#[derive(Clone, Debug)]
pub struct Query {
    pub at: Instant,
    pub src: SocketAddr,
    pub id: u16,
    pub qtype: u16,
    pub name: String,
    pub tcp: bool,
}

/// Counters and log shared between a responder thread and the test.
#[derive(Debug, Default)]
pub struct DnsStats {
    pub a: AtomicU64,
    pub aaaa: AtomicU64,
    pub other: AtomicU64,
    pub nxdomain: AtomicU64,
    /// Queries of this type are read and counted but never answered
    /// (0: answer everything). A server-side way to make a pod time out,
    /// without touching the node's rules.
    pub ignore_qtype: AtomicU16,
    log: Mutex<Vec<Query>>,
}

impl DnsStats {
    pub fn count(&self, qtype: u16) -> u64 {
        match qtype {
            QTYPE_A => self.a.load(Ordering::Relaxed),
            QTYPE_AAAA => self.aaaa.load(Ordering::Relaxed),
            _ => self.other.load(Ordering::Relaxed),
        }
    }

    pub fn queries(&self) -> Vec<Query> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, q: Query) {
        match q.qtype {
            QTYPE_A => &self.a,
            QTYPE_AAAA => &self.aaaa,
            _ => &self.other,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(q);
    }
}

/// Which of the matching queries `Lab::drop_queries` drops.
#[derive(Clone, Copy, Debug)]
pub enum DropMode {
    All,
    /// Each query independently with this probability.
    Random(f64),
    /// Every n-th matching packet. With sequential lookups this is not
    /// "some lookups": a dropped query's retry is the next packet and
    /// passes, so the counter stays in step and every lookup loses its
    /// first try. Use `Random` for that.
    Nth(u32),
}

/// What `Lab::resolve` observed.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub output: String,
    pub elapsed: Duration,
    pub success: bool,
}

/// `ip netns add` makes /run/netns a shared mount the first time; two of
/// them racing on that step can fail, so labs of one test process create
/// their namespaces one at a time.
static NETNS_CREATE: Mutex<()> = Mutex::new(());

/// nf_conntrack_max is one value for the whole machine: only one guard may
/// hold it at a time.
static CONNTRACK_MAX: Mutex<()> = Mutex::new(());

pub struct Lab {
    names: [String; 4],
    /// Which namespaces were created, so a half-built lab deletes only its own.
    created: [bool; 4],
    resolv_dir: PathBuf,
    shutdown: Arc<AtomicBool>,
    responders: Vec<thread::JoinHandle<()>>,
    stats: [Arc<DnsStats>; 2],
}

impl Lab {
    /// Builds a lab with `nameserver 10.96.0.10` in the pod's resolv.conf.
    pub fn new() -> Lab {
        let tag = random_hex(3);
        let names = Ns::ALL.map(|ns| format!("tr-{tag}-{}", ns.suffix()));
        let resolv_dir = PathBuf::from("/etc/netns").join(&names[Ns::Client.index()]);
        let mut lab = Lab {
            names,
            created: [false; 4],
            resolv_dir,
            shutdown: Arc::new(AtomicBool::new(false)),
            responders: Vec::new(),
            stats: [Arc::default(), Arc::default()],
        };
        lab.build();
        lab
    }

    fn build(&mut self) {
        {
            let _serial = NETNS_CREATE.lock().unwrap_or_else(|e| e.into_inner());
            for ns in Ns::ALL {
                run_checked(Command::new("ip").args(["netns", "add", self.name(ns)]));
                self.created[ns.index()] = true;
            }
        }
        // DAD would leave v6 addresses tentative (unusable) for about a
        // second; the defaults must be off before the links exist so
        // link-local addresses skip it too.
        for ns in Ns::ALL {
            self.write_sysctl(ns, "net/ipv6/conf/all/accept_dad", "0");
            self.write_sysctl(ns, "net/ipv6/conf/default/accept_dad", "0");
        }
        self.write_sysctl(Ns::Node, "net/ipv4/ip_forward", "1");
        self.write_sysctl(Ns::Node, "net/ipv6/conf/all/forwarding", "1");

        let mut node = String::from("link set lo up\n");
        for (ns, link) in [
            (Ns::Client, "to-client"),
            (Ns::Dns1, "to-dns1"),
            (Ns::Dns2, "to-dns2"),
        ] {
            let peer = self.name(ns);
            let (v4, v6) = gateway_of(ns);
            node += &format!(
                "link add {link} type veth peer name eth0 netns {peer}\n\
                 addr add {v4}/24 dev {link}\n\
                 addr add {v6}/64 dev {link} nodad\n\
                 link set {link} up\n"
            );
        }
        self.ip_batch(Ns::Node, &node);
        for ns in [Ns::Client, Ns::Dns1, Ns::Dns2] {
            let (gw4, gw6) = gateway_of(ns);
            let batch = format!(
                "link set lo up\n\
                 addr add {}/24 dev eth0\n\
                 addr add {}/64 dev eth0 nodad\n\
                 link set eth0 up\n\
                 route add default via {gw4} dev eth0\n\
                 route add ::/0 via {gw6} dev eth0\n",
                ns.ipv4(),
                ns.ipv6()
            );
            self.ip_batch(ns, &batch);
        }
        self.install_service();

        for (i, ns) in [Ns::Dns1, Ns::Dns2].into_iter().enumerate() {
            let handle = spawn_responder(
                self.ns_path(ns),
                ns.responder_number().expect("dns namespace"),
                Arc::clone(&self.stats[i]),
                Arc::clone(&self.shutdown),
            );
            self.responders.push(handle);
        }

        fs::create_dir_all(&self.resolv_dir).expect("create /etc/netns/<client>");
        self.write_resolv_conf(&[IpAddr::V4(SERVICE_V4)], &[]);
    }

    /// The service's DNAT, for UDP and TCP, v4 and v6: a random 50/50
    /// choice between the two endpoints, the way a service proxy in iptables
    /// mode balances a two-endpoint service.
    fn install_service(&self) {
        for (tool, service, ep1, ep2) in [
            (
                "iptables-restore",
                format!("{SERVICE_V4}/32"),
                format!("{}:53", Ns::Dns1.ipv4()),
                format!("{}:53", Ns::Dns2.ipv4()),
            ),
            (
                "ip6tables-restore",
                format!("{SERVICE_V6}/128"),
                format!("[{}]:53", Ns::Dns1.ipv6()),
                format!("[{}]:53", Ns::Dns2.ipv6()),
            ),
        ] {
            let rules = format!(
                "*nat\n\
                 :LAB-SERVICES - [0:0]\n\
                 :LAB-SVC-DNS - [0:0]\n\
                 :LAB-SEP-DNS1 - [0:0]\n\
                 :LAB-SEP-DNS2 - [0:0]\n\
                 -A PREROUTING -j LAB-SERVICES\n\
                 -A LAB-SERVICES -d {service} -p udp -m udp --dport 53 -j LAB-SVC-DNS\n\
                 -A LAB-SERVICES -d {service} -p tcp -m tcp --dport 53 -j LAB-SVC-DNS\n\
                 -A LAB-SVC-DNS -m statistic --mode random --probability 0.5 -j LAB-SEP-DNS1\n\
                 -A LAB-SVC-DNS -j LAB-SEP-DNS2\n\
                 -A LAB-SEP-DNS1 -p udp -m udp -j DNAT --to-destination {ep1}\n\
                 -A LAB-SEP-DNS1 -p tcp -m tcp -j DNAT --to-destination {ep1}\n\
                 -A LAB-SEP-DNS2 -p udp -m udp -j DNAT --to-destination {ep2}\n\
                 -A LAB-SEP-DNS2 -p tcp -m tcp -j DNAT --to-destination {ep2}\n\
                 COMMIT\n"
            );
            self.exec_stdin(Ns::Node, &[tool, "-w", "--noflush"], &rules);
        }
    }

    pub fn name(&self, ns: Ns) -> &str {
        &self.names[ns.index()]
    }

    pub fn ns_path(&self, ns: Ns) -> PathBuf {
        PathBuf::from("/run/netns").join(self.name(ns))
    }

    /// The namespace's inode, as the kernel reports it (e.g. `net_ns->ns.inum`
    /// seen by BPF programs).
    pub fn netns_inode(&self, ns: Ns) -> u64 {
        fs::metadata(self.ns_path(ns))
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.ns_path(ns).display()))
            .ino()
    }

    pub fn client_ip(&self) -> Ipv4Addr {
        Ns::Client.ipv4()
    }
    pub fn client_ip6(&self) -> Ipv6Addr {
        Ns::Client.ipv6()
    }
    pub fn service_ip(&self) -> Ipv4Addr {
        SERVICE_V4
    }
    pub fn service_ip6(&self) -> Ipv6Addr {
        SERVICE_V6
    }
    pub fn dns_ip(&self, ns: Ns) -> Ipv4Addr {
        ns.ipv4()
    }
    pub fn dns_ip6(&self, ns: Ns) -> Ipv6Addr {
        ns.ipv6()
    }

    /// The responder's counters and log for `Ns::Dns1` or `Ns::Dns2`.
    pub fn dns(&self, ns: Ns) -> &Arc<DnsStats> {
        match ns {
            Ns::Dns1 => &self.stats[0],
            Ns::Dns2 => &self.stats[1],
            other => panic!("{other:?} runs no DNS responder"),
        }
    }

    /// Queries of `qtype` seen by both responders together.
    pub fn dns_count(&self, qtype: u16) -> u64 {
        self.stats.iter().map(|s| s.count(qtype)).sum()
    }

    /// Both responders' logs merged, oldest first.
    pub fn dns_queries(&self) -> Vec<Query> {
        let mut all: Vec<Query> = self.stats.iter().flat_map(|s| s.queries()).collect();
        all.sort_by_key(|q| q.at);
        all
    }

    /// Replaces the pod's resolv.conf. `ip netns exec` bind-mounts
    /// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf, so only commands
    /// started through `client_command` see it. `options` are written as
    /// one `options` line, e.g. `["timeout:1", "attempts:2", "single-request"]`.
    pub fn write_resolv_conf(&self, nameservers: &[IpAddr], options: &[&str]) {
        let mut text = String::new();
        for ns in nameservers {
            text += &format!("nameserver {ns}\n");
        }
        if !options.is_empty() {
            text += &format!("options {}\n", options.join(" "));
        }
        fs::write(self.resolv_dir.join("resolv.conf"), text).expect("write pod resolv.conf");
    }

    /// A command that runs in the pod's namespace with the pod's resolv.conf.
    pub fn client_command(&self, program: &str, args: &[&str]) -> Command {
        self.command(Ns::Client, program, args)
    }

    pub fn command(&self, ns: Ns, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name(ns), program])
            .args(args);
        cmd
    }

    /// `getent ahosts NAME` in the pod: glibc sends A and AAAA in parallel
    /// from one socket, as pods do.
    pub fn resolve(&self, name: &str) -> Resolution {
        let start = Instant::now();
        let out = self
            .client_command("getent", &["ahosts", name])
            .stdin(Stdio::null())
            .output()
            .expect("spawn getent");
        Resolution {
            output: String::from_utf8_lossy(&out.stdout).into_owned(),
            elapsed: start.elapsed(),
            success: out.status.success(),
        }
    }

    /// Runs a command in a namespace and returns its stdout; panics with the
    /// command and its stderr when it fails.
    pub fn exec(&self, ns: Ns, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("exec needs a program");
        run_checked(&mut self.command(ns, program, rest))
    }

    /// Like `exec`, but hands back the outcome instead of panicking.
    pub fn try_exec(&self, ns: Ns, args: &[&str]) -> Output {
        let (program, rest) = args.split_first().expect("exec needs a program");
        self.command(ns, program, rest)
            .stdin(Stdio::null())
            .output()
            .expect("spawn ip netns exec")
    }

    fn exec_stdin(&self, ns: Ns, args: &[&str], input: &str) -> String {
        let (program, rest) = args.split_first().expect("exec needs a program");
        let mut cmd = self.command(ns, program, rest);
        run_with_stdin(&mut cmd, input)
    }

    /// `ip -n <ns> -batch -`: one process for many link/addr/route steps,
    /// which keeps building a lab fast.
    fn ip_batch(&self, ns: Ns, batch: &str) {
        run_with_stdin(
            Command::new("ip").args(["-n", self.name(ns), "-batch", "-"]),
            batch,
        );
    }

    /// `iptables -w ARGS` in a namespace (the machine's default backend).
    pub fn iptables(&self, ns: Ns, args: &[&str]) -> String {
        let mut all = vec!["iptables", "-w"];
        all.extend_from_slice(args);
        self.exec(ns, &all)
    }

    pub fn ip6tables(&self, ns: Ns, args: &[&str]) -> String {
        let mut all = vec!["ip6tables", "-w"];
        all.extend_from_slice(args);
        self.exec(ns, &all)
    }

    /// Drops the pod's queries of one type on their way through the node
    /// (FORWARD, after the service DNAT), for v4 and v6. Matches the end of
    /// the question: root label, QTYPE, class IN (e.g. `|00001c0001|` for
    /// AAAA), searched only in the UDP payload so header bytes never match.
    /// Rules go away with the lab.
    pub fn drop_queries(&self, qtype: u16, how: DropMode) {
        let hex = format!("|00{qtype:04x}0001|");
        let extra: Vec<String> = match how {
            DropMode::All => vec![],
            DropMode::Random(p) => ["-m", "statistic", "--mode", "random", "--probability"]
                .iter()
                .map(|s| s.to_string())
                .chain([format!("{p}")])
                .collect(),
            DropMode::Nth(n) => [
                "-m",
                "statistic",
                "--mode",
                "nth",
                "--packet",
                "0",
                "--every",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([n.to_string()])
            .collect(),
        };
        // IPv4 header (no options) + UDP = 28 bytes; IPv6 + UDP = 48.
        for (v6, from) in [(false, "28"), (true, "48")] {
            let mut args = vec![
                "-I",
                "FORWARD",
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--from",
                from,
                "--hex-string",
                &hex,
            ];
            args.extend(extra.iter().map(String::as_str));
            args.extend(["-j", "DROP"]);
            if v6 {
                self.ip6tables(Ns::Node, &args);
            } else {
                self.iptables(Ns::Node, &args);
            }
        }
    }

    /// `conntrack -S` summed over CPUs, by field name (found, invalid,
    /// insert, insert_failed, drop, early_drop, error, search_restart,
    /// clash_resolve, chaintoolong: whatever this kernel and tool print).
    /// Conntrack statistics are per network namespace.
    pub fn conntrack_stats(&self, ns: Ns) -> BTreeMap<String, u64> {
        parse_conntrack_stats(&self.exec(ns, &["conntrack", "-S"]))
    }

    /// The namespace's own conntrack entry count (`nf_conntrack_count` is
    /// per namespace, unlike `nf_conntrack_max`).
    pub fn conntrack_count(&self, ns: Ns) -> u64 {
        self.read_sysctl(ns, "net/netfilter/nf_conntrack_count")
            .parse()
            .expect("nf_conntrack_count")
    }

    /// Inserts `n` confirmed, ASSURED UDP entries into the namespace's
    /// conntrack table (10.255.x.y:1000 -> 10.255.255.254:2000, one tuple
    /// each). ASSURED entries are never early-dropped, so with a low
    /// `conntrack_max_guard` they make the next new connection in this
    /// namespace fail with "table full" (conntrack -S `drop`) instead of
    /// evicting an older unreplied entry (`early_drop`).
    /// Returns how many the kernel accepted (it refuses beyond the max).
    pub fn conntrack_fill(&self, ns: Ns, n: u32) -> u32 {
        // One distinct source address per entry: 10.255.0.1 .. 10.255.255.250.
        assert!(n <= 256 * 250, "conntrack_fill: at most 64000 entries");
        let mut lines = String::new();
        for i in 0..n {
            lines += &format!(
                "-I -p udp -s 10.255.{}.{} -d 10.255.255.254 --sport 1000 --dport 2000 \
                 -t 600 -u SEEN_REPLY,ASSURED\n",
                i / 250,
                i % 250 + 1
            );
        }
        let file = tempfile::NamedTempFile::new().expect("temp file");
        fs::write(file.path(), lines).expect("write conntrack batch");
        let before = self.conntrack_count(ns);
        let path = file.path().to_str().expect("utf-8 temp path");
        // Inserts past the max fail; the count tells how many went in.
        let _ = self.try_exec(ns, &["conntrack", "-R", path]);
        self.conntrack_count(ns).saturating_sub(before) as u32
    }

    /// Runs `f` on a thread that joined the namespace (setns changes only the
    /// calling thread), e.g. to open sockets as the pod.
    pub fn run_in<T: Send>(&self, ns: Ns, f: impl FnOnce() -> T + Send) -> T {
        let path = self.ns_path(ns);
        thread::scope(|s| {
            s.spawn(move || {
                enter_netns(&path).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Reads /proc/sys/<key> as seen from the namespace (`key` with slashes,
    /// e.g. "net/netfilter/nf_conntrack_count").
    pub fn read_sysctl(&self, ns: Ns, key: &str) -> String {
        let path = format!("/proc/sys/{key}");
        self.run_in(ns, move || {
            fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {path}: {e}"))
                .trim()
                .to_string()
        })
    }

    pub fn write_sysctl(&self, ns: Ns, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        let name = self.name(ns).to_string();
        self.run_in(ns, move || {
            fs::write(&path, value).unwrap_or_else(|e| panic!("write {path} in {name}: {e}"))
        })
    }
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for handle in self.responders.drain(..) {
            // A responder that panicked has already said why.
            let _ = handle.join();
        }
        for ns in Ns::ALL {
            if self.created[ns.index()] {
                let status = Command::new("ip")
                    .args(["netns", "del", self.name(ns)])
                    .stderr(Stdio::null())
                    .status();
                if !matches!(status, Ok(s) if s.success()) {
                    eprintln!("netlab: could not delete netns {}", self.name(ns));
                }
            }
        }
        let _ = fs::remove_dir_all(&self.resolv_dir);
    }
}

/// Lowers the machine-wide `nf_conntrack_max` and restores it on Drop.
///
/// The max cannot be written from a non-init namespace (the file is 0444
/// there) and is one global value, while each namespace counts its own
/// entries against it. So a max just above every other namespace's count,
/// with the lab's node namespace filled up to it (`Lab::conntrack_fill`),
/// makes only the lab's traffic hit "table full". Other namespaces are hit
/// only if their own count exceeds `max` meanwhile: pick `max` above the
/// init namespace's count (`init_netns_conntrack_count`) with headroom.
pub struct ConntrackMaxGuard {
    original: String,
    _one_at_a_time: MutexGuard<'static, ()>,
}

const CONNTRACK_MAX_PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

pub fn set_conntrack_max_guard(max: u64) -> ConntrackMaxGuard {
    let lock = CONNTRACK_MAX.lock().unwrap_or_else(|e| e.into_inner());
    // Read and written through the init namespace's view: this must not run
    // on a thread that joined another namespace.
    let original = fs::read_to_string(CONNTRACK_MAX_PATH)
        .expect("read nf_conntrack_max")
        .trim()
        .to_string();
    fs::write(CONNTRACK_MAX_PATH, max.to_string()).expect("write nf_conntrack_max");
    ConntrackMaxGuard {
        original,
        _one_at_a_time: lock,
    }
}

impl Drop for ConntrackMaxGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::write(CONNTRACK_MAX_PATH, &self.original) {
            eprintln!(
                "netlab: could not restore nf_conntrack_max to {}: {e}",
                self.original
            );
        }
    }
}

/// The init namespace's conntrack entry count (0 if conntrack is unused there).
pub fn init_netns_conntrack_count() -> u64 {
    fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub fn parse_conntrack_stats(text: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for field in text.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        if key == "cpu" {
            continue;
        }
        if let Ok(v) = value.parse::<u64>() {
            *sums.entry(key.to_string()).or_insert(0) += v;
        }
    }
    sums
}

/// Field-wise `after - before` (saturating), for counters that only grow.
pub fn stats_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .collect()
}

fn gateway_of(ns: Ns) -> (Ipv4Addr, Ipv6Addr) {
    let v4 = ns.ipv4().octets();
    let v6 = ns.ipv6().segments();
    (
        Ipv4Addr::new(v4[0], v4[1], v4[2], 1),
        Ipv6Addr::new(v6[0], v6[1], v6[2], 0, 0, 0, 0, 1),
    )
}

fn run_checked(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    check(cmd, out)
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("write to {cmd:?}: {e}"));
    let out = child.wait_with_output().expect("wait");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}) on input:\n{input}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(cmd: &Command, out: Output) -> String {
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread (only it) into the network namespace at `path`.
fn enter_netns(path: &std::path::Path) -> io::Result<()> {
    let file = fs::File::open(path)?;
    // SAFETY: setns on a valid namespace fd; it affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a responder thread in the namespace and returns once its sockets
/// are bound, so the first query of a test never races the bind.
fn spawn_responder(
    path: PathBuf,
    number: u8,
    stats: Arc<DnsStats>,
    shutdown: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let handle = thread::Builder::new()
        .name(format!("dns{number}"))
        .spawn(move || {
            let sockets = enter_netns(&path).and_then(|()| {
                // In a fresh namespace net.ipv6.bindv6only is 0, so one [::]
                // socket also receives IPv4 (as v4-mapped addresses).
                let udp = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, DNS_PORT))?;
                udp.set_nonblocking(true)?;
                let tcp = TcpListener::bind((Ipv6Addr::UNSPECIFIED, DNS_PORT))?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            });
            let (udp, tcp) = match sockets {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            serve(&udp, &tcp, number, &stats, &shutdown);
        })
        .expect("spawn responder thread");
    match ready_rx.recv() {
        Ok(Ok(())) => handle,
        Ok(Err(e)) => panic!("DNS responder {number} could not start: {e}"),
        Err(_) => panic!("DNS responder {number} died while starting"),
    }
}

fn serve(udp: &UdpSocket, tcp: &TcpListener, number: u8, stats: &DnsStats, shutdown: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut fds = [
        libc::pollfd {
            fd: udp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: tcp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    while !shutdown.load(Ordering::Relaxed) {
        // The timeout bounds how long Drop waits for this thread.
        // SAFETY: fds is a valid array of two pollfd for the call's duration.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if ready <= 0 {
            continue;
        }
        // Drain every queued datagram: glibc sends A and AAAA back to back.
        loop {
            match udp.recv_from(&mut buf) {
                Ok((len, src)) => {
                    if let Some(reply) = handle_query(&buf[..len], src, false, number, stats) {
                        let _ = udp.send_to(&reply, src);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    eprintln!("netlab: DNS responder {number}: {e}");
                    break;
                }
            }
        }
        // TCP (`options use-vc`, truncation fallback) is rare: one
        // connection at a time is enough.
        while let Ok((conn, src)) = tcp.accept() {
            serve_tcp(conn, src, number, stats);
        }
    }
}

fn serve_tcp(mut conn: TcpStream, src: SocketAddr, number: u8, stats: &DnsStats) {
    if conn.set_nonblocking(false).is_err()
        || conn.set_read_timeout(Some(Duration::from_secs(1))).is_err()
    {
        return;
    }
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        if let Some(reply) = handle_query(&msg, src, true, number, stats) {
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if conn.write_all(&framed).is_err() {
                return;
            }
        }
    }
}

/// Parses header and first question, records the query and builds the
/// answer (None: malformed, or a query type the test asked to ignore).
fn handle_query(
    msg: &[u8],
    src: SocketAddr,
    tcp: bool,
    number: u8,
    stats: &DnsStats,
) -> Option<Vec<u8>> {
    let q = parse_question(msg)?;
    stats.record(Query {
        at: Instant::now(),
        // The dual-stack socket reports v4 peers as ::ffff:a.b.c.d.
        src: SocketAddr::new(src.ip().to_canonical(), src.port()),
        id: q.id,
        qtype: q.qtype,
        name: q.name.clone(),
        tcp,
    });
    let ignore = stats.ignore_qtype.load(Ordering::Relaxed);
    if ignore != 0 && ignore == q.qtype {
        return None;
    }
    let nx = q.name.ends_with(".nx.") || q.name == "nx.";
    if nx {
        stats.nxdomain.fetch_add(1, Ordering::Relaxed);
    }
    let rdata: Option<Vec<u8>> = match (nx, q.qtype) {
        (false, QTYPE_A) => Some(vec![192, 0, 2, number]),
        (false, QTYPE_AAAA) => Some(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, number as u16)
                .octets()
                .to_vec(),
        ),
        // Other types: NOERROR without records (NODATA).
        _ => None,
    };
    let flags = msg[2] & 0x79; // keep opcode and RD
    let mut out = Vec::with_capacity(q.question_end + 32);
    out.extend_from_slice(&q.id.to_be_bytes());
    out.push(0x80 | 0x04 | flags); // QR, AA
    out.push(0x80 | if nx { 3 } else { 0 }); // RA, RCODE
    out.extend_from_slice(&[0, 1]); // QDCOUNT
    out.extend_from_slice(&[0, rdata.is_some() as u8]); // ANCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(&msg[12..q.question_end]);
    if let Some(rdata) = rdata {
        out.extend_from_slice(&[0xc0, 0x0c]); // name: pointer to the question
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1]); // class IN
        out.extend_from_slice(&30u32.to_be_bytes()); // TTL
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

struct Question {
    id: u16,
    qtype: u16,
    name: String,
    /// Offset just past QTYPE and QCLASS of the first question.
    question_end: usize,
}

fn parse_question(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Queries carry no compression pointers.
        if len > 63 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        name.push('.');
        pos += len;
    }
    if name.is_empty() {
        name.push('.');
    }
    let fixed = msg.get(pos..pos + 4)?;
    Some(Question {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        name,
        question_end: pos + 4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conntrack_stats() {
        let text = "cpu=0   \tfound=1 invalid=2 insert=0 insert_failed=3 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=4 chaintoolong=0 \n\
                    cpu=1   \tfound=10 invalid=0 insert=0 insert_failed=0 drop=1 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n";
        let s = parse_conntrack_stats(text);
        assert_eq!(s["found"], 11);
        assert_eq!(s["insert_failed"], 3);
        assert_eq!(s["clash_resolve"], 4);
        assert_eq!(s["drop"], 1);
        assert!(!s.contains_key("cpu"));
    }

    #[test]
    fn answers_a_and_nxdomain() {
        let stats = DnsStats::default();
        let src: SocketAddr = "10.244.1.7:40000".parse().unwrap();
        // id 0x1234, RD, one question: example.com A IN
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        let r = handle_query(&q, src, false, 2, &stats).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 2]);
        assert_eq!(stats.count(QTYPE_A), 1);

        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03foo\x02nx\x00\x00\x1c\x00\x01");
        let r = handle_query(&q, src, false, 1, &stats).unwrap();
        assert_eq!(r[3] & 0x0f, 3);
        assert_eq!(stats.count(QTYPE_AAAA), 1);
        assert_eq!(stats.nxdomain.load(Ordering::Relaxed), 1);
    }
}
