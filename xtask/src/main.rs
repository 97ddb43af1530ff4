//! tracer's developer commands: `cargo xtask setup|build|run|test|vm-test`.
//! `cargo xtask --help` explains them.

mod bench;
mod cmd;
mod deploy_test;
mod dist;
mod image;

mod setup;
mod vm;

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use setup::{BuildEnv, Purpose};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test tracer",
    long_about = "Build, run and test tracer.\n\n\
        tracer embeds BPF programs (the tracer-ebpf crate) that must be compiled for \
        bpfel-unknown-none with a special toolchain and bpf-linker. `setup` installs them, \
        and every other command runs it first and passes the result to tracer/build.rs \
        through TRACER_BPF_TOOLCHAIN and TRACER_BPF_LINKER_DIR, so a plain \
        `cargo xtask run` works on a fresh clone.",
    after_help = "Examples:\n  \
        cargo xtask setup                 install the toolchain (root installs Debian packages)\n  \
        cargo xtask run                   build in release mode and run `tracer watch` (needs root)\n  \
        cargo xtask run -- --help         show tracer's own help\n  \
        cargo xtask test                  the whole suite, exactly as CI runs it\n  \
        cargo xtask vm-test --kernel 6.1  the scenarios in a qemu guest on Debian's 6.1 kernel"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building tracer needs; quick when everything is there
    #[command(
        long_about = "Install what building tracer needs; quick when everything is there.\n\n\
        Chooses a route for building BPF: Debian's own Rust (rustc-web with the prebuilt core \
        of libstd-rust-web-dev-bpf, linked into rustup as the `tracer-bpf` toolchain) when it \
        is installed or apt-get can install it, otherwise a rustup nightly with rust-src. \
        Then installs the missing Debian packages (as root: one apt-get update and one \
        apt-get install; as another user it prints the command to run), bpf-linker 0.13.0 \
        (built once per machine, about 2 minutes) under \
        ${TRACER_TOOLCHAIN_DIR:-$HOME/.cache/tracer-toolchain}/bpf-linker, and the rustup link.\n\n\
        Safe to run again: it checks each piece and installs only what is missing."
    )]
    Setup {
        /// Only what building and running tracer needs (no test tools, no qemu)
        #[arg(long, conflicts_with = "check")]
        build_only: bool,
        /// Install nothing: prove the suite's list installs on a bare machine
        /// (apt resolves it against an empty dpkg status; the registries have
        /// every pinned version)
        #[arg(long)]
        check: bool,
    },
    /// Run setup, then build tracer (debug unless --release)
    #[command(
        long_about = "Run setup, then `cargo build --package tracer` with the BPF toolchain \
        setup chose. The binary, with its BPF programs embedded, is target/debug/tracer \
        (or target/release/tracer with --release)."
    )]
    Build {
        /// Build with optimizations (target/release/tracer)
        #[arg(long)]
        release: bool,
    },
    /// Build tracer (release) and run it in place of this command; needs root
    #[command(
        long_about = "Run setup, build tracer in release mode (debug with --debug) and run it: \
            xtask replaces itself with tracer, so Ctrl-C reaches tracer directly. \
            tracer loads BPF programs and needs root (or CAP_BPF and CAP_PERFMON).",
        after_help = "Examples:\n  \
            cargo xtask run                       tracer watch\n  \
            cargo xtask run --debug -- --help     tracer's own help, from a debug build"
    )]
    Run {
        /// Build and run the debug binary instead of the release one
        #[arg(long)]
        debug: bool,
        /// Arguments for tracer, after `--` [default: watch]
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<OsString>,
    },
    /// Run the whole suite, as CI does: setup, fmt, clippy, tests, deploy-test, VM tests
    #[command(
        long_about = "Run the whole suite, as CI does (.ci/run calls exactly this): setup, \
            `cargo fmt --all -- --check`, `cargo clippy --workspace --all-targets -- -D warnings` \
            (without tracer-ebpf, which only builds for BPF), `cargo test --workspace` \
            (without the scenarios named guest_only_*, which exhaust the machine), \
            `cargo xtask deploy-test` (the release binary and the DaemonSet, for real) and \
            `cargo xtask vm-test` (every scenario on Debian's 5.10, 6.1, 6.12 and newest kernels), stopping at \
            the first step that fails.\n\n\
            The scenario tests load BPF programs and start workloads: they need root and a \
            kernel with BPF. As another user they run anyway, and fail.",
        after_help = "Examples:\n  \
            cargo xtask test                                      everything\n  \
            cargo xtask test -- --test scenarios                  only the scenario tests\n  \
            cargo xtask test -- --test scenarios -- --nocapture   and show their output"
    )]
    Test {
        /// Extra arguments for `cargo test --workspace`, after `--`
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        args: Vec<OsString>,
    },
    /// Run the scenario tests inside qemu guests on Debian's 5.10, 6.1, 6.12 and newest kernels
    #[command(
        long_about = "Run the scenario tests (tests/scenarios) inside qemu guests booted on \
            Debian's cloud kernels: 5.10 from bullseye, 6.1 from bookworm, 6.12 from \
            bookworm-backports and the newest line of trixie-backports, with pure \
            cgroup v2 (memory and io controllers enabled).\n\n\
            Runs setup, fetches the kernels with apt-get download through an apt configuration \
            of their own that only lists their suites (the machine's apt never sees them), \
            cached under ${TRACER_TOOLCHAIN_DIR:-$HOME/.cache/tracer-toolchain}/vm, builds tracer and the \
            scenario binary in release mode (emulation is slow), packs them with what they run \
            into an initramfs, and boots each kernel with qemu-system-x86_64 -accel tcg. The \
            guest runs the scenarios two at a time, then the guest_only_* ones (which exhaust \
            the machine) one at a time. Prints one line per scenario and kernel, \
            and the guest's output and console when something fails; the logs of the last run \
            are in target/vm/KERNEL/. Fails if any scenario on any kernel did not pass, and \
            if a guest cannot run at all (no qemu, no kernel): it never skips.",
        after_help = "Examples:\n  \
            cargo xtask vm-test                        every scenario on every kernel\n  \
            cargo xtask vm-test --kernel 6.12 signals  the signal scenarios on 6.12"
    )]
    VmTest {
        /// The kernel to boot
        #[arg(long, value_enum, default_value = "all")]
        kernel: vm::KernelChoice,
        /// Kill a guest still running after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = VM_TEST_TIMEOUT)]
        timeout: u64,
        /// Only the scenarios whose name contains FILTER
        filter: Option<String>,
    },
    /// Measure what tracer costs the workloads it watches; needs root
    #[command(
        long_about = "Measure what tracer costs the workloads it watches, side by side with \
            what a user would run instead and with the limit. Builds tracer in release mode, \
            then runs every workload once per arm each round: bare; `tracer watch`; tracer with \
            each family on the workload's path off (a flag each); bpftrace doing the same job; \
            and an empty BPF program attached as a raw tracepoint to the same hooks (the \
            kernel's dispatch alone, the limit a hook can reach). The arms' order rotates every \
            round; each arm's run is the fastest of 3 (neighbours only ever add time), the \
            machine is left alone 2 s after attaching and after detaching, and each arm is \
            compared with the bare run of its own round. Prints per arm the median CPU time, \
            the median and quartiles of the paired ratios, the time from start to attached, \
            and the resident memory after the workload and at its peak.\n\n\
            page-alloc faults in fresh memory: one kmem:mm_page_alloc per page. udp-loopback \
            sends and receives small datagrams: every packet passes the transmit, receive and \
            free hooks, and a connected socket's datagrams are told apart from DNS without \
            reading them. udp-dns-busy sends the same with sendto(2), after a DNS query: \
            tracer's DNS programs then read every packet, their dearest case. ping-pong passes a byte between two threads on one CPU through pipes: \
            two sched_switch per round trip, the IO-wait hook's hottest path. pipeline feeds \
            signal records made in memory through tracer's decode, explain and output (text to \
            /dev/null, JSON lines to a file) and reports records a second. A benchmark, not \
            a test: it reports, it does not fail on a number.",
        after_help = "Examples:\n  \
            cargo xtask bench --rounds 11             every workload, 11 rounds\n  \
            cargo xtask bench --rounds 3 ping-pong    one workload, quickly\n  \
            cargo xtask bench --rounds 3 pipeline     decode, explain and output alone\n  \
            cargo xtask bench --kernel 6.12           page-alloc in a 6.12 guest: warn_alloc against mm_page_alloc\n  \
            cargo xtask bench --rounds 11 --baseline /tmp/tracer-before udp-loopback\n                                              \
            the same workload before and after a change"
    )]
    Bench {
        /// Rounds per workload (each round runs it once per arm); 15, or 3 in a guest
        #[arg(long)]
        rounds: Option<usize>,
        /// Run the benchmark inside a qemu guest on this kernel, where kprobes are allowed
        /// (page-alloc unless FILTER says otherwise)
        #[arg(long, value_enum)]
        kernel: Option<vm::KernelChoice>,
        /// Kill a guest still running after this many seconds (with --kernel)
        #[arg(long, value_name = "SECONDS", default_value_t = VM_BENCH_TIMEOUT)]
        timeout: u64,
        /// Measure this tracer as it is: no setup, no build (how the guest runs it)
        #[arg(long, hide = true)]
        tracer: Option<PathBuf>,
        /// Leave out the bpftrace arm (the guest has no bpftrace)
        #[arg(long, hide = true)]
        no_bpftrace: bool,
        /// Also show the kernel's statistics of tracer's programs on the path (runs, time a
        /// run), on while the tracer arms run, and of the limit arm's empty programs beside
        /// them; always on with --kernel
        #[arg(long)]
        bpf_stats: bool,
        /// Only the workloads whose name contains FILTER (page-alloc, udp-loopback,
        /// udp-dns-busy, ping-pong, signal-storm, export-storm, pipeline)
        filter: Option<String>,
        /// Another tracer binary to run as one more arm, for a before-and-after comparison
        /// (e.g. a release build of the previous commit)
        #[arg(long, value_name = "PATH")]
        baseline: Option<PathBuf>,
    },
    /// Build the release: a tracer for glibc 2.17 and newer, packed with SHA256SUMS
    #[command(
        long_about = "Build the release: tracer for x86_64 Linux with glibc 2.17 or newer \
            (cargo-zigbuild, zig from PyPI's ziglang), its BPF programs embedded, checked \
            with objdump, packed with README and licences as \
            target/dist/tracer-VERSION-x86_64-linux-gnu.tar.gz beside target/dist/SHA256SUMS."
    )]
    Dist,
    /// Build the container image (deploy/Containerfile) offline, as an OCI archive
    #[command(
        long_about = "Build the container image of deploy/Containerfile from the release \
            binary and a base of Debian's C library (mmdebstrap), with podman and no registry: \
            target/image/tracer-VERSION.oci.tar, to load with `ctr images import`, \
            `podman load` or `docker load`, or to push with skopeo."
    )]
    Image,
    /// Test the release binary and the DaemonSet for real; needs root
    #[command(
        long_about = "Test the release and the DaemonSet for real (needs root and BPF): the \
            release's glibc floor and checksums; `tracer doctor` and a real kill explained \
            inside a Debian bullseye chroot (glibc 2.31); deploy/daemonset.yaml against the \
            Kubernetes schema; then containerd and runc started here with busybox pods as \
            kubelet lays them out, and tracer's image run with exactly the manifest's \
            settings, which must explain a kill across two pods and an OOM kill in one, \
            naming pods, containers and the node from NODE_NAME."
    )]
    DeployTest,
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup { check: true, .. } => setup::bare_machine_check(),
        Task::Setup { build_only, .. } => setup::setup(if build_only {
            Purpose::Build
        } else {
            Purpose::Test
        })
        .map(drop),
        Task::Build { release } => {
            setup::setup(Purpose::Build).and_then(|env| build(&env, release))
        }
        Task::Run { debug, args } => run(debug, args),
        Task::Test { args } => test(args),
        Task::Bench {
            rounds,
            kernel: Some(kernel),
            timeout,
            filter,
            ..
        } => setup::setup(Purpose::Test).and_then(|env| {
            vm::vm_bench(
                &env,
                &vm::BenchOptions {
                    kernel,
                    rounds: rounds.unwrap_or(VM_BENCH_ROUNDS).max(1),
                    filter: filter.unwrap_or_else(|| "page-alloc".to_owned()),
                    timeout: Duration::from_secs(timeout),
                },
            )
        }),
        Task::Bench {
            rounds,
            tracer,
            no_bpftrace,
            bpf_stats,
            filter,
            baseline,
            ..
        } => {
            let rounds = rounds.unwrap_or(BENCH_ROUNDS).max(1);
            let extras = bench::Extras {
                bpftrace: !no_bpftrace,
                bpf_stats,
                baseline: baseline.as_deref(),
            };
            match tracer {
                // Inside a guest: this tracer as it is, no setup, no build.
                Some(tracer) => bench::run(&tracer, rounds, filter.as_deref(), extras),
                None => setup::setup(Purpose::Test).and_then(|env| {
                    build(&env, true)?;
                    // The pipeline arm's records, made in memory.
                    cmd::run(&mut cargo(
                        &env,
                        &[
                            "build",
                            "--package",
                            "tracer",
                            "--release",
                            "--example",
                            "pipeline_throughput",
                        ],
                    ))?;
                    bench::run(
                        &target_dir().join("release/tracer"),
                        rounds,
                        filter.as_deref(),
                        extras,
                    )
                }),
            }
        }
        Task::Dist => setup::setup(Purpose::Build).and_then(|env| dist::dist(&env).map(drop)),
        Task::Image => setup::setup(Purpose::Build).and_then(|env| image::image(&env).map(drop)),
        Task::DeployTest => setup::setup(Purpose::Build).and_then(|env| deploy_test::run(&env)),
        Task::VmTest {
            kernel,
            timeout,
            filter,
        } => setup::setup(Purpose::Test).and_then(|env| {
            vm::vm_test(
                &env,
                &vm::Options {
                    kernel,
                    filter,
                    timeout: Duration::from_secs(timeout),
                },
            )
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(env: &BuildEnv, release: bool) -> Result<()> {
    let mut build = cargo(env, &["build", "--package", "tracer"]);
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build)
}

fn run(debug: bool, args: Vec<OsString>) -> Result<()> {
    let env = setup::setup(Purpose::Build)?;
    build(&env, !debug)?;
    let tracer = target_dir()
        .join(if debug { "debug" } else { "release" })
        .join("tracer");
    let args = if args.is_empty() {
        vec!["watch".into()]
    } else {
        args
    };
    if !setup::is_root() {
        eprintln!("run: tracer needs root (or CAP_BPF and CAP_PERFMON) to load its BPF programs; starting it anyway");
    }
    // Only returns if tracer could not be started.
    let err = Command::new(&tracer).args(&args).exec();
    Err(err).with_context(|| format!("could not start `{}`", tracer.display()))
}

/// `bench`'s rounds on the host.
const BENCH_ROUNDS: usize = 15;

/// `bench --kernel`'s rounds: emulated, one round of page-alloc with its
/// four arms takes about a minute.
const VM_BENCH_ROUNDS: usize = 3;

/// `bench --kernel`'s time limit per guest, in seconds.
const VM_BENCH_TIMEOUT: u64 = 1800;

/// `vm-test`'s time limit per guest, in seconds.
const VM_TEST_TIMEOUT: u64 = 600;

/// One step of `cargo xtask test`, run in order, the first failure ending it.
type Step<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

/// The steps of `cargo xtask test`, in order.
const TEST_STEPS: [&str; 8] = [
    "setup",
    "setup-check",
    "fmt",
    "clippy",
    "clippy-bpf",
    "test",
    "deploy-test",
    "vm-test",
];

fn test(args: Vec<OsString>) -> Result<()> {
    let start = Instant::now();
    if !setup::is_root() {
        eprintln!(
            "\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! WARNING: not running as root.\n\
             !! The scenario tests load BPF programs and start workloads: they need root\n\
             !! and a kernel with BPF, and WILL FAIL here. Running them anyway.\n\
             !! For a real result run the suite as root (CI does).\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
    }
    println!("==> [1/{}] setup", TEST_STEPS.len());
    let env = setup::setup(Purpose::Test).context("step `setup` failed")?;

    // The BPF crate has no host test target (see clippy below).
    let mut tests = cargo(&env, &["test", "--workspace", "--exclude", "tracer-ebpf"]);
    tests.args(&args);
    // The guest-only scenarios exhaust the machine: only vm-test runs them.
    if !args.iter().any(|arg| arg == "--") {
        tests.arg("--");
    }
    tests.args(["--skip", vm::GUEST_ONLY]);
    let commands = [
        ("fmt", cargo(&env, &["fmt", "--all", "--", "--check"])),
        // tracer-ebpf is `#![no_std] #![no_main]` code for the BPF target:
        // checked for the host it fails with "unwinding panics are not
        // supported without std". tracer/build.rs compiles it for real.
        (
            "clippy",
            cargo(
                &env,
                &[
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "tracer-ebpf",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        ),
        (
            "clippy-bpf",
            env.clippy_bpf(workspace_root(), &target_dir().join("bpf-clippy")),
        ),
        ("test", tests),
    ];
    let mut steps: Vec<(&str, Step)> = vec![("setup-check", Box::new(setup::bare_machine_check))];
    for (name, mut command) in commands {
        steps.push((
            name,
            Box::new(move || {
                println!("    {}", cmd::line(&command));
                cmd::run(&mut command)
            }),
        ));
    }
    steps.push(("deploy-test", Box::new(|| deploy_test::run(&env))));
    steps.push((
        "vm-test",
        Box::new(|| {
            vm::vm_test(
                &env,
                &vm::Options {
                    kernel: vm::KernelChoice::All,
                    filter: None,
                    timeout: Duration::from_secs(VM_TEST_TIMEOUT),
                },
            )
        }),
    ));
    debug_assert_eq!(
        steps.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        TEST_STEPS[1..]
    );
    for (i, (name, step)) in steps.into_iter().enumerate() {
        println!("==> [{}/{}] {name}", i + 2, TEST_STEPS.len());
        step().with_context(|| format!("step `{name}` failed"))?;
    }
    let secs = start.elapsed().as_secs();
    println!(
        "test: all {} steps ok ({}) in {}m{:02}s",
        TEST_STEPS.len(),
        TEST_STEPS.join(", "),
        secs / 60,
        secs % 60
    );
    Ok(())
}

/// `cargo ARGS` in the workspace root, with the BPF build environment. `cargo`
/// comes from PATH (rustup's proxy), not from the cargo that started xtask.
fn cargo(env: &BuildEnv, args: &[&str]) -> Command {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(workspace_root())
        .args(args)
        .envs(env.vars());
    cargo
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a directory of the workspace")
}

/// Where cargo puts the binaries: `CARGO_TARGET_DIR` if set, else `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}
