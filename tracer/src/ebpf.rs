//! Loads the embedded BPF object, hands it the kernel offsets and settings,
//! and attaches each program to its hook. A hook the kernel lacks disables
//! only what needs it; the start-up banner and `tracer doctor` say which.

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{BtfTracePoint, FEntry, KProbe, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{names, Config, KernelOffsets, LOST_SLOTS};

/// The object built from `tracer-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// One way of attaching a program to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A raw tracepoint: the tracepoint's arguments as the kernel passes them.
    /// `group` is its tracefs event group, to check that the kernel has it.
    RawTracepoint {
        program: &'static str,
        group: &'static str,
        tracepoint: &'static str,
    },
    /// A classic tracepoint: the trace record, decoded with its format.
    Tracepoint {
        program: &'static str,
        group: &'static str,
        name: &'static str,
    },
    /// fentry on a kernel function (needs the kernel's BTF and a policy allowing it).
    FEntry {
        program: &'static str,
        function: &'static str,
    },
    /// kprobe on a kernel function (needs CONFIG_KPROBES).
    KProbe {
        program: &'static str,
        function: &'static str,
    },
    /// kprobe and kretprobe on one kernel function: its arguments at entry,
    /// its return value at exit. Both attach or neither is used.
    KProbeAndReturn {
        entry: &'static str,
        exit: &'static str,
        function: &'static str,
    },
    /// A BTF-typed raw tracepoint (tp_btf): its arguments as typed kernel
    /// pointers, whose fields a program reads with plain loads.
    BtfTracepoint {
        program: &'static str,
        tracepoint: &'static str,
    },
}

impl Attach {
    /// "raw tracepoint signal_generate", "fentry out_of_memory".
    pub fn describe(&self) -> String {
        match self {
            Self::RawTracepoint {
                tracepoint,
                program,
                ..
            } if program != tracepoint => {
                format!("raw tracepoint {tracepoint} (program {program})")
            }
            Self::RawTracepoint { tracepoint, .. } => format!("raw tracepoint {tracepoint}"),
            Self::Tracepoint { group, name, .. } => format!("tracepoint {group}:{name}"),
            Self::FEntry { function, .. } => format!("fentry {function}"),
            Self::KProbe { function, .. } => format!("kprobe {function}"),
            Self::KProbeAndReturn { function, .. } => format!("kprobe+kretprobe {function}"),
            Self::BtfTracepoint { tracepoint, .. } => format!("tp_btf {tracepoint}"),
        }
    }
}

/// Something tracer watches, and the ways to attach to it, best first: the
/// first that the kernel accepts is used.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    pub name: &'static str,
    pub candidates: &'static [Attach],
    /// What the user loses when none attaches.
    pub without_it: &'static str,
    /// Whether tracer has anything to say without it.
    pub essential: bool,
}

impl Hook {
    /// The tracefs event of a tracepoint hook, to check that the kernel has it.
    pub fn tracepoint(&self) -> Option<(&'static str, &'static str)> {
        self.candidates.iter().find_map(|c| match *c {
            Attach::RawTracepoint {
                group, tracepoint, ..
            } => Some((group, tracepoint)),
            Attach::Tracepoint { group, name, .. } => Some((group, name)),
            _ => None,
        })
    }
}

