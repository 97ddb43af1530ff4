//! `tracer top`'s measurements: every interval, the kernel's running totals
//! (`IO_TASKS`, `IO_DEVICES`, `IO_CGROUPS`) are read and turned into what
//! happened since the previous read, per process, device and owning cgroup.
//! The maps and the tables of previous values are reused between reads.

use std::{collections::HashMap, fs, path::PathBuf};

use tracer_common::{
    CgroupIoKey, CgroupIoStats, DeviceIoStats, TaskIoTotals, IO_LATENCY_BUCKETS, IO_READ, IO_WRITE,
};

use super::{procstat, IoMaps};

/// One process over the interval.
#[derive(Debug, Clone, Default)]
pub struct ProcessIo {
    pub pid: u32,
    pub iowait_ns: u64,
    pub blocked_ns: u64,
    /// The device its threads last submitted to (dev_t), or 0.
    pub dev: u32,
    /// From /proc/PID/io: bytes it made the storage read and write
    /// (writes are charged when the pages are dirtied, i.e. to the dirtier).
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// One device over the interval.
#[derive(Debug, Clone, Default)]
pub struct DeviceIo {
    pub dev: u32,
    pub ios: [u64; 2],
    pub bytes: [u64; 2],
    pub latency_ns: [u64; 2],
    pub latency_buckets: [u64; IO_LATENCY_BUCKETS],
}

impl DeviceIo {
    /// Mean issue-to-completion time, ms.
    pub fn await_ms(&self) -> f64 {
        let ios = self.ios[IO_READ] + self.ios[IO_WRITE];
        if ios == 0 {
            return 0.0;
        }
        (self.latency_ns[IO_READ] + self.latency_ns[IO_WRITE]) as f64 / ios as f64 / 1e6
    }

    /// Upper bound of the histogram bucket holding the 99th percentile, ms.
    pub fn p99_ms(&self) -> f64 {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let mut seen = 0;
        for (bucket, count) in self.latency_buckets.iter().enumerate() {
            seen += count;
            if seen * 100 >= total * 99 {
                return (1u64 << bucket) as f64 / 1000.0;
            }
        }
        (1u64 << (IO_LATENCY_BUCKETS - 1)) as f64 / 1000.0
    }
}

/// Bytes a cgroup owned at the block layer on one device (its bios' blkcg:
/// on cgroup v2 writeback is charged to the cgroup that dirtied the pages).
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupIo {
    pub cgroup_id: u64,
    pub dev: u32,
    pub bytes: [u64; 2],
}

#[derive(Debug, Default)]
pub struct Sample {
    pub processes: Vec<ProcessIo>,
    pub devices: Vec<DeviceIo>,
    pub cgroups: Vec<CgroupIo>,
}

pub struct Sampler {
    procfs: PathBuf,
    tasks: HashMap<u32, TaskIoTotals>,
    devices: HashMap<u32, DeviceIoStats>,
    cgroups: HashMap<CgroupIoKey, CgroupIoStats>,
    proc_io: HashMap<u32, (u64, u64)>,
    /// Reused per read: per-process sums under construction.
    by_pid: HashMap<u32, ProcessIo>,
    first: bool,
}

impl Sampler {
    pub fn new(procfs: impl Into<PathBuf>) -> Self {
        Self {
            procfs: procfs.into(),
            tasks: HashMap::new(),
            devices: HashMap::new(),
            cgroups: HashMap::new(),
            proc_io: HashMap::new(),
            by_pid: HashMap::new(),
            first: true,
        }
    }

