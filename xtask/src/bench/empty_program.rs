//! The limit a hook's cost can reach: an empty BPF program (`r0 = 0; exit`)
//! attached as a raw tracepoint, the cheapest attach type, to the same
//! tracepoints tracer uses. What it costs a workload is the kernel's dispatch
//! alone; whatever tracer costs beyond it is tracer's own code.
//!
//! Loaded with the bpf(2) system call directly: two instructions need no
//! compiler, and no ELF object.

use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// The empty programs' name, for the kernel's statistics of them.
pub const NAME: &str = "empty";

/// `mov64 r0, 0` and `exit`, as the kernel reads them (opcode, registers,
/// offset, immediate).
const EMPTY: [u64; 2] = [0xb7, 0x95];

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_RAW_TRACEPOINT_OPEN`.
#[repr(C)]
#[derive(Default)]
struct RawTracepointOpen {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// Empty programs attached to raw tracepoints; dropping it detaches them.
pub struct EmptyPrograms {
    _links: Vec<OwnedFd>,
}

impl EmptyPrograms {
    pub fn attach(tracepoints: &[&str]) -> Result<Self> {
        let program = load().context("loading an empty BPF program")?;
        let links = tracepoints
            .iter()
            .map(|tp| {
                attach(&program, tp)
                    .with_context(|| format!("attaching an empty program to raw tracepoint {tp}"))
            })
            .collect::<Result<_>>()?;
        Ok(Self { _links: links })
    }
}

fn load() -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        insn_cnt: EMPTY.len() as u32,
        insns: EMPTY.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..NAME.len()].copy_from_slice(NAME.as_bytes());
    bpf(BPF_PROG_LOAD, &attr)
}

fn attach(program: &OwnedFd, tracepoint: &str) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let name = CString::new(tracepoint).map_err(io::Error::other)?;
    let attr = RawTracepointOpen {
        name: name.as_ptr() as u64,
        prog_fd: program.as_raw_fd() as u32,
        _pad: 0,
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &attr)
}

/// bpf(2) for the commands that return a new file descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, initialised `union bpf_attr` prefix of the
    // size passed; the kernel zero-extends the rest.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