pub const HOOKS: [Hook; 16] = [
    Hook {
        name: "signal",
        candidates: &[Attach::RawTracepoint {
            program: "signal_generate",
            group: "signal",
            tracepoint: "signal_generate",
        }],
        without_it: "no signal events",
        essential: true,
    },
    Hook {
        name: "fork",
        candidates: &[Attach::RawTracepoint {
            program: "sched_process_fork",
            group: "sched",
            tracepoint: "sched_process_fork",
        }],
        without_it: "processes started after tracer are attributed late or not at all",
        essential: false,
    },
    Hook {
        name: "exec",
        candidates: &[Attach::RawTracepoint {
            program: "sched_process_exec",
            group: "sched",
            tracepoint: "sched_process_exec",
        }],
        without_it: "processes that exec after tracer started keep their old name and cgroup",
        essential: false,
    },
    Hook {
        name: "exit",
        candidates: &[Attach::RawTracepoint {
            program: "sched_process_exit",
            group: "sched",
            tracepoint: "sched_process_exit",
        }],
        without_it: "no exit records: exit codes after a signal are not reported",
        essential: false,
    },
    Hook {
        name: "oom",
        candidates: &[Attach::Tracepoint {
            program: "mark_victim",
            group: "oom",
            name: "mark_victim",
        }],
        without_it: "no OOM kill events",
        essential: false,
    },
    Hook {
        name: "oom_control",
        candidates: &[
            Attach::FEntry {
                program: "out_of_memory_fentry",
                function: "out_of_memory",
            },
            Attach::KProbe {
                program: "out_of_memory_kprobe",
                function: "out_of_memory",
            },
        ],
        without_it:
            "OOM scope and memory cgroup from the memory counters and the kernel log instead",
        essential: false,
    },
    Hook {
        name: "page_alloc",
        // The failure path itself where kprobes are allowed: nothing per
        // page allocated. mm_page_alloc also sees the failures of
        // __GFP_ACCOUNT allocations whose memory cgroup refused the charge
        // (they never reach the slow path), at one dispatch per page.
        candidates: &[
            Attach::KProbe {
                program: "warn_alloc",
                function: "warn_alloc",
            },
            Attach::RawTracepoint {
                program: "mm_page_alloc",
                group: "kmem",
                tracepoint: "mm_page_alloc",
            },
        ],
        without_it: "no page-allocation failure events",
        essential: false,
    },
    Hook {
        name: "packet_drop",
        candidates: &[Attach::RawTracepoint {
            program: "kfree_skb",
            group: "skb",
            tracepoint: "kfree_skb",
        }],
        without_it: "no packet-drop events (conntrack, neighbour table, listen queue)",
        essential: false,
    },
    Hook {
        name: "dns_sent",
        candidates: &[Attach::RawTracepoint {
            program: "net_dev_queue",
            group: "net",
            tracepoint: "net_dev_queue",
        }],
        without_it: "no DNS queries: slow or unanswered lookups are not reported",
        essential: false,
    },
    Hook {
        name: "dns_received",
        candidates: &[Attach::RawTracepoint {
            program: "netif_receive_skb",
            group: "net",
            tracepoint: "netif_receive_skb",
        }],
        without_it: "no DNS responses: every lookup looks unanswered",
        essential: false,
    },
    Hook {
        name: "conntrack_clash",
        candidates: &[Attach::KProbeAndReturn {
            entry: "nf_ct_resolve_clash",
            exit: "nf_ct_resolve_clash_return",
            function: "nf_ct_resolve_clash",
        }],
        without_it: "conntrack clashes told apart by the namespace's counters instead",
        essential: false,
    },
    Hook {
        name: "io_wait",
        candidates: &[
            Attach::BtfTracepoint {
                program: "sched_switch_btf",
                tracepoint: "sched_switch",
            },
            Attach::RawTracepoint {
                program: "sched_switch",
                group: "sched",
                tracepoint: "sched_switch",
            },
        ],
        without_it: "no IO wait accounting and no IO stall events",
        essential: false,
    },
    Hook {
        name: "hung_task",
        candidates: &[Attach::RawTracepoint {
            program: "sched_process_hang",
            group: "sched",
            tracepoint: "sched_process_hang",
        }],
        without_it: "no hung-task events (the kernel may lack CONFIG_DETECT_HUNG_TASK)",
        essential: false,
    },
    Hook {
        name: "io_submit",
        candidates: &[
            Attach::RawTracepoint {
                program: "block_bio_queue",
                group: "block",
                tracepoint: "block_bio_queue",
            },
            Attach::RawTracepoint {
                program: "block_bio_queue_q_first",
                group: "block",
                tracepoint: "block_bio_queue",
            },
        ],
        without_it: "IO stalls name their device only through their cgroup's IO",
        essential: false,
    },
    Hook {
        name: "io_issue",
        candidates: &[
            Attach::RawTracepoint {
                program: "block_rq_issue",
                group: "block",
                tracepoint: "block_rq_issue",
            },
            Attach::RawTracepoint {
                program: "block_rq_issue_q_first",
                group: "block",
                tracepoint: "block_rq_issue",
            },
        ],
        without_it: "no block IO bytes per cgroup and no IO latency per device",
        essential: false,
    },
    Hook {
        name: "io_complete",
        candidates: &[Attach::RawTracepoint {
            program: "block_rq_complete",
            group: "block",
            tracepoint: "block_rq_complete",
        }],
        without_it: "no block IO latency per device",
        essential: false,
    },
];

