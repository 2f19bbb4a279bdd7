//! The budget ledger of a run (docs/budgets.md): what the run, each node and each agent name
//! has spent, the leases a step's activations get, and the warnings a finished step crosses.
//!
//! Everything here is derived from events: spend moves only when a step settles (its
//! activations' charges are added in activation order), so inside a step the ledger is
//! constant and every decision made against it — leases, refusals' numbers — is the same on
//! every run, in every host, and on replay.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::budget::{split_leases, Amounts, Dimension, Limits, PriceTable};
use crate::model::budget::{BudgetRefusal, BudgetWarning, RunBudget, Scope, DEFAULT_WARNINGS};
use crate::model::usage::Usage;
use crate::model::workflow::Workflow;

/// What one activation may spend and what it has been charged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Account {
    /// Its lease (`Limits::UNLIMITED` when nothing limits it).
    pub lease: Limits,
    /// Per dimension, the budget that set the lease there.
    pub binding: [Option<Scope>; 5],
    /// Reserved by calls in flight plus charged for finished ones, plus usage its host
    /// reported on the completion.
    pub charged: Amounts,
}

/// The run's budgets and spend.
#[derive(Debug, Clone)]
pub(crate) struct Ledger {
    pub record: RunBudget,
    pub prices: Option<Arc<PriceTable>>,
    run_limit: Limits,
    node_limits: Vec<Limits>,
    agent_limits: BTreeMap<Arc<str>, Limits>,
    warn_at: Vec<u64>,
    spent: Amounts,
    node_spent: Vec<Amounts>,
    agent_spent: BTreeMap<Arc<str>, Amounts>,
}

/// An activation as the lease split sees it.
pub(crate) struct Claimant<'a> {
    pub node: usize,
    pub agent: Option<&'a Arc<str>>,
}

impl Ledger {
    /// The ledger of a run of `wf` recorded with `record`.
    pub(crate) fn new(wf: &Workflow, record: RunBudget, prices: Option<Arc<PriceTable>>) -> Ledger {
        let c = wf.compiled();
        let spec = &c.spec;
        let run_limit = record.limits.or(spec.budget).unwrap_or(Limits::UNLIMITED);
        Ledger {
            record,
            prices,
            run_limit,
            node_limits: c.nodes.iter().map(|n| n.budget).collect(),
            agent_limits: spec
                .agent_budgets
                .iter()
                .map(|(k, v)| (Arc::from(k.as_str()), *v))
                .collect(),
            warn_at: spec
                .budget_warnings
                .clone()
                .unwrap_or_else(|| DEFAULT_WARNINGS.to_vec()),
            spent: Amounts::ZERO,
            node_spent: vec![Amounts::ZERO; c.nodes.len()],
            agent_spent: BTreeMap::new(),
        }
    }

    fn agent_left(&self, agent: Option<&Arc<str>>) -> Option<Limits> {
        let a = agent?;
        let limit = self.agent_limits.get(a)?;
        Some(limit.left(self.agent_spent.get(a).unwrap_or(&Amounts::ZERO)))
    }

