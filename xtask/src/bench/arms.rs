//! The arms of a benchmark round: what is attached while the workload runs,
//! how long it took to attach, and what memory it holds.

use std::{
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{empty_program::EmptyPrograms, workloads::Workload};

pub enum Arm {
    /// The workload alone.
    Bare,
    /// `tracer watch` with these extra flags.
    Tracer(Vec<&'static str>),
    /// `tracer watch` of another build (`--baseline`), for before and after.
    Baseline(PathBuf),
    /// bpftrace running the workload's script.
    Bpftrace,
    /// An empty program on each of the workload's hooks.
    Limit,
}

impl Arm {
    pub fn all_for(workload: &Workload, baseline: Option<&Path>, bpftrace: bool) -> Vec<Arm> {
        let mut arms = vec![Arm::Bare, Arm::Tracer(Vec::new())];
        arms.extend(baseline.map(|path| Arm::Baseline(path.to_owned())));
        arms.extend(
            workload
                .family_off
                .iter()
                .chain(workload.fallbacks)
                .map(|flag| Arm::Tracer(vec![flag])),
        );
        if bpftrace {
            arms.push(Arm::Bpftrace);
        }
        arms.push(Arm::Limit);
        arms
    }

    /// A tracer arm whose hook falls back (`--skip-hook`): it is also
    /// compared with the plain tracer arm.
    pub fn is_fallback(&self) -> bool {
        matches!(self, Arm::Tracer(flags) if flags.iter().any(|f| f.starts_with("--skip-hook")))
    }

    pub fn label(&self) -> String {
        match self {
            Arm::Bare => "bare".into(),
            Arm::Tracer(flags) if flags.is_empty() => "tracer watch".into(),
            Arm::Tracer(flags) => format!("tracer watch {}", flags.join(" ")),
            Arm::Baseline(_) => "tracer watch, baseline build".into(),
            Arm::Bpftrace => "bpftrace, same job".into(),
            Arm::Limit => "limit: empty program".into(),
        }
    }

    pub fn is_tracer(&self) -> bool {
        matches!(self, Arm::Tracer(_) | Arm::Baseline(_))
    }
}

/// Resident memory of an attached process, from `/proc/PID/status`.
#[derive(Clone, Copy)]
pub struct Memory {
    /// `VmRSS` after the workload ran: the steady state.
    pub resident_kib: u64,
    /// `VmHWM`: the most it ever held, start-up included.
    pub peak_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
        };
        Some(Self {
            resident_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    pub fn median(samples: &[Memory]) -> Option<Memory> {
        let mut resident: Vec<u64> = samples.iter().map(|m| m.resident_kib).collect();
        let mut peak: Vec<u64> = samples.iter().map(|m| m.peak_kib).collect();
        (!samples.is_empty()).then(|| Memory {
            resident_kib: super::median(&mut resident),
            peak_kib: super::median(&mut peak),
        })
    }
}

/// An arm, attached.
pub struct Attached {
    /// From the start to the moment its hooks are all attached; `None` for
    /// the bare arm.
    pub startup: Option<Duration>,
    process: Option<Child>,
    _programs: Option<EmptyPrograms>,
}

/// What bpftrace prints once every probe is attached (BEGIN runs then).
const BPFTRACE_READY: &str = "tracer-bench: attached";

impl Attached {
    pub fn start(arm: &Arm, tracer: &Path, workload: &Workload) -> Result<Self> {
        let start = Instant::now();
        let (process, programs) = match arm {
            Arm::Bare => {
                return Ok(Self {
                    startup: None,
                    process: None,
                    _programs: None,
                })
            }
            Arm::Tracer(flags) => (Some(start_tracer(tracer, flags)?), None),
            Arm::Baseline(build) => (Some(start_tracer::<&str>(build, &[])?), None),
            Arm::Bpftrace => {
                let script = format!(
                    "BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} {}",
                    workload.bpftrace
                );
                let mut child = Command::new("bpftrace")
                    .args(["-e", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting bpftrace (setup installs it)")?;
                let stdout = child.stdout.take().context("bpftrace's stdout")?;
                let stderr = child.stderr.take().context("bpftrace's stderr")?;
                let errors = thread::spawn(move || {
                    let mut text = String::new();
                    let _ = BufReader::new(stderr).read_to_string(&mut text);
                    text
                });
                if let Err(err) = wait_for_line(stdout, BPFTRACE_READY, "bpftrace") {
                    let _ = child.kill();
                    let _ = child.wait();
                    let said = errors.join().unwrap_or_default();
                    bail!("{err}: {}", said.lines().next().unwrap_or("no message"));
                }
                (Some(child), None)
            }
            Arm::Limit => (None, Some(EmptyPrograms::attach(workload.hooks)?)),
        };
        Ok(Self {
            startup: Some(start.elapsed()),
            process,
            _programs: programs,
        })
    }

    pub fn memory(&self) -> Option<Memory> {
        Memory::of(self.process.as_ref()?.id())
    }

    /// Stops the attached process with SIGINT, as a user would, and checks
    /// that it exits cleanly; detaches empty programs.
    pub fn stop(self) -> Result<()> {
        match self.process {
            Some(child) => interrupt(child),
            None => Ok(()),
        }
    }
}

/// `tracer watch --format json` with `flags`, once its banner says it is
/// attached.
pub fn start_tracer<S: AsRef<std::ffi::OsStr>>(tracer: &Path, flags: &[S]) -> Result<Child> {
    let mut child = Command::new(tracer)
        .args(["watch", "--format", "json"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", tracer.display()))?;
    let stderr = child.stderr.take().context("tracer's stderr")?;
    wait_for_line(stderr, "following:", "tracer")?;
    Ok(child)
}

/// Stops an attached process with SIGINT, as a user would, and checks that
/// it exits cleanly.
pub fn interrupt(mut child: Child) -> Result<()> {
    // SAFETY: a signal to a child this process started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().context("waiting for the attached process")?;
    if !status.success() {
        bail!("the attached process exited with {status} on SIGINT");
    }
    Ok(())
}

/// Reads `stream` until a line contains `marker`, then keeps draining it in
/// the background so that the process never blocks on a full pipe.
fn wait_for_line(stream: impl Read + Send + 'static, marker: &str, what: &str) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader
            .read_line(&mut line)
            .with_context(|| format!("reading {what}'s output"))?
            == 0
        {
            bail!("{what} exited before attaching: {}", seen.trim());
        }
        if line.contains(marker) {
            break;
        }
        seen += &line;
    }
    thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok(())
}
