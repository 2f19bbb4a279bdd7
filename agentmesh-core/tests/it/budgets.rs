//! Budgets (docs/budgets.md): leases decided at scheduling, reservation before every call,
//! settlement after it, refusals recorded before anything is sent, warnings at step
//! boundaries, and the run failing on a refusal — the same bytes on every run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentmesh_core::{
    read_log, verify_log, Amounts, CallAsk, CallExecutor, CallOutcome, CallRequest, CallTicket,
    Completion, Dimension, ErrorDetail, ErrorKind, EventData, FsyncMode, Limits, Mesh, PriceTable,
    Run, RunOptions, RunStatus, Scope, TicketState, Usage,
};
use serde_json::{json, Value};

use crate::common::wf;

/// $1 per million prompt tokens and $2 per million completion tokens: 1 and 2 µUSD a token.
fn prices() -> PriceTable {
    PriceTable::from_json(
        r#"{"version": 1, "source": "test", "models": [{"provider": "test", "model": "m",
            "match": {"equals": "m"}, "prices": {"input": 1000000, "output": 2000000}}]}"#,
    )
    .unwrap()
}

/// An LLM whose prompt is `input` tokens (its estimate is exact) and whose answer is
/// `output` tokens or the `maxTokens` it is sent, whichever is smaller.
struct Model {
    output: u64,
    calls: AtomicUsize,
    sent_max: Mutex<Vec<Option<u64>>>,
}

impl Model {
    fn new(output: u64) -> Arc<Model> {
        Arc::new(Model {
            output,
            calls: AtomicUsize::new(0),
            sent_max: Mutex::new(Vec::new()),
        })
    }
}

impl CallExecutor for Model {
    fn ask(&self, request: &Value) -> Option<CallAsk> {
        Some(CallAsk {
            provider: "test".into(),
            model: "m".into(),
            input_tokens: request["input"].as_u64().unwrap_or(0),
            max_tokens: request["maxTokens"].as_u64(),
            min_tokens: request["minTokens"].as_u64(),
        })
    }

    fn execute(
        &self,
        request: &Value,
        ticket: &CallTicket,
        _: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let max = ticket.max_tokens.or(request["maxTokens"].as_u64());
        self.sent_max.lock().unwrap().push(ticket.max_tokens);
        let out = max.map_or(self.output, |m| m.min(self.output));
        CallOutcome::ok(json!({"text": "x", "finishReason": "stop"})).with_usage(Usage {
            model: Some("m".into()),
            ..Usage::tokens(request["input"].as_u64().unwrap_or(0), out)
        })
    }
}

/// An agent that makes `calls` LLM calls of `input` prompt tokens and `maxTokens`, and either
/// lets a refusal fail it or (`catch`) answers `{"refused": <details>}`.
fn mesh(model: &Arc<Model>, calls: usize, input: u64, max_tokens: u64, catch: bool) -> Mesh {
    let mut mesh = Mesh::new().with_prices(prices());
    mesh.provider("llm", model.clone());
    mesh.agent("worker", move |_, ctx| {
        let mut texts = Vec::new();
        for _ in 0..calls {
            match ctx.llm("llm", json!({"input": input, "maxTokens": max_tokens})) {
                Ok(r) => texts.push(r.text().to_owned()),
                Err(e) if catch && e.kind() == ErrorKind::BudgetExceeded => {
                    let Some(ErrorDetail::Budget(r)) = e.detail() else {
                        panic!("a budget error has its refusal")
                    };
                    return Ok(json!({"refused": r}).into());
                }
                Err(e) => return Err(agentmesh_core::Failure::error("E", e.to_string()).into()),
            }
        }
        Ok(json!(texts).into())
    });
    mesh
}

fn parallel(n: usize, budget: Value) -> agentmesh_core::Workflow {
    let nodes: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("a{i:03}"), "type": "agent", "agent": "worker"}))
        .collect();
    wf(json!({"name": "parallel", "budget": budget, "nodes": nodes}))
}

fn events_of(r: &agentmesh_core::RunResult) -> Vec<agentmesh_core::Event> {
    read_log(r.log_path.as_ref().unwrap()).unwrap().1
}

