//! Map nodes: one activation per item of an array, all in the step the node becomes ready
//! in (so their seqs, and the log, do not depend on when each finishes); the items that
//! fail and may be retried run again in the next step, alone. The node's `concurrency` only
//! limits how many the host is handed at once. When every item is done, `mapCompleted`
//! records the node's output: the array of the items' outputs, in item order.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Machine, NodeStatus, Retry, SlotResult};
use crate::error::ErrorKind;
use crate::model::event::{EventData, MapCompleted};
use crate::model::failure::{Failure, RunError};
use crate::model::workflow::MapDef;

/// Longest accepted item key, in bytes.
const MAX_KEY_LEN: usize = 256;

/// What became of one item.
#[derive(Debug, Clone)]
pub(crate) enum ItemResult {
    Ok(Arc<Value>),
    /// Failed for good, at `seq` (kept in the output with `onItemFailure: collect`).
    Failed(Failure, u64),
}

/// The items of a map node's current visit.
#[derive(Debug, Clone)]
pub(crate) struct MapState {
    pub items: Vec<Arc<Value>>,
    pub keys: Option<Vec<Arc<str>>>,
    pub results: Vec<Option<ItemResult>>,
    /// Latest attempt of each item (0 before its first).
    pub attempt: Vec<u32>,
    /// Attempts each item made before its current allowance (fresh after a reopen).
    pub attempt_base: Vec<u32>,
    pub retry: Vec<Option<Retry>>,
    /// Items the next step schedules, in index order.
    pub todo: Vec<u32>,
    /// Items without a result yet.
    pub left: usize,
    /// Items handed to the host and not yet completed.
    pub in_flight: u32,
    /// Seq of the latest item result.
    pub last_seq: u64,
}

impl MapState {
    fn new(items: Vec<Arc<Value>>, keys: Option<Vec<Arc<str>>>) -> MapState {
        let n = items.len();
        MapState {
            items,
            keys,
            results: vec![None; n],
            attempt: vec![0; n],
            attempt_base: vec![0; n],
            retry: vec![None; n],
            todo: (0..n as u32).collect(),
            left: n,
            in_flight: 0,
            last_seq: 0,
        }
    }

    /// The node's output: the items' outputs in order (each wrapped as `{"ok", "output"}` or
    /// `{"ok", "error"}` when failures are collected); how many failed.
    fn output(&self, collect: bool) -> (Value, u64) {
        let mut failed = 0;
        let items = self
            .results
            .iter()
            .map(|r| match (r, collect) {
                (Some(ItemResult::Ok(v)), false) => (**v).clone(),
                (Some(ItemResult::Ok(v)), true) => json!({"ok": true, "output": **v}),
                (Some(ItemResult::Failed(f, _)), _) => {
                    failed += 1;
                    json!({"ok": false, "error": {"type": f.error_type, "message": f.message}})
                }
                (None, _) => Value::Null,
            })
            .collect();
        (Value::Array(items), failed)
    }

    /// Run the items that failed for good again, with a fresh allowance of attempts (a
    /// reopened run).
    pub(crate) fn rerun_failed(&mut self) {
        for k in 0..self.items.len() {
            if let Some(ItemResult::Failed(..)) = self.results[k] {
                let Some(ItemResult::Failed(f, seq)) = self.results[k].take() else {
                    unreachable!("matched above")
                };
                self.left += 1;
                self.rerun(k, seq, Some(f));
            }
        }
    }

    /// Run item `k` again in the next step with a fresh allowance, retrying the attempt
    /// that ended at `retry_of`.
    fn rerun(&mut self, k: usize, retry_of: u64, failure: Option<Failure>) {
        self.attempt_base[k] = self.attempt[k];
        self.retry[k] = Some(Retry {
            attempt: self.attempt[k] + 1,
            delay_ms: 0,
            retry_of,
            failure,
        });
        self.todo.push(k as u32);
    }
}

