//! `cli_main`: the `agentmesh` command, linked in from the CLI crate, for `python -m
//! agentmesh` and the `agentmesh` console script — one implementation, the same output and
//! exit codes as the Rust binary.

use pyo3::prelude::*;

/// Run the `agentmesh` command with `argv` (the arguments after the program name) and return
/// its exit code. It writes to the process's stdout and stderr itself (flushed before it
/// returns) and releases the GIL while it runs; it never exits the interpreter.
#[pyfunction]
pub fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| agentmesh_cli::main(argv))
}
