//! A family is one kind of trouble tracer explains (signals and the exits
//! and OOM kills that go with them, page-allocation failures, the network,
//! IO wait, zombies): its hooks, its share of the programs' settings, the
//! records it reads and the events it reports. The rest of tracer reaches
//! the families only through [`FAMILIES`] and the [`Family`] trait.
//!
//! Adding a family: its records in a module of `tracer-common` (with a line
//! in `record_kinds!` per ring-buffer record and in `shared_names!` per map
//! userspace reads), its programs in `tracer-ebpf/src/<family>.rs`, its
//! folder here with a [`Registration`], one line in [`FAMILIES`], its
//! options in `cli.rs` (and [`Settings`] when the programs need them), its
//! scenario and the README. `src/zombie/` is the smallest example.

use std::path::Path;

use anyhow::Result;
use tracer_common::{Config, RecordKind, Task};

use crate::{
    attribution::{Attribution, Attributor},
    cli::WatchArgs,
    ebpf::{Hook, HookStatus},
    kernel_btf::ResolvedOffsets,
    kmsg::KernelLog,
    net::drops::DropSetup,
    output::{EventSink, Output},
    process::{Comm, ProcessRef, ProcessTable},
    records::Record,
    scope::Scope,
    signals::SignalSet,
    stacks::KernelStacks,
    tracefs::Format,
};

/// Every family, in the order their hooks are listed and attached.
pub const FAMILIES: &[&Registration] = &[
    &crate::signals::family::REGISTRATION,
    &crate::pagealloc::family::REGISTRATION,
    &crate::net::family::REGISTRATION,
    &crate::iowait::family::REGISTRATION,
    &crate::zombie::REGISTRATION,
];

/// What tracer knows of a family before it runs: enough for `doctor`, `top`
/// and the checks of the BPF object, which start none.
pub struct Registration {
    /// Short name ("signals", "iowait"), for people reading the code and
    /// the tests.
    pub name: &'static str,
    /// Its hooks, each with the ways to attach it, best first.
    pub hooks: &'static [Hook],
    /// Sets this family's part of the settings the programs read.
    pub configure: fn(&Settings, &mut Config),
    /// Whether `hook` is wanted with these settings (`--no-dns` leaves
    /// the DNS hooks out).
    pub wanted: fn(&Settings, &Hook) -> bool,
    /// Starts the family for `tracer watch`, once its hooks are attached;
    /// `None` when there is nothing for it to do (none of them attached).
    pub start: fn(&mut Start<'_>) -> Option<Box<dyn Family>>,
}

/// The default for [`Registration::wanted`]: every hook.
pub fn every_hook(_: &Settings, _: &Hook) -> bool {
    true
}

/// One family at work in `tracer watch`.
pub trait Family {
    /// The record kinds it reads (several families may read one kind).
    fn kinds(&self) -> &'static [RecordKind];

    /// Reads one record; hands the events it completes to `out`.
    fn handle(&mut self, record: &Record<'_>, cx: &mut Context<'_>, out: &mut dyn EventSink);

    /// Releases what waited (a held event, a batch to classify) once its
    /// wait is over at `now_ns` (CLOCK_MONOTONIC), or all of it with
    /// `u64::MAX`, at the end. Called every 100 ms.
    fn flush(&mut self, _now_ns: u64, _cx: &mut Context<'_>, _out: &mut dyn EventSink) {}

    /// Its closing summary, if it has one: console lines and records.
    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }
}

/// What the user asked for and what the kernel is like: what the families
/// make their settings from.
pub struct Settings {
    pub signals: SignalSet,
    /// `--signal-flood`: signals of one flow shown whole a second (0: all).
    pub signal_flood: u64,
    /// `--stacks`: kernel stacks of page-allocation failures and IO stalls.
    pub stacks: bool,
    pub dns: bool,
    /// How DNS queries are followed; the kernel side's response window
    /// derives from it (`Settings::response_window`).
    pub dns_tracking: crate::dns::tracker::Settings,
    pub iowait_threshold_ns: u64,
    /// The `oom:mark_victim` trace record's layout on this kernel.
    pub oom_format: Option<Format>,
    /// The drops watched, by this kernel's `enum skb_drop_reason` or, before
    /// 5.17, by their caller.
    pub drops: DropSetup,
    /// What the IO-wait hook cannot see on this kernel (before 5.18).
    pub io_wait_degraded: Option<String>,
}

impl Settings {
    pub fn from_args(args: &WatchArgs, kernel: &ResolvedOffsets) -> Self {
        Self {
            signals: args.signals,
            signal_flood: args.signal_flood,
            stacks: args.stacks,
            dns: !args.no_dns,
            dns_tracking: Default::default(),
            iowait_threshold_ns: args.iowait_threshold,
            oom_format: oom_format(),
            drops: DropSetup::for_kernel(kernel, &args.host.procfs),
            io_wait_degraded: crate::iowait::family::degradation(kernel),
        }
    }

    /// Everything switched on, as `tracer doctor` and the hook checks load
    /// the programs: settings are constants to the verifier, which skips the
    /// code they turn off.
    pub fn everything(kernel: &ResolvedOffsets, procfs: &std::path::Path) -> Self {
        Self {
            signals: SignalSet::all(),
            signal_flood: crate::signals::flood::KEEP_WHOLE,
            stacks: true,
            dns: true,
            dns_tracking: Default::default(),
            // `--iowait-threshold`'s default.
            iowait_threshold_ns: 100_000_000,
            oom_format: oom_format(),
            drops: DropSetup::for_kernel(kernel, procfs),
            io_wait_degraded: crate::iowait::family::degradation(kernel),
        }
    }

