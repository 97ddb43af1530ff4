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
    kernel_btf,
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
    let resolved = kernel_btf::load_and_resolve(args.host.btf.as_deref())?;
    let tracefs = preflight::ensure_tracefs()?;
    if let Some(pid) = args.pid {
        preflight::check_pid(&args.host.procfs, pid)?;
    }
    let file = match &args.output {
        Some(path) => Some(
            JsonlWriter::create(path, args.output_max_size, args.output_max_files)
                .with_context(|| format!("cannot write --output {}", path.display()))?,
        ),
        None => None,
    };
    for skipped in &args.skip_hook {
        let known = ebpf::HOOKS
            .iter()
            .flat_map(|h| h.candidates)
            .any(|c| c.describe() == *skipped);
        if !known {
            bail!("--skip-hook {skipped:?}: no hook attaches that way (`tracer doctor` lists how each attaches, e.g. \"kprobe warn_alloc\")");
        }
    }
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

        let oom_format = Format::read(Path::new(preflight::TRACEFS), "oom", "mark_victim");
        let drops = crate::net::drops::DropSetup::new(
            &resolved.drop_reasons,
            resolved.offsets.kfree_skb_reason_arg != 0,
            &args.host.procfs,
        );
        let reasons = drops.reasons.clone();
        let lacking = reasons.missing(crate::net::drops::WATCHED);
        let mut config = ebpf::config(args.signals, oom_format.as_ref(), args.stacks);
        drops.configure(&mut config);
        config.iowait_threshold_ns = args.iowait_threshold;
        config.dns = u32::from(!args.no_dns);
        let hooks: Vec<ebpf::Hook> = ebpf::HOOKS
            .into_iter()
            .filter(|h| !(args.no_dns && h.name.starts_with("dns_")))
            .collect();
        let mut loaded = ebpf::load_skipping(&resolved.offsets, &config, &hooks, args.ring_buffer_size, &args.skip_hook)?;
        drops.mark(&mut loaded.hooks);
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
            eprintln!("  drop reasons this kernel does not have (not watched): {}", lacking.join(", "));
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
            eprintln!("  /dev/kmsg is not readable: OOM and page-allocation events go without the kernel log's corroboration");
        }
        let mut state = LoopState::default();
        if args.stacks {
            explainer.set_stacks(crate::stacks::KernelStacks::new(loaded.stacks));
        }
        match network {
            Some(Ok(network)) => explainer.set_network(network),
            Some(Err(e)) => eprintln!("  network namespaces cannot be listed ({e}): no packet-drop or DNS events"),
            None => {}
        }
        let lost_map = loaded.lost;
        // SAFETY: the ring buffer owns its map fd and AsyncFd owns the ring
        // buffer, so the fd stays open and the same while it is registered.
        let mut events = unsafe { AsyncFd::register(loaded.events) }.context("polling the ring buffer")?;
        // Often enough to release held events (an OOM's SIGKILL) promptly.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut ticks = 0u64;
        let stop_reason = loop {
            tokio::select! {
                guard = events.readable_mut() => {
                    let mut guard = guard.context("waiting for the ring buffer")?;
                    drain(guard.get_inner_mut(), &mut explainer, &mut output, &mut state)?;
                    guard.clear_ready();
                }
                _ = sigint.recv() => break "SIGINT",
                _ = sigterm.recv() => break "SIGTERM",
                _ = tick.tick() => {
                    // Frequent records, and IO stalls (reported from the
                    // scheduler's wake-up path), are submitted without a wake-up.
                    drain(events.get_mut(), &mut explainer, &mut output, &mut state)?;
                    flush(&mut explainer, Clock::now_mono_ns(), &mut output, &mut state)?;
                    ticks += 1;
                    if ticks.is_multiple_of(10) {
                        report_losses(&lost_map, &mut output, &mut state)?;
                    }
                }
            }
        };
        // What is already in the ring buffer is still reported.
        drain(events.get_mut(), &mut explainer, &mut output, &mut state)?;
        flush(&mut explainer, u64::MAX, &mut output, &mut state)?;
        report_losses(&lost_map, &mut output, &mut state)?;
        let summary = explainer.page_alloc_summary();
        if summary.failures > 0 {
            eprintln!(
                "tracer: {} page-allocation failures ({} tolerated by their callers); by order {:?}; by flags {:?}; by pod {:?}",
                summary.failures, summary.tolerated, summary.by_order, summary.by_gfp, summary.by_pod
            );
        }
        output.record("page_alloc_summary", Clock::now_mono_ns(), summary)?;
        if let Some(dns) = explainer.dns_stats() {
            if dns.queries > 0 {
                eprintln!(
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
            },
        )?;
        output.sync()?;
        eprintln!(
            "tracer: stopped on {stop_reason}: {} events reported from {} kernel records; {} records lost, {} malformed",
            output.events_written, state.records, lost_total, state.malformed
        );
        // Dropping the object detaches every program.
        drop(loaded.ebpf);
        Ok(())
    })
}

#[derive(Default)]
struct LoopState {
    /// Reused for the events each record completes.
    events: Vec<crate::event::Event>,
    records: u64,
    malformed: u64,
    lost: [u64; LOST_SLOTS as usize],
}

fn drain(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    explainer: &mut Explainer,
    output: &mut Output,
    state: &mut LoopState,
) -> Result<()> {
    while let Some(item) = ring.next() {
        state.records += 1;
        match records::decode(&item) {
            Ok(record) => {
                explainer.handle(&record, &mut state.events);
                for event in state.events.drain(..) {
                    output.event(&event)?;
                }
            }
            Err(e) => {
                if state.malformed == 0 {
                    eprintln!("tracer: warning: skipping a malformed kernel record ({e}); further ones are only counted");
                }
                state.malformed += 1;
            }
        }
    }
    Ok(())
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
        output.event(&event)?;
    }
    Ok(())
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
    eprintln!("tracer: warning: {total} kernel records lost (ring buffer full); the explanations may be incomplete");
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
            eprintln!(
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
    eprintln!(
        "tracer {} on {} (kernel {}): watching {}",
        env!("CARGO_PKG_VERSION"),
        preflight::node_name(),
        preflight::kernel_release(),
        args.signals.describe()
    );
    if tracefs == preflight::Tracefs::MountedNow {
        eprintln!(
            "  tracefs was not mounted: mounted it at {}",
            preflight::TRACEFS
        );
    }
    for h in hooks {
        match h.describe() {
            Ok(how) => eprintln!("  hook {:<12} {how}", h.hook.name),
            Err(e) => eprintln!(
                "  hook {:<12} OFF ({}): {e}",
                h.hook.name, h.hook.without_it
            ),
        }
    }
    if args.no_dns {
        eprintln!("  DNS lookups not followed (--no-dns)");
    }
    for (member, effect) in missing {
        eprintln!("  kernel BTF lacks {member}: {effect}");
    }
    eprintln!("  following: {scope}");
    if let Some(path) = &args.output {
        eprintln!(
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
    /// Lines that could not be written to --output (still shown on the console).
    file_errors: u64,
}
