//! `reads`: values a node's activations receive besides their `deps` — any node's latest
//! output, a visit count, part of the input — read when the activation is scheduled. Outputs
//! change only when a step ends, so what an activation is handed during its step is what
//! its scheduled event records (the seq each value comes from), and replay agrees.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::scheduler::View;
use super::Machine;

impl Machine {
    /// Node `i`'s `reads` that have a value now: path, the seq of the event the value comes
    /// from (`runStarted` for the input, the latest output's event; `None` for a visit
    /// count, which no one event holds), value.
    fn reads_of(
        &self,
        i: usize,
    ) -> impl Iterator<Item = (&Arc<str>, Option<u64>, Arc<Value>)> + '_ {
        let view = View { m: self };
        self.wf.compiled().nodes[i]
            .reads
            .iter()
            .filter_map(move |(text, path)| {
                let seq = match path.node() {
                    None => Some(1),
                    Some(_) if path.is_visits() => None,
                    Some(n) => Some(self.nodes[n].output_seq),
                };
                // A whole output is shared, not copied.
                let value = match path.whole_output() {
                    Some(n) => self.nodes[n].output.clone(),
                    None => path.resolve(&view).map(|v| match v {
                        Cow::Borrowed(v) => Arc::new(v.clone()),
                        Cow::Owned(v) => Arc::new(v),
                    }),
                };
                value.map(|v| (text, seq, v))
            })
    }

    /// The values of node `i`'s `reads`, by path (paths with no value left out).
    pub(super) fn read_values(&self, i: usize) -> BTreeMap<Arc<str>, Arc<Value>> {
        self.reads_of(i).map(|(t, _, v)| (t.clone(), v)).collect()
    }

    /// What node `i`'s scheduled event records of its `reads`: each path to a value of the
    /// input or of an output, with the seq that value comes from (visit counts follow from
    /// the log itself).
    pub(super) fn read_record(&self, i: usize) -> BTreeMap<Arc<str>, u64> {
        self.reads_of(i)
            .filter_map(|(t, s, _)| Some((t.clone(), s?)))
            .collect()
    }
}
