//! The DaemonSet's pod, run for real: tracer's image under containerd with
//! the settings of deploy/daemonset.yaml (derived from the file, not
//! restated), on a node whose pods are busybox containers in kubelet's
//! cgroups with kubelet's log files. From inside its container tracer must
//! explain a SIGKILL sent from one pod to another and an OOM kill in a third,
//! with pod and container names, and name the node as NODE_NAME says.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;

use super::{
    confinement::{capabilities_are_needed, check_confinement},
    containerd::{busybox_rootfs, running, Container, Containerd, Image, Pod},
    manifest::{self, Node},
    output_of, random_hex,
    records::Records,
    usage::{oom_kills, Usage},
    WAIT,
};
use crate::image;

/// How long after its pod kubelet starts a container (here: longer than
/// tracer's interval between two reads of kubelet's directories, 2 s).
const POD_AGE: Duration = Duration::from_secs(3);

/// The OOM pod's memory limit.
const HOG_LIMIT: u64 = 32 << 20;

pub fn test(image: &image::Image, manifest_path: &Path, work: &Path) -> Result<()> {
    ensure_tracefs()?;
    let docs = manifest::load(manifest_path)?;
    let ds = manifest::document(&docs, "DaemonSet")?;
    let containerd = &mut Containerd::start(&work.join("containerd.log"))?;
    containerd.import(&image.archive)?;
    let node_name = format!("node-{}", random_hex(3));
    // The node's PID namespace is this process's: on a node kubelet names
    // PID 1's, which this machine's PID 1 does not let runc open.
    let pid_namespace = PathBuf::from(format!("/proc/{}/ns/pid", std::process::id()));
    let default_caps = containerd.default_capabilities()?;
    let entrypoint = image_entrypoint(&image.reference)?;
    let settings = manifest::run_settings(
        ds,
        &Node {
            name: &node_name,
            pid_namespace: &pid_namespace,
            runtime_default_caps: &default_caps,
            entrypoint: &entrypoint,
        },
    )?;
    ensure!(
        settings.image == image.reference,
        "the manifest runs {}, `cargo xtask image` builds {}",
        settings.image,
        image.reference
    );
    let output = settings
        .arg("--output")
        .context("the manifest's tracer writes no --output file")?;
    let host_output = settings
        .host_path(output)
        .with_context(|| format!("{output} is on no hostPath"))?;
    let records = Records::appended_to(&host_output, about_pods);
    for dir in &settings.created {
        containerd.remove_at_end(dir.clone());
    }

    capabilities_are_needed(containerd, &settings, &entrypoint)?;

    let tracer_pod = Pod::new(
        ds["metadata"]["namespace"].as_str().unwrap_or("default"),
        &format!(
            "{}-{}",
            ds["metadata"]["name"].as_str().unwrap_or("tracer"),
            random_hex(3)
        ),
        settings.qos,
    );
    let container_name = ds["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("tracer");
    let rootfs = work.join("busybox");
    busybox_rootfs(&rootfs)?;
    let host_pid = format!("--with-ns=pid:{}", pid_namespace.display());
    containerd.start_pod(&tracer_pod, &rootfs, std::slice::from_ref(&host_pid))?;
    let process: Vec<&str> = settings.process.iter().map(String::as_str).collect();
    let tracer = containerd.run(
        &tracer_pod,
        container_name,
        Image::Reference(&settings.image),
        &settings.flags,
        &process,
    )?;
    let tracer_log = format!(
        "/var/log/pods/{}_{}_{}/{container_name}/0.log",
        tracer_pod.namespace, tracer_pod.name, tracer_pod.uid
    );
    let alive = || -> Result<()> {
        ensure!(
            running(&tracer.id),
            "tracer's container stopped; it said:\n{}",
            fs::read_to_string(&tracer_log).unwrap_or_default()
        );
        Ok(())
    };
    let start = records.wait_for("tracer's start record", WAIT, alive, |r| {
        r["kind"] == "start"
    })?;
    ensure!(
        start["node"] == node_name.as_str(),
        "the start record names node {}, NODE_NAME is {node_name}",
        start["node"]
    );
    check_confinement(tracer.pid, &settings.capabilities)?;
    println!(
        "deploy-test: daemonset: tracer runs in its container as node {node_name}, with exactly {}",
        settings.capabilities.join(", ")
    );

    kill_across_pods(
        containerd,
        &rootfs,
        &pid_namespace,
        &records,
        &node_name,
        &alive,
    )?;
    oom_in_a_pod(containerd, &rootfs, &records, &node_name, &alive)?;

    let usage = Usage::of(&tracer.cgroup)?;
    // The cgroup's peak counts the page cache of the files tracer writes;
    // the process's own high-water mark is what it needs.
    let rss_peak = fs::read_to_string(format!("/proc/{}/status", tracer.pid))?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    println!(
        "deploy-test: daemonset: tracer's container used {:.1} MiB at most (its RSS peak {rss_peak}; limit {:.0} MiB) and {:.2} s of CPU",
        usage.peak_bytes as f64 / (1 << 20) as f64,
        settings.memory_limit.unwrap_or(0) as f64 / (1 << 20) as f64,
        usage.cpu_ns as f64 / 1e9
    );
    if let Some(limit) = settings.memory_limit {
        ensure!(
            usage.peak_bytes < limit,
            "tracer's container reached its memory limit ({} of {limit} bytes)",
            usage.peak_bytes
        );
    }

    // kubelet stops a pod with SIGTERM: tracer drains and writes its stop record.
    containerd.kill(&tracer.id, "SIGTERM")?;
    containerd.wait_stopped(&tracer.id, Duration::from_secs(30))?;
    let stop = records.wait_for(
        "the stop record",
        Duration::from_secs(5),
        || Ok(()),
        |r| r["kind"] == "stop",
    )?;
    ensure!(stop["node"] == node_name.as_str(), "stop record: {stop}");
    Ok(())
}

/// The records the test looks at: signals and exits that involve a pod
/// (the node's other processes may send a flood of signals while the test
/// runs), and every other kind (start, oom, stop, lost, ...), which are rare.
fn about_pods(line: &str) -> bool {
    let common = [r#""kind":"signal""#, r#""kind":"exit""#];
    line.contains(r#""pod":{"#) || !common.iter().any(|kind| line.contains(kind))
}

/// A node agent in pod ops/janitor (with hostPID, so it sees other pods'
/// processes) SIGKILLs the process of pod default/web: tracer must name
/// both pods and containers, and explain the exit (137).
fn kill_across_pods(
    containerd: &mut Containerd,
    rootfs: &Path,
    pid_namespace: &Path,
    records: &Records,
    node: &str,
    alive: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let web = Pod::new("default", "web-7f9c-x2k4", "burstable");
    let janitor = Pod::new("ops", "janitor-5d4c-q8w2", "besteffort");
    let host_pid = format!("--with-ns=pid:{}", pid_namespace.display());
    containerd.start_pod(&web, rootfs, &[])?;
    containerd.start_pod(&janitor, rootfs, std::slice::from_ref(&host_pid))?;
    // kubelet starts containers a while after it made their pod.
    std::thread::sleep(POD_AGE);
    let app = containerd.run(&web, "app", Image::Rootfs(rootfs), &[], &["sleep", "3600"])?;
    super::wait_for_comm(app.pid, "sleep")?;
    let target = app.pid.to_string();
    containerd.run(
        &janitor,
        "reaper",
        Image::Rootfs(rootfs),
        &[host_pid],
        &["kill", "-KILL", &target],
    )?;
    let kill = records.wait_for("the SIGKILL across pods", WAIT, alive, |r| {
        r["kind"] == "signal" && r["target"]["pid"] == app.pid && r["signal"]["name"] == "SIGKILL"
    })?;
    let expect = |what: &str, found: &Value, wanted: &str| {
        ensure!(found == wanted, "{what} is {found}, not {wanted}: {kill}");
        Ok(())
    };
    expect("the sender", &kill["sender"]["comm"], "kill")?;
    expect(
        "the sender's pod",
        &kill["sender"]["pod"]["name"],
        &janitor.name,
    )?;
    expect(
        "the sender's namespace",
        &kill["sender"]["pod"]["namespace"],
        "ops",
    )?;
    expect(
        "the sender's container",
        &kill["sender"]["container"]["name"],
        "reaper",
    )?;
    expect(
        "the target's pod",
        &kill["target"]["pod"]["name"],
        &web.name,
    )?;
    expect(
        "the target's namespace",
        &kill["target"]["pod"]["namespace"],
        "default",
    )?;
    expect(
        "the target's container",
        &kill["target"]["container"]["name"],
        "app",
    )?;
    expect("the node", &kill["node"], node)?;
    let exit = records.wait_for("web's exit", WAIT, alive, |r| {
        r["kind"] == "exit" && r["process"]["pid"] == app.pid
    })?;
    ensure!(
        exit["exit_code"] == 137
            && exit["after_signal"]["sender_comm"] == "kill"
            && exit["process"]["pod"]["name"] == web.name.as_str(),
        "web's exit is not explained as SIGKILL from kill (137): {exit}"
    );
    println!(
        "deploy-test: daemonset: kill(PID {}) from ops/{} [reaper] to default/{} [app] reported, exit 137 explained",
        app.pid, janitor.name, web.name
    );
    Ok(())
}

/// A container over its 32 MiB limit (busybox dd with a 64 MiB buffer):
/// tracer must report the OOM kill with its pod and container, checked
/// against the cgroup's own oom_kill count.
fn oom_in_a_pod(
    containerd: &mut Containerd,
    rootfs: &Path,
    records: &Records,
    node: &str,
    alive: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let api = Pod::new("default", "api-5d8f-q2x7", "burstable");
    containerd.start_pod(&api, rootfs, &[])?;
    std::thread::sleep(POD_AGE);
    let hog: Container = containerd.run(
        &api,
        "hog",
        Image::Rootfs(rootfs),
        &[format!("--memory-limit={HOG_LIMIT}")],
        // dd is not the container's PID 1: the shell stays to show the pod
        // outlives its killed process.
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 3600",
        ],
    )?;
    let in_hog =
        |r: &Value| r["pod"]["name"] == api.name.as_str() && r["container"]["name"] == "hog";
    let oom = records.wait_for("the OOM kill in api", WAIT, alive, |r| {
        r["kind"] == "oom"
            && r["victims"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| in_hog(&v["process"])))
    })?;
    let victim = oom["victims"]
        .as_array()
        .and_then(|v| v.iter().find(|v| in_hog(&v["process"])))
        .context("no victim")?;
    ensure!(
        victim["process"]["comm"] == "dd"
            && oom["scope"] == "cgroup"
            && oom["memcg"]["limit_bytes"] == HOG_LIMIT
            && oom["node"] == node,
        "the OOM kill is not explained as dd over hog's 32 MiB limit on {node}: {oom}"
    );
    let kills = oom_kills(&hog.cgroup)?;
    ensure!(
        kills >= 1,
        "the kernel counted no OOM kill in {}",
        hog.cgroup
    );
    let victim_pid = victim["process"]["pid"].clone();
    let exit = records.wait_for("dd's exit", WAIT, alive, |r| {
        r["kind"] == "exit" && r["process"]["pid"] == victim_pid
    })?;
    ensure!(
        exit["oom_killed"] == true && exit["exit_code"] == 137,
        "dd's exit is not explained as OOM-killed: {exit}"
    );
    println!(
        "deploy-test: daemonset: OOM kill of dd in default/{} [hog] reported (limit 32 MiB, scope {}, kernel count {kills})",
        api.name, oom["scope_source"]
    );
    Ok(())
}

/// The image's ENTRYPOINT, from podman which built it.
fn image_entrypoint(reference: &str) -> Result<Vec<String>> {
    let json = output_of(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        reference,
    ]))?;
    Ok(serde_json::from_str(json.trim())?)
}

/// A node mounts tracefs at boot (systemd's sys-kernel-tracing.mount); the
/// DaemonSet binds it from there.
fn ensure_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    crate::cmd::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
}
