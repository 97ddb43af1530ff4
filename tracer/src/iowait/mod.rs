//! IO wait: stalls and hung tasks as events (`tracer watch`), and the
//! per-second accounting of `tracer top`. The kernel side keeps the totals
//! in maps (`IO_TASKS`, `IO_DEVICES`, `IO_CGROUPS`) and writes a record only
//! for a wait over `--iowait-threshold` or a hung task.

pub mod device;
pub mod family;
pub mod procstat;
pub mod psi;
pub mod sample;

use std::sync::Arc;

use anyhow::{Context as _, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuHashMap},
    Ebpf,
};
use tracer_common::{
    names, BlockedTaskRecord, CgroupIoKey, CgroupIoStats, DeviceIoStats, TaskIoTotals,
};

use crate::{
    output::{json::Line, Event},
    process::ProcessRef,
};

/// The kernel's IO accounting maps, read by `tracer top`.
pub struct IoMaps {
    pub tasks: HashMap<MapData, u32, TaskIoTotals>,
    pub devices: PerCpuHashMap<MapData, u32, DeviceIoStats>,
    pub cgroups: PerCpuHashMap<MapData, CgroupIoKey, CgroupIoStats>,
}

impl IoMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing"))
        };
        Ok(Self {
            tasks: HashMap::try_from(take(names::IO_TASKS)?).context("map IO_TASKS")?,
            devices: PerCpuHashMap::try_from(take(names::IO_DEVICES)?).context("map IO_DEVICES")?,
            cgroups: PerCpuHashMap::try_from(take(names::IO_CGROUPS)?).context("map IO_CGROUPS")?,
        })
    }
}

/// `TASK_UNINTERRUPTIBLE`, the D of `ps`.
const TASK_UNINTERRUPTIBLE: u32 = 0x2;

/// A block device as events name it.
#[derive(Debug, Clone)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
    pub name: Arc<str>,
}

/// A task blocked in D state: an IO stall over the threshold (reported at
/// its wake-up), or a task the kernel's hung-task detector reported.
#[derive(Debug, Clone)]
pub struct IoWaitEvent {
    pub mono_ns: u64,
    pub hung: bool,
    pub process: ProcessRef,
    /// How long it was blocked (hung tasks: so far); `None` when the start
    /// of a hung task's wait was before tracer started.
    pub blocked_ns: Option<u64>,
    /// The wait was IO wait (`in_iowait`), not another uninterruptible sleep.
    pub in_iowait: bool,
    /// "D" for an uninterruptible sleep; the raw state otherwise.
    pub state: u32,
    pub device: Option<Device>,
    /// Kernel stack where it sleeps, innermost first (with `--stacks`).
    pub stack: Vec<String>,
}

impl IoWaitEvent {
    pub fn kind(&self) -> &'static str {
        if self.hung {
            "hung_task"
        } else {
            "io_stall"
        }
    }

    pub fn state_letter(&self) -> &'static str {
        if self.state & TASK_UNINTERRUPTIBLE != 0 {
            "D"
        } else {
            "?"
        }
    }
}

impl Event for IoWaitEvent {
    fn kind(&self) -> &'static str {
        IoWaitEvent::kind(self)
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        line.write(
            out,
            IoWaitEvent::kind(self),
            self.mono_ns,
            json::body(self, line.process(&self.process)),
        )
    }

    fn write_text(&self, out: &mut String) {
        text::write(out, self);
    }
}

/// What stall events need besides the process: device names and, with
/// `--stacks`, the symbols for the stack.
#[derive(Default)]
pub struct IoWaitState {
    pub devices: device::DeviceNames,
}

impl IoWaitState {
    pub fn event(
        &mut self,
        r: &BlockedTaskRecord,
        hung: bool,
        process: ProcessRef,
        stack: impl Fn(i64) -> Vec<String>,
    ) -> IoWaitEvent {
        let device = (r.dev != 0).then(|| {
            let (major, minor) = device::split_dev(r.dev);
            Device {
                major,
                minor,
                name: self.devices.name(r.dev),
            }
        });
        IoWaitEvent {
            mono_ns: r.header.ktime_ns,
            hung,
            process,
            blocked_ns: (r.blocked_ns != 0 || !hung).then_some(r.blocked_ns),
            in_iowait: r.in_iowait != 0,
            state: r.state,
            device,
            stack: if r.stack_id >= 0 {
                stack(r.stack_id)
            } else {
                Vec::new()
            },
        }
    }
}

pub mod json {
    //! The `io_stall` and `hung_task` JSON bodies.
    use serde::Serialize;

    use super::IoWaitEvent;

    #[derive(Serialize)]
    pub struct DeviceJson<'a> {
        pub name: &'a str,
        pub major: u32,
        pub minor: u32,
    }

    #[derive(Serialize)]
    pub struct IoWaitBody<'a, P: Serialize> {
        pub process: P,
        /// Null for a hung task whose wait began before tracer started.
        pub blocked_ns: Option<u64>,
        pub blocked_ms: Option<f64>,
        pub in_iowait: bool,
        pub state: &'static str,
        pub device: Option<DeviceJson<'a>>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        pub stack: &'a [String],
    }

    pub fn body<P: Serialize>(e: &IoWaitEvent, process: P) -> IoWaitBody<'_, P> {
        IoWaitBody {
            process,
            blocked_ns: e.blocked_ns,
            blocked_ms: e.blocked_ns.map(|ns| (ns / 1000) as f64 / 1000.0),
            in_iowait: e.in_iowait,
            state: e.state_letter(),
            device: e.device.as_ref().map(|d| DeviceJson {
                name: &d.name,
                major: d.major,
                minor: d.minor,
            }),
            stack: &e.stack,
        }
    }
}