/// `--iowait-threshold` unless given: a wait this long is felt by users.
pub const DEFAULT_IOWAIT_THRESHOLD_NS: u64 = 100_000_000;

/// The settings the programs read: the signal set, and where the fields of
/// the OOM record are on this kernel (from its tracefs format).
pub fn config(
    signals: crate::signals::SignalSet,
    oom_format: Option<&crate::tracefs::Format>,
    page_alloc_stacks: bool,
) -> Config {
    let fixed = oom_format.map(|f| f.fixed_size()).unwrap_or(0);
    Config {
        signal_mask: signals.bits(),
        // Rounded up to whole 8-byte words, as the program copies them.
        oom_raw_size: (fixed.div_ceil(8) * 8).min(tracer_common::OOM_RAW_MAX) as u32,
        oom_comm_loc: oom_format
            .and_then(|f| f.field("comm"))
            .filter(|f| f.data_loc)
            .map(|f| f.offset as u32)
            .unwrap_or(tracer_common::OFFSET_UNKNOWN),
        page_alloc_stacks: page_alloc_stacks as u32,
        dns: 0,
        drop_reasons: [0; tracer_common::DROP_REASON_WORDS],
        iowait_threshold_ns: DEFAULT_IOWAIT_THRESHOLD_NS,
        iowait_stacks: page_alloc_stacks as u32,
        _pad_iowait: 0,
        drop_caller_start: 0,
        drop_caller_end: 0,
        drop_caller_reason: 0,
        _pad_drop_caller: 0,
    }
}

#[derive(Debug)]
pub struct HookStatus {
    pub hook: Hook,
    /// The way it attached, or why none did (one line per candidate tried).
    pub attached: Result<Attach, String>,
    /// When a fallback attached: why each better candidate was not used.
    pub passed_over: Vec<String>,
    /// What the attached program cannot do on this kernel, if anything.
    pub degraded: Option<String>,
}

impl HookStatus {
    /// "raw tracepoint kfree_skb", with why a fallback and what is degraded.
    pub fn describe(&self) -> Result<String, String> {
        let attach = self.attached.as_ref().map_err(Clone::clone)?;
        let mut text = attach.describe();
        if !self.passed_over.is_empty() {
            text.push_str(&format!(" (fallback: {})", self.passed_over.join("; ")));
        }
        if let Some(degraded) = &self.degraded {
            text.push_str(&format!(" [degraded: {degraded}]"));
        }
        Ok(text)
    }
}

/// Why a candidate, which might well attach, would read the wrong
/// arguments on this kernel: raw tracepoints whose arguments changed.
pub fn unsuited(candidate: &Attach, offsets: &KernelOffsets) -> Option<String> {
    let Attach::RawTracepoint { program, .. } = *candidate else {
        return None;
    };
    let queue_first = |arg: u32| arg == 1;
    let (q_first, tracepoint) = match program {
        "block_bio_queue" | "block_bio_queue_q_first" => (
            queue_first(offsets.block_bio_queue_bio_arg),
            "block_bio_queue",
        ),
        "block_rq_issue" | "block_rq_issue_q_first" => {
            (queue_first(offsets.block_rq_issue_rq_arg), "block_rq_issue")
        }
        _ => return None,
    };
    match (program.ends_with("_q_first"), q_first) {
        (false, true) => Some(format!(
            "{}: this kernel's {tracepoint} passes the request queue first (before 5.11)",
            candidate.describe()
        )),
        (true, false) => Some(format!(
            "{}: this kernel's {tracepoint} passes no request queue (5.11 and later)",
            candidate.describe()
        )),
        _ => None,
    }
}

