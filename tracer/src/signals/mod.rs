//! The signals family: signals with their senders and pods, the exits
//! that follow them, and OOM kills ([`family`]). This module itself holds
//! signal numbers and names, the kernel's codes for how a signal came to be,
//! and the exit status that may follow.
//!
//! Numbering is Linux's generic one, used on x86_64 and arm64 (the machines
//! tracer runs on): signals 1 to 64, the standard ones 1-31, the real-time
//! ones 32-64. Names follow `kill -l`: the C library keeps 32 and 33 for
//! itself, so the first real-time signal an application sees, SIGRTMIN, is 34.

pub mod correlate;
pub mod event;
pub mod family;
pub mod flood;
pub mod json;
pub mod oom;
pub mod text;

use std::borrow::Cow;
use std::str::FromStr;

/// Highest signal number (the kernel's `_NSIG`).
const MAX_SIGNAL: u32 = 64;
/// SIGRTMIN as applications see it (the kernel's own SIGRTMIN is 32).
const RTMIN: u32 = 34;

const SIGTRAP: u32 = 5;
const SIGBUS: u32 = 7;
const SIGFPE: u32 = 8;
const SIGILL: u32 = 4;
const SIGSEGV: u32 = 11;
const SIGCHLD: u32 = 17;
const SIGCONT: u32 = 18;
const SIGURG: u32 = 23;
const SIGWINCH: u32 = 28;
const SIGSYS: u32 = 31;

/// Index `sig - 1`. 32 and 33 have no `kill -l` name: they get the same
/// "SIG<n>" form as any unknown number, kept here so that naming them does
/// not allocate.
static NAMES: [&str; MAX_SIGNAL as usize] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
    "SIG32",
    "SIG33",
    "SIGRTMIN",
    "SIGRTMIN+1",
    "SIGRTMIN+2",
    "SIGRTMIN+3",
    "SIGRTMIN+4",
    "SIGRTMIN+5",
    "SIGRTMIN+6",
    "SIGRTMIN+7",
    "SIGRTMIN+8",
    "SIGRTMIN+9",
    "SIGRTMIN+10",
    "SIGRTMIN+11",
    "SIGRTMIN+12",
    "SIGRTMIN+13",
    "SIGRTMIN+14",
    "SIGRTMIN+15",
    "SIGRTMAX-14",
    "SIGRTMAX-13",
    "SIGRTMAX-12",
    "SIGRTMAX-11",
    "SIGRTMAX-10",
    "SIGRTMAX-9",
    "SIGRTMAX-8",
    "SIGRTMAX-7",
    "SIGRTMAX-6",
    "SIGRTMAX-5",
    "SIGRTMAX-4",
    "SIGRTMAX-3",
    "SIGRTMAX-2",
    "SIGRTMAX-1",
    "SIGRTMAX",
];

/// Other spellings `kill -l` and the C headers accept for the same signals.
const ALIASES: [(&str, u32); 3] = [("IOT", 6), ("POLL", 29), ("CLD", 17)];

/// "SIGKILL", "SIGRTMIN+3", ...; numbers without a name as "SIG<n>".
pub fn signal_name(sig: u32) -> Cow<'static, str> {
    match sig.checked_sub(1).and_then(|i| NAMES.get(i as usize)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("SIG{sig}")),
    }
}

