//! tracer's own diagnostics (warnings, what it could not do, aya's messages)
//! go through `tracing` to stderr: as text for a person, or as JSON lines
//! for a log pipeline. Events and records never go this way: they are
//! tracer's output, on stdout and in the `--output` file.

use anyhow::{Context as _, Result};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per message.
    Text,
    /// One JSON object per message (time, level, target, message, fields).
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Diagnostics to show: error, warn, info, debug or trace, or a filter
    /// such as "info,aya=debug". Without it RUST_LOG is read, else "info".
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Format of the diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The filter: --log-level, else RUST_LOG, else "info".
fn filter(args: &LogArgs) -> Result<EnvFilter> {
    match &args.log_level {
        Some(level) => EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level}: not a level or filter")),
        None => match std::env::var("RUST_LOG") {
            Ok(value) if !value.is_empty() => EnvFilter::try_new(&value)
                .with_context(|| format!("RUST_LOG={value}: not a level or filter")),
            _ => Ok(EnvFilter::new("info")),
        },
    }
}

/// Installs the subscriber, and with it (tracing-subscriber's `tracing-log`
/// feature) the bridge that turns the `log` records of aya (loading, BTF
/// relocation, attaching) into `tracing` events, filtered and shown under
/// their own targets (`aya::bpf`, `aya_obj::btf`).
pub fn init(args: &LogArgs) -> Result<()> {
    let filter = filter(args)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A stderr that is gone (a closed ssh session) must not take tracer
        // down: the subscriber would eprintln! the failure, which panics.
        .log_internal_errors(false);
    let installed = match args.log_format {
        LogFormat::Text => builder
            .with_target(false)
            .without_time()
            .with_ansi(false)
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_flag_wins_and_is_checked() {
        let args = LogArgs {
            log_level: Some("warn,aya=debug".into()),
            log_format: LogFormat::Text,
        };
        assert!(filter(&args).is_ok());
        let bad = LogArgs {
            log_level: Some("loud=[".into()),
            log_format: LogFormat::Text,
        };
        assert!(filter(&bad)
            .unwrap_err()
            .to_string()
            .contains("--log-level"));
    }
}
