//! `cargo xtask dist`: a `tracer` that starts on glibc 2.17 and newer (CentOS 7,
//! Amazon Linux 2, RHEL 8, Ubuntu 20.04, ...), with its BPF programs embedded,
//! packed as `target/dist/tracer-VERSION-x86_64-linux-gnu.tar.gz` (binary,
//! README, licences) beside a `SHA256SUMS`.
//!
//! A binary linked on this machine asks for the symbol versions of this
//! machine's glibc (2.36). cargo-zigbuild links instead with zig's linker
//! against stubs of glibc 2.17 (`--target x86_64-unknown-linux-gnu.2.17`),
//! so the loader of any newer glibc is satisfied. Only the host's tracer
//! build goes through zig: tracer/build.rs still builds the BPF object with
//! the BPF toolchain and bpf-linker.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{
    cmd::run,
    setup::needs::{self, Needs},
    setup::BuildEnv,
    target_dir, workspace_root,
};

/// The oldest glibc the release runs on.
pub const GLIBC_FLOOR: (u32, u32) = (2, 17);
const TARGET: &str = "x86_64-unknown-linux-gnu";
const CARGO_ZIGBUILD: (&str, &str) = ("cargo-zigbuild", "0.24.1");
const ZIGLANG: (&str, &str) = ("ziglang", "0.17.1");

/// What building a release needs beyond what building tracer needs: zig
/// (PyPI carries the compiler) and cargo-zigbuild; `binutils` for
/// `objdump`, which checks the result; `tar` and `coreutils` pack it.
pub const NEEDS: Needs = Needs {
    purpose: "build a release",
    apt: &["binutils", "tar", "coreutils", "gzip"],
    pip: &[ZIGLANG],
    crates: &[CARGO_ZIGBUILD],
};

/// What `cargo xtask dist` produced.
pub struct Release {
    /// The portable binary as built (not the copy in the tarball).
    pub binary: PathBuf,
    pub tarball: PathBuf,
    pub sums: PathBuf,
    /// The directory name inside the tarball.
    pub stem: String,
}

/// Builds the portable binary, checks its glibc floor and packs it.
pub fn dist(env: &BuildEnv) -> Result<Release> {
    needs::ensure(&NEEDS)?;
    let binary = build_portable(env)?;
    let newest = newest_glibc(&binary)?;
    ensure!(
        newest <= GLIBC_FLOOR,
        "{} needs GLIBC_{}.{}, newer than the {}.{} a release promises",
        binary.display(),
        newest.0,
        newest.1,
        GLIBC_FLOOR.0,
        GLIBC_FLOOR.1
    );
    let release = pack(&binary)?;
    println!(
        "dist: {} (needs glibc {}.{} or newer) and {}",
        release.tarball.display(),
        newest.0,
        newest.1,
        release.sums.display()
    );
    Ok(release)
}

/// `cargo zigbuild --release` for `x86_64-unknown-linux-gnu.2.17`; returns
/// the binary.
fn build_portable(env: &BuildEnv) -> Result<PathBuf> {
    let zig_dir = needs::python_dir()?.join("ziglang");
    let zigbuild_dir = needs::crate_bin_dir(CARGO_ZIGBUILD.0)?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        [zigbuild_dir, zig_dir]
            .into_iter()
            .chain(std::env::split_paths(&path)),
    )
    .context("joining PATH")?;
    let target = format!("{TARGET}.{}.{}", GLIBC_FLOOR.0, GLIBC_FLOOR.1);
    let mut build = Command::new("cargo");
    build
        .current_dir(workspace_root())
        .args(["zigbuild", "--release", "--package", "tracer", "--target"])
        .arg(&target)
        .envs(env.vars())
        .env("PATH", path);
    run(&mut build)?;
    // cargo-zigbuild drops the glibc suffix from the output directory.
    let binary = target_dir().join(TARGET).join("release/tracer");
    ensure!(binary.is_file(), "{} was not built", binary.display());
    Ok(binary)
}

