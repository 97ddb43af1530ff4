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
//! - At the stop, what is queued gets a short wait to leave, then is given
//!   up on and counted before the `stop` record is written; the `stop`
//!   record then gets a wait of its own. The thread is never joined: a
//!   request in flight to a hung receiver does not hold the exit.
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
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prometheus_client::metrics::counter::Counter;
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

/// What became of the records handed to the queue, shared by the watch
/// loop and the sender thread: the stop waits on it, and gives up on what is
/// still outstanding at its deadline, counting it as dropped.
#[derive(Default)]
struct Ledger {
    progress: Mutex<Progress>,
    changed: Condvar,
}

#[derive(Default)]
struct Progress {
    /// Records the sender is done with: sent, or dropped and counted.
    done: u64,
    /// Records the stop gave up on and already counted as dropped. They are
    /// the oldest the sender still holds (the queue and the sender keep the
    /// order), so the next ones it is done with: they are skipped unsent,
    /// and what becomes of them is not counted again.
    given_up: u64,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sender is done with `count` records, the oldest it held: counts
    /// those the stop did not already count, in `counter`.
    fn settle(&self, count: u64, counter: &Counter) {
        let mut progress = self.lock();
        let counted_already = progress.given_up.min(count);
        progress.given_up -= counted_already;
        progress.done += count;
        counter.inc_by(count - counted_already);
        self.changed.notify_all();
    }

    /// Removes from the front of `batch` the records the stop gave up on.
    fn skip_given_up(&self, batch: &mut Vec<LogRecord>) {
        let mut progress = self.lock();
        let skipped = progress.given_up.min(batch.len() as u64);
        if skipped > 0 {
            progress.given_up -= skipped;
            progress.done += skipped;
            batch.drain(..skipped as usize);
            self.changed.notify_all();
        }
    }

    /// Whether the next record, after the `held` ones, is one the stop
    /// gave up on; if so it is done with.
    fn skip_if_given_up(&self, held: usize) -> bool {
        let mut progress = self.lock();
        if progress.given_up <= held as u64 {
            return false;
        }
        progress.given_up -= 1;
        progress.done += 1;
        self.changed.notify_all();
        true
    }

    fn giving_up(&self) -> bool {
        self.lock().given_up > 0
    }

    /// Sleeps for `pause`, or less when the stop gives up meanwhile.
    fn pause(&self, pause: Duration) {
        let progress = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(progress, pause, |p| p.given_up == 0);
    }

    /// Waits until the sender is done with `queued` records or `until`;
    /// returns how many it is not done with.
    fn wait_done(&self, queued: u64, until: Instant) -> u64 {
        let mut progress = self.lock();
        while progress.done < queued {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            progress = self
                .changed
                .wait_timeout(progress, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        queued.saturating_sub(progress.done)
    }

    /// Counts as dropped the records of the first `queued` that are neither
    /// done nor already given up; returns how many that was.
    fn give_up(&self, queued: u64, counter: &Counter) -> u64 {
        let mut progress = self.lock();
        let outstanding = queued.saturating_sub(progress.done + progress.given_up);
        progress.given_up += outstanding;
        counter.inc_by(outstanding);
        // Wakes the sender from a retry's pause.
        self.changed.notify_all();
        outstanding
    }
}

/// What the queue carries: a record, or the stop's request to send what is
/// batched now instead of waiting for more.
enum Message {
    Record(Pending),
    Flush,
}

pub struct OtlpSender {
    queue: Option<SyncSender<Message>>,
    counters: OtlpCounters,
    ledger: Arc<Ledger>,
    /// Records the queue took (the sender owes an outcome for each).
    queued: u64,
    /// Set at the stop: the sender sends each batch as soon as the queue is
    /// empty.
    flushing: Arc<AtomicBool>,
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
        let ledger = Arc::new(Ledger::default());
        let flushing = Arc::new(AtomicBool::new(false));
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
            ledger: ledger.clone(),
            flushing: flushing.clone(),
        };
        // Never joined: at the stop, a request in flight to a slow receiver
        // must not hold tracer's exit (see `settle` and `finish`).
        std::thread::Builder::new()
            .name("otlp-sender".into())
            .spawn(move || worker.run(incoming))
            .context("starting the OTLP sender thread")?;
        Ok(Self {
            queue: Some(queue),
            counters,
            ledger,
            queued: 0,
            flushing,
        })
    }

