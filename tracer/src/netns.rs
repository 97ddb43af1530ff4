//! Network namespaces of the node.
//!
//! The BPF side reports a namespace as `net->ns.inum`, the inode number of
//! the namespace's nsfs file. [`NetnsIndex`] maps that number back to
//! something tracer can open (a member pid or a `/run/netns` name),
//! [`NetnsHandle`] is such an open namespace, and [`in_netns`] runs code
//! inside it without moving any of the caller's threads.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

/// Default procfs mount.
pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// Where `ip netns add` (and CNI plugins that follow it) pin named namespaces.
pub const DEFAULT_NETNS_DIR: &str = "/run/netns";
/// Member pids kept per namespace: one is enough to open it, a few more
/// cover the first one exiting before tracer gets to it.
pub const MAX_PIDS: usize = 4;

/// A network namespace, identified by the inode of its nsfs file.
///
/// This is `stat(/proc/PID/ns/net).st_ino`, the number in
/// `readlink(/proc/PID/ns/net)` = `net:[N]`, and the kernel's
/// `net->ns.inum`, which is what the BPF programs report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetnsId(pub u64);

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.0)
    }
}

impl NetnsId {
    /// Parses the target of a `/proc/PID/ns/net` link, `net:[4026531840]`.
    pub fn parse_link(link: &[u8]) -> Option<NetnsId> {
        let digits = link.strip_prefix(b"net:[")?.strip_suffix(b"]")?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok().map(NetnsId)
    }
}

/// What tracer knows about one namespace: how to open it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsEntry {
    /// Up to [`MAX_PIDS`] processes in the namespace, in scan order. Empty
    /// for a named namespace no process lives in.
    pub pids: Vec<u32>,
    /// File name under `/run/netns`, if the namespace is pinned there.
    pub name: Option<String>,
    proc_root: Arc<Path>,
    netns_dir: Arc<Path>,
}

impl NetnsEntry {
    /// Paths that open this namespace, most likely to still work first:
    /// a pinned name survives its processes, pids are tried in scan order.
    fn candidate_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::with_capacity(self.pids.len() + 1);
        if let Some(name) = &self.name {
            paths.push(self.netns_dir.join(name));
        }
        for pid in &self.pids {
            paths.push(self.proc_root.join(pid.to_string()).join("ns/net"));
        }
        paths
    }
}

/// Inode → namespace map of the node, rebuilt by [`NetnsIndex::refresh`].
#[derive(Debug)]
pub struct NetnsIndex {
    proc_root: Arc<Path>,
    netns_dir: Arc<Path>,
    host: NetnsId,
    entries: HashMap<NetnsId, NetnsEntry>,
}

impl NetnsIndex {
    /// Scans `/proc` and `/run/netns`.
    pub fn new() -> io::Result<Self> {
        Self::with_roots(DEFAULT_PROC_ROOT, DEFAULT_NETNS_DIR)
    }

    /// Scans the given procfs mount and named-namespace directory, for a
    /// tracer that sees the node's through host mounts (e.g. `/host/proc`).
    pub fn with_roots(
        proc_root: impl AsRef<Path>,
        netns_dir: impl AsRef<Path>,
    ) -> io::Result<Self> {
        let mut index = NetnsIndex {
            proc_root: Arc::from(proc_root.as_ref()),
            netns_dir: Arc::from(netns_dir.as_ref()),
            host: NetnsId(0),
            entries: HashMap::new(),
        };
        index.refresh()?;
        Ok(index)
    }

