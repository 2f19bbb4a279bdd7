//! Property: the canonical log depends only on workflow, input, seed and agent results, never
//! on the order in which the host completes a step's activations or interleaves its polls.
//!
//! Random workflows (DAGs of 1–12 agent/tool nodes, some with retry policies and a scripted
//! failure on attempt 1, optionally a branch) are driven twice through `Run`: once completing
//! each step in activation order, once in a random order with random polls and rejected
//! duplicate completions in between. Both logs must be byte-identical and replay cleanly.
//! The case count is proptest's default and follows `PROPTEST_CASES`.

use std::path::Path;

use agentmesh_core::{replay, Activation, Completion, ErrorKind, Failure, Run};
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{json, Value};

use crate::common::*;

#[derive(Debug, Clone)]
struct NodeGen {
    after: Vec<usize>,
    /// (maxAttempts, backoffMs, doubling)
    retry: Option<(u32, u64, bool)>,
    /// Attempt 1 fails (retryable); only generated with a retry policy.
    fail_first: bool,
    /// Every attempt fails (not retryable).
    fail_always: bool,
}

#[derive(Debug, Clone)]
struct BranchGen {
    /// The node whose output (or the input) the branch reads.
    source: usize,
    case_target: usize,
    /// Equal to `case_target`: the branch has no default.
    default_target: usize,
    on_input: bool,
    threshold: i64,
    /// The targets depend on the branch only, so the unchosen one is skipped (with any
    /// descendants that depend on nothing else).
    exclusive: bool,
}

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<NodeGen>,
    branch: Option<BranchGen>,
    input: i64,
    seed: u64,
    order: u64,
}

fn node_gen(i: usize) -> impl Strategy<Value = NodeGen> {
    (
        subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(3)),
        proptest::option::weighted(0.4, (2u32..=3, 0u64..=50, any::<bool>())),
        proptest::bool::weighted(0.6),
        proptest::bool::weighted(0.03),
    )
        .prop_map(|(after, retry, fail_first, fail_always)| NodeGen {
            after,
            fail_first: fail_first && retry.is_some(),
            retry,
            fail_always,
        })
}

fn branch_gen(n: usize) -> BoxedStrategy<Option<BranchGen>> {
    if n < 3 {
        return Just(None).boxed();
    }
    let some = (0..n - 2)
        .prop_flat_map(move |source| {
            (
                Just(source),
                source + 1..n,
                source + 1..n,
                any::<bool>(),
                0i64..100,
                any::<bool>(),
            )
        })
        .prop_map(
            |(source, case_target, default_target, on_input, threshold, exclusive)| BranchGen {
                source,
                case_target,
                default_target,
                on_input,
                threshold,
                exclusive,
            },
        );
    proptest::option::weighted(0.6, some).boxed()
}

fn case_gen() -> impl Strategy<Value = Case> {
    (1usize..=12)
        .prop_flat_map(|n| {
            (
                (0..n).map(node_gen).collect::<Vec<_>>(),
                branch_gen(n),
                0i64..100,
                0u64..4,
                any::<u64>(),
            )
        })
        .prop_map(|(nodes, branch, input, seed, order)| Case {
            nodes,
            branch,
            input,
            seed,
            order,
        })
}

fn id(i: usize) -> String {
    format!("n{i}")
}

fn workflow_json(case: &Case) -> Value {
    let mut nodes: Vec<Value> = case
        .nodes
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut n = if i % 4 == 3 {
                json!({"id": id(i), "type": "tool", "tool": "t"})
            } else {
                json!({"id": id(i), "type": "agent", "agent": format!("a{}", i % 3)})
            };
            let target = case
                .branch
                .as_ref()
                .is_some_and(|b| b.exclusive && (i == b.case_target || i == b.default_target));
            if !g.after.is_empty() && !target {
                n["after"] = json!(g.after.iter().map(|&j| id(j)).collect::<Vec<_>>());
            }
            if let Some((max, backoff, doubling)) = g.retry {
                n["retry"] = json!({"maxAttempts": max, "backoffMs": backoff,
                                    "backoffMultiplier": if doubling { 2.0 } else { 1.0 }});
            }
            n
        })
        .collect();
    if let Some(b) = &case.branch {
        let when = if b.on_input {
            json!({"path": "/input/x", "lt": b.threshold})
        } else {
            json!({"path": format!("/outputs/{}/v", id(b.source)), "gte": b.threshold})
        };
        let mut br = json!({"id": "br", "type": "branch", "after": [id(b.source)],
                            "cases": [{"when": when, "goto": id(b.case_target)}]});
        if b.default_target != b.case_target {
            br["default"] = json!(id(b.default_target));
        }
        nodes.push(br);
    }
    json!({"name": "prop", "nodes": nodes})
}

