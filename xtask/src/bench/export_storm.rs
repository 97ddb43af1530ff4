//! The export arm of `cargo xtask bench`: what `--metrics-address` and
//! `--otlp-endpoint` add to tracer's own CPU time per event, at a storm of
//! signals.

use std::{io::Read as _, path::Path, process::Command, thread, time::Duration};

use anyhow::{Context as _, Result};

use super::arms::{interrupt as stop_tracer, start_tracer};

/// The name of the export arm in the report (and for the filter).
pub const EXPORT_STORM: &str = "export-storm";
/// Signals per run of the export arm.
const STORM_SIGNALS: u64 = 20_000;

/// What `--metrics-address` and `--otlp-endpoint` add per event: tracer's
/// own CPU time (all its threads, the OTLP sender's included) for a storm
/// of signals to one process, with and without both exporters, the OTLP
/// receiver a local sink that accepts every batch. The cost is tracer's,
/// not the workload's: exporters work after the event is explained.
pub fn export_storm(tracer: &Path, rounds: usize) -> Result<()> {
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
    let watcher = start_tracer(tracer, args)?;
    let tracer_pid = watcher.id();
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
    stop_tracer(watcher)?;
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