    /// Rescans. One `readlinkat` per process and no allocation per process:
    /// meant to run every few seconds on nodes with thousands of processes.
    ///
    /// Processes that exit mid-scan, and processes whose namespace links the
    /// kernel refuses to show (non-dumpable ones), are skipped.
    pub fn refresh(&mut self) -> io::Result<()> {
        let mut entries: HashMap<NetnsId, NetnsEntry> = HashMap::with_capacity(self.entries.len());
        let dir = Dir::open(&self.proc_root)?;
        // Reused for every process: "<pid>/ns/net\0".
        let mut path = [0u8; 32];
        let mut link = [0u8; 64];
        // readdir of procfs lists thread-group leaders only, so threads are
        // skipped without looking at them.
        dir.for_each_name(|name| {
            let name = name.to_bytes();
            if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
                return;
            }
            let Ok(pid) = std::str::from_utf8(name).unwrap_or("").parse::<u32>() else {
                return;
            };
            let suffix = b"/ns/net\0";
            path[..name.len()].copy_from_slice(name);
            path[name.len()..name.len() + suffix.len()].copy_from_slice(suffix);
            // SAFETY: path is NUL-terminated, link is a writable buffer of
            // the length passed.
            let n = unsafe {
                libc::readlinkat(
                    dir.fd(),
                    path.as_ptr().cast(),
                    link.as_mut_ptr().cast(),
                    link.len(),
                )
            };
            if n <= 0 {
                return;
            }
            let Some(id) = NetnsId::parse_link(&link[..n as usize]) else {
                return;
            };
            let entry = entries.entry(id).or_insert_with(|| NetnsEntry {
                pids: Vec::with_capacity(MAX_PIDS),
                name: None,
                proc_root: self.proc_root.clone(),
                netns_dir: self.netns_dir.clone(),
            });
            if entry.pids.len() < MAX_PIDS {
                entry.pids.push(pid);
            }
        });