#[test]
fn a_hundred_agents_and_one_call_left_give_the_same_winner_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut first: Option<Vec<u8>> = None;
    for i in 0..4 {
        let model = Model::new(5);
        let r = mesh(&model, 1, 10, 5, true)
            .with_log_dir(dir.path().join(i.to_string()))
            .run(&parallel(100, json!({"calls": 1})), RunOptions::default())
            .unwrap();
        assert_eq!(r.status, RunStatus::Completed);
        assert_eq!(model.calls.load(Ordering::SeqCst), 1, "one call is sent");
        let out = r.output.as_ref().unwrap();
        assert_eq!(out["a000"], json!(["x"]), "the first scheduled wins");
        for k in 1..100 {
            let refused = &out[format!("a{k:03}")]["refused"];
            assert_eq!(refused["scope"], "run");
            assert_eq!(refused["dimension"], "calls");
            assert_eq!(
                (refused["limit"].as_u64(), refused["left"].as_u64()),
                (Some(1), Some(0))
            );
            assert_eq!(refused["requested"], 1);
        }
        let events = events_of(&r);
        let denied = events
            .iter()
            .filter(|e| matches!(e.data, EventData::CallDenied(_)))
            .count();
        assert_eq!(denied, 99);
        // The leases: the first activation holds the one call, the others none.
        let leases: Vec<Option<u64>> = events
            .iter()
            .filter_map(|e| match &e.data {
                EventData::Scheduled(_, s) => Some(s.lease.and_then(|l| l.get(Dimension::Calls))),
                _ => None,
            })
            .collect();
        assert_eq!(leases[0], Some(1));
        assert!(leases[1..].iter().all(|l| *l == Some(0)));
        // The ledger sums exactly: one call charged, its usage priced (10 × 1 + 5 × 2 µUSD).
        let charged: Amounts = events
            .iter()
            .filter_map(|e| match &e.data {
                EventData::CallCompleted(c) => c.charge,
                _ => None,
            })
            .fold(Amounts::ZERO, |a, c| a.plus(&c));
        assert_eq!(charged, Amounts::of(10, 5, 20, 1));
        let usage = r.usage().unwrap();
        assert_eq!(
            (usage.total.calls, usage.total.denied, usage.total.micro_usd),
            (1, 99, Some(20))
        );
        assert_eq!(usage.by_node["a000"].micro_usd, Some(20));
        assert_eq!(usage.by_node["a001"].micro_usd, Some(0));
        assert_eq!(usage.lines.len(), 100);
        assert_eq!(usage.lines[0].model.as_deref(), Some("m"));
        let bytes = r.canonical().unwrap();
        match &first {
            None => first = Some(bytes),
            Some(f) => assert_eq!(&bytes, f, "run {i} differs"),
        }
    }
}

#[test]
fn a_low_budget_stops_the_run_before_the_call_that_would_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(50);
    // Each call: 100 prompt tokens + up to 50 completion tokens = 100 + 100 µUSD worst case.
    let w = wf(
        json!({"name": "low", "budget": {"microUsd": 350}, "nodes": [
        {"id": "a", "type": "agent", "agent": "worker"}]}),
    );
    let r = mesh(&model, 3, 100, 50, false)
        .with_log_dir(dir.path())
        .run(&w, RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        1,
        "the second call is never sent"
    );
    let err = r.error.clone().unwrap();
    assert_eq!(err.code, "BUDGET_EXCEEDED");
    let refusal = err.budget.clone().unwrap();
    assert_eq!(
        (
            refusal.scope,
            refusal.dimension,
            refusal.limit,
            refusal.spent,
            refusal.requested
        ),
        (Scope::Run, Dimension::MicroUsd, 350, 200, 200)
    );
    assert_eq!(refusal.left, 150);
    let events = events_of(&r);
    let kinds: Vec<&str> = events.iter().map(|e| e.type_name()).collect();
    let at = kinds
        .iter()
        .position(|k| *k == "callDenied")
        .expect("recorded");
    assert_eq!(&kinds[at - 2..at], &["callStarted", "callCompleted"]);
    assert_eq!(kinds[at + 1], "agentFailed");
    match &events[at + 1].data {
        EventData::Failed(_, f) => {
            assert_eq!(f.error.error_type, "BudgetExceededError");
            assert!(!f.error.retryable);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*kinds.last().unwrap(), "runFailed");
    verify_log(r.log_path.as_ref().unwrap()).unwrap();
}

