//! Sub-workflows: a `workflow` node runs another workflow as part of this one. The child is
//! flattened into the parent's graph when the workflow compiles, so its activations are
//! ordinary activations of the parent run, in the parent's log, under prefixed node ids
//! (`research/search`): replay, resume, fork, inspect and every host's driver handle them as
//! they handle any node, and the canonical log stays the same in every host.
//!
//! A workflow node `w` becomes three parts, in declaration order:
//! - an *entry* (`workflowStarted`), which takes `w`'s `after` and the branch gotos to `w`;
//! - the child's nodes, ids prefixed `w/`. Its roots run after the entry. Its paths are
//!   rewritten: `/outputs/x` becomes `/outputs/w~1x`, and `/input…` becomes `w`'s `input`
//!   path;
//! - an *exit* with `w`'s own id (`workflowCompleted`), after the child's terminal nodes. Its
//!   output, what `after: ["w"]` and `/outputs/w` see, is the child's run output: its
//!   completed terminal nodes' outputs by (unprefixed) id.
//!
//! The recorded workflow (`runStarted`) and its hash are the nested definition as written.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::workflow::{NodeKind, NodeSpec, WorkflowSpec};
use crate::error::{Error, Result};

/// Deepest nesting of workflows in workflows.
pub const MAX_DEPTH: usize = 8;
/// The suffix of an entry's lookup name (`w/^`): not a valid node id, so no user can name it.
pub(crate) const ENTRY: &str = "/^";

/// What a flattened node stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubRole {
    /// The start of workflow node `id`, running `workflow`.
    Entry { workflow: Arc<str> },
    /// The end of a workflow node, whose output its child's terminal outputs are; `prefix`
    /// is what its child's node ids start with (`w/`).
    Exit {
        workflow: Arc<str>,
        prefix: Arc<str>,
    },
}

/// A workflow's nodes with every workflow node flattened.
pub(crate) struct Flat {
    pub nodes: Vec<NodeSpec>,
    /// Per node: its sub-workflow role, and the path its run input comes from (child nodes).
    pub roles: Vec<Option<SubRole>>,
    pub inputs: Vec<Option<String>>,
    /// A sub-workflow's node: its `reads` as written in its own workflow (what its
    /// activations' `reads` are keyed by).
    pub written_reads: Vec<Option<Vec<String>>>,
}

