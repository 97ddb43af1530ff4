//! Where events go: the console (text or JSON lines) and the `--output`
//! JSON-lines file. Buffers are reused: no allocation per event.
//!
//! Output knows no family: each family's events implement [`Event`], and
//! write their JSON body and console lines themselves with the helpers of
//! [`json`] and [`text`].

pub mod escape;
pub mod json;
pub mod jsonl;
pub mod text;

use std::io::Write as _;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::clock::Clock;

/// One thing tracer reports, as its family wrote it. Families hand their
/// events to an [`EventSink`] by reference: under a storm there is an event
/// per record, and a box each would be an allocation per record.
pub trait Event {
    /// The JSON `kind` ("signal", "io_stall", ...).
    fn kind(&self) -> &'static str;
    /// When it happened, CLOCK_MONOTONIC nanoseconds.
    fn mono_ns(&self) -> u64;
    /// The kind's own JSON fields, written through [`json::Line::write`]
    /// (which adds the common envelope).
    fn write_json(&self, out: &mut Vec<u8>, line: &json::Line<'_>) -> serde_json::Result<()>;
    /// The console lines, each ending with '\n', appended to `out`.
    fn write_text(&self, out: &mut String);
}

/// Where a family puts the events it completes: the [`Output`], which writes
/// each into its batches at once, or a list in tests.
pub trait EventSink {
    fn emit(&mut self, event: &dyn Event);
}

impl EventSink for Output {
    fn emit(&mut self, event: &dyn Event) {
        // Only a Serialize impl of tracer's own can fail: a bug, said once.
        if let Err(e) = self.event(event) {
            if self.encode_errors == 0 {
                tracing::warn!("cannot encode a {} event: {e:#}", event.kind());
            }
            self.encode_errors += 1;
        }
    }
}

/// For tests: each event as its JSON line says it.
#[cfg(test)]
impl EventSink for Vec<serde_json::Value> {
    fn emit(&mut self, event: &dyn Event) {
        let mut line = Vec::new();
        json::write_event(&mut line, event, &Clock::new(), "node-1").unwrap();
        self.push(serde_json::from_slice(&line).unwrap());
    }
}

/// `eprintln!` that does not panic when stderr is gone (a closed ssh
/// session, a stopped journald): once tracer runs, losing the console must
/// not lose the `--output` file. For tracer's console output on stderr only
/// (the banner, the closing line); warnings and errors go through `tracing`
/// (see [`crate::logging`]), which does not panic either.
#[macro_export]
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One human explanation per event.
    Text,
    /// The JSON-lines records of `--output`.
    Json,
}

/// Bytes gathered before they are written, to the console and to the file
/// each: a batch is written when it grows past this, else at the end of each
/// turn of the event loop (`flush`). Under a flood that is one write(2) for
/// hundreds of lines instead of two per event; when events are few, each
/// turn writes what it has, so nothing waits.
const BATCH_BYTES: usize = 64 << 10;

pub struct Output {
    format: Format,
    file: Option<jsonl::JsonlWriter>,
    clock: Clock,
    node: String,
    json: Vec<u8>,
    text: String,
    /// Console bytes since the last write, and how many events and records.
    console: Vec<u8>,
    console_items: u64,
    pub events_written: u64,
    /// Lines the file did not take (disk full, file removed...). The console
    /// still gets them; the count goes into the `stop` record.
    pub file_errors: u64,
    file_recovered: bool,
    /// Events and records the console did not take (a closed pipe, a gone
    /// terminal): the file must outlive the console, so they are counted,
    /// reported once on stderr, and the run goes on. Into the `stop` record.
    pub console_errors: u64,
    /// The console can never take a line again (EPIPE, EIO): not tried any more.
    console_gone: bool,
    /// Events that could not be encoded (see `EventSink for Output`).
    pub encode_errors: u64,
    /// Metrics and OTLP logs (`crate::export`), fed every record the file gets.
    exporters: Option<crate::export::Exporters>,
}

impl Output {
    pub fn new(
        format: Format,
        file: Option<jsonl::JsonlWriter>,
        clock: Clock,
        node: String,
    ) -> Self {
        Self {
            format,
            file,
            clock,
            node,
            json: Vec::with_capacity(4096),
            text: String::with_capacity(1024),
            console: Vec::with_capacity(BATCH_BYTES + 4096),
            console_items: 0,
            events_written: 0,
            file_errors: 0,
            file_recovered: false,
            console_errors: 0,
            console_gone: false,
            encode_errors: 0,
            exporters: None,
        }
    }

    pub fn set_exporters(&mut self, exporters: Option<crate::export::Exporters>) {
        self.exporters = exporters;
    }

    pub fn exporters_mut(&mut self) -> Option<&mut crate::export::Exporters> {
        self.exporters.as_mut()
    }

