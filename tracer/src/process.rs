//! The process table: every process on the node with its parent, name and
//! attribution (cgroup, container, pod). Filled from /proc at start, then kept
//! current by the kernel's fork/exec/exit records. Exited processes stay for a
//! while: the sender of a kill is often a `pkill` that is gone by the time
//! anyone asks about it.

use std::{
    collections::{HashMap, VecDeque},
    fmt, fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use tracer_common::{Task, COMM_LEN};

use crate::attribution::{Attribution, Attributor};

/// A process (or one of its threads) as it appears in an event.
#[derive(Debug, Clone)]
pub struct ProcessRef {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    pub thread_comm: Comm,
    /// CLOCK_MONOTONIC ns; 0 when unknown.
    pub start_ns: u64,
    pub attribution: Arc<Attribution>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: Comm,
    pub start_ns: u64,
}

/// A kernel `comm`: up to 15 bytes, NUL-padded. Kept as bytes so that the hot
/// path (fork/exec) never allocates for it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    pub fn new(raw: [u8; COMM_LEN]) -> Self {
        Self(raw)
    }

    pub fn from_str_lossy(s: &str) -> Self {
        let mut raw = [0u8; COMM_LEN];
        let bytes = s.trim_end_matches('\n').as_bytes();
        let n = bytes.len().min(COMM_LEN - 1);
        raw[..n].copy_from_slice(&bytes[..n]);
        Self(raw)
    }

    pub fn raw(&self) -> [u8; COMM_LEN] {
        self.0
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.0[..len])
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Process {
    pub tgid: u32,
    pub ppid: u32,
    pub comm: Comm,
    /// CLOCK_MONOTONIC start in ns when the kernel told us; 0 for processes
    /// found by the /proc scan.
    pub start_ns: u64,
    pub attribution: Arc<Attribution>,
    /// CLOCK_MONOTONIC ns of the exit, while the entry is kept for late lookups.
    pub exited_ns: Option<u64>,
}

/// How long exited processes are kept, and how many at most.
const EXITED_RETENTION_NS: u64 = 5 * 60 * 1_000_000_000;
const EXITED_MAX: usize = 65_536;

pub struct ProcessTable {
    procs: HashMap<u32, Process>,
    /// Exit order, for expiry: (exit time, tgid, start time of that incarnation).
    exited: VecDeque<(u64, u32, u64)>,
    host: Arc<Attribution>,
    procfs: PathBuf,
}

impl ProcessTable {
    /// `procfs`: where the host's /proc is (`--procfs`).
    pub fn new(procfs: &Path) -> Self {
        Self {
            procs: HashMap::new(),
            exited: VecDeque::new(),
            host: Arc::new(Attribution::host()),
            procfs: procfs.to_path_buf(),
        }
    }

