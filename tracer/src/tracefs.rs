//! Classic tracepoint records are decoded with the tracepoint's own format
//! file (`events/<group>/<name>/format`): field offsets and sizes differ
//! between kernels, and the format is what the kernel promises.

use std::{collections::HashMap, fs, path::Path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    /// `__data_loc`: the field holds (length << 16 | offset) of variable data.
    pub data_loc: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    fields: HashMap<String, Field>,
}

impl Format {
    pub fn read(tracefs: &Path, group: &str, name: &str) -> Option<Self> {
        let text = fs::read_to_string(tracefs.join("events").join(group).join(name).join("format"))
            .ok()?;
        Some(Self::parse(&text))
    }

    /// Parses lines like
    /// `field:unsigned long total_vm; offset:16; size:8; signed:0;` (tab-separated).
    pub fn parse(text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let Some(decl) = line.trim().strip_prefix("field:") else {
                continue;
            };
            let mut parts = decl.split(';').map(str::trim);
            let Some(declaration) = parts.next() else {
                continue;
            };
            let mut offset = None;
            let mut size = None;
            let mut signed = false;
            for part in parts {
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("signed:") {
                    signed = v == "1";
                }
            }
            // The name is the last word, without any array suffix.
            let Some(name) = declaration
                .split_whitespace()
                .last()
                .map(|n| n.split('[').next().unwrap_or(n))
            else {
                continue;
            };
            if let (Some(offset), Some(size)) = (offset, size) {
                let data_loc = declaration.starts_with("__data_loc");
                fields.insert(
                    name.to_owned(),
                    Field {
                        offset,
                        size,
                        signed,
                        data_loc,
                    },
                );
            }
        }
        Self { fields }
    }

    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.get(name).copied()
    }

    /// Bytes up to the end of the last fixed field.
    pub fn fixed_size(&self) -> usize {
        self.fields
            .values()
            .map(|f| f.offset + f.size)
            .max()
            .unwrap_or(0)
    }

    /// An integer field of `raw`, sign-extended when the format says so;
    /// `None` when the kernel's record has no such field or `raw` is short.
    pub fn int(&self, raw: &[u8], name: &str) -> Option<i64> {
        let f = self.field(name)?;
        if f.data_loc {
            return None;
        }
        let bytes = raw.get(f.offset..f.offset + f.size)?;
        Some(match (f.size, f.signed) {
            (1, true) => i8::from_ne_bytes([bytes[0]]) as i64,
            (1, false) => bytes[0] as i64,
            (2, true) => i16::from_ne_bytes(bytes.try_into().ok()?) as i64,
            (2, false) => u16::from_ne_bytes(bytes.try_into().ok()?) as i64,
            (4, true) => i32::from_ne_bytes(bytes.try_into().ok()?) as i64,
            (4, false) => u32::from_ne_bytes(bytes.try_into().ok()?) as i64,
            (8, _) => i64::from_ne_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As printed by a 6.18 kernel.
    const MARK_VICTIM_NEW: &str = "name: mark_victim
ID: 609
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:int pid;	offset:8;	size:4;	signed:1;
	field:__data_loc char[] comm;	offset:12;	size:4;	signed:0;
	field:unsigned long total_vm;	offset:16;	size:8;	signed:0;
	field:unsigned long anon_rss;	offset:24;	size:8;	signed:0;
	field:unsigned long file_rss;	offset:32;	size:8;	signed:0;
	field:unsigned long shmem_rss;	offset:40;	size:8;	signed:0;
	field:uid_t uid;	offset:48;	size:4;	signed:0;
	field:unsigned long pgtables;	offset:56;	size:8;	signed:0;
	field:short oom_score_adj;	offset:64;	size:2;	signed:1;

print fmt: \"pid=%d comm=%s\", REC->pid
";

    /// As printed by a 6.1 kernel: the pid only.
    const MARK_VICTIM_OLD: &str = "name: mark_victim
ID: 490
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:int pid;	offset:8;	size:4;	signed:1;

print fmt: \"pid=%d\", REC->pid
";

    #[test]
    fn parses_both_generations_of_mark_victim() {
        let new = Format::parse(MARK_VICTIM_NEW);
        assert_eq!(new.fixed_size(), 66);
        assert_eq!(
            new.field("comm").unwrap(),
            Field {
                offset: 12,
                size: 4,
                signed: false,
                data_loc: true
            }
        );
        let mut raw = vec![0u8; 72];
        raw[8..12].copy_from_slice(&812i32.to_ne_bytes());
        raw[64..66].copy_from_slice(&(-998i16).to_ne_bytes());
        raw[24..32].copy_from_slice(&64_000u64.to_ne_bytes());
        assert_eq!(new.int(&raw, "pid"), Some(812));
        assert_eq!(new.int(&raw, "oom_score_adj"), Some(-998));
        assert_eq!(new.int(&raw, "anon_rss"), Some(64_000));
        assert_eq!(new.int(&raw, "comm"), None);
        assert_eq!(new.int(&raw[..20], "anon_rss"), None, "short record");

        let old = Format::parse(MARK_VICTIM_OLD);
        assert_eq!(old.fixed_size(), 12);
        assert_eq!(old.int(&raw, "pid"), Some(812));
        assert_eq!(old.int(&raw, "anon_rss"), None);
        assert!(old.field("comm").is_none());
    }

    #[test]
    fn garbage_is_empty() {
        assert_eq!(
            Format::parse("no fields here\nfield:broken").fixed_size(),
            0
        );
    }

    #[test]
    fn reads_this_kernels_format() {
        crate::preflight::ensure_tracefs().expect("tracefs (run as root)");
        let format = Format::read(Path::new(crate::preflight::TRACEFS), "oom", "mark_victim")
            .expect("tracefs mounted with oom:mark_victim (run as root after `tracer doctor`)");
        assert!(format.field("pid").is_some());
    }
}
