//! The workloads `cargo xtask bench` measures: each runs in this process, so
//! that its CPU time holds what the hooks add to the kernel work it does.

use std::{hint::black_box, thread};

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
    /// The same job done by bpftrace, as a user without tracer would write it.
    pub bpftrace: &'static str,
}

pub const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "page-alloc",
        stresses: "kmem:mm_page_alloc (every page the kernel hands out)",
        run: touch_fresh_memory,
        hooks: &["mm_page_alloc"],
        family_off: &[],
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
        // DNS queries and answers seen on the way out and in (UDP port 53),
        // and dropped packets by reason.
        bpftrace: "tracepoint:net:net_dev_queue, tracepoint:net:netif_receive_skb { \
                   $skb = (struct sk_buff *)args->skbaddr; \
                   if ($skb->protocol == 0x0008) { \
                   $ip = (struct iphdr *)($skb->head + $skb->network_header); \
                   if ($ip->protocol == 17) { \
                   $udp = (struct udphdr *)($skb->head + $skb->network_header + ($ip->ihl << 2)); \
                   if ($udp->dest == 0x3500 || $udp->source == 0x3500) { @dns[probe] = count(); } } } } \
                   tracepoint:skb:kfree_skb /args->reason > 2/ { @drops[args->reason] = count(); }",
    },
    Workload {
        name: "ping-pong",
        stresses: "sched_switch (two threads on one CPU passing a byte through pipes)",
        run: pipe_ping_pong,
        hooks: &["sched_switch"],
        family_off: &[],
        // Time in uninterruptible sleep (IO wait) per process.
        bpftrace: "tracepoint:sched:sched_switch { \
                   if (args->prev_state == 2) { @asleep[args->prev_pid] = nsecs; } \
                   $since = @asleep[args->next_pid]; \
                   if ($since) { @iowait_ns[args->next_comm] = sum(nsecs - $since); \
                   delete(@asleep[args->next_pid]); } }",
    },
];

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
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sender
        .connect(receiver.local_addr().expect("address"))
        .expect("connect");
    let mut buf = [0u8; 64];
    for i in 0..100_000u32 {
        sender.send(&i.to_ne_bytes()).expect("send");
        black_box(receiver.recv(&mut buf).expect("recv"));
    }
}

/// Faults in 1 GiB of fresh anonymous memory, 64 MiB at a time: one page
/// allocation per 4 KiB page, all of them through `mm_page_alloc`.
fn touch_fresh_memory() {
    for _ in 0..16 {
        let block = vec![1u8; 64 << 20];
        black_box(&block);
    }
}
