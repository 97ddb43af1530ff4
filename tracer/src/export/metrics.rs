//! The Prometheus metrics: counters fed by records (see [`super::labels`]),
//! tracer's own health, and the bound on label cardinality.
//!
//! Cardinality: every series that carries a pod is remembered with the
//! pod's UID. A pod is deleted when kubelet's /var/log/pods no longer has a
//! directory for its UID (kubelet removes it with the pod); its series are
//! removed `--metrics-pod-grace` later, so the last increments are scraped
//! first. Independently, at most `--metrics-max-series` labelled series
//! exist: an event that would create one more is not counted in its metric
//! but in `tracer_metrics_series_capped_total`, and the cap frees up again
//! as deleted pods' series go.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use serde_json::Value;

use super::labels::{self, CounterSpec, COUNTERS};

/// A series' label set, in the table's order.
pub type Labels = Vec<(&'static str, String)>;

enum CounterFamily {
    Count(Family<Labels, Counter>),
    Seconds(Family<Labels, Counter<f64>>),
}

impl CounterFamily {
    fn add(&self, labels: &Labels, amount: f64) {
        match self {
            Self::Count(f) => {
                f.get_or_create(labels).inc_by(amount as u64);
            }
            Self::Seconds(f) => {
                f.get_or_create(labels).inc_by(amount);
            }
        }
    }

    fn remove(&self, labels: &Labels) {
        match self {
            Self::Count(f) => f.remove(labels),
            Self::Seconds(f) => f.remove(labels),
        };
    }
}

/// The series that exist, and which pods they belong to.
#[derive(Default)]
struct Series {
    /// (index in COUNTERS, labels) of every labelled series.
    known: HashSet<(usize, Labels)>,
    by_pod: HashMap<String, PodSeries>,
}

#[derive(Default)]
struct PodSeries {
    series: Vec<(usize, Labels)>,
    /// When the sweep first found the pod deleted.
    gone_since: Option<Instant>,
}

/// Counters of the OTLP sender, exposed here when metrics are on.
#[derive(Clone, Default)]
pub struct OtlpCounters {
    pub sent: Counter,
    pub queue_full: Counter,
    pub send_failed: Counter,
}

pub struct Metrics {
    registry: Registry,
    counters: Vec<CounterFamily>,
    series: Mutex<Series>,
    max_series: usize,
    series_gauge: Gauge,
    capped: Counter,
    evicted: Counter,
    records_lost: Family<Labels, Counter>,
    build_info: Family<Labels, Gauge>,
    hook_attached: Family<Labels, Gauge>,
    pub otlp: OtlpCounters,
}

impl Metrics {
    pub fn new(max_series: usize) -> Self {
        let mut registry = Registry::with_prefix("tracer");
        let counters = COUNTERS
            .iter()
            .map(|spec| match spec.unit {
                Some(unit) => {
                    let family = Family::<Labels, Counter<f64>>::default();
                    registry.register_with_unit(
                        spec.name,
                        spec.help,
                        unit_of(unit),
                        family.clone(),
                    );
                    CounterFamily::Seconds(family)
                }
                None => {
                    let family = Family::<Labels, Counter>::default();
                    registry.register(spec.name, spec.help, family.clone());
                    CounterFamily::Count(family)
                }
            })
            .collect();
        let records_lost = Family::<Labels, Counter>::default();
        registry.register(
            "records_lost",
            "Kernel records lost because the ring buffer was full, by record kind",
            records_lost.clone(),
        );
        let hook_attached = Family::<Labels, Gauge>::default();
        registry.register(
            "hook_attached",
            "Whether each kernel hook is attached (1) or off on this kernel (0)",
            hook_attached.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        registry.register(
            "build_info",
            "tracer's version and the kernel it runs on (always 1)",
            build_info.clone(),
        );
        let series_gauge = Gauge::default();
        registry.register(
            "metrics_series",
            "Labelled series of the event counters now exposed",
            series_gauge.clone(),
        );
        let capped = Counter::default();
        registry.register(
            "metrics_series_capped",
            "Events not counted because their series would have passed --metrics-max-series",
            capped.clone(),
        );
        let evicted = Counter::default();
        registry.register(
            "metrics_series_evicted",
            "Series removed after their pod was deleted and the grace time passed",
            evicted.clone(),
        );
        let otlp = OtlpCounters::default();
        registry.register(
            "otlp_log_records_sent",
            "Log records the OTLP receiver accepted",
            otlp.sent.clone(),
        );
        registry.register(
            "otlp_log_records_dropped_queue_full",
            "Log records dropped because the send queue was full (receiver down or slow)",
            otlp.queue_full.clone(),
        );
        registry.register(
            "otlp_log_records_dropped_send_failed",
            "Log records dropped after every retry of their batch failed or the receiver rejected them",
            otlp.send_failed.clone(),
        );
        Self {
            registry,
            counters,
            series: Mutex::new(Series::default()),
            max_series,
            series_gauge,
            capped,
            evicted,
            records_lost,
            build_info,
            hook_attached,
            otlp,
        }
    }

    /// Counts one record of `kind`.
    pub fn observe(&self, kind: &str, record: &Value) {
        match kind {
            "start" => self.observe_start(record),
            "lost" => self.observe_lost(record),
            _ => {}
        }
        let mut scratch = String::new();
        for (index, spec) in COUNTERS.iter().enumerate() {
            let Some(amount) = labels::amount(spec, kind, record) else {
                continue;
            };
            let labels: Labels = spec
                .labels
                .iter()
                .map(|l| {
                    labels::value_of(l, record, &mut scratch);
                    (l.name, scratch.clone())
                })
                .collect();
            let key = (index, labels);
            if self.admit(&key, spec, record) {
                self.counters[index].add(&key.1, amount);
            }
        }
    }

    /// Whether the series may be counted: it exists, or there is room for it
    /// (then it is remembered, with its pods).
    fn admit(&self, key: &(usize, Labels), spec: &CounterSpec, record: &Value) -> bool {
        let mut series = self.lock();
        if series.known.contains(key) {
            return true;
        }
        if series.known.len() >= self.max_series {
            self.capped.inc();
            return false;
        }
        for alternatives in spec.pods {
            if let Some(uid) = labels::pod_uid(alternatives, record) {
                let pod = series.by_pod.entry(uid.to_owned()).or_default();
                pod.series.push(key.clone());
            }
        }
        series.known.insert(key.clone());
        true
    }

    fn observe_start(&self, record: &Value) {
        let text = |p: &str| {
            labels::lookup(record, p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        self.build_info
            .get_or_create(&vec![
                ("version", text("/version")),
                ("kernel", text("/kernel")),
            ])
            .set(1);
        for hook in record
            .get("hooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = hook["name"].as_str().unwrap_or("").to_owned();
            let attached = i64::from(hook["attached"].is_string());
            self.hook_attached
                .get_or_create(&vec![("hook", name)])
                .set(attached);
        }
    }

    fn observe_lost(&self, record: &Value) {
        let Some(by_kind) = record.get("by_kind").and_then(Value::as_object) else {
            return;
        };
        for (kind, count) in by_kind {
            // Every kind appears, lost or not: its series starts at 0.
            let counter = self
                .records_lost
                .get_or_create(&vec![("kind", kind.clone())]);
            counter.inc_by(count.as_u64().unwrap_or(0));
        }
    }

    /// Events not counted for the cap, so far.
    pub fn capped(&self) -> u64 {
        self.capped.get()
    }

    /// Removes the series of pods deleted `grace` ago or more; `present` is
    /// the set of pod UIDs that exist now.
    fn sweep(&self, present: &HashSet<String>, now: Instant, grace: Duration) {
        let mut guard = self.lock();
        let series = &mut *guard;
        let mut expired = Vec::new();
        for (uid, pod) in &mut series.by_pod {
            if present.contains(uid) {
                pod.gone_since = None;
            } else if now.duration_since(*pod.gone_since.get_or_insert(now)) >= grace {
                expired.push(uid.clone());
            }
        }
        for uid in expired {
            let Some(pod) = series.by_pod.remove(&uid) else {
                continue;
            };
            for key in pod.series {
                // A series of two pods (a signal's sender and target) goes
                // with the first of them.
                if series.known.remove(&key) {
                    self.counters[key.0].remove(&key.1);
                    self.evicted.inc();
                }
            }
        }
    }

    /// The exposition: OpenMetrics when the scraper accepts it (Prometheus
    /// asks for it), else Prometheus' classic text format 0.0.4, which
    /// `curl` users and `promtool check metrics` read.
    pub fn encode(&self, openmetrics: bool) -> (String, &'static str) {
        self.series_gauge.set(self.lock().known.len() as i64);
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                to_classic_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
    }

    fn lock(&self) -> MutexGuard<'_, Series> {
        // The state stays consistent across a panic elsewhere: keep going.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unit_of(unit: &str) -> Unit {
    match unit {
        "seconds" => Unit::Seconds,
        "bytes" => Unit::Bytes,
        other => Unit::Other(other.to_owned()),
    }
}

/// OpenMetrics text to the classic format: a counter's family is named with
/// its `_total` suffix there, and there are no `# UNIT` or `# EOF` lines.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(help_line) = help.take() {
                let text = help_line
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.split_once(' '))
                    .map_or("", |(_, t)| t);
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The pod UIDs kubelet has a log directory for under `host_root`; None
/// when the directory cannot be read (then nothing is taken as deleted).
pub fn pods_present(host_root: &Path) -> Option<HashSet<String>> {
    let entries = std::fs::read_dir(host_root.join("var/log/pods")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| {
                // NAMESPACE_NAME_UID; names and namespaces have no '_'.
                let name = e.file_name();
                let name = name.to_str()?;
                name.rsplit_once('_').map(|(_, uid)| uid.to_owned())
            })
            .collect(),
    )
}

/// Sweeps deleted pods' series a few times per grace period (at least
/// every 10 s), for ever.
pub async fn sweep_forever(metrics: Arc<Metrics>, host_root: PathBuf, grace: Duration) {
    let every = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Some(present) = pods_present(&host_root) {
            metrics.sweep(&present, Instant::now(), grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signal(uid: &str, pod: &str) -> Value {
        json!({"kind": "signal", "signal": {"name": "SIGKILL", "origin": "user"},
               "sender": {"pid": 1},
               "target": {"pid": 2, "pod": {"uid": uid, "namespace": "default", "name": pod}}})
    }

    fn exposition(m: &Metrics) -> String {
        m.encode(false).0
    }

    #[test]
    fn counts_by_labels() {
        let m = Metrics::new(100);
        m.observe("signal", &signal("u1", "web"));
        m.observe("signal", &signal("u1", "web"));
        m.observe("signal", &signal("u2", "db"));
        let text = exposition(&m);
        assert!(text.contains(r#"tracer_signals_total{signal="SIGKILL",origin="user",namespace="default",pod="web",container="",sender_namespace="",sender_pod="",sender_container=""} 2"#), "{text}");
        assert!(text.contains(r#"pod="db""#));
        assert!(text.contains("tracer_metrics_series 2"), "{text}");
    }

    /// A flood's summary counts the signals not shown whole, in the series
    /// of the shown ones.
    #[test]
    fn a_flood_summary_counts_what_it_summed_up() {
        let m = Metrics::new(100);
        for _ in 0..10 {
            m.observe("signal", &signal("u1", "web"));
        }
        let mut flood = signal("u1", "web");
        flood["kind"] = json!("signal_flood");
        flood["count"] = json!(5000);
        flood["shown"] = json!(10);
        m.observe("signal_flood", &flood);
        let text = exposition(&m);
        assert!(text.contains(r#"tracer_signals_total{signal="SIGKILL",origin="user",namespace="default",pod="web",container="",sender_namespace="",sender_pod="",sender_container=""} 5000"#), "{text}");
        assert!(text.contains("tracer_metrics_series 1"), "{text}");
    }

    #[test]
    fn cap_is_counted_and_freed_by_eviction() {
        let m = Metrics::new(3);
        for i in 0..5 {
            m.observe("signal", &signal(&format!("u{i}"), &format!("p{i}")));
        }
        assert_eq!(m.capped(), 2);
        let text = exposition(&m);
        assert!(text.contains("tracer_metrics_series 3"));
        assert!(
            text.contains("tracer_metrics_series_capped_total 2"),
            "{text}"
        );
        assert!(!text.contains(r#"pod="p3""#));
        // Existing series still count at the cap.
        m.observe("signal", &signal("u0", "p0"));
        assert_eq!(m.capped(), 2);

        // u0 is deleted: kept during the grace time, then removed.
        let present: HashSet<String> = ["u1", "u2"].iter().map(|s| s.to_string()).collect();
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        m.sweep(&present, t0, grace);
        assert!(exposition(&m).contains(r#"pod="p0""#));
        m.sweep(&present, t0 + Duration::from_secs(59), grace);
        assert!(exposition(&m).contains(r#"pod="p0""#));
        m.sweep(&present, t0 + Duration::from_secs(61), grace);
        let text = exposition(&m);
        assert!(!text.contains(r#"pod="p0""#), "{text}");
        assert!(text.contains("tracer_metrics_series_evicted_total 1"));
        assert!(text.contains("tracer_metrics_series 2"));
        // Room again for a new pod.
        m.observe("signal", &signal("u3", "p3"));
        assert!(exposition(&m).contains(r#"pod="p3""#));
        assert_eq!(m.capped(), 2);
    }

    #[test]
    fn a_pod_back_before_the_grace_time_keeps_its_series() {
        let m = Metrics::new(10);
        m.observe("signal", &signal("u1", "web"));
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        m.sweep(&HashSet::new(), t0, grace);
        let present: HashSet<String> = ["u1".to_string()].into();
        m.sweep(&present, t0 + Duration::from_secs(5), grace);
        m.sweep(&HashSet::new(), t0 + Duration::from_secs(12), grace);
        assert!(
            exposition(&m).contains(r#"pod="web""#),
            "the clock restarted"
        );
    }

    #[test]
    fn start_and_lost_records() {
        let m = Metrics::new(10);
        m.observe(
            "start",
            &json!({"version": "0.1.0", "kernel": "6.18.0",
                    "hooks": [{"name": "signal", "attached": "raw tracepoint"},
                              {"name": "dns_tx", "attached": null, "error": "no"}]}),
        );
        m.observe(
            "lost",
            &json!({"lost": 3, "by_kind": {"signal": 2, "exit": 1, "oom": 0}}),
        );
        m.observe(
            "lost",
            &json!({"lost": 1, "by_kind": {"signal": 1, "exit": 0, "oom": 0}}),
        );
        let text = exposition(&m);
        assert!(text.contains(r#"tracer_build_info{version="0.1.0",kernel="6.18.0"} 1"#));
        assert!(text.contains(r#"tracer_hook_attached{hook="signal"} 1"#));
        assert!(text.contains(r#"tracer_hook_attached{hook="dns_tx"} 0"#));
        assert!(
            text.contains(r#"tracer_records_lost_total{kind="signal"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"tracer_records_lost_total{kind="oom"} 0"#));
    }

    #[test]
    fn classic_text_names_counters_with_total() {
        let m = Metrics::new(10);
        m.observe("io_stall", &json!({"blocked_ns": 2_500_000_000u64, "in_iowait": true,
            "process": {"pod": {"uid": "u", "namespace": "n", "name": "p"}}, "device": {"name": "vda"}}));
        let (open, ctype) = m.encode(true);
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(open.ends_with("# EOF\n"));
        let classic = exposition(&m);
        assert!(
            classic.contains("# TYPE tracer_io_wait_seconds_total counter\n"),
            "{classic}"
        );
        assert!(classic.contains("# HELP tracer_io_wait_seconds_total "));
        assert!(
            classic.contains(
                r#"tracer_io_wait_seconds_total{namespace="n",pod="p",device="vda"} 2.5"#
            ),
            "{classic}"
        );
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }

    /// Pod names come from the node's directories: a quote, a backslash or
    /// a newline in one stays inside its label value.
    #[test]
    fn hostile_label_values_stay_in_their_sample() {
        let m = Metrics::new(10);
        m.observe("signal", &signal("u1", "a\"b\\c\nd} 1\nfake_metric 9"));
        let text = exposition(&m);
        assert!(!text.contains("\nfake_metric"), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("tracer_signals_total{"))
            .unwrap();
        assert!(
            line.contains(r#"pod="a\"b\\c\nd} 1\nfake_metric 9""#),
            "{line}"
        );
        assert!(line.ends_with(" 1"));
    }

    #[test]
    fn pods_present_reads_kubelet_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pods_present(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("var/log/pods/default_web-1_1234-abcd")).unwrap();
        let present = pods_present(dir.path()).unwrap();
        assert!(present.contains("1234-abcd"));
        assert_eq!(present.len(), 1);
    }
}
