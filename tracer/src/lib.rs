//! tracer: explains kernel events on Kubernetes nodes, with pod names.
//!
//! Data flows kernel hook -> BPF program (`tracer-ebpf`) -> ring buffer ->
//! [`records`] -> [`explain`] (with [`process`] and [`attribution`]) ->
//! [`output`]. The binary in `main.rs` is only the command line.

pub mod attribution;
pub mod cli;
pub mod clock;
pub mod conntrack;
pub mod correlate;
pub mod dns;
pub mod doctor;
pub mod ebpf;
pub mod event;
pub mod explain;
pub mod flood;
pub mod gfp;
pub mod host_paths;
pub mod iowait;
pub mod kernel_btf;
pub mod kmsg;
pub mod net;
pub mod netns;
pub mod oom;
pub mod output;
pub mod pagealloc;
pub mod preflight;
pub mod process;
pub mod records;
pub mod scope;
pub mod signals;
pub mod size;
pub mod stacks;
pub mod top;
pub mod tracefs;
pub mod watch;
