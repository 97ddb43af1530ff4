//! The guest kernels: Debian's cloud kernels, fetched with apt and cached
//! outside the repository. Kept are `vmlinuz`, `config` and the modules
//! (`lib/modules/<release>`): most of what the scenarios touch (virtio,
//! serial, tmpfs, cgroups, BPF, BTF) is built in, but netfilter and veth,
//! which the DNS scenarios need, are modules. The whole module tree is kept
//! so that any module's dependencies are at hand.
//!
//! Each kernel line is resolved and downloaded through an apt of its own
//! ([`GuestApt`]): its suites only, its own lists, no dpkg status. The
//! machine's apt never sees bullseye or trixie, so fetching a guest kernel
//! cannot change what the host installs or upgrades, and needs no root.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{
    cmd::{probe, show},
    setup,
};

/// The metapackage whose dependency names the current versioned kernel.
const METAPACKAGE: &str = "linux-image-cloud-amd64";

pub struct Spec {
    /// What `--kernel` calls it.
    pub name: &'static str,
    /// The Debian suites the kernel comes from; the highest version among
    /// them wins, as apt's candidate.
    suites: &'static [&'static str],
    /// The metapackage's versioned dependency of this line starts with this.
    prefix: &'static str,
}

pub const KERNELS: [Spec; 4] = [
    // Debian 11: the oldest LTS line still widely run on nodes.
    Spec {
        name: "5.10",
        suites: &["bullseye", "bullseye-security"],
        prefix: "linux-image-5.10.",
    },
    Spec {
        name: "6.1",
        suites: &["bookworm", "bookworm-updates", "bookworm-security"],
        prefix: "linux-image-6.1.",
    },
    Spec {
        name: "6.12",
        suites: &["bookworm-backports"],
        prefix: "linux-image-6.12.",
    },
    // Whatever line trixie-backports carries now: the archive keeps the
    // modules of its current line only (6.19's left it for 7.x), so a
    // fixed older line could not be booted with its modules for long.
    Spec {
        name: "newest",
        suites: &["trixie-backports"],
        prefix: "linux-image-",
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
    let apt = GuestApt::new(spec)?;
    if !apt.has_lists() {
        apt.update()?;
        return fetch_once(spec, &apt);
    }
    match fetch_once(spec, &apt) {
        Ok(kernel) => Ok(kernel),
        // The lists may be older than the mirror, which drops superseded
        // kernels: refresh them once and try again.
        Err(err) => {
            println!("vm-test: {err:#}\nvm-test: refreshing the {} kernel's package lists and trying again", spec.name);
            apt.update()?;
            fetch_once(spec, &apt)
        }
    }
}

fn fetch_once(spec: &Spec, apt: &GuestApt) -> Result<Kernel> {
    let (package, version) = resolve(spec, apt)?;
    let dir = setup::toolchain_dir()?
        .join("vm")
        .join("kernels")
        .join(spec.name)
        .join(format!("{package}_{version}"));
    let vmlinuz = dir.join("vmlinuz");
    if !vmlinuz.is_file() || !dir.join(MODULES).is_dir() {
        println!("vm-test: downloading {package} {version}");
        download(apt, &package, &version, &dir)?;
        prune_older(&dir);
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

/// An apt confined to one kernel line's suites, with its state under the
/// toolchain cache: `-o` options replace every directory apt would read or
/// write on the machine's behalf (sources, lists, archives, preferences,
/// dpkg status).
struct GuestApt {
    dir: PathBuf,
}

impl GuestApt {
    fn new(spec: &Spec) -> Result<GuestApt> {
        let dir = setup::toolchain_dir()?
            .join("vm")
            .join("apt")
            .join(spec.name);
        for sub in ["lists/partial", "archives/partial", "parts"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("could not create {}", dir.join(sub).display()))?;
        }
        let mut sources = format!(
            "# Written by tracer's `cargo xtask vm-test`: the {} guest kernel's suites.\n",
            spec.name
        );
        for suite in spec.suites {
            sources.push_str(&setup::mirror_source(suite)?.line());
            sources.push('\n');
        }
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(&sources) {
            fs::write(&list, sources)
                .with_context(|| format!("could not write {}", list.display()))?;
            // Lists of other suites must not linger.
            let _ = fs::remove_dir_all(dir.join("lists"));
            fs::create_dir_all(dir.join("lists/partial"))?;
        }
        let status = dir.join("status");
        if !status.is_file() {
            fs::write(&status, "")
                .with_context(|| format!("could not write {}", status.display()))?;
        }
        Ok(GuestApt { dir })
    }

    /// `apt-get` or `apt-cache` with this line's configuration.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let path = |sub: &str| self.dir.join(sub).display().to_string();
        for (key, value) in [
            ("Dir::Etc::SourceList", path("sources.list")),
            ("Dir::Etc::SourceParts", path("parts")),
            ("Dir::Etc::Preferences", path("parts/none")),
            ("Dir::Etc::PreferencesParts", path("parts")),
            ("Dir::State::Lists", path("lists")),
            ("Dir::State::status", path("status")),
            ("Dir::Cache", path("")),
            ("Dir::Cache::archives", path("archives")),
            // Only the package lists: no translations or AppStream data.
            ("Acquire::Languages", "none".to_owned()),
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".to_owned(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
                "false".to_owned(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
                "false".to_owned(),
            ),
            (
                "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled",
                "false".to_owned(),
            ),
        ] {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        if setup::is_root() {
            // apt's unprivileged download user cannot write into the cache
            // under root's home; the files are verified against the signed
            // lists either way.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.dir.join("lists")).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_string_lossy().ends_with("_Packages")
                    || e.file_name().to_string_lossy().contains("_Packages.")
            })
        })
    }

    fn update(&self) -> Result<()> {
        crate::cmd::run(self.command("apt-get").args(["-q", "update"]))
    }
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