pub struct Loaded {
    /// Keeps the programs attached; dropping it detaches them all.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    pub stacks: StackTraceMap<MapData>,
    pub io: crate::iowait::IoMaps,
    pub hooks: Vec<HookStatus>,
}

/// The ring buffer's size unless `--ring-buffer-size` says otherwise.
pub const DEFAULT_RING_BUFFER_SIZE: u32 = 4 << 20;

/// Loads the object and attaches `hooks` (normally [`HOOKS`]); a hook that
/// fails is reported in [`Loaded::hooks`], the others still attach.
pub fn load(
    offsets: &KernelOffsets,
    config: &Config,
    hooks: &[Hook],
    ring_buffer_size: u32,
) -> Result<Loaded> {
    load_skipping(offsets, config, hooks, ring_buffer_size, &[])
}

/// [`load`], passing over the candidates `skip` names (as
/// [`Attach::describe`] does): `watch --skip-hook`.
pub fn load_skipping(
    offsets: &KernelOffsets,
    config: &Config,
    hooks: &[Hook],
    ring_buffer_size: u32,
    skip: &[String],
) -> Result<Loaded> {
    raise_memlock_limit();
    let mut ebpf = EbpfLoader::new()
        .override_global(names::OFFSETS, offsets, true)
        .override_global(names::CONFIG, config, true)
        .map_max_entries(names::EVENTS, ring_buffer_size)
        .load(OBJECT)
        .context("loading the BPF object")?;
    let mut btf = LazyBtf::default();
    let hooks = hooks
        .iter()
        .map(|hook| {
            let (attached, passed_over) = attach_first(&mut ebpf, hook, offsets, skip, &mut btf);
            HookStatus {
                hook: *hook,
                attached,
                passed_over,
                degraded: None,
            }
        })
        .collect();
    let events = RingBuf::try_from(ebpf.take_map(names::EVENTS).context("map EVENTS missing")?)
        .context("map EVENTS")?;
    let lost = PerCpuArray::try_from(ebpf.take_map(names::LOST).context("map LOST missing")?)
        .context("map LOST")?;
    let stacks =
        StackTraceMap::try_from(ebpf.take_map(names::STACKS).context("map STACKS missing")?)
            .context("map STACKS")?;
    let io = crate::iowait::IoMaps::take(&mut ebpf)?;
    Ok(Loaded {
        ebpf,
        events,
        lost,
        stacks,
        io,
        hooks,
    })
}

/// The kernel's BTF as aya reads it, parsed at the first fentry or tp_btf
/// program (they are loaded against it) and then shared by the others: the
/// file is megabytes, and most kernels need it for none or for several.
#[derive(Default)]
struct LazyBtf(Option<Btf>);

impl LazyBtf {
    fn get(&mut self) -> Result<&Btf, String> {
        if self.0.is_none() {
            self.0 = Some(Btf::from_sys_fs().map_err(|e| e.to_string())?);
        }
        Ok(self.0.as_ref().expect("parsed above"))
    }
}

/// Tries the hook's candidates in order; the first that suits the kernel
/// and attaches wins. Also returns why the ones before it were not used.
fn attach_first(
    ebpf: &mut Ebpf,
    hook: &Hook,
    offsets: &KernelOffsets,
    skip: &[String],
    btf: &mut LazyBtf,
) -> (Result<Attach, String>, Vec<String>) {
    let mut reasons = Vec::new();
    for candidate in hook.candidates {
        let what = candidate.describe();
        if skip.contains(&what) {
            reasons.push(format!("{what}: skipped (--skip-hook)"));
            continue;
        }
        if let Some(why) = unsuited(candidate, offsets) {
            reasons.push(why);
            continue;
        }
        match attach(ebpf, candidate, btf) {
            Ok(()) => return (Ok(*candidate), reasons),
            Err(e) => reasons.push(e),
        }
    }
    (Err(reasons.join("; ")), Vec::new())
}

