//! `cargo xtask bench`: what tracer costs the workloads it watches. Each
//! workload runs alternately without and with `tracer watch` attached (the
//! order flips every round, so drift in the machine hits both sides), and
//! the medians are compared. A benchmark, not a test: it reports, it does not
//! pass or fail.

use std::{
    hint::black_box,
    io::Read as _,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

/// A workload: a name for the report and the work, run in this process.
pub struct Workload {
    pub name: &'static str,
    /// What it stresses, for the report.
    pub stresses: &'static str,
    pub run: fn(),
}

pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "page-alloc",
        stresses: "kmem:mm_page_alloc (every page the kernel hands out)",
        run: touch_fresh_memory,
    },
    Workload {
        name: "udp-loopback",
        stresses: "net_dev_queue, netif_receive_skb, kfree_skb (every packet)",
        run: udp_over_loopback,
    },
    Workload {
        name: "ping-pong",
        stresses: "sched_switch (two threads on one CPU passing a byte through pipes)",
        run: pipe_ping_pong,
    },
    Workload {
        name: "signal-storm",
        stresses: "signal_generate and tracer's own pipeline: every SIGUSR1 is a record (its default action terminates)",
        run: signal_storm,
    },
];

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

pub fn run(tracer: &Path, rounds: usize, filter: Option<&str>) -> Result<()> {
    let chosen: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| filter.is_none_or(|f| w.name.contains(f)))
        .collect();
    if chosen.is_empty() {
        bail!("no workload matches `{}`", filter.unwrap_or_default());
    }
    for workload in chosen {
        let mut without = Vec::with_capacity(rounds);
        let mut with = Vec::with_capacity(rounds);
        // Warm-up: first-touch effects belong to neither side.
        (workload.run)();
        for round in 0..rounds {
            let traced_first = round % 2 == 1;
            for traced in [traced_first, !traced_first] {
                if traced {
                    let watcher = Watcher::start(tracer)?;
                    with.push(fastest(workload.run));
                    watcher.stop()?;
                } else {
                    without.push(fastest(workload.run));
                }
            }
        }
        // Each round's pair ran back to back: their ratio cancels the drift
        // of a shared machine better than a ratio of overall medians.
        let mut ratios: Vec<f64> = with
            .iter()
            .zip(&without)
            .map(|(w, b)| w.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| (ratios[(ratios.len() - 1) * q / 4] - 1.0) * 100.0;
        let (base, traced) = (median(&mut without), median(&mut with));
        println!(
            "{:<12} {:>8.1} ms CPU without, {:>8.1} ms CPU with tracer attached: {:+.2}% (median of {} paired rounds, each side the fastest of {} runs; quartiles {:+.2}%..{:+.2}%; {})",
            workload.name,
            base.as_secs_f64() * 1e3,
            traced.as_secs_f64() * 1e3,
            quartile(2),
            rounds,
            RUNS_PER_SIDE,
            quartile(1),
            quartile(3),
            workload.stresses
        );
    }
    Ok(())
}

/// Runs of the workload per side of a round. The machine's neighbours only
/// ever add time to a run (they take the CPU, flush caches, delay
/// interrupts), never remove any: the fastest of a few runs back to back is
/// the closest to what the work itself costs, with and without tracer, and
/// their ratio is far steadier than that of single runs (whose spread here
/// was larger than the cost measured).
const RUNS_PER_SIDE: usize = 3;

fn fastest(work: fn()) -> Duration {
    (0..RUNS_PER_SIDE)
        .map(|_| time(work))
        .min()
        .unwrap_or_default()
}

/// The CPU time (user and system) the work took in this process: what the
/// hook adds is spent in the work's own page faults, while wall time on a
/// shared two-core machine mostly measures the neighbours.
fn time(work: fn()) -> Duration {
    let start = process_cpu_time();
    work();
    process_cpu_time().saturating_sub(start)
}

fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// How long the machine is left alone after tracer starts or stops.
const SETTLE: Duration = Duration::from_secs(2);

/// A `tracer watch` running in the background, its output discarded.
struct Watcher {
    child: Child,
}

impl Watcher {
    fn start(tracer: &Path) -> Result<Self> {
        let mut child = Command::new(tracer)
            .args(["watch", "--format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", tracer.display()))?;
        // Attached once the banner says what it follows.
        let mut stderr = child.stderr.take().context("tracer stderr")?;
        let mut banner = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&banner).contains("following:") {
            if stderr.read(&mut byte).context("reading tracer's banner")? == 0 {
                bail!(
                    "tracer exited before attaching: {}",
                    String::from_utf8_lossy(&banner)
                );
            }
            banner.push(byte[0]);
        }
        // Keep draining stderr so that tracer never blocks on it.
        thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        // Let its start-up (BTF, the /proc scan) and the kernel's work after
        // it (JIT, patching the tracepoints' call sites, RCU callbacks) finish
        // before measuring: the cost measured is that of being attached, not
        // of starting.
        thread::sleep(SETTLE);
        Ok(Self { child })
    }

    fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .context("stopping tracer")?;
        let status = self.child.wait().context("waiting for tracer")?;
        if !status.success() {
            bail!("tracer exited with {status} on SIGINT");
        }
        // The same for the kernel's work after detaching (unpatching,
        // freeing the programs and maps), before the next side runs.
        thread::sleep(SETTLE);
        Ok(())
    }
}
