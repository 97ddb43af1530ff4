//! The JSON bodies of `signal`, `exit` and `oom` lines (documented in the
//! README).

use std::borrow::Cow;

use serde::Serialize;

use super::{
    event::{ExitEvent, NodeMemory, OomEvent, OomVictim, SignalCause, SignalEvent},
    signal_name, ExitStatus,
};
use crate::{
    attribution::Attribution,
    clock::{Clock, WallTime},
    output::json::{Line, ProcessJson},
    process::Ancestor,
};

#[derive(Serialize)]
pub struct AncestorJson<'a> {
    pid: u32,
    comm: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<WallTime>,
}

/// The sender's ancestry, root first, written straight from the event's
/// own list (no list of its own: a signal line is written per record
/// under a storm).
pub struct AncestryJson<'a> {
    ancestry: &'a [Ancestor],
    clock: &'a Clock,
}

impl Serialize for AncestryJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Root first, sender last: the order the console prints.
        serializer.collect_seq(self.ancestry.iter().rev().map(|a| ancestor(a, self.clock)))
    }
}

#[derive(Serialize)]
pub struct SignalJson {
    number: u32,
    name: Cow<'static, str>,
    code: i32,
    code_name: &'static str,
    origin: &'static str,
    /// "process" (kill) or "thread" (tkill/tgkill).
    directed: &'static str,
    result: &'static str,
}

#[derive(Serialize)]
pub struct SignalBody<'a> {
    signal: SignalJson,
    sender: ProcessJson<'a>,
    sender_ancestry: AncestryJson<'a>,
    sender_ancestry_truncated: bool,
    target: ProcessJson<'a>,
}

#[derive(Serialize)]
pub struct CauseJson<'a> {
    signal: String,
    origin: &'static str,
    sender_pid: u32,
    sender_comm: std::borrow::Cow<'a, str>,
    time: String,
}

#[derive(Serialize)]
pub struct MemcgJson<'a> {
    path: &'a str,
    limit_bytes: u64,
    usage_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    oom_kills: Option<u64>,
    #[serde(flatten)]
    attribution: &'a Attribution,
}

#[derive(Serialize)]
pub struct VictimJson<'a> {
    process: ProcessJson<'a>,
    #[serde(flatten)]
    memory: &'a super::oom::VictimFields,
}

#[derive(Serialize)]
pub struct NodeMemoryJson {
    total_bytes: u64,
    free_bytes: u64,
    available_bytes: u64,
}

#[derive(Serialize)]
pub struct KernelLogJson<'a> {
    constraint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    oom_memcg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_memcg: Option<&'a str>,
    task: &'a str,
    pid: u32,
}

#[derive(Serialize)]
pub struct OomBody<'a> {
    /// "cgroup" or "system".
    scope: &'static str,
    scope_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    memcg: Option<MemcgJson<'a>>,
    trigger: ProcessJson<'a>,
    victims: Vec<VictimJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_log: Option<KernelLogJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_memory: Option<NodeMemoryJson>,
}

#[derive(Serialize)]
pub struct ExitBody<'a> {
    process: ProcessJson<'a>,
    ppid: u32,
    /// What a shell or Kubernetes shows: the status, or 128 + the signal.
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_status: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    killed_by: Option<String>,
    core_dumped: bool,
    wait_status: u32,
    /// The OOM killer killed it (see the `oom` record before this one).
    oom_killed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_signal: Option<CauseJson<'a>>,
}

fn ancestor<'a>(a: &'a Ancestor, clock: &Clock) -> AncestorJson<'a> {
    AncestorJson {
        pid: a.pid,
        comm: a.comm.as_str(),
        start_time: (a.start_ns != 0).then(|| clock.wall_time(a.start_ns)),
    }
}

