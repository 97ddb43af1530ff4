//! `cargo xtask setup`: installs what building and testing tracer needs, and
//! tells the build which BPF toolchain to use.
//!
//! Two routes build `tracer-ebpf` for `bpfel-unknown-none`:
//! - Debian: the distribution's Rust (`rustc-web`, with a prebuilt `core` for
//!   the BPF target from `libstd-rust-web-dev-bpf`), reached through a rustup
//!   toolchain linked to `/usr`, and a bpf-linker built against Debian's LLVM 22.
//! - nightly: a rustup nightly with `rust-src`, the ordinary aya route.
//!
//! Every step checks first and installs only what is missing, so a second run
//! does nothing and returns at once.

use std::{
    collections::HashMap,
    env,
    ffi::OsString,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cmd::{on_path, probe, run},
    vm::{Backports, BACKPORTS},
};

/// The bpf-linker release the build is known to work with.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The rustup toolchain linked to Debian's Rust at `/usr`.
const LINKED_TOOLCHAIN: &str = "tracer-bpf";
/// Debian's Rust for the BPF target, and the LLVM its bpf-linker builds against.
const DEBIAN_RUST: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-clippy",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];
/// Tools the tracer and its scenario tests run, on either route.
const ALWAYS: &[&str] = &[
    "procps",
    "psmisc",
    "util-linux",
    "iproute2",
    "bash",
    "coreutils",
    "tmux",
    // Conntrack scenarios: DNAT rules, `conntrack -S` to compare counters with.
    "iptables",
    "conntrack",
    // IO-wait scenarios: a loop device with a file system, frozen for hung tasks.
    "e2fsprogs",
];
/// The static busybox that runs the init of `cargo xtask vm-test`'s guests.
const VM: &[&str] = &["busybox-static"];
/// What vm-test needs newer than bookworm has, with the oldest version known
/// to work, taken from bookworm-backports: qemu 7.2's TCG crashes the 6.12
/// guest with two CPUs (general protection faults on IRET with garbage
/// EFLAGS, double faults in the slab allocator), 10.0 does not.
const VM_NEWER: &[(&str, &str)] = &[("qemu-system-x86", "1:10.0")];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Debian,
    Nightly,
}

/// What `tracer/build.rs` needs to build the BPF programs.
pub struct BuildEnv {
    toolchain: &'static str,
    linker_dir: PathBuf,
}

impl BuildEnv {
    /// `cargo clippy` on the BPF crate, for the BPF target, with the
    /// toolchain that builds it (the host's clippy cannot check it).
    pub fn clippy_bpf(&self, workspace: &Path, target_dir: &Path) -> Command {
        let mut cmd = Command::new("rustup");
        cmd.current_dir(workspace)
            .args([
                "run",
                self.toolchain,
                "cargo",
                "clippy",
                "--package",
                "tracer-ebpf",
            ])
            .args(["--target", "bpfel-unknown-none", "--target-dir"])
            .arg(target_dir)
            // The same cfg aya-build passes when it builds the crate.
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "--cfg=bpf_target_arch=\"x86_64\"",
            );
        if self.toolchain == "nightly" {
            cmd.args(["-Z", "build-std=core"]);
        } else {
            cmd.env("RUSTC_BOOTSTRAP", "aya_ebpf");
        }
        cmd.args(["--", "-D", "warnings"]);
        cmd
    }

    /// The variables to set on every cargo command that builds tracer.
    pub fn vars(&self) -> [(&'static str, OsString); 2] {
        [
            ("TRACER_BPF_TOOLCHAIN", self.toolchain.into()),
            ("TRACER_BPF_LINKER_DIR", self.linker_dir.clone().into()),
        ]
    }
}

