//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use agentmesh_core::{Mesh, Script, Workflow};
use serde_json::Value;

pub fn wf(v: Value) -> Workflow {
    Workflow::from_value(v).expect("valid workflow")
}

/// A mesh in `dir` whose agents and tools follow `script`.
pub fn scripted_mesh(
    dir: &Path,
    workflow: &Workflow,
    script: Value,
) -> (Mesh, std::sync::Arc<Script>) {
    let script =
        std::sync::Arc::new(serde_json::from_value::<Script>(script).expect("valid script"));
    let mut mesh = Mesh::new().with_log_dir(dir);
    script.register(&mut mesh, workflow);
    (mesh, script)
}

pub fn canonical(path: &Path) -> String {
    let mut out = Vec::new();
    agentmesh_core::canonical_log(path, &mut out).expect("canonical log");
    String::from_utf8(out).expect("utf8")
}

// Helpers of the orchestrator, replay, determinism and driver tests.

/// Start an in-memory run with run id `r`.
pub fn start_mem(workflow: &Workflow, input: Value, seed: u64) -> agentmesh_core::Run {
    agentmesh_core::Run::start(
        workflow,
        agentmesh_core::RunOptions {
            input,
            seed,
            run_id: Some("r".into()),
            ..Default::default()
        },
    )
    .expect("run starts")
}

/// Start a run logging to `<dir>/<run_id>.jsonl` (fsync `never`: tests need no durability).
pub fn start_in(
    dir: &Path,
    workflow: &Workflow,
    input: Value,
    seed: u64,
    run_id: &str,
) -> agentmesh_core::Run {
    agentmesh_core::Run::start(
        workflow,
        agentmesh_core::RunOptions {
            input,
            seed,
            run_id: Some(run_id.into()),
            log_dir: Some(dir.to_owned()),
            fsync: agentmesh_core::FsyncMode::Never,
            ..Default::default()
        },
    )
    .expect("run starts")
}

/// Parse canonical log text into its events (header dropped): `events[i]` has seq `i + 1`.
pub fn parse_canonical(text: &str) -> Vec<Value> {
    text.lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).expect("canonical line is JSON"))
        .collect()
}

/// The canonical events of a run (memory or file log).
pub fn run_events(run: &agentmesh_core::Run) -> Vec<Value> {
    parse_canonical(&String::from_utf8(run.canonical().expect("canonical")).expect("utf8"))
}

/// The canonical events of a log file.
pub fn log_events(path: &Path) -> Vec<Value> {
    parse_canonical(&canonical(path))
}

/// `"<seq> <type> [<node>]"` per event, for exact sequence assertions.
pub fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut s = format!("{} {}", e["seq"], e["type"].as_str().expect("type"));
            if let Some(n) = e["node"].as_str() {
                s.push(' ');
                s.push_str(n);
            }
            s
        })
        .collect()
}

/// Poll and complete every activation with `f`, in poll order, until a poll returns nothing.
/// Returns the activations handed out.
pub fn drive_with(
    run: &mut agentmesh_core::Run,
    mut f: impl FnMut(&agentmesh_core::Activation) -> agentmesh_core::Completion,
) -> Vec<agentmesh_core::Activation> {
    let mut seen = Vec::new();
    loop {
        let acts = run.poll().unwrap();
        if acts.is_empty() {
            return seen;
        }
        for a in acts {
            run.complete(a.id, f(&a)).expect("completion accepted");
            seen.push(a);
        }
    }
}

/// An activation's `deps` as plain values.
pub fn deps_of(a: &agentmesh_core::Activation) -> std::collections::BTreeMap<String, Value> {
    a.deps
        .iter()
        .map(|(k, v)| (k.to_string(), (**v).clone()))
        .collect()
}

/// The output tests give by default: which node, visit and attempt produced it.
pub fn echo(a: &agentmesh_core::Activation) -> agentmesh_core::Completion {
    agentmesh_core::Completion::ok(
        serde_json::json!({"node": &*a.node, "visit": a.visit, "attempt": a.attempt}),
    )
}

// Helpers of the durability and crash tests.

/// A tiny seeded PRNG (splitmix64): reproducible completion orders, sleeps and kill points.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A small workflow with a fan-out whose completions can land out of seq order, and a retried
/// tool: plan → {a1, a3 (fails once, retried)} → join.
pub fn fanout_workflow() -> Workflow {
    wf(serde_json::json!({"name": "fanout", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "a1", "type": "agent", "agent": "worker", "after": ["plan"]},
        {"id": "a3", "type": "tool", "tool": "search", "after": ["plan"], "retry": {"maxAttempts": 2}},
        {"id": "join", "type": "agent", "agent": "writer", "after": ["a1", "a3"]}
    ]}))
}

