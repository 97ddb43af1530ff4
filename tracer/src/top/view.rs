//! What `tracer top` shows: the sample turned into rows per pod and per
//! process, with names, pods and devices, sorted by the chosen key.

use std::{collections::HashMap, path::Path, sync::Arc};

use crate::{
    attribution::{Attribution, Attributor},
    iowait::{device::DeviceNames, psi, sample::Sample},
};

/// The sort keys, by the key that picks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    IoWait,
    Blocked,
    Read,
    Write,
    Pid,
}

impl SortKey {
    pub fn from_key(c: char) -> Option<Self> {
        match c {
            'i' => Some(Self::IoWait),
            'b' => Some(Self::Blocked),
            'r' => Some(Self::Read),
            'w' => Some(Self::Write),
            'p' => Some(Self::Pid),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::IoWait => "iowait",
            Self::Blocked => "blocked",
            Self::Read => "read",
            Self::Write => "write",
            Self::Pid => "pid",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    pub iowait_ns: u64,
    pub blocked_ns: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub device: Option<Arc<str>>,
    /// "ns/name", a container, or "-" for the host.
    pub pod: String,
}

#[derive(Debug, Clone, Default)]
pub struct PodRow {
    pub pod: String,
    pub iowait_ns: u64,
    pub blocked_ns: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub processes: u32,
    /// `io.pressure` "some" avg10 of one of its cgroups, where cgroup v2 has it.
    pub pressure_some: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub name: Arc<str>,
    pub read_ios: u64,
    pub write_ios: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub await_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Default)]
pub struct View {
    pub interval_s: f64,
    pub node_pressure: Option<psi::Pressure>,
    pub pods: Vec<PodRow>,
    pub processes: Vec<ProcessRow>,
    pub devices: Vec<DeviceRow>,
}

/// Keeps what naming needs between frames.
pub struct Namer {
    procfs: std::path::PathBuf,
    v2_root: Option<std::path::PathBuf>,
    comms: HashMap<u32, String>,
    pub devices: DeviceNames,
}

impl Namer {
    pub fn new(procfs: &Path) -> Self {
        let index = crate::attribution::hierarchy::CgroupIndex::from_this_mount_namespace();
        Self {
            procfs: procfs.to_path_buf(),
            v2_root: index
                .root(crate::attribution::hierarchy::Hierarchy::V2)
                .map(Path::to_path_buf),
            comms: HashMap::new(),
            devices: DeviceNames::default(),
        }
    }

    fn comm(&mut self, pid: u32) -> String {
        if let Ok(comm) = std::fs::read_to_string(self.procfs.join(format!("{pid}/comm"))) {
            let comm = comm.trim_end().to_owned();
            self.comms.insert(pid, comm.clone());
            return comm;
        }
        // Gone: the name it had when last seen.
        self.comms.get(&pid).cloned().unwrap_or_else(|| "?".into())
    }

