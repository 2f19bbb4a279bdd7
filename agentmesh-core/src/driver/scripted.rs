//! Scripted agents: agent behaviour written as data, for demos, the CLI and conformance tests.
//!
//! A script (`script.json`) holds the run options and, per node id (or agent/tool name), a list
//! of behaviours; an activation uses the first entry whose `visit`/`attempt` filters match:
//!
//! ```json
//! {"input": {"topic": "x"}, "seed": 7, "runId": "demo",
//!  "agents": {"search": [{"attempt": 1, "error": {"type": "Flaky", "message": "503"}},
//!                        {"output": {"hits": 3}, "delayMs": 20}]},
//!  "approvals": {"approve": {"approved": true}}}
//! ```
//!
//! Without a matching entry the output is `{"node": id, "visit": v, "attempt": a}` (with
//! `"item": index` for a map's item). A behaviour's `item` filter picks a map item by index.
//!
//! A behaviour may make calls first (`"calls"`: kind, name, request, and the scripted
//! `response` or `error`, with `usage`), in list order, each started and then completed; with
//! `"callsBatch": true` all are started in one batch and their results reported in reverse
//! order. A call the log already answers (after a resume) is not completed again. A call's
//! error does not fail the agent. A call may carry the `ask` a budget reserves (`provider`,
//! `model`, `inputTokens`, `maxTokens`, `minTokens`); when a budget or the run's policy
//! refuses a call the behaviour stops calling and returns `refusedOutput`, or fails without
//! one. A script's `budget` and `prices` are the run's budget option and user price table, its
//! `policy` the run's policy (docs/policy.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{AgentError, AgentOutput, AgentResult, Context, Mesh};
use crate::error::{Error, Result};
use crate::model::activation::Activation;
use crate::model::call::{CallError, CallKind, CallOutcome, CallRequest};
use crate::model::failure::{Failure, Usage};
use crate::model::workflow::Workflow;

/// An error a scripted agent raises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptError {
    /// Error type name.
    #[serde(rename = "type")]
    pub error_type: String,
    /// Message.
    pub message: String,
    /// Whether a retry policy may retry it (default true).
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// A call a scripted agent makes, with its scripted result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedCall {
    /// `llm` or `tool`.
    pub kind: CallKind,
    /// Provider or tool name.
    pub name: String,
    /// The request (recorded as given).
    #[serde(default)]
    pub request: Value,
    /// The response to report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// The error to report instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
    /// Tokens the call spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the call may cost, as an executor would estimate it (budgets reserve it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<ScriptedAsk>,
}

/// A scripted call's estimate ([`crate::CallAsk`] in the log's spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedAsk {
    /// The price table's provider id.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Estimated prompt tokens.
    pub input_tokens: u64,
    /// The request's `maxTokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The smallest `maxTokens` a budget may clamp it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u64>,
}

impl ScriptedAsk {
    /// As the core takes it.
    pub fn to_ask(&self) -> crate::model::call::CallAsk {
        crate::model::call::CallAsk {
            provider: self.provider.clone(),
            model: self.model.clone(),
            input_tokens: self.input_tokens,
            max_tokens: self.max_tokens,
            min_tokens: self.min_tokens,
        }
    }
}

impl ScriptedCall {
    /// The request to start.
    pub fn request(&self) -> CallRequest {
        CallRequest {
            kind: self.kind,
            name: self.name.clone(),
            request: self.request.clone(),
            ask: self.ask.as_ref().map(ScriptedAsk::to_ask),
        }
    }

    /// The outcome to report for it.
    pub fn outcome(&self) -> CallOutcome {
        let mut o = match &self.error {
            Some(e) => CallOutcome::err(e.clone()),
            None => CallOutcome::ok(self.response.clone().unwrap_or(Value::Null)),
        };
        o.usage = self.usage.clone();
        o
    }
}

/// One scripted behaviour.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Only for this visit of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit: Option<u64>,
    /// Only for this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Only for the map item at this index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u64>,
    /// Output to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Error to raise instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ScriptError>,
    /// Real time to wait first.
    #[serde(default)]
    pub delay_ms: u64,
    /// Token usage to report (with the output, or with the error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Cancel the run (before this activation's result is recorded).
    #[serde(default)]
    pub cancel: bool,
    /// Calls to make first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<ScriptedCall>,
    /// Start every call in one batch and report results in reverse order.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub calls_batch: bool,
    /// When a budget refuses one of the calls: stop calling and return this output (without
    /// it the refusal fails the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_output: Option<Value>,
}

