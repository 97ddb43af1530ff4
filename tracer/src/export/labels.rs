//! Which record feeds which metric, with which labels: a table of JSON
//! pointers into the records of the `--output` file (their schema is the
//! README's). A metric gains a label, or a record kind a metric, by a row
//! here; the exporters' code does not change.

use serde_json::Value;

/// Where a label's value comes from; the first alternative present wins,
/// and a label none of them gives is "".
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The value at this JSON pointer (strings as they are, numbers and
    /// booleans as JSON writes them).
    Field(&'static str),
    /// This text when the boolean at the pointer is true.
    IfTrue(&'static str, &'static str),
    /// This text.
    Text(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Label {
    pub name: &'static str,
    pub from: &'static [Source],
}

/// How much one record adds to its counter.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    One,
    /// The number at this pointer, times the factor (nanoseconds to seconds).
    Scaled(&'static str, f64),
    /// The number at the first pointer less the one at the second: what a
    /// summary record counts beyond the events it let through whole (which
    /// were counted one by one).
    Beyond(&'static str, &'static str),
}

/// A record kind that stands for many events of the counter's kind, such as
/// `signal_flood` for the signals of a flood not shown whole: the counter
/// counts what it stands for, in the series its labels name, so that the
/// metric says what the kernel did however much the output summed up.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub kind: &'static str,
    pub amount: Amount,
}

#[derive(Debug, Clone, Copy)]
pub struct CounterSpec {
    /// The record `kind` it counts.
    pub kind: &'static str,
    /// The metric's name without `tracer_` and `_total`.
    pub name: &'static str,
    pub help: &'static str,
    /// The base unit, as a suffix of the name (`seconds`), if any.
    pub unit: Option<&'static str>,
    pub amount: Amount,
    /// The summary record that counts events of `kind` too, if any; the
    /// labels' pointers must name the same things in it.
    pub summary: Option<Summary>,
    /// Counted only when the boolean at this pointer is true.
    pub only_if: Option<&'static str>,
    pub labels: &'static [Label],
    /// Pointers to the pod UIDs the series belongs to (alternatives, first
    /// present wins): when one of these pods is deleted, the series goes
    /// after the grace time.
    pub pods: &'static [&'static [&'static str]],
}

/// `label!("pod", "/target/pod/name")`, or with alternatives
/// `label!("pod", [Source::Field(..), ..])`.
macro_rules! label {
    ($name:literal, $pointer:literal) => {
        Label {
            name: $name,
            from: &[Source::Field($pointer)],
        }
    };
    ($name:literal, [$($source:expr),+ $(,)?]) => {
        Label {
            name: $name,
            from: &[$($source),+],
        }
    };
}

/// namespace, pod and container labels of the process object at `$p`.
macro_rules! pod_labels {
    ($ns:literal, $pod:literal, $container:literal, $p:literal) => {
        [
            label!($ns, [Source::Field(concat!($p, "/pod/namespace"))]),
            label!($pod, [Source::Field(concat!($p, "/pod/name"))]),
            label!($container, [Source::Field(concat!($p, "/container/name"))]),
        ]
    };
}

const SIGNAL_TARGET: [Label; 3] = pod_labels!("namespace", "pod", "container", "/target");
const SIGNAL_SENDER: [Label; 3] = pod_labels!(
    "sender_namespace",
    "sender_pod",
    "sender_container",
    "/sender"
);
const OOM_VICTIM: [Label; 3] = pod_labels!("namespace", "pod", "container", "/victims/0/process");
const PROCESS: [Label; 3] = pod_labels!("namespace", "pod", "container", "/process");

/// Every counter fed by records, in the order they are exposed.
pub const COUNTERS: &[CounterSpec] = &[
    CounterSpec {
        kind: "signal",
        name: "signals",
        help: "Signals generated, by signal, origin (kernel, user, ...), target and sender pod",
        unit: None,
        amount: Amount::One,
        // `--signal-flood` shows the first signals of a flood whole and
        // sums up the rest in one record: they are signals the kernel
        // generated all the same.
        summary: Some(Summary {
            kind: "signal_flood",
            amount: Amount::Beyond("/count", "/shown"),
        }),
        only_if: None,
        labels: &[
            label!("signal", "/signal/name"),
            label!("origin", "/signal/origin"),
            SIGNAL_TARGET[0],
            SIGNAL_TARGET[1],
            SIGNAL_TARGET[2],
            SIGNAL_SENDER[0],
            SIGNAL_SENDER[1],
            SIGNAL_SENDER[2],
        ],
        pods: &[&["/target/pod/uid"], &["/sender/pod/uid"]],
    },
    CounterSpec {
        kind: "exit",
        name: "exits",
        help: "Process exits reported, by exit code and cause (oom_kill, the origin of the signal that killed it, or exit)",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[
            label!("code", "/exit_code"),
            label!("signal", "/killed_by"),
            label!(
                "cause",
                [
                    Source::IfTrue("/oom_killed", "oom_kill"),
                    Source::Field("/after_signal/origin"),
                    Source::Text("exit"),
                ]
            ),
        ],
        pods: &[],
    },
    CounterSpec {
        kind: "oom",
        name: "oom_kills",
        help: "OOM kills, by scope (cgroup or system) and the victim's pod",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[
            label!("scope", "/scope"),
            OOM_VICTIM[0],
            OOM_VICTIM[1],
            OOM_VICTIM[2],
        ],
        pods: &[&["/victims/0/process/pod/uid"]],
    },
    CounterSpec {
        kind: "page_alloc_failure",
        name: "page_alloc_failures",
        help: "Page-allocation failures, by order and whether the caller tolerates them",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[
            label!("order", "/order"),
            label!("tolerated", "/tolerated"),
        ],
        pods: &[],
    },
    CounterSpec {
        kind: "packet_drop",
        name: "packet_drops",
        help: "Packets dropped, by the kernel's drop reason, the netfilter cause, and the pod of the socket, of the DNS query, or of the network namespace",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[
            label!("reason", "/reason"),
            label!("cause", "/cause"),
            label!(
                "namespace",
                [
                    Source::Field("/source/pod/namespace"),
                    Source::Field("/dns/process/pod/namespace"),
                    Source::Field("/netns/owner/pod/namespace"),
                ]
            ),
            label!(
                "pod",
                [
                    Source::Field("/source/pod/name"),
                    Source::Field("/dns/process/pod/name"),
                    Source::Field("/netns/owner/pod/name"),
                ]
            ),
        ],
        pods: &[&[
            "/source/pod/uid",
            "/dns/process/pod/uid",
            "/netns/owner/pod/uid",
        ]],
    },
    CounterSpec {
        kind: "dns",
        name: "dns_lookups",
        help: "DNS lookups, by verdict (answered, slow, failed, unanswered, ...) and the asking pod",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[
            label!("verdict", "/verdict"),
            PROCESS[0],
            PROCESS[1],
        ],
        pods: &[&["/process/pod/uid"]],
    },
    CounterSpec {
        kind: "io_stall",
        name: "io_stalls",
        help: "Tasks blocked in D state for at least --iowait-threshold, by pod and device",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[
            PROCESS[0],
            PROCESS[1],
            label!("device", "/device/name"),
        ],
        pods: &[&["/process/pod/uid"]],
    },
    CounterSpec {
        kind: "io_stall",
        name: "io_wait",
        help: "Seconds spent in IO wait by the reported IO stalls, by pod and device",
        unit: Some("seconds"),
        amount: Amount::Scaled("/blocked_ns", 1e-9),
        summary: None,
        only_if: Some("/in_iowait"),
        labels: &[
            PROCESS[0],
            PROCESS[1],
            label!("device", "/device/name"),
        ],
        pods: &[&["/process/pod/uid"]],
    },
    CounterSpec {
        kind: "hung_task",
        name: "hung_tasks",
        help: "Hung tasks (blocked past the kernel's hung-task timeout), by pod",
        unit: None,
        amount: Amount::One,
        summary: None,
        only_if: None,
        labels: &[PROCESS[0], PROCESS[1]],
        pods: &[&["/process/pod/uid"]],
    },
];

/// The value at a JSON pointer of the table. serde_json's own
/// `Value::pointer` allocates for every token (to undo `~0`/`~1` escapes,
/// which the table never uses); this one does not, and runs for every label
/// of every event.
pub fn lookup<'a>(record: &'a Value, pointer: &str) -> Option<&'a Value> {
    pointer
        .split('/')
        .skip(1)
        .try_fold(record, |value, token| match value {
            Value::Object(fields) => fields.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// The text of `label` for `record`.
pub fn value_of(label: &Label, record: &Value, out: &mut String) {
    out.clear();
    for source in label.from {
        match *source {
            Source::Field(pointer) => match lookup(record, pointer) {
                None | Some(Value::Null) => continue,
                Some(value) => {
                    write_scalar(value, out);
                    return;
                }
            },
            Source::IfTrue(pointer, text) => {
                if lookup(record, pointer).and_then(Value::as_bool) == Some(true) {
                    out.push_str(text);
                    return;
                }
            }
            Source::Text(text) => {
                out.push_str(text);
                return;
            }
        }
    }
}

/// The first pod UID of `alternatives` present in `record`.
pub fn pod_uid<'a>(alternatives: &[&str], record: &'a Value) -> Option<&'a str> {
    alternatives
        .iter()
        .find_map(|p| lookup(record, p).and_then(Value::as_str))
}

/// How much `spec` adds for `record`, a record of `kind`; None when it does
/// not count it.
pub fn amount(spec: &CounterSpec, kind: &str, record: &Value) -> Option<f64> {
    let amount = if spec.kind == kind {
        spec.amount
    } else {
        spec.summary.filter(|s| s.kind == kind)?.amount
    };
    if let Some(pointer) = spec.only_if {
        if lookup(record, pointer).and_then(Value::as_bool) != Some(true) {
            return None;
        }
    }
    let number = |pointer| lookup(record, pointer).and_then(Value::as_f64);
    match amount {
        Amount::One => Some(1.0),
        Amount::Scaled(pointer, factor) => number(pointer).map(|v| v * factor),
        Amount::Beyond(total, counted) => {
            Some((number(total)? - number(counted).unwrap_or(0.0)).max(0.0))
        }
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{n}");
        }
        // Objects and arrays make no label value.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels_of(kind: &str, name: &str, record: &Value) -> Vec<(String, String)> {
        let spec = COUNTERS
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .unwrap();
        let mut buf = String::new();
        spec.labels
            .iter()
            .map(|l| {
                value_of(l, record, &mut buf);
                (l.name.to_owned(), buf.clone())
            })
            .collect()
    }

    #[test]
    fn signal_labels_name_target_and_sender() {
        let record = json!({
            "kind": "signal",
            "signal": {"name": "SIGKILL", "origin": "user"},
            "sender": {"pid": 1, "pod": {"uid": "u1", "namespace": "ops", "name": "killer"},
                       "container": {"id": "c1", "name": "main"}},
            "target": {"pid": 2, "pod": {"uid": "u2", "namespace": "default", "name": "web"}},
        });
        let labels = labels_of("signal", "signals", &record);
        let get = |n: &str| labels.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("signal"), "SIGKILL");
        assert_eq!(get("origin"), "user");
        assert_eq!(get("namespace"), "default");
        assert_eq!(get("pod"), "web");
        assert_eq!(get("container"), "", "absent fields are empty labels");
        assert_eq!(get("sender_pod"), "killer");
        assert_eq!(get("sender_container"), "main");
        let spec = &COUNTERS[0];
        assert_eq!(pod_uid(spec.pods[0], &record), Some("u2"));
        assert_eq!(pod_uid(spec.pods[1], &record), Some("u1"));
    }

    #[test]
    fn exit_cause_alternatives() {
        let oom = json!({"exit_code": 137, "killed_by": "SIGKILL", "oom_killed": true,
                         "after_signal": {"origin": "kernel"}});
        let killed = json!({"exit_code": 143, "killed_by": "SIGTERM", "oom_killed": false,
                            "after_signal": {"origin": "user"}});
        let plain = json!({"exit_code": 3, "oom_killed": false});
        let cause = |r: &Value| labels_of("exit", "exits", r)[2].1.clone();
        assert_eq!(cause(&oom), "oom_kill");
        assert_eq!(cause(&killed), "user");
        assert_eq!(cause(&plain), "exit");
        assert_eq!(labels_of("exit", "exits", &plain)[0].1, "3");
    }

    #[test]
    fn drop_pod_falls_back_to_the_namespace_owner() {
        let record = json!({"reason": "NETFILTER_DROP", "cause": "conntrack_clash",
            "netns": {"owner": {"pod": {"uid": "u9", "namespace": "kube-system", "name": "coredns"}}}});
        let labels = labels_of("packet_drop", "packet_drops", &record);
        assert_eq!(labels[2].1, "kube-system");
        assert_eq!(labels[3].1, "coredns");
        let spec = COUNTERS.iter().find(|s| s.kind == "packet_drop").unwrap();
        assert_eq!(pod_uid(spec.pods[0], &record), Some("u9"));
    }

    #[test]
    fn io_wait_counts_only_iowait_seconds() {
        let spec = COUNTERS.iter().find(|s| s.name == "io_wait").unwrap();
        assert_eq!(
            amount(
                spec,
                "io_stall",
                &json!({"blocked_ns": 1_500_000_000u64, "in_iowait": true})
            ),
            Some(1.5)
        );
        assert_eq!(
            amount(
                spec,
                "io_stall",
                &json!({"blocked_ns": 1_500_000_000u64, "in_iowait": false})
            ),
            None
        );
    }

    #[test]
    fn lookup_is_a_json_pointer() {
        let record = json!({"a": {"b": [{"c": 1}, {"c": "two"}]}, "": 3});
        for pointer in [
            "", "/a", "/a/b", "/a/b/0/c", "/a/b/1/c", "/a/b/2", "/a/x", "/a/b/x",
        ] {
            assert_eq!(
                lookup(&record, pointer),
                record.pointer(pointer),
                "{pointer}"
            );
        }
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for spec in COUNTERS {
            assert!(!spec.name.ends_with("_total"), "{}", spec.name);
            assert!(spec
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            for l in spec.labels {
                assert!(!l.name.starts_with("__"));
            }
        }
    }
}
