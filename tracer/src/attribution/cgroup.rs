//! Container and pod identity read from a process's cgroup path.
//!
//! Pure string work, no I/O. Kubelet and the container runtimes encode who a
//! cgroup belongs to in its name, so the path the kernel reports is enough to
//! tell the container and the pod. Paths come from the kernel and from
//! whatever created the cgroups: every function here accepts any input and
//! answers "nothing recognised" rather than panicking.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A bare container id (cgroupfs driver): containerd and docker both
    /// name their cgroups that way, so the path alone cannot tell.
    Unknown,
}

impl Runtime {
    /// The same spelling as the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Unknown => "unknown",
        }
    }
}

/// Kubernetes' QoS classes, serialized with Kubernetes' own spelling so that
/// the output matches the pod's `status.qosClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerId {
    /// 64 lowercase hex digits.
    pub id: String,
    pub runtime: Runtime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodId {
    /// Canonical form with dashes (`3f1c2a4e-8d3b-4c8e-9a51-0f2b6c7d8e9f`).
    /// Static pods (manifests read by kubelet from disk) have a 32-hex hash
    /// as their UID instead, kept as it is: kubelet uses that same string in
    /// its log directories.
    pub uid: String,
    pub qos: QosClass,
    pub driver: CgroupDriver,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupIdentity {
    pub path: String,
    pub container: Option<ContainerId>,
    pub pod: Option<PodId>,
}

/// What a path component says about a container.
enum Scope {
    Container(ContainerId),
    /// CRI-O's and podman's `conmon` monitor: it runs next to the container,
    /// in its own cgroup, but is not the container's workload. Reporting it
    /// as the container would blame the workload for what conmon does (and
    /// the other way round), so it is reported as part of the pod only.
    Monitor,
}

/// Recognises the container and the pod that a cgroup path belongs to,
/// wherever they sit in the path: kubelet may itself run in a container
/// (kind nodes, `/docker/<id>/kubepods/...`), under a custom cgroup root
/// (`/kubelet.slice/kubelet-kubepods.slice/...`), and a reader inside a
/// cgroup namespace sees other cgroups as `/../../...`.
///
/// The innermost pod wins, and the innermost container below it: a pod's
/// own cgroup (no container scope below it) gives the pod and no container,
/// even when the whole tree runs inside an outer container.
///
/// CRI-O's and podman's `conmon` scopes (`crio-conmon-<id>.scope`,
/// `libpod-conmon-<id>.scope`) give the pod and no container: conmon watches
/// the container from outside it, and what it does is not the workload's.
///
/// A cgroupfs pod seen through a cgroup namespace as `/../pod<uid>/...` has
/// lost its `kubepods/<qos>` parents: its QoS class is unknown, so only the
/// container is reported. Systemd slices repeat the QoS class in every name
/// and do not have this limit.
pub fn parse_cgroup_path(path: &str) -> CgroupIdentity {
    let mut pod: Option<(usize, PodId)> = None;
    let mut innermost: Option<(usize, Scope)> = None;
    // The cgroupfs driver spells QoS as the parent directories of the pod.
    let mut grandparent = "";
    let mut parent = "";
    for (index, component) in path.split('/').filter(|c| !c.is_empty()).enumerate() {
        if let Some(found) =
            systemd_pod(component).or_else(|| cgroupfs_pod(component, grandparent, parent))
        {
            pod = Some((index, found));
        } else if let Some(scope) = container_scope(component, parent) {
            innermost = Some((index, scope));
        }
        grandparent = parent;
        parent = component;
    }
    let container = match (innermost, &pod) {
        (Some((at, Scope::Container(container))), Some((pod_at, _))) if at > *pod_at => {
            Some(container)
        }
        (Some((_, Scope::Container(container))), None) => Some(container),
        _ => None,
    };
    CgroupIdentity {
        path: path.to_owned(),
        container,
        pod: pod.map(|(_, pod)| pod),
    }
}

/// Content of /proc/<pid>/cgroup (v1 lines "12:memory:/path", "1:name=systemd:/path", v2 line "0::/path", hybrid hosts have both).
///
/// Hierarchies may disagree (on a hybrid host the v2 line can stay at the
/// runtime's service while the v1 controllers hold the pod), so the first
/// line that yields a pod wins, else the first that yields a container,
/// trying the v2 line first, then `name=systemd`, then `memory`, then the
/// others in file order. When none does, the path is the v2 line's, or the
/// first line's. Lines that are not `<number>:<controllers>:/<path>` are
/// skipped; input with no such line gives the default identity (empty path).
pub fn parse_proc_cgroup(content: &str) -> CgroupIdentity {
    let mut lines: Vec<Line<'_>> = content
        .lines()
        .enumerate()
        .filter_map(|(index, line)| Line::parse(index, line))
        .collect();
    // Stable: lines of the same rank stay in file order.
    lines.sort_by_key(|line| line.rank);
    let mut with_container = None;
    for line in &lines {
        let identity = parse_cgroup_path(line.path);
        if identity.pod.is_some() {
            return identity;
        }
        if with_container.is_none() && identity.container.is_some() {
            with_container = Some(identity);
        }
    }
    if let Some(identity) = with_container {
        return identity;
    }
    let fallback = lines
        .iter()
        .find(|line| line.rank == RANK_V2)
        .or_else(|| lines.iter().min_by_key(|line| line.index));
    match fallback {
        Some(line) => CgroupIdentity {
            path: line.path.to_owned(),
            ..CgroupIdentity::default()
        },
        None => CgroupIdentity::default(),
    }
}

const RANK_V2: u8 = 0;
const RANK_SYSTEMD: u8 = 1;
const RANK_MEMORY: u8 = 2;
const RANK_OTHER: u8 = 3;

struct Line<'a> {
    rank: u8,
    index: usize,
    path: &'a str,
}