    /// What happened since the previous call (the first call only sets the
    /// baseline and returns an empty sample).
    pub fn sample(&mut self, maps: &IoMaps, out: &mut Sample) {
        out.processes.clear();
        out.devices.clear();
        out.cgroups.clear();
        self.by_pid.clear();
        let first = std::mem::replace(&mut self.first, false);

        for (tid, now) in maps.tasks.iter().flatten() {
            let before = self.tasks.insert(tid, now).unwrap_or_default();
            // A recycled thread id starts again from zero.
            let fresh = before.tgid != now.tgid || now.blocked_ns < before.blocked_ns;
            let base = if fresh {
                TaskIoTotals::default()
            } else {
                before
            };
            let process = self.by_pid.entry(now.tgid).or_insert_with(|| ProcessIo {
                pid: now.tgid,
                ..ProcessIo::default()
            });
            if !first {
                process.iowait_ns += now.iowait_ns.saturating_sub(base.iowait_ns);
                process.blocked_ns += now.blocked_ns.saturating_sub(base.blocked_ns);
            }
            if now.dev != 0 {
                process.dev = now.dev;
            }
        }
        for process in self.by_pid.values_mut() {
            let path = self.procfs.join(format!("{}/io", process.pid));
            let Some(now) = fs::read_to_string(path)
                .ok()
                .and_then(|text| procstat::io_bytes(&text))
            else {
                continue;
            };
            if let Some(before) = self.proc_io.insert(process.pid, now) {
                process.read_bytes = now.0.saturating_sub(before.0);
                process.write_bytes = now.1.saturating_sub(before.1);
            }
        }
        // Processes gone from the kernel's map are forgotten here too.
        let live = &self.by_pid;
        self.proc_io.retain(|pid, _| live.contains_key(pid));
        if self.tasks.len() > 4 * maps_len_hint(live.len()) {
            self.tasks.retain(|_, t| live.contains_key(&t.tgid));
        }
        if !first {
            out.processes.extend(self.by_pid.values().cloned());
        }

        for (dev, per_cpu) in maps.devices.iter().flatten() {
            let mut now = DeviceIoStats::default();
            for cpu in per_cpu.iter() {
                for d in 0..2 {
                    now.ios[d] += cpu.ios[d];
                    now.bytes[d] += cpu.bytes[d];
                    now.latency_ns[d] += cpu.latency_ns[d];
                }
                for (sum, b) in now.latency_buckets.iter_mut().zip(cpu.latency_buckets) {
                    *sum += b;
                }
            }
            let before = self.devices.insert(dev, now).unwrap_or_default();
            if first {
                continue;
            }
            let mut delta = DeviceIo {
                dev,
                ..DeviceIo::default()
            };
            for d in 0..2 {
                delta.ios[d] = now.ios[d].saturating_sub(before.ios[d]);
                delta.bytes[d] = now.bytes[d].saturating_sub(before.bytes[d]);
                delta.latency_ns[d] = now.latency_ns[d].saturating_sub(before.latency_ns[d]);
            }
            for (i, slot) in delta.latency_buckets.iter_mut().enumerate() {
                *slot = now.latency_buckets[i].saturating_sub(before.latency_buckets[i]);
            }
            out.devices.push(delta);
        }

        for (key, per_cpu) in maps.cgroups.iter().flatten() {
            let mut now = CgroupIoStats::default();
            for cpu in per_cpu.iter() {
                for d in 0..2 {
                    now.ios[d] += cpu.ios[d];
                    now.bytes[d] += cpu.bytes[d];
                }
            }
            let before = self.cgroups.insert(key, now).unwrap_or_default();
            if first {
                continue;
            }
            let bytes = [
                now.bytes[0].saturating_sub(before.bytes[0]),
                now.bytes[1].saturating_sub(before.bytes[1]),
            ];
            if bytes != [0, 0] {
                out.cgroups.push(CgroupIo {
                    cgroup_id: key.cgroup_id,
                    dev: key.dev,
                    bytes,
                });
            }
        }
    }
}

/// How many thread entries per live process are kept before pruning.
fn maps_len_hint(processes: usize) -> usize {
    processes.max(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_latency_summaries() {
        let mut d = DeviceIo {
            ios: [1, 3],
            latency_ns: [1_000_000, 3_000_000],
            ..DeviceIo::default()
        };
        assert_eq!(d.await_ms(), 1.0);
        // 99 requests under 1 us, one in [2^17, 2^18) us: p99 is the low bucket.
        d.latency_buckets[0] = 99;
        d.latency_buckets[18] = 1;
        assert_eq!(d.p99_ms(), 0.001);
        d.latency_buckets[18] = 2;
        assert_eq!(d.p99_ms(), 262.144);
    }
}
