//! Validation of a [`WorkflowSpec`] into the compiled form. Every error names the node and field.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use super::condition::Condition;
use super::workflow::*;
use crate::error::{Error, Result};

pub(crate) fn check_name(node: Option<&str>, field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_workflow(node, field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid_workflow(
            node,
            field,
            format!("is {} bytes long; the limit is {MAX_NAME_LEN}", name.len()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid_workflow(
            node,
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Node ids appear in JSON Pointer paths, CLI arguments and file names: keep them plain.
fn check_id(id: &str) -> Result<()> {
    check_name(Some(id), "id", id)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(Error::invalid_workflow(
            Some(id),
            "id",
            "may contain only ASCII letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

fn check_range(node: &str, field: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min || value > max {
        return Err(Error::invalid_workflow(
            Some(node),
            field,
            format!("{value} is out of range {min}..={max}"),
        ));
    }
    Ok(())
}

fn forbid(node: &NodeSpec, field: &str, present: bool) -> Result<()> {
    if present {
        return Err(Error::invalid_workflow(
            Some(&node.id),
            field,
            format!("is not allowed on {} nodes", node.kind.as_str()),
        ));
    }
    Ok(())
}

fn check_node_fields(n: &NodeSpec) -> Result<Arc<str>> {
    let id = n.id.as_str();
    let name: Arc<str> = match n.kind {
        NodeKind::Agent => {
            let a = n.agent.as_deref().ok_or_else(|| {
                Error::invalid_workflow(Some(id), "agent", "agent nodes need an agent name")
            })?;
            check_name(Some(id), "agent", a)?;
            a.into()
        }
        NodeKind::Tool => {
            let t = n.tool.as_deref().ok_or_else(|| {
                Error::invalid_workflow(Some(id), "tool", "tool nodes need a tool name")
            })?;
            check_name(Some(id), "tool", t)?;
            t.into()
        }
        NodeKind::Human | NodeKind::Branch => id.into(),
    };
    forbid(n, "agent", n.kind != NodeKind::Agent && n.agent.is_some())?;
    forbid(n, "tool", n.kind != NodeKind::Tool && n.tool.is_some())?;
    forbid(n, "prompt", n.kind != NodeKind::Human && n.prompt.is_some())?;
    forbid(
        n,
        "cases",
        n.kind != NodeKind::Branch && !n.cases.is_empty(),
    )?;
    forbid(
        n,
        "default",
        n.kind != NodeKind::Branch && n.default.is_some(),
    )?;
    let host_less = matches!(n.kind, NodeKind::Human | NodeKind::Branch);
    forbid(n, "timeoutMs", host_less && n.timeout_ms.is_some())?;
    forbid(n, "retry", host_less && n.retry.is_some())?;
    if let Some(p) = &n.prompt {
        if p.len() > 64 * 1024 {
            return Err(Error::invalid_workflow(
                Some(id),
                "prompt",
                "is longer than 64 KiB",
            ));
        }
    }
    if n.kind == NodeKind::Branch && n.cases.is_empty() && n.default.is_none() {
        return Err(Error::invalid_workflow(
            Some(id),
            "cases",
            "a branch needs at least one case or a default",
        ));
    }
    if let Some(t) = n.timeout_ms {
        check_range(id, "timeoutMs", t, 1, MAX_TIMEOUT_MS)?;
    }
    if let Some(r) = &n.retry {
        check_range(
            id,
            "retry.maxAttempts",
            r.max_attempts as u64,
            1,
            MAX_ATTEMPTS as u64,
        )?;
        check_range(id, "retry.backoffMs", r.backoff_ms, 0, MAX_BACKOFF_MS)?;
        let m = r.backoff_multiplier;
        if !m.is_finite() || !(1.0..=MAX_BACKOFF_MULTIPLIER).contains(&m) {
            return Err(Error::invalid_workflow(
                Some(id),
                "retry.backoffMultiplier",
                format!("{m} is out of range 1..={MAX_BACKOFF_MULTIPLIER}"),
            ));
        }
    }
    if let Some(v) = n.max_visits {
        check_range(id, "maxVisits", v, 1, MAX_LIMIT)?;
    }
    Ok(name)
}

/// Stable Kahn topological sort; `Err(node)` names a node on a cycle.
fn topo_sort(n: usize, deps: &[Vec<Dep>]) -> std::result::Result<Vec<usize>, usize> {
    let mut indegree = vec![0usize; n];
    let mut children = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for d in ds {
            indegree[i] += 1;
            children[d.from].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &children[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err((0..n).find(|&i| indegree[i] > 0).unwrap_or(0))
    }
}

/// `reach[i]` = set of ancestors of i (nodes it transitively depends on), including i.
fn ancestors_of(target: usize, deps: &[Vec<Dep>]) -> HashSet<usize> {
    let mut seen = HashSet::from([target]);
    let mut stack = vec![target];
    while let Some(i) = stack.pop() {
        for d in &deps[i] {
            if seen.insert(d.from) {
                stack.push(d.from);
            }
        }
    }
    seen
}

fn descendants_of(source: usize, children: &[Vec<usize>]) -> HashSet<usize> {
    let mut seen = HashSet::from([source]);
    let mut stack = vec![source];
    while let Some(i) = stack.pop() {
        for &c in &children[i] {
            if seen.insert(c) {
                stack.push(c);
            }
        }
    }
    seen
}

pub(crate) fn compile(spec: WorkflowSpec) -> Result<Compiled> {
    check_name(None, "name", &spec.name)?;
    if spec.nodes.is_empty() {
        return Err(Error::invalid_workflow(
            None,
            "nodes",
            "a workflow needs at least one node",
        ));
    }
    if spec.nodes.len() > MAX_NODES {
        return Err(Error::invalid_workflow(
            None,
            "nodes",
            format!("{} nodes; the limit is {MAX_NODES}", spec.nodes.len()),
        ));
    }
    if let Some(s) = spec.max_steps {
        if s == 0 || s > MAX_LIMIT {
            return Err(Error::invalid_workflow(
                None,
                "maxSteps",
                format!("{s} is out of range 1..={MAX_LIMIT}"),
            ));
        }
    }

    let mut index = HashMap::with_capacity(spec.nodes.len());
    let mut names = Vec::with_capacity(spec.nodes.len());
    for (i, n) in spec.nodes.iter().enumerate() {
        check_id(&n.id)?;
        if index.insert(n.id.clone(), i).is_some() {
            return Err(Error::invalid_workflow(
                Some(&n.id),
                "id",
                "duplicate node id",
            ));
        }
        names.push(check_node_fields(n)?);
    }
    let lookup = |node: &str, field: &str, target: &str| -> Result<usize> {
        index.get(target).copied().ok_or_else(|| {
            Error::invalid_workflow(Some(node), field, format!("unknown node '{target}'"))
        })
    };

    // Explicit `after` edges.
    let count = spec.nodes.len();
    let mut deps: Vec<Vec<Dep>> = vec![Vec::new(); count];
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, n) in spec.nodes.iter().enumerate() {
        for (k, a) in n.after.iter().enumerate() {
            let field = format!("after[{k}]");
            let from = lookup(&n.id, &field, a)?;
            if from == i {
                return Err(Error::invalid_workflow(
                    Some(&n.id),
                    &field,
                    "a node cannot run after itself",
                ));
            }
            if after[i].contains(&from) {
                return Err(Error::invalid_workflow(
                    Some(&n.id),
                    &field,
                    format!("'{a}' is listed twice"),
                ));
            }
            after[i].push(from);
            deps[i].push(Dep {
                from,
                conditional: false,
            });
        }
    }
    if let Err(on_cycle) = topo_sort(count, &deps) {
        return Err(Error::invalid_workflow(
            Some(&spec.nodes[on_cycle].id),
            "after",
            "cycle through 'after' edges; loops are only allowed through a branch's goto",
        ));
    }

    // Branch targets: forward gotos become conditional dependencies, backward gotos are loops.
    let mut branch_targets: Vec<Vec<(String, usize)>> = vec![Vec::new(); count];
    let mut back_edges: Vec<(usize, usize, String)> = Vec::new();
    for (b, n) in spec.nodes.iter().enumerate() {
        if n.kind != NodeKind::Branch {
            continue;
        }
        let mut targets: Vec<(String, String)> = n
            .cases
            .iter()
            .enumerate()
            .map(|(k, c)| (format!("cases[{k}].goto"), c.goto.clone()))
            .collect();
        if let Some(d) = &n.default {
            targets.push(("default".to_owned(), d.clone()));
        }
        let ancestors = ancestors_of(b, &deps);
        for (field, target) in targets {
            let t = lookup(&n.id, &field, &target)?;
            branch_targets[b].push((field.clone(), t));
            if ancestors.contains(&t) {
                back_edges.push((b, t, field));
            } else if let Some(d) = deps[t].iter_mut().find(|d| d.from == b) {
                d.conditional = true;
            } else {
                deps[t].push(Dep {
                    from: b,
                    conditional: true,
                });
            }
        }
    }
    let topo = topo_sort(count, &deps).map_err(|on_cycle| {
        Error::invalid_workflow(
            Some(&spec.nodes[on_cycle].id),
            "after",
            "gotos form a cycle that does not return to an ancestor of the branch",
        )
    })?;

    // A node that waits for a branch must be one of its targets, or it could never run.
    for (i, n) in spec.nodes.iter().enumerate() {
        for (k, a) in n.after.iter().enumerate() {
            let from = index[a];
            if spec.nodes[from].kind == NodeKind::Branch
                && !branch_targets[from].iter().any(|(_, t)| *t == i)
            {
                return Err(Error::invalid_workflow(
                    Some(&n.id),
                    &format!("after[{k}]"),
                    format!("unreachable: branch '{a}' never routes to this node (add it as a goto target of '{a}')"),
                ));
            }
        }
    }

    let mut children = vec![Vec::new(); count];
    for (i, ds) in deps.iter().enumerate() {
        for d in ds {
            children[d.from].push(i);
        }
    }

    // Loop bodies and their bounds.
    let mut loops: Vec<HashMap<usize, Vec<usize>>> = (0..count).map(|_| HashMap::new()).collect();
    for (b, t, field) in back_edges {
        let anc = ancestors_of(b, &deps);
        let desc = descendants_of(t, &children);
        let mut body: Vec<usize> = anc.intersection(&desc).copied().collect();
        body.sort_unstable();
        let bounded =
            spec.max_steps.is_some() || body.iter().any(|&i| spec.nodes[i].max_visits.is_some());
        if !bounded {
            return Err(Error::invalid_workflow(
                Some(&spec.nodes[b].id),
                &field,
                format!(
                    "unbounded cycle back to '{}': set maxVisits on a node of the loop or maxSteps on the workflow",
                    spec.nodes[t].id
                ),
            ));
        }
        loops[b].insert(t, body);
    }

    let mut nodes = Vec::with_capacity(count);
    for (i, n) in spec.nodes.iter().enumerate() {
        let branch = if n.kind == NodeKind::Branch {
            let mut cases = Vec::with_capacity(n.cases.len());
            for (k, c) in n.cases.iter().enumerate() {
                let cond = Condition::compile(&c.when, &index, &format!("cases[{k}].when"))
                    .map_err(|(field, msg)| Error::invalid_workflow(Some(&n.id), &field, msg))?;
                cases.push((cond, index[&c.goto]));
            }
            Some(BranchDef {
                cases,
                default: n.default.as_ref().map(|d| index[d]),
                loops: std::mem::take(&mut loops[i]),
            })
        } else {
            None
        };
        nodes.push(CompiledNode {
            id: n.id.as_str().into(),
            kind: n.kind,
            name: names[i].clone(),
            prompt: n.prompt.clone(),
            deps: std::mem::take(&mut deps[i]),
            after: std::mem::take(&mut after[i]),
            timeout_ms: n.timeout_ms,
            retry: n.retry.as_ref().map(|r| RetryPolicy {
                max_attempts: r.max_attempts,
                backoff_ms: r.backoff_ms,
                multiplier: r.backoff_multiplier,
            }),
            max_visits: n.max_visits,
            branch,
        });
    }
    let terminal = (0..count)
        .filter(|&i| nodes[i].kind != NodeKind::Branch && children[i].is_empty())
        .collect();
    let hash = blake3::hash(canonical_spec_json(&spec).as_bytes())
        .to_hex()
        .to_string();
    let mut topo_pos = vec![0; count];
    for (p, &i) in topo.iter().enumerate() {
        topo_pos[i] = p;
    }
    Ok(Compiled {
        max_steps: spec.max_steps,
        spec,
        hash,
        nodes,
        index,
        topo,
        topo_pos,
        children,
        terminal,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::error::ErrorDetail;
    use crate::model::workflow::Workflow;

    fn err(v: serde_json::Value) -> (Option<String>, String, String) {
        let e = Workflow::from_value(v).expect_err("should be invalid");
        assert_eq!(e.code(), "INVALID_WORKFLOW", "{e}");
        match e.detail() {
            Some(ErrorDetail::Workflow { node, field }) => {
                (node.clone(), field.clone(), e.message().to_owned())
            }
            other => panic!("no workflow detail: {other:?}"),
        }
    }

    fn agent(id: &str, after: &[&str]) -> serde_json::Value {
        json!({"id": id, "type": "agent", "agent": "a", "after": after})
    }

    #[test]
    fn rejects_structural_mistakes() {
        let (n, f, _) = err(json!({"name": "w", "nodes": []}));
        assert_eq!((n, f.as_str()), (None, "nodes"));
        let (n, f, _) = err(json!({"name": "w", "nodes": [agent("a", &[]), agent("a", &[])]}));
        assert_eq!((n.as_deref(), f.as_str()), (Some("a"), "id"));
        let (n, f, m) = err(json!({"name": "w", "nodes": [agent("a", &["zz"])]}));
        assert_eq!((n.as_deref(), f.as_str()), (Some("a"), "after[0]"));
        assert!(m.contains("unknown node 'zz'"));
        let (n, f, _) =
            err(json!({"name": "w", "nodes": [agent("a", &["b"]), agent("b", &["a"])]}));
        assert_eq!(f, "after");
        assert!(n.is_some());
        let (n, f, _) = err(json!({"name": "w", "nodes": [{"id": "a", "type": "agent"}]}));
        assert_eq!((n.as_deref(), f.as_str()), (Some("a"), "agent"));
    }

    #[test]
    fn rejects_bad_numbers_and_names() {
        let (n, f, _) = err(
            json!({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "timeoutMs": -5}]}),
        );
        assert_eq!((n.as_deref(), f.as_str()), (Some("a"), "timeoutMs"));
        let (_, f, _) = err(
            json!({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "timeoutMs": 1e30}]}),
        );
        assert_eq!(f, "timeoutMs");
        let (_, f, _) = err(
            json!({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "retry": {"maxAttempts": 0}}]}),
        );
        assert_eq!(f, "retry.maxAttempts");
        let (_, f, _) = err(
            json!({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "retry": {"maxAttempts": 2, "backoffMultiplier": 0.5}}]}),
        );
        assert_eq!(f, "retry.backoffMultiplier");
        let long = "x".repeat(200);
        let (_, f, _) =
            err(json!({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": long}]}));
        assert_eq!(f, "agent");
        let (_, f, _) =
            err(json!({"name": "w", "nodes": [{"id": "a/b", "type": "agent", "agent": "x"}]}));
        assert_eq!(f, "id");
        let (_, f, _) = err(json!({"name": "w", "nodes": [{"id": "a", "type": "robot"}]}));
        assert_eq!(f, "type");
        let (_, f, _) = err(
            json!({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "colour": 1}]}),
        );
        assert_eq!(f, "colour");
    }

    #[test]
    fn rejects_unbounded_cycles_and_unreachable_nodes() {
        let loop_wf = |max_visits: Option<u64>| {
            let mut draft = json!({"id": "draft", "type": "agent", "agent": "w"});
            if let Some(m) = max_visits {
                draft["maxVisits"] = json!(m);
            }
            json!({"name": "w", "nodes": [draft,
                {"id": "route", "type": "branch", "after": ["draft"],
                 "cases": [{"when": {"path": "/outputs/draft/ok", "eq": false}, "goto": "draft"}], "default": "done"},
                agent("done", &[])]})
        };
        let (n, f, m) = err(loop_wf(None));
        assert_eq!((n.as_deref(), f.as_str()), (Some("route"), "cases[0].goto"));
        assert!(m.contains("unbounded cycle"), "{m}");
        Workflow::from_value(loop_wf(Some(3))).expect("bounded loop is valid");

        let (n, f, m) = err(json!({"name": "w", "nodes": [agent("a", &[]),
            {"id": "b", "type": "branch", "after": ["a"], "default": "c"},
            agent("c", &[]), agent("d", &["b"])]}));
        assert_eq!((n.as_deref(), f.as_str()), (Some("d"), "after[0]"));
        assert!(m.contains("unreachable"));
    }

    #[test]
    fn rejects_bad_conditions() {
        let wf = |when: serde_json::Value| {
            json!({"name": "w", "nodes": [agent("a", &[]),
                {"id": "b", "type": "branch", "after": ["a"], "cases": [{"when": when, "goto": "c"}]}, agent("c", &[])]})
        };
        let (n, f, _) = err(wf(json!({"path": "/outputs/a/x", "matches": "(unclosed"})));
        assert_eq!(
            (n.as_deref(), f.as_str()),
            (Some("b"), "cases[0].when.matches")
        );
        let (_, f, _) = err(wf(json!({"path": "/outputs/nobody/x", "eq": 1})));
        assert_eq!(f, "cases[0].when.path");
        let (_, f, _) = err(wf(json!({"all": [{"path": "/input/x", "frob": 1}]})));
        assert_eq!(f, "cases[0].when.all[0]");
        let (_, f, _) = err(wf(json!({"path": "/input/x", "in": 3})));
        assert_eq!(f, "cases[0].when.in");
    }

    #[test]
    fn canonical_json_and_hash_are_stable() {
        let a =
            Workflow::from_json(r#"{"nodes":[{"type":"agent","id":"a","agent":"x"}],"name":"w"}"#)
                .unwrap();
        let b = Workflow::from_json(r#"{ "name": "w", "nodes": [ {"id": "a", "agent": "x", "type": "agent", "after": []} ] }"#).unwrap();
        assert_eq!(
            a.to_json(),
            r#"{"name":"w","nodes":[{"id":"a","type":"agent","agent":"x"}]}"#
        );
        assert_eq!(a.hash(), b.hash());
    }
}
