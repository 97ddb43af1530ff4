//! Joins an exit with the signals its process received: "exited: killed by
//! SIGKILL from pkill(23549)". Signals are remembered per process for a while;
//! processes that never exit (a handled SIGHUP, a SIGSTOP) age out.

use std::collections::HashMap;

use super::{event::SignalCause, ExitStatus};

/// How long a signal is remembered while waiting for its target to exit
/// (covers long termination grace periods).
const REMEMBER_NS: u64 = 15 * 60 * 1_000_000_000;
/// Signals remembered per process: a TERM, a KILL and some repeats.
const PER_PROCESS: usize = 8;

#[derive(Default)]
pub struct Correlator {
    received: HashMap<u32, Vec<SignalCause>>,
}

impl Correlator {
    pub fn on_signal(&mut self, target_tgid: u32, cause: SignalCause) {
        let list = self.received.entry(target_tgid).or_default();
        if list.len() == PER_PROCESS {
            list.remove(0);
        }
        list.push(cause);
    }

    /// The signal to blame for this exit, forgetting what the process received.
    /// A death by signal N names the latest N; any other exit names the latest
    /// signal received (a TERM the program handled by exiting).
    pub fn on_exit(&mut self, tgid: u32, status: ExitStatus) -> Option<SignalCause> {
        let received = self.received.remove(&tgid)?;
        match status {
            ExitStatus::Signaled { sig, .. } => {
                received.iter().rev().find(|c| c.sig == sig).copied()
            }
            ExitStatus::Exited(_) => received.last().copied(),
        }
    }

    /// A pid that is reused by a new process must not inherit old signals.
    pub fn forget(&mut self, tgid: u32) {
        self.received.remove(&tgid);
    }

    pub fn expire(&mut self, now_ns: u64) {
        self.received.retain(|_, list| {
            list.retain(|c| now_ns.saturating_sub(c.mono_ns) < REMEMBER_NS);
            !list.is_empty()
        });
    }

    pub fn pending(&self) -> usize {
        self.received.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{process::Comm, signals::decode_si_code};

    fn cause(sig: u32, at: u64, sender: u32) -> SignalCause {
        SignalCause {
            mono_ns: at,
            sig,
            code: decode_si_code(sig, 0),
            sender_pid: sender,
            sender_comm: Comm::from_str_lossy("kubelet"),
            oom_kill: false,
        }
    }

    #[test]
    fn kill_after_term_blames_the_kill() {
        let mut c = Correlator::default();
        c.on_signal(10, cause(15, 1, 100));
        c.on_signal(10, cause(9, 2, 200));
        let blamed = c
            .on_exit(
                10,
                ExitStatus::Signaled {
                    sig: 9,
                    core_dumped: false,
                },
            )
            .unwrap();
        assert_eq!((blamed.sig, blamed.sender_pid), (9, 200));
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn handled_term_then_clean_exit_names_the_term() {
        let mut c = Correlator::default();
        c.on_signal(10, cause(15, 1, 100));
        let blamed = c.on_exit(10, ExitStatus::Exited(0)).unwrap();
        assert_eq!(blamed.sig, 15);
    }

    #[test]
    fn death_by_an_unseen_signal_blames_nobody() {
        let mut c = Correlator::default();
        c.on_signal(10, cause(15, 1, 100));
        assert!(c
            .on_exit(
                10,
                ExitStatus::Signaled {
                    sig: 9,
                    core_dumped: false
                }
            )
            .is_none());
        assert!(c.on_exit(11, ExitStatus::Exited(0)).is_none());
    }

    #[test]
    fn old_signals_age_out_and_lists_are_bounded() {
        let mut c = Correlator::default();
        for i in 0..20 {
            c.on_signal(10, cause(1, i, 100));
        }
        assert_eq!(c.received[&10].len(), PER_PROCESS);
        c.expire(REMEMBER_NS + 20);
        assert_eq!(c.pending(), 0);
    }
}
