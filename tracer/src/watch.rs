//! `tracer watch`: checks, loads, attaches, then explains records until
//! SIGINT, SIGTERM or SIGHUP, and on the way out drains, reports and detaches.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};
use tracer_common::{RecordKind, LOST_SLOTS};

use crate::{
    attribution::Attributor,
    cli::WatchArgs,
    clock::Clock,
    ebpf::{self, HookStatus},
    explain::Explainer,
    family::{self, Settings, Start},
    host_paths, kernel_btf,
    kmsg::KernelLog,
    output::{jsonl::JsonlWriter, Output},
    pipeline::Pipeline,
    preflight,
    process::ProcessTable,
    scope::Scope,
    size::format_size,
};

pub fn run(args: WatchArgs) -> Result<()> {
    let checked = preflight(&args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(async move {
        // Handlers first: a SIGTERM during start-up still ends in a clean stop.
        let mut stop = StopSignals::install()?;
        let mut watch = set_up(&args, checked)?;
        let reason = watch.run_loop(&mut stop).await?;
        watch.summaries()?;
        watch.stop(reason)
    })
}

/// What the checks found, for the set-up.
struct Checked {
    preparation: ebpf::Preparation,
    resolved: kernel_btf::ResolvedOffsets,
    tracefs: preflight::Tracefs,
    file: Option<JsonlWriter>,
    attributor: Attributor,
    processes: ProcessTable,
    scope: Scope,
    exporters: Option<crate::export::Exporters>,
}

/// Everything that can be wrong with the input or the machine is checked
/// before anything is attached.
fn preflight(args: &WatchArgs) -> Result<Checked> {
    preflight::check_privileges()?;
    host_paths::check(&args.host)?;
    if let Some(pid) = args.pid {
        host_paths::check_pid(&args.host.procfs, pid)?;
    }
    let preparation = ebpf::Preparation::start();
    let resolved = kernel_btf::load_and_resolve(args.host.btf.as_deref())?;
    let tracefs = preflight::ensure_tracefs()?;
    let file = match &args.output {
        Some(path) => Some(
            JsonlWriter::create(path, args.output_max_size, args.output_max_files)
                .with_context(|| format!("cannot write --output {}", path.display()))?,
        ),
        None => None,
    };
    for skipped in &args.skip_hook {
        let known = family::all_hooks()
            .flat_map(|h| h.candidates)
            .any(|c| c.describe() == *skipped);
        if !known {
            bail!("--skip-hook {skipped:?}: no hook attaches that way (`tracer doctor` lists how each attaches, e.g. \"kprobe warn_alloc\")");
        }
    }
    for hook in family::all_hooks().filter(|h| h.essential) {
        if let Some((group, name)) = hook.tracepoint() {
            if !preflight::tracepoint_exists(group, name) {
                bail!(
                    "this kernel has no tracepoint {group}:{name}: {}",
                    hook.without_it
                );
            }
        }
    }
    let mut attributor = Attributor::new(&args.host.procfs, &args.host.host_root);
    let processes = ProcessTable::new(&args.host.procfs);
    let scope = resolve_scope(args, &mut attributor)?;
    // The metrics port is claimed now: an address in use fails before attaching.
    let exporters = crate::export::Exporters::start(
        &args.export,
        &preflight::node_name(),
        &args.host.host_root,
    )?;
    Ok(Checked {
        preparation,
        resolved,
        tracefs,
        file,
        attributor,
        processes,
        scope,
        exporters,
    })
}

struct StopSignals {
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
    /// A closed terminal (ssh gone) stops tracer cleanly, stop record and
    /// all; under nohup (SIGHUP ignored) it keeps running, as nohup asks.
    sighup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn install() -> Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            sighup: if sighup_ignored() {
                None
            } else {
                Some(signal(SignalKind::hangup()).context("installing the SIGHUP handler")?)
            },
        })
    }
}

/// tracer at work: the programs attached, the ring buffer they write to,
/// the families explaining what it brings, and where it goes.
struct Watch {
    /// Keeps the programs attached; dropping it detaches them all.
    ebpf: aya::Ebpf,
    events: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    lost_map: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    pipeline: Pipeline,
    /// Lost records per kind as last reported.
    lost: [u64; LOST_SLOTS as usize],
    /// Records still in the ring when the final drain's time was up.
    unread: u64,
}

