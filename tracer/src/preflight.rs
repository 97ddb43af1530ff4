//! Checks done before anything is attached, each failing with one line that
//! says what to do.

use std::{fs, path::Path};

use anyhow::{bail, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Loading tracing programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("tracer needs root (or CAP_BPF and CAP_PERFMON) to load its kernel programs: run it with sudo")
}

/// What `ensure_tracefs` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracefs {
    AlreadyMounted,
    MountedNow,
}

/// tracer checks hooks against tracefs's event list; mount it if missing,
/// as `mount -t tracefs nodev /sys/kernel/tracing` would.
pub fn ensure_tracefs() -> Result<Tracefs> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(Tracefs::AlreadyMounted);
    }
    match nix::mount::mount(Some("nodev"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>) {
        Ok(()) => Ok(Tracefs::MountedNow),
        Err(e) => bail!(
            "tracefs is not mounted at {TRACEFS} and mounting it failed ({e}): run `mount -t tracefs nodev {TRACEFS}`"
        ),
    }
}

/// Whether the kernel has this tracepoint (`group/name` under tracefs events).
pub fn tracepoint_exists(group: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(group)
        .join(name)
        .is_dir()
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The node every record names: `NODE_NAME` when set (a DaemonSet sets it
/// from the downward API's `spec.nodeName`: in a pod without host networking
/// the host name is the pod's), else the host name.
pub fn node_name() -> String {
    if let Some(name) = std::env::var_os("NODE_NAME").filter(|name| !name.is_empty()) {
        return name.to_string_lossy().into_owned();
    }
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}
