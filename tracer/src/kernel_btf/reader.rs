//! A zero-copy, lazy reader of BTF files (the kernel's `/sys/kernel/btf/*`
//! or `--btf FILE`): one pass over the type section records where each type
//! starts and indexes the named ones by a hash of their name; everything else
//! is decoded from the file's bytes when asked for.
//!
//! Why not a crate: btf-rs decodes every string and every type with its
//! members into owned values up front, which took 185-360 ms and 25-45 ms to
//! free on a loaded two-core machine for a 6 MB vmlinux BTF (most of tracer's
//! start-up and of its peak memory), to then answer about sixty questions
//! that take under a millisecond; aya-obj's `Btf` keeps its query API
//! crate-private. This reader indexes the same file in a few milliseconds
//! with three allocations.

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
        // The kernel's types average about 40 bytes; most are named.
        btf.type_starts.reserve(types_len / 32);
        btf.names.reserve(types_len / 48);
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
                btf.names.push((u64::from(hash(name)) << 32) | u64::from(id));
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
        let base = self.base.into_iter().flat_map(move |b| b.own_ids_by_name(name));
        base.chain(self.own_ids_by_name(name))
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
        match self.base {
            Some(base) if offset < self.first_string => base.string_bytes(offset),
            _ => self.string_bytes_in(&self.data, offset),
        }
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
        let n = if self.kind == kind::ENUM { self.vlen } else { 0 };
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
