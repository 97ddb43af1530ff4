//! The terminal while `tracer top` runs: raw mode (keys without Enter),
//! the alternate screen, no cursor; all restored on the way out, a panic
//! included. No colours: what is drawn is plain text.
//!
//! A frame rewrites only the rows that changed, each cleared to its end,
//! inside a synchronized update: clearing the whole screen every frame made
//! it flicker. The whole screen is cleared only at the start and after a
//! resize.

use std::{
    io::{Stdout, Write},
    time::Duration,
};

use anyhow::Result;
use crossterm::{
    cursor,
    event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    terminal, QueueableCommand as _,
};

pub enum Key {
    Quit,
    Char(char),
    Resize,
}

pub struct Screen {
    out: Stdout,
    size: (usize, usize),
    /// The rows on screen now; empty when it must be cleared first.
    shown: Vec<String>,
}

impl Screen {
    pub fn enter() -> Result<Self> {
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        out.queue(terminal::EnterAlternateScreen)?
            .queue(cursor::Hide)?
            .flush()?;
        // A panic must not leave the user's terminal in raw mode.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let (w, h) = terminal::size().unwrap_or((80, 24));
        Ok(Self {
            out,
            size: (w as usize, h as usize),
            shown: Vec::new(),
        })
    }

    pub fn size(&self) -> (usize, usize) {
        self.size
    }

    /// The next key within `timeout`, if any.
    pub fn key(&mut self, timeout: Duration) -> Result<Option<Key>> {
        if !event::poll(timeout)? {
            return Ok(None);
        }
        Ok(match event::read()? {
            Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    Some(Key::Quit)
                }
                KeyCode::Char('q') | KeyCode::Esc => Some(Key::Quit),
                KeyCode::Char(c) => Some(Key::Char(c.to_ascii_lowercase())),
                _ => None,
            },
            Event::Resize(w, h) => {
                self.size = (w as usize, h as usize);
                // What was on screen is reflowed by the terminal: start over.
                self.shown.clear();
                Some(Key::Resize)
            }
            _ => None,
        })
    }

    pub fn draw(&mut self, lines: &[String]) -> Result<()> {
        paint(&mut self.out, &mut self.shown, lines)
    }
}

/// Brings the screen from `shown` to `lines`: only changed rows are
/// written, each followed by a clear to the end of its row; rows below the
/// new last one are cleared. An empty `shown` means an unknown screen,
/// cleared whole first.
fn paint(out: &mut impl Write, shown: &mut Vec<String>, lines: &[String]) -> Result<()> {
    out.queue(terminal::BeginSynchronizedUpdate)?;
    if shown.is_empty() {
        out.queue(terminal::Clear(terminal::ClearType::All))?;
    }
    for (row, line) in lines.iter().enumerate() {
        if shown.get(row) == Some(line) {
            continue;
        }
        out.queue(cursor::MoveTo(0, row as u16))?;
        out.write_all(line.as_bytes())?;
        out.queue(terminal::Clear(terminal::ClearType::UntilNewLine))?;
    }
    if lines.len() < shown.len() {
        out.queue(cursor::MoveTo(0, lines.len() as u16))?
            .queue(terminal::Clear(terminal::ClearType::FromCursorDown))?;
    }
    out.queue(terminal::EndSynchronizedUpdate)?;
    out.flush()?;
    shown.clear();
    shown.extend_from_slice(lines);
    Ok(())
}

fn restore() {
    let mut out = std::io::stdout();
    let _ = out.queue(cursor::Show);
    let _ = out.queue(terminal::LeaveAlternateScreen);
    let _ = out.flush();
    let _ = terminal::disable_raw_mode();
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rows: &[&str]) -> Vec<String> {
        rows.iter().map(|r| r.to_string()).collect()
    }

    /// What a frame sends to the terminal, as text.
    fn sent(shown: &mut Vec<String>, lines: &[String]) -> String {
        let mut out = Vec::new();
        paint(&mut out, shown, lines).unwrap();
        String::from_utf8(out).unwrap()
    }

    const CLEAR_ALL: &str = "\x1b[2J";

    #[test]
    fn only_changed_rows_are_rewritten_and_the_screen_is_never_cleared_whole_again() {
        let mut shown = Vec::new();
        let first = sent(
            &mut shown,
            &frame(&["tracer top 12:00:01", "POD  IOWAIT", "web  12%"]),
        );
        assert!(
            first.contains(CLEAR_ALL),
            "the first frame starts from a clean screen"
        );
        assert!(first.contains("web  12%"));

        let second = sent(
            &mut shown,
            &frame(&["tracer top 12:00:02", "POD  IOWAIT", "web  15%"]),
        );
        assert!(
            !second.contains(CLEAR_ALL),
            "no whole-screen clear: {second:?}"
        );
        assert!(second.contains("12:00:02") && second.contains("web  15%"));
        assert!(
            !second.contains("POD  IOWAIT"),
            "an unchanged row is left alone"
        );

        // A shorter frame clears what is below it, and only that.
        let third = sent(&mut shown, &frame(&["tracer top 12:00:03"]));
        assert!(!third.contains(CLEAR_ALL));
        assert!(
            third.contains("\x1b[J"),
            "rows below are cleared: {third:?}"
        );
        assert_eq!(shown, frame(&["tracer top 12:00:03"]));
    }
}