        match std::fs::read_dir(&*self.netns_dir) {
            Ok(names) => {
                for name in names.flatten() {
                    // stat follows the bind mount to the nsfs inode; a file
                    // left behind by a deleted namespace is an ordinary
                    // empty file whose inode means nothing, skip those.
                    let path = name.path();
                    if !is_nsfs(&path) {
                        continue;
                    }
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    let id = NetnsId(meta.ino());
                    let entry = entries.entry(id).or_insert_with(|| NetnsEntry {
                        pids: Vec::new(),
                        name: None,
                        proc_root: self.proc_root.clone(),
                        netns_dir: self.netns_dir.clone(),
                    });
                    entry.name = Some(name.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }

        self.host = host_netns(&self.proc_root)?;
        self.entries = entries;
        Ok(())
    }

    pub fn lookup(&self, id: NetnsId) -> Option<&NetnsEntry> {
        self.entries.get(&id)
    }

    /// The node's own namespace: the one pid 1 is in.
    ///
    /// When pid 1's link cannot be read (it is non-dumpable, or tracer runs
    /// without the host's pid namespace) this falls back to tracer's own
    /// namespace, which is the host's because tracer runs with the host
    /// network.
    pub fn host(&self) -> NetnsId {
        self.host
    }

    pub fn iter(&self) -> impl Iterator<Item = (NetnsId, &NetnsEntry)> {
        self.entries.iter().map(|(id, e)| (*id, e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn host_netns(proc_root: &Path) -> io::Result<NetnsId> {
    let read = |path: &Path| -> io::Result<NetnsId> {
        let link = std::fs::read_link(path)?;
        NetnsId::parse_link(link.as_os_str().as_bytes()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unexpected link {}", path.display(), link.display()),
            )
        })
    };
    read(&proc_root.join("1/ns/net")).or_else(|_| read(Path::new("/proc/thread-self/ns/net")))
}

/// Whether `path` is an nsfs file (a live namespace), not the empty regular
/// file `ip netns` leaves when the bind mount is gone.
fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// A `DIR*` read with `readdir`, which hands out names without allocating
/// (std's `ReadDir` allocates one per entry).
struct Dir(*mut libc::DIR);

impl Dir {
    fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: c is a valid NUL-terminated string.
        let dir = unsafe { libc::opendir(c.as_ptr()) };
        if dir.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Dir(dir))
    }

    fn fd(&self) -> libc::c_int {
        // SAFETY: self.0 is an open DIR* until Drop.
        unsafe { libc::dirfd(self.0) }
    }

    /// Calls `f` for each name. A read error ends the listing early, which
    /// for procfs only loses processes that the next refresh picks up.
    fn for_each_name(&self, mut f: impl FnMut(&CStr)) {
        loop {
            // SAFETY: self.0 is an open DIR*; the entry is valid until the
            // next readdir call, and the name is only borrowed for `f`.
            let ent = unsafe { libc::readdir(self.0) };
            if ent.is_null() {
                break;
            }
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            f(name);
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: self.0 was returned by opendir and is closed once.
        unsafe { libc::closedir(self.0) };
    }
}

/// An open network namespace (fd to `/proc/PID/ns/net` or
/// `/run/netns/NAME`), checked to be the namespace tracer asked for.
#[derive(Debug)]
pub struct NetnsHandle {
    fd: OwnedFd,
    id: NetnsId,
}

impl NetnsHandle {
    /// Opens the namespace of an index entry and checks it is `expected`:
    /// between the scan and now a pid can exit and be reused by a process
    /// in another namespace, or move to another namespace itself.
    pub fn open(entry: &NetnsEntry, expected: NetnsId) -> io::Result<NetnsHandle> {
        let mut last_err = None;
        for path in entry.candidate_paths() {
            match Self::open_path(&path, expected) {
                Ok(handle) => return Ok(handle),
                Err(e) => last_err = Some(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{expected} is gone (no pid or name opens it; last error: {})",
                last_err.map_or_else(|| "none tried".to_string(), |e| e.to_string())
            ),
        ))
    }

    /// Opens a namespace file and checks its inode is `expected`.
    pub fn open_path(path: impl AsRef<Path>, expected: NetnsId) -> io::Result<NetnsHandle> {
        let path = path.as_ref();
        let handle = Self::open_any(path)?;
        if handle.id != expected {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is {}, not {expected}", path.display(), handle.id),
            ));
        }
        Ok(handle)
    }

    /// The calling thread's namespace.
    pub fn current() -> io::Result<NetnsHandle> {
        Self::open_any(Path::new("/proc/thread-self/ns/net"))
    }

    fn open_any(path: &Path) -> io::Result<NetnsHandle> {
        let file = File::open(path)?;
        let id = NetnsId(file.metadata()?.ino());
        Ok(NetnsHandle {
            fd: file.into(),
            id,
        })
    }

    pub fn id(&self) -> NetnsId {
        self.id
    }
}

impl AsFd for NetnsHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NetnsHandle {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// Runs `f` inside `ns` and returns its result.
///
/// `f` runs on a new thread that enters the namespace with
/// `setns(fd, CLONE_NEWNET)` and exits afterwards, so no thread of the
/// caller (tokio workers included) ever changes namespace, and nothing else
/// gets scheduled on a thread left in a pod's namespace. Code in `f` sees
/// the namespace through `/proc/thread-self/net/...` and `/proc/sys/net/...`
/// and sockets it creates; `/proc/self/net` follows the main thread and
/// shows the host's.
///
/// A panic in `f` is returned as an error rather than propagated.
pub fn in_netns<T: Send + 'static>(
    ns: &NetnsHandle,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    // The thread owns its own fd, so `ns` can be dropped while it runs.
    let fd = ns.fd.try_clone()?;
    let id = ns.id;
    let thread = std::thread::Builder::new()
        .name("tracer-netns".into())
        .spawn(move || -> io::Result<T> {
            nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| {
                io::Error::new(io::Error::from(e).kind(), format!("setns {id}: {e}"))
            })?;
            drop(fd);
            Ok(f())
        })?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_string());
            Err(io::Error::other(format!("panic in {id}: {msg}")))
        }
    }
}

/// Addresses of the calling thread's namespace that traffic can come from:
/// IPv4 `/32 host LOCAL` routes except 127.0.0.0/8, and IPv6 addresses
/// except `::1` and link-local `fe80::/10`.
///
/// Reads `/proc/thread-self/net`, so it reports the namespace of the thread
/// it runs on (see [`in_netns`]). A namespace without IPv4 or IPv6 lacks the
/// file and contributes no addresses of that family.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let mut addrs = Vec::new();
    if let Some(text) = read_optional("/proc/thread-self/net/fib_trie")? {
        addrs.extend(parse_fib_trie_local(&text).into_iter().map(IpAddr::V4));
    }
    if let Some(text) = read_optional("/proc/thread-self/net/if_inet6")? {
        addrs.extend(parse_if_inet6(&text).into_iter().map(IpAddr::V6));
    }
    Ok(addrs)
}

