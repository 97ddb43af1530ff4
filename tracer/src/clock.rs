//! Kernel timestamps are CLOCK_MONOTONIC nanoseconds; people want wall time.

use std::fmt;

use chrono::{DateTime, Utc};
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
        let ns = mono_ns as i128 + self.offset_ns;
        WallTime(ns.clamp(0, i64::MAX as i128) as i64)
    }
}

/// A wall-clock time (ns since 1970) as RFC 3339 with nanoseconds and `Z`
/// ("2024-05-01T12:00:00.123456789Z"), the text of chrono's
/// `to_rfc3339_opts(Nanos, true)`, but made with integer arithmetic into
/// the line being written: a signal line has a time for the event and each
/// process in it, and through chrono and `fmt` they were a quarter of the
/// time a storm's record took.
#[derive(Debug, Clone, Copy)]
pub struct WallTime(i64);

/// "YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ"
const WALL_TIME_LEN: usize = 30;

impl WallTime {
    fn text<'b>(&self, buf: &'b mut [u8; WALL_TIME_LEN]) -> &'b str {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let of_day = secs.rem_euclid(86_400) as u64;
        let mut put = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        // Within i64 nanoseconds the year has four digits (1970..2262).
        put(0, 4, year as u64);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3600);
        put(14, 2, of_day / 60 % 60);
        put(17, 2, of_day % 60);
        put(20, 9, nanos);
        for (at, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (29, b'Z'),
        ] {
            buf[at] = c;
        }
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

/// (year, month, day) of the day `days` after 1970-01-01, in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text(&mut [0; WALL_TIME_LEN]))
    }
}

impl Serialize for WallTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text(&mut [0; WALL_TIME_LEN]))
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
        // Leap years, the turn of a century, a year's last nanosecond.
        let mut times = vec![0, 1, 999_999_999, Clock::now_mono_ns(), 86_400_000_000_123];
        for wall_ns in [
            951_782_400_000_000_000i128,
            4_107_542_399_999_999_999,
            1_709_164_800_000_000_007,
        ] {
            times.push((wall_ns - clock.offset_ns).max(0) as u64);
        }
        for mono_ns in times {
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
