//! Exports for a fleet of nodes: Prometheus metrics (`--metrics-address`)
//! and OpenTelemetry logs over OTLP/HTTP (`--otlp-endpoint`).
//!
//! The seam is narrow on purpose: exporters see each record exactly as the
//! `--output` file gets it, its serialized JSON object (plus, for events,
//! the console line). Metrics parse it on the watch loop, OTLP on its sender
//! thread, and they pick what they need by JSON pointer from the
//! declarative table in [`labels`]. So a record kind gains metrics
//! by a table row, and nothing in the event families knows about exporters.
//! Parsing costs a few microseconds per event, which a typed seam would
//! save, at the price of exporter code in every event family; `cargo xtask
//! bench export-storm` measures what each exporter adds per event.

pub mod http;
pub mod labels;
pub mod metrics;
pub mod otlp;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::Value;

/// The export flags of `tracer watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off unless given;
    /// nothing listens otherwise).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// How long the series of a deleted pod stay after the pod is gone from
    /// kubelet's /var/log/pods, so the last increments are scraped.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, requires = "metrics_address")]
    pub metrics_pod_grace: Duration,

    /// At most this many series with labels; an event that would add one
    /// more is not counted in its metric, but in
    /// tracer_metrics_series_capped_total.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(10..=1_000_000), requires = "metrics_address")]
    pub metrics_max_series: u32,

    /// Send every record as an OpenTelemetry log record to this OTLP/HTTP
    /// logs endpoint (protobuf), e.g. http://otel-collector:4318/v1/logs.
    #[arg(long, value_name = "URL", value_parser = otlp::parse_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Log records waiting to be sent, at most; when the receiver is down or
    /// slow, newer records beyond this are dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), requires = "otlp_endpoint")]
    pub otlp_queue_size: u32,
}

/// "30s", "5m", "2h", "500ms" or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s}: expected a duration such as 30s, 5m or 1h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{s}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    if !(0.0..=7.0 * 86400.0).contains(&seconds) {
        return Err(format!("{s}: must be between 0 and 7 days"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What the exporters dropped, for the `stop` record.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ExportDrops {
    /// Log records not sent: the queue was full (receiver down or slow).
    pub otlp_queue_full: u64,
    /// Log records not sent: every retry of their batch failed, or the
    /// receiver rejected them, or the stop gave up on them (still queued or
    /// in flight after its wait; counted before the `stop` record is written).
    pub otlp_send_failed: u64,
    /// Events not counted in a metric because a new series would have passed
    /// --metrics-max-series.
    pub metrics_series_capped: u64,
}

/// The exporters a `tracer watch` runs with.
pub struct Exporters {
    metrics: Option<Arc<metrics::Metrics>>,
    listener: Option<std::net::TcpListener>,
    otlp: Option<otlp::OtlpSender>,
    host_root: PathBuf,
    grace: Duration,
}

impl Exporters {
    /// Checks and claims what the flags ask for, before anything is attached:
    /// the metrics port is bound here (an address in use fails now), the
    /// metrics and OTLP sender threads started.
    pub fn start(
        args: &ExportArgs,
        node: &str,
        host_root: &std::path::Path,
    ) -> Result<Option<Self>> {
        if args.metrics_address.is_none() && args.otlp_endpoint.is_none() {
            return Ok(None);
        }
        let metrics = args
            .metrics_address
            .map(|_| Arc::new(metrics::Metrics::new(args.metrics_max_series as usize)));
        let listener = match args.metrics_address {
            Some(address) => Some(
                std::net::TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on --metrics-address {address}"))?,
            ),
            None => None,
        };
        let otlp = match &args.otlp_endpoint {
            Some(url) => Some(otlp::OtlpSender::start(
                url,
                node,
                args.otlp_queue_size as usize,
                metrics.as_deref(),
            )?),
            None => None,
        };
        let mut exporters = Self {
            metrics,
            listener,
            otlp,
            host_root: host_root.to_path_buf(),
            grace: args.metrics_pod_grace,
        };
        exporters.serve()?;
        Ok(Some(exporters))
    }

    /// Starts serving /metrics and sweeping deleted pods' series, on the
    /// metrics thread.
    fn serve(&mut self) -> Result<()> {
        let (Some(metrics), Some(listener)) = (&self.metrics, self.listener.take()) else {
            return Ok(());
        };
        let sweeper = metrics::sweep_forever(metrics.clone(), self.host_root.clone(), self.grace);
        http::start(listener, metrics.clone(), sweeper)
    }

    /// Whether the console line of each event is wanted (the OTLP body).
    pub fn wants_console_line(&self) -> bool {
        self.otlp.is_some()
    }

    /// One record as written to the `--output` file: `json` is its serialized
    /// object (whose `kind` says what it is), `console` the console
    /// explanation of an event.
    pub fn record(&mut self, json: &[u8], console: Option<&str>) {
        if let Some(metrics) = &self.metrics {
            if let Ok(value) = serde_json::from_slice::<Value>(json) {
                if let Some(kind) = value.get("kind").and_then(Value::as_str) {
                    metrics.observe(kind, &value);
                }
            }
        }
        if let Some(otlp) = &mut self.otlp {
            otlp.push(json, console);
        }
    }

    pub fn drops(&self) -> ExportDrops {
        let (queue_full, send_failed) = self.otlp.as_ref().map_or((0, 0), |o| o.drops());
        ExportDrops {
            otlp_queue_full: queue_full,
            otlp_send_failed: send_failed,
            metrics_series_capped: self.metrics.as_ref().map_or(0, |m| m.capped()),
        }
    }

    /// The stop's first step, before its `stop` record: what is queued
    /// for OTLP gets at most `limit` to leave, the rest is counted as
    /// dropped, so that `drops` accounts for every record before the stop.
    pub fn settle(&mut self, limit: Duration) {
        if let Some(otlp) = &mut self.otlp {
            otlp.settle(limit);
        }
    }

    /// The stop's last step, after its `stop` record: that record gets at
    /// most `limit` to leave.
    pub fn finish(&mut self, limit: Duration) {
        if let Some(otlp) = self.otlp.take() {
            otlp.finish(limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("8000h").is_err());
        assert!(parse_duration("").is_err());
    }
}
