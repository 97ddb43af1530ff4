//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{output::Format, signals::SignalSet, size::parse_size};

#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    about = "Explains kernel events on a Kubernetes node, with pod names",
    long_about = "Explains kernel events on a Kubernetes node, as they happen and with pod names: \
who sent a signal (SIGKILL, SIGTERM, ...) to which process and pod, with the sender's process \
ancestry, and which exit code followed; OOM kills, page-allocation failures, packet drops \
behind slow DNS lookups (conntrack clashes, a full table, filter rules), IO stalls, hung \
tasks and zombies left unreaped. `tracer top` shows IO wait live, per pod, process and device.\n\nRun as root on the node, or in the DaemonSet of deploy/daemonset.yaml \
(hostPID, CAP_BPF and CAP_PERFMON, the host's / mounted: see --host-root; the node's name from \
the NODE_NAME variable)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub log: crate::logging::LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the node and explain events as they happen (Ctrl-C to stop).
    // Boxed: its options outweigh the other commands' many times over.
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(Box<WatchArgs>),
    /// Check what tracer can do on this kernel: privileges, BTF, tracefs, hooks.
    Doctor(DoctorArgs),
    /// Live view of IO wait per pod, process and device (q quits).
    #[command(after_help = TOP_HELP)]
    Top(TopArgs),
}

const WATCH_EXAMPLES: &str = "Examples:
  tracer watch                                 every fatal signal, OOM kill, allocation
                                               failure, packet drop, slow DNS lookup and
                                               IO stall on the node
  tracer watch --pid 7942                      what happens to 7942's pod, across restarts
  tracer watch --pod default/web-7f9c-x2k4     one pod by name
  tracer watch --signals KILL,TERM -o /var/log/tracer/events.jsonl
                                               only SIGKILL and SIGTERM, also to a file
  tracer watch --iowait-threshold 500ms --stacks
                                               IO stalls of 0.5 s and more, with the kernel
                                               stack where each one slept
  tracer watch --no-dns                        all of it but DNS lookups (a program less on
                                               every packet)";

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Follow only what this process belongs to: its pod (across container
    /// restarts), else its container, else the process itself.
    #[arg(long, value_name = "PID", conflicts_with_all = ["pod", "container"])]
    pub pid: Option<u32>,

    /// Follow only this pod, by name (recreated pods with the same name too).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = crate::scope::parse_pod_name, conflicts_with = "container")]
    pub pod: Option<(String, String)>,

    /// Follow only this container (a prefix of its id is enough).
    #[arg(long, value_name = "ID", value_parser = crate::scope::parse_container_id)]
    pub container: Option<String>,

    /// Signals to report: "default" (those whose default action terminates,
    /// dumps core or stops a process), "all", or a list like KILL,TERM,SEGV.
    /// Others are dropped in the kernel.
    #[arg(long, value_name = "LIST", default_value = "default")]
    pub signals: SignalSet,

    /// Console format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Also write every record as JSON lines to FILE (created 0600, rotated by size).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Rotate the output file when it would grow past this size.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub output_max_size: u64,

    /// Keep at most this many output files (FILE, FILE.1, ...): the disk used is
    /// bounded by about N x --output-max-size.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub output_max_files: u32,

    /// Record the kernel stack of each page-allocation failure (who asked,
    /// deep down), and of each IO stall and hung task (where it sleeps).
    #[arg(long)]
    pub stacks: bool,

    /// Do not follow DNS lookups. Following them puts a program on every
    /// packet a local socket sends and every packet a device receives (a few
    /// hundred nanoseconds each on a virtual machine, most on UDP); drops
    /// and conntrack counters stay on.
    #[arg(long)]
    pub no_dns: bool,

    /// Do not use this way of attaching, as the banner and `tracer doctor`
    /// name it (e.g. "kprobe warn_alloc"): the hook's next candidate is
    /// used instead. To compare a hook with its fallback, or to avoid one
    /// on a kernel where it misbehaves. Repeatable.
    #[arg(long, value_name = "ATTACH")]
    pub skip_hook: Vec<String>,

    /// Report a task blocked in D state (IO wait and other uninterruptible
    /// sleeps) at least this long as an `io_stall` event, with its process,
    /// pod and device. Shorter waits are only counted (see `tracer top`).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = crate::iowait::parse_threshold)]
    pub iowait_threshold: u64,

    /// Report a process that exited and that its parent has not reaped
    /// (a zombie, `<defunct>` in ps) once it is this old, with its pod and
    /// the parent that does not wait for it.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::iowait::parse_threshold)]
    pub zombie_age: u64,

    /// Signals of one number from one process to another shown whole each
    /// second; the rest of such a flood are counted, in one `signal_flood`
    /// record a second ("sigstorm(412) sent 1204331 SIGUSR1 to worker(77) in
    /// 1.0 s (10 shown)"). 0 shows every one.
    #[arg(long, value_name = "N", default_value_t = crate::signals::flood::KEEP_WHOLE)]
    pub signal_flood: u64,

    /// Size of the kernel-to-tracer ring buffer (a power of two). Records
    /// that do not fit are counted and reported as `lost`; raise it if that
    /// happens.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = crate::ebpf::parse_ring_buffer_size)]
    pub ring_buffer_size: u32,

    #[command(flatten)]
    pub export: crate::export::ExportArgs,

    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Where the host's filesystem is mounted: kubelet's /var/log/pods and
    /// /var/log/containers are read below it (e.g. /host in a DaemonSet).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,

    /// The host's procfs (with hostPID it is /proc).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub procfs: PathBuf,

    /// Kernel BTF to read struct layouts from, for kernels without
    /// /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
}

const TOP_HELP: &str = "Columns:
  IOWAIT   time blocked in IO wait (in_iowait) over the interval, as a share of it:
           100% is one task waiting all the time (threads add up)
  BLOCKED  time blocked in D state for any reason (IO wait included)
  READ/s, WRITE/s  bytes the process made the storage read and write
           (/proc/PID/io: writes are counted for the process that dirtied the pages);
           for a pod, the larger of that and what its cgroup owned at the block layer
  PSI      the pod's io.pressure \"some\" avg10 (cgroup v2 only)
  DEVICE   r/s w/s: requests completed; await: mean issue-to-completion time;
           p99: upper bound of the 99th percentile's latency bucket
Keys: i iowait, b blocked, r read, w write, p pid (sort); q or Esc quits.
Examples:
  tracer top                        live, in the terminal
  tracer top --once                 one frame after one interval, then exit
  tracer top --batch --iterations 5 > io.txt";

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between frames.
    #[arg(long, short = 'd', value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,

    /// Print frames one after the other instead of redrawing the screen (the
    /// default when stdout is not a terminal).
    #[arg(long, short = 'b')]
    pub batch: bool,

    /// Stop after N frames.
    #[arg(long, short = 'n', value_name = "N")]
    pub iterations: Option<u64>,

    /// One frame (after one interval), then exit: --iterations 1.
    #[arg(long, conflicts_with = "iterations")]
    pub once: bool,

    #[command(flatten)]
    pub host: HostArgs,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s}: the interval is in seconds, between 0.1 and 3600"
        )),
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub host: HostArgs,
}
