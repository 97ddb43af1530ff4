//! No allocation per record on the path a signal storm takes through
//! userspace: decode, explain (process table, attribution, the signals
//! family, the flood gate) and output (JSON lines to the file, text or JSON
//! to the console). A storm of half a million records a second cannot afford
//! the allocator's time or the heap's churn.
//!
//! Kernel-shaped records from `tracer::replay` go through the same
//! `Pipeline` as the ring buffer's; an allocator that counts the calls of
//! this thread must see none once the first records warmed the caches and
//! buffers. Its own binary (no test harness): the allocator is the whole
//! process's.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    os::fd::AsRawFd as _,
};

use tracer::{clock::Clock, output::Format, pipeline::Pipeline, replay};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread's locals may be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call goes to the system allocator as it is; the counters
// are plain thread-local cells that allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Records fed after the warm-up, with the event loop's flushes between.
const RECORDS: u64 = 50_000;
/// Records of one turn of the event loop (its `DRAIN_BATCH`).
const TURN: u64 = 4096;

/// Allocations while `RECORDS` records go through, after as many to warm up.
fn allocations(pipeline: &mut Pipeline, records: &[Vec<u8>]) -> u64 {
    let feed = |pipeline: &mut Pipeline| {
        for i in 0..RECORDS {
            pipeline.record(&records[(i % records.len() as u64) as usize]);
            if i % TURN == TURN - 1 {
                pipeline.output.flush();
                pipeline.flush(Clock::now_mono_ns());
            }
        }
        pipeline.output.flush();
    };
    feed(pipeline);
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    feed(pipeline);
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let now = Clock::now_mono_ns();
    let records: Vec<Vec<u8>> = (0..1000)
        .map(|i| replay::self_signal(now + i).unwrap())
        .collect();
    // The console lines go to /dev/null, not into the test's output.
    let stdout = std::io::stdout();
    let saved = unsafe { libc::dup(stdout.as_raw_fd()) };
    let null = std::fs::File::create("/dev/null").unwrap();
    unsafe { libc::dup2(null.as_raw_fd(), stdout.as_raw_fd()) };
    let mut failures = Vec::new();
    for (name, format, signal_flood) in [
        ("text console, every signal whole", Format::Text, 0),
        ("JSON console, every signal whole", Format::Json, 0),
        (
            "text console, floods summed up (the default)",
            Format::Text,
            tracer::signals::flood::KEEP_WHOLE,
        ),
    ] {
        let file = dir.path().join(format!("{signal_flood}-{format:?}.jsonl"));
        let mut pipeline = replay::pipeline(format, Some(&file), signal_flood).unwrap();
        let n = allocations(&mut pipeline, &records);
        let written = pipeline.output.events_written;
        if n > 0 {
            failures.push(format!(
                "{name}: {n} allocations for {RECORDS} records ({written} events written in all)"
            ));
        } else {
            eprintln!(
                "{name}: no allocation for {RECORDS} records ({written} events written in all)"
            );
        }
        assert!(written > 0, "{name}: nothing was written");
    }
    unsafe { libc::dup2(saved, stdout.as_raw_fd()) };
    assert!(
        failures.is_empty(),
        "the hot path allocates:\n  {}",
        failures.join("\n  ")
    );
    eprintln!("hot_path_allocations: ok");
}
