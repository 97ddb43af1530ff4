//! GFP flags by the names the running kernel uses. Their values changed
//! between kernel versions, so tracer does not carry a table: it reads the
//! kernel's own one, the `__print_flags(...)` table in the print format of
//! `kmem:mm_page_alloc`, and evaluates its C constant expressions.

use std::{fmt::Write as _, path::Path};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GfpNames {
    /// In the kernel's order: composite names (GFP_KERNEL) before single bits.
    table: Vec<(u64, String)>,
}

impl GfpNames {
    pub fn from_tracefs(tracefs: &Path) -> Option<Self> {
        let format =
            std::fs::read_to_string(tracefs.join("events/kmem/mm_page_alloc/format")).ok()?;
        Self::from_format(&format)
    }

    /// Reads the table from a tracepoint format that prints `gfp_flags`.
    pub fn from_format(format: &str) -> Option<Self> {
        let start = format.find("__print_flags(REC->gfp_flags")?;
        let mut rest = &format[start..];
        let mut table = Vec::new();
        while let Some(open) = rest.find('{') {
            let entry = &rest[open + 1..];
            let close = entry.find('}')?;
            let body = &entry[..close];
            let quote = body.rfind(",")?;
            let name = body[quote + 1..].trim().trim_matches('"');
            if let Some(value) = eval(&body[..quote]) {
                table.push((value, name.to_owned()));
            }
            rest = &entry[close + 1..];
            // The table ends where __print_flags' argument list does.
            if rest.trim_start().starts_with(')') {
                break;
            }
        }
        (!table.is_empty()).then_some(Self { table })
    }

    /// "GFP_KERNEL|__GFP_NOWARN", as the kernel prints it: each name whose
    /// bits are all set is taken in table order, leftover bits in hex.
    pub fn decode(&self, flags: u64) -> String {
        if flags == 0 {
            return "0".into();
        }
        let mut left = flags;
        let mut out = String::new();
        for (mask, name) in &self.table {
            if *mask != 0 && left & mask == *mask {
                if !out.is_empty() {
                    out.push('|');
                }
                out.push_str(name);
                left &= !mask;
            }
        }
        if left != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            let _ = write!(out, "{left:#x}");
        }
        out
    }

    /// The value of one name (`__GFP_NOWARN`), if this kernel has it.
    pub fn value(&self, name: &str) -> Option<u64> {
        self.table.iter().find(|(_, n)| n == name).map(|(v, _)| *v)
    }
}

