//! A namespace's own conntrack statistics, the counters `conntrack -S`
//! shows, read from `/proc/thread-self/net/stat/nf_conntrack`.
//!
//! The file is a header of column names and one line of `%08x` numbers per
//! possible CPU:
//!
//! ```text
//! entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
//! 00000006  00000000 00000000 00000000 0000000c 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000004  00000000 00000000 00000000 00000000
//! ```
//!
//! Kernels rename and repurpose columns (`searched` became `clashres`,
//! `delete_list` became `chainlength`), so columns are mapped by name, not
//! position. Counters are per CPU and summed here; `entries` is the
//! namespace's table size, printed identically on every line.
//!
//! `conntrack -S` (netlink, one line per CPU) field → column of this file:
//!
//! | `conntrack -S`   | column           | [`ConntrackStats`] field |
//! |------------------|------------------|--------------------------|
//! | `found`          | `found`          | `found`                  |
//! | `invalid`        | `invalid`        | `invalid`                |
//! | `insert`         | `insert`         | `insert`                 |
//! | `insert_failed`  | `insert_failed`  | `insert_failed`          |
//! | `drop`           | `drop`           | `drop`                   |
//! | `early_drop`     | `early_drop`     | `early_drop`             |
//! | `error`          | `icmp_error`     | `error`                  |
//! | `search_restart` | `search_restart` | `search_restart`         |
//! | `clash_resolve`  | `clashres`       | `clash_resolve`          |
//! | `chaintoolong`   | `chainlength`    | `chaintoolong`           |
//! | (`conntrack -C`) | `entries`        | `entries`                |
//!
//! `expect_new`, `expect_create` and `expect_delete` are what
//! `conntrack -S expect` shows. The `new`, `ignore` and `delete` columns are
//! printed as constant zeros by the kernel and are not read.

use std::io;

use serde::{Deserialize, Serialize};

use crate::netns::read_optional;

/// Per-namespace statistics file, as seen by the calling thread.
pub const STAT_PATH: &str = "/proc/thread-self/net/stat/nf_conntrack";

/// Conntrack counters of one namespace, summed over CPUs.
///
/// A counter whose column the kernel does not print is 0, except
/// `chaintoolong`, which is `None` when there is no `chainlength` column
/// (kernels that print `delete_list` there, before the chain length limit
/// existed) so "never happens" and "cannot be seen" stay apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackStats {
    /// Entries in the table now (a gauge, not a counter).
    pub entries: u64,
    /// Lookups that found an existing entry. The kernel only counts some
    /// lookup paths: it stayed 0 under traffic on Linux 6.18.
    pub found: u64,
    /// Packets conntrack could not track (bad state or malformed): these
    /// are what `-m conntrack --ctstate INVALID` rules drop.
    pub invalid: u64,
    /// Entries inserted. Stayed 0 on Linux 6.18 while entries were being
    /// added, so it is no measure of new connections; `entries` is.
    pub insert: u64,
    /// New entries that lost an insertion race and could not be resolved
    /// (the packet is dropped): the UDP DNS race behind 5 s timeouts.
    pub insert_failed: u64,
    /// Packets dropped because the table was full and nothing could be
    /// evicted.
    pub drop: u64,
    /// Entries evicted to make room in a full table.
    pub early_drop: u64,
    /// ICMP(v6) errors conntrack rejected (column `icmp_error`).
    pub error: u64,
    /// Lookups restarted because a hash resize or entry move raced them.
    pub search_restart: u64,
    /// Insertion races resolved by reusing or merging entries (column
    /// `clashres`); 0 on kernels that do not count them.
    pub clash_resolve: u64,
    /// Insertions refused because the hash chain was too long (column
    /// `chainlength`); packets are dropped.
    pub chaintoolong: Option<u64>,
    /// Expectations (helpers such as FTP, SIP) matched, created, deleted.
    pub expect_new: u64,
    pub expect_create: u64,
    pub expect_delete: u64,
}