pub fn signal_body<'a>(s: &'a SignalEvent, line: &Line<'a>) -> SignalBody<'a> {
    SignalBody {
        signal: SignalJson {
            number: s.sig,
            name: signal_name(s.sig),
            code: s.si_code,
            code_name: s.code.name,
            origin: s.code.origin.as_str(),
            directed: if s.thread_directed {
                "thread"
            } else {
                "process"
            },
            result: s.delivery.as_str(),
        },
        sender: line.process(&s.sender),
        sender_ancestry: AncestryJson {
            ancestry: s.ancestry.as_slice(),
            clock: line.clock,
        },
        sender_ancestry_truncated: s.ancestry_truncated,
        target: line.process(&s.target),
    }
}

fn cause<'a>(c: &'a SignalCause, clock: &Clock) -> CauseJson<'a> {
    CauseJson {
        signal: signal_name(c.sig).into_owned(),
        origin: c.code.origin.as_str(),
        sender_pid: c.sender_pid,
        sender_comm: c.sender_comm.as_str(),
        time: clock.wall_rfc3339(c.mono_ns),
    }
}

fn victim<'a>(v: &'a OomVictim, line: &Line<'_>) -> VictimJson<'a> {
    VictimJson {
        process: line.process(&v.process),
        memory: &v.memory,
    }
}

fn node_memory(m: &NodeMemory) -> NodeMemoryJson {
    NodeMemoryJson {
        total_bytes: m.total_bytes,
        free_bytes: m.free_bytes,
        available_bytes: m.available_bytes,
    }
}

pub fn oom_body<'a>(o: &'a OomEvent, line: &Line<'_>) -> OomBody<'a> {
    OomBody {
        scope: o.scope.as_str(),
        scope_source: o.scope_source,
        memcg: o.memcg.as_ref().map(|m| MemcgJson {
            path: &m.path,
            limit_bytes: m.limit_bytes,
            usage_bytes: m.usage_bytes,
            oom_kills: m.oom_kills,
            attribution: &m.attribution,
        }),
        trigger: line.process(&o.trigger),
        victims: o.victims.iter().map(|v| victim(v, line)).collect(),
        kernel_log: o.kernel_log.as_ref().map(|k| KernelLogJson {
            constraint: &k.constraint,
            oom_memcg: k.oom_memcg.as_deref(),
            task_memcg: k.task_memcg.as_deref(),
            task: &k.task,
            pid: k.pid,
        }),
        node_memory: o.node_memory.as_ref().map(node_memory),
    }
}