/// Why a map node cannot start: the error code and its message.
type Refusal = (ErrorKind, String);

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The items' keys, at `tokens` in each: strings or integers, unique, short.
fn keys_of(node: &str, def: &MapDef, items: &[Arc<Value>]) -> Result<Vec<Arc<str>>, Refusal> {
    let tokens = def.item_key.as_deref().unwrap_or_default();
    let mut seen = HashSet::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let key = match crate::model::condition::resolve(item, tokens) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            found => {
                let what = found.map_or("nothing", kind_of);
                return Err((
                    ErrorKind::InvalidOutput,
                    format!(
                        "map '{node}': item {k} has {what} at its itemKey, not a string or an integer"
                    ),
                ));
            }
        };
        if key.len() > MAX_KEY_LEN {
            return Err((
                ErrorKind::InvalidOutput,
                format!(
                    "map '{node}': the key of item {k} is {} bytes; the limit is {MAX_KEY_LEN}",
                    key.len()
                ),
            ));
        }
        if !seen.insert(key.clone()) {
            let first = keys
                .iter()
                .position(|o: &Arc<str>| **o == *key)
                .unwrap_or(0);
            return Err((
                ErrorKind::InvalidOutput,
                format!("map '{node}': items {first} and {k} have the same key '{key}'"),
            ));
        }
        keys.push(Arc::from(key));
    }
    Ok(keys)
}

impl Machine {
    /// Read map node `i`'s array and set up its items; how many there are.
    ///
    /// Errors: `INVALID_OUTPUT` when `over` holds no array or an item has no usable key,
    /// `LIMIT_EXCEEDED` when it holds more than `maxItems`.
    pub(super) fn expand_map(&mut self, i: usize) -> Result<usize, Refusal> {
        let wf = self.wf.clone();
        let node = &wf.compiled().nodes[i];
        let def = node.map.as_ref().expect("a map node has a definition");
        let view = super::scheduler::View { m: self };
        let items: Vec<Arc<Value>> = match def.over.resolve(&view) {
            Some(v) => match v.as_array() {
                Some(items) => {
                    if items.len() as u64 > def.max_items {
                        return Err((
                            ErrorKind::LimitExceeded,
                            format!(
                                "map '{}': {} holds {} items; maxItems is {}",
                                node.id,
                                def.over_text,
                                items.len(),
                                def.max_items
                            ),
                        ));
                    }
                    items.iter().cloned().map(Arc::new).collect()
                }
                None => {
                    return Err((
                        ErrorKind::InvalidOutput,
                        format!(
                            "map '{}': {} is {}, not an array",
                            node.id,
                            def.over_text,
                            kind_of(&v)
                        ),
                    ))
                }
            },
            None => {
                return Err((
                    ErrorKind::InvalidOutput,
                    format!(
                        "map '{}': {} is missing (no array to map over)",
                        node.id, def.over_text
                    ),
                ))
            }
        };
        let keys = match def.item_key {
            Some(_) => Some(keys_of(&node.id, def, &items)?),
            None => None,
        };
        let n = items.len();
        self.nodes[i].map = Some(Box::new(MapState::new(items, keys)));
        Ok(n)
    }

    /// Record `mapCompleted` for map node `i`, whose items are all done: its output is now
    /// theirs. (The caller has its dependents evaluated.)
    pub(super) fn complete_map(&mut self, i: usize, parent: u64) {
        let wf = self.wf.clone();
        let collect = wf.compiled().nodes[i]
            .map
            .as_ref()
            .is_some_and(|d| d.collect);
        let state = self.nodes[i].map.as_ref().expect("a map node has items");
        let (output, failed) = state.output(collect);
        let items = state.items.len() as u64;
        let seq = self.emit(
            Some(parent),
            Some(i),
            None,
            EventData::MapCompleted(MapCompleted { items, failed }),
        );
        let s = &mut self.nodes[i];
        s.status = NodeStatus::Completed;
        s.output = Some(Arc::new(output));
        s.output_seq = seq;
        s.resolved_seq = seq;
    }
}

impl Machine {
    /// Run map node `i`'s item `k`, cancelled at `seq`, again in the next step (a reopened
    /// run).
    pub(super) fn rerun_item(&mut self, i: usize, k: usize, seq: u64) {
        let state = &mut self.nodes[i];
        if let Some(m) = state.map.as_mut() {
            m.rerun(k, seq, None);
            state.status = NodeStatus::Active;
            self.retrying.push(i);
        }
    }