    /// The accounts of a step's activations, in scheduling order: each node's own cap first
    /// (what is left of its budget, split among a map's items), then an agent's remaining budget split among its
    /// activations in the step, then what is left of the run's split among all of them
    /// ([`split_leases`]: max-min fair, remainders to the first scheduled).
    pub(crate) fn leases(&self, step: &[Claimant<'_>]) -> Vec<Account> {
        let mut caps: Vec<Limits> = step
            .iter()
            .map(|c| self.node_limits[c.node].left(&self.node_spent[c.node]))
            .collect();
        // A map's items share their node's budget like an agent's activations share the
        // agent's (they are one node's activations, next to each other in the step).
        let mut start = 0;
        while start < step.len() {
            let node = step[start].node;
            let end = start + step[start..].iter().take_while(|c| c.node == node).count();
            if end - start > 1 && !caps[start].is_unlimited() {
                let shares = split_leases(&caps[start], &vec![Limits::UNLIMITED; end - start]);
                caps[start..end].copy_from_slice(&shares);
            }
            start = end;
        }
        let node_caps = caps.clone();
        let mut agent_caps: Vec<Option<Limits>> = vec![None; step.len()];
        let mut agents: Vec<&Arc<str>> = step.iter().filter_map(|c| c.agent).collect();
        agents.sort();
        agents.dedup();
        for a in agents {
            let Some(left) = self.agent_left(Some(a)) else {
                continue;
            };
            let members: Vec<usize> = (0..step.len())
                .filter(|&i| step[i].agent == Some(a))
                .collect();
            let inner: Vec<Limits> = members.iter().map(|&i| caps[i]).collect();
            for (&i, share) in members.iter().zip(split_leases(&left, &inner)) {
                caps[i] = share;
                agent_caps[i] = Some(share);
            }
        }
        let run_left = self.run_limit.left(&self.spent);
        split_leases(&run_left, &caps)
            .into_iter()
            .enumerate()
            .map(|(i, lease)| {
                let binding = Dimension::ALL.map(|d| {
                    let l = lease.get(d)?;
                    Some(if node_caps[i].get(d) == Some(l) {
                        Scope::Node
                    } else if agent_caps[i].and_then(|a| a.get(d)) == Some(l) {
                        Scope::Agent
                    } else {
                        Scope::Run
                    })
                });
                Account {
                    lease,
                    binding,
                    charged: Amounts::ZERO,
                }
            })
            .collect()
    }

    /// The refusal of a call needing `requested` in `dimension`, of an activation of `node`
    /// (named `node_id`) run by `agent`.
    pub(crate) fn refusal(
        &self,
        account: &Account,
        node: usize,
        node_id: &Arc<str>,
        agent: Option<&Arc<str>>,
        dimension: Dimension,
        requested: u64,
    ) -> BudgetRefusal {
        let i = Dimension::ALL
            .iter()
            .position(|&d| d == dimension)
            .expect("a dimension");
        let scope = account.binding[i].unwrap_or(Scope::Run);
        let (limit, spent) = match scope {
            Scope::Node => (self.node_limits[node], self.node_spent[node]),
            Scope::Agent => {
                let a = agent.expect("an agent scope has an agent");
                (
                    self.agent_limits[a],
                    self.agent_spent.get(a).copied().unwrap_or_default(),
                )
            }
            Scope::Run => (self.run_limit, self.spent),
        };
        let left = account
            .lease
            .left(&account.charged)
            .get(dimension)
            .unwrap_or(u64::MAX);
        BudgetRefusal {
            scope,
            agent: (scope == Scope::Agent).then(|| agent.cloned()).flatten(),
            node: Some(node_id.clone()),
            dimension,
            limit: limit.get(dimension).unwrap_or(u64::MAX),
            spent: spent.plus(&account.charged).get(dimension),
            requested,
            left,
        }
    }

    /// Add what a finished activation of `node` run by `agent` was charged. Returns the
    /// warnings for the thresholds this crossed: the run's, then the node's, then the
    /// agent's; per budget, dimensions in order, thresholds rising.
    pub(crate) fn settle(
        &mut self,
        node: usize,
        agent: Option<&Arc<str>>,
        charged: &Amounts,
    ) -> Vec<(Option<usize>, BudgetWarning)> {
        let mut out = Vec::new();
        if *charged == Amounts::ZERO {
            return out;
        }
        let was = self.spent;
        self.spent = was.plus(charged);
        self.crossed(
            &mut out,
            Scope::Run,
            None,
            None,
            &self.run_limit,
            &was,
            &self.spent,
        );
        let was = self.node_spent[node];
        self.node_spent[node] = was.plus(charged);
        let limit = self.node_limits[node];
        self.crossed(
            &mut out,
            Scope::Node,
            Some(node),
            None,
            &limit,
            &was,
            &self.node_spent[node],
        );
        if let Some(a) = agent {
            let e = self.agent_spent.entry(a.clone()).or_default();
            let was = *e;
            *e = was.plus(charged);
            let now = *e;
            if let Some(limit) = self.agent_limits.get(a) {
                self.crossed(&mut out, Scope::Agent, None, Some(a), limit, &was, &now);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn crossed(
        &self,
        out: &mut Vec<(Option<usize>, BudgetWarning)>,
        scope: Scope,
        node: Option<usize>,
        agent: Option<&Arc<str>>,
        limit: &Limits,
        was: &Amounts,
        now: &Amounts,
    ) {
        for d in Dimension::ALL {
            let Some(l) = limit.get(d) else { continue };
            for &t in &self.warn_at {
                let reached = |spent: u64| spent as u128 * 100 >= l as u128 * t as u128;
                if reached(now.get(d)) && !reached(was.get(d)) {
                    out.push((
                        node,
                        BudgetWarning {
                            scope,
                            agent: agent.cloned(),
                            dimension: d,
                            threshold: t,
                            limit: l,
                            spent: now.get(d),
                        },
                    ));
                }
            }
        }
    }
}

/// What a call's or a completion's usage counts in the token dimensions (and one call when
/// `call`), at `micro_usd`.
pub(crate) fn amounts_of(usage: &Usage, micro_usd: u64, calls: u64) -> Amounts {
    Amounts::of(usage.input_tokens, usage.output_tokens, micro_usd, calls)
}
