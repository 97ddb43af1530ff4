//! Where events go: the console (text or JSON lines) and the `--output`
//! JSON-lines file. Buffers are reused: no allocation per event here beyond
//! what serde needs for the event's own strings.

pub mod escape;
pub mod json;
pub mod jsonl;
pub mod text;

use std::io::Write as _;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{clock::Clock, event::Event};

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
        }
    }

    /// Adds an event to the batches; see `flush`.
    pub fn event(&mut self, event: &Event) -> Result<()> {
        json::write_event(&mut self.json, event, &self.clock, &self.node)
            .context("encoding an event")?;
        self.push_file();
        match self.format {
            Format::Json => {
                self.console.extend_from_slice(&self.json);
                self.console.push(b'\n');
            }
            Format::Text => {
                text::write_event(&mut self.text, event);
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
        if self.format == Format::Json {
            self.console.extend_from_slice(&self.json);
            self.console.push(b'\n');
            self.console_items += 1;
        }
        self.flush();
        Ok(())
    }

    /// A `signal_flood` record (see `flood`): to the file, and to the
    /// console in either format, since it stands for events.
    pub fn flood(&mut self, flood: &crate::flood::Flood) -> Result<()> {
        let clock = self.clock;
        json::write_record(
            &mut self.json,
            "signal_flood",
            flood.window_end_ns,
            &clock,
            &self.node,
            flood.json(&clock),
        )
        .context("encoding a record")?;
        self.push_file();
        match self.format {
            Format::Json => {
                self.console.extend_from_slice(&self.json);
                self.console.push(b'\n');
            }
            Format::Text => {
                text::write_flood(&mut self.text, flood);
                escape::escape_layout(&mut self.text);
                self.console.extend_from_slice(self.text.as_bytes());
            }
        }
        self.console_items += 1;
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
                crate::stderr_line!(
                    "tracer: {} is writable again after {} lost lines",
                    file.path().display(),
                    self.file_errors
                );
            }
            Ok(()) => {}
            Err(e) => {
                if before == 0 || self.file_recovered {
                    crate::stderr_line!(
                        "tracer: warning: cannot write {}: {e}; lines not written are counted",
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
                    crate::stderr_line!(
                        "tracer: warning: the console does not take events ({e}); --output goes on, console lines not shown are counted"
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
