//! Pod and container names from kubelet's log directories.
//!
//! A cgroup path gives a pod's UID and a container's id, never their names.
//! Kubelet writes both on disk for every pod it runs, whatever the container
//! runtime, before any of the pod's containers starts:
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`, and the
//! symlinks `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`.
//! Reading those needs no API server access and no runtime socket. Pod,
//! namespace and container names are DNS labels or subdomains: none can hold
//! `_`, which makes both names unambiguous.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::cgroup::is_container_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Pods appear while tracer runs, so a miss re-reads the directories. The
/// first miss for a pod UID or container id re-reads them at once: a
/// container that crashes within a second of starting (a crash loop, an
/// OOM at start) is named all the same. Later misses for the same one wait
/// this long since the last read: that bounds the work when something asks
/// again and again about a pod that has no log directory (or a sandbox
/// container that has no log).
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Resolved container names are kept until this many, then forgotten at
/// once: containers come and go for as long as tracer runs, and a forgotten
/// name costs one lookup in the symlink table to find again.
const NAMES_MAX: usize = 16_384;

/// A `/var/log/containers` symlink, by container id.
struct Link {
    container: Arc<str>,
    namespace: String,
    pod: String,
}

pub struct KubeletDirectory {
    pods_dir: PathBuf,
    containers_dir: PathBuf,
    rescan_interval: Duration,
    /// By UID, as of the last scan of `pods_dir`.
    pods: HashMap<String, Arc<PodMeta>>,
    pods_scanned: Option<Instant>,
    /// By container id, as of the last scan of `containers_dir`.
    links: HashMap<String, Link>,
    links_scanned: Option<Instant>,
    /// Answers already given, by container id.
    names: HashMap<String, Arc<str>>,
    /// Pod UIDs and container ids a read already missed: the next misses
    /// for them wait for the interval. Bounded as `names` is.
    missed_pods: HashSet<String>,
    missed_links: HashSet<String>,
}

impl KubeletDirectory {
    /// `host_root` is prefixed to /var/log/pods and /var/log/containers ("/" on a node; "/host" in a DaemonSet that mounts the host there; a temp dir in tests).
    pub fn new(host_root: &Path) -> Self {
        Self::with_rescan_interval(host_root, RESCAN_INTERVAL)
    }

    /// As `new`, with another bound on how often a miss re-reads the
    /// directories.
    pub fn with_rescan_interval(host_root: &Path, rescan_interval: Duration) -> Self {
        let log = host_root.join("var/log");
        Self {
            pods_dir: log.join("pods"),
            containers_dir: log.join("containers"),
            rescan_interval,
            pods: HashMap::new(),
            pods_scanned: None,
            links: HashMap::new(),
            links_scanned: None,
            names: HashMap::new(),
            missed_pods: HashSet::new(),
            missed_links: HashSet::new(),
        }
    }

    /// Pod metadata for a pod UID; cached; on a miss re-scans /var/log/pods: at once for a UID never missed before, else at most once every 2 seconds (pods appear while tracer runs).
    pub fn pod(&mut self, uid: &str) -> Option<Arc<PodMeta>> {
        if let Some(meta) = self.pods.get(uid) {
            return Some(meta.clone());
        }
        let first_miss = !self.missed_pods.contains(uid);
        if first_miss {
            self.pods_scanned = None;
        }
        let found = if self.rescan_pods() {
            self.pods.get(uid).cloned()
        } else {
            None
        };
        if found.is_none() && first_miss {
            remember_miss(&mut self.missed_pods, uid);
        }
        found
    }

    /// The container's name: from the /var/log/containers symlink whose name ends in -<container_id>.log; else, when the pod's log directory holds exactly one container directory, that one. Cached per container id.
    ///
    /// The fallback serves hosts where /var/log/containers is missing or not
    /// mounted. It is not used for a pod that has symlinks: the pod's sandbox
    /// (`pause`) container has a cgroup of its own but no log, and must not
    /// take the name of the pod's only container. Where there are no
    /// symlinks at all that cannot be told apart, and the sandbox of a
    /// one-container pod gets that container's name.
    pub fn container_name(&mut self, pod_uid: &str, container_id: &str) -> Option<Arc<str>> {
        if let Some(name) = self.names.get(container_id) {
            return Some(name.clone());
        }
        let name = match self.linked_name(container_id) {
            Some(name) => name,
            None => self.sole_container(pod_uid)?,
        };
        if self.names.len() >= NAMES_MAX {
            self.names.clear();
        }
        self.names.insert(container_id.to_owned(), name.clone());
        Some(name)
    }

    /// For `--pod NAMESPACE/NAME`: every UID currently known for that pod name (a recreated pod gets a new UID; same rate-limited re-scan on a miss).
    ///
    /// The re-scan is tried on every call, not only when no UID is known:
    /// while the old pod's directory is still there, a recreated pod's new
    /// UID would otherwise never be seen. Sorted by UID.
    pub fn pods_named(&mut self, namespace: &str, name: &str) -> Vec<Arc<PodMeta>> {
        self.rescan_pods();
        let mut found: Vec<Arc<PodMeta>> = self
            .pods
            .values()
            .filter(|meta| meta.namespace == namespace && meta.name == name)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.uid.cmp(&b.uid));
        found
    }

    fn linked_name(&mut self, container_id: &str) -> Option<Arc<str>> {
        if let Some(link) = self.links.get(container_id) {
            return Some(link.container.clone());
        }
        let first_miss = !self.missed_links.contains(container_id);
        if first_miss {
            self.links_scanned = None;
        }
        let found = if self.rescan_links() {
            self.links
                .get(container_id)
                .map(|link| link.container.clone())
        } else {
            None
        };
        if found.is_none() && first_miss {
            remember_miss(&mut self.missed_links, container_id);
        }
        found
    }

    fn sole_container(&mut self, pod_uid: &str) -> Option<Arc<str>> {
        let meta = self.pod(pod_uid)?;
        let has_links = self
            .links
            .values()
            .any(|link| link.namespace == meta.namespace && link.pod == meta.name);
        if has_links {
            return None;
        }
        let dir = self
            .pods_dir
            .join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
        let mut sole = None;
        for entry in fs::read_dir(dir).ok()?.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if sole.is_some() {
                return None;
            }
            sole = Some(entry.file_name());
        }
        sole?.to_str().map(Arc::from)
    }

    /// Re-reads `pods_dir` unless it was read less than the interval ago.
    /// Returns whether it did. Pods gone from disk are forgotten.
    fn rescan_pods(&mut self) -> bool {
        if !due(self.pods_scanned, self.rescan_interval) {
            return false;
        }
        self.pods_scanned = Some(Instant::now());
        let mut pods = HashMap::with_capacity(self.pods.len());
        // A missing or unreadable directory reads as no pods: the host may
        // not run kubelet, or the directory may not be mounted.
        if let Ok(entries) = fs::read_dir(&self.pods_dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some((namespace, name, uid)) = file_name.to_str().and_then(split_pod_dir)
                else {
                    continue;
                };
                // Keep the same Arc for a pod already known.
                let meta = match self.pods.remove(uid) {
                    Some(old) if old.namespace == namespace && old.name == name => old,
                    _ => Arc::new(PodMeta {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        uid: uid.to_owned(),
                    }),
                };
                pods.insert(uid.to_owned(), meta);
            }
        }
        self.pods = pods;
        true
    }

    /// Same as `rescan_pods`, for `containers_dir`.
    fn rescan_links(&mut self) -> bool {
        if !due(self.links_scanned, self.rescan_interval) {
            return false;
        }
        self.links_scanned = Some(Instant::now());
        let mut links = HashMap::with_capacity(self.links.len());
        if let Ok(entries) = fs::read_dir(&self.containers_dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some((pod, namespace, container, id)) =
                    file_name.to_str().and_then(split_container_link)
                else {
                    continue;
                };
                let container = match self.links.remove(id) {
                    Some(old) if &*old.container == container => old.container,
                    _ => Arc::from(container),
                };
                links.insert(
                    id.to_owned(),
                    Link {
                        container,
                        namespace: namespace.to_owned(),
                        pod: pod.to_owned(),
                    },
                );
            }
        }
        self.links = links;
        true
    }
}

/// Notes a miss for `key`; the set is forgotten at once when full, which
/// costs each key one more immediate read.
fn remember_miss(missed: &mut HashSet<String>, key: &str) {
    if missed.len() >= NAMES_MAX {
        missed.clear();
    }
    missed.insert(key.to_owned());
}

fn due(last: Option<Instant>, interval: Duration) -> bool {
    last.is_none_or(|at| at.elapsed() >= interval)
}

/// `<namespace>_<pod>_<uid>` → (namespace, pod, uid).
fn split_pod_dir(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed =
        parts.next().is_none() && !namespace.is_empty() && !pod.is_empty() && !uid.is_empty();
    well_formed.then_some((namespace, pod, uid))
}

/// `<pod>_<namespace>_<container>-<id>.log` → (pod, namespace, container, id).
fn split_container_link(name: &str) -> Option<(&str, &str, &str, &str)> {
    let stem = name.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    if !is_container_id(id) {
        return None;
    }
    let mut parts = rest.split('_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed =
        parts.next().is_none() && !pod.is_empty() && !namespace.is_empty() && !container.is_empty();
    well_formed.then_some((pod, namespace, container, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const WEB_UID: &str = "73382c30-be4e-4703-9d4c-11721e001c70";
    const CART_UID: &str = "2aa431bd-c7a8-49d3-9d3a-dcbd01991537";
    const CART_NEW_UID: &str = "31ee67ac-1d46-4852-994a-2e1ec2a65f4b";
    const WEB_APP: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const CART_API: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
    const CART_SIDECAR: &str = "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6";
    const SANDBOX: &str = "18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4";

    fn root() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    /// `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`, and the
    /// `/var/log/containers` symlink when `id` is given.
    fn add_container(
        root: &Path,
        (namespace, pod, uid): (&str, &str, &str),
        container: &str,
        id: Option<&str>,
    ) {
        let pod_dir = format!("var/log/pods/{namespace}_{pod}_{uid}");
        let dir = root.join(&pod_dir).join(container);
        fs::create_dir_all(&dir).expect("create pod log dir");
        fs::write(dir.join("0.log"), b"").expect("write log");
        if let Some(id) = id {
            let links = root.join("var/log/containers");
            fs::create_dir_all(&links).expect("create containers dir");
            symlink(
                format!("/{pod_dir}/{container}/0.log"),
                links.join(format!("{pod}_{namespace}_{container}-{id}.log")),
            )
            .expect("symlink");
        }
    }

    const WEB: (&str, &str, &str) = ("default", "web-7f9c-x2k4", WEB_UID);
    const CART: (&str, &str, &str) = ("shop", "cart-5d8b6c9f4-qz7wl", CART_UID);

    fn meta((namespace, name, uid): (&str, &str, &str)) -> PodMeta {
        PodMeta {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
        }
    }

    #[test]
    fn single_container_pod_without_symlinks() {
        let root = root();
        add_container(root.path(), WEB, "app", None);
        let mut kubelet = KubeletDirectory::new(root.path());
        assert_eq!(kubelet.pod(WEB_UID).as_deref(), Some(&meta(WEB)));
        assert_eq!(
            kubelet.container_name(WEB_UID, WEB_APP).as_deref(),
            Some("app")
        );
        // Cached: the answer stays once the directory is gone.
        fs::remove_dir_all(root.path().join("var/log/pods")).expect("remove");
        assert_eq!(
            kubelet.container_name(WEB_UID, WEB_APP).as_deref(),
            Some("app")
        );
        assert_eq!(kubelet.pod(WEB_UID).as_deref(), Some(&meta(WEB)));
    }

    #[test]
    fn two_container_pod_with_symlinks() {
        let root = root();
        add_container(root.path(), CART, "api", Some(CART_API));
        add_container(root.path(), CART, "sidecar", Some(CART_SIDECAR));
        add_container(root.path(), WEB, "app", Some(WEB_APP));
        let mut kubelet = KubeletDirectory::new(root.path());
        assert_eq!(kubelet.pod(CART_UID).as_deref(), Some(&meta(CART)));
        assert_eq!(kubelet.pod(WEB_UID).as_deref(), Some(&meta(WEB)));
        assert_eq!(
            kubelet.container_name(CART_UID, CART_API).as_deref(),
            Some("api")
        );
        assert_eq!(
            kubelet.container_name(CART_UID, CART_SIDECAR).as_deref(),
            Some("sidecar")
        );
        assert_eq!(
            kubelet.container_name(WEB_UID, WEB_APP).as_deref(),
            Some("app")
        );
        // The sandbox has no log: a one-container pod with symlinks must not
        // lend it its container's name, nor may a two-container pod.
        assert_eq!(kubelet.container_name(WEB_UID, SANDBOX), None);
        assert_eq!(kubelet.container_name(CART_UID, SANDBOX), None);
    }

    #[test]
    fn two_container_pod_without_symlinks_has_no_guess() {
        let root = root();
        add_container(root.path(), CART, "api", None);
        add_container(root.path(), CART, "sidecar", None);
        let mut kubelet = KubeletDirectory::new(root.path());
        assert_eq!(kubelet.pod(CART_UID).as_deref(), Some(&meta(CART)));
        assert_eq!(kubelet.container_name(CART_UID, CART_API), None);
    }

    #[test]
    fn missing_directories() {
        let root = root();
        let mut kubelet = KubeletDirectory::new(&root.path().join("nowhere"));
        assert_eq!(kubelet.pod(WEB_UID), None);
        assert_eq!(kubelet.container_name(WEB_UID, WEB_APP), None);
        assert!(kubelet.pods_named("default", "web-7f9c-x2k4").is_empty());
        // A file where a directory should be.
        fs::create_dir_all(root.path().join("var/log")).expect("create");
        fs::write(root.path().join("var/log/pods"), b"").expect("write");
        let mut kubelet = KubeletDirectory::new(root.path());
        assert_eq!(kubelet.pod(WEB_UID), None);
        assert_eq!(kubelet.container_name(WEB_UID, WEB_APP), None);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let root = root();
        add_container(root.path(), WEB, "app", Some(WEB_APP));
        let pods = root.path().join("var/log/pods");
        let links = root.path().join("var/log/containers");
        for odd in ["lost+found", "a_b", "a_b_c_d", "_web_", "default__uid"] {
            fs::create_dir_all(pods.join(odd)).expect("create");
        }
        for odd in [
            format!("web_default_app-{}.log", &WEB_APP[..63]),
            format!("web_default_-{CART_API}.log"),
            format!("web_default_app_x-{CART_API}.log"),
            format!("web_default_app-{CART_API}.txt"),
            format!("{CART_API}.log"),
        ] {
            fs::write(links.join(odd), b"").expect("write");
        }
        let mut kubelet = KubeletDirectory::new(root.path());
        assert_eq!(kubelet.pod(WEB_UID).as_deref(), Some(&meta(WEB)));
        assert_eq!(kubelet.pod("c"), None);
        assert_eq!(kubelet.pod("uid"), None);
        assert_eq!(kubelet.container_name(WEB_UID, CART_API), None);
        assert_eq!(
            kubelet.container_name(WEB_UID, WEB_APP).as_deref(),
            Some("app")
        );
    }

    #[test]
    fn a_miss_is_rescanned_only_after_the_interval() {
        let root = root();
        let mut kubelet =
            KubeletDirectory::with_rescan_interval(root.path(), Duration::from_secs(3600));
        assert_eq!(kubelet.pod(WEB_UID), None);
        assert_eq!(kubelet.container_name(WEB_UID, WEB_APP), None);
        add_container(root.path(), WEB, "app", Some(WEB_APP));
        assert_eq!(kubelet.pod(WEB_UID), None);
        assert_eq!(kubelet.container_name(WEB_UID, WEB_APP), None);
        assert!(kubelet.pods_named("default", WEB.1).is_empty());
        kubelet.rescan_interval = Duration::ZERO;
        assert_eq!(kubelet.pod(WEB_UID).as_deref(), Some(&meta(WEB)));
        assert_eq!(
            kubelet.container_name(WEB_UID, WEB_APP).as_deref(),
            Some("app")
        );
    }

    /// A crash loop: each restart is a new container id, each recreated pod
    /// a new UID, and the process may be gone a second later. Whatever was
    /// never asked about is read at once, however recent the last read.
    #[test]
    fn an_unseen_pod_or_container_is_read_at_once() {
        let root = root();
        let mut kubelet =
            KubeletDirectory::with_rescan_interval(root.path(), Duration::from_secs(3600));
        add_container(root.path(), WEB, "app", Some(WEB_APP));
        assert_eq!(kubelet.pod(WEB_UID).as_deref(), Some(&meta(WEB)));
        assert_eq!(
            kubelet.container_name(WEB_UID, WEB_APP).as_deref(),
            Some("app")
        );
        add_container(root.path(), CART, "api", Some(CART_API));
        assert_eq!(kubelet.pod(CART_UID).as_deref(), Some(&meta(CART)));
        assert_eq!(
            kubelet.container_name(CART_UID, CART_API).as_deref(),
            Some("api")
        );
        // A sandbox has no log: one read finds nothing, and asking again and
        // again reads nothing more until the interval is over.
        assert_eq!(kubelet.container_name(CART_UID, SANDBOX), None);
        add_container(root.path(), CART, "late", Some(SANDBOX));
        assert_eq!(kubelet.container_name(CART_UID, SANDBOX), None);
        assert_eq!(kubelet.pod(CART_NEW_UID), None);
        add_container(root.path(), ("shop", "late", CART_NEW_UID), "x", None);
        assert_eq!(kubelet.pod(CART_NEW_UID), None);
    }

    #[test]
    fn a_pod_appearing_after_a_miss_is_found() {
        let root = root();
        let interval = Duration::from_millis(20);
        let mut kubelet = KubeletDirectory::with_rescan_interval(root.path(), interval);
        assert_eq!(kubelet.pod(CART_UID), None);
        assert_eq!(kubelet.container_name(CART_UID, CART_API), None);
        add_container(root.path(), CART, "api", Some(CART_API));
        add_container(root.path(), CART, "sidecar", Some(CART_SIDECAR));
        std::thread::sleep(interval + Duration::from_millis(5));
        assert_eq!(kubelet.pod(CART_UID).as_deref(), Some(&meta(CART)));
        assert_eq!(
            kubelet.container_name(CART_UID, CART_API).as_deref(),
            Some("api")
        );
    }

    #[test]
    fn pods_named_follows_recreated_pods() {
        let root = root();
        let mut kubelet = KubeletDirectory::with_rescan_interval(root.path(), Duration::ZERO);
        add_container(root.path(), CART, "api", Some(CART_API));
        add_container(root.path(), ("other", CART.1, WEB_UID), "api", None);
        let uids = |found: Vec<Arc<PodMeta>>| -> Vec<String> {
            found.iter().map(|meta| meta.uid.clone()).collect()
        };
        assert_eq!(uids(kubelet.pods_named("shop", CART.1)), [CART_UID]);
        // Recreated: the old directory stays until kubelet collects it.
        add_container(root.path(), ("shop", CART.1, CART_NEW_UID), "api", None);
        assert_eq!(
            uids(kubelet.pods_named("shop", CART.1)),
            [CART_UID, CART_NEW_UID]
        );
        fs::remove_dir_all(
            root.path()
                .join(format!("var/log/pods/shop_{}_{CART_UID}", CART.1)),
        )
        .expect("remove");
        assert_eq!(uids(kubelet.pods_named("shop", CART.1)), [CART_NEW_UID]);
        assert!(kubelet.pods_named("shop", "cart").is_empty());
        assert!(kubelet.pods_named("default", CART.1).is_empty());
    }

    #[test]
    fn known_pods_keep_their_arc_across_rescans() {
        let root = root();
        add_container(root.path(), WEB, "app", None);
        let mut kubelet = KubeletDirectory::with_rescan_interval(root.path(), Duration::ZERO);
        let first = kubelet.pod(WEB_UID).expect("pod");
        add_container(root.path(), CART, "api", None);
        assert!(kubelet.pod(CART_UID).is_some());
        let again = kubelet.pod(WEB_UID).expect("pod");
        assert!(Arc::ptr_eq(&first, &again));
    }
}