#[test]
fn a_run_within_budget_reports_what_it_spent_and_warns_at_its_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(10);
    // Two steps of one call each: 30 + 20 = 50 µUSD a call, 100 of a 110 budget.
    let w = wf(
        json!({"name": "warned", "budget": {"microUsd": 110}, "nodes": [
        {"id": "a", "type": "agent", "agent": "worker"},
        {"id": "b", "type": "agent", "agent": "worker", "after": ["a"]}]}),
    );
    let r = mesh(&model, 1, 30, 10, false)
        .with_log_dir(dir.path())
        .run(&w, RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let events = events_of(&r);
    let warnings: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::BudgetWarning(w) => Some((w.threshold, w.spent)),
            _ => None,
        })
        .collect();
    // 50 of 110 warns of nothing; 100 of 110 passes 80 % and 90 %.
    assert_eq!(warnings, [(80, 100), (90, 100)]);
    let before_end = &events[events.len() - 2];
    assert_eq!(before_end.type_name(), "budgetWarning");
    // Re-execute replay answers every call from the log under the recorded budget.
    let report = mesh(&model, 1, 30, 10, false)
        .reexecute(r.log_path.as_ref().unwrap())
        .unwrap();
    assert_eq!(report.calls, 2);
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        2,
        "nothing is sent again"
    );
}

