//! The orchestrator through the host protocol (`Run` start/poll/complete/cancel/outcome):
//! supersteps, joins, retries, branches, loops, limits, human waits, cancellation and the
//! rejection of invalid completions. Assertions name exact seqs, fields and codes.

use std::collections::{BTreeMap, BTreeSet};

use agentmesh_core::{
    Activation, ActivationKind, Completion, ErrorKind, Failure, Run, RunOptions, RunStatus,
    Workflow,
};
use serde_json::{json, Value};

use crate::common::*;

fn ok(v: Value) -> Completion {
    Completion::ok(v)
}

fn ids(acts: &[Activation]) -> Vec<u64> {
    acts.iter().map(|a| a.id).collect()
}

fn nodes(acts: &[Activation]) -> Vec<String> {
    acts.iter().map(|a| a.node.to_string()).collect()
}

#[test]
fn chain_runs_one_node_per_step_and_passes_direct_outputs() {
    let w = wf(json!({"name": "chain", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "B", "after": ["a"]},
        {"id": "c", "type": "tool", "tool": "C", "after": ["b"]}
    ]}));
    let input = json!({"topic": "x"});
    let mut run = start_mem(&w, input.clone(), 1);
    let seen = drive_with(&mut run, |a| ok(json!(format!("out-{}", a.node))));
    assert_eq!(ids(&seen), [3, 6, 9]);
    assert_eq!(seen.iter().map(|a| a.step).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        seen.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [
            ActivationKind::Agent,
            ActivationKind::Agent,
            ActivationKind::Tool
        ]
    );
    assert_eq!(
        seen.iter().map(|a| a.name.to_string()).collect::<Vec<_>>(),
        ["A", "B", "C"]
    );
    assert!(seen.iter().all(|a| *a.input == input && &*a.run_id == "r"));
    assert!(deps_of(&seen[0]).is_empty());
    assert_eq!(
        deps_of(&seen[1]),
        BTreeMap::from([("a".into(), json!("out-a"))])
    );
    // Only the direct dependency, not the whole ancestry.
    assert_eq!(
        deps_of(&seen[2]),
        BTreeMap::from([("b".into(), json!("out-b"))])
    );

    let ev = run_events(&run);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled a",
            "4 agentCompleted a",
            "5 stepStarted",
            "6 agentScheduled b",
            "7 agentCompleted b",
            "8 stepStarted",
            "9 toolScheduled c",
            "10 toolCompleted c",
            "11 runCompleted"
        ]
    );
    // Steps chain to the previous step; completions to their scheduling event.
    assert_eq!(ev[4]["parentSeq"], 2);
    assert_eq!(ev[7]["parentSeq"], 5);
    assert_eq!(ev[6]["parentSeq"], 6);
    assert_eq!(ev[7]["data"], json!({"step": 3, "activations": 1}));
    assert_eq!(ev[10]["parentSeq"], 1);
    assert_eq!(ev[10]["data"], json!({"output": {"c": "out-c"}}));
    let out = run.outcome().unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.output, Some(json!({"c": "out-c"})));
    assert_eq!(out.error, None);
    assert!(run.poll().unwrap().is_empty() && run.outstanding().unwrap().is_empty());
}

#[test]
fn fan_out_join_waits_for_all_and_receives_every_dependency() {
    let w = wf(json!({"name": "fan", "nodes": [
        {"id": "root", "type": "agent", "agent": "R"},
        {"id": "x", "type": "agent", "agent": "X", "after": ["root"]},
        {"id": "y", "type": "agent", "agent": "Y", "after": ["root"]},
        {"id": "z", "type": "agent", "agent": "Z", "after": ["root"]},
        {"id": "join", "type": "agent", "agent": "J", "after": ["x", "y", "z"]}
    ]}));
    let input = json!({"n": 1});
    let mut run = start_mem(&w, input.clone(), 1);
    let root = run.poll().unwrap();
    run.complete(root[0].id, ok(json!("r"))).unwrap();
    let step2 = run.poll().unwrap();
    assert_eq!(nodes(&step2), ["x", "y", "z"]);
    assert_eq!(ids(&step2), [6, 7, 8]);
    assert!(step2.iter().all(|a| a.step == 2));
    assert_eq!(
        deps_of(&step2[2]),
        BTreeMap::from([("root".into(), json!("r"))])
    );

    // Out of order: z, then x; the join must not start while y is outstanding.
    run.complete(8, ok(json!("oz"))).unwrap();
    assert!(run.poll().unwrap().is_empty());
    run.complete(6, ok(json!("ox"))).unwrap();
    assert!(run.poll().unwrap().is_empty());
    assert_eq!(run.status().unwrap(), RunStatus::Running);
    assert_eq!(ids(&run.outstanding().unwrap()), [7]);
    run.complete(7, ok(json!("oy"))).unwrap();
    let join = run.poll().unwrap();
    assert_eq!(nodes(&join), ["join"]);
    assert_eq!(join[0].id, 13);
    assert_eq!(join[0].step, 3);
    assert_eq!(*join[0].input, input);
    assert_eq!(
        deps_of(&join[0]),
        BTreeMap::from([
            ("x".into(), json!("ox")),
            ("y".into(), json!("oy")),
            ("z".into(), json!("oz"))
        ])
    );
    run.complete(13, ok(json!("j"))).unwrap();

    // Completions sit at their reserved seqs: committed z, x, y; canonical by seq.
    let physical: Vec<u64> = run.events().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(
        physical,
        [1, 2, 3, 4, 5, 6, 7, 8, 11, 9, 10, 12, 13, 14, 15]
    );
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev)[8..11],
        [
            "9 agentCompleted x",
            "10 agentCompleted y",
            "11 agentCompleted z"
        ]
    );
    assert_eq!(ev[10]["parentSeq"], 8);
    assert_eq!(run.outcome().unwrap().output, Some(json!({"join": "j"})));
}

