//! What a container used and what the kernel counted in it, from its
//! cgroup (v1 or v2).

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _, Result};

/// A container's memory peak and CPU time, from its cgroup (v1 or v2).
pub struct Usage {
    pub peak_bytes: u64,
    pub cpu_ns: u64,
}

impl Usage {
    pub fn of(cgroup: &str) -> Result<Self> {
        let cgroup = cgroup.trim_start_matches('/');
        let read =
            |path: PathBuf| -> Option<u64> { fs::read_to_string(path).ok()?.trim().parse().ok() };
        let v1 = Path::new("/sys/fs/cgroup/memory").join(cgroup);
        if v1.is_dir() {
            return Ok(Self {
                peak_bytes: read(v1.join("memory.max_usage_in_bytes"))
                    .context("memory.max_usage_in_bytes")?,
                cpu_ns: read(
                    Path::new("/sys/fs/cgroup/cpuacct")
                        .join(cgroup)
                        .join("cpuacct.usage"),
                )
                .context("cpuacct.usage")?,
            });
        }
        let v2 = Path::new("/sys/fs/cgroup").join(cgroup);
        let cpu_usec = fs::read_to_string(v2.join("cpu.stat"))?
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .context("cpu.stat usage_usec")?;
        Ok(Self {
            peak_bytes: read(v2.join("memory.peak")).context("memory.peak")?,
            cpu_ns: cpu_usec * 1000,
        })
    }
}

/// The kernel's own count of OOM kills in a container's memory cgroup.
pub fn oom_kills(cgroup: &str) -> Result<u64> {
    let cgroup = cgroup.trim_start_matches('/');
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = ["memory/", ""]
            .iter()
            .flat_map(|h| {
                ["memory.oom_control", "memory.events"]
                    .map(|f| Path::new("/sys/fs/cgroup").join(h).join(cgroup).join(f))
            })
            .find_map(|p| fs::read_to_string(p).ok());
        if let Some(text) = text {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
                .context("no oom_kill counter");
        }
        ensure!(Instant::now() < deadline, "no memory cgroup for {cgroup}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
