//! Loads the embedded BPF object, hands it the kernel offsets and settings,
//! and attaches each program to its hook. A hook the kernel lacks disables
//! only what needs it; the start-up banner and `tracer doctor` say which.

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use tracer_common::{names, Config, KernelOffsets, LOST_SLOTS};

/// The object built from `tracer-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// One program and the kernel hook it needs.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    /// Program name in the object.
    pub program: &'static str,
    /// Tracepoint group (tracefs `events/<group>`) and name it attaches to.
    pub group: &'static str,
    pub tracepoint: &'static str,
    /// A raw tracepoint (arguments as the kernel passes them) or a classic
    /// one (the trace record, decoded with its format).
    pub raw: bool,
    /// What the user loses when it cannot attach.
    pub without_it: &'static str,
    /// Whether tracer has anything to say without it.
    pub essential: bool,
}

pub const HOOKS: [Hook; 5] = [
    Hook {
        program: "signal_generate",
        group: "signal",
        tracepoint: "signal_generate",
        raw: true,
        without_it: "no signal events",
        essential: true,
    },
    Hook {
        program: "sched_process_fork",
        group: "sched",
        tracepoint: "sched_process_fork",
        raw: true,
        without_it: "processes started after tracer are attributed late or not at all",
        essential: false,
    },
    Hook {
        program: "sched_process_exec",
        group: "sched",
        tracepoint: "sched_process_exec",
        raw: true,
        without_it: "processes that exec after tracer started keep their old name and cgroup",
        essential: false,
    },
    Hook {
        program: "sched_process_exit",
        group: "sched",
        tracepoint: "sched_process_exit",
        raw: true,
        without_it: "no exit records: exit codes after a signal are not reported",
        essential: false,
    },
    Hook {
        program: "mark_victim",
        group: "oom",
        tracepoint: "mark_victim",
        raw: false,
        without_it: "no OOM kill events",
        essential: false,
    },
];

impl Hook {
    /// "raw tracepoint signal_generate", "tracepoint oom:mark_victim".
    pub fn describe(&self) -> String {
        if self.raw {
            format!("raw tracepoint {}", self.tracepoint)
        } else {
            format!("tracepoint {}:{}", self.group, self.tracepoint)
        }
    }
}

/// The settings the programs read: the signal set, and where the fields of
/// the OOM record are on this kernel (from its tracefs format).
pub fn config(
    signals: crate::signals::SignalSet,
    oom_format: Option<&crate::tracefs::Format>,
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
    }
}

#[derive(Debug)]
pub struct HookStatus {
    pub hook: Hook,
    /// `Err` holds the one-line reason the hook is off.
    pub attached: Result<(), String>,
}

pub struct Loaded {
    /// Keeps the programs attached; dropping it detaches them all.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
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
    raise_memlock_limit();
    let mut ebpf = EbpfLoader::new()
        .override_global(names::OFFSETS, offsets, true)
        .override_global(names::CONFIG, config, true)
        .map_max_entries(names::EVENTS, ring_buffer_size)
        .load(OBJECT)
        .context("loading the BPF object")?;
    let hooks = hooks
        .iter()
        .map(|hook| HookStatus {
            hook: *hook,
            attached: attach(&mut ebpf, hook),
        })
        .collect();
    let events = RingBuf::try_from(ebpf.take_map(names::EVENTS).context("map EVENTS missing")?)
        .context("map EVENTS")?;
    let lost = PerCpuArray::try_from(ebpf.take_map(names::LOST).context("map LOST missing")?)
        .context("map LOST")?;
    Ok(Loaded {
        ebpf,
        events,
        lost,
        hooks,
    })
}

/// Loads `program` and attaches it to the raw tracepoint `tracepoint`.
/// Errors are flattened to one line, with the verifier's last words when the
/// kernel refused the program.
pub fn attach(ebpf: &mut Ebpf, hook: &Hook) -> Result<(), String> {
    let Hook {
        program,
        group,
        tracepoint,
        ..
    } = *hook;
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} is not in the BPF object"))?;
    let refused =
        |e: &dyn std::fmt::Display| one_line(&format!("kernel refused program {program}: {e}"));
    if hook.raw {
        let prog: &mut RawTracePoint = prog
            .try_into()
            .map_err(|e| format!("program {program}: {e}"))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| refused(&e))?;
        }
        prog.attach(tracepoint).map(drop).map_err(|e| {
            one_line(&format!(
                "cannot attach to raw tracepoint {tracepoint}: {e}"
            ))
        })
    } else {
        let prog: &mut TracePoint = prog
            .try_into()
            .map_err(|e| format!("program {program}: {e}"))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| refused(&e))?;
        }
        prog.attach(group, tracepoint).map(drop).map_err(|e| {
            one_line(&format!(
                "cannot attach to tracepoint {group}:{tracepoint}: {e}"
            ))
        })
    }
}

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

    /// On the real kernel: a hook the kernel lacks is reported as off with a
    /// one-line reason, and every other hook still attaches.
    #[test]
    fn a_missing_hook_disables_only_itself() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test loads BPF programs: run it as root (`cargo xtask test`)"
        );
        let btf =
            kernel_btf::load(std::path::Path::new(kernel_btf::DEFAULT_BTF)).expect("kernel BTF");
        let offsets = kernel_btf::resolve(&btf).expect("offsets").offsets;
        let mut hooks = HOOKS.to_vec();
        hooks[1].tracepoint = "no_such_tracepoint";
        let config = config(crate::signals::SignalSet::all(), None);
        let loaded = load(&offsets, &config, &hooks, 4096).expect("load");
        let error = loaded.hooks[1]
            .attached
            .as_ref()
            .expect_err("bogus hook must fail");
        assert!(error.contains("no_such_tracepoint"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        for (i, status) in loaded.hooks.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert!(status.attached.is_ok(), "hook {i} {:?}", status.attached);
        }
    }
}
