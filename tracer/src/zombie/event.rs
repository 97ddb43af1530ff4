//! A zombie as tracer reports it: the event, its JSON body (kind `zombie`)
//! and its console line.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    output::{
        json::{Line, ProcessJson},
        text::{label, process},
        Event,
    },
    process::ProcessRef,
    signals::{signal_name, ExitStatus},
};

/// A process that exited and that its parent has not reaped.
#[derive(Debug, Clone)]
pub struct ZombieEvent {
    /// When tracer found it old enough.
    pub mono_ns: u64,
    pub process: ProcessRef,
    /// Its parent now: the process that should wait for it.
    pub parent: ProcessRef,
    pub exited_ns: u64,
    /// How long it has been a zombie.
    pub age_ns: u64,
    /// The wait status nobody collected.
    pub wait_status: u32,
    pub status: ExitStatus,
}

impl Event for ZombieEvent {
    fn kind(&self) -> &'static str {
        "zombie"
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    fn write_json(&self, out: &mut Vec<u8>, line: &Line<'_>) -> serde_json::Result<()> {
        let (exit_status, killed_by) = match self.status {
            ExitStatus::Exited(code) => (Some(code), None),
            ExitStatus::Signaled { sig, .. } => (None, Some(signal_name(sig).into_owned())),
        };
        let body = ZombieBody {
            process: line.process(&self.process),
            parent: line.process(&self.parent),
            exited_at: line.time(self.exited_ns),
            age_s: (self.age_ns / 1_000_000) as f64 / 1000.0,
            exit_code: self.status.exit_code(),
            exit_status,
            killed_by,
            wait_status: self.wait_status,
        };
        line.write(out, self.kind(), self.mono_ns, body)
    }

    fn write_text(&self, out: &mut String) {
        out.push_str("zombie: ");
        process(out, &self.process);
        label(out, &self.process.attribution);
        let _ = write!(
            out,
            " exited {:.1} s ago (exit code {}) and is not reaped by its parent ",
            self.age_ns as f64 / 1e9,
            self.status.exit_code()
        );
        process(out, &self.parent);
        label(out, &self.parent.attribution);
        out.push('\n');
    }
}

#[derive(Serialize)]
struct ZombieBody<'a> {
    process: ProcessJson<'a>,
    parent: ProcessJson<'a>,
    exited_at: String,
    /// Seconds since it exited, at the time of the line.
    age_s: f64,
    /// What a shell or Kubernetes shows: the status, or 128 + the signal.
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_status: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    killed_by: Option<String>,
    wait_status: u32,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{attribution::Attribution, clock::Clock, process::Comm};

    fn process(pid: u32, name: &str) -> ProcessRef {
        ProcessRef {
            pid,
            tid: pid,
            comm: Comm::from_str_lossy(name),
            thread_comm: Comm::from_str_lossy(name),
            start_ns: 0,
            attribution: Arc::new(Attribution::host()),
        }
    }

    /// The documented `zombie` fields, and the console line.
    #[test]
    fn json_and_text() {
        let event = ZombieEvent {
            mono_ns: 90_000_000_000,
            process: process(4242, "lostchild"),
            parent: process(4200, "unreaper"),
            exited_ns: 20_000_000_000,
            age_ns: 70_000_000_000,
            wait_status: 1 << 8,
            status: ExitStatus::from_wait_status(1 << 8),
        };
        let mut out = Vec::new();
        crate::output::json::write_event(&mut out, &event, &Clock::new(), "n").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["kind"], "zombie");
        assert_eq!(v["process"]["pid"], 4242);
        assert_eq!(v["parent"]["pid"], 4200);
        assert_eq!(v["parent"]["comm"], "unreaper");
        assert_eq!(v["age_s"], 70.0);
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["exit_status"], 1);
        assert!(v.get("killed_by").is_none());
        assert!(v["exited_at"].as_str().unwrap().ends_with('Z'));
        let mut line = String::new();
        event.write_text(&mut line);
        assert_eq!(
            line,
            "zombie: lostchild(4242) exited 70.0 s ago (exit code 1) and is not reaped by its parent unreaper(4200)\n"
        );
    }
}
