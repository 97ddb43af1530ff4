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

/// What the IO-wait hook cannot see on this kernel, for the banner, `tracer
/// doctor` and the start record. Before 5.18 `sched_switch` passes no
/// `prev_state`, so the sleeper's state is read from its `task_struct` as it
/// switches out. By then a waker on another CPU may already have written
/// TASK_WAKING there (try_to_wake_up does, since 5.8, while the sleeper is
/// still in schedule() on its own CPU): that D sleep, over before the switch
/// ended, is not seen. 5.18 passes the state schedule() read first, for
/// this reason.
pub fn degradation(kernel: &crate::kernel_btf::ResolvedOffsets) -> Option<String> {
    if kernel.offsets.sched_switch_prev_state_arg != 0 {
        return None;
    }
    Some(match kernel.task_state_member {
        Some(member) => format!(
            "sched_switch passes no prev_state before 5.18: the sleeper's state is read from \
             task_struct.{member} as it switches out, where a wake-up from another CPU may \
             already have written TASK_WAKING: those D sleeps, the shortest, are not counted"
        ),
        None => "sched_switch passes no prev_state before 5.18 and task_struct has neither \
                 __state nor state: no D-state sleep is seen"
            .to_owned(),
    })
}

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

#[cfg(test)]
mod tests {
    use super::degradation;
    use crate::kernel_btf;

    /// On this machine's kernel (5.18 or later) nothing is degraded; the same
    /// offsets as a 5.10 kernel has them (no `prev_state`, the member
    /// `state`) name the member read and what it misses.
    #[test]
    fn io_wait_degradation_names_the_member_read_before_5_18() {
        let btf = kernel_btf::load(std::path::Path::new(kernel_btf::DEFAULT_BTF)).expect("BTF");
        let mut kernel = kernel_btf::resolve(&btf).expect("offsets");
        assert_eq!(kernel.task_state_member, Some("__state"));
        assert_eq!(degradation(&kernel), None);
        kernel.offsets.sched_switch_prev_state_arg = 0;
        kernel.task_state_member = Some("state");
        let said = degradation(&kernel).expect("degraded");
        assert!(
            said.contains("from task_struct.state as it switches out"),
            "{said}"
        );
        assert!(said.contains("TASK_WAKING"), "{said}");
    }
}
