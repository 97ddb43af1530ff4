//! The signals family, at work: joins signals with their senders' ancestry
//! and pods, blames exits on the signals that caused them, folds the OOM
//! killer's SIGKILL into its OOM event, and groups the victims of one
//! `memory.oom.group` kill. Signals, exits and OOM kills are one family:
//! they share the held SIGKILL and the signal an exit is blamed on.
//!
//! Two kinds of events are held back for a moment: a SIGKILL from the kernel
//! (the OOM record that explains it follows right after) and an OOM event (a
//! `memory.oom.group` kill brings more victims). `flush` releases them.

use tracer_common::{
    Config, ExitRecord, ForkRecord, OomControlRecord, OomRecord, RecordKind, SignalRecord, Task,
};

use super::{
    correlate::Correlator,
    decode_si_code,
    event::{
        Ancestry, ExitEvent, OomEvent, OomMemcg, OomScope, OomVictim, SignalCause, SignalEvent,
    },
    flood::FloodGate,
    oom, Delivery, ExitStatus, Origin, SignalSet,
};
use crate::{
    attribution::Attributor,
    ebpf::{Attach, Hook},
    family::{every_hook, Context, Family, Registration, Settings, Start},
    output::EventSink,
    process::{Comm, ProcessTable},
    records::Record,
    tracefs::Format,
};

pub const REGISTRATION: Registration = Registration {
    name: "signals",
    hooks: HOOKS,
    configure,
    wanted: every_hook,
    start,
};

pub const HOOKS: &[Hook] = &[
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
];

/// The signals to report, and where the fields of the OOM record are on
/// this kernel (from its tracefs format).
fn configure(settings: &Settings, config: &mut Config) {
    let format = settings.oom_format.as_ref();
    let fixed = format.map(|f| f.fixed_size()).unwrap_or(0);
    config.signal_mask = settings.signals.bits();
    // Rounded up to whole 8-byte words, as the program copies them.
    config.oom_raw_size = (fixed.div_ceil(8) * 8).min(tracer_common::OOM_RAW_MAX) as u32;
    config.oom_comm_loc = format
        .and_then(|f| f.field("comm"))
        .filter(|f| f.data_loc)
        .map(|f| f.offset as u32)
        .unwrap_or(tracer_common::OFFSET_UNKNOWN);
}

fn start(start: &mut Start<'_>) -> Option<Box<dyn Family>> {
    Some(Box::new(Signals::new(
        start.settings.signals,
        start.settings.oom_format.clone(),
        start.settings.signal_flood,
    )))
}

/// How long a kernel SIGKILL waits for the OOM record that may explain it.
const HOLD_KILL_NS: u64 = 100_000_000;
/// How far back an `out_of_memory` entry may be for the kill it explains.
const OOM_CONTROL_NS: u64 = 2_000_000_000;
/// How long an OOM event waits for more victims of the same kill.
const HOLD_OOM_NS: u64 = 150_000_000;

struct HeldKill {
    deadline_ns: u64,
    target: u32,
    event: Option<SignalEvent>,
}

pub struct Signals {
    correlator: Correlator,
    signals: SignalSet,
    oom_format: Option<Format>,
    held_kills: Vec<HeldKill>,
    pending_oom: Option<(u64, OomEvent)>,
    /// The memory cgroups of the pending OOM's trigger, for the kernel log's word.
    pending_oom_levels: Vec<tracer_common::MemcgLevel>,
    /// Recent `out_of_memory` entries (the exact hook, where the kernel allows it).
    oom_controls: Vec<OomControlRecord>,
    /// The pending OOM's memory cgroup kills as a group (memory.oom.group).
    pending_oom_group: bool,
    /// Floods of one signal between two processes, summed up.
    floods: FloodGate,
}