    /// Everything off: only what a family switches on itself (`tracer top`).
    pub fn nothing() -> Self {
        Self {
            signals: SignalSet::empty(),
            signal_flood: 0,
            stacks: false,
            dns: false,
            dns_tracking: Default::default(),
            iowait_threshold_ns: u64::MAX,
            oom_format: None,
            drops: DropSetup::none(),
            io_wait_degraded: None,
        }
    }

    /// Notes on each hook what it cannot tell on this kernel, for the
    /// banner, `tracer doctor` and the start record.
    pub fn mark_degraded(&self, hooks: &mut [crate::ebpf::HookStatus]) {
        self.drops.mark(hooks);
        for status in hooks.iter_mut().filter(|h| h.hook.name == "io_wait") {
            status.degraded.clone_from(&self.io_wait_degraded);
        }
    }

    /// The settings of every family, as the programs read them.
    pub fn config(&self) -> Config {
        let mut config = Config::DEFAULT;
        for family in FAMILIES {
            (family.configure)(self, &mut config);
        }
        config
    }

    /// The hooks of every family these settings want, in order.
    pub fn hooks(&self) -> Vec<Hook> {
        FAMILIES
            .iter()
            .flat_map(|f| f.hooks.iter().filter(|h| (f.wanted)(self, h)))
            .copied()
            .collect()
    }
}

fn oom_format() -> Option<Format> {
    Format::read(Path::new(crate::preflight::TRACEFS), "oom", "mark_victim")
}

/// Every hook of every family, in order.
pub fn all_hooks() -> impl Iterator<Item = &'static Hook> {
    FAMILIES.iter().flat_map(|f| f.hooks.iter())
}

/// What a family's `start` has to go on.
pub struct Start<'a> {
    /// The command line, for a family's own options.
    pub args: &'a WatchArgs,
    pub settings: &'a Settings,
    /// The loaded object, for a family that reads maps of its own.
    pub ebpf: &'a mut aya::Ebpf,
    /// How this family's hooks attached.
    pub hooks: &'a [&'a HookStatus],
    /// Lines for the banner ("drop reasons this kernel does not have").
    pub notes: &'a mut Vec<String>,
}

impl Start<'_> {
    /// Whether the hook of this name attached.
    pub fn attached(&self, hook: &str) -> bool {
        self.hooks
            .iter()
            .any(|h| h.hook.name == hook && h.attached.is_ok())
    }

    pub fn any_attached(&self) -> bool {
        self.hooks.iter().any(|h| h.attached.is_ok())
    }
}

/// What a family needs from the rest of tracer while it runs: the process
/// table and attribution, the `--pid/--pod/--container` filter, kernel
/// stacks and the kernel's log.
pub struct Context<'a> {
    pub processes: &'a mut ProcessTable,
    pub attributor: &'a mut Attributor,
    pub scope: &'a Scope,
    /// With `--stacks`.
    pub stacks: Option<&'a KernelStacks>,
    pub kernel_log: &'a mut KernelLog,
    /// The host's procfs.
    pub procfs: &'a Path,
}

impl Context<'_> {
    /// `fresh`: ask for the process's cgroup as of now (signals, OOM kills)
    /// rather than trust the table (exits, where the process is gone).
    pub fn process_ref(&mut self, task: &Task, fresh: bool) -> ProcessRef {
        let attribution = if fresh {
            self.processes.current_attribution(task, self.attributor)
        } else {
            self.processes.lookup_or_load(task, self.attributor);
            self.processes
                .refresh_attribution(task.tgid, self.attributor)
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

    /// Whether the process is followed (`--pid/--pod/--container`).
    pub fn in_scope(&self, p: &ProcessRef) -> bool {
        self.scope.matches(p.pid, &p.attribution)
    }

    /// Whether something of this cgroup, container or pod is followed.
    pub fn attribution_in_scope(&self, a: &Attribution) -> bool {
        self.scope.matches(0, a)
    }

    /// The frames of a kernel stack, innermost first; empty without
    /// `--stacks` or for no stack (-1).
    pub fn stack(&self, id: i64) -> Vec<String> {
        match self.stacks {
            Some(stacks) if id >= 0 => stacks.resolve(id),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A family finds its own hooks by name among the attached ones: two
    /// hooks of one name would be handed to both families.
    #[test]
    fn family_and_hook_names_are_unique() {
        let mut families: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), FAMILIES.len(), "{families:?}");
        let mut hooks: Vec<&str> = all_hooks().map(|h| h.name).collect();
        let count = hooks.len();
        hooks.sort_unstable();
        hooks.dedup();
        assert_eq!(hooks.len(), count, "a hook name is used twice");
    }

    /// `--no-dns` leaves out exactly the DNS hooks, and nothing else.
    #[test]
    fn settings_choose_the_hooks() {
        let mut settings = Settings::nothing();
        settings.dns = true;
        let with_dns = settings.hooks();
        settings.dns = false;
        let without: Vec<&str> = settings.hooks().iter().map(|h| h.name).collect();
        let left_out: Vec<&str> = with_dns
            .iter()
            .map(|h| h.name)
            .filter(|n| !without.contains(n))
            .collect();
        assert_eq!(left_out, ["dns_sent", "dns_received"]);
        assert_eq!(with_dns.len(), all_hooks().count());
    }
}