impl<'a> Line<'a> {
    fn parse(index: usize, line: &'a str) -> Option<Self> {
        // The path may itself contain ':', hence at most three fields.
        let mut fields = line.splitn(3, ':');
        let hierarchy = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        if hierarchy.is_empty() || !hierarchy.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // cgroup v2 marks a removed cgroup this way; a process can still be
        // seen there while it exits.
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if !path.starts_with('/') {
            return None;
        }
        let has = |name: &str| controllers.split(',').any(|c| c == name);
        let rank = if hierarchy == "0" && controllers.is_empty() {
            RANK_V2
        } else if has("name=systemd") {
            RANK_SYSTEMD
        } else if has("memory") {
            RANK_MEMORY
        } else {
            RANK_OTHER
        };
        Some(Line { rank, index, path })
    }
}

/// `kubepods-burstable-pod<uid with _>.slice`, `kubepods-pod<uid>.slice`,
/// `kubepods-besteffort-pod<uid>.slice`, with any `<root>-` before
/// `kubepods` when kubelet runs with a cgroup root of its own.
fn systemd_pod(component: &str) -> Option<PodId> {
    let unit = component.strip_suffix(".slice")?;
    let at = unit.rfind("-pod")?;
    let (prefix, uid) = (&unit[..at], &unit[at + "-pod".len()..]);
    let (base, qos) = if let Some(base) = prefix.strip_suffix("-burstable") {
        (base, QosClass::Burstable)
    } else if let Some(base) = prefix.strip_suffix("-besteffort") {
        (base, QosClass::BestEffort)
    } else {
        (prefix, QosClass::Guaranteed)
    };
    let root = base.strip_suffix("kubepods")?;
    if !root.is_empty() && !root.ends_with('-') {
        return None;
    }
    // Systemd reads '-' in a slice name as nesting, so kubelet writes the
    // UID's dashes as '_'.
    let uid = canonical_uid(uid, b'_')?;
    Some(PodId {
        uid,
        qos,
        driver: CgroupDriver::Systemd,
    })
}

