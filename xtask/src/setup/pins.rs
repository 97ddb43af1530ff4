//! Tools setup installs from a language registry at a pinned version, and the
//! check that each pin still exists there (a yanked or mistyped version would
//! otherwise show only on the next fresh machine).

use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd::probe;

#[derive(Clone, Copy, Debug)]
pub enum Registry {
    /// Installed with `cargo install NAME@VERSION --locked`.
    CratesIo,
    /// Installed with `pip install NAME==VERSION`.
    PyPi,
}

#[derive(Clone, Copy, Debug)]
pub struct Pin {
    pub registry: Registry,
    pub name: &'static str,
    pub version: &'static str,
}

/// Links the BPF object; the release the build is known to work with.
pub const BPF_LINKER: Pin = Pin {
    registry: Registry::CratesIo,
    name: "bpf-linker",
    version: "0.13.0",
};

/// Every pinned registry install of setup: bpf-linker, and those of the
/// release and deployment tasks.
pub fn all() -> Vec<Pin> {
    std::iter::once(BPF_LINKER)
        .chain(
            super::needs::release_and_deployment()
                .into_iter()
                .flat_map(|needs| needs.pins()),
        )
        .collect()
}

/// Asks each registry whether each pinned version exists; fails naming every
/// one that does not. Returns how many were checked.
pub fn check_exist() -> Result<usize> {
    let pins = all();
    let missing: Vec<String> = pins
        .iter()
        .filter(|pin| !exists(pin))
        .map(|pin| format!("{} {}@{}", pin.registry.label(), pin.name, pin.version))
        .collect();
    if !missing.is_empty() {
        bail!(
            "pinned versions not found in their registry: {}",
            missing.join(", ")
        );
    }
    Ok(pins.len())
}

fn exists(pin: &Pin) -> bool {
    match pin.registry {
        // `cargo info` fails when the registry has no such version.
        Registry::CratesIo => probe(Command::new("cargo").args([
            "info",
            "--registry",
            "crates-io",
            &format!("{}@{}", pin.name, pin.version),
        ]))
        .is_some(),
        Registry::PyPi => {
            probe(Command::new("python3").args(["-m", "pip", "index", "versions", pin.name]))
                .is_some_and(|out| listed_version(&out, pin.version))
        }
    }
}

/// `pip index versions` prints `Available versions: 1.2, 1.1, ...`.
fn listed_version(pip_output: &str, version: &str) -> bool {
    pip_output
        .lines()
        .filter_map(|line| line.strip_prefix("Available versions:"))
        .flat_map(|list| list.split(','))
        .any(|listed| listed.trim() == version)
}

impl Registry {
    fn label(self) -> &'static str {
        match self {
            Registry::CratesIo => "crates.io",
            Registry::PyPi => "PyPI",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_index_listing_is_matched_whole() {
        let out = "ziglang (0.17.1)\nAvailable versions: 0.17.1, 0.17.0, 0.7.1\n";
        assert!(listed_version(out, "0.17.0"));
        assert!(!listed_version(out, "0.17"));
        assert!(!listed_version("nothing listed", "0.17.1"));
    }
}