/// A larger workflow: two fan-outs, a retried tool, a loop (check fails on its first visit),
/// a skipped branch target, 10 steps and 15 completions.
pub fn looping_workflow() -> Workflow {
    wf(serde_json::json!({"name": "looping", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "a1", "type": "agent", "agent": "worker", "after": ["plan"]},
        {"id": "a2", "type": "agent", "agent": "worker", "after": ["plan"]},
        {"id": "a3", "type": "tool", "tool": "search", "after": ["plan"], "retry": {"maxAttempts": 2}},
        {"id": "a4", "type": "agent", "agent": "worker", "after": ["plan"]},
        {"id": "join", "type": "agent", "agent": "writer", "after": ["a1", "a2", "a3", "a4"], "maxVisits": 2},
        {"id": "check", "type": "agent", "agent": "critic", "after": ["join"]},
        {"id": "route", "type": "branch", "after": ["check"], "cases": [
            {"when": {"path": "/outputs/check/ok", "eq": false}, "goto": "join"},
            {"when": {"path": "/outputs/check/escalate", "eq": true}, "goto": "escalate"}
        ], "default": "fin"},
        {"id": "escalate", "type": "agent", "agent": "boss"},
        {"id": "fin", "type": "agent", "agent": "writer"},
        {"id": "x1", "type": "agent", "agent": "worker", "after": ["fin"]},
        {"id": "x2", "type": "agent", "agent": "worker", "after": ["fin"]},
        {"id": "x3", "type": "agent", "agent": "worker", "after": ["fin"]},
        {"id": "done", "type": "agent", "agent": "writer", "after": ["x1", "x2", "x3"]}
    ]}))
}

/// The result of an activation of [`fanout_workflow`] or [`looping_workflow`]: depends only on
/// node, visit and attempt, so any completion order and any resume give the same log.
pub fn durable_completion(a: &agentmesh_core::Activation) -> agentmesh_core::Completion {
    use agentmesh_core::{Completion, Failure};
    match &*a.node {
        "a3" if a.attempt == 1 => Completion::err(Failure::error("Flaky", "503 from upstream")),
        "check" => Completion::ok(
            serde_json::json!({"ok": a.visit >= 2, "escalate": false, "visit": a.visit}),
        ),
        _ => echo(a),
    }
}

/// Complete every activation of `run` with [`durable_completion`], picking the next one at
/// random (from `rng`) among all that are outstanding, until none is left. `after` is called
/// after each accepted completion.
pub fn drive_shuffled(
    run: &mut agentmesh_core::Run,
    rng: &mut SplitMix64,
    mut after: impl FnMut(&agentmesh_core::Activation),
) {
    let mut pending = run.poll().unwrap();
    while !pending.is_empty() {
        let a = pending.swap_remove(rng.below(pending.len() as u64) as usize);
        run.complete(a.id, durable_completion(&a))
            .unwrap_or_else(|e| panic!("completing {} ({}): {e}", a.id, a.node));
        after(&a);
        pending.extend(run.poll().unwrap());
    }
}

/// Byte ranges of the lines of `bytes`, each including its `\n`; an unterminated tail is not
/// a line.
pub fn line_spans(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            spans.push(start..i + 1);
            start = i + 1;
        }
    }
    spans
}

// Helpers of the integrity tests: logs rewritten the way an attacker (or a careless tool)
// would, with the chain recomputed so that only the structure checks (and anchors) object.

/// The records of a format-2 log file: each line's JSON text without its `,"crc":"…"` field
/// (closing brace kept). `[0]` is the header.
pub fn unseal_v2(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).expect("utf8 log");
    text.lines()
        .map(|l| {
            let at = l.rfind(",\"crc\":\"").expect("a format-2 record");
            format!("{}}}", &l[..at])
        })
        .collect()
}

/// A format-2 log file from record texts, with a correct chain (the running CRC32C of the
/// record texts).
pub fn reseal_v2(records: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut crc = 0u32;
    for r in records {
        crc = crc32c::crc32c_append(crc, r.as_bytes());
        out.extend_from_slice(&r.as_bytes()[..r.len() - 1]);
        out.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    }
    out
}
