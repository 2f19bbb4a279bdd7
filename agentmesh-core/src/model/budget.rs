//! Budget records in the log (docs/budgets.md): the run's budget in `runStarted`, a call a
//! budget refused (`callDenied`), a threshold crossed (`budgetWarning`), and the refusal a
//! run fails with.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::call::CallKind;
use crate::budget::{Dimension, Limits};

/// What a budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole run (the workflow's `budget`, or the run option that replaced it).
    Run,
    /// One node, across all its visits and attempts.
    Node,
    /// Every node an agent name runs.
    Agent,
}

impl Scope {
    /// `run`, `node` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Run => "run",
            Scope::Node => "node",
            Scope::Agent => "agent",
        }
    }
}

/// `runStarted.budget`: present when the run accounts for what its calls spend (it has a
/// budget anywhere, or was given a price table). Replay and resume use these, never the
/// options of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunBudget {
    /// The run's limits when a run option replaced the workflow's `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Hash of the price table calls are priced with (`PriceTable::hash`).
    pub prices: String,
}

/// Why a budget refused a call: the first dimension it does not fit in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetRefusal {
    /// The budget that binds.
    pub scope: Scope,
    /// Its agent name (scope `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<str>>,
    /// Its node (scope `node`; also the node whose call was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// The dimension.
    pub dimension: Dimension,
    /// The budget's limit there.
    pub limit: u64,
    /// What the budget had spent or reserved when the call was refused: its total at the
    /// start of the step, plus this activation's calls.
    pub spent: u64,
    /// What the call needed there (at its smallest allowed `maxTokens`).
    pub requested: u64,
    /// What was left of the activation's lease there.
    pub left: u64,
}

impl BudgetRefusal {
    /// The one message every host shows for this refusal.
    pub fn message(&self) -> String {
        let whose = match (self.scope, &self.agent, &self.node) {
            (Scope::Agent, Some(a), _) => format!("agent '{a}'"),
            (Scope::Node, _, Some(n)) => format!("node '{n}'"),
            _ => "the run".to_owned(),
        };
        format!(
            "budget exceeded: {whose} has {} {} of its limit {} (spent {}); the call needs {}",
            self.left,
            self.dimension.as_str(),
            self.limit,
            self.spent,
            self.requested
        )
    }
}

/// Body of `callDenied`: a call a budget refused before anything was sent. It takes the
/// call's start sub and has no result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallDenied {
    /// The call's number in its activation.
    pub call: u32,
    /// LLM or tool.
    pub kind: CallKind,
    /// Provider or tool name.
    pub name: Arc<str>,
    /// The canonical request (a resumed agent's call is compared with it); absent when a
    /// policy refused the call (its verdict keeps a digest instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Arc<Value>>,
    /// Why a budget refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRefusal>,
    /// Why the run's policy refused it (a block, or the tool allowlist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

/// Body of `budgetWarning`: a budget's spend reached a threshold (decided at a step
/// boundary, from what the finished step spent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetWarning {
    /// The budget.
    pub scope: Scope,
    /// Its agent name (scope `agent`; scope `node` names the node in the envelope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<str>>,
    /// The dimension.
    pub dimension: Dimension,
    /// The threshold reached, in percent of the limit.
    pub threshold: u64,
    /// The limit.
    pub limit: u64,
    /// What is spent.
    pub spent: u64,
}

/// The thresholds warned at when a workflow names none: 80 % and 90 %.
pub const DEFAULT_WARNINGS: [u64; 2] = [80, 90];