/// A script: run options plus behaviours.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Script {
    /// Run input.
    #[serde(default)]
    pub input: Value,
    /// Seed.
    #[serde(default)]
    pub seed: u64,
    /// Run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Behaviours by node id or agent/tool name.
    #[serde(default)]
    pub agents: BTreeMap<String, Vec<Behavior>>,
    /// Outputs for human nodes, used when the run waits (node → output).
    #[serde(default)]
    pub approvals: BTreeMap<String, Value>,
    /// How many times a runner retries the run (`retry`, in a new mesh) when it fails or is
    /// cancelled (conformance vectors; default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The run's budget option (replacing the workflow's `budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Value>,
    /// A user price table (docs/budgets.md), looked at before the bundled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Value>,
    /// The run's policy (docs/policy.md), as the policy file's JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Script {
    /// Parse a script.
    ///
    /// Errors: `INVALID_ARGUMENT`.
    pub fn from_json(text: &str) -> Result<Script> {
        serde_json::from_str(text)
            .map_err(|e| Error::invalid_argument(format!("invalid script: {e}")))
    }

    /// Read a script file.
    ///
    /// Errors: `IO`, `INVALID_ARGUMENT`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Script> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Script::from_json(&text)
    }

    /// The run options the script gives: input, seed, run id and budget.
    ///
    /// Errors: `INVALID_ARGUMENT` (a bad budget).
    pub fn run_options(&self) -> Result<crate::run::RunOptions> {
        Ok(crate::run::RunOptions {
            input: self.input.clone(),
            seed: self.seed,
            run_id: self.run_id.clone(),
            budget: self
                .budget
                .as_ref()
                .map(crate::budget::Limits::from_option)
                .transpose()?,
            ..crate::run::RunOptions::default()
        })
    }

    /// The script's price table, if it gives one.
    ///
    /// Errors: `INVALID_ARGUMENT` naming the field.
    pub fn price_table(&self) -> Result<Option<crate::budget::PriceTable>> {
        self.prices
            .as_ref()
            .map(|v| crate::budget::PriceTable::from_json(&v.to_string()))
            .transpose()
    }

    /// The script's policy, if it gives one.
    ///
    /// Errors: `POLICY_INVALID` naming the rule and field.
    pub fn policy(&self) -> Result<Option<crate::policy::Policy>> {
        self.policy
            .clone()
            .map(crate::policy::Policy::from_value)
            .transpose()
    }

    /// The behaviour for an activation, if the script has one.
    pub fn behavior_for(&self, act: &Activation) -> Option<&Behavior> {
        [&*act.node, &*act.name]
            .iter()
            .filter_map(|k| self.agents.get(*k))
            .flatten()
            .find(|b| {
                b.visit.is_none_or(|v| v == act.visit)
                    && b.attempt.is_none_or(|a| a == act.attempt)
                    && b.item
                        .is_none_or(|i| act.item.as_ref().is_some_and(|it| it.index == i))
            })
    }

    /// Perform the behaviour for `act` (sleeping for real when it has a delay).
    pub fn perform(&self, act: &Activation, ctx: &Context) -> AgentResult {
        let Some(b) = self.behavior_for(act) else {
            return Ok(default_output(act).into());
        };
        if b.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(b.delay_ms));
        }
        if b.cancel {
            ctx.cancel_run("cancelled by script");
        }
        match make_calls(b, ctx) {
            Err(e)
                if matches!(
                    e.kind(),
                    crate::error::ErrorKind::BudgetExceeded | crate::error::ErrorKind::PolicyDenied
                ) =>
            {
                if let Some(out) = &b.refused_output {
                    return Ok(out.clone().into());
                }
                return Err(Failure::error("ScriptCallRefused", e.to_string()).into());
            }
            Err(e) => return Err(Failure::error("ScriptCallRefused", e.to_string()).into()),
            Ok(()) => {}
        }
        if let Some(e) = &b.error {
            let f = Failure::error(e.error_type.clone(), e.message.clone());
            return Err(AgentError {
                failure: if e.retryable { f } else { f.permanent() },
                usage: b.usage.clone(),
            });
        }
        Ok(AgentOutput {
            output: b.output.clone().unwrap_or_else(|| default_output(act)),
            usage: b.usage.clone(),
        })
    }

    /// Register this script as every agent and tool `workflow` uses.
    pub fn register(self: &Arc<Self>, mesh: &mut Mesh, workflow: &Workflow) {
        for name in workflow.agent_names() {
            let s = self.clone();
            mesh.agent(name, move |act, ctx| s.perform(act, ctx));
        }
        for name in workflow.tool_names() {
            let s = self.clone();
            mesh.tool(name, move |act, ctx| s.perform(act, ctx));
        }
    }
}

/// Make a behaviour's calls through the run (the procedure every runner follows).
fn make_calls(b: &Behavior, ctx: &Context) -> Result<()> {
    if b.calls_batch {
        let tickets = ctx.call_start_many(b.calls.iter().map(ScriptedCall::request).collect())?;
        // A refused call fails the batch as the Python and Node bindings do: the others stay
        // started, unanswered (charged their reservation).
        use crate::model::call::TicketState;
        for t in &tickets {
            match &t.state {
                TicketState::Denied(r) => return Err(Error::budget_exceeded(r)),
                TicketState::PolicyDenied(v) => return Err(Error::policy_denied(v)),
                _ => {}
            }
        }
        for (t, c) in tickets.iter().zip(&b.calls).rev() {
            if t.is_live() {
                ctx.call_complete(t, c.outcome())?;
            }
        }
        return Ok(());
    }
    for c in &b.calls {
        let t = ctx.call_start(c.request())?;
        if t.is_live() {
            ctx.call_complete(&t, c.outcome())?;
        }
    }
    Ok(())
}

fn default_output(act: &Activation) -> Value {
    let mut out = json!({"node": &*act.node, "visit": act.visit, "attempt": act.attempt});
    if let Some(item) = &act.item {
        out["item"] = json!(item.index);
    }
    out
}