/// Loads and attaches every family's hooks, starts the families, and says
/// what tracer watches (the banner and the `start` record).
fn set_up(args: &WatchArgs, checked: Checked) -> Result<Watch> {
    let Checked {
        preparation,
        resolved,
        tracefs,
        file,
        mut attributor,
        mut processes,
        scope,
        exporters,
    } = checked;
    let settings = Settings::from_args(args, &resolved);
    let mut loaded = ebpf::load_prepared(
        preparation,
        &resolved.offsets,
        &settings.config(),
        &settings.hooks(),
        args.ring_buffer_size,
        &args.skip_hook,
    )?;
    settings.mark_degraded(&mut loaded.hooks);
    if !loaded
        .hooks
        .iter()
        .any(|h| h.hook.essential && h.attached.is_ok())
    {
        let reasons: Vec<_> = loaded
            .hooks
            .iter()
            .filter_map(|h| h.attached.as_ref().err().cloned())
            .collect();
        bail!("nothing to watch: {}", reasons.join("; "));
    }
    // Scan /proc only after the lifecycle hooks are on: nothing falls between.
    processes.scan(&mut attributor).context("scanning /proc")?;
    // Families start before tracer says it is watching: what they read
    // now (counters) is their baseline.
    let mut notes = Vec::new();
    let families = start_families(args, &settings, &mut loaded, &mut notes);

    let clock = Clock::new();
    let mut output = Output::new(args.format, file, clock, preflight::node_name());
    output.set_exporters(exporters);
    banner(args, &scope, &loaded.hooks, tracefs, &resolved.missing);
    for note in &notes {
        tracing::warn!("{note}");
    }
    output.record(
        "start",
        Clock::now_mono_ns(),
        StartRecord::new(args, &scope, &loaded.hooks),
    )?;

    let kernel_log = KernelLog::open();
    if !kernel_log.readable() {
        tracing::warn!("/dev/kmsg is not readable: OOM and page-allocation events go without the kernel log's corroboration");
    }
    let mut explainer = Explainer::new(
        processes,
        attributor,
        scope,
        args.host.procfs.clone(),
        kernel_log,
        families,
    );
    let ebpf::Loaded {
        ebpf,
        events,
        lost,
        stacks,
        ..
    } = loaded;
    if args.stacks {
        explainer.set_stacks(crate::stacks::KernelStacks::new(stacks));
    }
    // SAFETY: the ring buffer owns its map fd and AsyncFd owns the ring
    // buffer, so the fd stays open and the same while it is registered.
    let events = unsafe { AsyncFd::register(events) }.context("polling the ring buffer")?;
    // The BTF parsed for the offsets is gone: its pages go back too.
    crate::heap::release_free_pages();
    Ok(Watch {
        ebpf,
        events,
        lost_map: lost,
        pipeline: Pipeline::new(explainer, output),
        lost: [0; LOST_SLOTS as usize],
        unread: 0,
    })
}

/// Each family with the hooks that are its own.
fn start_families(
    args: &WatchArgs,
    settings: &Settings,
    loaded: &mut ebpf::Loaded,
    notes: &mut Vec<String>,
) -> Vec<Box<dyn family::Family>> {
    family::FAMILIES
        .iter()
        .filter_map(|registration| {
            let own: Vec<&HookStatus> = loaded
                .hooks
                .iter()
                .filter(|h| registration.hooks.iter().any(|r| r.name == h.hook.name))
                .collect();
            (registration.start)(&mut Start {
                args,
                settings,
                ebpf: &mut loaded.ebpf,
                hooks: &own,
                notes,
            })
        })
        .collect()
}

