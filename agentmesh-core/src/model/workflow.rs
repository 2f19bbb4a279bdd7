//! Workflow definitions: the wire spec ([`WorkflowSpec`]), its validation, and the compiled,
//! immutable [`Workflow`] the orchestrator runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::condition::{Condition, Path as StatePath};
use crate::budget::Limits;
use crate::error::{Error, Result};

/// Longest accepted node id, agent, tool or workflow name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest accepted `timeoutMs` (7 days).
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// Largest accepted `backoffMs`, and the cap of a computed backoff delay (1 day).
pub const MAX_BACKOFF_MS: u64 = 24 * 3600 * 1000;
/// Largest accepted `retry.maxAttempts`.
pub const MAX_ATTEMPTS: u32 = 100;
/// Largest accepted `retry.backoffMultiplier`.
pub const MAX_BACKOFF_MULTIPLIER: f64 = 10.0;
/// Most error types one `retry.nonRetryable` may list.
pub const MAX_NON_RETRYABLE: usize = 100;
/// Largest accepted `maxVisits` and `maxSteps`.
pub const MAX_LIMIT: u64 = 100_000_000;
/// Largest accepted number of nodes.
pub const MAX_NODES: usize = 100_000;
/// Largest accepted `maxItems` of a map node.
pub const MAX_ITEMS: u64 = 10_000;
/// `maxItems` of a map node that sets none.
pub const DEFAULT_MAX_ITEMS: u64 = 1_000;
/// Most `reads` entries one node may list.
pub const MAX_READS: usize = 64;

/// The kind of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeKind {
    /// Work done by an agent the host registered under `agent`.
    Agent,
    /// Work done by a tool the host registered under `tool`.
    Tool,
    /// A person's decision; the run waits until it is resolved.
    Human,
    /// A data-driven choice of successors, evaluated by the core.
    Branch,
    /// One activation of its agent or tool per item of an array (`over`), run side by side;
    /// the node's output is the array of their outputs, in item order (docs/workflow.md).
    Map,
    /// Another workflow (`workflow`, inline) run as part of this one: its nodes run under
    /// this node's id (`research/search`), and its output is its terminal nodes' outputs.
    Workflow,
}

impl NodeKind {
    /// The wire name (`agent`, `tool`, `human`, `branch`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Agent => "agent",
            NodeKind::Tool => "tool",
            NodeKind::Human => "human",
            NodeKind::Branch => "branch",
            NodeKind::Map => "map",
            NodeKind::Workflow => "workflow",
        }
    }

    /// Who performs this node's work, or `None` for nodes the core decides itself and for
    /// map nodes (whose items are performed by the node's agent or tool, whichever it names).
    pub fn activation(self) -> Option<ActivationKind> {
        match self {
            NodeKind::Agent => Some(ActivationKind::Agent),
            NodeKind::Tool => Some(ActivationKind::Tool),
            NodeKind::Human => Some(ActivationKind::Human),
            NodeKind::Branch | NodeKind::Map | NodeKind::Workflow => None,
        }
    }
}

/// Who performs an activation: the host's agents or tools, or a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActivationKind {
    /// An agent registered under the node's `agent` name.
    Agent,
    /// A tool registered under the node's `tool` name.
    Tool,
    /// A person; the run waits until the activation is resolved.
    Human,
}

impl ActivationKind {
    /// The wire name (`agent`, `tool`, `human`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationKind::Agent => "agent",
            ActivationKind::Tool => "tool",
            ActivationKind::Human => "human",
        }
    }
}

/// Retry policy of a node (wire form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySpec {
    /// Total attempts including the first (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds.
    #[serde(default)]
    pub backoff_ms: u64,
    /// Factor applied to the delay after each further attempt (≥ 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub backoff_multiplier: f64,
    /// Error types never retried (Temporal's non-retryable error types), besides the
    /// programming errors of [`PROGRAMMING_ERRORS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<String>,
    /// Retry programming errors too (opt out of [`PROGRAMMING_ERRORS`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_programming_errors: bool,
}

