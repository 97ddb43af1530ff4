//! The IO wait family in `tracer watch`: IO stalls over the threshold and
//! hung tasks, with their process, pod, device and, with `--stacks`, the
//! kernel stack where they sleep. (`tracer top` reads the same hooks' totals.)

use tracer_common::{BlockedTaskRecord, Config, RecordKind};

use super::IoWaitState;
use crate::{
    ebpf::{Attach, Hook},
    family::{every_hook, Context, Family, Registration, Settings, Start},
    output::EventSink,
    records::Record,
};

pub const REGISTRATION: Registration = Registration {
    name: "iowait",
    hooks: HOOKS,
    configure,
    wanted: every_hook,
    start,
};

pub const HOOKS: &[Hook] = &[
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

fn configure(settings: &Settings, config: &mut Config) {
    config.iowait_threshold_ns = settings.iowait_threshold_ns;
    config.iowait_stacks = settings.stacks as u32;
}

fn start(_: &mut Start<'_>) -> Option<Box<dyn Family>> {
    Some(Box::new(IoWait::default()))
}

#[derive(Default)]
pub struct IoWait {
    state: IoWaitState,
}

impl Family for IoWait {
    fn kinds(&self) -> &'static [RecordKind] {
        &[RecordKind::IoStall, RecordKind::HungTask]
    }

    fn handle(&mut self, record: &Record<'_>, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let Some(r) = record.read::<BlockedTaskRecord>() else {
            return;
        };
        let hung = record.kind == RecordKind::HungTask;
        let process = cx.process_ref(&r.task, true);
        if !cx.in_scope(&process) {
            return;
        }
        let event = self.state.event(&r, hung, process, |id| cx.stack(id));
        out.emit(&event);
    }
}
