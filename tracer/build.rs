//! Builds the BPF programs of `tracer-ebpf` for the BPF target and leaves the
//! object in OUT_DIR, where `src/ebpf.rs` embeds it: tracer ships as one file.
//!
//! Which compiler builds BPF is the build host's business: `cargo xtask setup`
//! prepares it and `cargo xtask build|run|test` pass it in through
//! `TRACER_BPF_TOOLCHAIN` (a rustup toolchain name) and `TRACER_BPF_LINKER_DIR`
//! (where bpf-linker lives). Without them, a plain `cargo build` falls back to
//! what `cargo xtask setup` would have chosen.

use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};
use aya_build::{Package, Toolchain};

/// The rustup toolchain `cargo xtask setup` links to the distribution's Rust,
/// which carries a prebuilt `core` for the BPF target.
const LINKED_TOOLCHAIN: &str = "tracer-bpf";

fn main() -> Result<()> {
    for var in ["TRACER_BPF_TOOLCHAIN", "TRACER_BPF_LINKER_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let toolchain = env::var("TRACER_BPF_TOOLCHAIN").unwrap_or_else(|_| default_toolchain());
    let linker_dir = env::var_os("TRACER_BPF_LINKER_DIR")
        .map(PathBuf::from)
        .or_else(default_linker_dir);
    if let Some(dir) = linker_dir {
        let path = env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(dir).chain(env::split_paths(&path));
        let joined = env::join_paths(paths).context("joining PATH")?;
        // SAFETY: build scripts are single-threaded; the variable is read by
        // the cargo child aya-build spawns.
        unsafe { env::set_var("PATH", joined) };
    }
    if toolchain != "nightly" {
        // A stable compiler needs this for aya-ebpf's `asm_experimental_arch`,
        // and only for that crate.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    }

    let ebpf_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?)
        .join("../tracer-ebpf")
        .canonicalize()
        .context("locating tracer-ebpf")?;
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path to tracer-ebpf")?;
    let package = Package {
        name: "tracer-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(&toolchain))
        .context("building the BPF programs (run `cargo xtask setup` to install the toolchain)")
}

fn default_toolchain() -> String {
    let linked = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with(LINKED_TOOLCHAIN))
        })
        .unwrap_or(false);
    if linked { LINKED_TOOLCHAIN } else { "nightly" }.to_owned()
}

fn default_linker_dir() -> Option<PathBuf> {
    let dir = env::var_os("TRACER_TOOLCHAIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/tracer-toolchain"))
        })?
        .join("bpf-linker/bin");
    dir.join("bpf-linker").exists().then_some(dir)
}
