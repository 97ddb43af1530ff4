//! `cargo xtask vm-test`: the scenario suite inside qemu guests booted on
//! Debian's cloud kernels (5.10, 6.1, 6.12 and trixie-backports' newest),
//! with pure cgroup v2.
//!
//! The host builds everything (tracer, the scenario binary, the workload
//! helper) and packs it with the programs the scenarios run into an
//! initramfs; each guest runs the scenarios from its init and powers off.
//! Nothing needs a disk image, a network or root on the host.

mod bench;
mod cpio;
mod initramfs;
mod kernels;
mod modules;
mod qemu;
mod report;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use clap::ValueEnum;

use crate::{cmd, setup::BuildEnv};
use report::Tally;

pub use bench::{vm_bench, BenchOptions};

/// Scenarios whose test function's name starts with this exhaust the
/// machine's memory or need pure cgroup v2: the host suite skips them, the
/// guests run them alone, after the others.
pub const GUEST_ONLY: &str = "guest_only_";

/// Scenario modules the guests do not run: what they prove is userspace
/// (the exporters against a real Prometheus and an OTLP receiver in Python),
/// the same on every kernel, and the guests' image does not carry those
/// programs. The host runs them.
const HOST_ONLY_MODULES: &[&str] = &["export::"];

#[derive(Clone, Copy, ValueEnum)]
pub enum KernelChoice {
    #[value(name = "5.10")]
    V5_10,
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    /// trixie-backports' current line.
    Newest,
    All,
}

pub struct Options {
    pub kernel: KernelChoice,
    /// libtest's filter: scenarios whose name contains it.
    pub filter: Option<String>,
    /// Per guest.
    pub timeout: Duration,
}

/// Runs the suite on the chosen kernels; fails if anything did not pass.
pub fn vm_test(env: &BuildEnv, options: &Options) -> Result<()> {
    let start = Instant::now();
    let kernels = fetch_kernels(options.kernel)?;

    let work = crate::target_dir().join("vm");
    fs::create_dir_all(&work).with_context(|| format!("could not create {}", work.display()))?;
    println!("vm-test: building tracer and the scenario binary");
    let binaries = build(env)?;
    let expected = list_scenarios(&binaries.scenarios, options.filter.as_deref())?;
    let helper = work.join("helper");
    compile_helper(&helper)?;
    let runs = test_runs(&binaries.scenarios, &expected);
    let modules = kernel_modules(&kernels)?;
    let image = work.join("initramfs.cpio");
    let size = initramfs::build(
        &initramfs::Contents {
            tracer: &binaries.tracer,
            scenarios: &binaries.scenarios,
            helper: &helper,
            runs: &runs,
            extra: &[],
            modules: &modules,
        },
        &image,
    )?;
    println!(
        "vm-test: {} scenarios, initramfs {} ({} MiB)",
        expected.len(),
        image.display(),
        size >> 20
    );

    let mut failed_kernels = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for kernel in &kernels {
        let judgement = run_kernel(kernel, &image, &work, &expected, options.timeout)?;
        passed += judgement.passed;
        failed += judgement.failed;
        if !judgement.ok() {
            failed_kernels.push(kernel.name);
        }
    }
    let names: Vec<&str> = kernels.iter().map(|k| k.name).collect();
    println!(
        "vm-test: kernels {} in {}",
        names.join(", "),
        minutes(start.elapsed())
    );
    println!("vm-test: {passed} passed, {failed} failed");
    ensure!(
        failed_kernels.is_empty(),
        "vm-test failed on kernel {} (logs in {})",
        failed_kernels.join(", "),
        work.display()
    );
    Ok(())
}

/// The chosen kernels, fetched. Called first: a machine that cannot get them
/// fails before the build.
fn fetch_kernels(choice: KernelChoice) -> Result<Vec<kernels::Kernel>> {
    kernels::KERNELS
        .iter()
        .filter(|spec| match choice {
            KernelChoice::V5_10 => spec.name == "5.10",
            KernelChoice::V6_1 => spec.name == "6.1",
            KernelChoice::V6_12 => spec.name == "6.12",
            KernelChoice::Newest => spec.name == "newest",
            KernelChoice::All => true,
        })
        .map(kernels::fetch)
        .collect()
}

/// Each kernel's modules the scenarios need, dependencies first.
fn kernel_modules(kernels: &[kernels::Kernel]) -> Result<Vec<modules::KernelModules>> {
    kernels
        .iter()
        .map(|kernel| {
            let order = modules::load_order(&kernel.modules, modules::NEEDED)?;
            let names: Vec<&str> = order.iter().map(|m| m.name.as_str()).collect();
            println!(
                "vm-test: {} modules for {}: {}",
                names.len(),
                kernel.release,
                names.join(" ")
            );
            Ok(modules::KernelModules {
                release: kernel.release.clone(),
                order,
            })
        })
        .collect()
}