/// The newest glibc symbol version `binary` requires (its `.gnu.version_r`
/// entries for libc, libm, libpthread, ...: what the dynamic loader checks).
pub fn newest_glibc(binary: &Path) -> Result<(u32, u32)> {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(binary)
        .output()
        .context("could not start `objdump` (Debian package binutils)")?;
    ensure!(
        out.status.success(),
        "`objdump -p {}` failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    glibc_versions(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .max()
        .with_context(|| format!("{} requires no glibc version at all", binary.display()))
}

/// Every `GLIBC_X.Y[.Z]` in the "Version References" part of `objdump -p`.
fn glibc_versions(objdump: &str) -> Vec<(u32, u32)> {
    objdump
        .lines()
        .skip_while(|line| !line.starts_with("Version References:"))
        .filter_map(|line| line.split_whitespace().last()?.strip_prefix("GLIBC_"))
        .filter_map(|version| {
            let mut parts = version.split('.').map(str::parse::<u32>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .collect()
}

/// `target/dist/tracer-VERSION-x86_64-linux-gnu.tar.gz` with the binary,
/// README.md and both licences in a directory of that name, and SHA256SUMS.
/// The archive is reproducible: sorted names, root owner, the last commit's
/// time on every file.
fn pack(binary: &Path) -> Result<Release> {
    let version = env!("CARGO_PKG_VERSION");
    let stem = format!("tracer-{version}-x86_64-linux-gnu");
    let dist = target_dir().join("dist");
    let staging = dist.join(&stem);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)?;
    let root = workspace_root();
    for (from, to) in [
        (binary.to_path_buf(), "tracer"),
        (root.join("README.md"), "README.md"),
        (root.join("LICENSE-MIT"), "LICENSE-MIT"),
        (root.join("LICENSE-APACHE"), "LICENSE-APACHE"),
    ] {
        std::fs::copy(&from, staging.join(to))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    let tarball_name = format!("{stem}.tar.gz");
    let mtime = last_commit_time().unwrap_or(0);
    run(Command::new("tar")
        .current_dir(&dist)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            &format!("--mtime=@{mtime}"),
            "-cf",
        ])
        .arg(format!("{stem}.tar"))
        .arg(&stem))?;
    // gzip -n: no name or time stamp in the header, so equal trees give equal bytes.
    run(Command::new("gzip")
        .current_dir(&dist)
        .args(["-n", "-9", "-f"])
        .arg(format!("{stem}.tar")))?;
    std::fs::remove_dir_all(&staging)?;
    let sums = Command::new("sha256sum")
        .current_dir(&dist)
        .arg(&tarball_name)
        .output()
        .context("could not start `sha256sum`")?;
    ensure!(sums.status.success(), "sha256sum {tarball_name} failed");
    let sums_path = dist.join("SHA256SUMS");
    std::fs::write(&sums_path, &sums.stdout)?;
    Ok(Release {
        binary: binary.to_path_buf(),
        tarball: dist.join(tarball_name),
        sums: sums_path,
        stem,
    })
}

fn last_commit_time() -> Option<u64> {
    let out = Command::new("git")
        .current_dir(workspace_root())
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Unpacks a release after checking it against SHA256SUMS, as a user
/// would; returns the unpacked directory.
pub fn unpack_verified(release: &Release, into: &Path) -> Result<PathBuf> {
    let dist = release
        .tarball
        .parent()
        .context("tarball has a directory")?;
    let check = Command::new("sha256sum")
        .current_dir(dist)
        .args(["--check", "--strict"])
        .arg(&release.sums)
        .output()
        .context("could not start `sha256sum`")?;
    if !check.status.success() {
        bail!(
            "{} does not match {}: {}",
            release.tarball.display(),
            release.sums.display(),
            String::from_utf8_lossy(&check.stdout)
        );
    }
    std::fs::create_dir_all(into)?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&release.tarball)
        .arg("-C")
        .arg(into))?;
    let dir = into.join(&release.stem);
    for file in ["tracer", "README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
        ensure!(
            dir.join(file).is_file(),
            "the release has no {file} in {}",
            release.stem
        );
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_required_glibc_version_is_read_from_the_version_references() {
        let objdump = "\
Dynamic Section:
  NEEDED               libc.so.6
Version definitions:
1 0x01 0x0a2f7d7e GLIBC_2.99
Version References:
  required from libgcc_s.so.1:
    0x09276060 0x00 05 GCC_4.2.0
  required from libc.so.6:
    0x0d696914 0x00 04 GLIBC_2.4
    0x06969194 0x00 03 GLIBC_2.14
    0x069691b4 0x00 06 GLIBC_2.34
    0x09691a75 0x00 02 GLIBC_2.2.5
";
        let versions = glibc_versions(objdump);
        assert_eq!(versions, [(2, 4), (2, 14), (2, 34), (2, 2)]);
        assert_eq!(versions.into_iter().max(), Some((2, 34)));
    }
}