    /// Reads every process from `procfs`. Processes that vanish mid-scan are skipped.
    pub fn scan(&mut self, attributor: &mut Attributor) -> std::io::Result<usize> {
        let mut found = 0;
        for entry in fs::read_dir(&self.procfs)? {
            let Ok(entry) = entry else { continue };
            let Some(tgid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            let Some((comm, ppid)) = read_stat(&dir) else {
                continue;
            };
            let attribution = attributor
                .for_pid(tgid)
                .unwrap_or_else(|_| self.host.clone());
            self.procs.insert(
                tgid,
                Process {
                    tgid,
                    ppid,
                    comm,
                    start_ns: 0,
                    attribution,
                    exited_ns: None,
                },
            );
            found += 1;
        }
        Ok(found)
    }

    pub fn get(&self, tgid: u32) -> Option<&Process> {
        self.procs.get(&tgid)
    }

    /// A new process: its cgroups come with the fork record (an index lookup,
    /// no I/O on this hot path), else it inherits its parent's.
    pub fn on_fork(&mut self, parent: &Task, child: &Task, attributor: &mut Attributor) {
        let attribution = match self.procs.get(&parent.tgid) {
            Some(p) => p.attribution.clone(),
            None => attributor
                .for_pid(child.tgid)
                .unwrap_or_else(|_| self.host.clone()),
        };
        self.procs.insert(
            child.tgid,
            Process {
                tgid: child.tgid,
                ppid: parent.tgid,
                comm: Comm::new(child.comm),
                start_ns: child.start_ns,
                attribution,
                exited_ns: None,
            },
        );
    }

    /// After an exec the process may sit in a new cgroup (a container's first
    /// process is moved there before it execs): the exec record carries the
    /// cgroups the kernel saw.
    pub fn on_exec(&mut self, task: &Task, ppid: u32, attributor: &mut Attributor) {
        let fresh = attributor
            .for_cgroup_ids(task.cgroup2_id, task.memory_cgroup_id)
            .or_else(|| attributor.for_pid(task.tgid).ok());
        let inherited = self.procs.get(&ppid).map(|p| p.attribution.clone());
        let entry = self.procs.entry(task.tgid).or_insert_with(|| Process {
            tgid: task.tgid,
            ppid,
            comm: Comm::new(task.comm),
            start_ns: task.start_ns,
            attribution: inherited.unwrap_or_else(|| self.host.clone()),
            exited_ns: None,
        });
        entry.comm = Comm::new(task.comm);
        entry.ppid = ppid;
        entry.start_ns = task.start_ns;
        entry.exited_ns = None;
        if let Some(fresh) = fresh {
            entry.attribution = fresh;
        }
    }

    /// Marks the process exited; it stays visible for a few minutes.
    pub fn on_exit(&mut self, task: &Task, ppid: u32, now_ns: u64) {
        if let Some(p) = self.procs.get_mut(&task.tgid) {
            p.exited_ns = Some(now_ns);
            p.ppid = ppid;
            self.exited.push_back((now_ns, task.tgid, p.start_ns));
        }
        while self.exited.len() > EXITED_MAX {
            self.forget_oldest_exited();
        }
    }

    /// The entry for a task seen in an event, looking it up in /proc if the
    /// table has not heard of it (it started before the scan finished, say).
    pub fn lookup_or_load(&mut self, task: &Task, attributor: &mut Attributor) -> &Process {
        let host = &self.host;
        self.procs.entry(task.tgid).or_insert_with(|| Process {
            tgid: task.tgid,
            ppid: 0,
            comm: Comm::new(task.comm),
            start_ns: task.start_ns,
            attribution: attributor
                .for_pid(task.tgid)
                .unwrap_or_else(|_| host.clone()),
            exited_ns: None,
        })
    }

    /// The attribution as /proc says now, for the rare events (signals) where
    /// a process moved to another cgroup without exec'ing since it was seen
    /// must still be named right. Falls back to what the table knows when the
    /// process is already gone (a short-lived `pkill`).
    pub fn current_attribution(
        &mut self,
        task: &Task,
        attributor: &mut Attributor,
    ) -> Arc<Attribution> {
        // The kernel's cgroup ids from the event itself are the truth at the
        // time. Without them, /proc; but a dead process (a zombie) reads as
        // the root cgroup there, so only a read followed by proof of life counts.
        let fresh = attributor
            .for_cgroup_ids(task.cgroup2_id, task.memory_cgroup_id)
            .or_else(|| {
                attributor
                    .for_pid(task.tgid)
                    .ok()
                    .filter(|_| self.is_alive(task.tgid))
            });
        match fresh {
            Some(fresh) => {
                let host = &self.host;
                let entry = self.procs.entry(task.tgid).or_insert_with(|| Process {
                    tgid: task.tgid,
                    ppid: 0,
                    comm: Comm::new(task.comm),
                    start_ns: task.start_ns,
                    attribution: host.clone(),
                    exited_ns: None,
                });
                entry.attribution = fresh.clone();
                fresh
            }
            None => {
                self.lookup_or_load(task, attributor);
                self.refresh_attribution(task.tgid, attributor)
            }
        }
    }

    /// Running or sleeping, not a zombie: its /proc files still tell the truth.
    fn is_alive(&self, tgid: u32) -> bool {
        fs::read_to_string(self.procfs.join(tgid.to_string()).join("stat"))
            .ok()
            .and_then(|stat| parse_state(&stat))
            .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
    }

    /// Refreshes pod and container names that kubelet may have written since
    /// the process was first seen.
    pub fn refresh_attribution(
        &mut self,
        tgid: u32,
        attributor: &mut Attributor,
    ) -> Arc<Attribution> {
        match self.procs.get_mut(&tgid) {
            Some(p) => {
                p.attribution = attributor.refresh(&p.attribution);
                p.attribution.clone()
            }
            None => self.host.clone(),
        }
    }

    /// Drops exited processes older than the retention time.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(exited_ns, _, _)) = self.exited.front() {
            if now_ns.saturating_sub(exited_ns) < EXITED_RETENTION_NS {
                break;
            }
            self.forget_oldest_exited();
        }
    }

    fn forget_oldest_exited(&mut self) {
        if let Some((_, tgid, start_ns)) = self.exited.pop_front() {
            // Only if the pid was not reused by a newer process meanwhile.
            if self
                .procs
                .get(&tgid)
                .is_some_and(|p| p.exited_ns.is_some() && p.start_ns == start_ns)
            {
                self.procs.remove(&tgid);
            }
        }
    }
}