/// Parses one signal: "KILL", "SIGKILL", "kill", "9", "RTMIN+2",
/// "SIGRTMAX-1", the aliases IOT, POLL and CLD, and "SIG<n>" (the form
/// [`signal_name`] gives 32 and 33). Surrounding blanks are ignored.
pub fn parse_signal(s: &str) -> Result<u32, String> {
    let input = s.trim();
    if input.is_empty() {
        return Err(
            "empty signal name: use a name from `kill -l` (KILL, TERM, ...) or a number"
                .to_string(),
        );
    }
    let upper = input.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let parsed = if is_decimal(bare) {
        bare.parse::<u32>().ok()
    } else if let Some(rest) = bare.strip_prefix("RTMIN") {
        real_time(rest, '+').and_then(|n| RTMIN.checked_add(n))
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        real_time(rest, '-').and_then(|n| MAX_SIGNAL.checked_sub(n))
    } else {
        NAMES[..SIGSYS as usize]
            .iter()
            .position(|name| name.get(3..) == Some(bare))
            .map(|i| i as u32 + 1)
            .or_else(|| {
                ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == bare)
                    .map(|&(_, n)| n)
            })
    };
    match parsed {
        // Numbers like 0 or 65 are refused here.
        Some(sig) if (1..=MAX_SIGNAL).contains(&sig) => Ok(sig),
        _ if is_decimal(bare) => Err(format!(
            "signal number {input:?} is out of range: Linux signals are 1 to 64 \
             (or use `--signals all`)"
        )),
        _ => Err(format!(
            "unknown signal {input:?}: use a name from `kill -l` (KILL, TERM, SEGV, RTMIN+2, ...), \
             a number from 1 to 64, or `--signals all`"
        )),
    }
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The offset after "RTMIN"/"RTMAX": nothing (0) or `sign` and digits, at
/// most 30 so that both forms stay within the real-time range 34..=64.
fn real_time(rest: &str, sign: char) -> Option<u32> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    if !is_decimal(digits) {
        return None;
    }
    digits.parse().ok().filter(|&n| n <= MAX_SIGNAL - RTMIN)
}

/// A set of signal numbers 1..=64: bit `sig - 1` is set when `sig` is in it.
/// The BPF program filters on the same bits, so the set costs nothing per
/// event in user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSet(u64);

impl SignalSet {
    /// The signals whose default action terminates the process, dumps its
    /// core or stops it: 1-31 except SIGCHLD, SIGCONT, SIGURG and SIGWINCH
    /// (ignored by default), plus the real-time signals 34..=64 (they
    /// terminate when not handled).
    ///
    /// 32 and 33 are left out on purpose: the C library uses them internally
    /// (thread cancellation and the broadcast that makes setuid() and friends
    /// apply to every thread), so busy multi-threaded programs generate them
    /// all the time, never with a default action, and they would flood the
    /// output. `--signals all` or an explicit list still includes them.
    pub const fn default_fatal() -> Self {
        let standard = (1u64 << SIGSYS) - 1;
        let ignored = bit(SIGCHLD) | bit(SIGCONT) | bit(SIGURG) | bit(SIGWINCH);
        let real_time = !((1u64 << (RTMIN - 1)) - 1);
        SignalSet((standard & !ignored) | real_time)
    }

    /// Every signal, 1..=64.
    pub const fn empty() -> Self {
        Self(0)
    }

    pub const fn all() -> Self {
        SignalSet(u64::MAX)
    }

    /// Whether `sig` is in the set; false for numbers outside 1..=64.
    pub const fn contains(self, sig: u32) -> bool {
        sig >= 1 && sig <= MAX_SIGNAL && self.0 & bit(sig) != 0
    }

    /// The bit mask handed to the BPF program (bit `sig - 1` for `sig`).
    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The signal numbers in the set, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (1..=MAX_SIGNAL).filter(move |&sig| self.contains(sig))
    }

    /// Human summary for the start-up banner: "default (fatal) set: 58
    /// signals", "all 64 signals", "no signals" or "SIGKILL,SIGTERM".
    pub fn describe(self) -> String {
        if self == Self::all() {
            format!("all {MAX_SIGNAL} signals")
        } else if self == Self::default_fatal() {
            format!("default (fatal) set: {} signals", self.len())
        } else if self.is_empty() {
            "no signals".to_string()
        } else {
            let mut out = String::new();
            for sig in self.iter() {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&signal_name(sig));
            }
            out
        }
    }
}

/// The mask bit of `sig`, which must be in 1..=64.
const fn bit(sig: u32) -> u64 {
    1u64 << (sig - 1)
}

