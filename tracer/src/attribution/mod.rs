//! Which cgroup, container and pod a process belongs to.
//!
//! The cgroup path from /proc/<pid>/cgroup gives the container id and the pod
//! UID (`cgroup`); kubelet's log directories give the pod's and the
//! container's names (`kubelet`). `Attributor` puts both together and shares
//! one `Attribution` per cgroup: every process of a container points at the
//! same value, which keeps the process table small and makes an exec cost a
//! file read and two hash lookups.

pub mod cgroup;
pub mod hierarchy;
pub mod kubelet;

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub id: String,
    pub runtime: cgroup::Runtime,
    /// null when kubelet's directories do not name it, as the pod's
    /// `namespace` and `name` are: one spelling of "unknown" for consumers.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub uid: String,
    pub qos: cgroup::QosClass,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub cgroup: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// [`Attribution::label_text`].
pub struct Label<'a>(&'a Attribution);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(pod) = &self.0.pod {
            match (&pod.namespace, &pod.name) {
                (Some(namespace), Some(name)) => write!(f, "pod {namespace}/{name}")?,
                _ => write!(f, "pod uid {}", pod.uid)?,
            }
        }
        if let Some(container) = &self.0.container {
            if self.0.pod.is_some() {
                f.write_str(", ")?;
            }
            f.write_str("container ")?;
            match &container.name {
                Some(name) => f.write_str(name)?,
                None => {
                    let id = &container.id;
                    f.write_str(id.get(..SHORT_ID_LEN).unwrap_or(id))?;
                    if container.runtime != cgroup::Runtime::Unknown {
                        write!(f, " ({})", container.runtime.as_str())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The short id length that container runtimes' own listings use, so that a
/// label can be matched against them by eye.
const SHORT_ID_LEN: usize = 12;

impl Attribution {
    /// Cgroup "/" and nothing else, for when nothing is known.
    pub fn host() -> Self {
        Self {
            cgroup: "/".to_owned(),
            container: None,
            pod: None,
        }
    }

    /// "pod default/web-7f9c-x2k4, container app" / "container 3f9a1c2b4d5e (docker)" / "" for host processes; pods whose name is unknown show "pod uid 3f1c2a4e-..."; container ids shortened to 12 hex
    pub fn label(&self) -> String {
        self.label_text().to_string()
    }

    /// The label, written where it goes (no string of its own: the console
    /// writes one or two per event).
    pub fn label_text(&self) -> Label<'_> {
        Label(self)
    }

    /// Whether the label says anything (not a host process).
    pub fn has_label(&self) -> bool {
        self.pod.is_some() || self.container.is_some()
    }

    /// Whether kubelet may still tell names that this value lacks.
    fn lacks_names(&self) -> bool {
        self.pod.as_ref().is_some_and(|pod| {
            pod.name.is_none()
                || self
                    .container
                    .as_ref()
                    .is_some_and(|container| container.name.is_none())
        })
    }
}

/// Interned values are kept until this many cgroups, then all forgotten at
/// once: pods and containers come and go for as long as tracer runs.
/// Processes keep their `Arc`s; only the sharing with later lookups is lost.
const INTERNED_MAX: usize = 16_384;

pub struct Attributor {
    procfs: PathBuf,
    kubelet: kubelet::KubeletDirectory,
    /// One value per cgroup path.
    by_path: HashMap<String, Arc<Attribution>>,
    /// The chosen cgroup path for a /proc/<pid>/cgroup content seen before:
    /// processes of a container all have the same content, so most lookups
    /// skip parsing.
    by_content: HashMap<String, String>,
    capacity: usize,
    /// Cgroup ids (from the kernel) to paths.
    index: hierarchy::CgroupIndex,
    /// The attribution for a (cgroup2 id, v1 memory cgroup id) pair.
    by_ids: HashMap<(u64, u64), Arc<Attribution>>,
    /// Reused on every call: this runs for every exec on the node.
    proc_path: PathBuf,
    /// Bytes, not a `String`: a cgroup name may be any bytes, and one odd
    /// name must not make the whole file unreadable.
    content: Vec<u8>,
}

impl Attributor {
    pub fn new(procfs: &Path, host_root: &Path) -> Self {
        Self::with_cgroup_index(
            procfs,
            host_root,
            hierarchy::CgroupIndex::from_this_mount_namespace(),
        )
    }

    /// With the cgroup filesystems of `mountinfo` (a fake hierarchy in
    /// tests, which need no root).
    #[cfg(test)]
    pub(crate) fn with_mountinfo(procfs: &Path, host_root: &Path, mountinfo: &str) -> Self {
        Self::with_cgroup_index(
            procfs,
            host_root,
            hierarchy::CgroupIndex::from_mountinfo(mountinfo),
        )
    }

    fn with_cgroup_index(procfs: &Path, host_root: &Path, index: hierarchy::CgroupIndex) -> Self {
        Self {
            procfs: procfs.to_path_buf(),
            kubelet: kubelet::KubeletDirectory::new(host_root),
            by_path: HashMap::new(),
            by_content: HashMap::new(),
            capacity: INTERNED_MAX,
            index,
            by_ids: HashMap::new(),
            proc_path: PathBuf::new(),
            content: Vec::new(),
        }
    }

    /// Reads <procfs>/<pid>/cgroup (into a reused buffer: this runs on every exec on the node), parses it and returns the interned attribution for that cgroup path (same Arc for the same path). Err when the process is gone.
    pub fn for_pid(&mut self, pid: u32) -> io::Result<Arc<Attribution>> {
        let path = self.proc_path.as_mut_os_string();
        path.clear();
        path.push(self.procfs.as_os_str());
        write!(path, "/{pid}/cgroup").map_err(io::Error::other)?;
        let mut content = std::mem::take(&mut self.content);
        content.clear();
        let read = File::open(&self.proc_path).and_then(|mut file| file.read_to_end(&mut content));
        let result = match read {
            Ok(_) => Ok(self.for_cgroup_file(&String::from_utf8_lossy(&content))),
            Err(error) => Err(error),
        };
        self.content = content;
        result
    }

    /// Same for an already-known cgroup file content (used by tests and by the /proc scan).
    ///
    /// Content with no cgroup line in it reads as the host. A value that
    /// lacks names is refreshed on the way (see `refresh`), so that new
    /// processes of a new pod get the names once kubelet has written them.
    pub fn for_cgroup_file(&mut self, content: &str) -> Arc<Attribution> {
        let known = self
            .by_content
            .get(content)
            .and_then(|path| self.by_path.get(path))
            .cloned();
        let attribution = match known {
            Some(attribution) => attribution,
            None => {
                let identity = cgroup::parse_proc_cgroup(content);
                let path = identity.path.clone();
                let attribution = self.intern(identity);
                if self.by_content.len() >= self.capacity {
                    self.by_content.clear();
                }
                self.by_content.insert(content.to_owned(), path);
                attribution
            }
        };
        if attribution.lacks_names() {
            self.refresh(&attribution)
        } else {
            attribution
        }
    }

    /// Returns a fresher value when the interned one lacks pod or container names that kubelet may have written since (rate-limited through KubeletDirectory); otherwise the same Arc.
    ///
    /// The fresher value replaces the interned one, so later lookups of the
    /// same cgroup share it.
    pub fn refresh(&mut self, a: &Arc<Attribution>) -> Arc<Attribution> {
        if !a.lacks_names() {
            return a.clone();
        }
        if let Some(current) = self.by_path.get(&a.cgroup) {
            if !Arc::ptr_eq(current, a) && !current.lacks_names() {
                return current.clone();
            }
        }
        let mut fresh = Attribution::clone(a);
        if !self.name(&mut fresh) {
            return a.clone();
        }
        let fresh = Arc::new(fresh);
        self.insert(fresh.clone());
        fresh
    }

    /// The attribution of the cgroups the kernel named in an event: the
    /// cgroup2 id and the v1 memory cgroup's id. Of the two, the one that
    /// places the process in a pod wins, then one that names a container,
    /// then the cgroup2 path. `None` when neither cgroup exists any more.
    pub fn for_cgroup_ids(&mut self, v2_id: u64, v1_id: u64) -> Option<Arc<Attribution>> {
        if let Some(known) = self.by_ids.get(&(v2_id, v1_id)).cloned() {
            return Some(self.refresh(&known));
        }
        let mut paths = Vec::with_capacity(2);
        for (hierarchy, id) in [
            (hierarchy::Hierarchy::V2, v2_id),
            (hierarchy::Hierarchy::V1Memory, v1_id),
        ] {
            if id == 0 || !self.index.has(hierarchy) {
                continue;
            }
            // Half an answer could name the host for a pod's process: let the
            // caller fall back to /proc instead.
            paths.push(self.index.path(hierarchy, id)?);
        }
        let candidates: Vec<Arc<Attribution>> = paths
            .into_iter()
            .map(|path| self.intern(cgroup::parse_cgroup_path(&path)))
            .collect();
        let chosen = candidates
            .iter()
            .find(|a| a.pod.is_some())
            .or_else(|| candidates.iter().find(|a| a.container.is_some()))
            // On hybrid hosts most processes sit at the cgroup2 root while
            // their v1 memory cgroup says more.
            .or_else(|| candidates.iter().find(|a| a.cgroup != "/"))
            .or_else(|| candidates.first())?
            .clone();
        if self.by_ids.len() >= self.capacity {
            self.by_ids.clear();
        }
        self.by_ids.insert((v2_id, v1_id), chosen.clone());
        Some(self.refresh(&chosen))
    }

    /// The attribution of the io controller's cgroup `id` (a bio's blkcg):
    /// in the blkio hierarchy on v1 and hybrid hosts, else in cgroup2.
    pub fn for_io_cgroup(&mut self, id: u64) -> Option<Arc<Attribution>> {
        let hierarchy = [hierarchy::Hierarchy::V1Blkio, hierarchy::Hierarchy::V2]
            .into_iter()
            .find(|h| self.index.has(*h))?;
        let path = self.index.path(hierarchy, id)?;
        Some(self.for_cgroup_path(&path))
    }

    /// The memory cgroup with kernfs id `id` (as the OOM records name them):
    /// its path in the memory controller's hierarchy and its directory.
    pub fn memory_cgroup(&mut self, id: u64) -> Option<(Arc<str>, PathBuf)> {
        let hierarchy = self.index.memory_hierarchy()?;
        let path = self.index.path(hierarchy, id)?;
        let dir = self
            .index
            .root(hierarchy)?
            .join(path.trim_start_matches('/'));
        Some((path, dir))
    }

    /// The directory of a memory cgroup path.
    pub fn memory_cgroup_dir(&self, path: &str) -> Option<PathBuf> {
        let hierarchy = self.index.memory_hierarchy()?;
        Some(
            self.index
                .root(hierarchy)?
                .join(path.trim_start_matches('/')),
        )
    }

    /// The attribution of a cgroup path (a pod-level cgroup gives the pod
    /// without a container).
    pub fn for_cgroup_path(&mut self, path: &str) -> Arc<Attribution> {
        let attribution = self.intern(cgroup::parse_cgroup_path(path));
        self.refresh(&attribution)
    }

    pub fn kubelet(&mut self) -> &mut kubelet::KubeletDirectory {
        &mut self.kubelet
    }

    fn intern(&mut self, identity: cgroup::CgroupIdentity) -> Arc<Attribution> {
        let path = if identity.path.is_empty() {
            Attribution::host().cgroup
        } else {
            identity.path
        };
        if let Some(attribution) = self.by_path.get(&path) {
            return attribution.clone();
        }
        let mut attribution = Attribution {
            cgroup: path,
            container: identity.container.map(|container| Container {
                id: container.id,
                runtime: container.runtime,
                name: None,
            }),
            pod: identity.pod.map(|pod| Pod {
                uid: pod.uid,
                qos: pod.qos,
                namespace: None,
                name: None,
            }),
        };
        self.name(&mut attribution);
        let attribution = Arc::new(attribution);
        self.insert(attribution.clone());
        attribution
    }

    fn insert(&mut self, attribution: Arc<Attribution>) {
        if self.by_path.len() >= self.capacity && !self.by_path.contains_key(&attribution.cgroup) {
            self.by_path.clear();
            self.by_content.clear();
        }
        self.by_path.insert(attribution.cgroup.clone(), attribution);
    }

    /// Fills in the names kubelet knows and `attribution` lacks. Returns
    /// whether it filled any. Names belong to pods: a container outside
    /// Kubernetes keeps its id only.
    fn name(&mut self, attribution: &mut Attribution) -> bool {
        let Some(pod) = &mut attribution.pod else {
            return false;
        };
        let mut named = false;
        if pod.name.is_none() {
            if let Some(meta) = self.kubelet.pod(&pod.uid) {
                pod.namespace = Some(meta.namespace.clone());
                pod.name = Some(meta.name.clone());
                named = true;
            }
        }
        if let Some(container) = &mut attribution.container {
            if container.name.is_none() {
                if let Some(name) = self.kubelet.container_name(&pod.uid, &container.id) {
                    container.name = Some(name.to_string());
                    named = true;
                }
            }
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::symlink, time::Duration};

    use cgroup::{QosClass, Runtime};

    const WEB_UID: &str = "73382c30-be4e-4703-9d4c-11721e001c70";
    const WEB_UID_: &str = "73382c30_be4e_4703_9d4c_11721e001c70";
    const LATE_UID: &str = "2aa431bd-c7a8-49d3-9d3a-dcbd01991537";
    const APP: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const SIDECAR: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
    const DOCKER: &str = "3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
    const LATE: &str = "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6";

    struct Node {
        _dir: tempfile::TempDir,
        procfs: PathBuf,
        host: PathBuf,
    }

    impl Node {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let procfs = dir.path().join("proc");
            let host = dir.path().join("host");
            fs::create_dir_all(&procfs).expect("create proc");
            fs::create_dir_all(&host).expect("create host");
            Self {
                _dir: dir,
                procfs,
                host,
            }
        }

        fn process(&self, pid: u32, cgroup_file: &str) {
            let dir = self.procfs.join(pid.to_string());
            fs::create_dir_all(&dir).expect("create pid dir");
            fs::write(dir.join("cgroup"), cgroup_file).expect("write cgroup");
        }

        fn container_log(&self, (namespace, pod, uid): (&str, &str, &str), name: &str, id: &str) {
            let pod_dir = format!("var/log/pods/{namespace}_{pod}_{uid}");
            fs::create_dir_all(self.host.join(&pod_dir).join(name)).expect("create log dir");
            let links = self.host.join("var/log/containers");
            fs::create_dir_all(&links).expect("create containers dir");
            symlink(
                format!("/{pod_dir}/{name}/0.log"),
                links.join(format!("{pod}_{namespace}_{name}-{id}.log")),
            )
            .expect("symlink");
        }

        fn attributor(&self) -> Attributor {
            Attributor::new(&self.procfs, &self.host)
        }
    }

    fn pod_scope(uid_: &str, id: &str) -> String {
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope"
        )
    }

    fn web_pod_node() -> Node {
        let node = Node::new();
        node.container_log(("default", "web-7f9c-x2k4", WEB_UID), "app", APP);
        node.container_log(("default", "web-7f9c-x2k4", WEB_UID), "sidecar", SIDECAR);
        node.process(100, &format!("0::{}\n", pod_scope(WEB_UID_, APP)));
        node.process(101, &format!("0::{}\n", pod_scope(WEB_UID_, APP)));
        node.process(102, &format!("0::{}\n", pod_scope(WEB_UID_, SIDECAR)));
        node.process(200, "0::/system.slice/sshd.service\n");
        node.process(300, &format!("0::/system.slice/docker-{DOCKER}.scope\n"));
        node
    }

    #[test]
    fn pod_containers_get_their_names() {
        let node = web_pod_node();
        let mut attributor = node.attributor();
        let app = attributor.for_pid(100).expect("pid 100");
        assert_eq!(
            *app,
            Attribution {
                cgroup: pod_scope(WEB_UID_, APP),
                container: Some(Container {
                    id: APP.to_owned(),
                    runtime: Runtime::Containerd,
                    name: Some("app".to_owned()),
                }),
                pod: Some(Pod {
                    uid: WEB_UID.to_owned(),
                    qos: QosClass::Burstable,
                    namespace: Some("default".to_owned()),
                    name: Some("web-7f9c-x2k4".to_owned()),
                }),
            }
        );
        assert_eq!(app.label(), "pod default/web-7f9c-x2k4, container app");
        let sidecar = attributor.for_pid(102).expect("pid 102");
        assert_eq!(
            sidecar.label(),
            "pod default/web-7f9c-x2k4, container sidecar"
        );
    }

    #[test]
    fn one_value_per_cgroup() {
        let node = web_pod_node();
        // Same cgroup through a v1 file: the chosen path is the same.
        node.process(
            103,
            &format!("1:name=systemd:{}\n", pod_scope(WEB_UID_, APP)),
        );
        let mut attributor = node.attributor();
        let a = attributor.for_pid(100).expect("pid 100");
        let b = attributor.for_pid(101).expect("pid 101");
        let c = attributor.for_pid(103).expect("pid 103");
        let again = attributor.for_pid(100).expect("pid 100");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(&a, &again));
        let sidecar = attributor.for_pid(102).expect("pid 102");
        assert!(!Arc::ptr_eq(&a, &sidecar));
    }

    #[test]
    fn host_and_plain_containers() {
        let node = web_pod_node();
        let mut attributor = node.attributor();
        let sshd = attributor.for_pid(200).expect("pid 200");
        assert_eq!(sshd.cgroup, "/system.slice/sshd.service");
        assert_eq!((&sshd.container, &sshd.pod), (&None, &None));
        assert_eq!(sshd.label(), "");
        let docker = attributor.for_pid(300).expect("pid 300");
        assert_eq!(
            docker.container,
            Some(Container {
                id: DOCKER.to_owned(),
                runtime: Runtime::Docker,
                name: None,
            })
        );
        assert_eq!(docker.pod, None);
        assert_eq!(docker.label(), "container 3f9a1c2b4d5e (docker)");
        assert_eq!(Attribution::host().label(), "");
    }

    #[test]
    fn gone_process_is_an_error() {
        let node = web_pod_node();
        let mut attributor = node.attributor();
        let error = attributor.for_pid(999).expect_err("no such pid");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        // The buffers survive an error.
        assert!(attributor.for_pid(100).is_ok());
    }

    #[test]
    fn odd_files() {
        let node = Node::new();
        node.process(1, "");
        node.process(2, "garbage\n\u{0}::");
        let dir = node.procfs.join("3");
        fs::create_dir_all(&dir).expect("create");
        fs::write(
            dir.join("cgroup"),
            b"0::/system.slice/odd\xff\xfe.service\n",
        )
        .expect("write");
        let mut attributor = node.attributor();
        let empty = attributor.for_pid(1).expect("pid 1");
        assert_eq!(*empty, Attribution::host());
        let garbage = attributor.for_pid(2).expect("pid 2");
        assert!(Arc::ptr_eq(&empty, &garbage));
        let odd = attributor.for_pid(3).expect("pid 3");
        assert_eq!(odd.cgroup, "/system.slice/odd\u{fffd}\u{fffd}.service");
    }

    #[test]
    fn names_written_later_are_picked_up() {
        let node = Node::new();
        let late = ("batch", "report-28372910-x8r2p", LATE_UID);
        let content = format!("0::{}\n", pod_scope(&LATE_UID.replace('-', "_"), LATE));
        node.process(400, &content);
        let mut attributor = node.attributor();
        let before = attributor.for_pid(400).expect("pid 400");
        assert_eq!(before.pod.as_ref().and_then(|p| p.name.as_ref()), None);
        assert_eq!(
            before.label(),
            format!("pod uid {LATE_UID}, container 2e7d2c03a950 (containerd)")
        );
        // Nothing new: the same value.
        assert!(Arc::ptr_eq(&before, &attributor.refresh(&before)));

        node.container_log(late, "report", LATE);
        // Still within the re-scan interval.
        assert!(Arc::ptr_eq(&before, &attributor.refresh(&before)));
        *attributor.kubelet() =
            kubelet::KubeletDirectory::with_rescan_interval(&node.host, Duration::ZERO);
        let after = attributor.refresh(&before);
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(
            after.label(),
            "pod batch/report-28372910-x8r2p, container report"
        );
        // Complete now: refreshing again, and later lookups, share it.
        assert!(Arc::ptr_eq(&after, &attributor.refresh(&after)));
        assert!(Arc::ptr_eq(&after, &attributor.refresh(&before)));
        assert!(Arc::ptr_eq(&after, &attributor.for_cgroup_file(&content)));
        assert!(Arc::ptr_eq(
            &after,
            &attributor.for_pid(400).expect("pid 400")
        ));
    }

    #[test]
    fn host_values_are_never_refreshed() {
        let node = web_pod_node();
        let mut attributor = node.attributor();
        for pid in [200, 300] {
            let a = attributor.for_pid(pid).expect("pid");
            assert!(Arc::ptr_eq(&a, &attributor.refresh(&a)));
        }
        let host = Arc::new(Attribution::host());
        assert!(Arc::ptr_eq(&host, &attributor.refresh(&host)));
    }

    #[test]
    fn interning_is_bounded() {
        let mut attributor = Attributor::new(Path::new("/nonexistent"), Path::new("/nonexistent"));
        attributor.capacity = 4;
        let first = attributor.for_cgroup_file("0::/docker/0\n");
        for n in 1..10 {
            attributor.for_cgroup_file(&format!("0::/docker/{n}\n"));
            assert!(attributor.by_path.len() <= 4);
            assert!(attributor.by_content.len() <= 4);
        }
        let again = attributor.for_cgroup_file("0::/docker/0\n");
        assert_eq!(first, again);
    }

    #[test]
    fn labels() {
        let container = |name: Option<&str>, runtime| Container {
            id: APP.to_owned(),
            runtime,
            name: name.map(str::to_owned),
        };
        let pod = |named: bool| Pod {
            uid: WEB_UID.to_owned(),
            qos: QosClass::Guaranteed,
            namespace: named.then(|| "default".to_owned()),
            name: named.then(|| "web-7f9c-x2k4".to_owned()),
        };
        let label = |container: Option<Container>, pod: Option<Pod>| {
            Attribution {
                cgroup: "/x".to_owned(),
                container,
                pod,
            }
            .label()
        };
        assert_eq!(label(None, Some(pod(true))), "pod default/web-7f9c-x2k4");
        assert_eq!(label(None, Some(pod(false))), format!("pod uid {WEB_UID}"));
        assert_eq!(
            label(Some(container(None, Runtime::CriO)), Some(pod(true))),
            "pod default/web-7f9c-x2k4, container ca978112ca1b (cri-o)"
        );
        assert_eq!(
            label(
                Some(container(Some("app"), Runtime::Unknown)),
                Some(pod(false))
            ),
            format!("pod uid {WEB_UID}, container app")
        );
        assert_eq!(
            label(Some(container(None, Runtime::Unknown)), None),
            "container ca978112ca1b"
        );
        let short = Container {
            id: "abc".to_owned(),
            runtime: Runtime::Podman,
            name: None,
        };
        assert_eq!(label(Some(short), None), "container abc (podman)");
    }

    #[test]
    fn json_shape() {
        let full = Attribution {
            cgroup: pod_scope(WEB_UID_, APP),
            container: Some(Container {
                id: APP.to_owned(),
                runtime: Runtime::CriO,
                name: Some("app".to_owned()),
            }),
            pod: Some(Pod {
                uid: WEB_UID.to_owned(),
                qos: QosClass::BestEffort,
                namespace: Some("default".to_owned()),
                name: Some("web-7f9c-x2k4".to_owned()),
            }),
        };
        let json = serde_json::to_value(&full).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({
                "cgroup": pod_scope(WEB_UID_, APP),
                "container": {"id": APP, "runtime": "cri-o", "name": "app"},
                "pod": {
                    "uid": WEB_UID,
                    "qos": "BestEffort",
                    "namespace": "default",
                    "name": "web-7f9c-x2k4"
                }
            })
        );
        let unnamed = Attribution {
            cgroup: "/kubepods/pod/x".to_owned(),
            container: Some(Container {
                id: APP.to_owned(),
                runtime: Runtime::Unknown,
                name: None,
            }),
            pod: Some(Pod {
                uid: WEB_UID.to_owned(),
                qos: QosClass::Guaranteed,
                namespace: None,
                name: None,
            }),
        };
        let json = serde_json::to_value(&unnamed).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({
                "cgroup": "/kubepods/pod/x",
                "container": {"id": APP, "runtime": "unknown", "name": null},
                "pod": {"uid": WEB_UID, "qos": "Guaranteed", "namespace": null, "name": null}
            })
        );
        let host = serde_json::to_string(&Attribution::host()).expect("serialize");
        assert_eq!(host, r#"{"cgroup":"/"}"#);
    }

    #[test]
    fn real_proc_self() {
        let mut attributor = Attributor::new(Path::new("/proc"), Path::new("/"));
        let attribution = attributor
            .for_pid(std::process::id())
            .expect("own cgroup file");
        assert!(attribution.cgroup.starts_with('/'));
        let again = attributor.for_pid(std::process::id()).expect("again");
        assert!(Arc::ptr_eq(&attribution, &again) || attribution.lacks_names());
    }
}
