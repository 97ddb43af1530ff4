//! The BPF toolchain: which route builds `tracer-ebpf`, bpf-linker, and the
//! rustup toolchain linked to Debian's Rust.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::pins::BPF_LINKER;
use crate::cmd::{on_path, probe, run};

/// The rustup toolchain linked to Debian's Rust at `/usr`.
const LINKED_TOOLCHAIN: &str = "tracer-bpf";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
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

pub fn choose_route() -> Result<Route> {
    let debian_rust_works = Path::new("/usr/lib/rustlib/bpfel-unknown-none").is_dir()
        && super::runs(Path::new("/usr/bin/rustc"));
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

/// Installs what the route needs beyond Debian's packages (installed before)
/// and returns the environment to build with.
pub fn install(route: Route) -> Result<BuildEnv> {
    let linker_dir = install_bpf_linker(route)?;
    let toolchain = match route {
        Route::Debian => {
            link_debian_toolchain()?;
            LINKED_TOOLCHAIN
        }
        Route::Nightly => "nightly",
    };
    println!(
        "setup: toolchain ready ({toolchain}, bpf-linker {})",
        BPF_LINKER.version
    );
    Ok(BuildEnv {
        toolchain,
        linker_dir,
    })
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

/// Installs bpf-linker outside the repository, so that every clone on this
/// machine shares it, and returns the directory holding the binary.
fn install_bpf_linker(route: Route) -> Result<PathBuf> {
    let version = BPF_LINKER.version;
    let root = toolchain_dir()?.join("bpf-linker");
    let bin = root.join("bin");
    let present = probe(Command::new(bin.join("bpf-linker")).arg("--version"))
        .is_some_and(|out| out.split_whitespace().last() == Some(version));
    if present {
        return Ok(bin);
    }
    let mut install = Command::new("cargo");
    install.args([
        "install",
        &format!("{}@{version}", BPF_LINKER.name),
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
        "setup: building bpf-linker {version} into {} (about 2 minutes, once per machine)",
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