impl Watch {
    /// Explains records until SIGINT or SIGTERM; returns which one.
    async fn run_loop(&mut self, stop: &mut StopSignals) -> Result<&'static str> {
        // Often enough to release held events (an OOM's SIGKILL) promptly.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut ticks = 0u64;
        let mut backlog = false;
        loop {
            tokio::select! {
                // Signals and the tick before records: under a storm records
                // are always there, and a stop, a loss report or a held
                // event must not wait for the storm to end.
                biased;
                _ = stop.sigint.recv() => return Ok("SIGINT"),
                _ = stop.sigterm.recv() => return Ok("SIGTERM"),
                Some(()) = async { stop.sighup.as_mut()?.recv().await } => return Ok("SIGHUP"),
                _ = tick.tick() => {
                    // Frequent records, and IO stalls (reported from the
                    // scheduler's wake-up path), are submitted without a
                    // wake-up: the tick finds them, and what one turn leaves
                    // is the backlog's.
                    backlog = drain(self.events.get_mut(), &mut self.pipeline) == Drained::Some;
                    self.pipeline.flush(Clock::now_mono_ns());
                    ticks += 1;
                    if ticks.is_multiple_of(10) {
                        report_losses(&self.lost_map, &mut self.pipeline.output, &mut self.lost)?;
                    }
                }
                guard = self.events.readable_mut() => {
                    let mut guard = guard.context("waiting for the ring buffer")?;
                    guard.clear_ready();
                    backlog = drain(guard.get_inner_mut(), &mut self.pipeline) == Drained::Some;
                }
                // The ring had more than one turn's worth: the next turn,
                // once the runtime has looked at signals and timers (the
                // yield lets it). The kernel wakes tracer only when it has
                // caught up, so the backlog is followed here, not by waiting.
                _ = tokio::task::yield_now(), if backlog => {
                    backlog = drain(self.events.get_mut(), &mut self.pipeline) == Drained::Some;
                }
            }
        }
    }

    /// What is already in the ring buffer is still reported, what the
    /// families held is released, and each family closes with its summary.
    fn summaries(&mut self) -> Result<()> {
        // Within a bound: under a storm the ring never empties, and the stop
        // must not wait for the storm to end.
        let deadline = std::time::Instant::now() + FINAL_DRAIN;
        while drain(self.events.get_mut(), &mut self.pipeline) == Drained::Some {
            if std::time::Instant::now() >= deadline {
                self.unread = count_unread(self.events.get_mut());
                break;
            }
        }
        self.pipeline.flush(u64::MAX);
        report_losses(&self.lost_map, &mut self.pipeline.output, &mut self.lost)?;
        let Pipeline {
            explainer, output, ..
        } = &mut self.pipeline;
        explainer.finish(output)
    }

    /// The `stop` record and totals; the programs detached.
    fn stop(mut self, stop_reason: &'static str) -> Result<()> {
        let Pipeline {
            output,
            records,
            malformed,
            ..
        } = &mut self.pipeline;
        let lost_total: u64 = self.lost.iter().sum();
        let unread = self.unread;
        // The records before the stop record are sent, or given up on and
        // counted, before it says what the exporters dropped.
        if let Some(exporters) = output.exporters_mut() {
            exporters.settle(EXPORT_SETTLE);
        }
        let export_drops = output.exporters_mut().map(|e| e.drops());
        output.record(
            "stop",
            Clock::now_mono_ns(),
            StopRecord {
                reason: stop_reason,
                events: output.events_written,
                records: *records,
                lost: lost_total,
                lost_by_kind: LostByKind::new(&self.lost),
                malformed: *malformed,
                unread,
                file_errors: output.file_errors,
                console_errors: output.console_errors,
                export_drops,
            },
        )?;
        output.sync()?;
        if let Some(exporters) = output.exporters_mut() {
            exporters.finish(EXPORT_STOP_RECORD);
        }
        crate::stderr_line!(
            "tracer: stopped on {stop_reason}: {} events reported from {} kernel records; {} records lost, {} malformed, {} left unread at the stop",
            output.events_written, records, lost_total, malformed, unread
        );
        // Dropping the object detaches every program.
        drop(self.events);
        drop(self.ebpf);
        Ok(())
    }
}

/// Whether SIGHUP was ignored when tracer started, as `nohup` leaves it.
fn sighup_ignored() -> bool {
    // SAFETY: with a null new action, sigaction only writes the current one
    // into the zeroed struct it is given.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    let read = unsafe { libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current) };
    read == 0 && current.sa_sigaction == libc::SIG_IGN
}