/// "all", "default" (both in any case), or a comma-separated list of
/// signals as [`parse_signal`] reads them: "KILL,TERM,SIGSEGV,9".
impl FromStr for SignalSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let list = s.trim();
        if list.eq_ignore_ascii_case("all") {
            return Ok(Self::all());
        }
        if list.eq_ignore_ascii_case("default") {
            return Ok(Self::default_fatal());
        }
        if list.is_empty() {
            return Err(
                "empty signal list: give \"default\", \"all\" or names like KILL,TERM".to_string(),
            );
        }
        let mut bits = 0u64;
        for entry in list.split(',') {
            if entry.trim().is_empty() {
                return Err(format!(
                    "empty entry in signal list {list:?}: separate names with single commas, \
                     like KILL,TERM"
                ));
            }
            bits |= bit(parse_signal(entry)?);
        }
        Ok(SignalSet(bits))
    }
}

/// How a signal was generated, read from its si_code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// kill(2) and everything built on it (SI_USER).
    Kill,
    /// tkill(2) or tgkill(2) (SI_TKILL).
    Tkill,
    /// sigqueue(3), that is rt_sigqueueinfo(2) (SI_QUEUE); also SI_ASYNCNL,
    /// which the C library's asynchronous name lookup sends the same way.
    Sigqueue,
    /// The kernel on its own account (SI_KERNEL: the OOM killer, a forced
    /// SIGSEGV, ...) and seccomp's or syscall user dispatch's SIGSYS.
    Kernel,
    /// A POSIX timer expired (SI_TIMER).
    Timer,
    /// A POSIX message queue got a message (SI_MESGQ).
    MessageQueue,
    /// Asynchronous IO completed (SI_ASYNCIO).
    AsyncIo,
    /// IO became possible on a file descriptor (SI_SIGIO, POLL_*).
    SigIo,
    /// execve() in another thread killed this one (SI_DETHREAD).
    Dethread,
    /// The task's own instruction faulted or trapped (ILL_*, FPE_*, SEGV_*,
    /// BUS_*, TRAP_*).
    Fault,
    /// A child stopped, continued or ended (CLD_*).
    Child,
    /// A code tracer does not know.
    Other,
}

impl Origin {
    /// Short machine string for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Kill => "kill",
            Origin::Tkill => "tkill",
            Origin::Sigqueue => "sigqueue",
            Origin::Kernel => "kernel",
            Origin::Timer => "timer",
            Origin::MessageQueue => "mq",
            Origin::AsyncIo => "aio",
            Origin::SigIo => "sigio",
            Origin::Dethread => "dethread",
            Origin::Fault => "fault",
            Origin::Child => "child",
            Origin::Other => "other",
        }
    }

    /// The end of the console line "... via kill(2)".
    pub fn via(self) -> &'static str {
        match self {
            Origin::Kill => "kill(2)",
            Origin::Tkill => "tkill(2)/tgkill(2)",
            Origin::Sigqueue => "sigqueue(3)",
            Origin::Kernel => "the kernel",
            Origin::Timer => "a POSIX timer",
            Origin::MessageQueue => "a message queue",
            Origin::AsyncIo => "asynchronous IO",
            Origin::SigIo => "SIGIO",
            Origin::Dethread => "exec de-threading",
            Origin::Fault => "a fault",
            Origin::Child => "child state change",
            Origin::Other => "an unknown source",
        }
    }

    /// True when a user-space process asked for the signal with kill,
    /// tkill/tgkill or sigqueue: the task running when the signal is
    /// generated is then the sender. For the other origins the current task
    /// is only whoever the kernel was running at the time.
    pub fn is_user_sent(self) -> bool {
        matches!(self, Origin::Kill | Origin::Tkill | Origin::Sigqueue)
    }
}

/// A decoded si_code: where the signal came from and the kernel's name for
/// the code ("SI_USER", "SEGV_MAPERR", ...; "unknown" when tracer does not
/// know it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiCode {
    pub origin: Origin,
    pub name: &'static str,
}