    /// Move item `k`'s result (the step of `slot` has ended) into its map's state: a success
    /// or a collected failure is final; a failure the retry policy allows runs again in the
    /// next step; any other fails the node, and the run.
    pub(super) fn settle_item(&mut self, slot: &super::Slot, k: usize) {
        let wf = self.wf.clone();
        let spec = &wf.compiled().nodes[slot.node];
        let collect = spec.map.as_ref().is_some_and(|d| d.collect);
        let state = &mut self.nodes[slot.node];
        let m = state.map.as_mut().expect("a map node has items");
        let key = m
            .keys
            .as_ref()
            .map_or_else(String::new, |keys| format!(" ('{}')", keys[k]));
        let (f, seq) = match slot.result.as_ref().expect("settled slots have results") {
            SlotResult::Ok(out) => {
                m.results[k] = Some(ItemResult::Ok(out.clone()));
                m.left -= 1;
                m.last_seq = m.last_seq.max(slot.completion_seq);
                return;
            }
            SlotResult::Cancelled => return,
            SlotResult::Failed(f, seq) => (f, *seq),
        };
        // A refusal by a budget or the policy is never retried nor collected: it fails the
        // run, as on any node.
        let refused = slot
            .calls
            .denial()
            .map(|r| {
                (
                    ErrorKind::BudgetExceeded,
                    r.message(),
                    Some(r.clone()),
                    None,
                )
            })
            .or_else(|| {
                slot.calls
                    .policy_denial()
                    .map(|v| (ErrorKind::PolicyDenied, v.message(), None, Some(v.clone())))
            });
        let policy = spec.retry.as_ref();
        let max = policy.map_or(1, |p| p.max_attempts);
        let made = slot.attempt - m.attempt_base[k];
        if refused.is_none() && f.retryable && made < max {
            let p = policy.expect("max > 1 implies a policy");
            m.retry[k] = Some(Retry {
                attempt: slot.attempt + 1,
                delay_ms: p.delay_before(made + 1),
                retry_of: seq,
                failure: Some(f.clone()),
            });
            m.todo.push(k as u32);
            return;
        }
        // A result for good either way (`left` counts items without one; a reopened run
        // takes it back).
        m.results[k] = Some(ItemResult::Failed(f.clone(), seq));
        m.left -= 1;
        m.last_seq = m.last_seq.max(seq);
        if collect && refused.is_none() {
            return;
        }
        state.status = NodeStatus::Failed;
        state.resolved_seq = seq;
        if self.pending_failure.is_some() {
            return;
        }
        let error = match refused {
            Some((code, why, budget, verdict)) => RunError {
                code: code.code().to_owned(),
                message: format!("node '{}' item {k}{key}: {why}", spec.id),
                node: Some(spec.id.to_string()),
                budget,
                verdict,
                item: Some(k as u64),
            },
            None => {
                let at = super::Attempt {
                    made,
                    max,
                    base: m.attempt_base[k],
                };
                let key = m.keys.as_ref().map(|keys| &*keys[k]);
                super::failed_for_good(&spec.id, Some((k as u64, key)), slot, f, at)
            }
        };
        self.pending_failure = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{complete, machine};
    use crate::model::activation::{Completion, RunStatus};
    use crate::model::event::EventData;
    use crate::model::failure::Failure;

    fn planner_map(extra: serde_json::Value) -> serde_json::Value {
        let mut map = json!({"id": "research", "type": "map", "agent": "researcher",
            "over": "/outputs/plan/questions", "after": ["plan"]});
        for (k, v) in extra.as_object().unwrap() {
            map[k] = v.clone();
        }
        json!({"name": "w", "nodes": [
            {"id": "plan", "type": "agent", "agent": "planner"},
            map,
            {"id": "write", "type": "agent", "agent": "writer", "after": ["research"]}]})
    }

    fn types(m: &mut super::Machine) -> Vec<String> {
        m.take_outbox()
            .iter()
            .map(|e| match &e.data {
                EventData::Scheduled(_, s) => match &s.item {
                    Some(i) => format!("{}[{}]", e.type_name(), i.index),
                    None => e.type_name().to_owned(),
                },
                _ => e.type_name().to_owned(),
            })
            .collect()
    }

    #[test]
    fn one_activation_per_item_and_the_outputs_in_item_order() {
        let mut m = machine(planner_map(json!({})));
        let plan = m.poll().remove(0);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": ["a", "b", "c"]})),
        );
        let _ = types(&mut m);
        let acts = m.poll();
        assert_eq!(acts.len(), 3);
        let items: Vec<(u64, serde_json::Value)> = acts
            .iter()
            .map(|a| {
                let i = a.item.as_ref().unwrap();
                (i.index, (*i.value).clone())
            })
            .collect();
        assert_eq!(items, [(0, json!("a")), (1, json!("b")), (2, json!("c"))]);
        assert!(acts
            .iter()
            .all(|a| &*a.name == "researcher" && a.deps.contains_key("plan")));
        // They finish in reverse order; the output keeps item order.
        for a in acts.iter().rev() {
            let q = a.item.as_ref().unwrap().value.as_str().unwrap().to_owned();
            complete(&mut m, a.id, Completion::ok(json!({"notes": q})));
        }
        assert_eq!(
            types(&mut m),
            ["mapCompleted", "stepStarted", "agentScheduled"]
        );
        let write = m.poll().remove(0);
        assert_eq!(
            *write.deps["research"],
            json!([{"notes": "a"}, {"notes": "b"}, {"notes": "c"}])
        );
    }

