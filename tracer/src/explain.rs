//! Turns kernel records into explanations: keeps the process table current,
//! joins signals with their senders' ancestry and pods, blames exits on the
//! signals that caused them, folds the OOM killer's SIGKILL into its OOM
//! event, and applies `--pid/--pod/--container`.
//!
//! Two kinds of events are held back for a moment: a SIGKILL from the kernel
//! (the OOM record that explains it follows right after) and an OOM event (a
//! `memory.oom.group` kill brings more victims). `flush` releases them.

use std::path::PathBuf;

use tracer_common::{ExitRecord, OomControlRecord, OomRecord, PageAllocRecord, SignalRecord, Task};

use crate::{
    attribution::Attributor,
    correlate::Correlator,
    event::{
        Ancestor, Event, ExitEvent, OomEvent, OomMemcg, OomScope, OomVictim, PageAllocEvent,
        ProcessRef, SignalCause, SignalEvent,
    },
    gfp::GfpNames,
    kmsg::KernelLog,
    oom, pagealloc,
    process::{Comm, ProcessTable},
    records::Record,
    scope::Scope,
    signals::{decode_si_code, Delivery, ExitStatus, Origin, SignalSet},
    stacks::KernelStacks,
    tracefs::Format,
};

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

pub struct Explainer {
    pub processes: ProcessTable,
    pub attributor: Attributor,
    correlator: Correlator,
    scope: Scope,
    signals: SignalSet,
    procfs: PathBuf,
    oom_format: Option<Format>,
    kernel_log: KernelLog,
    held_kills: Vec<HeldKill>,
    pending_oom: Option<(u64, OomEvent)>,
    /// The memory cgroups of the pending OOM's trigger, for the kernel log's word.
    pending_oom_levels: Vec<tracer_common::MemcgLevel>,
    /// Recent `out_of_memory` entries (the exact hook, where the kernel allows it).
    oom_controls: Vec<OomControlRecord>,
    /// The pending OOM's memory cgroup kills as a group (memory.oom.group).
    pending_oom_group: bool,
    page_alloc: PageAllocState,
    /// Packet drops, DNS and conntrack counters, when their hooks attached.
    network: Option<crate::net::explain::NetworkFamily>,
    net_events: Vec<crate::net::event::NetEvent>,
    io_wait: crate::iowait::IoWaitState,
}

/// What page-allocation failures need: the kernel's GFP names, buddyinfo,
/// kernel stacks (with `--stacks`) and the running summary.
pub struct PageAllocState {
    pub gfp: GfpNames,
    pub buddy: pagealloc::BuddyInfo,
    pub stacks: Option<KernelStacks>,
    pub summary: pagealloc::Summary,
}

impl Explainer {
    pub fn new(
        processes: ProcessTable,
        attributor: Attributor,
        scope: Scope,
        signals: SignalSet,
        procfs: PathBuf,
        oom_format: Option<Format>,
    ) -> Self {
        let page_alloc = PageAllocState {
            gfp: GfpNames::from_tracefs(std::path::Path::new(crate::preflight::TRACEFS))
                .unwrap_or_default(),
            buddy: pagealloc::BuddyInfo::new(&procfs),
            stacks: None,
            summary: pagealloc::Summary::default(),
        };
        Self {
            processes,
            attributor,
            correlator: Correlator::default(),
            scope,
            signals,
            procfs,
            oom_format,
            kernel_log: KernelLog::open(),
            held_kills: Vec::new(),
            pending_oom: None,
            pending_oom_levels: Vec::new(),
            oom_controls: Vec::new(),
            pending_oom_group: false,
            page_alloc,
            network: None,
            net_events: Vec::new(),
            io_wait: crate::iowait::IoWaitState::default(),
        }
    }

    /// Turns on the network family (its hooks attached).
    pub fn set_network(&mut self, network: crate::net::explain::NetworkFamily) {
        self.network = Some(network);
    }

