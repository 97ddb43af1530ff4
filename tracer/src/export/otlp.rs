//! OTLP/HTTP logs: each record becomes an OpenTelemetry log record, sent in
//! protobuf batches by a thread of its own.
//!
//! - The watch loop only offers a copy of the record's line to a bounded
//!   queue (`try_send`): a receiver that is down, slow or failing never
//!   blocks it. A full queue drops the new record and counts it. The sender
//!   thread parses lines into log records, so that work is off the loop too.
//! - The sender thread batches (up to 512 records, or what arrived within
//!   1 s), POSTs with a 10 s timeout and retries what the OTLP specification
//!   calls retryable (connection errors, 429, 502, 503, 504) with backoff
//!   from 250 ms to 4 s, five attempts in all. A batch that still fails, or
//!   that the receiver rejects (400, 500, ...), is dropped and counted.
//! - Memory is bounded by the queue size plus one batch.
//! - Plain HTTP only: a collector on the node or in the cluster (port 4318)
//!   is the usual target, and a TLS stack would add much to the binary.
//!
//! Attributes follow OpenTelemetry's semantic conventions for the record's
//! subject (the signal's target, the OOM victim, ...): `k8s.namespace.name`,
//! `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`, `container.id`,
//! `process.pid`, `process.executable.name`; every field of the record is
//! there too, flattened under `tracer.` (`tracer.signal.name`,
//! `tracer.sender.pid`). The body is the console line.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde_json::Value;

use super::{
    labels::lookup,
    metrics::{Metrics, OtlpCounters},
};

const MAX_BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The JSON fields of the envelope that the log record carries natively.
const ENVELOPE: [&str; 4] = ["schema", "time", "mono_ns", "node"];

/// Where the record's subject process (or attribution) is, by kind: the
/// first of these pointers present.
fn subject(kind: &str) -> &'static [&'static str] {
    match kind {
        "signal" => &["/target"],
        "oom" => &["/victims/0/process"],
        // The socket's owner, else the process whose DNS query it was.
        "packet_drop" => &["/source", "/dns/process"],
        "exit" | "page_alloc_failure" | "io_stall" | "hung_task" | "dns" => &["/process"],
        _ => &[],
    }
}

/// Semantic-convention attributes: (key, pointer below the subject).
const SEMANTIC: [(&str, &str); 8] = [
    ("k8s.namespace.name", "/pod/namespace"),
    ("k8s.pod.name", "/pod/name"),
    ("k8s.pod.uid", "/pod/uid"),
    ("k8s.container.name", "/container/name"),
    ("container.id", "/container/id"),
    ("container.runtime", "/container/runtime"),
    ("process.pid", "/pid"),
    ("process.executable.name", "/comm"),
];

/// `--otlp-endpoint`: an http:// URL with a host.
pub fn parse_endpoint(s: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = s.parse().map_err(|e| format!("{s}: not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{s}: tracer sends OTLP over plain HTTP only; give the collector's http:// endpoint (port 4318)"
            ))
        }
        _ => return Err(format!("{s}: expected http://HOST:PORT/v1/logs")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{s}: the URL has no host"));
    }
    Ok(s.to_owned())
}

/// Severity of a record kind: (number, text), OpenTelemetry's scale.
fn severity(kind: &str) -> (i32, &'static str) {
    match kind {
        "oom" | "page_alloc_failure" | "hung_task" | "lost" => (13, "WARN"),
        _ => (9, "INFO"),
    }
}