/// The scripted result of an activation: a function of node, attempt and input only.
fn result(case: &Case, a: &Activation) -> Completion {
    let i: usize = a.node[1..].parse().expect("node ids are n<i>");
    let g = &case.nodes[i];
    if g.fail_always {
        return Completion::err(
            Failure::error("Broken", format!("{} is broken", a.node)).permanent(),
        );
    }
    if g.fail_first && a.attempt == 1 {
        return Completion::err(Failure::error("Flaky", "first attempt"));
    }
    let v = (case.input * 31 + i as i64 * 17) % 100;
    Completion::ok(json!({"v": v, "node": &*a.node, "attempt": a.attempt}))
}

/// xorshift64*: a tiny deterministic generator for completion orders.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Complete in a random order, polling at random moments and sending duplicate completions
/// (which must be rejected). Returns every activation handed out.
fn drive_randomly(run: &mut Run, case: &Case) -> Vec<Activation> {
    let mut rng = Rng(case.order | 1);
    let mut pending: Vec<Activation> = Vec::new();
    let mut seen: Vec<Activation> = Vec::new();
    loop {
        if pending.is_empty() || rng.below(3) == 0 {
            let fresh = run.poll().unwrap();
            if fresh.is_empty() && pending.is_empty() {
                return seen;
            }
            pending.extend(fresh);
            continue;
        }
        if !seen.is_empty() && rng.below(6) == 0 {
            let done: Vec<&Activation> = seen
                .iter()
                .filter(|a| !pending.iter().any(|p| p.id == a.id))
                .collect();
            if !done.is_empty() {
                let dup = done[rng.below(done.len())];
                let e = run.complete(dup.id, result(case, dup)).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidCompletion, "{e}");
                continue;
            }
        }
        let a = pending.swap_remove(rng.below(pending.len()));
        run.complete(a.id, result(case, &a))
            .expect("completion accepted");
        seen.push(a);
    }
}

fn check_replays(path: &Path, run: &Run) {
    let rep = replay(path, None).expect("the log replays");
    assert_eq!(rep.outcome, run.outcome().unwrap());
}

proptest! {
    #[test]
    fn completion_order_never_changes_the_canonical_log(case in case_gen()) {
        let w = wf(workflow_json(&case));
        let input = json!({"x": case.input});
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

        let mut in_order = start_in(dir_a.path(), &w, input.clone(), case.seed, "prop");
        let mut acts_a = drive_with(&mut in_order, |a| result(&case, a));
        let mut shuffled = start_in(dir_b.path(), &w, input, case.seed, "prop");
        let mut acts_b = drive_randomly(&mut shuffled, &case);

        prop_assert!(in_order.is_finished().unwrap(), "{:?}", in_order.outcome().unwrap());
        prop_assert!(shuffled.is_finished().unwrap());
        let (path_a, path_b) = (
            in_order.log_path().unwrap().to_owned(),
            shuffled.log_path().unwrap().to_owned(),
        );
        let (log_a, log_b) = (canonical(&path_a), canonical(&path_b));
        prop_assert_eq!(&log_a, &log_b);
        prop_assert_eq!(in_order.outcome().unwrap(), shuffled.outcome().unwrap());
        // Activations (ids, seeds, deps, delays) do not depend on the order either.
        acts_a.sort_by_key(|a| a.id);
        acts_b.sort_by_key(|a| a.id);
        prop_assert_eq!(acts_a, acts_b);
        check_replays(&path_a, &in_order);
        check_replays(&path_b, &shuffled);
    }
}
