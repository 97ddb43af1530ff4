//! Kernel timestamps are CLOCK_MONOTONIC nanoseconds; people want wall time.

use chrono::{DateTime, Utc};
use nix::time::{clock_gettime, ClockId};

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
        self.wall(mono_ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
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
}
