//! `cargo xtask bench`: what tracer costs the workloads it watches, side by
//! side with what a user would run instead and with the limit. Every round
//! runs each workload once per arm: bare, tracer, tracer with each family on
//! its path off, bpftrace doing the same job, and an empty BPF program on the
//! same hooks (the kernel's dispatch alone). The arms' order rotates every
//! round, so a drift of the machine hits them all, and each arm is compared
//! with the bare run of its own round. A benchmark, not a test: it reports, it
//! does not pass or fail.

mod arms;
mod empty_program;
mod export_storm;
mod pipeline;
mod prog_stats;
mod workloads;

use std::{path::Path, process::Command, thread, time::Duration};

use anyhow::{bail, Result};

use arms::{Arm, Attached};
use workloads::{Workload, WORKLOADS};

/// Runs of the workload per arm and round. The machine's neighbours only ever
/// add time to a run (they take the CPU, flush caches, delay interrupts),
/// never remove any: the fastest of a few runs back to back is the closest to
/// what the work itself costs, and ratios of those are far steadier than
/// those of single runs (whose spread here was larger than the cost measured).
const RUNS_PER_SIDE: usize = 3;

/// How long the machine is left alone after an arm attaches and after it
/// detaches: start-up work (BTF, the /proc scan) and the kernel's work around
/// attaching and detaching (JIT, patching call sites, RCU callbacks) belong
/// to no run.
const SETTLE: Duration = Duration::from_secs(2);

/// What to run besides the workloads' CPU time.
#[derive(Clone, Copy)]
pub struct Extras<'a> {
    /// The bpftrace arm (a guest has no bpftrace).
    pub bpftrace: bool,
    /// The kernel's statistics of tracer's programs on the path, while the
    /// tracer arms run, and of the empty programs in the limit arm.
    pub bpf_stats: bool,
    /// Another tracer build, run as one more arm (`--baseline`).
    pub baseline: Option<&'a Path>,
}

pub fn run(tracer: &Path, rounds: usize, filter: Option<&str>, extras: Extras) -> Result<()> {
    if let Some(build) = extras.baseline {
        if !build.is_file() {
            bail!("--baseline {}: no such file", build.display());
        }
    }
    let chosen: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| filter.is_none_or(|f| w.name.contains(f)))
        .collect();
    let export = filter.is_none_or(|f| export_storm::EXPORT_STORM.contains(f));
    let pipeline = filter.is_none_or(|f| pipeline::PIPELINE.contains(f));
    if chosen.is_empty() && !export && !pipeline {
        bail!("no workload matches `{}`", filter.unwrap_or_default());
    }
    // tracer mounts tracefs when it is missing; bpftrace, which may run first,
    // does not and finds no tracepoint without it.
    if !Path::new("/sys/kernel/tracing/events").is_dir() {
        crate::cmd::run(Command::new("mount").args([
            "-t",
            "tracefs",
            "nodev",
            "/sys/kernel/tracing",
        ]))?;
    }
    for workload in chosen {
        let arms = Arm::all_for(workload, extras.baseline, extras.bpftrace);
        let mut results: Vec<ArmResult> = arms.iter().map(|_| ArmResult::default()).collect();
        // Warm-up: first-touch effects belong to no arm.
        (workload.run)();
        for round in 0..rounds {
            for i in (0..arms.len()).map(|k| (k + round) % arms.len()) {
                let result = &mut results[i];
                if result.failed.is_some() {
                    continue;
                }
                match measure(&arms[i], tracer, workload, extras.bpf_stats) {
                    Ok(run) => result.push(run),
                    // What a user would run instead may not run on this
                    // kernel: say so, and go on with the other arms.
                    Err(err) if !arms[i].is_tracer() => result.failed = Some(format!("{err:#}")),
                    Err(err) => return Err(err),
                }
            }
        }
        report(workload, &arms, &results, rounds);
    }
    if export {
        export_storm::export_storm(tracer, rounds)?;
    }
    if pipeline {
        let example = tracer
            .with_file_name("examples")
            .join("pipeline_throughput");
        pipeline::pipeline(&example, rounds)?;
    }
    Ok(())
}

/// One arm's side of one round.
struct Run {
    cpu: Duration,
    startup: Option<Duration>,
    memory: Option<arms::Memory>,
    programs: Option<prog_stats::Stats>,
}

fn measure(arm: &Arm, tracer: &Path, workload: &Workload, bpf_stats: bool) -> Result<Run> {
    let attached = Attached::start(arm, tracer, workload)?;
    if attached.startup.is_some() {
        thread::sleep(SETTLE);
    }
    // The limit arm's programs side by side with tracer's: the steadier
    // figure of what tracer's code adds to the dispatch.
    let programs: &[&str] = match arm {
        Arm::Limit => &[empty_program::NAME],
        _ if arm.is_tracer() => workload.programs,
        _ => &[],
    };
    let stats = (bpf_stats && !programs.is_empty())
        .then(prog_stats::on)
        .transpose()?;
    let before = prog_stats::Stats::now(programs);
    let cpu = fastest(workload.run);
    let programs = stats.map(|on| {
        let ran = prog_stats::Stats::now(programs).since(&before);
        drop(on);
        ran
    });
    let memory = attached.memory();
    let startup = attached.startup;
    let was_attached = startup.is_some();
    attached.stop()?;
    if was_attached {
        thread::sleep(SETTLE);
    }
    Ok(Run {
        cpu,
        startup,
        memory,
        programs,
    })
}

