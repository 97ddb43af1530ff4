//! A zero-copy, lazy reader of BTF files (the kernel's `/sys/kernel/btf/*`
//! or `--btf FILE`): one pass over the type section records where each type
//! starts and indexes the named ones by a hash of their name; everything else
//! is decoded from the file's bytes when asked for.
//!
//! Why not a crate: btf-rs decodes every string and every type with its
//! members into owned values up front: 140-300 ms to parse this machine's
//! 5.5 MB vmlinux BTF (126699 types) and 40-120 ms to free it, most of
//! tracer's start-up and of its peak memory, to then answer about sixty
//! questions that take under a millisecond; aya-obj's `Btf` keeps its query
//! API crate-private. This reader indexes the same file in 4-13 ms (1 ms of
//! it sorting the 71327 names) with three allocations.

use anyhow::{bail, Context as _, Result};

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_HEADER_LEN: usize = 12;
/// Deep enough for any real nesting of anonymous structs and unions; stops a
/// corrupt file whose anonymous member contains itself.
pub const MAX_NESTING: u32 = 64;

/// The BTF kinds, as `info` bits 24-28 number them.
pub mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// Bytes that follow a type's 12-byte header, by kind and `vlen`.
fn trailing_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * vlen,
        kind::ENUM | kind::FUNC_PROTO => 8 * vlen,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        _ => return None,
    })
}

/// One BTF object: vmlinux's, or a module's on top of it (split BTF, whose
/// type ids and string offsets continue the base's).
pub struct Btf<'base> {
    data: Vec<u8>,
    big_endian: bool,
    /// Where the string section starts in `data`, and its length.
    strings: (usize, usize),
    /// Id of this object's first type: 1, or after the base's last.
    first_id: u32,
    /// String offset of this object's first string: 0, or the base's length.
    first_string: u32,
    /// Where each of this object's types starts in `data`, by id - first_id.
    type_starts: Vec<u32>,
    /// `(name hash << 32) | id` of every named type, sorted: the ids of a
    /// name are found by binary search, in increasing order.
    names: Vec<u64>,
    base: Option<&'base Btf<'base>>,
}

/// A type's header and its trailing data, still in the file's encoding.
#[derive(Clone, Copy)]
pub struct Type<'a> {
    pub kind: u32,
    pub kind_flag: bool,
    pub vlen: usize,
    pub name_off: u32,
    /// The size of structs, unions, enums and ints; the referenced type's id
    /// of pointers, typedefs, modifiers, functions and variables.
    pub size_or_type: u32,
    trailing: &'a [u8],
    big_endian: bool,
}

/// A struct or union member.
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    /// Bit offset in the enclosing struct, also of bitfields (the kind flag
    /// puts their size in the top 8 bits of the same word).
    pub bit_offset: u32,
}

impl Btf<'static> {
    /// Indexes a BTF file with its own types and strings (vmlinux's).
    pub fn parse(data: Vec<u8>) -> Result<Btf<'static>> {
        Btf::index(data, None)
    }
}

