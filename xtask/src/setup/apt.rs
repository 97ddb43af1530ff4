//! Debian packages: what each purpose needs, installing the missing ones, and
//! resolving the whole list against an empty dpkg status to prove that a bare
//! machine can install it.

use std::{collections::HashMap, process::Command};

use anyhow::{bail, ensure, Context as _, Result};

use super::{apt_source::AptSources, is_root, toolchain::Route, Purpose, BACKPORTS};
use crate::cmd::{run, show};

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
/// Tools the scenario tests run.
const TEST_TOOLS: &[&str] = &[
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
    // The static busybox that runs the init of `cargo xtask vm-test`'s guests.
    "busybox-static",
];

/// What `cargo xtask bench` runs beside tracer: the same jobs in bpftrace.
const BENCH_TOOLS: &[&str] = &["bpftrace"];

/// One package, and the oldest version of it that will do.
#[derive(Clone, Copy, Debug)]
pub struct Package {
    pub name: &'static str,
    pub oldest: Option<&'static str>,
}

/// One `apt-get install`: its packages and the dependencies they pull in come
/// from `release` where it has them (`-t`), else from the default release.
#[derive(Debug)]
pub struct Transaction {
    pub release: Option<&'static str>,
    pub packages: Vec<Package>,
}

/// Every apt transaction `purpose` needs on `route`, in order.
pub fn plan(route: Route, purpose: Purpose) -> Vec<Transaction> {
    let any = |name| Package { name, oldest: None };
    let mut default = Vec::new();
    if route == Route::Debian {
        default.extend(DEBIAN_RUST.iter().copied().map(any));
    }
    let mut plan = Vec::new();
    if purpose == Purpose::Test {
        default.extend(TEST_TOOLS.iter().chain(BENCH_TOOLS).copied().map(any));
        let deployment = super::needs::release_and_deployment();
        default.extend(deployment.iter().flat_map(|n| n.apt).copied().map(any));
        let mut seen = std::collections::HashSet::new();
        default.retain(|p| seen.insert(p.name));
        plan.push(Transaction {
            release: Some(BACKPORTS),
            // qemu 7.2's TCG crashes the 6.12 guest with two CPUs (general
            // protection faults on IRET with garbage EFLAGS, double faults in
            // the slab allocator), 10.0 does not. Its own qemu-system-common,
            // qemu-system-data and seabios must come from backports too, which
            // only `-t` gives: `qemu-system-x86/bookworm-backports` alone
            // leaves them at bookworm's versions and apt gives up.
            packages: vec![Package {
                name: "qemu-system-x86",
                oldest: Some("1:10.0"),
            }],
        });
    }
    plan.insert(
        0,
        Transaction {
            release: None,
            packages: default,
        },
    );
    plan.retain(|t| !t.packages.is_empty());
    plan
}

/// Installs the packages of `plan` that are missing or older than they must
/// be: one `apt-get update` at most, and one `apt-get install` a transaction.
pub fn install(plan: &[Transaction], sources: AptSources) -> Result<()> {
    let all = plan.iter().flat_map(|t| &t.packages).map(|p| p.name);
    let installed = installed_versions(all)?;
    let mut updated = false;
    if sources.added {
        run(Command::new("apt-get").arg("update"))?;
        updated = true;
    }
    for transaction in plan {
        if transaction.release == Some(BACKPORTS) && !sources.backports {
            println!(
                "setup: apt has no {BACKPORTS} source: not installing {} (vm-test will fail)",
                names(&transaction.packages)
            );
            continue;
        }
        let wanted: Vec<Package> = transaction
            .packages
            .iter()
            .filter(|p| match (installed.get(p.name), p.oldest) {
                (None, _) => true,
                (Some(version), Some(oldest)) => !version_at_least(version, oldest),
                (Some(_), None) => false,
            })
            .copied()
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let names = names(&wanted);
        if !is_root() {
            bail!(
                "missing Debian packages: {names}; install them with: \
                 sudo apt-get update && sudo {}",
                show(&install_command(transaction.release, &wanted))
            );
        }
        println!("setup: installing Debian packages: {names}");
        if !updated {
            run(Command::new("apt-get").arg("update"))?;
            updated = true;
        }
        run(install_command(transaction.release, &wanted)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("-y"))?;
    }
    Ok(())
}

