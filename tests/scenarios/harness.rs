//! What the scenarios share: root check, the workload helper, pod-shaped
//! cgroups with kubelet-style log directories under a test host root, and a
//! running `tracer watch --output` whose JSON lines the tests read.

use std::{
    fs,
    io::Read as _,
    os::unix::{fs::symlink, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const TRACER: &str = env!("CARGO_BIN_EXE_tracer");
const WAIT: Duration = Duration::from_secs(20);

/// Scenario tests need root and BPF. Without them they fail, loudly: a
/// scenario that skips proves nothing.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "\n\n*** scenario tests need root and BPF (they load kernel programs and create cgroups).\n\
             *** Run them as root: `cargo xtask test`. They do not skip.\n"
        );
    }
}

/// Tests that need a disposable machine (they exhaust its memory) or a pure
/// cgroup v2 host run inside the qemu guests of `cargo xtask vm-test`, which
/// set TRACER_DISPOSABLE_GUEST=1. The host suite leaves them out by name
/// (`--skip guest_only_`); run anywhere else they refuse, loudly.
pub fn require_disposable_guest() {
    require_root();
    assert_eq!(
        std::env::var("TRACER_DISPOSABLE_GUEST").as_deref(),
        Ok("1"),
        "this test exhausts the machine's memory or needs pure cgroup v2: it runs in the qemu guests of `cargo xtask vm-test`"
    );
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random_uid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A scratch directory whose programs are hard links to one workload helper.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

/// Executables written while another test thread forks can be held open for
/// writing by that child for a moment, and exec'ing them then fails with
/// ETXTBSY. So the helper is written once per test process, under a lock,
/// and every program name is a hard link to it: nothing executable is
/// written while the tests run.
fn shared_helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("tracer-helper-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let helper = dir.join("helper");
        // Guests without a compiler get the helper prebuilt.
        if let Some(prebuilt) = std::env::var_os("TRACER_SCENARIO_HELPER") {
            fs::copy(&prebuilt, &helper).expect("copying the prebuilt helper");
            return helper;
        }
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/helper.c");
        let status = Command::new("cc")
            .args(["-O0", "-pthread", "-o"])
            .arg(&helper)
            .arg(&source)
            .status()
            .expect("running cc to build the workload helper");
        assert!(status.success(), "cc failed on {}", source.display());
        helper
    })
}

/// `path` as a new name for `original`: a hard link where the filesystem
/// allows one, else a copy.
fn link_or_copy(original: &Path, path: &Path) {
    // /bin/sh is a symlink: link the program itself, not the link.
    let original =
        &fs::canonicalize(original).unwrap_or_else(|e| panic!("{}: {e}", original.display()));
    if !path.exists() && fs::hard_link(original, path).is_err() {
        fs::copy(original, path).unwrap_or_else(|e| panic!("copying {}: {e}", original.display()));
    }
}

impl Workdir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tracer-scenario-")
            .tempdir()
            .expect("tempdir");
        shared_helper();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The helper under another name, so that the kernel's comm is `name`.
    pub fn program(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        link_or_copy(shared_helper(), &path);
        path
    }

    /// A system program under another name (`sh` as `vGhyM0`).
    pub fn renamed(&self, system_program: &str, name: &str) -> PathBuf {
        let path = self.path().join(name);
        link_or_copy(Path::new(system_program), &path);
        path
    }

    pub fn host_root(&self) -> PathBuf {
        let root = self.path().join("host");
        fs::create_dir_all(root.join("var/log/pods")).expect("host root");
        fs::create_dir_all(root.join("var/log/containers")).expect("host root");
        // Kubelet's directories are the test's own; the named network
        // namespaces are the machine's, as they are in a DaemonSet's /host.
        fs::create_dir_all(root.join("run")).expect("host root");
        let netns = root.join("run/netns");
        if !netns.exists() {
            symlink("/run/netns", &netns).expect("host root: run/netns");
        }
        root
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

/// The cgroup hierarchy kubelet always uses: the v1 `memory` hierarchy on
/// hybrid and v1 hosts, the v2 root on pure v2 hosts.
pub fn v1_or_v2_hierarchy() -> PathBuf {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup".into()
    } else {
        "/sys/fs/cgroup/memory".into()
    }
}

/// The cgroup2 hierarchy: the root on pure v2 hosts, `unified` on hybrid ones.
pub fn v2_hierarchy() -> PathBuf {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup".into()
    } else {
        "/sys/fs/cgroup/unified".into()
    }
}

/// A pod-shaped cgroup (nested under a per-test prefix, as on kind nodes),
/// with kubelet's log directory for it under the test host root.
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub dir: PathBuf,
    top: PathBuf,
    host_root: PathBuf,
    driver: Driver,
    pub containers: Vec<(String, String, PathBuf)>,
}