/// `kubepods/pod<uid>`, `kubepods/burstable/pod<uid>`,
/// `kubepods/besteffort/pod<uid>`.
fn cgroupfs_pod(component: &str, grandparent: &str, parent: &str) -> Option<PodId> {
    let uid = component.strip_prefix("pod")?;
    let qos = match (grandparent, parent) {
        (_, "kubepods") => QosClass::Guaranteed,
        ("kubepods", "burstable") => QosClass::Burstable,
        ("kubepods", "besteffort") => QosClass::BestEffort,
        _ => return None,
    };
    let uid = canonical_uid(uid, b'-')?;
    Some(PodId {
        uid,
        qos,
        driver: CgroupDriver::Cgroupfs,
    })
}

/// A UUID written with `separator` between its groups, returned lowercase
/// with dashes; or a 32-hex static pod UID, returned lowercase.
fn canonical_uid(raw: &str, separator: u8) -> Option<String> {
    let bytes = raw.as_bytes();
    match bytes.len() {
        36 => {
            let mut uid = String::with_capacity(36);
            for (i, &b) in bytes.iter().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    if b != separator {
                        return None;
                    }
                    uid.push('-');
                } else if b.is_ascii_hexdigit() {
                    uid.push(char::from(b.to_ascii_lowercase()));
                } else {
                    return None;
                }
            }
            Some(uid)
        }
        32 if bytes.iter().all(u8::is_ascii_hexdigit) => Some(raw.to_ascii_lowercase()),
        _ => None,
    }
}

/// Systemd scope names (or cgroupfs directory names) that runtimes give to a
/// container's cgroup, most specific prefix first. `None`: a monitor.
const SCOPE_PREFIXES: [(&str, Option<Runtime>); 6] = [
    ("cri-containerd-", Some(Runtime::Containerd)),
    ("crio-conmon-", None),
    ("crio-", Some(Runtime::CriO)),
    ("docker-", Some(Runtime::Docker)),
    ("libpod-conmon-", None),
    ("libpod-", Some(Runtime::Podman)),
];

fn container_scope(component: &str, parent: &str) -> Option<Scope> {
    let unit = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in SCOPE_PREFIXES {
        if let Some(id) = unit.strip_prefix(prefix) {
            if !is_container_id(id) {
                return None;
            }
            return Some(match runtime {
                Some(runtime) => Scope::Container(ContainerId {
                    id: id.to_owned(),
                    runtime,
                }),
                None => Scope::Monitor,
            });
        }
    }
    if unit.len() == component.len() && is_container_id(component) {
        // Docker's cgroupfs layout is the only one that says who made it.
        let runtime = if parent == "docker" {
            Runtime::Docker
        } else {
            Runtime::Unknown
        };
        return Some(Scope::Container(ContainerId {
            id: component.to_owned(),
            runtime,
        }));
    }
    None
}