// Positive codes, per signal (include/uapi/asm-generic/siginfo.h); index
// `code - 1`. The names with two leading underscores exist only on ia64 but
// keep the numbering of the ones after them.
const ILL_CODES: &[&str] = &[
    "ILL_ILLOPC",
    "ILL_ILLOPN",
    "ILL_ILLADR",
    "ILL_ILLTRP",
    "ILL_PRVOPC",
    "ILL_PRVREG",
    "ILL_COPROC",
    "ILL_BADSTK",
    "ILL_BADIADDR",
    "__ILL_BREAK",
    "__ILL_BNDMOD",
];
const FPE_CODES: &[&str] = &[
    "FPE_INTDIV",
    "FPE_INTOVF",
    "FPE_FLTDIV",
    "FPE_FLTOVF",
    "FPE_FLTUND",
    "FPE_FLTRES",
    "FPE_FLTINV",
    "FPE_FLTSUB",
    "__FPE_DECOVF",
    "__FPE_DECDIV",
    "__FPE_DECERR",
    "__FPE_INVASC",
    "__FPE_INVDEC",
    "FPE_FLTUNK",
    "FPE_CONDTRAP",
];
const SEGV_CODES: &[&str] = &[
    "SEGV_MAPERR",
    "SEGV_ACCERR",
    "SEGV_BNDERR",
    "SEGV_PKUERR",
    "SEGV_ACCADI",
    "SEGV_ADIDERR",
    "SEGV_ADIPERR",
    "SEGV_MTEAERR",
    "SEGV_MTESERR",
    "SEGV_CPERR",
];
const BUS_CODES: &[&str] = &[
    "BUS_ADRALN",
    "BUS_ADRERR",
    "BUS_OBJERR",
    "BUS_MCEERR_AR",
    "BUS_MCEERR_AO",
];
const TRAP_CODES: &[&str] = &[
    "TRAP_BRKPT",
    "TRAP_TRACE",
    "TRAP_BRANCH",
    "TRAP_HWBKPT",
    "TRAP_UNK",
    "TRAP_PERF",
];
const CLD_CODES: &[&str] = &[
    "CLD_EXITED",
    "CLD_KILLED",
    "CLD_DUMPED",
    "CLD_TRAPPED",
    "CLD_STOPPED",
    "CLD_CONTINUED",
];
const SYS_CODES: &[&str] = &["SYS_SECCOMP", "SYS_USER_DISPATCH"];
const POLL_CODES: &[&str] = &[
    "POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP",
];

/// Decodes the si_code the kernel recorded for signal `sig` (the
/// signal_generate tracepoint stores SI_USER for SEND_SIG_NOINFO and
/// SI_KERNEL for SEND_SIG_PRIV, so every signal has one).
///
/// Codes of zero and below, and SI_KERNEL, mean the same for every signal;
/// other positive codes are per signal. Like the kernel itself, tracer reads
/// positive codes of signals without codes of their own as POLL_*: that is
/// what fcntl(F_SETSIG) queues with any signal.
pub fn decode_si_code(sig: u32, code: i32) -> SiCode {
    let (origin, name) = match code {
        0 => (Origin::Kill, "SI_USER"),
        0x80 => (Origin::Kernel, "SI_KERNEL"),
        -1 => (Origin::Sigqueue, "SI_QUEUE"),
        -2 => (Origin::Timer, "SI_TIMER"),
        -3 => (Origin::MessageQueue, "SI_MESGQ"),
        -4 => (Origin::AsyncIo, "SI_ASYNCIO"),
        -5 => (Origin::SigIo, "SI_SIGIO"),
        -6 => (Origin::Tkill, "SI_TKILL"),
        -7 => (Origin::Dethread, "SI_DETHREAD"),
        -60 => (Origin::Sigqueue, "SI_ASYNCNL"),
        1..=0x7f => {
            let (origin, names) = match sig {
                SIGILL => (Origin::Fault, ILL_CODES),
                SIGFPE => (Origin::Fault, FPE_CODES),
                SIGSEGV => (Origin::Fault, SEGV_CODES),
                SIGBUS => (Origin::Fault, BUS_CODES),
                SIGTRAP => (Origin::Fault, TRAP_CODES),
                SIGCHLD => (Origin::Child, CLD_CODES),
                // seccomp and syscall user dispatch: the kernel refusing a
                // system call, not a hardware fault.
                SIGSYS => (Origin::Kernel, SYS_CODES),
                _ => (Origin::SigIo, POLL_CODES),
            };
            // `code` is 1..=0x7f here, so the index cannot wrap.
            match names.get(code as usize - 1) {
                Some(name) => (origin, *name),
                // A code newer than this table: the origin of a fault or
                // child code is still known, a stray positive code is not.
                None if origin == Origin::SigIo => (Origin::Other, "unknown"),
                None => (origin, "unknown"),
            }
        }
        _ => (Origin::Other, "unknown"),
    };
    SiCode { origin, name }
}