impl<'base> Btf<'base> {
    /// Indexes a module's BTF, whose types refer to `base`'s.
    pub fn parse_split(data: Vec<u8>, base: &'base Btf<'base>) -> Result<Btf<'base>> {
        Btf::index(data, Some(base))
    }

    fn index(data: Vec<u8>, base: Option<&'base Btf<'base>>) -> Result<Btf<'base>> {
        if u32::try_from(data.len()).is_err() {
            bail!(
                "not BTF: {} bytes, over the 4 GiB BTF offsets can address",
                data.len()
            );
        }
        if data.len() < HEADER_LEN {
            bail!("not BTF: {} bytes, shorter than a BTF header", data.len());
        }
        let big_endian = match u16::from_le_bytes([data[0], data[1]]) {
            MAGIC => false,
            m if m == MAGIC.swap_bytes() => true,
            m => bail!("not BTF: magic {m:#06x}, expected {MAGIC:#06x}"),
        };
        if data[2] != 1 {
            bail!("unsupported BTF version {}", data[2]);
        }
        let word = |at: usize| read_u32(&data, at, big_endian);
        let hdr_len = word(4) as usize;
        let section = |off: u32, len: u32, what: &str| -> Result<(usize, usize)> {
            let start = hdr_len
                .checked_add(off as usize)
                .filter(|&s| hdr_len >= HEADER_LEN && s <= data.len());
            match start {
                Some(s) if len as usize <= data.len() - s => Ok((s, len as usize)),
                _ => bail!(
                    "BTF {what} section ({len} bytes at {off}) beyond the file's {} bytes",
                    data.len()
                ),
            }
        };
        let (types_at, types_len) = section(word(8), word(12), "type")?;
        let strings = section(word(16), word(20), "string")?;
        if strings.1 > 0 && data[strings.0 + strings.1 - 1] != 0 {
            bail!("BTF string section does not end with a NUL");
        }
        let (first_id, first_string) = match base {
            None => (1, 0),
            Some(b) => (b.next_id(), b.strings_end()),
        };

        let mut btf = Btf {
            big_endian,
            strings,
            first_id,
            first_string,
            type_starts: Vec::new(),
            names: Vec::new(),
            base,
            data: Vec::new(),
        };
        // vmlinux's types average 25 bytes, and a little over half are named.
        btf.type_starts.reserve(types_len / 24);
        btf.names.reserve(types_len / 40);
        let end = types_at + types_len;
        let mut at = types_at;
        while at < end {
            let id = first_id + btf.type_starts.len() as u32;
            if end - at < TYPE_HEADER_LEN {
                bail!("BTF type {id} truncated at the end of the type section");
            }
            let name_off = word(at);
            let info = word(at + 4);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let Some(trailing) = trailing_len(kind, vlen) else {
                bail!("BTF type {id} has unknown kind {kind}");
            };
            let next = at + TYPE_HEADER_LEN + trailing;
            if next > end {
                bail!("BTF type {id} runs past the end of the type section");
            }
            btf.type_starts.push(at as u32);
            if name_off != 0 {
                let name = btf
                    .string_bytes_in(&data, name_off)
                    .with_context(|| format!("name of BTF type {id}"))?;
                btf.names
                    .push((u64::from(hash(name)) << 32) | u64::from(id));
            }
            at = next;
        }
        btf.names.sort_unstable();
        btf.data = data;
        Ok(btf)
    }

    /// The id the next split object's first type takes.
    fn next_id(&self) -> u32 {
        self.first_id + self.type_starts.len() as u32
    }

    fn strings_end(&self) -> u32 {
        self.first_string + self.strings.1 as u32
    }

    /// The ids of every type called `name`, the base's first, in increasing
    /// order.
    pub fn ids_by_name<'s>(&'s self, name: &'s str) -> impl Iterator<Item = u32> + 's {
        let mut levels: Vec<&'s Btf<'s>> = std::iter::successors(Some(self), |b| b.base).collect();
        levels.reverse();
        levels
            .into_iter()
            .flat_map(move |b| b.own_ids_by_name(name))
    }

    fn own_ids_by_name<'s>(&'s self, name: &'s str) -> impl Iterator<Item = u32> + 's {
        let h = u64::from(hash(name.as_bytes())) << 32;
        let from = self.names.partition_point(|&e| e < h);
        self.names[from..]
            .iter()
            .take_while(move |&&e| e & !0xffff_ffff == h)
            .map(|&e| e as u32)
            .filter(move |&id| {
                self.type_by_id(id)
                    .ok()
                    .and_then(|t| self.string_bytes(t.name_off).ok())
                    == Some(name.as_bytes())
            })
    }

    /// The type `id`; id 0 is `void`, a type of kind 0 with nothing else.
    pub fn type_by_id(&self, id: u32) -> Result<Type<'_>> {
        if id < self.first_id {
            return match self.base {
                Some(base) => base.type_by_id(id),
                None if id == 0 => Ok(Type {
                    kind: 0,
                    kind_flag: false,
                    vlen: 0,
                    name_off: 0,
                    size_or_type: 0,
                    trailing: &[],
                    big_endian: self.big_endian,
                }),
                None => unreachable!("a base object's first id is 1"),
            };
        }
        let Some(&at) = self.type_starts.get((id - self.first_id) as usize) else {
            bail!("BTF has no type {id}");
        };
        let at = at as usize;
        let word = |i: usize| read_u32(&self.data, at + i, self.big_endian);
        let info = word(4);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        // Bounds and kind were checked when the type was indexed.
        let trailing = trailing_len(kind, vlen).expect("indexed type");
        let body = at + TYPE_HEADER_LEN;
        Ok(Type {
            kind,
            kind_flag: info >> 31 == 1,
            vlen,
            name_off: word(0),
            size_or_type: word(8),
            trailing: &self.data[body..body + trailing],
            big_endian: self.big_endian,
        })
    }

    /// The string at `offset` (a name), from the base's strings or this
    /// object's.
    pub fn string(&self, offset: u32) -> Result<&str> {
        let bytes = self.string_bytes(offset)?;
        std::str::from_utf8(bytes).with_context(|| format!("BTF string at {offset} is not UTF-8"))
    }

    fn string_bytes(&self, offset: u32) -> Result<&[u8]> {
        self.string_bytes_in(&self.data, offset)
    }

    /// Like [`Self::string_bytes`], with this object's bytes given apart:
    /// indexing runs before `data` is moved in.
    fn string_bytes_in<'d>(&'d self, data: &'d [u8], offset: u32) -> Result<&'d [u8]> {
        if offset < self.first_string {
            return match self.base {
                Some(base) => base.string_bytes(offset),
                None => unreachable!("a base object's strings start at 0"),
            };
        }
        let (start, len) = self.strings;
        let rel = (offset - self.first_string) as usize;
        if rel >= len {
            bail!("BTF string offset {offset} beyond the string section");
        }
        let s = &data[start + rel..start + len];
        // The section ends with a NUL (checked at indexing).
        let nul = s.iter().position(|&b| b == 0).expect("NUL-terminated");
        Ok(&s[..nul])
    }
}

