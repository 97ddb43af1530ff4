//! A page-allocation failure as tracer reports it: the event, its JSON body
//! (kind `page_alloc_failure`) and its console lines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    output::{
        json::{Line, ProcessJson},
        text::{label, process},
        Event,
    },
    process::ProcessRef,
    size::format_size,
};

/// A page allocation that returned no page.
#[derive(Debug, Clone)]
pub struct PageAllocEvent {
    pub mono_ns: u64,
    pub process: ProcessRef,
    pub order: u32,
    pub gfp_flags: u64,
    /// The flags by the running kernel's names ("GFP_KERNEL|__GFP_NOWARN").
    pub gfp_names: String,
    pub migratetype: i32,
    /// Why the caller can live with it, when its flags say so.
    pub tolerated: Option<&'static str>,
    /// /proc/buddyinfo around the time (shared by failures within a second).
    pub zones: Vec<super::ZoneFree>,
    /// /proc/pagetypeinfo's free lists per migrate type, read with it.
    pub types: Vec<super::MigrateFree>,
    /// Kernel stack, innermost first, with `--stacks`.
    pub stack: Vec<String>,
    /// The kernel's own log line for it, when it printed one.
    pub kernel_log: Option<super::LoggedFailure>,
}

impl Event for PageAllocEvent {
    fn kind(&self) -> &'static str {
        "page_alloc_failure"
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        line.write(out, self.kind(), self.mono_ns, body(self, line))
    }

    fn write_text(&self, out: &mut String) {
        text(out, self);
    }
}

#[derive(Serialize)]
pub struct PageAllocBody<'a> {
    process: ProcessJson<'a>,
    order: u32,
    /// 2^order pages of the machine's page size.
    bytes: u64,
    gfp_flags: u64,
    gfp_names: &'a str,
    migratetype: i32,
    tolerated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tolerated_reason: Option<&'static str>,
    /// Free blocks of at least `order` pages, over all zones, at the time.
    free_blocks_at_order: u64,
    buddyinfo: &'a [super::ZoneFree],
    /// The failing request's migrate type by the kernel's name ("Unmovable").
    #[serde(skip_serializing_if = "Option::is_none")]
    migratetype_name: Option<&'a str>,
    /// Free blocks of at least `order` pages of that migrate type.
    #[serde(skip_serializing_if = "Option::is_none")]
    free_blocks_at_order_of_type: Option<u64>,
    /// /proc/pagetypeinfo's free lists (empty where it cannot be read).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pagetypeinfo: &'a [super::MigrateFree],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stack: &'a [String],
    /// The kernel's own "page allocation failure" line, when it logged one.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_log: Option<LoggedFailureJson<'a>>,
}

#[derive(Serialize)]
struct LoggedFailureJson<'a> {
    comm: &'a str,
    order: u32,
    mode: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode_names: Option<&'a str>,
}

fn body<'a>(p: &'a PageAllocEvent, line: &Line<'_>) -> PageAllocBody<'a> {
    let migratetype_name = super::migratetype_name(&p.types, p.migratetype);
    PageAllocBody {
        process: line.process(&p.process),
        order: p.order,
        bytes: crate::size::page_size() << p.order.min(20),
        gfp_flags: p.gfp_flags,
        gfp_names: &p.gfp_names,
        migratetype: p.migratetype,
        tolerated: p.tolerated.is_some(),
        tolerated_reason: p.tolerated,
        free_blocks_at_order: super::free_blocks_at_or_above(&p.zones, p.order),
        buddyinfo: &p.zones,
        migratetype_name,
        free_blocks_at_order_of_type: migratetype_name
            .map(|name| super::free_blocks_of_type_at_or_above(&p.types, name, p.order)),
        pagetypeinfo: &p.types,
        stack: &p.stack,
        kernel_log: p.kernel_log.as_ref().map(|k| LoggedFailureJson {
            comm: &k.comm,
            order: k.order,
            mode: k.mode,
            mode_names: k.mode_names.as_deref(),
        }),
    }
}

fn text(out: &mut String, p: &PageAllocEvent) {
    let pages = 1u64 << p.order.min(20);
    let _ = write!(
        out,
        "page allocation failure: order {} ({pages} pages, {}), {}, by ",
        p.order,
        format_size(pages * crate::size::page_size()),
        p.gfp_names
    );
    process(out, &p.process);
    label(out, &p.process.attribution);
    if let Some(reason) = p.tolerated {
        let _ = write!(out, " (tolerated: {reason})");
    }
    out.push('\n');
    let _ = write!(
        out,
        "  free blocks at order>={}: {}",
        p.order,
        super::free_blocks_at_or_above(&p.zones, p.order)
    );
    if let Some(name) = super::migratetype_name(&p.types, p.migratetype) {
        let _ = write!(
            out,
            " ({} of them {name}, the type asked for)",
            super::free_blocks_of_type_at_or_above(&p.types, name, p.order)
        );
    }
    for zone in &p.zones {
        let _ = write!(out, "; node {} {}:", zone.node, zone.zone);
        for free in &zone.free_blocks {
            let _ = write!(out, " {free}");
        }
    }
    out.push('\n');
    for frame in &p.stack {
        let _ = writeln!(out, "    {frame}");
    }
}