impl Family for Signals {
    fn kinds(&self) -> &'static [RecordKind] {
        &[
            RecordKind::Signal,
            RecordKind::Fork,
            RecordKind::Exit,
            RecordKind::Oom,
            RecordKind::OomControl,
        ]
    }

    fn handle(&mut self, record: &Record<'_>, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        match record.kind {
            RecordKind::Fork => {
                if let Some(r) = record.read::<ForkRecord>() {
                    self.correlator.forget(r.child.tgid);
                }
            }
            RecordKind::Signal => {
                if let Some(r) = record.read::<SignalRecord>() {
                    self.signal(&r, cx, out);
                }
            }
            RecordKind::Oom => {
                if let Some(r) = record.read::<OomRecord>() {
                    self.oom(&r, cx, out);
                }
            }
            RecordKind::OomControl => {
                if let Some(r) = record.read::<OomControlRecord>() {
                    self.oom_control(r);
                }
            }
            RecordKind::Exit => {
                let Some(r) = record.read::<ExitRecord>() else {
                    return;
                };
                // What explains this exit is reported before it.
                self.release_kill(r.task.tgid, out);
                if self
                    .pending_oom
                    .as_ref()
                    .is_some_and(|(_, e)| e.victims.iter().any(|v| v.process.pid == r.task.tgid))
                {
                    self.flush_oom(cx, out);
                }
                if let Some(event) = self.exit(&r, cx) {
                    out.emit(&event);
                }
            }
            _ => {}
        }
    }

    fn flush(&mut self, now_ns: u64, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let mut i = 0;
        while i < self.held_kills.len() {
            if self.held_kills[i].deadline_ns <= now_ns {
                if let Some(event) = self.held_kills.remove(i).event {
                    out.emit(&event);
                }
            } else {
                i += 1;
            }
        }
        if self
            .pending_oom
            .as_ref()
            .is_some_and(|(deadline, _)| *deadline <= now_ns)
        {
            self.flush_oom(cx, out);
        }
        if now_ns != u64::MAX {
            self.correlator.expire(now_ns);
        }
        self.floods.report(now_ns, |flood| out.emit(&flood));
    }
}

impl Signals {
    pub fn new(signals: SignalSet, oom_format: Option<Format>, signal_flood: u64) -> Self {
        Self {
            correlator: Correlator::default(),
            signals,
            oom_format,
            held_kills: Vec::new(),
            pending_oom: None,
            pending_oom_levels: Vec::new(),
            oom_controls: Vec::new(),
            pending_oom_group: false,
            floods: FloodGate::new(signal_flood),
        }
    }

    fn oom_control(&mut self, r: OomControlRecord) {
        // A new out_of_memory() call by the same task is a new kill.
        if self
            .pending_oom
            .as_ref()
            .is_some_and(|(_, e)| e.trigger.pid == r.trigger_tgid)
        {
            self.pending_oom_group = false;
        }
        if self.oom_controls.len() == 16 {
            self.oom_controls.remove(0);
        }
        self.oom_controls.push(r);
    }

    fn signal(&mut self, r: &SignalRecord, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let code = decode_si_code(r.sig, r.si_code);
        let target = cx.process_ref(&r.target, true);
        let sender = cx.process_ref(&r.sender, true);
        let in_scope = cx.in_scope(&target) || cx.in_scope(&sender);
        let delivery = Delivery::from_raw(r.result);
        if in_scope && matches!(delivery, Delivery::Delivered | Delivery::AlreadyPending) {
            self.correlator.on_signal(
                target.pid,
                SignalCause {
                    mono_ns: r.header.ktime_ns,
                    sig: r.sig,
                    code,
                    sender_pid: sender.pid,
                    sender_comm: sender.comm,
                    oom_kill: false,
                },
            );
        }
        let event = SignalEvent {
            mono_ns: r.header.ktime_ns,
            sig: r.sig,
            si_code: r.si_code,
            code,
            thread_directed: r.group == 0,
            delivery,
            sender,
            ancestry: Ancestry::from_record(r),
            ancestry_truncated: r.ancestry_truncated != 0,
            target,
        };
        // The OOM killer's SIGKILL comes from the kernel just before its
        // OOM record: hold it, so that the OOM event can take its place.
        if r.sig == libc::SIGKILL as u32 && code.origin == Origin::Kernel {
            self.held_kills.push(HeldKill {
                deadline_ns: r.header.ktime_ns + HOLD_KILL_NS,
                target: event.target.pid,
                event: in_scope.then_some(event),
            });
        } else if in_scope && self.floods.admit(&event) {
            out.emit(&event);
        }
    }