impl ConntrackStats {
    /// Parses the file's contents.
    pub fn parse(text: &str) -> io::Result<ConntrackStats> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| invalid_data("empty conntrack stat file".to_string()))?
            .split_whitespace()
            .collect();
        let slots: Vec<Option<Column>> =
            header.iter().map(|name| Column::from_name(name)).collect();

        let mut stats = ConntrackStats::default();
        let mut first = true;
        for line in lines {
            let mut n = 0;
            for (i, word) in line.split_whitespace().enumerate() {
                let slot = slots.get(i).ok_or_else(|| {
                    invalid_data(format!(
                        "conntrack stat line has more than {} columns: {line:?}",
                        slots.len()
                    ))
                })?;
                let value = u64::from_str_radix(word, 16)
                    .map_err(|e| invalid_data(format!("conntrack stat value {word:?}: {e}")))?;
                if let Some(column) = slot {
                    stats.add(*column, value, first);
                }
                n = i + 1;
            }
            if n != slots.len() {
                return Err(invalid_data(format!(
                    "conntrack stat line has {n} columns, header has {}: {line:?}",
                    slots.len()
                )));
            }
            first = false;
        }
        if !header.contains(&"chainlength") {
            stats.chaintoolong = None;
        }
        Ok(stats)
    }

    fn add(&mut self, column: Column, value: u64, first_line: bool) {
        let counter = match column {
            Column::Entries => {
                // Same global count on every CPU's line.
                if first_line {
                    self.entries = value;
                }
                return;
            }
            Column::ChainTooLong => {
                *self.chaintoolong.get_or_insert(0) += value;
                return;
            }
            Column::Found => &mut self.found,
            Column::Invalid => &mut self.invalid,
            Column::Insert => &mut self.insert,
            Column::InsertFailed => &mut self.insert_failed,
            Column::Drop => &mut self.drop,
            Column::EarlyDrop => &mut self.early_drop,
            Column::Error => &mut self.error,
            Column::SearchRestart => &mut self.search_restart,
            Column::ClashResolve => &mut self.clash_resolve,
            Column::ExpectNew => &mut self.expect_new,
            Column::ExpectCreate => &mut self.expect_create,
            Column::ExpectDelete => &mut self.expect_delete,
        };
        *counter += value;
    }

    /// Counters accumulated since `earlier`. Subtraction saturates at 0:
    /// the namespace may have been recreated under the same inode number,
    /// restarting its counters. `entries` is a gauge and keeps `self`'s
    /// value.
    pub fn delta(&self, earlier: &Self) -> ConntrackStats {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        ConntrackStats {
            entries: self.entries,
            found: d(self.found, earlier.found),
            invalid: d(self.invalid, earlier.invalid),
            insert: d(self.insert, earlier.insert),
            insert_failed: d(self.insert_failed, earlier.insert_failed),
            drop: d(self.drop, earlier.drop),
            early_drop: d(self.early_drop, earlier.early_drop),
            error: d(self.error, earlier.error),
            search_restart: d(self.search_restart, earlier.search_restart),
            clash_resolve: d(self.clash_resolve, earlier.clash_resolve),
            chaintoolong: self
                .chaintoolong
                .map(|now| d(now, earlier.chaintoolong.unwrap_or(0))),
            expect_new: d(self.expect_new, earlier.expect_new),
            expect_create: d(self.expect_create, earlier.expect_create),
            expect_delete: d(self.expect_delete, earlier.expect_delete),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Column {
    Entries,
    Found,
    Invalid,
    Insert,
    InsertFailed,
    Drop,
    EarlyDrop,
    Error,
    SearchRestart,
    ClashResolve,
    ChainTooLong,
    ExpectNew,
    ExpectCreate,
    ExpectDelete,
}

impl Column {
    fn from_name(name: &str) -> Option<Column> {
        Some(match name {
            "entries" => Column::Entries,
            "found" => Column::Found,
            "invalid" => Column::Invalid,
            "insert" => Column::Insert,
            "insert_failed" => Column::InsertFailed,
            "drop" => Column::Drop,
            "early_drop" => Column::EarlyDrop,
            "icmp_error" => Column::Error,
            "search_restart" => Column::SearchRestart,
            "clashres" => Column::ClashResolve,
            "chainlength" => Column::ChainTooLong,
            "expect_new" => Column::ExpectNew,
            "expect_create" => Column::ExpectCreate,
            "expect_delete" => Column::ExpectDelete,
            _ => return None,
        })
    }
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Statistics of the calling thread's namespace; `None` when conntrack is
/// not loaded (the file only exists once `nf_conntrack` is).
pub fn read_current() -> io::Result<Option<ConntrackStats>> {
    read_optional(STAT_PATH)?
        .map(|text| ConntrackStats::parse(&text))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{
        in_netns,
        test_support::{is_root, TestNetns},
    };
    use std::collections::BTreeMap;

    /// `/proc/net/stat/nf_conntrack` of a netns on Linux 6.18 (2 possible
    /// CPUs) after DNAT'd UDP, TCP SYN+FIN and truncated ICMP errors, the
    /// latter two sent pinned to CPU 0 and then CPU 1.
    const NS_STAT: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000006  00000000 00000000 00000000 0000000c 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000004  00000000 00000000 00000000 00000000
00000006  00000000 00000000 00000000 00000018 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000008  00000000 00000000 00000000 00000000
";

    /// `conntrack -S` in the same namespace at the same moment.
    const NS_CONNTRACK_S: &str = "\
cpu=0   \tfound=0 invalid=12 insert=0 insert_failed=0 drop=0 early_drop=0 error=4 search_restart=0 clash_resolve=0 chaintoolong=0 
cpu=1   \tfound=0 invalid=24 insert=0 insert_failed=0 drop=0 early_drop=0 error=8 search_restart=0 clash_resolve=0 chaintoolong=0 
";

    /// The host namespace of the same machine, conntrack loaded but idle.
    const HOST_STAT: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
";

    /// Sums `conntrack -S` output per field over CPUs.
    fn sum_conntrack_s(text: &str) -> BTreeMap<String, u64> {
        let mut sums = BTreeMap::new();
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            if key == "cpu" {
                continue;
            }
            *sums.entry(key.to_string()).or_insert(0) += value.parse::<u64>().unwrap();
        }
        sums
    }

    /// The fields of `stats` under `conntrack -S`'s names.
    fn as_conntrack_s(stats: &ConntrackStats) -> BTreeMap<String, u64> {
        [
            ("found", stats.found),
            ("invalid", stats.invalid),
            ("insert", stats.insert),
            ("insert_failed", stats.insert_failed),
            ("drop", stats.drop),
            ("early_drop", stats.early_drop),
            ("error", stats.error),
            ("search_restart", stats.search_restart),
            ("clash_resolve", stats.clash_resolve),
            ("chaintoolong", stats.chaintoolong.unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn parses_netns_file_and_sums_cpus() {
        let stats = ConntrackStats::parse(NS_STAT).unwrap();
        assert_eq!(
            stats,
            ConntrackStats {
                entries: 6,
                invalid: 0xc + 0x18,
                error: 4 + 8,
                chaintoolong: Some(0),
                ..Default::default()
            }
        );
    }

    #[test]
    fn agrees_with_conntrack_s_captured_alongside() {
        let stats = ConntrackStats::parse(NS_STAT).unwrap();
        assert_eq!(as_conntrack_s(&stats), sum_conntrack_s(NS_CONNTRACK_S));
    }

    #[test]
    fn parses_idle_host_file() {
        let stats = ConntrackStats::parse(HOST_STAT).unwrap();
        assert_eq!(
            stats,
            ConntrackStats {
                chaintoolong: Some(0),
                ..Default::default()
            }
        );
    }

    #[test]
    fn maps_by_name_not_position() {
        // The header older kernels print: `searched` where `clashres` is now
        // and `delete_list` where `chainlength` is now, both unknown here.
        let text = NS_STAT
            .replace("clashres", "searched")
            .replace("chainlength", "delete_list");
        let stats = ConntrackStats::parse(&text).unwrap();
        assert_eq!(stats.invalid, 36);
        assert_eq!(stats.error, 12);
        assert_eq!(stats.clash_resolve, 0);
        assert_eq!(stats.chaintoolong, None);

        // Reordered columns (and lines) still land in the right fields.
        let reorder = |line: &str| {
            let mut w: Vec<&str> = line.split_whitespace().collect();
            w.reverse();
            w.join(" ")
        };
        let reordered: String = NS_STAT.lines().map(|l| reorder(l) + "\n").collect();
        assert_eq!(
            ConntrackStats::parse(&reordered).unwrap(),
            ConntrackStats::parse(NS_STAT).unwrap()
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(ConntrackStats::parse("").is_err());
        let short = NS_STAT.replace("00000008  00000000", "00000008");
        assert!(ConntrackStats::parse(&short).is_err());
        let bad = NS_STAT.replace("00000018", "0000001g");
        assert!(ConntrackStats::parse(&bad).is_err());
    }

    #[test]
    fn delta_saturates_and_keeps_entries() {
        let later = ConntrackStats::parse(NS_STAT).unwrap();
        let earlier = ConntrackStats {
            entries: 2,
            invalid: 10,
            error: 20,
            chaintoolong: Some(0),
            ..Default::default()
        };
        let d = later.delta(&earlier);
        assert_eq!(d.entries, 6);
        assert_eq!(d.invalid, 26);
        assert_eq!(d.error, 0, "recreated namespace: counter went down");
        assert_eq!(d.chaintoolong, Some(0));
        let no_chain = ConntrackStats::default();
        assert_eq!(no_chain.delta(&later).chaintoolong, None);
    }

    /// Sends TCP SYN+FIN from `addr` to itself over a raw socket: a flag
    /// combination conntrack counts as invalid.
    fn send_syn_fin(addr: std::net::Ipv4Addr, count: u16) {
        // SAFETY: plain socket syscalls on a fd closed before returning.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP);
            assert!(fd >= 0, "{}", io::Error::last_os_error());
            for i in 0..count {
                let mut tcp = [0u8; 20];
                tcp[0..2].copy_from_slice(&(40000 + i).to_be_bytes());
                tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
                tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = 0x03; // FIN | SYN
                tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
                let mut sum: u32 = 0;
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&addr.octets());
                pseudo.extend_from_slice(&addr.octets());
                pseudo.extend_from_slice(&[0, 6, 0, 20]);
                pseudo.extend_from_slice(&tcp);
                for pair in pseudo.chunks(2) {
                    sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
                }
                while sum > 0xffff {
                    sum = (sum >> 16) + (sum & 0xffff);
                }
                tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                let dst = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(addr).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                let n = libc::sendto(
                    fd,
                    tcp.as_ptr().cast(),
                    tcp.len(),
                    0,
                    (&dst as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                assert_eq!(n, 20, "{}", io::Error::last_os_error());
            }
            libc::close(fd);
        }
    }

    /// In a fresh namespace with DNAT'd UDP and invalid TCP, the counters
    /// read on a thread inside it (as the network family reads them) equal
    /// `conntrack -S` summed over CPUs, and `entries` equals `conntrack -C`.
    #[test]
    fn root_namespace_counters_agree_with_conntrack_tool() {
        assert!(
            is_root(),
            "this test creates network namespaces: run it as root (`cargo xtask test`)"
        );
        let ns = TestNetns::new("ctstats");
        ns.exec(&["ip", "addr", "add", "10.244.9.5/24", "dev", "lo"]);
        ns.exec(&["ip", "route", "add", "10.96.0.0/12", "dev", "lo"]);
        ns.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "-d",
            "10.96.0.10",
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to",
            "127.0.0.1:5353",
        ]);
        let handle = ns.handle();
        let before = in_netns(&handle, read_current)
            .unwrap()
            .unwrap()
            .expect("conntrack loaded");

        in_netns(&handle, || {
            for _ in 0..5 {
                let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                sock.send_to(b"q", "10.96.0.10:53").unwrap();
            }
            send_syn_fin("10.244.9.5".parse().unwrap(), 3);
        })
        .unwrap();

        let stats = in_netns(&handle, read_current).unwrap().unwrap().unwrap();
        let tool = sum_conntrack_s(&ns.exec(&["conntrack", "-S"]));
        assert_eq!(as_conntrack_s(&stats), tool);
        assert!(stats.invalid >= before.invalid + 3, "{stats:?}");
        assert!(stats.entries >= 5, "{stats:?}");

        let tool_count: u64 = ns.exec(&["conntrack", "-C"]).trim().parse().unwrap();
        assert_eq!(stats.entries, tool_count);
    }
}
