//! Decoding ring-buffer bytes into the typed records of `tracer-common`.
//! The bytes come from the kernel but are checked anyway: a short or unknown
//! record is counted and skipped, never a crash.

use std::mem::size_of;

use tracer_common::{
    BlockedTaskRecord, ExecRecord, ExitRecord, ForkRecord, Header, OomControlRecord, OomRecord,
    PacketRecord, PageAllocRecord, RecordKind, SignalRecord,
};

// Records are decoded on the stack and consumed at once; boxing the large
// signal variant would allocate for every fork, exec and exit instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum Record {
    Signal(SignalRecord),
    Fork(ForkRecord),
    Exec(ExecRecord),
    Exit(ExitRecord),
    Oom(OomRecord),
    OomControl(OomControlRecord),
    PageAllocFailure(PageAllocRecord),
    /// A drop, a DNS query sent or a DNS response received (`event` says which).
    Packet(PacketRecord),
    IoStall(BlockedTaskRecord),
    HungTask(BlockedTaskRecord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    TooShort { len: usize, need: usize },
    UnknownKind(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort { len, need } => write!(f, "record of {len} bytes, expected {need}"),
            Self::UnknownKind(kind) => write!(f, "record of unknown kind {kind}"),
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: Header = read(bytes)?;
    match RecordKind::from_raw(header.kind) {
        Some(RecordKind::Signal) => read(bytes).map(Record::Signal),
        Some(RecordKind::Fork) => read(bytes).map(Record::Fork),
        Some(RecordKind::Exec) => read(bytes).map(Record::Exec),
        Some(RecordKind::Exit) => read(bytes).map(Record::Exit),
        Some(RecordKind::Oom) => read(bytes).map(Record::Oom),
        Some(RecordKind::OomControl) => read(bytes).map(Record::OomControl),
        Some(RecordKind::PageAllocFailure) => read(bytes).map(Record::PageAllocFailure),
        Some(RecordKind::PacketDrop | RecordKind::Dns | RecordKind::ConntrackClash) => {
            read(bytes).map(Record::Packet)
        }
        Some(RecordKind::IoStall) => read(bytes).map(Record::IoStall),
        Some(RecordKind::HungTask) => read(bytes).map(Record::HungTask),
        None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

/// Copies a `T` out of `bytes`. Only for the `#[repr(C)]` plain-data records
/// of tracer-common, for which every bit pattern is valid.
fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked above; read_unaligned copes with any alignment;
    // T is plain data (integers and byte arrays).
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::Task;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain-data struct's bytes.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn task(tgid: u32) -> Task {
        Task {
            tid: tgid,
            tgid,
            start_ns: 7,
            comm: *b"server\0\0\0\0\0\0\0\0\0\0",
            thread_comm: [0; 16],
            cgroup2_id: 0,
            memory_cgroup_id: 0,
        }
    }

    #[test]
    fn decodes_each_kind() {
        let exit = ExitRecord {
            header: Header {
                kind: RecordKind::Exit as u32,
                cpu: 1,
                ktime_ns: 42,
            },
            task: task(7942),
            exit_code: 9,
            ppid: 1,
        };
        match decode(&bytes_of(&exit)) {
            Ok(Record::Exit(r)) => {
                assert_eq!(r.task.tgid, 7942);
                assert_eq!(r.exit_code, 9);
                assert_eq!(r.header.ktime_ns, 42);
            }
            other => panic!("unexpected {other:?}"),
        }
        let fork = ForkRecord {
            header: Header {
                kind: RecordKind::Fork as u32,
                cpu: 0,
                ktime_ns: 1,
            },
            parent: task(1),
            child: task(2),
        };
        assert!(matches!(decode(&bytes_of(&fork)), Ok(Record::Fork(r)) if r.child.tgid == 2));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert!(matches!(
            decode(&[1, 0, 0]),
            Err(DecodeError::TooShort { .. })
        ));
        let header = Header {
            kind: RecordKind::Signal as u32,
            cpu: 0,
            ktime_ns: 0,
        };
        // A signal header without its body.
        assert!(matches!(
            decode(&bytes_of(&header)),
            Err(DecodeError::TooShort { .. })
        ));
        let odd = Header {
            kind: 99,
            cpu: 0,
            ktime_ns: 0,
        };
        assert_eq!(
            decode(&bytes_of(&odd)).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
    }
}
