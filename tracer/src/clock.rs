//! Kernel timestamps are CLOCK_MONOTONIC nanoseconds; people want wall time.

use std::fmt;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use nix::time::{clock_gettime, ClockId};
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime - monotonic, in ns, measured once at start.
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let offset_ns = nanos(ClockId::CLOCK_REALTIME) - nanos(ClockId::CLOCK_MONOTONIC);
        Self { offset_ns }
    }

    pub fn now_mono_ns() -> u64 {
        nanos(ClockId::CLOCK_MONOTONIC) as u64
    }

    pub fn wall(&self, mono_ns: u64) -> DateTime<Utc> {
        let ns = mono_ns as i128 + self.offset_ns;
        DateTime::from_timestamp_nanos(ns.clamp(0, i64::MAX as i128) as i64)
    }

    /// RFC 3339 with nanoseconds, as in the JSON output.
    pub fn wall_rfc3339(&self, mono_ns: u64) -> String {
        self.wall_time(mono_ns).to_string()
    }

    /// The same, written where it goes (no string of its own).
    pub fn wall_time(&self, mono_ns: u64) -> WallTime {
        WallTime(self.wall(mono_ns))
    }
}

/// A wall-clock time as RFC 3339 with nanoseconds and `Z`
/// ("2024-05-01T12:00:00.123456789Z"), what chrono's
/// `to_rfc3339_opts(Nanos, true)` writes, but into the line being written
/// rather than a string of its own: every JSON line has one or more.
#[derive(Debug, Clone, Copy)]
pub struct WallTime(DateTime<Utc>);

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        )
    }
}

impl Serialize for WallTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // serde_json writes it straight into the line, escaped.
        serializer.collect_str(self)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn nanos(clock: ClockId) -> i128 {
    clock_gettime(clock)
        .map(|ts| ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_now_maps_to_wall_now() {
        let clock = Clock::new();
        let wall = clock.wall(Clock::now_mono_ns());
        let delta = (Utc::now() - wall).num_milliseconds().abs();
        assert!(delta < 1000, "off by {delta} ms");
        assert!(clock.wall_rfc3339(0).ends_with('Z'));
    }

    /// The same text as chrono's own RFC 3339, to the nanosecond.
    #[test]
    fn wall_time_is_chronos_rfc3339() {
        let clock = Clock::new();
        for mono_ns in [0, 1, 999_999_999, Clock::now_mono_ns(), 86_400_000_000_123] {
            let expected = clock
                .wall(mono_ns)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            assert_eq!(clock.wall_time(mono_ns).to_string(), expected);
            assert_eq!(
                serde_json::to_string(&clock.wall_time(mono_ns)).unwrap(),
                format!("\"{expected}\"")
            );
        }
    }
}
