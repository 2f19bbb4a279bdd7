//! No labelled PII or secret of the test corpus (`tests/data/pii-corpus/`) reaches anything a
//! run under the built-in policy writes or returns: the log file, the canonical log, the state
//! and history a reader exports, the usage report, the run's error, the errors agents get.
//! Every value of the corpus goes through every subject: input, LLM request and response, tool
//! arguments and result, output, a person's decision and a failure message.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agentmesh_core::policy::Policy;
use agentmesh_core::{
    canonical_log, history, read_log, state_at, usage_report, CallExecutor, CallOutcome,
    CallTicket, Failure, FsyncMode, Mesh, RunOptions, RunStatus,
};
use serde_json::{json, Value};

use crate::common::wf;

/// The labelled corpus: (text, [labelled substrings]).
fn corpus() -> Vec<(String, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pii-corpus");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            let spans: Vec<String> = v["spans"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["text"].as_str().map(str::to_owned))
                .collect();
            if !spans.is_empty() {
                out.push((v["text"].as_str().unwrap().to_owned(), spans));
            }
        }
    }
    assert!(
        out.len() > 100,
        "the corpus has {} labelled records",
        out.len()
    );
    out
}

/// Echoes what it is sent, so responses and tool results carry the corpus too.
struct Echo(Mutex<Vec<Value>>);

impl CallExecutor for Echo {
    fn execute(
        &self,
        request: &Value,
        _: &CallTicket,
        _: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        self.0.lock().unwrap().push(request.clone());
        CallOutcome::ok(json!({"text": request["echo"], "finishReason": "stop"}))
    }
}

#[test]
fn no_labelled_value_of_the_corpus_reaches_the_log_an_export_or_an_error() {
    let records = corpus();
    let texts: Vec<String> = records.iter().map(|(t, _)| t.clone()).collect();
    let secrets: Vec<&str> = records
        .iter()
        .flat_map(|(_, s)| s.iter().map(String::as_str))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "leaks", "nodes": [
        {"id": "talk", "type": "agent", "agent": "talker"},
        {"id": "fail", "type": "agent", "agent": "failer", "after": ["talk"]},
        {"id": "ok", "type": "human", "after": ["talk"]},
        {"id": "end", "type": "agent", "agent": "ender", "after": ["ok"]}]}));
    let echo = Arc::new(Echo(Mutex::new(Vec::new())));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut mesh = Mesh::new()
        .with_log_dir(dir.path())
        .with_fsync(FsyncMode::Never)
        .with_policy(Policy::builtin());
    mesh.provider("llm", echo.clone());
    mesh.call_tool("lookup", echo.clone());
    let t = texts.clone();
    let e = errors.clone();
    mesh.agent("talker", move |act, ctx| {
        for (i, text) in t.iter().enumerate() {
            let r = ctx.llm(
                "llm",
                json!({"messages": [{"role": "user", "content": text}], "echo": text, "i": i}),
            );
            match r {
                Ok(reply) => e.lock().unwrap().push(reply.response.to_string()),
                Err(err) => e.lock().unwrap().push(err.to_string()),
            }
            // The built-in policy allows no tool: denied, never run.
            if let Err(err) = ctx.tool("lookup", json!({"q": text})) {
                e.lock().unwrap().push(err.to_string());
            }
        }
        Ok(json!({"seen": act.input.as_ref().clone(), "again": t}).into())
    });
    let t = texts.clone();
    mesh.agent("failer", move |_, _| {
        Err(
            Failure::error("Leak", format!("failed on {}", t.join(" | ")))
                .permanent()
                .into(),
        )
    });
    mesh.agent("ender", |act, _| Ok(act.deps["ok"].as_ref().clone().into()));
    let first = mesh
        .run(
            &w,
            RunOptions {
                input: json!({"records": texts}),
                run_id: Some("leaks".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let path = dir.path().join("leaks.jsonl");
    let mut exported = Vec::new();
    if first.status == RunStatus::Waiting {
        let approvals = BTreeMap::from([("ok".to_owned(), json!({"note": texts}))]);
        let done = mesh.resume(&path, approvals).unwrap();
        exported.push(format!("{:?}", done.error));
        exported.push(format!("{:?}", done.output));
    }
    exported.push(format!("{:?}", first.error));
    exported.push(std::fs::read_to_string(&path).unwrap());
    let mut canonical = Vec::new();
    canonical_log(&path, &mut canonical).unwrap();
    exported.push(String::from_utf8(canonical).unwrap());
    exported.push(format!("{:?}", read_log(&path).unwrap()));
    exported.push(format!("{:?}", usage_report(&path).unwrap()));
    exported.push(format!("{:?}", state_at(&path, 1).unwrap()));
    exported.push(format!("{:?}", history(&path).unwrap()));
    exported.extend(errors.lock().unwrap().iter().cloned());
    // What the echo provider was sent left the process: it must be clean too.
    exported.extend(echo.0.lock().unwrap().iter().map(Value::to_string));
    let all = exported.join("\n");
    // Found as it is, or as JSON and Debug output escape it (a PEM block's newlines).
    let escaped = |s: &str| {
        let j = serde_json::to_string(s).unwrap();
        j[1..j.len() - 1].to_owned()
    };
    let leaked: Vec<&&str> = secrets
        .iter()
        .filter(|s| all.contains(**s) || all.contains(&escaped(s)))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} of {} labelled values leaked, first: {:?}",
        leaked.len(),
        secrets.len(),
        &leaked[..leaked.len().min(5)]
    );
}