/// Loads the candidate's program and attaches it. Errors are flattened to
/// one line, with the verifier's last words when the kernel refused it.
fn attach(ebpf: &mut Ebpf, candidate: &Attach, btf: &mut LazyBtf) -> Result<(), String> {
    let program = match *candidate {
        Attach::RawTracepoint { program, .. }
        | Attach::Tracepoint { program, .. }
        | Attach::FEntry { program, .. }
        | Attach::KProbe { program, .. }
        | Attach::BtfTracepoint { program, .. } => program,
        Attach::KProbeAndReturn {
            entry,
            exit,
            function,
        } => {
            // The return probe first: an entry without its return would
            // leave the per-CPU slot set for nothing.
            attach(
                ebpf,
                &Attach::KProbe {
                    program: exit,
                    function,
                },
                btf,
            )?;
            return attach(
                ebpf,
                &Attach::KProbe {
                    program: entry,
                    function,
                },
                btf,
            )
            .inspect_err(|_| {
                if let Some(Ok(prog)) = ebpf.program_mut(exit).map(<&mut KProbe>::try_from) {
                    let _ = prog.unload();
                }
            });
        }
    };
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} is not in the BPF object"))?;
    let what = candidate.describe();
    let refused = |e: &dyn std::fmt::Display| {
        one_line(&format!("{what}: kernel refused program {program}: {e}"))
    };
    let failed = |e: &dyn std::fmt::Display| one_line(&format!("{what}: cannot attach: {e}"));
    let wrong = |e: &dyn std::fmt::Display| format!("program {program}: {e}");
    match *candidate {
        Attach::RawTracepoint { tracepoint, .. } => {
            let prog: &mut RawTracePoint = prog.try_into().map_err(|e| wrong(&e))?;
            if prog.fd().is_err() {
                prog.load().map_err(|e| refused(&e))?;
            }
            prog.attach(tracepoint).map(drop).map_err(|e| failed(&e))
        }
        Attach::Tracepoint { group, name, .. } => {
            let prog: &mut TracePoint = prog.try_into().map_err(|e| wrong(&e))?;
            if prog.fd().is_err() {
                prog.load().map_err(|e| refused(&e))?;
            }
            prog.attach(group, name).map(drop).map_err(|e| failed(&e))
        }
        Attach::FEntry { function, .. } => {
            let prog: &mut FEntry = prog.try_into().map_err(|e| wrong(&e))?;
            if prog.fd().is_err() {
                let btf = btf.get().map_err(|e| failed(&e))?;
                prog.load(function, btf).map_err(|e| refused(&e))?;
            }
            prog.attach().map(drop).map_err(|e| failed(&e))
        }
        Attach::KProbe { function, .. } => {
            // aya names only the file it could not read.
            if !std::path::Path::new(KPROBE_PMU).exists() {
                return Err(format!(
                    "{what}: this kernel has no kprobes ({KPROBE_PMU} is missing: CONFIG_KPROBES unset)"
                ));
            }
            let prog: &mut KProbe = prog.try_into().map_err(|e| wrong(&e))?;
            if prog.fd().is_err() {
                prog.load().map_err(|e| refused(&e))?;
            }
            prog.attach(function, 0).map(drop).map_err(|e| failed(&e))
        }
        Attach::KProbeAndReturn { .. } => unreachable!("attached as two kprobes above"),
        Attach::BtfTracepoint { tracepoint, .. } => {
            let prog: &mut BtfTracePoint = prog.try_into().map_err(|e| wrong(&e))?;
            if prog.fd().is_err() {
                let btf = btf.get().map_err(|e| failed(&e))?;
                prog.load(tracepoint, btf).map_err(|e| refused(&e))?;
            }
            prog.attach().map(drop).map_err(|e| failed(&e))
        }
    }
}