    fn pressure(&self, cgroup: &str) -> Option<f64> {
        let dir = self.v2_root.as_ref()?.join(cgroup.trim_start_matches('/'));
        psi::read(&dir.join("io.pressure")).map(|p| p.some.avg10)
    }
}

/// "default/web-7f9c" for a pod, "ctr 3f9a1c2b4d5e" for a container
/// outside a pod, "-" for the host.
pub fn pod_label(a: &Attribution) -> String {
    if let Some(pod) = &a.pod {
        return match (&pod.namespace, &pod.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            _ => format!("uid {}", pod.uid),
        };
    }
    if let Some(c) = &a.container {
        return format!("ctr {}", c.id.get(..12).unwrap_or(&c.id));
    }
    "-".into()
}

pub fn build(
    sample: &Sample,
    interval_s: f64,
    sort: SortKey,
    namer: &mut Namer,
    attributor: &mut Attributor,
) -> View {
    // Bytes by the cgroup that owned them at the block layer (the bio's
    // blkcg: on cgroup v2 writeback is charged to the dirtier), and the
    // device each pod issued most to.
    let mut owned: HashMap<String, ([u64; 2], u32, u64)> = HashMap::new();
    for c in &sample.cgroups {
        let Some(attribution) = attributor.for_io_cgroup(c.cgroup_id) else {
            continue;
        };
        let entry = owned.entry(pod_label(&attribution)).or_default();
        entry.0[0] += c.bytes[0];
        entry.0[1] += c.bytes[1];
        let total = c.bytes[0] + c.bytes[1];
        if total > entry.2 {
            entry.1 = c.dev;
            entry.2 = total;
        }
    }
    let mut pods: HashMap<String, PodRow> = HashMap::new();
    let mut processes = Vec::with_capacity(sample.processes.len());
    // Under 1 ms of waiting per second and no bytes: not worth a row.
    let small = (interval_s * 1e6) as u64;
    for p in &sample.processes {
        if p.blocked_ns < small && p.read_bytes == 0 && p.write_bytes == 0 {
            continue;
        }
        let attribution = attributor
            .for_pid(p.pid)
            .unwrap_or_else(|_| Arc::new(Attribution::host()));
        let pod = pod_label(&attribution);
        let row = pods.entry(pod.clone()).or_insert_with(|| PodRow {
            pod: pod.clone(),
            pressure_some: if attribution.pod.is_some() {
                namer.pressure(&attribution.cgroup)
            } else {
                None
            },
            ..PodRow::default()
        });
        row.iowait_ns += p.iowait_ns;
        row.blocked_ns += p.blocked_ns;
        row.read_bytes += p.read_bytes;
        row.write_bytes += p.write_bytes;
        row.processes += 1;
        // A process whose IO a worker thread submitted (a throttled bio is
        // resubmitted by one) is shown on the device its pod issued to.
        let dev = match (p.dev, owned.get(&pod)) {
            (0, Some((_, dev, _))) => *dev,
            (dev, _) => dev,
        };
        processes.push(ProcessRow {
            pid: p.pid,
            comm: namer.comm(p.pid),
            iowait_ns: p.iowait_ns,
            blocked_ns: p.blocked_ns,
            read_bytes: p.read_bytes,
            write_bytes: p.write_bytes,
            device: (dev != 0).then(|| namer.devices.name(dev)),
            pod,
        });
    }
    for (label, (bytes, _, _)) in owned {
        let row = pods.entry(label.clone()).or_insert_with(|| PodRow {
            pod: label,
            ..PodRow::default()
        });
        // The larger of the two accounts: /proc/PID/io misses direct IO to
        // a block device, the block layer misses what is still dirty.
        row.read_bytes = row.read_bytes.max(bytes[0]);
        row.write_bytes = row.write_bytes.max(bytes[1]);
    }
    let mut pods: Vec<PodRow> = pods.into_values().collect();
    let key = |iowait: u64, blocked: u64, read: u64, write: u64| match sort {
        SortKey::IoWait => (iowait, blocked),
        SortKey::Blocked => (blocked, iowait),
        SortKey::Read => (read, write),
        SortKey::Write => (write, read),
        SortKey::Pid => (0, 0),
    };
    if sort == SortKey::Pid {
        pods.sort_by(|a, b| a.pod.cmp(&b.pod));
        processes.sort_by_key(|p| p.pid);
    } else {
        pods.sort_by(|a, b| {
            key(b.iowait_ns, b.blocked_ns, b.read_bytes, b.write_bytes)
                .cmp(&key(a.iowait_ns, a.blocked_ns, a.read_bytes, a.write_bytes))
                .then_with(|| a.pod.cmp(&b.pod))
        });
        processes.sort_by(|a, b| {
            key(b.iowait_ns, b.blocked_ns, b.read_bytes, b.write_bytes)
                .cmp(&key(a.iowait_ns, a.blocked_ns, a.read_bytes, a.write_bytes))
                .then_with(|| a.pid.cmp(&b.pid))
        });
    }
    let mut devices: Vec<DeviceRow> = sample
        .devices
        .iter()
        .filter(|d| d.ios != [0, 0])
        .map(|d| DeviceRow {
            name: namer.devices.name(d.dev),
            read_ios: d.ios[0],
            write_ios: d.ios[1],
            read_bytes: d.bytes[0],
            write_bytes: d.bytes[1],
            await_ms: d.await_ms(),
            p99_ms: d.p99_ms(),
        })
        .collect();
    devices.sort_by(|a, b| {
        (b.read_bytes + b.write_bytes)
            .cmp(&(a.read_bytes + a.write_bytes))
            .then_with(|| a.name.cmp(&b.name))
    });
    View {
        interval_s,
        node_pressure: psi::read(&namer.procfs.join("pressure/io")),
        pods,
        processes,
        devices,
    }
}
