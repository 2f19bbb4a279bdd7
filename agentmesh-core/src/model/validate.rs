//! Validation of a [`WorkflowSpec`] into the compiled form. Every error names the node and field.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::limits::MAX_VALUE_DEPTH;
use std::sync::Arc;

use super::condition::Condition;
use super::workflow::*;
use super::workflow::{ActivationKind, ItemFailure, MapDef};
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
        NodeKind::Map => match (n.agent.as_deref(), n.tool.as_deref()) {
            (Some(a), None) => {
                check_name(Some(id), "agent", a)?;
                a.into()
            }
            (None, Some(t)) => {
                check_name(Some(id), "tool", t)?;
                t.into()
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid_workflow(
                    Some(id),
                    "tool",
                    "a map runs an agent or a tool, not both",
                ))
            }
            (None, None) => {
                return Err(Error::invalid_workflow(
                    Some(id),
                    "agent",
                    "map nodes need the agent (or tool) that runs each item",
                ))
            }
        },
        NodeKind::Human | NodeKind::Branch | NodeKind::Workflow => id.into(),
    };
    let sub = n.kind == NodeKind::Workflow;
    forbid(n, "workflow", !sub && n.workflow.is_some())?;
    forbid(n, "input", !sub && n.input.is_some())?;
    if sub {
        for (field, set) in [
            ("agent", n.agent.is_some()),
            ("tool", n.tool.is_some()),
            ("prompt", n.prompt.is_some()),
            ("timeoutMs", n.timeout_ms.is_some()),
            ("retry", n.retry.is_some()),
            ("budget", n.budget.is_some()),
            ("reads", !n.reads.is_empty()),
            ("output", n.output.is_some()),
            ("cases", !n.cases.is_empty()),
            ("default", n.default.is_some()),
        ] {
            forbid(n, field, set)?;
        }
    }
    let map = n.kind == NodeKind::Map;
    forbid(
        n,
        "agent",
        !matches!(n.kind, NodeKind::Agent | NodeKind::Map) && n.agent.is_some(),
    )?;
    forbid(
        n,
        "tool",
        !matches!(n.kind, NodeKind::Tool | NodeKind::Map) && n.tool.is_some(),
    )?;
    forbid(n, "over", !map && n.over.is_some())?;
    forbid(n, "itemKey", !map && n.item_key.is_some())?;
    forbid(n, "maxItems", !map && n.max_items.is_some())?;
    forbid(n, "concurrency", !map && n.concurrency.is_some())?;
    forbid(n, "onItemFailure", !map && n.on_item_failure.is_some())?;
    forbid(
        n,
        "output",
        n.kind == NodeKind::Branch && n.output.is_some(),
    )?;
    forbid(
        n,
        "reads",
        n.kind == NodeKind::Branch && !n.reads.is_empty(),
    )?;
    if map && n.over.is_none() {
        return Err(Error::invalid_workflow(
            Some(id),
            "over",
            "map nodes need the path of the array to map over (like /outputs/plan/items)",
        ));
    }
    if let Some(m) = n.max_items {
        check_range(id, "maxItems", m, 1, MAX_ITEMS)?;
    }
    if let Some(c) = n.concurrency {
        check_range(id, "concurrency", c, 1, MAX_ITEMS)?;
    }
    if let Some(k) = &n.item_key {
        if !k.starts_with('/') || k.len() > 1024 {
            return Err(Error::invalid_workflow(
                Some(id),
                "itemKey",
                format!(
                    "'{}' is not a JSON Pointer into an item (like /id)",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    if n.reads.len() > MAX_READS {
        return Err(Error::invalid_workflow(
            Some(id),
            "reads",
            format!("lists {} paths; the limit is {MAX_READS}", n.reads.len()),
        ));
    }
    for (k, r) in n.reads.iter().enumerate() {
        if n.reads[..k].contains(r) {
            return Err(Error::invalid_workflow(
                Some(id),
                &format!("reads[{k}]"),
                format!("'{r}' is listed twice"),
            ));
        }
    }
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
    forbid(n, "budget", host_less && n.budget.is_some())?;
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
        if r.non_retryable.len() > MAX_NON_RETRYABLE {
            return Err(Error::invalid_workflow(
                Some(id),
                "retry.nonRetryable",
                format!(
                    "lists {} error types; the limit is {MAX_NON_RETRYABLE}",
                    r.non_retryable.len()
                ),
            ));
        }
        for (k, t) in r.non_retryable.iter().enumerate() {
            let field = format!("retry.nonRetryable[{k}]");
            check_name(Some(id), &field, t)?;
            if r.non_retryable[..k].contains(t) {
                return Err(Error::invalid_workflow(
                    Some(id),
                    &field,
                    format!("'{t}' is listed twice"),
                ));
            }
        }
    }
    if let Some(v) = n.max_visits {
        check_range(id, "maxVisits", v, 1, MAX_LIMIT)?;
    }
    Ok(name)
}

/// Stable Kahn topological sort; `Err(node)` names a node on a cycle.
/// The workflow-level budget fields: agent names, and warning thresholds from 1 to 100 %,
/// increasing.
fn check_budgets(spec: &WorkflowSpec) -> Result<()> {
    for name in spec.agent_budgets.keys() {
        check_name(None, &format!("agentBudgets.{name}"), name)?;
    }
    if let Some(w) = &spec.budget_warnings {
        for (k, &t) in w.iter().enumerate() {
            let field = format!("budgetWarnings[{k}]");
            if !(1..=100).contains(&t) {
                return Err(Error::invalid_workflow(
                    None,
                    &field,
                    format!("{t} is not a percentage from 1 to 100"),
                ));
            }
            if k > 0 && w[k - 1] >= t {
                return Err(Error::invalid_workflow(
                    None,
                    &field,
                    "thresholds must increase",
                ));
            }
        }
    }
    Ok(())
}

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

/// A topological order of a growing DAG (Pearce and Kelly's dynamic topological sort), so
/// that "is `t` an ancestor of `b`?" costs O(1) when `t` comes after `b`, and otherwise only
/// the nodes between them. It keeps workflow validation linear for the usual shapes (gotos
/// to later nodes, loops back over their own bodies) instead of one graph walk per branch.
struct DynamicOrder {
    /// Position of each node.
    pos: Vec<usize>,
    /// Node at each position.
    at: Vec<usize>,
    /// Dependents of each node (the reverse of `deps`), kept in step with edge insertions.
    children: Vec<Vec<usize>>,
    /// Visit marks, by node: equal to `epoch` when visited in the current search.
    mark: Vec<u64>,
    epoch: u64,
}

impl DynamicOrder {
    fn new(order: &[usize], deps: &[Vec<Dep>]) -> DynamicOrder {
        let mut pos = vec![0; order.len()];
        for (p, &i) in order.iter().enumerate() {
            pos[i] = p;
        }
        let mut children = vec![Vec::new(); order.len()];
        for (i, ds) in deps.iter().enumerate() {
            for d in ds {
                children[d.from].push(i);
            }
        }
        DynamicOrder {
            pos,
            at: order.to_vec(),
            children,
            mark: vec![0; order.len()],
            epoch: 0,
        }
    }

    /// Nodes that reach `b` through `deps` (`b` included) among positions `>= lower`.
    fn ancestors_from(&mut self, b: usize, lower: usize, deps: &[Vec<Dep>]) -> Vec<usize> {
        self.epoch += 1;
        let mut found = vec![b];
        self.mark[b] = self.epoch;
        let mut stack = vec![b];
        while let Some(i) = stack.pop() {
            for d in &deps[i] {
                let f = d.from;
                if self.mark[f] != self.epoch && self.pos[f] >= lower {
                    self.mark[f] = self.epoch;
                    found.push(f);
                    stack.push(f);
                }
            }
        }
        found
    }

    /// Whether `t` is an ancestor of `b` (or `b` itself) in the graph `deps`.
    fn is_ancestor(&mut self, t: usize, b: usize, deps: &[Vec<Dep>]) -> bool {
        if t == b {
            return true;
        }
        if self.pos[t] > self.pos[b] {
            return false;
        }
        let lower = self.pos[t];
        self.ancestors_from(b, lower, deps);
        self.mark[t] == self.epoch
    }

    /// Record the new edge `from → to` (`to` depends on `from`; `to` is not an ancestor of
    /// `from`, so the graph stays acyclic), reordering the nodes between them if needed.
    fn add_edge(&mut self, from: usize, to: usize, deps: &[Vec<Dep>]) {
        self.children[from].push(to);
        let (lower, upper) = (self.pos[to], self.pos[from]);
        if lower > upper {
            return;
        }
        // Nodes between the two that must move: those reaching `from` (δB, from the
        // backward search) and those reachable from `to` (δF). δB goes first.
        let mut back = self.ancestors_from(from, lower, deps);
        let back_epoch = self.epoch;
        self.epoch += 1;
        let mut fwd = vec![to];
        self.mark[to] = self.epoch;
        let mut stack = vec![to];
        while let Some(i) = stack.pop() {
            for &c in &self.children[i] {
                if self.mark[c] != self.epoch && self.mark[c] != back_epoch && self.pos[c] <= upper
                {
                    self.mark[c] = self.epoch;
                    fwd.push(c);
                    stack.push(c);
                }
            }
        }
        back.sort_unstable_by_key(|&i| self.pos[i]);
        fwd.sort_unstable_by_key(|&i| self.pos[i]);
        let mut slots: Vec<usize> = back.iter().chain(&fwd).map(|&i| self.pos[i]).collect();
        slots.sort_unstable();
        for (node, slot) in back.into_iter().chain(fwd).zip(slots) {
            self.pos[node] = slot;
            self.at[slot] = node;
        }
    }
}

/// The loop body of the back edge `branch → target`: the nodes on paths target → branch, in
/// the final graph, sorted. Only nodes between the two in a topological order can be on
/// such a path, so both searches stay inside that window.
fn loop_body(
    target: usize,
    branch: usize,
    deps: &[Vec<Dep>],
    children: &[Vec<usize>],
    topo_pos: &[usize],
    mark: &mut [u8],
) -> Vec<usize> {
    let (lower, upper) = (topo_pos[target], topo_pos[branch]);
    let mut reached = vec![target];
    mark[target] = 1;
    let mut stack = vec![target];
    while let Some(i) = stack.pop() {
        for &c in &children[i] {
            if mark[c] == 0 && topo_pos[c] <= upper {
                mark[c] = 1;
                reached.push(c);
                stack.push(c);
            }
        }
    }
    let mut body = Vec::new();
    if mark[branch] == 1 {
        mark[branch] = 2;
        body.push(branch);
        let mut stack = vec![branch];
        while let Some(i) = stack.pop() {
            for d in &deps[i] {
                if mark[d.from] == 1 && topo_pos[d.from] >= lower {
                    mark[d.from] = 2;
                    body.push(d.from);
                    stack.push(d.from);
                }
            }
        }
    }
    for i in reached {
        mark[i] = 0;
    }
    body.sort_unstable();
    body
}

/// Where a branch condition sits in a workflow document (document → `nodes` → node →
/// `cases` → case → `when`): its own nesting may use what is left of [`MAX_VALUE_DEPTH`].
const WHEN_DEPTH: usize = 5;

pub(crate) fn compile(spec: WorkflowSpec) -> Result<Compiled> {
    compile_nested(spec, 0)
}

/// [`compile`] for a workflow nested `depth` deep in others (sub-workflows).
pub(crate) fn compile_nested(spec: WorkflowSpec, depth: usize) -> Result<Compiled> {
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

    // The nodes as written are checked here; a sub-workflow's, by its own compile (inside
    // `flatten`), before its nodes join these under prefixed ids.
    for n in &spec.nodes {
        check_id(&n.id)?;
        check_node_fields(n)?;
    }
    let flat = super::subflow::flatten(&spec, depth)?;
    let nodes = &flat.nodes;
    if nodes.len() > MAX_NODES {
        return Err(Error::invalid_workflow(
            None,
            "nodes",
            format!(
                "{} nodes with those of its sub-workflows; the limit is {MAX_NODES}",
                nodes.len()
            ),
        ));
    }
    let mut index = HashMap::with_capacity(nodes.len());
    let mut names = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        if index.insert(n.id.clone(), i).is_some() {
            return Err(Error::invalid_workflow(
                Some(&n.id),
                "id",
                "duplicate node id",
            ));
        }
        names.push(match n.kind {
            // An entry or exit: named like its workflow node.
            NodeKind::Workflow => Arc::from(n.id.trim_end_matches(super::subflow::ENTRY)),
            _ => check_node_fields(n)?,
        });
        for (k, c) in n.cases.iter().enumerate() {
            if super::limits::deeper_than(&c.when, MAX_VALUE_DEPTH - WHEN_DEPTH) {
                return Err(Error::invalid_workflow(
                    Some(&n.id),
                    &format!("cases[{k}].when"),
                    format!(
                        "nests arrays/objects deeper than {} (a workflow document may nest {MAX_VALUE_DEPTH} deep)",
                        MAX_VALUE_DEPTH - WHEN_DEPTH
                    ),
                ));
            }
        }
    }
    let lookup = |node: &str, field: &str, target: &str| -> Result<usize> {
        index.get(target).copied().ok_or_else(|| {
            Error::invalid_workflow(Some(node), field, format!("unknown node '{target}'"))
        })
    };

    // Explicit `after` edges.
    let count = nodes.len();
    let mut deps: Vec<Vec<Dep>> = vec![Vec::new(); count];
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); count];
    // `listed[from] == i + 1`: node i already lists `from` (a duplicate check in O(1)).
    let mut listed = vec![0usize; count];
    for (i, n) in nodes.iter().enumerate() {
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
            if listed[from] == i + 1 {
                return Err(Error::invalid_workflow(
                    Some(&n.id),
                    &field,
                    format!("'{a}' is listed twice"),
                ));
            }
            listed[from] = i + 1;
            after[i].push(from);
            deps[i].push(Dep {
                from,
                conditional: false,
            });
        }
    }
    let after_order = topo_sort(count, &deps).map_err(|on_cycle| {
        Error::invalid_workflow(
            Some(&nodes[on_cycle].id),
            "after",
            "cycle through 'after' edges; loops are only allowed through a branch's goto",
        )
    })?;

    // Branch targets, branches in declaration order: a goto to an ancestor of its branch (in
    // the graph so far) is a loop; any other goto makes its target depend on the branch.
    let mut order = DynamicOrder::new(&after_order, &deps);
    let mut routes: HashSet<(usize, usize)> = HashSet::new();
    let mut back_edges: Vec<(usize, usize, String)> = Vec::new();
    for (b, n) in nodes.iter().enumerate() {
        if n.kind != NodeKind::Branch {
            continue;
        }
        let targets = n
            .cases
            .iter()
            .enumerate()
            .map(|(k, c)| (format!("cases[{k}].goto"), &c.goto))
            .chain(n.default.iter().map(|d| ("default".to_owned(), d)));
        // Classify every target against the graph as it was before this branch's own
        // gotos: its outgoing edges cannot make anything an ancestor of it.
        let mut forward = Vec::new();
        for (field, target) in targets {
            let t = lookup(&n.id, &field, target)?;
            routes.insert((b, t));
            if order.is_ancestor(t, b, &deps) {
                back_edges.push((b, t, field));
            } else {
                forward.push(t);
            }
        }
        for t in forward {
            if let Some(d) = deps[t].iter_mut().find(|d| d.from == b) {
                d.conditional = true;
            } else {
                deps[t].push(Dep {
                    from: b,
                    conditional: true,
                });
                order.add_edge(b, t, &deps);
            }
        }
    }
    let topo = topo_sort(count, &deps).map_err(|on_cycle| {
        Error::invalid_workflow(
            Some(&nodes[on_cycle].id),
            "after",
            "gotos form a cycle that does not return to an ancestor of the branch",
        )
    })?;

    // A node that waits for a branch must be one of its targets, or it could never run.
    for (i, n) in nodes.iter().enumerate() {
        for (k, &from) in after[i].iter().enumerate() {
            if nodes[from].kind == NodeKind::Branch && !routes.contains(&(from, i)) {
                let a = &n.after[k];
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
    let mut topo_pos = vec![0; count];
    for (p, &i) in topo.iter().enumerate() {
        topo_pos[i] = p;
    }

    // Loop bodies and their bounds.
    let mut loops: Vec<HashMap<usize, Vec<usize>>> = (0..count).map(|_| HashMap::new()).collect();
    let mut mark = vec![0u8; count];
    for (b, t, field) in back_edges {
        let body = loop_body(t, b, &deps, &children, &topo_pos, &mut mark);
        let bounded =
            spec.max_steps.is_some() || body.iter().any(|&i| nodes[i].max_visits.is_some());
        if !bounded {
            return Err(Error::invalid_workflow(
                Some(&nodes[b].id),
                &field,
                format!(
                    "unbounded cycle back to '{}': set maxVisits on a node of the loop or maxSteps on the workflow",
                    nodes[t].id
                ),
            ));
        }
        loops[b].insert(t, body);
    }

    // The nodes each map runs after, directly or not (its `over` must name one of them).
    let upstream: Vec<HashSet<usize>> = (0..count)
        .map(|i| {
            if nodes[i].kind != NodeKind::Map {
                return HashSet::new();
            }
            let mut found = HashSet::new();
            let mut stack = vec![i];
            while let Some(j) = stack.pop() {
                for d in &deps[j] {
                    if found.insert(d.from) {
                        stack.push(d.from);
                    }
                }
            }
            found
        })
        .collect();
    let mut compiled = Vec::with_capacity(count);
    for (i, n) in nodes.iter().enumerate() {
        let compile_path = |field: &str, text: &str| {
            super::condition::compile_path(text, &index)
                .map_err(|msg| Error::invalid_workflow(Some(&n.id), field, msg))
        };
        let map = match (&n.over, n.kind) {
            (Some(over), NodeKind::Map) => {
                let path = compile_path("over", over)?;
                if path.is_visits() {
                    return Err(Error::invalid_workflow(
                        Some(&n.id),
                        "over",
                        format!("'{over}' is a visit count, not an array"),
                    ));
                }
                if let Some(from) = path.node() {
                    if !upstream[i].contains(&from) {
                        return Err(Error::invalid_workflow(
                            Some(&n.id),
                            "over",
                            format!(
                                "'{over}' reads node '{}', which this map does not run after: add it to 'after'",
                                nodes[from].id
                            ),
                        ));
                    }
                }
                Some(MapDef {
                    over_text: over.as_str().into(),
                    over: path,
                    item_key: n
                        .item_key
                        .as_deref()
                        .and_then(super::condition::pointer_tokens),
                    max_items: n.max_items.unwrap_or(DEFAULT_MAX_ITEMS),
                    concurrency: n.concurrency.map(|c| c as u32),
                    collect: n.on_item_failure == Some(ItemFailure::Collect),
                })
            }
            _ => None,
        };
        let reads = n
            .reads
            .iter()
            .enumerate()
            .map(|(k, r)| {
                // A sub-workflow's node keeps the paths as its author wrote them.
                let written = flat.written_reads[i].as_ref().map_or(r, |w| &w[k]);
                Ok((
                    Arc::from(written.as_str()),
                    compile_path(&format!("reads[{k}]"), r)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match &n.output {
            Some(o) => Some(
                super::output::OutputCheck::compile(&o.schema, o.repair)
                    .map_err(|msg| Error::invalid_workflow(Some(&n.id), "output.schema", msg))?,
            ),
            None => None,
        };
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
        compiled.push(CompiledNode {
            // An entry shows its workflow node's id (its lookup name is internal).
            id: n.id.trim_end_matches(super::subflow::ENTRY).into(),
            kind: n.kind,
            name: names[i].clone(),
            prompt: n.prompt.as_deref().map(Arc::from),
            deps: std::mem::take(&mut deps[i]),
            after: std::mem::take(&mut after[i]),
            timeout_ms: n.timeout_ms,
            retry: n.retry.as_ref().map(|r| RetryPolicy {
                max_attempts: r.max_attempts,
                backoff_ms: r.backoff_ms,
                multiplier: r.backoff_multiplier,
                non_retryable: r
                    .non_retryable
                    .iter()
                    .map(|t| Arc::from(t.as_str()))
                    .collect(),
                retry_programming_errors: r.retry_programming_errors,
            }),
            max_visits: n.max_visits,
            branch,
            budget: n.budget.unwrap_or(crate::budget::Limits::UNLIMITED),
            act: match n.kind {
                NodeKind::Map if n.tool.is_some() => Some(ActivationKind::Tool),
                NodeKind::Map => Some(ActivationKind::Agent),
                kind => kind.activation(),
            },
            map,
            reads,
            output,
            sub: flat.roles[i].clone(),
            input: match &flat.inputs[i] {
                Some(p) => Some(compile_path("input", p)?),
                None => None,
            },
        });
    }
    let terminal = (0..count)
        .filter(|&i| compiled[i].kind != NodeKind::Branch && children[i].is_empty())
        .collect();
    let hash = blake3::hash(canonical_spec_json(&spec).as_bytes())
        .to_hex()
        .to_string();
    check_budgets(&spec)?;
    let has_budgets = spec.budget.is_some()
        || !spec.agent_budgets.is_empty()
        || nodes.iter().any(|n| n.budget.is_some());
    Ok(Compiled {
        has_budgets,
        max_steps: spec.max_steps,
        spec: Arc::new(spec),
        hash,
        nodes: compiled,
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

    /// The branch classification as 0.1 computed it, quadratic and plain: the model that
    /// the linear validation must agree with. Returns per node its dependencies
    /// `(from, conditional)` sorted, the topological order, and per branch its loop bodies;
    /// or the (node, field) of the error.
    #[allow(clippy::type_complexity)]
    fn reference(
        spec: &super::WorkflowSpec,
    ) -> std::result::Result<
        (
            Vec<Vec<(usize, bool)>>,
            Vec<usize>,
            Vec<Vec<(usize, Vec<usize>)>>,
        ),
        (Option<String>, String),
    > {
        use super::{Dep, NodeKind};
        use std::collections::{HashMap, HashSet};
        let index: HashMap<&str, usize> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let count = spec.nodes.len();
        let mut deps: Vec<Vec<Dep>> = vec![Vec::new(); count];
        for (i, n) in spec.nodes.iter().enumerate() {
            for a in &n.after {
                deps[i].push(Dep {
                    from: index[a.as_str()],
                    conditional: false,
                });
            }
        }
        let ancestors = |target: usize, deps: &[Vec<Dep>]| {
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
        };
        let mut back = Vec::new();
        for (b, n) in spec.nodes.iter().enumerate() {
            if n.kind != NodeKind::Branch {
                continue;
            }
            let mut targets: Vec<(String, usize)> = n
                .cases
                .iter()
                .enumerate()
                .map(|(k, c)| (format!("cases[{k}].goto"), index[c.goto.as_str()]))
                .collect();
            if let Some(d) = &n.default {
                targets.push(("default".to_owned(), index[d.as_str()]));
            }
            let anc = ancestors(b, &deps);
            for (field, t) in targets {
                if anc.contains(&t) {
                    back.push((b, t, field));
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
        let topo = super::topo_sort(count, &deps)
            .map_err(|i| (Some(spec.nodes[i].id.clone()), "after".to_owned()))?;
        let mut children = vec![Vec::new(); count];
        for (i, ds) in deps.iter().enumerate() {
            for d in ds {
                children[d.from].push(i);
            }
        }
        let mut loops = vec![Vec::new(); count];
        for (b, t, field) in back {
            let anc = ancestors(b, &deps);
            let mut seen = HashSet::from([t]);
            let mut stack = vec![t];
            while let Some(i) = stack.pop() {
                for &c in &children[i] {
                    if seen.insert(c) {
                        stack.push(c);
                    }
                }
            }
            let mut body: Vec<usize> = anc.intersection(&seen).copied().collect();
            body.sort_unstable();
            let bounded = spec.max_steps.is_some()
                || body.iter().any(|&i| spec.nodes[i].max_visits.is_some());
            if !bounded {
                return Err((Some(spec.nodes[b].id.clone()), field));
            }
            loops[b].push((t, body));
        }
        let deps = deps
            .into_iter()
            .map(|ds| {
                let mut v: Vec<(usize, bool)> =
                    ds.iter().map(|d| (d.from, d.conditional)).collect();
                v.sort_unstable();
                v
            })
            .collect();
        for l in &mut loops {
            l.sort();
            l.dedup();
        }
        Ok((deps, topo, loops))
    }

    proptest::proptest! {
        #[test]
        fn linear_validation_agrees_with_the_plain_model(
            n in 2usize..30,
            perm_seed in proptest::prelude::any::<u64>(),
            edges in proptest::collection::vec((0usize..30, 0usize..30), 0..60),
            branches in proptest::collection::vec((0usize..30, proptest::collection::vec(0usize..30, 1..4), proptest::prelude::any::<bool>()), 0..8),
            bounded in proptest::prelude::any::<bool>(),
        ) {
            // Declaration order differs from a topological one: `after` edges follow a
            // random permutation, so gotos land before and after their branches.
            let mut rank: Vec<usize> = (0..n).collect();
            let mut x = perm_seed | 1;
            for i in (1..n).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                rank.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut nodes: Vec<serde_json::Value> = (0..n)
                .map(|i| json!({"id": format!("n{i}"), "type": "agent", "agent": "a"}))
                .collect();
            let mut is_branch = vec![false; n];
            for (b, targets, default) in &branches {
                let b = b % n;
                is_branch[b] = true;
                let cases: Vec<_> = targets
                    .iter()
                    .map(|t| json!({"when": {"path": "/input", "exists": true}, "goto": format!("n{}", t % n)}))
                    .collect();
                nodes[b] = json!({"id": format!("n{b}"), "type": "branch", "cases": cases});
                if *default {
                    nodes[b]["default"] = json!(format!("n{}", targets[0] % n));
                }
            }
            let mut after: Vec<Vec<String>> = vec![Vec::new(); n];
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                // b after a when a ranks first; never after a branch (that needs a goto).
                if rank[a] < rank[b] && !is_branch[a] && !after[b].contains(&format!("n{a}")) {
                    after[b].push(format!("n{a}"));
                }
            }
            for (i, a) in after.into_iter().enumerate() {
                if !a.is_empty() {
                    nodes[i]["after"] = json!(a);
                }
            }
            let mut doc = json!({"name": "random", "nodes": nodes});
            if bounded {
                doc["maxSteps"] = json!(50);
            }
            let spec: super::WorkflowSpec = serde_json::from_value(doc).unwrap();
            let model = reference(&spec);
            match (super::compile(spec), model) {
                (Ok(c), Ok((deps, topo, loops))) => {
                    for (i, node) in c.nodes.iter().enumerate() {
                        let mut got: Vec<(usize, bool)> =
                            node.deps.iter().map(|d| (d.from, d.conditional)).collect();
                        got.sort_unstable();
                        proptest::prop_assert_eq!(&got, &deps[i], "deps of n{}", i);
                        let mut l: Vec<(usize, Vec<usize>)> = node
                            .branch
                            .as_ref()
                            .map(|b| b.loops.iter().map(|(t, body)| (*t, body.clone())).collect())
                            .unwrap_or_default();
                        l.sort();
                        proptest::prop_assert_eq!(&l, &loops[i], "loops of n{}", i);
                    }
                    proptest::prop_assert_eq!(c.topo, topo);
                }
                (Err(e), Err((node, field))) => {
                    match e.detail() {
                        Some(ErrorDetail::Workflow { node: n2, field: f2 }) => {
                            proptest::prop_assert_eq!((n2.clone(), f2.clone()), (node, field));
                        }
                        other => proptest::prop_assert!(false, "{:?}", other),
                    }
                }
                (Ok(_), Err(m)) => proptest::prop_assert!(false, "the model refused it: {:?}", m),
                (Err(e), Ok(_)) => proptest::prop_assert!(false, "refused: {}", e),
            }
        }
    }

    #[test]
    fn a_hundred_thousand_nodes_with_branches_and_loops_validate() {
        // Every 10th node a branch looping back over the nine before it, and a goto ahead.
        let n = 100_000;
        let nodes: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let id = format!("n{i}");
                let mut node = if i % 10 == 9 {
                    json!({"id": id, "type": "branch", "default": format!("n{}", i + 1),
                           "cases": [{"when": {"path": "/input", "exists": false}, "goto": format!("n{}", i - 9)}]})
                } else {
                    json!({"id": id, "type": "agent", "agent": "a"})
                };
                if i % 10 != 0 && i > 0 {
                    node["after"] = json!([format!("n{}", i - 1)]);
                }
                if i == n - 1 {
                    node = json!({"id": id, "type": "agent", "agent": "a", "after": [format!("n{}", i - 1)]});
                }
                node
            })
            .collect();
        let wf = Workflow::from_value(json!({"name": "big", "maxSteps": 1000000, "nodes": nodes}))
            .expect("valid");
        assert_eq!(wf.node_ids().count(), n);
        let loops: usize = wf
            .compiled()
            .nodes
            .iter()
            .filter_map(|node| node.branch.as_ref())
            .map(|b| b.loops.len())
            .sum();
        assert_eq!(loops, n / 10 - 1);
    }

    #[test]
    fn condition_operands_obey_the_depth_limit() {
        let nested = |levels: usize| {
            let mut v = json!(1);
            for _ in 0..levels {
                v = json!([v]);
            }
            v
        };
        let wf = |operand: serde_json::Value| {
            json!({"name": "w", "nodes": [agent("a", &[]),
                {"id": "b", "type": "branch", "after": ["a"],
                 "cases": [{"when": {"path": "/outputs/a", "eq": operand}, "goto": "c"}]},
                agent("c", &[])]})
        };
        // The `when` object adds one level around its operand.
        Workflow::from_value(wf(nested(super::MAX_VALUE_DEPTH - super::WHEN_DEPTH - 1)))
            .expect("at the limit");
        let (n, f, m) = err(wf(nested(121)));
        assert_eq!(
            (n.as_deref(), f.as_str()),
            (Some("b"), "cases[0].when"),
            "{m}"
        );
    }

    #[test]
    fn map_and_reads_fields_are_checked() {
        let plan = json!({"id": "plan", "type": "agent", "agent": "p"});
        let wf = |node: serde_json::Value| json!({"name": "w", "nodes": [plan.clone(), node]});
        let cases = [
            (
                json!({"id": "m", "type": "map", "over": "/outputs/plan", "after": ["plan"]}),
                "agent",
                "map nodes need the agent",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "tool": "t", "over": "/input"}),
                "tool",
                "not both",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a"}),
                "over",
                "need the path",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/outputs/nope"}),
                "over",
                "unknown node 'nope'",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/outputs/plan/x"}),
                "over",
                "does not run after: add it to 'after'",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/visits/plan", "after": ["plan"]}),
                "over",
                "visit count",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/input", "maxItems": 0}),
                "maxItems",
                "out of range",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/input", "maxItems": 10001}),
                "maxItems",
                "out of range",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/input", "concurrency": 0}),
                "concurrency",
                "out of range",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/input", "itemKey": "id"}),
                "itemKey",
                "JSON Pointer",
            ),
            (
                json!({"id": "m", "type": "map", "agent": "a", "over": "/input", "onItemFailure": "skip"}),
                "onItemFailure",
                "unknown variant",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "over": "/input"}),
                "over",
                "",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "maxItems": 3}),
                "maxItems",
                "",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "reads": ["/outputs/zz"]}),
                "reads[0]",
                "unknown node 'zz'",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "reads": ["/input", "/input"]}),
                "reads[1]",
                "listed twice",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "reads": ["outputs/plan"]}),
                "reads[0]",
                "JSON Pointer",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "output": {"schema": {"type": 5}}}),
                "output.schema",
                "not a usable JSON Schema",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a",
                       "output": {"schema": {"$ref": "file:///etc/passwd"}}}),
                "output.schema",
                "not a usable JSON Schema",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "output": {"repair": true}}),
                "output",
                "missing field `schema`",
            ),
            (
                json!({"id": "m", "type": "branch", "default": "plan", "output": {"schema": {}}}),
                "output",
                "",
            ),
        ];
        for (node, field, says) in cases {
            let (n, f, m) = err(wf(node.clone()));
            assert_eq!(
                (n.as_deref(), f.as_str()),
                (Some("m"), field),
                "{node}: {m}"
            );
            assert!(m.contains(says), "{node}: {m}");
        }
        // A map may map over any node it runs after, directly or not, and over the input.
        let ok = json!({"name": "w", "nodes": [plan,
            {"id": "mid", "type": "agent", "agent": "a", "after": ["plan"]},
            {"id": "m", "type": "map", "tool": "t", "over": "/outputs/plan/items", "after": ["mid"],
             "reads": ["/outputs/mid", "/visits/plan"]},
            {"id": "m2", "type": "map", "agent": "a", "over": "/input/urls", "itemKey": "/url",
             "maxItems": 50, "concurrency": 4, "onItemFailure": "collect"}]});
        let w = Workflow::from_value(ok).unwrap();
        assert_eq!(w.tool_names().into_iter().collect::<Vec<_>>(), ["t"]);
        assert!(w.agent_names().contains("a"));
    }

    #[test]
    fn the_builder_writes_map_nodes_and_reads_like_json() {
        use crate::model::workflow::{ItemFailure, MapOptions, NodeOptions};
        let built = Workflow::builder("w")
            .agent("plan", "p", NodeOptions::default())
            .map_agent(
                "m",
                "r",
                "/outputs/plan/qs",
                MapOptions {
                    item_key: Some("/id".into()),
                    max_items: Some(9),
                    concurrency: Some(2),
                    on_item_failure: Some(ItemFailure::Collect),
                },
                NodeOptions::after(&["plan"]),
            )
            .map_tool(
                "t",
                "fetch",
                "/input/urls",
                MapOptions::default(),
                NodeOptions::default(),
            )
            .agent(
                "w",
                "w",
                NodeOptions {
                    after: vec!["m".into()],
                    reads: vec!["/outputs/t".into()],
                    ..NodeOptions::default()
                },
            )
            .build()
            .unwrap();
        let json = Workflow::from_value(json!({"name": "w", "nodes": [
            {"id": "plan", "type": "agent", "agent": "p"},
            {"id": "m", "type": "map", "agent": "r", "after": ["plan"], "over": "/outputs/plan/qs",
             "itemKey": "/id", "maxItems": 9, "concurrency": 2, "onItemFailure": "collect"},
            {"id": "t", "type": "map", "tool": "fetch", "over": "/input/urls"},
            {"id": "w", "type": "agent", "agent": "w", "after": ["m"], "reads": ["/outputs/t"]}]}))
        .unwrap();
        assert_eq!(built.hash(), json.hash());
    }

    #[test]
    fn workflow_nodes_are_checked_and_their_errors_name_the_node() {
        let child = json!({"name": "c", "nodes": [{"id": "s", "type": "tool", "tool": "t"}]});
        let wf = |node: serde_json::Value| json!({"name": "w", "nodes": [{"id": "plan", "type": "agent", "agent": "p"}, node]});
        let cases = [
            (
                json!({"id": "m", "type": "workflow"}),
                "workflow",
                "need the workflow to run",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": child, "agent": "a"}),
                "agent",
                "",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": child, "retry": {"maxAttempts": 2}}),
                "retry",
                "",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": child, "input": "/outputs/plan"}),
                "input",
                "listed in 'after'",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": child, "input": "/visits/plan"}),
                "input",
                "must be /input",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": {"name": "c", "maxSteps": 3, "nodes": [{"id": "s", "type": "tool", "tool": "t"}]}}),
                "workflow.maxSteps",
                "parent's steps and budgets",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": {"name": "c", "nodes": [{"id": "s", "type": "tool", "tool": "t", "after": ["zz"]}]}}),
                "workflow",
                "in workflow 'c': node 's', field 'after[0]': unknown node 'zz'",
            ),
            (
                json!({"id": "m", "type": "workflow", "workflow": {"name": "c", "nodes": [{"id": "s", "type": "tool", "tool": "t", "reads": ["/outputs/plan"]}]}}),
                "workflow",
                "unknown node 'plan'",
            ),
            (
                json!({"id": "m", "type": "agent", "agent": "a", "workflow": child}),
                "workflow",
                "",
            ),
        ];
        for (node, field, says) in cases {
            let (n, f, m) = err(wf(node.clone()));
            assert_eq!(
                (n.as_deref(), f.as_str()),
                (Some("m"), field),
                "{node}: {m}"
            );
            assert!(m.contains(says), "{node}: {m}");
        }
        // Nesting is bounded.
        let mut deep = child.clone();
        for i in 0..9 {
            deep = json!({"name": format!("c{i}"), "nodes": [{"id": "w", "type": "workflow", "workflow": deep}]});
        }
        let (_, _, m) = err(
            json!({"name": "top", "nodes": [{"id": "w", "type": "workflow", "workflow": deep}]}),
        );
        assert!(m.contains("nest deeper than 8"), "{m}");
        // Flattened: the child's nodes under the node's id, the tool names of every level.
        let w = Workflow::from_value(wf(json!({"id": "m", "type": "workflow", "after": ["plan"],
            "input": "/outputs/plan", "workflow": child})))
        .unwrap();
        assert_eq!(w.tool_names().into_iter().collect::<Vec<_>>(), ["t"]);
        let ids: Vec<&str> = w.compiled().nodes.iter().map(|n| &*n.id).collect();
        assert_eq!(ids, ["plan", "m", "m/s", "m"], "entry, child, exit");
        assert_eq!(w.node_ids().collect::<Vec<_>>(), ["plan", "m/s", "m"]);
    }
}