/// (comm, ppid) from `/proc/<pid>/stat`. The comm sits in parentheses and may
/// itself contain spaces and parentheses, so the fields after it are found
/// from the last ')'.
pub(crate) fn read_stat(dir: &Path) -> Option<(Comm, u32)> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    parse_stat(&stat)
}

fn parse_state(stat: &str) -> Option<char> {
    stat.get(stat.rfind(')')? + 1..)?
        .split_ascii_whitespace()
        .next()?
        .chars()
        .next()
}

fn parse_stat(stat: &str) -> Option<(Comm, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_ascii_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((Comm::from_str_lossy(comm), ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let (comm, ppid) = parse_stat("4242 (my (odd) prog) S 17 4242 4242 0 -1").unwrap();
        assert_eq!(comm.as_str(), "my (odd) prog");
        assert_eq!(ppid, 17);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x").is_none());
        assert_eq!(parse_state("4242 (a) b) Z 1"), Some('Z'));
    }

    #[test]
    fn comm_roundtrip_and_truncation() {
        assert_eq!(Comm::from_str_lossy("server\n").as_str(), "server");
        assert_eq!(
            Comm::from_str_lossy("a-very-long-process-name").as_str(),
            "a-very-long-pro"
        );
    }

    fn task(tgid: u32, comm: &str, start_ns: u64) -> Task {
        let c = Comm::from_str_lossy(comm).0;
        Task {
            tid: tgid,
            tgid,
            start_ns,
            comm: c,
            thread_comm: c,
            cgroup2_id: 0,
            memory_cgroup_id: 0,
        }
    }

    #[test]
    fn exited_processes_are_kept_then_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut attributor = Attributor::new(dir.path(), dir.path());
        let mut table = ProcessTable::new(Path::new("/proc"));
        table.on_fork(&task(1, "init", 1), &task(100, "bash", 10), &mut attributor);
        table.on_exec(&task(100, "pkill", 10), 1, &mut attributor);
        table.on_exit(&task(100, "pkill", 10), 1, 1_000);
        assert_eq!(table.get(100).unwrap().comm.as_str(), "pkill");
        table.expire(1_000 + EXITED_RETENTION_NS - 1);
        assert!(table.get(100).is_some());
        table.expire(1_000 + EXITED_RETENTION_NS);
        assert!(table.get(100).is_none());
    }

    #[test]
    fn reused_pid_survives_expiry_of_its_predecessor() {
        let dir = tempfile::tempdir().unwrap();
        let mut attributor = Attributor::new(dir.path(), dir.path());
        let mut table = ProcessTable::new(Path::new("/proc"));
        table.on_fork(&task(1, "init", 1), &task(100, "old", 10), &mut attributor);
        table.on_exit(&task(100, "old", 10), 1, 1_000);
        table.on_fork(&task(1, "init", 1), &task(100, "new", 20), &mut attributor);
        table.expire(u64::MAX);
        assert_eq!(table.get(100).unwrap().comm.as_str(), "new");
    }

    #[test]
    fn scans_this_machines_proc() {
        let dir = tempfile::tempdir().unwrap();
        let mut attributor = Attributor::new(Path::new("/proc"), dir.path());
        let mut table = ProcessTable::new(Path::new("/proc"));
        let n = table.scan(&mut attributor).unwrap();
        assert!(n > 1);
        let me = table.get(std::process::id()).expect("own process");
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw() as u32);
    }
}
