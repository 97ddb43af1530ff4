//! The zombies family: processes that exited and that their parent has not
//! reaped (`<defunct>` in ps). A few are harmless; a parent that never
//! waits (an init-less container, a supervisor with a bug) piles them up
//! until the pid space or the pod's pids limit runs out. Each zombie older
//! than `--zombie-age` is reported once, with its pod, its age and the
//! parent that does not reap it.
//!
//! The kernel keeps every exited, unreaped process in `ZOMBIES`; this
//! family reads the map once a second and checks /proc before it reports.
//! Zombies made before tracer started are not seen: their exit was not.

pub mod event;

use std::{collections::HashMap, path::PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData};
use tracer_common::{names, ExitedProcess, RecordKind, Task};

use self::event::ZombieEvent;
use crate::{
    ebpf::{Attach, Hook},
    family::{every_hook, Context, Family, Registration, Settings, Start},
    output::EventSink,
    process::Comm,
    records::Record,
    signals::ExitStatus,
};

pub const REGISTRATION: Registration = Registration {
    name: "zombie",
    hooks: HOOKS,
    configure,
    wanted: every_hook,
    start,
};

pub const HOOKS: &[Hook] = &[
    Hook {
        name: "zombie_exit",
        candidates: &[Attach::RawTracepoint {
            program: "zombie_exit",
            group: "sched",
            tracepoint: "sched_process_exit",
        }],
        without_it: "no zombie events",
        essential: false,
    },
    Hook {
        name: "zombie_free",
        candidates: &[Attach::RawTracepoint {
            program: "zombie_free",
            group: "sched",
            tracepoint: "sched_process_free",
        }],
        without_it: "no zombie events (reaped processes could not be told apart)",
        essential: false,
    },
];

/// How often the map is read.
const SCAN_EVERY_NS: u64 = 1_000_000_000;

/// The programs need no setting: the age is applied here.
fn configure(_: &Settings, _: &mut tracer_common::Config) {}

fn start(start: &mut Start<'_>) -> Option<Box<dyn Family>> {
    if !(start.attached("zombie_exit") && start.attached("zombie_free")) {
        return None;
    }
    let map = start
        .ebpf
        .take_map(names::ZOMBIES)
        .map(BpfHashMap::try_from);
    match map {
        Some(Ok(exited)) => Some(Box::new(Zombies {
            exited,
            min_age_ns: start.args.zombie_age,
            procfs: start.args.host.procfs.clone(),
            scanned_at_ns: 0,
            reported: HashMap::new(),
        })),
        _ => {
            start
                .notes
                .push(format!("map {} missing: no zombie events", names::ZOMBIES));
            None
        }
    }
}

pub struct Zombies {
    exited: BpfHashMap<MapData, u32, ExitedProcess>,
    min_age_ns: u64,
    procfs: PathBuf,
    scanned_at_ns: u64,
    /// Zombies already reported (pid -> start time), until they are reaped.
    reported: HashMap<u32, u64>,
}

impl Family for Zombies {
    fn kinds(&self) -> &'static [RecordKind] {
        &[]
    }

    fn handle(&mut self, _: &Record<'_>, _: &mut Context<'_>, _: &mut dyn EventSink) {}

    fn flush(&mut self, now_ns: u64, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        if now_ns == u64::MAX || now_ns.saturating_sub(self.scanned_at_ns) < SCAN_EVERY_NS {
            return;
        }
        self.scanned_at_ns = now_ns;
        let exited: Vec<(u32, ExitedProcess)> = self.exited.iter().filter_map(Result::ok).collect();
        // Reaped since: forgotten, so that a pid reused later is reported anew.
        self.reported.retain(|pid, start| {
            exited
                .iter()
                .any(|(p, e)| p == pid && e.task.start_ns == *start)
        });
        for (pid, e) in exited {
            let age_ns = now_ns.saturating_sub(e.exited_ns);
            if age_ns < self.min_age_ns || self.reported.contains_key(&pid) {
                continue;
            }
            // The kernel's word, checked: still a zombie, and whose child now
            // (a zombie whose parent died is the new parent's to reap).
            let stat = std::fs::read_to_string(self.procfs.join(pid.to_string()).join("stat"));
            let Some(('Z', ppid)) = stat.ok().as_deref().and_then(state_and_parent) else {
                continue;
            };
            self.reported.insert(pid, e.task.start_ns);
            let process = cx.process_ref(&e.task, true);
            let parent_task = self.parent_task(ppid, cx);
            let parent = cx.process_ref(&parent_task, true);
            if !(cx.in_scope(&process) || cx.in_scope(&parent)) {
                continue;
            }
            out.emit(&ZombieEvent {
                mono_ns: now_ns,
                process,
                parent,
                exited_ns: e.exited_ns,
                age_ns,
                wait_status: e.exit_code,
                status: ExitStatus::from_wait_status(e.exit_code),
            });
        }
    }
}

impl Zombies {
    /// The parent as a task: from the process table, else from /proc.
    fn parent_task(&self, ppid: u32, cx: &Context<'_>) -> Task {
        let (comm, start_ns) = match cx.processes.get(ppid) {
            Some(p) => (p.comm, p.start_ns),
            None => (
                std::fs::read_to_string(self.procfs.join(ppid.to_string()).join("comm"))
                    .map(|c| Comm::from_str_lossy(&c))
                    .unwrap_or_default(),
                0,
            ),
        };
        Task {
            tid: ppid,
            tgid: ppid,
            start_ns,
            comm: comm.raw(),
            thread_comm: comm.raw(),
            cgroup2_id: 0,
            memory_cgroup_id: 0,
        }
    }
}

/// The state letter and the parent's pid from `/proc/PID/stat`
/// ("4242 (name) Z 4200 ..."); the name may hold spaces and parentheses.
fn state_and_parent(stat: &str) -> Option<(char, u32)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_parent_whatever_the_name() {
        assert_eq!(
            state_and_parent("4242 (lostchild) Z 4200 4200 4100 0 -1 4228100 0"),
            Some(('Z', 4200))
        );
        assert_eq!(
            state_and_parent("77 (a) b) (c) S 1 77 77 0 -1"),
            Some(('S', 1))
        );
        assert_eq!(state_and_parent("garbage"), None);
        assert_eq!(state_and_parent("1 (x) Z"), None);
    }
}