/// Error types that are bugs in the agent's code, not outages: retrying them pays for the
/// same calls again and fails the same way, so a retry policy does not retry them unless
/// `retryProgrammingErrors` is set. Python's and JavaScript's names (Rust panics are never
/// retried). Matched by exact type name, so a subclass with its own name is retried.
pub const PROGRAMMING_ERRORS: &[&str] = &[
    // Python
    "AssertionError",
    "AttributeError",
    "ImportError",
    "IndentationError",
    "IndexError",
    "KeyError",
    "ModuleNotFoundError",
    "NameError",
    "NotImplementedError",
    "SyntaxError",
    "TypeError",
    "UnboundLocalError",
    // JavaScript (TypeError and SyntaxError above)
    "RangeError",
    "ReferenceError",
];

impl Default for RetrySpec {
    /// One attempt, no backoff, the default non-retryable errors.
    fn default() -> RetrySpec {
        RetrySpec {
            max_attempts: 1,
            backoff_ms: 0,
            backoff_multiplier: 1.0,
            non_retryable: Vec::new(),
            retry_programming_errors: false,
        }
    }
}

fn one() -> f64 {
    1.0
}
fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// A node's output contract (wire form; docs/workflow.md, "Structured outputs").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputSpec {
    /// The JSON Schema (draft 2020-12 unless its `$schema` names another).
    pub schema: Value,
    /// Parse text outputs as JSON, repairing what models get wrong (code fences, single
    /// quotes, trailing commas, …), before checking them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

/// What a map node does when one of its items fails for good (after its retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ItemFailure {
    /// The node fails, and the run with it (the default). Items already running in the same
    /// step still finish and are recorded.
    #[default]
    Fail,
    /// The node completes; its output holds `{"ok": true, "output": …}` or
    /// `{"ok": false, "error": {"type", "message"}}` per item.
    Collect,
}

/// One `when`/`goto` pair of a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseSpec {
    /// The condition (see [`crate::model::condition`]).
    pub when: Value,
    /// The node to run when the condition holds.
    pub goto: String,
}

/// One node of a workflow (wire form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique id.
    pub id: String,
    /// Kind of node.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Agent name (agent nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Tool name (tool nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Text shown to the person (human nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Nodes that must finish first (a join when there are several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Deadline of one attempt, enforced by the driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry policy; without one a failure fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Most times this node may be activated in one run (bounds loops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_visits: Option<u64>,
    /// Branch cases, tried in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<CaseSpec>,
    /// Branch target when no case holds; without one, no successor runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What this node's calls may spend, over all its visits and attempts (agent and tool
    /// nodes; docs/budgets.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Limits>,
    /// Map nodes: the array to map over, a path like a condition's (`/outputs/plan/items`,
    /// `/input/urls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<String>,
    /// Map nodes: a JSON Pointer into each item whose value (a string or an integer, unique
    /// among the items) is the item's key; without one, items are known by index alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_key: Option<String>,
    /// Map nodes: most items the array may hold ([`DEFAULT_MAX_ITEMS`] when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
    /// Map nodes: most items handed to the host at once (all when not set). Only when work
    /// is handed out depends on it, never the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Map nodes: what an item that fails for good does ([`ItemFailure::Fail`] when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_item_failure: Option<ItemFailure>,
    /// The output contract: a JSON Schema every output must match, and whether almost-JSON
    /// text is repaired first (agent, tool, map and human nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    /// Paths of earlier values this node's activations receive besides their `deps`
    /// (`/outputs/critic`, `/visits/draft`, `/input/topic`): the latest value when the
    /// activation is scheduled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    /// Workflow nodes: the workflow to run, inline (one named in a registry is written
    /// inline when the workflow loads, so a log holds every definition it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Box<WorkflowSpec>>,
    /// Workflow nodes: the path of the value its workflow sees as `/input` (`/input` when
    /// not set; an output must be of a node listed in `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

impl NodeSpec {
    pub(crate) fn new(id: &str, kind: NodeKind) -> NodeSpec {
        NodeSpec {
            id: id.to_owned(),
            kind,
            agent: None,
            tool: None,
            prompt: None,
            after: Vec::new(),
            timeout_ms: None,
            retry: None,
            max_visits: None,
            cases: Vec::new(),
            default: None,
            budget: None,
            over: None,
            item_key: None,
            max_items: None,
            concurrency: None,
            on_item_failure: None,
            output: None,
            reads: Vec::new(),
            workflow: None,
            input: None,
        }
    }
}

