//! The response cache: a repeated request is answered from it and recorded as cached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentmesh_core::{
    read_log, CallExecutor, CallOutcome, CallTicket, EventData, Mesh, RunOptions, Usage, Workflow,
};
use agentmesh_providers::ResponseCache;
use serde_json::{json, Value};

struct Counting(AtomicUsize);

impl CallExecutor for Counting {
    fn execute(
        &self,
        req: &Value,
        _: &CallTicket,
        _: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        if req["fail"] == json!(true) {
            return CallOutcome::err(agentmesh_core::CallError::new("Down", "503"));
        }
        CallOutcome::ok(json!({"text": format!("answer {n}")})).with_usage(Usage::tokens(4, 2))
    }
}

fn run(
    cache: &Arc<ResponseCache>,
    llm: &Arc<Counting>,
    dir: &std::path::Path,
    seed: u64,
) -> Vec<EventData> {
    let mut mesh = Mesh::new().with_log_dir(dir);
    mesh.provider("p", cache.wrap("p", llm.clone()));
    mesh.agent("a", |_, ctx| {
        let r = ctx.llm("p", json!({"q": "same"})).unwrap();
        let _ = ctx.llm("p", json!({"q": "same", "fail": true}));
        Ok(json!(r.text()).into())
    });
    let wf = Workflow::from_value(
        json!({"name": "c", "nodes": [{"id": "n", "type": "agent", "agent": "a"}]}),
    )
    .unwrap();
    let r = mesh
        .run(
            &wf,
            RunOptions {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
    let (_, events) = read_log(r.log_path.unwrap()).unwrap();
    events.into_iter().map(|e| e.data).collect()
}

#[test]
fn a_repeated_request_is_answered_from_the_cache_and_recorded_as_cached() {
    let dir = tempfile::tempdir().unwrap();
    let llm = Arc::new(Counting(AtomicUsize::new(0)));
    let cache = ResponseCache::in_dir(dir.path().join("cache")).unwrap();
    let first = run(&cache, &llm, dir.path(), 1);
    assert_eq!(llm.0.load(Ordering::SeqCst), 2);
    let second = run(&cache, &llm, dir.path(), 2);
    // The success came from the cache; the error was not cached and was called again.
    assert_eq!(llm.0.load(Ordering::SeqCst), 3);
    let done = |events: &[EventData]| -> Vec<(bool, Option<Usage>, Value)> {
        events
            .iter()
            .filter_map(|d| match d {
                EventData::CallCompleted(c) => {
                    Some((c.cached, c.usage.clone(), (*c.response).clone()))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        done(&first),
        [(
            false,
            Some(Usage::tokens(4, 2)),
            json!({"text": "answer 0"})
        )]
    );
    assert_eq!(done(&second), [(true, None, json!({"text": "answer 0"}))]);
    // Another process (a new cache over the same directory) hits too.
    let other = ResponseCache::in_dir(dir.path().join("cache")).unwrap();
    assert!(other.is_empty());
    let third = run(&other, &llm, dir.path(), 3);
    assert!(done(&third)[0].0, "a hit from the directory");
}
