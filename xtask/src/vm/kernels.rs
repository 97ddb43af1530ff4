//! The guest kernels: Debian's cloud kernels, fetched with apt and cached
//! outside the repository. Kept are `vmlinuz`, `config` and the modules
//! (`lib/modules/<release>`): most of what the scenarios touch (virtio,
//! serial, tmpfs, cgroups, BPF, BTF) is built in, but netfilter and veth,
//! which the DNS scenarios need, are modules. The whole module tree is kept
//! so that any module's dependencies are at hand.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::setup::BACKPORTS;
use crate::{
    cmd::{probe, show},
    setup,
};

/// The metapackage whose dependency names the current versioned kernel.
const METAPACKAGE: &str = "linux-image-cloud-amd64";

pub struct Spec {
    /// What `--kernel` calls it.
    pub name: &'static str,
    /// The apt release to take the metapackage from (`-t`); `None` for the
    /// default candidate (bookworm and its security updates).
    release: Option<&'static str>,
    /// Versioned packages of this line start with this.
    prefix: &'static str,
}

pub const KERNELS: [Spec; 2] = [
    Spec {
        name: "6.1",
        release: None,
        prefix: "linux-image-6.1.",
    },
    Spec {
        name: "6.12",
        release: Some(BACKPORTS),
        prefix: "linux-image-6.12.",
    },
];

pub struct Kernel {
    pub name: &'static str,
    pub package: String,
    pub version: String,
    pub vmlinuz: PathBuf,
    /// What `uname -r` says in the guest.
    pub release: String,
    /// `lib/modules/<release>` as the package installs it.
    pub modules: PathBuf,
}

/// The kernel of `spec`, from the cache or downloaded into it.
pub fn fetch(spec: &Spec) -> Result<Kernel> {
    match fetch_once(spec) {
        Ok(kernel) => Ok(kernel),
        // apt's lists may be missing or older than the mirror, which drops
        // superseded kernels: refresh them once and try again.
        Err(err) if setup::is_root() => {
            println!("vm-test: {err:#}\nvm-test: refreshing apt's package lists and trying again");
            crate::cmd::run(Command::new("apt-get").arg("update"))?;
            fetch_once(spec)
        }
        Err(err) => Err(err),
    }
}

fn fetch_once(spec: &Spec) -> Result<Kernel> {
    let (package, version) = resolve(spec)?;
    let dir = setup::toolchain_dir()?
        .join("vm")
        .join(format!("{package}_{version}"));
    let vmlinuz = dir.join("vmlinuz");
    // Caches from before the modules were kept hold only vmlinuz and config:
    // they are downloaded again.
    if !vmlinuz.is_file() || !dir.join(MODULES).is_dir() {
        println!("vm-test: downloading {package} {version}");
        download(&package, &version, &dir)?;
        prune_older(spec, &dir);
    }
    let (release, modules) = module_tree(&dir)?;
    Ok(Kernel {
        name: spec.name,
        package,
        version,
        vmlinuz,
        release,
        modules,
    })
}

/// Where the package puts its modules, in the package and in the cache.
const MODULES: &str = "lib/modules";

/// The release and module tree of the cached kernel in `dir`: the one
/// directory under `lib/modules`.
fn module_tree(dir: &Path) -> Result<(String, PathBuf)> {
    let modules = dir.join(MODULES);
    let mut trees = fs::read_dir(&modules)
        .with_context(|| format!("could not list {}", modules.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir());
    let (Some(tree), None) = (trees.next(), trees.next()) else {
        bail!(
            "{} should hold one directory, named after the kernel's release",
            modules.display()
        );
    };
    let release = tree
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    Ok((release, tree))
}

/// Removes the cached kernels of `spec`'s line other than `kept`: a new
/// version replaces the old one, so the cache does not grow without end.
fn prune_older(spec: &Spec, kept: &Path) {
    let Some(cache) = kept.parent() else { return };
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path != kept && name.starts_with(spec.prefix) {
            // Best effort: a leftover only costs disk space.
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The versioned package the metapackage depends on, and its version.
fn resolve(spec: &Spec) -> Result<(String, String)> {
    let apt_cache = |args: &[&str]| {
        let mut cmd = Command::new("apt-cache");
        if let Some(release) = spec.release {
            cmd.args(["-t", release]);
        }
        cmd.args(args);
        let out = probe(&mut cmd);
        (out, show(&cmd))
    };
    let hint = match spec.release {
        Some(release) => format!(
            "is `{release}` in apt's sources? `cargo xtask setup` adds it, then `apt-get update`"
        ),
        None => "run `apt-get update` as root".to_owned(),
    };
    let (depends, line) = apt_cache(&["depends", METAPACKAGE]);
    let depends = depends.with_context(|| format!("`{line}` failed: {hint}"))?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .find(|dep| dep.starts_with(spec.prefix))
        .with_context(|| {
            format!(
                "`{line}` names no {}* package, so there is no {} kernel to boot: {hint}",
                spec.prefix, spec.name
            )
        })?
        .to_owned();
    let (show_out, line) = apt_cache(&["show", "--no-all-versions", &package]);
    let version = show_out
        .as_deref()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("Version: ")))
        .with_context(|| format!("`{line}` gave no version: {hint}"))?
        .trim()
        .to_owned();
    Ok((package, version))
}

/// Downloads `package=version`, unpacks it and keeps its `vmlinuz`,
/// `config` and modules in `dir`, which appears only once complete.
fn download(package: &str, version: &str, dir: &Path) -> Result<()> {
    let parent = dir.parent().context("the cache directory has no parent")?;
    let staging = parent.join(format!(".download-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("could not remove {}", staging.display()))?;
    }
    fs::create_dir_all(&staging)
        .with_context(|| format!("could not create {}", staging.display()))?;
    let result = unpack_into(package, version, &staging).and_then(|()| {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::rename(&staging, dir)
            .with_context(|| format!("could not move the kernel to {}", dir.display()))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn unpack_into(package: &str, version: &str, staging: &Path) -> Result<()> {
    crate::cmd::run(
        Command::new("apt-get")
            .current_dir(staging)
            .args(["download", &format!("{package}={version}")]),
    )?;
    let deb = fs::read_dir(staging)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .with_context(|| format!("`apt-get download` left no .deb in {}", staging.display()))?;
    let tree = staging.join("tree");
    crate::cmd::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;
    let boot = tree.join("boot");
    for entry in fs::read_dir(&boot).with_context(|| format!("{} has no /boot", deb.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        for keep in ["vmlinuz", "config"] {
            if name.starts_with(&format!("{keep}-")) {
                fs::rename(&path, staging.join(keep))?;
            }
        }
    }
    ensure!(
        staging.join("vmlinuz").is_file(),
        "{} holds no boot/vmlinuz-*",
        deb.display()
    );
    let modules = tree.join(MODULES);
    ensure!(modules.is_dir(), "{} holds no {MODULES}", deb.display());
    fs::create_dir_all(staging.join("lib"))?;
    fs::rename(&modules, staging.join(MODULES))
        .with_context(|| format!("could not keep {}", modules.display()))?;
    // The rest (documentation, the System.map) is not needed.
    fs::remove_dir_all(&tree)?;
    fs::remove_file(&deb)?;
    Ok(())
}