/// Installs whatever is missing and returns the environment to build with.
pub fn setup() -> Result<BuildEnv> {
    let route = choose_route()?;
    let mut packages = ALWAYS.to_vec();
    packages.extend(VM);
    if route == Route::Debian {
        packages.extend(DEBIAN_RUST);
    }
    let sources = add_backports_source()?;
    install_packages(&packages, VM_NEWER, sources)?;
    let linker_dir = install_bpf_linker(route)?;
    let toolchain = match route {
        Route::Debian => {
            link_debian_toolchain()?;
            LINKED_TOOLCHAIN
        }
        Route::Nightly => "nightly",
    };
    println!("setup: toolchain ready ({toolchain}, bpf-linker {BPF_LINKER_VERSION})");
    Ok(BuildEnv {
        toolchain,
        linker_dir,
    })
}

/// The effective user is root (owner of this process's `/proc` entry).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn choose_route() -> Result<Route> {
    let debian_rust_works = Path::new("/usr/lib/rustlib/bpfel-unknown-none").is_dir()
        && probe(Command::new("/usr/bin/rustc").arg("--version")).is_some();
    if debian_rust_works {
        return Ok(Route::Debian);
    }
    let nightly_has_src = probe(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .is_some_and(|out| out.lines().any(|line| line.starts_with("rust-src")));
    if nightly_has_src {
        return Ok(Route::Nightly);
    }
    if on_path("apt-get") {
        return Ok(Route::Debian);
    }
    bail!(
        "no way to build BPF here: needs Debian (apt-get, for rustc-web and libstd-rust-web-dev-bpf) \
         or a rustup nightly with rust-src (`rustup toolchain install nightly --component rust-src`)"
    )
}

/// Where the toolchain pieces built or fetched once per machine live:
/// `$TRACER_TOOLCHAIN_DIR`, else `~/.cache/tracer-toolchain`.
pub fn toolchain_dir() -> Result<PathBuf> {
    Ok(match env::var_os("TRACER_TOOLCHAIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            env::var_os("HOME").context("HOME is not set (or set TRACER_TOOLCHAIN_DIR)")?,
        )
        .join(".cache/tracer-toolchain"),
    })
}

#[derive(Clone, Copy)]
struct AptSources {
    /// apt has bookworm-backports.
    backports: bool,
    /// A source was just added: apt's lists need a refresh.
    added: bool,
}

/// Adds bookworm-backports to apt's sources if missing (vm-test's 6.12
/// kernel and qemu come from there).
fn add_backports_source() -> Result<AptSources> {
    let unchanged = |backports| AptSources {
        backports,
        added: false,
    };
    if !on_path("apt-get") {
        return Ok(unchanged(false));
    }
    match crate::vm::backports()? {
        Backports::Present => Ok(unchanged(true)),
        Backports::OtherRelease(codename) => {
            println!(
                "setup: this is Debian `{codename}`, not bookworm: vm-test's guest kernels come \
                 from bookworm and bookworm-backports and will not be found"
            );
            Ok(unchanged(false))
        }
        Backports::Missing { file, text } if is_root() => {
            println!(
                "setup: adding bookworm-backports to apt's sources ({})",
                file.display()
            );
            std::fs::write(&file, text)
                .with_context(|| format!("could not write {}", file.display()))?;
            Ok(AptSources {
                backports: true,
                added: true,
            })
        }
        Backports::Missing { file, text } => {
            println!(
                "setup: vm-test needs bookworm-backports in apt's sources; as root, write {} with:\n{text}",
                file.display()
            );
            Ok(unchanged(false))
        }
    }
}