/// Turns one record into a log record.
pub fn log_record(kind: &str, record: Value, console: Option<String>) -> LogRecord {
    let mut attributes = Vec::with_capacity(48);
    if let Some(process) = subject(kind).iter().find_map(|p| lookup(&record, p)) {
        for (key, pointer) in SEMANTIC {
            if let Some(value) = lookup(process, pointer).and_then(scalar) {
                attributes.push(key_value(key.to_owned(), value));
            }
        }
    }
    let time_unix_nano = record
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .map_or(0, |ns| ns as u64);
    // The record is consumed: its strings move into the attributes rather
    // than being copied.
    if let Value::Object(fields) = record {
        let mut key = String::with_capacity(64);
        for (name, value) in fields {
            if ENVELOPE.contains(&name.as_str()) {
                continue;
            }
            key.clear();
            key.push_str("tracer.");
            key.push_str(&name);
            flatten(&mut key, value, &mut attributes);
        }
    }
    let (severity_number, severity_text) = severity(kind);
    let body = match console {
        Some(mut line) => {
            line.truncate(line.trim_end().len());
            line
        }
        None => format!("tracer {kind}"),
    };
    LogRecord {
        time_unix_nano,
        observed_time_unix_nano: now_unix_nano(),
        severity_number,
        severity_text: severity_text.to_owned(),
        body: Some(string(body)),
        attributes,
        event_name: format!("tracer.{kind}"),
        ..Default::default()
    }
}

/// Objects become dotted keys; arrays stay arrays (of scalars or key-value
/// lists); nulls are left out.
fn flatten(key: &mut String, value: Value, out: &mut Vec<KeyValue>) {
    match value {
        Value::Null => {}
        Value::Object(fields) => {
            let len = key.len();
            for (name, v) in fields {
                key.push('.');
                key.push_str(&name);
                flatten(key, v, out);
                key.truncate(len);
            }
        }
        other => {
            if let Some(v) = any_value(other) {
                out.push(key_value(key.clone(), v));
            }
        }
    }
}

fn any_value(value: Value) -> Option<AnyValue> {
    let inner = match value {
        Value::Null => return None,
        Value::String(s) => any_value::Value::StringValue(s),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items.into_iter().filter_map(any_value).collect(),
        }),
        Value::Object(fields) => any_value::Value::KvlistValue(KeyValueList {
            values: fields
                .into_iter()
                .filter_map(|(k, v)| any_value(v).map(|v| key_value(k, v)))
                .collect(),
        }),
        scalar_value => return scalar(&scalar_value),
    };
    Some(AnyValue { value: Some(inner) })
}