/// The `result` argument of the signal_generate tracepoint
/// (TRACE_SIGNAL_* in include/trace/events/signal.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the target (TRACE_SIGNAL_DELIVERED).
    Delivered,
    /// Dropped because the target ignores it (TRACE_SIGNAL_IGNORED).
    Ignored,
    /// A standard signal already pending: merged with it
    /// (TRACE_SIGNAL_ALREADY_PENDING).
    AlreadyPending,
    /// A real-time signal dropped because the queue was full
    /// (TRACE_SIGNAL_OVERFLOW_FAIL).
    OverflowFail,
    /// Delivered without its siginfo, the queue being full
    /// (TRACE_SIGNAL_LOSE_INFO).
    LoseInfo,
    /// A value newer kernels may add.
    Unknown(u32),
}

impl Delivery {
    pub fn from_raw(r: u32) -> Self {
        match r {
            0 => Delivery::Delivered,
            1 => Delivery::Ignored,
            2 => Delivery::AlreadyPending,
            3 => Delivery::OverflowFail,
            4 => Delivery::LoseInfo,
            other => Delivery::Unknown(other),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Ignored => "ignored",
            Delivery::AlreadyPending => "already_pending",
            Delivery::OverflowFail => "overflow_fail",
            Delivery::LoseInfo => "lose_info",
            Delivery::Unknown(_) => "unknown",
        }
    }
}

/// How a process ended, decoded from task_struct.exit_code, which holds the
/// wait status: bits 0-6 the terminating signal, bit 7 "core dumped", bits
/// 8-15 the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(u8),
    Signaled { sig: u32, core_dumped: bool },
}

impl ExitStatus {
    /// Bits above 15 are ignored. A process that exits is never in the
    /// stopped state, so the stopped pattern 0x7f is not special-cased: it
    /// reads as signal 127, which no valid input produces.
    pub fn from_wait_status(raw: u32) -> Self {
        let sig = raw & 0x7f;
        if sig == 0 {
            ExitStatus::Exited(((raw >> 8) & 0xff) as u8)
        } else {
            ExitStatus::Signaled {
                sig,
                core_dumped: raw & 0x80 != 0,
            }
        }
    }

