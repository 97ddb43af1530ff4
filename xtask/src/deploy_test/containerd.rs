//! A node as kubelet and containerd make it, without kubelet: Debian's
//! containerd and runc started here, containers run with `ctr` in pod-shaped
//! cgroups (`/kubepods/<qos>/pod<uid>/<id>`, kubelet's cgroupfs driver) and
//! kubelet's log files for each (`/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`
//! and the `/var/log/containers/<pod>_<ns>_<container>-<id>.log` link), which
//! is where tracer finds pod and container names.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{output_of, random_hex};
use crate::cmd::{run, show};

/// containerd's directories and socket, the test's own (a node's containerd
/// may run beside it). Both directories are new for every run: an image
/// imported by an earlier run, with other layers, would be half reused.
const ROOT: &str = "/var/lib/tracer-deploy-test/containerd";
const STATE: &str = "/run/tracer-deploy-test/containerd";
const SOCKET: &str = "/run/tracer-deploy-test/containerd.sock";
/// The namespace kubelet's containers live in.
const NAMESPACE: &str = "k8s.io";

/// A containerd started by the test, stopped (with every container it ran)
/// when dropped.
pub struct Containerd {
    daemon: Child,
    containers: Vec<String>,
    /// Cgroups and kubelet files made for pods, removed at the end.
    pod_cgroups: Vec<String>,
    pod_files: Vec<PathBuf>,
    /// A kubelet's kubepods cgroup was there before the test.
    kubepods_existed: bool,
    /// Where the pods' logs are copied before their removal.
    keep_logs_in: PathBuf,
    /// Host directories the test made for its containers, removed last.
    made_on_host: Vec<PathBuf>,
    /// kubelet's directories, when this host had none: removed if empty.
    kubelet_dirs_made: Vec<PathBuf>,
}