/// Not a Debian system (the nightly route): its package manager is its owner's
/// business, so only say what the plan would install.
pub fn print_wanted(plan: &[Transaction]) {
    let wanted: Vec<String> = plan
        .iter()
        .flat_map(|t| &t.packages)
        .map(|p| match p.oldest {
            Some(oldest) => format!("{} (>= {oldest})", p.name),
            None => p.name.to_owned(),
        })
        .collect();
    println!(
        "setup: not a Debian system; make sure these are installed: {}",
        wanted.join(" ")
    );
}

/// Resolves every transaction of `plan` as apt would on a machine with
/// nothing installed (`-s` against an empty dpkg status: nothing changes), and
/// checks that the versions apt picks are new enough. Returns how many
/// transactions were resolved.
pub fn simulate_on_bare_machine(plan: &[Transaction]) -> Result<usize> {
    let empty =
        std::env::temp_dir().join(format!("tracer-empty-dpkg-status-{}", std::process::id()));
    std::fs::write(&empty, "").with_context(|| format!("could not write {}", empty.display()))?;
    let result = plan
        .iter()
        .map(|transaction| simulate(transaction, &empty))
        .collect::<Result<Vec<()>>>();
    let _ = std::fs::remove_file(&empty);
    result.map(|done| done.len())
}

fn simulate(transaction: &Transaction, empty_status: &std::path::Path) -> Result<()> {
    let mut cmd = install_command(transaction.release, &transaction.packages);
    cmd.arg("-s")
        .arg(format!("-oDir::State::status={}", empty_status.display()));
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", show(&cmd)))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "on a bare machine, `{}` would fail:\n{}{}",
        show(&cmd),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let chosen = simulated_versions(&stdout);
    for package in &transaction.packages {
        let Some(version) = chosen.get(package.name) else {
            bail!(
                "on a bare machine, `{}` would not install {}",
                show(&cmd),
                package.name
            );
        };
        if let Some(oldest) = package.oldest {
            ensure!(
                version_at_least(version, oldest),
                "on a bare machine, apt would install {} {version}, older than the {oldest} needed",
                package.name
            );
        }
    }
    Ok(())
}

fn install_command(release: Option<&str>, packages: &[Package]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "--no-install-recommends"]);
    if let Some(release) = release {
        cmd.args(["-t", release]);
    }
    cmd.args(packages.iter().map(|p| p.name));
    cmd
}

fn names(packages: &[Package]) -> String {
    packages
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Inst NAME (VERSION RELEASE [ARCH])` lines of `apt-get install -s`.
fn simulated_versions(out: &str) -> HashMap<&str, &str> {
    out.lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once(' ')?;
            let version = rest.strip_prefix('(')?.split_whitespace().next()?;
            Some((name, version))
        })
        .collect()
}

/// The installed versions of those of `packages` that are installed.
fn installed_versions<'a>(
    packages: impl Iterator<Item = &'a str>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_install_lines_give_name_and_version() {
        let out = "NOTE: This is only a simulation!\n\
            Inst seabios (1.16.3-2~bpo12+1 Debian Backports:bookworm-backports [all])\n\
            Inst qemu-system-x86 (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:bookworm-backports [amd64])\n\
            Conf seabios (1.16.3-2~bpo12+1 Debian Backports:bookworm-backports [all])\n";
        let versions = simulated_versions(out);
        assert_eq!(versions["qemu-system-x86"], "1:10.0.2+ds-2+deb13u1~bpo12+1");
        assert_eq!(versions["seabios"], "1.16.3-2~bpo12+1");
        assert_eq!(versions.len(), 2);
    }

    #[test]
    fn building_needs_no_test_tools_and_no_qemu() {
        let build = plan(Route::Debian, Purpose::Build);
        let names: Vec<&str> = build
            .iter()
            .flat_map(|t| &t.packages)
            .map(|p| p.name)
            .collect();
        assert!(names.contains(&"rustc-web"));
        assert!(!names
            .iter()
            .any(|n| TEST_TOOLS.contains(n) || n.starts_with("qemu")));
        assert_eq!(build.len(), 1);
        let nightly = plan(Route::Nightly, Purpose::Build);
        assert!(nightly.is_empty());
    }

    #[test]
    fn qemu_comes_with_its_dependencies_from_backports() {
        let test = plan(Route::Debian, Purpose::Test);
        let qemu = test
            .iter()
            .find(|t| t.packages.iter().any(|p| p.name == "qemu-system-x86"))
            .expect("the suite installs qemu");
        assert_eq!(qemu.release, Some(BACKPORTS));
        let args: Vec<String> = install_command(qemu.release, &qemu.packages)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-t", BACKPORTS]));
        assert!(!args.iter().any(|a| a.contains('/')));
    }
}