pub mod text {
    //! The console lines of IO stalls and hung tasks.
    use std::fmt::Write as _;

    use super::IoWaitEvent;
    use crate::output::escape::Escaped;

    pub fn write(out: &mut String, e: &IoWaitEvent) {
        let p = &e.process;
        let what = if e.in_iowait {
            "in IO wait"
        } else {
            "in uninterruptible sleep"
        };
        if e.hung {
            let _ = write!(out, "hung task: {}({})", Escaped(&p.comm), p.pid);
            if p.tid != p.pid {
                let _ = write!(out, " thread {}({})", Escaped(&p.thread_comm), p.tid);
            }
            let _ = write!(out, " blocked {what}");
            if let Some(ns) = e.blocked_ns {
                let _ = write!(out, " for {:.1} s", ns as f64 / 1e9);
            }
        } else {
            let _ = write!(
                out,
                "IO stall: {}({}) blocked {:.0} ms {what}",
                Escaped(&p.comm),
                p.pid,
                e.blocked_ns.unwrap_or(0) as f64 / 1e6
            );
        }
        if let Some(d) = &e.device {
            let _ = write!(out, " on {} ({}:{})", Escaped(&d.name), d.major, d.minor);
        }
        let label = p.attribution.label();
        if !label.is_empty() {
            let _ = write!(out, " [{}]", Escaped(&label));
        }
        out.push('\n');
        for frame in &e.stack {
            let _ = writeln!(out, "    {frame}");
        }
    }
}

/// `--iowait-threshold`: "100ms", "1.5s", "250us", or plain milliseconds;
/// nanoseconds out.
pub fn parse_threshold(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s}: expected a duration such as 100ms, 1s or 250us"))?;
    let ns_per = match unit.trim() {
        "" | "ms" => 1e6,
        "s" => 1e9,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        other => return Err(format!("{s}: unknown unit {other:?} (use ns, us, ms or s)")),
    };
    let ns = value * ns_per;
    if !(1e3..=3.6e12).contains(&ns) {
        return Err(format!("{s}: the threshold must be between 1us and 1h"));
    }
    Ok(ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stall(hung: bool) -> IoWaitEvent {
        IoWaitEvent {
            mono_ns: 5_000,
            hung,
            process: ProcessRef {
                pid: 9211,
                tid: 9211,
                comm: crate::process::Comm::from_str_lossy("iohog"),
                thread_comm: crate::process::Comm::from_str_lossy("iohog"),
                start_ns: 0,
                attribution: Arc::new(crate::attribution::Attribution::host()),
            },
            blocked_ns: (!hung).then_some(251_000_399),
            in_iowait: !hung,
            state: 2,
            device: Some(Device {
                major: 7,
                minor: 3,
                name: "loop3".into(),
            }),
            stack: vec!["io_schedule+0x42".into()],
        }
    }

    /// The documented `io_stall` and `hung_task` fields.
    #[test]
    fn json_and_text_of_a_stall_and_a_hung_task() {
        let mut out = Vec::new();
        let event = stall(false);
        crate::output::json::write_event(&mut out, &event, &crate::clock::Clock::new(), "n")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["kind"], "io_stall");
        assert_eq!(v["process"]["pid"], 9211);
        assert_eq!(v["blocked_ns"], 251_000_399);
        assert_eq!(v["blocked_ms"], 251.0);
        assert_eq!(v["in_iowait"], true);
        assert_eq!(v["state"], "D");
        assert_eq!(v["device"]["name"], "loop3");
        assert_eq!(v["device"]["major"], 7);
        assert_eq!(v["stack"][0], "io_schedule+0x42");
        let mut line = String::new();
        text::write(&mut line, &stall(false));
        assert!(
            line.starts_with("IO stall: iohog(9211) blocked 251 ms in IO wait on loop3 (7:3)"),
            "{line}"
        );

        let event = stall(true);
        crate::output::json::write_event(&mut out, &event, &crate::clock::Clock::new(), "n")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["kind"], "hung_task");
        assert!(v["blocked_ns"].is_null());
        assert_eq!(v["in_iowait"], false);
        let mut line = String::new();
        text::write(&mut line, &stall(true));
        assert!(
            line.starts_with("hung task: iohog(9211) blocked in uninterruptible sleep on loop3"),
            "{line}"
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(parse_threshold("100ms"), Ok(100_000_000));
        assert_eq!(parse_threshold("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_threshold("250us"), Ok(250_000));
        assert_eq!(parse_threshold("20"), Ok(20_000_000));
        assert!(parse_threshold("fast").is_err());
        assert!(parse_threshold("10parsecs").is_err());
        assert!(parse_threshold("0").is_err());
    }
}
