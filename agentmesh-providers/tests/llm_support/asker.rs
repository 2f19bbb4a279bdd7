//! The agents of the LLM workflows run against the real llama-server: `asker` asks a few
//! short questions through `ctx.llm` and returns the answers. Shared by
//! `tests/calls_e2e.rs` and `examples/llm_workflow.rs` (the Rust side of the cross-language
//! test), so both ask exactly what the Python and Node sides ask.

use std::path::Path;

use agentmesh_core::{Failure, Mesh};
use agentmesh_providers::executor_from_config;
use serde_json::json;

/// A mesh with provider `local` (OpenAI-compatible, at `base_url`, no retries) and agent
/// `asker`: `research_calls` questions on nodes named `research*`, one elsewhere —
/// `Say one word about <node> number <i>.`, 8 tokens at most, temperature 0, seed 1.
pub fn asker_mesh(base_url: &str, log_dir: &Path, research_calls: usize) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(log_dir);
    let provider = executor_from_config(
        "local",
        &json!({"kind": "openai", "baseUrl": base_url, "maxRetries": 0}),
    )
    .expect("a valid provider configuration");
    mesh.provider("local", provider);
    mesh.agent("asker", move |act, ctx| {
        let calls = if act.node.starts_with("research") {
            research_calls
        } else {
            1
        };
        let mut answers = Vec::new();
        for i in 0..calls {
            let request = json!({
                "model": "smollm2",
                "messages": [{"role": "user", "content": format!("Say one word about {} number {i}.", act.node)}],
                "maxTokens": 8, "temperature": 0, "seed": 1,
            });
            let reply = ctx
                .llm("local", request)
                .map_err(|e| Failure::error("LlmError", e.to_string()))?;
            answers.push(reply.text().to_owned());
        }
        Ok(json!(answers).into())
    });
    mesh
}
