//! tracer: explains kernel events on Kubernetes nodes, with pod names.
//!
//! Data flows kernel hook -> BPF program (`tracer-ebpf`) -> ring buffer ->
//! [`records`] -> [`explain`] (with [`process`] and [`attribution`]) -> the
//! [`family`] that reads the record -> [`output`]. Each family lives in its
//! own folder ([`signals`], [`pagealloc`], [`net`], [`iowait`], [`zombie`]) and is
//! registered in [`family::FAMILIES`]. The binary in `main.rs` is only the
//! command line.

pub mod attribution;
pub mod cli;
pub mod clock;
pub mod conntrack;
pub mod dns;
pub mod doctor;
pub mod ebpf;
pub mod explain;
pub mod export;
pub mod family;
pub mod heap;
pub mod host_paths;
pub mod iowait;
pub mod kernel_btf;
pub mod kmsg;
pub mod logging;
pub mod net;
pub mod netns;
pub mod output;
pub mod pagealloc;
pub mod pipeline;
pub mod preflight;
pub mod process;
pub mod records;
pub mod replay;
pub mod scope;
pub mod signals;
pub mod size;
pub mod stacks;
pub mod top;
pub mod tracefs;
pub mod watch;
pub mod zombie;
