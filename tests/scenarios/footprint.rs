//! What a watching tracer holds once it is set up: the node's memory is the
//! tenants', and a node agent's requests and limits are sized from this.

use std::{fs, thread, time::Duration};

use crate::harness::{require_root, Tracer, Workdir};

/// Private anonymous memory (the heap, stacks; not the binary's text, nor
/// the ring buffer the kernel maps in): before start-up gave back what it
/// freed, the parsed BTF left 27 MB of it.
const STEADY_ANON_LIMIT_KIB: u64 = 12 * 1024;

#[test]
fn steady_state_holds_no_start_up_heap() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let tracer = Tracer::start(&work, &host, &[]);
    // Set-up ends before the first tick; let a few pass.
    thread::sleep(Duration::from_secs(1));
    let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", tracer.pid()))
        .expect("tracer's smaps_rollup");
    let anonymous: u64 = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Anonymous:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("an Anonymous: line");
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        anonymous < STEADY_ANON_LIMIT_KIB,
        "tracer holds {anonymous} KiB of anonymous memory once set up (limit {STEADY_ANON_LIMIT_KIB} KiB)"
    );
}
