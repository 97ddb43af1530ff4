//! The terminal while `tracer top` runs: raw mode (keys without Enter),
//! the alternate screen, no cursor; all restored on the way out, a panic
//! included. No colours: what is drawn is plain text.

use std::{
    io::{Stdout, Write as _},
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
                Some(Key::Resize)
            }
            _ => None,
        })
    }

    pub fn draw(&mut self, lines: &[String]) -> Result<()> {
        self.out
            .queue(cursor::MoveTo(0, 0))?
            .queue(terminal::Clear(terminal::ClearType::All))?;
        for (row, line) in lines.iter().enumerate() {
            self.out.queue(cursor::MoveTo(0, row as u16))?;
            self.out.write_all(line.as_bytes())?;
        }
        self.out.flush()?;
        Ok(())
    }
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