    /// The number a shell or Kubernetes shows: the exit status, or 128 plus
    /// the signal (137 for SIGKILL, 139 for SIGSEGV, 143 for SIGTERM).
    pub fn exit_code(self) -> u8 {
        match self {
            ExitStatus::Exited(status) => status,
            // min(127) keeps a hand-built out-of-range signal from wrapping.
            ExitStatus::Signaled { sig, .. } => (128 + sig.min(127)) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for sig in 1..=MAX_SIGNAL {
            let name = signal_name(sig);
            assert!(matches!(name, Cow::Borrowed(_)), "{sig} allocates");
            assert_eq!(parse_signal(&name), Ok(sig), "{name}");
            let bare = name.strip_prefix("SIG").unwrap();
            assert_eq!(parse_signal(bare), Ok(sig), "{bare}");
            assert_eq!(parse_signal(&bare.to_ascii_lowercase()), Ok(sig), "{bare}");
            assert_eq!(parse_signal(&sig.to_string()), Ok(sig));
        }
    }

    #[test]
    fn names_of_note() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(37), "SIGRTMIN+3");
        assert_eq!(signal_name(49), "SIGRTMIN+15");
        assert_eq!(signal_name(50), "SIGRTMAX-14");
        assert_eq!(signal_name(63), "SIGRTMAX-1");
        assert_eq!(signal_name(64), "SIGRTMAX");
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(65), "SIG65");
        assert_eq!(signal_name(u32::MAX), format!("SIG{}", u32::MAX));
    }

    #[test]
    fn accepted_spellings() {
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert_eq!(parse_signal("kill"), Ok(9));
        assert_eq!(parse_signal("sigKill"), Ok(9));
        assert_eq!(parse_signal(" 9 "), Ok(9));
        assert_eq!(parse_signal("RTMIN+2"), Ok(36));
        assert_eq!(parse_signal("SIGRTMAX-1"), Ok(63));
        assert_eq!(parse_signal("rtmin"), Ok(34));
        assert_eq!(parse_signal("RTMIN+30"), Ok(64));
        assert_eq!(parse_signal("RTMAX-30"), Ok(34));
        assert_eq!(parse_signal("IOT"), Ok(6));
        assert_eq!(parse_signal("SIGIOT"), Ok(6));
        assert_eq!(parse_signal("poll"), Ok(29));
        assert_eq!(parse_signal("CLD"), Ok(17));
        assert_eq!(parse_signal("SIG33"), Ok(33));
    }

    #[test]
    fn rejected_spellings() {
        for bad in [
            "",
            " ",
            "NOPE",
            "SIG",
            "0",
            "65",
            "-9",
            "+9",
            "9x",
            "RTMIN+31",
            "RTMAX-31",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+",
            "RTMIN+x",
            "RTMIN2",
            "99999999999999999999",
            "SIGSIGKILL",
            "KILL,TERM",
            "ＫＩＬＬ",
        ] {
            let err = parse_signal(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            if !bad.trim().is_empty() {
                assert!(err.contains(&format!("{:?}", bad.trim())), "{err}");
            }
        }
        let err = parse_signal("NOPE").unwrap_err();
        assert!(
            err.contains("kill -l") && err.contains("--signals all"),
            "{err}"
        );
        assert!(parse_signal("65").unwrap_err().contains("out of range"));
    }

    #[test]
    fn set_parsing() {
        assert_eq!("all".parse(), Ok(SignalSet::all()));
        assert_eq!(" ALL ".parse(), Ok(SignalSet::all()));
        assert_eq!("default".parse(), Ok(SignalSet::default_fatal()));
        assert_eq!("Default".parse(), Ok(SignalSet::default_fatal()));
        let kt: SignalSet = "KILL,TERM".parse().unwrap();
        assert_eq!(kt.bits(), (1 << 8) | (1 << 14));
        assert_eq!(" kill , 15 ".parse(), Ok(kt));
        assert_eq!("KILL,TERM,SIGSEGV,9".parse::<SignalSet>().unwrap().len(), 3);
        for bad in [
            "",
            "  ",
            "KILL,,TERM",
            "KILL,",
            ",KILL",
            "NOPE",
            "KILL,NOPE",
        ] {
            let err = bad.parse::<SignalSet>().unwrap_err();
            assert!(!err.is_empty() && !err.contains('\n'), "{bad:?}: {err}");
        }
        assert!("KILL,NOPE"
            .parse::<SignalSet>()
            .unwrap_err()
            .contains("\"NOPE\""));
    }

    #[test]
    fn default_set() {
        let set = SignalSet::default_fatal();
        for sig in [
            1, 2, 3, 6, 9, 11, 15, 16, 19, 20, 29, 30, 31, 34, 36, 50, 64,
        ] {
            assert!(set.contains(sig), "{sig}");
        }
        for sig in [0, 17, 18, 23, 28, 32, 33, 65, u32::MAX] {
            assert!(!set.contains(sig), "{sig}");
        }
        assert_eq!(set.len(), 27 + 31);
        assert!(!set.is_empty());
        assert_eq!(set.iter().count(), set.len() as usize);
        assert_eq!(set.describe(), "default (fatal) set: 58 signals");
    }

    #[test]
    fn set_basics() {
        let all = SignalSet::all();
        assert_eq!(all.len(), 64);
        assert!(all.contains(1) && all.contains(64) && !all.contains(0) && !all.contains(65));
        assert_eq!(all.describe(), "all 64 signals");
        let kt: SignalSet = "TERM,KILL".parse().unwrap();
        assert_eq!(kt.describe(), "SIGKILL,SIGTERM");
        assert_eq!(kt.iter().collect::<Vec<_>>(), vec![9, 15]);
        let empty = SignalSet(0);
        assert!(empty.is_empty());
        assert_eq!(empty.describe(), "no signals");
    }

    fn sc(origin: Origin, name: &'static str) -> SiCode {
        SiCode { origin, name }
    }

    #[test]
    fn generic_codes() {
        for sig in [9, 11, 17, 34] {
            assert_eq!(decode_si_code(sig, 0), sc(Origin::Kill, "SI_USER"));
            assert_eq!(decode_si_code(sig, 0x80), sc(Origin::Kernel, "SI_KERNEL"));
            assert_eq!(decode_si_code(sig, -1), sc(Origin::Sigqueue, "SI_QUEUE"));
            assert_eq!(decode_si_code(sig, -2), sc(Origin::Timer, "SI_TIMER"));
            assert_eq!(
                decode_si_code(sig, -3),
                sc(Origin::MessageQueue, "SI_MESGQ")
            );
            assert_eq!(decode_si_code(sig, -4), sc(Origin::AsyncIo, "SI_ASYNCIO"));
            assert_eq!(decode_si_code(sig, -5), sc(Origin::SigIo, "SI_SIGIO"));
            assert_eq!(decode_si_code(sig, -6), sc(Origin::Tkill, "SI_TKILL"));
            assert_eq!(decode_si_code(sig, -7), sc(Origin::Dethread, "SI_DETHREAD"));
            assert_eq!(decode_si_code(sig, -60), sc(Origin::Sigqueue, "SI_ASYNCNL"));
        }
        for code in [-8, -59, -61, 0x81, 0x405, i32::MIN, i32::MAX] {
            assert_eq!(decode_si_code(9, code), sc(Origin::Other, "unknown"));
        }
    }

    #[test]
    fn per_signal_codes() {
        assert_eq!(decode_si_code(11, 1), sc(Origin::Fault, "SEGV_MAPERR"));
        assert_eq!(decode_si_code(11, 2), sc(Origin::Fault, "SEGV_ACCERR"));
        assert_eq!(decode_si_code(11, 10), sc(Origin::Fault, "SEGV_CPERR"));
        assert_eq!(decode_si_code(11, 11), sc(Origin::Fault, "unknown"));
        assert_eq!(decode_si_code(7, 2), sc(Origin::Fault, "BUS_ADRERR"));
        assert_eq!(decode_si_code(7, 4), sc(Origin::Fault, "BUS_MCEERR_AR"));
        assert_eq!(decode_si_code(4, 1), sc(Origin::Fault, "ILL_ILLOPC"));
        assert_eq!(decode_si_code(8, 1), sc(Origin::Fault, "FPE_INTDIV"));
        assert_eq!(decode_si_code(8, 14), sc(Origin::Fault, "FPE_FLTUNK"));
        assert_eq!(decode_si_code(5, 1), sc(Origin::Fault, "TRAP_BRKPT"));
        assert_eq!(decode_si_code(5, 6), sc(Origin::Fault, "TRAP_PERF"));
        assert_eq!(decode_si_code(17, 1), sc(Origin::Child, "CLD_EXITED"));
        assert_eq!(decode_si_code(17, 2), sc(Origin::Child, "CLD_KILLED"));
        assert_eq!(decode_si_code(17, 6), sc(Origin::Child, "CLD_CONTINUED"));
        assert_eq!(decode_si_code(31, 1), sc(Origin::Kernel, "SYS_SECCOMP"));
        assert_eq!(
            decode_si_code(31, 2),
            sc(Origin::Kernel, "SYS_USER_DISPATCH")
        );
        assert_eq!(decode_si_code(29, 1), sc(Origin::SigIo, "POLL_IN"));
        assert_eq!(decode_si_code(40, 6), sc(Origin::SigIo, "POLL_HUP"));
        assert_eq!(decode_si_code(40, 7), sc(Origin::Other, "unknown"));
        assert_eq!(decode_si_code(0, 1), sc(Origin::SigIo, "POLL_IN"));
        assert_eq!(decode_si_code(u32::MAX, 0x7f), sc(Origin::Other, "unknown"));
    }

    #[test]
    fn origin_strings() {
        let all = [
            Origin::Kill,
            Origin::Tkill,
            Origin::Sigqueue,
            Origin::Kernel,
            Origin::Timer,
            Origin::MessageQueue,
            Origin::AsyncIo,
            Origin::SigIo,
            Origin::Dethread,
            Origin::Fault,
            Origin::Child,
            Origin::Other,
        ];
        let user: Vec<_> = all.iter().filter(|o| o.is_user_sent()).collect();
        assert_eq!(user, [&Origin::Kill, &Origin::Tkill, &Origin::Sigqueue]);
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
                assert_ne!(a.via(), b.via());
            }
        }
        assert_eq!(Origin::MessageQueue.as_str(), "mq");
        assert_eq!(Origin::Tkill.via(), "tkill(2)/tgkill(2)");
    }

    #[test]
    fn delivery() {
        let cases = [
            (0, Delivery::Delivered, "delivered"),
            (1, Delivery::Ignored, "ignored"),
            (2, Delivery::AlreadyPending, "already_pending"),
            (3, Delivery::OverflowFail, "overflow_fail"),
            (4, Delivery::LoseInfo, "lose_info"),
            (5, Delivery::Unknown(5), "unknown"),
            (u32::MAX, Delivery::Unknown(u32::MAX), "unknown"),
        ];
        for (raw, d, s) in cases {
            assert_eq!(Delivery::from_raw(raw), d);
            assert_eq!(d.as_str(), s);
        }
    }

    #[test]
    fn exit_statuses() {
        let kill = ExitStatus::from_wait_status(0x0009);
        assert_eq!(
            kill,
            ExitStatus::Signaled {
                sig: 9,
                core_dumped: false
            }
        );
        assert_eq!(kill.exit_code(), 137);
        let segv = ExitStatus::from_wait_status(0x008b);
        assert_eq!(
            segv,
            ExitStatus::Signaled {
                sig: 11,
                core_dumped: true
            }
        );
        assert_eq!(segv.exit_code(), 139);
        assert_eq!(ExitStatus::from_wait_status(0x0f00), ExitStatus::Exited(15));
        assert_eq!(ExitStatus::from_wait_status(0x0f00).exit_code(), 15);
        assert_eq!(ExitStatus::from_wait_status(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_wait_status(0x000f).exit_code(), 143);
        assert_eq!(ExitStatus::from_wait_status(0xff00).exit_code(), 255);
        assert_eq!(
            ExitStatus::from_wait_status(0xffff_0100),
            ExitStatus::Exited(1)
        );
        assert_eq!(ExitStatus::from_wait_status(0x7f).exit_code(), 255);
        let odd = ExitStatus::Signaled {
            sig: 300,
            core_dumped: false,
        };
        assert_eq!(odd.exit_code(), 255);
    }
}
