//! Boots one guest under qemu and waits for it, within a time limit.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::cmd::{on_path, show};

const QEMU: &str = "qemu-system-x86_64";
/// Room for the initramfs (unpacked into RAM), several tracers and the
/// workloads, with plenty to spare.
const MEMORY: &str = "1G";
const CPUS: &str = "2";

pub struct Guest<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// Where the logs go; created if missing, earlier logs replaced.
    pub logs: &'a Path,
    pub timeout: Duration,
}

pub struct Run {
    /// ttyS0: the kernel's messages and the init's.
    pub console: PathBuf,
    /// ttyS1: the scenario binary's output and the init's exit marker.
    pub output: PathBuf,
    /// qemu's own complaints.
    pub qemu_stderr: PathBuf,
    pub end: End,
    pub elapsed: Duration,
}

pub enum End {
    Exited(ExitStatus),
    /// Killed after the time limit.
    TimedOut,
}

/// Boots the guest and waits until it powers off, calling `on_line` for
/// each line of the scenario output as it arrives.
pub fn boot(guest: &Guest, mut on_line: impl FnMut(&str)) -> Result<Run> {
    if !on_path(QEMU) {
        bail!("{QEMU} is not installed: `cargo xtask setup` (as root) installs qemu-system-x86");
    }
    fs::create_dir_all(guest.logs)
        .with_context(|| format!("could not create {}", guest.logs.display()))?;
    let console = guest.logs.join("console.log");
    let output = guest.logs.join("scenarios.log");
    let stderr = guest.logs.join("qemu.stderr");
    for log in [&console, &output] {
        // qemu appends to nothing: it truncates. Created here so that the
        // reader below can open it at once.
        fs::write(log, b"").with_context(|| format!("could not create {}", log.display()))?;
    }
    let mut qemu = Command::new(QEMU);
    qemu.args(["-accel", "tcg", "-m", MEMORY, "-smp", CPUS])
        // Only what the guest uses: no network card, no display, no disks.
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(guest.vmlinuz)
        .arg("-initrd")
        .arg(guest.initramfs)
        // panic=-1 reboots at once on a panic, and -no-reboot turns that
        // into qemu's exit: a crashed guest ends the run, it does not hang.
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(chardev_file(&console))
        .arg("-serial")
        .arg(chardev_file(&output))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            fs::File::create(&stderr)
                .with_context(|| format!("could not create {}", stderr.display()))?,
        );
    let start = Instant::now();
    let mut child = qemu
        .spawn()
        .with_context(|| format!("could not start `{}`", show(&qemu)))?;
    let mut reader = LineReader::open(&output)?;
    let end = loop {
        let exited = child.try_wait().context("waiting for qemu")?;
        reader.poll(&mut on_line)?;
        if let Some(status) = exited {
            break End::Exited(status);
        }
        if start.elapsed() > guest.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break End::TimedOut;
        }
        thread::sleep(Duration::from_millis(200));
    };
    reader.poll(&mut on_line)?;
    reader.finish(&mut on_line);
    Ok(Run {
        console,
        output,
        qemu_stderr: stderr,
        end,
        elapsed: start.elapsed(),
    })
}

/// `file:PATH` for `-serial`; qemu's option syntax doubles commas.
fn chardev_file(path: &Path) -> String {
    format!("file:{}", path.to_string_lossy().replace(',', ",,"))
}

/// Follows a file that grows, handing out complete lines.
struct LineReader {
    file: fs::File,
    partial: Vec<u8>,
}

impl LineReader {
    fn open(path: &Path) -> Result<Self> {
        let file =
            fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
        Ok(Self {
            file,
            partial: Vec::new(),
        })
    }

    fn poll(&mut self, on_line: &mut impl FnMut(&str)) -> Result<()> {
        let mut buf = Vec::new();
        self.file
            .read_to_end(&mut buf)
            .context("reading the guest's output")?;
        self.partial.extend_from_slice(&buf);
        while let Some(newline) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=newline).collect();
            on_line(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']));
        }
        Ok(())
    }

    /// The last line, if it has no newline.
    fn finish(&mut self, on_line: &mut impl FnMut(&str)) {
        if !self.partial.is_empty() {
            on_line(String::from_utf8_lossy(&self.partial).trim_end_matches(['\r', '\n']));
            self.partial.clear();
        }
    }
}