/// Boots one kernel, prints a line per scenario as it finishes, and on
/// failure the scenario output and the console's tail.
fn run_kernel(
    kernel: &kernels::Kernel,
    image: &Path,
    work: &Path,
    expected: &[String],
    timeout: Duration,
) -> Result<report::Judgement> {
    println!(
        "==> vm-test {}: booting {} {} (uname -r {})",
        kernel.name, kernel.package, kernel.version, kernel.release
    );
    let mut tally = Tally::default();
    let logs = work.join(kernel.name);
    let run = qemu::boot(
        &qemu::Guest {
            vmlinuz: &kernel.vmlinuz,
            initramfs: image,
            logs: &logs,
            timeout,
        },
        |line| {
            if let Some((name, verdict)) = tally.take(line) {
                println!("    {:<8}{name}", verdict.word());
            }
        },
    )?;
    let judgement = report::judge(&tally, expected, &run.end, timeout);
    for name in &judgement.not_run {
        println!("    {:<8}{name}", "NOT RUN");
    }
    for problem in &judgement.problems {
        println!("    {}: {problem}", kernel.name);
    }
    if !judgement.ok() {
        print_logs(&run);
    }
    println!(
        "{}: {} passed, {} failed in {} ({})",
        kernel.name,
        judgement.passed,
        judgement.failed,
        minutes(run.elapsed),
        if judgement.ok() { "ok" } else { "FAILED" }
    );
    Ok(judgement)
}

fn print_logs(run: &qemu::Run) {
    let stderr = fs::read_to_string(&run.qemu_stderr).unwrap_or_default();
    if !stderr.trim().is_empty() {
        println!("---- qemu's stderr ({})", run.qemu_stderr.display());
        println!("{}", stderr.trim_end());
    }
    print_tail("scenario output", &run.output, 400);
    print_tail("guest console", &run.console, 80);
    println!("---- end of the guest's logs");
}

fn print_tail(what: &str, path: &Path, lines: usize) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let shown = &all[all.len().saturating_sub(lines)..];
    if shown.len() == all.len() {
        println!("---- {what} ({})", path.display());
    } else {
        println!(
            "---- {what}, last {} of {} lines (all in {})",
            shown.len(),
            all.len(),
            path.display()
        );
    }
    for line in shown {
        println!("{line}");
    }
}

struct Binaries {
    tracer: PathBuf,
    scenarios: PathBuf,
}

/// Builds tracer and the scenario binary as `cargo test` does, so that the
/// tracer path compiled into the scenarios (`CARGO_BIN_EXE_tracer`) is the
/// one built, and reads both paths from cargo's JSON messages.
///
/// In release mode: under TCG a debug tracer takes 5 to 15 s to start on
/// 6.12 (2 s in release), too close to the scenarios' 20 s waits. The host
/// suite tests the debug build.
fn build(env: &BuildEnv) -> Result<Binaries> {
    let mut cargo = crate::cargo(
        env,
        &[
            "test",
            "--release",
            "--package",
            "tracer",
            "--test",
            "scenarios",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ],
    );
    cargo.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let out = cargo
        .output()
        .with_context(|| format!("could not start `{}`", cmd::line(&cargo)))?;
    ensure!(
        out.status.success(),
        "`{}` failed ({})",
        cmd::line(&cargo),
        out.status
    );
    let (mut tracer, mut scenarios) = (None, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let kinds = message["target"]["kind"].as_array();
        let is = |kind: &str| kinds.is_some_and(|k| k.iter().any(|v| v == kind));
        match message["target"]["name"].as_str() {
            Some("tracer") if is("bin") => tracer = Some(PathBuf::from(executable)),
            Some("scenarios") if is("test") => scenarios = Some(PathBuf::from(executable)),
            _ => {}
        }
    }
    let line = cmd::line(&cargo);
    Ok(Binaries {
        tracer: tracer.with_context(|| format!("`{line}` reported no tracer binary"))?,
        scenarios: scenarios.with_context(|| format!("`{line}` reported no scenario binary"))?,
    })
}

/// The scenarios the guest must report, from the binary itself on the host.
fn list_scenarios(scenarios: &Path, filter: Option<&str>) -> Result<Vec<String>> {
    let mut list = Command::new(scenarios);
    list.args(["--list", "--format=terse"]).args(filter);
    let out = list
        .output()
        .with_context(|| format!("could not start `{}`", cmd::line(&list)))?;
    ensure!(
        out.status.success(),
        "`{}` failed ({})",
        cmd::line(&list),
        out.status
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .filter(|name| !HOST_ONLY_MODULES.iter().any(|m| name.starts_with(m)))
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        match filter {
            Some(filter) => bail!("no scenario matches `{filter}` (`{}`)", cmd::line(&list)),
            None => bail!("`{}` lists no scenario", cmd::line(&list)),
        }
    }
    Ok(names)
}

/// The scenario binary's runs in the guest: the ordinary scenarios two at a
/// time (one per guest CPU, as on the host), then the guest-only ones one at
/// a time, since they exhaust the machine. Names are passed exactly, so that
/// each run gets its own share of what the filter chose.
fn test_runs(scenarios: &Path, expected: &[String]) -> Vec<Vec<String>> {
    let guest_only = |name: &String| {
        name.rsplit("::")
            .next()
            .is_some_and(|f| f.starts_with(GUEST_ONLY))
    };
    let (alone, together): (Vec<&String>, Vec<&String>) =
        expected.iter().partition(|n| guest_only(n));
    [("--test-threads=2", together), ("--test-threads=1", alone)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(threads, names)| {
            let mut args = vec![
                scenarios.to_string_lossy().into_owned(),
                threads.to_owned(),
                "--color=never".to_owned(),
                "--exact".to_owned(),
            ];
            args.extend(names.into_iter().cloned());
            args
        })
        .collect()
}

/// The workload helper, built on the host: the guest has no compiler.
fn compile_helper(out: &Path) -> Result<()> {
    let source = crate::workspace_root().join("tests/scenarios/helper.c");
    cmd::run(
        Command::new("cc")
            .args(["-O0", "-pthread", "-o"])
            .arg(out)
            .arg(&source),
    )
}

fn minutes(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}