/// A workflow definition exactly as written in JSON (camelCase keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Name, recorded in every log header.
    pub name: String,
    /// Most supersteps one run may take; also bounds loops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// The nodes, in declaration order (which is also the order of activations in a step).
    pub nodes: Vec<NodeSpec>,
    /// What the whole run may spend (docs/budgets.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Limits>,
    /// What each agent name may spend, over every node it runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_budgets: BTreeMap<String, Limits>,
    /// Percentages of a limit at which a `budgetWarning` is recorded (default 80 and 90;
    /// `[]` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_warnings: Option<Vec<u64>>,
}

/// Retry policy after validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub multiplier: f64,
    pub non_retryable: Vec<Arc<str>>,
    pub retry_programming_errors: bool,
}

impl RetryPolicy {
    /// Whether a failure of `error_type` may never be retried under this policy.
    pub fn refuses(&self, error_type: &str) -> bool {
        self.non_retryable.iter().any(|t| &**t == error_type)
            || (!self.retry_programming_errors && PROGRAMMING_ERRORS.contains(&error_type))
    }

    /// Delay before `attempt` (2 = first retry), in whole milliseconds, capped at a day.
    /// Repeated f64 multiplication is exact IEEE arithmetic, so every platform agrees.
    pub fn delay_before(&self, attempt: u32) -> u64 {
        let mut delay = self.backoff_ms as f64;
        for _ in 2..attempt {
            delay *= self.multiplier;
            if delay >= MAX_BACKOFF_MS as f64 {
                return MAX_BACKOFF_MS;
            }
        }
        (delay as u64).min(MAX_BACKOFF_MS)
    }
}

/// A map node, compiled.
#[derive(Debug)]
pub(crate) struct MapDef {
    /// The array's path, as written.
    pub over_text: Arc<str>,
    pub over: StatePath,
    /// Tokens of `itemKey`.
    pub item_key: Option<Vec<String>>,
    pub max_items: u64,
    pub concurrency: Option<u32>,
    pub collect: bool,
}

/// A dependency edge into a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dep {
    pub from: usize,
    /// `true` when `from` is a branch: satisfied only if the branch chose this node.
    pub conditional: bool,
}

#[derive(Debug)]
pub(crate) struct BranchDef {
    pub cases: Vec<(Condition, usize)>,
    pub default: Option<usize>,
    /// For each back-edge target: the loop body (nodes on paths target → branch), sorted.
    pub loops: HashMap<usize, Vec<usize>>,
}

#[derive(Debug)]
pub(crate) struct CompiledNode {
    pub id: Arc<str>,
    pub kind: NodeKind,
    /// Agent or tool name; the node id for human and branch nodes.
    pub name: Arc<str>,
    pub prompt: Option<Arc<str>>,
    pub deps: Vec<Dep>,
    /// Indices of explicit `after` dependencies (the activation's `deps`).
    pub after: Vec<usize>,
    pub timeout_ms: Option<u64>,
    pub retry: Option<RetryPolicy>,
    pub max_visits: Option<u64>,
    pub branch: Option<BranchDef>,
    /// The node's budget (unlimited when it has none).
    pub budget: Limits,
    /// Who performs its activations (`None` for branches).
    pub act: Option<ActivationKind>,
    /// Map nodes: what to map over and how.
    pub map: Option<MapDef>,
    /// `reads`: each path as written, compiled.
    pub reads: Vec<(Arc<str>, StatePath)>,
    /// `output`, compiled.
    pub output: Option<super::output::OutputCheck>,
    /// A node a sub-workflow was flattened into: its entry or its exit.
    pub sub: Option<super::subflow::SubRole>,
    /// Nodes of a sub-workflow: where their run input comes from.
    pub input: Option<StatePath>,
}

impl CompiledNode {
    /// The agent name its activations run, for agent nodes and maps over an agent.
    pub fn agent(&self) -> Option<&Arc<str>> {
        (self.act == Some(ActivationKind::Agent)).then_some(&self.name)
    }

    /// Whether its activations are tool calls (tool nodes and maps over a tool).
    pub fn is_tool(&self) -> bool {
        self.act == Some(ActivationKind::Tool)
    }
}