    /// Reports the held kernel SIGKILL of `tgid`, if any, as it is.
    fn release_kill(&mut self, tgid: u32, out: &mut dyn EventSink) {
        if let Some(at) = self.held_kills.iter().position(|h| h.target == tgid) {
            if let Some(event) = self.held_kills.remove(at).event {
                out.emit(&event);
            }
        }
    }

    fn oom(&mut self, r: &OomRecord, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let mut fields = match &self.oom_format {
            Some(format) => oom::victim_fields(format, r),
            None => oom::VictimFields::default(),
        };
        if fields.pid == 0 {
            return;
        }
        oom::fill_from_proc(cx.procfs, &mut fields);
        // The SIGKILL that went with this kill is part of this event now.
        if let Some(at) = self.held_kills.iter().position(|h| h.target == fields.pid) {
            self.held_kills.remove(at);
        }
        self.correlator.forget(fields.pid);
        let victim_task = victim_task(cx.processes, fields.pid, r);
        let victim = OomVictim {
            // From the table: a process being killed reads as the root
            // cgroup in /proc already.
            process: cx.process_ref(&victim_task, false),
            memory: fields,
        };
        self.correlator.on_signal(
            fields.pid,
            SignalCause {
                mono_ns: r.header.ktime_ns,
                sig: libc::SIGKILL as u32,
                code: decode_si_code(libc::SIGKILL as u32, 0x80),
                sender_pid: r.trigger.tgid,
                sender_comm: Comm::new(r.trigger.comm),
                oom_kill: true,
            },
        );

        let levels = &r.levels[..(r.levels_len as usize).min(r.levels.len())];
        // Several victims make one kill only with memory.oom.group: the
        // kernel kills the whole cgroup in one pass. Otherwise a second
        // victim right after is a second OOM (the first one's memory was
        // not freed yet), and gets its own event.
        let same_kill = self.pending_oom_group
            && self.pending_oom.as_ref().is_some_and(|(_, e)| {
                e.trigger.pid == r.trigger.tgid
                    && r.header.ktime_ns.saturating_sub(e.mono_ns) < HOLD_OOM_NS
            });
        if same_kill {
            if let Some((_, event)) = &mut self.pending_oom {
                event.victims.push(victim);
            }
            return;
        }
        self.flush_oom(cx, out);
        let trigger = cx.process_ref(&r.trigger, true);
        // The exact hook says which memory cgroup (if any) the kernel was
        // acting for; without it, the counters read at the kill decide.
        let control = self
            .oom_controls
            .iter()
            .rposition(|c| {
                c.trigger_tgid == r.trigger.tgid
                    && r.header.ktime_ns.saturating_sub(c.header.ktime_ns) < OOM_CONTROL_NS
            })
            .map(|at| self.oom_controls.remove(at));
        let (scope, memcg, scope_source) = match control {
            Some(c) if c.cgroup_oom != 0 => {
                let level = levels
                    .iter()
                    .find(|l| l.cgroup_id == c.memcg_cgroup_id)
                    .copied();
                (
                    OomScope::Cgroup,
                    level.and_then(|l| memcg(cx.attributor, &l)),
                    "oom_control",
                )
            }
            Some(_) => (OomScope::System, None, "oom_control"),
            None => match oom::limit_hit(levels) {
                Some(i) => (
                    OomScope::Cgroup,
                    memcg(cx.attributor, &levels[i]),
                    "memory_counters",
                ),
                None => (OomScope::System, None, "memory_counters"),
            },
        };
        let event = OomEvent {
            mono_ns: r.header.ktime_ns,
            scope,
            scope_source,
            memcg,
            trigger,
            victims: vec![victim],
            kernel_log: None,
            node_memory: None,
        };
        self.pending_oom_group = event.memcg.as_ref().is_some_and(|m| {
            cx.attributor
                .memory_cgroup_dir(&m.path)
                .and_then(|dir| std::fs::read_to_string(dir.join("memory.oom.group")).ok())
                .is_some_and(|v| v.trim() == "1")
        });
        self.pending_oom = Some((r.header.ktime_ns + HOLD_OOM_NS, event));
        self.pending_oom_levels = levels.to_vec();
    }