    /// Runs `f` on the network family with what it needs from the rest of
    /// tracer, and moves the events it produced to `out`.
    fn with_network(
        &mut self,
        out: &mut Vec<Event>,
        f: impl FnOnce(
            &mut crate::net::explain::NetworkFamily,
            &mut crate::net::explain::Context<'_>,
            &mut Vec<crate::net::event::NetEvent>,
        ),
    ) {
        let Some(network) = self.network.as_mut() else {
            return;
        };
        let scope = &self.scope;
        let in_scope = |p: &ProcessRef| scope.matches(p.pid, &p.attribution);
        let attribution_in_scope = |a: &crate::attribution::Attribution| scope.matches(0, a);
        let mut cx = crate::net::explain::Context {
            attributor: &mut self.attributor,
            in_scope: &in_scope,
            attribution_in_scope: &attribution_in_scope,
        };
        f(network, &mut cx, &mut self.net_events);
        out.extend(self.net_events.drain(..).map(Event::Net));
    }

    /// Kernel stacks for page-allocation failures (`--stacks`).
    pub fn set_stacks(&mut self, stacks: KernelStacks) {
        self.page_alloc.stacks = Some(stacks);
    }

    /// Whether /dev/kmsg could be opened (for corroboration only).
    pub fn kernel_log_readable(&self) -> bool {
        self.kernel_log.readable()
    }

    /// The DNS tracker's counters, when the network family is on.
    pub fn dns_stats(&self) -> Option<crate::dns::tracker::DnsStats> {
        self.network.as_ref().map(|n| n.dns_stats())
    }

    pub fn page_alloc_summary(&self) -> &pagealloc::Summary {
        &self.page_alloc.summary
    }

    /// Feeds one record; pushes the explanations it completes onto `out`.
    pub fn handle(&mut self, record: &Record, out: &mut Vec<Event>) {
        match record {
            Record::Fork(r) => {
                self.correlator.forget(r.child.tgid);
                self.processes
                    .on_fork(&r.parent, &r.child, &mut self.attributor);
            }
            Record::Exec(r) => self
                .processes
                .on_exec(&r.task, r.ppid, &mut self.attributor),
            Record::Signal(r) => self.signal(r, out),
            Record::Oom(r) => self.oom(r, out),
            Record::PageAllocFailure(r) => self.page_alloc_failure(r, out),
            Record::Packet(r) => {
                let sender = crate::net::explain::sent_by_current_task(r)
                    .then(|| self.process_ref(&r.task, true));
                self.with_network(out, |n, cx, events| n.handle(r, sender, cx, events));
            }
            Record::IoStall(r) => self.io_wait(r, false, out),
            Record::HungTask(r) => self.io_wait(r, true, out),
            Record::OomControl(r) => {
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
                self.oom_controls.push(*r);
            }
            Record::Exit(r) => {
                // What explains this exit is reported before it.
                self.release_kill(r.task.tgid, out);
                if self
                    .pending_oom
                    .as_ref()
                    .is_some_and(|(_, e)| e.victims.iter().any(|v| v.process.pid == r.task.tgid))
                {
                    self.flush_oom(out);
                }
                if let Some(event) = self.exit(r) {
                    out.push(event);
                }
                self.processes.on_exit(&r.task, r.ppid, r.header.ktime_ns);
            }
        }
    }

    /// Releases held events whose wait is over (`now_ns` CLOCK_MONOTONIC),
    /// or all of them with `u64::MAX`; housekeeping too.
    pub fn flush(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        self.with_network(out, |n, cx, events| n.flush(now_ns, cx, events));
        let mut i = 0;
        while i < self.held_kills.len() {
            if self.held_kills[i].deadline_ns <= now_ns {
                let held = self.held_kills.remove(i);
                out.extend(held.event.map(Event::Signal));
            } else {
                i += 1;
            }
        }
        if self
            .pending_oom
            .as_ref()
            .is_some_and(|(deadline, _)| *deadline <= now_ns)
        {
            self.flush_oom(out);
        }
        if now_ns != u64::MAX {
            self.processes.expire(now_ns);
            self.correlator.expire(now_ns);
        }
    }

    /// `fresh`: ask for the process's cgroup as of now (signals, OOM kills)
    /// rather than trust the table (exits, where the process is gone).
    fn process_ref(&mut self, task: &Task, fresh: bool) -> ProcessRef {
        let attribution = if fresh {
            self.processes
                .current_attribution(task, &mut self.attributor)
        } else {
            self.processes.lookup_or_load(task, &mut self.attributor);
            self.processes
                .refresh_attribution(task.tgid, &mut self.attributor)
        };
        ProcessRef {
            pid: task.tgid,
            tid: task.tid,
            comm: Comm::new(task.comm),
            thread_comm: Comm::new(task.thread_comm),
            start_ns: task.start_ns,
            attribution,
        }
    }

