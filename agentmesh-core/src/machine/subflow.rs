//! The entries and exits a sub-workflow is flattened into ([`crate::model::subflow`]): both
//! are decided by the core between steps, like a branch. An entry records `workflowStarted`
//! and lets the child's first nodes run; an exit records `workflowCompleted` and takes the
//! child's completed terminal outputs as the workflow node's output.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Machine, NodeStatus};
use crate::model::event::{EventData, SubWorkflow};
use crate::model::subflow::SubRole;

impl Machine {
    /// Record the entry or exit `i`, whose dependencies resolved (the last at `trigger`).
    pub(super) fn pass_subflow(&mut self, i: usize, trigger: u64) {
        let wf = self.wf.clone();
        let compiled = wf.compiled();
        let node = &compiled.nodes[i];
        let (data, output) = match node.sub.as_ref().expect("a sub-workflow part") {
            SubRole::Entry { workflow } => (
                EventData::WorkflowStarted(SubWorkflow {
                    workflow: workflow.clone(),
                }),
                None,
            ),
            SubRole::Exit { workflow, prefix } => {
                let outputs: Map<String, Value> = node
                    .deps
                    .iter()
                    .filter(|d| self.nodes[d.from].status == NodeStatus::Completed)
                    .filter_map(|d| {
                        let id = &compiled.nodes[d.from].id;
                        let out = self.nodes[d.from].output.as_ref()?;
                        let short = id.strip_prefix(&**prefix).unwrap_or(id);
                        Some((short.to_owned(), (**out).clone()))
                    })
                    .collect();
                (
                    EventData::WorkflowCompleted(SubWorkflow {
                        workflow: workflow.clone(),
                    }),
                    Some(Arc::new(Value::Object(outputs))),
                )
            }
        };
        self.nodes[i].visits += 1;
        let seq = self.emit(Some(trigger), Some(i), None, data);
        let state = &mut self.nodes[i];
        state.status = NodeStatus::Completed;
        state.resolved_seq = seq;
        if output.is_some() {
            state.output = output;
            state.output_seq = seq;
        }
    }

    /// The run input an activation of node `i` sees: its sub-workflow's input, or the run's.
    pub(super) fn input_of(&self, i: usize) -> Arc<Value> {
        let Some(path) = &self.wf.compiled().nodes[i].input else {
            return self.input.clone();
        };
        let view = super::scheduler::View { m: self };
        match path.whole_output() {
            Some(n) => self.nodes[n].output.clone().unwrap_or_default(),
            None => path
                .resolve(&view)
                .map_or_else(|| Arc::new(Value::Null), |v| Arc::new(v.into_owned())),
        }
    }
}