/// A validated, compiled workflow. Cheap to share (`Arc` inside).
#[derive(Debug, Clone)]
pub struct Workflow {
    inner: Arc<Compiled>,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    pub spec: Arc<WorkflowSpec>,
    pub hash: String,
    pub nodes: Vec<CompiledNode>,
    pub index: HashMap<String, usize>,
    /// Stable topological order (ties broken by declaration order).
    pub topo: Vec<usize>,
    /// Position of each node in `topo`.
    pub topo_pos: Vec<usize>,
    /// Nodes that depend on each node (through `after` or a forward goto).
    pub children: Vec<Vec<usize>>,
    /// Non-branch nodes nothing depends on: their outputs form the run output.
    pub terminal: Vec<usize>,
    pub max_steps: Option<u64>,
    /// Whether a budget is declared anywhere (the run, a node, an agent).
    pub has_budgets: bool,
}

impl Workflow {
    /// Parse and validate a workflow from JSON text.
    ///
    /// Errors: `INVALID_WORKFLOW` naming the node and field.
    pub fn from_json(text: &str) -> Result<Workflow> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::invalid_workflow(None, "(document)", format!("not valid JSON: {e}"))
        })?;
        Workflow::from_value(value)
    }

    /// Parse and validate a workflow from a JSON file.
    ///
    /// Errors: `IO` when the file cannot be read, `INVALID_WORKFLOW` otherwise (text that is
    /// not UTF-8 names the byte offset of the first bad byte).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Workflow> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::invalid_workflow(
                None,
                "(document)",
                format!(
                    "{} is not UTF-8 text: invalid byte at offset {}",
                    path.display(),
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Workflow::from_json(&text)
    }

    /// Validate a workflow given as a JSON value whose workflow nodes may name their
    /// workflow (`"workflow": "research-flow"`) instead of holding it: each name is looked up
    /// in `registry` (by [`Workflow::name`]) and written inline, so the definition a log
    /// records holds every workflow it runs.
    ///
    /// Errors: `INVALID_WORKFLOW` naming the node and field (`workflow`: a name the registry
    /// does not hold).
    pub fn from_value_in(mut value: Value, registry: &[Workflow]) -> Result<Workflow> {
        inline_named(&mut value, registry)?;
        Workflow::from_value(value)
    }

    /// Validate a workflow given as a JSON value.
    ///
    /// Errors: `INVALID_WORKFLOW` naming the node and field.
    pub fn from_value(mut value: Value) -> Result<Workflow> {
        // A name where a workflow should be, without a registry to look it up in.
        inline_named(&mut value, &[])?;
        let node_ids: Vec<Option<String>> = match value.get("nodes").and_then(Value::as_array) {
            Some(nodes) => nodes
                .iter()
                .map(|n| n.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            None => Vec::new(),
        };
        let spec: WorkflowSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // Name the node when the error is inside `nodes[i]`.
            if let Some(rest) = path.strip_prefix("nodes[") {
                if let Some((idx, field)) = rest.split_once(']') {
                    if let Ok(i) = idx.parse::<usize>() {
                        let node = node_ids
                            .get(i)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| format!("#{i}"));
                        let field = field.trim_start_matches('.');
                        return Error::invalid_workflow(
                            Some(&node),
                            if field.is_empty() { "(node)" } else { field },
                            inner,
                        );
                    }
                }
            }
            Error::invalid_workflow(None, if path == "." { "(document)" } else { &path }, inner)
        })?;
        Workflow::from_spec(spec)
    }

    /// Validate a spec.
    ///
    /// Errors: `INVALID_WORKFLOW` naming the node and field.
    pub fn from_spec(spec: WorkflowSpec) -> Result<Workflow> {
        let compiled = super::validate::compile(spec)?;
        Ok(Workflow {
            inner: Arc::new(compiled),
        })
    }

    /// Start a builder.
    pub fn builder(name: &str) -> WorkflowBuilder {
        WorkflowBuilder {
            spec: WorkflowSpec {
                name: name.to_owned(),
                max_steps: None,
                nodes: Vec::new(),
                budget: None,
                agent_budgets: BTreeMap::new(),
                budget_warnings: None,
            },
        }
    }

    /// Hints about a valid workflow that probably does not do what its author meant: an
    /// agent, tool or map node whose every `after` entry is a branch, and that has no
    /// `reads`, receives no data (a branch has no output). Hosts show them as warnings (the CLI on stderr, Python `warnings`,
    /// Node `process.emitWarning`); they never change a run.
    pub fn warnings(&self) -> Vec<String> {
        let c = &self.inner;
        c.nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Agent | NodeKind::Tool | NodeKind::Map))
            // A node with `reads` gets its data that way.
            .filter(|n| n.reads.is_empty())
            .filter(|n| {
                !n.after.is_empty() && n.after.iter().all(|&d| c.nodes[d].kind == NodeKind::Branch)
            })
            .map(|n| {
                let branches: Vec<&str> = n.after.iter().map(|&d| &*c.nodes[d].id).collect();
                format!(
                    "node '{}': every 'after' entry is a branch ({}), and a branch has no output, so its activations receive no deps; add the nodes whose outputs it needs to 'after', or list them in 'reads'",
                    n.id,
                    branches.join(", ")
                )
            })
            .collect()
    }

    /// The spec as validated.
    pub fn spec(&self) -> &WorkflowSpec {
        &self.inner.spec
    }

    /// The spec, shared (what `runStarted` records).
    pub(crate) fn shared_spec(&self) -> Arc<WorkflowSpec> {
        self.inner.spec.clone()
    }

    /// The workflow name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// blake3 hash (hex) of the canonical JSON of the spec.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// Canonical JSON of the spec (fixed field order, no whitespace).
    pub fn to_json(&self) -> String {
        canonical_spec_json(&self.inner.spec)
    }

    /// Node ids in declaration order: every id a run's events may name, a sub-workflow's
    /// nodes under their workflow node's (`research/search`, then `research` itself).
    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.inner
            .nodes
            .iter()
            .filter(|n| !matches!(n.sub, Some(super::subflow::SubRole::Entry { .. })))
            .map(|n| &*n.id)
    }

    /// Agent names used by the workflow (sorted, deduplicated), maps' included.
    pub fn agent_names(&self) -> BTreeSet<&str> {
        self.names_of(ActivationKind::Agent)
    }

    /// Tool names used by the workflow (sorted, deduplicated), maps' included.
    pub fn tool_names(&self) -> BTreeSet<&str> {
        self.names_of(ActivationKind::Tool)
    }

    fn names_of(&self, kind: ActivationKind) -> BTreeSet<&str> {
        self.inner
            .nodes
            .iter()
            .filter(|n| n.act == Some(kind))
            .map(|n| &*n.name)
            .collect()
    }

    pub(crate) fn compiled(&self) -> &Compiled {
        &self.inner
    }
}

