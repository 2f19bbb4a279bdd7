//! Usage: the shapes hosts report (OpenAI, Anthropic, whole responses), usage on failures,
//! and the report per run, node, agent, tool and model — a fork never counts what its
//! parent spent.

use agentmesh_core::{usage_report, Failure, Mesh, RunOptions, Usage};
use serde_json::json;

use crate::common::*;

fn openai(prompt: u64, completion: u64, model: &str) -> Usage {
    Usage::from_value(&json!({"id": "chatcmpl-x", "created": 1, "model": model,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "prompt_tokens_details": {"cached_tokens": 2}}}))
    .unwrap()
}

#[test]
fn the_report_sums_by_node_agent_tool_and_model_and_forks_count_only_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "u", "nodes": [
        {"id": "plan", "type": "agent", "agent": "llm"},
        {"id": "search", "type": "tool", "tool": "web", "after": ["plan"],
         "retry": {"maxAttempts": 2}},
        {"id": "write", "type": "agent", "agent": "llm", "after": ["search"]}]}));
    let mut m = Mesh::new().with_log_dir(dir.path());
    m.agent("llm", |act, _| {
        let u = openai(100, 10, if &*act.node == "plan" { "small" } else { "big" });
        Ok(agentmesh_core::AgentOutput {
            output: json!(act.node.to_string()),
            usage: Some(u),
        })
    });
    m.tool("web", |act, _| {
        if act.attempt == 1 {
            // A failed attempt still spent its tokens.
            Err(
                agentmesh_core::AgentError::from(Failure::error("HTTPError", "502"))
                    .with_usage(Usage::tokens(7, 0)),
            )
        } else {
            Ok(json!("hits").into())
        }
    });
    let r = m
        .run(
            &w,
            RunOptions {
                run_id: Some("spent".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let u = r.usage().unwrap();
    assert_eq!(u, usage_report(r.log_path.as_ref().unwrap()).unwrap());
    assert_eq!((u.total.input_tokens, u.total.output_tokens), (207, 20));
    assert_eq!(u.total.cached_input_tokens, 4);
    assert_eq!((u.total.attempts, u.total.reported), (4, 3));
    assert_eq!(u.by_node["search"].input_tokens, 7);
    assert_eq!(u.by_node["search"].attempts, 2);
    assert_eq!(u.by_agent["llm"].input_tokens, 200);
    assert_eq!(u.by_tool["web"].input_tokens, 7);
    assert_eq!(u.by_model["small"].input_tokens, 100);
    assert_eq!(u.by_model["big"].input_tokens, 100);
    assert_eq!(u.inherited, None);
    // The model is recorded with the usage.
    let text = std::fs::read_to_string(r.log_path.as_ref().unwrap()).unwrap();
    assert!(
        text.contains(
            r#""usage":{"inputTokens":100,"outputTokens":10,"cachedInputTokens":2,"model":"small"}"#
        ),
        "{text}"
    );

    // A fork after `search` re-runs only `write`: it spent 100 + 10, whatever it copied.
    let log = r.log_path.unwrap();
    let (_, events) = agentmesh_core::read_log(&log).unwrap();
    let at = events
        .iter()
        .find(|e| e.type_name() == "toolCompleted")
        .unwrap()
        .seq;
    let fork = m.fork(&log, at, Default::default(), None).unwrap();
    let f = fork.usage().unwrap();
    assert_eq!(
        (
            f.total.input_tokens,
            f.total.output_tokens,
            f.total.attempts
        ),
        (100, 10, 1)
    );
    let inherited = f.inherited.unwrap();
    assert_eq!((inherited.input_tokens, inherited.attempts), (107, 3));
    assert_eq!(f.by_node.keys().collect::<Vec<_>>(), ["write"]);
}

#[test]
fn memory_runs_report_usage_too() {
    let w = wf(json!({"name": "m", "nodes": [{"id": "a", "type": "agent", "agent": "a"}]}));
    let mut m = Mesh::new();
    m.agent("a", |_, _| {
        Ok(agentmesh_core::AgentOutput {
            output: json!(1),
            usage: Some(Usage::tokens(3, 4)),
        })
    });
    let u = m.run(&w, RunOptions::default()).unwrap().usage().unwrap();
    assert_eq!(u.total.total_tokens(), 7);
    assert_eq!(u.by_agent["a"].reported, 1);
}
