//! `cargo xtask setup`: installs what building (and, for the suite, testing)
//! tracer needs, and tells the build which BPF toolchain to use.
//!
//! Two routes build `tracer-ebpf` for `bpfel-unknown-none`:
//! - Debian: the distribution's Rust (`rustc-web`, with a prebuilt `core` for
//!   the BPF target from `libstd-rust-web-dev-bpf`), reached through a rustup
//!   toolchain linked to `/usr`, and a bpf-linker built against Debian's LLVM 22.
//! - nightly: a rustup nightly with `rust-src`, the ordinary aya route.
//!
//! Every step checks first and installs only what is missing, so a second run
//! does nothing and returns at once. What is installed is declared in one
//! place, [`apt::plan`] and [`pins::PINS`], so that `bare_machine_check` can
//! prove the same list installs on a machine that has nothing.

mod apt;
mod apt_source;
pub mod needs;
mod pins;
mod toolchain;

use std::{os::unix::fs::MetadataExt as _, path::Path, process::Command};

use anyhow::{ensure, Result};

pub use apt_source::{mirror_source, BACKPORTS};
pub use toolchain::{toolchain_dir, BuildEnv};

use crate::cmd::{on_path, probe};

/// What the machine is being set up for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    /// Building and running tracer: the BPF toolchain, nothing else.
    Build,
    /// The whole suite: the build, plus every tool the tests, the guests and
    /// the benchmarks run.
    Test,
}

/// Installs whatever `purpose` needs that is missing and returns the
/// environment to build with.
pub fn setup(purpose: Purpose) -> Result<BuildEnv> {
    let route = toolchain::choose_route()?;
    if on_path("apt-get") {
        let sources = if purpose == Purpose::Test {
            apt_source::ensure_backports()?
        } else {
            apt_source::AptSources::default()
        };
        apt::install(&apt::plan(route, purpose), sources)?;
    } else {
        apt::print_wanted(&apt::plan(route, purpose));
    }
    let env = toolchain::install(route)?;
    if purpose == Purpose::Test {
        for needs in needs::release_and_deployment() {
            needs::ensure(needs)?;
        }
    }
    Ok(env)
}

/// Proves that what setup installs would install on a bare machine of this
/// kind: every apt transaction of the full plan is resolved against an empty
/// dpkg status (`apt-get install -s`, nothing is changed), and every pinned
/// crate and Python package exists in its registry. A machine that has
/// everything installed already cannot hide a missing dependency from this.
pub fn bare_machine_check() -> Result<()> {
    ensure!(
        on_path("apt-get"),
        "the bare-machine check simulates apt-get, which this machine lacks"
    );
    let route = toolchain::Route::Debian;
    let sources = apt_source::ensure_backports()?;
    ensure!(
        sources.backports,
        "apt has no {BACKPORTS} source, so the qemu the guests need cannot be resolved"
    );
    let simulated = apt::simulate_on_bare_machine(&apt::plan(route, Purpose::Test))?;
    let checked = pins::check_exist()?;
    println!("setup-check: {simulated} apt transactions resolve on an empty dpkg status; {checked} pinned registry packages exist");
    Ok(())
}

/// The effective user is root (owner of this process's `/proc` entry).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `path` runs and prints a version.
fn runs(path: &Path) -> bool {
    probe(Command::new(path).arg("--version")).is_some()
}