/// The kprobe event source: present where the kernel has kprobes.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

/// Sum over CPUs of the records each kind could not fit into the ring buffer.
pub fn lost_counts(lost: &PerCpuArray<MapData, u64>) -> [u64; LOST_SLOTS as usize] {
    let mut totals = [0u64; LOST_SLOTS as usize];
    for (slot, total) in totals.iter_mut().enumerate() {
        if let Ok(values) = lost.get(&(slot as u32), 0) {
            *total = values.iter().sum();
        }
    }
    totals
}

/// `--ring-buffer-size`: the kernel wants a power of two, in whole pages.
pub fn parse_ring_buffer_size(s: &str) -> Result<u32, String> {
    let bytes = crate::size::parse_size(s)?;
    let page = 4096;
    if bytes < page || !bytes.is_power_of_two() || bytes > 1 << 30 {
        return Err(format!(
            "{s}: the ring buffer size must be a power of two between 4KiB and 1GiB"
        ));
    }
    Ok(bytes as u32)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer; failure only matters on old
    // kernels, where the load error that follows explains itself.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

/// Verifier logs run to thousands of lines; keep the end, where the reason is.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() <= 3 {
        return lines.join(" | ");
    }
    format!(
        "{} | ... | {}",
        lines[0],
        lines[lines.len() - 2..].join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_btf;

    #[test]
    fn ring_buffer_sizes() {
        assert_eq!(parse_ring_buffer_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_ring_buffer_size("4096"), Ok(4096));
        assert!(parse_ring_buffer_size("3MiB").is_err());
        assert!(parse_ring_buffer_size("1024").is_err());
    }

    /// The running kernel's offsets, for tests that load the programs.
    fn this_kernel_offsets() -> KernelOffsets {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test loads BPF programs: run it as root (`cargo xtask test`)"
        );
        let btf =
            kernel_btf::load(std::path::Path::new(kernel_btf::DEFAULT_BTF)).expect("kernel BTF");
        kernel_btf::resolve(&btf).expect("offsets").offsets
    }

    /// On the real kernel: a hook the kernel lacks is reported as off with a
    /// one-line reason, and every other hook still attaches.
    #[test]
    fn a_missing_hook_disables_only_itself() {
        let offsets = this_kernel_offsets();
        let mut hooks = HOOKS.to_vec();
        hooks[1].candidates = &[Attach::RawTracepoint {
            program: "sched_process_fork",
            group: "sched",
            tracepoint: "no_such_tracepoint",
        }];
        let config = config(crate::signals::SignalSet::all(), None, false);
        let loaded = load(&offsets, &config, &hooks, 4096).expect("load");
        let error = loaded.hooks[1]
            .attached
            .as_ref()
            .expect_err("bogus hook must fail");
        assert!(error.contains("no_such_tracepoint"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        for status in loaded
            .hooks
            .iter()
            .filter(|h| h.hook.essential || h.hook.name == "exec" || h.hook.name == "exit")
        {
            assert!(
                status.attached.is_ok(),
                "hook {} {:?}",
                status.hook.name,
                status.attached
            );
        }
    }

    /// The packet programs pass the verifier with everything switched on
    /// (the settings are constants to the verifier: with DNS off it would
    /// not even look at that code).
    #[test]
    fn packet_programs_load_with_dns_and_every_drop_reason_on() {
        let offsets = this_kernel_offsets();
        let mut config = config(crate::signals::SignalSet::all(), None, false);
        config.dns = 1;
        config.drop_reasons = [u64::MAX; tracer_common::DROP_REASON_WORDS];
        let loaded = load(&offsets, &config, &HOOKS, 4096).expect("load");
        for name in ["packet_drop", "dns_sent", "dns_received"] {
            let status = loaded.hooks.iter().find(|h| h.hook.name == name).unwrap();
            assert!(status.attached.is_ok(), "{name}: {:?}", status.attached);
        }
    }
}
