//! The workloads `cargo xtask bench` measures: each runs in this process, so
//! that its CPU time holds what the hooks add to the kernel work it does.

use std::{
    hint::black_box,
    net::{SocketAddr, UdpSocket},
    thread,
    time::Duration,
};

/// A workload: a name for the report and the work, run in this process.
pub struct Workload {
    pub name: &'static str,
    /// What it stresses, for the report.
    pub stresses: &'static str,
    pub run: fn(),
    /// The raw tracepoints tracer hooks on this workload's hot path: where the
    /// limit arm attaches its empty program.
    pub hooks: &'static [&'static str],
    /// tracer's flags that take a family's hooks on this path off, one arm each.
    pub family_off: &'static [&'static str],
    /// tracer's flags that make a hook on this path fall back to its next
    /// way of attaching, one arm each, compared with tracer's own choice.
    pub fallbacks: &'static [&'static str],
    /// tracer's programs that may run on this path, by name: the kernel's
    /// statistics of them are shown with `--bpf-stats`.
    pub programs: &'static [&'static str],
    /// The same job done by bpftrace, as a user without tracer would write it.
    pub bpftrace: &'static str,
}

pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "page-alloc",
        stresses: "kmem:mm_page_alloc (every page the kernel hands out)",
        run: touch_fresh_memory,
        hooks: &["mm_page_alloc"],
        family_off: &[],
        // Where kprobes are allowed tracer takes the failure path itself
        // (kprobe warn_alloc): the fallback is the raw tracepoint.
        fallbacks: &["--skip-hook=kprobe warn_alloc"],
        programs: &["mm_page_alloc", "warn_alloc"],
        // Failed page allocations by order, flags and process.
        bpftrace: "tracepoint:kmem:mm_page_alloc /(int64)args->pfn == -1/ \
                   { @failures[comm, args->order, args->gfp_flags] = count(); }",
    },
    Workload {
        name: "udp-loopback",
        stresses: "net_dev_queue, netif_receive_skb, kfree_skb (every packet)",
        run: udp_over_loopback,
        hooks: &["net_dev_queue", "netif_receive_skb", "kfree_skb"],
        family_off: &["--no-dns"],
        fallbacks: &[],
        programs: UDP_PROGRAMS,
        bpftrace: UDP_BPFTRACE,
    },
    Workload {
        name: "udp-dns-busy",
        stresses: "the same datagrams, sent with sendto(2) from an unconnected socket, \
                   on a node that sent a DNS query (tracer's worst case: every datagram read)",
        run: udp_unconnected_after_a_dns_query,
        hooks: &["net_dev_queue", "netif_receive_skb", "kfree_skb"],
        family_off: &["--no-dns"],
        fallbacks: &[],
        programs: UDP_PROGRAMS,
        bpftrace: UDP_BPFTRACE,
    },
    Workload {
        name: "ping-pong",
        stresses: "sched_switch (two threads on one CPU passing a byte through pipes)",
        run: pipe_ping_pong,
        hooks: &["sched_switch"],
        family_off: &[],
        fallbacks: &[],
        programs: &[],
        // Time in uninterruptible sleep (IO wait) per process.
        bpftrace: "tracepoint:sched:sched_switch { \
                   if (args->prev_state == 2) { @asleep[args->prev_pid] = nsecs; } \
                   $since = @asleep[args->next_pid]; \
                   if ($since) { @iowait_ns[args->next_comm] = sum(nsecs - $since); \
                   delete(@asleep[args->next_pid]); } }",
    },
    Workload {
        name: "signal-storm",
        stresses: "signal_generate and tracer's own pipeline: every SIGUSR1 is a record (its default action terminates)",
        run: signal_storm,
        hooks: &["signal_generate"],
        family_off: &[],
        fallbacks: &[],
        programs: &[],
        // Signals by sender, target and number.
        bpftrace: "tracepoint:signal:signal_generate { @signals[comm, args->pid, args->sig] = count(); }",
    },
];

/// tracer's programs on the UDP workloads' path, as the kernel names them
/// (15 bytes).
const UDP_PROGRAMS: &[&str] = &[
    "net_dev_queue_b",
    "net_dev_queue",
    "netif_receive_s",
    "kfree_skb",
];

/// DNS queries and answers seen on the way out and in (UDP port 53), and
/// dropped packets by reason.
const UDP_BPFTRACE: &str = "tracepoint:net:net_dev_queue, tracepoint:net:netif_receive_skb { \
    $skb = (struct sk_buff *)args->skbaddr; \
    if ($skb->protocol == 0x0008) { \
    $ip = (struct iphdr *)($skb->head + $skb->network_header); \
    if ($ip->protocol == 17) { \
    $udp = (struct udphdr *)($skb->head + $skb->network_header + ($ip->ihl << 2)); \
    if ($udp->dest == 0x3500 || $udp->source == 0x3500) { @dns[probe] = count(); } } } } \
    tracepoint:skb:kfree_skb /args->reason > 2/ { @drops[args->reason] = count(); }";

/// Signals per signal-storm run.
const STORM_SIGNALS: u32 = 300_000;

