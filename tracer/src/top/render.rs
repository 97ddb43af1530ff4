//! The screen of `tracer top` as plain lines, each at most `width`
//! characters: the terminal (or a pipe, in batch mode) gets exactly these.

use std::{borrow::Cow, fmt::Write as _};

use super::view::{SortKey, View};
use crate::output::escape::escape;

/// Share of the interval, as top prints CPU: 100% is one task blocked the
/// whole time (several threads can make more).
fn percent(ns: u64, interval_s: f64) -> f64 {
    ns as f64 / 1e9 / interval_s * 100.0
}

/// Bytes per second, short: "0", "512K", "1.0M", "12M".
fn rate(bytes: u64, interval_s: f64) -> String {
    let per_s = bytes as f64 / interval_s;
    if per_s < 1.0 {
        "0".into()
    } else if per_s < 1024.0 * 1024.0 {
        format!("{:.0}K", (per_s / 1024.0).max(1.0))
    } else if per_s < 10.0 * 1024.0 * 1024.0 {
        format!("{:.1}M", per_s / 1024.0 / 1024.0)
    } else {
        format!("{:.0}M", per_s / 1024.0 / 1024.0)
    }
}

/// Cuts or pads nothing: cuts only, at a character boundary.
fn fit(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// Renders the frame into `lines` (cleared first): at most `height` lines
/// of at most `width` characters.
pub fn frame(
    view: &View,
    sort: SortKey,
    clock: &str,
    notes: &[String],
    width: usize,
    height: usize,
    lines: &mut Vec<String>,
) {
    lines.clear();
    let mut line = String::new();
    let _ = write!(line, "tracer top {clock}  io pressure ");
    match &view.node_pressure {
        Some(p) => {
            let _ = write!(line, "some {:.1}%", p.some.avg10);
            if let Some(full) = &p.full {
                let _ = write!(line, " full {:.1}%", full.avg10);
            }
            line.push_str(" (10s)");
        }
        None => line.push_str("n/a"),
    }
    let _ = write!(line, "  sort:{}", sort.name());
    lines.push(line);
    lines.push("keys: i iowait  b blocked  r read  w write  p pid  q quit".into());
    for note in notes {
        lines.push(note.clone());
    }

    let iv = view.interval_s;
    lines.push(format!(
        "{:<10} {:>6} {:>6} {:>7} {:>7} {:>9} {:>9}",
        "DEVICE", "r/s", "w/s", "rB/s", "wB/s", "await ms", "p99 ms"
    ));
    for d in view.devices.iter().take(3) {
        lines.push(format!(
            "{:<10} {:>6.0} {:>6.0} {:>7} {:>7} {:>9.1} {:>9.1}",
            fit(&d.name, 10),
            d.read_ios as f64 / iv,
            d.write_ios as f64 / iv,
            rate(d.read_bytes, iv),
            rate(d.write_bytes, iv),
            d.await_ms,
            d.p99_ms
        ));
    }

    lines.push(format!(
        "{:<32} {:>7} {:>7} {:>7} {:>7} {:>4} {:>6}",
        "POD", "IOWAIT", "BLOCKED", "READ/s", "WRITE/s", "PROC", "PSI"
    ));
    let pods_shown = view.pods.len().min(5);
    for p in &view.pods[..pods_shown] {
        let psi = p
            .pressure_some
            .map(|v| format!("{v:.1}%"))
            .unwrap_or_else(|| "-".into());
        lines.push(format!(
            "{:<32} {:>6.0}% {:>6.0}% {:>7} {:>7} {:>4} {:>6}",
            fit(&p.pod, 32),
            percent(p.iowait_ns, iv),
            percent(p.blocked_ns, iv),
            rate(p.read_bytes, iv),
            rate(p.write_bytes, iv),
            p.processes,
            psi
        ));
    }

    lines.push(format!(
        "{:>7} {:<15} {:>6} {:>6} {:>6} {:>6} {:<8} {}",
        "PID", "COMM", "IOWAIT", "BLOCK", "READ/s", "WRIT/s", "DEVICE", "POD"
    ));
    let room = height.saturating_sub(lines.len());
    for p in view.processes.iter().take(room) {
        lines.push(format!(
            "{:>7} {:<15} {:>5.0}% {:>5.0}% {:>6} {:>6} {:<8} {}",
            p.pid,
            fit(&p.comm, 15),
            percent(p.iowait_ns, iv),
            percent(p.blocked_ns, iv),
            rate(p.read_bytes, iv),
            rate(p.write_bytes, iv),
            fit(p.device.as_deref().unwrap_or("-"), 8),
            p.pod
        ));
    }
    lines.truncate(height);
    for line in lines.iter_mut() {
        // Comms and pod names are anyone's: nothing in them may act on the
        // terminal (each line is one row, so a newline is escaped too).
        if let Cow::Owned(escaped) = escape(line) {
            *line = escaped;
        }
        if line.chars().count() > width {
            *line = fit(line, width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::view::{DeviceRow, PodRow, ProcessRow};

    #[test]
    fn a_frame_fits_80_by_24() {
        let view = View {
            interval_s: 1.0,
            node_pressure: crate::iowait::psi::parse(
                "some avg10=41.20 avg60=10.00 avg300=2.00 total=1\nfull avg10=40.00 avg60=9.00 avg300=1.00 total=1\n",
            ),
            pods: (0..9)
                .map(|i| PodRow {
                    pod: format!("default/a-very-long-pod-name-that-goes-on-{i}"),
                    iowait_ns: 980_000_000,
                    blocked_ns: 990_000_000,
                    write_bytes: 1 << 20,
                    processes: 1,
                    pressure_some: Some(97.5),
                    ..PodRow::default()
                })
                .collect(),
            processes: (0..40)
                .map(|i| ProcessRow {
                    pid: 100 + i,
                    comm: "kworker/u4:2-events_unbound".into(),
                    iowait_ns: 1,
                    blocked_ns: 1,
                    read_bytes: 0,
                    write_bytes: 300 << 20,
                    device: Some("nvme0n1p2".into()),
                    pod: "default/a-very-long-pod-name-that-goes-on".into(),
                })
                .collect(),
            devices: vec![DeviceRow {
                name: "loop3".into(),
                read_ios: 0,
                write_ios: 4,
                read_bytes: 0,
                write_bytes: 1 << 20,
                await_ms: 250.0,
                p99_ms: 262.1,
            }],
        };
        let mut lines = Vec::new();
        frame(&view, SortKey::IoWait, "15:30:01", &[], 80, 24, &mut lines);
        assert_eq!(lines.len(), 24);
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        assert!(lines[0].contains("some 41.2%"), "{}", lines[0]);
        assert!(lines.iter().any(|l| l.starts_with("loop3")));
        let pod_header = lines.iter().position(|l| l.starts_with("POD")).unwrap();
        assert!(
            lines[pod_header + 1].contains("98%"),
            "{}",
            lines[pod_header + 1]
        );
    }

    /// A process named to forge a line: the row shows the escapes, on one row.
    #[test]
    fn forged_comm_stays_on_its_row() {
        let view = View {
            interval_s: 1.0,
            node_pressure: None,
            pods: vec![PodRow {
                pod: "default/\u{1b}[2Jweb".into(),
                ..PodRow::default()
            }],
            processes: vec![ProcessRow {
                pid: 42,
                comm: "\u{1b}[31mS\nFORGED:".into(),
                iowait_ns: 1,
                blocked_ns: 1,
                read_bytes: 0,
                write_bytes: 0,
                device: None,
                pod: "default/\u{1b}[2Jweb".into(),
            }],
            devices: Vec::new(),
        };
        let mut lines = Vec::new();
        frame(&view, SortKey::IoWait, "15:30:01", &[], 200, 24, &mut lines);
        for line in &lines {
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
        let row = lines
            .iter()
            .find(|l| l.trim_start().starts_with("42 "))
            .unwrap();
        assert!(row.contains("\\x1b[31mS\\nFORGED:"), "{row}");
        assert!(row.ends_with("default/\\x1b[2Jweb"), "{row}");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(0, 1.0), "0");
        assert_eq!(rate(512 << 10, 1.0), "512K");
        assert_eq!(rate(1 << 20, 1.0), "1.0M");
        assert_eq!(rate(300 << 20, 2.0), "150M");
    }
}
