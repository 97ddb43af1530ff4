//! Decoding ring-buffer bytes into the typed records of `tracer-common`.
//! The bytes come from the kernel but are checked anyway: a short or unknown
//! record is counted and skipped, never a crash.

use std::mem::size_of;

use tracer_common::{Header, RecordKind};

/// One kernel record, checked: its kind is known and its bytes are at least
/// as many as that kind's struct. A family reads it with [`Record::read`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub kind: RecordKind,
    pub header: Header,
    bytes: &'a [u8],
}

impl Record<'_> {
    /// The record as the struct its kind is declared with in
    /// `tracer-common` (`record_kinds!`); `None` for a type of another size,
    /// so that a family reading the wrong struct reads nothing rather than
    /// past the record.
    pub fn read<T: aya::Pod>(&self) -> Option<T> {
        (size_of::<T>() == self.kind.size()).then(|| read_unchecked(self.bytes))
    }
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

pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let need = size_of::<Header>();
    if bytes.len() < need {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            need,
        });
    }
    let header: Header = read_unchecked(bytes);
    let kind = RecordKind::from_raw(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    if bytes.len() < kind.size() {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            need: kind.size(),
        });
    }
    Ok(Record {
        kind,
        header,
        bytes,
    })
}

/// Copies a `T` out of `bytes`, which the caller checked are long enough.
fn read_unchecked<T: aya::Pod>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: length checked above; read_unaligned copes with any
    // alignment; T is plain data, valid for every bit pattern.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::{ExitRecord, ForkRecord, Task};

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
        let bytes = bytes_of(&exit);
        let record = decode(&bytes).expect("an exit record");
        assert_eq!(record.kind, RecordKind::Exit);
        let r: ExitRecord = record.read().expect("read as its own struct");
        assert_eq!(r.task.tgid, 7942);
        assert_eq!(r.exit_code, 9);
        assert_eq!(r.header.ktime_ns, 42);
        assert!(
            record.read::<ForkRecord>().is_none(),
            "read as another kind's struct"
        );
        let fork = ForkRecord {
            header: Header {
                kind: RecordKind::Fork as u32,
                cpu: 0,
                ktime_ns: 1,
            },
            parent: task(1),
            child: task(2),
        };
        let bytes = bytes_of(&fork);
        let r: ForkRecord = decode(&bytes).unwrap().read().unwrap();
        assert_eq!(r.child.tgid, 2);
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
