//! The `tracer` command.

use std::process::ExitCode;

use clap::Parser as _;
use tracer::{cli, doctor, top, watch};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = tracer::logging::init(&cli.log) {
        eprintln!("tracer: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        cli::Command::Watch(args) => watch::run(*args),
        cli::Command::Doctor(args) => doctor::run(args),
        cli::Command::Top(args) => top::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("tracer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
