//! The release binary on an older distribution: a Debian bullseye chroot
//! (glibc 2.31, older than the 2.34 a binary linked on bookworm asks for)
//! runs `tracer doctor`, then `tracer watch` while a process in it is
//! killed, and the kill must be reported and explained.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{ensure, Context as _, Result};

use super::{output_of, records::Records, wait_for_comm, Running, WAIT};
use crate::{cmd::run, setup::toolchain_dir};

const SUITE: &str = "bullseye";
/// What the chroot's C library must say it is.
const GLIBC_RELEASE: &str = "release version 2.31";
/// Where the release's files go inside the chroot.
const INSTALL_DIR: &str = "opt/tracer-release";

/// Runs the release binary in `unpacked` (its directory from the tarball)
/// inside the bullseye chroot.
pub fn test(unpacked: &Path) -> Result<()> {
    let root = bullseye()?;
    let libc = output_of(
        Command::new("chroot")
            .arg(&root)
            .arg("/lib/x86_64-linux-gnu/libc.so.6"),
    )?;
    ensure!(
        libc.contains(GLIBC_RELEASE),
        "the {SUITE} chroot's C library is not 2.31: {}",
        libc.lines().next().unwrap_or_default()
    );

    let dir = root.join(INSTALL_DIR);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    fs::copy(unpacked.join("tracer"), dir.join("tracer"))?;
    let tracer = format!("/{INSTALL_DIR}/tracer");

    let doctor = in_chroot(&root, &[&tracer, "doctor"])
        .output()
        .context("running tracer doctor in the chroot")?;
    let said = String::from_utf8_lossy(&doctor.stdout);
    ensure!(
        doctor.status.success() && said.contains("verdict:    ready"),
        "`tracer doctor` in the {SUITE} chroot failed ({}):\n{said}{}",
        doctor.status,
        String::from_utf8_lossy(&doctor.stderr)
    );
    println!("deploy-test: release: `tracer doctor` ready in a {SUITE} chroot (glibc 2.31)");

    let events = format!("/{INSTALL_DIR}/events.jsonl");
    let records = Records::appended_to(&dir.join("events.jsonl"), |_| true);
    let mut watch = in_chroot(
        &root,
        &[&tracer, "watch", "--signals", "KILL", "--output", &events],
    );
    watch
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("stdout.txt"))?)
        .stderr(fs::File::create(dir.join("stderr.txt"))?);
    let mut tracer_process = Running::spawn("tracer watch in the chroot", &mut watch)?;
    records.wait_for(
        "the start record",
        WAIT,
        || tracer_process.alive(),
        |r| r["kind"] == "start",
    )?;

    // chroot(8) execs the program: the child's PID is sleep's.
    let mut victim = Running::spawn(
        "sleep in the chroot",
        Command::new("chroot")
            .arg(&root)
            .args(["/bin/sleep", "3600"]),
    )?;
    let victim_pid = victim.pid();
    wait_for_comm(victim_pid, "sleep")?;
    run(Command::new("chroot").arg(&root).args([
        "/bin/kill",
        "-s",
        "KILL",
        &victim_pid.to_string(),
    ]))?;
    victim.wait()?;

    let kill = records.wait_for(
        "the SIGKILL record",
        WAIT,
        || tracer_process.alive(),
        |r| {
            r["kind"] == "signal"
                && r["target"]["pid"] == victim_pid
                && r["signal"]["name"] == "SIGKILL"
        },
    )?;
    ensure!(
        kill["sender"]["comm"] == "kill" && kill["signal"]["origin"] == "kill",
        "the SIGKILL is not blamed on kill(2) from `kill`: {kill}"
    );
    let exit = records.wait_for(
        "the exit record",
        WAIT,
        || tracer_process.alive(),
        |r| r["kind"] == "exit" && r["process"]["pid"] == victim_pid,
    )?;
    ensure!(
        exit["exit_code"] == 137 && exit["after_signal"]["sender_comm"] == "kill",
        "the exit is not explained as killed by `kill` (137): {exit}"
    );
    tracer_process.interrupt_and_wait(Duration::from_secs(10))?;
    println!(
        "deploy-test: release: in the {SUITE} chroot, `kill -s KILL {victim_pid}` was reported and the exit explained (137)"
    );
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `args` run chrooted into `root` in a private mount namespace that has the
/// host's /proc, /sys and /dev bound in (tracer reads processes, BTF, tracefs
/// and cgroups there); the mounts go with the namespace.
fn in_chroot(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"for dir in proc sys dev; do mount --rbind "/$dir" "$0/$dir" || exit 1; done; exec chroot "$0" "$@""#,
        )
        .arg(root)
        .args(args);
    command
}

/// The bullseye tree, made once with mmdebstrap from the Debian archive apt
/// reaches and kept under the toolchain directory (about 140 MB, a minute).
fn bullseye() -> Result<PathBuf> {
    let dir = toolchain_dir()?.join("chroot").join(SUITE);
    if dir.join("etc/debian_version").is_file() {
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    fs::create_dir_all(partial.parent().expect("a parent"))?;
    println!(
        "deploy-test: making a Debian {SUITE} chroot in {} (once, about a minute)",
        dir.display()
    );
    run(Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase", "--include=procps", SUITE])
        .arg(&partial)
        .arg(format!("deb http://deb.debian.org/debian {SUITE} main")))?;
    fs::rename(&partial, &dir)?;
    Ok(dir)
}