/// Removes the cached kernels of this line other than `kept`: a new version
/// replaces the old one, so the cache does not grow without end.
fn prune_older(kept: &Path) {
    let Some(cache) = kept.parent() else { return };
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path != kept
            && !path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .starts_with('.')
        {
            // Best effort: a leftover only costs disk space.
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The versioned package the metapackage depends on, and its version.
fn resolve(spec: &Spec, apt: &GuestApt) -> Result<(String, String)> {
    let apt_cache = |args: &[&str]| {
        let mut cmd = apt.command("apt-cache");
        cmd.args(args);
        let out = probe(&mut cmd);
        (out, show(&cmd))
    };
    let (depends, line) = apt_cache(&["depends", METAPACKAGE]);
    let depends = depends.with_context(|| format!("`{line}` failed"))?;
    let package = depends_of(&depends)
        .into_iter()
        .find(|dep| dep.starts_with(spec.prefix) && dep.ends_with("-cloud-amd64"))
        .with_context(|| {
            format!(
                "`{line}` names no {}*-cloud-amd64 package, so there is no {} kernel to boot",
                spec.prefix, spec.name
            )
        })?;
    let (show_out, line) = apt_cache(&["show", "--no-all-versions", &package]);
    let version = show_out
        .as_deref()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("Version: ")))
        .with_context(|| format!("`{line}` gave no version"))?
        .trim()
        .to_owned();
    Ok((package, version))
}

/// The real packages an `apt-cache depends` output lists as `Depends:`
/// (virtual ones, in angle brackets, have no archive to download).
fn depends_of(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .filter(|dep| !dep.starts_with('<'))
        .map(str::to_owned)
        .collect()
}

/// The packages that make up the kernel `package`: itself, and since 6.19
/// the parts Debian splits it into (`linux-binary-*`, `linux-modules-*`,
/// `linux-base-*`, named after the same ABI), which the image only
/// depends on.
fn parts(apt: &GuestApt, package: &str) -> Result<Vec<String>> {
    let abi = package
        .strip_prefix("linux-image-")
        .with_context(|| format!("{package} is not a linux-image-* package"))?;
    let mut cmd = apt.command("apt-cache");
    cmd.args(["depends", package]);
    let depends = probe(&mut cmd).with_context(|| format!("`{}` failed", show(&cmd)))?;
    let mut parts = vec![package.to_owned()];
    parts.extend(
        depends_of(&depends)
            .into_iter()
            .filter(|dep| dep.ends_with(&format!("-{abi}"))),
    );
    Ok(parts)
}

/// Downloads `package=version` and its parts, unpacks them and keeps the
/// `vmlinuz`, `config` and modules in `dir`, which appears only once complete.
fn download(apt: &GuestApt, package: &str, version: &str, dir: &Path) -> Result<()> {
    let parent = dir.parent().context("the cache directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
    let staging = parent.join(format!(".download-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("could not remove {}", staging.display()))?;
    }
    fs::create_dir_all(&staging)
        .with_context(|| format!("could not create {}", staging.display()))?;
    let result = unpack_into(apt, package, version, &staging).and_then(|()| {
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

fn unpack_into(apt: &GuestApt, package: &str, version: &str, staging: &Path) -> Result<()> {
    let mut wanted = parts(apt, package)?;
    // The image at the version resolved; its parts are built with it.
    wanted[0] = format!("{package}={version}");
    crate::cmd::run(
        apt.command("apt-get")
            .current_dir(staging)
            .arg("download")
            .args(&wanted),
    )?;
    let debs: Vec<PathBuf> = fs::read_dir(staging)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    ensure!(
        debs.len() == wanted.len(),
        "`apt-get download {}` left {} .deb files in {}",
        wanted.join(" "),
        debs.len(),
        staging.display()
    );
    let tree = staging.join("tree");
    for deb in &debs {
        crate::cmd::run(Command::new("dpkg").arg("-x").arg(deb).arg(&tree))?;
    }
    // Up to 6.12 the image holds /boot/vmlinuz-<release> and
    // /lib/modules/<release>; the split packages of later lines put
    // everything, vmlinuz and config included, in /usr/lib/modules/<release>.
    let modules = [tree.join(MODULES), tree.join("usr").join(MODULES)]
        .into_iter()
        .find(|path| path.is_dir())
        .with_context(|| format!("{package} holds no {MODULES} or usr/{MODULES}"))?;
    let boot = tree.join("boot");
    if boot.is_dir() {
        for entry in fs::read_dir(&boot)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            for keep in ["vmlinuz", "config"] {
                if name.starts_with(&format!("{keep}-")) {
                    fs::rename(&path, staging.join(keep))?;
                }
            }
        }
    }
    for release in fs::read_dir(&modules)? {
        let release = release?.path();
        for keep in ["vmlinuz", "config"] {
            if release.join(keep).is_file() {
                fs::rename(release.join(keep), staging.join(keep))?;
            }
        }
    }
    ensure!(
        staging.join("vmlinuz").is_file(),
        "{} hold no boot/vmlinuz-* or {MODULES}/*/vmlinuz",
        wanted.join(" ")
    );
    fs::create_dir_all(staging.join("lib"))?;
    fs::rename(&modules, staging.join(MODULES))
        .with_context(|| format!("could not keep {}", modules.display()))?;
    // The rest (documentation, the System.map) is not needed.
    fs::remove_dir_all(&tree)?;
    for deb in &debs {
        fs::remove_file(deb)?;
    }
    Ok(())
}