fn scalar(value: &Value) -> Option<AnyValue> {
    let inner = match value {
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        _ => return None,
    };
    Some(AnyValue { value: Some(inner) })
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn key_value(key: String, value: AnyValue) -> KeyValue {
    KeyValue {
        key,
        value: Some(value),
        ..Default::default()
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The resource every batch describes: tracer on this node.
fn resource(node: &str) -> Resource {
    let text = |k: &str, v: &str| key_value(k.to_owned(), string(v.to_owned()));
    Resource {
        attributes: vec![
            text("service.name", "tracer"),
            text("service.version", env!("CARGO_PKG_VERSION")),
            text("k8s.node.name", node),
            text("host.name", node),
        ],
        ..Default::default()
    }
}

/// A record waiting to be sent: its `--output` line and, for an event, its
/// console line. The line is parsed on the sender thread: a parsed record is
/// hundreds of small allocations, and freeing them on another thread than
/// the one that made them cost more than parsing again (glibc's allocator
/// consolidates the watch loop's arena for them).
struct Pending {
    line: Vec<u8>,
    console: Option<String>,
}

impl Pending {
    fn into_log_record(self) -> Option<LogRecord> {
        let record: Value = serde_json::from_slice(&self.line).ok()?;
        let kind = record.get("kind")?.as_str()?.to_owned();
        Some(log_record(&kind, record, self.console))
    }
}

pub struct OtlpSender {
    queue: SyncSender<Pending>,
    counters: OtlpCounters,
    thread: JoinHandle<()>,
    /// Nanoseconds after `epoch` by which the thread must give up (0: none).
    deadline: std::sync::Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

impl OtlpSender {
    pub fn start(
        url: &str,
        node: &str,
        queue_size: usize,
        metrics: Option<&Metrics>,
    ) -> Result<Self> {
        let (queue, incoming) = mpsc::sync_channel(queue_size);
        let counters = metrics.map(|m| m.otlp.clone()).unwrap_or_default();
        let deadline = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let epoch = Instant::now();
        let worker = Worker {
            url: url.to_owned(),
            resource: resource(node),
            agent: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .timeout_global(Some(REQUEST_TIMEOUT))
                    .http_status_as_error(false)
                    .build(),
            ),
            counters: counters.clone(),
            deadline: deadline.clone(),
            epoch,
        };
        let thread = std::thread::Builder::new()
            .name("otlp-sender".into())
            .spawn(move || worker.run(incoming))
            .context("starting the OTLP sender thread")?;
        Ok(Self {
            queue,
            counters,
            thread,
            deadline,
            epoch,
        })
    }

    /// Queues one record (its `--output` line); never waits.
    pub fn push(&mut self, line: &[u8], console: Option<&str>) {
        let pending = Pending {
            line: line.to_vec(),
            console: console.map(str::to_owned),
        };
        match self.queue.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.queue_full.inc();
            }
        }
    }

    /// (queue full, send failed) so far.
    pub fn drops(&self) -> (u64, u64) {
        (
            self.counters.queue_full.get(),
            self.counters.send_failed.get(),
        )
    }

    /// Lets the thread send what is queued for at most `limit`, then counts
    /// the rest as failed.
    pub fn shutdown(self, limit: Duration) {
        let end = self.epoch.elapsed() + limit;
        self.deadline.store(
            end.as_nanos().max(1) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        drop(self.queue);
        let (done_tx, done_rx) = mpsc::channel();
        let thread = self.thread;
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = done_tx.send(());
        });
        // A request in flight may outlast the deadline by its own timeout.
        if done_rx.recv_timeout(limit + REQUEST_TIMEOUT).is_err() {
            tracing::warn!("the OTLP sender did not finish in time; unsent log records are lost");
        }
        let failed = self.counters.send_failed.get();
        if failed > 0 || self.counters.queue_full.get() > 0 {
            tracing::warn!(
                queue_full = self.counters.queue_full.get(),
                send_failed = failed,
                "OTLP log records dropped"
            );
        }
    }
}