    /// Hands the event just written to the exporters, with its console line
    /// (already in `self.text` in text mode, unescaped: OTLP carries it as a
    /// string) when they want it.
    fn export_event(&mut self, event: &dyn Event) {
        let Some(exporters) = &mut self.exporters else {
            return;
        };
        let line = exporters.wants_console_line().then(|| {
            if self.format != Format::Text {
                self.text.clear();
                event.write_text(&mut self.text);
            }
            self.text.as_str()
        });
        exporters.record(&self.json, line);
    }

    /// Adds an event to the batches; see `flush`.
    pub fn event(&mut self, event: &dyn Event) -> Result<()> {
        json::write_event(&mut self.json, event, &self.clock, &self.node)
            .context("encoding an event")?;
        self.push_file();
        if self.format == Format::Text {
            self.text.clear();
            event.write_text(&mut self.text);
        }
        self.export_event(event);
        match self.format {
            Format::Json => {
                escape::json_for_terminal(&self.json, &mut self.console);
                self.console.push(b'\n');
            }
            Format::Text => {
                escape::escape_layout(&mut self.text);
                self.console.extend_from_slice(self.text.as_bytes());
            }
        }
        self.console_items += 1;
        self.events_written += 1;
        if self.console.len() >= BATCH_BYTES {
            self.flush_console();
        }
        if self
            .file
            .as_ref()
            .is_some_and(|f| f.batched_bytes() >= BATCH_BYTES)
        {
            self.flush_file();
        }
        Ok(())
    }

    /// A `start`, `lost` or `stop` record: to the file, and to stdout in
    /// JSON mode (text mode reports these on stderr instead). Written at
    /// once, after the events before it.
    pub fn record<T: Serialize>(
        &mut self,
        kind: &'static str,
        mono_ns: u64,
        body: T,
    ) -> Result<()> {
        json::write_record(&mut self.json, kind, mono_ns, &self.clock, &self.node, body)
            .context("encoding a record")?;
        self.push_file();
        if let Some(exporters) = &mut self.exporters {
            exporters.record(&self.json, None);
        }
        if self.format == Format::Json {
            escape::json_for_terminal(&self.json, &mut self.console);
            self.console.push(b'\n');
            self.console_items += 1;
        }
        self.flush();
        Ok(())
    }

    /// Writes the batches: the file's lines, then the console's.
    pub fn flush(&mut self) {
        self.flush_file();
        self.flush_console();
    }

    fn push_file(&mut self) {
        let Some(file) = &mut self.file else { return };
        let result = file.push_line(&self.json);
        self.note_file(result);
    }

    fn flush_file(&mut self) {
        let Some(file) = &mut self.file else { return };
        let result = file.flush();
        self.note_file(result);
    }

    /// A full disk must not stop the console explanations: the failure is
    /// reported once, then counted (a later success says so).
    fn note_file(&mut self, result: std::io::Result<()>) {
        let Some(file) = &self.file else { return };
        let before = self.file_errors;
        self.file_errors = file.dropped_lines();
        match result {
            Ok(()) if before > 0 && !self.file_recovered => {
                self.file_recovered = true;
                tracing::info!(
                    "{} is writable again after {} lost lines",
                    file.path().display(),
                    self.file_errors
                );
            }
            Ok(()) => {}
            Err(e) => {
                if before == 0 || self.file_recovered {
                    tracing::warn!(
                        "cannot write {}: {e}; lines not written are counted",
                        file.path().display()
                    );
                }
                self.file_recovered = false;
            }
        }
    }

    /// Writes the console batch. A failure is counted, and said once on
    /// stderr; a closed pipe (EPIPE) or a terminal that went away (EIO) is
    /// not tried again.
    fn flush_console(&mut self) {
        if self.console.is_empty() {
            return;
        }
        if self.console_gone {
            self.console_errors += self.console_items;
        } else {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(&self.console)
                .and_then(|()| stdout.flush())
            {
                if self.console_errors == 0 {
                    tracing::warn!(
                        "the console does not take events ({e}); --output goes on, console lines not shown are counted"
                    );
                }
                self.console_errors += self.console_items;
                self.console_gone = e.kind() == std::io::ErrorKind::BrokenPipe
                    || e.raw_os_error() == Some(libc::EIO);
            }
        }
        self.console.clear();
        self.console_items = 0;
        if self.console.capacity() > 4 * BATCH_BYTES {
            self.console = Vec::with_capacity(BATCH_BYTES + 4096);
        }
    }

    pub fn sync(&mut self) -> Result<()> {
        self.flush();
        if let Some(file) = &mut self.file {
            file.sync()
                .with_context(|| format!("syncing {}", file.path().display()))?;
        }
        Ok(())
    }
}
