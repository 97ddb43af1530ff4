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

    /// The BPF object's programs this way of attaching uses.
    pub fn programs(&self) -> impl Iterator<Item = &'static str> {
        let (first, second) = match *self {
            Self::RawTracepoint { program, .. }
            | Self::Tracepoint { program, .. }
            | Self::FEntry { program, .. }
            | Self::KProbe { program, .. }
            | Self::BtfTracepoint { program, .. } => (program, None),
            Self::KProbeAndReturn { entry, exit, .. } => (entry, Some(exit)),
        };
        std::iter::once(first).chain(second)
    }
}

/// Something tracer watches, and the ways to attach to it, best first: the
/// first that the kernel accepts is used. Each family lists its own.
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
    pub hooks: Vec<HookStatus>,
}

/// The ring buffer's size unless `--ring-buffer-size` says otherwise.
pub const DEFAULT_RING_BUFFER_SIZE: u32 = 4 << 20;

/// Loads the object and attaches `hooks` (normally every family's, see
/// [`crate::family`]); a hook that
/// fails is reported in [`Loaded::hooks`], the others still attach.
pub fn load(
    offsets: &KernelOffsets,
    config: &Config,
    hooks: &[Hook],
    ring_buffer_size: u32,
) -> Result<Loaded> {
    load_prepared(
        Preparation::start(),
        offsets,
        config,
        hooks,
        ring_buffer_size,
        &[],
    )
}

