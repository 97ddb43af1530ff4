//! The JSON-lines schema (documented in the README). Every line is one object
//! with `schema`, `kind`, `time`, `mono_ns` and `node`, then the kind's fields.
//! Bump `SCHEMA_VERSION` on any change that renames or removes a field.

use serde::Serialize;

use super::Event;
use crate::{
    attribution::Attribution,
    clock::{Clock, WallTime},
    process::ProcessRef,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    schema: u32,
    kind: &'static str,
    time: WallTime,
    mono_ns: u64,
    node: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
pub struct ProcessJson<'a> {
    pid: u32,
    tid: u32,
    comm: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_comm: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<WallTime>,
    #[serde(flatten)]
    attribution: &'a Attribution,
}

/// What every line shares: the clock that dates it and the node it is from.
pub struct Line<'a> {
    pub clock: &'a Clock,
    pub node: &'a str,
}

impl Line<'_> {
    /// `body` as one JSON line (no newline) into `out`, cleared first, in
    /// the common envelope.
    pub fn write<T: Serialize>(
        &self,
        out: &mut Vec<u8>,
        kind: &'static str,
        mono_ns: u64,
        body: T,
    ) -> serde_json::Result<()> {
        write_record(out, kind, mono_ns, self.clock, self.node, body)
    }

    /// A process as every event names it.
    pub fn process<'p>(&self, p: &'p ProcessRef) -> ProcessJson<'p> {
        process(p, self.clock)
    }

    /// A CLOCK_MONOTONIC time as the wall-clock RFC 3339 time of the lines.
    pub fn time(&self, mono_ns: u64) -> String {
        self.clock.wall_rfc3339(mono_ns)
    }
}

/// Serializes `event` as one JSON line (no newline) into `out`, which is
/// cleared first and reused between events.
pub fn write_event(
    out: &mut Vec<u8>,
    event: &dyn Event,
    clock: &Clock,
    node: &str,
) -> serde_json::Result<()> {
    event.write_json(out, &Line { clock, node })
}

/// Any other record (`start`, `lost`, `stop`), with the same envelope.
pub fn write_record<T: Serialize>(
    out: &mut Vec<u8>,
    kind: &'static str,
    mono_ns: u64,
    clock: &Clock,
    node: &str,
    body: T,
) -> serde_json::Result<()> {
    out.clear();
    let time = clock.wall_time(mono_ns);
    serde_json::to_writer(
        out,
        &Envelope {
            schema: SCHEMA_VERSION,
            kind,
            time,
            mono_ns,
            node,
            body,
        },
    )
}

pub fn process<'a>(p: &'a ProcessRef, clock: &Clock) -> ProcessJson<'a> {
    ProcessJson {
        pid: p.pid,
        tid: p.tid,
        comm: p.comm.as_str(),
        thread_comm: (p.thread_comm != p.comm && p.thread_comm != Default::default())
            .then(|| p.thread_comm.as_str()),
        start_time: (p.start_ns != 0).then(|| clock.wall_time(p.start_ns)),
        attribution: &p.attribution,
    }
}
