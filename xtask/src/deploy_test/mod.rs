//! `cargo xtask deploy-test`: the ways to install tracer, each tried for
//! real (the third, from source, is what the rest of the suite builds):
//! - the release tarball: checksums, glibc floor, and the binary run in a
//!   Debian bullseye chroot ([`chroot`]);
//! - the DaemonSet: deploy/daemonset.yaml checked against the Kubernetes
//!   schema, and tracer's image run under containerd with exactly its
//!   settings, beside busybox pods it must explain ([`daemonset`]).

mod chroot;
mod confinement;
mod containerd;
mod daemonset;
mod manifest;
mod records;
mod usage;

use std::{
    fs,
    io::Read as _,
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{
    dist, image,
    setup::needs::{self, Needs},
    setup::{is_root, BuildEnv},
    target_dir, workspace_root,
};

/// What the deployment tests need beyond building a release and an image:
/// mmdebstrap makes the bullseye chroot, util-linux's unshare and mount
/// give it the host's /proc and /sys; containerd and runc run the pods and
/// tracer's image; busybox-static is what the pods run; kubernetes-validate
/// carries the Kubernetes schemas (and PyYAML, which reads the manifest).
pub const NEEDS: Needs = Needs {
    purpose: "test the release and the DaemonSet",
    apt: &[
        "mmdebstrap",
        "util-linux",
        "containerd",
        "runc",
        "busybox-static",
    ],
    pip: &[("kubernetes-validate", "1.37.0")],
    crates: &[],
};

/// How long to wait for a record or a process.
const WAIT: Duration = Duration::from_secs(30);

pub fn run(env: &BuildEnv) -> Result<()> {
    ensure!(
        is_root(),
        "deploy-test needs root: it makes a chroot, starts containerd and loads BPF programs"
    );
    let started = Instant::now();
    // Everything first, so a missing tool stops the test before it builds.
    for needs in needs::release_and_deployment() {
        needs::ensure(needs)?;
    }
    let work = target_dir().join("deploy-test");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;

    let release = dist::dist(env)?;
    let unpacked = dist::unpack_verified(&release, &work.join("release"))?;
    let binary = unpacked.join("tracer");
    let newest = dist::newest_glibc(&binary)?;
    ensure!(
        newest <= dist::GLIBC_FLOOR,
        "the released tracer needs GLIBC_{}.{}",
        newest.0,
        newest.1
    );
    println!(
        "deploy-test: release: {} matches SHA256SUMS; tracer needs GLIBC_{}.{} at most",
        release.tarball.display(),
        newest.0,
        newest.1
    );
    chroot::test(&unpacked)?;

    let manifest = workspace_root().join("deploy/daemonset.yaml");
    manifest::validate(&manifest)?;
    refuses_a_misspelt_manifest(&manifest, &work)?;
    println!(
        "deploy-test: daemonset: {} is valid for Kubernetes {}",
        manifest.display(),
        manifest::KUBERNETES_VERSIONS.join(" and ")
    );

    let image = image::build(&binary)?;
    daemonset::test(&image, &manifest, &work)?;
    let secs = started.elapsed().as_secs();
    println!(
        "deploy-test: release binary and DaemonSet ok in {}m{:02}s",
        secs / 60,
        secs % 60
    );
    Ok(())
}

/// The schema check can fail: `hostPid` for `hostPID` must be refused.
fn refuses_a_misspelt_manifest(manifest: &std::path::Path, work: &std::path::Path) -> Result<()> {
    let text = fs::read_to_string(manifest)?;
    ensure!(
        text.contains("hostPID: true"),
        "the manifest has no hostPID"
    );
    let misspelt = work.join("misspelt.yaml");
    fs::write(&misspelt, text.replace("hostPID: true", "hostPid: true"))?;
    ensure!(
        manifest::validate(&misspelt).is_err(),
        "kubernetes-validate accepted `hostPid`, a field Kubernetes does not have"
    );
    Ok(())
}

/// A process the test started, killed if the test ends first.
struct Running {
    what: &'static str,
    child: Option<Child>,
}

impl Running {
    fn spawn(what: &'static str, command: &mut Command) -> Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("could not start {what}"))?;
        Ok(Self {
            what,
            child: Some(child),
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails once the process has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!("{} exited ({status})", self.what);
        }
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    /// SIGINT, as Ctrl-C sends; the process must exit 0 within `timeout`.
    fn interrupt_and_wait(&mut self, timeout: Duration) -> Result<()> {
        signal(self.pid(), libc::SIGINT)?;
        let mut child = self.child.take().context("not running")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(
                    status.success(),
                    "{} exited with {status} after SIGINT",
                    self.what
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} still ran {timeout:?} after SIGINT", self.what);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, signal: i32) -> Result<()> {
    // SAFETY: kill(2) with a PID this test started.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    ensure!(rc == 0, "kill {pid}: {}", std::io::Error::last_os_error());
    Ok(())
}

/// Waits until `pid` runs `comm` (after its exec).
fn wait_for_comm(pid: u32, comm: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(10));
    }
    bail!("process {pid} never became {comm}")
}

/// The stdout of `command`, which must succeed.
fn output_of(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("could not start `{}`", crate::cmd::show(command)))?;
    ensure!(
        out.status.success(),
        "`{}` failed ({}): {}",
        crate::cmd::show(command),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