/// [`load`] with what `preparation` made ready meanwhile, passing over the
/// candidates `skip` names (as [`Attach::describe`] does): `watch
/// --skip-hook`.
pub fn load_prepared(
    preparation: Preparation,
    offsets: &KernelOffsets,
    config: &Config,
    hooks: &[Hook],
    ring_buffer_size: u32,
    skip: &[String],
) -> Result<Loaded> {
    raise_memlock_limit();
    let (loader, btf) = preparation.finish();
    let mut loader: EbpfLoader<'_> = loader;
    let mut ebpf = loader
        .override_global(names::OFFSETS, offsets, true)
        .override_global(names::CONFIG, config, true)
        .map_max_entries(names::EVENTS, ring_buffer_size)
        .load(OBJECT)
        .context("loading the BPF object")?;
    let hooks = hooks
        .iter()
        .map(|hook| {
            let (attached, passed_over) = attach_first(&mut ebpf, hook, offsets, skip, &btf);
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
    Ok(Loaded {
        ebpf,
        events,
        lost,
        stacks,
        hooks,
    })
}

/// What loading needs besides the offsets, made ready on two other threads
/// while start-up reads the kernel's BTF for the offsets on this one: aya's
/// loader, which parses the kernel's BTF when it is created (its API has no
/// way around that), and the kernel's BTF as aya reads it, which the fentry
/// and tp_btf programs are loaded against. The two parses are most of
/// start-up; both copies are held until the programs are loaded either way.
pub struct Preparation {
    loader: std::thread::JoinHandle<EbpfLoader<'static>>,
    btf: std::thread::JoinHandle<Result<Btf, String>>,
}

impl Preparation {
    pub fn start() -> Self {
        Self {
            loader: std::thread::spawn(EbpfLoader::new),
            btf: std::thread::spawn(parse_kernel_btf),
        }
    }

    /// The kernel's BTF is an error on a kernel without BTF in sysfs: the
    /// fentry and tp_btf programs are then refused with that reason (their
    /// fallbacks attach).
    fn finish(self) -> (EbpfLoader<'static>, Result<Btf, String>) {
        let loader = self.loader.join().unwrap_or_else(|_| EbpfLoader::new());
        let btf = self.btf.join().unwrap_or_else(|_| parse_kernel_btf());
        (loader, btf)
    }
}

fn parse_kernel_btf() -> Result<Btf, String> {
    Btf::from_sys_fs().map_err(|e| e.to_string())
}

/// Tries the hook's candidates in order; the first that suits the kernel
/// and attaches wins. Also returns why the ones before it were not used.
fn attach_first(
    ebpf: &mut Ebpf,
    hook: &Hook,
    offsets: &KernelOffsets,
    skip: &[String],
    btf: &Result<Btf, String>,
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
fn attach(ebpf: &mut Ebpf, candidate: &Attach, btf: &Result<Btf, String>) -> Result<(), String> {
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
                let btf = btf.as_ref().map_err(|e| failed(e))?;
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
                let btf = btf.as_ref().map_err(|e| failed(e))?;
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
    // The verifier ends with statistics (instructions processed, stack
    // depth, a line per subprogram on newer kernels, the time it took),
    // and newer kernels put a "Suggestion:" between its reason and them;
    // the reason is the last line before both.
    const STATISTICS: [&str; 5] = [
        "processed ",
        "verification time",
        "stack depth",
        "subprog ",
        "func#",
    ];
    let reason = match lines.iter().rposition(|l| *l == "Suggestion:") {
        Some(suggestion) => suggestion.saturating_sub(1),
        None => lines
            .iter()
            .rposition(|l| !STATISTICS.iter().any(|s| l.starts_with(s)))
            .unwrap_or(0),
    };
    let last = lines.len() - 1;
    if reason == 0 || reason == last {
        format!("{} | ... | {}", lines[0], lines[last])
    } else {
        format!(
            "{} | ... | {} | ... | {}",
            lines[0], lines[reason], lines[last]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_btf;

    /// A refusal names the verifier's reason, not only its statistics (a
    /// 7.x kernel ends its log with a line per subprogram).
    #[test]
    fn a_refusal_keeps_the_verifiers_reason() {
        let log = "refused: Verifier output: 0: R1=ctx() R10=fp0\n\
                   1: (79) r2 = *(u64 *)(r1 +0)\n\
                   17: R1 invalid mem access 'scalar'\n\
                   Suggestion:\n\
                   Pass a value with one of the accepted pointer or scalar types for this call.\n\
                   verification time 120 usec\n\
                   stack depth 64+0\n\
                   subprog 1 (memset) static insns_self 332 insns_total 332 stack 0\n\
                   processed 1360 insns (limit 1000000) max_states_per_insn 3";
        assert_eq!(
            one_line(log),
            "refused: Verifier output: 0: R1=ctx() R10=fp0 | ... | \
             17: R1 invalid mem access 'scalar' | ... | \
             processed 1360 insns (limit 1000000) max_states_per_insn 3"
        );
        assert_eq!(one_line("a\nb"), "a | b");
    }

    /// The names userspace uses for programs, maps and globals are checked
    /// against the embedded object itself, without root: a typo or a rename
    /// on one side fails here, not at the load on a node.
    #[test]
    fn the_object_has_every_program_map_and_global_userspace_names() {
        let mut object = aya_obj::Object::parse(OBJECT).expect("parsing the embedded BPF object");
        let mut missing = Vec::new();
        for hook in crate::family::all_hooks() {
            for program in hook.candidates.iter().flat_map(Attach::programs) {
                if !object.programs.contains_key(program) {
                    missing.push(format!("program {program} (hook {})", hook.name));
                }
            }
        }
        for map in names::MAPS {
            if !object.maps.contains_key(*map) {
                missing.push(format!("map {map}"));
            }
        }
        assert!(missing.is_empty(), "not in the BPF object: {missing:?}");

        // The globals must exist with the size userspace writes into them:
        // a struct changed on one side only would be caught here too.
        fn bytes_of<T: aya::Pod>(value: &T) -> &[u8] {
            // SAFETY: Pod types are plain data without padding holes.
            unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
        }
        let config = crate::family::Settings::nothing().config();
        let globals: std::collections::HashMap<&str, (&[u8], bool)> = [
            (names::OFFSETS, (bytes_of(&KernelOffsets::UNKNOWN), true)),
            (names::CONFIG, (bytes_of(&config), true)),
        ]
        .into();
        assert_eq!(
            globals.len(),
            names::GLOBALS.len(),
            "a global is not checked"
        );
        object
            .patch_map_data(globals)
            .expect("the object's globals as userspace writes them");
    }

    #[test]
    fn ring_buffer_sizes() {
        assert_eq!(parse_ring_buffer_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_ring_buffer_size("4096"), Ok(4096));
        assert!(parse_ring_buffer_size("3MiB").is_err());
        assert!(parse_ring_buffer_size("1024").is_err());
    }

    /// The running kernel's offsets, for tests that load the programs.
    fn this_kernel() -> kernel_btf::ResolvedOffsets {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test loads BPF programs: run it as root (`cargo xtask test`)"
        );
        let btf =
            kernel_btf::load(std::path::Path::new(kernel_btf::DEFAULT_BTF)).expect("kernel BTF");
        kernel_btf::resolve(&btf).expect("offsets")
    }

    /// On the real kernel: a hook the kernel lacks is reported as off with a
    /// one-line reason, and every other hook still attaches.
    #[test]
    fn a_missing_hook_disables_only_itself() {
        let kernel = this_kernel();
        let mut hooks: Vec<Hook> = crate::family::all_hooks().copied().collect();
        hooks[1].candidates = &[Attach::RawTracepoint {
            program: "sched_process_fork",
            group: "sched",
            tracepoint: "no_such_tracepoint",
        }];
        let config =
            crate::family::Settings::everything(&kernel, std::path::Path::new("/proc")).config();
        let loaded = load(&kernel.offsets, &config, &hooks, 4096).expect("load");
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
        let kernel = this_kernel();
        let mut config =
            crate::family::Settings::everything(&kernel, std::path::Path::new("/proc")).config();
        config.drop_reasons = [u64::MAX; tracer_common::DROP_REASON_WORDS];
        let hooks: Vec<Hook> = crate::family::all_hooks().copied().collect();
        let loaded = load(&kernel.offsets, &config, &hooks, 4096).expect("load");
        for name in ["packet_drop", "dns_sent", "dns_received"] {
            let status = loaded.hooks.iter().find(|h| h.hook.name == name).unwrap();
            assert!(status.attached.is_ok(), "{name}: {:?}", status.attached);
        }
    }
}
