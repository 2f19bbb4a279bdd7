//! The `agentmesh` command as a library: [`main`] takes the arguments and returns the exit
//! code, so the Rust binary, the Python package (`python -m agentmesh`, the `agentmesh`
//! console script) and the Node package (its `agentmesh` bin) run one implementation with the
//! same output and exit codes.
//!
//! It runs scripted workflows and works with logs (verify, anchor, inspect, show, runs,
//! canonical, replay, fork, resume), tries and checks policies (redact, policy check), plus
//! the project's demo. The arguments are in `cli.rs`,
//! the exit codes in `exit.rs`, the commands in `commands.rs`, `resume.rs`, `show.rs`,
//! `runs.rs` and `follow.rs`, the text in `timeline.rs` and `report.rs`.

mod cli;
mod commands;
mod demo;
mod exit;
mod export;
mod follow;
mod hosted;
mod policy;
mod progress;
mod report;
mod resume;
mod runs;
mod show;
mod status;
mod timeline;

use std::ffi::OsString;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use clap::Parser;

pub use exit::EXIT_CODES;

/// Run the `agentmesh` command with `args` (the arguments after the program name) and return
/// its exit code (see [`EXIT_CODES`]). Writes to this process's stdout and stderr and flushes
/// stdout before returning; never exits the process, so a host language can call it and exit
/// with the code. `--help` and `--version` return 0, a usage error 2 (clap's message on
/// stderr); a panic is reported as `[INTERNAL]` with exit code 70.
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // The program name is always `agentmesh`, whatever launched us (`python -m agentmesh`,
    // `node bin/agentmesh.js`), so usage lines are the same everywhere.
    let argv = std::iter::once(OsString::from("agentmesh")).chain(args.into_iter().map(Into::into));
    let code = match cli::Cli::try_parse_from(argv) {
        Err(e) => {
            // Help and version go to stdout with code 0, usage errors to stderr with code 2.
            let _ = e.print();
            e.exit_code()
        }
        Ok(parsed) => match catch_unwind(AssertUnwindSafe(|| cli::dispatch(parsed))) {
            Ok(Ok(code)) => i32::from(code),
            Ok(Err(err)) => {
                exit::report_error(&err);
                i32::from(exit::of_error(&err))
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                eprintln!("[INTERNAL] {what}");
                70
            }
        },
    };
    let _ = std::io::stdout().flush();
    code
}
