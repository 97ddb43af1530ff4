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
        }
    }

    pub fn event(&mut self, event: &Event) -> Result<()> {
        json::write_event(&mut self.json, event, &self.clock, &self.node)
            .context("encoding an event")?;
        if let Some(file) = &mut self.file {
            file.write_line(&self.json)
                .with_context(|| format!("writing {}", file.path().display()))?;
        }
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
        if let Some(file) = &mut self.file {
            file.write_line(&self.json)
                .with_context(|| format!("writing {}", file.path().display()))?;
        }
        if self.format == Format::Json {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&self.json)?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        if let Some(file) = &mut self.file {
            file.sync()
                .with_context(|| format!("syncing {}", file.path().display()))?;
        }
        Ok(())
    }
}