impl Containerd {
    pub fn start(log: &Path) -> Result<Self> {
        for dir in [STATE, ROOT] {
            if Path::new(dir).exists() {
                fs::remove_dir_all(dir).with_context(|| {
                    format!(
                        "removing {dir}, left by an earlier run (is its containerd still running?)"
                    )
                })?;
            }
        }
        fs::create_dir_all(ROOT)?;
        fs::create_dir_all(STATE)?;
        let config = Path::new(STATE).join("config.toml");
        // No CRI plugin: nothing here talks CRI, and it would want CNI.
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{ROOT}\"\nstate = \"{STATE}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{SOCKET}\"\n"
            ),
        )?;
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(log)?)
            .stderr(fs::File::create(log.with_extension("stderr"))?)
            .spawn()
            .context("could not start containerd (Debian package containerd)")?;
        let mut containerd = Self {
            daemon,
            containers: Vec::new(),
            pod_cgroups: Vec::new(),
            pod_files: Vec::new(),
            kubepods_existed: ["/sys/fs/cgroup/memory/kubepods", "/sys/fs/cgroup/kubepods"]
                .iter()
                .any(|p| Path::new(p).exists()),
            keep_logs_in: log.with_file_name("pods"),
            made_on_host: Vec::new(),
            kubelet_dirs_made: ["/var/log/pods", "/var/log/containers"]
                .iter()
                .map(PathBuf::from)
                .filter(|dir| !dir.exists())
                .collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while output_of(ctr().arg("version")).is_err() {
            if let Some(status) = containerd.daemon.try_wait()? {
                bail!("containerd exited ({status}); see {}", log.display());
            }
            ensure!(
                Instant::now() < deadline,
                "containerd did not answer within 20 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
        Ok(containerd)
    }

    /// Removes `dir` once every container has stopped (a hostPath the test
    /// made for them).
    pub fn remove_at_end(&mut self, dir: PathBuf) {
        self.made_on_host.push(dir);
    }

    /// Loads an OCI archive, as a node does when kubelet pulls.
    pub fn import(&self, archive: &Path) -> Result<()> {
        run(ctr().args(["images", "import"]).arg(archive))
    }

    /// The capabilities a container gets when nothing is said (`ctr oci spec`).
    pub fn default_capabilities(&self) -> Result<Vec<String>> {
        let spec: serde_json::Value =
            serde_json::from_str(&output_of(Command::new("ctr").args(["oci", "spec"]))?)?;
        Ok(spec["process"]["capabilities"]["bounding"]
            .as_array()
            .context("no capabilities in `ctr oci spec`")?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect())
    }

    /// Starts `pod` as kubelet does before any of its containers: its log
    /// directory, then its sandbox (a container with no log, which holds the
    /// pod's namespaces; here busybox's sleep from `rootfs`).
    pub fn start_pod(&mut self, pod: &Pod, rootfs: &Path, flags: &[String]) -> Result<()> {
        let pod_dir = PathBuf::from(format!(
            "/var/log/pods/{}_{}_{}",
            pod.namespace, pod.name, pod.uid
        ));
        fs::create_dir_all(&pod_dir)?;
        self.pod_files.push(pod_dir);
        self.pod_cgroups
            .push(format!("/kubepods/{}/pod{}", pod.qos, pod.uid));
        let id = random_hex(32);
        let mut ctr = ctr();
        ctr.args(["run", "--detach", "--cgroup"])
            .arg(format!("/kubepods/{}/pod{}/{id}", pod.qos, pod.uid))
            .args(flags)
            .args(["--rootfs", "--env=PATH=/bin"])
            .arg(rootfs)
            .arg(&id)
            .args(["sleep", "86400"]);
        self.containers.push(id);
        run(&mut ctr).with_context(|| format!("starting the sandbox of pod {}", pod.name))
    }

    /// Starts a container of `pod` (started with `start_pod`), detached,
    /// with kubelet's log file and link for it. `flags` go to `ctr run` as
    /// they are.
    pub fn run(
        &mut self,
        pod: &Pod,
        container: &str,
        image: Image,
        flags: &[String],
        process: &[&str],
    ) -> Result<Container> {
        let id = random_hex(32);
        let cgroup = format!("/kubepods/{}/pod{}/{id}", pod.qos, pod.uid);
        let log_dir = PathBuf::from(format!(
            "/var/log/pods/{}_{}_{}/{container}",
            pod.namespace, pod.name, pod.uid
        ));
        fs::create_dir_all(&log_dir)?;
        let log = log_dir.join("0.log");
        fs::write(&log, b"")?;
        fs::create_dir_all("/var/log/containers")?;
        let link = PathBuf::from(format!(
            "/var/log/containers/{}_{}_{container}-{id}.log",
            pod.name, pod.namespace
        ));
        symlink(&log, &link)?;
        self.pod_files.push(link);

        let mut ctr = ctr();
        ctr.args(["run", "--detach", "--cgroup", &cgroup])
            .arg(format!("--log-uri=file://{}", log.display()))
            .args(flags);
        match image {
            Image::Reference(reference) => ctr.arg(reference),
            Image::Rootfs(dir) => ctr.arg("--rootfs").arg("--env=PATH=/bin").arg(dir),
        };
        ctr.arg(&id).args(process);
        println!(
            "deploy-test: {}/{} {container}: {}",
            pod.namespace,
            pod.name,
            show(&ctr)
        );
        self.containers.push(id.clone());
        run(&mut ctr)?;
        let pid = self.pid(&id)?;
        Ok(Container { id, pid, cgroup })
    }

    /// Runs `image` once in the foreground, outside any pod, and returns
    /// what it did: for checks of the image's settings.
    pub fn run_once(
        &mut self,
        image: &str,
        flags: &[String],
        process: &[&str],
    ) -> Result<std::process::Output> {
        let id = random_hex(32);
        let mut ctr = ctr();
        ctr.args(["run", "--rm"])
            .args(flags)
            .arg(image)
            .arg(&id)
            .args(process);
        ctr.output()
            .with_context(|| format!("could not start `{}`", show(&ctr)))
    }

    /// The host PID of a container's first process.
    fn pid(&self, id: &str) -> Result<u32> {
        let list = output_of(ctr().args(["tasks", "ls"]))?;
        list.lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(id)).then(|| words.next()?.parse().ok())?
            })
            .with_context(|| format!("container {id} has no task:\n{list}"))
    }

    /// Sends `signal` to the container's first process, as kubelet does to stop it.
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        run(ctr().args(["tasks", "kill", "--signal", signal, id]))
    }

    /// Waits for the container's task to stop.
    pub fn wait_stopped(&self, id: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while running(id) {
            ensure!(
                Instant::now() < deadline,
                "container {id} still runs after {timeout:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.containers.iter().rev() {
            let _ = ctr()
                .args(["tasks", "kill", "--signal", "SIGKILL", id])
                .output();
            let _ = self.wait_stopped(id, Duration::from_secs(10));
            let _ = ctr().args(["tasks", "delete", id]).output();
            let _ = ctr().args(["containers", "delete", id]).output();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // runc removed the containers' cgroups; the pods' (and kubepods, if
        // the test made it) are kubelet's job.
        let mut made = self.pod_cgroups.clone();
        if !self.kubepods_existed {
            made.extend(
                [
                    "/kubepods/besteffort",
                    "/kubepods/burstable",
                    "/kubepods/guaranteed",
                    "/kubepods",
                ]
                .map(String::from),
            );
        }
        let hierarchies: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for cgroup in &made {
            let cgroup = cgroup.trim_start_matches('/');
            for hierarchy in hierarchies
                .iter()
                .chain([PathBuf::from("/sys/fs/cgroup")].iter())
            {
                let _ = fs::remove_dir(hierarchy.join(cgroup));
            }
        }
        // The pods' logs (tracer's text output among them) stay in the
        // test's directory, to read when something failed.
        let _ = fs::create_dir_all(&self.keep_logs_in);
        for file in self.pod_files.iter().filter(|f| f.is_dir()) {
            let _ = Command::new("cp")
                .arg("-rL")
                .arg(file)
                .arg(&self.keep_logs_in)
                .status();
        }
        for file in &self.pod_files {
            let _ = if file.is_dir() {
                fs::remove_dir_all(file)
            } else {
                fs::remove_file(file)
            };
        }
        for dir in &self.made_on_host {
            let _ = fs::remove_dir_all(dir);
        }
        for dir in &self.kubelet_dirs_made {
            let _ = fs::remove_dir(dir);
        }
        let _ = fs::remove_dir_all(STATE);
        let _ = fs::remove_dir_all(ROOT);
    }
}

/// `ctr` talking to the test's containerd, in kubelet's namespace.
fn ctr() -> Command {
    let mut ctr = Command::new("ctr");
    ctr.args(["--address", SOCKET, "--namespace", NAMESPACE]);
    ctr
}

/// Whether the container's task still runs.
pub fn running(id: &str) -> bool {
    output_of(ctr().args(["tasks", "ls"])).is_ok_and(|list| {
        list.lines()
            .any(|l| l.starts_with(id) && l.contains("RUNNING"))
    })
}

pub enum Image<'a> {
    Reference(&'a str),
    Rootfs(&'a Path),
}

/// A pod as kubelet names it.
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub qos: &'static str,
}

impl Pod {
    pub fn new(namespace: &str, name: &str, qos: &'static str) -> Self {
        let h = random_hex(16);
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ),
            qos,
        }
    }
}

pub struct Container {
    pub id: String,
    /// The host PID of its first process.
    pub pid: u32,
    /// Its cgroup, below each hierarchy's root.
    pub cgroup: String,
}

/// A root filesystem of Debian's static busybox and its applet links, what
/// the test's pods run.
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    let bin = dir.join("bin");
    fs::create_dir_all(&bin)?;
    for empty in ["proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(empty))?;
    }
    fs::copy("/bin/busybox", bin.join("busybox"))
        .context("copying /bin/busybox (Debian package busybox-static)")?;
    for applet in output_of(Command::new("/bin/busybox").arg("--list"))?.lines() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet))?;
        }
    }
    Ok(())
}
