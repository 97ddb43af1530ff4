//! Byte sizes on the command line ("64MiB") and in messages ("64.0 MiB").
//!
//! Every unit is binary: K, KB and KiB all mean 1024 bytes. Log sizes are
//! budgets of disk space, and mixing 1000 and 1024 would only surprise.

/// Parses "64MiB", "64M", "64mb", "512KiB", "1G", "1048576", "1.5GiB" or
/// "64 MiB" into bytes. Units (any case): B, K/KB/KiB, M/MB/MiB, G/GB/GiB,
/// T/TB/TiB. A fraction needs a unit of KiB or more and is rounded down to
/// whole bytes. Refuses empty input, negative numbers, unknown units and
/// sizes beyond 2^64 - 1 bytes, with a one-line message.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let input = s.trim();
    if input.is_empty() {
        return Err("empty size: give a number with an optional unit, like 64MiB".to_string());
    }
    let number_end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(number_end);
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ if number.is_empty() => return Err(not_a_size(input)),
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in size {input:?}: use B, KiB, MiB, GiB or TiB"
            ))
        }
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(whole) || fraction.is_some_and(|f| !digits_only(f)) {
        return Err(not_a_size(input));
    }
    let too_large = || format!("size {input:?} is too large");
    let mut bytes = whole
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(multiplier)
        .ok_or_else(too_large)?;
    if let Some(fraction) = fraction {
        if multiplier == 1 {
            return Err(format!(
                "size {input:?} has a fraction of a byte: give whole bytes or a unit like KiB"
            ));
        }
        // 19 digits are finer than a byte for any unit up to TiB (2^40 <
        // 10^19) and keep the arithmetic within u128; later digits cannot
        // change the rounded-down result.
        let kept = &fraction[..fraction.len().min(19)];
        let numerator: u128 = kept.parse().map_err(|_| not_a_size(input))?;
        let denominator = 10u128.pow(kept.len() as u32);
        let extra = numerator * u128::from(multiplier) / denominator;
        // extra < multiplier, so it fits in u64.
        bytes = bytes.checked_add(extra as u64).ok_or_else(too_large)?;
    }
    Ok(bytes)
}

fn not_a_size(input: &str) -> String {
    format!("invalid size {input:?}: give a non-negative number with an optional unit, like 64MiB")
}

/// "512 B", "64.0 MiB", "1.5 GiB": one decimal from KiB on, the largest unit
/// that keeps the number at 1 or more.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut divisor = 1024u64;
    while unit + 1 < UNITS.len() && bytes / divisor >= 1024 {
        divisor *= 1024;
        unit += 1;
    }
    let mut value = bytes as f64 / divisor as f64;
    // 1048575 bytes would print as "1024.0 KiB": say "1.0 MiB" instead.
    if (value * 10.0).round() >= 10240.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The machine's page size in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases: [(&str, u64); 22] = [
            ("64MiB", 64 << 20),
            ("64M", 64 << 20),
            ("64mb", 64 << 20),
            ("64 MiB", 64 << 20),
            (" 64MiB ", 64 << 20),
            ("512KiB", 512 << 10),
            ("512k", 512 << 10),
            ("1G", 1 << 30),
            ("1gib", 1 << 30),
            ("2TiB", 2 << 40),
            ("1048576", 1_048_576),
            ("1048576B", 1_048_576),
            ("0", 0),
            ("1.5GiB", 3 << 29),
            ("1.5 G", 3 << 29),
            ("0.5K", 512),
            ("0.1KiB", 102),
            ("1.0MiB", 1 << 20),
            ("1.999999999999999999999999999KiB", 2047),
            ("18446744073709551615", u64::MAX),
            ("16777215.99999TiB", 18_446_744_073_698_556_499),
            ("007k", 7 << 10),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            "  ",
            "abc",
            "-1",
            "10XB",
            "MiB",
            ".5M",
            "5.M",
            "1.2.3M",
            "1..2M",
            "1.5",
            "1.5B",
            "1e6",
            "0x10",
            "64 Mi B",
            "18446744073709551616",
            "16777216TiB",
            "99999999999999999999999999G",
            "17179869184G",
            "5 ½M",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
        assert!(parse_size("10XB").unwrap_err().contains("\"XB\""));
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_size(5 << 40), "5.0 TiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn formatted_sizes_parse_back() {
        for bytes in [1024u64, 64 << 20, 3 << 29, 7 << 40] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }
}