/// Sends itself SIGUSR1 (ignored) as fast as kill(2) goes: a signal storm.
/// Each one passes the signal_generate hook in this process's context and,
/// with tracer attached (the default set has SIGUSR1), becomes a record that
/// tracer decodes, explains and writes. The CPU time below is the sender's;
/// the line printed says how fast the storm went and how much of a CPU the
/// tracer child used to keep up with it.
fn signal_storm() {
    // SAFETY: SIG_IGN for a signal nothing else in this process uses.
    unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
    let tracer_cpu = || tracer_child().and_then(task_cpu);
    let before = tracer_cpu();
    let started = std::time::Instant::now();
    // SAFETY: no preconditions.
    let me = unsafe { libc::getpid() };
    for _ in 0..STORM_SIGNALS {
        // SAFETY: a signal to this process, which ignores it.
        unsafe { libc::kill(me, libc::SIGUSR1) };
    }
    let elapsed = started.elapsed();
    if let (Some(before), Some(after)) = (before, tracer_cpu()) {
        println!(
            "  signal-storm: {:.0} signals/s; tracer used {:.1}% of one CPU meanwhile",
            f64::from(STORM_SIGNALS) / elapsed.as_secs_f64(),
            after.saturating_sub(before).as_secs_f64() / elapsed.as_secs_f64() * 100.0
        );
    }
}

/// The `tracer watch` this process started, if one runs.
fn tracer_child() -> Option<u32> {
    // SAFETY: no preconditions.
    let me = unsafe { libc::getpid() }.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid = rest.split_whitespace().nth(1)?;
            (comm == "tracer" && ppid == me).then_some(pid)
        })
}

/// User and system time of process `pid`.
fn task_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(") ")?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis((utime + stime) * 1000 / ticks))
}

/// Round trips per ping-pong run: two context switches (and two wake-ups,
/// which tracer does not hook) each, the hottest path there is for the
/// IO-wait hook.
const PING_PONG_ROUND_TRIPS: usize = 200_000;

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Two threads pass one byte back and forth through two pipes: every
/// read blocks (an interruptible sleep, which the sched_switch program
/// must leave at its first test) and every write wakes the other thread.
/// Both run on one CPU, so that every switch goes from one to the other:
/// no idle time, whose wake-up latency would drown what is measured, and
/// the hooks' cost lands in this process's CPU time.
fn pipe_ping_pong() {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    fn pipe() -> (i32, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: a valid two-int array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        (fds[0], fds[1])
    }
    fn transfer(read_fd: i32, write_fd: i32, first_write: bool) {
        let mut byte = [0u8; 1];
        for i in 0..PING_PONG_ROUND_TRIPS {
            // SAFETY: valid fds and a one-byte buffer.
            unsafe {
                if first_write || i > 0 {
                    libc::write(write_fd, byte.as_ptr().cast(), 1);
                }
                libc::read(read_fd, byte.as_mut_ptr().cast(), 1);
            }
        }
        if !first_write {
            // SAFETY: as above: the last answer.
            unsafe { libc::write(write_fd, byte.as_ptr().cast(), 1) };
        }
    }
    let (ping_read, ping_write) = pipe();
    let (pong_read, pong_write) = pipe();
    let ponger = thread::spawn(move || {
        pin_to(cpu);
        transfer(ping_read, pong_write, false)
    });
    pin_to(cpu);
    transfer(pong_read, ping_write, true);
    ponger.join().expect("ponger");
    // The next workload may use every CPU again.
    // SAFETY: a set with every CPU the machine may have.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(c, &mut all);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &all);
    }
    for fd in [ping_read, ping_write, pong_read, pong_write] {
        // SAFETY: fds this function opened.
        unsafe { libc::close(fd) };
    }
}

/// Sends 100000 small UDP datagrams over loopback and receives them: each
/// passes the transmit and receive hooks (and is freed), in this process's
/// context, which is what the CPU time measures.
fn udp_over_loopback() {
    exchange_datagrams(|sender, receiver| {
        sender.connect(receiver).expect("connect");
        |sender: &UdpSocket, datagram: &[u8]| sender.send(datagram)
    });
}

/// `udp_over_loopback` as tracer's DNS programs see it at their dearest: a
/// DNS query first (to 127.0.0.1:53, where nothing needs to answer), so the
/// receive side reads every packet for a response; then datagrams named in
/// each `sendto`, so the send side reads every packet for a query.
fn udp_unconnected_after_a_dns_query() {
    exchange_datagrams(|sender, receiver| {
        let query = [0x7e, 0x57, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        // Refused (nothing listens) or not: the query left either way.
        let _ = sender.send_to(&query, "127.0.0.1:53");
        move |sender: &UdpSocket, datagram: &[u8]| sender.send_to(datagram, receiver)
    });
}

/// 100000 datagrams from one loopback socket to another, each received
/// before the next is sent. `prepare` gets the sender and the receiver's
/// address, and returns how to send.
fn exchange_datagrams<S>(prepare: impl FnOnce(&UdpSocket, SocketAddr) -> S)
where
    S: Fn(&UdpSocket, &[u8]) -> std::io::Result<usize>,
{
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let send = prepare(&sender, receiver.local_addr().expect("address"));
    let mut buf = [0u8; 64];
    for i in 0..100_000u32 {
        send(&sender, &i.to_ne_bytes()).expect("send");
        black_box(receiver.recv(&mut buf).expect("recv"));
    }
}

/// Faults in 1 GiB of fresh anonymous memory, 64 MiB at a time: one page
/// allocation per 4 KiB page, all of them through `mm_page_alloc`. In small
/// pages whatever the machine's transparent huge pages setting: Debian's
/// 6.12 defaults to `always`, which made it 512 huge-page faults in a guest.
fn touch_fresh_memory() {
    const BLOCK: usize = 64 << 20;
    for _ in 0..16 {
        // SAFETY: a fresh private anonymous mapping of BLOCK bytes, written
        // within its bounds and unmapped once; nothing else refers to it.
        unsafe {
            let block = libc::mmap(
                std::ptr::null_mut(),
                BLOCK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(block, libc::MAP_FAILED, "mmap of 64 MiB");
            libc::madvise(block, BLOCK, libc::MADV_NOHUGEPAGE);
            std::ptr::write_bytes(block.cast::<u8>(), 1, BLOCK);
            black_box(block);
            libc::munmap(block, BLOCK);
        }
    }
}