/// Runtimes write ids in lowercase; accepting only that keeps other 64-char
/// names (hashes in unit names and the like) from passing for containers.
pub(super) fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const C2: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
    const C3: &str = "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6";
    const NODE: &str = "18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4";
    const CI: &str = "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea";
    const U1: &str = "73382c30-be4e-4703-9d4c-11721e001c70";
    const U1_: &str = "73382c30_be4e_4703_9d4c_11721e001c70";
    const U2: &str = "2aa431bd-c7a8-49d3-9d3a-dcbd01991537";
    const U2_: &str = "2aa431bd_c7a8_49d3_9d3a_dcbd01991537";
    const U3: &str = "31ee67ac-1d46-4852-994a-2e1ec2a65f4b";
    const STATIC_UID: &str = "a81259cef8e959c624df1d456e5d3297";

    use CgroupDriver::{Cgroupfs, Systemd};
    use QosClass::{BestEffort, Burstable, Guaranteed};
    use Runtime::{Containerd, CriO, Docker, Podman, Unknown};

    /// A cgroup v1 /proc/<pid>/cgroup where every controller is at `path`
    /// (what runc writes with either driver).
    fn v1(path: &str) -> String {
        [
            "12:hugetlb",
            "11:cpuset",
            "10:perf_event",
            "9:blkio",
            "8:memory",
            "7:devices",
            "6:freezer",
            "5:net_cls,net_prio",
            "4:cpu,cpuacct",
            "3:pids",
            "2:rdma",
            "1:name=systemd",
        ]
        .iter()
        .map(|prefix| format!("{prefix}:{path}\n"))
        .collect()
    }

    /// Hybrid host: v1 controllers plus the unified hierarchy.
    fn hybrid(v1_path: &str, unified: &str) -> String {
        format!("{}0::{unified}\n", v1(v1_path))
    }

    fn v2(path: &str) -> String {
        format!("0::{path}\n")
    }

    struct Case {
        name: &'static str,
        content: String,
        path: String,
        container: Option<(&'static str, Runtime)>,
        pod: Option<(&'static str, QosClass, CgroupDriver)>,
    }

    fn case(
        name: &'static str,
        content: String,
        path: &str,
        container: Option<(&'static str, Runtime)>,
        pod: Option<(&'static str, QosClass, CgroupDriver)>,
    ) -> Case {
        Case {
            name,
            content,
            path: path.to_owned(),
            container,
            pod,
        }
    }

    // One row per line keeps the table readable.
    #[rustfmt::skip]
    fn table() -> Vec<Case> {
        let sd_burstable = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U1_}.slice/cri-containerd-{C1}.scope"
        );
        let sd_guaranteed =
            format!("/kubepods.slice/kubepods-pod{U2_}.slice/cri-containerd-{C2}.scope");
        let sd_besteffort_crio = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U1_}.slice/crio-{C1}.scope"
        );
        let sd_conmon = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U1_}.slice/crio-conmon-{C1}.scope"
        );
        let sd_docker = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U2_}.slice/docker-{C3}.scope"
        );
        let sd_pod_level =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U1_}.slice");
        let fs_burstable = format!("/kubepods/burstable/pod{U1}/{C1}");
        let fs_guaranteed = format!("/kubepods/pod{U2}/{C2}");
        let fs_besteffort_crio = format!("/kubepods/besteffort/pod{U3}/crio-{C3}");
        let fs_conmon = format!("/kubepods/besteffort/pod{U3}/crio-conmon-{C3}");
        let kind_sd = format!(
            "/system.slice/docker-{NODE}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{U1_}.slice/cri-containerd-{C1}.scope"
        );
        let kind_sd_inside = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{U2_}.slice/cri-containerd-{C2}.scope"
        );
        let kind_fs = format!("/docker/{NODE}/kubepods/burstable/pod{U1}/{C1}");
        let kind_fs_pod_level = format!("/docker/{NODE}/kubepods/besteffort/pod{U3}");
        let kind_fs_root = format!("/docker/{NODE}/kubelet/kubepods/pod{U2}/{C2}");
        let nested_pods = format!(
            "/kubepods/burstable/pod{U3}/{CI}/docker/{NODE}/kubepods/besteffort/pod{U1}/{C1}"
        );
        let nested_pods_outer_only = format!("/kubepods/burstable/pod{U3}/{CI}/docker/{NODE}");
        let ns_sd = format!(
            "/../../kubepods-besteffort-pod{U2_}.slice/cri-containerd-{C2}.scope"
        );
        let ns_fs = format!("/../../pod{U1}/{C1}");
        let static_pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{C3}.scope"
        );
        let sub_cgroup = format!(
            "/kubepods.slice/kubepods-pod{U2_}.slice/cri-containerd-{C2}.scope/init.scope"
        );
        let plain_docker_sd = format!("/system.slice/docker-{C1}.scope");
        let plain_docker_fs = format!("/docker/{C2}");
        let dind = format!("/docker/{NODE}/docker/{C3}");
        let podman = format!("/machine.slice/libpod-{C1}.scope/container");
        let podman_conmon = format!("/machine.slice/libpod-conmon-{C1}.scope");
        let podman_rootless = format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{C2}.scope"
        );
        let podman_fs = format!("/libpod_parent/libpod-{C3}");
        let containerd_fs = format!("/default/{C1}");
        let bad_uid = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podnot_a_uid.slice/cri-containerd-{C1}.scope"
        );
        let dashed_systemd_uid = format!("/kubepods.slice/kubepods-pod{U1}.slice");
        let short_id = format!("/system.slice/docker-{}.scope", &C1[..63]);
        let upper_id = format!("/docker/{}", C1.to_ascii_uppercase());
        let no_kubepods = format!("/burstable/pod{U1}/{C1}");

        vec![
            case("v2 systemd containerd burstable", v2(&sd_burstable), &sd_burstable, Some((C1, Containerd)), Some((U1, Burstable, Systemd))),
            case("v2 systemd containerd guaranteed", v2(&sd_guaranteed), &sd_guaranteed, Some((C2, Containerd)), Some((U2, Guaranteed, Systemd))),
            case("v2 systemd cri-o besteffort", v2(&sd_besteffort_crio), &sd_besteffort_crio, Some((C1, CriO)), Some((U1, BestEffort, Systemd))),
            case("v2 systemd cri-o conmon", v2(&sd_conmon), &sd_conmon, None, Some((U1, BestEffort, Systemd))),
            case("v1 systemd docker burstable", v1(&sd_docker), &sd_docker, Some((C3, Docker)), Some((U2, Burstable, Systemd))),
            case("v2 systemd pod-level slice", v2(&sd_pod_level), &sd_pod_level, None, Some((U1, Burstable, Systemd))),
            case("v1 systemd containerd guaranteed", v1(&sd_guaranteed), &sd_guaranteed, Some((C2, Containerd)), Some((U2, Guaranteed, Systemd))),
            case("hybrid systemd cri-o", hybrid(&sd_besteffort_crio, &sd_besteffort_crio), &sd_besteffort_crio, Some((C1, CriO)), Some((U1, BestEffort, Systemd))),
            case("v2 cgroupfs burstable", v2(&fs_burstable), &fs_burstable, Some((C1, Unknown)), Some((U1, Burstable, Cgroupfs))),
            case("v1 cgroupfs guaranteed", v1(&fs_guaranteed), &fs_guaranteed, Some((C2, Unknown)), Some((U2, Guaranteed, Cgroupfs))),
            case("v1 cgroupfs cri-o besteffort", v1(&fs_besteffort_crio), &fs_besteffort_crio, Some((C3, CriO)), Some((U3, BestEffort, Cgroupfs))),
            case("v2 cgroupfs cri-o conmon", v2(&fs_conmon), &fs_conmon, None, Some((U3, BestEffort, Cgroupfs))),
            case("hybrid cgroupfs: pod only in v1", hybrid(&fs_burstable, "/system.slice/containerd.service"), &fs_burstable, Some((C1, Unknown)), Some((U1, Burstable, Cgroupfs))),
            case("kind v2 systemd seen from the host", v2(&kind_sd), &kind_sd, Some((C1, Containerd)), Some((U1, Burstable, Systemd))),
            case("kind v2 systemd seen from the node", v2(&kind_sd_inside), &kind_sd_inside, Some((C2, Containerd)), Some((U2, BestEffort, Systemd))),
            case("kind v1 cgroupfs", v1(&kind_fs), &kind_fs, Some((C1, Unknown)), Some((U1, Burstable, Cgroupfs))),
            case("kind v1 cgroupfs pod-level", v1(&kind_fs_pod_level), &kind_fs_pod_level, None, Some((U3, BestEffort, Cgroupfs))),
            case("kind cgroupfs with cgroup root", v2(&kind_fs_root), &kind_fs_root, Some((C2, Unknown)), Some((U2, Guaranteed, Cgroupfs))),
            case("kind inside a CI pod", v1(&nested_pods), &nested_pods, Some((C1, Unknown)), Some((U1, BestEffort, Cgroupfs))),
            case("CI pod's docker daemon container", v1(&nested_pods_outer_only), &nested_pods_outer_only, Some((NODE, Docker)), Some((U3, Burstable, Cgroupfs))),
            case("cgroup namespace, systemd", v2(&ns_sd), &ns_sd, Some((C2, Containerd)), Some((U2, BestEffort, Systemd))),
            case("cgroup namespace, cgroupfs loses QoS", v2(&ns_fs), &ns_fs, Some((C1, Unknown)), None),
            case("static pod with hash UID", v2(&static_pod), &static_pod, Some((C3, Containerd)), Some((STATIC_UID, Burstable, Systemd))),
            case("sub-cgroup below a container scope", v2(&sub_cgroup), &sub_cgroup, Some((C2, Containerd)), Some((U2, Guaranteed, Systemd))),
            case("removed v2 cgroup", format!("0::{sd_burstable} (deleted)\n"), &sd_burstable, Some((C1, Containerd)), Some((U1, Burstable, Systemd))),
            case("plain docker, systemd", v2(&plain_docker_sd), &plain_docker_sd, Some((C1, Docker)), None),
            case("plain docker, cgroupfs v1", v1(&plain_docker_fs), &plain_docker_fs, Some((C2, Docker)), None),
            case("docker in docker", v1(&dind), &dind, Some((C3, Docker)), None),
            case("podman", v2(&podman), &podman, Some((C1, Podman)), None),
            case("podman conmon", v2(&podman_conmon), &podman_conmon, None, None),
            case("rootless podman", v2(&podman_rootless), &podman_rootless, Some((C2, Podman)), None),
            case("podman cgroupfs", v1(&podman_fs), &podman_fs, Some((C3, Podman)), None),
            case("containerd without kubernetes", v2(&containerd_fs), &containerd_fs, Some((C1, Unknown)), None),
            case("host root", v2("/"), "/", None, None),
            case("host init", v2("/init.scope"), "/init.scope", None, None),
            case("host service v2", v2("/system.slice/sshd.service"), "/system.slice/sshd.service", None, None),
            case("host service v1", v1("/system.slice/sshd.service"), "/system.slice/sshd.service", None, None),
            case("host session hybrid", hybrid("/user.slice/user-1000.slice/session-3.scope", "/user.slice/user-1000.slice/session-3.scope"), "/user.slice/user-1000.slice/session-3.scope", None, None),
            case("v1 host with one odd controller", "9:name=systemd:/\n4:memory:/process_api/2dc2e06063331c26b13cafeffc3f33b0\n0::/\n".to_owned(), "/", None, None),
            case("malformed pod UID", v2(&bad_uid), &bad_uid, Some((C1, Containerd)), None),
            case("systemd slice with dashed UID", v2(&dashed_systemd_uid), &dashed_systemd_uid, None, None),
            case("63-hex id", v2(&short_id), &short_id, None, None),
            case("uppercase id", v2(&upper_id), &upper_id, None, None),
            case("pod dir without kubepods", v2(&no_kubepods), &no_kubepods, Some((C1, Unknown)), None),
        ]
    }

    #[test]
    fn real_paths() {
        let cases = table();
        assert!(cases.len() >= 25);
        for case in cases {
            let got = parse_proc_cgroup(&case.content);
            let want = CgroupIdentity {
                path: case.path.clone(),
                container: case.container.map(|(id, runtime)| ContainerId {
                    id: id.to_owned(),
                    runtime,
                }),
                pod: case.pod.map(|(uid, qos, driver)| PodId {
                    uid: uid.to_owned(),
                    qos,
                    driver,
                }),
            };
            assert_eq!(got, want, "{}", case.name);
            // The chosen path read alone gives the same identity.
            assert_eq!(parse_cgroup_path(&case.path), want, "{} (path)", case.name);
        }
    }

    #[test]
    fn line_preference() {
        let pod_path = format!("/kubepods/besteffort/pod{U3}/{C3}");
        let docker_path = format!("/docker/{C1}");
        // A pod on any line beats a container on a preferred one.
        let content =
            format!("0::/system.slice/docker-{C2}.scope\n7:cpu:{docker_path}\n4:pids:{pod_path}\n");
        assert_eq!(parse_proc_cgroup(&content).path, pod_path);
        // Among containers: v2, then name=systemd, then memory, then file order.
        let content =
            format!("3:pids:/docker/{C3}\n4:memory:/docker/{C2}\n1:name=systemd:{docker_path}\n");
        assert_eq!(parse_proc_cgroup(&content).path, docker_path);
        let content = format!("3:pids:/docker/{C3}\n4:cpu,memory:{docker_path}\n");
        assert_eq!(parse_proc_cgroup(&content).path, docker_path);
        let content = format!("3:pids:{docker_path}\n4:cpu:/docker/{C3}\n");
        assert_eq!(parse_proc_cgroup(&content).path, docker_path);
        // Nothing recognised: the v2 line's path, else the first line's.
        assert_eq!(parse_proc_cgroup("2:cpu:/a\n0::/b\n").path, "/b");
        assert_eq!(
            parse_proc_cgroup("2:cpu:/a\n1:name=systemd:/b\n").path,
            "/a"
        );
    }

    #[test]
    fn garbage_input() {
        let long = "/".repeat(100_000) + "x";
        let inputs = [
            "",
            "\n\n\n",
            "garbage",
            "::::",
            "0::",
            "0::relative/path",
            "12:memory",
            "x:memory:/docker/abc",
            ":memory:/",
            "\u{0}\u{1}\u{7f}:\u{ff}:/\u{fffd}",
            "0::/kubepods.slice/-pod.slice",
            "0::/kubepods.slice/kubepods-pod.slice/cri-containerd-.scope",
            "0::/kubepods/pod/",
            "0::/kubepods/burstable/pod\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "0::/kubepods.slice/kubepods-pod\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}.slice",
            &long,
        ];
        for input in inputs {
            let identity = parse_proc_cgroup(input);
            assert_eq!(identity.container, None, "{input:?}");
            assert_eq!(identity.pod, None, "{input:?}");
            let identity = parse_cgroup_path(input);
            assert_eq!(identity.container, None, "{input:?}");
            assert_eq!(identity.pod, None, "{input:?}");
        }
        assert_eq!(parse_proc_cgroup(""), CgroupIdentity::default());
        assert_eq!(
            parse_proc_cgroup("garbage\n::\n"),
            CgroupIdentity::default()
        );
        assert_eq!(parse_proc_cgroup("0::relative").path, "");
    }

    /// Pieces of real paths glued at random (fixed seed): whatever comes out
    /// must parse without panicking.
    #[test]
    fn shuffled_fragments_never_panic() {
        let fragments = [
            "/",
            "//",
            ":",
            "0",
            "12",
            "memory",
            "name=systemd",
            "\n",
            "kubepods",
            ".slice",
            ".scope",
            "-pod",
            "pod",
            "_",
            "-",
            "burstable",
            "besteffort",
            "kubepods-",
            "crio-",
            "crio-conmon-",
            "cri-containerd-",
            "docker",
            "docker-",
            "libpod-",
            "..",
            C1,
            U1,
            U1_,
            &C2[..31],
            "\u{e9}",
            "\u{1f600}",
            " (deleted)",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut input = String::new();
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let pieces = (state >> 59) as usize + 1;
            for _ in 0..pieces {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                input.push_str(fragments[(state >> 33) as usize % fragments.len()]);
            }
            let identity = parse_proc_cgroup(&input);
            if let Some(container) = identity.container {
                assert!(is_container_id(&container.id), "{input:?}");
            }
            parse_cgroup_path(&input);
        }
    }

    #[test]
    fn serialized_names() {
        let json = serde_json::to_string(&[
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Docker,
            Runtime::Podman,
            Runtime::Unknown,
        ])
        .ok();
        assert_eq!(
            json.as_deref(),
            Some(r#"["containerd","cri-o","docker","podman","unknown"]"#)
        );
        for runtime in [Containerd, CriO, Docker, Podman, Unknown] {
            let json = serde_json::to_string(&runtime).ok();
            assert_eq!(json, Some(format!("\"{}\"", runtime.as_str())));
        }
        let json = serde_json::to_string(&[Guaranteed, Burstable, BestEffort]).ok();
        assert_eq!(
            json.as_deref(),
            Some(r#"["Guaranteed","Burstable","BestEffort"]"#)
        );
        let json = serde_json::to_string(&[Systemd, Cgroupfs]).ok();
        assert_eq!(json.as_deref(), Some(r#"["systemd","cgroupfs"]"#));
    }
}
