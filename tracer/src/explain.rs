//! Turns kernel records into explanations: keeps the process table current,
//! joins signals with their senders' ancestry and pods, blames exits on the
//! signals that caused them, and applies `--pid/--pod/--container`.

use tracer_common::{ExitRecord, SignalRecord, Task};

use crate::{
    attribution::Attributor,
    correlate::Correlator,
    event::{Ancestor, Event, ExitEvent, ProcessRef, SignalCause, SignalEvent},
    process::{Comm, ProcessTable},
    records::Record,
    scope::Scope,
    signals::{decode_si_code, Delivery, ExitStatus, SignalSet},
};

pub struct Explainer {
    pub processes: ProcessTable,
    pub attributor: Attributor,
    correlator: Correlator,
    scope: Scope,
    signals: SignalSet,
}

impl Explainer {
    pub fn new(
        processes: ProcessTable,
        attributor: Attributor,
        scope: Scope,
        signals: SignalSet,
    ) -> Self {
        Self {
            processes,
            attributor,
            correlator: Correlator::default(),
            scope,
            signals,
        }
    }

    /// Feeds one record; returns the explanation to report, if any.
    pub fn handle(&mut self, record: &Record) -> Option<Event> {
        match record {
            Record::Fork(r) => {
                self.correlator.forget(r.child.tgid);
                self.processes
                    .on_fork(&r.parent, &r.child, &mut self.attributor);
                None
            }
            Record::Exec(r) => {
                self.processes
                    .on_exec(&r.task, r.ppid, &mut self.attributor);
                None
            }
            Record::Signal(r) => self.signal(r),
            Record::Exit(r) => {
                let event = self.exit(r);
                self.processes.on_exit(&r.task, r.ppid, r.header.ktime_ns);
                event
            }
        }
    }

    /// Periodic housekeeping.
    pub fn expire(&mut self, now_ns: u64) {
        self.processes.expire(now_ns);
        self.correlator.expire(now_ns);
    }

    /// `fresh`: ask /proc for the process's cgroup now (signals, which are
    /// rare) rather than trust the table (exits, where the process is gone).
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

    fn signal(&mut self, r: &SignalRecord) -> Option<Event> {
        let code = decode_si_code(r.sig, r.si_code);
        let target = self.process_ref(&r.target, true);
        let sender = self.process_ref(&r.sender, true);
        if !self.scope.matches(target.pid, &target.attribution)
            && !self.scope.matches(sender.pid, &sender.attribution)
        {
            return None;
        }
        let delivery = Delivery::from_raw(r.result);
        if delivery == Delivery::Delivered || delivery == Delivery::AlreadyPending {
            self.correlator.on_signal(
                target.pid,
                SignalCause {
                    mono_ns: r.header.ktime_ns,
                    sig: r.sig,
                    code,
                    sender_pid: sender.pid,
                    sender_comm: sender.comm,
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
        Some(Event::Signal(SignalEvent {
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
        }))
    }

    /// Exits are reported when a signal killed the process (one in the
    /// watched set) or when it had received a reported signal before.
    fn exit(&mut self, r: &ExitRecord) -> Option<Event> {
        let status = ExitStatus::from_wait_status(r.exit_code);
        let cause = self.correlator.on_exit(r.task.tgid, status);
        let killed_by_watched =
            matches!(status, ExitStatus::Signaled { sig, .. } if self.signals.contains(sig));
        if cause.is_none() && !killed_by_watched {
            return None;
        }
        let process = self.process_ref(&r.task, false);
        if !self.scope.matches(process.pid, &process.attribution) {
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
