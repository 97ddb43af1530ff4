//! Records a second through decode, explain and output: a storm of signals
//! made in memory (`tracer::replay`), written as text to stdout and as JSON
//! lines to a file; SIGNAL_FLOOD as `--signal-flood` (0: every signal
//! written whole).
//! `cargo xtask bench pipeline` runs it with stdout on /dev/null and shows
//! the line it writes on stderr.
//!
//! Usage: pipeline_throughput RECORDS FILE [SIGNAL_FLOOD]

use std::time::Instant;

use anyhow::{Context as _, Result};
use tracer::{clock::Clock, output::Format, replay};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .context("usage: pipeline_throughput RECORDS FILE")?
        .parse()
        .context("RECORDS: a number")?;
    let file = args
        .next()
        .context("usage: pipeline_throughput RECORDS FILE")?;
    let signal_flood: u64 = match args.next() {
        Some(n) => n.parse().context("SIGNAL_FLOOD: a number")?,
        None => 0,
    };
    let mut pipeline = replay::pipeline(Format::Text, Some(file.as_ref()), signal_flood)?;
    // Every record a new instant, as the kernel's would be; made before the
    // clock starts, as the kernel makes them.
    let start = Clock::now_mono_ns();
    let batch: Vec<Vec<u8>> = (0..4096)
        .map(|i| replay::self_signal(start + i))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    for i in 0..records {
        pipeline.record(&batch[(i % batch.len() as u64) as usize]);
    }
    pipeline.flush(u64::MAX);
    pipeline.output.sync()?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    eprintln!(
        "pipeline: {records} signal records in {wall:.3} s ({cpu:.3} s CPU): {:.0} records/s, {} events written",
        records as f64 / wall,
        pipeline.output.events_written
    );
    Ok(())
}

/// This process's user and system CPU time.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
