//! The page-allocation failures family, at work: each failure attributed
//! to its process and pod, with the GFP flags by the kernel's names, the
//! buddy allocator's free lists at the time, the kernel's own log line and,
//! with `--stacks`, the kernel stack; a summary closes the watch.

use anyhow::Result;
use tracer_common::{Config, PageAllocRecord, RecordKind};

use super::{event::PageAllocEvent, gfp::GfpNames, BuddyInfo, Summary};
use crate::{
    clock::Clock,
    ebpf::{Attach, Hook},
    family::{every_hook, Context, Family, Registration, Settings, Start},
    output::{EventSink, Output},
    records::Record,
};

pub const REGISTRATION: Registration = Registration {
    name: "pagealloc",
    hooks: HOOKS,
    configure,
    wanted: every_hook,
    start,
};

pub const HOOKS: &[Hook] = &[Hook {
    name: "page_alloc",
    // The failure path itself where kprobes are allowed: nothing per
    // page allocated. mm_page_alloc also sees the failures of
    // __GFP_ACCOUNT allocations whose memory cgroup refused the charge
    // (they never reach the slow path), at one dispatch per page.
    candidates: &[
        Attach::KProbe {
            program: "warn_alloc",
            function: "warn_alloc",
        },
        Attach::RawTracepoint {
            program: "mm_page_alloc",
            group: "kmem",
            tracepoint: "mm_page_alloc",
        },
    ],
    without_it: "no page-allocation failure events",
    essential: false,
}];

fn configure(settings: &Settings, config: &mut Config) {
    config.page_alloc_stacks = settings.stacks as u32;
}

fn start(start: &mut Start<'_>) -> Option<Box<dyn Family>> {
    Some(Box::new(PageAlloc::new(start.args.host.procfs.as_path())))
}

/// What page-allocation failures need: the kernel's GFP names, buddyinfo
/// and the running summary.
pub struct PageAlloc {
    gfp: GfpNames,
    buddy: BuddyInfo,
    summary: Summary,
}

impl PageAlloc {
    pub fn new(procfs: &std::path::Path) -> Self {
        Self {
            gfp: GfpNames::from_tracefs(std::path::Path::new(crate::preflight::TRACEFS))
                .unwrap_or_default(),
            buddy: BuddyInfo::new(procfs),
            summary: Summary::default(),
        }
    }
}

impl Family for PageAlloc {
    fn kinds(&self) -> &'static [RecordKind] {
        &[RecordKind::PageAllocFailure]
    }

    fn handle(&mut self, record: &Record<'_>, cx: &mut Context<'_>, out: &mut dyn EventSink) {
        let Some(r) = record.read::<PageAllocRecord>() else {
            return;
        };
        let process = cx.process_ref(&r.task, true);
        let gfp_names = self.gfp.decode(r.gfp_flags);
        let tolerated = super::tolerated_reason(&self.gfp, r.gfp_flags);
        let pod = match process.attribution.pod.as_ref() {
            Some(p) => format!(
                "{}/{}",
                p.namespace.as_deref().unwrap_or("?"),
                p.name.as_deref().unwrap_or(&p.uid)
            ),
            None => "-".into(),
        };
        self.summary
            .add(r.order, &gfp_names, &pod, tolerated.is_some());
        if !cx.in_scope(&process) {
            return;
        }
        let kernel_log =
            cx.kernel_log
                .take_page_failure(&process.comm.as_str(), r.order, r.gfp_flags);
        let free = self.buddy.snapshot(r.header.ktime_ns);
        out.emit(&PageAllocEvent {
            mono_ns: r.header.ktime_ns,
            order: r.order,
            gfp_flags: r.gfp_flags,
            gfp_names,
            migratetype: r.migratetype,
            tolerated,
            zones: free.zones,
            types: free.types,
            stack: cx.stack(r.stack_id),
            kernel_log,
            process,
        });
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let summary = &self.summary;
        if summary.failures > 0 {
            tracing::warn!(
                "{} page-allocation failures ({} tolerated by their callers); by order {:?}; by flags {:?}; by pod {:?}",
                summary.failures, summary.tolerated, summary.by_order, summary.by_gfp, summary.by_pod
            );
        }
        out.record("page_alloc_summary", Clock::now_mono_ns(), summary)
    }
}
