//! What the release, image and deployment tasks need installed, by purpose,
//! and the installs themselves: Debian packages through [`super::apt`], PyPI
//! packages into `<toolchain dir>/python`, crates into `<toolchain dir>/<crate>`.
//! Every install is pinned and checked first, so a second run does nothing.
//! `cargo xtask test`'s set-up installs all of them; each task also makes
//! sure of its own when run alone.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};

use super::{
    apt::{self, Package, Transaction},
    apt_source::AptSources,
    pins::{Pin, Registry},
    toolchain_dir,
};
use crate::cmd::{on_path, probe, run};

/// What one purpose needs beyond what building tracer needs.
pub struct Needs {
    /// Why: "build a release", "test the deployment", ...
    pub purpose: &'static str,
    /// Debian packages.
    pub apt: &'static [&'static str],
    /// PyPI packages, `(name, version)`, installed into [`python_dir`].
    pub pip: &'static [(&'static str, &'static str)],
    /// Crates with binaries, `(name, version)`, installed into
    /// `<toolchain dir>/<name>` with `cargo install --locked`.
    pub crates: &'static [(&'static str, &'static str)],
}

/// What the export scenarios run: a real Prometheus (and its promtool), an
/// OTLP receiver built on the protocol's own Python definitions, and jq to
/// read tracer's JSON diagnostics as a log pipeline would.
pub const EXPORT_TESTS: Needs = Needs {
    purpose: "test the Prometheus and OTLP exports",
    apt: &["prometheus", "jq"],
    pip: &[("opentelemetry-proto", "1.45.2"), ("protobuf", "7.36.2")],
    crates: &[],
};

/// What the suite needs beyond building tracer, by purpose (`cargo xtask
/// dist`, `image`, `deploy-test` and the export scenarios), for `cargo xtask
/// setup` to install.
pub fn release_and_deployment() -> [&'static Needs; 4] {
    [
        &crate::dist::NEEDS,
        &crate::image::NEEDS,
        &crate::deploy_test::NEEDS,
        &EXPORT_TESTS,
    ]
}

/// Where the pinned PyPI packages live (`PYTHONPATH` for their modules;
/// `ziglang/zig` is the zig compiler).
pub fn python_dir() -> Result<PathBuf> {
    Ok(toolchain_dir()?.join("python"))
}

/// The directory holding the binaries of crate `name`, once installed.
pub fn crate_bin_dir(name: &str) -> Result<PathBuf> {
    Ok(toolchain_dir()?.join(name).join("bin"))
}

/// Installs whatever of `needs` is missing.
pub fn ensure(needs: &Needs) -> Result<()> {
    ensure_apt(needs)?;
    ensure_pip(needs)?;
    for (name, version) in needs.crates {
        ensure_crate(name, version)?;
    }
    Ok(())
}

fn ensure_apt(needs: &Needs) -> Result<()> {
    let transaction = Transaction {
        release: None,
        packages: needs
            .apt
            .iter()
            .map(|&name| Package { name, oldest: None })
            .collect(),
    };
    apt::install(&[transaction], AptSources::default())
}

impl Needs {
    /// The registry installs, as pins [`super::pins::check_exist`] checks.
    pub fn pins(&self) -> impl Iterator<Item = Pin> + '_ {
        let pin = |registry| {
            move |&(name, version): &(&'static str, &'static str)| Pin {
                registry,
                name,
                version,
            }
        };
        self.pip
            .iter()
            .map(pin(Registry::PyPi))
            .chain(self.crates.iter().map(pin(Registry::CratesIo)))
    }
}

fn ensure_pip(needs: &Needs) -> Result<()> {
    let dir = python_dir()?;
    let missing: Vec<String> = needs
        .pip
        .iter()
        .filter(|(name, version)| !dist_info(&dir, name, version).is_dir())
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "{}: installing from PyPI into {}: {}",
        needs.purpose,
        dir.display(),
        missing.join(" ")
    );
    run(Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
        .arg(&dir)
        .args(&missing))
}

/// pip's record of an installed `name==version` (names normalized as wheels spell them).
fn dist_info(dir: &Path, name: &str, version: &str) -> PathBuf {
    dir.join(format!("{}-{version}.dist-info", name.replace('-', "_")))
}

fn ensure_crate(name: &str, version: &str) -> Result<()> {
    let bin = crate_bin_dir(name)?;
    let present = probe(Command::new(bin.join(name)).arg("--version"))
        .is_some_and(|out| out.split_whitespace().any(|word| word == version));
    if present {
        return Ok(());
    }
    if !on_path("cargo") {
        bail!("cargo is needed to install {name} {version}");
    }
    println!("installing {name} {version} into {}", bin.display());
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            &format!("{name}@{version}"),
            "--root",
        ])
        .arg(bin.parent().expect("bin has a parent")))
}