/// Replace each workflow node's `"workflow": "<name>"` by that workflow of `registry`.
fn inline_named(value: &mut Value, registry: &[Workflow]) -> Result<()> {
    let Some(nodes) = value.get_mut("nodes").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for node in nodes {
        let id = node
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(slot) = node.get_mut("workflow") else {
            continue;
        };
        let Some(name) = slot.as_str() else {
            // An inline workflow may name the ones it runs.
            inline_named(slot, registry)?;
            continue;
        };
        let Some(found) = registry.iter().find(|w| w.name() == name) else {
            let known: Vec<&str> = registry.iter().map(Workflow::name).collect();
            return Err(Error::invalid_workflow(
                Some(&id),
                "workflow",
                format!(
                    "no workflow named '{name}' to run (the registry holds: {}); pass it, or write it inline",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            ));
        };
        *slot = serde_json::to_value(found.spec()).expect("a workflow spec serializes");
    }
    Ok(())
}

pub(crate) fn canonical_spec_json(spec: &WorkflowSpec) -> String {
    // Serialization of these plain structs cannot fail.
    serde_json::to_string(spec).expect("workflow spec serializes")
}

/// Builds a [`WorkflowSpec`] in code; `build()` validates it like JSON input.
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    spec: WorkflowSpec,
}

/// Options of one node in the builder.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Dependencies.
    pub after: Vec<String>,
    /// Per-attempt deadline.
    pub timeout_ms: Option<u64>,
    /// Retry policy.
    pub retry: Option<RetrySpec>,
    /// Loop bound.
    pub max_visits: Option<u64>,
    /// Paths of earlier values its activations receive (`reads`).
    pub reads: Vec<String>,
    /// The output contract.
    pub output: Option<OutputSpec>,
}

