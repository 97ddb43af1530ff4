//! Strings any tenant controls (process and thread names, pod and container
//! names, cgroup paths, /proc contents) on a terminal.
//!
//! A process can name itself `"\e[31mS\nFORGED:"` with prctl(PR_SET_NAME):
//! printed as it is, that colours the terminal and starts a line that looks
//! like tracer's own. So every such string on the console goes through this
//! one function. Control characters (C0, DEL, C1), the Unicode line and
//! paragraph separators and the bidirectional overrides, which reorder what
//! a reader sees, are written as visible escapes: `\n`, `\r`, `\t`, `\xNN`
//! below U+0080, `\u{NNNN}` above. Everything else, a backslash included,
//! is left as it is, so cgroup paths keep systemd's own `\x2d` readable.
//! JSON escapes the C0 controls itself, but leaves DEL, C1 and the rest as
//! they are: JSON lines for the console go through [`json_for_terminal`].

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Whether `c` must not reach a terminal as itself.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Writes `s` to `out` with every character of `needs_escape` escaped, and
/// newlines too unless `keep_newlines` (for text tracer itself laid out).
fn escape_with<W: Write + ?Sized>(out: &mut W, s: &str, keep_newlines: bool) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if !needs_escape(c) || (keep_newlines && c == '\n') {
            continue;
        }
        out.write_str(&s[start..i])?;
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32)?,
            c => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    out.write_str(&s[start..])
}

/// Displays a value (a comm, a label, a path) with the characters a terminal
/// would act on escaped: `write!(out, "{}", Escaped(&p.comm))`. It writes
/// through, without an intermediate string.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Through<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Through<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                escape_with(self.0, s, false)
            }
        }
        write!(Through(f), "{}", self.0)
    }
}

/// `s` with the characters of `Escaped` escaped, borrowed when there are
/// none (the common case costs a scan, no allocation).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let _ = escape_with(&mut out, s, false);
    Cow::Owned(out)
}

/// Appends a JSON line for the console to `out`, with the characters of
/// `Escaped` that JSON leaves raw (DEL, the C1 controls such as CSI U+009B,
/// the line separators and bidirectional overrides) written as `\uNNNN`:
/// the same JSON, which a terminal does not act on. Only strings can hold
/// them, and there the escape means the same character. The file keeps
/// serde_json's own text.
pub fn json_for_terminal(line: &[u8], out: &mut Vec<u8>) {
    // The same cheap look at bytes as `escape_layout` (C0 is escaped already).
    let suspect = |b: &u8| matches!(*b, 0x7f | 0xc2 | 0xe2);
    let text = match std::str::from_utf8(line) {
        Ok(text) if line.iter().any(suspect) => text,
        _ => {
            out.extend_from_slice(line);
            return;
        }
    };
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if needs_escape(c) {
            out.extend_from_slice(&line[start..i]);
            // Every such character is in the Basic Multilingual Plane.
            let _ = std::io::Write::write_fmt(out, format_args!("\\u{:04x}", c as u32));
            start = i + c.len_utf8();
        }
    }
    out.extend_from_slice(&line[start..]);
}

/// Console text tracer laid out itself, lines separated by '\n': whatever
/// else would act on a terminal is escaped in place. The renderers escape
/// each tenant string already; this is the net under them, for a field a
/// future renderer forgets.
pub fn escape_layout(text: &mut String) {
    // Bytes first, cheaply: every character `needs_escape` covers starts
    // with a C0 byte, DEL, or 0xC2 (C1) or 0xE2 (the U+2000 block) in
    // UTF-8; only then are characters looked at.
    let suspect = |b: &u8| (*b < 0x20 && *b != b'\n') || matches!(*b, 0x7f | 0xc2 | 0xe2);
    if !text.as_bytes().iter().any(suspect) || !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return;
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = escape_with(&mut out, text, true);
    *text = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name of the issue's forged process: no escape sequence and no
    /// line break reaches the terminal.
    #[test]
    fn forged_name() {
        let forged = "\u{1b}[31mS\nFORGED:";
        assert_eq!(escape(forged), "\\x1b[31mS\\nFORGED:");
        assert_eq!(
            format!("{}({})", Escaped(forged), 7),
            "\\x1b[31mS\\nFORGED:(7)"
        );
    }

    #[test]
    fn every_kind_of_control() {
        assert_eq!(escape("a\rb\tc\u{7f}d\u{0}"), "a\\rb\\tc\\x7fd\\x00");
        // C1 CSI, as UTF-8, which some terminals act on.
        assert_eq!(escape("x\u{9b}31m"), "x\\u{9b}31m");
        // A right-to-left override would show "gpj.exe" as "exe.jpg".
        assert_eq!(escape("a\u{202e}b\u{2028}c"), "a\\u{202e}b\\u{2028}c");
    }

    #[test]
    fn ordinary_text_is_borrowed_as_it_is() {
        for s in [
            "kworker/u4:2",
            "pod default/web-7f9c-x2k4",
            "/system.slice/system-getty\\x2d.slice",
            "café 名前",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
        }
    }

    /// What serde_json leaves raw goes to the terminal as the same JSON.
    #[test]
    fn json_for_the_terminal() {
        let name = "a\u{7f}b\u{9b}31m\u{85}c\u{202e}d\u{1b}[31m\né";
        let line = serde_json::to_vec(&serde_json::json!({ "comm": name })).unwrap();
        assert!(line.contains(&0x7f), "serde_json leaves DEL raw");
        let mut out = Vec::new();
        json_for_terminal(&line, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"comm":"a\u007fb\u009b31m\u0085c\u202ed\u001b[31m\né"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["comm"], name, "the same JSON");
        let mut plain = Vec::new();
        json_for_terminal(br#"{"comm":"caf\u00e9 server"}"#, &mut plain);
        assert_eq!(plain, br#"{"comm":"caf\u00e9 server"}"#);
    }

    #[test]
    fn layout_keeps_its_own_newlines() {
        let mut text = "line one \u{1b}]0;title\u{7}\n  two\n".to_owned();
        escape_layout(&mut text);
        assert_eq!(text, "line one \\x1b]0;title\\x07\n  two\n");
        let mut plain = "a\nb\n".to_owned();
        escape_layout(&mut plain);
        assert_eq!(plain, "a\nb\n");
    }
}