    #[test]
    fn an_empty_array_completes_the_map_at_once() {
        let mut m = machine(planner_map(json!({})));
        let plan = m.poll().remove(0);
        let _ = types(&mut m);
        complete(&mut m, plan.id, Completion::ok(json!({"questions": []})));
        assert_eq!(
            types(&mut m),
            ["mapCompleted", "stepStarted", "agentScheduled"]
        );
        let write = m.poll().remove(0);
        assert_eq!(*write.deps["research"], json!([]));
    }

    #[test]
    fn no_array_or_too_many_items_fail_the_run_naming_node_and_path() {
        for (out, code, says) in [
            (
                json!({"questions": "a"}),
                "INVALID_OUTPUT",
                "/outputs/plan/questions is a string, not an array",
            ),
            (
                json!({}),
                "INVALID_OUTPUT",
                "/outputs/plan/questions is missing",
            ),
            (
                json!({"questions": [1, 2, 3]}),
                "LIMIT_EXCEEDED",
                "holds 3 items; maxItems is 2",
            ),
        ] {
            let mut m = machine(planner_map(json!({"maxItems": 2})));
            let plan = m.poll().remove(0);
            complete(&mut m, plan.id, Completion::ok(out));
            let o = m.outcome();
            assert_eq!(o.status, RunStatus::Failed);
            let e = o.error.unwrap();
            assert_eq!(
                (e.code.as_str(), e.node.as_deref()),
                (code, Some("research"))
            );
            assert!(
                e.message.contains("map 'research'") && e.message.contains(says),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn a_failed_item_alone_is_retried_in_the_next_step() {
        let mut m = machine(planner_map(
            json!({"retry": {"maxAttempts": 2, "backoffMs": 5}}),
        ));
        let plan = m.poll().remove(0);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": ["a", "b"]})),
        );
        let acts = m.poll();
        complete(&mut m, acts[0].id, Completion::ok(json!("A")));
        let failed = complete(
            &mut m,
            acts[1].id,
            Completion::err(Failure::error("Flaky", "503")),
        );
        let _ = types(&mut m);
        let retry = m.poll();
        assert_eq!(retry.len(), 1, "only the failed item runs again");
        let r = &retry[0];
        assert_eq!(
            (r.item.as_ref().unwrap().index, r.attempt, r.delay_ms),
            (1, 2, 5)
        );
        complete(&mut m, r.id, Completion::ok(json!("B")));
        let out = m.take_outbox();
        let done = out
            .iter()
            .find(|e| e.type_name() == "mapCompleted")
            .unwrap();
        assert!(done.parent_seq.unwrap() > failed.seq);
        let write = m.poll().remove(0);
        assert_eq!(*write.deps["research"], json!(["A", "B"]));
    }

    #[test]
    fn an_item_failing_for_good_fails_the_run_or_is_collected() {
        let mut m = machine(planner_map(json!({})));
        let plan = m.poll().remove(0);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": ["a", "b"]})),
        );
        let acts = m.poll();
        complete(
            &mut m,
            acts[0].id,
            Completion::err(Failure::error("Bad", "no")),
        );
        complete(&mut m, acts[1].id, Completion::ok(json!("B")));
        let e = m.outcome().error.unwrap();
        assert_eq!((e.code.as_str(), e.item), ("AGENT_FAILED", Some(0)));
        assert!(
            e.message
                .starts_with("node 'research' item 0 failed on attempt 1/1: Bad: no"),
            "{}",
            e.message
        );

        let mut m = machine(planner_map(json!({"onItemFailure": "collect"})));
        let plan = m.poll().remove(0);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": ["a", "b"]})),
        );
        let acts = m.poll();
        complete(
            &mut m,
            acts[0].id,
            Completion::err(Failure::error("Bad", "no")),
        );
        complete(&mut m, acts[1].id, Completion::ok(json!("B")));
        let out = m.take_outbox();
        let done = out
            .iter()
            .find(|e| e.type_name() == "mapCompleted")
            .unwrap();
        assert!(matches!(done.data, EventData::MapCompleted(c) if c.items == 2 && c.failed == 1));
        let write = m.poll().remove(0);
        assert_eq!(
            *write.deps["research"],
            json!([{"ok": false, "error": {"type": "Bad", "message": "no"}}, {"ok": true, "output": "B"}])
        );
    }