#[derive(Default)]
struct ArmResult {
    cpu: Vec<Duration>,
    startups: Vec<Duration>,
    memory: Vec<arms::Memory>,
    /// The kernel's statistics of tracer's programs, over every run.
    programs: Option<prog_stats::Stats>,
    failed: Option<String>,
}

impl ArmResult {
    fn push(&mut self, run: Run) {
        self.cpu.push(run.cpu);
        self.startups.extend(run.startup);
        self.memory.extend(run.memory);
        if let Some(ran) = run.programs {
            self.programs.get_or_insert_with(Default::default).add(&ran);
        }
    }
}

fn report(workload: &Workload, arms: &[Arm], results: &[ArmResult], rounds: usize) {
    println!(
        "\n{}: {} ({rounds} rounds; each arm the fastest of {RUNS_PER_SIDE} runs a round; \
         ratios paired with the bare run of the same round)",
        workload.name, workload.stresses
    );
    // The arms' labels, in a column as wide as the longest.
    let width = arms
        .iter()
        .map(|a| a.label().len())
        .max()
        .unwrap_or(0)
        .max(28);
    println!(
        "  {:<width$} {:>9} {:>9} {:>19} {:>10} {:>17}",
        "arm", "CPU ms", "vs bare", "quartiles", "start-up", "RSS steady/peak"
    );
    let bare = &results[0].cpu;
    for (arm, result) in arms.iter().zip(results) {
        if let Some(err) = &result.failed {
            println!("  {:<width$} did not run: {err}", arm.label());
            continue;
        }
        let mut cpu = result.cpu.clone();
        let mut line = format!(
            "  {:<width$} {:>9.1}",
            arm.label(),
            median(&mut cpu).as_secs_f64() * 1e3
        );
        if !matches!(arm, Arm::Bare) {
            let mut ratios: Vec<f64> = result
                .cpu
                .iter()
                .zip(bare)
                .map(|(with, without)| with.as_secs_f64() / without.as_secs_f64())
                .collect();
            ratios.sort_by(f64::total_cmp);
            let at = |q: usize| (ratios[(ratios.len() - 1) * q / 4] - 1.0) * 100.0;
            line += &format!(" {:>+8.2}% {:>+8.2}%..{:>+7.2}%", at(2), at(1), at(3));
        }
        if !result.startups.is_empty() {
            let mut startups = result.startups.clone();
            line += &format!(" {:>7.0} ms", median(&mut startups).as_secs_f64() * 1e3);
        }
        if let Some(memory) = arms::Memory::median(&result.memory) {
            line += &format!(
                " {:>7.1}/{:.1} MiB",
                memory.resident_kib as f64 / 1024.0,
                memory.peak_kib as f64 / 1024.0
            );
        }
        println!("{line}");
        if let Some(programs) = &result.programs {
            let runs = (result.cpu.len() * RUNS_PER_SIDE) as u64;
            println!(
                "  {:<width$}   BPF statistics: {}",
                "",
                programs.describe(runs)
            );
        }
    }
    // A hook's fallback against tracer's own choice, round by round: the
    // ratio of their CPU times (above 1: the fallback costs more).
    let chosen = arms
        .iter()
        .position(|a| matches!(a, Arm::Tracer(f) if f.is_empty()));
    for (arm, result) in arms.iter().zip(results).filter(|(a, _)| a.is_fallback()) {
        let Some(chosen) = chosen.map(|i| &results[i]) else {
            continue;
        };
        if result.failed.is_some() || chosen.failed.is_some() {
            continue;
        }
        let mut ratios: Vec<f64> = result
            .cpu
            .iter()
            .zip(&chosen.cpu)
            .map(|(fallback, own)| fallback.as_secs_f64() / own.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
        println!(
            "  {} / tracer watch: CPU time x{:.3} (quartiles x{:.3}..x{:.3}, paired by round)",
            arm.label(),
            at(2),
            at(1),
            at(3)
        );
    }
}

fn fastest(work: fn()) -> Duration {
    (0..RUNS_PER_SIDE)
        .map(|_| cpu_time(work))
        .min()
        .unwrap_or_default()
}

/// The CPU time (user and system) the work took in this process: what a hook
/// adds is spent in the work's own system calls and faults, while wall time
/// on a shared two-core machine mostly measures the neighbours.
fn cpu_time(work: fn()) -> Duration {
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

fn median<T: Ord + Copy>(samples: &mut [T]) -> T {
    samples.sort_unstable();
    samples[samples.len() / 2]
}