pub(crate) fn read_optional(path: impl AsRef<Path>) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Local IPv4 addresses from `fib_trie`: each leaf `|-- A.B.C.D` is followed
/// by one line per route on it, and the namespace's own addresses are the
/// `/32 host LOCAL` ones. The same leaf shows up once per table (Main,
/// Local, ...), so results are deduplicated, in first-seen order.
pub fn parse_fib_trie_local(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("+--") || line.ends_with(':') {
            leaf = None;
        } else if let Some(addr) = leaf {
            let mut words = line.split_whitespace();
            if words.next() == Some("/32")
                && words.next() == Some("host")
                && words.next() == Some("LOCAL")
                && !addr.is_loopback()
                && seen.insert(addr)
            {
                out.push(addr);
            }
        }
    }
    out
}

/// Global IPv6 addresses from `if_inet6`: one line per address,
/// `<32 hex digits> <ifindex> <prefixlen> <scope> <flags> <device>`.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(hex) = line.split_whitespace().next() else {
            continue;
        };
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        if hex.len() != 32 {
            continue;
        }
        let addr = Ipv6Addr::from(bits);
        let link_local = addr.segments()[0] & 0xffc0 == 0xfe80;
        if addr.is_loopback() || link_local || out.contains(&addr) {
            continue;
        }
        out.push(addr);
    }
    out
}

/// Pod IP → namespace of the pod, to attribute a packet whose source is a
/// pod IP to that pod when it is dropped in another namespace (the host's,
/// or the destination's).
///
/// The host namespace is left out: its addresses are the node's, and host
/// network pods share them, so they identify no single pod. An address
/// found in more than one namespace is left out too, for the same reason.
#[derive(Debug, Default)]
pub struct AddressIndex {
    map: HashMap<IpAddr, NetnsId>,
    errors: Vec<(NetnsId, io::Error)>,
}

impl AddressIndex {
    /// Reads [`local_addresses`] in every namespace of `index` except the
    /// host's. Namespaces that cannot be opened or read (typically a pod
    /// deleted since the scan) are recorded in [`AddressIndex::errors`].
    pub fn build(index: &NetnsIndex) -> AddressIndex {
        let mut out = AddressIndex::default();
        let mut ambiguous = HashSet::new();
        for (id, entry) in index.iter() {
            if id == index.host() {
                continue;
            }
            let addrs = NetnsHandle::open(entry, id)
                .and_then(|ns| in_netns(&ns, local_addresses))
                .and_then(|r| r);
            match addrs {
                Ok(addrs) => {
                    for addr in addrs {
                        if ambiguous.contains(&addr) {
                            continue;
                        }
                        if let Some(other) = out.map.insert(addr, id) {
                            if other != id {
                                out.map.remove(&addr);
                                ambiguous.insert(addr);
                            }
                        }
                    }
                }
                Err(e) => out.errors.push((id, e)),
            }
        }
        out
    }

    pub fn lookup(&self, addr: IpAddr) -> Option<NetnsId> {
        self.map.get(&addr).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, NetnsId)> + '_ {
        self.map.iter().map(|(a, n)| (*a, *n))
    }

    /// Namespaces skipped by the last [`AddressIndex::build`], and why.
    pub fn errors(&self) -> &[(NetnsId, io::Error)] {
        &self.errors
    }
}

