//! The kernel's own statistics of the BPF programs on a workload's path
//! (`BPF_ENABLE_STATS`): how often each ran and for how long. Unlike CPU
//! time, the count is exact and the time per run is the programs' alone, so
//! two hooks compare even where the machine's neighbours swamp the CPU
//! time (an emulated guest). On only while a tracer arm runs, since they
//! add two clock reads to every program run.

use std::{collections::BTreeMap, os::fd::OwnedFd, time::Duration};

use anyhow::{Context as _, Result};
use aya::{programs::loaded_programs, sys};

/// Keeps the statistics on while held.
pub struct On(#[allow(dead_code)] OwnedFd);

pub fn on() -> Result<On> {
    sys::enable_stats(sys::Stats::RunTime)
        .map(On)
        .context("BPF_ENABLE_STATS (the kernel's BPF statistics, 5.8 and later)")
}

/// Runs and run time per program name, summed over the loaded programs
/// that have one of `names` (the kernel keeps 15 bytes of a name).
#[derive(Clone, Default)]
pub struct Stats(BTreeMap<String, (u64, Duration)>);

impl Stats {
    pub fn now(names: &[&str]) -> Self {
        let mut by_name = BTreeMap::new();
        for info in loaded_programs().flatten() {
            let Some(name) = info.name_as_str().filter(|n| names.contains(n)) else {
                continue;
            };
            let entry = by_name
                .entry(name.to_owned())
                .or_insert((0, Duration::ZERO));
            entry.0 += info.run_count();
            entry.1 += info.run_time();
        }
        Self(by_name)
    }

    /// What ran between `before` and this.
    pub fn since(&self, before: &Stats) -> Stats {
        Stats(
            self.0
                .iter()
                .map(|(name, &(runs, time))| {
                    let (r0, t0) = before.0.get(name).copied().unwrap_or_default();
                    (name.clone(), (runs - r0, time.saturating_sub(t0)))
                })
                .collect(),
        )
    }

    /// Adds what `other` counted.
    pub fn add(&mut self, other: &Stats) {
        for (name, &(runs, time)) in &other.0 {
            let entry = self.0.entry(name.clone()).or_insert((0, Duration::ZERO));
            entry.0 += runs;
            entry.1 += time;
        }
    }

    /// "mm_page_alloc 262144 runs, 61 ns a run" per program, `per` workload
    /// runs making up the figures.
    pub fn describe(&self, per: u64) -> String {
        let shown: Vec<String> = self
            .0
            .iter()
            .map(|(name, &(runs, time))| {
                let each = (time.as_nanos() as u64).checked_div(runs).unwrap_or(0);
                format!(
                    "{name} {} runs a workload run, {each} ns a run",
                    runs / per.max(1)
                )
            })
            .collect();
        if shown.is_empty() {
            "no program on the path ran".to_owned()
        } else {
            shown.join("; ")
        }
    }
}
