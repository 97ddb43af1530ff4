//! Where events go: the console (text or JSON lines) and the `--output`
//! JSON-lines file. Buffers are reused: no allocation per event here beyond
//! what serde needs for the event's own strings.

pub mod json;
pub mod jsonl;
pub mod text;

use std::io::Write as _;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{clock::Clock, event::Event};

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
    /// (already in `self.text` in text mode) when they want it.
    fn export_event(&mut self, event: &Event) {
        let Some(exporters) = &mut self.exporters else {
            return;
        };
        let line = exporters.wants_console_line().then(|| {
            if self.format != Format::Text {
                text::write_event(&mut self.text, event);
            }
            self.text.as_str()
        });
        exporters.record(&self.json, line);
    }

    pub fn event(&mut self, event: &Event) -> Result<()> {
        json::write_event(&mut self.json, event, &self.clock, &self.node)
            .context("encoding an event")?;
        self.write_file();
        let mut stdout = std::io::stdout().lock();
        match self.format {
            Format::Json => {
                stdout.write_all(&self.json)?;
                stdout.write_all(b"\n")?;
            }
            Format::Text => {
                text::write_event(&mut self.text, event);
                stdout.write_all(self.text.as_bytes())?;
            }
        }
        stdout.flush()?;
        self.export_event(event);
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
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&self.json)?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
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
                eprintln!(
                    "tracer: {} is writable again after {} lost lines",
                    file.path().display(),
                    self.file_errors
                );
            }
            Ok(()) => {}
            Err(e) => {
                if self.file_errors == 0 || self.file_recovered {
                    eprintln!(
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
