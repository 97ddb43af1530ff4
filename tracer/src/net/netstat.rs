//! A namespace's TCP listen-queue counters (`/proc/net/netstat`, what
//! `nstat` shows as TcpExtListenOverflows and TcpExtListenDrops): a server
//! whose accept queue is full drops new connections before any packet is
//! freed with a reason that says so, so the counters are the evidence.

use std::io;

/// The listen counters of one network namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenStats {
    /// Connections refused because the accept queue was full.
    pub overflows: u64,
    /// Every drop at a listening socket, overflows included.
    pub drops: u64,
}

impl ListenStats {
    /// Counters that grow, subtracted without wrapping (a namespace that was
    /// recreated starts again at zero).
    pub fn delta(&self, earlier: &Self) -> Self {
        Self {
            overflows: self.overflows.saturating_sub(earlier.overflows),
            drops: self.drops.saturating_sub(earlier.drops),
        }
    }
}

/// Reads the `TcpExt:` name line and the value line after it; the fields
/// differ between kernels, so they are found by name.
pub fn parse(text: &str) -> ListenStats {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return ListenStats::default();
    };
    let mut stats = ListenStats::default();
    for (name, value) in names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
    {
        let value = value.parse().unwrap_or(0);
        match name {
            "ListenOverflows" => stats.overflows = value,
            "ListenDrops" => stats.drops = value,
            _ => {}
        }
    }
    stats
}

/// The calling thread's namespace's counters (tracer reads them on a thread
/// that entered the namespace: `/proc/self/net` would show the process's).
pub fn read_current() -> io::Result<ListenStats> {
    Ok(parse(&std::fs::read_to_string(
        "/proc/thread-self/net/netstat",
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of this machine's /proc/net/netstat after a listen overflow.
    const NETSTAT: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops
TcpExt: 0 0 0 0 0 0 0 0 0 0 46 0 0 0 0 0 0 0 0 2 0 13 18 19
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
";

    #[test]
    fn listen_counters_by_name() {
        let stats = parse(NETSTAT);
        assert_eq!(
            stats,
            ListenStats {
                overflows: 18,
                drops: 19
            }
        );
        assert_eq!(parse("IpExt: A\nIpExt: 1\n"), ListenStats::default());
        let later = ListenStats {
            overflows: 20,
            drops: 25,
        };
        assert_eq!(
            later.delta(&stats),
            ListenStats {
                overflows: 2,
                drops: 6
            }
        );
    }

    #[test]
    fn reads_this_namespace() {
        read_current().expect("/proc/thread-self/net/netstat");
    }
}