pub fn exit_body<'a>(e: &'a ExitEvent, line: &Line<'_>) -> ExitBody<'a> {
    let (exit_status, killed_by, core_dumped) = match e.status {
        ExitStatus::Exited(code) => (Some(code), None, false),
        ExitStatus::Signaled { sig, core_dumped } => {
            (None, Some(signal_name(sig).into_owned()), core_dumped)
        }
    };
    ExitBody {
        process: line.process(&e.process),
        ppid: e.ppid,
        exit_code: e.status.exit_code(),
        exit_status,
        killed_by,
        core_dumped,
        wait_status: e.wait_status,
        oom_killed: e.cause.is_some_and(|c| c.oom_kill),
        after_signal: e.cause.as_ref().map(|c| cause(c, line.clock)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::{
        attribution::{cgroup::QosClass, cgroup::Runtime, Container, Pod},
        output::{
            json::{write_event, SCHEMA_VERSION},
            Event,
        },
        process::{Comm, ProcessRef},
        signals::{decode_si_code, event::Ancestry, Delivery},
    };

    fn server(clock_start: u64) -> ProcessRef {
        ProcessRef {
            pid: 7942,
            tid: 7942,
            comm: Comm::from_str_lossy("server"),
            thread_comm: Comm::from_str_lossy("server"),
            start_ns: clock_start,
            attribution: Arc::new(Attribution {
                cgroup: "/kubepods/burstable/pod1/abc".into(),
                container: Some(Container {
                    id: "ab".repeat(32),
                    runtime: Runtime::Containerd,
                    name: Some("app".into()),
                }),
                pod: Some(Pod {
                    uid: "3f1c2a4e-8d3b-4c8e-9a51-0f2b6c7d8e9f".into(),
                    qos: QosClass::Burstable,
                    namespace: Some("default".into()),
                    name: Some("web-7f9c-x2k4".into()),
                }),
            }),
        }
    }

    fn pkill() -> ProcessRef {
        ProcessRef {
            pid: 23549,
            tid: 23549,
            comm: Comm::from_str_lossy("pkill"),
            thread_comm: Comm::from_str_lossy("pkill"),
            start_ns: 0,
            attribution: Arc::new(Attribution::host()),
        }
    }

    fn encode(event: &dyn Event) -> Value {
        let mut out = Vec::new();
        write_event(&mut out, event, &Clock::new(), "node-1").unwrap();
        assert!(!out.contains(&b'\n'), "one line per record");
        serde_json::from_slice(&out).unwrap()
    }

    /// The documented schema, field by field: renaming or dropping one must
    /// bump SCHEMA_VERSION and the README.
    #[test]
    fn signal_record_schema() {
        let event = SignalEvent {
            mono_ns: 1_000,
            sig: 9,
            si_code: 0,
            code: decode_si_code(9, 0),
            thread_directed: false,
            delivery: Delivery::Delivered,
            sender: pkill(),
            ancestry: Ancestry::from_slice(&[
                Ancestor {
                    pid: 23549,
                    comm: Comm::from_str_lossy("pkill"),
                    start_ns: 0,
                },
                Ancestor {
                    pid: 4410,
                    comm: Comm::from_str_lossy("vGhyM0"),
                    start_ns: 0,
                },
                Ancestor {
                    pid: 1,
                    comm: Comm::from_str_lossy("systemd"),
                    start_ns: 0,
                },
            ]),
            ancestry_truncated: false,
            target: server(5),
        };
        let v = encode(&event);
        assert_eq!(v["schema"], SCHEMA_VERSION);
        assert_eq!(v["kind"], "signal");
        assert_eq!(v["node"], "node-1");
        assert_eq!(v["mono_ns"], 1_000);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["signal"]["number"], 9);
        assert_eq!(v["signal"]["name"], "SIGKILL");
        assert_eq!(v["signal"]["code"], 0);
        assert_eq!(v["signal"]["code_name"], "SI_USER");
        assert_eq!(v["signal"]["origin"], "kill");
        assert_eq!(v["signal"]["directed"], "process");
        assert_eq!(v["signal"]["result"], "delivered");
        assert_eq!(v["sender"]["pid"], 23549);
        assert_eq!(v["sender"]["comm"], "pkill");
        assert_eq!(v["sender"]["cgroup"], "/");
        assert!(v["sender"].get("pod").is_none());
        assert!(
            v["sender"].get("start_time").is_none(),
            "unknown start times are left out"
        );
        assert!(
            v["sender"].get("thread_comm").is_none(),
            "same as comm: left out"
        );
        // Root first, sender last, as on the console.
        let chain: Vec<&str> = v["sender_ancestry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["comm"].as_str().unwrap())
            .collect();
        assert_eq!(chain, ["systemd", "vGhyM0", "pkill"]);
        assert_eq!(v["sender_ancestry_truncated"], false);
        assert_eq!(v["target"]["pid"], 7942);
        assert!(v["target"]["start_time"].is_string());
        assert_eq!(v["target"]["pod"]["namespace"], "default");
        assert_eq!(v["target"]["pod"]["name"], "web-7f9c-x2k4");
        assert_eq!(v["target"]["pod"]["qos"], "Burstable");
        assert_eq!(v["target"]["container"]["name"], "app");
        assert_eq!(v["target"]["container"]["runtime"], "containerd");
    }

    #[test]
    fn exit_record_schema() {
        let event = ExitEvent {
            mono_ns: 2_000,
            process: server(5),
            ppid: 1,
            wait_status: 9,
            status: ExitStatus::from_wait_status(9),
            cause: Some(SignalCause {
                mono_ns: 1_000,
                sig: 9,
                code: decode_si_code(9, 0),
                sender_pid: 23549,
                sender_comm: Comm::from_str_lossy("pkill"),
                oom_kill: false,
            }),
        };
        let v = encode(&event);
        assert_eq!(v["kind"], "exit");
        assert_eq!(v["exit_code"], 137);
        assert_eq!(v["killed_by"], "SIGKILL");
        assert!(v.get("exit_status").is_none());
        assert_eq!(v["core_dumped"], false);
        assert_eq!(v["wait_status"], 9);
        assert_eq!(v["ppid"], 1);
        assert_eq!(v["after_signal"]["signal"], "SIGKILL");
        assert_eq!(v["after_signal"]["origin"], "kill");
        assert_eq!(v["after_signal"]["sender_pid"], 23549);
        assert_eq!(v["after_signal"]["sender_comm"], "pkill");
        assert_eq!(v["process"]["pod"]["name"], "web-7f9c-x2k4");

        let clean = ExitEvent {
            mono_ns: 3_000,
            process: server(5),
            ppid: 1,
            wait_status: 3 << 8,
            status: ExitStatus::from_wait_status(3 << 8),
            cause: None,
        };
        let v = encode(&clean);
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["exit_status"], 3);
        assert!(v.get("killed_by").is_none());
        assert!(v.get("after_signal").is_none());
    }

    /// An unknown name is null, for the container as for the pod: the keys
    /// are always there.
    #[test]
    fn unknown_names_are_null() {
        let mut target = server(5);
        let mut attribution = (*target.attribution).clone();
        attribution.container.as_mut().unwrap().name = None;
        let pod = attribution.pod.as_mut().unwrap();
        pod.namespace = None;
        pod.name = None;
        target.attribution = Arc::new(attribution);
        let v = encode(&ExitEvent {
            mono_ns: 1,
            process: target,
            ppid: 1,
            wait_status: 1 << 8,
            status: ExitStatus::from_wait_status(1 << 8),
            cause: None,
        });
        for (object, key) in [("container", "name"), ("pod", "name"), ("pod", "namespace")] {
            let object = v["process"][object].as_object().unwrap();
            assert_eq!(object.get(key), Some(&Value::Null), "{v}");
        }
    }

    /// A process in a pod names itself to forge a console line: the file
    /// keeps its name exactly (JSON escapes it), the console shows escapes,
    /// on tracer's own lines only.
    #[test]
    fn forged_names_on_the_console() {
        let forged = Comm::from_str_lossy("\u{1b}[31mS\nFORGED:");
        let mut sender = pkill();
        sender.comm = forged;
        let mut target = server(5);
        target.thread_comm = forged;
        target.tid += 1;
        let mut attribution = (*target.attribution).clone();
        if let Some(pod) = &mut attribution.pod {
            pod.name = Some("web\r\u{1b}]0;owned\u{7}".into());
        }
        target.attribution = Arc::new(attribution);
        let event = SignalEvent {
            mono_ns: 1_000,
            sig: 9,
            si_code: 0,
            code: decode_si_code(9, 0),
            thread_directed: true,
            delivery: Delivery::Delivered,
            sender,
            ancestry: Ancestry::from_slice(&[Ancestor {
                pid: 23549,
                comm: forged,
                start_ns: 0,
            }]),
            ancestry_truncated: false,
            target,
        };
        assert_eq!(encode(&event)["sender"]["comm"], "\u{1b}[31mS\nFORGED:");
        let mut text = String::new();
        event.write_text(&mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("\\x1b[31mS\\nFORGED:(23549) sent SIGKILL to thread \\x1b[31mS\\nFORGED:(7943) of server(7942) [pod default/web\\r\\x1b]0;owned\\x07"),
            "{text}"
        );
        assert_eq!(lines[1], "  sender ancestry: \\x1b[31mS\\nFORGED:(23549)");
        assert!(
            !text.chars().any(|c| c != '\n' && c.is_control()),
            "{text:?}"
        );
    }
}
