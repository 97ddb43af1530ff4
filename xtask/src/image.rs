//! `cargo xtask image`: tracer's container image, built offline from
//! deploy/Containerfile: the release binary of `cargo xtask dist` on a base
//! of Debian's C library that mmdebstrap unpacks from the apt archive. No
//! registry is reached and no container engine daemon runs: podman builds
//! and saves an OCI archive that containerd, podman and docker all load.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Context as _, Result};

use crate::{
    cmd::run,
    dist,
    setup::needs::{self, Needs},
    setup::BuildEnv,
    target_dir, workspace_root,
};

/// What building the image needs beyond a release: mmdebstrap unpacks the
/// base, podman builds the Containerfile (runc runs nothing here: the
/// recipe has no RUN step).
pub const NEEDS: Needs = Needs {
    purpose: "build the container image",
    apt: &["mmdebstrap", "podman", "runc"],
    pip: &[],
    crates: &[],
};

/// The Debian release whose C library the image carries.
const BASE_SUITE: &str = "bookworm";
/// What the release binary links (`objdump -p`: NEEDED libc.so.6,
/// libpthread.so.0, libdl.so.2 and the loader; zig links the unwinder in),
/// with its dependencies (libgcc-s1).
const BASE_PACKAGES: &str = "libc6";

/// What `cargo xtask image` produced.
pub struct Image {
    /// `localhost/tracer:VERSION`, as deploy/daemonset.yaml names it.
    pub reference: String,
    /// The OCI archive.
    pub archive: PathBuf,
}

/// The image reference deploy/daemonset.yaml uses.
pub fn reference() -> String {
    format!("localhost/tracer:{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the release, then the image, and saves it as an OCI archive.
pub fn image(env: &BuildEnv) -> Result<Image> {
    let release = dist::dist(env)?;
    build(&release.binary)
}

/// The image around `binary` (a release binary).
pub fn build(binary: &Path) -> Result<Image> {
    needs::ensure(&NEEDS)?;
    let dir = target_dir().join("image");
    let context = dir.join("context");
    if context.exists() {
        std::fs::remove_dir_all(&context)?;
    }
    std::fs::create_dir_all(&context)?;
    std::fs::copy(binary, context.join("tracer"))
        .with_context(|| format!("copying {}", binary.display()))?;
    // `--skip=output/dev`: the runtime gives a container its /dev.
    run(Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--variant=extract",
            "--skip=output/dev",
            &format!("--include={BASE_PACKAGES}"),
            BASE_SUITE,
        ])
        .arg(context.join("base.tar"))
        .arg(format!(
            "deb http://deb.debian.org/debian {BASE_SUITE} main"
        )))
    .context("unpacking the image's base (Debian's C library) with mmdebstrap")?;

    let reference = reference();
    let containerfile = workspace_root().join("deploy/Containerfile");
    // --quiet still prints the image id: the archive is what is reported.
    run(Command::new("podman")
        .stdout(std::process::Stdio::null())
        .args(["build", "--quiet", "--tag", &reference, "--file"])
        .arg(&containerfile)
        .args([
            "--label",
            &format!(
                "org.opencontainers.image.version={}",
                env!("CARGO_PKG_VERSION")
            ),
        ])
        .arg(&context))
    .context("building the image with podman")?;
    let archive = dir.join(format!("tracer-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    if archive.exists() {
        std::fs::remove_file(&archive)?;
    }
    run(Command::new("podman")
        .args(["save", "--quiet", "--format", "oci-archive", "--output"])
        .arg(&archive)
        .arg(&reference))
    .context("saving the image")?;
    ensure!(archive.is_file(), "podman saved no {}", archive.display());
    println!("image: {reference} saved as {}", archive.display());
    Ok(Image { reference, archive })
}
