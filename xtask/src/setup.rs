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
    env,
    ffi::OsString,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cmd::{on_path, probe, run},
    vm::Backports,
};

/// The bpf-linker release the build is known to work with.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The rustup toolchain linked to Debian's Rust at `/usr`.
const LINKED_TOOLCHAIN: &str = "tracer-bpf";
/// Debian's Rust for the BPF target, and the LLVM its bpf-linker builds against.
const DEBIAN_RUST: &[&str] = &[
    "rustc-web",
    "cargo-web",
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
];
/// What `cargo xtask vm-test` boots its guests with: the emulator and the
/// static busybox that runs the guest's init.
const VM: &[&str] = &["qemu-system-x86", "busybox-static"];

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
    let added_source = add_backports_source()?;
    install_packages(&packages, added_source)?;
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

/// Adds bookworm-backports to apt's sources if missing (vm-test's 6.12
/// kernel comes from there); returns whether it did, so that apt's lists
/// get refreshed.
fn add_backports_source() -> Result<bool> {
    if !on_path("apt-get") {
        return Ok(false);
    }
    match crate::vm::backports()? {
        Backports::Present => Ok(false),
        Backports::OtherRelease(codename) => {
            println!(
                "setup: this is Debian `{codename}`, not bookworm: vm-test's guest kernels come \
                 from bookworm and bookworm-backports and will not be found"
            );
            Ok(false)
        }
        Backports::Missing { file, text } if is_root() => {
            println!(
                "setup: adding bookworm-backports to apt's sources ({})",
                file.display()
            );
            std::fs::write(&file, text)
                .with_context(|| format!("could not write {}", file.display()))?;
            Ok(true)
        }
        Backports::Missing { file, text } => {
            println!(
                "setup: vm-test needs bookworm-backports in apt's sources; as root, write {} with:\n{text}",
                file.display()
            );
            Ok(false)
        }
    }
}

/// Installs the missing ones of `packages` with one `apt-get update` and one
/// `apt-get install`; updates apt's lists anyway if `update` (a new source).
fn install_packages(packages: &[&str], update: bool) -> Result<()> {
    if !on_path("dpkg-query") {
        // A laptop on another distribution (the nightly route): its own package
        // manager is its owner's business.
        println!(
            "setup: not a Debian system; make sure these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    // One dpkg-query for all: it prints the installed ones and complains on
    // stderr (exit 1) about the unknown ones, so read stdout whatever the status.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status}\\n"])
        .args(packages)
        .output()
        .context("could not start `dpkg-query`")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect();
    if missing.is_empty() {
        if update {
            run(Command::new("apt-get").arg("update"))?;
        }
        return Ok(());
    }
    let names = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {names}; install them with: \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {names}"
        );
    }
    println!("setup: installing Debian packages: {names}");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(missing))
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
