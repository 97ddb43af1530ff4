//! Kernel stacks (`--stacks`): ids recorded by the BPF programs, frames from
//! the `STACKS` map, names from /proc/kallsyms.

use std::fs;

use aya::maps::{MapData, StackTraceMap};

pub struct KernelStacks {
    map: StackTraceMap<MapData>,
    /// (address, name), sorted by address.
    symbols: Vec<(u64, String)>,
}

impl KernelStacks {
    pub fn new(map: StackTraceMap<MapData>) -> Self {
        Self {
            map,
            symbols: load_kallsyms(&fs::read_to_string("/proc/kallsyms").unwrap_or_default()),
        }
    }

    /// The frames of stack `id`, innermost first, as "function+0xoff".
    pub fn resolve(&self, id: i64) -> Vec<String> {
        let Ok(id) = u32::try_from(id) else {
            return Vec::new();
        };
        let Ok(trace) = self.map.get(&id, 0) else {
            return Vec::new();
        };
        trace
            .frames()
            .iter()
            .map(|frame| symbolize(&self.symbols, frame.ip))
            .collect()
    }
}

pub fn load_kallsyms(text: &str) -> Vec<(u64, String)> {
    let mut symbols: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let address = u64::from_str_radix(parts.next()?, 16).ok()?;
            let kind = parts.next()?;
            let name = parts.next()?;
            (address != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                .then(|| (address, name.to_owned()))
        })
        .collect();
    symbols.sort_unstable();
    symbols
}

pub fn symbolize(symbols: &[(u64, String)], ip: u64) -> String {
    match symbols.partition_point(|(address, _)| *address <= ip) {
        0 => format!("{ip:#x}"),
        at => {
            let (address, name) = &symbols[at - 1];
            format!("{name}+{:#x}", ip - address)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_against_a_sorted_table() {
        let symbols = load_kallsyms(
            "ffffffff81000000 T _stext\nffffffff81599ce0 T out_of_memory\nffffffff81599310 t oom_kill_process\n0000000000000000 D hidden\n",
        );
        assert_eq!(symbols.len(), 3);
        assert_eq!(symbolize(&symbols, 0xffffffff81599ce8), "out_of_memory+0x8");
        assert_eq!(
            symbolize(&symbols, 0xffffffff81599400),
            "oom_kill_process+0xf0"
        );
        assert_eq!(symbolize(&symbols, 0x10), "0x10");
    }
}
