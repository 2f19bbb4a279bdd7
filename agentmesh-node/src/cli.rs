//! `cliMain`: the `agentmesh` command, linked in from the CLI crate, for the package's
//! `agentmesh` bin (`bin/agentmesh.js`) — one implementation, the same output and exit codes
//! as the Rust binary.

use napi_derive::napi;

/// Run the `agentmesh` command with `argv` (the arguments after the program name) and return
/// its exit code. It writes to the process's stdout and stderr itself (flushed before it
/// returns) and blocks the JavaScript thread until the command is done: it is meant to be the
/// whole process (`bin/agentmesh.js`). It never exits the process; a panic is reported as
/// `[INTERNAL]` with exit code 70.
#[napi]
pub fn cli_main(argv: Vec<String>) -> i32 {
    agentmesh_cli::main(argv)
}