impl Pod {
    pub fn create(
        hierarchy: &Path,
        host_root: &Path,
        driver: Driver,
        namespace: &str,
        name: &str,
    ) -> Self {
        let uid = random_uid();
        let top = hierarchy.join(format!("tracer-test-{}", random_hex(4)));
        let dir = match driver {
            Driver::Systemd => top
                .join("kubepods.slice/kubepods-burstable.slice")
                .join(format!(
                    "kubepods-burstable-pod{}.slice",
                    uid.replace('-', "_")
                )),
            Driver::Cgroupfs => top.join("kubepods/burstable").join(format!("pod{uid}")),
        };
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        let pod_logs = host_root
            .join("var/log/pods")
            .join(format!("{namespace}_{name}_{uid}"));
        fs::create_dir_all(&pod_logs).expect("pod log dir");
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid,
            dir,
            top,
            host_root: host_root.into(),
            driver,
            containers: Vec::new(),
        }
    }

    /// A container cgroup in the pod and its kubelet log files; returns the
    /// cgroup directory.
    pub fn add_container(&mut self, container: &str) -> (String, PathBuf) {
        let id = random_hex(32);
        let dir = match self.driver {
            Driver::Systemd => self.dir.join(format!("cri-containerd-{id}.scope")),
            Driver::Cgroupfs => self.dir.join(&id),
        };
        fs::create_dir_all(&dir).expect("container cgroup");
        let logs = self
            .host_root
            .join("var/log/pods")
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
            .join(container);
        fs::create_dir_all(&logs).expect("container log dir");
        let restart = fs::read_dir(&logs).map(|d| d.count()).unwrap_or(0);
        let log = logs.join(format!("{restart}.log"));
        fs::write(&log, b"").expect("container log");
        let link = self.host_root.join("var/log/containers").join(format!(
            "{}_{}_{}-{}.log",
            self.name, self.namespace, container, id
        ));
        symlink(&log, link).expect("container log symlink");
        self.containers
            .push((container.into(), id.clone(), dir.clone()));
        (id, dir)
    }
}

impl Pod {
    /// Sets the memory limit of `cgroup` (the pod's or a container's):
    /// `memory.max` on cgroup v2, `memory.limit_in_bytes` on v1. On v2 the
    /// memory controller is first enabled on the way down to it.
    pub fn set_memory_limit(&self, cgroup: &Path, bytes: u64) {
        let v2 =
            cgroup.join("memory.max").exists() || !cgroup.join("memory.limit_in_bytes").exists();
        if v2 {
            enable_v2_controller(cgroup, "memory");
            fs::write(cgroup.join("memory.max"), bytes.to_string()).expect("memory.max");
            fs::write(cgroup.join("memory.swap.max"), "0").ok();
        } else {
            fs::write(cgroup.join("memory.limit_in_bytes"), bytes.to_string())
                .expect("memory.limit_in_bytes");
        }
    }

