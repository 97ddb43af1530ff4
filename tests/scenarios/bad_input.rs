//! Bad input and the machine's state: one clear line each, a non-zero exit,
//! nothing attached. And stopping: SIGTERM flushes and exits 0.

use std::{fs, os::unix::fs::PermissionsExt as _};

use crate::harness::{require_root, run_tracer, Tracer, Workdir, TRACER};

/// A refusal as every bad input gets one: a failure, and exactly one
/// `tracer: error:` line that says `needle`.
pub fn assert_one_line_error(
    args: &[&str],
    status: std::process::ExitStatus,
    stderr: &str,
    needle: &str,
) {
    assert!(!status.success(), "tracer {args:?} should fail");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "tracer {args:?}: one line expected, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("tracer: error: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "tracer {args:?}: expected '{needle}' in: {stderr}"
    );
}

#[test]
fn not_root_is_refused_with_a_hint() {
    require_root();
    // The binary may live under a directory other users cannot enter: run a
    // world-readable copy as nobody.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("tracer");
    fs::copy(TRACER, &copy).unwrap();
    // A child another test forks while the copy is being written holds it
    // open for writing until it execs: the copy is busy for that moment.
    let mut tries = 0;
    let output = loop {
        match std::process::Command::new(&copy)
            .arg("watch")
            .uid(65534)
            .gid(65534)
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => break result.expect("running tracer as nobody"),
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_one_line_error(&["watch (as nobody)"], output.status, &stderr, "needs root");
}

use std::os::unix::process::CommandExt as _;

#[test]
fn missing_btf_is_refused() {
    require_root();
    let args = ["watch", "--btf", "/nonexistent/vmlinux"];
    let (status, stderr) = run_tracer(&args, None);
    assert_one_line_error(
        &args,
        status,
        &stderr,
        "no kernel BTF at /nonexistent/vmlinux",
    );
}

#[test]
fn unknown_pid_is_refused() {
    require_root();
    // Above the kernel's largest pid_max: it cannot exist.
    let args = ["watch", "--pid", "4194305"];
    let (status, stderr) = run_tracer(&args, None);
    assert_one_line_error(&args, status, &stderr, "no process with PID 4194305");
}

#[test]
fn unwritable_output_is_refused() {
    require_root();
    for path in ["/nonexistent-dir/events.jsonl", "/proc/version"] {
        let args = ["watch", "--output", path];
        let (status, stderr) = run_tracer(&args, None);
        assert_one_line_error(
            &args,
            status,
            &stderr,
            &format!("cannot write --output {path}"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let as_dir = dir.path().to_str().unwrap();
    let args = ["watch", "--output", as_dir];
    let (status, stderr) = run_tracer(&args, None);
    assert_one_line_error(&args, status, &stderr, "cannot write --output");
}

#[test]
fn unknown_signal_name_is_refused() {
    require_root();
    let args = ["watch", "--signals", "KILL,NOPE"];
    let (status, stderr) = run_tracer(&args, None);
    assert!(!status.success());
    assert!(stderr.contains("NOPE"), "{stderr}");
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .starts_with("error:"),
        "{stderr}"
    );
}

#[test]
fn bad_pod_name_is_refused() {
    require_root();
    let args = ["watch", "--pod", "just-a-name"];
    let (status, stderr) = run_tracer(&args, None);
    assert!(!status.success());
    assert!(stderr.contains("NAMESPACE/NAME"), "{stderr}");
}

/// SIGTERM: tracer writes its `stop` record, reports, and exits 0; the file
/// it created is private to root.
#[test]
fn sigterm_stops_cleanly_and_output_is_private() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let tracer = Tracer::start(&work, &host, &[]);
    let output = tracer.output.clone();
    let done = tracer.stop_with(nix::sys::signal::Signal::SIGTERM);
    let stop = done.assert_clean_stop("SIGTERM");
    assert_eq!(stop["lost"], 0);
    assert_eq!(stop["schema"], 1);
    assert!(
        done.stderr.contains("stopped on SIGTERM"),
        "{}",
        done.stderr
    );
    let mode = fs::metadata(&output).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// tracefs not mounted: tracer mounts it and says so. Done in a private
/// mount namespace, so other tracers running now keep theirs.
#[test]
fn tracefs_is_mounted_when_missing() {
    require_root();
    let work = Workdir::new();
    let host = work.host_root();
    let unmount =
        "while mountpoint -q /sys/kernel/tracing; do umount /sys/kernel/tracing || exit 1; done";
    let tracer = Tracer::start_in_mount_namespace(&work, &host, unmount, &[]);
    let done = tracer.stop();
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("tracefs was not mounted: mounted it at /sys/kernel/tracing"),
        "{}",
        done.stderr
    );
}
