//! Pressure stall information for IO: the node's (/proc/pressure/io) and a
//! cgroup's (`io.pressure`, cgroup v2). The kernel's own measure of how much
//! wall time tasks lost waiting for IO: "some" (at least one task stalled)
//! and "full" (all non-idle tasks stalled at once).

use std::{fs, path::Path};

/// One line of a pressure file: the share of time stalled over the last
/// 10, 60 and 300 seconds (percent), and the total stalled time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PressureLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: PressureLine,
    /// Absent on kernels that report only "some" for a resource.
    pub full: Option<PressureLine>,
}

/// Parses the content of a pressure file; `None` when it has no "some" line.
pub fn parse(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let which = fields.next();
        let mut parsed = PressureLine::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => parsed.avg10 = value.parse().ok()?,
                "avg60" => parsed.avg60 = value.parse().ok()?,
                "avg300" => parsed.avg300 = value.parse().ok()?,
                "total" => parsed.total_us = value.parse().ok()?,
                _ => {}
            }
        }
        match which {
            Some("some") => some = Some(parsed),
            Some("full") => full = Some(parsed),
            _ => {}
        }
    }
    Some(Pressure { some: some?, full })
}

/// Reads a pressure file (`None` without PSI: CONFIG_PSI off or psi=0).
pub fn read(path: &Path) -> Option<Pressure> {
    parse(&fs::read_to_string(path).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_node_io_pressure() {
        let text = "some avg10=12.34 avg60=3.10 avg300=0.71 total=98765432\nfull avg10=10.01 avg60=2.50 avg300=0.60 total=87654321\n";
        let p = parse(text).unwrap();
        assert_eq!(p.some.avg10, 12.34);
        assert_eq!(p.some.avg300, 0.71);
        assert_eq!(p.some.total_us, 98_765_432);
        assert_eq!(p.full.unwrap().avg60, 2.50);
    }

    #[test]
    fn parses_an_idle_cgroup_and_rejects_garbage() {
        let idle = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse(idle).unwrap().some.total_us, 0);
        assert!(parse("").is_none());
        assert!(parse("some avg10=x\n").is_none());
        // Only a "some" line (the cpu file of older kernels has that shape).
        let only_some = "some avg10=1.00 avg60=0.50 avg300=0.10 total=1234\n";
        assert!(parse(only_some).unwrap().full.is_none());
    }
}