    /// Completes the pending OOM event with what the kernel logged and the
    /// cgroup's own counters, and reports it when it concerns what is followed.
    fn flush_oom(&mut self, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let Some((_, mut event)) = self.pending_oom.take() else {
            return;
        };
        let levels = std::mem::take(&mut self.pending_oom_levels);
        let first_victim = event.victims.first().map(|v| v.process.pid).unwrap_or(0);
        if let Some(summary) = cx.kernel_log.take(first_victim) {
            // The kernel's own words are exact: they settle the scope and the
            // cgroup, unless the exact hook already did.
            if event.scope_source != "oom_control" {
                event.scope_source = "kernel_log";
                if summary.is_cgroup_oom() {
                    event.scope = OomScope::Cgroup;
                    let named = summary.oom_memcg.as_deref().unwrap_or_default();
                    let level = levels.iter().copied().find(|l| {
                        cx.attributor
                            .memory_cgroup(l.cgroup_id)
                            .is_some_and(|(path, _)| *path == *named)
                    });
                    if let Some(level) = level {
                        event.memcg = memcg(cx.attributor, &level);
                    }
                } else {
                    event.scope = OomScope::System;
                    event.memcg = None;
                }
            }
            event.kernel_log = Some(summary);
        }
        if let Some(memcg) = &mut event.memcg {
            // Read now, after the kill, so that it counts this one.
            if let Some(dir) = cx.attributor.memory_cgroup_dir(&memcg.path) {
                memcg.oom_kills = oom::oom_kill_count(&dir);
            }
        }
        if event.scope == OomScope::System {
            event.node_memory = oom::node_memory(cx.procfs);
        }
        let followed = cx.in_scope(&event.trigger)
            || event.victims.iter().any(|v| cx.in_scope(&v.process))
            || event
                .memcg
                .as_ref()
                .is_some_and(|m| cx.attribution_in_scope(&m.attribution));
        if followed {
            out.emit(&event);
        }
    }

    /// Exits are reported when a signal killed the process (one in the
    /// watched set), after an OOM kill, or when it had received a reported
    /// signal before.
    fn exit(&mut self, r: &ExitRecord, cx: &mut Context<'_>) -> Option<ExitEvent> {
        let status = ExitStatus::from_wait_status(r.exit_code);
        let cause = self.correlator.on_exit(r.task.tgid, status);
        let killed_by_watched =
            matches!(status, ExitStatus::Signaled { sig, .. } if self.signals.contains(sig));
        if cause.is_none() && !killed_by_watched {
            return None;
        }
        let process = cx.process_ref(&r.task, false);
        if !cx.in_scope(&process) {
            return None;
        }
        Some(ExitEvent {
            mono_ns: r.header.ktime_ns,
            process,
            ppid: r.ppid,
            wait_status: r.exit_code,
            status,
            cause,
        })
    }
}

/// The victim as a task: from the process table (older kernels' records
/// name only the pid), with the record's name when it has one.
fn victim_task(processes: &ProcessTable, pid: u32, r: &OomRecord) -> Task {
    let known = processes.get(pid);
    let comm = if r.victim_comm[0] != 0 {
        r.victim_comm
    } else {
        known.map(|p| p.comm.raw()).unwrap_or_default()
    };
    Task {
        tid: pid,
        tgid: pid,
        start_ns: known.map(|p| p.start_ns).unwrap_or(0),
        comm,
        thread_comm: comm,
        cgroup2_id: 0,
        memory_cgroup_id: 0,
    }
}

