//! The cross-language LLM workflow, Rust's side: agents that ask the LLM behind a base URL a
//! few short questions through `ctx.llm`, run under a fixed run id. Node's and Python's sides
//! are in agentmesh-node/test/calls.test.js ("byte-identical canonical logs from Rust, Python
//! and Node"), which runs all three against one llama-server and compares the canonical logs.
//!
//! ```text
//! cargo run -p agentmesh-providers --example llm_workflow -- WORKFLOW.json BASE_URL LOG_DIR RUN_ID
//! ```
//!
//! Each agent asks `calls` questions (from the node's name: 2 for `research*`, else 1):
//! `Say one word about <node> number <i>.`, 8 tokens at most, temperature 0, seed 1; its
//! output is the list of answers.

use std::path::Path;
use std::process::ExitCode;

use agentmesh_core::{RunOptions, RunStatus, Workflow};

#[path = "../tests/llm_support/asker.rs"]
mod asker;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [workflow, base_url, log_dir, run_id] = args.as_slice() else {
        eprintln!("usage: llm_workflow WORKFLOW.json BASE_URL LOG_DIR RUN_ID");
        return ExitCode::from(2);
    };
    match run(workflow, base_url, log_dir, run_id) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm_workflow: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(workflow: &str, base_url: &str, log_dir: &str, run_id: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(workflow).map_err(|e| format!("{workflow}: {e}"))?;
    let wf = Workflow::from_json(&text).map_err(|e| e.to_string())?;
    let mesh = asker::asker_mesh(base_url, Path::new(log_dir), 2);
    let options = RunOptions {
        run_id: Some(run_id.to_owned()),
        ..Default::default()
    };
    let r = mesh.run(&wf, options).map_err(|e| e.to_string())?;
    match r.status {
        RunStatus::Completed => Ok(()),
        other => Err(format!("the run ended {}: {:?}", other.as_str(), r.error)),
    }
}