    /// Queues one record (its `--output` line); never waits.
    pub fn push(&mut self, line: &[u8], console: Option<&str>) {
        let pending = Pending {
            line: line.to_vec(),
            console: console.map(str::to_owned),
        };
        let Some(queue) = &self.queue else {
            self.counters.queue_full.inc();
            return;
        };
        match queue.try_send(Message::Record(pending)) {
            Ok(()) => self.queued += 1,
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

    /// The first step of the stop, before its `stop` record: lets the sender
    /// send what is queued for at most `limit`, then counts what is still
    /// unsent as dropped (`otlp_send_failed`), so that `drops` then accounts
    /// for every record before the `stop` record. A batch still in flight to
    /// a slow receiver is counted as dropped too, though it may yet arrive:
    /// tracer cannot wait for it.
    pub fn settle(&mut self, limit: Duration) {
        self.flushing.store(true, Ordering::Relaxed);
        if let Some(queue) = &self.queue {
            // Wakes a sender waiting for more records; with a full queue it
            // is not waiting.
            let _ = queue.try_send(Message::Flush);
        }
        if self.ledger.wait_done(self.queued, Instant::now() + limit) > 0 {
            let given_up = self.ledger.give_up(self.queued, &self.counters.send_failed);
            tracing::warn!(
                records = given_up,
                "OTLP log records not sent when tracer stopped: counted as dropped"
            );
        }
    }

    /// The last step of the stop, after its `stop` record: lets that record
    /// (and any after `settle`) leave within `limit`. What is then still
    /// unsent is counted too, and said: the `stop` record cannot count
    /// itself, and the file has it.
    pub fn finish(mut self, limit: Duration) {
        let queue = self.queue.take();
        if let Some(queue) = &queue {
            let _ = queue.try_send(Message::Flush);
        }
        let unsent = self.ledger.wait_done(self.queued, Instant::now() + limit);
        drop(queue);
        if unsent > 0 {
            self.ledger.give_up(self.queued, &self.counters.send_failed);
            tracing::warn!(
                records = unsent,
                "the OTLP receiver did not take the stop record in time; --output has it"
            );
        }
        let (queue_full, send_failed) = self.drops();
        if queue_full > 0 || send_failed > 0 {
            tracing::warn!(queue_full, send_failed, "OTLP log records dropped");
        }
    }
}

struct Worker {
    url: String,
    resource: Resource,
    agent: ureq::Agent,
    counters: OtlpCounters,
    ledger: Arc<Ledger>,
    flushing: Arc<AtomicBool>,
}

enum Outcome {
    Sent,
    Retry(String),
    Rejected(String),
}

impl Worker {
    fn run(self, incoming: Receiver<Message>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            match incoming.recv() {
                Ok(Message::Record(first)) => self.add(&mut batch, first),
                Ok(Message::Flush) => continue,
                Err(_) => return,
            }
            let until = Instant::now() + BATCH_WAIT;
            while batch.len() < MAX_BATCH {
                // At the stop, a batch leaves as soon as the queue is empty.
                let next = if self.flushing.load(Ordering::Relaxed) {
                    incoming.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => RecvTimeoutError::Timeout,
                        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                    })
                } else {
                    incoming.recv_timeout(until.saturating_duration_since(Instant::now()))
                };
                match next {
                    Ok(Message::Record(record)) => self.add(&mut batch, record),
                    Ok(Message::Flush) => {}
                    Err(_) => break,
                }
            }
            self.send(&mut batch);
        }
    }

    /// Adds a queued record to the batch; a line that is not a record (never
    /// written by tracer) is counted as not sent.
    fn add(&self, batch: &mut Vec<LogRecord>, pending: Pending) {
        if self.ledger.skip_if_given_up(batch.len()) {
            return;
        }
        match pending.into_log_record() {
            Some(record) => batch.push(record),
            None => self.ledger.settle(1, &self.counters.send_failed),
        }
    }

    /// Sends and empties `batch`, counting it as sent or dropped.
    fn send(&self, batch: &mut Vec<LogRecord>) {
        self.ledger.skip_given_up(batch);
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
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
                    self.ledger.settle(count, &self.counters.sent);
                    return;
                }
                Outcome::Rejected(why) => {
                    tracing::warn!(records = count, "OTLP receiver rejected a batch: {why}");
                    break;
                }
                Outcome::Retry(why) => {
                    tracing::debug!(attempt, "OTLP send failed: {why}");
                    if attempt == ATTEMPTS {
                        tracing::warn!(
                            records = count,
                            "OTLP batch dropped after {attempt} attempts: {why}"
                        );
                        break;
                    }
                    self.ledger.pause(backoff);
                    // The stop gave up on this batch (the oldest) meanwhile.
                    if self.ledger.giving_up() {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.ledger.settle(count, &self.counters.send_failed);
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

    /// A receiver that takes the connection and never answers (a hung
    /// collector): the stop waits no longer than its limits, and every record
    /// is counted before the `stop` record is, the stop record itself after.
    #[test]
    fn a_hung_receiver_at_stop_is_given_up_on_and_counted_in_time() {
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = hung.local_addr().unwrap().port();
        let mut sender =
            OtlpSender::start(&format!("http://127.0.0.1:{port}/v1/logs"), "n", 64, None).unwrap();
        for i in 0..40 {
            let line = json!({"kind": "exit", "exit_code": i}).to_string();
            sender.push(line.as_bytes(), None);
        }
        let counters = sender.counters.clone();
        let started = Instant::now();
        sender.settle(Duration::from_millis(300));
        let settled = started.elapsed();
        assert!(settled < Duration::from_millis(450), "{settled:?}");
        assert_eq!(
            sender.drops(),
            (0, 40),
            "every record before the stop record"
        );
        sender.push(json!({"kind": "stop"}).to_string().as_bytes(), None);
        let started = Instant::now();
        sender.finish(Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(counters.send_failed.get(), 41);
        assert_eq!(counters.sent.get(), 0);
        drop(hung);
    }

    /// A receiver that takes everything: the stop sends it all at once,
    /// without waiting for a batch to fill.
    #[test]
    fn a_working_receiver_gets_everything_at_stop() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || answer_ok(&mut stream));
            }
        });
        let mut sender =
            OtlpSender::start(&format!("http://127.0.0.1:{port}/v1/logs"), "n", 64, None).unwrap();
        for i in 0..40 {
            sender.push(
                json!({"kind": "exit", "exit_code": i})
                    .to_string()
                    .as_bytes(),
                None,
            );
        }
        let counters = sender.counters.clone();
        let started = Instant::now();
        sender.settle(Duration::from_millis(400));
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(counters.sent.get(), 40);
        sender.push(json!({"kind": "stop"}).to_string().as_bytes(), None);
        sender.finish(Duration::from_millis(400));
        assert_eq!(counters.sent.get(), 41);
        assert_eq!(sender_drops(&counters), 0);
    }

    fn sender_drops(c: &OtlpCounters) -> u64 {
        c.queue_full.get() + c.send_failed.get()
    }

    /// Reads HTTP/1.1 requests with a Content-Length body and answers 200.
    fn answer_ok(stream: &mut std::net::TcpStream) {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        loop {
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
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
        sender.settle(Duration::from_millis(300));
        assert_eq!(counters.sent.get(), 0);
        assert_eq!(counters.queue_full.get() + counters.send_failed.get(), 1000);
        sender.finish(Duration::from_millis(100));
        assert_eq!(counters.queue_full.get() + counters.send_failed.get(), 1000);
    }
}