fn memcg(attributor: &mut Attributor, level: &tracer_common::MemcgLevel) -> Option<OomMemcg> {
    let page = crate::size::page_size();
    let (path, dir) = attributor.memory_cgroup(level.cgroup_id)?;
    Some(OomMemcg {
        attribution: attributor.for_cgroup_path(&path),
        path: path.to_string(),
        limit_bytes: level.max_pages * page,
        usage_bytes: level.usage_pages * page,
        oom_kills: oom::oom_kill_count(&dir),
    })
}

/// The joins, on records made up here (no root, no BPF): a fake process
/// table and a fake memory cgroup hierarchy in a temporary directory.
#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::MetadataExt as _, path::Path};

    use serde_json::Value;
    use tracer_common::{Header, MemcgLevel, COMM_LEN, OOM_RAW_MAX};

    use super::*;
    use crate::{kmsg::KernelLog, scope::Scope};

    const SIGKILL: u32 = 9;
    const SIGTERM: u32 = 15;
    const SI_USER: i32 = 0;
    const SI_KERNEL: i32 = 0x80;
    /// The mark_victim format of older kernels: the pid only.
    const MARK_VICTIM: &str = "name: mark_victim
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;
";

    /// Tracer's surroundings, made up: an empty procfs, a memory cgroup
    /// hierarchy with one pod's cgroup, and nothing filtered.
    struct World {
        dir: tempfile::TempDir,
        processes: ProcessTable,
        attributor: Attributor,
        kernel_log: KernelLog,
        scope: Scope,
        family: Signals,
        out: Vec<serde_json::Value>,
    }

    impl World {
        fn new(oom_group: bool) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let procfs = dir.path().join("proc");
            let memory = dir.path().join("memory");
            let pod = memory.join("kubepods/burstable/pod1f0c2a4e-8d3b-4c8e-9a51-0f2b6c7d8e9f");
            fs::create_dir_all(&procfs).unwrap();
            fs::create_dir_all(&pod).unwrap();
            fs::write(
                pod.join("memory.oom.group"),
                if oom_group { "1\n" } else { "0\n" },
            )
            .unwrap();
            let mountinfo = format!(
                "36 29 0:33 / {} rw shared:16 - cgroup cgroup rw,memory\n",
                memory.display()
            );
            Self {
                processes: ProcessTable::new(&procfs),
                attributor: Attributor::with_mountinfo(&procfs, dir.path(), &mountinfo),
                kernel_log: KernelLog::closed(),
                scope: Scope::Everything,
                family: Signals::new(
                    SignalSet::default_fatal(),
                    Some(Format::parse(MARK_VICTIM)),
                    crate::signals::flood::KEEP_WHOLE,
                ),
                out: Vec::new(),
                dir,
            }
        }

        /// The pod's memory cgroup, as the kernel identifies it (its inode).
        fn pod_cgroup(&self) -> u64 {
            let pod = self
                .dir
                .path()
                .join("memory/kubepods/burstable/pod1f0c2a4e-8d3b-4c8e-9a51-0f2b6c7d8e9f");
            fs::metadata(pod).unwrap().ino()
        }

        fn feed<T>(&mut self, kind: RecordKind, record: &T) {
            // SAFETY: a view of a plain-data record's bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>())
            };
            let record = crate::records::decode(bytes).expect("a well-formed record");
            assert_eq!(record.kind, kind);
            let mut cx = Context {
                processes: &mut self.processes,
                attributor: &mut self.attributor,
                scope: &self.scope,
                stacks: None,
                kernel_log: &mut self.kernel_log,
                procfs: Path::new("/nonexistent"),
            };
            self.family.handle(&record, &mut cx, &mut self.out);
        }

        fn flush(&mut self, now_ns: u64) {
            let mut cx = Context {
                processes: &mut self.processes,
                attributor: &mut self.attributor,
                scope: &self.scope,
                stacks: None,
                kernel_log: &mut self.kernel_log,
                procfs: Path::new("/nonexistent"),
            };
            self.family.flush(now_ns, &mut cx, &mut self.out);
        }

        /// What was reported so far, as the JSON lines say it.
        fn reported(&mut self) -> Vec<Value> {
            std::mem::take(&mut self.out)
        }
    }

    fn comm(name: &str) -> [u8; COMM_LEN] {
        Comm::from_str_lossy(name).raw()
    }

    fn task(pid: u32, name: &str) -> Task {
        Task {
            tid: pid,
            tgid: pid,
            start_ns: 1,
            comm: comm(name),
            thread_comm: comm(name),
            cgroup2_id: 0,
            memory_cgroup_id: 0,
        }
    }

    fn header(kind: RecordKind, ktime_ns: u64) -> Header {
        Header {
            kind: kind as u32,
            cpu: 0,
            ktime_ns,
        }
    }

    fn signal(at_ns: u64, sig: u32, si_code: i32, sender: Task, target: Task) -> SignalRecord {
        // SAFETY: all-zero is a valid record (plain data).
        let mut r: SignalRecord = unsafe { std::mem::zeroed() };
        r.header = header(RecordKind::Signal, at_ns);
        r.sender = sender;
        r.target = target;
        r.sig = sig;
        r.si_code = si_code;
        r.group = 1;
        r.result = 0; // TRACE_SIGNAL_DELIVERED
        r
    }

    /// An OOM kill of `victim`, triggered by `trigger`, in the pod's cgroup
    /// (at its limit).
    fn oom(at_ns: u64, trigger: Task, victim: u32, memcg: u64) -> OomRecord {
        // SAFETY: all-zero is a valid record (plain data).
        let mut r: OomRecord = unsafe { std::mem::zeroed() };
        r.header = header(RecordKind::Oom, at_ns);
        r.trigger = trigger;
        r.raw_len = 12;
        r.raw[8..12].copy_from_slice(&(victim as i32).to_ne_bytes());
        assert!(r.raw.len() == OOM_RAW_MAX);
        r.levels_len = 1;
        r.levels[0] = MemcgLevel {
            cgroup_id: memcg,
            usage_pages: 25_600,
            max_pages: 25_600,
        };
        r
    }

    fn exit(at_ns: u64, process: Task, wait_status: u32) -> ExitRecord {
        ExitRecord {
            header: header(RecordKind::Exit, at_ns),
            task: process,
            exit_code: wait_status,
            ppid: 1,
        }
    }

    fn kinds(lines: &[Value]) -> Vec<&str> {
        lines.iter().map(|l| l["kind"].as_str().unwrap()).collect()
    }

    /// The OOM killer's SIGKILL comes just before its OOM record: it is
    /// held, then folded into the OOM event, and the exit says OOM-killed.
    #[test]
    fn a_held_kernel_sigkill_is_folded_into_the_oom_that_follows() {
        let mut world = World::new(false);
        let memcg = world.pod_cgroup();
        let victim = task(4242, "memhog");
        world.feed(
            RecordKind::Signal,
            &signal(1_000, SIGKILL, SI_KERNEL, task(4242, "memhog"), victim),
        );
        assert!(
            world.out.is_empty(),
            "a kernel SIGKILL waits for its OOM record"
        );
        world.feed(
            RecordKind::Oom,
            &oom(1_100, task(4242, "memhog"), 4242, memcg),
        );
        world.feed(RecordKind::Exit, &exit(1_200, victim, SIGKILL));
        world.flush(u64::MAX);
        let lines = world.reported();
        assert_eq!(kinds(&lines), ["oom", "exit"], "{lines:#?}");
        let oom = &lines[0];
        assert_eq!(oom["scope"], "cgroup");
        assert_eq!(oom["scope_source"], "memory_counters");
        assert_eq!(
            oom["memcg"]["path"],
            "/kubepods/burstable/pod1f0c2a4e-8d3b-4c8e-9a51-0f2b6c7d8e9f"
        );
        assert_eq!(oom["victims"][0]["process"]["pid"], 4242);
        assert_eq!(lines[1]["oom_killed"], true);
        assert_eq!(lines[1]["killed_by"], "SIGKILL");
    }

    /// A kernel SIGKILL that no OOM explains is reported as it is, once
    /// its hold is over.
    #[test]
    fn a_held_kernel_sigkill_without_an_oom_is_released_after_its_hold() {
        let mut world = World::new(false);
        world.feed(
            RecordKind::Signal,
            &signal(
                1_000,
                SIGKILL,
                SI_KERNEL,
                task(77, "kthread"),
                task(4242, "app"),
            ),
        );
        world.flush(1_000 + HOLD_KILL_NS - 1);
        assert!(world.out.is_empty(), "still held");
        world.flush(1_000 + HOLD_KILL_NS);
        let lines = world.reported();
        assert_eq!(kinds(&lines), ["signal"]);
        assert_eq!(lines[0]["signal"]["origin"], "kernel");
        assert_eq!(lines[0]["target"]["pid"], 4242);
    }

    /// With `memory.oom.group`, the kernel kills the whole cgroup in one
    /// pass: every victim is in one OOM event.
    #[test]
    fn an_oom_group_kill_is_one_event_with_every_victim() {
        let mut world = World::new(true);
        let memcg = world.pod_cgroup();
        let trigger = task(4242, "memhog");
        world.feed(RecordKind::Oom, &oom(1_000, trigger, 4242, memcg));
        world.feed(RecordKind::Oom, &oom(1_050, trigger, 4243, memcg));
        world.flush(u64::MAX);
        let lines = world.reported();
        assert_eq!(kinds(&lines), ["oom"], "{lines:#?}");
        let victims: Vec<u64> = lines[0]["victims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["process"]["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(victims, [4242, 4243]);
    }

    /// Without it, a second victim right after is a second OOM (the first
    /// one's memory was not freed yet), with its own event.
    #[test]
    fn without_oom_group_a_second_victim_is_a_second_oom() {
        let mut world = World::new(false);
        let memcg = world.pod_cgroup();
        let trigger = task(4242, "memhog");
        world.feed(RecordKind::Oom, &oom(1_000, trigger, 4242, memcg));
        world.feed(RecordKind::Oom, &oom(1_050, trigger, 4243, memcg));
        world.flush(u64::MAX);
        let lines = world.reported();
        assert_eq!(kinds(&lines), ["oom", "oom"], "{lines:#?}");
        assert_eq!(lines[0]["victims"][0]["process"]["pid"], 4242);
        assert_eq!(lines[1]["victims"][0]["process"]["pid"], 4243);
    }

    /// An exit is blamed on the signal that killed it, with its sender;
    /// a process that handled the signal and exited is "status N after" it.
    #[test]
    fn an_exit_is_blamed_on_the_signal_before_it() {
        let mut world = World::new(false);
        let pkill = task(23549, "pkill");
        let server = task(7942, "server");
        world.feed(
            RecordKind::Signal,
            &signal(1_000, SIGTERM, SI_USER, pkill, server),
        );
        world.feed(RecordKind::Exit, &exit(2_000, server, SIGTERM));
        let lines = world.reported();
        assert_eq!(kinds(&lines), ["signal", "exit"]);
        assert_eq!(lines[1]["killed_by"], "SIGTERM");
        assert_eq!(lines[1]["exit_code"], 128 + SIGTERM);
        assert_eq!(lines[1]["after_signal"]["sender_pid"], 23549);
        assert_eq!(lines[1]["after_signal"]["sender_comm"], "pkill");
        assert_eq!(lines[1]["oom_killed"], false);

        let other = task(7943, "worker");
        world.feed(
            RecordKind::Signal,
            &signal(3_000, SIGTERM, SI_USER, pkill, other),
        );
        world.feed(RecordKind::Exit, &exit(4_000, other, 3 << 8));
        let lines = world.reported();
        assert_eq!(kinds(&lines), ["signal", "exit"]);
        assert_eq!(lines[1]["exit_status"], 3);
        assert_eq!(lines[1]["after_signal"]["signal"], "SIGTERM");

        // No signal before it and a clean exit: nothing to explain.
        world.feed(RecordKind::Exit, &exit(5_000, task(7944, "job"), 0));
        assert!(world.reported().is_empty());
    }
}
