//! The kernel modules the guests load at boot: what the DNS scenarios' labs
//! need (veth pairs, iptables over nf_tables, NAT, conntrack and its netlink
//! interface) and the IO-wait scenarios' loop devices, which Debian's cloud
//! kernels build as modules.
//!
//! The guest has no modprobe and the package no `modules.dep` (depmod runs
//! when it is installed), so the order is computed here: each module's
//! `.modinfo` section names its dependencies (`depends=`), and the init
//! loads the modules with busybox `insmod`, dependencies first.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};

use super::initramfs::BUSYBOX;

/// What the DNS scenarios need; their dependencies come along. The kernel
/// cannot ask for a missing one later (no modprobe in the guest), so every
/// match and target the labs' rules use is here:
/// - veth: the labs' links;
/// - nf_tables, nft_chain_nat: iptables-nft's tables and its nat chains;
/// - nft_compat with xt_nat (DNAT), xt_statistic (the Service's random
///   endpoint, the nth query dropped), xt_string (the AAAA query matched by
///   its bytes; its `bm` algorithm is ts_bm), xt_tcpudp (`-m udp`/`-m tcp`);
/// - nf_conntrack_netlink: `conntrack -S/-C/-R`.
///
/// And what the IO-wait scenarios need: loop, their block devices.
pub const NEEDED: &[&str] = &[
    "loop",
    "veth",
    "nf_tables",
    "nft_chain_nat",
    "nft_compat",
    "xt_nat",
    "xt_statistic",
    "xt_string",
    "ts_bm",
    "xt_tcpudp",
    "nf_conntrack_netlink",
    // iptables-nft counts every rule: a module of its own before 5.13.
    "nft_counter",
];

/// Needed modules that later kernels merged into another (nft_counter into
/// nf_tables in 5.13): where neither a file nor built in, they are part of
/// what is loaded anyway.
const MERGED_LATER: &[&str] = &["nft_counter"];

/// One guest kernel's modules, in load order.
pub struct KernelModules {
    /// The kernel's `uname -r`: the guest's init picks its modules by it.
    pub release: String,
    pub order: Vec<Module>,
}

pub struct Module {
    /// As the kernel calls it (underscores, no suffix).
    pub name: String,
    /// The uncompressed object, ready for `insmod`.
    pub object: Vec<u8>,
}

/// The modules `needed` and what they depend on, from `tree` (a kernel's
/// `lib/modules/<release>`), every module after its dependencies. Modules
/// built into the kernel (`modules.builtin`) are left out.
pub fn load_order(tree: &Path, needed: &[&str]) -> Result<Vec<Module>> {
    let files = module_files(&tree.join("kernel"))?;
    let builtin = builtin_modules(tree)?;
    let mut order = Order {
        files: &files,
        builtin: &builtin,
        visiting: BTreeSet::new(),
        loaded: Vec::new(),
    };
    for name in needed {
        let name = normalize(name);
        if MERGED_LATER.contains(&name.as_str())
            && !files.contains_key(&name)
            && !builtin.contains(&name)
        {
            continue;
        }
        order
            .visit(&name)
            .with_context(|| format!("kernel modules of {}", tree.display()))?;
    }
    Ok(order.loaded)
}

/// A depth-first walk of the dependencies: a module is pushed after all of
/// its own.
struct Order<'a> {
    files: &'a BTreeMap<String, PathBuf>,
    builtin: &'a BTreeSet<String>,
    visiting: BTreeSet<String>,
    loaded: Vec<Module>,
}

impl Order<'_> {
    fn visit(&mut self, name: &str) -> Result<()> {
        if self.loaded.iter().any(|m| m.name == name) || self.builtin.contains(name) {
            return Ok(());
        }
        ensure!(
            self.visiting.insert(name.to_owned()),
            "module {name} depends on itself through its dependencies"
        );
        let path = self
            .files
            .get(name)
            .with_context(|| format!("no module {name}, neither as a file nor built in"))?;
        let object = read_module(path)?;
        let depends = modinfo(&object, "depends")
            .with_context(|| format!("could not read the .modinfo of {}", path.display()))?;
        for dependency in depends.iter().flat_map(|d| d.split(',')) {
            if !dependency.is_empty() {
                self.visit(&normalize(dependency))
                    .with_context(|| format!("needed by {name}"))?;
            }
        }
        self.visiting.remove(name);
        self.loaded.push(Module {
            name: name.to_owned(),
            object,
        });
        Ok(())
    }
}

/// The kernel treats `-` and `_` in module names alike.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every module file under `dir`, by module name.
fn module_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if let Some(name) = module_name(&path) {
                files.insert(name, path);
            }
        }
    }
    Ok(files)
}

/// `nf_nat` for `.../nf_nat.ko` or `.../nf_nat.ko.xz`; `None` for other files.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".xz").unwrap_or(file);
    Some(normalize(stem.strip_suffix(".ko")?))
}

