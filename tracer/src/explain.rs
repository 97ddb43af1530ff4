//! Turns kernel records into explanations: keeps the process table current
//! (fork, exec, exit) and hands each record to the families that read its
//! kind, with what they need from the rest of tracer (a [`Context`]).

use std::path::PathBuf;

use anyhow::Result;
use tracer_common::{ExecRecord, ExitRecord, ForkRecord, RecordKind};

use crate::{
    attribution::Attributor,
    family::{Context, Family},
    kmsg::KernelLog,
    output::{EventSink, Output},
    process::ProcessTable,
    records::Record,
    scope::Scope,
    stacks::KernelStacks,
};

pub struct Explainer {
    shared: Shared,
    families: Vec<Box<dyn Family>>,
    /// For each record kind (by its `lost_slot`), the families that read it.
    routes: Vec<Vec<usize>>,
}

/// What the families share, lent to each as a [`Context`].
struct Shared {
    processes: ProcessTable,
    attributor: Attributor,
    scope: Scope,
    procfs: PathBuf,
    kernel_log: KernelLog,
    stacks: Option<KernelStacks>,
}

impl Shared {
    fn context(&mut self) -> Context<'_> {
        Context {
            processes: &mut self.processes,
            attributor: &mut self.attributor,
            scope: &self.scope,
            stacks: self.stacks.as_ref(),
            kernel_log: &mut self.kernel_log,
            procfs: &self.procfs,
        }
    }
}

impl Explainer {
    pub fn new(
        processes: ProcessTable,
        attributor: Attributor,
        scope: Scope,
        procfs: PathBuf,
        kernel_log: KernelLog,
        families: Vec<Box<dyn Family>>,
    ) -> Self {
        let mut routes = vec![Vec::new(); RecordKind::ALL.len()];
        for (i, family) in families.iter().enumerate() {
            for kind in family.kinds() {
                routes[kind.lost_slot() as usize].push(i);
            }
        }
        Self {
            shared: Shared {
                processes,
                attributor,
                scope,
                procfs,
                kernel_log,
                stacks: None,
            },
            families,
            routes,
        }
    }

    /// Kernel stacks (`--stacks`), for the families whose records carry them.
    pub fn set_stacks(&mut self, stacks: KernelStacks) {
        self.shared.stacks = Some(stacks);
    }

    /// Whether /dev/kmsg could be opened (for corroboration only).
    pub fn kernel_log_readable(&self) -> bool {
        self.shared.kernel_log.readable()
    }

    /// Feeds one record; hands the explanations it completes to `out`.
    pub fn handle(&mut self, record: &Record<'_>, out: &mut dyn EventSink) {
        match record.kind {
            RecordKind::Fork => {
                if let Some(r) = record.read::<ForkRecord>() {
                    self.shared
                        .processes
                        .on_fork(&r.parent, &r.child, &mut self.shared.attributor);
                }
            }
            RecordKind::Exec => {
                if let Some(r) = record.read::<ExecRecord>() {
                    self.shared
                        .processes
                        .on_exec(&r.task, r.ppid, &mut self.shared.attributor);
                }
            }
            _ => {}
        }
        let mut cx = self.shared.context();
        for &i in &self.routes[record.kind.lost_slot() as usize] {
            self.families[i].handle(record, &mut cx, out);
        }
        // Gone from the table only once the families have explained the
        // exit with what the table knew.
        if record.kind == RecordKind::Exit {
            if let Some(r) = record.read::<ExitRecord>() {
                self.shared
                    .processes
                    .on_exit(&r.task, r.ppid, r.header.ktime_ns);
            }
        }
    }

    /// Releases held events whose wait is over (`now_ns` CLOCK_MONOTONIC),
    /// or all of them with `u64::MAX`; housekeeping too.
    pub fn flush(&mut self, now_ns: u64, out: &mut dyn EventSink) {
        let mut cx = self.shared.context();
        for family in &mut self.families {
            family.flush(now_ns, &mut cx, out);
        }
        if now_ns != u64::MAX {
            self.shared.processes.expire(now_ns);
        }
    }

    /// The families' closing summaries.
    pub fn finish(&mut self, output: &mut Output) -> Result<()> {
        for family in &mut self.families {
            family.finish(output)?;
        }
        Ok(())
    }
}
