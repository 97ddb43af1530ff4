//! The paths a user gives for the host (`--procfs`, `--host-root`, `--btf`)
//! and the process to follow (`--pid`), checked before anything is attached:
//! each wrong one is one line that says what is wrong, not a hang, not a run
//! that silently names no pod, not a failure after the programs are on.

use std::{fs, os::unix::fs::FileTypeExt as _, path::Path};

use anyhow::{bail, Result};

use crate::cli::HostArgs;

/// PROC_SUPER_MAGIC, include/uapi/linux/magic.h.
const PROC_SUPER_MAGIC: u32 = 0x9fa0;

/// Checks `--procfs`, `--host-root` and `--btf`.
pub fn check(host: &HostArgs) -> Result<()> {
    check_procfs(&host.procfs)?;
    check_host_root(&host.host_root)?;
    if let Some(btf) = &host.btf {
        check_btf(btf)?;
    }
    Ok(())
}

/// `--procfs` must be a mounted procfs: an empty or ordinary directory would
/// give no processes, no cgroups and so no pod names, silently.
fn check_procfs(procfs: &Path) -> Result<()> {
    let magic = match nix::sys::statfs::statfs(procfs) {
        Ok(fs) => fs.filesystem_type().0 as u32,
        Err(e) => bail!("--procfs {}: {}", procfs.display(), e.desc()),
    };
    if magic != PROC_SUPER_MAGIC || !procfs.join("self").exists() {
        bail!(
            "--procfs {}: not a procfs mount (give the host's /proc: /proc itself with hostPID)",
            procfs.display()
        );
    }
    Ok(())
}

/// `--host-root` must be a directory. Kubelet's directories below it may be
/// missing (a node without kubelet), but a root that is not there at all is
/// a typo or a volume that was not mounted.
fn check_host_root(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("--host-root {}: not a directory", root.display()),
        Err(e) => bail!("--host-root {}: {e}", root.display()),
    }
}

/// `--btf` must be a regular file: a FIFO would block the read forever, a
/// device would be read without end. A missing file is left to the BTF
/// loader, whose message says what to do.
fn check_btf(btf: &Path) -> Result<()> {
    let Ok(meta) = fs::metadata(btf) else {
        return Ok(());
    };
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        bail!(
            "--btf {}: {what}; give a BTF file (such as a copy of /sys/kernel/btf/vmlinux)",
            btf.display()
        );
    }
    Ok(())
}

/// What `--pid` names, from `<procfs>/<pid>/status`.
pub fn check_pid(procfs: &Path, pid: u32) -> Result<()> {
    let dir = procfs.join(pid.to_string());
    // /proc/<tid> of a thread opens although /proc does not list it.
    let Ok(status) = fs::read_to_string(dir.join("status")) else {
        bail!(
            "no process with PID {pid} on this node (looked in {})",
            procfs.display()
        );
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if let Some(tgid) = field("Tgid").and_then(|t| t.parse::<u32>().ok()) {
        if tgid != pid {
            bail!("--pid {pid} is a thread of process {tgid}: give the process, --pid {tgid}");
        }
    }
    if is_kernel_thread(&dir, field("Kthread")) {
        bail!(
            "--pid {pid} is a kernel thread ({}): it belongs to no container or pod; give a process of the workload",
            crate::output::escape::escape(field("Name").unwrap_or("?"))
        );
    }
    Ok(())
}

/// `Kthread: 1` in status where the kernel says so (6.5 and later), else
/// PF_KTHREAD in the flags of /proc/<pid>/stat.
fn is_kernel_thread(dir: &Path, kthread_field: Option<&str>) -> bool {
    if let Some(value) = kthread_field {
        return value == "1";
    }
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = fs::read_to_string(dir.join("stat")) else {
        return false;
    };
    // The comm in parentheses may hold spaces and ')': count from the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(procfs: &str, host_root: &str, btf: Option<&str>) -> HostArgs {
        HostArgs {
            procfs: procfs.into(),
            host_root: host_root.into(),
            btf: btf.map(Into::into),
        }
    }

    fn error(host: &HostArgs) -> String {
        let message = format!("{:#}", check(host).expect_err("should be refused"));
        assert!(!message.contains('\n'), "{message}");
        message
    }

    #[test]
    fn the_machine_s_own_paths_pass() {
        check(&host("/proc", "/", None)).unwrap();
        check(&host("/proc", "/", Some("/sys/kernel/btf/vmlinux"))).unwrap();
    }

    #[test]
    fn bad_procfs() {
        let empty = tempfile::tempdir().unwrap();
        let empty = empty.path().to_str().unwrap();
        assert!(error(&host("/nonexistent", "/", None)).starts_with("--procfs /nonexistent: "));
        assert!(error(&host(empty, "/", None)).contains("not a procfs"));
        // sysfs is no procfs either.
        assert!(error(&host("/sys", "/", None)).contains("not a procfs"));
    }

    #[test]
    fn bad_host_root() {
        let message = error(&host("/proc", "/nonexistent", None));
        assert!(
            message.starts_with("--host-root /nonexistent: "),
            "{message}"
        );
        assert!(error(&host("/proc", "/etc/hostname", None)).contains("not a directory"));
    }

    #[test]
    fn btf_fifo_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let message = error(&host("/proc", "/", Some(fifo.to_str().unwrap())));
        assert!(message.contains("a FIFO"), "{message}");
        let message = error(&host("/proc", "/", Some(dir.path().to_str().unwrap())));
        assert!(message.contains("a directory"), "{message}");
    }

    #[test]
    fn pids_of_threads_and_kernel_threads() {
        check_pid(Path::new("/proc"), std::process::id()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let message = format!("{:#}", check_pid(Path::new("/proc"), tid).unwrap_err());
        assert_eq!(
            message,
            format!(
                "--pid {tid} is a thread of process {}: give the process, --pid {}",
                std::process::id(),
                std::process::id()
            )
        );
        stop_tx.send(()).unwrap();
        thread.join().unwrap();
        // kthreadd is PID 2 on every Linux.
        let message = format!("{:#}", check_pid(Path::new("/proc"), 2).unwrap_err());
        assert!(
            message.starts_with("--pid 2 is a kernel thread (kthreadd)"),
            "{message}"
        );
        assert!(check_pid(Path::new("/proc"), 4_194_305).is_err());
    }
}
