//! Cgroup ids to cgroup paths. The kernel hands tracer the id of a task's
//! cgroup (the kernfs node id, which is the cgroup directory's inode number)
//! at the moment of the event, so even a process that is gone by the time
//! userspace looks is placed in the right container. Ids are resolved by
//! indexing the cgroup filesystems: the cgroup2 hierarchy, and on v1 and
//! hybrid hosts the v1 `memory` hierarchy (the one kubelet always uses).

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hierarchy {
    /// The cgroup2 (unified) hierarchy.
    V2,
    /// The cgroup v1 hierarchy the memory controller is mounted on.
    V1Memory,
    /// The cgroup v1 hierarchy of the blkio controller: the owners of block
    /// IO on v1 and hybrid hosts.
    V1Blkio,
}

/// An id the index does not know makes tracer walk its hierarchy again (new
/// containers bring new cgroups), but the same unknown id at most this often:
/// a flood of events from one removed cgroup must not become a flood of walks.
const REWALK_EVERY: Duration = Duration::from_millis(1000);
const INDEX_MAX: usize = 65_536;

pub struct CgroupIndex {
    roots: HashMap<Hierarchy, PathBuf>,
    paths: HashMap<(Hierarchy, u64), Arc<str>>,
    /// Ids a walk did not find, and when.
    not_found: HashMap<(Hierarchy, u64), Instant>,
}

impl CgroupIndex {
    /// Finds the hierarchies' mount points in `mountinfo` (the content of
    /// /proc/self/mountinfo).
    pub fn from_mountinfo(mountinfo: &str) -> Self {
        let mut roots = HashMap::new();
        for line in mountinfo.lines() {
            // "36 25 0:31 / /sys/fs/cgroup/memory rw,... shared:15 - cgroup cgroup rw,memory"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut left_fields = left.split(' ');
            let (Some(root), Some(mount_point)) = (left_fields.nth(3), left_fields.next()) else {
                continue;
            };
            // Only mounts of a hierarchy's root see every cgroup.
            if root != "/" {
                continue;
            }
            let mut right_fields = right.split(' ');
            let fstype = right_fields.next().unwrap_or_default();
            let options = right_fields.nth(1).unwrap_or_default();
            let hierarchy = match fstype {
                "cgroup2" => Hierarchy::V2,
                "cgroup" if options.split(',').any(|o| o == "memory") => Hierarchy::V1Memory,
                "cgroup" if options.split(',').any(|o| o == "blkio") => Hierarchy::V1Blkio,
                _ => continue,
            };
            roots
                .entry(hierarchy)
                .or_insert_with(|| PathBuf::from(unescape(mount_point)));
        }
        Self {
            roots,
            paths: HashMap::new(),
            not_found: HashMap::new(),
        }
    }

    pub fn from_this_mount_namespace() -> Self {
        Self::from_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    pub fn has(&self, hierarchy: Hierarchy) -> bool {
        self.roots.contains_key(&hierarchy)
    }

    pub fn root(&self, hierarchy: Hierarchy) -> Option<&Path> {
        self.roots.get(&hierarchy).map(PathBuf::as_path)
    }

    /// Where the memory controller is: its v1 hierarchy on v1 and hybrid
    /// hosts, else cgroup2.
    pub fn memory_hierarchy(&self) -> Option<Hierarchy> {
        [Hierarchy::V1Memory, Hierarchy::V2]
            .into_iter()
            .find(|h| self.has(*h))
    }

    /// The cgroup path ("/kubepods/burstable/pod.../<id>") of cgroup `id`, or
    /// `None` when it is not (or no longer) there.
    pub fn path(&mut self, hierarchy: Hierarchy, id: u64) -> Option<Arc<str>> {
        if id == 0 {
            return None;
        }
        if let Some(path) = self.paths.get(&(hierarchy, id)) {
            return Some(path.clone());
        }
        let root = self.roots.get(&hierarchy)?.clone();
        let now = Instant::now();
        if self
            .not_found
            .get(&(hierarchy, id))
            .is_some_and(|at| now.duration_since(*at) < REWALK_EVERY)
        {
            return None;
        }
        if self.paths.len() > INDEX_MAX || self.not_found.len() > INDEX_MAX {
            self.paths.clear();
            self.not_found.clear();
        }
        self.walk(hierarchy, &root, &root);
        let found = self.paths.get(&(hierarchy, id)).cloned();
        if found.is_none() {
            self.not_found.insert((hierarchy, id), now);
        }
        found
    }

    fn walk(&mut self, hierarchy: Hierarchy, root: &Path, dir: &Path) {
        let Ok(meta) = fs::metadata(dir) else { return };
        let relative = dir.strip_prefix(root).unwrap_or(Path::new(""));
        let path: Arc<str> = format!("/{}", relative.display()).into();
        self.paths.entry((hierarchy, meta.ino())).or_insert(path);
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.walk(hierarchy, root, &entry.path());
            }
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&digits, 8) {
                Ok(byte) => out.push(byte as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
30 29 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 29 0:33 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory
37 29 0:34 / /sys/fs/cgroup/pids rw shared:17 - cgroup cgroup rw,pids
90 80 0:33 /kubepods /var/lib/kubelet/x rw - cgroup cgroup rw,memory
";

    #[test]
    fn finds_hierarchy_roots_in_mountinfo() {
        let index = CgroupIndex::from_mountinfo(HYBRID);
        assert_eq!(
            index.roots[&Hierarchy::V2],
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            index.roots[&Hierarchy::V1Memory],
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(!index.has(Hierarchy::V1Blkio));
        let blkio = CgroupIndex::from_mountinfo(
            "38 29 0:35 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio\n",
        );
        assert_eq!(
            blkio.root(Hierarchy::V1Blkio),
            Some(Path::new("/sys/fs/cgroup/blkio"))
        );
        let pure_v2 =
            CgroupIndex::from_mountinfo("30 29 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert!(pure_v2.has(Hierarchy::V2) && !pure_v2.has(Hierarchy::V1Memory));
        let odd = CgroupIndex::from_mountinfo("garbage\n1 2 3\n - \n");
        assert!(!odd.has(Hierarchy::V2));
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
    }

    /// On this machine's own cgroup filesystems: a directory's inode is the
    /// id the kernel reports, so a fresh cgroup is found by it.
    #[test]
    fn resolves_a_real_cgroup_by_inode() {
        let mut index = CgroupIndex::from_this_mount_namespace();
        let hierarchy = if index.has(Hierarchy::V2) {
            Hierarchy::V2
        } else {
            Hierarchy::V1Memory
        };
        let root = index.roots[&hierarchy].clone();
        assert_eq!(
            index
                .path(hierarchy, fs::metadata(&root).unwrap().ino())
                .as_deref(),
            Some("/")
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates a cgroup: run it as root"
        );
        let dir = root.join(format!("tracer-index-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let id = fs::metadata(&dir).unwrap().ino();
        let found = index.path(hierarchy, id);
        fs::remove_dir(&dir).unwrap();
        assert_eq!(
            found.as_deref(),
            Some(format!("/tracer-index-test-{}", std::process::id()).as_str())
        );
        assert_eq!(index.path(hierarchy, 0), None);
    }
}