/// The names in `modules.builtin` (`kernel/net/.../foo.ko` per line).
fn builtin_modules(tree: &Path) -> Result<BTreeSet<String>> {
    let path = tree.join("modules.builtin");
    let text =
        fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| module_name(Path::new(line.trim())))
        .collect())
}

/// The module's object, decompressed: 6.12 ships `.ko.xz`, which busybox's
/// `insmod` cannot load, so busybox's `xz` (already needed for the guest's
/// init) unpacks it here.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|ext| ext == "ko") {
        return fs::read(path).with_context(|| format!("could not read {}", path.display()));
    }
    let out = Command::new(BUSYBOX)
        .args(["xz", "-dc"])
        .arg(path)
        .output()
        .with_context(|| format!("could not start `{BUSYBOX} xz`"))?;
    ensure!(
        out.status.success(),
        "`{BUSYBOX} xz -dc {}` failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

/// The values of `key` in the module's `.modinfo` section, a sequence of
/// NUL-terminated `key=value` strings.
fn modinfo(object: &[u8], key: &str) -> Result<Vec<String>> {
    let section = elf_section(object, ".modinfo")?;
    let prefix = format!("{key}=");
    Ok(section
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .collect())
}

/// The contents of the section called `wanted` in a little-endian ELF64
/// relocatable object, as modules on x86_64 are.
fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Result<&'a [u8]> {
    ensure!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian 64-bit ELF file"
    );
    let shoff = read_u64(elf, 0x28)? as usize;
    let shentsize = read_u16(elf, 0x3a)? as usize;
    let shnum = read_u16(elf, 0x3c)? as usize;
    let shstrndx = read_u16(elf, 0x3e)? as usize;
    // A section header: sh_name (u32) at 0, sh_offset (u64) at 0x18,
    // sh_size (u64) at 0x20. Only the sections read are sliced: .bss-like
    // ones have a size but no bytes in the file.
    let header = |index: usize| -> Result<(usize, usize, usize)> {
        let at = shoff + index * shentsize;
        Ok((
            read_u32(elf, at)? as usize,
            read_u64(elf, at + 0x18)? as usize,
            read_u64(elf, at + 0x20)? as usize,
        ))
    };
    let contents = |offset: usize, size: usize| {
        elf.get(offset..offset + size)
            .context("a section lies beyond the end of the file")
    };
    let (_, offset, size) = header(shstrndx)?;
    let names = contents(offset, size)?;
    for index in 0..shnum {
        let (name, offset, size) = header(index)?;
        let name = names
            .get(name..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .context("a section name lies outside the name table")?;
        if name == wanted.as_bytes() {
            return contents(offset, size);
        }
    }
    bail!("no {wanted} section")
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16> {
    let field = bytes.get(at..at + 2).context("truncated ELF file")?;
    Ok(u16::from_le_bytes(field.try_into()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32> {
    let field = bytes.get(at..at + 4).context("truncated ELF file")?;
    Ok(u32::from_le_bytes(field.try_into()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64> {
    let field = bytes.get(at..at + 8).context("truncated ELF file")?;
    Ok(u64::from_le_bytes(field.try_into()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 object: the null section, `.shstrtab`, `.bss` (a
    /// size but no bytes in the file) and `.modinfo`.
    fn object_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.bss\0.modinfo\0";
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0);
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let modinfo_at = elf.len();
        elf.extend_from_slice(modinfo);
        let shoff = elf.len();
        // (sh_name, sh_offset, sh_size) per section.
        let sections = [
            (0, 0, 0),
            (1, names_at, names.len()),
            (11, elf.len() + 1_000_000, 4096),
            (16, modinfo_at, modinfo.len()),
        ];
        for (name, offset, size) in sections {
            let mut header = [0u8; 64];
            header[0..4].copy_from_slice(&(name as u32).to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = object_with_modinfo(
            b"license=GPL\0depends=nf_conntrack,nf_defrag_ipv6,libcrc32c\0name=nf_nat\0",
        );
        assert_eq!(
            modinfo(&elf, "depends").unwrap(),
            ["nf_conntrack,nf_defrag_ipv6,libcrc32c"]
        );
        assert_eq!(modinfo(&elf, "name").unwrap(), ["nf_nat"]);
        let none = object_with_modinfo(b"depends=\0");
        assert_eq!(modinfo(&none, "depends").unwrap(), [""]);
        assert!(modinfo(b"not an object", "depends").is_err());
    }

    #[test]
    fn names_modules_as_the_kernel_does() {
        let name = |path: &str| module_name(Path::new(path));
        assert_eq!(
            name("kernel/net/netfilter/nf_nat.ko").as_deref(),
            Some("nf_nat")
        );
        assert_eq!(
            name("x/nf_conntrack-netlink.ko.xz").as_deref(),
            Some("nf_conntrack_netlink")
        );
        assert_eq!(name("modules.order"), None);
    }
}