#[test]
fn a_call_is_clamped_to_what_is_left_when_it_allows_it() {
    let model = Model::new(1000);
    let mut m = Mesh::new().with_prices(prices());
    m.provider("llm", model.clone());
    m.agent("worker", |_, ctx| {
        let r = ctx.llm(
            "llm",
            json!({"input": 100, "maxTokens": 1000, "minTokens": 10}),
        )?;
        Ok(json!(r.text()).into())
    });
    // 100 µUSD for the prompt leaves 400 for 200 completion tokens.
    let w = wf(json!({"name": "clamp", "budget": {"microUsd": 500},
        "nodes": [{"id": "a", "type": "agent", "agent": "worker"}]}));
    let r = m.run(&w, RunOptions::default()).unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(*model.sent_max.lock().unwrap(), [Some(200)]);
    let text = String::from_utf8(r.canonical().unwrap()).unwrap();
    assert!(text.contains(r#""reserve":{"inputTokens":100,"outputTokens":200,"microUsd":500,"calls":1},"maxTokens":200"#), "{text}");
    assert!(
        text.contains(
            r#""charge":{"inputTokens":100,"outputTokens":200,"microUsd":500,"calls":1}"#
        ),
        "{text}"
    );
}

#[test]
fn node_and_agent_budgets_bind_and_name_themselves() {
    let model = Model::new(1);
    let w = wf(
        json!({"name": "scopes", "agentBudgets": {"worker": {"calls": 3}}, "nodes": [
        {"id": "a", "type": "agent", "agent": "worker", "budget": {"calls": 1}},
        {"id": "b", "type": "agent", "agent": "worker"}]}),
    );
    let r = mesh(&model, 3, 1, 1, true)
        .run(&w, RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let out = r.output.unwrap();
    // a's node budget allows one call; b gets what is left of the agent's three: two.
    assert_eq!(out["a"]["refused"]["scope"], "node");
    assert_eq!(out["a"]["refused"]["node"], "a");
    assert_eq!(out["b"]["refused"]["scope"], "agent");
    assert_eq!(out["b"]["refused"]["agent"], "worker");
    assert_eq!(model.calls.load(Ordering::SeqCst), 3);
}

#[test]
fn zero_means_nothing_may_be_spent_and_unpriced_models_are_refused() {
    let model = Model::new(1);
    let w = wf(json!({"name": "zero", "budget": {"microUsd": 0},
        "nodes": [{"id": "a", "type": "agent", "agent": "worker"}]}));
    let r = mesh(&model, 1, 1, 1, false)
        .run(&w, RunOptions::default())
        .unwrap();
    assert_eq!(r.error.unwrap().code, "BUDGET_EXCEEDED");
    assert_eq!(model.calls.load(Ordering::SeqCst), 0);

    // A model the table has no price for is never counted as free.
    let mut m = Mesh::new();
    m.provider("llm", model.clone());
    m.agent("worker", |_, ctx| {
        let e = ctx
            .llm("llm", json!({"input": 1, "maxTokens": 1}))
            .unwrap_err();
        Ok(json!({"code": e.code(), "message": e.message()}).into())
    });
    let w = wf(json!({"name": "unpriced", "budget": {"calls": 5},
        "nodes": [{"id": "a", "type": "agent", "agent": "worker"}]}));
    let r = m.run(&w, RunOptions::default()).unwrap();
    let out = &r.output.unwrap()["a"];
    assert_eq!(out["code"], "INVALID_ARGUMENT");
    assert!(out["message"]
        .as_str()
        .unwrap()
        .contains("no price for model 'm' of provider 'test'"));
}

#[test]
fn a_crash_between_reservation_and_settlement_resumes_with_the_reservation_held() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(
        json!({"name": "crash", "budget": {"calls": 2, "outputTokens": 100},
        "nodes": [{"id": "a", "type": "agent", "agent": "worker"}]}),
    );
    let options = || RunOptions {
        log_dir: Some(dir.path().to_owned()),
        fsync: FsyncMode::Always,
        prices: Some(prices()),
        ..RunOptions::default()
    };
    let ask = |max: u64| CallRequest {
        ask: Some(CallAsk {
            provider: "test".into(),
            model: "m".into(),
            input_tokens: 5,
            max_tokens: Some(max),
            min_tokens: Some(1),
        }),
        ..CallRequest::llm("llm", json!({"n": max}))
    };
    let mut run = Run::start(&w, options()).unwrap();
    let act = run.poll().unwrap().remove(0);
    let t = run.call_start(act.id, ask(80)).unwrap();
    assert_eq!(t.max_tokens, None, "80 of 100 fits");
    let path = run.log_path().unwrap().to_owned();
    drop(run); // the process dies with the call in flight

    let mut run = Run::resume_with(
        &path,
        agentmesh_core::ResumeOptions {
            fsync: FsyncMode::Always,
            prices: Some(prices()),
            ..Default::default()
        },
    )
    .unwrap();
    let act = run.poll().unwrap().remove(0);
    // The in-flight call goes out again under its number; its 80 tokens stay reserved, so a
    // second call asking for 80 is clamped to the 20 left.
    let again = run.call_start(act.id, ask(80)).unwrap();
    assert!(again.is_live() && again.call == 1);
    let second = run.call_start(act.id, ask(80)).unwrap();
    assert_eq!(second.max_tokens, Some(20));
    run.call_complete(
        act.id,
        1,
        CallOutcome::ok(json!("one")).with_usage(Usage::tokens(5, 30)),
    )
    .unwrap();
    run.call_complete(
        act.id,
        2,
        CallOutcome::ok(json!("two")).with_usage(Usage::tokens(5, 20)),
    )
    .unwrap();
    // A third call finds the calls budget spent.
    let e = run.call_start(act.id, ask(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BudgetExceeded);
    run.complete(act.id, Completion::ok(json!("done"))).unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
    drop(run);
    // Resuming with other prices than the run was started with is refused.
    let e = Run::resume_with(&path, Default::default()).unwrap_err();
    assert!(e.message().contains("price table"), "{e}");
}

#[test]
fn bad_limits_name_their_field_and_no_budget_keeps_the_log_as_it_was() {
    for (v, field) in [
        (json!({"budget": {"calls": -1}}), "budget.calls"),
        (json!({"budget": {"microUsd": 1.5}}), "budget.microUsd"),
        (
            json!({"agentBudgets": {"w": {"tokens": 1}}}),
            "agentBudgets.w.tokens",
        ),
        (json!({"budgetWarnings": [90, 80]}), "budgetWarnings[1]"),
    ] {
        let mut doc = json!({"name": "bad", "nodes": [{"id": "a", "type": "agent", "agent": "w"}]});
        doc.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        let e = agentmesh_core::Workflow::from_value(doc).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidWorkflow);
        assert!(e.message().contains(field), "{field}: {e}");
    }
    let e = agentmesh_core::Workflow::from_value(json!({"name": "bad", "nodes": [
        {"id": "a", "type": "agent", "agent": "w", "budget": {"calls": "lots"}}]}))
    .unwrap_err();
    assert!(
        e.message().starts_with("node 'a', field 'budget.calls'"),
        "{e}"
    );

    // Without a budget nothing of them is written.
    let model = Model::new(1);
    let mut m = Mesh::new();
    m.provider("llm", model);
    m.agent("worker", |_, ctx| {
        Ok(json!(ctx.llm("llm", json!({"input": 1}))?.text()).into())
    });
    let w = wf(json!({"name": "free", "nodes": [{"id": "a", "type": "agent", "agent": "worker"}]}));
    let text = String::from_utf8(
        m.run(&w, RunOptions::default())
            .unwrap()
            .canonical()
            .unwrap(),
    )
    .unwrap();
    for field in ["budget", "lease", "reserve", "charge"] {
        assert!(!text.contains(&format!("\"{field}\"")), "{field} in {text}");
    }
    let limits = Limits::UNLIMITED;
    assert!(limits.is_unlimited());
    let _ = TicketState::Live;
}

#[test]
fn replay_rederives_the_leases_and_a_changed_budget_diverges_there() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(5);
    let r = mesh(&model, 1, 10, 5, true)
        .with_log_dir(dir.path())
        .run(&parallel(3, json!({"calls": 2})), RunOptions::default())
        .unwrap();
    let path = r.log_path.clone().unwrap();
    agentmesh_core::replay(&path, None).unwrap();
    let e = agentmesh_core::replay(&path, Some(&parallel(3, json!({"calls": 3})))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Nondeterminism, "{e}");
    match e.detail() {
        Some(ErrorDetail::Nondeterminism { field, .. }) => {
            assert_eq!(field, "data.lease.calls")
        }
        other => panic!("{other:?}"),
    }
}

/// A tool that answers at once.
struct Search;

impl CallExecutor for Search {
    fn execute(&self, _: &Value, _: &CallTicket, _: Option<&mut dyn FnMut(&Value)>) -> CallOutcome {
        CallOutcome::ok(json!({"hits": 1}))
    }
}

#[test]
fn a_priced_tool_reserves_and_is_charged_its_price_per_call() {
    let table = PriceTable::from_json(
        r#"{"version": 1, "models": [], "tools": [{"name": "search", "perCall": 7}]}"#,
    )
    .unwrap();
    assert_eq!(table.tool("search"), Some(7));
    assert_eq!(table.tool("other"), None);
    let e = PriceTable::from_json(
        r#"{"version": 1, "models": [], "tools": [{"name": "s", "perCall": 1}, {"name": "s", "perCall": 2}]}"#,
    )
    .unwrap_err();
    assert!(e.message().contains("tools[1].name"), "{e}");
    let mut m = Mesh::new().with_prices(table);
    m.call_tool("search", Arc::new(Search));
    m.agent("worker", |_, ctx| {
        ctx.tool("search", json!({"q": 1}))?;
        match ctx.tool("search", json!({"q": 2})) {
            Err(e) if e.kind() == ErrorKind::BudgetExceeded => Ok(json!("refused").into()),
            other => panic!("{other:?}"),
        }
    });
    let w = wf(json!({"name": "tools", "budget": {"microUsd": 10},
        "nodes": [{"id": "a", "type": "agent", "agent": "worker"}]}));
    let r = m.run(&w, RunOptions::default()).unwrap();
    assert_eq!(r.output.as_ref().unwrap()["a"], json!("refused"));
    let usage = r.usage().unwrap();
    assert_eq!(
        (usage.total.micro_usd, usage.total.calls, usage.total.denied),
        (Some(7), 1, 1)
    );
    let text = String::from_utf8(r.canonical().unwrap()).unwrap();
    assert!(
        text.contains(r#""reserve":{"microUsd":7,"calls":1}"#),
        "{text}"
    );
    assert!(text.contains(r#""requested":7,"left":3"#), "{text}");
}
