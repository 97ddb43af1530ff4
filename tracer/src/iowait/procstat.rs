//! The kernel's own account of a process's IO wait: delay accounting's
//! `delayacct_blkio_ticks`, field 42 of /proc/PID/stat (clock ticks; only
//! counted while `kernel.task_delayacct` is 1), and its IO bytes from
//! /proc/PID/io. tracer's figures are checked against these.

/// Field 42 of a /proc/PID/stat line. The name in field 2 may contain
/// spaces and parentheses, so fields are counted after its last ')'.
pub fn delayacct_blkio_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field 42 is the 40th.
    after_name.split_whitespace().nth(39)?.parse().ok()
}

/// `read_bytes` and `write_bytes` of /proc/PID/io: what the process made
/// the storage layer read and write (page cache hits excluded).
pub fn io_bytes(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("read_bytes:")?, field("write_bytes:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_field_42_of_a_real_stat_line() {
        // A dd blocked on a throttled device, and a name with ") (" in it.
        let dd = "4242 (dd) D 4241 4242 4000 34816 4242 4194560 150 0 0 0 0 12 0 0 20 0 1 0 123456 9027584 240 18446744073709551615 94367 94467 140730 0 0 0 0 0 0 1 0 0 17 1 0 0 387 0 0 94468 94469 94470 140731 140732 140733 140734 0\n";
        assert_eq!(delayacct_blkio_ticks(dd), Some(387));
        let odd = "77 (a) (b) c) S 1 77 77 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 9 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(delayacct_blkio_ticks(odd), Some(9));
        assert_eq!(delayacct_blkio_ticks("1 (init) S 0"), None);
    }

    #[test]
    fn reads_proc_pid_io() {
        let io = "rchar: 4096\nwchar: 10485760\nsyscr: 3\nsyscw: 10\nread_bytes: 0\nwrite_bytes: 10485760\ncancelled_write_bytes: 0\n";
        assert_eq!(io_bytes(io), Some((0, 10_485_760)));
        assert_eq!(io_bytes("rchar: 1\n"), None);
    }
}
