//! Where events go: the console (text or JSON lines) and the `--output`
//! JSON-lines file. Buffers are reused: no allocation per event here beyond
//! what serde needs for the event's own strings.
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
/// events over boxed: an event is rare next to the records that lead to it
/// (and carries strings of its own), so the box costs nothing that shows.
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

/// `eprintln!` that does not panic when stderr is gone (a closed ssh
/// session, a stopped journald): once tracer runs, losing the console must
/// not lose the `--output` file.
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

pub struct Output {
    format: Format,
    file: Option<jsonl::JsonlWriter>,
    clock: Clock,
    node: String,
    json: Vec<u8>,
    text: String,
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
            events_written: 0,
            file_errors: 0,
            file_recovered: false,
            console_errors: 0,
            console_gone: false,
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

    pub fn event(&mut self, event: &dyn Event) -> Result<()> {
        json::write_event(&mut self.json, event, &self.clock, &self.node)
            .context("encoding an event")?;
        self.write_file();
        if self.format == Format::Text {
            self.text.clear();
            event.write_text(&mut self.text);
        }
        self.export_event(event);
        match self.format {
            Format::Json => {
                self.json.push(b'\n');
                write_console(&self.json, &mut self.console_errors, &mut self.console_gone);
            }
            Format::Text => {
                escape::escape_layout(&mut self.text);
                write_console(
                    self.text.as_bytes(),
                    &mut self.console_errors,
                    &mut self.console_gone,
                );
            }
        }
        self.events_written += 1;
        Ok(())
    }

    /// A `start`, `lost` or `stop` record: to the file, and to stdout in
    /// JSON mode (text mode reports these on stderr instead).
    pub fn record<T: Serialize>(
        &mut self,
        kind: &'static str,
        mono_ns: u64,
        body: T,
    ) -> Result<()> {
        json::write_record(&mut self.json, kind, mono_ns, &self.clock, &self.node, body)
            .context("encoding a record")?;
        self.write_file();
        if let Some(exporters) = &mut self.exporters {
            exporters.record(&self.json, None);
        }
        if self.format == Format::Json {
            self.json.push(b'\n');
            write_console(&self.json, &mut self.console_errors, &mut self.console_gone);
        }
        Ok(())
    }

    /// A full disk must not stop the console explanations: the failure is
    /// reported once, then counted (a later success says so).
    fn write_file(&mut self) {
        let Some(file) = &mut self.file else { return };
        match file.write_line(&self.json) {
            Ok(()) if self.file_errors > 0 && !self.file_recovered => {
                self.file_recovered = true;
                crate::stderr_line!(
                    "tracer: {} is writable again after {} lost lines",
                    file.path().display(),
                    self.file_errors
                );
            }
            Ok(()) => {}
            Err(e) => {
                if self.file_errors == 0 || self.file_recovered {
                    crate::stderr_line!(
                        "tracer: warning: cannot write {}: {e}; lines not written are counted",
                        file.path().display()
                    );
                }
                self.file_recovered = false;
                self.file_errors += 1;
            }
        }
    }

    pub fn sync(&mut self) -> Result<()> {
        if let Some(file) = &mut self.file {
            file.sync()
                .with_context(|| format!("syncing {}", file.path().display()))?;
        }
        Ok(())
    }
}

/// Writes one event's or record's console text to stdout. A failure is
/// counted, and said once on stderr; a closed pipe (EPIPE) or a terminal
/// that went away (EIO) is not tried again.
fn write_console(bytes: &[u8], errors: &mut u64, gone: &mut bool) {
    if *gone {
        *errors += 1;
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        if *errors == 0 {
            crate::stderr_line!(
                "tracer: warning: the console does not take events ({e}); --output goes on, console lines not shown are counted"
            );
        }
        *errors += 1;
        *gone = e.kind() == std::io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EIO);
    }
}