/// Evaluates the C constant expressions of the kernel's flag tables:
/// integer literals (hex, decimal, with u/U/l/L suffixes), parentheses,
/// casts to integer types, `~ << >> & | ^`.
pub fn eval(expr: &str) -> Option<u64> {
    let tokens = tokenize(expr)?;
    let mut p = Parser { tokens, at: 0 };
    let value = p.or()?;
    (p.at == p.tokens.len()).then_some(value)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Num(u64),
    Open,
    Close,
    Op(&'static str),
    /// A type name inside a cast: `gfp_t`, `unsigned`, `long`, `__force`.
    Type,
}

fn tokenize(expr: &str) -> Option<Vec<Token>> {
    let bytes = expr.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' => i += 1,
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b'<' | b'>' if bytes.get(i + 1) == Some(&c) => {
                tokens.push(Token::Op(if c == b'<' { "<<" } else { ">>" }));
                i += 2;
            }
            b'|' | b'&' | b'~' | b'^' => {
                tokens.push(Token::Op(match c {
                    b'|' => "|",
                    b'&' => "&",
                    b'~' => "~",
                    _ => "^",
                }));
                i += 1;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                let literal = expr[start..i].trim_end_matches(['u', 'U', 'l', 'L']);
                let value = match literal
                    .strip_prefix("0x")
                    .or_else(|| literal.strip_prefix("0X"))
                {
                    Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                    None => literal.parse().ok()?,
                };
                tokens.push(Token::Num(value));
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                match &expr[start..i] {
                    "gfp_t" | "unsigned" | "long" | "int" | "__force" | "u32" | "u64" => {
                        tokens.push(Token::Type)
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    Some(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn binary(&mut self, ops: &[&str], next: fn(&mut Self) -> Option<u64>) -> Option<u64> {
        let mut value = next(self)?;
        while let Some(Token::Op(op)) = self.peek() {
            let op = *op;
            if !ops.contains(&op) {
                break;
            }
            self.at += 1;
            let rhs = next(self)?;
            value = match op {
                "|" => value | rhs,
                "^" => value ^ rhs,
                "&" => value & rhs,
                "<<" => value.checked_shl(rhs as u32)?,
                _ => value.checked_shr(rhs as u32)?,
            };
        }
        Some(value)
    }

    fn or(&mut self) -> Option<u64> {
        self.binary(&["|"], Self::xor)
    }

    fn xor(&mut self) -> Option<u64> {
        self.binary(&["^"], Self::and)
    }

    fn and(&mut self) -> Option<u64> {
        self.binary(&["&"], Self::shift)
    }

    fn shift(&mut self) -> Option<u64> {
        self.binary(&["<<", ">>"], Self::unary)
    }

    fn unary(&mut self) -> Option<u64> {
        match self.peek()? {
            Token::Op("~") => {
                self.at += 1;
                Some(!self.unary()?)
            }
            Token::Num(n) => {
                let n = *n;
                self.at += 1;
                Some(n)
            }
            Token::Open => {
                self.at += 1;
                // A cast: "(" type words ")" then the operand.
                if self.peek() == Some(&Token::Type) {
                    while self.peek() == Some(&Token::Type) {
                        self.at += 1;
                    }
                    self.expect_close()?;
                    return self.unary();
                }
                let value = self.or()?;
                self.expect_close()?;
                Some(value)
            }
            _ => None,
        }
    }

    fn expect_close(&mut self) -> Option<()> {
        (self.peek() == Some(&Token::Close)).then(|| self.at += 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = include_str!("../../tests/fixtures/mm_page_alloc-6.18.format");

    #[test]
    fn evaluates_the_kernels_constant_expressions() {
        assert_eq!(eval("(( gfp_t)0x400u)"), Some(0x400));
        assert_eq!(
            eval("( unsigned long)(((((1UL))) << (10))|((((1UL))) << (11)))"),
            Some(0xc00)
        );
        assert_eq!(eval("((( gfp_t)0xcc0u) & ~(( gfp_t)0x400u))"), Some(0x8c0));
        assert_eq!(eval("1 << 64"), None, "overflow is refused, not wrapped");
        assert_eq!(eval("(1"), None);
        assert_eq!(eval("sizeof(x)"), None);
    }

    /// The flag table of a 6.18 kernel, saved: composite names first, the
    /// rest of the bits by name, unknown bits in hex.
    #[test]
    fn decodes_with_a_saved_6_18_table() {
        let names = GfpNames::from_format(FORMAT_6_18).expect("flag table");
        assert_eq!(names.decode(0xcc0), "GFP_KERNEL");
        assert_eq!(names.decode(0x2cc0), "GFP_KERNEL|__GFP_NOWARN");
        assert_eq!(names.decode(0x140cca), "GFP_HIGHUSER_MOVABLE|__GFP_COMP");
        assert_eq!(names.decode(0x820), "GFP_ATOMIC");
        assert_eq!(names.decode(0), "0");
        assert_eq!(names.value("__GFP_NOWARN"), Some(0x2000));
        assert!(names.decode(1 << 31).ends_with("0x80000000"));
    }

    /// The running kernel as the oracle: a tracefs instance records page
    /// allocations whose raw flags equal one of a few values (the kernel's
    /// event filter compares the raw field), and prints their names itself;
    /// every line must read as `decode` says.
    #[test]
    fn decodes_as_the_running_kernel_prints() {
        crate::preflight::ensure_tracefs().expect("tracefs (run as root)");
        let tracefs = Path::new(crate::preflight::TRACEFS);
        let names = GfpNames::from_tracefs(tracefs).expect("this kernel's table");
        let value = |expr: &[&str]| {
            expr.iter()
                .map(|n| names.value(n).expect(n))
                .fold(0, |a, v| a | v)
        };
        let candidates = [
            value(&["GFP_HIGHUSER_MOVABLE", "__GFP_ZERO"]),
            value(&["GFP_HIGHUSER_MOVABLE", "__GFP_ZERO", "__GFP_COMP"]),
            value(&["GFP_KERNEL_ACCOUNT", "__GFP_ZERO"]),
            value(&["GFP_KERNEL_ACCOUNT", "__GFP_ZERO", "__GFP_COMP"]),
            value(&["GFP_KERNEL"]),
            value(&["GFP_KERNEL", "__GFP_ZERO"]),
            // Newer kernels (6.18 here) allocate user page tables as
            // compound, accounted pages, and file folios as compound.
            value(&["GFP_USER", "__GFP_ZERO", "__GFP_COMP", "__GFP_ACCOUNT"]),
            value(&["GFP_HIGHUSER_MOVABLE", "__GFP_COMP"]),
            value(&["GFP_NOWAIT", "__GFP_HARDWALL"]),
        ];
        let instance = tracefs.join(format!("instances/tracer-gfp-{}", std::process::id()));
        std::fs::create_dir(&instance).expect("a tracefs instance");
        let event = instance.join("events/kmem/mm_page_alloc");
        let filter: Vec<String> = candidates
            .iter()
            .map(|v| format!("gfp_flags == {v:#x}"))
            .collect();
        std::fs::write(event.join("filter"), filter.join(" || ")).expect("event filter");
        std::fs::write(event.join("enable"), "1").expect("enable");
        // Page faults and page tables of a few short processes.
        for _ in 0..20 {
            let _ = std::process::Command::new("true").status();
        }
        std::fs::write(event.join("enable"), "0").expect("disable");
        let trace = std::fs::read_to_string(instance.join("trace")).unwrap_or_default();
        let _ = std::fs::remove_dir(&instance);
        let expected: Vec<String> = candidates.iter().map(|v| names.decode(*v)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for printed in trace.lines().filter_map(|l| l.split("gfp_flags=").nth(1)) {
            let printed = printed.trim();
            assert!(
                expected.iter().any(|e| e == printed),
                "the kernel printed {printed}; tracer decodes {expected:?}"
            );
            seen.insert(printed.to_owned());
        }
        assert!(
            seen.len() >= 2,
            "too few allocations matched to compare: {seen:?}"
        );
    }

    #[test]
    fn reads_the_running_kernels_table() {
        crate::preflight::ensure_tracefs().expect("tracefs (run as root)");
        let names = GfpNames::from_tracefs(Path::new(crate::preflight::TRACEFS))
            .expect("this kernel's table");
        let kernel = names.value("GFP_KERNEL").expect("GFP_KERNEL");
        assert_eq!(names.decode(kernel), "GFP_KERNEL");
    }
}