#[test]
fn join_waits_for_its_slower_dependency_across_steps() {
    let w = wf(json!({"name": "uneven", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "c", "type": "agent", "agent": "A", "after": ["b"]},
        {"id": "d", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "j", "type": "agent", "agent": "A", "after": ["c", "d"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, echo);
    let steps: Vec<(u64, String)> = seen.iter().map(|a| (a.step, a.node.to_string())).collect();
    assert_eq!(
        steps,
        [
            (1, "a".into()),
            (2, "b".into()),
            (2, "d".into()),
            (3, "c".into()),
            (4, "j".into())
        ]
    );
    assert_eq!(
        deps_of(&seen[4]).keys().collect::<Vec<_>>(),
        ["c", "d"],
        "the join sees both dependencies"
    );
}

#[test]
fn nothing_of_the_next_step_is_scheduled_before_the_step_completes() {
    let w = wf(json!({"name": "steps", "nodes": [
        {"id": "p", "type": "agent", "agent": "A", "retry": {"maxAttempts": 2}},
        {"id": "q", "type": "agent", "agent": "A"},
        {"id": "p2", "type": "agent", "agent": "A", "after": ["p"]},
        {"id": "q2", "type": "agent", "agent": "A", "after": ["q"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    assert_eq!(nodes(&run.poll().unwrap()), ["p", "q"]);
    // p fails (a retry is due) and nothing is scheduled while q is outstanding.
    run.complete(3, Completion::err(Failure::error("E", "first")))
        .unwrap();
    assert!(run.poll().unwrap().is_empty());
    assert_eq!(ids(&run.outstanding().unwrap()), [4]);
    assert_eq!(run_events(&run).len(), 5, "only p's failure was added");
    run.complete(4, ok(json!("q"))).unwrap();
    // Step 2: the retry of p and q's successor, in declaration order.
    let step2 = run.poll().unwrap();
    assert_eq!(nodes(&step2), ["p", "q2"]);
    assert_eq!(step2[0].attempt, 2);
    assert!(step2.iter().all(|a| a.step == 2));
    run.complete(step2[1].id, ok(json!("q2"))).unwrap();
    assert!(
        run.poll().unwrap().is_empty(),
        "p2 waits for p's retry to finish"
    );
    run.complete(step2[0].id, ok(json!("p"))).unwrap();
    let step3 = run.poll().unwrap();
    assert_eq!(nodes(&step3), ["p2"]);
    assert_eq!(step3[0].step, 3);
    // Every stepStarted comes after all completions of the previous step.
    let ev = run_events(&run);
    let mut last_completion = 0;
    for e in &ev {
        let ty = e["type"].as_str().unwrap();
        if ty == "stepStarted" {
            assert!(e["seq"].as_u64().unwrap() > last_completion);
        }
        if ty.ends_with("Completed") || ty.ends_with("Failed") {
            last_completion = e["seq"].as_u64().unwrap();
        }
    }
}

#[test]
fn retries_back_off_exponentially_and_link_the_failed_event() {
    let w = wf(json!({"name": "retry", "nodes": [
        {"id": "n", "type": "agent", "agent": "A",
         "retry": {"maxAttempts": 4, "backoffMs": 100, "backoffMultiplier": 1.5}}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, |a| {
        if a.attempt < 4 {
            Completion::err(Failure::error("Flaky", format!("try {}", a.attempt)))
        } else {
            ok(json!("done"))
        }
    });
    // delayMs = backoffMs × multiplier^(n-2) for attempt n ≥ 2.
    let plan: Vec<(u64, u32, u64)> = seen.iter().map(|a| (a.id, a.attempt, a.delay_ms)).collect();
    assert_eq!(plan, [(3, 1, 0), (6, 2, 100), (9, 3, 150), (12, 4, 225)]);
    assert!(seen.iter().all(|a| a.visit == 1));
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled n",
            "4 agentFailed n",
            "5 stepStarted",
            "6 agentScheduled n",
            "7 agentFailed n",
            "8 stepStarted",
            "9 agentScheduled n",
            "10 agentFailed n",
            "11 stepStarted",
            "12 agentScheduled n",
            "13 agentCompleted n",
            "14 runCompleted"
        ]
    );
    assert_eq!(ev[2]["data"], json!({"agent": "A"}));
    assert_eq!(
        ev[5]["data"],
        json!({"agent": "A", "delayMs": 100, "retryOf": 4})
    );
    assert_eq!(ev[5]["attempt"], 2);
    assert_eq!(
        ev[8]["data"],
        json!({"agent": "A", "delayMs": 150, "retryOf": 7})
    );
    assert_eq!(
        ev[11]["data"],
        json!({"agent": "A", "delayMs": 225, "retryOf": 10})
    );
    assert_eq!(
        ev[6]["data"]["error"],
        json!({"kind": "error", "type": "Flaky", "message": "try 2", "retryable": true})
    );
    assert_eq!(run.outcome().unwrap().output, Some(json!({"n": "done"})));
}

#[test]
fn exhausted_retries_fail_the_run_naming_the_node() {
    let w = wf(json!({"name": "retry", "nodes": [
        {"id": "n", "type": "agent", "agent": "A", "retry": {"maxAttempts": 2, "backoffMs": 5}}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, |_| {
        Completion::err(Failure::error("Boom", "always"))
    });
    assert_eq!(ids(&seen), [3, 6]);
    let out = run.outcome().unwrap();
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert_eq!(err.code, "AGENT_FAILED");
    assert_eq!(err.node.as_deref(), Some("n"));
    assert_eq!(err.message, "node 'n' failed on attempt 2/2: Boom: always");
    let ev = run_events(&run);
    assert_eq!(summary(&ev)[6..], ["7 agentFailed n", "8 runFailed"]);
    assert_eq!(ev[7]["parentSeq"], 1);
    assert_eq!(ev[7]["data"]["error"]["node"], "n");
    assert_eq!(ev[7]["data"]["error"]["code"], "AGENT_FAILED");
    assert!(run.poll().unwrap().is_empty());
}

#[test]
fn a_non_retryable_failure_skips_the_remaining_attempts() {
    let w = wf(json!({"name": "perm", "nodes": [
        {"id": "n", "type": "agent", "agent": "A", "retry": {"maxAttempts": 5}}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, |_| {
        Completion::err(Failure::error("Denied", "no").permanent())
    });
    assert_eq!(seen.len(), 1);
    let err = run.outcome().unwrap().error.unwrap();
    assert_eq!(err.code, "AGENT_FAILED");
    assert_eq!(
        err.message,
        "node 'n' failed on attempt 1/5 (not retryable): Denied: no"
    );
    assert_eq!(
        summary(&run_events(&run))[3..],
        ["4 agentFailed n", "5 runFailed"]
    );
}

#[test]
fn a_timeout_failure_fails_the_run_with_timeout() {
    let w = wf(json!({"name": "slow", "nodes": [
        {"id": "n", "type": "agent", "agent": "A", "timeoutMs": 50, "retry": {"maxAttempts": 2}}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, |a| {
        assert_eq!(a.timeout_ms, Some(50));
        Completion::err(Failure::timeout(50))
    });
    assert_eq!(seen.len(), 2, "a timeout is retryable");
    let err = run.outcome().unwrap().error.unwrap();
    assert_eq!(err.code, ErrorKind::Timeout.code());
    assert_eq!(err.node.as_deref(), Some("n"));
    assert_eq!(
        err.message,
        "node 'n' failed on attempt 2/2: Timeout: no result within 50 ms"
    );
    let ev = run_events(&run);
    assert_eq!(ev[2]["data"], json!({"agent": "A", "timeoutMs": 50}));
    assert_eq!(ev[6]["data"]["error"]["kind"], "timeout");
}

#[test]
fn a_failure_ends_the_run_only_after_its_step_settles() {
    let w = wf(json!({"name": "pair", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "A"},
        {"id": "c", "type": "agent", "agent": "A", "after": ["b"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    assert_eq!(ids(&run.poll().unwrap()), [3, 4]);
    run.complete(3, Completion::err(Failure::error("E", "x")))
        .unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Running);
    assert_eq!(ids(&run.outstanding().unwrap()), [4]);
    run.complete(4, ok(json!(1))).unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Failed);
    assert_eq!(
        summary(&run_events(&run))[4..],
        ["5 agentFailed a", "6 agentCompleted b", "7 runFailed"]
    );
    assert_eq!(
        run.outcome().unwrap().error.unwrap().node.as_deref(),
        Some("a")
    );
}

/// A branch after `a` choosing `yes` when `when` holds, else `no`.
fn branch_wf(when: Value) -> Workflow {
    wf(json!({"name": "br", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "br", "type": "branch", "after": ["a"], "cases": [{"when": when, "goto": "yes"}], "default": "no"},
        {"id": "yes", "type": "agent", "agent": "Y"},
        {"id": "no", "type": "agent", "agent": "N"}
    ]}))
}

/// Run `branch_wf(when)` with `a` returning `out`; returns the events.
fn run_branch(when: Value, input: Value, out: Value) -> Vec<Value> {
    let mut run = start_mem(&branch_wf(when.clone()), input, 1);
    drive_with(&mut run, |a| {
        if &*a.node == "a" {
            ok(out.clone())
        } else {
            echo(a)
        }
    });
    assert_eq!(run.status().unwrap(), RunStatus::Completed, "{when}");
    run_events(&run)
}

#[test]
fn branch_operators_on_outputs_and_input() {
    let out = json!({"score": 7, "label": "good", "tags": ["x", "y"], "meta": {"k": 1}});
    let input = json!({"mode": "fast", "n": 2});
    let o = |field: &str, op: &str, v: Value| {
        let mut c = json!({"path": format!("/outputs/a/{field}")});
        c[op] = v;
        c
    };
    let cases: Vec<(Value, bool)> = vec![
        (o("score", "eq", json!(7)), true),
        (o("score", "eq", json!(7.0)), true),
        (o("score", "eq", json!(8)), false),
        (o("label", "ne", json!("bad")), true),
        (o("label", "ne", json!("good")), false),
        (o("score", "gt", json!(6.5)), true),
        (o("score", "gt", json!(7)), false),
        (o("score", "gte", json!(7)), true),
        (o("score", "gte", json!(7.5)), false),
        (o("score", "lt", json!(7.5)), true),
        (o("score", "lt", json!(7)), false),
        (o("score", "lte", json!(7)), true),
        (o("score", "lte", json!(6)), false),
        (o("label", "gt", json!("fine")), true),
        (o("label", "gt", json!(1)), false),
        (o("label", "in", json!(["fine", "good"])), true),
        (o("label", "in", json!(["bad"])), false),
        (o("tags", "contains", json!("y")), true),
        (o("tags", "contains", json!("z")), false),
        (o("label", "contains", json!("oo")), true),
        (o("meta", "contains", json!("k")), true),
        (o("label", "exists", json!(true)), true),
        (o("missing", "exists", json!(false)), true),
        (o("missing", "exists", json!(true)), false),
        (o("missing", "ne", json!(1)), false),
        (o("label", "matches", json!("^go+d$")), true),
        (o("label", "matches", json!("^bad")), false),
        (o("tags/0", "eq", json!("x")), true),
        (json!({"path": "/input/mode", "eq": "fast"}), true),
        (json!({"path": "/input/n", "gt": 3}), false),
        (json!({"path": "/input/absent", "exists": false}), true),
        (
            json!({"all": [o("score", "gte", json!(5)), {"path": "/input/mode", "eq": "fast"}]}),
            true,
        ),
        (
            json!({"all": [o("score", "gte", json!(5)), {"path": "/input/mode", "eq": "slow"}]}),
            false,
        ),
        (
            json!({"any": [o("score", "lt", json!(0)), {"path": "/input/n", "eq": 2}]}),
            true,
        ),
        (
            json!({"any": [o("score", "lt", json!(0)), {"path": "/input/n", "eq": 3}]}),
            false,
        ),
        (json!({"not": o("label", "eq", json!("good"))}), false),
        (json!({"not": o("label", "eq", json!("bad"))}), true),
        (json!({"path": "/visits/a", "eq": 1}), true),
    ];
    for (when, holds) in cases {
        let ev = run_branch(when.clone(), input.clone(), out.clone());
        let (chosen, other) = if holds { ("yes", "no") } else { ("no", "yes") };
        let decided = if holds {
            json!({"case": 0, "goto": "yes"})
        } else {
            json!({"case": null, "goto": "no"})
        };
        assert_eq!(ev[4]["type"], "branchDecided", "{when}");
        assert_eq!(ev[4]["node"], "br");
        assert_eq!(ev[4]["parentSeq"], 4, "decided from a's completion");
        assert_eq!(ev[4]["data"], decided, "{when}");
        assert_eq!(ev[5]["type"], "nodeSkipped");
        assert_eq!(ev[5]["node"], other, "{when}");
        assert_eq!(ev[5]["parentSeq"], 5);
        assert_eq!(ev[5]["data"], json!({}));
        assert_eq!(ev[7]["node"], chosen, "{when}");
        let last = ev.last().unwrap();
        assert_eq!(
            last["data"]["output"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [chosen],
            "only the chosen target ran: {when}"
        );
    }
}

#[test]
fn branch_takes_the_first_matching_case() {
    let w = wf(json!({"name": "multi", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "br", "type": "branch", "after": ["a"], "cases": [
            {"when": {"path": "/outputs/a/v", "gt": 10}, "goto": "w"},
            {"when": {"path": "/outputs/a/v", "gt": 1}, "goto": "x"},
            {"when": {"path": "/outputs/a/v", "gt": 0}, "goto": "y"}
        ], "default": "z"},
        {"id": "w", "type": "agent", "agent": "A"},
        {"id": "x", "type": "agent", "agent": "A"},
        {"id": "y", "type": "agent", "agent": "A"},
        {"id": "z", "type": "agent", "agent": "A"}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    drive_with(&mut run, |a| {
        if &*a.node == "a" {
            ok(json!({"v": 5}))
        } else {
            echo(a)
        }
    });
    let ev = run_events(&run);
    assert_eq!(ev[4]["data"], json!({"case": 1, "goto": "x"}));
    assert_eq!(
        summary(&ev)[4..],
        [
            "5 branchDecided br",
            "6 nodeSkipped w",
            "7 nodeSkipped y",
            "8 nodeSkipped z",
            "9 stepStarted",
            "10 agentScheduled x",
            "11 agentCompleted x",
            "12 runCompleted"
        ]
    );
}

#[test]
fn branch_without_match_or_default_runs_nothing_after_and_completes() {
    let w = wf(json!({"name": "nomatch", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "br", "type": "branch", "after": ["a"],
         "cases": [{"when": {"path": "/outputs/a/ok", "eq": true}, "goto": "yes"}]},
        {"id": "yes", "type": "agent", "agent": "Y"},
        {"id": "post", "type": "agent", "agent": "P", "after": ["yes"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, |_| ok(json!({"ok": false})));
    assert_eq!(nodes(&seen), ["a"]);
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled a",
            "4 agentCompleted a",
            "5 branchDecided br",
            "6 nodeSkipped yes",
            "7 nodeSkipped post",
            "8 runCompleted"
        ]
    );
    assert_eq!(ev[4]["data"], json!({"case": null, "goto": null}));
    assert_eq!(ev[6]["parentSeq"], 6, "post is skipped because yes was");
    let out = run.outcome().unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    assert_eq!(out.output, Some(json!({})));
}

#[test]
fn skipped_path_skips_exclusive_descendants_but_a_reachable_join_runs() {
    let w = wf(json!({"name": "diamond", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "br", "type": "branch", "after": ["a"],
         "cases": [{"when": {"path": "/input/left", "eq": true}, "goto": "left"}], "default": "right"},
        {"id": "left", "type": "agent", "agent": "L"},
        {"id": "right", "type": "agent", "agent": "R"},
        {"id": "left2", "type": "agent", "agent": "L", "after": ["left"]},
        {"id": "right2", "type": "agent", "agent": "R", "after": ["right"]},
        {"id": "join", "type": "agent", "agent": "J", "after": ["left2", "right2"]}
    ]}));
    let mut run = start_mem(&w, json!({"left": true}), 1);
    let seen = drive_with(&mut run, echo);
    assert_eq!(nodes(&seen), ["a", "left", "left2", "join"]);
    assert_eq!(
        deps_of(&seen[3]),
        BTreeMap::from([(
            "left2".into(),
            json!({"node": "left2", "visit": 1, "attempt": 1})
        )]),
        "a skipped dependency contributes nothing"
    );
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled a",
            "4 agentCompleted a",
            "5 branchDecided br",
            "6 nodeSkipped right",
            "7 nodeSkipped right2",
            "8 stepStarted",
            "9 agentScheduled left",
            "10 agentCompleted left",
            "11 stepStarted",
            "12 agentScheduled left2",
            "13 agentCompleted left2",
            "14 stepStarted",
            "15 agentScheduled join",
            "16 agentCompleted join",
            "17 runCompleted"
        ]
    );
    assert_eq!(ev[5]["parentSeq"], 5);
    assert_eq!(ev[6]["parentSeq"], 6);
    // right2 is terminal in the graph but skipped: only join's output is the run output.
    assert_eq!(
        run.outcome().unwrap().output,
        Some(json!({"join": {"node": "join", "visit": 1, "attempt": 1}}))
    );
}

/// `work` loops through `check` while its visit count is below `until`.
fn loop_wf(until: u64, max_visits: u64) -> Workflow {
    wf(json!({"name": "loop", "nodes": [
        {"id": "work", "type": "agent", "agent": "W", "maxVisits": max_visits},
        {"id": "check", "type": "branch", "after": ["work"],
         "cases": [{"when": {"path": "/visits/work", "lt": until}, "goto": "work"}], "default": "done"},
        {"id": "done", "type": "agent", "agent": "D"}
    ]}))
}

#[test]
fn bounded_loop_counts_visits() {
    let mut run = start_mem(&loop_wf(3, 5), Value::Null, 1);
    let seen = drive_with(&mut run, echo);
    let visits: Vec<(String, u64, u64)> = seen
        .iter()
        .map(|a| (a.node.to_string(), a.visit, a.step))
        .collect();
    assert_eq!(
        visits,
        [
            ("work".into(), 1, 1),
            ("work".into(), 2, 2),
            ("work".into(), 3, 3),
            ("done".into(), 1, 4)
        ]
    );
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled work",
            "4 agentCompleted work",
            "5 branchDecided check",
            "6 stepStarted",
            "7 agentScheduled work",
            "8 agentCompleted work",
            "9 branchDecided check",
            "10 stepStarted",
            "11 agentScheduled work",
            "12 agentCompleted work",
            "13 branchDecided check",
            "14 stepStarted",
            "15 agentScheduled done",
            "16 agentCompleted done",
            "17 runCompleted"
        ]
    );
    assert_eq!(
        ev[4]["data"],
        json!({"case": 0, "goto": "work", "loop": true})
    );
    assert_eq!(ev[6]["data"], json!({"agent": "W", "visit": 2}));
    assert_eq!(
        ev[8]["data"],
        json!({"case": 0, "goto": "work", "loop": true})
    );
    assert_eq!(ev[12]["data"], json!({"case": null, "goto": "done"}));
    assert_eq!(
        run.outcome().unwrap().output,
        Some(json!({"done": {"node": "done", "visit": 1, "attempt": 1}}))
    );
}

#[test]
fn max_visits_exceeded_fails_with_limit_exceeded() {
    let mut run = start_mem(&loop_wf(100, 2), Value::Null, 1);
    let seen = drive_with(&mut run, echo);
    assert_eq!(seen.len(), 2);
    let err = run.outcome().unwrap().error.unwrap();
    assert_eq!(err.code, "LIMIT_EXCEEDED");
    assert_eq!(err.node.as_deref(), Some("work"));
    assert_eq!(
        err.message,
        "node 'work' would start visit 3 but maxVisits is 2"
    );
    assert_eq!(
        summary(&run_events(&run))[7..],
        [
            "8 agentCompleted work",
            "9 branchDecided check",
            "10 runFailed"
        ]
    );
}

#[test]
fn max_steps_exceeded_fails_with_limit_exceeded() {
    let w = wf(json!({"name": "long", "maxSteps": 3, "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "c", "type": "agent", "agent": "A", "after": ["b"]},
        {"id": "d", "type": "agent", "agent": "A", "after": ["c"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    let seen = drive_with(&mut run, echo);
    assert_eq!(nodes(&seen), ["a", "b", "c"]);
    let out = run.outcome().unwrap();
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert_eq!(err.code, "LIMIT_EXCEEDED");
    assert_eq!(err.node, None);
    assert_eq!(err.message, "the run would start step 4 but maxSteps is 3");
    let ev = run_events(&run);
    assert_eq!(ev.len(), 11);
    assert_eq!(ev[10]["type"], "runFailed");
    assert_eq!(
        ev[10]["data"],
        json!({"error": {"code": "LIMIT_EXCEEDED", "message": "the run would start step 4 but maxSteps is 3"}})
    );
}

#[test]
fn human_activation_makes_the_run_wait_until_resolved() {
    let w = wf(json!({"name": "approve", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "approve", "type": "human", "prompt": "Ship it?", "after": ["a"]},
        {"id": "side", "type": "agent", "agent": "S", "after": ["a"]},
        {"id": "b", "type": "agent", "agent": "B", "after": ["approve"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    assert_eq!(ids(&run.poll().unwrap()), [3]);
    run.complete(3, ok(json!("a"))).unwrap();
    let step2 = run.poll().unwrap();
    assert_eq!(nodes(&step2), ["approve", "side"]);
    let human = &step2[0];
    assert_eq!(human.kind, ActivationKind::Human);
    assert_eq!(&*human.name, "approve");
    assert_eq!(human.prompt.as_deref(), Some("Ship it?"));
    assert_eq!(human.timeout_ms, None);
    // The agent is still outstanding: running, not waiting.
    assert_eq!(run.status().unwrap(), RunStatus::Running);
    run.complete(7, ok(json!("side"))).unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Waiting);
    assert_eq!(run.outcome().unwrap().status, RunStatus::Waiting);
    assert!(run.poll().unwrap().is_empty(), "already handed out");
    let waiting = run.outstanding().unwrap();
    assert_eq!(waiting, vec![human.clone()]);
    assert!(!run.is_finished().unwrap());

    run.complete(human.id, ok(json!({"approved": true})))
        .unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Running);
    let b = run.poll().unwrap();
    assert_eq!(nodes(&b), ["b"]);
    assert_eq!(
        deps_of(&b[0]),
        BTreeMap::from([("approve".into(), json!({"approved": true}))])
    );
    run.complete(b[0].id, ok(json!("b"))).unwrap();
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev)[5..9],
        [
            "6 humanRequested approve",
            "7 agentScheduled side",
            "8 humanResolved approve",
            "9 agentCompleted side"
        ]
    );
    assert_eq!(ev[5]["data"], json!({"prompt": "Ship it?"}));
    assert_eq!(ev[7]["data"], json!({"output": {"approved": true}}));
    assert_eq!(
        run.outcome().unwrap().output,
        Some(json!({"side": "side", "b": "b"}))
    );
}

#[test]
fn cancel_mid_step_fills_reserved_seqs_then_rejects_completions() {
    let w = wf(json!({"name": "cancel", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "x", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "y", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "z", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "after", "type": "agent", "agent": "A", "after": ["x", "y", "z"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    run.complete(3, ok(json!("a"))).unwrap();
    assert_eq!(ids(&run.poll().unwrap()), [6, 7, 8]);
    run.complete(7, ok(json!("y"))).unwrap();
    assert!(run.cancel("user stop").unwrap());
    let out = run.outcome().unwrap();
    assert_eq!(out.status, RunStatus::Cancelled);
    let err = out.error.unwrap();
    assert_eq!(err.code, "CANCELLED");
    assert_eq!(err.message, "user stop");
    assert_eq!(err.node, None);
    let ev = run_events(&run);
    assert_eq!(
        summary(&ev)[8..],
        [
            "9 activationCancelled x",
            "10 agentCompleted y",
            "11 activationCancelled z",
            "12 runCancelled"
        ]
    );
    assert_eq!(ev[8]["parentSeq"], 6);
    assert_eq!(ev[8]["attempt"], 1);
    assert_eq!(ev[8]["data"], json!({"reason": "user stop"}));
    assert_eq!(ev[10]["parentSeq"], 8);
    assert_eq!(ev[11]["parentSeq"], 1);
    assert_eq!(ev[11]["data"], json!({"reason": "user stop"}));

    let before = run.canonical().unwrap();
    let e = run.complete(6, ok(json!("late"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidCompletion);
    assert_eq!(
        e.message(),
        "activation 6: the run is cancelled and accepts no completions"
    );
    assert!(!run.cancel("again").unwrap(), "already finished");
    assert_eq!(run.canonical().unwrap(), before);
    assert!(run.poll().unwrap().is_empty() && run.outstanding().unwrap().is_empty());
}

#[test]
fn late_duplicate_and_unknown_completions_change_nothing() {
    let w = wf(json!({"name": "strict", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "x", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "y", "type": "agent", "agent": "A", "after": ["a"]}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    run.complete(3, ok(json!("a"))).unwrap();
    assert_eq!(ids(&run.poll().unwrap()), [6, 7]);
    run.complete(6, ok(json!("x"))).unwrap();

    let before = run.canonical().unwrap();
    let outstanding = run.outstanding().unwrap();
    let cases: Vec<(u64, &str)> = vec![
        (6, "activation 6 (node 'x') is already completed"),
        (
            3,
            "activation 3 belongs to an earlier step and is already completed",
        ),
        (
            5,
            "activation 5 belongs to an earlier step and is already completed",
        ),
        (8, "unknown activation 8"),
        (9, "unknown activation 9"),
        (999, "unknown activation 999"),
    ];
    for (id, message) in cases {
        for completion in [ok(json!("dup")), Completion::err(Failure::error("E", "m"))] {
            let e = run.complete(id, completion).unwrap_err();
            assert_eq!(e.code(), "INVALID_COMPLETION", "id {id}");
            assert_eq!(e.message(), message);
        }
        assert_eq!(run.canonical().unwrap(), before, "id {id} changed the log");
        assert_eq!(run.outstanding().unwrap(), outstanding);
        assert_eq!(run.status().unwrap(), RunStatus::Running);
    }
    run.complete(7, ok(json!("y"))).unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
    let done = run.canonical().unwrap();
    let e = run.complete(7, ok(json!("again"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidCompletion);
    assert_eq!(
        e.message(),
        "activation 7: the run is completed and accepts no completions"
    );
    assert_eq!(run.canonical().unwrap(), done);
    assert_eq!(
        run.outcome().unwrap().output,
        Some(json!({"x": "x", "y": "y"}))
    );
}

#[test]
fn run_output_holds_exactly_the_completed_terminal_nodes() {
    let w = wf(json!({"name": "terminals", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "A", "after": ["a"]},
        {"id": "c", "type": "tool", "tool": "T", "after": ["a"]},
        {"id": "solo", "type": "agent", "agent": "A"},
        {"id": "br", "type": "branch", "after": ["solo"],
         "cases": [{"when": {"path": "/outputs/solo", "exists": true}, "goto": "taken"}], "default": "not_taken"},
        {"id": "taken", "type": "agent", "agent": "A"},
        {"id": "not_taken", "type": "agent", "agent": "A"}
    ]}));
    let mut run = start_mem(&w, Value::Null, 1);
    drive_with(&mut run, |a| ok(json!(format!("{}!", a.node))));
    assert_eq!(
        run.outcome().unwrap().output,
        Some(json!({"b": "b!", "c": "c!", "taken": "taken!"}))
    );
}

#[test]
fn derived_run_ids_depend_on_workflow_input_and_seed_only() {
    let w = wf(json!({"name": "ids", "nodes": [{"id": "a", "type": "agent", "agent": "A"}]}));
    let w2 = wf(json!({"name": "ids2", "nodes": [{"id": "a", "type": "agent", "agent": "A"}]}));
    let id = |w: &Workflow, input: Value, seed: u64| {
        Run::start(
            w,
            RunOptions {
                input,
                seed,
                ..Default::default()
            },
        )
        .unwrap()
        .run_id()
        .to_owned()
    };
    let base = id(&w, json!({"a": 1, "b": 2}), 7);
    assert_eq!(base.len(), 4 + 16);
    assert!(base.starts_with("run-"));
    assert!(base[4..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(id(&w, json!({"a": 1, "b": 2}), 7), base);
    assert_eq!(
        id(&w, json!({"b": 2, "a": 1}), 7),
        base,
        "object key order is not part of the input"
    );
    let others: BTreeSet<String> = [
        id(&w, json!({"a": 1, "b": 2}), 8),
        id(&w, json!({"a": 1, "b": 3}), 7),
        id(&w, Value::Null, 7),
        id(&w2, json!({"a": 1, "b": 2}), 7),
        base.clone(),
    ]
    .into_iter()
    .collect();
    assert_eq!(others.len(), 5, "{others:?}");
    // The derived id is what the log header and events carry.
    let run = Run::start(
        &w,
        RunOptions {
            seed: 7,
            input: json!({"a": 1, "b": 2}),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(run.header().run_id, base);
    assert_eq!(run_events(&run)[0]["runId"], json!(base));
}

#[test]
fn activation_seeds_are_deterministic_and_distinct() {
    let w = wf(json!({"name": "seeds", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "A"},
        {"id": "c", "type": "agent", "agent": "A", "after": ["a", "b"]}
    ]}));
    let seeds = |seed: u64, run_id: &str| -> Vec<u64> {
        let mut run = Run::start(
            &w,
            RunOptions {
                seed,
                run_id: Some(run_id.into()),
                ..Default::default()
            },
        )
        .unwrap();
        drive_with(&mut run, echo).iter().map(|a| a.seed).collect()
    };
    let first = seeds(1, "r");
    assert_eq!(first.len(), 3);
    assert_eq!(seeds(1, "r"), first);
    assert_eq!(first.iter().collect::<BTreeSet<_>>().len(), 3);
    let other_seed = seeds(2, "r");
    let other_id = seeds(1, "r2");
    for i in 0..3 {
        assert_ne!(other_seed[i], first[i]);
        assert_ne!(other_id[i], first[i]);
    }
}

#[test]
fn an_unchosen_branch_target_is_skipped_even_when_its_other_dependency_completed() {
    // `audit` waits for `a` and is also a goto target of `br`: the branch's choice is a veto.
    let w = wf(json!({"name": "veto", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "br", "type": "branch", "after": ["a"],
         "cases": [{"when": {"path": "/input/audit", "eq": true}, "goto": "audit"}], "default": "ship"},
        {"id": "audit", "type": "agent", "agent": "X", "after": ["a"]},
        {"id": "ship", "type": "agent", "agent": "S"}
    ]}));
    let mut run = start_mem(&w, json!({"audit": false}), 1);
    assert_eq!(nodes(&drive_with(&mut run, echo)), ["a", "ship"]);
    let ev = run_events(&run);
    assert!(
        summary(&ev).contains(&"6 nodeSkipped audit".to_owned()),
        "{:?}",
        summary(&ev)
    );

    let mut run = start_mem(&w, json!({"audit": true}), 1);
    assert_eq!(nodes(&drive_with(&mut run, echo)), ["a", "audit"]);
}

#[test]
fn a_loop_of_decisions_alone_is_bounded_by_max_steps() {
    // `b` loops back to itself: no work is ever scheduled between two decisions.
    let w = wf(json!({"name": "selfloop", "maxSteps": 5, "nodes": [
        {"id": "a", "type": "agent", "agent": "x"},
        {"id": "b", "type": "branch", "after": ["a"],
         "cases": [{"when": {"path": "/input/x", "eq": 1}, "goto": "b"}], "default": "c"},
        {"id": "c", "type": "agent", "agent": "x"}
    ]}));
    let mut run = start_mem(&w, json!({"x": 1}), 1);
    drive_with(&mut run, echo);
    let error = run.outcome().unwrap().error.expect("the run fails");
    assert_eq!(error.code, "LIMIT_EXCEEDED");
    assert_eq!(error.node.as_deref(), Some("b"));
    let decided = run_events(&run)
        .iter()
        .filter(|e| e["type"] == "branchDecided")
        .count();
    assert_eq!(
        decided, 6,
        "maxSteps loop-backs are allowed, the next one fails"
    );

    let mut run = start_mem(&w, json!({"x": 2}), 1);
    drive_with(&mut run, echo);
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
}

#[test]
fn a_workflow_file_that_is_not_utf8_is_invalid_with_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.json");
    let mut bytes = br#"{"name": "caf"#.to_vec();
    bytes.push(0xE9); // 'é' in Latin-1
    bytes.extend_from_slice(br#"", "nodes": []}"#);
    std::fs::write(&path, &bytes).unwrap();
    let e = Workflow::from_file(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidWorkflow, "{e}");
    assert!(e.message().contains("offset 13"), "{e}");
}
