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

pub const WORKLOADS: [Workload; 3] = [
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

pub fn run(tracer: &Path, rounds: usize, filter: Option<&str>) -> Result<()> {
    let chosen: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| filter.is_none_or(|f| w.name.contains(f)))
        .collect();
    let export = filter.is_none_or(|f| EXPORT_STORM.contains(f));
    if chosen.is_empty() && !export {
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
    if export {
        export_storm(tracer, rounds)?;
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
        Self::start_with(tracer, &[])
    }

    /// `tracer watch --format json` with more arguments.
    fn start_with(tracer: &Path, extra: &[String]) -> Result<Self> {
        let mut child = Command::new(tracer)
            .args(["watch", "--format", "json"])
            .args(extra)
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

/// The name of the export arm in the report (and for the filter).
const EXPORT_STORM: &str = "export-storm";
/// Signals per run of the export arm.
const STORM_SIGNALS: u64 = 20_000;

/// What `--metrics-address` and `--otlp-endpoint` add per event: tracer's
/// own CPU time (all its threads, the OTLP sender's included) for a storm
/// of signals to one process, with and without both exporters, the OTLP
/// receiver a local sink that accepts every batch. The cost is tracer's,
/// not the workload's: exporters work after the event is explained.
fn export_storm(tracer: &Path, rounds: usize) -> Result<()> {
    let sink = OtlpSink::start()?;
    let mut target = Command::new("sleep")
        .arg("100000")
        .spawn()
        .context("starting the signal target")?;
    let pid = target.id();
    let plain = vec![
        "--pid".to_owned(),
        pid.to_string(),
        "--signals".into(),
        "all".into(),
    ];
    let metrics = ["--metrics-address".to_owned(), "127.0.0.1:0".into()];
    let otlp = [
        "--otlp-endpoint".to_owned(),
        format!("http://{}/v1/logs", sink.address),
    ];
    let arms: [(&str, Vec<String>); 4] = [
        ("without", plain.clone()),
        ("metrics", [plain.clone(), metrics.to_vec()].concat()),
        ("otlp", [plain.clone(), otlp.to_vec()].concat()),
        (
            "both",
            [plain.clone(), metrics.to_vec(), otlp.to_vec()].concat(),
        ),
    ];
    let mut costs: Vec<Vec<f64>> = vec![Vec::new(); arms.len()];
    let result = (|| -> Result<()> {
        for round in 0..rounds {
            // A different order each round, so drift hits every arm.
            for k in 0..arms.len() {
                let arm = (k + round) % arms.len();
                costs[arm].push(storm_cost(tracer, &arms[arm].1, pid)?);
            }
        }
        Ok(())
    })();
    let _ = target.kill();
    let _ = target.wait();
    result?;
    let medians: Vec<f64> = costs
        .iter_mut()
        .map(|c| {
            c.sort_by(f64::total_cmp);
            c[c.len() / 2]
        })
        .collect();
    println!(
        "{EXPORT_STORM:<12} tracer CPU per signal: {:.1} us without exporters; --metrics-address {:+.1} us; --otlp-endpoint {:+.1} us; both {:+.1} us (medians of {rounds} rounds of {STORM_SIGNALS} signals to one process; {} OTLP batches accepted by a local sink)",
        medians[0],
        medians[1] - medians[0],
        medians[2] - medians[0],
        medians[3] - medians[0],
        sink.batches.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// tracer's CPU time per signal, in microseconds, for one storm.
fn storm_cost(tracer: &Path, args: &[String], target: u32) -> Result<f64> {
    let watcher = Watcher::start_with(tracer, args)?;
    let tracer_pid = watcher.child.id();
    let before = cpu_ticks(tracer_pid)?;
    for _ in 0..STORM_SIGNALS {
        // SAFETY: a plain kill(2) of a child that ignores SIGWINCH.
        unsafe { libc::kill(target as i32, libc::SIGWINCH) };
    }
    // Done when tracer's CPU time stops moving (its queue is drained and
    // the sender has posted the last batch, which waits at most 1 s).
    let mut last = cpu_ticks(tracer_pid)?;
    loop {
        thread::sleep(Duration::from_millis(1500));
        let now = cpu_ticks(tracer_pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    watcher.stop()?;
    // SAFETY: no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((last - before) as f64 / ticks_per_second * 1e6 / STORM_SIGNALS as f64)
}

/// utime + stime of a process, in clock ticks (all its threads).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here.
    Ok(field(11) + field(12))
}

/// An OTLP/HTTP receiver that accepts every request and counts them:
/// enough to measure the sender, which never looks at the body of a 200.
struct OtlpSink {
    address: std::net::SocketAddr,
    batches: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl OtlpSink {
    fn start() -> Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the OTLP sink")?;
        let address = listener.local_addr()?;
        let batches = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = batches.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                thread::spawn(move || {
                    let _ = serve_sink(stream, &counter);
                });
            }
        });
        Ok(Self { address, batches })
    }
}

/// Answers each request on a kept-alive connection with 200, reading its
/// body by Content-Length.
fn serve_sink(
    mut stream: std::net::TcpStream,
    batches: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + length);
        batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        )?;
    }
}
