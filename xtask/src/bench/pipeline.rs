//! The pipeline arm of `cargo xtask bench`: records a second through
//! tracer's own decode, explain and output, without the kernel. Signal
//! records made in memory go through the code a storm runs through
//! (`tracer::pipeline`, fed by the `pipeline_throughput` example): text to
//! the console (here /dev/null) and JSON lines to a file, as `tracer watch
//! -o FILE` writes them. Twice: with every signal written whole
//! (`--signal-flood 0`, the worst case) and with floods summed up (the
//! default), where most records are explained and counted, not written.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The name of the pipeline arm in the report (and for the filter).
pub const PIPELINE: &str = "pipeline";
/// Records per run: a few seconds at the slowest.
const RECORDS: u64 = 1_000_000;

pub fn pipeline(example: &Path, rounds: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tracer-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("\n== {PIPELINE}: {RECORDS} signal records through decode, explain and output (text to /dev/null, JSON lines to a file), {rounds} rounds ==");
    println!(
        "{:<36} {:>14} {:>14} {:>12}",
        "", "records/s", "per CPU-s", "ns CPU/rec"
    );
    for (name, flood) in [
        ("every signal written whole", "0"),
        ("floods summed up (default)", "10"),
    ] {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let file = dir.join("events.jsonl");
            let out = Command::new(example)
                .args([&RECORDS.to_string(), file.to_str().unwrap(), flood])
                .stdout(Stdio::null())
                .output()
                .with_context(|| format!("running {}", example.display()))?;
            let _ = std::fs::remove_file(&file);
            if !out.status.success() {
                bail!(
                    "{} failed: {}",
                    example.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            runs.push(parse(&String::from_utf8_lossy(&out.stderr))?);
        }
        // The fastest run: the machine's neighbours only ever add time.
        let (wall, cpu) = runs
            .iter()
            .copied()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or_default();
        println!(
            "{name:<36} {:>14.0} {:>14.0} {:>12.0}",
            RECORDS as f64 / wall,
            RECORDS as f64 / cpu,
            cpu * 1e9 / RECORDS as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// (wall s, CPU s) from the example's line on stderr:
/// "pipeline: N signal records in W s (C s CPU): ...".
fn parse(stderr: &str) -> Result<(f64, f64)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pipeline: "))
        .with_context(|| format!("no result line in: {stderr}"))?;
    let number_before = |unit: &str| -> Result<f64> {
        let end = line
            .find(unit)
            .with_context(|| format!("no `{unit}` in {line}"))?;
        let start = line[..end].rfind(['(', ' ']).map_or(0, |i| i + 1);
        line[start..end]
            .parse()
            .with_context(|| format!("reading {line}"))
    };
    Ok((number_before(" s (")?, number_before(" s CPU")?))
}
