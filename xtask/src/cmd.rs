//! Running external commands with errors that name the command.

use std::process::{Command, Stdio};

use anyhow::{ensure, Context as _, Result};

/// Runs `cmd` with inherited stdio; fails if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", show(cmd)))?;
    ensure!(status.success(), "`{}` failed ({status})", show(cmd));
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or `None` if it could not start
/// or exited non-zero. For probes, where failure is an answer, not an error.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `NAME` is an executable file in one of the directories of PATH.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file()))
    })
}

/// The command line as a person would type it, variables set for it first.
pub fn show(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        Some(format!(
            "{}={} ",
            key.to_string_lossy(),
            value?.to_string_lossy()
        ))
    });
    envs.collect::<String>() + &line(cmd)
}

/// The program and its arguments, space-separated.
pub fn line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| word.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
