//! `cargo xtask bench --kernel`: the benchmark inside a qemu guest, where
//! kprobes are allowed, so that the page-allocation hooks can be compared
//! side by side: `kprobe warn_alloc` (tracer's choice there) and the raw
//! tracepoint `mm_page_alloc` (its fallback, `--skip-hook`).
//!
//! The guest runs this very program (`cargo xtask bench --tracer ...`), built
//! on the host, with the release tracer, and prints the report on its output
//! port. Emulated (TCG), every number is several times the host's: only the
//! arms' ratios mean anything, and a round takes long, hence few rounds.

use std::{fs, path::Path, time::Instant};

use anyhow::{ensure, Context as _, Result};

use super::{initramfs, qemu, KernelChoice};
use crate::setup::BuildEnv;

pub struct BenchOptions {
    pub kernel: KernelChoice,
    pub rounds: usize,
    /// The workloads to run: `bench`'s filter.
    pub filter: String,
    /// Per guest.
    pub timeout: std::time::Duration,
}

pub fn vm_bench(env: &BuildEnv, options: &BenchOptions) -> Result<()> {
    let kernels = super::fetch_kernels(options.kernel)?;
    let work = crate::target_dir().join("vm-bench");
    fs::create_dir_all(&work).with_context(|| format!("could not create {}", work.display()))?;
    println!("bench: building tracer in release mode");
    let binaries = super::build(env)?;
    let helper = work.join("helper");
    super::compile_helper(&helper)?;
    let xtask = std::env::current_exe().context("could not find this program's path")?;
    let command = vec![
        xtask.to_string_lossy().into_owned(),
        "bench".to_owned(),
        "--tracer".to_owned(),
        binaries.tracer.to_string_lossy().into_owned(),
        "--no-bpftrace".to_owned(),
        "--bpf-stats".to_owned(),
        "--rounds".to_owned(),
        options.rounds.to_string(),
        options.filter.clone(),
    ];
    let image = work.join("initramfs.cpio");
    initramfs::build(
        &initramfs::Contents {
            tracer: &binaries.tracer,
            scenarios: &binaries.scenarios,
            helper: &helper,
            runs: &[command],
            extra: &[&xtask],
            modules: &[],
        },
        &image,
    )?;
    for kernel in &kernels {
        println!(
            "==> bench {}: booting {} {} (uname -r {}), {} rounds of {} under emulation",
            kernel.name,
            kernel.package,
            kernel.version,
            kernel.release,
            options.rounds,
            options.filter
        );
        let start = Instant::now();
        let mut status = None;
        let run = qemu::boot(
            &qemu::Guest {
                vmlinuz: &kernel.vmlinuz,
                initramfs: &image,
                logs: &work.join(kernel.name),
                timeout: options.timeout,
            },
            |line| match line.strip_prefix(initramfs::EXIT_MARKER) {
                Some(code) => status = Some(code.trim().to_owned()),
                None => println!("    {line}"),
            },
        )?;
        let ok = status.as_deref() == Some("0");
        if !ok {
            super::print_logs(&run);
        }
        println!(
            "{}: bench {} in {}",
            kernel.name,
            if ok { "done" } else { "FAILED" },
            super::minutes(start.elapsed())
        );
        ensure!(
            ok,
            "the bench did not finish in the {} guest (exit status {}; logs in {})",
            kernel.name,
            status
                .as_deref()
                .unwrap_or("none: the guest died or timed out"),
            Path::new(&work).join(kernel.name).display()
        );
    }
    Ok(())
}