/// `spec`'s nodes, flattened (the nodes as written when it has no workflow nodes).
///
/// Errors: `INVALID_WORKFLOW` naming the workflow node and the field (`workflow`, `input`, or
/// the child's own error).
pub(crate) fn flatten(spec: &WorkflowSpec, depth: usize) -> Result<Flat> {
    let mut flat = Flat {
        nodes: Vec::with_capacity(spec.nodes.len()),
        roles: Vec::new(),
        inputs: Vec::new(),
        written_reads: Vec::new(),
    };
    let workflows: HashSet<&str> = spec
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Workflow)
        .map(|n| n.id.as_str())
        .collect();
    let entry_of = |target: &str| {
        if workflows.contains(target) {
            format!("{target}{ENTRY}")
        } else {
            target.to_owned()
        }
    };
    for n in &spec.nodes {
        if n.kind != NodeKind::Workflow {
            let mut m = n.clone();
            // A goto to a workflow node enters it.
            for c in &mut m.cases {
                c.goto = entry_of(&c.goto);
            }
            m.default = m.default.as_deref().map(entry_of);
            flat.push(m, None, None);
            continue;
        }
        let fail = |field: &str, msg: String| Error::invalid_workflow(Some(&n.id), field, msg);
        let Some(child) = n.workflow.as_deref() else {
            return Err(fail(
                "workflow",
                "workflow nodes need the workflow to run".into(),
            ));
        };
        if depth + 1 > MAX_DEPTH {
            return Err(fail(
                "workflow",
                format!("workflows nest deeper than {MAX_DEPTH}"),
            ));
        }
        for (field, set) in [
            ("maxSteps", child.max_steps.is_some()),
            ("budget", child.budget.is_some()),
            ("agentBudgets", !child.agent_budgets.is_empty()),
            ("budgetWarnings", child.budget_warnings.is_some()),
        ] {
            if set {
                return Err(fail(
                    &format!("workflow.{field}"),
                    "a sub-workflow runs within its parent's steps and budgets: set this on the parent (node budgets inside it apply)".into(),
                ));
            }
        }
        // The child on its own first: its errors name its own nodes.
        let compiled = super::validate::compile_nested(child.clone(), depth + 1).map_err(|e| {
            fail(
                "workflow",
                format!("in workflow '{}': {}", child.name, e.message()),
            )
        })?;
        let input = n.input.clone().unwrap_or_else(|| "/input".to_owned());
        check_input(n, &input)?;
        let prefix = format!("{}/", n.id);
        let name: Arc<str> = child.name.as_str().into();
        let entry = format!("{}{ENTRY}", n.id);
        let mut start = NodeSpec::new(&entry, NodeKind::Workflow);
        start.after = n.after.clone();
        flat.push(
            start,
            Some(SubRole::Entry {
                workflow: name.clone(),
            }),
            None,
        );
        let inner = flatten(child, depth + 1)?;
        // Roots: child nodes nothing leads to (no `after`, no goto to them).
        let targets: HashSet<&str> = inner
            .nodes
            .iter()
            .flat_map(|c| {
                c.cases
                    .iter()
                    .map(|k| k.goto.as_str())
                    .chain(c.default.as_deref())
            })
            .collect();
        let rw = Rewrite {
            prefix: &prefix,
            input: &input,
        };
        for (i, c) in inner.nodes.iter().enumerate() {
            let mut m = c.clone();
            let root = c.after.is_empty() && !targets.contains(c.id.as_str());
            m.id = format!("{prefix}{}", c.id);
            m.after = if root {
                vec![entry.clone()]
            } else {
                c.after.iter().map(|a| format!("{prefix}{a}")).collect()
            };
            for k in &mut m.cases {
                k.goto = format!("{prefix}{}", k.goto);
                rw.condition(&mut k.when);
            }
            m.default = c.default.as_ref().map(|d| format!("{prefix}{d}"));
            m.over = c.over.as_deref().map(|p| rw.path(p));
            m.reads = c.reads.iter().map(|p| rw.path(p)).collect();
            let run_input = match &inner.inputs[i] {
                Some(p) => rw.path(p),
                None => input.clone(),
            };
            let written = inner.written_reads[i]
                .clone()
                .unwrap_or_else(|| c.reads.clone());
            flat.push(m, inner.roles[i].clone(), Some(run_input));
            *flat.written_reads.last_mut().expect("pushed") = Some(written);
        }
        let mut end = NodeSpec::new(&n.id, NodeKind::Workflow);
        end.after = compiled
            .terminal
            .iter()
            .map(|&t| format!("{prefix}{}", compiled.nodes[t].id))
            .collect();
        end.max_visits = n.max_visits;
        flat.push(
            end,
            Some(SubRole::Exit {
                workflow: name,
                prefix: prefix.as_str().into(),
            }),
            None,
        );
    }
    Ok(flat)
}

impl Flat {
    fn push(&mut self, node: NodeSpec, role: Option<SubRole>, input: Option<String>) {
        self.nodes.push(node);
        self.roles.push(role);
        self.inputs.push(input);
        self.written_reads.push(None);
    }
}

/// A workflow node's `input`: `/input…`, or the output of a node it runs after.
fn check_input(n: &NodeSpec, input: &str) -> Result<()> {
    let tokens = super::condition::pointer_tokens(input);
    let ok = match tokens.as_deref() {
        Some([root, ..]) if root == "input" => true,
        Some([root, node, ..]) if root == "outputs" => n.after.iter().any(|a| a == node),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(Error::invalid_workflow(
        Some(&n.id),
        "input",
        format!("'{input}' must be /input… or /outputs/<node>… of a node listed in 'after'"),
    ))
}

/// How a child's paths read in its parent.
struct Rewrite<'a> {
    /// What the child's node ids get in front (`w/`).
    prefix: &'a str,
    /// The parent path the child's `/input` stands for.
    input: &'a str,
}

impl Rewrite<'_> {
    /// `/input…` → the input path; `/outputs/x…`, `/visits/x` → the prefixed node. Anything
    /// else is left for the validator to report.
    fn path(&self, text: &str) -> String {
        if let Some(rest) = text.strip_prefix("/input") {
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{rest}", self.input);
            }
        }
        for root in ["/outputs/", "/visits/"] {
            if let Some(rest) = text.strip_prefix(root) {
                let escaped = self.prefix.replace('~', "~0").replace('/', "~1");
                return format!("{root}{escaped}{rest}");
            }
        }
        text.to_owned()
    }

    /// Rewrite the paths of a branch condition (`all`, `any`, `not`, tests).
    fn condition(&self, when: &mut Value) {
        let Some(obj) = when.as_object_mut() else {
            return;
        };
        for key in ["all", "any"] {
            if let Some(Value::Array(items)) = obj.get_mut(key) {
                items.iter_mut().for_each(|c| self.condition(c));
            }
        }
        if let Some(c) = obj.get_mut("not") {
            self.condition(c);
        }
        if let Some(Value::String(p)) = obj.get_mut("path") {
            *p = self.path(p);
        }
    }
}