    /// The cgroup's own count of OOM kills.
    pub fn oom_kills(cgroup: &Path) -> u64 {
        ["memory.events", "memory.oom_control"]
            .iter()
            .find_map(|f| fs::read_to_string(cgroup.join(f)).ok())
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no oom_kill counter in {}", cgroup.display()))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Kill what is left in the test's cgroups, then remove them leaf first.
        let mut dirs = Vec::new();
        collect_dirs(&self.top, &mut dirs);
        for dir in &dirs {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        for dir in dirs.iter().rev() {
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// Enables a cgroup v2 controller in every directory above `cgroup`, from
/// the root down: a controller reaches a cgroup only that way.
pub fn enable_v2_controller(cgroup: &Path, controller: &str) {
    let root = v2_hierarchy();
    let mut dirs: Vec<&Path> = cgroup
        .ancestors()
        .take_while(|d| d.starts_with(&root) && *d != root)
        .collect();
    dirs.push(&root);
    for dir in dirs.iter().skip(1).rev() {
        fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}")).unwrap_or_else(
            |e| {
                panic!(
                    "enabling the {controller} controller in {}: {e}",
                    dir.display()
                )
            },
        );
    }
}

/// Starts `program args` already inside `cgroup`: a shell moves itself there
/// and then execs, as a container runtime does before the container starts.
pub fn spawn_in_cgroup(cgroup: &Path, program: &Path, args: &[&str]) -> Child {
    spawn_in_cgroup_with_oom_score_adj(cgroup, 0, program, args)
}

/// The same, with the process's `oom_score_adj` set first (kubelet sets it
/// from the pod's QoS class).
pub fn spawn_in_cgroup_with_oom_score_adj(
    cgroup: &Path,
    oom_score_adj: i32,
    program: &Path,
    args: &[&str],
) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(r#"echo $$ > "$0/cgroup.procs" && echo {oom_score_adj} > /proc/self/oom_score_adj && exec "$@""#))
        .arg(cgroup)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a workload")
}

/// Starts `program args` on the host (no pod).
pub fn spawn(program: &Path, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning a workload")
}

/// First line a workload prints on stdout.
pub fn read_line(child: &mut Child) -> String {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Waits until `pid` runs `comm` (after the exec in `spawn_in_cgroup`).
pub fn wait_for_comm(pid: u32, comm: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim() == comm)
            .unwrap_or(false)
        {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never became {comm}");
}

/// A running `tracer watch --output FILE`.
pub struct Tracer {
    child: Option<Child>,
    pub output: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

pub struct Finished {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// tracer exited 0 and its last record is the `stop` record, saying it
    /// stopped on `reason`; returns that record.
    pub fn assert_clean_stop(&self, reason: &str) -> &Value {
        assert!(
            self.status.success(),
            "exit {}: {}",
            self.status,
            self.stderr
        );
        let stop = self.records.last().expect("records");
        assert_eq!(stop["kind"], "stop", "{stop}");
        assert_eq!(stop["reason"], reason, "{stop}");
        stop
    }
}

impl Tracer {
    /// Starts tracer and waits until its programs are attached (its `start` record).
    pub fn start(work: &Workdir, host_root: &Path, extra: &[&str]) -> Self {
        Self::launch(work, host_root, extra, None)
    }

    /// Starts tracer in a private mount namespace after `setup` (a shell
    /// snippet) ran there: for tests that change mounts without disturbing
    /// the other tracers running at the same time. The shell execs tracer,
    /// so signals still reach it directly.
    pub fn start_in_mount_namespace(
        work: &Workdir,
        host_root: &Path,
        setup: &str,
        extra: &[&str],
    ) -> Self {
        Self::launch(work, host_root, extra, Some(setup))
    }

    fn launch(work: &Workdir, host_root: &Path, extra: &[&str], setup: Option<&str>) -> Self {
        let tag = random_hex(4);
        let output = work.path().join(format!("events-{tag}.jsonl"));
        let stdout = work.path().join(format!("stdout-{tag}.txt"));
        let stderr = work.path().join(format!("stderr-{tag}.txt"));
        let mut command = match setup {
            None => Command::new(TRACER),
            Some(setup) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(format!(r#"{setup} && exec "$0" "$@""#))
                    .arg(TRACER);
                c
            }
        };
        // tracer keeps running on SIGHUP when started under nohup, which
        // it learns from SIGHUP's disposition: start it as a shell would,
        // whatever the suite itself was started under.
        // SAFETY: signal(2) is async-signal-safe, and nothing else runs in
        // the child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = command
            .arg("watch")
            .arg("--output")
            .arg(&output)
            .arg("--host-root")
            .arg(host_root)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starting tracer");
        let mut tracer = Self {
            child: Some(child),
            output,
            stdout,
            stderr,
        };
        tracer.wait_for("the start record", |r| r["kind"] == "start");
        tracer
    }

    pub fn records(&self) -> Vec<Value> {
        read_records(&self.output)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// For scenarios that exhaust the machine's memory: the OOM killer must
    /// not pick the tracer that is to report it.
    pub fn protect_from_oom_killer(&self) {
        fs::write(format!("/proc/{}/oom_score_adj", self.pid()), "-1000").expect("oom_score_adj");
    }

    /// Waits for a record matching `pred`; on timeout fails with everything
    /// tracer said.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.records().into_iter().find(|r| pred(r)) {
                return found;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tracer exited ({status}) before {what}:\n{}", self.said());
            }
            if Instant::now() > deadline {
                panic!("no {what} within {WAIT:?}:\n{}", self.said());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn said(&self) -> String {
        format!(
            "--- stderr\n{}\n--- stdout\n{}\n--- records\n{}",
            fs::read_to_string(&self.stderr).unwrap_or_default(),
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.output).unwrap_or_default()
        )
    }

    /// Stops tracer with `signal` and collects everything it wrote.
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> Finished {
        let mut child = self.child.take().expect("running tracer");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signalling tracer");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for tracer") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "tracer did not stop within {WAIT:?} of {signal}:\n{}",
                    self.said()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        Finished {
            status,
            records: read_records(&self.output),
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    pub fn stop(self) -> Finished {
        self.stop_with(nix::sys::signal::Signal::SIGINT)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The entry for hook `name` in the `start` record among `records`: how it
/// attached (`attached`, a string) or why not (`error`); `None` when the
/// hook was not even tried.
pub fn start_hook(records: &[Value], name: &str) -> Option<Value> {
    records
        .iter()
        .find(|r| r["kind"] == "start")
        .and_then(|start| start["hooks"].as_array())
        .and_then(|hooks| hooks.iter().find(|h| h["name"] == name))
        .cloned()
}

/// Whether hook `name` attached, by the `start` record among `records`.
pub fn hook_attached(records: &[Value], name: &str) -> bool {
    start_hook(records, name).is_some_and(|h| h["attached"].is_string())
}

/// The complete lines of a JSON-lines file tracer is writing: a line still
/// being written (no newline yet) is left for the next read, as any reader
/// following a growing file must.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Runs tracer to completion with a time limit (for the bad-input checks).
pub fn run_tracer(args: &[&str], uid: Option<u32>) -> (ExitStatus, String) {
    let mut cmd = Command::new(TRACER);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd.spawn().expect("starting tracer");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("waiting").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tracer {args:?} did not exit on bad input within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("tracer output");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