/// Records handled per turn of the event loop at most, and the time they
/// may take: a storm fills the ring faster than it empties, and without a
/// bound the loop would never get back to SIGTERM, the 100 ms tick and the
/// loss report. Whichever comes first ends the turn; the clock is read once
/// every `CLOCK_EVERY` records.
const DRAIN_BATCH: usize = 4096;
const DRAIN_BUDGET: Duration = Duration::from_millis(10);
const CLOCK_EVERY: usize = 64;

/// How long the stop keeps reading what the kernel had already sent.
const FINAL_DRAIN: Duration = Duration::from_millis(250);

/// How long counting what is left in the ring at the stop may take at most.
const UNREAD_COUNT_BUDGET: Duration = Duration::from_millis(50);

/// How long the OTLP records still queued at the stop get to leave, before
/// the `stop` record counts what did not; then how long that record gets.
/// With the drain's 250 ms and the unread count's 50, within the second a
/// stop may take.
const EXPORT_SETTLE: Duration = Duration::from_millis(300);
const EXPORT_STOP_RECORD: Duration = Duration::from_millis(100);

#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// The ring is empty.
    All,
    /// The turn is over and the ring may hold more.
    Some,
}

/// Handles the ring's records for one turn (see `DRAIN_BATCH`).
fn drain(ring: &mut aya::maps::RingBuf<aya::maps::MapData>, pipeline: &mut Pipeline) -> Drained {
    let started = std::time::Instant::now();
    for n in 0..DRAIN_BATCH {
        if n % CLOCK_EVERY == CLOCK_EVERY - 1 && started.elapsed() >= DRAIN_BUDGET {
            break;
        }
        let Some(item) = ring.next() else {
            pipeline.output.flush();
            return Drained::All;
        };
        pipeline.record(&item);
    }
    pipeline.output.flush();
    Drained::Some
}

