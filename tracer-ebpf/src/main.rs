//! tracer's BPF programs. One module per event family; `kernel` reads kernel
//! structs through the offsets userspace found in BTF, `ring` owns the ring
//! buffer and the loss counters.
#![no_std]
#![no_main]

/// Declares a map userspace takes by name. Its ELF name is its identifier,
/// and `tracer_common::names` must list that identifier: a map renamed on one
/// side only fails to compile.
macro_rules! shared_map {
    ($(#[$attr:meta])* $vis:vis static $name:ident : $ty:ty = $init:expr;) => {
        const _: &str = tracer_common::names::$name;
        $(#[$attr])*
        #[aya_ebpf::macros::map]
        $vis static $name: $ty = $init;
    };
}

mod iowait;
mod kernel;
mod lifecycle;
mod net;
mod oom;
mod pagealloc;
mod ring;
mod signal;
mod zombie;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never run.
    loop {}
}

/// `bpf_probe_read_kernel` is a GPL-only helper.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
