//! `tracer watch`: checks, loads, attaches, then explains records until
//! SIGINT or SIGTERM, and on the way out drains, reports and detaches.

use std::{path::Path, time::Duration};

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
    host_paths, kernel_btf,
    output::{jsonl::JsonlWriter, Output},
    preflight,
    process::ProcessTable,
    records,
    scope::Scope,
    size::format_size,
    tracefs::Format,
};

/// The network family, with every namespace's conntrack counters read now.
fn network_family(
    args: &WatchArgs,
    reasons: crate::net::drops::DropReasons,
) -> std::io::Result<crate::net::explain::NetworkFamily> {
    let index = crate::netns::NetnsIndex::with_roots(
        &args.host.procfs,
        args.host.host_root.join("run/netns"),
    )?;
    Ok(crate::net::explain::NetworkFamily::new(reasons, index))
}

pub fn run(args: WatchArgs) -> Result<()> {
    // Everything that can be wrong with the input or the machine is checked
    // before anything is attached.
    preflight::check_privileges()?;
    host_paths::check(&args.host)?;
    if let Some(pid) = args.pid {
        host_paths::check_pid(&args.host.procfs, pid)?;
    }
    let resolved = kernel_btf::load_and_resolve(args.host.btf.as_deref())?;
    let tracefs = preflight::ensure_tracefs()?;
    let file = match &args.output {
        Some(path) => Some(
            JsonlWriter::create(path, args.output_max_size, args.output_max_files)
                .with_context(|| format!("cannot write --output {}", path.display()))?,
        ),
        None => None,
    };
    for hook in ebpf::HOOKS.iter().filter(|h| h.essential) {
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
    let mut processes = ProcessTable::new(&args.host.procfs);
    let scope = resolve_scope(&args, &mut attributor)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(async move {
        // Handlers first: a SIGTERM during start-up still ends in a clean stop.
        let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        // A closed terminal (ssh gone) stops tracer cleanly, stop record
        // and all; under nohup it keeps running, as nohup asks.
        let mut sighup = if sighup_ignored() {
            None
        } else {
            Some(signal(SignalKind::hangup()).context("installing the SIGHUP handler")?)
        };

        let oom_format = Format::read(Path::new(preflight::TRACEFS), "oom", "mark_victim");
        let reasons = crate::net::drops::DropReasons::new(&resolved.drop_reasons);
        let lacking = reasons.missing(crate::net::drops::WATCHED);
        let mut config = ebpf::config(args.signals, oom_format.as_ref(), args.stacks);
        config.drop_reasons = reasons.mask(crate::net::drops::WATCHED);
        config.iowait_threshold_ns = args.iowait_threshold;
        config.dns = u32::from(!args.no_dns);
        let hooks: Vec<ebpf::Hook> = ebpf::HOOKS
            .into_iter()
            .filter(|h| !(args.no_dns && h.name.starts_with("dns_")))
            .collect();
        let loaded = ebpf::load(&resolved.offsets, &config, &hooks, args.ring_buffer_size)?;
        if !loaded.hooks.iter().any(|h| h.hook.essential && h.attached.is_ok()) {
            let reasons: Vec<_> = loaded.hooks.iter().filter_map(|h| h.attached.as_ref().err().cloned()).collect();
            bail!("nothing to watch: {}", reasons.join("; "));
        }
        // Scan /proc only after the lifecycle hooks are on: nothing falls between.
        processes.scan(&mut attributor).context("scanning /proc")?;

        // Every namespace's counters are read before tracer says it is
        // watching: what they count from the start record on is reported.
        let network = loaded
            .hooks
            .iter()
            .any(|h| h.hook.name.starts_with("dns_") || h.hook.name == "packet_drop")
            .then(|| {
                network_family(&args, reasons).map(|mut network| {
                    network.set_clash_hook(loaded.hooks.iter().any(|h| h.hook.name == "conntrack_clash" && h.attached.is_ok()));
                    network
                })
            });

        let clock = Clock::new();
        let mut output = Output::new(args.format, file, clock, preflight::node_name());
        banner(&args, &scope, &loaded.hooks, tracefs, &resolved.missing);
        if !lacking.is_empty() {
            crate::stderr_line!("  drop reasons this kernel does not have (not watched): {}", lacking.join(", "));
        }
        output.record("start", Clock::now_mono_ns(), StartRecord::new(&args, &scope, &loaded.hooks))?;

        let mut explainer = Explainer::new(
            processes,
            attributor,
            scope,
            args.signals,
            args.host.procfs.clone(),
            oom_format,
        );
        if !explainer.kernel_log_readable() {
            crate::stderr_line!("  /dev/kmsg is not readable: OOM and page-allocation events go without the kernel log's corroboration");
        }
        let mut state = LoopState::default();
        if args.stacks {
            explainer.set_stacks(crate::stacks::KernelStacks::new(loaded.stacks));
        }
        match network {
            Some(Ok(network)) => explainer.set_network(network),
            Some(Err(e)) => crate::stderr_line!("  network namespaces cannot be listed ({e}): no packet-drop or DNS events"),
            None => {}
        }
        let lost_map = loaded.lost;
        // SAFETY: the ring buffer owns its map fd and AsyncFd owns the ring
        // buffer, so the fd stays open and the same while it is registered.
        let mut events = unsafe { AsyncFd::register(loaded.events) }.context("polling the ring buffer")?;
        // Often enough to release held events (an OOM's SIGKILL) promptly.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut ticks = 0u64;
        let mut backlog = false;
        let stop_reason = loop {
            tokio::select! {
                // Signals and the tick before records: under a storm records
                // are always there, and a stop, a loss report or a held
                // event must not wait for the storm to end.
                biased;
                _ = sigint.recv() => break "SIGINT",
                _ = sigterm.recv() => break "SIGTERM",
                Some(()) = async { sighup.as_mut()?.recv().await } => break "SIGHUP",
                _ = tick.tick() => {
                    // Frequent records, and IO stalls (reported from the
                    // scheduler's wake-up path), are submitted without a
                    // wake-up: the tick finds them, and what one turn leaves
                    // is the backlog's.
                    backlog = drain(events.get_mut(), &mut explainer, &mut output, &mut state)? == Drained::Some;
                    flush(&mut explainer, Clock::now_mono_ns(), &mut output, &mut state)?;
                    ticks += 1;
                    if ticks.is_multiple_of(10) {
                        report_losses(&lost_map, &mut output, &mut state)?;
                    }
                }
                guard = events.readable_mut() => {
                    let mut guard = guard.context("waiting for the ring buffer")?;
                    guard.clear_ready();
                    backlog = drain(guard.get_inner_mut(), &mut explainer, &mut output, &mut state)? == Drained::Some;
                }
                // The ring had more than one turn's worth: the next turn,
                // once the runtime has looked at signals and timers (the
                // yield lets it). The kernel wakes tracer only when it has
                // caught up, so the backlog is followed here, not by waiting.
                _ = tokio::task::yield_now(), if backlog => {
                    backlog = drain(events.get_mut(), &mut explainer, &mut output, &mut state)? == Drained::Some;
                }
            }
        };
        // What is already in the ring buffer is still reported, within a
        // bound: under a storm the ring never empties, and the stop must
        // not wait for the storm to end.
        let deadline = std::time::Instant::now() + FINAL_DRAIN;
        while drain(events.get_mut(), &mut explainer, &mut output, &mut state)? == Drained::Some
            && std::time::Instant::now() < deadline
        {}
        flush(&mut explainer, u64::MAX, &mut output, &mut state)?;
        report_losses(&lost_map, &mut output, &mut state)?;
        let summary = explainer.page_alloc_summary();
        if summary.failures > 0 {
            crate::stderr_line!(
                "tracer: {} page-allocation failures ({} tolerated by their callers); by order {:?}; by flags {:?}; by pod {:?}",
                summary.failures, summary.tolerated, summary.by_order, summary.by_gfp, summary.by_pod
            );
        }
        output.record("page_alloc_summary", Clock::now_mono_ns(), summary)?;
        if let Some(dns) = explainer.dns_stats() {
            if dns.queries > 0 {
                crate::stderr_line!(
                    "tracer: {} DNS queries: {} answered ({} slow, {} failed), {} unanswered, {} retries, {} linked to drops; {} forgotten to bound memory",
                    dns.queries, dns.answered, dns.slow, dns.failed, dns.unanswered, dns.retries, dns.drops_linked, dns.evicted
                );
            }
            output.record("dns_summary", Clock::now_mono_ns(), dns)?;
        }
        let lost_total: u64 = state.lost.iter().sum();
        output.record(
            "stop",
            Clock::now_mono_ns(),
            StopRecord {
                reason: stop_reason,
                events: output.events_written,
                records: state.records,
                lost: lost_total,
                lost_by_kind: LostByKind::new(&state.lost),
                malformed: state.malformed,
                file_errors: output.file_errors,
                console_errors: output.console_errors,
            },
        )?;
        output.sync()?;
        crate::stderr_line!(
            "tracer: stopped on {stop_reason}: {} events reported from {} kernel records; {} records lost, {} malformed",
            output.events_written, state.records, lost_total, state.malformed
        );
        // Dropping the object detaches every program.
        drop(loaded.ebpf);
        Ok(())
    })
}

/// Whether SIGHUP was ignored when tracer started, as `nohup` leaves it.
fn sighup_ignored() -> bool {
    // SAFETY: with a null new action, sigaction only writes the current one
    // into the zeroed struct it is given.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    let read = unsafe { libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current) };
    read == 0 && current.sa_sigaction == libc::SIG_IGN
}

#[derive(Default)]
struct LoopState {
    /// Reused for the events each record completes.
    events: Vec<crate::event::Event>,
    records: u64,
    malformed: u64,
    lost: [u64; LOST_SLOTS as usize],
    floods: crate::flood::FloodGate,
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

#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// The ring is empty.
    All,
    /// The turn is over and the ring may hold more.
    Some,
}

/// Handles the ring's records for one turn (see `DRAIN_BATCH`).
fn drain(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    explainer: &mut Explainer,
    output: &mut Output,
    state: &mut LoopState,
) -> Result<Drained> {
    let started = std::time::Instant::now();
    for n in 0..DRAIN_BATCH {
        if n % CLOCK_EVERY == CLOCK_EVERY - 1 && started.elapsed() >= DRAIN_BUDGET {
            break;
        }
        let Some(item) = ring.next() else {
            output.flush();
            return Ok(Drained::All);
        };
        state.records += 1;
        match records::decode(&item) {
            Ok(record) => {
                explainer.handle(&record, &mut state.events);
                for event in state.events.drain(..) {
                    if state.floods.admit(&event) {
                        output.event(&event)?;
                    }
                }
            }
            Err(e) => {
                if state.malformed == 0 {
                    crate::stderr_line!("tracer: warning: skipping a malformed kernel record ({e}); further ones are only counted");
                }
                state.malformed += 1;
            }
        }
    }
    output.flush();
    Ok(Drained::Some)
}

/// Releases the events the explainer held back once their wait is over.
fn flush(
    explainer: &mut Explainer,
    now_ns: u64,
    output: &mut Output,
    state: &mut LoopState,
) -> Result<()> {
    explainer.flush(now_ns, &mut state.events);
    for event in state.events.drain(..) {
        if state.floods.admit(&event) {
            output.event(&event)?;
        }
    }
    let mut result = Ok(());
    state.floods.report(now_ns, |flood| {
        if result.is_ok() {
            result = output.flood(&flood);
        }
    });
    output.flush();
    result
}

/// Losses are never silent: each increase is a `lost` record and a warning.
fn report_losses(
    lost_map: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    output: &mut Output,
    state: &mut LoopState,
) -> Result<()> {
    let now = ebpf::lost_counts(lost_map);
    if now == state.lost {
        return Ok(());
    }
    let delta: Vec<u64> = now
        .iter()
        .zip(state.lost.iter())
        .map(|(n, o)| n.saturating_sub(*o))
        .collect();
    let total: u64 = delta.iter().sum();
    crate::stderr_line!("tracer: warning: {total} kernel records lost (ring buffer full); the explanations may be incomplete");
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
    state.lost = now;
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
            crate::stderr_line!(
                "tracer: note: no pod {namespace}/{name} on this node yet (looked in {}): waiting for it",
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
        match &h.attached {
            Ok(attach) => crate::stderr_line!("  hook {:<12} {}", h.hook.name, attach.describe()),
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
    /// Lines that could not be written to --output (still shown on the console).
    file_errors: u64,
    /// Events and records the console did not take (a closed pipe or
    /// terminal); the file still has them.
    console_errors: u64,
}