/// Empties the ring without explaining what it holds, and counts it: what
/// the final drain had no time for is reported, not dropped silently. Reading
/// a record without explaining it takes nanoseconds, so this catches up with
/// any storm; `UNREAD_COUNT_BUDGET` bounds it all the same.
fn count_unread(ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> u64 {
    let started = std::time::Instant::now();
    let mut unread = 0;
    while ring.next().is_some() {
        unread += 1;
        if unread % CLOCK_EVERY as u64 == 0 && started.elapsed() >= UNREAD_COUNT_BUDGET {
            break;
        }
    }
    unread
}

/// Losses are never silent: each increase is a `lost` record and a warning.
fn report_losses(
    lost_map: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    output: &mut Output,
    reported: &mut [u64; LOST_SLOTS as usize],
) -> Result<()> {
    let now = ebpf::lost_counts(lost_map);
    if now == *reported {
        return Ok(());
    }
    let delta: Vec<u64> = now
        .iter()
        .zip(reported.iter())
        .map(|(n, o)| n.saturating_sub(*o))
        .collect();
    let total: u64 = delta.iter().sum();
    tracing::warn!(
        lost = total,
        "{total} kernel records lost (ring buffer full); the explanations may be incomplete"
    );
    let mut delta_arr = [0u64; LOST_SLOTS as usize];
    delta_arr.copy_from_slice(&delta);
    output.record(
        "lost",
        Clock::now_mono_ns(),
        LostRecord {
            lost: total,
            by_kind: LostByKind::new(&delta_arr),
            total_since_start: now.iter().sum(),
        },
    )?;
    *reported = now;
    Ok(())
}

fn resolve_scope(args: &WatchArgs, attributor: &mut Attributor) -> Result<Scope> {
    if let Some(pid) = args.pid {
        let attribution = attributor
            .for_pid(pid)
            .with_context(|| format!("cannot read the cgroup of PID {pid}"))?;
        return Ok(Scope::for_process(pid, &attribution));
    }
    if let Some((namespace, name)) = &args.pod {
        if attributor.kubelet().pods_named(namespace, name).is_empty() {
            tracing::info!(
                "no pod {namespace}/{name} on this node yet (looked in {}): waiting for it",
                args.host.host_root.join("var/log/pods").display()
            );
        }
        return Ok(Scope::PodName {
            namespace: namespace.clone(),
            name: name.clone(),
        });
    }
    if let Some(id) = &args.container {
        return Ok(Scope::Container {
            id_prefix: id.clone(),
        });
    }
    Ok(Scope::Everything)
}

fn banner(
    args: &WatchArgs,
    scope: &Scope,
    hooks: &[HookStatus],
    tracefs: preflight::Tracefs,
    missing: &[(&str, &str)],
) {
    crate::stderr_line!(
        "tracer {} on {} (kernel {}): watching {}",
        env!("CARGO_PKG_VERSION"),
        preflight::node_name(),
        preflight::kernel_release(),
        args.signals.describe()
    );
    if tracefs == preflight::Tracefs::MountedNow {
        crate::stderr_line!(
            "  tracefs was not mounted: mounted it at {}",
            preflight::TRACEFS
        );
    }
    for h in hooks {
        match h.describe() {
            Ok(how) => crate::stderr_line!("  hook {:<12} {how}", h.hook.name),
            Err(e) => crate::stderr_line!(
                "  hook {:<12} OFF ({}): {e}",
                h.hook.name,
                h.hook.without_it
            ),
        }
    }
    if args.no_dns {
        crate::stderr_line!("  DNS lookups not followed (--no-dns)");
    }
    for (member, effect) in missing {
        crate::stderr_line!("  kernel BTF lacks {member}: {effect}");
    }
    crate::stderr_line!("  following: {scope}");
    if let Some(path) = &args.output {
        crate::stderr_line!(
            "  writing JSON lines to {} (rotated at {}, at most {} files)",
            path.display(),
            format_size(args.output_max_size),
            args.output_max_files
        );
    }
}

#[derive(Serialize)]
struct HookJson {
    name: &'static str,
    /// How it attached ("raw tracepoint signal_generate", "fentry out_of_memory"), or null.
    attached: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// When a fallback attached: why each better way was not used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fallback_because: Vec<String>,
    /// What the hook cannot tell on this kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded: Option<String>,
}

#[derive(Serialize)]
struct StartRecord {
    version: &'static str,
    kernel: String,
    signals: Vec<String>,
    scope: String,
    hooks: Vec<HookJson>,
}

impl StartRecord {
    fn new(args: &WatchArgs, scope: &Scope, hooks: &[HookStatus]) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            kernel: preflight::kernel_release(),
            signals: (1..=64)
                .filter(|s| args.signals.contains(*s))
                .map(|s| crate::signals::signal_name(s).into_owned())
                .collect(),
            scope: scope.to_string(),
            hooks: hooks
                .iter()
                .map(|h| HookJson {
                    name: h.hook.name,
                    attached: h.attached.as_ref().ok().map(|a| a.describe()),
                    error: h.attached.as_ref().err().cloned(),
                    fallback_because: h.passed_over.clone(),
                    degraded: h.degraded.clone(),
                })
                .collect(),
        }
    }
}

/// Lost records per kind, by the kinds' names.
#[derive(Serialize)]
#[serde(transparent)]
struct LostByKind(std::collections::BTreeMap<&'static str, u64>);

impl LostByKind {
    fn new(counts: &[u64; LOST_SLOTS as usize]) -> Self {
        Self(
            RecordKind::ALL
                .iter()
                .map(|kind| (kind.name(), counts[kind.lost_slot() as usize]))
                .collect(),
        )
    }
}

#[derive(Serialize)]
struct LostRecord {
    lost: u64,
    by_kind: LostByKind,
    total_since_start: u64,
}

#[derive(Serialize)]
struct StopRecord {
    reason: &'static str,
    events: u64,
    records: u64,
    lost: u64,
    lost_by_kind: LostByKind,
    malformed: u64,
    /// Records the kernel had sent that were still in the ring buffer when
    /// the stop's drain had had its time (under a storm): counted, not
    /// explained.
    unread: u64,
    /// Lines that could not be written to --output (still shown on the console).
    file_errors: u64,
    /// Events and records the console did not take (a closed pipe or
    /// terminal); the file still has them.
    console_errors: u64,
    /// What --metrics-address and --otlp-endpoint dropped (when either is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    export_drops: Option<crate::export::ExportDrops>,
}
