//! The records tracer's BPF programs write into the ring buffer, and the kernel
//! struct offsets userspace hands to them.
//!
//! Everything here is `#[repr(C)]`, plain old data, and identical on both
//! sides: the BPF programs fill these structs in place inside a ring-buffer
//! reservation, and userspace reads them back from the same bytes.
//!
//! Each family's records are in a module of their own; this file holds
//! what every record shares (the header, a task, the record kinds) and the
//! names of the maps and globals both sides use.
#![no_std]

mod config;
mod iowait;
mod lifecycle;
mod net;
mod offsets;
mod oom;
mod pagealloc;
mod signal;
mod zombie;

pub use config::*;
pub use iowait::*;
pub use lifecycle::*;
pub use net::*;
pub use offsets::*;
pub use oom::*;
pub use pagealloc::*;
pub use signal::*;
pub use zombie::*;

/// Length of `task_struct.comm`, the kernel's process name (with its NUL).
pub const COMM_LEN: usize = 16;

/// Declares [`RecordKind`], its [`RecordKind::ALL`] list, its names and its
/// record structs from one list, so that a kind cannot be added to one and forgotten in another
/// (a kind missing from `ALL` would decode as "unknown" and its losses would
/// go uncounted). The values must run 1, 2, 3...: each is also the kind's
/// slot in the `LOST` counters, which a compile-time check below enforces.
macro_rules! record_kinds {
    ($($(#[$doc:meta])* $variant:ident = $value:literal => $name:literal : $record:ty,)+) => {
        /// The first field of every record: tells userspace which struct follows.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum RecordKind {
            $($(#[$doc])* $variant = $value,)+
        }

        impl RecordKind {
            pub const ALL: [RecordKind; [$($value),+].len()] = [$(Self::$variant),+];

            /// The kind's name in `lost` and `stop` records.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// Size of the record struct this kind is written as.
            pub const fn size(self) -> usize {
                match self {
                    $(Self::$variant => core::mem::size_of::<$record>(),)+
                }
            }
        }
    };
}

record_kinds! {
    Signal = 1 => "signal": SignalRecord,
    Fork = 2 => "fork": ForkRecord,
    Exec = 3 => "exec": ExecRecord,
    Exit = 4 => "exit": ExitRecord,
    Oom = 5 => "oom": OomRecord,
    OomControl = 6 => "oom_control": OomControlRecord,
    PageAllocFailure = 7 => "page_alloc_failure": PageAllocRecord,
    PacketDrop = 8 => "packet_drop": PacketRecord,
    Dns = 9 => "dns": PacketRecord,
    ConntrackClash = 10 => "conntrack_clash": PacketRecord,
    IoStall = 11 => "io_stall": BlockedTaskRecord,
    HungTask = 12 => "hung_task": BlockedTaskRecord,
}

// Kind values are 1..=N with no gap: `lost_slot` and `LOST_SLOTS` rely on it.
const _: () = {
    let mut i = 0;
    while i < RecordKind::ALL.len() {
        assert!(
            RecordKind::ALL[i] as u32 == i as u32 + 1,
            "record kinds must be numbered 1, 2, 3..."
        );
        i += 1;
    }
};

impl RecordKind {
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u32 == raw)
    }

    /// Index of this kind's slot in the per-CPU `LOST` counters.
    pub const fn lost_slot(self) -> u32 {
        self as u32 - 1
    }
}

/// Number of slots in the `LOST` per-CPU array (one per [`RecordKind`]).
pub const LOST_SLOTS: u32 = RecordKind::ALL.len() as u32;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u32,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
}

/// One task as the kernel knows it at the time of the event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Task {
    /// Thread id (`task_struct.pid`, in the initial pid namespace).
    pub tid: u32,
    /// Process id (`task_struct.tgid`).
    pub tgid: u32,
    /// Start of the process (its group leader), CLOCK_MONOTONIC nanoseconds.
    pub start_ns: u64,
    /// The process's name (its group leader's `comm`).
    pub comm: [u8; COMM_LEN],
    /// This thread's own name, which threads often set (`worker-3`).
    pub thread_comm: [u8; COMM_LEN],
    /// Id of the task's cgroup in the cgroup2 hierarchy (its directory's
    /// inode number) at the time of the event; 0 when not read.
    pub cgroup2_id: u64,
    /// Id of the task's cgroup in the hierarchy of the memory controller
    /// (v1 on v1 and hybrid hosts); 0 when not read.
    pub memory_cgroup_id: u64,
}

/// Declares [`names`] from the statics' own identifiers: the BPF side
/// declares each of these globals and maps with the identifier itself (its
/// ELF symbol is the identifier) and checks there that `names` has it.
macro_rules! shared_names {
    (globals { $($global:ident,)+ } maps { $($map:ident,)+ }) => {
        /// Names of the globals and maps both sides use: a rename on either
        /// side breaks the build (and a unit test checks the built object),
        /// not the load.
        pub mod names {
            $(pub const $global: &str = stringify!($global);)+
            $(pub const $map: &str = stringify!($map);)+

            /// The read-only globals userspace sets before the load.
            pub const GLOBALS: &[&str] = &[$($global),+];
            /// The maps userspace takes from the loaded object.
            pub const MAPS: &[&str] = &[$($map),+];
        }
    };
}

shared_names! {
    globals {
        OFFSETS,
        CONFIG,
    }
    maps {
        EVENTS,
        LOST,
        STACKS,
        IO_TASKS,
        IO_DEVICES,
        IO_CGROUPS,
        ZOMBIES,
    }
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain data, valid for every bit pattern.
unsafe impl aya::Pod for Header {}
