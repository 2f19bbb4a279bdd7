//! `agentmesh`: the command-line tool; everything is in the library (`agentmesh_cli::main`),
//! which the Python and Node packages run too.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = agentmesh_cli::main(std::env::args_os().skip(1));
    ExitCode::from(u8::try_from(code).unwrap_or(70))
}
