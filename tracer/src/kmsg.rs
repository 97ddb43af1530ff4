//! The kernel log as corroboration for OOM kills and page-allocation
//! failures. For OOM kills the kernel prints one
//! summary line per kill, e.g.
//! `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/pod1,task_memcg=/kubepods/pod1/c1,task=memhog,pid=812,uid=0`.
//! It is read when readable, never relied on: the BPF records are the source.

use std::{
    collections::VecDeque,
    fs::File,
    io::{ErrorKind, Read as _, Seek as _, SeekFrom},
    os::unix::fs::OpenOptionsExt as _,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomSummary {
    /// `CONSTRAINT_MEMCG` for a cgroup OOM, `CONSTRAINT_NONE` for a system OOM
    /// (also `CONSTRAINT_CPUSET`, `CONSTRAINT_MEMORY_POLICY`).
    pub constraint: String,
    /// The memory cgroup whose limit was hit (cgroup OOMs only).
    pub oom_memcg: Option<String>,
    pub task_memcg: Option<String>,
    pub task: String,
    pub pid: u32,
}

impl OomSummary {
    pub fn is_cgroup_oom(&self) -> bool {
        self.constraint == "CONSTRAINT_MEMCG"
    }
}

/// Parses one kernel log message (the text after the `;` of a /dev/kmsg record).
pub fn parse_oom_summary(message: &str) -> Option<OomSummary> {
    let rest = message.trim().strip_prefix("oom-kill:")?;
    let mut summary = OomSummary {
        constraint: String::new(),
        oom_memcg: None,
        task_memcg: None,
        task: String::new(),
        pid: 0,
    };
    // Values never contain '=' but cgroup paths may contain ','; split on
    // ",key=" boundaries instead of every comma.
    let mut key = None::<&str>;
    let mut start = 0;
    let mut pairs = Vec::new();
    for (i, _) in rest.match_indices('=') {
        let key_start = rest[..i].rfind(',').map(|c| c + 1).unwrap_or(0);
        if let Some(k) = key {
            pairs.push((
                k,
                rest[start..key_start.saturating_sub(1).max(start)].to_owned(),
            ));
        }
        key = Some(&rest[key_start..i]);
        start = i + 1;
    }
    if let Some(k) = key {
        pairs.push((k, rest[start..].to_owned()));
    }
    for (k, v) in pairs {
        match k {
            "constraint" => summary.constraint = v,
            "oom_memcg" => summary.oom_memcg = Some(v),
            "task_memcg" => summary.task_memcg = Some(v),
            "task" => summary.task = v,
            "pid" => summary.pid = v.parse().ok()?,
            _ => {}
        }
    }
    (!summary.constraint.is_empty() && summary.pid != 0).then_some(summary)
}

/// Non-blocking reader of /dev/kmsg from the moment tracer started.
pub struct KernelLog {
    file: Option<File>,
    recent: VecDeque<OomSummary>,
    page_failures: VecDeque<crate::pagealloc::LoggedFailure>,
}

const RECENT_MAX: usize = 256;

impl KernelLog {
    /// Opens /dev/kmsg positioned at its end; unreadable is fine (`None` inside).
    pub fn open() -> Self {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f))
            .ok();
        Self {
            file,
            recent: VecDeque::new(),
            page_failures: VecDeque::new(),
        }
    }

    /// No kernel log: tests and replays must not read this machine's.
    pub fn closed() -> Self {
        Self {
            file: None,
            recent: VecDeque::new(),
            page_failures: VecDeque::new(),
        }
    }

    pub fn readable(&self) -> bool {
        self.file.is_some()
    }

    /// Reads what the kernel logged since the last call and keeps its OOM summaries.
    pub fn poll(&mut self) {
        let Some(file) = &mut self.file else { return };
        // One record per read(2); a record is at most about 8 KiB.
        let mut buf = [0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    let message = record.split_once(';').map(|(_, m)| m).unwrap_or(&record);
                    let first_line = message.lines().next().unwrap_or_default();
                    if let Some(summary) = parse_oom_summary(first_line) {
                        if self.recent.len() == RECENT_MAX {
                            self.recent.pop_front();
                        }
                        self.recent.push_back(summary);
                    } else if let Some(failure) = crate::pagealloc::parse_logged_failure(first_line)
                    {
                        if self.page_failures.len() == RECENT_MAX {
                            self.page_failures.pop_front();
                        }
                        self.page_failures.push_back(failure);
                    }
                }
                // EPIPE: records were overwritten before we read them; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }

    /// The kernel's "page allocation failure" line for a failure of this
    /// task name, order and flags, if it logged one (it does not for
    /// `__GFP_NOWARN`, nor past its rate limit).
    pub fn take_page_failure(
        &mut self,
        comm: &str,
        order: u32,
        mode: u64,
    ) -> Option<crate::pagealloc::LoggedFailure> {
        self.poll();
        let at = self.page_failures.iter().rposition(|f| {
            f.order == order && f.mode == mode && comm.starts_with(f.comm.as_str())
        })?;
        self.page_failures.remove(at)
    }

    /// The kernel's summary of the kill of `pid`, if it logged one.
    pub fn take(&mut self, pid: u32) -> Option<OomSummary> {
        self.poll();
        let at = self.recent.iter().rposition(|s| s.pid == pid)?;
        self.recent.remove(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_and_system_oom_summaries() {
        let memcg = parse_oom_summary(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/burstable/pod1,task_memcg=/kubepods/burstable/pod1/abc,task=memhog,pid=812,uid=0",
        )
        .unwrap();
        assert!(memcg.is_cgroup_oom());
        assert_eq!(memcg.oom_memcg.as_deref(), Some("/kubepods/burstable/pod1"));
        assert_eq!(
            memcg.task_memcg.as_deref(),
            Some("/kubepods/burstable/pod1/abc")
        );
        assert_eq!((memcg.task.as_str(), memcg.pid), ("memhog", 812));

        let system = parse_oom_summary(
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=stress,pid=4242,uid=1000",
        )
        .unwrap();
        assert!(!system.is_cgroup_oom());
        assert_eq!(system.oom_memcg, None);
        assert_eq!(system.pid, 4242);
    }

    #[test]
    fn cgroup_paths_with_commas_survive() {
        let s = parse_oom_summary(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,b/c,task_memcg=/a,b/c,task=x,pid=7,uid=0",
        )
        .unwrap();
        assert_eq!(s.oom_memcg.as_deref(), Some("/a,b/c"));
    }

    #[test]
    fn other_lines_are_not_summaries() {
        assert!(
            parse_oom_summary("Memory cgroup out of memory: Killed process 812 (memhog)").is_none()
        );
        assert!(parse_oom_summary("oom-kill:").is_none());
        assert!(parse_oom_summary("oom-kill:constraint=CONSTRAINT_NONE,pid=x").is_none());
    }
}