impl Type<'_> {
    fn word(&self, i: usize) -> u32 {
        read_u32(self.trailing, 4 * i, self.big_endian)
    }

    /// The members of a struct or union (none for other kinds).
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        let n = if matches!(self.kind, kind::STRUCT | kind::UNION) {
            self.vlen
        } else {
            0
        };
        (0..n).map(move |i| {
            let offset = self.word(3 * i + 2);
            Member {
                name_off: self.word(3 * i),
                type_id: self.word(3 * i + 1),
                bit_offset: if self.kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                },
            }
        })
    }

    /// `(name offset, value)` of an enum's values (none for other kinds).
    pub fn enum_values(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let n = if self.kind == kind::ENUM {
            self.vlen
        } else {
            0
        };
        (0..n).map(move |i| (self.word(2 * i), self.word(2 * i + 1)))
    }
}

fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> u32 {
    let b: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// FNV-1a: names are short, and only equal hashes are compared byte by byte.
fn hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Hand-built BTF blobs for what the running kernel's BTF may not show:
/// bitfields, anonymous unions, split BTF, big-endian files, corrupt files.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a BTF file type by type, as the kernel lays it out.
    pub struct Builder {
        types: Vec<u32>,
        strings: Vec<u8>,
        first_string: u32,
        next_id: u32,
        pub big_endian: bool,
    }

    impl Builder {
        pub fn new() -> Builder {
            Builder::split_after(1, 0)
        }

        /// A module's BTF on top of a base whose next id and string length
        /// are given.
        pub fn split_after(next_id: u32, first_string: u32) -> Builder {
            Builder {
                types: Vec::new(),
                strings: vec![0],
                first_string,
                next_id,
                big_endian: false,
            }
        }

        pub fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.first_string + self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// Adds a type; returns its id.
        pub fn ty(
            &mut self,
            name: &str,
            kind: u32,
            flag: bool,
            size_or_type: u32,
            tail: &[u32],
        ) -> u32 {
            let vlen = match kind {
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => tail.len() / 3,
                kind::ENUM | kind::FUNC_PROTO => tail.len() / 2,
                _ => 0,
            } as u32;
            let name = self.string(name);
            self.types
                .extend([name, (flag as u32) << 31 | kind << 24 | vlen, size_or_type]);
            self.types.extend_from_slice(tail);
            self.next_id += 1;
            self.next_id - 1
        }

        /// `(name, type, bit offset)` members; a bitfield's offset word
        /// carries its size in the top 8 bits when `flag` is set.
        pub fn strukt(
            &mut self,
            name: &str,
            kind: u32,
            flag: bool,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let tail: Vec<u32> = members
                .iter()
                .flat_map(|&(n, t, off)| [self.string(n), t, off])
                .collect();
            self.ty(name, kind, flag, size, &tail)
        }

        pub fn build(&self) -> Vec<u8> {
            let word = |w: u32| {
                if self.big_endian {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                }
            };
            let type_len = 4 * self.types.len() as u32;
            let mut out = Vec::new();
            out.extend(if self.big_endian {
                [0xeb, 0x9f]
            } else {
                [0x9f, 0xeb]
            });
            out.extend([1, 0]);
            for w in [
                HEADER_LEN as u32,
                0,
                type_len,
                type_len,
                self.strings.len() as u32,
            ] {
                out.extend(word(w));
            }
            for &w in &self.types {
                out.extend(word(w));
            }
            out.extend(&self.strings);
            out
        }
    }

    /// `struct task { int pid; unsigned in_iowait:1 (bit 35) ; union { int a;
    /// struct { long b; } } (at 64) }`, with bitfield sizes in the offsets
    /// when `flag` is set, as pahole writes the kernel's.
    pub fn task_blob(big_endian: bool, flag: bool) -> Vec<u8> {
        let mut b = Builder::new();
        b.big_endian = big_endian;
        let int = b.ty("int", kind::INT, false, 4, &[32]);
        let inner = b.strukt("", kind::STRUCT, false, 8, &[("b", int, 32)]);
        let union = b.strukt("", kind::UNION, false, 8, &[("a", int, 0), ("", inner, 0)]);
        let bits = if flag { 1 << 24 | 35 } else { 35 };
        b.strukt(
            "task",
            kind::STRUCT,
            flag,
            24,
            &[("pid", int, 0), ("in_iowait", int, bits), ("", union, 64)],
        );
        b.build()
    }

    #[test]
    fn finds_bitfields_and_members_of_anonymous_unions() {
        for big_endian in [false, true] {
            for flag in [false, true] {
                let btf = Btf::parse(task_blob(big_endian, flag)).expect("valid blob");
                let id = btf.ids_by_name("task").next().expect("task");
                let task = btf.type_by_id(id).unwrap();
                assert_eq!(task.size_or_type, 24);
                let offsets: Vec<u32> = task.members().map(|m| m.bit_offset).collect();
                assert_eq!(
                    offsets,
                    [0, 35, 64],
                    "big endian {big_endian}, kind flag {flag}"
                );
                assert_eq!(
                    btf.string(task.members().nth(1).unwrap().name_off).unwrap(),
                    "in_iowait"
                );
            }
        }
    }

    #[test]
    fn names_index_every_type_of_a_name() {
        let mut b = Builder::new();
        let int = b.ty("int", kind::INT, false, 4, &[32]);
        let fwd = b.ty("dup", kind::FWD, false, 0, &[]);
        b.ty("other", kind::TYPEDEF, false, int, &[]);
        let full = b.strukt("dup", kind::STRUCT, false, 4, &[("x", int, 0)]);
        let btf = Btf::parse(b.build()).unwrap();
        assert_eq!(btf.ids_by_name("dup").collect::<Vec<_>>(), [fwd, full]);
        assert_eq!(btf.ids_by_name("none").count(), 0);
        assert_eq!(btf.type_by_id(0).unwrap().kind, 0, "id 0 is void");
        assert!(btf.type_by_id(full + 1).is_err());
    }

    /// A base with `int` (id 1) and `struct tuple` (id 2), and a module on
    /// top with `struct conn { struct tuple tuple; int status; }` (id 3),
    /// which names its first member with the base's string.
    pub fn conntrack_blobs() -> (Vec<u8>, Vec<u8>) {
        let mut base = Builder::new();
        let int = base.ty("int", kind::INT, false, 4, &[32]);
        let tuple = base.strukt(
            "tuple",
            kind::STRUCT,
            false,
            8,
            &[("src", int, 0), ("dst", int, 32)],
        );
        let tuple_name = base.string("tuple");
        let mut module = Builder::split_after(tuple + 1, base.strings.len() as u32);
        let status = module.string("status");
        let conn = module.ty(
            "conn",
            kind::STRUCT,
            false,
            24,
            &[tuple_name, tuple, 0, status, int, 128],
        );
        assert_eq!(conn, 3);
        (base.build(), module.build())
    }

    #[test]
    fn split_btf_continues_the_base_ids_and_strings() {
        let (base, module) = conntrack_blobs();
        let base = Btf::parse(base).unwrap();
        let split = Btf::parse_split(module, &base).unwrap();
        assert_eq!(split.ids_by_name("conn").collect::<Vec<_>>(), [3]);
        assert_eq!(
            split.ids_by_name("tuple").collect::<Vec<_>>(),
            [2],
            "from the base"
        );
        let members: Vec<(String, u32, u32)> = split
            .type_by_id(3)
            .unwrap()
            .members()
            .map(|m| {
                (
                    split.string(m.name_off).unwrap().to_string(),
                    m.type_id,
                    m.bit_offset,
                )
            })
            .collect();
        assert_eq!(members, [("tuple".into(), 2, 0), ("status".into(), 1, 128)]);
        assert_eq!(split.type_by_id(2).unwrap().size_or_type, 8);
        assert!(base.ids_by_name("conn").next().is_none());
    }

    /// The `--btf FILE` is the user's: any file, cut anywhere, is an error,
    /// never a panic.
    #[test]
    fn every_truncation_of_a_file_is_an_error() {
        let whole = task_blob(false, true);
        for len in 0..whole.len() {
            assert!(Btf::parse(whole[..len].to_vec()).is_err(), "cut at {len}");
        }
        // The lengths in the header are checked, not the file's length.
        let mut long = whole.clone();
        long.extend([0; 16]);
        assert!(Btf::parse(long).is_ok());
    }

    #[test]
    fn corrupt_headers_and_types_are_errors() {
        let whole = task_blob(false, false);
        let corrupt = |at: usize, value: u32| {
            let mut bytes = whole.clone();
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            Btf::parse(bytes).err().map(|e| format!("{e:#}"))
        };
        let magic = Btf::parse(b"\x7fELF and more than twenty-four bytes".to_vec());
        assert!(magic.is_err_and(|e| e.to_string().contains("magic")));
        // hdr_len, type_off, type_len, str_off, str_len.
        for at in [4, 8, 12, 16, 20] {
            assert!(corrupt(at, u32::MAX).is_some(), "header word at {at}");
        }
        // The first type's name offset, then its kind.
        let first_type = HEADER_LEN;
        assert!(corrupt(first_type, 10_000)
            .unwrap()
            .contains("string offset"));
        assert!(corrupt(first_type + 4, 31 << 24)
            .unwrap()
            .contains("unknown kind"));
    }
}