    #[test]
    fn concurrency_limits_what_is_handed_out_not_what_is_recorded() {
        let mut m = machine(planner_map(json!({"concurrency": 2})));
        let plan = m.poll().remove(0);
        let _ = types(&mut m);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": [0, 1, 2, 3, 4]})),
        );
        let scheduled = types(&mut m);
        assert_eq!(
            scheduled
                .iter()
                .filter(|t| t.starts_with("agentScheduled"))
                .count(),
            5
        );
        let first = m.poll();
        assert_eq!(first.len(), 2);
        assert!(m.poll().is_empty(), "the window is full");
        complete(&mut m, first[1].id, Completion::ok(json!(1)));
        let next = m.poll();
        assert_eq!(
            next.iter()
                .map(|a| a.item.as_ref().unwrap().index)
                .collect::<Vec<_>>(),
            [2]
        );
        complete(&mut m, first[0].id, Completion::ok(json!(0)));
        complete(&mut m, next[0].id, Completion::ok(json!(2)));
        let rest = m.poll();
        assert_eq!(rest.len(), 2);
        for a in rest {
            complete(&mut m, a.id, Completion::ok(json!(a.item.unwrap().index)));
        }
        let write = m.poll().remove(0);
        assert_eq!(*write.deps["research"], json!([0, 1, 2, 3, 4]));
    }

    #[test]
    fn item_keys_are_recorded_and_must_be_unique() {
        let mut m = machine(planner_map(json!({"itemKey": "/id"})));
        let plan = m.poll().remove(0);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": [{"id": "q-x"}, {"id": 7}]})),
        );
        let out = m.take_outbox();
        let keys: Vec<Option<String>> = out
            .iter()
            .filter_map(|e| match &e.data {
                EventData::Scheduled(_, s) => {
                    s.item.as_ref().map(|i| i.key.as_deref().map(str::to_owned))
                }
                _ => None,
            })
            .collect();
        assert_eq!(keys, [Some("q-x".to_owned()), Some("7".to_owned())]);
        assert_eq!(m.poll()[1].item.as_ref().unwrap().key.as_deref(), Some("7"));

        let mut m = machine(planner_map(json!({"itemKey": "/id"})));
        let plan = m.poll().remove(0);
        complete(
            &mut m,
            plan.id,
            Completion::ok(json!({"questions": [{"id": 1}, {"id": 2}, {"id": 1}]})),
        );
        let e = m.outcome().error.unwrap();
        assert_eq!(e.code, "INVALID_OUTPUT");
        assert!(
            e.message.contains("items 0 and 2 have the same key '1'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn reads_hand_over_outputs_of_nodes_that_are_not_dependencies() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "draft", "type": "agent", "agent": "w", "maxVisits": 2,
             "reads": ["/outputs/critic/notes", "/visits/draft", "/input"]},
            {"id": "critic", "type": "agent", "agent": "c", "after": ["draft"]},
            {"id": "again", "type": "branch", "after": ["critic"],
             "cases": [{"when": {"path": "/visits/draft", "lt": 2}, "goto": "draft"}]}]}));
        let first = m.poll().remove(0);
        assert_eq!(
            first.reads.keys().map(|k| &**k).collect::<Vec<_>>(),
            ["/input", "/visits/draft"]
        );
        complete(&mut m, first.id, Completion::ok(json!("v1")));
        let critic = m.poll().remove(0);
        let critic_done = complete(
            &mut m,
            critic.id,
            Completion::ok(json!({"notes": "shorter"})),
        );
        let out = m.take_outbox();
        let again = m.poll().remove(0);
        assert_eq!(*again.reads["/outputs/critic/notes"], json!("shorter"));
        assert_eq!(
            *again.reads["/visits/draft"],
            json!(2),
            "the visit it is on"
        );
        let record = out
            .iter()
            .find_map(|e| match &e.data {
                EventData::Scheduled(_, s) if e.seq == again.id => Some(s.reads.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(record["/outputs/critic/notes"], critic_done.seq);
        assert_eq!(record["/input"], 1);
        assert!(
            !record.contains_key("/visits/draft"),
            "a count has no source event"
        );
    }
}