/// Real namespaces for root tests, removed on drop.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Runs a command, panicking with its stderr if it fails.
    pub fn run(args: &[&str]) -> String {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A namespace made with `ip netns add`, loopback up.
    pub struct TestNetns {
        pub name: String,
    }

    impl TestNetns {
        pub fn new(tag: &str) -> TestNetns {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "tracer-test-{tag}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            run(&["ip", "netns", "add", &name]);
            let ns = TestNetns { name };
            ns.exec(&["ip", "link", "set", "lo", "up"]);
            ns
        }

        pub fn path(&self) -> PathBuf {
            Path::new(DEFAULT_NETNS_DIR).join(&self.name)
        }

        pub fn id(&self) -> NetnsId {
            NetnsId(std::fs::metadata(self.path()).unwrap().ino())
        }

        pub fn handle(&self) -> NetnsHandle {
            NetnsHandle::open_path(self.path(), self.id()).unwrap()
        }

        /// Runs a command inside the namespace.
        pub fn exec(&self, args: &[&str]) -> String {
            let mut full = vec!["ip", "netns", "exec", &self.name];
            full.extend_from_slice(args);
            run(&full)
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    /// A `sleep` running in a namespace, killed on drop.
    pub struct Member(pub std::process::Child);

    impl Member {
        pub fn spawn(ns: &TestNetns) -> Member {
            let member = Member(
                Command::new("ip")
                    .args(["netns", "exec", &ns.name, "sleep", "60"])
                    .spawn()
                    .unwrap(),
            );
            // `ip netns exec` execs the command in place, so the child's pid
            // becomes the sleep's once the exec happened.
            let link = format!("/proc/{}/ns/net", member.pid());
            let want = ns.id();
            for _ in 0..200 {
                if std::fs::metadata(&link).map(|m| m.ino()).ok() == Some(want.0) {
                    return member;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("child never entered {}", ns.name);
        }

        pub fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Member {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    /// `/proc/net/fib_trie` of a netns on this machine with 10.244.1.5/24 on
    /// lo: the /24 prefix itself is also `host LOCAL` but not a /32, and
    /// every leaf appears in both tables.
    const NS_FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/1 2 0 2
     +-- 10.244.1.0/24 2 0 2
        +-- 10.244.1.0/29 2 0 2
           |-- 10.244.1.0
              /24 host LOCAL
           |-- 10.244.1.5
              /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/1 2 0 2
     +-- 10.244.1.0/24 2 0 2
        +-- 10.244.1.0/29 2 0 2
           |-- 10.244.1.0
              /24 host LOCAL
           |-- 10.244.1.5
              /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
";

    /// `/proc/net/fib_trie` of this machine's host namespace (192.0.2.2/24
    /// on eth0, default route).
    const HOST_FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
";

    /// `/proc/net/if_inet6` of this machine's host namespace.
    const HOST_IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
";

    /// `/proc/net/if_inet6` of the netns above (fd10::5/64 on lo).
    const NS_IF_INET6: &str = "\
fd100000000000000000000000000005 01 40 00 82       lo
00000000000000000000000000000001 01 80 10 80       lo
";

    #[test]
    fn parses_netns_link() {
        assert_eq!(
            NetnsId::parse_link(b"net:[4026531833]"),
            Some(NetnsId(4026531833))
        );
        assert_eq!(NetnsId::parse_link(b"mnt:[4026531833]"), None);
        assert_eq!(NetnsId::parse_link(b"net:[]"), None);
        assert_eq!(NetnsId::parse_link(b"net:[12x]"), None);
        assert_eq!(NetnsId(4026531833).to_string(), "net:[4026531833]");
    }

    #[test]
    fn fib_trie_local_addresses() {
        assert_eq!(
            parse_fib_trie_local(NS_FIB_TRIE),
            vec![Ipv4Addr::new(10, 244, 1, 5)]
        );
        assert_eq!(
            parse_fib_trie_local(HOST_FIB_TRIE),
            vec![Ipv4Addr::new(192, 0, 2, 2)]
        );
    }

    #[test]
    fn if_inet6_addresses() {
        assert_eq!(
            parse_if_inet6(HOST_IF_INET6),
            vec!["fd00::2".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            parse_if_inet6(NS_IF_INET6),
            vec!["fd10::5".parse::<Ipv6Addr>().unwrap()]
        );
    }

    /// A procfs-shaped directory: pids with `ns/net` links, plus entries a
    /// scan must skip.
    #[test]
    fn index_scans_proc_layout() {
        let root = tempfile::tempdir().unwrap();
        let netns = tempfile::tempdir().unwrap();
        let link = |pid: &str, target: &str| {
            let dir = root.path().join(pid).join("ns");
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(target, dir.join("net")).unwrap();
        };
        for pid in 1..=6 {
            link(&pid.to_string(), "net:[4026531833]");
        }
        link("4122", "net:[4026532177]");
        link("self", "net:[4026532999]");
        link("77", "mnt:[4026531841]");
        std::fs::create_dir_all(root.path().join("88")).unwrap(); // exited
                                                                  // A leftover regular file, not a pinned namespace.
        std::fs::write(netns.path().join("stale"), b"").unwrap();

        let index = NetnsIndex::with_roots(root.path(), netns.path()).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.host(), NetnsId(4026531833));
        let host = index.lookup(NetnsId(4026531833)).unwrap();
        assert_eq!(host.pids.len(), MAX_PIDS);
        assert_eq!(host.name, None);
        assert_eq!(index.lookup(NetnsId(4026532177)).unwrap().pids, vec![4122]);
        assert!(index.lookup(NetnsId(4026532999)).is_none());
    }

    #[test]
    fn scans_real_proc() {
        let mut index = NetnsIndex::new().unwrap();
        index.refresh().unwrap();
        let me = NetnsHandle::current().unwrap().id();
        let entry = index.lookup(me).expect("own namespace indexed");
        assert!(!entry.pids.is_empty());
        assert!(index.lookup(index.host()).is_some());
    }

    #[test]
    fn root_named_netns_open_and_addresses() {
        assert!(
            is_root(),
            "this test creates network namespaces: run it as root (`cargo xtask test`)"
        );
        let ns = TestNetns::new("addr");
        ns.exec(&["ip", "addr", "add", "10.244.7.5/24", "dev", "lo"]);
        ns.exec(&["ip", "addr", "add", "fd10::7:5/64", "dev", "lo", "nodad"]);
        let member = Member::spawn(&ns);

        let index = NetnsIndex::new().unwrap();
        let id = ns.id();
        let entry = index.lookup(id).expect("test netns indexed");
        assert_eq!(entry.name.as_deref(), Some(ns.name.as_str()));
        assert_eq!(entry.pids, vec![member.pid()]);
        assert_ne!(index.host(), id);

        let handle = NetnsHandle::open(entry, id).unwrap();
        assert_eq!(handle.id(), id);
        let wrong = NetnsId(index.host().0);
        assert!(NetnsHandle::open(entry, wrong).is_err());

        let caller_before = NetnsHandle::current().unwrap().id();
        let mut got = in_netns(&handle, local_addresses).unwrap().unwrap();
        assert_eq!(NetnsHandle::current().unwrap().id(), caller_before);
        got.sort();

        // What `ip addr` shows, minus loopback and link-local.
        let mut want: Vec<IpAddr> = ns
            .exec(&["ip", "-o", "addr", "show"])
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().skip(2);
                let family = w.next()?;
                let addr: IpAddr = w.next()?.split('/').next()?.parse().ok()?;
                let link_local =
                    matches!(addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
                (family.starts_with("inet") && !addr.is_loopback() && !link_local).then_some(addr)
            })
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(
            want,
            vec![
                "10.244.7.5".parse::<IpAddr>().unwrap(),
                "fd10::7:5".parse().unwrap()
            ]
        );

        let addrs = AddressIndex::build(&index);
        assert_eq!(addrs.lookup("10.244.7.5".parse().unwrap()), Some(id));
        assert_eq!(addrs.lookup("fd10::7:5".parse().unwrap()), Some(id));
        assert!(addrs.iter().all(|(_, n)| n != index.host()));
    }

    #[test]
    fn root_pid_path_checked_against_expected() {
        assert!(
            is_root(),
            "this test creates network namespaces: run it as root (`cargo xtask test`)"
        );
        let ns = TestNetns::new("pid");
        let member = Member::spawn(&ns);
        let path = format!("/proc/{}/ns/net", member.pid());
        let handle = NetnsHandle::open_path(&path, ns.id()).unwrap();
        let count = in_netns(&handle, || {
            std::fs::read_to_string("/proc/thread-self/net/dev")
                .unwrap()
                .lines()
                .count()
        })
        .unwrap();
        // Header (2 lines) + lo only.
        assert_eq!(count, 3);
        drop(member);
        assert!(NetnsHandle::open_path(&path, ns.id()).is_err());
    }

    #[test]
    fn shareable_across_tasks() {
        fn check<T: Send + Sync>() {}
        check::<NetnsIndex>();
        check::<NetnsHandle>();
        check::<AddressIndex>();
    }

    #[test]
    fn panic_in_closure_is_an_error() {
        let handle = NetnsHandle::current().unwrap();
        let err = in_netns(&handle, || -> u32 { panic!("boom") }).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