struct Worker {
    url: String,
    resource: Resource,
    agent: ureq::Agent,
    counters: OtlpCounters,
    deadline: std::sync::Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

enum Outcome {
    Sent,
    Retry(String),
    Rejected(String),
}

impl Worker {
    fn run(self, incoming: Receiver<Pending>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut open = true;
        while open {
            match incoming.recv() {
                Ok(first) => batch.extend(first.into_log_record()),
                Err(_) => break,
            }
            let until = Instant::now() + BATCH_WAIT;
            while batch.len() < MAX_BATCH {
                let wait = until.saturating_duration_since(Instant::now());
                match incoming.recv_timeout(wait) {
                    Ok(record) => batch.extend(record.into_log_record()),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.send(&mut batch);
        }
        // Shutting down: the rest of the queue, batch by batch.
        while let Ok(record) = incoming.try_recv() {
            batch.extend(record.into_log_record());
            if batch.len() == MAX_BATCH {
                self.send(&mut batch);
            }
        }
        self.send(&mut batch);
    }

    fn past_deadline(&self) -> bool {
        let d = self.deadline.load(std::sync::atomic::Ordering::Relaxed);
        d != 0 && self.epoch.elapsed().as_nanos() as u64 >= d
    }

    /// Sends and empties `batch`, counting it as sent or dropped.
    fn send(&self, batch: &mut Vec<LogRecord>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        if self.past_deadline() {
            self.counters.send_failed.inc_by(count);
            batch.clear();
            return;
        }
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "tracer".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records: std::mem::take(batch),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        drop(request);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match self.post(&body) {
                Outcome::Sent => {
                    self.counters.sent.inc_by(count);
                    return;
                }
                Outcome::Rejected(why) => {
                    tracing::warn!(records = count, "OTLP receiver rejected a batch: {why}");
                    break;
                }
                Outcome::Retry(why) => {
                    tracing::debug!(attempt, "OTLP send failed: {why}");
                    if attempt == ATTEMPTS || self.past_deadline() {
                        tracing::warn!(
                            records = count,
                            "OTLP batch dropped after {attempt} attempts: {why}"
                        );
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.counters.send_failed.inc_by(count);
    }

    fn post(&self, body: &[u8]) -> Outcome {
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .send(body);
        match response {
            Err(e) => Outcome::Retry(e.to_string()),
            Ok(r) => match r.status().as_u16() {
                200..=299 => Outcome::Sent,
                429 | 502 | 503 | 504 => Outcome::Retry(format!("HTTP {}", r.status())),
                _ => Outcome::Rejected(format!("HTTP {}", r.status())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attribute<'a>(r: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn signal_record_attributes() {
        let record = json!({
            "schema": 1, "kind": "signal", "time": "2026-12-01T10:00:00.5Z", "mono_ns": 5, "node": "n1",
            "signal": {"name": "SIGKILL", "number": 9},
            "sender": {"pid": 10, "comm": "killer"},
            "sender_ancestry": [{"pid": 1, "comm": "init"}],
            "target": {"pid": 42, "comm": "web", "cgroup": "/x",
                       "container": {"id": "abc", "runtime": "containerd", "name": "app"},
                       "pod": {"uid": "u-1", "namespace": "default", "name": "web-1", "qos": "burstable"}},
        });
        let r = log_record("signal", record, Some("SIGKILL to web(42)\n".into()));
        let s = |k| match attribute(&r, k) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(s("k8s.namespace.name"), "default");
        assert_eq!(s("k8s.pod.name"), "web-1");
        assert_eq!(s("k8s.pod.uid"), "u-1");
        assert_eq!(s("k8s.container.name"), "app");
        assert_eq!(s("container.id"), "abc");
        assert_eq!(s("process.executable.name"), "web");
        assert_eq!(s("tracer.signal.name"), "SIGKILL");
        assert_eq!(s("tracer.kind"), "signal");
        assert_eq!(s("tracer.sender.comm"), "killer");
        assert_eq!(
            attribute(&r, "process.pid"),
            Some(&any_value::Value::IntValue(42))
        );
        assert!(
            matches!(attribute(&r, "tracer.sender_ancestry"), Some(any_value::Value::ArrayValue(a)) if a.values.len() == 1)
        );
        assert!(attribute(&r, "tracer.time").is_none());
        assert_eq!(r.time_unix_nano, 1_796_119_200_500_000_000);
        assert_eq!(r.event_name, "tracer.signal");
        assert_eq!(r.body, Some(string("SIGKILL to web(42)".into())));
        assert_eq!(r.severity_text, "INFO");
    }

    #[test]
    fn endpoints() {
        assert!(parse_endpoint("http://127.0.0.1:4318/v1/logs").is_ok());
        assert!(parse_endpoint("https://collector:4318/v1/logs")
            .unwrap_err()
            .contains("plain HTTP"));
        assert!(parse_endpoint("collector:4318").is_err());
        assert!(parse_endpoint("ftp://x/").is_err());
        assert!(parse_endpoint("not a url").is_err());
    }

    /// A receiver that does not listen: records are retried, then counted
    /// as failed; the queue bound counts the rest; push never waits.
    #[test]
    fn unreachable_receiver_drops_are_counted_and_push_never_blocks() {
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sender =
            OtlpSender::start(&format!("http://127.0.0.1:{port}/v1/logs"), "n", 8, None).unwrap();
        let started = Instant::now();
        for i in 0..1000 {
            let line = json!({"kind": "exit", "exit_code": i}).to_string();
            sender.push(line.as_bytes(), None);
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let (queue_full, _) = sender.drops();
        assert!(queue_full >= 1000 - 8 - MAX_BATCH as u64, "{queue_full}");
        let counters = sender.counters.clone();
        sender.shutdown(Duration::from_millis(300));
        assert_eq!(counters.sent.get(), 0);
        assert_eq!(counters.queue_full.get() + counters.send_failed.get(), 1000);
    }
}