/// A map node's own options in the builder (see [`NodeSpec`]'s map fields).
#[derive(Debug, Clone, Default)]
pub struct MapOptions {
    /// JSON Pointer to each item's key.
    pub item_key: Option<String>,
    /// Most items the array may hold.
    pub max_items: Option<u64>,
    /// Most items handed out at once.
    pub concurrency: Option<u64>,
    /// What an item failing for good does.
    pub on_item_failure: Option<ItemFailure>,
}

impl NodeOptions {
    /// Options with only `after` set.
    pub fn after(ids: &[&str]) -> NodeOptions {
        NodeOptions {
            after: ids.iter().map(|s| (*s).to_owned()).collect(),
            ..NodeOptions::default()
        }
    }
}

impl WorkflowBuilder {
    fn push(mut self, mut node: NodeSpec, opts: NodeOptions) -> Self {
        node.after = opts.after;
        node.timeout_ms = opts.timeout_ms;
        node.retry = opts.retry;
        node.max_visits = opts.max_visits;
        node.reads = opts.reads;
        node.output = opts.output;
        self.spec.nodes.push(node);
        self
    }

    fn map(mut node: NodeSpec, over: &str, map: MapOptions) -> NodeSpec {
        node.over = Some(over.to_owned());
        node.item_key = map.item_key;
        node.max_items = map.max_items;
        node.concurrency = map.concurrency;
        node.on_item_failure = map.on_item_failure;
        node
    }

    /// Add a map node: one activation of `agent` per item of the array at `over`.
    pub fn map_agent(
        self,
        id: &str,
        agent: &str,
        over: &str,
        map: MapOptions,
        opts: NodeOptions,
    ) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Map);
        n.agent = Some(agent.to_owned());
        self.push(WorkflowBuilder::map(n, over, map), opts)
    }

    /// Add a map node: one call of `tool` per item of the array at `over`.
    pub fn map_tool(
        self,
        id: &str,
        tool: &str,
        over: &str,
        map: MapOptions,
        opts: NodeOptions,
    ) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Map);
        n.tool = Some(tool.to_owned());
        self.push(WorkflowBuilder::map(n, over, map), opts)
    }

    /// Add an agent node.
    pub fn agent(self, id: &str, agent: &str, opts: NodeOptions) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Agent);
        n.agent = Some(agent.to_owned());
        self.push(n, opts)
    }

    /// Add a tool node.
    pub fn tool(self, id: &str, tool: &str, opts: NodeOptions) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Tool);
        n.tool = Some(tool.to_owned());
        self.push(n, opts)
    }

    /// Add a human-approval node.
    pub fn human(self, id: &str, prompt: Option<&str>, opts: NodeOptions) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Human);
        n.prompt = prompt.map(str::to_owned);
        self.push(n, opts)
    }

    /// Add a workflow node: `workflow` runs as part of this one, its nodes under `id`
    /// (`id/node`), seeing the value at `input` (a path; `/input` when `None`) as its input.
    pub fn workflow(
        self,
        id: &str,
        workflow: &Workflow,
        input: Option<&str>,
        opts: NodeOptions,
    ) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Workflow);
        n.workflow = Some(Box::new(workflow.spec().clone()));
        n.input = input.map(str::to_owned);
        self.push(n, opts)
    }

    /// Add a branch node; `cases` are (condition JSON, target) pairs tried in order.
    pub fn branch(
        self,
        id: &str,
        cases: Vec<(Value, &str)>,
        default: Option<&str>,
        opts: NodeOptions,
    ) -> Self {
        let mut n = NodeSpec::new(id, NodeKind::Branch);
        n.cases = cases
            .into_iter()
            .map(|(when, goto)| CaseSpec {
                when,
                goto: goto.to_owned(),
            })
            .collect();
        n.default = default.map(str::to_owned);
        self.push(n, opts)
    }

    /// Bound the number of supersteps.
    pub fn max_steps(mut self, max_steps: u64) -> Self {
        self.spec.max_steps = Some(max_steps);
        self
    }

    /// Validate and compile.
    ///
    /// Errors: `INVALID_WORKFLOW`.
    pub fn build(self) -> Result<Workflow> {
        Workflow::from_spec(self.spec)
    }
}