/// Installs, with one `apt-get update` and one `apt-get install`, the
/// missing ones of `packages` and those of `newer` that are missing or older
/// than their version (from bookworm-backports when apt has it).
fn install_packages(packages: &[&str], newer: &[(&str, &str)], sources: AptSources) -> Result<()> {
    if !on_path("dpkg-query") {
        // A laptop on another distribution (the nightly route): its own package
        // manager is its owner's business.
        let newer: Vec<String> = newer.iter().map(|(p, v)| format!("{p} (>= {v})")).collect();
        println!(
            "setup: not a Debian system; make sure these are installed: {} {}",
            packages.join(" "),
            newer.join(" ")
        );
        return Ok(());
    }
    let installed = installed_versions(packages.iter().chain(newer.iter().map(|(p, _)| p)))?;
    let mut wanted: Vec<String> = packages
        .iter()
        .filter(|p| !installed.contains_key(**p))
        .map(|p| p.to_string())
        .collect();
    for (package, oldest) in newer {
        match installed.get(*package) {
            Some(version) if version_at_least(version, oldest) => {}
            _ if sources.backports => wanted.push(format!("{package}/{BACKPORTS}")),
            None => wanted.push(package.to_string()),
            Some(version) => println!(
                "setup: {package} {version} is older than {oldest}, and apt has no \
                 {BACKPORTS} to take a newer one from: vm-test may fail"
            ),
        }
    }
    if wanted.is_empty() {
        if sources.added {
            run(Command::new("apt-get").arg("update"))?;
        }
        return Ok(());
    }
    let names = wanted.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {names}; install them with: \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {names}"
        );
    }
    println!("setup: installing Debian packages: {names}");
    run(Command::new("apt-get").arg("update"))?;
    // `package/release` takes that package, and the dependencies it needs,
    // from the release; everything else stays as it is.
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(wanted))
}

/// The installed versions of those of `packages` that are installed.
fn installed_versions<'a>(
    packages: impl Iterator<Item = &'a &'a str>,
) -> Result<HashMap<String, String>> {
    // One dpkg-query for all: it prints the installed ones and complains on
    // stderr (exit 1) about the unknown ones, so read stdout whatever the status.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version} ${Status}\\n"])
        .args(packages)
        .output()
        .context("could not start `dpkg-query`")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .filter_map(|line| line.split_once(' '))
        .map(|(package, version)| (package.to_owned(), version.to_owned()))
        .collect())
}

fn version_at_least(version: &str, oldest: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", version, "ge", oldest])
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs bpf-linker outside the repository, so that every clone on this
/// machine shares it, and returns the directory holding the binary.
fn install_bpf_linker(route: Route) -> Result<PathBuf> {
    let root = toolchain_dir()?.join("bpf-linker");
    let bin = root.join("bin");
    let present = probe(Command::new(bin.join("bpf-linker")).arg("--version"))
        .is_some_and(|out| out.split_whitespace().last() == Some(BPF_LINKER_VERSION));
    if present {
        return Ok(bin);
    }
    let mut install = Command::new("cargo");
    install.args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
    ]);
    if route == Route::Debian {
        // Built against Debian's LLVM 22, the one rustc-web uses: bpf-linker's
        // LLVM must not be older than the compiler's.
        install.env("LLVM_PREFIX", "/usr/lib/llvm-22").args([
            "--no-default-features",
            "--features",
            "llvm-22",
        ]);
    }
    install.arg("--root").arg(&root);
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} into {} (about 2 minutes, once per machine)",
        root.display()
    );
    run(&mut install)?;
    Ok(bin)
}

/// Makes Debian's Rust at `/usr` reachable as `rustup run tracer-bpf`, the way
/// aya-build invokes a toolchain.
fn link_debian_toolchain() -> Result<()> {
    if !on_path("rustup") {
        bail!("rustup is needed: the BPF build runs `rustup run {LINKED_TOOLCHAIN} cargo` (install rustup, then rerun)");
    }
    let list = probe(Command::new("rustup").args(["toolchain", "list"]))
        .context("`rustup toolchain list` failed")?;
    if list
        .lines()
        .any(|line| line.split_whitespace().next() == Some(LINKED_TOOLCHAIN))
    {
        return Ok(());
    }
    println!("setup: linking rustup toolchain {LINKED_TOOLCHAIN} to Debian's Rust at /usr");
    run(Command::new("rustup").args(["toolchain", "link", LINKED_TOOLCHAIN, "/usr"]))
}