    fn in_scope(&self, p: &ProcessRef) -> bool {
        self.scope.matches(p.pid, &p.attribution)
    }

    fn signal(&mut self, r: &SignalRecord, out: &mut Vec<Event>) {
        let code = decode_si_code(r.sig, r.si_code);
        let target = self.process_ref(&r.target, true);
        let sender = self.process_ref(&r.sender, true);
        let in_scope = self.in_scope(&target) || self.in_scope(&sender);
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
        let len = (r.ancestry_len as usize).min(r.ancestry.len());
        let ancestry = r.ancestry[..len]
            .iter()
            .map(|a| Ancestor {
                pid: a.tgid,
                comm: Comm::new(a.comm),
                start_ns: a.start_ns,
            })
            .collect();
        let event = SignalEvent {
            mono_ns: r.header.ktime_ns,
            sig: r.sig,
            si_code: r.si_code,
            code,
            thread_directed: r.group == 0,
            delivery,
            sender,
            ancestry,
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
        } else if in_scope {
            out.push(Event::Signal(event));
        }
    }

    /// Reports the held kernel SIGKILL of `tgid`, if any, as it is.
    fn release_kill(&mut self, tgid: u32, out: &mut Vec<Event>) {
        if let Some(at) = self.held_kills.iter().position(|h| h.target == tgid) {
            let held = self.held_kills.remove(at);
            out.extend(held.event.map(Event::Signal));
        }
    }

