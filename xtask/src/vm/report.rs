//! Reads the scenario binary's output (libtest's) from a guest and judges
//! the run: every expected scenario must say `ok`, and the guest must reach
//! the end with the binary's exit status 0.

use std::time::Duration;

use super::{initramfs::EXIT_MARKER, qemu::End};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Ok,
    Failed,
    Ignored,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED",
            Verdict::Ignored => "IGNORED",
        }
    }
}

/// What the guest said, line by line.
#[derive(Default)]
pub struct Tally {
    pub results: Vec<(String, Verdict)>,
    pub exit: Option<i32>,
}

impl Tally {
    /// Takes one output line; returns the scenario result it holds, if any.
    pub fn take(&mut self, line: &str) -> Option<(String, Verdict)> {
        if let Some(status) = line.trim().strip_prefix(EXIT_MARKER) {
            self.exit = status.trim().parse().ok();
            return None;
        }
        let result = result_line(line)?;
        self.results.push(result.clone());
        Some(result)
    }
}

/// libtest's `test signals::kill ... ok` (or `FAILED`, `ignored`,
/// `ignored, reason`).
fn result_line(line: &str) -> Option<(String, Verdict)> {
    let (name, verdict) = line.strip_prefix("test ")?.split_once(" ... ")?;
    let verdict = match verdict.trim() {
        "ok" => Verdict::Ok,
        "FAILED" => Verdict::Failed,
        v if v.starts_with("ignored") => Verdict::Ignored,
        _ => return None,
    };
    Some((name.trim().to_owned(), verdict))
}

pub struct Judgement {
    pub passed: usize,
    pub failed: usize,
    /// Expected scenarios that never reported.
    pub not_run: Vec<String>,
    /// Why the kernel failed besides failed scenarios, one sentence each.
    pub problems: Vec<String>,
}

impl Judgement {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.problems.is_empty()
    }
}

pub fn judge(tally: &Tally, expected: &[String], end: &End, timeout: Duration) -> Judgement {
    let verdict_of = |name: &str| {
        tally
            .results
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    };
    let passed = expected
        .iter()
        .filter(|name| verdict_of(name) == Some(Verdict::Ok))
        .count();
    let not_run: Vec<String> = expected
        .iter()
        .filter(|name| verdict_of(name).is_none())
        .cloned()
        .collect();
    let mut problems = Vec::new();
    match end {
        End::TimedOut => problems.push(format!(
            "the guest was still running after {}s and was killed (--timeout)",
            timeout.as_secs()
        )),
        End::Exited(status) if !status.success() => {
            problems.push(format!("qemu failed ({status})"))
        }
        End::Exited(_) => {}
    }
    match tally.exit {
        Some(0) => {}
        Some(status) => problems.push(format!("the scenario binary exited with status {status}")),
        None if matches!(end, End::Exited(s) if s.success()) => problems.push(
            "the guest stopped before the scenarios ended (a crash, a panic or a failed init: see the console)"
                .to_owned(),
        ),
        None => {}
    }
    if tally.results.iter().any(|(_, v)| *v == Verdict::Ignored) {
        problems.push("a scenario was ignored: in the VM suite every scenario must run".to_owned());
    }
    for (name, _) in &tally.results {
        if !expected.contains(name) {
            problems.push(format!(
                "{name} ran in the guest but is not in the host's list of scenarios"
            ));
        }
    }
    Judgement {
        passed,
        failed: expected.len() - passed,
        not_run,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::ExitStatusExt as _, process::ExitStatus};

    use super::*;

    fn tally(lines: &[&str]) -> Tally {
        let mut tally = Tally::default();
        for line in lines {
            tally.take(line);
        }
        tally
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn libtest_lines_are_read_and_others_skipped() {
        let t = tally(&[
            "running 3 tests",
            "test a::one ... ok",
            "test a::two ... FAILED",
            "test a::three ... ignored, needs a disk",
            "test a::four has been running for over 60 seconds",
            "test result: FAILED. 1 passed; 1 failed; 1 ignored",
            "TRACER-VM-EXIT status=101",
        ]);
        assert_eq!(
            t.results,
            [
                ("a::one".to_owned(), Verdict::Ok),
                ("a::two".to_owned(), Verdict::Failed),
                ("a::three".to_owned(), Verdict::Ignored),
            ]
        );
        assert_eq!(t.exit, Some(101));
    }

    #[test]
    fn all_ok_with_exit_zero_passes() {
        let t = tally(&["test a ... ok", "test b ... ok", "TRACER-VM-EXIT status=0"]);
        let j = judge(
            &t,
            &names(&["a", "b"]),
            &End::Exited(ExitStatus::from_raw(0)),
            LIMIT,
        );
        assert!(j.ok());
        assert_eq!((j.passed, j.failed), (2, 0));
    }

    #[test]
    fn a_guest_that_dies_midway_fails_with_the_rest_not_run() {
        let t = tally(&["test a ... ok"]);
        let j = judge(
            &t,
            &names(&["a", "b"]),
            &End::Exited(ExitStatus::from_raw(0)),
            LIMIT,
        );
        assert!(!j.ok());
        assert_eq!((j.passed, j.failed), (1, 1));
        assert_eq!(j.not_run, ["b"]);
        assert!(j.problems[0].contains("stopped before the scenarios ended"));
    }

    #[test]
    fn a_timeout_or_a_failed_binary_fails_even_if_every_line_says_ok() {
        let t = tally(&["test a ... ok"]);
        let j = judge(&t, &names(&["a"]), &End::TimedOut, LIMIT);
        assert!(!j.ok());
        assert!(j.problems[0].contains("killed"));
        let t = tally(&["test a ... ok", "TRACER-VM-EXIT status=1"]);
        let j = judge(
            &t,
            &names(&["a"]),
            &End::Exited(ExitStatus::from_raw(0)),
            LIMIT,
        );
        assert!(!j.ok());
    }

    #[test]
    fn an_ignored_scenario_fails_the_kernel() {
        let t = tally(&["test a ... ignored", "TRACER-VM-EXIT status=0"]);
        let j = judge(
            &t,
            &names(&["a"]),
            &End::Exited(ExitStatus::from_raw(0)),
            LIMIT,
        );
        assert!(!j.ok());
        assert_eq!(j.failed, 1);
    }
}
