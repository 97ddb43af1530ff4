//! Kernel records made in memory and fed through the same path as the ring
//! buffer's: decode, explain, output ([`crate::pipeline`]). For the test that
//! proves the hot path allocates nothing per record and for the throughput
//! benchmark (`cargo xtask bench pipeline`), neither of which can make the
//! kernel send a million signals a second on demand.
//!
//! The records are what `signal_generate` sends for a storm of one signal
//! from this process to itself: its real pid, name, cgroup2 id and
//! ancestry, so that attribution takes the path it takes on a node (the
//! cgroup id looked up once, then cached).

use std::{os::unix::fs::MetadataExt as _, path::Path};

use anyhow::{Context as _, Result};
use tracer_common::{
    Ancestor as AncestorRecord, Header, RecordKind, SignalRecord, Task, MAX_ANCESTRY,
};

use crate::{
    attribution::Attributor,
    clock::Clock,
    explain::Explainer,
    kmsg::KernelLog,
    output::{jsonl::JsonlWriter, Format, Output},
    pipeline::Pipeline,
    process::{self, Comm, ProcessTable},
    scope::Scope,
    signals::{family::Signals, SignalSet},
};

/// A pipeline as `tracer watch` builds it for `--signals all`, over the
/// host's /proc and cgroups, with no kernel log, writing `format` to stdout
/// and JSON lines to `file`. `signal_flood`: as `--signal-flood` (0 shows
/// every signal whole, so that every record is written).
pub fn pipeline(format: Format, file: Option<&Path>, signal_flood: u64) -> Result<Pipeline> {
    let procfs = Path::new("/proc");
    let mut attributor = Attributor::new(procfs, Path::new("/"));
    let mut processes = ProcessTable::new(procfs);
    processes.scan(&mut attributor).context("scanning /proc")?;
    let file = match file {
        Some(path) => Some(
            JsonlWriter::create(path, u64::MAX, 1)
                .with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    let explainer = Explainer::new(
        processes,
        attributor,
        Scope::Everything,
        procfs.to_path_buf(),
        KernelLog::closed(),
        vec![Box::new(Signals::new(SignalSet::all(), None, signal_flood))],
    );
    let output = Output::new(format, file, Clock::new(), "replay".to_owned());
    Ok(Pipeline::new(explainer, output))
}

/// The bytes of a SIGUSR1 this process sends itself with kill(2), as the
/// kernel's `signal_generate` program writes them; `at_ns` CLOCK_MONOTONIC.
pub fn self_signal(at_ns: u64) -> Result<Vec<u8>> {
    let me = this_task()?;
    // SAFETY: all-zero is a valid record (plain data).
    let mut r: SignalRecord = unsafe { std::mem::zeroed() };
    r.header = Header {
        kind: RecordKind::Signal as u32,
        cpu: 0,
        ktime_ns: at_ns,
    };
    r.sender = me;
    r.target = me;
    r.sig = libc::SIGUSR1 as u32;
    r.si_code = 0; // SI_USER: kill(2)
    r.group = 1;
    r.result = 0; // TRACE_SIGNAL_DELIVERED
    let ancestry = ancestry(me.tgid);
    r.ancestry_len = ancestry.len() as u32;
    r.ancestry_truncated = u32::from(ancestry.len() == MAX_ANCESTRY);
    r.ancestry[..ancestry.len()].copy_from_slice(&ancestry);
    Ok(bytes_of(&r).to_vec())
}

/// A record's bytes, as the ring buffer hands them over.
fn bytes_of<T: aya::Pod>(record: &T) -> &[u8] {
    // SAFETY: a view of a plain-data struct's own bytes, for its lifetime.
    unsafe {
        std::slice::from_raw_parts((record as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// This process as the kernel's records describe it.
fn this_task() -> Result<Task> {
    let pid = std::process::id();
    let (comm, _) =
        process::read_stat(Path::new("/proc/self")).context("reading /proc/self/stat")?;
    let cgroup =
        std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup2 line in /proc/self/cgroup")?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let cgroup2_id = std::fs::metadata(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .ino();
    Ok(Task {
        tid: pid,
        tgid: pid,
        start_ns: Clock::now_mono_ns().saturating_sub(1_000_000_000),
        comm: comm.raw(),
        thread_comm: comm.raw(),
        cgroup2_id,
        memory_cgroup_id: 0,
    })
}

/// The chain of parents from `pid` up to init, as the kernel walks it.
fn ancestry(pid: u32) -> Vec<AncestorRecord> {
    let now = Clock::now_mono_ns();
    let mut chain = Vec::new();
    let mut pid = pid;
    while pid != 0 && chain.len() < MAX_ANCESTRY {
        let Some((comm, ppid)) = process::read_stat(&Path::new("/proc").join(pid.to_string()))
        else {
            break;
        };
        chain.push(AncestorRecord {
            tgid: pid,
            _pad: 0,
            start_ns: now.saturating_sub((chain.len() as u64 + 1) * 1_000_000_000),
            comm: Comm::raw(&comm),
        });
        pid = ppid;
    }
    chain
}