    fn oom(&mut self, r: &OomRecord, out: &mut Vec<Event>) {
        let mut fields = match &self.oom_format {
            Some(format) => oom::victim_fields(format, r),
            None => oom::VictimFields::default(),
        };
        if fields.pid == 0 {
            return;
        }
        oom::fill_from_proc(&self.procfs, &mut fields);
        // The SIGKILL that went with this kill is part of this event now.
        if let Some(at) = self.held_kills.iter().position(|h| h.target == fields.pid) {
            self.held_kills.remove(at);
        }
        self.correlator.forget(fields.pid);
        let victim_task = self.victim_task(fields.pid, r);
        let victim = OomVictim {
            // From the table: a process being killed reads as the root
            // cgroup in /proc already.
            process: self.process_ref(&victim_task, false),
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
        self.flush_oom(out);
        let trigger = self.process_ref(&r.trigger, true);
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
                    level.and_then(|l| self.memcg(&l)),
                    "oom_control",
                )
            }
            Some(_) => (OomScope::System, None, "oom_control"),
            None => match oom::limit_hit(levels) {
                Some(i) => (OomScope::Cgroup, self.memcg(&levels[i]), "memory_counters"),
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
            self.attributor
                .memory_cgroup_dir(&m.path)
                .and_then(|dir| std::fs::read_to_string(dir.join("memory.oom.group")).ok())
                .is_some_and(|v| v.trim() == "1")
        });
        self.pending_oom = Some((r.header.ktime_ns + HOLD_OOM_NS, event));
        self.pending_oom_levels = levels.to_vec();
    }

    /// The victim as a task: from the process table (older kernels' records
    /// name only the pid), with the record's name when it has one.
    fn victim_task(&mut self, pid: u32, r: &OomRecord) -> Task {
        let known = self.processes.get(pid);
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

    fn memcg(&mut self, level: &tracer_common::MemcgLevel) -> Option<OomMemcg> {
        let page = oom::page_size();
        let (path, dir) = self.attributor.memory_cgroup(level.cgroup_id)?;
        Some(OomMemcg {
            attribution: self.attributor.for_cgroup_path(&path),
            path: path.to_string(),
            limit_bytes: level.max_pages * page,
            usage_bytes: level.usage_pages * page,
            oom_kills: oom::oom_kill_count(&dir),
        })
    }

    /// Completes the pending OOM event with what the kernel logged and the
    /// cgroup's own counters, and reports it when it concerns what is followed.
    fn flush_oom(&mut self, out: &mut Vec<Event>) {
        let Some((_, mut event)) = self.pending_oom.take() else {
            return;
        };
        let levels = std::mem::take(&mut self.pending_oom_levels);
        let first_victim = event.victims.first().map(|v| v.process.pid).unwrap_or(0);
        if let Some(summary) = self.kernel_log.take(first_victim) {
            // The kernel's own words are exact: they settle the scope and the
            // cgroup, unless the exact hook already did.
            if event.scope_source != "oom_control" {
                event.scope_source = "kernel_log";
                if summary.is_cgroup_oom() {
                    event.scope = OomScope::Cgroup;
                    let named = summary.oom_memcg.as_deref().unwrap_or_default();
                    let level = levels.iter().copied().find(|l| {
                        self.attributor
                            .memory_cgroup(l.cgroup_id)
                            .is_some_and(|(path, _)| *path == *named)
                    });
                    if let Some(level) = level {
                        event.memcg = self.memcg(&level);
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
            if let Some(dir) = self.attributor.memory_cgroup_dir(&memcg.path) {
                memcg.oom_kills = oom::oom_kill_count(&dir);
            }
        }
        if event.scope == OomScope::System {
            event.node_memory = oom::node_memory(&self.procfs);
        }
        let followed = self.in_scope(&event.trigger)
            || event.victims.iter().any(|v| self.in_scope(&v.process))
            || event
                .memcg
                .as_ref()
                .is_some_and(|m| self.scope.matches(0, &m.attribution));
        if followed {
            out.push(Event::Oom(event));
        }
    }

    fn page_alloc_failure(&mut self, r: &PageAllocRecord, out: &mut Vec<Event>) {
        let process = self.process_ref(&r.task, true);
        let state = &mut self.page_alloc;
        let gfp_names = state.gfp.decode(r.gfp_flags);
        let tolerated = pagealloc::tolerated_reason(&state.gfp, r.gfp_flags);
        let pod = match process.attribution.pod.as_ref() {
            Some(p) => format!(
                "{}/{}",
                p.namespace.as_deref().unwrap_or("?"),
                p.name.as_deref().unwrap_or(&p.uid)
            ),
            None => "-".into(),
        };
        state
            .summary
            .add(r.order, &gfp_names, &pod, tolerated.is_some());
        if !self.scope.matches(process.pid, &process.attribution) {
            return;
        }
        let kernel_log =
            self.kernel_log
                .take_page_failure(&process.comm.as_str(), r.order, r.gfp_flags);
        let state = &mut self.page_alloc;
        let free = state.buddy.snapshot(r.header.ktime_ns);
        out.push(Event::PageAllocFailure(PageAllocEvent {
            mono_ns: r.header.ktime_ns,
            order: r.order,
            gfp_flags: r.gfp_flags,
            gfp_names,
            migratetype: r.migratetype,
            tolerated,
            zones: free.zones,
            types: free.types,
            stack: state
                .stacks
                .as_ref()
                .map(|s| s.resolve(r.stack_id))
                .unwrap_or_default(),
            kernel_log,
            process,
        }));
    }

    fn io_wait(&mut self, r: &tracer_common::BlockedTaskRecord, hung: bool, out: &mut Vec<Event>) {
        let process = self.process_ref(&r.task, true);
        if !self.in_scope(&process) {
            return;
        }
        let stacks = self.page_alloc.stacks.as_ref();
        let event = self.io_wait.event(r, hung, process, |id| {
            stacks.map(|s| s.resolve(id)).unwrap_or_default()
        });
        out.push(Event::IoWait(event));
    }

    /// Exits are reported when a signal killed the process (one in the
    /// watched set), after an OOM kill, or when it had received a reported
    /// signal before.
    fn exit(&mut self, r: &ExitRecord) -> Option<Event> {
        let status = ExitStatus::from_wait_status(r.exit_code);
        let cause = self.correlator.on_exit(r.task.tgid, status);
        let killed_by_watched =
            matches!(status, ExitStatus::Signaled { sig, .. } if self.signals.contains(sig));
        if cause.is_none() && !killed_by_watched {
            return None;
        }
        let process = self.process_ref(&r.task, false);
        if !self.in_scope(&process) {
            return None;
        }
        Some(Event::Exit(ExitEvent {
            mono_ns: r.header.ktime_ns,
            process,
            ppid: r.ppid,
            wait_status: r.exit_code,
            status,
            cause,
        }))
    }
}
