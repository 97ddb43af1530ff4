//! The DaemonSet's confinement, checked: the capabilities the manifest adds
//! are each needed (the kernel refuses tracer without one), and tracer's
//! process in its container has exactly them, no_new_privs and a seccomp
//! filter.

use std::fs;

use anyhow::{ensure, Context as _, Result};

use super::{containerd::Containerd, manifest};

/// `tracer doctor` with the manifest's settings is ready; with any one of
/// the capabilities the manifest adds taken away, it is not: the manifest
/// adds nothing that is not needed.
pub fn capabilities_are_needed(
    containerd: &mut Containerd,
    settings: &manifest::RunSettings,
    entrypoint: &[String],
) -> Result<()> {
    let mut doctor: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
    doctor.push("doctor");
    let out = containerd.run_once(&settings.image, &settings.flags, &doctor)?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && said.contains("verdict:    ready"),
        "`tracer doctor` with the manifest's settings is not ready ({}):\n{said}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for added in settings
        .flags
        .iter()
        .filter(|f| f.starts_with("--cap-add="))
    {
        let cap = added.trim_start_matches("--cap-add=");
        let fewer: Vec<String> = settings
            .flags
            .iter()
            .filter(|f| *f != added)
            .cloned()
            .collect();
        let out = containerd.run_once(&settings.image, &fewer, &doctor)?;
        let said = String::from_utf8_lossy(&out.stdout);
        ensure!(
            !out.status.success(),
            "`tracer doctor` is ready without {cap}: the manifest adds it for nothing:\n{said}"
        );
        // Not only tracer's own check: the kernel itself refuses.
        let refused = said
            .lines()
            .filter(|l| l.contains("Operation not permitted"))
            .count();
        ensure!(
            refused > 0,
            "without {cap} only tracer's own check fails, the kernel refuses nothing:\n{said}"
        );
        let first = said
            .lines()
            .find(|l| l.contains("Operation not permitted"))
            .unwrap_or_default();
        println!(
            "deploy-test: daemonset: without {cap}, the kernel refuses tracer ({refused} x EPERM), e.g. {}",
            first.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}

/// tracer's process in its container has exactly `caps`, no_new_privs and
/// a seccomp filter: the manifest's confinement took effect.
pub fn check_confinement(pid: u32, caps: &[String]) -> Result<()> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let effective = u64::from_str_radix(&field("CapEff:"), 16)?;
    let mut wanted = 0u64;
    for cap in caps {
        let bit = CAPABILITIES
            .iter()
            .position(|c| c == cap)
            .with_context(|| format!("unknown capability {cap}"))?;
        wanted |= 1 << bit;
    }
    ensure!(
        effective == wanted,
        "tracer runs with capabilities {effective:#x}, the manifest gives {wanted:#x} ({})",
        caps.join(", ")
    );
    ensure!(
        field("NoNewPrivs:") == "1",
        "tracer's container allows privilege escalation"
    );
    ensure!(
        field("Seccomp:") == "2",
        "tracer's container has no seccomp filter"
    );
    Ok(())
}

/// Capability names by number (linux/capability.h).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];
