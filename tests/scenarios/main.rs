//! End-to-end scenarios: each makes the kernel do the real thing (a kill, a
//! fault, a thread-directed signal) and checks what a running
//! `tracer watch --output FILE` wrote. They need root and BPF and fail
//! without them.

mod bad_input;
mod dns;
mod export;
mod footprint;
mod harness;
mod hooks;
mod hostile;
mod iowait;
mod netlab;
mod oom;
mod pagealloc;
mod signals;
mod zombie;
